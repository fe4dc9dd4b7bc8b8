"""Instructors: the student edition has every exercise and no solution, and its notebooks run."""

import re
import subprocess
import sys

import jupytext
import nbformat
import pytest

from tools import book, student

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


@pytest.fixture(scope="module")
def student_edition(built_book):
    proc = subprocess.run([sys.executable, "-m", "tools.student"], cwd=book.ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return student.STUDENT


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
    labels = re.findall(r"```\{exercise\}\n:label: (\S+)", book.chapter_source(slug).read_text())
    html = files[1].read_text()
    assert labels and all(f'id="{label}"' in html for label in labels)
    title = re.compile(r'class="admonition-title"><span class="caption-number">Exercise ([\d.]+)')
    numbers = title.findall((book.HTML / "chapters" / f"{slug}.html").read_text())
    assert numbers and numbers == title.findall(html)  # numbered as in the instructor edition


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_student_notebooks_are_valid_and_run(student_edition, slug, tmp_path):
    nb = nbformat.read(student_edition / "notebooks" / f"{slug}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    full = [c.source for c in jupytext.read(book.chapter_source(slug)).cells if c.cell_type == "code"]
    if code == full:
        # The same code cells as the chapter, which the book executed with every claim checked.
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
