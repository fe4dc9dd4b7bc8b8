"""Integration: every chapter executes in the quick profile with every claim reproduced; the strict build passes."""

import pytest

from tools import book

pytestmark = pytest.mark.book
SLUGS = book.chapter_slugs()
QUICK_SECONDS, QUICK_MEMORY_MB = 180, 2048


def test_every_chapter_executes(built_book):
    assert built_book.execute_code == 0, built_book.execute_output


@pytest.mark.parametrize("slug", SLUGS)
def test_chapter_claims_and_budget(built_book, slug):
    row = built_book.report.get(slug)
    assert row is not None, f"{slug} missing from the execution report"
    assert row["status"] == "ok", row.get("error")
    assert row["profile"] == "quick"
    claims = row["claims"]
    assert claims, f"{slug} made no claim check"
    # a check that fails here must be a finding of the study (it fails on some seed there too), never a surprise
    surprises = [c["claim"] for c in claims if c["outcome"] == "fails" and not c.get("guard")]
    assert not surprises, f"{slug}: checks fail that the study says hold: {surprises}"
    assert any(c["outcome"] == "holds" for c in claims), f"{slug}: no check holds"
    assert row.get("verdicts"), f"{slug} has no verdict table (lib.checks.verdict_table)"
    assert row["seconds"] <= QUICK_SECONDS, f"{slug} took {row['seconds']} s in the quick profile"
    assert row["peak_memory_mb"] <= QUICK_MEMORY_MB, f"{slug} peaked at {row['peak_memory_mb']} MB"


def test_strict_build_passes(built_book):
    assert built_book.build_code == 0, built_book.build_output[-3000:]


@pytest.mark.parametrize("slug", SLUGS)
def test_chapter_page_exists_with_provenance(built_book, slug):
    page = built_book.html / "chapters" / f"{slug}.html"
    assert page.exists()
    text = page.read_text()
    assert "Provenance." in text and f"#repro-{slug}" in text
    assert "How to cite" in text and f"chapters/{slug}.html" in text


@pytest.mark.parametrize("slug", SLUGS)
def test_headline_agrees_with_the_verdict_table(built_book, slug):
    """A reader who trusts only the provenance line comes away with the verdicts of the chapter's table."""
    import html
    import re

    from lib.checks import VERDICTS

    text = html.unescape((built_book.html / "chapters" / f"{slug}.html").read_text())
    heads = re.findall(r"Provenance\..*?paper claims: ([^·]*?) ·", re.sub(r"<[^>]+>", "", text), re.S)
    assert heads, f"{slug}: no provenance headline on the page"
    said = {v: int(n) for n, v in re.findall(r"(\d+) (" + "|".join(VERDICTS) + r")\b", heads[0])}
    cells = re.findall(r"<td[^>]*>\s*(?:<p>)?\s*<strong>(" + "|".join(VERDICTS) + r")</strong>", text)
    table = {v: cells.count(v) for v in VERDICTS if cells.count(v)}
    assert said == table, f"{slug}: the headline says {said}, the verdict table shows {table}"


def test_the_whole_book_is_a_pdf(built_book):
    """A PDF of every chapter for offline reading (the single-page HTML printed by Chromium), linked from the intro."""

    pdf = built_book.html / "book.pdf"
    assert pdf.exists(), "no _build/html/book.pdf (tools.pdf)"
    from pypdf import PdfReader

    reader = PdfReader(pdf)
    assert len(reader.pages) >= 50, f"a PDF of {len(reader.pages)} pages"
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    for slug in SLUGS:
        title = next(line for line in book.chapter_source(slug).read_text().splitlines() if line.startswith("# "))
        assert any(title[2:].strip()[:40] in o for o in outline), f"the PDF misses chapter {slug}"
    assert 'href="book.pdf"' in (built_book.html / "intro.html").read_text()


def test_reproducibility_page_lists_every_chapter(built_book):
    text = (built_book.html / "reproducibility.html").read_text()
    assert "Summary" in text and "nan" not in text.replace("nanoGPT", "")
    for slug in SLUGS:
        assert f'id="repro-{slug}"' in text


def test_robustness_page_shows_every_studied_chapter(built_book):
    from tools import seeds

    text = (built_book.html / "robustness.html").read_text()
    assert "How robust is each claim" in text
    for slug in seeds.load_record(seeds.record_path("quick"))["runs"]:
        if slug in SLUGS:
            assert f'id="robust-{slug}"' in text


@pytest.mark.parametrize("slug", SLUGS)
def test_outputs_show_no_warnings_or_machine_paths(built_book, slug):
    import nbformat

    nb = nbformat.read(book.EXECUTED / "chapters" / f"{slug}.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            for bad in ("Warning:", "site-packages", str(book.ROOT), "/tmp/", "/root/"):
                assert bad not in text, f"{slug}, cell {i}: a reader sees {bad!r}: {text[:200]!r}"


def test_instructors_page_lists_every_assignment(built_book):
    page = (built_book.html / "instructors.html").read_text()
    assert "generated: assignments" not in page and "estimated time" in page
    for slug in book.chapter_slugs():
        assert f'href="chapters/{slug}.html"' in page, f"the instructors' table of assignments misses {slug}"
