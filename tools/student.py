"""Build the student edition: every solution removed from the notebooks and from the HTML.

    python -m tools.student

Writes `_build/student/notebooks/<slug>.ipynb` (each chapter, unexecuted, without solutions: `{solution}`
directives and code cells tagged `solution` are removed) and `_build/student/html/` (the whole book built from
the executed notebooks with the same removal). Exercises stay, numbered as in the instructor edition.
"""

from __future__ import annotations

import re
import shutil
import sys

import jupytext
import nbformat

from tools import book, build

STUDENT = book.BUILD / "student"
OPEN_SOLUTION = re.compile(r"^(\s*)(`{3,}|:{3,})\{solution(?:-start)?\}")


def strip_solutions(text: str) -> str:
    """Return MyST text without its `{solution}` directives (backtick or colon fences, nested fences kept out)."""
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        if fence is None:
            match = OPEN_SOLUTION.match(line)
            if match:
                fence = match.group(2)
                continue
            out.append(line)
        elif line.strip() == fence:
            fence = None
    if fence is not None:
        raise ValueError(f"unclosed {{solution}} directive (fence {fence!r})")
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


def strip_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return `nb` without solution directives in markdown cells and without cells tagged `solution`."""
    cells = []
    for cell in nb.cells:
        if "solution" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source)
            if not cell.source.strip():
                continue
        cells.append(cell)
    nb.cells = cells
    return nb


def main() -> int:
    notebooks = STUDENT / "notebooks"
    if notebooks.exists():
        shutil.rmtree(notebooks)
    notebooks.mkdir(parents=True)
    for slug in book.chapter_slugs():
        nb = strip_notebook(jupytext.read(book.chapter_source(slug)))
        nb.metadata.pop("jupytext", None)
        nbformat.validate(nb)
        nbformat.write(nb, notebooks / f"{slug}.ipynb")
    problems = build.stage(STUDENT / "book", transform=strip_notebook, transform_text=strip_solutions)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    code = build.build(STUDENT / "book", html_link=None)
    html = STUDENT / "html"
    if code == 0:
        shutil.copytree(STUDENT / "book" / "_build" / "html", html, dirs_exist_ok=True)
        print(f"student notebooks: {notebooks}\nstudent HTML: {html / 'index.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
