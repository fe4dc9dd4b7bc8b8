"""Build the book's HTML from the executed notebooks, strictly.

    python -m tools.build [--stage DIR] [--keep-solutions | --student]

Stages a source tree in `_build/book` (top-level pages, `references.bib`, the generated reproducibility
page, and `chapters/<slug>.ipynb` = the executed notebook with a provenance line under its title), then
runs Jupyter Book with execution off and warnings as errors (`-W -n --keep-going`). The chapters are built
from the `.ipynb` side of each pair, so launch buttons open notebooks and no page exists twice.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from tools import book, report


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


def stage(dest: Path = book.STAGE, executed: Path = book.EXECUTED, report_file: Path = book.REPORT_FILE) -> list[str]:
    """Write the source tree of the book into `dest`; return the problems that stop the build."""
    problems = []
    wanted = {
        "_build",
        "chapters",
        "reproducibility.md",
        "_config.yml",
        "_toc.yml",
        "references.bib",
        *book.TOP_PAGES,
    }
    if dest.exists():  # remove what is no longer part of the book; keep Sphinx's cache in _build
        for child in dest.iterdir():
            if child.name not in wanted:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        for old in (dest / "chapters").glob("*"):
            if old.stem not in book.chapter_slugs():
                old.unlink()
    for name in ("_config.yml", "_toc.yml", "references.bib", *book.TOP_PAGES):
        _write(dest / name, (book.ROOT / name).read_bytes())
    data = book.load_report(report_file)
    titles = {}
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
            first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
            cell = nbformat.v4.new_markdown_cell(report.provenance_line(row))
            cell.metadata["tags"] = ["provenance"]
            nb.cells.insert(first_md + 1, cell)
        nb.metadata.pop("papermill", None)
        _write(dest / "chapters" / f"{slug}.ipynb", nbformat.writes(nb).encode())
    _write(dest / "reproducibility.md", report.render(data, titles).encode())
    return problems


def build(dest: Path = book.STAGE, html_link: Path = book.HTML) -> int:
    """Run Jupyter Book on the staged tree, strictly; return its exit code and link `_build/html`."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(dest), "--builder", "html", "-W", "-n", "--keep-going", "--quiet"]
    code = subprocess.run(cmd, cwd=book.ROOT).returncode
    target = dest / "_build" / "html"
    if target.exists() and dest == book.STAGE:
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
    else:
        print("error: the strict Jupyter Book build failed (warnings are errors); see above", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
