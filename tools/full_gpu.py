"""Run chapters in the `full` profile on the GPU present, one after another, and merge their rows into the record.

    python -m tools.full_gpu [CHAPTER ...] [--timeout 240] [--seed 0] [--results DIR]
    make full-gpu [C="slug slug"]

Each chapter runs alone (a chapter owns the GPU) as a plain script (`tools/script.py`: no Jupyter needed on a GPU
server), with its own time limit and `BOOK_CLAIMS_DEFER=1` (a check that fails is recorded and the chapter goes on:
a full run is a measurement, not a gate). Without chapters, every chapter runs, least verified first: those with no
row, then those whose row is stale for their code, then the oldest. After each chapter, its row (commit, GPU, torch,
seconds, peak GPU memory, every check and verdict, the chapter's study key in `full`) replaces that chapter's row in
`reports/full-profile-gpu.json`, keeping every other chapter's row, and `lib/records.json` is derived again. The
reproducibility page shows each row and marks the stale ones; each chapter's head shows its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tools import book, report, script, seeds

RECORD = seeds.GPU_RECORD


def load(path: Path = RECORD) -> dict:
    """Return the GPU record (`{"title", "note", "chapters": [row, ...]}`), empty when absent."""
    if path.exists():
        return json.loads(path.read_text())
    return {"title": "Full profile on one GPU", "note": "", "chapters": []}


def merge(record: dict, row: dict) -> dict:
    """Return `record` with `row` replacing the row of its chapter (other chapters' rows kept, TOC order)."""
    order = {slug: i for i, slug in enumerate(book.chapter_slugs())}
    rows = {r["chapter"]: r for r in record.get("chapters", [])}
    rows[row["chapter"]] = row
    return {**record, "chapters": sorted(rows.values(), key=lambda r: (order.get(r["chapter"], 1e9), r["chapter"]))}


def least_verified_first(slugs: list[str]) -> list[str]:
    """Return `slugs` ordered: no row yet, then rows stale for the chapter's code, then the oldest rows."""
    rows = report.gpu_rows()

    def rank(slug: str) -> tuple:
        row = rows.get(slug)
        return (0, "") if row is None else (1 if row["stale"] else 2, row.get("date") or "")

    return sorted(slugs, key=rank)


def gpu_name() -> str:
    """Return the name of the GPU present; exit with a sentence when there is none."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "error: no CUDA GPU here; the full profile's GPU run needs one (on a CPU, `python -m tools.execute "
            "--smoke` exercises every full code path with its loops cut short)"
        )
    return torch.cuda.get_device_name(0)


def run_chapter(slug: str, seed: int, timeout: float, results: Path | None, gpu: str) -> dict:
    """Run one chapter in `full` on the GPU; return its record row."""
    import os

    import torch

    source = book.chapter_source(slug)
    os.environ["BOOK_CLAIMS_DEFER"] = "1"
    os.environ["BOOK_THREADS"] = os.environ.get("BOOK_THREADS", str(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{slug}.py"
        path.write_text(script.to_script(source, seed))
        row = script.run_script(path, slug, "full", timeout, results)
    from tools.execute import git_commit

    return {
        **row,
        "seed": seed,
        "commit": git_commit(),
        "gpu": gpu,
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "key": book.study_key(source, "full", seed),
        "limit_s": timeout,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="slugs (default: every chapter, least verified first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=240, help="seconds allowed per chapter (default 240)")
    parser.add_argument("--results", type=Path, help="folder for each chapter's log and figures")
    parser.add_argument("--record", type=Path, default=RECORD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    gpu = gpu_name()
    slugs = [slug for slug, _ in book.resolve_chapters(args.chapters)]
    if not args.chapters:
        slugs = least_verified_first(slugs)
    print(f"full profile on {gpu}: {', '.join(slugs)} ({args.timeout:.0f} s each at most)", flush=True)
    failed = 0
    for slug in slugs:
        row = run_chapter(slug, args.seed, args.timeout, args.results, gpu)
        record = merge(load(args.record), row)  # re-read: nothing another run wrote is lost
        args.record.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        failed += row["status"] != "ok"
    if args.record == RECORD:
        seeds.write_records()
    subprocess.run(["git", "status", "--short", "--", str(args.record)], cwd=book.ROOT, check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
