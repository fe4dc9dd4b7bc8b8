"""Nine of the twenty binary density-estimation benchmarks (`<name>.{ts,valid,test}.data`), with an offline fallback.

Explained in chapter "Bayesian sum-product networks" (`chapters/bayesian-spn`). Files are read from
`lib.data.data_dir()/binary/` (set `BOOK_DATA_DIR`); a missing file is downloaded, for users with
internet, from the UCLA-StarAI repository and kept only when its SHA-256 matches. Without either, the
loader falls back, visibly, to data sampled from a random ground-truth sum-product network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.data import DatasetUnavailable, data_dir, fetch_verified, note_fallback

URL = "https://raw.githubusercontent.com/UCLA-StarAI/Density-Estimation-Datasets/master/datasets/{name}/{file}"
"""Where the files live for users with internet."""

SPLITS = ("ts", "valid", "test")

SHA256 = {
    "accidents.test.data": "df3f1b6c035bf3e306a7d7127320e479d2546ce14a5d6d3043e6be0925b8b414",
    "accidents.ts.data": "a76648cf00772c275b4277b21d858e235e3c6d3c5ef30beeb4958189b6bed21c",
    "accidents.valid.data": "fd3a80a0f411f157cf3772a057d26980bb166cb89b10cafb818a53f1ec30d46d",
    "baudio.test.data": "1474f3206f1f35e099803a0f40b0cd209bdc8d787825095ef6cb23fd87ed0d05",
    "baudio.ts.data": "b1ec73f4aa9d4ce48b465ded865cc3d22b3f68cf6258f9e15fbef8902138add1",
    "baudio.valid.data": "7164d8a4943f74953f0e982002d84693fdf483e17f69e7407dc939c5ce5622fe",
    "bbc.test.data": "7116fce92a1f3d610cee673a974c8c9895957ee07ce6f086b431ee296aa7734a",
    "bbc.ts.data": "a6f0ba467ebf502ba3b37caa1f20e43ff82664dcd580be92010106cf80fb0db1",
    "bbc.valid.data": "f6a37bd58cdb6745725628be19dfd3b9b795082faa8ca771b8f27dbf4a5ff46d",
    "bnetflix.test.data": "af73990782fd2f146d96059855c4f3bbb6a7a7caefc417ff620a3ed1415a2395",
    "bnetflix.ts.data": "73c87cf0635ec734cc0726a5c644b904ff33e81ea51f1049db0e77b787ebad7c",
    "bnetflix.valid.data": "7f0a3e597c6f305f707f9ecd2b2aa523c576cdb17fdc5d902fc832ebea5163de",
    "dna.test.data": "fec3ae7b26804020a9c43c99828441c5e08bb76b23719368a74ad2b09af99100",
    "dna.ts.data": "bb8de0ca4b6ad9b610036b7a302962ebecd4b504354b14c02c7d0bee48d207d9",
    "dna.valid.data": "4b0fc89cda5eaf5c75926e281afb6af99de194a546070d5b81b524ba251f4f3f",
    "jester.test.data": "346044fb561cf18f284f7e9d5896178b03048991b6ebb6f7482885fccbc16082",
    "jester.ts.data": "dd93578c3359d5b234bb278bf0901c5215d83b910f7d51d7c91951a0a4c244cd",
    "jester.valid.data": "91df833941e189265345898d3f63211560c2456df599f34beee8e95381ee7524",
    "nltcs.test.data": "f9ffa6b74b27dc03bee3203d157ee31079e80b13be40d0c0093d635c25aed523",
    "nltcs.ts.data": "e547a7aedad1dd2f7177030881ab1b92c7e24ae5464c71a0f1f89daecaf52b30",
    "nltcs.valid.data": "93bbbf5c6febdc9bc6e5b5bfab636f4dc0685ab2896d24b23dd267794c3bfcf6",
    "plants.test.data": "95f53c033cd1d86467aec2610dc5bfe014534206c2da4919f73bcab246ab8755",
    "plants.ts.data": "1fb1219ff94068d12a563f9e81f8889a1885f41e867884cff608669300c6848f",
    "plants.valid.data": "47834ed318b2d74f48e4b083226ef47fd446d41986012ceae19d230574821b34",
    "pumsb_star.test.data": "b2da195314ac17f9d8d171743c5f98a28ea9583332a52d34aa228ff2e11aa8e7",
    "pumsb_star.ts.data": "27e610b5f9f507f94ebf8a227f8b96cc59d7eed51e06ee5d2fe8353afbc1524c",
    "pumsb_star.valid.data": "6a491d1ea64eb0249dddd168fdddeef88aa21001a933eb7309603b6466187af8",
}
"""SHA-256 of every file the loader accepts."""

DATASETS = ("nltcs", "plants", "jester", "baudio", "bnetflix", "accidents", "pumsb_star", "dna", "bbc")
"""The benchmarks with known checksums (the chapter's `full` profile runs all of them)."""

SHAPES = {
    "nltcs": 16, "plants": 69, "jester": 100, "baudio": 100, "bnetflix": 100,
    "accidents": 111, "pumsb_star": 163, "dna": 180, "bbc": 1058,
}  # fmt: skip
"""Number of variables D of each benchmark (the fallback keeps D)."""


@dataclass(frozen=True)
class BinaryDataset:
    """Train / validation / test 0-1 matrices of one benchmark, and where they came from."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    source: str  # "files" or "synthetic SPN"
    true_test_ll: float | None = None  # mean test log-likelihood under the generator (synthetic only)

    @property
    def n_vars(self) -> int:
        """Return the number of variables D."""
        return self.train.shape[1]


def read_data_file(path: Path | str) -> np.ndarray:
    """Return a comma-separated 0/1 file as a uint8 matrix; raise ValueError on other values."""
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{path} holds values other than 0 and 1; it is not a binary benchmark file.")
    return arr.astype(np.uint8)


def _local_or_download(name: str, split: str, root: Path) -> Path:
    file = f"{name}.{split}.data"
    return fetch_verified(URL.format(name=name, file=file), root / "binary" / file, SHA256[file])


def _random_spn_sampler(n_vars: int, rng: np.random.Generator, depth: int = 1, k: int = 6):
    """Return a random ground-truth SPN as nested tuples: ("leaf", vars, p), ("sum", w, kids), ("prod", kids)."""

    def node(scope: np.ndarray, level: int):
        if level == depth or len(scope) == 1:
            probs = rng.beta(0.3, 0.3, size=len(scope)).clip(0.02, 0.98)  # sharp leaves: strong structure
            return ("leaf", scope, probs)
        kids = []
        for _ in range(k):
            perm = rng.permutation(scope)
            half = len(perm) // 2
            kids.append(("prod", [node(np.sort(perm[:half]), level + 1), node(np.sort(perm[half:]), level + 1)]))
        return ("sum", rng.dirichlet(np.ones(k)), kids)

    return node(np.arange(n_vars), 0)


def _sample_spn(root, n: int, n_vars: int, rng: np.random.Generator) -> np.ndarray:
    """Return n ancestral samples of the random SPN."""
    out = np.zeros((n, n_vars), dtype=np.uint8)

    def visit(nd, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        if nd[0] == "leaf":
            out[np.ix_(rows, nd[1])] = rng.random((len(rows), len(nd[1]))) < nd[2]
        elif nd[0] == "prod":
            for kid in nd[1]:
                visit(kid, rows)
        else:
            pick = rng.choice(len(nd[1]), size=len(rows), p=nd[1])
            for c, kid in enumerate(nd[2]):
                visit(kid, rows[pick == c])

    visit(root, np.arange(n))
    return out


def _spn_loglik(nd, X: np.ndarray) -> np.ndarray:
    """Return the log-likelihood of each row of X under the random SPN."""
    if nd[0] == "leaf":
        x = X[:, nd[1]].astype(float)
        return (x * np.log(nd[2]) + (1 - x) * np.log1p(-nd[2])).sum(1)
    if nd[0] == "prod":
        return sum(_spn_loglik(kid, X) for kid in nd[1])
    parts = np.stack([_spn_loglik(kid, X) for kid in nd[2]], 1) + np.log(nd[1])
    top = parts.max(1)
    return top + np.log(np.exp(parts - top[:, None]).sum(1))


def synthetic_dataset(
    name: str, n_vars: int, sizes: tuple[int, int, int] = (4000, 500, 2000), seed: int = 0
) -> BinaryDataset:
    """Return data sampled from a random ground-truth SPN over `n_vars` variables (the offline fallback)."""
    if n_vars < 1:
        raise ValueError(f"n_vars must be positive, got {n_vars}")
    rng = np.random.default_rng(seed)
    root = _random_spn_sampler(n_vars, rng)
    train, valid, test = (_sample_spn(root, n, n_vars, rng) for n in sizes)
    return BinaryDataset(name, train, valid, test, "synthetic SPN", float(_spn_loglik(root, test).mean()))


def load_binary(name: str, *, allow_fallback: bool = True, seed: int = 0) -> BinaryDataset:
    """Return benchmark `name`: from the data folder, else downloaded and verified, else a visible fallback.

    Raises `DatasetUnavailable` when the files are neither present nor downloadable and
    `allow_fallback=False`; raises `ValueError` for an unknown name.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown binary benchmark {name!r}; known: {', '.join(DATASETS)}.")
    root = data_dir()
    try:
        arrays = [read_data_file(_local_or_download(name, split, root)) for split in SPLITS]
    except DatasetUnavailable as err:
        if not allow_fallback:
            raise
        note_fallback(
            f"binary benchmark {name!r} is not in {root / 'binary'} and could not be downloaded ({err}); "
            f"using data sampled from a random ground-truth SPN with the same number of variables "
            f"({SHAPES[name]}). Set BOOK_DATA_DIR to a folder with binary/{name}.*.data to use the real data."
        )
        return synthetic_dataset(name, SHAPES[name], seed=seed)
    train, valid, test = arrays
    if not (train.shape[1] == valid.shape[1] == test.shape[1]):
        raise ValueError(f"{name}: splits have different numbers of columns")
    return BinaryDataset(name, train, valid, test, "files")
