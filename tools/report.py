"""Render the execution report as the book's "Reproducibility report" page, and provenance lines."""

from __future__ import annotations

import json

from tools import book


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


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
        f"{run['device']}; commit `{run['commit']}`, {run['date']}, seed {run['seed']}.",
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
            f"{_cell(c['claim'])}: {c['value']:.3g} {c['comparison']} {_cell(c['threshold'])}"
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
            f"{row.get('threads')} thread(s) · torch {row.get('torch')} · finished {row.get('finished')}."
        )
        if row["status"] != "ok" and row.get("error"):
            err = row["error"]
            out += ["", f"**Failed** in cell {err.get('cell_index')}: `{_cell(err.get('line'))}`"]
        out += ["", "| claim | measured | threshold | outcome | note |", "|---|---:|---|---|---|"]
        for c in row.get("claims", []):
            value = c["value"]
            shown = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
            out.append(
                f"| {_cell(c['claim'])} | {shown} | {c['comparison']} {_cell(c['threshold'])} | "
                f"{c['outcome']} | {_cell(c.get('note', ''))} |"
            )
        if not row.get("claims"):
            out.append("| (no claim checks recorded) | | | | |")
    page = "\n".join(out) + "\n"
    for path in sorted((book.ROOT / "reports").glob("*.json")):
        page += render_script_runs(json.loads(path.read_text()), titles)
    return page
