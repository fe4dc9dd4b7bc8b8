"""Progress bars for loops longer than a few seconds (hidden while the book is being built), and the smoke switch.

The smoke run of the full profile (`BOOK_SMOKE=1`, set by `python -m tools.execute --smoke`) runs every chapter
with the full configuration on the CPU, its loops cut short, to catch a shape, device or branch error before a GPU
sees it: every training loop of the book runs through `trange`, which then yields only the first and the last step
(code that acts at the last step still runs), and samplers and sweeps cut their lengths with `smoke_cap`.
"""

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
SMOKE_ENV = "BOOK_SMOKE"


def smoke() -> bool:
    """True in the smoke run of the full profile (loops cut short, nothing measured)."""
    return os.environ.get(SMOKE_ENV) == "1"


def smoke_cap(n: int, cap: int = 2) -> int:
    """Return `n`, or at most `cap` in the smoke run (sample counts, sweep lengths, data sizes)."""
    return min(n, cap) if smoke() else n


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs) -> Iterable[T]:
    """Wrap `iterable` in a tqdm bar; silent when `BOOK_QUIET_PROGRESS=1` (the book's runner)."""
    quiet = os.environ.get("BOOK_QUIET_PROGRESS") == "1"
    return tqdm(iterable, desc=desc, total=total, disable=quiet, mininterval=1.0, leave=False, **kwargs)


def trange(n: int, desc: str = "", **kwargs) -> Iterable[int]:
    """Return `progress(range(n))`; in the smoke run only steps 0 and n - 1."""
    if smoke():
        steps = sorted({0, n - 1}) if n > 0 else []
        return progress(steps, desc=desc, total=len(steps), **kwargs)
    return progress(range(n), desc=desc, total=n, **kwargs)
