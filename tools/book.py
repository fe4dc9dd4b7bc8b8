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
GENERATED = ("reproducibility.md", "robustness.md")  # pages written at build time from the records

# What the Makefile exports, also for the tools run directly (`python -m tools.seeds`, `tools.script`): the
# datasets beside the project (../shared/data, see README "Data") and the project's cache, unless the caller
# chose others. Without this, a study run by hand would quietly use the offline fallback data.
if (ROOT.parent / "shared" / "data").is_dir():
    os.environ.setdefault("BOOK_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("BOOK_CACHE_DIR", str(BUILD / "cache"))


CPU_ONLY = {"using-this-book"}  # chapters whose full profile does not want a GPU
COLAB_GPU = {"accelerator": "GPU", "colab": {"gpuType": "T4"}}  # notebook metadata: Colab opens a GPU runtime


def wants_gpu(slug: str) -> bool:
    """True when the chapter's full profile wants a GPU (its notebook asks Colab for one)."""
    return slug not in CPU_ONLY


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
