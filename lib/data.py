"""Data the book can always reach offline, and the rules for data it cannot.

Explained in chapter "Using this book". The book's machines have no internet: experiments run on
generated data or data bundled in a package (scikit-learn's digits). Loaders of the papers' real
datasets look in the data folder (`BOOK_DATA_DIR`), download for users with internet with a SHA-256
check, and otherwise fall back to offline data with a visible note (`OfflineFallback`).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch


class DatasetUnavailable(RuntimeError):
    """Raised when a dataset is neither on disk nor downloadable (and no fallback was allowed)."""


class OfflineFallback(UserWarning):
    """Warned (and printed) when a loader falls back to offline data."""


def data_dir() -> Path:
    """Return the data folder: `BOOK_DATA_DIR`, else `~/.cache/ml-theory-book/data`."""
    root = os.environ.get("BOOK_DATA_DIR") or Path.home() / ".cache" / "ml-theory-book" / "data"
    return Path(root).expanduser()


def sha256_of(path: Path | str) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(url: str, dest: Path | str, sha256: str, *, timeout: float = 30.0) -> Path:
    """Return `dest`, downloading `url` there first if missing; raise if the checksum differs.

    Raises `DatasetUnavailable` (with the reason) when there is no network.
    """
    dest = Path(dest)
    if dest.exists():
        got = sha256_of(dest)
        if got != sha256:
            raise DatasetUnavailable(f"{dest} exists but its SHA-256 is {got}, expected {sha256}: delete it.")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
            fh.write(resp.read())
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DatasetUnavailable(f"could not download {url} ({err}); this machine may be offline.") from err
    got = sha256_of(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise DatasetUnavailable(f"download of {url} has SHA-256 {got}, expected {sha256}; not used.")
    tmp.replace(dest)
    return dest


def note_fallback(message: str) -> None:
    """Say, visibly, that a loader fell back to offline data."""
    print(f"NOTE (offline fallback): {message}")
    warnings.warn(message, OfflineFallback, stacklevel=2)


def load_digits(classes: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return scikit-learn's 8x8 digits as `(X, y)`: X float32 of shape (N, 1, 8, 8) in [0, 1], y int64.

    `classes` keeps only those digits (labels unchanged). Bundled with scikit-learn: always offline.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    X = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if classes is not None:
        keep = torch.isin(y, torch.tensor(classes))
        X, y = X[keep], y[keep]
    return X, y


def train_test_split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return disjoint index arrays `(train, test)` of a random split of `range(n)`."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    return perm[n_test:], perm[:n_test]
