"""Tests of lib.token_selection: the data model, the attention model, GD in two forms, the hand-built solution."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import token_selection  # noqa: E402


def test_data_statistics_token_means_and_noise():
    n, d, mu = 400, 30, 4.0
    data = token_selection.sample(n, d, mu, T=6, rho=0.25, eta=0.0, seed=1, dtype=torch.float64)
    mu_p, mu_m = token_selection.signals(d, mu, torch.float64)
    pos, neg = data.y_clean > 0, data.y_clean < 0
    se = 4 / math.sqrt(n / 2)  # four standard errors of a mean of n/2 unit-variance coordinates
    expected = {0: (mu_p, mu_m), 1: (0.25 * mu_p, 0.25 * mu_m), 2: (0.25 * mu_m, 0.25 * mu_p), 4: (0 * mu_p, 0 * mu_m)}
    for t, (m_pos, m_neg) in expected.items():
        assert (data.X[pos, t].mean(0) - m_pos).abs().max() < se
        assert (data.X[neg, t].mean(0) - m_neg).abs().max() < se
    assert abs(float(data.noise.var()) - 1.0) < 0.02
    assert torch.equal(data.X - data.noise, data.X - data.noise)  # the signal part is exactly the coefficients
    signal = (data.X - data.noise)[..., 2:]
    assert float(signal.abs().max()) == 0.0


def test_label_flips_are_balanced_and_test_data_use_their_own_stream():
    data = token_selection.sample(20, 50, 3.0, eta=0.2, seed=5)
    assert int(data.noisy.sum()) == token_selection.n_flipped(20, 0.2) == 4
    assert int((data.noisy & (data.y_clean > 0)).sum()) == int((data.noisy & (data.y_clean < 0)).sum()) == 2
    assert torch.equal(data.y, torch.where(data.noisy, -data.y_clean, data.y_clean))
    test = token_selection.sample(20, 50, 3.0, eta=0.0, seed=5, stream=token_selection.TEST_STREAM)
    assert not test.noisy.any()
    assert float((data.noise - test.noise).abs().min()) > 0  # no shared draw between train and test
    again = token_selection.sample(20, 50, 3.0, eta=0.2, seed=5)
    assert torch.equal(again.X, data.X)
    with pytest.raises(ValueError):
        token_selection.n_flipped(10, 0.6)


def test_head_reads_the_class_signal():
    nu = token_selection.head(10, 7.0, torch.float64)
    mu_p, mu_m = token_selection.signals(10, 7.0, torch.float64)
    assert float(nu @ mu_p) == pytest.approx(1 / math.sqrt(2))
    assert float(nu @ mu_m) == pytest.approx(-1 / math.sqrt(2))
    assert float(nu.norm()) == pytest.approx(1 / 7.0)


def test_logits_are_x_times_w_p_and_attention_is_a_distribution():
    g = torch.Generator().manual_seed(0)
    X, W, p = torch.randn(3, 5, 7, generator=g), torch.randn(7, 7, generator=g), torch.randn(7, generator=g)
    nu = torch.randn(7, generator=g)
    f, s = token_selection.forward(X, W, p, nu)
    assert torch.allclose(s, torch.softmax((X @ W) @ p, dim=-1), atol=1e-6)
    assert torch.allclose(s.sum(-1), torch.ones(3))
    assert torch.allclose(f, (s * (X @ nu)).sum(-1), atol=1e-6)


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(2)
    dt = torch.float64
    X, y = torch.randn(4, 3, 6, generator=g, dtype=dt), torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=dt)
    W, p, nu = (torch.randn(6, 6, generator=g, dtype=dt), torch.randn(6, generator=g, dtype=dt) * 0.5,
                torch.randn(6, generator=g, dtype=dt))  # fmt: skip
    _, dW, dp = token_selection.gradients(X, y, W, p, nu)

    def loss(W_, p_):
        return float(token_selection.logistic_loss(token_selection.forward(X, W_, p_, nu)[0], y))

    eps = 1e-6
    for i, j in [(0, 0), (2, 5), (5, 1)]:
        E = torch.zeros_like(W)
        E[i, j] = eps
        assert (loss(W + E, p) - loss(W - E, p)) / (2 * eps) == pytest.approx(float(dW[i, j]), abs=1e-8)
    for k in range(6):
        e = torch.zeros_like(p)
        e[k] = eps
        assert (loss(W, p + e) - loss(W, p - e)) / (2 * eps) == pytest.approx(float(dp[k]), abs=1e-8)


def _tiny(mu=(2.0, 5.0), seed=3, eta=0.34):
    return [token_selection.RunSpec(d=40, mu_norm=m, seed=seed, n=6, T=4, n_test=10, eta=eta) for m in mu]


def test_reduce_matches_the_gram_matrices_computed_directly():
    specs = _tiny()
    red = token_selection.reduce(specs, dtype=torch.float64)
    for r, spec in enumerate(specs):
        train, test, W0 = token_selection.run_data(spec, torch.float64)
        X, Xt, K = train.X.reshape(-1, spec.d), test.X.reshape(-1, spec.d), W0 @ W0.T
        assert torch.allclose(red.A[r], X @ K @ X.T, atol=1e-10)
        assert torch.allclose(red.S[r], X @ X.T, atol=1e-10)
        assert torch.allclose(red.A_test[r], Xt @ K @ X.T, atol=1e-10)
        assert torch.allclose(red.S_test[r], Xt @ X.T, atol=1e-10)
        assert torch.allclose(red.h[r].flatten(), X @ train.nu, atol=1e-12)
        assert torch.equal(red.y[r], train.y) and torch.equal(red.y_test[r], test.y)


def test_gd_in_token_coordinates_equals_gd_on_w_and_p():
    spec = _tiny()[1]
    train, test, W0 = token_selection.run_data(spec, torch.float64)
    W, p = token_selection.train_direct(train.X, train.y, W0, train.nu, steps=40, lr=0.05)
    red = token_selection.reduce([spec], dtype=torch.float64)
    state = token_selection.zero_state(red)
    for _ in range(40):
        state, _, _ = token_selection.step(red, state, 0.05)
    f_direct, s_direct = token_selection.forward(train.X, W, p, train.nu)
    f, s = token_selection.outputs(token_selection.train_logits(red, state), red.h)
    assert torch.allclose(f[0], f_direct, atol=1e-12) and torch.allclose(s[0], s_direct, atol=1e-12)
    ft, _ = token_selection.outputs(token_selection.test_logits(red, state), red.h_test)
    assert torch.allclose(ft[0], token_selection.forward(test.X, W, p, train.nu)[0], atol=1e-12)
    assert torch.allclose(token_selection.query(spec, state, dtype=torch.float64), W @ p, atol=1e-12)
    assert float((W @ p).abs().max()) > 1e-3  # the runs moved


def test_batched_runs_equal_single_runs():
    specs = _tiny(mu=(2.0, 5.0)) + [token_selection.RunSpec(d=25, mu_norm=3.0, seed=9, n=6, T=4, n_test=10, eta=0.34)]
    both = token_selection.run_grid(specs, steps=30, lr=0.05, logged=[0, 15, 30], dtype=torch.float64)
    for r, spec in enumerate(specs):
        one = token_selection.run_grid([spec], steps=30, lr=0.05, logged=[0, 15, 30], dtype=torch.float64)
        for key in ("train_acc", "test_acc", "train_loss", "attention", "test_relevant", "variance"):
            assert torch.allclose(getattr(both, key)[:, r], getattr(one, key)[:, 0], atol=1e-12), key


def test_hand_built_solution_fits_every_training_point_and_classifies_clean_test_points():
    train = token_selection.sample(20, 600, 40.0, eta=0.2, seed=0, dtype=torch.float64)
    test = token_selection.sample(
        200, 600, 40.0, eta=0.0, seed=0, stream=token_selection.TEST_STREAM, dtype=torch.float64
    )
    q = token_selection.benign_query(train, beta=20.0, c=30.0)
    m = token_selection.query_metrics(q, train, test)
    assert float(m["train_acc"]) == 1.0 and float(m["noisy_fit"]) == 1.0
    assert float(m["test_acc"]) == 1.0 and float(m["test_relevant"]) > 0.99
    f, s = token_selection.forward_query(train.X, q, train.nu)
    assert bool((s[train.noisy].argmax(-1) == 2).all()) and bool((s[~train.noisy].argmax(-1) == 0).all())
    # without the memorised noise (c = 0) the flipped labels are not fitted; with a huge c the test attention is lost
    queries = torch.stack(
        [token_selection.benign_query(train, 20.0, 0.0), token_selection.benign_query(train, 20.0, 1e4)]
    )
    none, huge = token_selection.query_metrics(queries, train, test)["noisy_fit"], None
    assert float(none[0]) == 0.0
    lost = token_selection.query_metrics(token_selection.benign_query(train, 20.0, 1e4), train, test)
    assert float(lost["noisy_fit"]) == 1.0 and float(lost["test_relevant"]) < 0.5
    del huge


def test_memorisation_ablation_removes_only_the_flipped_fit():
    spec = token_selection.RunSpec(d=300, mu_norm=10.0, seed=0, n=20, T=8, n_test=100)
    h = token_selection.run_grid([spec], steps=200, lr=0.02, logged=[200])
    arms = token_selection.memorisation_ablation(spec, h.state)
    assert arms["trained"]["noisy_fit"] > arms["no memorisation"]["noisy_fit"]
    assert arms["no memorisation"]["clean_fit"] == 1.0


def test_regime_labels():
    lab = token_selection.regime(torch.tensor([0.0, 1.0, 1.0, 0.25]), torch.tensor([1.0, 0.99, 0.7, 0.6]))
    assert lab.tolist() == [0, 1, 2, 0]


def test_reference_arms_bracket_accuracy():
    red = token_selection.reduce(_tiny(mu=(1.0, 50.0)), dtype=torch.float64)
    arms = token_selection.reference_arms(red)
    assert float(arms["oracle"][1]) == 1.0
    assert bool((arms["uniform"] <= 1.0).all())


def test_growth_function_integrates_the_attention_variance():
    # dx/dtau = s (1 - s), s = e^x / (e^x + K)  =>  G_K(x(tau)) - G_K(x(0)) = tau (Euler, small step)
    K, x, dt = 7, 0.5, 1e-3
    for _ in range(20000):
        s = math.exp(x) / (math.exp(x) + K)
        x += dt * s * (1 - s)
    assert float(token_selection.growth(x, K) - token_selection.growth(0.5, K)) == pytest.approx(20.0, rel=1e-3)
    xs = torch.linspace(-3, 6, 50, dtype=torch.float64)
    s = torch.exp(xs) / (torch.exp(xs) + K)
    slope = torch.autograd.functional.jacobian(lambda v: token_selection.growth(v, K).sum(), xs)
    assert torch.allclose(slope, 1 / (s * (1 - s)))


def test_expected_max_and_benign_edges():
    assert token_selection.expected_max_normal(1) == pytest.approx(0.0, abs=1e-9)
    assert token_selection.expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    mc = float(torch.randn(200000, 7, generator=g).amax(-1).mean())
    assert token_selection.expected_max_normal(7) == pytest.approx(mc, abs=0.01)
    lo, hi = token_selection.benign_edges(10.0, 0.1, 1000, 4, 8)
    assert lo == pytest.approx(9.0 + math.log(10))
    assert hi == pytest.approx(9.0 / (token_selection.expected_max_normal(7) * math.sqrt(4 / 1000)))


def test_unbalanced_flips_come_from_one_class():
    y, y_clean, noisy = token_selection.labels(20, 0.2, balanced=False)
    assert int(noisy.sum()) == 4 and bool((y_clean[noisy] > 0).all())
    assert torch.equal(y, torch.where(noisy, -y_clean, y_clean))


def test_knockouts_in_token_coordinates_equal_gd_on_p_alone_and_no_training():
    spec = _tiny()[1]
    train, _, W0 = token_selection.run_data(spec, torch.float64)
    red = token_selection.reduce([spec], dtype=torch.float64)
    # frozen W: GD on p only, computed directly and in token coordinates
    W, p = token_selection.train_direct(train.X, train.y, W0, train.nu, steps=30, lr=0.05, knockout="frozen_W")
    assert torch.equal(W, W0)
    h = token_selection.run_grid([spec], steps=30, lr=0.05, logged=[30], dtype=torch.float64, knockout="frozen_W")
    assert float(h.state.M.abs().max()) == 0.0
    assert torch.allclose(token_selection.query(spec, h.state, dtype=torch.float64), W0 @ p, atol=1e-12)
    p_ref = torch.zeros_like(p)  # an independent loop: p <- p - lr W0^T X^T dL/dz
    for _ in range(30):
        _, _, dp = token_selection.gradients(train.X, train.y, W0, p_ref, train.nu)
        p_ref = p_ref - 0.05 * dp
    assert torch.allclose(p, p_ref, atol=1e-12)
    # uniform attention: nothing moves, every attention weight is 1 / T
    u = token_selection.train(red, steps=10, lr=0.05, logged=[10], knockout="uniform")
    assert float(u.state.a.abs().max()) == 0.0
    assert torch.allclose(u.attention[-1], torch.full_like(u.attention[-1], 1 / spec.T))
    with pytest.raises(ValueError):
        token_selection.step(red, token_selection.zero_state(red), 0.1, knockout="frozen")


def test_uniform_accuracy_is_the_population_accuracy_of_uniform_attention():
    assert token_selection.uniform_accuracy(10.0, 8) == pytest.approx(0.99379, abs=1e-4)  # Phi(2.5)
    specs = [token_selection.RunSpec(d=30, mu_norm=5.0, seed=s, n=2, T=8, n_test=4000) for s in range(3)]
    empirical = float(
        token_selection.reference_arms(token_selection.reduce(specs, dtype=torch.float64))["uniform"].mean()
    )
    assert empirical == pytest.approx(token_selection.uniform_accuracy(5.0, 8), abs=4 * math.sqrt(0.1 / 12000))


def test_training_in_phases_equals_one_run_and_logs_once_per_step():
    spec = _tiny()[0]
    red = token_selection.reduce([spec], dtype=torch.float64)
    start = token_selection.train(red, steps=10, lr=0.05, logged=[0, 10])
    one = token_selection.train(red, steps=30, lr=0.05, logged=[30], start=start)
    phased = token_selection.train_phases(red, start, ((1.0, 0.05), (2.0, 0.05)), points=3)
    assert torch.allclose(phased.state.a, one.state.a, atol=1e-12)
    assert torch.allclose(phased.test_relevant[-1], one.test_relevant[-1], atol=1e-12)
    assert phased.steps[0] == 0 and phased.steps[-1] == 40 and len(set(phased.steps)) == len(phased.steps)
    assert float(phased.times[-1]) == pytest.approx(2.0)
    assert token_selection.DelayConfig().steps == 225 + 450 + 750


def _benign_case(knockout=None, mu=7.0, d=500, steps=100):
    """The chapter's Experiment 1b measurement at (d, ||mu||), 3 seeds, smaller test sets (under a second)."""
    specs = [token_selection.RunSpec(d=d, mu_norm=mu, seed=k, n_test=300) for k in range(3)]
    red = token_selection.reduce(specs)
    h = token_selection.train(red, steps=steps, lr=5e-2, logged=[steps], knockout=knockout)
    gain = float((h.test_acc[-1] - token_selection.reference_arms(red)["uniform"]).mean())
    return {
        "noisy_fit": float(h.noisy_fit[-1].mean()),
        "gain": gain,
        "test_relevant": float(h.test_relevant[-1].mean()),
    }


def test_knockout_uniform_attention_fails_the_benign_checks():
    # with token selection: flipped labels fitted (null 0.5), accuracy above uniform attention's (null 0)
    trained = _benign_case()
    assert trained["noisy_fit"] >= 0.5 and trained["gain"] > 0.005
    # without it: the same measurement is at (or below) every null
    knocked = _benign_case("uniform")
    assert knocked["noisy_fit"] < 0.5 and knocked["gain"] <= 0.0 and knocked["test_relevant"] < 0.5


def test_knockout_frozen_w_fails_the_flipped_fit_check_at_1000_20():
    trained = _benign_case(mu=20.0, d=1000)
    frozen = _benign_case("frozen_W", mu=20.0, d=1000)
    assert trained["noisy_fit"] >= 0.5 > frozen["noisy_fit"]
    assert trained["test_relevant"] >= 0.5  # the benign solution's clean attention, with W trained


# ---------------------------------------------------------------- figures: each draws the values it is given


@pytest.fixture(scope="module")
def tiny_regimes():
    """A tiny Experiment 1: three signal strengths, with and without label noise, a few GD steps."""
    cfg = token_selection.RegimeConfig(d=40, n=6, T=4, n_test=10, mu_norms=(2.0, 5.0, 20.0), reps=1)
    specs = cfg.specs(0) + cfg.specs(0, eta=0.0)
    red = token_selection.reduce(specs)
    hist = token_selection.train(red, steps=6, lr=0.05, logged=[0, 3, 6])
    return cfg, specs, red, hist


def _heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_runs_where_selects_runs_by_their_spec():
    specs = [token_selection.RunSpec(d=d, mu_norm=mu, seed=0, eta=eta) for d in (10, 20) for mu in (1.0, 2.0)
             for eta in (0.2, 0.0)]  # fmt: skip
    assert token_selection.runs_where(specs, mu_norm=2.0, flipped=True) == [2, 6]
    assert token_selection.runs_where(specs, d=20, mu_norm=1.0) == [4, 5]
    assert token_selection.runs_where(specs, d=10, flipped=False) == [1, 3]


def test_plot_regimes_draws_the_mean_curves_of_the_flipped_runs(tiny_regimes):
    cfg, specs, _, hist = tiny_regimes
    fig = token_selection.plot_regimes(hist, specs, cfg)
    assert len(fig.axes) == 3
    for ax, mu in zip(fig.axes, cfg.mu_norms):
        idx = token_selection.runs_where(specs, mu_norm=mu, flipped=True)
        train_line, fit_line, test_line = ax.get_lines()
        np.testing.assert_allclose(train_line.get_xdata(), hist.steps)
        np.testing.assert_allclose(train_line.get_ydata(), hist.train_acc[:, idx].mean(1))
        np.testing.assert_allclose(fit_line.get_ydata(), hist.noisy_fit[:, idx].mean(1))
        np.testing.assert_allclose(test_line.get_ydata(), hist.test_acc[:, idx].mean(1))
        assert ax.get_title().startswith(f"||mu|| = {mu:g}")
    plt.close(fig)


def test_plot_attention_draws_the_attention_groups(tiny_regimes):
    cfg, specs, red, hist = tiny_regimes
    fig = token_selection.plot_attention(hist, red, specs, cfg)
    assert len(fig.axes) == 3
    for ax, mu in zip(fig.axes, cfg.mu_norms):
        groups = token_selection.attention_groups(
            hist, red, token_selection.runs_where(specs, mu_norm=mu, flipped=True)
        )
        assert [line.get_label() for line in ax.get_lines()] == list(groups)
        for line, curve in zip(ax.get_lines(), groups.values()):
            np.testing.assert_allclose(line.get_ydata(), curve)
    plt.close(fig)


def test_plot_arms_draws_accuracies_and_the_ablation(tiny_regimes):
    cfg, specs, red, hist = tiny_regimes
    means, fixed = token_selection.final_means(hist, specs), token_selection.reference_arms(red)
    ablation = {mu: {"trained": {"noisy_fit": 1.0}, "no memorisation": {"noisy_fit": 0.25 * k},
                     "control": {"noisy_fit": 0.75}} for k, mu in enumerate((3.0, 10.0))}  # fmt: skip
    fig = token_selection.plot_arms(means, fixed, specs, ablation, cfg)
    ax, bx = fig.axes
    uniform = [float(fixed["uniform"][token_selection.runs_where(specs, mu_norm=mu)].mean()) for mu in cfg.mu_norms]
    heights = _heights(ax)
    assert len(heights) == 4 * 3
    np.testing.assert_allclose(heights[:3], [means[(mu, cfg.eta)]["test_acc"] for mu in cfg.mu_norms])
    np.testing.assert_allclose(heights[6:9], uniform)
    assert _heights(bx) == [1.0, 1.0, 0.0, 0.25, 0.75, 0.75]
    assert [t.get_text() for t in bx.get_xticklabels()] == ["||mu|| = 3", "||mu|| = 10"]
    plt.close(fig)


def test_plot_baseline_draws_gains_attention_and_fit():
    cfg = token_selection.BaselineConfig(cases=((500, 7.0), (1000, 5.0)))
    arms = lambda k: (("trained W", 0.01 * k), ("frozen W", -0.01 * k))  # noqa: E731
    cases = {
        case: {arm: {"gain": g, "test_relevant": 0.5 + g, "noisy_fit": 0.9 - g} for arm, g in arms(k)}
        for k, case in enumerate(cfg.cases)
    }
    fig = token_selection.plot_baseline(cases, cfg)
    ax, bx = fig.axes
    np.testing.assert_allclose(_heights(ax), [0.0, 0.01, 0.0, -0.01])
    np.testing.assert_allclose(_heights(bx), [0.5, 0.51, 0.9, 0.89, 0.5, 0.49, 0.9, 0.91])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["(500, 7)", "(1000, 5)"]
    plt.close(fig)


def test_plot_hand_built_draws_the_sweep_and_its_edges():
    cs = torch.logspace(0, 2, 5, dtype=torch.float64)
    metrics = {k: torch.linspace(0, 1, 5) * (j + 1) / 4 for j, k in
               enumerate(("noisy_fit", "clean_fit", "test_acc", "test_relevant"))}  # fmt: skip
    fig = token_selection.plot_hand_built({"cs": cs, "metrics": metrics, "c_lo": 3.0, "c_hi": 30.0})
    (ax,) = fig.axes
    lines = ax.get_lines()
    for line, key in zip(lines, ("noisy_fit", "clean_fit", "test_acc", "test_relevant")):
        np.testing.assert_allclose(line.get_xdata(), cs.numpy())
        np.testing.assert_allclose(line.get_ydata(), metrics[key].numpy())
    assert [line.get_xdata()[0] for line in lines[4:]] == [3.0, 30.0] and ax.get_xscale() == "log"
    plt.close(fig)


def test_plot_phase_draws_the_maps_and_the_boundary():
    cfg = token_selection.PhaseConfig(ds=(250, 500), mu_norms=(2.0, 4.0, 8.0))
    fit = np.array([[1.0, 0.8, 0.2], [1.0, 0.9, 0.6]])
    test_acc = np.array([[0.6, 0.9, 1.0], [0.5, 0.95, 1.0]])
    regimes = np.array([[2, 1, 0], [2, 1, 1]])
    fig = token_selection.plot_phase(fit, test_acc, regimes, [4.0, float("nan")], cfg)
    maps = [ax for ax in fig.axes if ax.get_images()]
    assert len(maps) == 3
    for ax, data in zip(maps, (fit, test_acc, regimes)):
        np.testing.assert_allclose(ax.get_images()[0].get_array(), data)
    dots, iso = maps[2].get_lines()
    assert list(dots.get_xdata()) == [1.0] and list(dots.get_ydata()) == [0]  # ||mu|| = 4 is column 1, row d = 250
    np.testing.assert_allclose(iso.get_xdata(), [1.0, 1.5])  # constant SNR: 4 sqrt(500 / 250) on a log2 grid
    plt.close(fig)


def test_plot_delay_draws_each_case_from_the_second_log():
    tau = np.array([5.0, 10.0, 100.0])
    series = {(500, 7.0): {"gain": np.array([0.1, 0.2, 0.3]), "test_relevant": np.array([0.4, 0.5, 0.6]),
                           "test_loss": np.array([0.7, 0.6, 0.5])}}  # fmt: skip
    fig = token_selection.plot_delay(series, tau, [10.0, 20.0])
    assert len(fig.axes) == 3
    for ax, key in zip(fig.axes, ("gain", "test_relevant", "test_loss")):
        line = ax.get_lines()[0]
        np.testing.assert_allclose(line.get_xdata(), tau[1:])
        np.testing.assert_allclose(line.get_ydata(), series[(500, 7.0)][key][1:])
        assert line.get_label() == "(500, 7)"
    plt.close(fig)


def test_plot_paper_cases_draws_the_three_cases():
    values = {k: {"train_acc": 1.0, "noisy_fit": 0.1 * j, "test_acc": 0.9} for j, k in
              enumerate(("balanced", "noise", "signal"))}  # fmt: skip
    fig = token_selection.plot_paper_cases(values, token_selection.PaperCasesConfig())
    (ax,) = fig.axes
    np.testing.assert_allclose(_heights(ax), [1.0, 1.0, 1.0, 0.0, 0.1, 0.2, 0.9, 0.9, 0.9])
    assert ax.get_xticklabels()[1].get_text() == "(d, ||mu||) = (4500, 5)"
    plt.close(fig)
