"""Kernel dependence measures: HSIC (biased, unbiased), CKA, the NOCCO-type normalised HSIC, permutation nulls.

Shared building block (explained in chapter "e2e-information-bottleneck"). Every function takes Gram
matrices of shape `(..., m, m)` and broadcasts over the leading axes, so the representations of all
layers of a network (stacked to `(L, m, m)`) are compared with the input or the labels in one call.

Memory: a Gram matrix of m examples holds m^2 numbers, so a batch of L layers needs O(L m^2) memory
(about 2 MB per layer at m = 500 in float64); the permutation null adds O(chunk m^2). Time is O(m^2 d)
for a Gram matrix of d-dimensional features, O(m^2) for HSIC and CKA, and O(m^3) for `nocco`
(it solves an m x m linear system).

Notation: K and L are the Gram matrices of two samples x_1..x_m and z_1..z_m of paired variables,
H = I - 11^T/m the centring matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def sq_dists(X: torch.Tensor) -> torch.Tensor:
    """Return the squared Euclidean distances `(..., m, m)` between the rows of `X` `(..., m, d)`."""
    G = X @ X.transpose(-1, -2)
    n = G.diagonal(dim1=-2, dim2=-1)
    D2 = (n[..., :, None] + n[..., None, :] - 2 * G).clamp_min(0.0)
    return D2 * (1 - torch.eye(D2.shape[-1], dtype=D2.dtype, device=D2.device))


def _flat(X: torch.Tensor) -> torch.Tensor:
    """Return `X` (m, ...) as a matrix (m, d) of flattened features."""
    return X.reshape(X.shape[0], -1)


def bandwidth_sq(D2: torch.Tensor, rule: str | float = "median", dim: int | None = None) -> torch.Tensor:
    """Return sigma^2 for the Gaussian kernel from squared distances `D2` `(..., m, m)`, per leading index.

    Rules: `"median"`: sigma = the median distance between distinct points (the median heuristic; the
    kernel is then invariant to isotropic scaling of the data); `"dim"`: sigma^2 = d, the feature
    dimension (for standardised features, about half the median squared distance); a number: that sigma.
    """
    m = D2.shape[-1]
    if rule == "median":
        iu = torch.triu_indices(m, m, offset=1, device=D2.device)
        med = D2[..., iu[0], iu[1]].median(dim=-1).values
        return med.clamp_min(torch.finfo(D2.dtype).tiny)
    if rule == "dim":
        if dim is None:
            raise ValueError("the 'dim' bandwidth rule needs the feature dimension `dim`")
        return torch.full(D2.shape[:-2], float(dim), dtype=D2.dtype, device=D2.device)
    if isinstance(rule, int | float) and not isinstance(rule, bool) and rule > 0:
        return torch.full(D2.shape[:-2], float(rule) ** 2, dtype=D2.dtype, device=D2.device)
    raise ValueError(f"unknown bandwidth rule {rule!r}; use 'median', 'dim' or a positive sigma")


def gaussian_gram(X: torch.Tensor, rule: str | float = "median", scale: float = 1.0) -> torch.Tensor:
    """Return the Gaussian Gram matrix exp(-||x_i - x_j||^2 / (2 (scale sigma)^2)) of the rows of `X` (m, d).

    `X` may carry leading batch axes, (..., m, d), e.g. the features of L layers of equal width.
    `rule` picks sigma per batch entry (see `bandwidth_sq`); `scale` multiplies it (< 1: narrower kernel).
    """
    D2 = sq_dists(X)
    s2 = bandwidth_sq(D2, rule, dim=X.shape[-1]) * scale**2
    return torch.exp(-D2 / (2 * s2[..., None, None]))


def linear_gram(X: torch.Tensor) -> torch.Tensor:
    """Return the linear Gram matrix X X^T of the flattened rows of `X` (m, ...)."""
    X = _flat(X)
    return X @ X.T


def label_gram(y: torch.Tensor, num_classes: int | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return the label kernel 1[y_i = y_j] (the linear kernel of one-hot labels), shape (m, m)."""
    onehot = F.one_hot(y.long(), num_classes or int(y.max()) + 1).to(dtype)
    return onehot @ onehot.T


def paper_gram(X: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Return the official code's kernel exp(-||x_i - x_j|| / (2 sigma^2 d)), d = flattened dimension.

    Note the distance is *not* squared and the bandwidth grows with d (Sakamoto & Sato's repository,
    `src/hsic/hsic.py`; sigma = 5 there). Not centred: `nhsic_paper` centres it.
    """
    X = _flat(X)
    # k(x, x') = exp(-||x - x'|| / (2 sigma^2 d))
    return torch.exp(-sq_dists(X).sqrt() / (2 * sigma**2 * X.shape[1]))


def double_center(K: torch.Tensor) -> torch.Tensor:
    """Return H K H for Gram matrices `K` `(..., m, m)` (row and column means removed)."""
    K = K - K.mean(dim=-1, keepdim=True)
    return K - K.mean(dim=-2, keepdim=True)


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Return the biased HSIC estimate tr(K H L H) / (m - 1)^2 (Gretton et al., 2005), broadcast over `...`.

    Its expectation under independence is O(1/m) and positive, not zero.
    """
    m = K.shape[-1]
    # HSIC_b = (m-1)^{-2} tr(K H L H) = (m-1)^{-2} sum_ij (HKH)_ij L_ij  (K, L symmetric)
    return (double_center(K) * L).sum(dim=(-2, -1)) / (m - 1) ** 2


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Return the unbiased HSIC estimate of Song et al. (2012) (needs m >= 4), broadcast over `...`.

    With K~, L~ the Gram matrices with zeroed diagonals and 1 the all-ones vector,
    HSIC_u = [tr(K~ L~) + 1'K~1 1'L~1 / ((m-1)(m-2)) - 2/(m-2) 1'K~L~1] / (m(m-3)).
    Its expectation is exactly HSIC, so it is zero on average for independent samples.
    """
    m = K.shape[-1]
    if m < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {m}")
    off = 1 - torch.eye(m, dtype=K.dtype, device=K.device)
    Kt, Lt = K * off, L * off
    trace = (Kt * Lt).sum(dim=(-2, -1))
    sums = Kt.sum(dim=(-2, -1)) * Lt.sum(dim=(-2, -1)) / ((m - 1) * (m - 2))
    cross = (Kt.sum(dim=-1) * Lt.sum(dim=-1)).sum(dim=-1) * 2 / (m - 2)  # 1'K~L~1 = (K~1).(L~1)
    return (trace + sums - cross) / (m * (m - 3))


def cka(K: torch.Tensor, L: torch.Tensor, *, unbiased: bool = True) -> torch.Tensor:
    """Return the normalised HSIC (CKA) HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), broadcast over `...`.

    `unbiased=True` uses `hsic_unbiased` in all three places (Nguyen et al., 2021), `False` the biased
    estimator (Kornblith et al., 2019). CKA(K, K) = 1.
    """
    hsic = hsic_unbiased if unbiased else hsic_biased
    kk, ll = hsic(K, K), hsic(L, L)
    return hsic(K, L) / (kk * ll).clamp_min(torch.finfo(K.dtype).tiny).sqrt()


def cka_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Return the CKA of Kornblith et al. (2019), built on the biased estimator (see `cka`)."""
    return cka(K, L, unbiased=False)


def nhsic(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Return the chapter's normalised HSIC: unbiased CKA of the two Gram matrices (see `cka`)."""
    return cka(K, L, unbiased=True)


def paper_projection(K: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Return R = K~ (K~ + eps m I)^{-1} with K~ = K H (one-sided centring, as the official code), `(..., m, m)`."""
    m = K.shape[-1]
    eye = torch.eye(m, dtype=K.dtype, device=K.device)
    Kt = K @ (eye - 1.0 / m)
    # R = K~ (K~ + eps m I)^{-1}: solve R (K~ + eps m I) = K~ for R
    return torch.linalg.solve(Kt + eps * m * eye, Kt, left=False)


def trace_product(R: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """Return tr(R S) = sum_ij R_ij S_ji, broadcast over the leading axes."""
    return (R * S.transpose(-1, -2)).sum(dim=(-2, -1))


def nocco(K: torch.Tensor, L: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Return the NOCCO-type normalised HSIC tr(R_K R_L), R = K~ (K~ + eps m I)^{-1}, K~ = K H, broadcast over `...`.

    The regularised estimator of the normalised cross-covariance operator (Fukumizu et al., 2008) that the
    HSIC bottleneck and the paper use, for any *uncentred* Gram matrices `K`, `L`. K~ = K H is centred on one
    side only, as in the official code, which gives the same trace as H K H (K H maps 1 to 0; tested). The
    value is not bounded by 1: for K = L it is sum_i (l_i / (l_i + eps m))^2 over the eigenvalues l_i of K H,
    about the number of eigenvalues above eps m. With Gaussian Gram matrices at the median bandwidth
    (`gaussian_gram(X)`) it is the chapter's data-scaled version of the paper's estimator; with `paper_gram`
    it is the official code's (`nhsic_paper`). To compare many representations with one fixed K, compute
    `paper_projection` once and use `trace_product`.
    """
    # nHSIC = tr(R_K R_L)
    return trace_product(paper_projection(K, eps), paper_projection(L, eps))


def nhsic_paper(K: torch.Tensor, L: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Return the official code's normalised HSIC: `nocco` of its kernels (`paper_gram`, sigma = 5, unsquared).

    `K`, `L` are the *uncentred* `paper_gram`s of the two samples (any Gram matrices work: see `nocco`).
    """
    return nocco(K, L, eps)


def permute_gram(L: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Return the Gram matrix `L` (m, m) with rows and columns permuted by each row of `perms` (P, m)."""
    return L[perms[:, :, None], perms[:, None, :]]


def permutation_null(
    K: torch.Tensor,
    L: torch.Tensor,
    statistic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nhsic,
    n_perm: int = 200,
    *,
    seed: int = 0,
    chunk: int = 50,
) -> torch.Tensor:
    """Return `statistic(K, L_perm)` for `n_perm` random permutations of the examples of `L`, shape (n_perm,).

    Permuting one side breaks the pairing and keeps both marginals: the values are a sample of the
    statistic under independence, estimator bias included. `K`, `L` are (m, m).
    """
    m = L.shape[-1]
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(m, generator=gen) for _ in range(n_perm)]).to(L.device)
    out = [statistic(K, permute_gram(L, perms[i : i + chunk])) for i in range(0, n_perm, chunk)]
    return torch.cat(out)


def permutation_pvalue(observed: float, null) -> float:
    """Return the permutation p-value (1 + #{null >= observed}) / (1 + n_perm) (`null`: tensor or array)."""
    null = torch.as_tensor(null)
    return float((1 + (null >= observed).sum()) / (1 + null.numel()))


def layer_grams(reps: list[torch.Tensor], rule: str | float = "median", dtype=torch.float64) -> torch.Tensor:
    """Return the Gaussian Gram matrices of several representations of the same m examples, stacked (L, m, m).

    Representations of equal shape are batched into one computation; others are done one by one.
    """
    flat = [_flat(r).to(dtype) for r in reps]
    if len({f.shape for f in flat}) == 1:
        return gaussian_gram(torch.stack(flat), rule)
    return torch.stack([gaussian_gram(f, rule) for f in flat])
