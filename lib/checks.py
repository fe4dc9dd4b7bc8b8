"""Claim checks: compare a measured value with a paper's claim, print one line, record it, raise.

Explained in chapter "Using this book". Every experiment of the book ends with `check(...)`.
The runner (`tools/execute.py`) sets `BOOK_CLAIMS_FILE`; each check appends one JSON line there,
and the reproducibility report is built from those lines. A seed study (`tools/seeds.py`) also sets
`BOOK_CLAIMS_DEFER=1`: a claim that does not hold is then printed and recorded but does not stop the
chapter, so one failing claim does not hide the values of the claims after it on that seed.

How a threshold is chosen (the rule, written once; `tools/seeds.py` records the study it reads):

1. An exact claim (a construction, an identity, a bound that holds by proof) gets the tolerance of the
   arithmetic (e.g. 1e-10 in float64), never a value read off a run.
2. Otherwise the threshold is the claim's *null*: the value at which the claim would be false (0 for
   "A beats B", 1 for "a ratio exceeds one", the ablation arm's value for "the effect comes from M"),
   moved towards the measured values by at most the recorded seed study allows: with the study's values
   v_1..v_S over S >= 8 seeds (`reports/seeds-quick.json`), an `at_least` threshold may be raised up to
   min(v) - 0.25 * (max(v) - min(v)), rounded outward to two significant digits (mirrored for `at_most`),
   and never past the null. A threshold stricter than the null catches regressions; one looser than it
   cannot fail when the claim is false, and is a defect.
3. When the study's worst seed is on the wrong side of the null, the claim does not hold on every seed in
   this profile: the threshold stays at the null, the chapter says next to the check how many seeds pass,
   and the "How robust is each claim" page lists it first. Thresholds are never re-tuned to pass.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

DEFER_ENV = "BOOK_CLAIMS_DEFER"
"""Set to "1" (by the seed study) to record a claim that does not hold without raising."""

RECORDS: list[ClaimRecord] = []
"""Every check made in this process, in order."""


class ClaimNotReproduced(AssertionError):
    """Raised when a measured value does not satisfy the paper's claim."""


@dataclass(frozen=True)
class ClaimRecord:
    """One claim check: what was claimed, what was measured, and whether it held."""

    claim: str
    value: float
    comparison: str
    threshold: str
    outcome: str  # "reproduced", "not reproduced" or "skipped"
    note: str = ""
    chapter: str = ""

    @property
    def passed(self) -> bool:
        """True unless the claim was checked and did not hold."""
        return self.outcome != "not reproduced"

    def _ipython_display_(self) -> None:
        """Show nothing in a notebook: `check` has already printed its one readable line."""


def _fmt(x: float) -> str:
    if isinstance(x, bool):
        return str(x)
    x = float(x)
    if x == 0 or (1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}"
    return f"{x:.3e}"


def _compare(value: float, at_least, at_most, between, close_to, tol) -> tuple[bool, str, str]:
    given = [
        k
        for k, v in (
            ("at_least", at_least),
            ("at_most", at_most),
            ("between", between),
            ("close_to", close_to),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise TypeError(f"give exactly one of at_least, at_most, between, close_to (got {given or 'none'})")
    if close_to is None and tol is not None:
        raise TypeError("tol only goes with close_to")
    kind = given[0]
    if kind == "at_least":
        return value >= at_least, "≥", _fmt(at_least)
    if kind == "at_most":
        return value <= at_most, "≤", _fmt(at_most)
    if kind == "between":
        lo, hi = between
        if not lo <= hi:
            raise ValueError(f"between=({lo}, {hi}) is empty")
        return lo <= value <= hi, "∈", f"[{_fmt(lo)}, {_fmt(hi)}]"
    if tol is None or tol < 0:
        raise TypeError("close_to needs a tolerance tol >= 0")
    return abs(value - close_to) <= tol, "≈", f"{_fmt(close_to)} ± {_fmt(tol)}"


def check(
    claim: str,
    value: float,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    between: tuple[float, float] | None = None,
    close_to: float | None = None,
    tol: float | None = None,
    note: str = "",
    skip: str | None = None,
    record: bool = True,
) -> ClaimRecord:
    """Check `value` against the claim's threshold; print, record, and raise if it does not hold.

    Exactly one of `at_least`, `at_most`, `between=(lo, hi)` or `close_to` (with `tol`) is given.
    `skip="reason"` records the claim as not checked in this run (e.g. it needs the `full` profile);
    the threshold is still validated, so a skipped check is a real check in the other profile.
    `record=False` prints and raises as usual but keeps the check out of the report (for demonstrations).
    Raises `ClaimNotReproduced` when the measured value does not satisfy the threshold, unless the
    environment variable `BOOK_CLAIMS_DEFER` is "1" (seed studies record every claim of every seed).
    """
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"check({claim!r}): value must be a number, got {value!r}") from err
    ok, comparison, threshold = _compare(value, at_least, at_most, between, close_to, tol)
    if math.isnan(value):
        ok = False
    if skip:
        outcome, note = "skipped", (skip if not note else f"{skip}; {note}")
    else:
        outcome = "reproduced" if ok else "not reproduced"
    result = ClaimRecord(
        claim=claim,
        value=value,
        comparison=comparison,
        threshold=threshold,
        outcome=outcome,
        note=note,
        chapter=os.environ.get("BOOK_CHAPTER", ""),
    )
    path = os.environ.get("BOOK_CLAIMS_FILE")
    if record:
        RECORDS.append(result)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    mark = {"reproduced": "✔ reproduced", "not reproduced": "✘ NOT reproduced", "skipped": "– skipped"}
    line = f"{mark[outcome]}: {claim}: {_fmt(value)} {comparison} {threshold}"
    print(line + (f"  ({note})" if note else ""))
    if outcome == "not reproduced" and os.environ.get(DEFER_ENV) != "1":
        raise ClaimNotReproduced(line)
    return result
