"""An on-disk cache of expensive results, keyed by the experiment's config, seed and the `lib` sources.

Explained in chapter "Using this book". Results are saved with `torch.save` and loaded with
`weights_only=True`, so a cached value holds tensors, numbers, strings, lists, tuples and dicts.
The folder is `BOOK_CACHE_DIR`, else `~/.cache/ml-theory-book`; `BOOK_NO_CACHE=1` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from lib.config import Config

T = TypeVar("T")


def cache_dir() -> Path:
    """Return the cache folder (created on first use)."""
    root = os.environ.get("BOOK_CACHE_DIR") or Path.home() / ".cache" / "ml-theory-book"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def lib_fingerprint() -> str:
    """Return a short hash of every source file of `lib`: a cached result is only reused by the same code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_path(name: str, cfg: Config, seed: int = 0) -> Path:
    """Return the file that holds result `name` for `cfg`, `seed` and the current `lib` sources."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return cache_dir() / f"{safe}-{cfg.key()}-s{seed}-lib{lib_fingerprint()}.pt"


def cached(name: str, cfg: Config, compute: Callable[[], T], *, seed: int = 0) -> T:
    """Return `compute()`, loading it from disk when this name, config and seed were computed before."""
    if os.environ.get("BOOK_NO_CACHE") == "1":
        return compute()
    path = cache_path(name, cfg, seed)
    if path.exists():
        try:
            value = torch.load(path, weights_only=True)
        except Exception as err:  # a truncated or foreign file: recompute, say so
            print(f"cache: ignoring unreadable {path.name} ({type(err).__name__}); recomputing")
        else:
            print(f"cache: loaded {name} from the cache ({path.name}: computed earlier by this same code and config)")
            return value
    value = compute()
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    tmp.replace(path)
    return value
