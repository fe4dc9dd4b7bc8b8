"""Check or write each chapter's setup cell (from `_config.yml` and `pyproject.toml`) and Colab GPU request.

    python -m tools.setup_cells check   # exit 1 when a chapter's first code cell is not the setup cell
    python -m tools.setup_cells write   # rewrite the setup cells (and Colab metadata) in chapters/*.md

The setup cell installs `lib` from the book's repository (`repository.url` in `_config.yml`, the one place the
address is configured) at the ref the launch buttons open (`repository.branch`, the release tag `v<version>` that
`make release` writes), only when `import lib` fails; a failed install says what to run by hand.
"""

from __future__ import annotations

import sys
import tomllib

import nbformat
import yaml

from tools import book, myst, pairs

SETUP_TEMPLATE = """\
# Setup: on Colab or Binder, install the book's library `lib` when it is missing.
try:
    import lib
except ImportError:
    import subprocess
    import sys

    requirement = (
        "ml-theory-book-lib @ git+"
        "{url}@{ref}"
    )
    if subprocess.call([sys.executable, "-m", "pip", "install", "-q", requirement]):
        raise SystemExit(
            "Could not install the book's library `lib` (is this runtime online?). "
            f'Run `pip install "{{requirement}}"` by hand (in Colab, in a cell: '
            "`!pip install ...`), then run this cell again."
        ) from None
    import lib"""


def version() -> str:
    """Return the book's version (`project.version` of pyproject.toml, the one place it is written)."""
    return tomllib.loads((book.ROOT / "pyproject.toml").read_text())["project"]["version"]


def repository() -> tuple[str, str]:
    """Return the repository URL and the ref the launch buttons open (`repository` of `_config.yml`)."""
    config = yaml.safe_load((book.ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/"), str(config["repository"]["branch"])


def setup_source(ref: str | None = None) -> str:
    """Return the canonical setup cell, installing `lib` from `ref` (default: the launch buttons' ref)."""
    url, launch_ref = repository()
    return SETUP_TEMPLATE.format(url=url, ref=ref or launch_ref)


def problems(source) -> list[str]:
    """Return what is wrong with the setup cell and Colab metadata of a chapter source."""
    text = source.read_text()
    cells = myst.code_cells(text)
    out = []
    if not cells or cells[0].body.strip() != setup_source():
        out.append(
            f"{source.name}: the first code cell is not the setup cell (run `python -m tools.setup_cells write`)"
        )
    notebook = source.with_suffix(".ipynb")
    meta = nbformat.read(notebook, as_version=4).metadata if notebook.exists() else {}
    if "accelerator" in meta or "gpuType" in meta.get("colab", {}):
        out.append(f"{notebook.name}: asks Colab for a GPU; the quick default needs none (run `make sync`)")
    return out


def write(source) -> bool:
    """Rewrite the setup cell and GPU metadata of `source`; return True when it changed."""
    text = source.read_text()
    cells = myst.code_cells(text)
    new = text
    if cells and "import lib" in cells[0].body:
        new = myst.replace_lines(text, {(cells[0].body_start, cells[0].body_end): setup_source()})
    if new != text:
        source.write_text(new)
    pairs.sync(source)
    return new != text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["check"], ["write"]):
        print(__doc__, file=sys.stderr)
        return 2
    sources = pairs.paired_sources()
    if argv == ["write"]:
        for source in sources:
            print(f"{'rewrote' if write(source) else 'unchanged'} {source.name}")
        return 0
    found = [p for s in sources for p in problems(s)]
    for p in found:
        print(f"error: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
