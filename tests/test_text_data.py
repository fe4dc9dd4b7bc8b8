"""Tests of lib.text_data: the project corpus and the verified GLUE loaders' fallback."""

import warnings

import numpy as np
import pytest

from lib.data import OfflineFallback
from lib.text_data import GLUE_URLS, load_glue, load_project_corpus, make_sentences


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
