"""Rendering audit: what a reader of the built HTML would see that the strict build does not catch.

    python -m tools.audit [HTML_DIR ...]      # default: _build/html and, when built, _build/student/html

Over every page: no directive or role source left as text (```` ```{ ````, `{cite`, `{prf:`, `:label:` ...),
no unrendered `$`/`$$` math, no link without text; over every chapter: each `prf:` and `exercise` directive of
its MyST source present as a rendered block. (Widths at 1280 px are measured in the browser test.)
Prints one line per problem, with the page and what was found; exits 1 when there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup

from tools import book, myst

RAW_MYST = ("```{", ":::{", "{cite", "{prf:", ":label:", "{exercise}", "{solution}", "{ref}`", "{eq}`", "{numref}`")
# Left-over math: `$$`, a `$` not starting an amount, or a TeX command (`\dots`) outside typeset math.
RAW_MATH = re.compile(r"\$\$|\$(?![\d.,])|\\[A-Za-z]{2,}")


def _visible_text(soup: BeautifulSoup) -> str:
    """Return the text of the page's article, without code, scripts, styles and typeset math."""
    article = soup.find("article") or soup.body or soup
    for tag in article.find_all(["script", "style", "pre", "code", "mjx-container", "svg"]):
        tag.decompose()
    for tag in article.find_all(class_=["math", "highlight", "cell_output", "output"]):
        tag.decompose()
    return article.get_text(" ")


def directive_counts(source: Path) -> dict[str, int]:
    """Return how many theorem-like (`prf:*`), exercise and solution directives a chapter source has."""
    found = [d.name for d in myst.directives(source.read_text())]
    return {
        "prf": sum(d.startswith("prf:") for d in found),
        "exercise": found.count("exercise"),
        "solution": found.count("solution"),
    }


def rendered_counts(soup: BeautifulSoup) -> dict[str, int]:
    """Return how many theorem-like, exercise and solution blocks a built page shows."""

    def count(cls: str) -> int:
        return len(soup.select(f"div.{cls}"))

    return {"prf": count("proof"), "exercise": count("exercise"), "solution": count("solution")}


def audit_page(page: Path, rel: str, source: Path | None = None, student: bool = False) -> list[str]:
    """Return the problems a reader would see on one built page."""
    soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
    out = []
    article = soup.find("article") or soup
    for a in article.find_all("a", href=True):
        label = a.get_text(strip=True) or a.get("aria-label") or a.get("title")
        if not label and not a.find("img", alt=True):
            out.append(f"{rel}: a link without text to {a['href']!r} (in {a.parent.name})")
    text = _visible_text(soup)
    for pattern in RAW_MYST:
        at = text.find(pattern)
        if at >= 0:
            context = " ".join(text[max(0, at - 60) : at + 60].split())
            out.append(f"{rel}: MyST source shown as text {pattern!r}: …{context}…")
    for match in list(RAW_MATH.finditer(text))[:5]:
        context = " ".join(text[max(0, match.start() - 40) : match.end() + 40].split())
        out.append(f"{rel}: unrendered math {match.group(0)[:40]!r}: …{context}…")
    if source is not None:
        want, got = directive_counts(source), rendered_counts(soup)
        if student:
            want["solution"] = 0
        for kind in ("prf", "exercise", "solution"):
            if got[kind] != want[kind]:
                out.append(f"{rel}: {want[kind]} {kind} directive(s) in {source.name}, {got[kind]} rendered")
    return out


def audit(html: Path, student: bool = False) -> list[str]:
    """Return every problem found over the pages of one built edition."""
    out = []
    for page in sorted(html.rglob("*.html")):
        rel = str(page.relative_to(html))
        if rel.startswith(("_static", "_sources", "genindex", "search")):
            continue
        source = None
        if rel.startswith("chapters/"):
            candidate = book.chapter_source(Path(rel).stem)
            source = candidate if candidate.exists() else None
        out += audit_page(page, rel, source, student=student)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    student_html = book.BUILD / "student" / "html"
    targets = [Path(a) for a in argv] or [book.HTML] + ([student_html] if student_html.exists() else [])
    problems = []
    for html in targets:
        if not html.exists():
            print(f"error: no built book at {html} (run `make book` or `make student`)", file=sys.stderr)
            return 2
        found = audit(html, student="student" in html.parts)
        problems += found
        print(f"{html}: {len(found)} problem(s)")
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
