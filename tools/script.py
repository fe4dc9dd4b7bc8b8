"""Run a chapter as a plain Python script (no Jupyter needed), e.g. on a GPU server.

    python -m tools.script chapters/<slug>.md [--profile quick|full|auto] [--seed 0] [--figures DIR] [--out FILE]
    python -m tools.script chapters/<slug>.md --emit DIR   # only write DIR/<slug>.py (for a machine without jupytext)

Converts the MyST notebook to a Python script with jupytext, then runs it in `chapters/` with the profile
and seed in the environment. With `--figures DIR`, every figure the chapter shows is saved there as PNG;
with `--out FILE`, a JSON summary (status, seconds, claims) is written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext

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
"""


def to_script(source: Path) -> str:
    """Return the chapter as Python source (magics and shell escapes are not allowed in chapters)."""
    nb = jupytext.read(source)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    for i, cell in enumerate(code):
        if any(line.lstrip().startswith(("%", "!")) for line in cell.splitlines()):
            raise SystemExit(f"error: code cell {i} of {source} uses an IPython magic; chapters must be plain Python")
    return PRELUDE + "\n\n".join(code) + "\n_show()\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapter", type=Path, help="chapters/<slug>.md")
    parser.add_argument("--profile", default=os.environ.get("BOOK_PROFILE", "auto"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figures", type=Path, help="save every figure here as PNG")
    parser.add_argument("--out", type=Path, help="write a JSON summary here")
    parser.add_argument("--emit", type=Path, help="write the script(s) into this folder and stop")
    args = parser.parse_args(argv)
    source = args.chapter.with_suffix(".md").resolve()
    if not source.exists():
        raise SystemExit(f"error: no chapter source {source}")
    if args.emit:
        args.emit.mkdir(parents=True, exist_ok=True)
        (args.emit / f"{source.stem}.py").write_text(to_script(source))
        print(f"wrote {args.emit / (source.stem + '.py')} (run it in chapters/ with BOOK_PROFILE and BOOK_CHAPTER set)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / f"{source.stem}.py"
        script.write_text(to_script(source).replace("\nseed = 0\n", f"\nseed = {args.seed}\n", 1))
        claims = Path(tmp) / "claims.jsonl"
        env = {
            **os.environ,
            "BOOK_PROFILE": args.profile,
            "BOOK_CHAPTER": source.stem,
            "BOOK_CLAIMS_FILE": str(claims),
            "BOOK_QUIET_PROGRESS": os.environ.get("BOOK_QUIET_PROGRESS", "1"),
        }
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            env["BOOK_FIGURES_DIR"] = str(args.figures.resolve())
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=source.parent, env=env).returncode
        seconds = time.perf_counter() - started
        rows = [json.loads(x) for x in claims.read_text().splitlines()] if claims.exists() else []
    status = "ok" if code == 0 else "failed"
    count = {o: sum(r["outcome"] == o for r in rows) for o in ("reproduced", "not reproduced", "skipped")}
    print(
        f"{status}: {source.stem} in {seconds:.1f} s, profile {args.profile}, {count['reproduced']} claim(s) "
        f"reproduced, {count['not reproduced']} not, {count['skipped']} skipped"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "chapter": source.stem,
                    "status": status,
                    "seconds": round(seconds, 1),
                    "profile": args.profile,
                    "claims": rows,
                },
                indent=2,
            )
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
