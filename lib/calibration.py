"""Calibration of classifiers: expected and maximum calibration error, and temperature scaling.

Explained in chapter "Linear probing then fine-tuning, from the NTK" (`chapters/lp-ft-ntk`).
Temperature scaling divides the logits by one scalar T > 0 fitted by minimising the negative
log-likelihood on held-out data; it never changes the predicted class, only the confidence.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax


def _as_numpy(a) -> np.ndarray:
    """Return `a` (tensor or array) as a float64/int NumPy array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check(probs: np.ndarray, labels: np.ndarray) -> None:
    """Raise a ValueError when `probs` (N, C) and `labels` (N,) do not fit together."""
    if probs.ndim != 2:
        raise ValueError(f"expected (N, C) probabilities or logits, got shape {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must have shape ({probs.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1] - 1}]")


def calibration_errors(probs, labels, n_bins: int = 15) -> tuple[float, float]:
    """Return (ECE, MCE) of predicted probabilities (N, C) with `n_bins` equal-width confidence bins.

    Explained in chapter lp-ft-ntk. ECE = sum_b |B_b|/N |acc(B_b) - conf(B_b)|, MCE = max_b of the gap
    over non-empty bins; confidence is the top probability, bins are (k/n_bins, (k+1)/n_bins].
    """
    probs, labels = _as_numpy(probs).astype(np.float64), _as_numpy(labels).astype(np.int64)
    _check(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if np.any(probs < -1e-9) or not np.allclose(probs.sum(1), 1.0, atol=1e-6):
        raise ValueError("probs must be rows of probabilities (non-negative, sum 1): pass softmax(logits)")
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    nz = count > 0
    gap = np.abs(acc_sum[nz] - conf_sum[nz]) / count[nz]
    ece = float(np.sum(count[nz] / len(labels) * gap))
    mce = float(gap.max()) if gap.size else 0.0
    return ece, mce


def nll(logits, labels, T: float = 1.0) -> float:
    """Return the mean negative log-likelihood of softmax(logits / T)."""
    logits, labels = _as_numpy(logits).astype(np.float64), _as_numpy(labels).astype(np.int64)
    _check(logits, labels)
    if T <= 0:
        raise ValueError(f"temperature must be positive, got {T}")
    return float(-log_softmax(logits / T, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels, bounds: tuple[float, float] = (1e-3, 1e4)) -> float:
    """Return the temperature T > 0 minimising the NLL of softmax(logits / T) (bounded search on log T).

    Explained in chapter lp-ft-ntk. Scaling the logits by c scales the fitted T by c (the NLL depends
    on logits / T only). Returns the bound when the optimum lies outside (e.g. perfectly separated
    data drives T to its lower bound).
    """
    logits, labels = _as_numpy(logits).astype(np.float64), _as_numpy(labels).astype(np.int64)
    _check(logits, labels)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda s: nll(logits, labels, float(np.exp(s))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(np.exp(res.x))


def softmax(logits, T: float = 1.0) -> np.ndarray:
    """Return softmax(logits / T) as a NumPy array (N, C)."""
    if T <= 0:
        raise ValueError(f"temperature must be positive, got {T}")
    logits = _as_numpy(logits).astype(np.float64)
    return np.exp(log_softmax(logits / T, axis=1))


def calibration_report(val_logits, val_labels, test_logits, test_labels, n_bins: int = 15) -> dict[str, float]:
    """Return T fitted on the validation logits, and (ECE, MCE) on the test logits before and after dividing by T.

    Explained in chapter lp-ft-ntk. Keys: `T`, `ece`, `mce` (softmax(logits)), `ece_ts`, `mce_ts`
    (softmax(logits / T)), with `n_bins` equal-width bins (15 in the paper).
    """
    T = fit_temperature(val_logits, val_labels)
    ece, mce = calibration_errors(softmax(test_logits), test_labels, n_bins)
    # temperature scaling: softmax(f(x) / T), the same as rescaling the head (V, b) by 1 / T
    ece_ts, mce_ts = calibration_errors(softmax(test_logits, T), test_labels, n_bins)
    return {"T": T, "ece": ece, "mce": mce, "ece_ts": ece_ts, "mce_ts": mce_ts}
