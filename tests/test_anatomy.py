"""What each chapter's source must look like for readers (DESIGN.md "Chapter anatomy"), checked as text."""

import re

import pytest

from tools import book, myst, pairs

PAPERS = [s for s in book.chapter_slugs() if s != "using-this-book"]
PROCESS_NOTES = ("while we revised", "in our prototype", "an earlier version", "when this chapter was first")


def section(text: str, heading: str) -> str:
    return myst.sections(text).get(heading, "")


@pytest.mark.parametrize("slug", PAPERS)
def test_numbers_section_opens_with_a_generated_verdict_table(slug):
    """The verdict table is computed from the record (lib.checks.verdict_table), never typed: no number in it can
    disagree with the record, and the headline counts the same verdicts."""
    text = book.chapter_source(slug).read_text()
    body = section(text, "What the numbers say").strip()
    assert body, f"{slug}: no '## What the numbers say' section"
    first = myst.blocks(body)[:1]
    assert first and first[0].name == "code-cell" and "verdict_table(" in first[0].body, (
        f"{slug}: 'What the numbers say' must open with the code cell that calls verdict_table(...)"
    )
    assert not body.split("\n")[: first[0].start] or not "".join(body.split("\n")[: first[0].start]).strip(), (
        f"{slug}: text before the verdict table"
    )
    typed = re.findall(r"^\|[^\n]*\bverdict\b[^\n]*\|\s*$", text, re.M | re.I)
    assert not typed, f"{slug}: a verdict table typed by hand: {typed[:1]}"


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_chapter_ends_with_a_summary_before_its_exercises(slug):
    text = book.chapter_source(slug).read_text()
    heads = list(myst.sections(text))
    assert "Summary" in heads and "Exercises" in heads, f"{slug}: sections {heads}"
    assert heads.index("Summary") == heads.index("Exercises") - 1, f"{slug}: Summary must come right before Exercises"
    assert section(text, "Summary").strip(), f"{slug}: an empty Summary"


PARAMETERS = 'profile = None  # "quick" (default, any device) or "full" (GPU; see the chapter head)'


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_parameters_cell_says_quick_is_the_default(slug):
    text = book.chapter_source(slug).read_text()
    cell = next((c for c in myst.code_cells(text) if "parameters" in c.options.get("tags", "")), None)
    assert cell and cell.body.splitlines()[0] == PARAMETERS, f"{slug}: the parameters cell must read {PARAMETERS!r}"
    assert f'chapter="{slug}"' in text, f"{slug}: lib.start(profile, seed, chapter={slug!r}) finds its study"


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_no_process_notes_and_no_roles_in_directive_titles(slug):
    text = book.chapter_source(slug).read_text()
    found = [p for p in PROCESS_NOTES if p in text.lower()]
    assert not found, f"{slug}: process notes for readers: {found}"
    titles = [f"{{{b.name}}} {b.arg}" for b in myst.all_blocks(text) if re.search(r"\{[\w:]+\}`", b.arg)]
    assert not titles, f"{slug}: a MyST role in a directive title does not render: {titles[:1]}"


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_code_cells_are_formatted(slug):
    text = book.chapter_source(slug).read_text()
    assert pairs.format_source(text) == text, f"{slug}: code cells not formatted (`python -m tools.pairs format`)"


def code_lines(text: str):
    """Yield (line number, line) of every line of code: code cells and fenced code in the text and solutions.

    A cell's options (`:key: value` lines, or a YAML block between `---` lines at its top) are not code.
    """
    lines = text.split("\n")

    def walk(found):
        for b in found:
            if b.name in ("code-cell", "code-block") or (not b.name and b.arg in ("python", "bash")):
                for i in range(b.body_start, b.body_end):
                    yield i + 1, lines[i]
            elif b.name:
                yield from walk(b.children())

    yield from walk(myst.blocks(text))


@pytest.mark.parametrize("slug", [*book.chapter_slugs(), *book.TOP_PAGES])
def test_code_fits_88_columns(slug):
    """Code wider than 88 columns scrolls sideways in the HTML column and in Colab (issue 11)."""
    source = book.ROOT / slug if slug.endswith(".md") else book.chapter_source(slug)
    text = source.read_text()
    long = [f"line {n}: {line[:60]}..." for n, line in code_lines(text) if len(line) > 88]
    assert not long, f"{slug}: {len(long)} code line(s) over 88 columns (split long strings): {long[:3]}"


@pytest.mark.parametrize("slug", PAPERS)
def test_chapter_ends_with_its_reference_list(slug):
    text = book.chapter_source(slug).read_text()
    refs = section(text, "References")
    assert "{bibliography}" in refs and "docname in docnames" in refs, f"{slug}: no reference list at the end"


PLOTTING = re.compile(r"\b(ax|bx|cx|axes|fig|plt)\b|\bsubplots\(|\.(plot|scatter|bar|hist|imshow|fill_between)\(")


@pytest.mark.parametrize("slug", PAPERS)
def test_figures_are_drawn_in_lib(slug):
    """A reader who opens the code sees the argument, not matplotlib: a paper chapter's figures are drawn by its
    module's `plot_*` functions (on lib.plotting's vocabulary), so a figure cell is a call of at most five lines and
    no code cell holds more than three lines of plotting."""
    text = book.chapter_source(slug).read_text()
    long_figures, plotting = [], []
    for cell in myst.code_cells(text):
        lines = [ln for ln in cell.body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        where = f"line {cell.start + 1}: {lines[0][:60] if lines else ''}"
        if "figure:" in cell.yaml_header and len(lines) > 5:
            long_figures.append(f"{where} ({len(lines)} lines)")
        if sum(bool(PLOTTING.search(ln)) for ln in lines) > 3:
            plotting.append(where)
    assert not long_figures, f"{slug}: figure cells longer than 5 lines (draw in lib/<paper>.py): {long_figures}"
    assert not plotting, f"{slug}: code cells with more than 3 lines of plotting (move them to lib): {plotting}"
