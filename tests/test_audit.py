"""The rendering audit: what a reader would see that the strict build does not catch, on both editions."""

import pytest

from tools import audit, book

BROKEN = """<html><body><article>
<p>```{prf:definition} Bigram model {cite:p}`x`</p>
<p>An equation left as $$x^2$$ and inline $\\alpha_t$ in the text.</p>
<p>See <a href="other.html"></a>.</p>
</article></body></html>"""
CLEAN = """<html><body><article><h1>Title</h1>
<div class="proof theorem admonition"><p>Theorem 1</p><span class="math">\\(x^2\\)</span></div>
<pre>```{code-cell} shown as code is fine</pre><p>Costs $5 and $6.</p><a href="x.html">text</a>
</article></body></html>"""


def test_audit_flags_raw_myst_math_and_empty_links(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(BROKEN)
    found = "\n".join(audit.audit_page(page, "p.html"))
    assert "MyST source shown as text '```{'" in found and "'{cite'" in found and "'{prf:'" in found
    assert "unrendered math" in found and "a link without text" in found


def test_audit_passes_a_clean_page_and_counts_directives(tmp_path):
    page, source = tmp_path / "p.html", tmp_path / "p.md"
    page.write_text(CLEAN)
    source.write_text("```{prf:theorem} T\n:label: t\n\nx\n```\n")
    assert audit.audit_page(page, "p.html", source) == []
    source.write_text("```{prf:theorem} T\nx\n```\n\n```{prf:lemma} L\ny\n```\n")
    assert audit.audit_page(page, "p.html", source) == ["p.html: 2 prf directive(s) in p.md, 1 rendered"]


@pytest.mark.book
def test_instructor_edition_renders_everything(built_book):
    problems = audit.audit(book.HTML)
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_student_edition_renders_everything(student_edition):
    problems = audit.audit(student_edition / "html", student=True)
    assert not problems, "\n".join(problems)
