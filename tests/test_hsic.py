"""Tests of lib.hsic against independent references: brute-force sums, scipy distances, eigenvalues."""

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from lib import hsic

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _close(a, b):
    """Assert equal up to float64 rounding (torch.testing's first call imports for seconds)."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def _data(m=40, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=gen, dtype=DT)


def nocco_reference(K: np.ndarray, L: np.ndarray, eps: float = 1e-5) -> float:
    """tr(R_K R_L) with R_G = HGH (HGH + eps m I)^(-1), H the centring matrix: two-sided, explicit inverse."""
    m = K.shape[0]
    H = np.eye(m) - 1.0 / m

    def R(G):
        C = H @ G @ H
        return C @ np.linalg.inv(C + eps * m * np.eye(m))

    return float(np.trace(R(K) @ R(L)))


def test_gaussian_gram_and_median_rule_match_scipy():
    X = _data(30, 4)
    D = squareform(pdist(X.numpy()))
    sigma = np.median(pdist(X.numpy()))
    ref = np.exp(-(D**2) / (2 * sigma**2))
    np.testing.assert_allclose(hsic.gaussian_gram(X).numpy(), ref, rtol=1e-10, atol=1e-12)
    ref_dim = np.exp(-(D**2) / (2 * 4))
    np.testing.assert_allclose(hsic.gaussian_gram(X, "dim").numpy(), ref_dim, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hsic.gaussian_gram(X, 2.0).numpy(), np.exp(-(D**2) / 8), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        hsic.gaussian_gram(X, "silverman")


def test_paper_gram_is_the_unsquared_distance_kernel():
    X = _data(12, 6)
    D = squareform(pdist(X.numpy()))
    ref = np.exp(-D / (2 * 25.0 * 6))
    np.testing.assert_allclose(hsic.paper_gram(X).numpy(), ref, rtol=1e-7, atol=1e-9)


def test_label_gram_is_the_class_indicator():
    y = torch.tensor([0, 2, 2, 1, 0])
    ref = (y[:, None] == y[None, :]).to(DT)
    _close(hsic.label_gram(y, 3), ref)


def _brute_hsic_unbiased(K, L):
    """Song et al.'s U-statistic written as three sums over tuples of distinct indices."""
    m = K.shape[0]
    idx = range(m)
    t1 = np.mean([K[i, j] * L[i, j] for i, j in itertools.permutations(idx, 2)])
    t2 = np.mean([K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(idx, 4)])
    t3 = np.mean([K[i, j] * L[i, q] for i, j, q in itertools.permutations(idx, 3)])
    return t1 + t2 - 2 * t3


def _brute_hsic_v(K, L):
    """The V-statistic: the same three terms with all indices free (equals tr(KHLH) / m^2)."""
    m = K.shape[0]
    t1 = sum(K[i, j] * L[i, j] for i in range(m) for j in range(m)) / m**2
    t2 = K.sum() * L.sum() / m**4
    t3 = sum(K[i, j] * L[i, q] for i in range(m) for j in range(m) for q in range(m)) / m**3
    return t1 + t2 - 2 * t3


def test_hsic_estimators_agree_with_brute_force_sums():
    X, Z = _data(7, 3, seed=1), _data(7, 2, seed=2)
    K, L = hsic.gaussian_gram(X), hsic.gaussian_gram(Z)
    Kn, Ln = K.numpy(), L.numpy()
    assert float(hsic.hsic_unbiased(K, L)) == pytest.approx(_brute_hsic_unbiased(Kn, Ln), rel=1e-9, abs=1e-12)
    m = 7
    assert float(hsic.hsic_biased(K, L)) * (m - 1) ** 2 / m**2 == pytest.approx(_brute_hsic_v(Kn, Ln), rel=1e-9)


def test_nhsic_paper_agrees_with_a_direct_loop_and_with_eigenvalues():
    X, Z = _data(6, 3, seed=3), _data(6, 4, seed=4)
    K, L = hsic.paper_gram(X).numpy(), hsic.paper_gram(Z).numpy()
    m, eps = 6, 1e-5
    H = np.eye(m) - 1.0 / m
    Rk = K @ H @ np.linalg.inv(K @ H + eps * m * np.eye(m))
    Rl = L @ H @ np.linalg.inv(L @ H + eps * m * np.eye(m))
    ref = sum(Rk[i, j] * Rl[j, i] for i in range(m) for j in range(m))
    got = hsic.nhsic_paper(torch.from_numpy(K), torch.from_numpy(L))
    assert float(got) == pytest.approx(ref, rel=1e-8)
    # with itself: sum over the eigenvalues l of K H of (l / (l + eps m))^2
    lam = np.linalg.eigvals(K @ H).real
    self_ref = np.sum((lam / (lam + eps * m)) ** 2)
    assert float(hsic.nhsic_paper(torch.from_numpy(K), torch.from_numpy(K))) == pytest.approx(self_ref, rel=1e-6)


def test_nhsic_of_x_with_itself_is_one():
    K = hsic.gaussian_gram(_data(50, 8))
    assert float(hsic.nhsic(K, K)) == pytest.approx(1.0, abs=1e-12)
    assert float(hsic.cka(K, K, unbiased=False)) == pytest.approx(1.0, abs=1e-12)


def test_nhsic_is_invariant_to_rotation_and_isotropic_scaling():
    X, Z = _data(60, 6, seed=5), None
    Z = torch.tanh(X[:, :3] @ torch.ones(3, 4, dtype=DT)) + 0.3 * _data(60, 4, seed=6)
    Q, _ = torch.linalg.qr(_data(6, 6, seed=7))
    base = float(hsic.nhsic(hsic.gaussian_gram(X), hsic.gaussian_gram(Z)))
    for Xt in (X @ Q, 7.5 * X, 0.01 * X @ Q):
        assert float(hsic.nhsic(hsic.gaussian_gram(Xt), hsic.gaussian_gram(Z))) == pytest.approx(base, abs=1e-10)
    # the paper's kernel is rotation invariant but not scale invariant
    Kp, Lp = hsic.paper_gram(X), hsic.paper_gram(Z)
    assert float(hsic.nhsic_paper(hsic.paper_gram(X @ Q), Lp)) == pytest.approx(
        float(hsic.nhsic_paper(Kp, Lp)), rel=1e-6
    )
    assert abs(float(hsic.nhsic_paper(hsic.paper_gram(10 * X), Lp)) - float(hsic.nhsic_paper(Kp, Lp))) > 1.0


def test_independent_gaussians_unbiased_near_zero_biased_near_one_third():
    """64-d vs 32-d independent Gaussians at m = 250: the biased CKA (sigma^2 = d) sits near 0.33, ours near 0."""
    gen = torch.Generator().manual_seed(0)
    biased, ours, ours_dim = [], [], []
    for _ in range(4):
        X = torch.randn(250, 64, generator=gen, dtype=DT)
        Z = torch.randn(250, 32, generator=gen, dtype=DT)
        biased.append(float(hsic.cka(hsic.gaussian_gram(X, "dim"), hsic.gaussian_gram(Z, "dim"), unbiased=False)))
        ours.append(float(hsic.nhsic(hsic.gaussian_gram(X), hsic.gaussian_gram(Z))))
        ours_dim.append(float(hsic.nhsic(hsic.gaussian_gram(X, "dim"), hsic.gaussian_gram(Z, "dim"))))
    assert 0.28 < np.mean(biased) < 0.40
    assert abs(np.mean(ours)) < 0.01 and max(abs(v) for v in ours) < 0.03
    assert abs(np.mean(ours_dim)) < 0.01


def test_batched_over_layers_equals_one_by_one():
    X = _data(40, 5)
    reps = [torch.relu(X @ _data(5, w, seed=w)) for w in (3, 3, 7)]
    Kx = hsic.gaussian_gram(X)
    Kt = hsic.layer_grams(reps)
    assert Kt.shape == (3, 40, 40)
    batched = hsic.nhsic(Kt, Kx)
    for i, r in enumerate(reps):
        _close(Kt[i], hsic.gaussian_gram(r))
        assert float(batched[i]) == pytest.approx(float(hsic.nhsic(hsic.gaussian_gram(r), Kx)), abs=1e-12)
    equal = hsic.layer_grams(reps[:2])  # equal widths go through the stacked path
    _close(equal, Kt[:2])


def test_permutation_null_centres_on_zero_and_rejects_dependence():
    X = _data(80, 4, seed=8)
    Z = X[:, :2] ** 2 + 0.1 * _data(80, 2, seed=9)
    K, L = hsic.gaussian_gram(X), hsic.gaussian_gram(Z)
    null = hsic.permutation_null(K, L, hsic.nhsic, n_perm=120, seed=0, chunk=50)
    assert null.shape == (120,)
    assert abs(float(null.mean())) < 0.01
    observed = float(hsic.nhsic(K, L))
    assert observed > float(null.max())
    assert hsic.permutation_pvalue(observed, null) == pytest.approx(1 / 121)
    perms = torch.stack([torch.randperm(80) for _ in range(3)])
    P = hsic.permute_gram(L, perms)
    _close(P[1], L[perms[1]][:, perms[1]])


def test_unbiased_hsic_needs_four_examples():
    K = torch.eye(3, dtype=DT)
    with pytest.raises(ValueError):
        hsic.hsic_unbiased(K, K)


def test_one_sided_centring_gives_the_two_sided_value():
    """K H and H K H share the block structure that makes tr(R_K R_L) equal: the official code's one-sided centring
    is not a difference from the HSIC bottleneck's two-sided one (and a mutation between them is equivalent)."""
    X, Z = _data(9, 3, seed=10), _data(9, 2, seed=11)
    K, L = hsic.paper_gram(X).numpy(), hsic.paper_gram(Z).numpy()
    ref = nocco_reference(K, L)
    got = float(hsic.nhsic_paper(torch.from_numpy(K), torch.from_numpy(L)))
    assert got == pytest.approx(ref, rel=1e-7)


def test_nocco_with_the_median_kernel_matches_a_numpy_reference():
    """The data-scaled instrument: NOCCO tr(R_K R_L) of the Gaussian Gram matrix at the median distance and the label
    kernel, against scipy distances, a two-sided centring and an explicit inverse; scale invariant, unlike the
    official defaults; with itself about the rank of the centred label kernel (classes - 1)."""
    X = _data(7, 3, seed=12)  # 21 distances: the median is one of them
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    dist = pdist(X.numpy())
    K = np.exp(-(squareform(dist) ** 2) / (2 * np.median(dist) ** 2))
    Ly = (y.numpy()[:, None] == y.numpy()[None, :]).astype(float)
    ref = nocco_reference(K, Ly)
    got = float(hsic.nocco(hsic.gaussian_gram(X), hsic.label_gram(y)))
    assert got == pytest.approx(ref, rel=1e-7)
    assert float(hsic.nocco(hsic.gaussian_gram(10 * X), hsic.label_gram(y))) == pytest.approx(ref, rel=1e-7)
    assert float(hsic.nocco(hsic.label_gram(y), hsic.label_gram(y))) == pytest.approx(2.0, abs=1e-3)
    # the official defaults are the same estimator on another kernel
    Kp, Lp = hsic.paper_gram(X), hsic.paper_gram(torch.nn.functional.one_hot(y).to(DT))
    assert float(hsic.nhsic_paper(Kp, Lp)) == pytest.approx(nocco_reference(Kp.numpy(), Lp.numpy()), rel=1e-6)
