"""Render the execution report as the book's "Reproducibility report" page, and provenance lines."""

from __future__ import annotations

import json
import re
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


def outcome_counts(rows: list[dict]) -> tuple[int, int, int]:
    """Return (reproduced, not reproduced, skipped) over the claims of several report rows."""
    claims = [c for row in rows for c in row.get("claims", [])]
    return tuple(sum(c["outcome"] == o for c in claims) for o in ("reproduced", "not reproduced", "skipped"))


def claims_counts(row: dict) -> tuple[int, int, int]:
    """Return (reproduced, checked, skipped) claim counts of a report row."""
    claims = row.get("claims", [])
    checked = [c for c in claims if c["outcome"] != "skipped"]
    return sum(c["outcome"] == "reproduced" for c in checked), len(checked), len(claims) - len(checked)


def provenance_line(row: dict) -> str:
    """Return the MyST provenance line shown under a chapter's title."""
    ok, checked, skipped = claims_counts(row)
    skipped_txt = f", {skipped} skipped in this profile" if skipped else ""
    return (
        f"**Provenance.** Executed at commit `{row.get('commit')}` · profile `{row.get('profile')}` · "
        f"device `{row.get('device')}` · seed {row.get('seed')} · {_num(row.get('seconds'))} s · "
        f"claims reproduced {ok}/{checked}{skipped_txt} "
        f"({{ref}}`details in the reproducibility report <repro-{row['chapter']}>`)."
    )


def render_script_runs(run: dict, titles: dict[str, str]) -> str:
    """Return a Markdown section for a recorded run of the chapters as scripts (e.g. the full profile on a GPU)."""
    out = [
        "",
        f"## {run['title']}",
        "",
        f"{run['device']}; commit `{run['commit']}`, {when(run['date'])}, seed {run['seed']}.",
        run["how"],
        "",
        "| chapter | status | seconds | claims reproduced | not reproduced |",
        "|---|---|---:|---|---|",
    ]
    for row in run["chapters"]:
        claims = row["claims"]
        ok = sum(c["outcome"] == "reproduced" for c in claims)
        checked = sum(c["outcome"] != "skipped" for c in claims)
        failed = "; ".join(
            f"{_cell(c['claim'])}: {value_text(c['value'])} {c['comparison']} {_cell(c['threshold'])}"
            for c in claims
            if c["outcome"] == "not reproduced"
        )
        name = titles.get(row["chapter"], row["chapter"])
        out.append(f"| {_cell(name)} | {row['status']} | {row['seconds']:.0f} | {ok}/{checked} | {failed or '–'} |")
    return "\n".join(out) + "\n"


def render(report: dict, titles: dict[str, str]) -> str:
    """Return the Markdown of the reproducibility page for `report` (chapters keyed by slug)."""
    rows = [report["chapters"][s] for s in book.chapter_slugs() if s in report["chapters"]]
    out = [
        "# Reproducibility report",
        "",
        "Every chapter of this build was executed by `tools/execute.py` (papermill) before the HTML was built. "
        "This page is generated from `_build/reports/execution.json`: one row per chapter, then every claim "
        "check with its measured value and threshold. A claim marked *skipped* needs the `full` profile.",
        "",
        "## Summary",
        "",
        "| run | chapters | claims reproduced | not reproduced | skipped in that profile |",
        "|---|---:|---:|---:|---:|",
    ]
    profiles = sorted({row.get("profile") for row in rows})
    for profile in profiles:
        mine = [row for row in rows if row.get("profile") == profile]
        ok, bad, skipped = outcome_counts(mine)
        commits = ", ".join(sorted({f"`{row.get('commit')}`" for row in mine}))
        torch = ", ".join(sorted({str(row.get("torch")) for row in mine}))
        out.append(
            f"| this build, profile `{profile}` (commit {commits}, torch {torch}) | "
            f"{len(mine)} | {ok} | {bad} | {skipped} |"
        )
    for path in sorted((book.ROOT / "reports").glob("full-profile*.json")):
        run = json.loads(path.read_text())
        ok, bad, skipped = outcome_counts(run["chapters"])
        statuses = [c["status"] for c in run["chapters"]]
        status = ", ".join(f"{statuses.count(x)} {x}" for x in sorted(set(statuses)))
        out.append(
            f"| {run['title']}: {run['device']}, commit `{run['commit']}`, {when(run['date'])} | "
            f"{len(run['chapters'])} ({status}) | {ok} | {bad} | {skipped} |"
        )
    out += [
        "",
        "## Chapters in this build",
        "",
        "| chapter | status | profile | device | seconds | peak memory (MB) | claims reproduced |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        ok, checked, skipped = claims_counts(row)
        skip = f" (+{skipped} skipped)" if skipped else ""
        out.append(
            f"| {{ref}}`{_cell(titles.get(row['chapter'], row['chapter']))} <repro-{row['chapter']}>` | "
            f"{row['status']} | {row.get('profile')} | {row.get('device')} | {_num(row.get('seconds'))} | "
            f"{_num(row.get('peak_memory_mb'), '{:.0f}')} | {ok}/{checked}{skip} |"
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
        out += ["", "| claim | measured | threshold | outcome | note |", "|---|---:|---|---|---|"]
        for c in row.get("claims", []):
            out.append(
                f"| {_cell(c['claim'])} | {value_text(c['value'])} | {c['comparison']} {_cell(c['threshold'])} | "
                f"{c['outcome']} | {_cell(c.get('note', ''))} |"
            )
        if not row.get("claims"):
            out.append("| (no claim checks recorded) | | | | |")
    page = "\n".join(out) + "\n"
    for path in sorted((book.ROOT / "reports").glob("full-profile*.json")):
        page += render_script_runs(json.loads(path.read_text()), titles)
    return page


def margin(value: float, comparison: str, threshold: str) -> float:
    """Return how far `value` is on the passing side of a recorded threshold (negative: the check fails)."""
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", threshold)]
    if value != value:
        return float("-inf")
    if comparison == "≥":
        return value - numbers[0]
    if comparison == "≤":
        return numbers[0] - value
    if comparison == "∈":
        return min(value - numbers[0], numbers[1] - value)
    return numbers[1] - abs(value - numbers[0])  # ≈ c ± tol


def robustness_rows(record: dict, slug: str) -> list[dict]:
    """Return the checked claims of one chapter's seed study, with margins (claims failing on a seed first)."""
    from tools import seeds

    rows = [r for r in seeds.summary(record, [slug]) if r["checked"]]
    for r in rows:
        r["margins"] = {s: margin(v, r["comparison"], r["threshold"]) for s, v in r["values"].items()}
        r["smallest"] = min(r["margins"].values())
    return sorted(rows, key=lambda r: (r["passed"] == r["checked"], r["claim"]))


def robustness_figure(rows: list[dict], path: Path, title: str) -> None:
    """Draw each claim's per-seed margins (scaled to the claim's largest) against its threshold at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    for y, r in enumerate(reversed(rows)):
        m = list(r["margins"].values())
        scale = max((abs(x) for x in m if abs(x) != float("inf")), default=1.0) or 1.0
        xs = [max(-1.05, min(1.05, x / scale)) for x in m]
        colors = ["#c0392b" if x < 0 else "#2e86c1" for x in m]
        ax.scatter(xs, [y] * len(xs), c=colors, s=14, alpha=0.8)
    ax.axvline(0, color="k", lw=1, ls="--", label="threshold")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([(r["claim"][:62] + "…") if len(r["claim"]) > 63 else r["claim"] for r in reversed(rows)])
    ax.set_xlim(-1.1, 1.1)
    ax.set_xlabel("margin to the threshold, per seed (scaled by the claim's largest margin; < 0 fails)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_robustness(record: dict, titles: dict[str, str], figures: Path | None) -> str:
    """Return the Markdown of the page "How robust is each claim" (figures drawn into `figures`)."""
    slugs = [s for s in book.chapter_slugs() if s in record["runs"]]
    seeds_run = sorted({int(k) for s in slugs for k in record["runs"][s]})
    commits = sorted({row.get("commit") or "?" for s in slugs for row in record["runs"][s].values()})
    out = [
        "# How robust is each claim",
        "",
        f"Every claim check of the book was run over several seeds in the `{record.get('profile', 'quick')}` "
        f"profile (seeds {', '.join(map(str, seeds_run)) or 'none'}; commits {', '.join(commits) or 'none'}), "
        "each seed executing the chapter exactly as the book does. The record is "
        f"`reports/seeds-{record.get('profile', 'quick')}.json`; re-run it with `make seeds` (one chapter: "
        "`make seeds C=<slug>`; on a Slurm cluster: `make seeds EXECUTOR=slurm`). Thresholds follow the rule "
        "written in `lib/checks.py`: a claim's null, tightened at most to what the worst seed allows.",
        "",
        "## Claims that fail on some seed",
        "",
    ]
    failing = []
    for slug in slugs:
        failing += [(slug, r) for r in robustness_rows(record, slug) if r["passed"] < r["checked"]]
    if failing:
        out += [
            "| chapter | claim | seeds passing | failing seeds | threshold | range over seeds |",
            "|---|---|---|---|---|---|",
        ]
        for slug, r in failing:
            out.append(
                f"| {_cell(titles.get(slug, slug))} | {_cell(r['claim'])} | {r['passed']}/{r['checked']} | "
                f"{', '.join(map(str, r['failing_seeds']))} | {r['comparison']} {_cell(r['threshold'])} | "
                f"{value_text(r['min'])} to {value_text(r['max'])} |"
            )
    elif slugs:
        out.append("None: every recorded claim holds on every seed studied.")
    else:
        out.append("No seed study is recorded yet: run `make seeds`.")
    for slug in slugs:
        rows = robustness_rows(record, slug)
        n_seeds = len(record["runs"][slug])
        ok = sum(r["passed"] == r["checked"] for r in rows)
        out += ["", f"(robust-{slug})=", f"## {titles.get(slug, slug)}", ""]
        out.append(f"{n_seeds} seed(s) recorded; {ok} of {len(rows)} checked claims hold on every seed.")
        if figures is not None and rows:
            robustness_figure(rows, figures / f"{slug}.png", titles.get(slug, slug))
            out += [
                "",
                f"```{{figure}} robustness/{slug}.png",
                f":alt: Strip plot of the per-seed margins of the claims of {titles.get(slug, slug)}",
                "",
                "Each row is one claim, each dot one seed: its margin to the threshold (dashed line), scaled by "
                "the claim's largest margin. Red dots fail the check.",
                "```",
            ]
        out += ["", "| claim | seeds passing | smallest value | largest value | threshold |", "|---|---|---|---|---|"]
        for r in rows:
            out.append(
                f"| {_cell(r['claim'])} | {r['passed']}/{r['checked']} | {value_text(r['min'])} | "
                f"{value_text(r['max'])} | {r['comparison']} {_cell(r['threshold'])} |"
            )
    from tools import seeds

    missing = [s for s in book.chapter_slugs() if s not in record["runs"]]
    if missing or seeds.STUDY_PENDING:
        out += ["", "## Studies still to run", ""]
        for slug in book.chapter_slugs():
            if slug in missing or slug in seeds.STUDY_PENDING:
                n = len(record["runs"].get(slug, {}))
                why = seeds.STUDY_PENDING.get(slug, "not studied yet")
                out.append(
                    f"- {titles.get(slug, slug)}: {n} of {seeds.STUDY_MIN_SEEDS} seeds recorded ({why}); its "
                    f"thresholds are not yet backed by a full study. Run `make seeds C={slug}`."
                )
    return "\n".join(out) + "\n"


def seed_note(row: dict) -> str:
    """Return the note a chapter shows beside a check that fails on some seeds of the study."""
    return (
        f"**Seed study.** The check above holds on {row['passed']} of {row['checked']} seeds in the quick "
        f"profile (it fails on seed {', '.join(map(str, row['failing_seeds']))}); see "
        f"{{ref}}`how robust each claim is <robust-{row['chapter']}>`."
    )
