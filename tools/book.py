"""Shared facts about the book's tree: where things are, which chapters exist, cache keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"  # executed notebooks, chapters/<slug>.ipynb
REPORTS = BUILD / "reports"
REPORT_FILE = REPORTS / "execution.json"
STAGE = BUILD / "book"  # the source tree Jupyter Book builds from
HTML = BUILD / "html"
TOP_PAGES = ("intro.md", "notation.md", "bibliography.md", "instructors.md")
ASSETS = ("_config.yml", "_toc.yml", "references.bib", "logo.png")
GENERATED = ("reproducibility.md", "robustness.md", "api.md")  # pages written at build time (records, lib)

# What the Makefile exports, also for the tools run directly (`python -m tools.seeds`, `tools.script`): the
# datasets beside the project (../shared/data, see README "Data") and the project's cache, unless the caller
# chose others. Without this, a study run by hand would quietly use the offline fallback data.
if (ROOT.parent / "shared" / "data").is_dir():
    os.environ.setdefault("BOOK_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("BOOK_CACHE_DIR", str(BUILD / "cache"))


# Notebooks do not ask Colab for a GPU: the default profile (`quick`) finishes in minutes on any runtime, and a
# GPU runtime costs a student's quota and a wait. A reader who wants `full` switches the runtime (chapter head).


def toc_files(toc_path: Path | None = None) -> list[str]:
    """Return every `file:` entry of `_toc.yml`, in order (root first)."""
    toc = yaml.safe_load((toc_path or ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def chapter_slugs() -> list[str]:
    """Return the slugs of the chapters listed in `_toc.yml` (the `chapters/<slug>` entries)."""
    return [f.split("/", 1)[1] for f in toc_files() if f.startswith("chapters/")]


def chapter_source(slug: str) -> Path:
    """Return `chapters/<slug>.md`, the source of truth of a chapter."""
    return ROOT / "chapters" / f"{slug}.md"


def resolve_chapters(items: list[str]) -> list[tuple[str, Path]]:
    """Return (slug, source) for each slug or chapter path given (every chapter of `_toc.yml` when none is);
    exit with a sentence naming the known chapters when one does not exist."""
    if not items:
        return [(slug, chapter_source(slug)) for slug in chapter_slugs()]
    out = []
    for item in items:
        path = Path(item)
        source = path.with_suffix(".md").resolve() if path.suffix in (".md", ".ipynb") else chapter_source(item)
        if not source.exists():
            raise SystemExit(
                f"error: no chapter {item!r} (looked for {source}); chapters: {', '.join(chapter_slugs())}"
            )
        out.append((source.stem, source))
    return out


def chapter_notebook(slug: str) -> Path:
    """Return `chapters/<slug>.ipynb`, the committed (output-free) pair of a chapter."""
    return ROOT / "chapters" / f"{slug}.ipynb"


def _hash_files(digest, paths) -> None:
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path).encode())
        digest.update(path.read_bytes())


def cache_key(source: Path, profile: str, seed: int) -> str:
    """Return the key under which a passing execution of `source` can be reused.

    It covers the chapter's source, every file in `lib/`, `requirements.txt`, the profile and the seed.
    """
    digest = hashlib.sha256()
    _hash_files(digest, [source])
    lib_files = [p for p in (ROOT / "lib").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    _hash_files(digest, lib_files)
    _hash_files(digest, [ROOT / "requirements.txt"])
    digest.update(json.dumps([profile, seed]).encode())
    return digest.hexdigest()


def code_cells(source: Path) -> list[str]:
    """Return the source of every code cell of a chapter (jupytext's reading of its MyST)."""
    import jupytext

    nb = jupytext.read(source)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _lib_imports(code: str) -> set[str]:
    """Return the `lib` modules (`lib/x.py` names, `__init__` included) that `code` imports."""
    import ast

    lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return {"__init__"}
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # inside lib: from .x import y
            names = [f"lib.{node.module}"] if node.module else [f"lib.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lib":
                found.add("__init__")
                if len(parts) > 1 and (ROOT / "lib" / f"{parts[1]}.py").exists():
                    found.add(parts[1])
    return found


def lib_closure(code: str) -> list[Path]:
    """Return the `lib` modules that `code` imports, transitively (what a chapter's results depend on)."""
    todo, seen = list(_lib_imports(code)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += list(_lib_imports((ROOT / "lib" / f"{name}.py").read_text()) - seen)
    return sorted(ROOT / "lib" / f"{name}.py" for name in seen)


def code_form(code: str) -> str:
    """Return what Python runs of `code`: its syntax tree without comments, formatting or docstrings."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def study_key(source: Path, profile: str, seed: int) -> str:
    """Return the key of a chapter's seed-study job: what its *code* does, not its prose or comments.

    It covers the syntax trees of the chapter's code cells and of the `lib` modules they import (transitively),
    without comments or docstrings, then `requirements.txt`, the profile and the seed: a text edit, a comment or
    a docstring does not stale a study, and a change to `lib/spn.py` stales only the chapters that import it.
    """
    digest = hashlib.sha256()
    cells = code_cells(source)
    digest.update(json.dumps([code_form(c) for c in cells]).encode())
    for path in lib_closure("\n".join(cells)):
        digest.update(f"{path.name}\n{code_form(path.read_text())}".encode())
    digest.update(json.dumps(runtime_pins()).encode())
    digest.update(json.dumps([profile, seed]).encode())
    return digest.hexdigest()


def runtime_pins() -> list[str]:
    """Return the pins of `requirements.txt` for the packages `lib` depends on (pyproject's dependencies): what a
    chapter's numbers can depend on. A pin of the book's tooling (Jupyter Book, pytest, pypdf) stales no study."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[=<>\[ ;]", d)[0].lower() for d in deps}
    pins = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and re.split(r"[=<>\[ ;]", line)[0].lower() in names:
            pins.append(line)
    return sorted(pins)


def study_files(source: Path) -> list[Path]:
    """Return the files a chapter's study key covers (refuse a study while one of them is uncommitted)."""
    return [source, *lib_closure("\n".join(code_cells(source))), ROOT / "requirements.txt"]


def load_report(path: Path = REPORT_FILE) -> dict:
    """Return the execution report (`{"chapters": {slug: row}}`), empty when there is none."""
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"chapters": {}}
        if isinstance(data.get("chapters"), list):
            data["chapters"] = {row["chapter"]: row for row in data["chapters"]}
        return data
    return {"chapters": {}}


def save_report(report: dict, path: Path = REPORT_FILE) -> None:
    """Write the report with chapters as a list of rows (in TOC order where known)."""
    order = {slug: i for i, slug in enumerate(chapter_slugs())}
    rows = sorted(report["chapters"].values(), key=lambda r: (order.get(r["chapter"], 1e9), r["chapter"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**report, "chapters": rows}, indent=2, ensure_ascii=False))
    tmp.replace(path)
