"""The converter from MyST to the plain Jupyter Markdown that Colab renders (tools/notebooks.py)."""

import pytest

from tools import book, notebooks

CTX = notebooks.Book(
    base_url="https://example.org/book/",
    titles={"here": "This chapter", "there": "Another chapter"},
    numbers={"here": 3},
    labels={"here-thm": ("here", "Theorem 3.1"), "there-sec": ("there", "A section")},
    refs={
        "smith2020": {"short": "Smith and Jones", "year": "2020", "url": "https://arxiv.org/abs/1", "title": "T",
                      "venue": "V", "names": "A Smith, B Jones"},
    },
)  # fmt: skip

SOURCE = """\
(here-sec)=
## A section

See {cite:t}`smith2020` and the result {cite:p}`smith2020`, {prf:ref}`here-thm`, {ref}`there-sec` and
[](there.md).

```{prf:theorem} Main
:label: here-thm

For all $x$,

$$
f(x) = 0
$$ (eq-main)
```

<!-- spoiler: here-ex -->
The answer is 42.
<!-- /spoiler -->

```{exercise} Predict
:label: here-ex

Change the code and predict.
```

````{solution} here-ex
:class: dropdown

```python
print(42)
```

```{code-block} python
:caption: Autograder tests (hidden)

def test_answer(x):
    assert x == 42
```
````

```{bibliography}
:filter: docname in docnames
```
"""


def render(student: bool) -> notebooks.Converted:
    return notebooks.Converter("here", CTX, student).render(SOURCE)


def test_instructor_markdown_is_plain_jupyter():
    out = render(student=False)
    text = "\n".join(out.chunks)
    assert out.answers_after == ["3.1"]  # an answer cell follows Exercise 3.1
    assert '<a id="here-sec"></a>' in text and "[Smith and Jones (2020)](https://arxiv.org/abs/1)" in text
    assert "([Smith and Jones 2020](https://arxiv.org/abs/1))" in text
    assert "[Theorem 3.1](#here-thm)" in text
    assert "[A section](https://example.org/book/chapters/there.html#there-sec)" in text
    assert "[Another chapter](https://example.org/book/chapters/there.html)" in text
    assert "**Theorem 3.1 (Main).** For all $x$," in text and "$$\nf(x) = 0\n$$" in text and "(eq-main)" not in text
    assert "**Exercise 3.1 (Predict).** Change the code and predict." in text
    assert "<summary><b>Solution to Exercise 3.1</b></summary>" in text and "The answer is 42." in text
    # an autograded solution's code and its tests are the instructor's: no published notebook shows them
    assert "print(42)" not in text and "test_answer" not in text and notebooks.AUTOGRADED_NOTE in text
    assert "spoiler" not in text
    assert "- A Smith, B Jones (2020). *T*. V. <https://arxiv.org/abs/1>" in text
    for leftover in notebooks.MYST_LEFTOVERS:
        assert leftover not in text, leftover


def test_public_myst_drops_autograded_code_and_tests_only():
    myst = "\n".join(
        [
            "````{solution} ex-1",
            ":class: dropdown",
            "",
            "Why: because.",
            "",
            "```python",
            "x = 42  # BEGIN SOLUTION",
            "```",
            "",
            "```{code-block} python",
            ":caption: Autograder tests (hidden)",
            "",
            "def test_x(x):",
            "    assert x == 42",
            "```",
            "````",
            "",
            "```{solution} ex-2",
            "A written answer with `code`.",
            "```",
        ]
    )
    out = notebooks.public_myst(myst)
    assert "x = 42" not in out and "test_x" not in out and "Why: because." in out and ":class: dropdown" in out
    assert notebooks.AUTOGRADED_NOTE in out and "A written answer with `code`." in out
    assert out.count("````") == 2 and out.splitlines()[-1] == "```"


def test_student_markdown_has_no_solution_and_no_spoiler():
    text = "\n".join(render(student=True).chunks)
    assert "**Exercise 3.1 (Predict).**" in text
    assert "print(42)" not in text and "Solution" not in text and "The answer is 42." not in text
    assert "test_answer" not in text


def test_unknown_citation_and_unclosed_directive_are_clear_errors():
    conv = notebooks.Converter("here", CTX, False)
    with pytest.raises(ValueError, match="unknown citation key 'nobody'"):
        conv.render("{cite:p}`nobody`")
    with pytest.raises(ValueError, match="unclosed directive"):
        conv.render("```{prf:lemma} L\nno end\n")


def test_bibliography_years_are_disambiguated():
    refs = notebooks.bibliography()
    years = {k: r["year"] for k, r in refs.items() if k in ("wang2019glue", "wang2019superglue")}
    assert sorted(years.values()) == ["2019a", "2019b"]


@pytest.mark.parametrize("slug", book.chapter_slugs())
def test_committed_notebook_is_the_conversion_and_plain(slug):
    from tools import pairs

    assert pairs.problems(book.chapter_source(slug)) == []


def test_numbered_boxes_and_short_references_as_in_the_html():
    """Theorem boxes keep the numbers sphinx-proof gives them (per kind, prefixed by the chapter's number), and a
    reference to one reads "Lemma 3.1" in the notebooks as in the HTML."""
    from tools import myst

    ctx = notebooks.context()
    slug = "looped-transformers"
    number = ctx.numbers[slug]
    kinds: dict[str, int] = {}
    statements = [b for b in myst.all_blocks(book.chapter_source(slug).read_text()) if b.name.startswith("prf:")]
    for kind, label in [(b.name.removeprefix("prf:"), b.label) for b in statements if b.label]:
        if kind == "proof":
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
        assert ctx.labels[label] == (slug, f"{kind.capitalize()} {number}.{kinds[kind]}")
    assert kinds, "the chapter has numbered boxes"
