"""Execute chapters with papermill and record the execution report.

    python -m tools.execute [CHAPTER ...] [--profile quick|full|auto] [--seed 0] [--jobs N] [--force]
    python -m tools.execute --smoke [CHAPTER ...]     # the full profile's smoke run on the CPU (make test runs it)

CHAPTER is a slug of `_toc.yml` or a path to a MyST notebook (`.md`); none means every chapter in the TOC.
Each chapter runs in its own process (in parallel on a CPU, one at a time on a GPU), from its `.md` source
(the committed notebooks are never modified), into `_build/executed/chapters/<slug>.ipynb`. A failing chapter
does not stop the others and keeps its last good executed notebook; the command exits non-zero at the end,
naming it. A chapter whose cache key (source, `lib/`, requirements, profile, seed) matches a passing run is
skipped. Per chapter, `_build/reports/execution.json` records status, seconds, peak memory, profile, device,
seed, commit, every claim check, and on failure the failing cell and error line.

`--smoke` runs every chapter with the `full` profile's configuration on the CPU with its loops cut short
(`BOOK_SMOKE=1`, see `lib/progress.py`), into `_build/smoke/` and `_build/reports/smoke.json`: it catches a shape,
device or branch error of the full profile before a GPU sees it. Its checks are recorded as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from tools import book

SMOKE_CAPS = Path(__file__).with_name("smoke_caps.json")  # sizes the smoke run caps, by config class


def git_commit() -> str:
    """Return the short commit of the tree (`lib.runtime.git_commit`), with `-dirty` when it has uncommitted changes."""
    from lib.runtime import git_commit as head

    commit = head(book.ROOT)
    if commit == "unknown":
        return commit
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=book.ROOT, capture_output=True, text=True
    )
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def run_one(source: Path, output: Path, result: Path, profile: str, seed: int, timeout: int) -> None:
    """Execute one chapter in this process (called in a subprocess) and write `result` as JSON."""
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.perf_counter()
    row: dict = {"status": "ok"}
    with tempfile.TemporaryDirectory() as tmp:
        notebook = jupytext.read(source)
        notebook.metadata.pop("jupytext", None)
        src_nb = Path(tmp) / f"{source.stem}.ipynb"
        nbformat.write(notebook, src_nb)
        try:
            papermill.execute_notebook(
                str(src_nb),
                str(output),
                parameters={"profile": profile, "seed": seed},
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout,
                report_mode=False,
            )
        except PapermillExecutionError as err:
            first = "\n".join(err.source.splitlines()[:3])
            row = {
                "status": "failed",
                "error": {
                    "cell_index": err.cell_index,
                    "execution_count": err.exec_count,
                    "cell_source": first,
                    "line": f"{err.ename}: {err.evalue}",
                },
            }
        except Exception as err:  # kernel death, timeout, bad notebook: still a row in the report
            row = {
                "status": "failed",
                "error": {
                    "cell_index": None,
                    "execution_count": None,
                    "cell_source": "",
                    "line": f"{type(err).__name__}: {err}",
                },
            }
    row["seconds"] = round(time.perf_counter() - started, 1)
    # The kernel is this process's child: its peak resident memory (kB on Linux).
    row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    result.write_text(json.dumps(row))


def _execute(slug: str, source: Path, args, threads: int, commit: str, out_dir: Path, report_dir: Path) -> dict:
    """Run one chapter in a subprocess; return its report row."""
    work = Path(tempfile.mkdtemp(prefix=f"exec-{slug}-"))
    claims_file, run_file, result = work / "claims.jsonl", work / "run.json", work / "result.json"
    output = work / f"{slug}.ipynb"
    env = {
        **os.environ,
        "BOOK_PROFILE": args.profile,
        "BOOK_CHAPTER": slug,
        "BOOK_CLAIMS_FILE": str(claims_file),
        "BOOK_RUN_FILE": str(run_file),
        "BOOK_QUIET_PROGRESS": "1",
        "BOOK_THREADS": str(threads),
        "BOOK_COMMIT": commit,
        **({"BOOK_SMOKE": "1", "BOOK_DEVICE": "cpu", "BOOK_SMOKE_CAPS": str(SMOKE_CAPS)} if _smoke(args) else {}),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "tools.execute",
        "--one",
        str(source),
        str(output),
        str(result),
        "--profile",
        args.profile,
        "--seed",
        str(args.seed),
        "--timeout",
        str(args.timeout),
    ]
    proc = subprocess.run(cmd, cwd=book.ROOT, env=env, capture_output=True, text=True)
    if result.exists():
        row = json.loads(result.read_text())
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        row = {
            "status": "failed",
            "seconds": None,
            "peak_memory_mb": None,
            "error": {"cell_index": None, "execution_count": None, "cell_source": "", "line": tail[0]},
        }
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    lines = [json.loads(line) for line in claims_file.read_text().splitlines()] if claims_file.exists() else []
    claims = [c for c in lines if c.get("record", "check") == "check"]
    verdicts = [c for c in lines if c.get("record") == "verdict"]
    row.update(
        {
            "chapter": slug,
            "source": str(source.relative_to(book.ROOT)) if source.is_relative_to(book.ROOT) else str(source),
            "profile": run.get("profile", args.profile),
            "device": run.get("device", "unknown"),
            "seed": args.seed,
            "threads": threads,
            "commit": commit,
            "torch": run.get("torch_version"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "claims": claims,
            "verdicts": verdicts,
            "key": book.cache_key(
                source, args.profile + ("-smoke" if getattr(args, "smoke", False) else ""), args.seed
            ),
        }
    )
    if row["status"] == "ok":
        dest = out_dir / "chapters" / f"{slug}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(output, dest)
    elif output.exists():  # keep the failed notebook for inspection; the last good one stays in place
        failed = report_dir / "failed" / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(output, failed)
        row["failed_notebook"] = str(failed)
    shutil.rmtree(work, ignore_errors=True)
    return row


def _smoke(args) -> bool:
    """True for the smoke run (callers such as the seed study pass no `smoke`)."""
    return bool(getattr(args, "smoke", False))


def _key_profile(args) -> str:
    """Return the profile as the cache key sees it (a smoke run is not a full run)."""
    return args.profile + ("-smoke" if _smoke(args) else "")


def _claims_summary(row: dict) -> str:
    from lib.checks import headline

    checks = row.get("claims", [])
    held = sum(c["outcome"] == "holds" for c in checks)
    ran = sum(c["outcome"] != "not run" for c in checks)
    return f"checks holding {held}/{ran}; {headline(row.get('verdicts', []))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="slugs or .md paths (default: every chapter in _toc.yml)")
    parser.add_argument("--profile", default=os.environ.get("BOOK_PROFILE", "quick"), choices=["quick", "full", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=0, help="parallel chapters (default: cores on CPU, 1 on GPU)")
    parser.add_argument("--force", action="store_true", help="re-run chapters even when cached")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    parser.add_argument("--out", type=Path, default=book.EXECUTED, help="folder for executed notebooks")
    parser.add_argument("--report", type=Path, default=book.REPORT_FILE, help="execution report (JSON)")
    parser.add_argument("--smoke", action="store_true", help="the full profile, loops cut short, on the CPU")
    parser.add_argument("--one", nargs=3, metavar=("SOURCE", "OUTPUT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.profile = "full"
        if args.out == book.EXECUTED:
            args.out = book.BUILD / "smoke"
        if args.report == book.REPORT_FILE:
            args.report = book.REPORTS / "smoke.json"

    if args.one:
        source, output, result = (Path(p) for p in args.one)
        run_one(source, output, result, args.profile, args.seed, args.timeout)
        return 0

    import torch

    if args.profile == "auto":
        args.profile = "full" if torch.cuda.is_available() else "quick"
    chapters = book.resolve_chapters(args.chapters)
    report = book.load_report(args.report)
    todo = []
    for slug, source in chapters:
        old = report["chapters"].get(slug)
        key = book.cache_key(source, _key_profile(args), args.seed)
        executed = args.out / "chapters" / f"{slug}.ipynb"
        if not args.force and old and old.get("status") == "ok" and old.get("key") == key and executed.exists():
            print(f"cached   {slug:<28} (unchanged since a passing run; --force re-runs it)")
            continue
        todo.append((slug, source))

    gpu = not args.smoke and torch.cuda.is_available() and os.environ.get("BOOK_DEVICE", "") in ("", "cuda")
    cores = os.cpu_count() or 1
    jobs = 1 if gpu else max(1, min(args.jobs or cores, len(todo) or 1))
    # One thread per chapter on a CPU, however many run at once: some values depend on the order of floating-point
    # sums, and the seed study (tools/seeds.py) records them at one thread.
    threads = max(1, cores // jobs) if gpu else 1
    commit = git_commit()
    if todo:
        print(
            f"executing {len(todo)} chapter(s), profile {args.profile}, seed {args.seed}, "
            f"{jobs} at a time, {threads} thread(s) each"
        )
    failed = []

    def work(item):
        slug, source = item
        row = _execute(slug, source, args, threads, commit, args.out, args.report.parent)
        line = (
            f"{row['status']:<8} {slug:<28} {row.get('seconds') or 0:6.1f} s "
            f"{row.get('peak_memory_mb') or 0:7.0f} MB  {_claims_summary(row)}"
        )
        if row["status"] != "ok":
            err = row["error"]
            line += f"\n         cell {err['cell_index']} [{err['execution_count']}]: {err['line']}"
        print(line, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(work, todo):
            report["chapters"][row["chapter"]] = row
            book.save_report(report, args.report)  # after each chapter: nothing is lost on a crash
            if row["status"] != "ok":
                failed.append(row["chapter"])
    if failed:
        print(f"FAILED: {', '.join(failed)} (details in {args.report})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
