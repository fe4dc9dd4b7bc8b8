"""Profiles, devices, seeds, threads and provenance: what every chapter runs on.

Explained in chapter "Using this book" (`chapters/using-this-book`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("quick", "full")
"""`quick`: CPU, CI, Binder, free Colab (<= 180 s a chapter). `full`: one GPU, closer to the paper's scale."""

F = TypeVar("F", bound=Callable)
_DEVICE_CHOICES = ("cpu", "cuda", "mps")


def resolve_profile(profile: str | None = None) -> str:
    """Return `quick` or `full`: the papermill parameter, then `BOOK_PROFILE`, then `quick`.

    `quick` is the default on every device, a GPU included: `full` is always asked for explicitly.
    """
    chosen = profile if profile not in (None, "") else os.environ.get("BOOK_PROFILE") or "quick"
    chosen = str(chosen).strip().lower()
    if chosen not in PROFILES:
        source = "the `profile` parameter" if profile not in (None, "") else "BOOK_PROFILE"
        raise ValueError(
            f"Unknown profile {chosen!r} (from {source}); valid profiles are {', '.join(repr(p) for p in PROFILES)}."
        )
    return chosen


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device(name: str | None = None) -> torch.device:
    """Return the device to compute on: CUDA, then Apple MPS, then CPU; `BOOK_DEVICE` overrides.

    Asking for a device that is not present raises a `RuntimeError` that says what is available.
    """
    wanted = name if name else os.environ.get("BOOK_DEVICE", "")
    wanted = wanted.strip().lower()
    if not wanted:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = wanted.split(":")[0]
    if kind not in _DEVICE_CHOICES:
        raise ValueError(f"Unknown device {wanted!r}; choose one of {', '.join(_DEVICE_CHOICES)}.")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available[kind]:
        present = ", ".join(k for k, ok in available.items() if ok)
        raise RuntimeError(
            f"Device {wanted!r} was asked for (BOOK_DEVICE or argument) but is not available on this "
            f"machine; available: {present}. Unset BOOK_DEVICE to pick automatically."
        )
    return torch.device(wanted)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds the legacy global RNG that libraries still use)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU threads (`BOOK_THREADS`, else all cores) and return the number used.

    Small models run faster on few threads; the book's runner sets `BOOK_THREADS` when it executes
    chapters in parallel so that they do not oversubscribe the cores.
    """
    if n is None:
        n = int(os.environ.get("BOOK_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def one_thread(fn: F) -> F:
    """Return `fn` run with one torch thread (the previous setting restored afterwards).

    For tiny models on a CPU, one thread is several times faster than two, and far faster on a shared
    machine (threads spin waiting for each other). On a GPU the setting is harmless.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(old)

    return wrapper  # type: ignore[return-value]


def git_commit(path: Path | str | None = None) -> str:
    """Return the short git commit of the book (`BOOK_COMMIT` if set), or `unknown`."""
    if os.environ.get("BOOK_COMMIT"):
        return os.environ["BOOK_COMMIT"]
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@dataclass(frozen=True)
class Run:
    """What a chapter runs with: profile, device, seed, threads and where it came from."""

    profile: str
    device: torch.device
    seed: int
    threads: int
    commit: str
    torch_version: str
    python_version: str
    chapter: str = ""

    @property
    def full(self) -> bool:
        """True in the `full` profile."""
        return self.profile == "full"

    def provenance(self) -> dict:
        """Return the provenance record as a JSON-ready dict."""
        record = asdict(self)
        record["device"] = str(self.device)
        return record

    def __str__(self) -> str:
        return (
            f"profile={self.profile} device={self.device} seed={self.seed} threads={self.threads} "
            f"torch={self.torch_version} commit={self.commit}"
        )


_CURRENT: list[Run] = []


def current() -> Run | None:
    """Return the `Run` of the last `start` in this process (None before any)."""
    return _CURRENT[-1] if _CURRENT else None


def start(profile: str | None = None, seed: int = 0, *, chapter: str = "", quiet: bool = False) -> Run:
    """Resolve profile and device, seed everything, set threads; print and return the `Run`.

    `chapter` (the chapter's slug) lets its checks find their seed study where the runner does not say it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    run = Run(
        profile=resolve_profile(profile),
        device=device(),
        seed=seed,
        threads=set_threads(),
        commit=git_commit(),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        chapter=os.environ.get("BOOK_CHAPTER") or chapter,
    )
    _CURRENT[:] = [run]
    seed_everything(seed)
    record_to = os.environ.get("BOOK_RUN_FILE")  # set by the book's runner, which reports it
    if record_to:
        Path(record_to).write_text(json.dumps(run.provenance()))
    if not quiet:
        print(f"Running with {run}")
    return run
