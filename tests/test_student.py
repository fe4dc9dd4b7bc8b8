"""Instructors: the student edition has every exercise and no solution, and its notebooks run."""

import re

import jupytext
import nbformat
import pytest

from tools import book, myst, notebooks, setup_cells, student

pytestmark = pytest.mark.book


def solution_lines(slug: str) -> list[str]:
    """Return the distinctive lines of a chapter's solutions (those that appear nowhere else in it)."""
    text = book.chapter_source(slug).read_text()
    kept = student.strip_solutions(text)
    removed = [line.strip() for line in text.splitlines() if line.strip() and line.strip() not in kept]
    return [line for line in removed if len(line) > 20 and not line.startswith(("```", ":::", ":class:"))]


def test_strip_solutions_handles_nesting_and_colon_fences():
    text = (
        "intro\n\n```{exercise}\n:label: e1\n\nQ?\n```\n\n````{solution} e1\n:class: dropdown\n\n"
        "```python\nsecret_code()\n```\nsecret words\n````\n\n:::{solution} e1\nmore secret\n:::\nafter\n"
    )
    out = student.strip_solutions(text)
    assert "secret" not in out and "{exercise}" in out and "Q?" in out and out.rstrip().endswith("after")
    with pytest.raises(ValueError, match="unclosed"):
        student.strip_solutions("```{solution} e1\nnever closed\n")


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_no_solution_survives_and_every_exercise_does(student_edition, slug):
    lines = solution_lines(slug)
    assert lines, f"{slug}: found no solution text to look for"
    files = [
        student_edition / "notebooks" / f"{slug}.ipynb",
        student_edition / "html" / "chapters" / f"{slug}.html",
        student_edition / "html" / "_sources" / "chapters" / f"{slug}.ipynb",
    ]
    for path in files:
        text = path.read_text()
        leaked = [line for line in lines if line in text or line.replace('"', '\\"') in text]
        assert not leaked, f"{path} still holds solution text: {leaked[:2]}"
        assert "{solution" not in text
    labels = [e.label for e in myst.exercises(book.chapter_source(slug).read_text())]
    html = files[1].read_text()
    assert labels and all(f'id="{label}"' in html for label in labels)
    title = re.compile(r'class="admonition-title"><span class="caption-number">Exercise ([\d.]+)')
    numbers = title.findall((book.HTML / "chapters" / f"{slug}.html").read_text())
    assert numbers and numbers == title.findall(html)  # numbered as in the instructor edition


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_student_notebooks_are_valid_plain_jupyter_and_run(student_edition, slug, tmp_path):
    nb = nbformat.read(student_edition / "notebooks" / f"{slug}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert notebooks.leftovers(nb) == [], f"{slug}: MyST syntax left for Colab to show as text"
    exercises = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "**Exercise " in c.source]
    assert exercises, f"{slug}: no exercise in the student notebook"
    for i in exercises:  # an empty answer cell after each exercise
        assert "answer" in nb.cells[i + 1].metadata.get("tags", []), f"{slug}: no answer cell after cell {i}"
    code = [c.source for c in nb.cells if c.cell_type == "code" and not _empty_answer(c)]
    full = [c.source for c in jupytext.read(book.chapter_source(slug)).cells if c.cell_type == "code"]
    assert code[0] == setup_cells.setup_source(student.STUDENT_REF)  # installs lib from the student branch
    if code[1:] == full[1:] and slug != "using-this-book":
        # The same code cells as the chapter (besides the comment-only answer cells), which the book executed with
        # every claim checked; one student notebook (the shortest) is always run end to end, as a student would.
        assert book.load_report()["chapters"][slug]["status"] == "ok"
        return
    import papermill

    papermill.execute_notebook(
        str(student_edition / "notebooks" / f"{slug}.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"profile": "quick"},
        kernel_name="python3",
        cwd=str(book.ROOT / "chapters"),
        progress_bar=False,
    )


def _empty_answer(cell) -> bool:
    """True for an answer cell that holds only comments (a student's place to write; nothing runs)."""
    lines = [x.strip() for x in cell.source.splitlines() if x.strip()]
    return "answer" in cell.metadata.get("tags", []) and all(x.startswith("#") for x in lines)


def spoiler_lines(slug: str) -> list[str]:
    """Return the lines of a chapter's spoiler blocks (text that answers an exercise)."""
    text = book.chapter_source(slug).read_text()
    source = text.split("\n")
    lines = [x.strip() for s in myst.spoilers(text) for x in source[s.start + 1 : s.end - 1]]
    return [x for x in lines if len(x) > 30 and not x.startswith(("|---", "<!--"))]


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_no_spoiler_reaches_a_student(student_edition, slug):
    lines = spoiler_lines(slug)
    for path in [
        student_edition / "notebooks" / f"{slug}.ipynb",
        student_edition / "html" / "chapters" / f"{slug}.html",
        student_edition / "html" / "_sources" / "chapters" / f"{slug}.ipynb",
    ]:
        text = path.read_text()
        leaked = [x for x in lines if x in text or x.replace('"', '\\"') in text]
        assert not leaked, f"{path} still answers an exercise: {leaked[:2]}"


def test_student_html_opens_student_notebooks_and_has_its_own_instructors_page(student_edition):
    html = student_edition / "html"
    owner_repo = setup_cells.repository()[0].removeprefix("https://github.com/")
    for slug in book.chapter_slugs():
        page = (html / "chapters" / f"{slug}.html").read_text()
        colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page)
        assert colab == [f"https://colab.research.google.com/github/{owner_repo}/blob/student/chapters/{slug}.ipynb"]
        binder = re.findall(r'href="(https://mybinder\.org/[^"]+)"', page)
        assert len(binder) == 1 and f"/{owner_repo}/student?" in binder[0]
    instructors = (html / "instructors.html").read_text()
    assert "student edition" in instructors and "make student" not in instructors
