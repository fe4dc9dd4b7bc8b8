"""Tests of lib.binary_data: reading, checksum verification and the visible offline fallback."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lib import binary_data as B
from lib.data import DatasetUnavailable, OfflineFallback


def _offline(monkeypatch):
    """Make every download fail as on a machine without internet."""

    def no_net(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr("urllib.request.urlopen", no_net)


def _write(folder, name, rows, monkeypatch, good_checksum=True):
    (folder / "binary").mkdir(parents=True, exist_ok=True)
    for split in B.SPLITS:
        text = "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"
        path = folder / "binary" / f"{name}.{split}.data"
        path.write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest() if good_checksum else "0" * 64
        monkeypatch.setitem(B.SHA256, path.name, digest)


def test_reads_files_with_matching_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    _offline(monkeypatch)
    rows = [[0, 1, 1], [1, 0, 0]]
    _write(tmp_path, "nltcs", rows, monkeypatch)
    data = B.load_binary("nltcs")
    assert data.source == "files" and data.train.dtype == np.uint8
    np.testing.assert_array_equal(data.test, rows)


def test_checksum_mismatch_is_refused_and_falls_back_visibly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    _offline(monkeypatch)
    _write(tmp_path, "nltcs", [[0, 1]], monkeypatch, good_checksum=False)
    with pytest.raises(DatasetUnavailable, match="SHA-256"):
        B.load_binary("nltcs", allow_fallback=False)
    with pytest.warns(OfflineFallback):
        data = B.load_binary("nltcs")
    assert data.source == "synthetic SPN" and "offline fallback" in capsys.readouterr().out


def test_missing_data_falls_back_to_a_ground_truth_spn(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    _offline(monkeypatch)
    with pytest.warns(OfflineFallback, match="random ground-truth SPN"):
        data = B.load_binary("nltcs", seed=1)
    assert data.n_vars == B.SHAPES["nltcs"] and set(np.unique(data.train)) <= {0, 1}
    # the generator's own test log-likelihood is finite and better than independent Bernoullis
    p = data.train.mean(0).clip(1e-3, 1 - 1e-3)
    indep = (data.test * np.log(p) + (1 - data.test) * np.log1p(-p)).sum(1).mean()
    assert np.isfinite(data.true_test_ll) and data.true_test_ll > indep


def test_synthetic_log_likelihood_normalises():
    rng = np.random.default_rng(0)
    root = B._random_spn_sampler(4, rng, depth=2, k=3)
    xs = np.array([[int(b) for b in f"{i:04b}"] for i in range(16)], dtype=np.uint8)
    assert np.isclose(np.exp(B._spn_loglik(root, xs)).sum(), 1.0)


def test_read_rejects_non_binary_and_unknown_names(tmp_path):
    bad = tmp_path / "bad.data"
    bad.write_text("0,2\n1,0\n")
    with pytest.raises(ValueError, match="other than 0 and 1"):
        B.read_data_file(bad)
    with pytest.raises(ValueError, match="Unknown binary benchmark"):
        B.load_binary("mnist")


def test_checksums_cover_every_split_of_every_dataset():
    assert {f"{n}.{s}.data" for n in B.DATASETS for s in B.SPLITS} == set(B.SHA256)
