"""The chapters' jupytext pairs agree, committed notebooks carry no outputs, and the TOC lists every chapter."""

import pytest

from tools import book, pairs

SOURCES = pairs.paired_sources()


def test_toc_and_chapters_agree():
    listed = set(book.chapter_slugs())
    present = {p.stem for p in SOURCES}
    assert listed <= present, f"_toc.yml lists chapters without a source: {sorted(listed - present)}"
    assert present <= listed, f"chapters missing from _toc.yml: {sorted(present - listed)}"
    for name in book.TOP_PAGES:
        assert (book.ROOT / name).exists()


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_pair_in_sync_and_output_free(source):
    assert pairs.problems(source) == []
