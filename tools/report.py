"""Render the execution report as the book's "Reproducibility report" page, and provenance lines."""

from __future__ import annotations

import json
from pathlib import Path

from tools import book


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def value_text(value) -> str:
    """Return a measured value as the page shows it (never a bare `nan`)."""
    if value is None or value != value:
        return "not a number"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def when(stamp: str | None) -> str:
    """Return an ISO timestamp as `29 Nov 2026, 05:27 UTC` (or the text as it is when it is not one)."""
    from datetime import datetime

    if not stamp:
        return "–"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return moment.strftime("%d %b %Y, %H:%M UTC") if "T" in stamp else moment.strftime("%d %b %Y")


def check_counts(rows: list[dict]) -> dict[str, int]:
    """Return {outcome: number of checks} (holds, fails, not run) over the checks of several rows."""
    from lib.checks import OUTCOMES

    claims = [c for row in rows for c in row.get("claims", [])]
    return {o: sum(c.get("outcome") == o for c in claims) for o in OUTCOMES}


def verdict_counts(rows: list[dict]) -> dict[str, int]:
    """Return {verdict: number of paper claims} over the verdict tables of several rows."""
    from lib.checks import verdict_counts as count

    return count([v for row in rows for v in row.get("verdicts", [])])


def headline(row: dict) -> str:
    """Return a chapter's headline: its paper claims' verdicts, then its checks' outcomes at this run."""
    from lib.checks import headline as paper

    checks = check_counts([row])
    return (
        f"{paper(row.get('verdicts', []))} · checks at this seed: {checks['holds']} hold, {checks['fails']} fail "
        f"(findings), {checks['not run']} not run in this profile"
    )


def provenance_line(row: dict) -> str:
    """Return the MyST provenance line shown under a chapter's title."""
    return (
        f"**Provenance.** Executed at commit `{row.get('commit')}` · profile `{row.get('profile')}` · "
        f"device `{row.get('device')}` · seed {row.get('seed')} · {_num(row.get('seconds'))} s · "
        f"{headline(row)} ({{ref}}`details in the reproducibility report <repro-{row['chapter']}>`)."
    )


def gpu_rows() -> dict[str, dict]:
    """Return the rows of the full-profile GPU record by chapter, each marked `stale` when the chapter's code
    (its study key in the full profile) changed since the row was recorded."""
    path = book.ROOT / "reports" / "full-profile-gpu.json"
    if not path.exists():
        return {}
    out = {}
    for row in json.loads(path.read_text()).get("chapters", []):
        source = book.chapter_source(row["chapter"])
        key = book.study_key(source, "full", row.get("seed", 0)) if source.exists() else None
        out[row["chapter"]] = {**row, "stale": row.get("key") != key}
    return out


def full_cost_line(slug: str, gpu: dict[str, dict]) -> str:
    """Return the chapter head's line on what the full profile costs: its last GPU run, or that there is none."""
    how = 'Set `profile = "full"` in the parameters cell (on Colab, first *Runtime → Change runtime type → GPU*). '
    row = gpu.get(slug)
    if row is None:
        return f"**Full profile.** Not yet run on a GPU. {how}"
    stale = "; the chapter's code has changed since" if row["stale"] else ""
    status = "finished" if row["status"] == "ok" else row["status"]
    return (
        f"**Full profile.** Last run on {row.get('gpu')}: {status} in {_num(row.get('seconds'), '{:.0f}')} s at "
        f"commit `{row.get('commit')}`{stale}; {headline(row)}. {how}"
    )


def render_gpu_runs(gpu: dict[str, dict], titles: dict[str, str]) -> str:
    """Return the Markdown section of the full-profile runs on a GPU (one row per chapter, stale ones marked)."""
    out = [
        "",
        "## The full profile on a GPU",
        "",
        "Each chapter's last run in the `full` profile on a GPU (`make full-gpu`, record "
        "`reports/full-profile-gpu.json`). A row whose chapter's code changed since is marked *stale*.",
        "",
        "| chapter | GPU | commit | status | seconds | peak GPU memory (MB) | paper claims | checks failing |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for slug in book.chapter_slugs():
        row = gpu.get(slug)
        name = _cell(titles.get(slug, slug))
        if row is None:
            out.append(f"| {name} | – | – | not yet run on a GPU | | | | |")
            continue
        failed = "; ".join(
            f"{_cell(c['claim'])}: {value_text(c.get('value'))}" for c in row["claims"] if c["outcome"] == "fails"
        )
        from lib.checks import headline as paper

        stale = " (stale)" if row["stale"] else ""
        out.append(
            f"| {name} | {_cell(row.get('gpu'))} | `{row.get('commit')}`{stale} | {row['status']} | "
            f"{_num(row.get('seconds'), '{:.0f}')} | {_num(row.get('peak_gpu_mb'), '{:.0f}')} | "
            f"{paper(row.get('verdicts', []))} | {failed or '–'} |"
        )
    return "\n".join(out) + "\n"


def render(report: dict, titles: dict[str, str]) -> str:
    """Return the Markdown of the reproducibility page for `report` (chapters keyed by slug)."""
    from lib.checks import KINDS, VERDICTS, verdict_markdown

    rows = [report["chapters"][s] for s in book.chapter_slugs() if s in report["chapters"]]
    out = [
        "# Reproducibility report",
        "",
        "Every chapter of this build was executed by `tools/execute.py` (papermill) before the HTML was built. "
        "This page is generated from `_build/reports/execution.json`. A *paper claim* gets a verdict (reproduced, "
        "partly, not reproduced, not tested here) in its chapter's verdict table, derived from its checks and the "
        "seed study; a *check* has an outcome at this run (holds, fails, not run in this profile). A check that "
        "fails on some seeds of the study is a finding, listed first on {doc}`robustness`.",
        "",
        "## Summary",
        "",
        "| run | chapters | " + " | ".join(VERDICTS) + " | checks holding | failing | not run |",
        "|---|---:|" + "---:|" * len(VERDICTS) + "---:|---:|---:|",
    ]
    for profile in sorted({row.get("profile") for row in rows}):
        mine = [row for row in rows if row.get("profile") == profile]
        verdicts, checks = verdict_counts(mine), check_counts(mine)
        commits = ", ".join(sorted({f"`{row.get('commit')}`" for row in mine}))
        torch = ", ".join(sorted({str(row.get("torch")) for row in mine}))
        out.append(
            f"| this build, profile `{profile}` (commit {commits}, torch {torch}) | {len(mine)} | "
            + " | ".join(str(verdicts[v]) for v in VERDICTS)
            + f" | {checks['holds']} | {checks['fails']} | {checks['not run']} |"
        )
    out += [
        "",
        "## Chapters in this build",
        "",
        "| chapter | status | profile | seconds | peak memory (MB) | headline |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        out.append(
            f"| {{ref}}`{_cell(titles.get(row['chapter'], row['chapter']))} <repro-{row['chapter']}>` | "
            f"{row['status']} | {row.get('profile')} | {_num(row.get('seconds'))} | "
            f"{_num(row.get('peak_memory_mb'), '{:.0f}')} | {_cell(headline(row))} |"
        )
    for row in rows:
        slug = row["chapter"]
        out += ["", f"(repro-{slug})=", f"## {titles.get(slug, slug)}", ""]
        out.append(
            f"Chapter [{slug}](chapters/{slug}.ipynb) · commit `{row.get('commit')}` · seed {row.get('seed')} · "
            f"{row.get('threads')} thread(s) · torch {row.get('torch')} · finished {when(row.get('finished'))}."
        )
        if row["status"] != "ok" and row.get("error"):
            err = row["error"]
            out += ["", f"**Failed** in cell {err.get('cell_index')}: `{_cell(err.get('line'))}`"]
        if row.get("verdicts"):
            out += ["", verdict_markdown(row["verdicts"], row.get("profile") or "quick")]
        out += ["", "| check | about | measured | threshold | outcome | note |", "|---|---|---:|---|---|---|"]
        for c in row.get("claims", []):
            about = KINDS.get(c.get("kind"), "?") + (f" ({c['row']})" if c.get("row") else "")
            thr = "–" if c.get("threshold") is None else f"{c['comparison']} {_threshold(c)}"
            note = "; ".join(x for x in (c.get("note", ""), f"on {c['data']}" if c.get("data") else "") if x)
            out.append(
                f"| {_cell(c['claim'])} | {about} | {value_text(c.get('value'))} | {thr} | {c['outcome']} | "
                f"{_cell(note)} |"
            )
        if not row.get("claims"):
            out.append("| (no checks recorded) | | | | | |")
    return "\n".join(out) + "\n" + render_gpu_runs(gpu_rows(), titles)


def _threshold(c: dict) -> str:
    from lib.checks import _threshold_text

    return _cell(_threshold_text(c["comparison"], c["threshold"]))


def margin(value: float, comparison: str, threshold) -> float:
    """Return how far `value` is on the passing side of a threshold (negative: the check fails)."""
    if value is None or value != value:
        return float("-inf")
    if comparison == "≥":
        return value - threshold
    if comparison == "≤":
        return threshold - value
    if comparison == "∈":
        return min(value - threshold[0], threshold[1] - value)
    return threshold[1] - abs(value - threshold[0])  # ≈ c ± tol


def robustness_rows(record: dict, slug: str) -> list[dict]:
    """Return the measured checks of one chapter's seed study with margins to their derived thresholds (checks
    failing on some seed first)."""
    from tools import seeds

    rows = [r for r in seeds.summary(record, [slug]) if r["checked"] and r["threshold"] is not None]
    for r in rows:
        r["margins"] = {s: margin(v, r["comparison"], r["threshold"]) for s, v in r["values"].items()}
    return sorted(rows, key=lambda r: (r["passed"] == r["checked"], r["claim"]))


def robustness_figure(rows: list[dict], path: Path, title: str) -> None:
    """Draw each check's per-seed margins (scaled to the check's largest) against its threshold at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(rows) + 1.3))
    for y, r in enumerate(reversed(rows)):
        m = list(r["margins"].values())
        scale = max((abs(x) for x in m if abs(x) != float("inf")), default=1.0) or 1.0
        xs = [max(-1.05, min(1.05, x / scale)) for x in m]
        colors = ["#c0392b" if x < 0 else "#2e86c1" for x in m]
        ax.scatter(xs, [y] * len(xs), c=colors, s=14, alpha=0.8)
    ax.axvline(0, color="k", lw=1, ls="--", label="threshold")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([str(len(rows) - i) for i in range(len(rows))])
    ax.set_ylabel("check (numbered as in the table below)")
    ax.set_xlim(-1.1, 1.1)
    ax.set_xlabel("margin to the threshold, per seed (scaled; < 0 fails)")
    ax.set_title(title, fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _range(r: dict) -> str:
    return f"{value_text(r['min'])} to {value_text(r['max'])}"


def render_robustness(record: dict, titles: dict[str, str], figures: Path | None) -> str:
    """Return the Markdown of the page "How robust is each claim" (figures drawn into `figures`)."""
    from lib.checks import KINDS, _threshold_text
    from tools import seeds

    slugs = [s for s in book.chapter_slugs() if s in record["runs"]]
    stale = seeds.stale_studies(record)
    out = [
        "# How robust is each claim",
        "",
        f"Every check of the book was run over several seeds in the `{record.get('profile', 'quick')}` profile, "
        "each seed executing the chapter exactly as the book does (one thread, as CI), on a committed tree. The "
        f"record is `reports/seeds-{record.get('profile', 'quick')}.json`; `make seeds` re-runs the chapters whose "
        "code changed since (one chapter: `make seeds C=<slug>`; on a Slurm cluster: `make seeds EXECUTOR=slurm`). "
        "Thresholds are derived from it by one rule (`lib.checks.threshold`): a claim's null, tightened at most to "
        "what the worst seed allows; a check that fails on some seed keeps its null and is a *finding*.",
        "",
        "## Findings: checks that fail on some seed",
        "",
    ]
    failing = []
    for slug in slugs:
        failing += [(slug, r) for r in robustness_rows(record, slug) if r["passed"] < r["checked"]]
    if failing:
        out += [
            "| chapter | check | about | seeds holding | failing seeds | null | range over seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for slug, r in failing:
            about = KINDS.get(r["kind"], "?") + (f" ({r['row']})" if r["row"] else "")
            out.append(
                f"| {_cell(titles.get(slug, slug))} | {_cell(r['claim'])} | {about} | {r['passed']} of "
                f"{r['checked']} | {', '.join(map(str, r['failing_seeds']))} | {r['comparison']} "
                f"{_cell(_threshold_text(r['comparison'], r['null']))} | {_range(r)} |"
            )
    elif slugs:
        out.append("None: every recorded check holds on every seed studied.")
    else:
        out.append("No seed study is recorded yet: run `make seeds`.")
    for slug in slugs:
        rows = robustness_rows(record, slug)
        runs = record["runs"][slug]
        commits = sorted({row.get("commit") or "?" for row in runs.values()})
        threads = sorted({str(row.get("threads")) for row in runs.values()})
        ok = sum(r["passed"] == r["checked"] for r in rows)
        out += ["", f"(robust-{slug})=", f"## {titles.get(slug, slug)}", ""]
        out.append(
            f"{len(runs)} seed(s) at commit {', '.join(f'`{c}`' for c in commits)}, {'/'.join(threads)} thread(s)"
            f"{' (stale: the code changed since; re-run `make seeds`)' if slug in stale else ''}; {ok} of "
            f"{len(rows)} measured checks hold on every seed."
        )
        if figures is not None and rows:
            robustness_figure(rows, figures / f"{slug}.png", titles.get(slug, slug))
            out += [
                "",
                f"```{{figure}} robustness/{slug}.png",
                f":alt: Strip plot of the per-seed margins of the checks of {titles.get(slug, slug)}",
                "",
                "Each row is one check (numbered as in the table below), each dot one seed: its margin to the "
                "threshold (dashed line), scaled by the check's largest margin. Red dots fail the check.",
                "```",
            ]
        out += ["", "| # | check | about | seeds holding | range over seeds | threshold |", "|---|---|---|---|---|---|"]
        for n, r in enumerate(rows, 1):
            about = KINDS.get(r["kind"], "?") + (f" ({r['row']})" if r["row"] else "")
            out.append(
                f"| {n} | {_cell(r['claim'])} | {about} | {r['passed']} of {r['checked']} | {_range(r)} | "
                f"{r['comparison']} {_cell(_threshold_text(r['comparison'], r['threshold']))} |"
            )
    missing = [s for s in book.chapter_slugs() if s not in record["runs"]]
    if missing or seeds.STUDY_PENDING:
        out += ["", "## Studies still to run", ""]
        for slug in book.chapter_slugs():
            if slug in missing or slug in seeds.STUDY_PENDING:
                n = len(record["runs"].get(slug, {}))
                why = seeds.STUDY_PENDING.get(slug, "not studied yet")
                out.append(
                    f"- {titles.get(slug, slug)}: {n} of {seeds.STUDY_MIN_SEEDS} seeds recorded ({why}); its "
                    f"thresholds are the claims' nulls until it is. Run `make seeds C={slug}`."
                )
    return "\n".join(out) + "\n"
