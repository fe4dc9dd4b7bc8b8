"""Tests of lib.text_data: the project corpus and the verified GLUE loaders' fallback."""

import warnings

import numpy as np
import pytest

from lib import text_data
from lib.data import OfflineFallback
from lib.text_data import GLUE_URLS, TextSplits, load_glue, load_project_corpus, load_text_task, make_sentences


def test_corpus_shapes_balance_and_determinism():
    d = load_project_corpus(n_train=40, n_test=30, n_ood=20, label_noise=0.0, seed=3)
    assert (len(d.train_x), len(d.test_x), len(d.ood_x)) == (40, 30, 20)
    assert d.train_y.shape == (40,) and set(np.unique(d.train_y)) == {0, 1}
    assert abs(d.train_y.mean() - 0.5) < 0.01
    again = load_project_corpus(n_train=40, n_test=30, n_ood=20, label_noise=0.0, seed=3)
    assert again.train_x == d.train_x


def test_domains_differ_in_vocabulary():
    gadgets, _ = make_sentences("gadgets", 200, seed=0)
    food, _ = make_sentences("restaurants", 200, seed=0)
    assert not any("restaurant" in s or "waiter" in s for s in gadgets)
    assert not any("laptop" in s or "battery" in s for s in food)


def test_label_noise_flips_about_the_right_fraction():
    clean = load_project_corpus(n_train=2000, n_test=2, n_ood=2, label_noise=0.0, seed=1)
    noisy = load_project_corpus(n_train=2000, n_test=2, n_ood=2, label_noise=0.1, seed=1)
    assert 0.07 < float((clean.train_y != noisy.train_y).mean()) < 0.13


def test_glue_without_checksum_falls_back_visibly(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = load_glue("sst2")
    assert any(issubclass(w.category, OfflineFallback) for w in caught)
    assert "offline fallback" in capsys.readouterr().out
    assert d.source.startswith("project corpus")
    assert set(GLUE_URLS) == {"sst2", "rte", "cb"}


def test_errors():
    with pytest.raises(ValueError):
        make_sentences("movies", 10)
    with pytest.raises(ValueError):
        load_project_corpus(label_noise=0.6)
    with pytest.raises(ValueError):
        load_glue("mnli")


def _fake_glue(task: str = "cb") -> TextSplits:
    """A verified-looking 3-class task with 50 training and 20 dev examples and no OOD split."""
    rng = np.random.default_rng(0)
    tr_x = [f"premise {i} [SEP] hypothesis {i}" for i in range(50)]
    te_x = [f"dev premise {i} [SEP] dev hypothesis {i}" for i in range(20)]
    empty = np.zeros(0, dtype=np.int64)
    names = ("contradiction", "entailment", "neutral")
    return TextSplits(
        tr_x, rng.integers(0, 3, 50), te_x, rng.integers(0, 3, 20), [], empty, names, f"{task} (verified)"
    )


def test_load_text_task_project_and_fallback():
    a, b = load_text_task("project", 30, 20, 10, 0.1, seed=4), load_project_corpus(30, 20, 10, 0.1, seed=4)
    assert a.train_x == b.train_x and np.array_equal(a.train_y, b.train_y) and a.ood_x == b.ood_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = load_text_task("rte", n_train=12, n_test=8, n_ood=6, seed=1)  # no checksum: visible fallback
    assert any(issubclass(w.category, OfflineFallback) for w in caught)
    assert (len(d.train_x), len(d.test_x), len(d.ood_x)) == (12, 8, 6)


def test_load_text_task_subsamples_a_verified_task(monkeypatch):
    full = _fake_glue()
    monkeypatch.setattr(text_data, "load_glue", lambda task, sha256=None: full)
    d = load_text_task("cb", n_train=10, n_test=8, n_ood=5, seed=2, sha256="0" * 64)
    assert (len(d.train_x), len(d.test_x), len(d.ood_x)) == (10, 8, 0)
    pairs = dict(zip(full.train_x, full.train_y, strict=True))
    assert all(pairs[x] == y for x, y in zip(d.train_x, d.train_y, strict=True))
    assert d.label_names == full.label_names and d.source == "cb (verified)"
