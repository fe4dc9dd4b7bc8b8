"""Progress bars for loops longer than a few seconds (hidden while the book is being built)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import TypeVar

from tqdm import TqdmWarning

with warnings.catch_warnings():  # in a notebook without ipywidgets tqdm.auto warns, then falls back to text bars
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs) -> Iterable[T]:
    """Wrap `iterable` in a tqdm bar; silent when `BOOK_QUIET_PROGRESS=1` (the book's runner)."""
    quiet = os.environ.get("BOOK_QUIET_PROGRESS") == "1"
    return tqdm(iterable, desc=desc, total=total, disable=quiet, mininterval=1.0, leave=False, **kwargs)


def trange(n: int, desc: str = "", **kwargs) -> Iterable[int]:
    """Return `progress(range(n))`."""
    return progress(range(n), desc=desc, total=n, **kwargs)
