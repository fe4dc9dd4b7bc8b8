"""The HTML in a real browser: headless Chromium (Debian's) over the index and every chapter page.

Checks: math typeset by MathJax (no raw TeX left), every image loads, no JavaScript errors, launch and
download buttons with the right targets, the search page finds a chapter's term, dark mode renders.
No display math wider than its column at 1280 px. Saves screenshots of each page in
`_build/screenshots/`: `<page>.png` (desktop; whole page for chapters), `<page>-390.png` (a phone),
`<page>-dark.png` (dark mode). Without Chromium the test skips with one line,
except under CI (`CI=true`), where a missing browser is a failure.
"""

import functools
import http.server
import os
import shutil
import threading

import pytest

from tools import book

pytestmark = [pytest.mark.book, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ["intro", "reproducibility", "robustness", "notation", "bibliography", "instructors"] + [
    f"chapters/{slug}" for slug in book.chapter_slugs()
]
SHOTS = book.BUILD / "screenshots"


@pytest.fixture(scope="module")
def browser(built_book):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the browser test (.ci/run installs it)")
        pytest.skip("browser test skipped: no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_book.html.resolve()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium, f"http://127.0.0.1:{server.server_address[1]}"
        chromium.close()
    server.shutdown()


# Display math or code whose content is wider than the column that holds it (clipped or scrolled). Code (cell
# inputs, and code blocks in the text and solutions) is formatted to 88 columns, which fit the column at 1280 px;
# outputs may scroll.
WIDE_ELEMENTS = """() => [
  ...[...document.querySelectorAll('article mjx-container[display="true"]')]
    .filter(e => e.scrollWidth > e.clientWidth + 2 || e.getBoundingClientRect().right >
                 e.closest('section, div.cell, article').getBoundingClientRect().right + 2)
    .map(e => 'math: ' + e.textContent.trim().slice(0, 70)),
  ...[...document.querySelectorAll('article pre')]
    .filter(e => !e.closest('div.cell_output, div.output') && e.scrollWidth > e.clientWidth + 2)
    .map(e => 'code: ' + e.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a).slice(0, 90)),
]"""


# A check line (or any printed output) whose end is hidden: the qualifying note of a check must be readable.
CLIPPED_OUTPUTS = """() => [...document.querySelectorAll('article div.cell_output pre')]
  .filter(e => e.scrollWidth > e.clientWidth + 2)
  .map(e => e.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a).slice(0, 90))"""


# Legibility of figures on a phone. Measure: the smallest text the figures use is 8 points, drawn at 100 dpi or
# more (lib/plotting.py), so 11.1 px in the PNG; on screen it is that times the image's shown width over its natural
# width, and must be at least LEGIBLE_PX.
LEGIBLE_PX = 7
SMALL_FIGURE_TEXT = f"""() => [...document.querySelectorAll('article img')]
  .filter(i => i.naturalWidth > 0 && i.clientWidth / i.naturalWidth * 11.1 < {LEGIBLE_PX})
  .map(i => i.src.split('/').pop() + ' at ' + (i.clientWidth / i.naturalWidth * 11.1).toFixed(1) + ' px')"""


def open_page(browser, path):
    chromium, base = browser
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/{path}", wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


@pytest.mark.parametrize("path", PAGES)
def test_page_renders(browser, path):
    page, errors = open_page(browser, f"{path}.html")
    page.wait_for_function("() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)")
    page.evaluate("() => window.MathJax ? window.MathJax.startup.promise : null")
    untypeset = page.evaluate(
        "() => [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length"
    )
    assert untypeset == 0, f"{untypeset} math element(s) left as raw TeX"
    raw = page.evaluate("() => document.querySelector('main').innerText")
    assert "$$" not in raw and "\\frac" not in raw and "\\begin{" not in raw
    broken = page.evaluate(
        "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    assert not broken, f"images that did not load: {broken}"
    bad_alt = page.evaluate(
        "() => [...document.querySelectorAll('article img')]"
        ".filter(i => !i.alt || i.alt.length < 12 || /\\.(png|svg|jpe?g)$/.test(i.alt)).map(i => i.src)"
    )
    assert not bad_alt, f"images without a real alt text: {bad_alt}"
    uncaptioned = page.evaluate(
        "() => [...document.querySelectorAll('article .cell_output img')]"
        ".filter(i => !(i.closest('figure') && i.closest('figure').querySelector('figcaption'))).map(i => i.src)"
    )
    assert not uncaptioned, f"figures without a caption: {uncaptioned}"
    if path.startswith("chapters/"):
        slug = path.split("/", 1)[1]
        assert page.locator("mjx-container").count() > 0
        colab = page.locator("a[href*='colab.research.google.com']").get_attribute("href")
        binder = page.locator("a[href*='mybinder.org']").get_attribute("href")
        assert colab.endswith(f"/chapters/{slug}.ipynb") and binder.endswith(f"chapters/{slug}.ipynb")
        assert page.locator(f"a[href$='_sources/chapters/{slug}.ipynb']").count() == 1
        assert page.locator("text=Provenance.").count() == 1
        assert page.locator("figure img").count() > 0, "a chapter without a figure"
    name = path.replace("/", "-")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=path.startswith("chapters/"))
    wide = page.evaluate(WIDE_ELEMENTS)
    assert not wide, f"{path}: wider than their column at 1280 px: {wide}"
    assert not errors, f"JavaScript errors: {errors}"
    clipped = page.evaluate(CLIPPED_OUTPUTS)
    assert not clipped, f"{path}: printed output clipped at 1280 px: {clipped}"
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.wait_for_timeout(200)
    page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
    clipped = page.evaluate(CLIPPED_OUTPUTS)
    assert not clipped, f"{path}: printed output clipped at 390 px: {clipped}"
    small = page.evaluate(SMALL_FIGURE_TEXT)
    assert not small, f"{path}: at 390 px, 8-point text in these figures is under {LEGIBLE_PX} px: {small}"
    page.evaluate("() => { document.documentElement.dataset.theme = 'dark'; }")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(200)
    page.screenshot(path=str(SHOTS / f"{name}-dark.png"), full_page=True)
    page.close()


def test_search_finds_a_chapter_term(browser):
    page, errors = open_page(browser, "search.html?q=profile")
    page.wait_for_selector("ul.search li", timeout=15000)
    hits = page.locator("ul.search li a").all_inner_texts()
    assert any("Using this book" in h for h in hits), hits
    page.screenshot(path=str(SHOTS / "search.png"))
    assert not errors, errors
    page.close()


def test_dark_mode_renders(browser):
    page, errors = open_page(browser, "intro.html")
    page.evaluate("() => { document.documentElement.dataset.theme = 'dark'; localStorage.setItem('theme', 'dark'); }")
    page.wait_for_timeout(300)
    rgb = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    channels = [int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    assert sum(channels) / 3 < 80, f"dark mode background is {rgb}"
    page.screenshot(path=str(SHOTS / "intro-dark.png"))
    assert not errors, errors
    page.close()
