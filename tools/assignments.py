"""Course assignments: one otter-grader assignment per chapter, generated from the chapter's exercises.

    python -m tools.assignments [SLUG ...]      # or: make assignments

The chapter's MyST source is the one source of truth. An exercise whose `{solution}` holds a ```` ```python ````
block and one or more `{code-block} python` blocks captioned "Autograder tests (public)" / "(hidden)" is an
autograded question: the python block is the solution (its `# BEGIN SOLUTION` / `# END SOLUTION` lines mark what
the student writes), and every `def test_...(name, ...)` in the test blocks is one test case, which receives the
student's objects by name and fails with its `assert` message. Every other exercise is a manually graded
question whose solution is the solution's text. The instructor HTML shows all of it in the solution drop-down.

For each chapter this writes `_build/assignments/<slug>/`: `master.ipynb` (otter's master notebook: the
chapter's setup, parameters and imports cells, then the questions), and what `otter assign` makes of it:
`dist/autograder/` (solutions, and `<slug>-autograder_*.zip` for Gradescope or `otter run`) and
`dist/student/<slug>.ipynb` (tests stored inside the notebook, so it works alone in Colab; its first cell installs
`lib` and otter). `otter assign` runs every solution against its public and hidden tests and fails if one fails.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import pprint
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

from tools import book, myst, notebooks, setup_cells

OUT = book.BUILD / "assignments"
SOLUTION_MARK = notebooks.SOLUTION_MARK
OTTER_INSTALL = """\
try:
    import otter
except ImportError:
    import subprocess
    import sys

    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "otter-grader"])
    import otter"""


# The grader, started with the public tests written out from the notebook itself: otter reads tests from files,
# and a student notebook opened alone (in Colab, or downloaded) has no test folder beside it.
GRADER = """\
# Start the grader with this assignment's public tests (stored here, so the notebook works alone).
import os

PUBLIC_TESTS = {tests}
os.makedirs("tests", exist_ok=True)
for _name, _text in PUBLIC_TESTS.items():
    with open(os.path.join("tests", _name), "w") as _fh:
        _fh.write(_text)
grader = otter.Notebook(tests_dir="tests")"""


@dataclass
class Question:
    """One exercise of a chapter, as otter sees it."""

    label: str
    number: str
    title: str
    prompt: str  # plain Markdown
    solution_text: str = ""  # plain Markdown (manual questions)
    solution_code: str = ""  # with BEGIN/END SOLUTION lines (autograded questions)
    tests: list[tuple[str, bool]] = field(default_factory=list)  # (function source, hidden)

    @property
    def name(self) -> str:
        return self.label.replace("-", "_")

    @property
    def autograded(self) -> bool:
        return bool(self.solution_code and self.tests)


def strip_solution_marks(text: str) -> str:
    """Return text without the `# BEGIN SOLUTION` / `# END SOLUTION` lines (for readers of the book)."""
    return SOLUTION_MARK.sub("", text)


def questions(slug: str, ctx: notebooks.Book | None = None) -> list[Question]:
    """Return the chapter's exercises as otter questions, in order, numbered as in the book (`tools.myst`)."""
    ctx = ctx or notebooks.context()
    conv = notebooks.Converter(slug, ctx, student=False, standalone=True)  # the assignment leaves the chapter
    out = []
    for ex in myst.exercises(book.chapter_source(slug).read_text()):
        conv.exercise = ex.number
        label = ex.label or f"{slug}-ex-{ex.number}"
        q = Question(label, conv.number(), ex.directive.arg, conv.body(ex.directive.body))
        if ex.solution is not None:
            q.solution_code, q.tests, rest = notebooks.solution_parts(ex.solution.body)
            q.solution_text = conv.body(rest) if rest else ""
        out.append(q)
    return out


def blank(code: str) -> str:
    """Return what the student starts from: each BEGIN/END SOLUTION block replaced by `...`, as otter does."""
    return re.sub(r"(?ms)^([ \t]*)# BEGIN SOLUTION\n.*?^[ \t]*# END SOLUTION[ \t]*$", r"\1...", code)


def self_check(slug: str) -> list[str]:
    """Run each autograded question's tests on its solution (all must pass) and on the student's blank
    (none may pass), in this process, without otter; return the problems found (empty when all is well)."""
    code = [c for c in jupytext.read(book.chapter_source(slug)).cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    base: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in code[: params + 2]:  # setup (imports lib), parameters, then the chapter's imports and start
            exec(cell.source, base)
    problems = []
    for q in (q for q in questions(slug) if q.autograded):
        for version, solved in ((strip_solution_marks(q.solution_code), True), (blank(q.solution_code), False)):
            space = dict(base)
            try:
                exec(version, space)
            except Exception as err:
                if solved:
                    problems.append(f"{q.label}: the solution raises {type(err).__name__}: {err}")
                continue
            for source, _ in q.tests:
                test_space = dict(space)
                exec(source, test_space)
                name = re.search(r"def (\w+)", source).group(1)
                test = test_space[name]
                try:
                    test(*(space[arg] for arg in inspect.signature(test).parameters))
                    passed, why = True, ""
                except Exception as err:
                    passed, why = False, f"{type(err).__name__}: {err}"
                if solved and not passed:
                    problems.append(f"{q.label}: the solution fails {name}: {why}")
                if not solved and passed:
                    problems.append(f"{q.label}: {name} passes on the student's blank (it cannot fail)")
    return problems


MINUTES_AUTOGRADED, MINUTES_WRITTEN = 15, 15  # a student's time per question, as the instructors page states
WRITTEN_POINTS = 3  # each written (manually graded) question, graded by hand on Gradescope with RUBRIC
RUBRIC = (
    "**Rubric ({points} points).** 1 point: a prediction or derivation is stated (before running anything, where "
    "the exercise asks for a prediction). 1 point: its conclusion agrees with the key, or the student reports a run "
    "that contradicts the prediction and says so. 1 point: the reasoning names the mechanism, assumption or theorem "
    "that explains the result.\n\n**Key.** {key}"
)
HOW_TO_SUBMIT = """## How to submit

1. Save, then run every cell from the top (*Kernel → Restart & Run All*, or *Runtime → Run all* in Colab): an
   autograded answer is graded on what the notebook computes.
2. Run the last cell. It checks your autograded answers against the public tests and writes a zip file beside this
   notebook: your notebook and a PDF of your written answers (in Colab, download it from the file browser on the
   left).
3. Upload that zip to the assignment on Gradescope (or wherever your instructor says). Autograded questions are
   scored at once against more tests than the public ones; written questions are graded by hand with a short
   rubric, {points} points each."""


def overview(slugs: list[str], ctx: notebooks.Book | None = None) -> str:
    """Return the instructors' table of assignments: per chapter its questions and a student's estimated time."""
    ctx = ctx or notebooks.context()
    rows = [
        "| chapter | autograded questions | written questions | estimated time |",
        "|---|---|---|---|",
    ]
    for slug in slugs:
        qs = questions(slug, ctx)
        auto = [f"{q.number}" + (f" {q.title}" if q.title else "") for q in qs if q.autograded]
        written = [q.number for q in qs if not q.autograded]
        minutes = MINUTES_AUTOGRADED * len(auto) + MINUTES_WRITTEN * len(written)
        title = ctx.titles.get(slug, slug)
        rows.append(
            f"| [{title}](chapters/{slug}.md) | {'; '.join(auto) or '–'} | {', '.join(written) or '–'} | "
            f"about {round(minutes / 15) * 15} min |"
        )
    return "\n".join(rows)


def _raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def master_notebook(slug: str, ctx: notebooks.Book | None = None) -> nbformat.NotebookNode:
    """Return otter's master notebook for a chapter (config, setup, the chapter's imports, the questions)."""
    ctx = ctx or notebooks.context()
    chapter = jupytext.read(book.chapter_source(slug))
    code = [c for c in chapter.cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    config = {
        "name": slug,
        "init_cell": False,  # our own, after the setup cell that installs otter (see GRADER)
        "check_all_cell": False,
        "export_cell": {"pdf": True, "instructions": "Run this cell, then upload the zip it writes."},
        "run_tests": True,
        "generate": {"pdf": False},
        "tests": {"files": True, "ok_format": False},
    }
    title = ctx.titles.get(slug, slug)
    cells = [
        _raw("# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False).strip()),
        nbformat.v4.new_markdown_cell(
            f"# Assignment: {title}\n\nThe exercises of the chapter [{title}]({notebooks.student_url()}chapters/"
            f"{slug}.html). "
            "Run the cells in order. For an autograded question, write your code where it says `...`, then run "
            "`grader.check(...)` below it to see the public tests; more tests are used for grading. For the other "
            "questions, write your answer in the cell after the question."
        ),
        nbformat.v4.new_code_cell(setup_cells.setup_source() + "\n\n" + OTTER_INSTALL),
        nbformat.v4.new_code_cell(code[params].source),
        nbformat.v4.new_code_cell(code[params + 1].source),  # the chapter's imports and lib.start
        nbformat.v4.new_code_cell(GRADER.format(tests="{}")),
    ]
    for q in questions(slug, ctx):
        header = {"name": q.name, "points": len(q.tests) if q.autograded else WRITTEN_POINTS}
        if not q.autograded:
            header["manual"] = True
        cells.append(_raw("# BEGIN QUESTION\n" + yaml.safe_dump(header, sort_keys=False).strip()))
        cells.append(nbformat.v4.new_markdown_cell(f"**Exercise {q.number}{f' ({q.title})' if q.title else ''}.** "
                                                   f"{q.prompt}"))  # fmt: skip
        if q.autograded:
            cells.append(_raw("# BEGIN SOLUTION"))
            cells.append(nbformat.v4.new_code_cell(q.solution_code))
            cells.append(_raw("# END SOLUTION"))
            cells.append(_raw("# BEGIN TESTS"))
            for source, hidden in q.tests:
                cells.append(nbformat.v4.new_code_cell(("# HIDDEN\n" if hidden else "") + source))
            cells.append(_raw("# END TESTS"))
        else:
            cells.append(_raw("# BEGIN SOLUTION"))
            key = q.solution_text or "(the chapter's solution)"
            cells.append(nbformat.v4.new_markdown_cell(RUBRIC.format(points=WRITTEN_POINTS, key=key)))
            cells.append(_raw("# END SOLUTION"))
        cells.append(_raw("# END QUESTION"))
    cells.append(nbformat.v4.new_markdown_cell(HOW_TO_SUBMIT.format(points=WRITTEN_POINTS)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def lib_wheel(out: Path) -> Path:
    """Build the book's `lib` as a wheel in `out` (the autograder zip carries it: graders need no repository)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(book.ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("ml_theory_book_lib-*.whl"))


def grading_requirements(wheel: str) -> str:
    """Return the autograder's requirements: lib's dependencies pinned as the book pins them (torch's CPU build:
    a grader has no GPU, and the CUDA build is several GB), then the `lib` wheel that the zip carries."""
    import tomllib

    pins = {}
    for line in (book.ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            pins[re.split(r"[=<>\[]", line)[0].lower()] = line
    deps = tomllib.loads((book.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[=<>\[ ]", d)[0].lower() for d in deps]
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"error: requirements.txt pins no version of lib's dependencies {missing}")
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}", *(pins[n] for n in names), f"./files/{wheel}"]
    return "\n".join(lines) + "\n"


def _otter() -> str:
    found = Path(sys.executable).with_name("otter")
    return str(found) if found.exists() else (shutil.which("otter") or "otter")


def assign(slug: str, ctx: notebooks.Book | None = None, out: Path = OUT, wheel: Path | None = None) -> Path:
    """Write the master notebook and run `otter assign` on it; return the chapter's assignment folder.

    With `wheel` (lib built by `lib_wheel`), the autograder zip carries it and installs what `lib` needs
    (`grading_requirements`): a Gradescope image, or any clean Python, grades without the book's repository.
    """
    folder = out / slug
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    nb = master_notebook(slug, ctx)
    if wheel is not None:
        shutil.copy(wheel, folder / wheel.name)
        (folder / "requirements.txt").write_text(grading_requirements(wheel.name))
        config = yaml.safe_load(nb.cells[0].source.removeprefix("# ASSIGNMENT CONFIG\n"))
        config.update(requirements="requirements.txt", files=[wheel.name])
        nb.cells[0].source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False).strip()
    nbformat.write(nb, folder / f"{slug}.ipynb")
    # Two tries: a kernel started while another assignment's kernel starts can die in ZeroMQ ("Assertion failed:
    # pfd.revents & POLLIN"), which has nothing to do with the chapter; a real failure fails twice.
    for attempt in (1, 2):
        shutil.rmtree(folder / "dist", ignore_errors=True)
        proc = subprocess.run(
            [_otter(), "assign", f"{slug}.ipynb", "dist"], cwd=folder, capture_output=True, text=True, timeout=900
        )
        log = proc.stdout + proc.stderr
        (folder / f"assign{'' if attempt == 1 else '-2'}.log").write_text(log)
        failed = re.findall(r"(?m)^.*(?:failed|Error|Traceback).*$", log)
        if proc.returncode == 0 and not failed:
            break
    else:
        where = folder / "assign-2.log"
        raise SystemExit(f"error: otter assign failed twice for {slug} (see {where}):\n" + log[-3000:])
    embed_public_tests(folder / "dist" / "student")
    return folder


def embed_public_tests(student: Path) -> None:
    """Store the public test files inside each student notebook's grader cell (and drop the folder)."""
    tests = {p.name: p.read_text() for p in sorted((student / "tests").glob("*.py"))}
    for path in student.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith("# Start the grader"):
                cell.source = GRADER.format(tests=pprint.pformat(tests, width=100))
        nbformat.write(nb, path)
    shutil.rmtree(student / "tests", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "chapters", nargs="*", help="slugs or chapters/<slug>.md (default: every chapter with questions)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only run each solution and blank against its tests (seconds, no otter)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    ctx = notebooks.context(student=True)  # what students see links to the student edition
    slugs = [Path(c).stem if c.endswith(".md") else c for c in args.chapters]
    for slug in slugs:
        if not book.chapter_source(slug).exists():
            parser.error(f"no chapter {slug!r} (looked for {book.chapter_source(slug)})")
    slugs = slugs or [s for s in book.chapter_slugs() if any(q.autograded for q in questions(s, ctx))]
    if args.check:
        problems = {slug: self_check(slug) for slug in slugs}
        for slug, found in problems.items():
            auto = sum(q.autograded for q in questions(slug, ctx))
            print(f"{slug}: {auto} autograded question(s): " + ("ok" if not found else "\n  ".join(["", *found])))
        return 1 if any(problems.values()) else 0
    started = time.perf_counter()
    wheel = lib_wheel(OUT / "wheel")
    with ThreadPoolExecutor(max_workers=max(1, min(len(slugs), os.cpu_count() or 1))) as pool:
        for slug, folder in zip(slugs, pool.map(lambda s: assign(s, ctx, wheel=wheel), slugs)):
            qs = questions(slug, ctx)
            auto = sum(q.autograded for q in qs)
            print(f"{slug}: {auto} autograded and {len(qs) - auto} manual question(s) -> {folder / 'dist'}")
    print(f"{len(slugs)} assignment(s) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
