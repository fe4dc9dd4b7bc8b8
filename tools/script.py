"""Run chapters as plain Python scripts (no Jupyter needed), e.g. on a GPU server.

    python -m tools.script chapters/<slug>.md [--profile quick|full|auto] [--seed 0] [--figures DIR] [--out FILE]
    python -m tools.script --emit DIR [CHAPTER ...]          # write DIR/<slug>.py for every (or each) chapter
    python -m tools.script --run-emitted DIR --profile full [--jobs N] [--timeout S] [--results DIR]

The first form converts one chapter with jupytext and runs it in `chapters/`, with the profile and seed in the
environment; `--figures DIR` saves every figure it shows as PNG, `--out FILE` writes a JSON summary (status,
seconds, claims). `--emit` only writes the scripts, for a machine without jupytext; `--run-emitted` runs such
scripts there (in parallel with `--jobs`), each with a time limit, and writes `summary.json`, a log per chapter
and the figures into `--results`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRELUDE = """\
import os as _os
import matplotlib as _mpl
_mpl.use("Agg")
import matplotlib.pyplot as _plt
_figdir = _os.environ.get("BOOK_FIGURES_DIR")
_count = [0]
def _show(*args, **kwargs):
    if _figdir:
        for num in _plt.get_fignums():
            _count[0] += 1
            _name = f"{_os.environ.get('BOOK_CHAPTER', 'chapter')}-{_count[0]:02d}.png"
            _plt.figure(num).savefig(_os.path.join(_figdir, _name))
    _plt.close("all")
_plt.show = _show
def _gpu_memory():
    _path = _os.environ.get("BOOK_GPU_MEMORY_FILE")
    import sys as _sys
    _torch = _sys.modules.get("torch")
    if _path and _torch is not None and _torch.cuda.is_available():
        with open(_path, "w") as _fh:
            _fh.write(str(round(_torch.cuda.max_memory_allocated() / 2**20, 1)))
import atexit as _atexit
_atexit.register(_gpu_memory)
"""


def to_script(source: Path, seed: int = 0) -> str:
    """Return the chapter as Python source (magics and shell escapes are not allowed in chapters)."""
    import jupytext

    nb = jupytext.read(source)
    code = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code.append(cell.source)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            code.append(f"# Injected parameters (as papermill does)\nseed = {int(seed)}")
    if not any(c.startswith("# Injected parameters") for c in code):
        raise SystemExit(f"error: {source} has no code cell tagged `parameters`; the seed cannot be set")
    for i, cell in enumerate(code):
        if any(line.lstrip().startswith(("%", "!")) for line in cell.splitlines()):
            raise SystemExit(f"error: code cell {i} of {source} uses an IPython magic; chapters must be plain Python")
    return PRELUDE + "\n\n".join(code) + "\n_show()\n"


def run_script(script: Path, chapter: str, profile: str, timeout: float | None, results: Path | None) -> dict:
    """Run one emitted chapter script in `chapters/`; return its summary (status, seconds, claims)."""
    with tempfile.TemporaryDirectory() as tmp:
        claims, gpu_file = Path(tmp) / "claims.jsonl", Path(tmp) / "gpu.json"
        env = {
            "BOOK_GPU_MEMORY_FILE": str(gpu_file),
            **os.environ,
            "BOOK_PROFILE": profile,
            "BOOK_CHAPTER": chapter,
            "BOOK_CLAIMS_FILE": str(claims),
            "BOOK_QUIET_PROGRESS": os.environ.get("BOOK_QUIET_PROGRESS", "1"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }
        log = None
        if results:
            (results / "figures").mkdir(parents=True, exist_ok=True)
            env["BOOK_FIGURES_DIR"] = str((results / "figures").resolve())
            log = open(results / f"{chapter}.log", "w")  # noqa: SIM115 (closed below)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(script.resolve())],
                cwd=ROOT / "chapters",
                env=env,
                timeout=timeout,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
            )
            status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            if log:
                log.close()
        seconds = time.perf_counter() - started
        lines = [json.loads(x) for x in claims.read_text().splitlines()] if claims.exists() else []
        gpu_mb = json.loads(gpu_file.read_text()) if gpu_file.exists() else None
    rows = [r for r in lines if r.get("record", "check") == "check"]
    verdicts = [r for r in lines if r.get("record") == "verdict"]
    from lib.checks import headline

    count = {o: sum(r["outcome"] == o for r in rows) for o in ("holds", "fails", "not run")}
    print(
        f"{status}: {chapter} in {seconds:.1f} s, profile {profile}, checks: {count['holds']} hold, "
        f"{count['fails']} fail, {count['not run']} not run; {headline(verdicts)}",
        flush=True,
    )
    return {
        "chapter": chapter,
        "status": status,
        "seconds": round(seconds, 1),
        "profile": profile,
        "peak_gpu_mb": gpu_mb,
        "claims": rows,
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters/<slug>.md (one, or several with --emit)")
    parser.add_argument("--profile", default=os.environ.get("BOOK_PROFILE", "quick"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figures", type=Path, help="save every figure here as PNG")
    parser.add_argument("--out", type=Path, help="write a JSON summary here")
    parser.add_argument("--emit", type=Path, help="write the chapters' scripts into this folder and stop")
    parser.add_argument("--run-emitted", type=Path, help="run every script in this folder")
    parser.add_argument("--jobs", type=int, default=1, help="scripts at a time with --run-emitted")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per chapter")
    parser.add_argument("--results", type=Path, help="folder for logs, figures and summary.json")
    args = parser.parse_args(argv)

    if args.emit:
        from tools import book

        sources = [c.with_suffix(".md") for c in args.chapters] or [
            book.chapter_source(s) for s in book.chapter_slugs()
        ]
        args.emit.mkdir(parents=True, exist_ok=True)
        for source in sources:
            (args.emit / f"{source.stem}.py").write_text(to_script(source, args.seed))
            print(f"wrote {args.emit / (source.stem + '.py')}")
        return 0
    if args.run_emitted:
        scripts = sorted(args.run_emitted.glob("*.py"))
        if args.results:
            args.results.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda s: run_script(s, s.stem, args.profile, args.timeout, args.results), scripts))
        if args.results:
            (args.results / "summary.json").write_text(json.dumps(rows, indent=2))
        return 0 if all(r["status"] == "ok" for r in rows) else 1

    if len(args.chapters) != 1:
        parser.error("give one chapter (or --emit / --run-emitted)")
    source = args.chapters[0].with_suffix(".md").resolve()
    if not source.exists():
        raise SystemExit(f"error: no chapter source {source}")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / f"{source.stem}.py"
        script.write_text(to_script(source, args.seed))
        row = run_script(script, source.stem, args.profile, args.timeout, None if not args.figures else Path(tmp))
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            for png in (Path(tmp) / "figures").glob("*.png"):
                png.replace(args.figures / png.name)
    if args.out:
        args.out.write_text(json.dumps(row, indent=2))
    return 0 if row["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
