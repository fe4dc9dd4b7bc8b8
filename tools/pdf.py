"""The whole book as one PDF, for reading offline: every page of the built HTML, printed by headless Chromium.

    python -m tools.pdf        # after `python -m tools.build` (make book runs both): writes _build/html/book.pdf

The same Chromium that the browser test drives prints each page of the table of contents, in order, once MathJax
has typeset it, and pypdf joins the pages into one file. (Jupyter Book's single-page builder cannot render the
folded code cells of myst-nb.) The intro links the PDF.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

from tools import book

PDF_NAME = "book.pdf"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def chromium() -> str | None:
    """Return the path of a Chromium on this machine (None when there is none)."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def pages(html: Path) -> list[Path]:
    """Return the built pages in the order of the table of contents."""
    return [html / f"{name}.html" for name in book.toc_files() if (html / f"{name}.html").exists()]


def print_pdf(html: Path, out: Path) -> Path:
    """Print every page of the built HTML in `html` to one PDF `out` with headless Chromium; return `out`."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfWriter

    exe = chromium()
    if exe is None:
        raise SystemExit("error: no Chromium here to print the PDF (Debian: apt-get install chromium)")
    writer = PdfWriter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        for page in pages(html):
            tab.goto(page.as_uri(), wait_until="load", timeout=300_000)
            tab.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
            tab.emulate_media(media="print")
            data = tab.pdf(format="A4", print_background=False, margin={"top": "15mm", "bottom": "15mm"})
            writer.append(io.BytesIO(data), outline_item=tab.title())
        browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        writer.write(fh)
    return out


def main() -> int:
    if not (book.STAGE / "_build" / "html").exists():
        print("error: build the HTML first (`python -m tools.build` or `make book`)", file=sys.stderr)
        return 1
    html = book.STAGE / "_build" / "html"
    out = print_pdf(html, html / PDF_NAME)
    print(f"PDF: {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
