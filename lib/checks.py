"""Claim checks and verdicts: one record from the check line to the verdict table.

Explained in chapter "Using this book". Two different things get two different words:

* A **check** compares one measured value with a threshold. Its *outcome* says whether the check held:
  `holds`, `fails`, or `not run` (this profile does not compute it; a measured value is never "not run").
* What a check is *about* is declared by its `kind` (`KINDS`): a claim of the paper, the contrary of a claim
  (a non-reproduction this book asserts), an exact construction, a control or ablation arm, or a regression
  guard. Paper claims and their contraries name the row of the chapter's verdict table they bear on.
* A **verdict** belongs to a row of the verdict table (`Row`): reproduced, partly, not reproduced, or not tested
  here. `verdict_table` derives it from the checks of that row and the recorded seed study, prints the table and
  records the verdicts; the provenance line and the reproducibility pages count those records. Nothing a reader
  sees is typed twice.

How a threshold is chosen (the rule, applied by `threshold` and nowhere else):

1. An exact claim (`kind="exact"`: a construction, an identity, a bound that holds by proof) gets the tolerance
   of the arithmetic (e.g. 1e-10 in float64), never a value read off a run.
2. Otherwise the value given to `check` is the claim's *null*: the value at which it would be false (0 for
   "A beats B", 1 for "a ratio exceeds one", the ablation arm's value for "the effect comes from M"). In the
   quick profile, with the recorded study's values v_1..v_S over S >= 8 seeds (`lib/records.json`, derived from
   `reports/seeds-quick.json`), an `at_least` threshold is raised to min(v) - 0.25 * (max(v) - min(v)),
   rounded outward to two significant digits (mirrored for `at_most`), but never past the null: a threshold
   stricter than the null catches regressions; one looser than it cannot fail when the claim is false.
3. When the study's worst seed is on the wrong side of the null, the claim does not hold on every seed: the
   threshold stays at the null, the outcome at this seed is recorded as it is (`fails` is a finding, not an
   error), the line says on how many seeds it holds, and the chapter stops only when the value leaves the
   study's range (the *guard*, the rounded envelope of rule 2). The verdict of its row cannot be "reproduced".
4. The full profile has no recorded study: every threshold is the null, and a check that fails stops the run.

The runner (`tools/execute.py`) sets `BOOK_CLAIMS_FILE`; every check and verdict appends one JSON line there.
A seed study sets `BOOK_CLAIMS_DEFER=1` (nothing stops the chapter: every value of every seed is recorded), and
the full-profile smoke run sets `BOOK_SMOKE=1` (loops cut short: every check is recorded as not run).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from lib.progress import smoke

DEFER_ENV = "BOOK_CLAIMS_DEFER"
"""Set to "1" (by the seed study, the GPU run) to record a check that fails without raising."""
RECORDS_FILE = Path(__file__).with_name("records.json")
"""The committed records the chapters read (written by `tools.seeds` from `reports/`, never by hand)."""
STUDY_MIN_SEEDS = 8
"""A quick threshold is read off at least this many seeds."""

KINDS = {
    "claim": "paper claim",
    "contrary": "against the paper",
    "exact": "exact",
    "control": "control",
    "guard": "guard",
}
"""What a check can be about, and the label its line shows."""
ROW_KINDS = ("claim", "contrary")
"""Kinds that must name a row of the verdict table (an exact check may, to support a row)."""
OUTCOMES = ("holds", "fails", "not run")
SMOKE_NOTE = "smoke run of the full profile: loops cut short, nothing measured"
"""The note of every check the full profile computes, in its smoke run (other notes: the chapter's own)."""
VERDICTS = ("reproduced", "partly", "not reproduced", "not tested here")
OWN_WORDS = {"reproduced": "holds", "partly": "holds in part", "not reproduced": "does not hold"}
"""What a row of the book's own (`Row(extension=...)`) says instead of the paper's verdicts: it is no claim of the
paper, so it is neither reproduced nor not."""


class ClaimNotReproduced(AssertionError):
    """Raised when a check fails where the record says it should hold (or a finding leaves its range)."""


@dataclass(frozen=True)
class ClaimRecord:
    """One check: what it is about, what was measured, against which threshold, and whether it held."""

    claim: str
    kind: str
    row: str | None
    value: float | None
    comparison: str
    null: float | list[float]
    threshold: float | list[float]
    outcome: str  # one of OUTCOMES
    seeds_holding: int | None = None  # of the study's seeds, at the null (None: no study applies)
    seeds_studied: int | None = None
    guard: float | None = None  # a finding stops the chapter only past this value
    note: str = ""
    data: str = ""
    chapter: str = ""
    record: str = "check"

    @property
    def holds(self) -> bool:
        """True when the check held at this run."""
        return self.outcome == "holds"

    def _ipython_display_(self) -> None:
        """Show nothing in a notebook: `check` has already printed its one readable line."""


_SESSION: dict[str, ClaimRecord] = {}
"""The checks made in this process, by name (a re-run cell replaces its check): `verdict_table` reads them."""


def fmt(x: float) -> str:
    """Return a number as check lines and tables show it."""
    if isinstance(x, bool):
        return str(x)
    x = float(x)
    if x != x:
        return "not a number"
    if x == 0 or (1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}"
    return f"{x:.3e}"


def _threshold_text(comparison: str, threshold) -> str:
    if comparison == "∈":
        return f"[{fmt(threshold[0])}, {fmt(threshold[1])}]"
    if comparison == "≈":
        return f"{fmt(threshold[0])} ± {fmt(threshold[1])}"
    return fmt(threshold)


def _passes(value: float, comparison: str, threshold) -> bool:
    if value != value:
        return False
    if comparison == "≥":
        return value >= threshold
    if comparison == "≤":
        return value <= threshold
    if comparison == "∈":
        return threshold[0] <= value <= threshold[1]
    return abs(value - threshold[0]) <= threshold[1]


def _comparison(at_least, at_most, between, close_to, tol) -> tuple[str, float | list[float]]:
    given = [
        k
        for k, v in (("at_least", at_least), ("at_most", at_most), ("between", between), ("close_to", close_to))
        if v is not None
    ]
    if len(given) != 1:
        raise TypeError(f"give exactly one of at_least, at_most, between, close_to (got {given or 'none'})")
    if close_to is None and tol is not None:
        raise TypeError("tol only goes with close_to")
    kind = given[0]
    if kind == "at_least":
        return "≥", float(at_least)
    if kind == "at_most":
        return "≤", float(at_most)
    if kind == "between":
        lo, hi = between
        if not lo <= hi:
            raise ValueError(f"between=({lo}, {hi}) is empty")
        return "∈", [float(lo), float(hi)]
    if tol is None or tol < 0:
        raise TypeError("close_to needs a tolerance tol >= 0")
    return "≈", [float(close_to), float(tol)]


def round_out(x: float, down: bool) -> float:
    """Return `x` rounded to two significant digits, down (towards -inf) or up."""
    if x == 0 or not math.isfinite(x):
        return x
    e = math.floor(math.log10(abs(x))) - 1
    q = 10.0**e
    k = math.floor(x / q + 1e-9) if down else math.ceil(x / q - 1e-9)
    return round(k * q, max(0, -e))


def envelope(values: list[float], comparison: str) -> float:
    """Return the study's range widened by a quarter of its spread, rounded outward (rule 2 of the module)."""
    lo, hi = min(values), max(values)
    spread = hi - lo
    if comparison == "≥":
        return round_out(lo - 0.25 * spread, down=True)
    return round_out(hi + 0.25 * spread, down=False)


@dataclass(frozen=True)
class Threshold:
    """What `threshold` derives for one check: the threshold, the study's seed counts and the guard."""

    value: float | list[float]
    seeds_holding: int | None = None
    seeds_studied: int | None = None
    guard: float | None = None

    @property
    def finding(self) -> bool:
        """True when the study has seeds on which the claim fails (rule 3)."""
        return self.seeds_holding is not None and self.seeds_holding < (self.seeds_studied or 0)


def threshold(kind: str, comparison: str, null, study: dict[str, float] | None) -> Threshold:
    """Return the threshold of a check from its null and its study's values by seed (rules 1-4 of the module).

    `study` is None in the full profile, for a check the study did not record, or with fewer than
    `STUDY_MIN_SEEDS` values: the threshold is then the null. Exact checks and intervals are never moved.
    """
    values = [v for v in (study or {}).values() if v == v]
    if kind == "exact" or comparison in ("∈", "≈") or study is None or len(study) < STUDY_MIN_SEEDS:
        if study is not None and len(study) >= STUDY_MIN_SEEDS:
            held = sum(_passes(v, comparison, null) for v in study.values())
            return Threshold(null, held, len(study))
        return Threshold(null)
    held = sum(_passes(v, comparison, null) for v in study.values())
    edge = envelope(values, comparison) if values else null
    if held == len(study):
        tight = max(null, edge) if comparison == "≥" else min(null, edge)
        return Threshold(tight, held, len(study))
    return Threshold(null, held, len(study), guard=edge)


@cache
def _records(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def records() -> dict:
    """Return the committed records (`lib/records.json`): the quick seed study and the last full GPU runs."""
    return _records(str(RECORDS_FILE))


def study_values(chapter: str, claim: str, profile: str) -> dict[str, float] | None:
    """Return {seed: value} of a check in the recorded quick seed study (None outside quick or unrecorded)."""
    if profile != "quick":
        return None
    found = records().get("quick", {}).get(chapter, {}).get("checks", {}).get(claim)
    return None if found is None else {s: float(v) for s, v in found["values"].items()}


def _context() -> tuple[str, str]:
    """Return (chapter, profile) of this run: the runner's environment, else `lib.start`'s arguments."""
    from lib import runtime

    current = runtime.current()
    chapter = os.environ.get("BOOK_CHAPTER") or (current.chapter if current else "") or ""
    profile = current.profile if current else (os.environ.get("BOOK_PROFILE") or "quick")
    return chapter, profile


def _write(record: dict) -> None:
    path = os.environ.get("BOOK_CLAIMS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def check(
    claim: str,
    value: float | None,
    *,
    kind: str,
    row: str | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    between: tuple[float, float] | None = None,
    close_to: float | None = None,
    tol: float | None = None,
    note: str = "",
    data: str = "",
    not_run: str | None = None,
    record: bool = True,
) -> ClaimRecord:
    """Check `value` against the claim's threshold; print one line, record it, raise if it must hold and fails.

    Exactly one of `at_least`, `at_most`, `between=(lo, hi)` or `close_to` (with `tol`) gives the claim's null
    (the tolerance of the arithmetic for `kind="exact"`); `threshold` derives the threshold from it and the
    recorded study. `kind` is one of `KINDS`; `row` names the verdict-table row a paper claim bears on.
    `not_run="reason"` (with `value=None`) records a check this profile does not compute. `data` names the data
    the value was measured on when it is not the paper's (e.g. "synthetic NLTCS (offline fallback)").
    `record=False` prints and raises as usual but keeps the check out of the report (for demonstrations).
    """
    if kind not in KINDS:
        raise ValueError(f"check({claim!r}): kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ROW_KINDS and not row:
        raise TypeError(f"check({claim!r}): a {KINDS[kind]} check names the verdict-table row it bears on (row=...)")
    comparison, null = _comparison(at_least, at_most, between, close_to, tol)
    chapter, profile = _context()
    smoked = smoke()
    if not_run is not None and value is not None and not smoked:
        raise TypeError(
            f"check({claim!r}): a measured value is never 'not run'; record it (a failing value is a finding)"
        )
    if value is None and not_run is None and not smoked:
        raise TypeError(f"check({claim!r}): no value; give not_run='why this profile does not compute it'")
    if smoked and not_run is None:
        not_run = SMOKE_NOTE
    if value is not None:
        try:
            value = float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"check({claim!r}): value must be a number, got {value!r}") from err
    derived = threshold(kind, comparison, null, study_values(chapter, claim, profile))
    if not_run is not None:
        outcome, value = "not run", None
    else:
        outcome = "holds" if _passes(value, comparison, derived.value) else "fails"
    result = ClaimRecord(
        claim=claim,
        kind=kind,
        row=row,
        value=None if value is None else (value if value == value else float("nan")),
        comparison=comparison,
        null=null,
        threshold=derived.value,
        outcome=outcome,
        seeds_holding=derived.seeds_holding,
        seeds_studied=derived.seeds_studied,
        guard=derived.guard,
        note=not_run if not_run is not None else note,
        data=data,
        chapter=chapter,
    )
    if record:
        _SESSION[claim] = result
        _write({**asdict(result), "value": None if value is None or value != value else value})
    print(check_line(result))
    stop = outcome == "fails" and (
        not derived.finding or not _passes(value, comparison, derived.guard)  # rule 3: a finding in range
    )
    if stop and os.environ.get(DEFER_ENV) != "1":
        raise ClaimNotReproduced(check_line(result))
    return result


def check_line(r: ClaimRecord) -> str:
    """Return the one readable line a check prints."""
    label = KINDS[r.kind]
    if r.outcome == "not run":
        return f"– not run [{label}]: {r.claim} ({r.note})"
    mark = "✔" if r.outcome == "holds" else "✘"
    line = f"{mark} {r.outcome} [{label}]: {r.claim}: {fmt(r.value)} {r.comparison} "
    line += _threshold_text(r.comparison, r.threshold)
    notes = []
    if r.seeds_studied:
        notes.append(f"holds on {r.seeds_holding} of {r.seeds_studied} seeds in the study")
        if r.guard is not None:
            side = "≥" if r.comparison == "≥" else "≤"
            notes.append(f"a finding, stopped only outside the study's range {side} {fmt(r.guard)}")
    elif r.kind != "exact":
        notes.append("no seed study: threshold at the null")
    if r.data:
        notes.append(f"on {r.data}")
    if r.note:
        notes.append(r.note)
    return line + (f"  ({'; '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Row:
    """A row of a chapter's verdict table: a claim of the paper, in the paper's words.

    `source` says which version of the paper states it; `cap` ("partly", reason) lowers the derived verdict where
    the experiment differs from the paper's in a way no check can see (scale, data); `not_tested` gives the reason
    when no check of this profile bears on the claim. `extension` marks a row that is the book's own reading, not a
    claim of the paper (it says how it goes beyond the paper): it is derived the same way, shown in its own table
    in plain words (holds / holds in part / does not hold), and never counted among the paper's claims.
    """

    id: str
    claim: str
    source: str = ""
    cap: tuple[str, str] | None = None
    not_tested: str = ""
    checks: tuple[str, ...] = field(default=())
    extension: str = ""


def _counts(r: ClaimRecord) -> tuple[int, int]:
    """Return (seeds holding, seeds) of a check: its study's counts, else this run's outcome as one seed."""
    if r.seeds_studied:
        return r.seeds_holding or 0, r.seeds_studied
    return int(r.outcome == "holds"), 1


def row_verdict(row: Row, checks: list[ClaimRecord]) -> tuple[str, str]:
    """Return (verdict, why) of a verdict-table row from the checks that bear on it."""
    ran = [c for c in checks if c.outcome != "not run"]
    if not ran:
        notes = sorted({c.note for c in checks if c.note})
        return "not tested here", row.not_tested or "; ".join(notes) or "no check of this profile measures it"
    supports = [_counts(c) for c in ran if c.kind in ("claim", "exact")]
    against = [_counts(c) for c in ran if c.kind == "contrary"]
    evidence = supports + [(n - k, n) for k, n in against]  # a contrary that holds is the claim failing
    if not evidence:
        return "not tested here", "only controls and guards bear on it"
    if all(k == n for k, n in evidence):
        verdict, why = "reproduced", ""
    elif all(k == 0 for k, _ in evidence):
        verdict, why = "not reproduced", ""
    else:
        verdict, why = "partly", "holds on some seeds or some checks only"
    if row.cap and VERDICTS.index(row.cap[0]) > VERDICTS.index(verdict):
        verdict, why = row.cap
    return verdict, why


def _measured(c: ClaimRecord) -> str:
    if c.outcome == "not run":
        return f"{c.claim}: not run ({c.note})"
    prefix = "against the claim: " if c.kind == "contrary" else ""
    study = study_values(c.chapter, c.claim, "quick") if c.seeds_studied else None
    thr = f"{c.comparison} {_threshold_text(c.comparison, c.null)}"
    if study:
        vals = list(study.values())
        text = f"{prefix}{c.claim}: {fmt(min(vals))} to {fmt(max(vals))} (holds {thr} on {c.seeds_holding} of "
        text += f"{c.seeds_studied} seeds)"
    else:
        text = f"{prefix}{c.claim}: {fmt(c.value)} ({c.outcome} {thr}, this run only)"
    return text + (f", on {c.data}" if c.data else "")


def _full_text(chapter: str, names: list[str]) -> str:
    run = records().get("full_gpu", {}).get(chapter)
    if not run:
        return "not yet run on a GPU"
    got = [
        f"{n}: {fmt(run['checks'][n]['value'])} ({run['checks'][n]['outcome']})"
        for n in names
        if n in run["checks"] and run["checks"][n].get("value") is not None
    ]
    stale = " (code changed since)" if run.get("stale") else ""
    return ("; ".join(got) or "not measured in that run") + f" [{run['gpu']}, `{run['commit']}`{stale}]"


def verdicts(rows: list[Row]) -> list[dict]:
    """Return the verdict of every row from the checks recorded in this process; record each verdict.

    Raises when a paper-claim check names no row of the table, or a row has no check and no `not_tested` reason.
    """
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"verdict table: duplicate row ids {sorted({i for i in ids if ids.count(i) > 1})}")
    orphans = [c.claim for c in _SESSION.values() if c.row and c.row not in ids]
    if orphans:
        raise ValueError(f"verdict table: checks name rows it does not have: {orphans}")
    empty = [r.id for r in rows if not r.not_tested and not any(c.row == r.id for c in _SESSION.values())]
    if empty:
        raise ValueError(f"verdict table: rows {empty} have no check; give not_tested='why'")
    out = []
    chapter, profile = _context()
    for r in rows:
        mine = [c for c in _SESSION.values() if c.row == r.id]
        verdict, why = row_verdict(r, mine)
        entry = {
            "record": "verdict",
            "chapter": chapter,
            "profile": profile,
            "row": r.id,
            "claim": r.claim,
            "source": r.source,
            "verdict": verdict,
            "why": why,
            "measured": [_measured(c) for c in mine if c.kind in ("claim", "contrary", "exact")]
            or [r.not_tested or "–"],
            "full": _full_text(chapter, [c.claim for c in mine]),
            "data": sorted({c.data for c in mine if c.data}),
            "extension": r.extension,
        }
        _write(entry)
        out.append(entry)
    return out


def verdict_counts(entries: list[dict]) -> dict[str, int]:
    """Return {verdict: number of the paper's rows} in the order of `VERDICTS` (the headline of a chapter); rows of
    the book's own (`extension`) are no claims of the paper and are not counted."""
    return {v: sum(e["verdict"] == v and not e.get("extension") for e in entries) for v in VERDICTS}


def headline(entries: list[dict]) -> str:
    """Return "paper claims: 3 reproduced, 1 partly, ..." for verdict entries (zeros left out)."""
    counts = verdict_counts(entries)
    return "paper claims: " + (", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none")


def _verdict_cell(e: dict) -> str:
    word = OWN_WORDS.get(e["verdict"], e["verdict"]) if e.get("extension") else f"**{e['verdict']}**"
    cell = word + (f": {e['why']}" if e["why"] else "")
    return cell + (f" (on {', '.join(e['data'])})" if e["data"] else "")


def verdict_markdown(entries: list[dict], profile: str) -> str:
    """Return the verdict table as Markdown: claim, verdict, what was measured, the full profile on a GPU; the rows
    of the book's own follow in a table of their own, in plain words."""
    seeds = "seed study" if profile == "quick" else "this run"
    tables = []
    for own in (False, True):
        rows = [e for e in entries if bool(e.get("extension")) == own]
        if not rows:
            continue
        first = "beyond the paper: the book's own reading" if own else "the paper's claim"
        lines = [
            f"| {first} | {'outcome' if own else 'verdict'} ({profile}) | measured here ({profile}, {seeds}) "
            "| full profile on a GPU |",
            "|---|---|---|---|",
        ]
        for e in rows:
            note = e.get("extension") if own else e["source"]
            claim = e["claim"] + (f" ({note})" if note else "")
            cells = [claim, _verdict_cell(e), "; ".join(e["measured"]), e["full"]]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def verdict_table(*rows: Row) -> None:
    """Derive, record and display the chapter's verdict table (one row per claim of the paper)."""
    entries = verdicts(list(rows))
    _, profile = _context()
    paper = [e for e in entries if not e.get("extension")]
    own = [e for e in entries if e.get("extension")]
    text = f"{verdict_markdown(paper, profile)}\n\n{headline(entries)}."
    if own:
        text += f"\n\n{verdict_markdown(own, profile)}"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(text))
            return
    except ImportError:
        pass
    print(text)
