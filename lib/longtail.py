"""Long-tailed recognition: class-count profiles, long-tailed splits, a fixed simplex-ETF head, and the
post-hoc logit adjusters ALA, MLA and the 1vs1 adjuster with the decision-boundary angles they imply.

Explained in chapter "logit-adjustment" (Hasegawa & Sato, ICLR 2025). Notation of the paper: K classes with
training counts n_k and prior pi_k = n_k / N; a simplex ETF w_1..w_K with pairwise angle
rho = arccos(-1/(K-1)); logits z_k = <w_k, h> of a feature h; a_k = n_k^gamma. Also: neural-collapse
metrics, the angular spread of held-out features, an offline long-tailed Gaussian-mixture task, and
CIFAR-10/100-LT for users with internet (SHA-256 checked, with a visible offline fallback).
"""

from __future__ import annotations

import functools
import math
import pickle
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib import plotting
from lib.cnn import SmallCNN
from lib.config import Config
from lib.data import DatasetUnavailable, data_dir, fetch_verified, load_digits, note_fallback
from lib.progress import progress
from lib.runtime import one_thread

# ----------------------------------------------------------------------------------------------------------
# Long-tail profiles and class counts
# ----------------------------------------------------------------------------------------------------------

BENCHMARKS: dict[str, dict] = {
    "cifar10-lt": {"n_max": 5000, "num_classes": 10, "imbalance": 0.01},
    "cifar100-lt": {"n_max": 500, "num_classes": 100, "imbalance": 0.01},
    # ImageNet-LT (Liu et al. 2019) has 1280 to 5 images per class over 1000 classes, drawn from a Pareto
    # law (115,846 in all). Its exact counts come with its file lists; this exponential profile only shares
    # its range and class number (and has about twice as many images).
    "imagenet-lt": {"n_max": 1280, "num_classes": 1000, "imbalance": 5 / 1280},
}
"""The long-tailed benchmarks of the paper, as exponential profiles (imbalance = n_min / n_max)."""


def long_tail_counts(
    n_max: int, num_classes: int, imbalance: float, profile: str = "exp", *, step_fraction: float = 0.5
) -> np.ndarray:
    """Return the training count of each class rank, head first (int64, shape (K,)).

    `exp`: n_k = floor(n_max * imbalance^(k / (K - 1))), k = 0..K-1 (the CIFAR-LT profile).
    `step`: the first (1 - step_fraction) K classes get n_max, the others floor(n_max * imbalance).
    """
    if num_classes < 2 or n_max < 1 or not 0.0 < imbalance <= 1.0:
        raise ValueError(f"need K >= 2, n_max >= 1, 0 < imbalance <= 1; got {num_classes}, {n_max}, {imbalance}")
    k = np.arange(num_classes)
    if profile == "exp":
        counts = np.floor(n_max * imbalance ** (k / (num_classes - 1)) + 1e-9)
    elif profile == "step":
        if not 0.0 < step_fraction < 1.0:
            raise ValueError(f"step_fraction must be in (0, 1), got {step_fraction}")
        n_head = num_classes - round(step_fraction * num_classes)
        counts = np.where(k < n_head, n_max, np.floor(n_max * imbalance + 1e-9))
    else:
        raise ValueError(f"unknown profile {profile!r}; use 'exp' or 'step'")
    return np.maximum(counts, 1).astype(np.int64)


def benchmark_counts(name: str) -> np.ndarray:
    """Return the class counts of a benchmark of `BENCHMARKS` (e.g. `cifar100-lt`), head first."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return long_tail_counts(**BENCHMARKS[name])


@dataclass(frozen=True)
class LTSplit:
    """Index arrays of a long-tailed training set and balanced validation and test sets."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    counts: np.ndarray  # training count of each class label (not rank)


def long_tailed_split(
    y: np.ndarray | torch.Tensor,
    counts: Sequence[int],
    *,
    test_per_class: int,
    val_per_class: int = 0,
    class_order: Sequence[int] | None = None,
    seed: int = 0,
) -> LTSplit:
    """Return a long-tailed training split of labels `y` with balanced validation and test sets.

    The class at rank r of `class_order` (default: a random permutation drawn from `seed`) gets
    `counts[r]` training examples; every class gives `test_per_class` test and `val_per_class`
    validation examples, all disjoint. Raises if a class has too few examples.
    """
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    counts = np.asarray(counts, dtype=np.int64)
    num_classes = len(counts)
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_classes) if class_order is None else np.asarray(class_order)
    if sorted(order.tolist()) != list(range(num_classes)):
        raise ValueError(f"class_order must be a permutation of 0..{num_classes - 1}")
    by_class = np.empty(num_classes, dtype=np.int64)
    by_class[order] = counts
    train, val, test = [], [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        need = test_per_class + val_per_class + by_class[c]
        if len(idx) < need:
            raise ValueError(f"class {c} has {len(idx)} examples, the split needs {need}")
        test.append(idx[:test_per_class])
        val.append(idx[test_per_class : test_per_class + val_per_class])
        train.append(idx[test_per_class + val_per_class : need])
    return LTSplit(*(np.sort(np.concatenate(p)) for p in (train, val, test)), counts=by_class)


# ----------------------------------------------------------------------------------------------------------
# The fixed simplex-ETF classifier and the feature-norm regulariser
# ----------------------------------------------------------------------------------------------------------


def simplex_etf(num_classes: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return K unit vectors in R^dim with pairwise inner products -1/(K-1) (a simplex ETF), shape (K, dim).

    Needs dim >= K - 1. The ETF is rotated into R^dim by a random orthonormal map drawn from `seed`.
    """
    K = num_classes
    if K < 2 or dim < K - 1:
        raise ValueError(f"a simplex ETF of {K} vectors needs K >= 2 and dim >= K - 1, got dim={dim}")
    gen = torch.Generator().manual_seed(seed)
    # M = sqrt(K/(K-1)) (I - 11^T/K): columns are the ETF in R^K, inside the hyperplane 1^perp
    centred = torch.eye(K, dtype=torch.float64) - 1.0 / K
    basis = torch.linalg.qr(centred)[0][:, : K - 1]  # orthonormal basis of 1^perp (K, K-1)
    coords = math.sqrt(K / (K - 1)) * centred @ basis  # (K, K-1): rows are the ETF vectors
    rot = torch.linalg.qr(torch.randn(dim, K - 1, generator=gen, dtype=torch.float64))[0]  # (dim, K-1)
    return (coords @ rot.T).to(dtype)


def etf_angle(num_classes: int) -> float:
    """Return rho = arccos(-1/(K-1)), the angle between two vertices of a K-class simplex ETF."""
    return math.acos(-1.0 / (num_classes - 1))


class ETFHead(nn.Module):
    """A linear head fixed to a simplex ETF (not trained, no bias): z_k = <w_k, h>."""

    def __init__(self, dim: int, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("weight", simplex_etf(num_classes, dim, seed))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape (B, K)."""
        return h @ self.weight.T


class LTNet(nn.Module):
    """A backbone (MLP on flattened inputs, or `lib.cnn.SmallCNN` on images), a linear map to the feature
    space, and a head: the fixed ETF (`etf=True`, the paper's) or a learnable linear map without bias."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        feature_dim: int = 32,
        width: int = 256,
        depth: int = 2,
        cnn_channels: Sequence[int] | None = None,
        etf: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if cnn_channels:
            cnn = SmallCNN(cnn_channels, in_channels=in_shape[0], num_classes=num_classes, pool_after=(1, 2))
            self.backbone = nn.Sequential()
            self.backbone.add_module("cnn", _CNNFeatures(cnn))
            last = cnn_channels[-1]
        else:
            layers: list[nn.Module] = [nn.Flatten()]
            last = int(np.prod(in_shape))
            for _ in range(depth):
                layers += [nn.Linear(last, width), nn.ReLU()]
                last = width
            self.backbone = nn.Sequential(*layers)
        self.to_features = nn.Linear(last, feature_dim)
        self.head = ETFHead(feature_dim, num_classes, seed) if etf else nn.Linear(feature_dim, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the penultimate features h(x), shape (B, feature_dim)."""
        return self.to_features(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape (B, K)."""
        return self.head(self.features(x))

    def head_weight(self) -> torch.Tensor:
        """Return the head's class vectors, shape (K, feature_dim)."""
        return self.head.weight.detach()


class _CNNFeatures(nn.Module):
    def __init__(self, cnn: SmallCNN) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.features(x)


def feature_norm_penalty(h: torch.Tensor, lam: float) -> torch.Tensor:
    """Return the feature-norm regulariser (lam / 2) * mean_i ||h_i||^2."""
    return 0.5 * lam * h.pow(2).sum(dim=1).mean()


# ----------------------------------------------------------------------------------------------------------
# Neural-collapse metrics and the spread of features
# ----------------------------------------------------------------------------------------------------------


def class_means(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return the mean feature of each class, shape (K, d) (zero for a class without examples)."""
    onehot = F.one_hot(y, num_classes).to(h.dtype)
    return (onehot.T @ h) / onehot.sum(0).clamp_min(1)[:, None]


def etf_gram(num_classes: int) -> torch.Tensor:
    """Return the Gram matrix of a unit simplex ETF: 1 on the diagonal, -1/(K-1) elsewhere."""
    K = num_classes
    return (torch.eye(K) * K - 1.0) / (K - 1)


@torch.no_grad()
def nc_metrics(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Return neural-collapse metrics of features `h` with labels `y` (class-balanced, as for long tails).

    `nc1`: tr(Sigma_W Sigma_B^+) / K, Sigma_W the average of the per-class covariances, Sigma_B the
    covariance of the class means around their average mu_G. `equinorm`: std / mean of ||mu_k - mu_G||.
    `etf_gap`: ||G - G_ETF||_F / ||G_ETF||_F, G the Gram matrix of the normalised centred class means.
    """
    h, y = h.double(), y.to(h.device)
    K = num_classes
    mu = class_means(h, y, K)
    mu_g = mu.mean(0)
    centred = h - mu[y]
    onehot = F.one_hot(y, K).to(h.dtype)
    n = onehot.sum(0).clamp_min(1)
    # Sigma_W = (1/K) sum_k (1/n_k) sum_{i in k} (h_i - mu_k)(h_i - mu_k)^T
    weights = (1.0 / (K * n))[y]
    sigma_w = (centred * weights[:, None]).T @ centred
    m = mu - mu_g
    sigma_b = m.T @ m / K
    nc1 = torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)).item() / K
    norms = m.norm(dim=1)
    unit = m / norms.clamp_min(1e-12)[:, None]
    target = etf_gram(K).to(h)
    return {
        "nc1": nc1,
        "equinorm": (norms.std() / norms.mean()).item(),
        "etf_gap": ((unit @ unit.T - target).norm() / target.norm()).item(),
    }


@torch.no_grad()
def angular_spread(h: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Return, for each class k, the mean angle (radians) between its features and `directions[k]`, shape (K,)."""
    cos = F.cosine_similarity(h, directions[y], dim=1).clamp(-1.0, 1.0)
    K = directions.shape[0]
    onehot = F.one_hot(y, K).to(h.dtype)
    return (onehot.T @ torch.arccos(cos)) / onehot.sum(0).clamp_min(1)


def loglog_slope(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Return the least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


# ----------------------------------------------------------------------------------------------------------
# Post-hoc logit adjusters, vectorised over the batch and over class pairs
# ----------------------------------------------------------------------------------------------------------


KNOCKOUTS = ("additive-mla",)
"""Mechanisms `knockout` can remove: "additive-mla" makes MLA adjust additively (z_k - gamma log pi_k, i.e. ALA)."""
_KNOCKED: set[str] = set()


@contextmanager
def knockout(*names: str) -> Iterator[None]:
    """Remove the named mechanisms (`KNOCKOUTS`) inside the block: every MLA of this module then adjusts additively.

    For the knock-out tests and for readers: a claim that rests on MLA being multiplicative must fail inside
    `with knockout("additive-mla"): ...`.
    """
    unknown = set(names) - set(KNOCKOUTS)
    if unknown:
        raise ValueError(f"unknown knock-out {sorted(unknown)}; known: {KNOCKOUTS}")
    before = set(_KNOCKED)
    _KNOCKED.update(names)
    try:
        yield
    finally:
        _KNOCKED.clear()
        _KNOCKED.update(before)


def class_prior(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Return pi_k = n_k / N as a float64 tensor."""
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    return n / n.sum()


def ala_logits(z: torch.Tensor, counts, gamma: float) -> torch.Tensor:
    """Return additively adjusted logits z_k - gamma log pi_k (ALA)."""
    # [logit-adjustment-def-adjusters], ALA: z'_k = z_k - gamma log pi_k
    return z - gamma * class_prior(counts).log().to(z)


def mla_logits(z: torch.Tensor, counts, gamma: float) -> torch.Tensor:
    """Return multiplicatively adjusted logits z_k pi_k^(-gamma) (MLA); additive ones under `knockout`."""
    if "additive-mla" in _KNOCKED:
        return ala_logits(z, counts, gamma)
    # [logit-adjustment-def-adjusters], MLA: z'_k = z_k * pi_k^(-gamma)
    return z * class_prior(counts).pow(-gamma).to(z)


def onevsone_angles(counts, gamma: float, rho: float | None = None) -> torch.Tensor:
    """Return the 1vs1 adjuster's angles theta[k, k'] = rho a_k' / (a_k + a_k'), a_k = n_k^gamma, shape (K, K).

    theta[k, k'] is the angle, seen from class k's ETF vector, at which the boundary with class k' lies.
    """
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    rho = etf_angle(len(n)) if rho is None else rho
    a = n.pow(gamma)
    # theta_{k,k'} = rho a_{k'} / (a_k + a_{k'})
    return rho * a[None, :] / (a[:, None] + a[None, :])


def onevsone_beats(z: torch.Tensor, counts, gamma: float) -> torch.Tensor:
    """Return a bool tensor (B, K, K): True where class i beats class j in the 1vs1 adjuster.

    With theta = theta[i, j], class i beats j iff z_i cos(rho - theta) > z_j cos(theta): in the plane of
    w_i and w_j this holds exactly for features at an angle below theta from w_i.
    """
    K = z.shape[1]
    rho = etf_angle(K)
    theta = onevsone_angles(counts, gamma, rho).to(z)
    # kappa_{ij} = sin(rho) cos(rho - theta_ij) = sin(theta_ij) + cos(rho) sin(theta_ji)
    kappa = math.sin(rho) * torch.cos(rho - theta)
    return z[:, :, None] * kappa[None] > z[:, None, :] * kappa.T[None]


def onevsone_votes(z: torch.Tensor, counts, gamma: float, *, chunk: int = 512) -> torch.Tensor:
    """Return the number of pairwise wins of every class (B, K), in batch chunks (memory B*K*K/chunks)."""
    out = [onevsone_beats(z[i : i + chunk], counts, gamma).sum(-1) for i in range(0, z.shape[0], chunk)]
    return torch.cat(out) if out else z.new_zeros(z.shape, dtype=torch.long)


ADJUSTERS = ("none", "ala", "mla", "1vs1")


def predict(z: torch.Tensor, method: str, counts, gamma: float) -> torch.Tensor:
    """Return the predicted classes (B,) of logits `z` under `method` (one of `ADJUSTERS`) at `gamma`.

    The 1vs1 adjuster predicts the class with most pairwise wins (the first such class on ties).
    """
    if method == "none":
        return z.argmax(1)
    if method == "ala":
        return ala_logits(z, counts, gamma).argmax(1)
    if method == "mla":
        return mla_logits(z, counts, gamma).argmax(1)
    if method == "1vs1":
        return onevsone_votes(z, counts, gamma).argmax(1)
    raise ValueError(f"unknown adjuster {method!r}; use one of {ADJUSTERS}")


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return the accuracy of each class (K,) (balanced accuracy is its mean)."""
    hits = torch.bincount(y[pred == y], minlength=num_classes).double()
    return hits / torch.bincount(y, minlength=num_classes).clamp_min(1)


def gamma_sweep(z: torch.Tensor, y: torch.Tensor, counts, method: str, gammas: Sequence[float]) -> torch.Tensor:
    """Return the per-class accuracy at every gamma of `gammas`, shape (len(gammas), K).

    ALA and MLA are vectorised over gamma (a (G, B, K) tensor); the 1vs1 adjuster loops over gamma.
    """
    B, K = z.shape
    g = torch.as_tensor(np.asarray(gammas, dtype=float), dtype=z.dtype, device=z.device)[:, None, None]
    log_prior = class_prior(counts).log().to(z)
    if method == "ala":
        pred = (z[None] - g * log_prior).argmax(-1)  # z_k - gamma log pi_k, every gamma at once
    elif method == "mla" and "additive-mla" in _KNOCKED:
        pred = (z[None] - g * log_prior).argmax(-1)  # the knock-out: additive
    elif method == "mla":
        pred = (z[None] * torch.exp(-g * log_prior)).argmax(-1)  # z_k pi_k^(-gamma)
    else:
        pred = torch.stack([predict(z, method, counts, float(gi)) for gi in g.flatten()])
    hit = (pred == y[None]).double()  # (G, B)
    slot = y[None] + K * torch.arange(len(pred), device=y.device)[:, None]  # (gamma, class) as one index
    hits = torch.bincount(slot.flatten(), weights=hit.flatten(), minlength=len(pred) * K).reshape(-1, K)
    return hits / torch.bincount(y, minlength=K).clamp_min(1)


# ----------------------------------------------------------------------------------------------------------
# The boundary angles that ALA and MLA imply, and how close they are to the 1vs1 adjuster's
# ----------------------------------------------------------------------------------------------------------


def mla_angles(counts, gammas: float | Sequence[float], rho: float | None = None) -> torch.Tensor:
    """Return MLA's boundary angles theta[k, k'] seen from w_k (shape (K, K), or (G, K, K) for G gammas).

    In the plane of w_k, w_k' the MLA boundary z_k / a_k = z_k' / a_k' (a_k = n_k^gamma) is the ray at
    tan(theta) = (a_k' / a_k - cos rho) / sin rho from w_k.
    """
    if "additive-mla" in _KNOCKED:
        return ala_angles(counts, gammas, rho)
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    rho = etf_angle(len(n)) if rho is None else rho
    g = torch.as_tensor(gammas, dtype=torch.float64)
    a = n[None, :] ** g.reshape(-1, 1)  # (G, K)
    ratio = a[:, None, :] / a[:, :, None]  # a_k' / a_k
    # tan theta_{k,k'} = (a_{k'}/a_k - cos rho) / sin rho
    theta = torch.atan((ratio - math.cos(rho)) / math.sin(rho))
    return theta.reshape(*g.shape, len(n), len(n))


def ala_angles(
    counts, gammas: float | Sequence[float], rho: float | None = None, scale: float = 1.0, *, clip: bool = True
) -> torch.Tensor:
    """Return ALA's boundary angles theta[k, k'] on the circle ||h|| ||w|| = `scale` (shape like `mla_angles`).

    z_k - gamma log pi_k = z_k' - gamma log pi_k' with z_k = scale cos(theta), z_k' = scale cos(rho - theta)
    gives sin(rho/2 - theta) = gamma log(n_k / n_k') / (2 scale sin(rho/2)); where no such angle lies in
    [0, rho] one class takes the whole arc and theta is 0 or rho (`clip=False`: NaN there, as the released
    plotting helper gives for those pairs).
    """
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    rho = etf_angle(len(n)) if rho is None else rho
    g = torch.as_tensor(gammas, dtype=torch.float64)
    log_ratio = n.log()[:, None] - n.log()[None, :]  # log(n_k / n_k')
    s = g.reshape(-1, 1, 1) * log_ratio / (2 * scale * math.sin(rho / 2))
    # theta_{k,k'} = rho/2 - arcsin(gamma log(n_k/n_k') / (2 ||h|| sin(rho/2)))
    half = math.sin(rho / 2)
    theta = rho / 2 - torch.asin(s.clamp(-half, half) if clip else torch.where(s.abs() <= half, s, math.nan))
    return theta.reshape(*g.shape, len(n), len(n))


def angle_error(theta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Return the mean |theta - reference| over the off-diagonal pairs (k != k'); leading dims are kept."""
    K = theta.shape[-1]
    diff = (theta - reference).abs()
    return (diff.sum((-2, -1)) - diff.diagonal(dim1=-2, dim2=-1).sum(-1)) / (K * (K - 1))


def matched_mla_gamma(rho: float, gamma_1vs1: float) -> float:
    """Return the MLA gamma whose angles match the 1vs1 adjuster's to first order in log(n_k / n_k').

    Both angle maps equal rho/2 at equal counts; their slopes in u = log(n_k'/n_k) are
    gamma_MLA cot(rho/2) / 2 and rho gamma_1vs1 / 4, so gamma_MLA = (rho/2) tan(rho/2) gamma_1vs1
    (pi/4 gamma_1vs1 at rho = pi/2).
    """
    return rho / 2 * math.tan(rho / 2) * gamma_1vs1


def mla_gamma_from_spread(spread_exponent: float, num_classes: int) -> tuple[float, float]:
    """Return the band (low, high) of MLA's gamma that the spread exponent s predicts, without any accuracy.

    If the held-out spread of class k shrinks like n_k^(-s), the 1vs1 adjuster's gamma lies in [s/2, s]
    (chapter "logit-adjustment", after Proposition 2); `matched_mla_gamma` maps both ends to MLA's gamma at the
    rho of `num_classes` classes.
    """
    rho = etf_angle(num_classes)
    return matched_mla_gamma(rho, spread_exponent / 2), matched_mla_gamma(rho, spread_exponent)


# ----------------------------------------------------------------------------------------------------------
# Training on a long-tailed split, and the experiment of one replicate
# ----------------------------------------------------------------------------------------------------------


def _grid(step: float, stop: float, start: float = 0.0) -> np.ndarray:
    """Return start, start + step, ..., stop (rounded, both ends included)."""
    return np.round(np.arange(round((stop - start) / step) + 1) * step + start, 6)


@dataclass(frozen=True)
class AngleConfig(Config):
    """Experiment 1 of chapter "logit-adjustment": implied boundary angles (deterministic, both profiles)."""

    benchmark: str = "cifar100-lt"  # class counts compared
    gamma_1vs1: float = 0.5  # the 1vs1 adjuster's gamma the other adjusters are fitted to
    gamma_step: float = 0.005  # grid of gamma (MLA) and gamma / ||h|| (ALA) searched ...
    gamma_max: float = 2.0  # ... from gamma_step to gamma_max
    pairs_checked: int = 20  # class pairs whose MLA boundary is also found by root finding

    def gamma_grid(self) -> np.ndarray:
        """Return the grid of gamma searched."""
        return _grid(self.gamma_step, self.gamma_max, self.gamma_step)


@dataclass(frozen=True)
class LongTailConfig(Config):
    """Experiments 2 and 3 of chapter "logit-adjustment": networks on a long-tailed split of digits."""

    n_max: int = 100  # training examples of the largest class
    imbalance: float = 0.02  # n_min / n_max of the exponential profile
    val_per_class: int = 20  # balanced validation set (tunes gamma)
    test_per_class: int = 50  # balanced test set
    replicates: int = 4  # independent long-tailed splits and networks per arm, averaged
    width: int = 128  # MLP width (two hidden layers)
    feature_dim: int = 32  # feature dimension (>= K - 1 for the ETF)
    epochs: int = 60  # training epochs
    batch: int = 64  # minibatch size
    lr: float = 3e-3  # Adam learning rate
    weight_decay: float = 5e-4  # on every weight matrix
    feature_reg: float = 1e-2  # lambda of the feature-norm regulariser
    track_every: int = 10  # epochs between neural-collapse measurements (0: never)
    gamma_step: float = 0.1  # grid for tuning gamma on the validation set ...
    gamma_max: float = 3.0  # ... from 0 to gamma_max

    PRESETS = {"quick": {}, "full": {"replicates": 16, "epochs": 200, "lr": 2e-3, "gamma_step": 0.05}}

    def gamma_grid(self) -> np.ndarray:
        """Return the grid of gamma tuned over (0 = no adjustment)."""
        return _grid(self.gamma_step, self.gamma_max)


@dataclass(frozen=True)
class MixtureConfig(Config):
    """Experiment 4 of chapter "logit-adjustment": an offline long-tailed Gaussian mixture with many classes."""

    classes: tuple[int, ...] = (10, 100)  # numbers of classes compared
    n_max: int = 50  # training examples of the largest class
    imbalance: float = 0.01  # n_min / n_max (CIFAR-LT's)
    val_size: int = 2000  # balanced validation set (val_size // K per class)
    test_size: int = 5000  # balanced test set (test_size // K per class)
    dim: int = 32  # input dimension
    clusters: int = 4  # Gaussian sub-clusters per class
    noise: float = 0.7  # sub-cluster standard deviation (centres have unit variance per coordinate)
    replicates: int = 3  # networks per number of classes
    width: int = 128  # MLP width
    feature_dim: int = 128  # feature dimension (>= K - 1)
    epochs: int = 25  # training epochs
    batch: int = 64  # minibatch size
    lr: float = 3e-3  # Adam learning rate
    weight_decay: float = 5e-4  # on every weight matrix
    feature_reg: float = 1e-2  # lambda of the feature-norm regulariser
    track_every: int = 0  # no neural-collapse curves here
    gamma_step: float = 0.05  # grid for tuning gamma of ALA and MLA ...
    gamma_max: float = 2.0  # ... from 0 to gamma_max
    gamma_step_1vs1: float = 0.1  # a coarser grid for the 1vs1 adjuster (it compares all K^2 pairs) ...
    gamma_max_1vs1: float = 1.0  # ... from 0 to gamma_max_1vs1

    PRESETS = {
        "quick": {},
        "full": {
            "n_max": 500,
            "test_size": 10000,
            "epochs": 150,
            "batch": 128,
            "gamma_step_1vs1": 0.05,
        },
    }

    def gamma_grid(self) -> np.ndarray:
        """Return the grid of gamma tuned over for ALA and MLA (0 = no adjustment)."""
        return _grid(self.gamma_step, self.gamma_max)

    def gamma_grid_1vs1(self) -> np.ndarray:
        """Return the grid of gamma tuned over for the 1vs1 adjuster."""
        return _grid(self.gamma_step_1vs1, self.gamma_max_1vs1)


@one_thread
def train_lt(
    model: LTNet,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch: int,
    weight_decay: float,
    feature_reg: float,
    track_every: int = 0,
    seed: int = 0,
    desc: str = "train",
) -> dict[str, list]:
    """Train `model` in place (Adam, cross-entropy + feature-norm regulariser, weight decay on weight matrices).

    Returns `{"loss": [per epoch], "epoch": [...], "nc1": [...], "etf_gap": [...], "equinorm": [...]}`, the
    neural-collapse metrics measured on the training features every `track_every` epochs (0: never).
    """
    device = next(model.parameters()).device
    X, y = X.to(device), y.to(device)
    K = model.head.weight.shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    rest = [p for p in params if p.dim() <= 1]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": weight_decay}, {"params": rest}], lr=lr, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    hist: dict[str, list] = {"loss": [], "epoch": [], "nc1": [], "etf_gap": [], "equinorm": []}
    for epoch in progress(range(1, epochs + 1), desc=desc, total=epochs):
        model.train()
        perm = torch.randperm(X.shape[0], generator=gen).to(device)
        total = 0.0
        for start in range(0, X.shape[0], batch):
            idx = perm[start : start + batch]
            h = model.features(X[idx])
            loss = F.cross_entropy(model.head(h), y[idx]) + feature_norm_penalty(h, feature_reg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        hist["loss"].append(total / X.shape[0])
        if track_every and (epoch % track_every == 0 or epoch == epochs):
            model.eval()
            with torch.no_grad():
                m = nc_metrics(model.features(X), y, K)
            hist["epoch"].append(epoch)
            for key in ("nc1", "etf_gap", "equinorm"):
                hist[key].append(m[key])
    model.eval()
    return hist


@torch.no_grad()
def _features(model: LTNet, X: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.features(X[i : i + batch].to(device)) for i in range(0, X.shape[0], batch)])


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    return load_digits()


def digits_lt_data(counts: np.ndarray, *, val_per_class: int, test_per_class: int, seed: int) -> dict:
    """Return a long-tailed split of scikit-learn's digits (offline): train / val / test tensors and counts."""
    X, y = _digits()
    split = long_tailed_split(y, counts, test_per_class=test_per_class, val_per_class=val_per_class, seed=seed)
    return _pack(X, y, split)


def _pack(X: torch.Tensor, y: torch.Tensor, split: LTSplit) -> dict:
    out = {"counts": split.counts}
    for name in ("train", "val", "test"):
        idx = torch.from_numpy(getattr(split, name))
        out[f"X_{name}"], out[f"y_{name}"] = X[idx], y[idx]
    return out


def mixture_lt_data(
    counts: np.ndarray,
    *,
    val_per_class: int,
    test_per_class: int,
    dim: int,
    clusters: int,
    noise: float,
    seed: int,
) -> dict:
    """Return an offline long-tailed task: class k is a mixture of `clusters` Gaussians in R^dim.

    Sub-cluster centres are N(0, I); points are a centre (chosen uniformly) plus N(0, noise^2 I). Class k
    has counts[k] training points (counts given per class label) and balanced validation and test sets.
    """
    gen = torch.Generator().manual_seed(seed)
    K = len(counts)
    centres = torch.randn(K, clusters, dim, generator=gen)

    def draw(per_class: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.repeat_interleave(torch.arange(K), torch.as_tensor(per_class))
        which = torch.randint(0, clusters, (len(y),), generator=gen)
        return centres[y, which] + noise * torch.randn(len(y), dim, generator=gen), y

    out = {"counts": np.asarray(counts)}
    sizes = {"train": np.asarray(counts), "val": np.full(K, val_per_class), "test": np.full(K, test_per_class)}
    for name, per_class in sizes.items():
        out[f"X_{name}"], out[f"y_{name}"] = draw(per_class)
    return out


def run_replicate(
    data: dict,
    cfg: LongTailConfig | MixtureConfig,
    *,
    etf: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
    cnn_channels: Sequence[int] | None = None,
) -> dict:
    """Train one network on `data` (from `digits_lt_data`, `mixture_lt_data` or `load_cifar_lt`) with the
    sizes of `cfg`; return what the chapter uses. `etf=False`: a learnable head; `cnn_channels`: a CNN.

    Keys: `hist` (training curves), `z_val`, `z_test` (logits, CPU), `y_val`, `y_test`, `counts`,
    `spread_val` (mean angle of validation features to their class's head vector, per class), `nc_test`,
    `feature_norm` (mean norm of the test features).
    """
    counts = np.asarray(data["counts"])
    K = len(counts)
    torch.manual_seed(seed)
    model = LTNet(
        tuple(data["X_train"].shape[1:]),
        K,
        feature_dim=cfg.feature_dim,
        width=cfg.width,
        cnn_channels=cnn_channels,
        etf=etf,
        seed=seed,
    )
    if device is not None:
        model.to(device)
    hist = train_lt(
        model,
        data["X_train"],
        data["y_train"],
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch=cfg.batch,
        weight_decay=cfg.weight_decay,
        feature_reg=cfg.feature_reg,
        track_every=cfg.track_every,
        seed=seed,
        desc=f"train K={K}",
    )
    head = model.head_weight()
    out = {"hist": hist, "counts": counts}
    for name in ("val", "test"):
        h = _features(model, data[f"X_{name}"])
        y = data[f"y_{name}"].to(h.device)
        out[f"z_{name}"], out[f"y_{name}"] = (h @ head.T).cpu(), y.cpu()
        if name == "val" and len(y):
            out["spread_val"] = angular_spread(h, y, head).cpu()
        if name == "test":
            out["nc_test"] = nc_metrics(h, y, K)
            out["feature_norm"] = h.norm(dim=1).mean().item()
    return out


def evaluate_adjusters(
    rep: dict,
    gammas: Sequence[float] | dict[str, Sequence[float]],
    methods: Sequence[str] = ("ala", "mla", "1vs1"),
    *,
    test_curves: Sequence[str] | None = None,
    device: torch.device | str | None = None,
) -> dict:
    """Tune gamma of each adjuster on the balanced validation set; return test results per method.

    `gammas` is one grid for every method or a grid per method ({"mla": ..., "1vs1": ...}). For each method:
    `gamma` (tuned), `val_curve` (balanced val accuracy per gamma), `acc` (balanced test accuracy at the tuned
    gamma), `pred` (test predictions there) and, for the methods of `test_curves` (default: all), `test_curve`
    (per-class test accuracy per gamma, (G, K)) and `oracle` (the best balanced test accuracy over the grid,
    at the gamma an oracle would pick on the test set). `none` is the unadjusted baseline. The sweeps run on
    `device` (the 1vs1 adjuster compares all class pairs: worth a GPU for many classes); results are on the CPU.
    """
    counts = rep["counts"]
    K = len(counts)
    z_val, y_val, z_test, y_test = (rep[k].to(device) for k in ("z_val", "y_val", "z_test", "y_test"))
    base = z_test.argmax(1)
    out = {"none": {"gamma": 0.0, "acc": per_class_accuracy(base, y_test, K).mean().item(), "pred": base.cpu()}}
    curves = set(methods if test_curves is None else test_curves)
    for m in methods:
        grid = np.asarray(gammas[m] if isinstance(gammas, dict) else gammas, dtype=float)
        val = gamma_sweep(z_val, y_val, counts, m, grid).mean(1).cpu()
        best = int(torch.argmax(val))  # first best gamma (the smallest adjustment on ties)
        g = float(grid[best])
        pred = predict(z_test, m, counts, g)
        out[m] = {"gamma": g, "val_curve": val, "pred": pred.cpu()}
        if m in curves:
            test = gamma_sweep(z_test, y_test, counts, m, grid).cpu()
            out[m].update(test_curve=test, acc=test[best].mean().item(), oracle=test.mean(1).max().item())
        else:
            out[m]["acc"] = per_class_accuracy(pred, y_test, K).mean().item()
    return out


def mixture_replicate(
    num_classes: int, cfg: MixtureConfig, *, seed: int, device: torch.device | str | None = None
) -> dict:
    """Train one network on a fresh long-tailed Gaussian mixture with `num_classes` classes; return its adjusters.

    The result is `evaluate_adjusters`'s, ALA and MLA tuned on `cfg.gamma_grid()` (with their test curves and
    oracles), the 1vs1 adjuster on the coarser `cfg.gamma_grid_1vs1()`, plus `agree` ({method: fraction of
    test examples predicted as the 1vs1 adjuster predicts}), `counts` and `feature_norm`.
    """
    counts = long_tail_counts(cfg.n_max, num_classes, cfg.imbalance)
    data = mixture_lt_data(
        counts,
        val_per_class=cfg.val_size // num_classes,
        test_per_class=cfg.test_size // num_classes,
        dim=cfg.dim,
        clusters=cfg.clusters,
        noise=cfg.noise,
        seed=seed,
    )
    rep = run_replicate(data, cfg, seed=seed, device=device)
    grids = {"ala": cfg.gamma_grid(), "mla": cfg.gamma_grid(), "1vs1": cfg.gamma_grid_1vs1()}
    ev = evaluate_adjusters(rep, grids, test_curves=("ala", "mla"), device=device)
    ev["agree"] = {m: (ev[m]["pred"] == ev["1vs1"]["pred"]).double().mean().item() for m in ("none", "ala", "mla")}
    ev["counts"], ev["feature_norm"] = counts, rep["feature_norm"]
    return ev


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10/100-LT for users with internet (never downloaded at build time)
# ----------------------------------------------------------------------------------------------------------

CIFAR: dict[str, dict] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "sha256": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label": "labels",
        "n_max": 5000,
        "classes": 10,
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "sha256": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label": "fine_labels",
        "n_max": 500,
        "classes": 100,
    },
}
"""The CIFAR archives, their SHA-256 checksums and layout."""


def _read_cifar(root: Path, spec: dict) -> tuple[torch.Tensor, ...]:
    """Return (X_train, y_train, X_test, y_test) from a verified archive: torchvision if present, else the batches."""
    try:
        import torchvision  # noqa: F401 (optional)
    except ImportError:
        torchvision = None
    archive = root / Path(spec["url"]).name
    if not (root / spec["folder"]).exists():
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
    if torchvision is not None:
        cls = torchvision.datasets.CIFAR10 if spec["classes"] == 10 else torchvision.datasets.CIFAR100
        sets = [cls(str(root), train=t, download=False) for t in (True, False)]
        arrays = [(np.asarray(s.data), np.asarray(s.targets)) for s in sets]
    else:
        arrays = []
        for part in ("train", "test"):
            xs, ys = [], []
            for name in spec[part]:
                with open(root / spec["folder"] / name, "rb") as fh:  # the archive's SHA-256 was checked
                    batch = pickle.load(fh, encoding="latin1")
                xs.append(np.asarray(batch["data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                ys.append(np.asarray(batch[spec["label"]]))
            arrays.append((np.concatenate(xs), np.concatenate(ys)))
    out = []
    for x, y in arrays:
        out += [torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(y).long()]
    return tuple(out)


def load_cifar_lt(
    name: str = "cifar10",
    imbalance: float = 0.01,
    *,
    download: bool = False,
    val_per_class: int | None = None,
    seed: int = 0,
) -> dict:
    """Return CIFAR-10-LT or CIFAR-100-LT: an exponential long-tailed training split, balanced val and test sets.

    The archive is looked for in `lib.data.data_dir()/cifar` and its SHA-256 checked; with `download=True`
    it is fetched first (users with internet; the book never downloads). Raises `DatasetUnavailable`
    when the archive is absent or wrong. Classes keep their labels; class c has rank c (class 0 is the head).
    The balanced validation set (`val_per_class`, default a fifth) is taken from the official test set.
    """
    if name not in CIFAR:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(CIFAR)}")
    spec = CIFAR[name]
    root = data_dir() / "cifar"
    archive = root / Path(spec["url"]).name
    if not archive.exists() and not download:
        raise DatasetUnavailable(f"{archive} is not there (pass download=True on a machine with internet)")
    fetch_verified(spec["url"], archive, spec["sha256"])  # verifies an existing file, downloads a missing one
    X_train, y_train, X_test, y_test = _read_cifar(root, spec)
    counts = long_tail_counts(spec["n_max"], spec["classes"], imbalance)
    per_class = len(y_test) // spec["classes"]
    v = max(1, per_class // 5) if val_per_class is None else val_per_class
    held = long_tailed_split(
        y_test, np.zeros(spec["classes"], dtype=np.int64), test_per_class=per_class - v, val_per_class=v, seed=seed
    )
    split = long_tailed_split(y_train, counts, test_per_class=0, class_order=range(spec["classes"]), seed=seed)
    data = _pack(X_train, y_train, split)
    for part in ("val", "test"):
        idx = torch.from_numpy(getattr(held, part))
        data[f"X_{part}"], data[f"y_{part}"] = X_test[idx], y_test[idx]
    data["source"] = f"{name}-lt"
    return data


def load_cifar_lt_or_fallback(
    name: str = "cifar10", imbalance: float = 0.01, *, download: bool = False, seed: int = 0, fallback_n_max: int = 100
) -> dict:
    """Return `load_cifar_lt(...)`, or, when CIFAR is not available, a long-tailed Gaussian mixture with the
    same number of classes and imbalance (`source` says which), after a visible note."""
    try:
        return load_cifar_lt(name, imbalance, download=download, seed=seed)
    except DatasetUnavailable as err:
        note_fallback(f"{name}-LT unavailable ({err}); using an offline long-tailed Gaussian mixture instead")
    K = CIFAR[name]["classes"]
    counts = long_tail_counts(fallback_n_max, K, imbalance)
    data = mixture_lt_data(counts, val_per_class=20, test_per_class=50, dim=32, clusters=4, noise=0.7, seed=seed)
    data["source"] = f"gaussian-mixture-lt (K={K})"
    return data


# ----------------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ----------------------------------------------------------------------------------------------------------

_METHOD_COLORS = {"MLA": plotting.PALETTE[0], "ALA": plotting.PALETTE[1]}


def plot_angles(counts, grid, errors: dict, best: dict, sweep: dict, rhos: dict, gamma_1vs1: float):
    """Draw the angle error over gamma, every pair's implied angle against the 1vs1 angle, and the rho ablation."""
    fig, axes = plotting.subplots(1, 3)
    for m, color in _METHOD_COLORS.items():
        axes[0].plot(grid, errors[m], color=color, label=m if m == "MLA" else "ALA (x = gamma / r)")
        axes[0].plot(*best[m], "o", color=color)
    plotting.label(
        axes[0], x="gamma", y="mean |angle difference| (rad)", yscale="log", title="fit over gamma", legend=True
    )
    K = len(counts)
    rho = etf_angle(K)
    reference = onevsone_angles(counts, gamma_1vs1)
    off = ~torch.eye(K, dtype=torch.bool)
    implied = {"ALA": ala_angles(counts, best["ALA"][0]), "MLA": mla_angles(counts, best["MLA"][0])}
    for m, theta in implied.items():
        axes[1].plot(reference[off], theta[off], ".", ms=1.5, color=_METHOD_COLORS[m], label=m)
    axes[1].plot([0, rho], [0, rho], color="k", lw=0.8, label="equal")
    plotting.label(axes[1], x="1vs1 angle (rad)", y="implied angle (rad)", title="all pairs, best gamma")
    axes[1].legend(markerscale=6)
    degs = [math.degrees(r) for r in rhos.values()]
    for m, marker in (("MLA", "o-"), ("ALA", "s--")):
        axes[2].plot(degs, [sweep[n][m][1] for n in rhos], marker, color=_METHOD_COLORS[m], label=m)
    for n, d in zip(rhos, degs, strict=True):
        if n in ("3", "5", "10", "20", "100"):
            axes[2].annotate(f"K={n}", (d, sweep[n]["MLA"][1]), fontsize=8, textcoords="offset points", xytext=(3, -10))
    plotting.label(
        axes[2], x="rho (degrees)", y="best mean error (rad)", yscale="log", title="ablation: rho", legend=True
    )
    return fig


def plot_collapse(reps: dict):
    """Draw NC1 and the ETF gap of the training features over epochs (mean over replicates), ETF head vs learned."""
    fig, axes = plotting.subplots(1, 2)
    for arm, color, style in (("ETF head", plotting.PALETTE[0], "-"), ("learned head", plotting.PALETTE[1], "--")):
        epochs = reps[arm][0]["hist"]["epoch"]
        for ax, key in zip(axes, ("nc1", "etf_gap"), strict=True):
            curve = np.mean([rep["hist"][key] for rep in reps[arm]], axis=0)
            ax.plot(epochs, curve, style, color=color, label=arm)
    plotting.label(axes[0], x="epoch", y="NC1 (training features)", yscale="log", legend=True)
    plotting.label(axes[1], x="epoch", y="ETF gap of the class means")
    return fig


def plot_spread(reps: dict, slopes: dict):
    """Draw each class's held-out spread against its training count (log-log) with fitted lines, LT vs balanced."""
    fig, ax = plotting.subplots(figsize=(5.6, 3.8))
    x = np.concatenate([rep["counts"] for rep in reps["ETF head"]])  # the balanced arm at the LT arm's counts
    for arm, color, marker, style in (
        ("ETF head", plotting.PALETTE[0], "o", "-"),
        ("balanced", plotting.PALETTE[2], "s", "--"),
    ):
        y = np.concatenate([rep["spread_val"].numpy() for rep in reps[arm]])
        ax.loglog(x, y, marker, ms=4, alpha=0.6, color=color, label=f"{arm} (slope {slopes[arm].mean():+.2f})")
        b, a = np.polyfit(np.log(x), np.log(y), 1)
        xs = np.array([x.min(), x.max()])
        ax.loglog(xs, np.exp(a) * xs**b, style, color=color)
    plotting.label(ax, x="training examples of the class $n_k$", y="mean angle to $w_k$ (rad)")
    ax.legend(title="arm (fitted line)")
    return fig


def plot_adjusters(acc: dict, agree: dict, names: dict):
    """Draw balanced test accuracy per method and agreement with the 1vs1 adjuster (bars: mean; dots: replicates)."""
    fig, axes = plotting.subplots(1, 2)
    panels = ((axes[0], acc, "balanced test accuracy", 0.05), (axes[1], agree, "agreement with 1vs1", 0.02))
    for ax, values, ylabel, margin in panels:
        for i, v in enumerate(values.values()):
            ax.bar(i, v.mean(), color=plotting.PALETTE[i], alpha=0.7)
            ax.plot(np.full(len(v), i), v, "k.", ms=5)
        plotting.ticks(ax, range(len(values)), labels=[names[m] for m in values])
        plotting.label(ax, y=ylabel)
        ax.set_ylim(min(values["none"].min(), 0.9) - margin, 1.0)
    return fig


def plot_gamma(gammas, curves: dict, band: tuple[float, float], predicted: float, tuned: Sequence[float]):
    """Draw MLA's accuracy over gamma per class group, the tuned gammas and the band the spread predicts."""
    fig, ax = plotting.subplots(figsize=(6.4, 4.6))
    for (group, curve), color, style in zip(curves.items(), plotting.PALETTE, ("-", "--", "-."), strict=False):
        ax.plot(gammas, curve, style, color=color, label=group)
    ax.axvspan(*band, color="0.85", label="predicted band")
    plotting.reference(ax, x=predicted, color="k", label="predicted gamma")
    for g in sorted(set(tuned)):
        ax.axvline(g, color="k", ls=":", lw=0.8)
    ax.plot([], [], "k:", lw=0.8, label="tuned gamma")
    plotting.label(ax, x="gamma (MLA)", y="test accuracy of the group")
    fig.legend(loc="outside lower center", ncol=3)
    return fig


def plot_many_classes(edge: dict, agree: dict):
    """Draw MLA's accuracy edge over ALA (tuned, oracle) and their agreement with 1vs1, per number of classes."""
    fig, axes = plotting.subplots(1, 2)
    width = 0.35
    kinds = ("tuned", "oracle")
    plotting.bars(
        axes[0],
        ["tuned on validation", "best on test"],
        {f"K = {K}": [edge[K][kind].mean() for kind in kinds] for K in edge},
        width=2 * width,
    )
    for j, K in enumerate(edge):
        for i, kind in enumerate(kinds):
            axes[0].plot(np.full(len(edge[K][kind]), i + (j - 0.5) * width), edge[K][kind], "k.", ms=4)
    axes[0].axhline(0.0, color="k", lw=0.8)
    plotting.label(axes[0], y="MLA minus ALA (balanced accuracy)")
    plotting.bars(
        axes[1],
        ["MLA", "ALA"],
        {f"K = {K}": [agree[K][m].mean() for m in ("mla", "ala")] for K in agree},
        width=2 * width,
    )
    plotting.label(axes[1], y="agreement with 1vs1")
    axes[1].set_ylim(0.5, 1.0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=2)
    return fig
