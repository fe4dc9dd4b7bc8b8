"""The whole book as one PDF, for reading offline: Jupyter Book's single-page HTML, printed by headless Chromium.

    python -m tools.pdf        # after `python -m tools.build` (make book runs both): writes _build/html/book.pdf

The single-page build reads the same staged tree as the HTML (executed notebooks, no code run), and the same
Chromium that the browser test drives prints it once MathJax has typeset every formula. The intro links the PDF.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools import book

PDF_NAME = "book.pdf"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def chromium() -> str | None:
    """Return the path of a Chromium on this machine (None when there is none)."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def single_page(stage: Path = book.STAGE) -> Path:
    """Build the staged book as one HTML page; return the page."""
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(stage), "--builder", "singlehtml", "--quiet"], cwd=book.ROOT)
    page = stage / "_build" / "singlehtml" / "index.html"
    if proc.returncode != 0 or not page.exists():
        raise SystemExit("error: the single-page build of the book failed (see above)")
    return page


def print_pdf(page: Path, out: Path) -> Path:
    """Print `page` to `out` with headless Chromium, after MathJax has typeset it."""
    from playwright.sync_api import sync_playwright

    exe = chromium()
    if exe is None:
        raise SystemExit("error: no Chromium here to print the PDF (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        tab.goto(page.as_uri(), wait_until="load", timeout=300_000)
        tab.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
        tab.emulate_media(media="print")
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.pdf(path=str(out), format="A4", print_background=False, margin={"top": "15mm", "bottom": "15mm"})
        browser.close()
    return out


def main() -> int:
    if not (book.STAGE / "_build" / "html").exists():
        print("error: build the HTML first (`python -m tools.build` or `make book`)", file=sys.stderr)
        return 1
    out = print_pdf(single_page(), book.STAGE / "_build" / "html" / PDF_NAME)
    print(f"PDF: {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
