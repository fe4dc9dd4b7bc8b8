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


def test_the_comment_wrapper_keeps_sentences_whole():
    from tools.pairs import wrap_comments

    long = "# " + " ".join(["word"] * 30)
    code = f"x = 1\n    {long}\n    # and the end of the sentence.\n    #\n    # Second paragraph.\ny = 2  # short"
    out = wrap_comments(code, width=40).splitlines()
    assert out[0] == "x = 1" and out[-1] == "y = 2  # short"
    body = out[1:-1]
    assert all(len(line) <= 40 and line.startswith("    #") for line in body)
    words = " ".join(line.strip("# ") for line in body).split()
    assert words == ["word"] * 30 + ["and", "the", "end", "of", "the", "sentence.", "Second", "paragraph."]
    assert "    #" in body and body[-1] == "    # Second paragraph."
    # Lines full except the last of each paragraph: no fragment left mid-sentence.
    first = body[: body.index("    #")]
    assert all(len(line) > 40 - len(" sentence.") for line in first[:-1])
    # Short comment blocks are left exactly as written; a long trailing comment moves above its line.
    assert wrap_comments("# a\n# b", width=40) == "# a\n# b"
    assert wrap_comments("z = 3  # " + "w " * 30, width=40).splitlines()[-1] == "z = 3"
