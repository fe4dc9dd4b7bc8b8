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
__version__ = "0.1.0"
