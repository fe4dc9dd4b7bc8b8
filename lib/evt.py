"""Extreme value statistics for many variables at once: generalized Pareto fits and peaks over threshold.

Shared building block (explained in chapter "parameter-saliency-evt"). Notation: a generalized Pareto
distribution (GPD) with shape `xi` and scale `sigma > 0` has survival function
`(1 + xi * x / sigma) ** (-1 / xi)` for x >= 0 (`exp(-x / sigma)` at xi = 0), with a finite right
endpoint `-sigma / xi` when xi < 0. Each row of a matrix is one variable (e.g. one convolution filter);
ragged samples are a padded matrix with a boolean mask.

Mapping to the paper (Wang & Sato, Eq. (4)) and chapter "parameter-saliency-evt": the code's shape `xi` is
the paper's shape beta, and the code's scale `sigma` is the paper's scale alpha, so
G(x | alpha, beta) = 1 - (1 + beta x / alpha)^(-1/beta) is `1 - gpd_survival(x, xi=beta, sigma=alpha)`.
(This module keeps the common EVT letters xi, sigma; `sigma` here is not the z-score's standard deviation.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

_XI_MIN = -1.0  # below xi = -1 the GPD likelihood is unbounded at the endpoint: no MLE exists


def _as_masked(Y: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.ndim != 2:
        raise ValueError(f"excesses must be a vector or a (variables, samples) matrix, got shape {Y.shape}")
    mask = np.isfinite(Y) if mask is None else np.asarray(mask, dtype=bool) & np.isfinite(Y)
    if mask.shape != Y.shape:
        raise ValueError(f"mask shape {mask.shape} differs from excesses shape {Y.shape}")
    if np.any(Y[mask] < 0):
        raise ValueError("excesses over a threshold must be >= 0")
    return np.where(mask, Y, 0.0), mask


def gpd_fit_scipy(Y: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return `(xi, sigma)` per row: `scipy.stats.genpareto.fit` with location 0, one row at a time.

    Rows with fewer than 2 samples, or all samples equal, get NaN.
    """
    Y, mask = _as_masked(Y, mask)
    xi = np.full(Y.shape[0], np.nan)
    sigma = np.full(Y.shape[0], np.nan)
    for j in range(Y.shape[0]):
        y = Y[j, mask[j]]
        if y.size < 2 or np.ptp(y) == 0:
            continue
        xi[j], _, sigma[j] = stats.genpareto.fit(y, floc=0.0)
    return xi, sigma


def gpd_fit_exponential(Y: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return `(xi, sigma)` per row with the shape fixed at 0: the exponential tail, sigma = mean excess (its MLE).

    The knock-out of the GPD's shape (`method="exponential"` of `fit_pot` / `pot_from_exceedances`): every
    variable gets an exponential tail, so the tail model no longer sees how heavy each variable's tail is.
    Rows with fewer than 2 samples, or all samples equal, get NaN (as in `gpd_fit_mle`).
    """
    Y, mask = _as_masked(Y, mask)
    n = mask.sum(1)
    ymax = np.where(mask, Y, -np.inf).max(1)
    ymin = np.where(mask, Y, np.inf).min(1)
    ok = (n >= 2) & (ymax > ymin)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, Y, 0.0).sum(1) / n
    return np.where(ok, 0.0, np.nan), np.where(ok, mean, np.nan)


def _profile_loglik(t: np.ndarray, Y: np.ndarray, mask: np.ndarray, n: np.ndarray, ymax: np.ndarray):
    """Return (mean log-likelihood, xi) of the GPD profiled over xi, at theta = t / ymax (rows x points)."""
    theta = t / ymax[:, None]  # (F, G)
    logs = np.log1p(theta[:, :, None] * Y[:, None, :])  # (F, G, m)
    v = (logs * mask[:, None, :]).sum(-1) / n[:, None]  # xi_hat(theta) = mean log(1 + theta y)
    # profile: sigma_hat = xi_hat / theta, loglik/n = -log(sigma_hat) - (1 + 1/xi_hat) * v = -log(v/theta) - v - 1
    ll = -np.log(v / theta) - v - 1.0
    ll = np.where(v >= _XI_MIN, ll, -np.inf)
    return ll, v


def _theta_grid(points: int, t_max: np.ndarray) -> np.ndarray:
    """Return per-row grids of t = theta * y_max in (-1, t_max): dense near -1 and 0, log-spaced above."""
    third = points // 3
    near_minus_one = -(1.0 - np.logspace(-6, np.log10(0.5), third // 2))
    near_zero = -np.logspace(-5, np.log10(0.5), third - third // 2)
    neg = np.sort(np.concatenate([near_minus_one, near_zero]))
    frac = np.linspace(0.0, 1.0, points - third)
    pos = 10.0 ** (-5.0 + frac[None, :] * (np.log10(t_max)[:, None] + 5.0))
    return np.concatenate([np.broadcast_to(neg, (t_max.size, neg.size)), pos], axis=1)


def gpd_fit_mle(
    Y: np.ndarray, mask: np.ndarray | None = None, *, grid: int = 300, refine: int = 50, chunk: int = 2**24
) -> tuple[np.ndarray, np.ndarray]:
    """Return `(xi, sigma)` per row: the GPD maximum-likelihood fit, vectorised over rows.

    Uses Grimshaw's reduction: for theta = xi / sigma the likelihood is maximised by
    xi(theta) = mean(log(1 + theta y)), which leaves a one-dimensional profile likelihood in theta,
    maximised on a grid and refined by golden-section search, all rows at once (in blocks of rows of at
    most `chunk` grid-times-sample values, to bound memory). The shape is kept >= -1 (below it no maximum
    exists). Rows with fewer than 2 samples, or all samples equal, get NaN.
    """
    Y, mask = _as_masked(Y, mask)
    rows = max(1, chunk // max(1, grid * Y.shape[1]))
    if Y.shape[0] > rows:
        parts = [
            gpd_fit_mle(Y[i : i + rows], mask[i : i + rows], grid=grid, refine=refine, chunk=chunk)
            for i in range(0, Y.shape[0], rows)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    n = mask.sum(1).astype(np.float64)
    ymax = np.where(mask, Y, -np.inf).max(1)
    ymin = np.where(mask, Y, np.inf).min(1)
    ok = (n >= 2) & (ymax > ymin)
    xi = np.full(Y.shape[0], np.nan)
    sigma = np.full(Y.shape[0], np.nan)
    if not ok.any():
        return xi, sigma
    Yo, Mo, no, mo = Y[ok], mask[ok], n[ok], ymax[ok]
    # theta ranges up to ~ xi / sigma with sigma as small as the smallest excess: span y_max / y_min
    t = _theta_grid(grid, np.maximum(1e7, 1e2 * mo / ymin[ok]))
    ll, _ = _profile_loglik(t, Yo, Mo, no, mo)
    best = ll.argmax(1)
    rows = np.arange(Yo.shape[0])
    lo = t[rows, np.maximum(best - 2, 0)]
    hi = t[rows, np.minimum(best + 2, t.shape[1] - 1)]
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo.copy(), hi.copy()
    for _ in range(refine):
        c = b - golden * (b - a)
        d = a + golden * (b - a)
        lc, _ = _profile_loglik(c[:, None], Yo, Mo, no, mo)
        ld, _ = _profile_loglik(d[:, None], Yo, Mo, no, mo)
        left = lc[:, 0] >= ld[:, 0]
        b = np.where(left, d, b)
        a = np.where(left, a, c)
    t_star = np.stack([(a + b) / 2.0, t[rows, best]], 1)
    ll_star, v_star = _profile_loglik(t_star, Yo, Mo, no, mo)
    pick = ll_star.argmax(1)
    v = v_star[rows, pick]
    theta = t_star[rows, pick] / mo
    # The boundary xi = -1 is the uniform law on [0, sigma], log-likelihood/n = -log(sigma), largest at
    # sigma = y_max. The profile reaches xi = -1 only at some theta > -1/y_max, i.e. at sigma > y_max, so
    # the boundary solution (xi, sigma) = (-1, y_max) is compared with the profile's best explicitly.
    boundary = -np.log(mo) > ll_star[rows, pick]
    xi[ok] = np.where(boundary, _XI_MIN, v)
    sigma[ok] = np.where(boundary, mo, v / theta)
    return xi, sigma


def gpd_loglik(Y: np.ndarray, xi: np.ndarray, sigma: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Return the GPD log-likelihood of each row of excesses `Y` (-inf outside the support, NaN if unfitted)."""
    Y, mask = _as_masked(Y, mask)
    xi = np.asarray(xi, dtype=np.float64)[:, None]
    sigma = np.asarray(sigma, dtype=np.float64)[:, None]
    small = np.abs(xi) < 1e-9
    uniform = np.abs(xi - _XI_MIN) < 1e-12  # xi = -1: density 1/sigma on [0, sigma], endpoint included
    z = 1.0 + xi * Y / sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        log_z = np.log(np.where(z > 0, z, np.nan))
        terms = np.where(small, -Y / sigma, -(1.0 / np.where(small, 1.0, xi) + 1.0) * log_z) - np.log(sigma)
    inside = (z > 0) | (uniform & (z >= -1e-12))
    terms = np.where(uniform & inside, -np.log(sigma), terms)
    terms = np.where(mask & ~inside, -np.inf, terms)
    return np.where(mask, terms, 0.0).sum(1)


def gpd_survival(x: np.ndarray, xi: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Return the GPD survival function P(X > x) = (1 + xi x / sigma)^(-1/xi) (0 beyond a finite endpoint)."""
    x, xi, sigma = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, xi, sigma)))
    x = np.maximum(x, 0.0)
    z = 1.0 + xi * x / sigma
    small = np.abs(xi) < 1e-9
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        power = np.where(z > 0, np.exp(-np.log(np.where(z > 0, z, 1.0)) / np.where(small, 1.0, xi)), 0.0)
        expo = np.exp(-x / sigma)
    return np.where(small, expo, power)


@dataclass(frozen=True)
class PeaksOverThreshold:
    """Per-variable POT model: threshold T, exceedance count n of N, GPD (xi, sigma) of the excesses.

    Variables with fewer than `min_exceed` exceedances are not fitted (`fitted` is False).
    """

    threshold: np.ndarray
    n_exceed: np.ndarray
    n_total: int
    xi: np.ndarray
    sigma: np.ndarray
    fitted: np.ndarray
    excesses: np.ndarray  # (variables, max n) padded with NaN: the excesses X - T > 0
    normal: tuple[np.ndarray, np.ndarray] | None = None  # knock-out: (mean, sd); the tail beyond T is normal

    def tail_probability(self, s: np.ndarray) -> np.ndarray:
        """Return P(X > s) per variable: (n/N)(1 - G(s - T)) above T (Eq. 5), 1 at or below T.

        An unfitted variable above its threshold gets the smoothed empirical value (k + 1)/(N + 1),
        k = number of reference values above s. `s` has shape (variables,) or (examples, variables).
        With `normal = (mean, sd)` (the knock-out `method="normal"`) the GPD is replaced by the normal law's
        tail beyond the threshold: (n/N) P_N(X > s) / P_N(X > T).
        """
        s = np.asarray(s, dtype=np.float64)
        if s.shape[-1] != self.threshold.shape[0]:
            raise ValueError(f"s has {s.shape[-1]} variables, the model has {self.threshold.shape[0]}")
        excess = s - self.threshold
        above = excess > 0
        if self.normal is None:
            survival = gpd_survival(excess, self.xi, self.sigma)
        else:
            loc, scale = (np.asarray(a, dtype=np.float64) for a in self.normal)
            safe = np.where(scale > 0, scale, 1.0)
            survival = np.exp(stats.norm.logsf((s - loc) / safe) - stats.norm.logsf((self.threshold - loc) / safe))
        tail = (self.n_exceed / self.n_total) * survival
        k = (np.nan_to_num(self.excesses, nan=-np.inf) > excess[..., None]).sum(-1)
        emp = (k + 1.0) / (self.n_total + 1.0)
        p = np.where(self.fitted, tail, emp)
        return np.where(above, p, 1.0)


TAIL_METHODS = ("mle", "scipy", "exponential", "normal")
"""Tail models of a POT fit: the GPD by maximum likelihood ("mle", "scipy") and two knock-outs of the GPD,
"exponential" (its shape fixed at 0) and "normal" (the normal law of the variable's mean and sd beyond T)."""


def fit_pot(X: np.ndarray, *, quantile: float = 0.9, min_exceed: int = 5, method: str = "mle") -> PeaksOverThreshold:
    """Return the POT model of each column of `X` (samples x variables): threshold at `quantile`, GPD fit.

    `method` (one of `TAIL_METHODS`) is "mle" (vectorised, `gpd_fit_mle`), "scipy" (`gpd_fit_scipy`, one
    variable at a time), or a knock-out of the GPD: "exponential" (`gpd_fit_exponential`, the shape fixed
    at 0) or "normal" (the tail beyond the threshold is that of the normal law with the column's mean and
    standard deviation: the normality assumption inside POT).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be a (samples, variables) matrix with >= 2 samples, got shape {X.shape}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    T = np.quantile(X, quantile, axis=0)
    normal = (X.mean(0), X.std(0, ddof=1)) if method == "normal" else None
    return pot_from_exceedances(T, np.where(X > T, X - T, np.nan).T, X.shape[0], min_exceed, method, normal=normal)


def pot_from_exceedances(
    threshold: np.ndarray,
    excesses: np.ndarray,
    n_total: int,
    min_exceed: int = 5,
    method: str = "mle",
    *,
    normal: tuple[np.ndarray, np.ndarray] | None = None,
) -> PeaksOverThreshold:
    """Return the POT model from thresholds and a (variables, m) matrix of excesses (NaN = none).

    `method` picks the tail model, as in `fit_pot`; "normal" needs `normal=(mean, sd)` of each variable
    (a variable with sd 0 keeps the smoothed empirical tail).
    """
    fits = {"mle": gpd_fit_mle, "scipy": gpd_fit_scipy, "exponential": gpd_fit_exponential}
    if method not in TAIL_METHODS:
        raise ValueError(f"method must be one of {sorted(TAIL_METHODS)}, got {method!r}")
    if (method == "normal") != (normal is not None):
        raise ValueError("method='normal' goes with normal=(mean, sd), and only it")
    excesses = np.asarray(excesses, dtype=np.float64)
    mask = np.isfinite(excesses) & (excesses > 0)
    excesses = np.where(mask, excesses, np.nan)
    n = mask.sum(1)
    order = np.argsort(~mask, axis=1, kind="stable")  # compact: exceedances first, then padding
    width = max(int(n.max(initial=0)), 1)
    excesses = np.take_along_axis(excesses, order, 1)[:, :width]
    mask = np.take_along_axis(mask, order, 1)[:, :width]
    enough = n >= min_exceed
    xi = np.full(n.shape, np.nan)
    sigma = np.full(n.shape, np.nan)
    if method == "normal":
        loc, scale = (np.asarray(a, dtype=np.float64) for a in normal)
        fitted = enough & (scale > 0)
        return PeaksOverThreshold(
            np.asarray(threshold, float), n, int(n_total), xi, sigma, fitted, excesses, normal=(loc, scale)
        )
    if enough.any():
        xi[enough], sigma[enough] = fits[method](np.nan_to_num(excesses[enough]), mask[enough])
    fitted = enough & np.isfinite(xi) & np.isfinite(sigma) & (sigma > 0)
    return PeaksOverThreshold(np.asarray(threshold, float), n, int(n_total), xi, sigma, fitted, excesses)
