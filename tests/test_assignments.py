"""Course assignments (tools/assignments.py): otter-grader questions generated from the chapters' exercises."""

import json
import re
import subprocess
import sys

import nbformat
import pytest

from tools import assignments, book

AUTOGRADED = [s for s in book.chapter_slugs() if any(q.autograded for q in assignments.questions(s))]


def test_questions_are_read_from_the_chapter_source():
    qs = {q.label: q for q in assignments.questions("using-this-book")}
    q = qs["using-ex-4"]
    assert q.autograded and q.name == "using_ex_4" and "def standardise" in q.solution_code
    assert [hidden for _, hidden in q.tests] == [False, True]
    assert not qs["using-ex-1"].autograded and "20000" in qs["using-ex-1"].solution_text
    assert "BEGIN SOLUTION" not in assignments.strip_solution_marks(q.solution_code)


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_every_chapter_has_two_autograded_questions(slug):
    assert sum(q.autograded for q in assignments.questions(slug)) >= 2


@pytest.mark.parametrize("slug", AUTOGRADED)
def test_every_solution_passes_its_tests_and_the_blank_fails_them(slug):
    """In process, without otter: fast enough for every chapter (otter assign repeats it in `make assignments`)."""
    assert not assignments.self_check(slug)


def test_self_check_catches_a_wrong_solution_and_a_test_that_cannot_fail(monkeypatch):
    wrong = assignments.Question("toy-ex-1", "1", "", "", solution_code=(
        "def double(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION"
    ), tests=[("def test_double(double):\n    assert double(2) == 4, 'double(2) should be 4'", False),
              ("def test_anything(double):\n    assert True", True)])  # fmt: skip
    monkeypatch.setattr(assignments, "questions", lambda slug, ctx=None: [wrong])
    problems = assignments.self_check("using-this-book")
    assert problems == [
        "toy-ex-1: the solution fails test_double: AssertionError: double(2) should be 4",
        "toy-ex-1: test_anything passes on the student's blank (it cannot fail)",
    ], problems
    assert assignments.blank(wrong.solution_code) == "def double(x):\n    ..."


def test_instructors_overview_counts_the_questions():
    table = assignments.overview(["using-this-book"])
    row = table.splitlines()[2]
    assert "4 Standardise the sample means; 5 The fraction beyond k" in row and "| 1, 2, 3 |" in row
    assert row.endswith("| about 75 min |")  # 5 questions at 15 minutes


@pytest.fixture(scope="module")
def built_assignments():
    """`make assignments`: otter assign runs every solution against its public and hidden tests."""
    proc = subprocess.run([sys.executable, "-m", "tools.assignments"], cwd=book.ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return assignments.OUT


def grade(folder, notebook, tmp_path) -> dict:
    """Grade one submission locally with `otter run` (no Docker); return {question: (score, possible, output)}."""
    (zip_file,) = (folder / "dist" / "autograder").glob("*.zip")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    otter = assignments._otter()
    proc = subprocess.run([otter, "run", "-a", str(zip_file), "-o", str(out), str(notebook)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    tests = json.loads((out / "results.json").read_text())["tests"]
    return {t["name"]: (t.get("score"), t.get("max_score"), t.get("output", "")) for t in tests}


def answer(notebook, answers: dict[str, str], path) -> None:
    """Write a copy of a student notebook whose `...` cells starting with a given line hold the given code."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for first_line, code in answers.items():
            if cell.cell_type == "code" and cell.source.startswith(first_line):
                cell.source = code
    nbformat.write(nb, path)


@pytest.mark.book
@pytest.mark.parametrize("slug", ["using-this-book"])  # one chapter end to end; `otter assign` checks every solution
def test_solutions_pass_and_the_blank_notebook_scores_zero(built_assignments, slug, tmp_path):
    folder = built_assignments / slug
    solutions = grade(folder, folder / "dist" / "autograder" / f"{slug}.ipynb", tmp_path)
    auto = [q for q in assignments.questions(slug) if q.autograded]
    for q in auto:
        score, possible, output = solutions[q.name]
        assert score == possible, f"{slug}: the solution of {q.name} scores {score}/{possible}:\n{output}"
    blank = grade(folder, folder / "dist" / "student" / f"{slug}.ipynb", tmp_path)
    assert all(blank[q.name][0] == 0 for q in auto), {q.name: blank[q.name][:2] for q in auto}


@pytest.mark.book
def test_a_wrong_answer_fails_the_right_test_with_a_readable_message(built_assignments, tmp_path):
    folder = built_assignments / "using-this-book"
    submission = tmp_path / "using-this-book.ipynb"
    qs = {q.name: q for q in assignments.questions("using-this-book")}
    answer(
        folder / "dist" / "student" / "using-this-book.ipynb",
        {
            "def standardise": assignments.strip_solution_marks(qs["using_ex_4"].solution_code),
            "def tail_fraction": "def tail_fraction(z, k):\n    return float((z > k).float().mean())  # one tail only",
        },
        submission,
    )
    result = grade(folder, submission, tmp_path)
    assert result["using_ex_4"][0] == result["using_ex_4"][1] == 2
    score, possible, output = result["using_ex_5"]
    assert score < possible and "two of five entries lie beyond 3 in absolute value" in output


def secrets(slug: str, hidden_only: bool) -> tuple[list[str], set[str]]:
    """Return the names of a chapter's autograder tests (the hidden ones only, or all) and the distinctive lines
    of its autograded solutions: what no published or student artefact may show."""
    qs = assignments.questions(slug)
    tests = [re.search(r"def (\w+)", src).group(1) for q in qs for src, h in q.tests if h or not hidden_only]
    solution_lines = {
        line.strip()
        for q in qs
        if q.autograded
        for line in re.findall(r"# BEGIN SOLUTION\n(.*?)# END SOLUTION", q.solution_code, re.S)[0].splitlines()
        if len(line.strip()) > 12
    }
    return tests, solution_lines


@pytest.mark.book
@pytest.mark.parametrize("slug", AUTOGRADED)
def test_no_hidden_test_or_solution_reaches_a_student(built_assignments, student_edition, slug):
    hidden, solution_lines = secrets(slug, hidden_only=True)
    for path in [
        built_assignments / slug / "dist" / "student" / f"{slug}.ipynb",
        student_edition / "notebooks" / f"{slug}.ipynb",
        student_edition / "html" / "chapters" / f"{slug}.html",
        student_edition / "html" / "_sources" / "chapters" / f"{slug}.ipynb",
    ]:
        text = path.read_text()
        leaked = [name for name in hidden if name in text] + [line for line in solution_lines if line in text]
        assert not leaked, f"{path} gives away {leaked[:2]}"


@pytest.mark.book
@pytest.mark.parametrize("slug", AUTOGRADED)
def test_published_editions_hold_no_hidden_test(built_book, slug):
    """The reader edition (its HTML and downloadable source) and the Colab notebook never show an autograded
    solution's code or any autograder test; the written exercises' solutions stay (self-study readers need them)."""
    tests, solution_lines = secrets(slug, hidden_only=False)
    for path in [
        built_book.html / "chapters" / f"{slug}.html",
        built_book.html / "_sources" / "chapters" / f"{slug}.ipynb",
        book.chapter_notebook(slug),
    ]:
        text = path.read_text()
        leaked = [name for name in tests if name in text] + [line for line in solution_lines if line in text]
        assert not leaked, f"{path} publishes {leaked[:2]}"
        assert "Autograder tests" not in text, f"{path} shows autograder tests"


@pytest.mark.parametrize("slug", AUTOGRADED)
def test_assignment_is_self_contained(slug):
    """Every link in an assignment's questions resolves outside the chapter: no anchor into a page it is not in."""
    ctx = __import__("tools.notebooks", fromlist=["context"]).context(student=True)
    nb = assignments.master_notebook(slug, ctx)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    dangling = [a for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in anchors]
    assert not dangling, f"{slug}: the assignment links to parts of the chapter it does not contain: {dangling}"
    assert "How to submit" in text and "/student/chapters/" in text


@pytest.mark.book
def test_autograder_zip_grades_in_a_clean_environment(built_assignments, tmp_path):
    """Gradescope-like: a fresh venv from the zip's own requirements (registries only, `lib` from the wheel in the
    zip, no checkout on the path) grades a solution (full marks), a blank (zero) and a wrong answer (the right
    test fails, with its message)."""
    import os
    import zipfile

    import yaml

    slug, folder = "using-this-book", built_assignments / "using-this-book"
    (zip_file,) = (folder / "dist" / "autograder").glob("*.zip")
    src = tmp_path / "source"
    zipfile.ZipFile(zip_file).extractall(src)
    env_file = yaml.safe_load((src / "environment.yml").read_text())
    pip = next(d["pip"] for d in env_file["dependencies"] if isinstance(d, dict))
    assert any(p.startswith("torch==") for p in pip) and any(p.startswith("--extra-index-url") for p in pip)
    wheels = [p for p in pip if p.endswith(".whl")]
    assert wheels and (src / wheels[0]).exists(), f"the zip does not carry lib's wheel: {pip}"
    (src / "requirements.txt").write_text("\n".join(pip) + "\n")
    venv = tmp_path / "venv"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BOOK_", "PYTHON", "VIRTUAL_ENV"))}
    clean.update(PIP_RETRIES="0", PIP_TIMEOUT="5", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean, timeout=300)
    proc = subprocess.run([venv / "bin" / "pip", "install", "-q", "-r", "requirements.txt"], cwd=src, env=clean,
                          capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run([venv / "bin" / "python", "-c", "import lib, torch; print(lib.__file__, torch.__version__)"],
                           cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert str(venv) in where.stdout and str(book.ROOT) not in where.stdout, where.stdout + where.stderr
    qs = {q.name: q for q in assignments.questions(slug)}
    wrong = tmp_path / "wrong.ipynb"
    answer(
        folder / "dist" / "student" / f"{slug}.ipynb",
        {
            "def standardise": assignments.strip_solution_marks(qs["using_ex_4"].solution_code),
            "def tail_fraction": "def tail_fraction(z, k):\n    return float((z > k).float().mean())  # one tail only",
        },
        wrong,
    )

    def graded(notebook) -> dict:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        out.mkdir()
        run = subprocess.run([venv / "bin" / "otter", "run", "-a", zip_file, "-o", out, notebook], cwd=tmp_path,
                             env=clean, capture_output=True, text=True, timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        tests = json.loads((out / "results.json").read_text())["tests"]
        return {t["name"]: (t.get("score"), t.get("max_score"), t.get("output", "")) for t in tests}

    solved = graded(folder / "dist" / "autograder" / f"{slug}.ipynb")
    auto = [q.name for q in qs.values() if q.autograded]
    assert all(solved[n][0] == solved[n][1] for n in auto), {n: solved[n][:2] for n in auto}
    blank = graded(folder / "dist" / "student" / f"{slug}.ipynb")
    assert all(blank[n][0] == 0 for n in auto), {n: blank[n][:2] for n in auto}
    result = graded(wrong)
    assert result["using_ex_4"][0] == result["using_ex_4"][1]
    score, possible, output = result["using_ex_5"]
    assert score < possible and "two of five entries lie beyond 3 in absolute value" in output
