"""Check or sync the pairs `chapters/<slug>.md` (MyST, the source of truth) -> `chapters/<slug>.ipynb` (Colab's).

python -m tools.pairs check    # exit 1 when a pair disagrees or a committed notebook has outputs
python -m tools.pairs sync [chapters/<slug>.md ...]   # rewrite each .ipynb from its .md, without outputs
python -m tools.pairs format [chapters/<slug>.md ...]   # ruff-format every code cell of the MyST sources (88 columns)
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import nbformat

from tools import book


def paired_sources(folder: Path | None = None) -> list[Path]:
    """Return every MyST notebook source (`.md` with a jupytext header) in `chapters/`."""
    folder = folder or book.ROOT / "chapters"
    return sorted(p for p in folder.glob("*.md") if "jupytext:" in p.read_text()[:400])


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def problems(source: Path) -> list[str]:
    """Return what is wrong with the pair of `source` (empty when it is in sync and output-free).

    The committed notebook is the plain-Jupyter conversion of the MyST source (`tools/notebooks.py`): the same
    code cells, and markdown that Colab and Jupyter render.
    """
    from tools import notebooks

    notebook = source.with_suffix(".ipynb")
    if not notebook.exists():
        return [f"{source.name}: no paired notebook {notebook.name} (run `make sync`)"]
    ipynb = nbformat.read(notebook, as_version=4)
    out = []
    if _cells(notebooks.convert(source.stem, source=source)) != _cells(ipynb):
        out.append(f"{source.name} and {notebook.name} disagree (run `make sync`)")
    for i, cell in enumerate(ipynb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            out.append(f"{notebook.name}: cell {i} has outputs; commit notebooks without outputs (`make sync`)")
            break
    left = notebooks.leftovers(ipynb)
    if left:
        out.append(f"{notebook.name}: MyST syntax that Colab shows as text: {', '.join(left[:3])} (`make sync`)")
    return out


def sync(source: Path) -> None:
    """Write `source`'s notebook: the plain-Jupyter conversion of the `.md`, with no outputs."""
    from tools import notebooks

    notebooks.write_notebook(notebooks.convert(source.stem, source=source), source.with_suffix(".ipynb"))


CELL_COLUMNS = 88  # code cells are read in a notebook column, narrower than lib's 120


def _ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.exists() else (shutil.which("ruff") or "ruff")


def _wrap(text: str, width: int, indent: str) -> list[str]:
    """Return `text` as comment lines of at most `width` columns (words and hyphenated names never split)."""
    prefix = f"{indent}# "
    return textwrap.wrap(
        text, width, initial_indent=prefix, subsequent_indent=prefix, break_long_words=False, break_on_hyphens=False
    ) or [prefix.rstrip()]


def wrap_comments(code: str, width: int = CELL_COLUMNS) -> str:
    """Re-flow comments longer than `width`, keeping sentences whole: a block of consecutive comment lines at one
    indent is wrapped as one paragraph (an empty `#` line separates paragraphs); a too-long trailing comment moves
    above its line."""
    try:
        comments = {
            tok.start[0]: tok.start[1]
            for tok in tokenize.generate_tokens(io.StringIO(code + "\n").readline)
            if tok.type == tokenize.COMMENT
        }
    except (tokenize.TokenError, SyntaxError):
        return code
    lines = code.splitlines()

    def whole(row: int) -> bool:  # a line that is only a comment
        col = comments.get(row)
        return col is not None and not lines[row - 1][:col].strip()

    out, row = [], 1
    while row <= len(lines):
        line, col = lines[row - 1], comments.get(row)
        if col is not None and whole(row):
            indent = line[:col]
            block = [row]
            while block[-1] + 1 <= len(lines) and whole(block[-1] + 1) and comments[block[-1] + 1] == col:
                block.append(block[-1] + 1)
            texts = [lines[r - 1][col:].lstrip("#").strip() for r in block]
            if max(len(lines[r - 1]) for r in block) <= width:
                out += [lines[r - 1] for r in block]
            else:
                paragraphs = " ".join(t if t else "\n" for t in texts).split("\n")
                for k, paragraph in enumerate(paragraphs):
                    if k:
                        out.append(f"{indent}#")
                    out += _wrap(" ".join(paragraph.split()), width, indent)
            row = block[-1] + 1
            continue
        if len(line) <= width or col is None:
            out.append(line)
        else:
            before, text = line[:col].rstrip(), line[col:].lstrip("#").strip()
            if len(before) > width:  # a long expression too: ruff has done what it can
                out.append(line)
            else:
                out += _wrap(text, width, line[: len(line) - len(line.lstrip())])
                out.append(before)
        row += 1
    return "\n".join(out)


def format_cell(code: str) -> str:
    """Return `code` formatted by ruff at the notebook width, long comments wrapped (unchanged if unparsable)."""
    proc = subprocess.run(
        [_ruff(), "format", "--line-length", str(CELL_COLUMNS), "--stdin-filename", "cell.py", "-"],
        input=code,
        capture_output=True,
        text=True,
    )
    return wrap_comments(proc.stdout.rstrip("\n")) if proc.returncode == 0 else code


def format_source(text: str) -> str:
    """Return MyST notebook text with every code cell and Python code block (at any depth) ruff-formatted."""
    from tools import myst

    lines = text.split("\n")
    spans = {
        (b.body_start, b.body_end): format_cell("\n".join(lines[b.body_start : b.body_end]))
        for b in myst.code_blocks(text)
    }
    return myst.replace_lines(text, spans)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["format"]:
        for source in [Path(a) for a in argv[1:]] or paired_sources():
            text = source.read_text()
            new = format_source(text)
            if new != text:
                source.write_text(new)
            print(f"{'formatted' if new != text else 'unchanged'} {source}")
        return 0
    if argv[:1] not in (["check"], ["sync"]) or (argv[0] == "check" and len(argv) > 1):
        print(__doc__, file=sys.stderr)
        return 2
    sources = [Path(a) for a in argv[1:]] or paired_sources()
    if argv[0] == "sync":
        for source in sources:
            sync(source)
            print(f"synced {source.name} -> {source.with_suffix('.ipynb').name}")
        return 0
    found = [p for s in sources for p in problems(s)]
    for p in found:
        print(f"error: {p}", file=sys.stderr)
    print(f"{len(sources)} pair(s) checked, {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
