"""Tests of lib.spn against brute-force enumeration, closed forms and scipy (chapter bayesian-spn)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import betaln, logsumexp

from lib import spn as S
from lib.checks import threshold

# The one-sum model: D = 3, N = 4, two children at the (only) sum node: 2^4 = 16 joint states.
X_TINY = S.TINY_DATA
# The internal-sums model: D = 4, N = 2, 128 trees per datum: 16 384 joint states.
X_INTERNAL = S.INTERNAL_DATA


@pytest.fixture(scope="module")
def tiny():
    spn = S.build_rat_spn(3, 1, 2, 1, 1, seed=0)
    hyper = S.Hyper.fixed(spn, alpha=2.0)
    trees, p = S.exact_posterior(spn, X_TINY, hyper)
    return spn, hyper, trees, p


@pytest.fixture(scope="module")
def small():
    return S.build_rat_spn(4, 2, 2, 2, 2, seed=1)


def _all_x(d: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=d)), dtype=np.uint8)


def _tree_prob(spn, params, tree, x) -> float:
    """p(x, tree | W, theta) = prod of chosen weights times leaf likelihoods (independent of the upward pass)."""
    logp = sum(np.log(params.weights[spn.sum_ptr[s] + c]) for s, c in enumerate(tree) if c >= 0)
    for leaf in S._tree_leaves(spn, tree):
        for slot in range(spn.leaf_ptr[leaf], spn.leaf_ptr[leaf + 1]):
            th = params.theta[slot]
            logp += np.log(th) if x[spn.leaf_vars[slot]] else np.log1p(-th)
    return logp


def test_structure_is_complete_and_decomposable(small):
    scopes = {}
    for reg in small.regions:
        if reg.kind == "sum":
            for a, b in reg.parts:
                left, right = set(small.regions[a].scope), set(small.regions[b].scope)
                assert not left & right and left | right == set(reg.scope)
        scopes[id(reg)] = reg.scope
    assert small.n_sums == 1 + 2 * 2 * 2 and small.sum_ptr[-1] == small.n_edges


def test_joint_sums_to_one_and_equals_sum_over_trees(small):
    params = S.random_params(small, S.Hyper.fixed(small, 0.7), np.random.default_rng(0))
    xs = _all_x(4)
    ll = S.log_likelihood(small, params, xs).numpy()
    assert np.isclose(np.exp(ll).sum(), 1.0, atol=1e-10)
    trees = S.enumerate_trees(small)
    brute = [logsumexp([_tree_prob(small, params, t, x) for t in trees]) for x in xs]
    np.testing.assert_allclose(ll, brute, atol=1e-9)


def test_marginals_agree_with_enumeration(small):
    params = S.random_params(small, S.Hyper.fixed(small, 1.0), np.random.default_rng(3))
    xs = _all_x(4)
    p = np.exp(S.log_likelihood(small, params, xs).numpy())
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (6, 4)).astype(np.uint8)
    obs = rng.integers(0, 2, (6, 4)).astype(np.uint8)
    got = S.log_marginal(small, params, X, obs).numpy()
    want = [np.log(p[((xs == x) | (o == 0)).all(1)].sum()) for x, o in zip(X, obs)]
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_collapsed_joint_equals_prior_mean_spn(small):
    """For one datum, sum_z p(x, z | alpha, a, b) is the SPN at the prior means (multilinearity)."""
    hyper = S.Hyper(np.random.default_rng(0).uniform(0.3, 2, small.n_edges), np.full(4, 0.6), np.full(4, 1.7))
    x = np.array([[1, 0, 1, 1]], dtype=np.uint8)
    trees = S.enumerate_trees(small)
    joint = [S.log_joint(small, S.counts_from_trees(small, x, t[None]), hyper) for t in trees]
    mean = S.Params(hyper.alpha_edge / hyper.alpha_sum(small)[small.edge_sum], np.full(len(small.leaf_vars), 0.6 / 2.3))
    assert np.isclose(logsumexp(joint), S.log_likelihood(small, mean, x).item(), atol=1e-10)


def test_downward_step_samples_exact_tree_conditional(small):
    """Bottom-up Z-step: trees drawn for 20k copies of one datum follow p(z | x, W, theta)."""
    params = S.random_params(small, S.Hyper.fixed(small, 1.0), np.random.default_rng(5))
    x = np.array([1, 1, 0, 1], dtype=np.uint8)
    trees = S.enumerate_trees(small)
    lp = np.array([_tree_prob(small, params, t, x) for t in trees])
    want = np.exp(lp - logsumexp(lp))
    Xr = torch.as_tensor(np.tile(x, (20_000, 1)))
    arrays = S._region_arrays(small, params, "cpu", torch.float64)
    z, _ = S._downward(small, Xr, S._upward(small, Xr, arrays), arrays, torch.Generator().manual_seed(0))
    emp = np.bincount(S.tree_codes(small, trees, z), minlength=len(trees)) / len(z)
    assert 0.5 * np.abs(emp - want).sum() < 0.03


def test_numba_bottom_up_counts_and_edge_scans(small):
    X = np.random.default_rng(0).integers(0, 2, (50, 4)).astype(np.uint8)
    st = S.init_state(small, X, seed=0)
    st, stats = S.bottom_up_gibbs(small, X, st, S.Hyper.fixed(small, 0.5), 3, seed=1)
    fresh = S.counts_from_trees(small, X, st.z)
    for name in ("n_edge", "n_sum", "ones", "m"):
        np.testing.assert_array_equal(getattr(st, name), getattr(fresh, name))
    # per datum: upward 40 sum edges + 2 * 24 product edges + 16 leaf variables; downward, at each of the
    # tree's 3 sums, the scan up to the chosen child (1..8 at the root, 1..4 below) + 2 child edges;
    # adding counts: 3 sums + 4 variables
    lo, hi = 40 + 48 + 16 + 9 + 7, 40 + 48 + 16 + 22 + 7
    assert 50 * lo <= stats.visits_per_sweep <= 50 * hi


def test_numba_bottom_up_one_datum_matches_enumeration(small):
    """One datum, many sweeps: the chain's law over the datum's tree is p(z | x) as enumeration gives it.

    With leaf priors tied per variable, the leaf factor of one datum is the same for every tree, so this
    checks the Dirichlet step and the bookkeeping of the compiled sampler (the chains above check the rest).
    """
    x = np.array([[1, 0, 1, 1]], dtype=np.uint8)
    hyper = S.Hyper.fixed(small, 0.7)
    trees, p = S.exact_posterior(small, x, hyper)
    zs, _ = S.trace_trees("bottom-up", small, x, hyper, 40_000, seed=3)
    emp = np.bincount(S.tree_codes(small, trees, zs[100:, 0]), minlength=len(trees)) / len(zs[100:])
    assert 0.5 * np.abs(emp - p).sum() < 0.03


def test_top_down_counts_stay_consistent(small):
    X = np.random.default_rng(0).integers(0, 2, (50, 4)).astype(np.uint8)
    hyper = S.Hyper.fixed(small, 0.5)
    st = S.init_state(small, X, seed=0)
    stats = S.top_down_gibbs(small, X, st, hyper, 5, seed=1)
    fresh = S.counts_from_trees(small, X, st.z)
    for name in ("n_edge", "n_sum", "ones", "m"):
        np.testing.assert_array_equal(getattr(st, name), getattr(fresh, name))
    # edge scans per datum, counted by hand for this network (a tree has 3 sums and D = 4 leaf variables;
    # the root has 8 children, the other sums 4): current tree 3 * 3, proposal sum_s (scan_s + 2) with
    # 1 <= scan_s <= C_s, leaf reads 2 * 4, count removal 3 + 2 * 4, adding back 3
    lo, hi = 9 + 9 + 8 + 11 + 3, 9 + (8 + 4 + 4 + 6) + 8 + 11 + 3
    assert 50 * lo < stats.visits_per_sweep < 50 * hi
    assert 0 < stats.acceptance <= 1


def test_bottom_up_edge_scans_match_hand_count(small):
    X = np.random.default_rng(0).integers(0, 2, (50, 4)).astype(np.uint8)
    st = S.init_state(small, X, seed=0)
    _, stats = S.bottom_up_gibbs(small, X, st, S.Hyper.fixed(small, 0.5), 2, seed=1, impl="torch")
    # upward: 40 sum edges + 2 * 24 product edges + 16 leaf variables; downward: 3 * (8 + 4 + 4) along the
    # tree's three sums; adding counts: 3 sums + 4 variables
    assert stats.visits_per_sweep == 50 * (40 + 48 + 16 + 48 + 3 + 4)


def _chain_tv(spn, hyper, trees, p, X, sweeps, seed, bug=S._BUG_NONE, kind="top-down", burn=100):
    zs, _ = S.trace_trees(kind, spn, X, hyper, sweeps, seed=seed, bug=bug)
    return S.joint_tv(spn, trees, p, zs[burn:])


@pytest.fixture(scope="module")
def internal():
    """The internal-sums model: 9 sum nodes, a tree visits 3 (root over 8 products, two sums over 4 each)."""
    spn = S.build_rat_spn(*S.EXACT_MODELS["internal sums"][:5], seed=0)
    hyper = S.Hyper.fixed(spn, alpha=0.2)
    trees, p = S.exact_posterior(spn, X_INTERNAL, hyper)
    return spn, hyper, trees, p


def test_internal_model_has_choices_below_the_root(internal):
    spn, _, trees, p = internal
    assert spn.n_sums == 9 and len(trees) == 128 and len(p) == 128**2
    assert ((trees[:, 1:] >= 0).sum(1) == 2).all()  # every tree visits two sums below the root
    assert (np.diff(spn.sum_ptr)[1:] == 4).all()


# Thresholds of the chain tests: fixed seeds, so each test is deterministic. One-sum model, 50 000 sweeps:
# correct samplers 0.006-0.026 over seeds 0-7; bugs 0.14 and above; a proposal from the prior at every sum
# node (a mutation of the kernel) 0.07-0.09. Internal-sums model, 20 000 sweeps: correct 0.320-0.330 (the
# i.i.d. floor is 0.31 over 16 384 states); bugs 0.365 and above; counts ignored below the root 0.52-0.53.


@pytest.mark.parametrize("kind", ["top-down", "bottom-up"])
def test_samplers_match_exact_posterior_one_sum(tiny, kind):
    spn, hyper, trees, p = tiny
    assert _chain_tv(spn, hyper, trees, p, X_TINY, 50_000, seed=0, kind=kind) < 0.04


@pytest.mark.parametrize("kind", ["top-down", "bottom-up"])
def test_samplers_match_exact_posterior_internal_sums(internal, kind):
    spn, hyper, trees, p = internal
    assert _chain_tv(spn, hyper, trees, p, X_INTERNAL, 20_000, seed=0, kind=kind) < 0.345


@pytest.mark.parametrize("bug", [S._BUG_ALWAYS_ACCEPT, S._BUG_KEEP_OWN_COUNTS])
def test_injected_top_down_bugs_are_caught(tiny, internal, bug):
    for (spn, hyper, trees, p), X, sweeps, cut in ((tiny, X_TINY, 50_000, 0.1), (internal, X_INTERNAL, 20_000, 0.355)):
        assert _chain_tv(spn, hyper, trees, p, X, sweeps, seed=0, bug=bug) > cut


def test_proposal_counts_below_the_root_matter(tiny, internal):
    """Ignoring the counts below the root is invisible on the one-sum model and caught with internal sums."""
    spn, hyper, trees, p = tiny
    assert _chain_tv(spn, hyper, trees, p, X_TINY, 50_000, seed=0, bug=S._BUG_PRIOR_BELOW_ROOT) < 0.04
    spn, hyper, trees, p = internal
    assert _chain_tv(spn, hyper, trees, p, X_INTERNAL, 20_000, seed=0, bug=S._BUG_PRIOR_BELOW_ROOT) > 0.45


def test_injected_bottom_up_bug_is_caught(tiny):
    spn, hyper, trees, p = tiny
    assert _chain_tv(spn, hyper, trees, p, X_TINY, 20_000, seed=0, kind="bottom-up", bug=S._BUG_ALWAYS_ACCEPT) > 0.3


def test_torch_conjugate_step_has_the_posterior_means(small):
    """The torch bottom-up's W, theta | Z step: means (alpha + n_sc)/(alpha_s + n_s) and (a + k)/(m + a + b).

    With its downward step (tested against enumeration above), this makes the torch sampler exact.
    """
    X = np.random.default_rng(1).integers(0, 2, (30, 4)).astype(np.uint8)
    hyper = S.Hyper.fixed(small, 0.8, 0.5, 1.5)
    st = S.init_state(small, X, seed=2)
    gen = torch.Generator().manual_seed(0)
    draws = [S.sample_params(small, st, hyper, gen) for _ in range(4000)]
    mean = S.posterior_mean_params(small, st, hyper)
    np.testing.assert_allclose(np.mean([d.weights for d in draws], 0), mean.weights, atol=0.02)
    np.testing.assert_allclose(np.mean([d.theta for d in draws], 0), mean.theta, atol=0.02)


def test_exact_posterior_matches_direct_formula(tiny):
    spn, hyper, trees, p = tiny
    # state (t_1..t_4) = (0, 1, 0, 0): the Dirichlet-multinomial and Beta-Bernoulli terms written out by hand
    st = S.counts_from_trees(spn, X_TINY, trees[[0, 1, 0, 0]])
    assert st.n_edge.tolist() == [3, 1]
    want = np.log(2 * 3 * 4 * 2) - np.log(4 * 5 * 6 * 7)  # alpha = 2 per child: (2*3*4)(2) / (4*5*6*7)
    for slot in range(len(spn.leaf_vars)):
        k, m = st.ones[slot], st.m[np.searchsorted(spn.leaf_ptr, slot, side="right") - 1]
        want += betaln(0.5 + k, 0.5 + m - k) - betaln(0.5, 0.5)
    assert np.isclose(S.log_joint(spn, st, hyper), want)
    every = [
        S.log_joint(spn, S.counts_from_trees(spn, X_TINY, trees[list(t)]), hyper)
        for t in itertools.product(range(2), repeat=4)
    ]
    np.testing.assert_allclose(p, np.exp(np.array(every) - logsumexp(every)), rtol=1e-10)


def test_iid_floor_is_small_for_many_samples():
    p = np.full(16, 1 / 16)
    assert S.iid_tv_floor(p, 100_000, np.random.default_rng(0)) < 0.01


def test_leaf_tuning_maximises_polya_likelihood():
    rng = np.random.default_rng(0)
    m = rng.integers(1, 30, 40).astype(float)
    k = rng.binomial(m.astype(int), rng.beta(2.0, 5.0, 40)).astype(float)
    a, b = S._polya_mle(k[None], m[None], np.ones(1), np.ones(1), np.ones((1, 40)))

    def nll(v):
        aa, bb = np.exp(v)
        return -(betaln(aa + k, bb + m - k) - betaln(aa, bb)).sum()

    best = minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}).x
    np.testing.assert_allclose([a[0], b[0]], np.exp(best), rtol=2e-3)


def test_tuned_alpha_raises_collapsed_likelihood(small):
    X = np.random.default_rng(2).integers(0, 2, (200, 4)).astype(np.uint8)
    hyper = S.Hyper.fixed(small, 20.0, 3.0, 3.0)
    st = S.init_state(small, X, seed=0)
    S.top_down_gibbs(small, X, st, hyper, 20, seed=0)
    tuned = S.tune_hyperparameters(small, st, hyper)
    assert S.log_joint(small, st, tuned) > S.log_joint(small, st, hyper)
    assert tuned.a_var.shape == (4,) and np.unique(tuned.alpha_edge).size == 1


def test_bad_input_raises(small):
    with pytest.raises(ValueError):
        S.build_rat_spn(1, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        S.build_rat_spn(4, 0, 1, 1, 1)
    params = S.random_params(small, S.Hyper.fixed(small), np.random.default_rng(0))
    with pytest.raises(ValueError):
        S.log_likelihood(small, params, np.zeros((3, 5)))
    with pytest.raises(ValueError):
        S.log_likelihood(small, params, np.full((3, 4), 2))
    with pytest.raises(ValueError):
        S.Hyper.fixed(small, alpha=0.0)
    st = S.init_state(small, np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError):
        S.top_down_gibbs(small, np.zeros((4, 4), np.uint8), st, S.Hyper.fixed(small))
    with pytest.raises(ValueError):
        S.run_sampler("sideways", small, np.zeros((3, 4), np.uint8), S.Hyper.fixed(small), state=st, sweeps=1)
    with pytest.raises(ValueError):
        S.bottom_up_gibbs(small, np.zeros((3, 4), np.uint8), st, S.Hyper.fixed(small), impl="jax")
    with pytest.raises(ValueError):
        S.trace_trees("sideways", small, np.zeros((3, 4), np.uint8), S.Hyper.fixed(small), 2)


def test_run_sampler_reads_horizons_and_sweep_marks(small):
    X = np.random.default_rng(4).integers(0, 2, (40, 4)).astype(np.uint8)
    hyper = S.Hyper.fixed(small, 1.0)
    st = S.init_state(small, X, seed=0)
    run = S.run_sampler("top-down", small, X, hyper, state=st, sweeps=12, sweep_marks=(3, 7), n_keep=2, seed=1)
    assert sorted(run["at_sweeps"]) == [3, 7] and all(len(v) == 2 for v in run["at_sweeps"].values())
    assert run["states"][0].z.shape == (0, small.n_sums)  # counts only
    # each kept state's counts are those of some tree assignment: n_s of the root is N
    assert all(k.n_sum[0] == len(X) for k in run["states"])
    h = (1e-9, 1e9)
    run = S.run_sampler("bottom-up", small, X, hyper, state=st, sweeps=4, horizons=h, seed=1)
    assert run["sweeps_at"] == {1e-9: 0, 1e9: 4} and run["at_seconds"][1e-9] == []
    assert np.all(np.diff(run["seconds"]) >= 0) and len(run["log_joint"]) == 5


# Knock-out tests: each claim's check at tiny size, with the mechanism it names and without it. A knocked-out
# sampler is compared at the threshold the quick profile derives (lib.checks.threshold) from a study of the
# correct sampler over 8 seeds at this size, as the chapter's check is in the quick profile.


def _derived(comparison: str, null: float, values: list[float]) -> float:
    study = {str(s): v for s, v in enumerate(values)}
    return threshold("claim", comparison, null, study).value


@pytest.mark.parametrize("bug", [S._BUG_NONE, S._BUG_ALWAYS_ACCEPT, S._BUG_KEEP_OWN_COUNTS])
def test_knockout_exactness_needs_acceptance_and_removed_counts(tiny, bug):
    # "top-down sampler matches the exact posterior (TV)", null: the TV of the always-accept arm
    spn, hyper, trees, p = tiny
    null = _chain_tv(spn, hyper, trees, p, X_TINY, 5_000, seed=99, bug=S._BUG_ALWAYS_ACCEPT)
    limit = _derived("≤", null, [_chain_tv(spn, hyper, trees, p, X_TINY, 5_000, seed=s) for s in range(8)])
    assert limit < null
    tv = _chain_tv(spn, hyper, trees, p, X_TINY, 5_000, seed=8, bug=bug)
    assert (tv <= limit) == (bug == S._BUG_NONE)


@pytest.mark.parametrize("bug", [S._BUG_NONE, S._BUG_PRIOR_BELOW_ROOT])
def test_knockout_proposal_needs_the_counts_below_the_root(internal, bug):
    # "the proposal needs the counts below the root (TV without them minus with them)", null 0
    spn, hyper, trees, p = internal

    def tv(seed, b=S._BUG_NONE):
        return _chain_tv(spn, hyper, trees, p, X_INTERNAL, 10_000, seed=seed, bug=b)

    study = [tv(100 + s, S._BUG_PRIOR_BELOW_ROOT) - tv(s) for s in range(8)]
    limit = _derived("≥", 0.0, study)
    assert limit > 0.0
    value = tv(108, S._BUG_PRIOR_BELOW_ROOT) - tv(8, bug)
    assert (value >= limit) == (bug == S._BUG_NONE)


# Figures: each draws the values it is given, on the expected panels.


def test_plot_exactness_draws_every_arms_tv():
    import matplotlib.pyplot as plt

    def model(floor):
        arms = {arm: {"p": np.full(4, 0.25), "tv": 0.1 * (k + 1)} for k, arm in enumerate(S.ARMS)}
        arms["top-down"]["floor"] = floor
        return {"n_states": 4, "p_exact": np.array([0.1, 0.2, 0.3, 0.4]), **arms}

    one, internal = model(0.05), model(0.07)
    fig = S.plot_exactness({"one sum node": one, "internal sums": internal})
    a1, a2 = fig.axes
    assert [b.get_height() for b in a1.patches] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert len(a1.lines) == len(S.ARMS)
    heights = [b.get_height() for b in a2.patches]
    assert heights == pytest.approx([0.1 * (k + 1) for k in range(len(S.ARMS))] * 2)
    assert [t.get_text() for t in a2.get_xticklabels()] == list(S.ARM_LABELS)
    plt.close(fig)


def test_plot_speed_draws_the_ratios_it_is_given():
    import matplotlib.pyplot as plt

    rows = [
        {
            "nodes": n,
            "bu_visits": 10.0 * n,
            "td_visits": n,
            "bu_seconds": 2.0,
            "td_seconds": 1.0,
            "bu_seconds_torch": 3.0,
        }
        for n in (10, 100)
    ]
    scan, time_, torch_ = np.array([10.0, 20.0]), np.array([2.0, 4.0]), np.array([3.0, 5.0])
    fig = S.plot_speed(rows, scan, time_, torch_)
    a1, a2, a3 = fig.axes
    assert list(a1.lines[0].get_ydata()) == [100.0, 1000.0]
    assert len(a2.lines) == 3
    assert [list(line.get_ydata()) for line in a3.lines[:3]] == [[10.0, 20.0], [2.0, 4.0], [3.0, 5.0]]
    assert a3.get_yscale() == "log"
    plt.close(fig)


def test_plot_predictive_draws_the_test_ll_at_each_horizon():
    import matplotlib.pyplot as plt

    def arm(offset):
        return {
            "seconds": np.array([0.5, 1.0, 2.0]),
            "log_joint": np.array([-3000.0, -2000.0, -1000.0]),
            "test_ll_at": {1: -7.0 + offset, 2: -6.5 + offset},
            "sweeps_at": {1: 3, 2: 6},
        }

    result = {"bottom-up": arm(0.0), "top-down": arm(0.1), "top-down equal sweeps": {1: -7.2, 2: -6.8}}
    fig = S.plot_predictive(result, (1, 2))
    a1, a2, a3 = fig.axes
    assert list(a1.lines[0].get_ydata()) == [-3.0, -2.0, -1.0]
    assert list(a2.lines[1].get_ydata()) == pytest.approx([-6.9, -6.4])
    assert list(a3.lines[0].get_xdata()) == [3, 6] and list(a3.lines[1].get_ydata()) == [-7.2, -6.8]
    assert a2.get_xscale() == a3.get_xscale() == "log"
    plt.close(fig)


def test_plot_tuning_draws_fixed_and_tuned_per_prior():
    import matplotlib.pyplot as plt

    values = {"default, fixed": -6.0, "default, tuned": -6.01, "poor, fixed": -7.0, "poor, tuned": -6.2}
    results = {arm: {"test_ll": v} for arm, v in values.items()}
    fig = S.plot_tuning(results)
    (ax,) = fig.axes
    assert [list(line.get_ydata()) for line in ax.lines] == [[-6.0, -6.01], [-7.0, -6.2]]
    plt.close(fig)
