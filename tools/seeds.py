"""Seed studies: run chapters over many seeds, exactly as the book runs them, and record every claim's value.

    python -m tools.seeds [--chapter SLUG ...] [--profile quick|full] [--seeds 0-7] [--executor local|slurm]
                          [--jobs N] [--force] [--partition P] [--gpus-per-job G] [--time-min M]
    make seeds [C=<slug>] [PROFILE=quick|full] [SEEDS=0-7] [EXECUTOR=local|slurm]

Every (chapter, seed) is one job submitted through submitit: the `local` executor runs as many jobs at once as
the machine allows (cores // threads on a CPU; one job per GPU, pinned with CUDA_VISIBLE_DEVICES, on a multi-GPU
box), the `slurm` executor submits to a cluster with the partition, GPUs per job and time limit from the flags
or from `[tool.book.slurm]` in `pyproject.toml`. Each job executes the chapter through the same papermill path
as `tools/execute.py` (plain-script mode where Jupyter is absent), with the seed as the notebook parameter.

Every job computes from scratch, through a cache of the study's own (`_build/seeds/<profile>/cache`), never from
results another run cached. Jobs are idempotent: a (chapter, seed) whose record is `ok` under the current cache key
is not run again (`--force` re-runs it). A failed job is recorded with its cell and error line; the others finish.
The record (`reports/seeds-<profile>.json`) is written under a file lock after every finished job, so an
interrupted study (Ctrl-C) leaves every finished job recorded. The book renders it as the page "How robust is each
claim".
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import sys
import time
import tomllib
from argparse import Namespace
from datetime import UTC, datetime
from pathlib import Path

from lib import checks
from lib.checks import DEFER_ENV, STUDY_MIN_SEEDS  # noqa: F401 (tools.report reads it here)
from tools import book

REPORTS = book.ROOT / "reports"
GPU_RECORD = REPORTS / "full-profile-gpu.json"
# Chapters whose quick study has fewer than STUDY_MIN_SEEDS seeds recorded yet, with the reason. The book's page
# "How robust is each claim" lists them, and the staleness test fails once an entry is no longer true.
STUDY_PENDING: dict[str, str] = {}
CLAIM_FIELDS = ("claim", "kind", "row", "value", "comparison", "null", "threshold", "outcome", "data")


def record_path(profile: str) -> Path:
    """Return `reports/seeds-<profile>.json`, the committed record of a profile's seed study."""
    return REPORTS / f"seeds-{profile}.json"


def parse_seeds(text: str) -> list[int]:
    """Return the seeds of `0-7`, `0,3,5` or `0-3,8`; raise ValueError with a sentence otherwise."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"seeds {text!r}: write them as 0-7, 0,3,5 or 0-3,8")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ValueError(f"seeds {text!r}: the range {part} is empty")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def load_record(path: Path) -> dict:
    """Return a seed-study record (`{"profile", "runs": {slug: {seed: row}}}`), empty when absent."""
    if path.exists():
        return json.loads(path.read_text())
    return {"profile": path.stem.removeprefix("seeds-"), "runs": {}}


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock beside `path` (several studies may write one record at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def store(path: Path, row: dict) -> None:
    """Add one job's row to the record at `path` (read, update, atomic replace, under the lock)."""
    with locked(path):
        record = load_record(path)
        record["runs"].setdefault(row["chapter"], {})[str(row["seed"])] = row
        runs = sorted(record["runs"].items())
        record["runs"] = {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in runs}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        tmp.replace(path)


def slim(row: dict) -> dict:
    """Return the part of an execution row that the study keeps (no notebook paths, claims without notes)."""
    keep = ("chapter", "seed", "profile", "status", "seconds", "peak_memory_mb", "device", "threads", "commit")
    out = {k: row.get(k) for k in keep}
    out.update(torch=row.get("torch"), finished=row.get("finished"), key=row.get("key"))
    out["claims"] = [{k: c.get(k) for k in CLAIM_FIELDS} for c in row.get("claims", [])]
    if row.get("error"):
        out["error"] = row["error"]
    return out


def run_job(slug: str, source: str, profile: str, seed: int, timeout: int, threads: int, gpu: int | None) -> dict:
    """Run one chapter at one seed as the book does; return its slimmed execution row (runs inside a job)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.environ[DEFER_ENV] = "1"  # a claim that fails is recorded and the chapter goes on (lib/checks.py)
    from tools import execute

    work = book.BUILD / "seeds" / profile / f"seed-{seed}"
    # A cache of the study's own: results cached by other runs (another thread count, another machine) would
    # give values that a fresh run, as CI makes, does not reproduce.
    os.environ["BOOK_CACHE_DIR"] = str(book.BUILD / "seeds" / profile / "cache")
    args = Namespace(profile=profile, seed=seed, timeout=timeout)
    try:
        import papermill  # noqa: F401

        row = execute._execute(slug, Path(source), args, threads, execute.git_commit(), work, work)
    except ImportError:  # no Jupyter on this machine: the chapter as a plain script
        from tools import script

        scripted = work / f"{slug}.py"
        scripted.parent.mkdir(parents=True, exist_ok=True)
        scripted.write_text(script.to_script(Path(source), seed))
        row = script.run_script(scripted, slug, profile, None, None)
        row.update(seed=seed, commit=execute.git_commit())
    row.update(seed=seed, key=book.study_key(Path(source), profile, seed), commit=code_commit(Path(source)))
    return slim(row)


def slurm_defaults() -> dict:
    """Return `[tool.book.slurm]` of pyproject.toml (partition, gpus_per_job, time_min), empty when absent."""
    data = tomllib.loads((book.ROOT / "pyproject.toml").read_text())
    return data.get("tool", {}).get("book", {}).get("slurm", {})


def make_executor(kind: str, folder: Path, opts: Namespace):
    """Return a submitit executor: `local` (this machine) or `slurm` (a cluster)."""
    import submitit

    os.environ["PYTHONPATH"] = os.pathsep.join([str(book.ROOT), os.environ.get("PYTHONPATH", "")])
    env_setup = [f"export PYTHONPATH={book.ROOT}:${{PYTHONPATH:-}}", f"cd {book.ROOT}"]
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=opts.time_min)
        return executor
    if kind != "slurm":
        raise SystemExit(f"error: unknown executor {kind!r}: use local or slurm")
    executor = submitit.SlurmExecutor(folder=folder)
    params = {"time": opts.time_min, "setup": env_setup, "job_name": "book-seeds", "cpus_per_task": opts.cpus}
    if opts.partition:
        params["partition"] = opts.partition
    if opts.gpus_per_job:
        params["gpus_per_node"] = opts.gpus_per_job
    executor.update_parameters(**params)
    return executor


def dirty_files(chapters: list[tuple[str, Path]]) -> list[str]:
    """Return the files of the chapters' study keys that differ from the commit (a study refuses them)."""
    import subprocess

    paths = {p for _, source in chapters for p in book.study_files(source)}
    outside = sorted(str(p) for p in paths if not p.is_relative_to(book.ROOT))
    files = sorted(str(p.relative_to(book.ROOT)) for p in paths if p.is_relative_to(book.ROOT))
    out = subprocess.run(
        ["git", "status", "--porcelain", "--", *files], cwd=book.ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return outside  # not a git checkout (an unpacked release): nothing to compare with
    return outside + [line[3:] for line in out.stdout.splitlines() if line.strip()]


def code_commit(source: Path) -> str:
    """Return the last commit that changed what a chapter's study key covers (its code cells, the lib modules
    they import, the requirements): the commit a study of the chapter is a study of ("-dirty" when uncommitted)."""
    import subprocess

    if not source.resolve().is_relative_to(book.ROOT):
        return "outside the repository"
    files = [str(p.relative_to(book.ROOT)) for p in book.study_files(source) if p.is_relative_to(book.ROOT)]
    log = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", *files], cwd=book.ROOT, capture_output=True, text=True
    )
    commit = log.stdout.strip() or "unknown"
    return commit + ("-dirty" if dirty_files([(source.stem, source)]) else "")


def local_slots(profile: str, jobs: int) -> tuple[list[int | None], int]:
    """Return the job slots of this machine (a GPU index each, or None on a CPU) and threads per job.

    On a CPU every job gets one thread, as CI's runner gives each chapter on its two cores: a value that depends
    on the order of floating-point sums (some do, by a lot) is then the value CI computes.
    """
    gpus = 0
    if os.environ.get("BOOK_DEVICE", "") in ("", "cuda"):
        with contextlib.suppress(ImportError):
            import torch

            gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    if gpus:
        n = min(jobs or gpus, gpus)
        return list(range(n)), max(1, cores // n)
    n = max(1, jobs or cores)
    return [None] * n, 1


def _status(done: int, running: int, failed: int, total: int) -> str:
    return f"[{time.strftime('%H:%M:%S')}] jobs done {done}/{total}, running {running}, failed {failed}"


def study(
    chapters: list[tuple[str, Path]], seeds: list[int], opts: Namespace, record: Path | None = None
) -> list[dict]:
    """Run every (chapter, seed) not yet recorded under its cache key; return the rows of the jobs run."""
    record = record or record_path(opts.profile)
    have = load_record(record)["runs"]
    todo = []
    for slug, source in chapters:
        for seed in seeds:
            old = have.get(slug, {}).get(str(seed))
            if (
                not opts.force
                and old
                and old.get("status") == "ok"
                and old.get("key") == book.study_key(source, opts.profile, seed)
            ):
                continue
            todo.append((slug, source, seed))
    dirty = [] if getattr(opts, "allow_dirty", False) else dirty_files(sorted({(s, p) for s, p, _ in todo}))
    if dirty:
        raise SystemExit(
            "error: a study runs on committed code (its record names the commit); commit or stash: " + ", ".join(dirty)
        )
    skipped = len(chapters) * len(seeds) - len(todo)
    print(f"seed study: {len(todo)} job(s) to run, {skipped} already recorded under the current cache key", flush=True)
    if not todo:
        return []
    folder = book.BUILD / "seeds" / "submitit" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"  # one per study
    executor = make_executor(opts.executor, folder, opts)
    if opts.executor == "local":
        slots, threads = local_slots(opts.profile, opts.jobs)
    else:  # the cluster schedules: every job at once, each with the cores it asked for
        slots, threads = [None] * len(todo), opts.cpus
    print(f"executor {opts.executor}: {len(slots)} job(s) at a time, {threads} thread(s) each", flush=True)
    free, running, rows, failed = list(range(len(slots))), {}, [], 0
    queue = list(todo)
    try:
        while queue or running:
            while queue and free:
                slot = free.pop(0)
                slug, source, seed = queue.pop(0)
                gpu = slots[slot] if opts.executor == "local" else None
                job = executor.submit(run_job, slug, str(source), opts.profile, seed, opts.timeout, threads, gpu)
                running[job] = (slot, slug, seed)
            time.sleep(opts.poll)
            for job in [j for j in running if j.done()]:
                slot, slug, seed = running.pop(job)
                free.append(slot)
                try:
                    row = job.result()
                except Exception as err:  # the job itself died: still a row in the record
                    line = str(err).strip().splitlines()[-1:] or [type(err).__name__]
                    row = {
                        "chapter": slug,
                        "seed": seed,
                        "profile": opts.profile,
                        "status": "failed",
                        "claims": [],
                        "error": {"cell_index": None, "line": line[0]},
                        "finished": datetime.now(UTC).isoformat(),
                    }
                store(record, row)
                rows.append(row)
                if row["status"] != "ok":
                    failed += 1
                    err = row.get("error") or {}
                    print(f"FAILED {slug} seed {seed}: cell {err.get('cell_index')}: {err.get('line')}", flush=True)
                else:
                    held = sum(c["outcome"] == "holds" for c in row["claims"])
                    ran = sum(c["outcome"] != "not run" for c in row["claims"])
                    print(f"ok     {slug} seed {seed}: {row['seconds']} s, checks holding {held}/{ran}", flush=True)
                print(_status(len(rows), len(running), failed, len(todo)), flush=True)
    except KeyboardInterrupt:
        for job in running:
            with contextlib.suppress(Exception):
                job.cancel()
        print(f"interrupted: {len(rows)} finished job(s) are recorded in {record}; re-run to finish", file=sys.stderr)
        raise
    return rows


def summary(record: dict, slugs: list[str] | None = None) -> list[dict]:
    """Return one row per (chapter, check) of a study: its kind and row, values by seed, seeds holding, threshold.

    The threshold and the seed counts are re-derived from the values and the check's null by `lib.checks`
    (the recorded outcome was judged against whatever threshold the chapter had when the study ran).
    """
    out = []
    for slug, runs in record["runs"].items():
        if slugs and slug not in slugs:
            continue
        by_claim: dict[str, list[dict]] = {}
        for seed, row in runs.items():
            for c in row.get("claims", []):
                by_claim.setdefault(c["claim"], []).append({**c, "seed": int(seed)})
        for claim, cs in by_claim.items():
            last = cs[-1]
            measured = {c["seed"]: c["value"] for c in cs if c.get("outcome") != "not run" and c["value"] is not None}
            values = {str(s): v for s, v in measured.items()}
            if last.get("null") is None:  # a record from before checks declared their null
                derived = checks.Threshold(None)
                failing = [c["seed"] for c in cs if c.get("outcome") not in ("holds", "reproduced", "not run")]
            else:
                kind = last.get("kind") or "claim"
                derived = checks.threshold(kind, last["comparison"], last["null"], values or None)
                failing = sorted(
                    s for s, v in measured.items() if not checks._passes(v, last["comparison"], last["null"])
                )
            out.append(
                {
                    "chapter": slug,
                    "claim": claim,
                    "kind": last.get("kind"),
                    "row": last.get("row"),
                    "seeds": len(cs),
                    "checked": len(measured),
                    "passed": len(measured) - len(failing),
                    "failing_seeds": failing,
                    "min": min(measured.values()) if measured else None,
                    "max": max(measured.values()) if measured else None,
                    "comparison": last["comparison"],
                    "null": last.get("null"),
                    "threshold": derived.value,
                    "guard": derived.guard,
                    "values": measured,
                }
            )
    return out


def derive_records(quick: dict, gpu: dict | None = None) -> dict:
    """Return what `lib/records.json` holds: per chapter, the quick study's values of every check (with the
    check's kind, row, comparison and null) and the study's commit; per chapter, the last full run on a GPU."""
    out: dict = {"_source": "written by `python -m tools.seeds --derive` from reports/; never edit by hand"}
    out["quick"] = {}
    for slug, runs in sorted(quick.get("runs", {}).items()):
        rows = [r for r in summary(quick, [slug])]
        out["quick"][slug] = {
            "commits": sorted({r.get("commit") or "?" for r in runs.values()}),
            "seeds": sorted(int(s) for s in runs),
            "checks": {
                r["claim"]: {
                    "kind": r["kind"],
                    "row": r["row"],
                    "comparison": r["comparison"],
                    "null": r["null"],
                    "values": {str(s): v for s, v in sorted(r["values"].items())},
                }
                for r in rows
                if r["null"] is not None  # a record from before checks declared their null is no study of them
            },
        }
    out["full_gpu"] = {}
    for row in (gpu or {}).get("chapters", []):
        out["full_gpu"][row["chapter"]] = {
            "commit": row.get("commit") or (gpu or {}).get("commit"),
            "gpu": row.get("gpu") or (gpu or {}).get("device"),
            "seconds": row.get("seconds"),
            "status": row.get("status"),
            "checks": {
                c["claim"]: {"value": c.get("value"), "outcome": c.get("outcome")} for c in row.get("claims", [])
            },
        }
    return out


def write_records(path: Path = checks.RECORDS_FILE) -> dict:
    """Write `lib/records.json` from the committed records under `reports/`; return what was written."""
    gpu = json.loads(GPU_RECORD.read_text()) if GPU_RECORD.exists() else None
    data = derive_records(load_record(record_path("quick")), gpu)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return data


def stale_studies(record: dict) -> dict[str, list[int]]:
    """Return {chapter: seeds} whose recorded key is not the chapter's study key today."""
    out = {}
    for slug, runs in record["runs"].items():
        source = book.chapter_source(slug)
        if not source.exists():
            out[slug] = sorted(int(s) for s in runs)
            continue
        bad = [int(s) for s, row in runs.items() if row.get("key") != book.study_key(source, record["profile"], int(s))]
        if bad:
            out[slug] = bad
    return out


def main(argv: list[str] | None = None) -> int:
    slurm = slurm_defaults()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", action="append", default=[], help="slug or chapters/<slug>.md (repeatable)")
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 0,3,5 (default 0-7)")
    parser.add_argument("--executor", default="local", choices=["local", "slurm"])
    parser.add_argument("--jobs", type=int, default=0, help="local jobs at a time (default: cores, or one per GPU)")
    parser.add_argument("--force", action="store_true", help="re-run jobs that are already recorded")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per notebook cell")
    parser.add_argument("--time-min", type=int, default=int(slurm.get("time_min", 30)), help="minutes per job")
    parser.add_argument("--partition", default=slurm.get("partition"), help="Slurm partition")
    parser.add_argument("--gpus-per-job", type=int, default=int(slurm.get("gpus_per_job", 0)), help="Slurm GPUs")
    parser.add_argument("--cpus", type=int, default=int(slurm.get("cpus_per_job", 4)), help="Slurm CPUs per job")
    parser.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help="record file (default reports/seeds-<profile>.json)")
    parser.add_argument("--summary", action="store_true", help="print the record's per-claim table and stop")
    parser.add_argument("--derive", action="store_true", help="only rewrite lib/records.json from reports/")
    parser.add_argument("--stale", action="store_true", help="run only the chapters whose record is stale")
    parser.add_argument("--allow-dirty", action="store_true", help=argparse.SUPPRESS)  # tests of the tool
    opts = parser.parse_args(argv)
    if opts.derive:
        write_records()
        print(f"wrote {checks.RECORDS_FILE.relative_to(book.ROOT)}")
        return 0
    try:
        seeds = parse_seeds(opts.seeds)
    except ValueError as err:
        parser.error(str(err))
    chapters = book.resolve_chapters(opts.chapter)
    record = opts.record or record_path(opts.profile)
    if opts.stale:
        have = load_record(record)["runs"]
        stale = stale_studies(load_record(record))
        chapters = [(s, p) for s, p in chapters if s in stale or s not in have]
        print(f"stale or missing studies: {', '.join(s for s, _ in chapters) or 'none'}")
    if not opts.summary:
        try:
            rows = study(chapters, seeds, opts, record)
        except KeyboardInterrupt:
            return 130
        if any(r["status"] != "ok" for r in rows):
            print("some jobs failed (see above); the others are recorded", file=sys.stderr)
        if opts.profile == "quick" and not opts.record:
            write_records()
    table = summary(load_record(record), [s for s, _ in chapters])
    table.sort(key=lambda r: (r["passed"] == r["checked"], r["chapter"]))
    for r in table:
        lo, hi = (checks.fmt(x) if x is not None else "-" for x in (r["min"], r["max"]))
        print(f"{r['passed']:>2}/{r['checked']:<2} {r['chapter']:<28} {r['claim'][:70]:<70} [{lo}, {hi}]")
    return 0 if not any(r["status"] != "ok" for r in locals().get("rows", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
