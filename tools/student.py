"""Build the student edition: no solution and no spoiler anywhere a student can reach.

    python -m tools.student

Writes `_build/student/notebooks/<slug>.ipynb` (each chapter as plain Jupyter Markdown, unexecuted, without
solutions or spoiler blocks, with an answer cell after each exercise; its setup cell installs `lib` from the
`student` branch) and `_build/student/html/` (the whole book, built from the executed notebooks with the same
removal, its own "For instructors" page, and launch buttons that open the student notebooks on the `student`
branch, which the publishing workflow fills with these notebooks). Exercises keep their numbers.
"""

from __future__ import annotations

import shutil
import sys

import nbformat
import yaml

from tools import book, build, myst, notebooks, setup_cells

STUDENT = book.BUILD / "student"
STUDENT_REF = "student"  # the branch the workflow publishes the student notebooks on

INSTRUCTORS_PAGE = """# For instructors

This is the **student edition** of the book: exercises without solutions, and without the passages of
"What the numbers say" that would answer them. Its launch buttons open the student notebooks, which have an
answer cell (and a code cell) after each exercise.

If you teach with this book, build the instructor's material from the book's source repository: `make
assignments` writes each chapter's otter-grader assignment (the autograded questions' solutions and hidden
tests, the rubric of each written question, and the Gradescope autograder), and `make student` this edition.
The source repository's README says how.
"""
STUDENT_INTRO = {
    "exercises with solutions": "exercises (this edition has no solutions)",
}


def strip_solutions(text: str) -> str:
    """Return MyST text without its `{solution}` directives and without its spoiler blocks (`tools.myst`)."""
    return myst.without(text)


def strip_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return `nb` without solution directives and spoilers in markdown cells and without `solution` cells."""
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


def student_notebook(slug: str, ctx: notebooks.Book) -> nbformat.NotebookNode:
    """Return the student notebook of a chapter: converted, solution-free, installing `lib` from `student`."""
    nb = notebooks.convert(slug, ctx, student=True)
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.source.strip() == setup_cells.setup_source().strip():
                cell.source = setup_cells.setup_source(STUDENT_REF)
            break
    return nb


def student_text(text: str) -> str:
    """Rewrite a top-level page for the student edition."""
    if text.startswith("# For instructors"):
        return INSTRUCTORS_PAGE
    for old, new in STUDENT_INTRO.items():
        text = text.replace(old, new)
    return strip_solutions(text)


def main() -> int:
    out = STUDENT / "notebooks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ctx = notebooks.context(student=True)
    for slug in book.chapter_slugs():
        notebooks.write_notebook(student_notebook(slug, ctx), out / f"{slug}.ipynb")
    dest = STUDENT / "book"
    problems = build.stage(dest, transform=strip_notebook, transform_text=student_text, student=True)
    config = yaml.safe_load((dest / "_config.yml").read_text())
    config["repository"]["branch"] = STUDENT_REF  # launch buttons open the student notebooks
    # no button to the source repository: it holds every solution and hidden test (the instructors' source)
    config["html"].update(use_repository_button=False, use_issues_button=False)
    config["title"] = config["title"] + " (student edition)"
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    for slug in book.chapter_slugs():  # the page's download button and _sources: the student notebook's code too
        staged = dest / "chapters" / f"{slug}.ipynb"
        if staged.exists():
            nb = nbformat.read(staged, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code" and "import lib" in cell.source and "requirement" in cell.source:
                    cell.source = setup_cells.setup_source(STUDENT_REF)
                    break
            nbformat.write(nb, staged)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    code = build.build(dest, html_link=None)
    html = STUDENT / "html"
    if code == 0:
        if html.exists():
            shutil.rmtree(html)
        shutil.copytree(dest / "_build" / "html", html)
        print(f"student notebooks: {out}\nstudent HTML: {html / 'index.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
