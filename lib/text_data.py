"""A small labelled text corpus written by the project, and loaders of GLUE/SuperGLUE tasks.

Explained in chapter "Linear probing then fine-tuning, from the NTK" (`chapters/lp-ft-ntk`).

The corpus is binary sentiment. The in-distribution (ID) domain is reviews of gadgets; the shifted
out-of-distribution (OOD) domain is reviews of restaurants and hotels, with different nouns, aspects
and opinion words. Sentences are built from templates and word lists in this file; some contrast
("..., but ...") and negation, and a little label noise in training, keep linear probing from being
perfect. The GLUE/SuperGLUE loaders (CB, RTE, SST-2) are for users with internet; they need a
caller-supplied SHA-256 and fall back, visibly, to this corpus otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from lib.data import DatasetUnavailable, data_dir, fetch_verified, note_fallback

LABELS = ("negative", "positive")

_DOMAINS = {
    "gadgets": {
        "items": [
            "phone",
            "laptop",
            "tablet",
            "camera",
            "speaker",
            "charger",
            "keyboard",
            "monitor",
            "headset",
            "smartwatch",
            "router",
            "printer",
        ],
        "aspects": [
            "battery",
            "screen",
            "sound",
            "build quality",
            "software",
            "price",
            "setup",
            "display",
            "fan",
            "touchpad",
            "cable",
            "firmware",
        ],
        "pos": [
            "excellent",
            "reliable",
            "fast",
            "sturdy",
            "brilliant",
            "smooth",
            "impressive",
            "sharp",
            "solid",
            "great",
        ],
        "neg": [
            "flimsy",
            "sluggish",
            "buggy",
            "faulty",
            "disappointing",
            "noisy",
            "cheap-feeling",
            "unreliable",
            "awful",
            "broken",
        ],
        "pos_verbs": [
            "works perfectly",
            "never crashes",
            "charges quickly",
            "lasts all day",
            "exceeded my expectations",
            "was easy to set up",
        ],
        "neg_verbs": [
            "stopped working",
            "keeps crashing",
            "overheats constantly",
            "died after a week",
            "drains too quickly",
            "was a pain to set up",
        ],
    },
    "restaurants": {
        "items": [
            "restaurant",
            "bistro",
            "cafe",
            "hotel",
            "diner",
            "bakery",
            "inn",
            "pizzeria",
            "steakhouse",
            "resort",
            "hostel",
            "tavern",
        ],
        "aspects": [
            "service",
            "food",
            "staff",
            "room",
            "dessert",
            "menu",
            "waiter",
            "breakfast",
            "ambience",
            "view",
            "wine list",
            "bed",
        ],
        "pos": [
            "delicious",
            "friendly",
            "cozy",
            "spotless",
            "charming",
            "tasty",
            "welcoming",
            "lovely",
            "superb",
            "wonderful",
        ],
        "neg": [
            "bland",
            "rude",
            "filthy",
            "overpriced",
            "greasy",
            "stale",
            "cramped",
            "dreadful",
            "cold",
            "terrible",
        ],
        "pos_verbs": [
            "made our evening",
            "was worth every penny",
            "treated us like family",
            "served the best meal in town",
            "made us want to return",
            "felt like home",
        ],
        "neg_verbs": [
            "ruined our evening",
            "made us wait an hour",
            "got our order wrong",
            "left us hungry",
            "was a waste of money",
            "made me feel sick",
        ],
    },
}

_TEMPLATES = [
    "the {item} is {adj}.",
    "this {item} {verb}.",
    "the {aspect} of the {item} is {adj}.",
    "honestly, the {aspect} was {adj} and the {item} {verb}.",
    "i think the {item} {verb}.",
    "what a {adj} {item}!",
    "the {aspect} is {adj}, and so is the {aspect2}.",
]
_CONTRAST = "the {aspect} was {other_adj}, but overall the {item} {verb}."
_NEGATION = "the {item} is not {other_adj} at all."


def _sentence(rng: np.random.Generator, domain: dict, label: int) -> str:
    """Return one templated sentence of `domain` with sentiment `label` (1 positive, 0 negative)."""
    own, other = ("pos", "neg") if label == 1 else ("neg", "pos")
    verbs = domain["pos_verbs"] if label == 1 else domain["neg_verbs"]
    fill = {
        "item": rng.choice(domain["items"]),
        "aspect": rng.choice(domain["aspects"]),
        "aspect2": rng.choice(domain["aspects"]),
        "adj": rng.choice(domain[own]),
        "other_adj": rng.choice(domain[other]),
        "verb": rng.choice(verbs),
    }
    u = rng.random()
    template = _CONTRAST if u < 0.2 else _NEGATION if u < 0.3 else rng.choice(_TEMPLATES)
    return str(template).format(**fill)


def make_sentences(domain: str, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Return `n` sentences of `domain` ('gadgets' or 'restaurants') and balanced labels (int64)."""
    if domain not in _DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {sorted(_DOMAINS)}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    return [_sentence(rng, _DOMAINS[domain], int(y)) for y in labels], labels


@dataclass(frozen=True)
class TextSplits:
    """Texts and labels of a train split, an ID test split and an OOD test split."""

    train_x: list[str]
    train_y: np.ndarray
    test_x: list[str]
    test_y: np.ndarray
    ood_x: list[str]
    ood_y: np.ndarray
    label_names: tuple[str, ...]
    source: str


def load_project_corpus(
    n_train: int = 200, n_test: int = 200, n_ood: int = 200, label_noise: float = 0.05, seed: int = 0
) -> TextSplits:
    """Return the project's sentiment corpus: gadget reviews (train, ID test) and restaurant reviews (OOD).

    Explained in chapter lp-ft-ntk. A fraction `label_noise` of training labels is flipped; test labels
    are clean. Train and test sentences are drawn independently (duplicates are possible, as in life).
    """
    if not 0.0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    x_tr, y_tr = make_sentences("gadgets", n_train, seed=seed)
    x_te, y_te = make_sentences("gadgets", n_test, seed=seed + 10_000)
    x_ood, y_ood = make_sentences("restaurants", n_ood, seed=seed + 20_000)
    flip = np.random.default_rng(seed + 30_000).random(n_train) < label_noise
    y_tr = np.where(flip, 1 - y_tr, y_tr)
    return TextSplits(x_tr, y_tr, x_te, y_te, x_ood, y_ood, LABELS, "project corpus (templated sentiment)")


GLUE_URLS = {
    "sst2": "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    "rte": "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
    "cb": "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/CB.zip",
}
"""Official download addresses of the task archives (GLUE and SuperGLUE)."""


def _read_glue(task: str, archive: zipfile.ZipFile) -> tuple[dict, tuple[str, ...]]:
    """Return `{split: (texts, labels)}` for train and dev of `task` read from its zip archive."""
    out = {}
    if task == "cb":
        names = ("contradiction", "entailment", "neutral")
        for split in ("train", "val"):
            rows = [json.loads(line) for line in archive.read(f"CB/{split}.jsonl").decode().splitlines()]
            texts = [f"{r['premise']} [SEP] {r['hypothesis']}" for r in rows]
            out[split] = (texts, np.array([names.index(r["label"]) for r in rows], dtype=np.int64))
        return out, names
    folder, names = ("SST-2", LABELS) if task == "sst2" else ("RTE", ("entailment", "not_entailment"))
    for split in ("train", "dev"):
        text = archive.read(f"{folder}/{split}.tsv").decode()
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
        if task == "sst2":
            texts, labels = [r["sentence"] for r in rows], [int(r["label"]) for r in rows]
        else:
            texts = [f"{r['sentence1']} [SEP] {r['sentence2']}" for r in rows]
            labels = [names.index(r["label"]) for r in rows]
        out["val" if split == "dev" else split] = (texts, np.array(labels, dtype=np.int64))
    return out, names


def load_glue(task: str, sha256: str | None = None, max_train: int | None = None) -> TextSplits:
    """Return a GLUE/SuperGLUE task (`sst2`, `rte`, `cb`) with its dev set as the ID test split.

    Explained in chapter lp-ft-ntk. The archive is downloaded (or found in `data_dir()/glue`) and used
    only when its SHA-256 equals `sha256`, which the caller must supply: the book ships no checksum it
    could not verify offline. Without a checksum, or when the download fails, this falls back visibly
    (`note_fallback`) to the project corpus. These tasks have no OOD split: for SST-2 the project's
    restaurant reviews (same labels, other domain) serve as one; for RTE and CB the OOD split is empty.
    """
    task = task.lower().replace("-", "")
    if task not in GLUE_URLS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(GLUE_URLS)}")
    fallback = load_project_corpus()
    if sha256 is None:
        note_fallback(f"no SHA-256 given for {task}, so it is not downloaded; using the {fallback.source}")
        return fallback
    dest = data_dir() / "glue" / GLUE_URLS[task].rsplit("/", 1)[1]
    try:
        path = fetch_verified(GLUE_URLS[task], dest, sha256)
    except DatasetUnavailable as err:
        note_fallback(f"{task} unavailable ({err}); using the {fallback.source}")
        return fallback
    with zipfile.ZipFile(path) as archive:
        splits, names = _read_glue(task, archive)
    tr_x, tr_y = splits["train"]
    if max_train is not None:
        tr_x, tr_y = tr_x[:max_train], tr_y[:max_train]
    va_x, va_y = splits["val"]
    ood_x, ood_y = (fallback.ood_x, fallback.ood_y) if task == "sst2" else ([], np.zeros(0, dtype=np.int64))
    return TextSplits(tr_x, tr_y, va_x, va_y, ood_x, ood_y, names, f"{task} (verified)")


def _subsample(x: list[str], y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Return at most `n` of the examples (x, y), drawn without replacement."""
    idx = rng.permutation(len(x))[:n]
    return [x[i] for i in idx], np.asarray(y)[idx]


def load_text_task(
    task: str = "project",
    n_train: int = 200,
    n_test: int = 200,
    n_ood: int = 200,
    label_noise: float = 0.05,
    seed: int = 0,
    sha256: str | None = None,
) -> TextSplits:
    """Return the splits of the text experiment: the project corpus, or a GLUE/SuperGLUE task.

    Explained in chapter lp-ft-ntk. `task="project"` is `load_project_corpus`; `sst2`, `rte` or `cb` is
    `load_glue(task, sha256)` with at most `n_train` / `n_test` / `n_ood` examples drawn (seeded) from its
    train, dev and OOD splits (no label noise is added to real data). When the task falls back to the project
    corpus (no checksum, no internet), the fallback has the requested sizes.
    """
    if task == "project":
        return load_project_corpus(n_train, n_test, n_ood, label_noise, seed)
    splits = load_glue(task, sha256=sha256)
    if not splits.source.endswith("(verified)"):
        return load_project_corpus(n_train, n_test, n_ood, label_noise, seed)
    rng = np.random.default_rng(seed)
    tr_x, tr_y = _subsample(splits.train_x, splits.train_y, n_train, rng)
    te_x, te_y = _subsample(splits.test_x, splits.test_y, n_test, rng)
    ood_x, ood_y = _subsample(splits.ood_x, splits.ood_y, n_ood, rng)
    return TextSplits(tr_x, tr_y, te_x, te_y, ood_x, ood_y, splits.label_names, splits.source)
