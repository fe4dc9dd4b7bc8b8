"""Tests of lib.calibration: ECE/MCE and temperature scaling."""

import numpy as np
import pytest

from lib.calibration import calibration_errors, calibration_report, fit_temperature, nll, softmax


def test_perfectly_calibrated_predictor_has_small_ece():
    rng = np.random.default_rng(0)
    n, C = 20_000, 3
    probs = softmax(rng.normal(size=(n, C)) * 2)
    labels = (rng.random((n, 1)) > probs.cumsum(1)).sum(1)  # labels drawn from the predictor itself
    ece, mce = calibration_errors(probs, labels)
    assert ece < 0.02
    assert mce < 0.2


def test_ece_by_hand():
    # two bins used: confidences 0.9 (both right) and 0.6 (one of two right).
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    ece, mce = calibration_errors(probs, labels, n_bins=10)
    assert ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)
    assert mce == pytest.approx(0.1)


def test_temperature_scales_with_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 4)) * 3
    labels = (rng.random((500, 1)) > softmax(logits / 2.0).cumsum(1)).sum(1)
    T = fit_temperature(logits, labels)
    assert 1.5 < T < 2.7  # the data were drawn at temperature 2
    for c in (0.1, 5.0):
        assert fit_temperature(c * logits, labels) == pytest.approx(c * T, rel=1e-6)
    assert nll(logits, labels, T) <= nll(logits, labels, 1.0)


def test_errors():
    with pytest.raises(ValueError):
        calibration_errors(np.ones((3, 2)), np.zeros(3, dtype=int))  # rows do not sum to 1
    with pytest.raises(ValueError):
        calibration_errors(np.full((3, 2), 0.5), np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        nll(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError):
        nll(np.zeros((2, 2)), np.array([0, 1]), T=0.0)


def test_softmax_divides_by_the_temperature_once():
    logits = np.array([[0.0, np.log(3.0)]])
    assert softmax(logits) == pytest.approx(np.array([[0.25, 0.75]]))
    r = np.sqrt(3.0)  # softmax(logits / 2) = (1, sqrt 3) / (1 + sqrt 3)
    assert softmax(logits, 2.0) == pytest.approx(np.array([[1.0, r]]) / (1.0 + r))
    rng = np.random.default_rng(2)
    z = rng.normal(size=(7, 4)) * 3
    for T in (0.3, 1.7, 4.0):
        e = np.exp(z / T - (z / T).max(1, keepdims=True))
        assert np.allclose(softmax(z, T), e / e.sum(1, keepdims=True), rtol=1e-12)
    with pytest.raises(ValueError):
        softmax(z, 0.0)


def _overconfident(n: int, scale: float, seed: int):
    """Logits `scale` times too large: labels drawn from softmax(z), the model reports scale * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 1.5
    labels = (rng.random((n, 1)) > softmax(z).cumsum(1)).sum(1)
    return scale * z, labels


def test_calibration_report_applies_the_fitted_temperature():
    val_logits, val_y = _overconfident(4000, 4.0, 0)
    test_logits, test_y = _overconfident(4000, 4.0, 1)
    rep = calibration_report(val_logits, val_y, test_logits, test_y)
    assert 3.5 < rep["T"] < 4.5  # the logits are four times too large
    assert (rep["ece"], rep["mce"]) == calibration_errors(softmax(test_logits), test_y)
    assert (rep["ece_ts"], rep["mce_ts"]) == calibration_errors(softmax(test_logits / rep["T"]), test_y)
    assert rep["ece_ts"] < 0.3 * rep["ece"] and rep["mce_ts"] < rep["mce"]
    # rescaling the logits (the head) rescales T and leaves the calibrated errors unchanged
    again = calibration_report(0.5 * val_logits, val_y, 0.5 * test_logits, test_y)
    assert again["T"] == pytest.approx(0.5 * rep["T"], rel=1e-6)
    assert again["ece_ts"] == pytest.approx(rep["ece_ts"], abs=1e-6)
