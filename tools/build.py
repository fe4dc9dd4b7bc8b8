"""Build the book's HTML from the executed notebooks, strictly.

    python -m tools.build       # after tools.execute; `make book` runs both (the student edition: tools.student)

Stages a source tree in `_build/book` (top-level pages, `references.bib`, the generated reproducibility
page, and `chapters/<slug>.ipynb` = the executed notebook with a provenance line under its title), then
runs Jupyter Book with execution off and warnings as errors (`-W -n --keep-going`). The chapters are built
from the `.ipynb` side of each pair, so launch buttons open notebooks and no page exists twice.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nbformat

from tools import api, assignments, book, myst, notebooks, report, seeds

ASSIGNMENTS_MARK = "<!-- generated: assignments -->"  # instructors.md: the table of assignments


def chapter_title(nb) -> str:
    """Return the first `# ` heading of a notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` only when it differs, so Sphinx rebuilds only what changed."""
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def link_notebooks(text: str, slugs: list[str]) -> str:
    """Point Markdown links at chapter sources (`x.md`, `chapters/x.md`) to the built notebooks (`.ipynb`)."""
    names = "|".join(re.escape(s) for s in slugs)
    return re.sub(rf"\]\(((?:\./|chapters/)?(?:{names}))\.md(#[^)]*)?\)", r"](\1.ipynb\2)", text) if names else text


def insert_under_title(nb: nbformat.NotebookNode, text: str) -> None:
    """Insert a markdown cell with `text` right under the notebook's `# ` title (splitting its cell)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        at = next((j for j, line in enumerate(lines) if line.startswith("# ")), None)
        if at is None:
            continue
        head, rest = "\n".join(lines[: at + 1]), "\n".join(lines[at + 1 :]).strip("\n")
        note = nbformat.v4.new_markdown_cell(text)
        note.metadata["tags"] = ["provenance"]
        new = [nbformat.v4.new_markdown_cell(head), note] + ([nbformat.v4.new_markdown_cell(rest)] if rest else [])
        nb.cells[i : i + 1] = new
        return
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))


def stage(
    dest: Path = book.STAGE,
    executed: Path = book.EXECUTED,
    report_file: Path = book.REPORT_FILE,
    transform: Callable[[nbformat.NotebookNode], nbformat.NotebookNode] | None = None,
    transform_text: Callable[[str], str] | None = None,
    student: bool = False,
) -> list[str]:
    """Write the source tree of the book into `dest`; return the problems that stop the build.

    `transform` rewrites each chapter notebook and `transform_text` each top-level page before they are
    written (the student edition strips solutions with them). Every edition drops the code and tests of
    autograded solutions (`notebooks.public_myst`); the student edition's links point at the student edition.
    """
    problems = []
    wanted = {"_build", "_static", "chapters", "robustness", "lib", *book.GENERATED, *book.ASSETS, *book.TOP_PAGES}
    if dest.exists():  # remove what is no longer part of the book; keep Sphinx's cache in _build
        for child in dest.iterdir():
            if child.name not in wanted:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        for old in (dest / "chapters").glob("*"):
            if old.stem not in book.chapter_slugs():
                old.unlink()
    for static in (book.ROOT / "_static").glob("*"):
        _write(dest / "_static" / static.name, static.read_bytes())
    for module in (book.ROOT / "lib").glob("*.py"):  # chapters show their mechanism's code from lib (literalinclude)
        _write(dest / "lib" / module.name, module.read_bytes())
    for name in (*book.ASSETS, *book.TOP_PAGES):
        text = (book.ROOT / name).read_bytes()
        if name == "references.bib":
            text = disambiguate_years(text.decode()).encode()
        if name.endswith(".md"):
            page = text.decode().replace(ASSIGNMENTS_MARK, assignments.overview(book.chapter_slugs()))
            page = link_notebooks(page, book.chapter_slugs())
            text = (transform_text(page) if transform_text is not None else page).encode()
        _write(dest / name, text)
    data = book.load_report(report_file)
    record = seeds.load_record(seeds.record_path("quick"))
    gpu = report.gpu_rows()
    titles = {}
    ctx = notebooks.context(student)
    for slug in book.chapter_slugs():
        src = executed / "chapters" / f"{slug}.ipynb"
        if not src.exists():
            problems.append(f"chapter {slug!r} has no executed notebook ({src}); run `make book` first")
            continue
        nb = nbformat.read(src, as_version=4)
        titles[slug] = chapter_title(nb)
        row = data["chapters"].get(slug)
        if row is None:
            problems.append(f"chapter {slug!r} is missing from the execution report")
        else:
            lines = [report.provenance_line(row), report.full_cost_line(slug, gpu)]
            insert_under_title(nb, "\n\n".join(lines))
        nb.metadata.pop("papermill", None)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = notebooks.public_myst(link_notebooks(cell.source, book.chapter_slugs()))
            tags = cell.get("metadata", {}).get("tags", [])
            if {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
                cell.metadata["tags"] = [*tags, "hide-input"]  # folded: the reader sees the values on request
        localise_citations(nb, slug)
        notebooks.insert_before_references(nb.cells, notebooks.how_to_cite(slug, ctx), nbformat.v4.new_markdown_cell)
        if transform is not None:
            nb = transform(nb)
        _write(dest / "chapters" / f"{slug}.ipynb", nbformat.writes(nb).encode())
    _write(dest / "reproducibility.md", report.render(data, titles).encode())
    _write(dest / "api.md", api.render().encode())
    _write(dest / "robustness.md", report.render_robustness(record, titles, dest / "robustness").encode())
    return problems


def localise_citations(nb: nbformat.NotebookNode, slug: str) -> None:
    """Give the chapter's citations and its `{bibliography}` a key prefix of their own.

    sphinxcontrib-bibtex warns (an error in the strict build) when one work is listed by two bibliography
    directives, as a work cited by two chapters and the book's bibliography page would be; prefixed keys make
    each chapter's reference list its own.
    """
    prefix = f"{slug}-"

    def cite(m: re.Match) -> str:
        name, keys = m.group(1), m.group(2)
        if not name.startswith("cite"):
            return m.group(0)
        return f"{{{name}}}`{','.join(prefix + k.strip() for k in keys.split(','))}`"

    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text = myst.ROLE.sub(cite, cell.source)
        lists = myst.directives(text, "bibliography")
        extra = {"keyprefix": prefix, "labelprefix": f"{slug}-"}
        cell.source = myst.replace_blocks(
            text, {b.start: myst.render_block(replace(b, options={**b.options, **extra}), b.body) for b in lists}
        )


def disambiguate_years(bib: str) -> str:
    """Return `references.bib` with `2019a`/`2019b` where two works share first author(s) and year."""
    with tempfile.NamedTemporaryFile("w", suffix=".bib", delete=False) as fh:
        fh.write(bib)
    refs = notebooks.bibliography(Path(fh.name))
    Path(fh.name).unlink()
    for key, ref in refs.items():
        if ref["year"][-1:].isalpha():
            entry = re.compile(rf"(@\w+\{{{re.escape(key)},.*?year\s*=\s*[{{\"]?)(\d{{4}})", re.S)
            bib = entry.sub(lambda m, y=ref["year"]: m.group(1) + y, bib, count=1)
    return bib


def dedupe_inline_scripts(page: Path) -> None:
    """Drop repeated identical `<script>` lines from a built page.

    Works around sphinx-thebe 0.3.1 under this Jupyter Book: it adds its inline configuration script twice,
    and the second copy redeclares `const THEBE_JS_URL`, a JavaScript error on every page.
    """
    lines = page.read_text().splitlines(keepends=True)
    seen, kept = set(), []
    for line in lines:
        key = line.strip()
        if key.startswith("<script") and key in seen:
            continue
        seen.add(key)
        kept.append(line)
    if len(kept) != len(lines):
        page.write_text("".join(kept))


def build(dest: Path = book.STAGE, html_link: Path | None = book.HTML) -> int:
    """Run Jupyter Book on the staged tree, strictly; return its exit code and link `_build/html`."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(dest), "--builder", "html", "-W", "-n", "--keep-going", "--quiet"]
    code = subprocess.run(cmd, cwd=book.ROOT).returncode
    target = dest / "_build" / "html"
    for page in target.rglob("*.html"):
        dedupe_inline_scripts(page)
    if target.exists() and html_link is not None and dest == book.STAGE:
        if html_link.is_symlink() or html_link.exists():
            html_link.unlink() if html_link.is_symlink() else shutil.rmtree(html_link)
        html_link.symlink_to(target.relative_to(html_link.parent))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    problems = stage()
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    code = build()
    if code == 0:
        print(f"HTML: {book.HTML / 'index.html'}")
        from tools import pdf

        if pdf.chromium():
            html = book.STAGE / "_build" / "html"
            out = pdf.print_pdf(html, html / pdf.PDF_NAME)
            print(f"PDF: {out}")
        else:
            print("note: no Chromium here, so no PDF of the book (Debian: apt-get install chromium)")
    else:
        print("error: the strict Jupyter Book build failed (warnings are errors); see above", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
