"""The page "The library `lib`" (tools/api.py), and the ties between lib's code and the chapters that explain it."""

import pytest

from tools import api, book, myst, notebooks

PAPERS = [s for s in book.chapter_slugs() if s != "using-this-book"]
CTX = notebooks.context()


@pytest.mark.parametrize("module", [p.stem for p in sorted((book.ROOT / "lib").glob("*.py"))])
def test_every_label_lib_references_exists_in_its_chapter(module):
    path = book.ROOT / "lib" / f"{module}.py"
    missing = [f"line {i}: {label}" for i, label in api.referenced_labels(path) if label not in CTX.labels]
    assert not missing, f"lib/{module}.py references labels no chapter has: {missing}"


def test_api_page_lists_every_public_function():
    page = api.render()
    for name in api.modules():
        assert f"## `{name}`" in page
        for attr, _ in api.public_objects(name):
            assert f"`{attr}" in page, f"{name}.{attr} is missing from the API page"


@pytest.mark.parametrize("slug", PAPERS)
def test_the_mechanism_is_shown_beside_its_statement(slug):
    """Each paper chapter shows the lib code that is its paper's mechanism (literalinclude with :pyobject:, one
    source), and that code names the chapter's statement it computes."""
    text = book.chapter_source(slug).read_text()
    shown = [
        (b.arg.removeprefix("../"), b.options["pyobject"])
        for b in myst.all_blocks(text)
        if b.name == "literalinclude" and "pyobject" in b.options
    ]
    assert shown, f"{slug}: no literalinclude of its mechanism from lib"
    for path, name in shown:
        code = notebooks.pyobject_source(book.ROOT / path, name)
        labels = [label for label in api.LABEL_REF.findall(code) if CTX.labels.get(label, ("",))[0] == slug]
        assert labels, f"{slug}: {path}:{name} carries no reference to the chapter's statement it computes"
