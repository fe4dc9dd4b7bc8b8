"""The page "The library `lib`": every public function and class of `lib`, what it returns, and where it is explained.

Generated at build time from `lib` itself (docstrings and signatures), so it cannot fall behind the code. A function
is tied to the chapter that explains it by the label of the chapter's statement, in brackets, in its comments or
docstring, e.g. ``# Eq. (3) of [spn-thm-collapsed]`` (plain text, so the code shown on a page reads as code); a
module by its docstring's "Explained in chapter ...".
`tests/test_api.py` fails when such a reference names a label that its chapter does not have.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from tools import book

KINDS = "thm|lem|def|prop|cor|eq|alg|rem|conj|assump|sec|fig"
LABEL_REF = re.compile(rf"\[([a-z0-9]+(?:-[a-z0-9]+)*-(?:{KINDS})(?:-[a-z0-9]+)+)\]")
"""A statement's label in brackets, as `lib` names the statement it computes: `[spn-thm-collapsed]`."""


def modules() -> list[str]:
    """Return the names of `lib`'s modules (`lib.checks`, ...), in alphabetical order."""
    return sorted(f"lib.{p.stem}" for p in (book.ROOT / "lib").glob("*.py") if p.stem != "__init__")


def referenced_labels(path: Path) -> list[tuple[int, str]]:
    """Return (line number, label) of every statement label (`[label]`) in a `lib` module's text."""
    return [(i, m) for i, line in enumerate(path.read_text().splitlines(), 1) for m in LABEL_REF.findall(line)]


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _signature(obj) -> str:
    """Return `(a, b=..., *, c=...)`: the parameters' names (their types are in the docstrings and the code)."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return "(...)"
    out, star = [], False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star:
            out.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        star = star or p.kind is p.VAR_POSITIONAL
        out.append(prefix + p.name + ("=..." if p.default is not p.empty else ""))
    return "(" + ", ".join(out) + ")"


def public_objects(name: str) -> list[tuple[str, object]]:
    """Return the public functions and classes defined in module `name` (not the ones it imports)."""
    module = importlib.import_module(name)
    out = []
    for attr, obj in vars(module).items():
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == name:
            out.append((attr, obj))
    return out


def explained_in(obj, ctx) -> str:
    """Return where `obj` is explained: the statement its comments name (`[label]`) and its chapter."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return ""
    found = []
    for label in dict.fromkeys(LABEL_REF.findall(source)):
        if label in ctx.labels:
            slug = ctx.labels[label][0]
            role = "prf:ref" if label in ctx.titles_of else "ref"
            found.append(f"{{{role}}}`{label}` ({ctx.titles.get(slug, slug)})")
    return "; ".join(found)


def render() -> str:
    """Return the Markdown of the API page."""
    from tools import notebooks

    ctx = notebooks.context()
    out = [
        "# The library `lib`",
        "",
        "Every public function and class of the book's library, generated from `lib` itself: its signature, the "
        "first line of its docstring, and the chapter that explains it (where its code carries a reference to the "
        "chapter's statement). `import lib` gives the runtime; each paper's module is `from lib import <module>`.",
    ]
    for name in modules():
        module = importlib.import_module(name)
        out += ["", f"## `{name}`", "", _first_line(module) or "", ""]
        rows = public_objects(name)
        if not rows:
            continue
        out += ["| name | what it is | explained in |", "|---|---|---|"]
        for attr, obj in rows:
            kind = "class " if inspect.isclass(obj) else ""
            what = _first_line(obj).replace("|", "\\|")
            where = explained_in(obj, ctx)
            out.append(f"| {kind}`{attr}{_signature(obj) if not kind else ''}` | {what} | {where or '–'} |")
    return "\n".join(out) + "\n"
