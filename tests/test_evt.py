"""Tests of lib.evt: generalized Pareto fits against scipy and truth; POT tail probabilities."""

import numpy as np
import pytest
from scipy import stats

from lib.evt import (
    fit_pot,
    gpd_fit_exponential,
    gpd_fit_mle,
    gpd_fit_scipy,
    gpd_loglik,
    gpd_survival,
    pot_from_exceedances,
)


@pytest.mark.parametrize("xi", [-0.3, 0.0, 0.2, 0.5])
def test_gpd_shape_recovered_at_2000_samples(xi):
    y = stats.genpareto.rvs(xi, scale=1.5, size=(4, 2000), random_state=np.random.default_rng(1))
    xi_v, sigma_v = gpd_fit_mle(y)
    xi_s, sigma_s = gpd_fit_scipy(y)
    assert np.all(np.abs(xi_v - xi) < 0.1)
    assert np.all(np.abs(xi_s - xi) < 0.1)
    np.testing.assert_allclose(xi_v, xi_s, atol=1e-3)
    np.testing.assert_allclose(sigma_v, sigma_s, rtol=1e-3)


def test_vectorised_mle_likelihood_at_least_scipy_on_small_samples():
    rng = np.random.default_rng(2)
    y = stats.genpareto.rvs(0.2, scale=1.0, size=(40, 30), random_state=rng)
    a, b = gpd_fit_mle(y)
    c, d = gpd_fit_scipy(y)
    ll = lambda xi, s: stats.genpareto.logpdf(y, xi[:, None], scale=s[:, None]).sum(1)  # noqa: E731
    assert np.all(ll(a, b) >= ll(c, d) - 1e-6)
    np.testing.assert_allclose(gpd_loglik(y, a, b), ll(a, b), rtol=1e-10)
    np.testing.assert_allclose(gpd_loglik(y, np.zeros(40), b), ll(np.zeros(40), b), rtol=1e-10)
    assert gpd_loglik(np.array([[1.0, 5.0]]), np.array([-0.5]), np.array([1.0]))[0] == -np.inf


def test_very_heavy_tails_over_many_orders_of_magnitude():
    y = stats.genpareto.rvs(4.0, scale=1e-6, size=(10, 45), random_state=np.random.default_rng(6))
    a, b = gpd_fit_mle(y)
    c, d = gpd_fit_scipy(y)
    assert np.all(gpd_loglik(y, a, b) >= gpd_loglik(y, c, d) - 1e-6 * np.abs(gpd_loglik(y, c, d)))
    np.testing.assert_allclose(a, c, atol=1e-3)


def test_boundary_shape_minus_one_puts_the_endpoint_at_the_largest_excess():
    """Tiny samples: where the constrained MLE is at xi = -1 (uniform on [0, sigma]), sigma is the largest
    excess, and the fit's likelihood is at least that of a brute-force grid over xi >= -1 and sigma."""
    y = np.random.default_rng(7).uniform(0.0, 1.0, size=(8, 6))
    xi, sigma = gpd_fit_mle(y)
    at_boundary = xi <= -1.0
    assert at_boundary.sum() >= 4 and np.all(xi >= -1.0)
    np.testing.assert_array_equal(sigma[at_boundary], y[at_boundary].max(1))
    ll = stats.genpareto.logpdf(y, xi[:, None], scale=sigma[:, None]).sum(1)
    np.testing.assert_allclose(gpd_loglik(y, xi, sigma), ll, rtol=1e-12)
    xi_grid = np.linspace(-1.0, 1.0, 81)[:, None, None, None]
    sigma_grid = y.max(1)[None, None, :, None] * 10.0 ** np.linspace(-2, 2, 161)[None, :, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        brute = stats.genpareto.logpdf(y[None, None], xi_grid, scale=sigma_grid).sum(-1)
    assert np.all(ll >= np.nanmax(brute, axis=(0, 1)) - 1e-9)


def test_gpd_loglik_at_shape_minus_one_includes_the_endpoint():
    y = np.array([[0.2, 0.5, 2.0]])
    np.testing.assert_allclose(gpd_loglik(y, np.array([-1.0]), np.array([2.0])), [-3 * np.log(2.0)])
    assert gpd_loglik(y, np.array([-1.0]), np.array([1.9]))[0] == -np.inf
    assert gpd_loglik(y, np.array([-0.5]), np.array([1.0]))[0] == -np.inf  # endpoint 2 has density 0


def test_ragged_rows_with_mask_match_separate_fits():
    rng = np.random.default_rng(3)
    rows = [stats.expon.rvs(size=n, random_state=rng) for n in (50, 80, 120)]
    Y = np.full((3, 120), np.nan)
    for i, r in enumerate(rows):
        Y[i, : r.size] = r
    xi, sigma = gpd_fit_mle(Y)
    xi_c, sigma_c = gpd_fit_mle(Y, chunk=1)  # one row per block
    np.testing.assert_allclose(xi_c, xi, atol=1e-6)
    for i, r in enumerate(rows):
        xi1, sigma1 = gpd_fit_mle(r)
        assert xi[i] == pytest.approx(xi1[0], abs=1e-6)
        assert sigma[i] == pytest.approx(sigma1[0], rel=1e-6)


def test_gpd_survival_matches_scipy_including_finite_endpoint():
    x = np.linspace(0, 6, 31)
    for xi in (-0.5, 0.0, 0.3):
        np.testing.assert_allclose(gpd_survival(x, xi, 2.0), stats.genpareto.sf(x, xi, scale=2.0), atol=1e-12)
    assert gpd_survival(5.0, -0.5, 2.0) == 0.0  # beyond the endpoint 4


@pytest.mark.parametrize(
    "dist", [stats.expon(), stats.t(df=4), stats.lognorm(s=0.6)], ids=["exponential", "student-t", "lognormal"]
)
def test_pot_tail_probability_of_known_distribution(dist):
    X = dist.rvs(size=(40000, 1), random_state=np.random.default_rng(4))
    pot = fit_pot(X, quantile=0.9)
    for q in (0.99, 0.999):
        x = dist.ppf(q)
        assert pot.tail_probability(np.array([x]))[0] == pytest.approx(1 - q, rel=0.25)


def test_degenerate_filters_constant_few_exceedances_and_endpoint():
    rng = np.random.default_rng(5)
    N = 200
    X = np.column_stack(
        [
            np.zeros(N),  # constant (a dead filter)
            np.r_[np.zeros(N - 3), [1.0, 2.0, 3.0]],  # 3 exceedances: too few to fit
            rng.uniform(0, 1, N),  # finite endpoint (xi = -1)
            rng.exponential(1.0, N),  # ordinary
        ]
    )
    pot = fit_pot(X, quantile=0.9, min_exceed=5)
    assert pot.fitted.tolist() == [False, False, True, True]
    assert pot.xi[2] < -0.5
    p = pot.tail_probability(np.array([[0.0, 0.0, 0.5, 0.1], [1.0, 2.5, 1.5, 4.0]]))
    assert np.all(p[0] == 1.0)  # at or below the threshold: not in the tail
    assert p[1, 0] == pytest.approx(1 / (N + 1))  # unfitted: smoothed empirical, nothing above
    assert p[1, 1] == pytest.approx(2 / (N + 1))  # one reference value (3.0) above 2.5
    assert p[1, 2] == 0.0  # beyond the fitted finite endpoint
    assert 0 < p[1, 3] < 0.05  # exact: exp(-4) = 0.018


def test_errors_are_clear():
    with pytest.raises(ValueError, match="quantile"):
        fit_pot(np.ones((10, 2)), quantile=1.0)
    with pytest.raises(ValueError, match="samples"):
        fit_pot(np.ones(10))
    with pytest.raises(ValueError, match=">= 0"):
        gpd_fit_mle(np.array([[-1.0, 2.0]]))
    with pytest.raises(ValueError, match="method"):
        pot_from_exceedances(np.zeros(1), np.ones((1, 5)), 50, method="pwm")
    pot = fit_pot(np.random.default_rng(0).exponential(size=(100, 3)))
    with pytest.raises(ValueError, match="variables"):
        pot.tail_probability(np.ones(2))
    assert np.isnan(gpd_fit_mle(np.array([[1.0, 1.0, 1.0]]))[0][0])


def test_exponential_knockout_is_the_exponential_mle():
    """The knock-out of the GPD's shape: xi = 0 and sigma = mean excess, scipy's exponential fit."""
    y = stats.genpareto.rvs(0.4, scale=2.0, size=(5, 60), random_state=np.random.default_rng(8))
    xi, sigma = gpd_fit_exponential(y)
    assert np.all(xi == 0.0)
    np.testing.assert_allclose(sigma, [stats.expon.fit(r, floc=0.0)[1] for r in y], rtol=1e-12)
    xi, sigma = gpd_fit_exponential(np.array([[1.0, 1.0, 1.0], [1.0, 2.0, np.nan]]))
    assert np.isnan(xi[0]) and sigma[1] == 1.5
    pot = fit_pot(y.T, quantile=0.5, method="exponential")
    assert np.all(pot.xi[pot.fitted] == 0.0)


def test_normal_knockout_is_the_normal_tail_beyond_the_threshold():
    """method="normal": P(X > s) = (n/N) P_N(X > s) / P_N(X > T) with the column's mean and sd."""
    rng = np.random.default_rng(9)
    X = rng.standard_t(3, size=(400, 4)) * np.array([1.0, 2.0, 0.5, 3.0]) + 1.0
    pot = fit_pot(X, quantile=0.9, method="normal")
    m, sd = X.mean(0), X.std(0, ddof=1)
    s = np.array([[3.0, 6.0, 1.5, 9.0], [0.0, 0.0, 0.0, 0.0]])
    want = pot.n_exceed / 400 * stats.norm.sf(s[0], m, sd) / stats.norm.sf(pot.threshold, m, sd)
    np.testing.assert_allclose(pot.tail_probability(s)[0], np.where(s[0] > pot.threshold, want, 1.0), rtol=1e-10)
    assert np.all(pot.tail_probability(s)[1] == 1.0)
    with pytest.raises(ValueError, match="normal"):
        pot_from_exceedances(np.zeros(1), np.ones((1, 5)), 50, method="normal")
