"""`lib`: the shared, GPU-aware library of the executable textbook.

Every chapter starts with `run = lib.start(profile, seed)`; see chapter "Using this book".
"""

from lib.checks import ClaimNotReproduced, check
from lib.config import Config
from lib.runtime import PROFILES, Run, device, resolve_profile, seed_everything, start

__all__ = [
    "PROFILES",
    "ClaimNotReproduced",
    "Config",
    "Run",
    "check",
    "device",
    "resolve_profile",
    "seed_everything",
    "start",
]


def _version() -> str:
    """Return the installed package's version (`pyproject.toml` is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ml-theory-book-lib")
    except PackageNotFoundError:  # lib imported from a checkout that was never installed
        return "unknown"


__version__ = _version()
