"""Tests of lib.saliency against per-example loops, brute force, numpy and scipy."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lib import saliency as sal
from lib.cnn import SmallCNN, filter_table
from lib.evt import fit_pot


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = SmallCNN((3, 4), pool_after=(1,), num_classes=3).eval()
    X = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return model, X, y


def loop_saliency(model, X, y):
    rows = []
    for i in range(X.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(X[i : i + 1]), y[i : i + 1]).backward()
        rows.append(torch.cat([m.weight.grad.abs().flatten(1).mean(1) for m in model.convs.values()]))
    return torch.stack(rows)


def test_vmap_saliency_equals_per_example_loop(tiny):
    model, X, y = tiny
    torch.testing.assert_close(sal.filter_saliency(model, X, y, batch=4), loop_saliency(model, X, y))


def test_streaming_reference_stats_match_numpy(tiny):
    model, X, y = tiny
    S = loop_saliency(model, X, y).double()
    ref = sal.reference_statistics(model, X, y, quantile=0.5, batch=4)
    torch.testing.assert_close(ref.mean, S.mean(0))
    torch.testing.assert_close(ref.std, S.std(0))
    keep = int(np.ceil(0.5 * 6)) + 1
    torch.testing.assert_close(ref.top, S.sort(0, descending=True).values[:keep])
    pot = ref.pot(min_exceed=1)
    np.testing.assert_allclose(pot.threshold, S.sort(0, descending=True).values[keep - 1].numpy(), rtol=1e-6)
    assert np.all(pot.n_exceed <= keep - 1)


def test_zscore_ranking_equals_gaussian_tail_ranking():
    """Proposition 1: with normal saliencies, decreasing z-score = increasing tail probability."""
    rng = np.random.default_rng(0)
    mu, sd = rng.uniform(1, 3, 40), rng.uniform(0.1, 2, 40)
    R = torch.from_numpy(mu + sd * rng.standard_normal((500, 40)))
    ref = sal.ReferenceStats.empty(40, 60)
    ref.update(R[:250])
    ref.update(R[250:])
    S = torch.from_numpy(mu + sd * rng.standard_normal((5, 40)))
    z = sal.zscore(S, ref)
    tail = stats.norm.sf(S.numpy(), ref.mean.numpy(), ref.std.numpy())
    assert torch.equal(sal.rank_by_zscore(z), torch.from_numpy(np.argsort(tail, axis=1, kind="stable")))


def test_zscore_is_the_standardised_saliency():
    rng = np.random.default_rng(3)
    R = rng.gamma(2.0, size=(50, 6)) * np.array([1e-4, 1e-3, 0.1, 1.0, 5.0, 30.0])
    S = rng.gamma(2.0, size=(4, 6)) * np.array([1e-4, 1e-3, 0.1, 1.0, 5.0, 30.0])
    ref = sal.ReferenceStats.empty(6, 2)
    ref.update(torch.from_numpy(R))
    z = sal.zscore(torch.from_numpy(S), ref).numpy()
    np.testing.assert_allclose(z, (S - R.mean(0)) / R.std(0, ddof=1), rtol=1e-10)


def test_zscore_of_constant_filter_follows_levin_et_al_and_pot_tie_breaking():
    ref = sal.ReferenceStats.empty(3, 3)
    ref.update(torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 9.0]]))
    z = sal.zscore(torch.tensor([[0.0, 2.0, 5.0], [0.25, 2.0, 5.0]]), ref)
    # the reference code divides a filter with sigma_j <= 1e-14 by 1: s_hat_j = s_j - mu_j
    assert z[0, 0] == 0 and z[1, 0] == 0.25
    assert sal.live_filters(ref).tolist() == [False, True, True]
    p = torch.tensor([[0.0, 0.0, 0.5, 1.0]])
    zz = torch.tensor([[1.0, 3.0, 9.0, 2.0]])
    assert sal.rank_by_pot(p, zz).tolist() == [[1, 0, 2, 3]]


def test_pot_pvalues_match_lib_evt():
    rng = np.random.default_rng(1)
    R = rng.exponential(size=(400, 5))
    ref = sal.ReferenceStats.empty(5, int(np.ceil(0.1 * 400)) + 1)
    ref.update(torch.from_numpy(R))
    pot_stream = ref.pot()
    pot_batch = fit_pot(R, quantile=0.9)
    S = torch.from_numpy(rng.exponential(3.0, size=(4, 5)))
    p1 = sal.pot_pvalues(S, pot_stream).numpy()
    p2 = pot_batch.tail_probability(S.numpy())
    both = (p1 < 1) & (p2 < 1)
    np.testing.assert_allclose(p1[both], p2[both], rtol=0.3)


def test_filter_share_counts_only_live_filters():
    layer_of = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    R = torch.rand(20, 8, dtype=torch.float64)
    R[:, [1, 5, 6]] = 0.0  # dead filters: zero saliency on every reference input
    ref = sal.ReferenceStats.empty(8, 2)
    ref.update(R)
    live = sal.live_filters(ref)
    assert live.tolist() == [True, False, True, True, True, False, False, True]
    assert sal.filter_share(layer_of, live).tolist() == pytest.approx([1 / 5, 3 / 5, 1 / 5])
    assert sal.filter_share(layer_of).tolist() == pytest.approx([2 / 8, 3 / 8, 3 / 8])
    with pytest.raises(ValueError, match="no filter"):
        sal.filter_share(layer_of, torch.zeros(8, dtype=torch.bool))
    mu, sd = sal.layer_gradient_stats(ref, layer_of, live)
    torch.testing.assert_close(mu, torch.stack([R[:, [0]].mean(), R[:, 2:5].mean(), R[:, [7]].mean()]))
    torch.testing.assert_close(
        sd, torch.stack([R[:, [0]].std(0).mean(), R[:, 2:5].std(0).mean(), R[:, [7]].std(0).mean()])
    )
    mu_all, _ = sal.layer_gradient_stats(ref, layer_of)
    torch.testing.assert_close(mu_all[2], R[:, 5:].mean())


def test_synthetic_experiment_standardises_through_zscore():
    cfg = sal.SaliencyConfig(synth_filters=300, synth_ref=400, synth_test=30)
    out = sal.synthetic_experiment(cfg, heavy=False, seed=1)
    R, T, _, _ = sal.synthetic_saliencies(300, 400, 30, heavy=False, seed=1)
    np.testing.assert_allclose(out["z"], (T - R.mean(0)) / R.std(0, ddof=1), rtol=1e-10)
    # without the division by sigma_j the ranking departs from the exact one (the chapter's ablation arm)
    assert out["top_z"] > out["top_centred"] + 0.3


def test_layer_share_and_detection_rank_by_brute_force():
    layer_of = torch.tensor([0, 0, 1, 1, 1, 2])
    ranking = torch.tensor([[5, 0, 2, 1, 3, 4], [2, 3, 4, 0, 1, 5]])
    share = sal.layer_share(ranking, layer_of, 3)
    assert share.tolist() == pytest.approx([1 / 6, 4 / 6, 1 / 6])
    assert sal.detection_rank(ranking, 4).tolist() == [6, 3]
    with pytest.raises(ValueError, match="k must"):
        sal.layer_share(ranking, layer_of, 7)


@pytest.mark.parametrize("mode", ["prune", "finetune"])
def test_edit_and_evaluate_matches_explicit_edits(tiny, mode):
    model, X, y = tiny
    _, layer_of, index_in = filter_table(model)
    ranking = sal.random_ranking(X.shape[0], layer_of.numel(), seed=1)
    k, lr = 3, 0.5
    res = sal.edit_and_evaluate(model, X, y, ranking, (k,), mode=mode, lr=lr, batch=4)
    p0 = F.softmax(model(X), -1).detach()
    drops, corrected = [], []
    for i in range(X.shape[0]):
        m = copy.deepcopy(model)
        convs = list(m.convs.values())
        if mode == "finetune":
            m.zero_grad()
            F.cross_entropy(m(X[i : i + 1]), y[i : i + 1]).backward()
        with torch.no_grad():
            for f in ranking[i, :k].tolist():
                w = convs[int(layer_of[f])].weight
                j = int(index_in[f])
                w[j] = 0.0 if mode == "prune" else w[j] - lr * w.grad[j]
        p1 = F.softmax(m(X[i : i + 1]), -1)[0].detach()
        wrong = int(p0[i].argmax())
        drops.append(float(p0[i, wrong] - p1[wrong]))
        corrected.append(float(p1.argmax() == y[i]))
    assert res["drop_incorrect"][0] == pytest.approx(np.mean(drops), abs=1e-5)
    assert res["corrected"][0] == pytest.approx(np.mean(corrected))


def test_edit_many_equals_one_ranking_at_a_time(tiny):
    model, X, y = tiny
    n = filter_table(model)[1].numel()
    rankings = {"a": sal.random_ranking(X.shape[0], n, seed=2), "b": sal.random_ranking(X.shape[0], n, seed=3)}
    for mode in ("prune", "finetune"):
        many = sal.edit_many(model, X, y, rankings, (1, 4), mode=mode, lr=0.5, batch=4)
        for name, r in rankings.items():
            one = sal.edit_and_evaluate(model, X, y, r, (1, 4), mode=mode, lr=0.5, batch=4)
            for key in one:
                np.testing.assert_allclose(many[name][key], one[key])


def test_plant_malicious_filter_changes_only_that_filter(tiny):
    model, _, _ = tiny
    bad = sal.plant_malicious_filter(model, 5, kind="flip", scale=2.0)
    w0, w1 = model.convs.conv2.weight, bad.convs.conv2.weight
    torch.testing.assert_close(w1[2], -2.0 * w0[2])
    torch.testing.assert_close(w1[[0, 1, 3]], w0[[0, 1, 3]])
    torch.testing.assert_close(bad.convs.conv1.weight, model.convs.conv1.weight)
    noisy = sal.plant_malicious_filter(model, 0, kind="noise", scale=3.0)
    w0 = model.convs.conv1.weight[0].detach()
    delta = noisy.convs.conv1.weight[0].detach() - w0
    assert float(delta.norm()) == pytest.approx(3.0 * float(w0.norm()), rel=1e-5)
    with pytest.raises(ValueError, match="filter_index"):
        sal.plant_malicious_filter(model, 99)


def test_synthetic_saliencies_exact_tail_is_uniform_under_the_null():
    for heavy in (False, True):
        _, _, p, _ = sal.synthetic_saliencies(20, 10, 2000, heavy=heavy, seed=0)
        assert stats.kstest(p.ravel()[::7], "uniform").pvalue > 1e-3


def test_topk_overlap_by_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 30)), rng.standard_normal((7, 30))
    k = 4
    brute = np.mean([len(set(np.argsort(-ra)[:k]) & set(np.argsort(-rb)[:k])) / k for ra, rb in zip(a, b)])
    assert sal.topk_overlap(a, b, k) == pytest.approx(brute)
    assert sal.topk_overlap(a, a, k) == 1.0
    with pytest.raises(ValueError, match="k must"):
        sal.topk_overlap(a, b, 0)


def test_digits_domains_clean_reference_has_distinct_rows():
    cfg = sal.SaliencyConfig(ref_copies=3, test_copies=2)
    data = sal.digits_domains(cfg, seed=0)
    n = data["X_ref"].shape[0]
    assert torch.unique(data["X_ref"].flatten(1), dim=0).shape[0] == n
    assert data["X_ref_shift"].shape[0] == 3 * n
    assert torch.unique(data["X_ref_shift"].flatten(1), dim=0).shape[0] == 3 * n
    assert data["X_test_shift"].shape[0] == 2 * data["X_test"].shape[0]


def test_errors_are_clear(tiny):
    model, X, y = tiny
    with pytest.raises(ValueError, match="labels"):
        sal.filter_saliency(model, X, y[:3])
    with pytest.raises(ValueError, match="quantile"):
        sal.reference_statistics(model, X, y, quantile=0.0)
    with pytest.raises(ValueError, match="mode"):
        sal.edit_and_evaluate(model, X, y, torch.zeros(6, 7, dtype=torch.long), (1,), mode="retrain")
    with pytest.raises(ValueError, match="too few"):
        sal.ReferenceStats.for_quantile(7, 3, quantile=0.1)
    ref = sal.ReferenceStats.empty(7, 3)
    with pytest.raises(ValueError, match="matrix"):
        ref.update(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="fewer reference"):
        ref.pot()


def test_rankings_do_not_depend_on_a_per_filter_scale():
    """Eq. (1) averages |gradient| over a filter; a sum (or any per-filter constant factor) would give the same
    z-scores and POT tail probabilities: the aggregation's normalisation is not a mechanism of any claim."""
    rng = np.random.default_rng(4)
    R, S = rng.gamma(1.5, size=(300, 6)), rng.gamma(1.5, size=(5, 6)) * 3.0
    c = np.array([9.0, 144.0, 288.0, 576.0, 1.0, 1e-3])  # e.g. the number of weights of each filter
    out = []
    for scale in (np.ones(6), c):
        ref = sal.ReferenceStats.for_quantile(6, 300, 0.9)
        ref.update(torch.from_numpy(R * scale))
        T = torch.from_numpy(S * scale)
        out.append((sal.zscore(T, ref), sal.pot_pvalues(T, ref.pot())))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-10, atol=0)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-6, atol=1e-12)


# Knock-out tests: each claim's check at a small size, with its mechanism and without it (lib.saliency's
# switches `divide=False` and `method=`/`tail=` "normal" or "exponential"). The checks are the chapter's,
# at their nulls (no seed study applies here).


def claim_holds(value: float, **threshold) -> bool:
    """Return whether the chapter's check of `value` holds at the null given (outside any seed study)."""
    import os

    from lib import checks

    keep = {k: os.environ.pop(k, None) for k in ("BOOK_CLAIMS_FILE", "BOOK_SMOKE", "BOOK_CHAPTER")}
    os.environ[checks.DEFER_ENV] = "1"
    try:
        return checks.check("knock-out test", value, kind="claim", row="test", record=False, **threshold).holds
    finally:
        os.environ.pop(checks.DEFER_ENV)
        os.environ.update({k: v for k, v in keep.items() if v is not None})


SMALL = sal.SaliencyConfig(synth_filters=300, synth_ref=1000, synth_test=60)


def test_knockout_of_the_division_by_sigma_breaks_proposition_1():
    """ps-prop1: with the true mu_j, sigma_j the z-score orders normal filters as the tail probability."""
    with_it = sal.synthetic_experiment(SMALL, heavy=False, seed=0)
    without = sal.synthetic_experiment(SMALL, heavy=False, seed=0, divide=False)
    assert claim_holds(with_it["mismatch_true"], at_most=0)
    assert not claim_holds(without["mismatch_true"], at_most=0)
    # the centred arm of the chapter is the z-score without the division
    assert without["top_z"] == with_it["top_centred"] < with_it["top_z"]


def heavy_check(r: dict) -> float:
    """The chapter's check "heavy tails: POT is closer than the z-score to the exact share"."""
    return (r["heavy_share_z"] - r["heavy_share_true"]) - abs(r["heavy_share_pot"] - r["heavy_share_true"])


@pytest.mark.parametrize("seed", [0, 1])
def test_knockout_of_the_gpd_tail_breaks_pot_on_heavy_tails(seed):
    """ps-heavy: POT is nearer the exact share of the heaviest-tailed third than the z-score, and is not
    once the GPD beyond the threshold is replaced by the normal tail (the normality assumption)."""
    with_it = sal.synthetic_experiment(SMALL, heavy=True, seed=seed)
    without = sal.synthetic_experiment(SMALL, heavy=True, seed=seed, tail="normal")
    assert claim_holds(with_it["heavy_share_z"] - with_it["heavy_share_true"], at_least=0)
    assert claim_holds(heavy_check(with_it), at_least=0)
    assert not claim_holds(heavy_check(without), at_least=0)


@pytest.fixture(scope="module")
def small_cnn(one_thread):
    """A small CNN on the digits (five conv layers, 8 to 64 wide, 20 epochs) and the saliencies of its first
    150 misclassified shifted digits: the chapter's Experiment 2 at a small size."""
    torch.manual_seed(0)
    cfg = sal.SaliencyConfig(channels=(8, 16, 16, 32, 64), epochs=20, max_errors=150)
    data = sal.digits_domains(cfg, seed=2)
    model = sal.train_digits_cnn(cfg, data, seed=2, cache=False)
    _, layer_of, _ = filter_table(model)
    ref = sal.reference_statistics(model, data["X_ref"], data["y_ref"], quantile=cfg.quantile)
    live_share = sal.filter_share(layer_of, sal.live_filters(ref))[-1].item()
    err = sal.misclassified(model, data["X_test_shift"], data["y_test_shift"], cfg.max_errors)
    S = sal.filter_saliency(model, data["X_test_shift"][err], data["y_test_shift"][err])
    return cfg, ref, layer_of, live_share, S


def last_layer_shares(small_cnn, *, divide: bool = True, method: str = "mle") -> tuple[float, float]:
    """Return the last layer's top-K share under the z-score and under POT (the chapter's `share_z[-1]`,
    `share_pot[-1]`), with the knock-outs `divide` and `method`."""
    cfg, ref, layer_of, _, S = small_cnn
    z = sal.zscore(S, ref, divide=divide)
    p = sal.pot_pvalues(S, ref.pot(min_exceed=cfg.min_exceed, method=method))
    z_share = sal.layer_share(sal.rank_by_zscore(z), layer_of, cfg.top_k)[-1].item()
    pot_share = sal.layer_share(sal.rank_by_pot(p, z), layer_of, cfg.top_k)[-1].item()
    return z_share, pot_share


def test_knockout_of_the_division_by_sigma_removes_the_depth_bias(small_cnn):
    """ps-z-deep: the z-score takes more of its top-K from the last layer than its share of live filters;
    without the division by sigma_j the ranking follows the gradients' size, which shrinks with depth."""
    live_share = small_cnn[3]
    assert claim_holds(last_layer_shares(small_cnn)[0] - live_share, at_least=0)
    assert not claim_holds(last_layer_shares(small_cnn, divide=False)[0] - live_share, at_least=0)


def test_knockout_of_the_gpd_tail_removes_pots_smaller_depth_bias(small_cnn):
    """ps-pot-less: POT takes less of its top-K from the last layer than the z-score; with the normal tail
    of the reference's mu_j, sigma_j in place of the GPD (POT under the normality assumption) it does not."""
    z_share, pot_share = last_layer_shares(small_cnn)
    assert claim_holds(z_share - pot_share, at_least=0)
    z_share, pot_share = last_layer_shares(small_cnn, method="normal")
    assert not claim_holds(z_share - pot_share, at_least=0)


# Figures: each draws the values it is given, on the expected panels.


def test_plot_normality_draws_the_first_rows_of_each_run():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    z, p = rng.normal(size=(12, 3)), rng.uniform(1e-4, 1, size=(12, 3))
    normal = {"z": z, "p_true": p}
    p_pot = np.ones((12, 3))
    p_pot[0, 0], p_pot[11, 2] = 0.01, 0.0  # above threshold: drawn; a zero estimate is drawn at 1e-8
    heavy = {"z": z, "p_true": p, "nu": np.array([1.5, 3.0, 10.0]), "p_pot": p_pot}
    fig = sal.plot_normality(normal, heavy)
    scatter = fig.axes[0].collections[0].get_offsets()
    assert np.allclose(scatter[:, 0], z[:10].ravel()) and np.allclose(scatter[:, 1], -np.log10(p[:10]).ravel())
    assert len(fig.axes) == 4  # three panels and the colour bar of the middle one
    assert list(fig.axes[2].lines[0].get_xdata()) == [p[0, 0], p[11, 2]]
    assert list(fig.axes[2].lines[0].get_ydata()) == [0.01, 1e-8]
    plt.close(fig)


def test_plot_depth_draws_each_layers_statistics_and_shares():
    import matplotlib.pyplot as plt

    mu, sd, beta = np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.5, 0.2]), np.array([0.1, 0.2, 0.4])
    live, z, pot = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.2, 0.7]), np.array([0.2, 0.3, 0.5])
    fig = sal.plot_depth(mu, sd, beta, live, z, pot, top_k=10)
    a0, a1, a2 = fig.axes
    assert list(a0.lines[0].get_ydata()) == list(mu) and list(a0.lines[1].get_ydata()) == list(sd)
    assert [b.get_height() for b in a1.patches] == list(beta)
    assert [b.get_height() for b in a2.patches] == [*live, *z, *pot]
    assert a2.get_title() == "top-10 filters by layer"
    plt.close(fig)


def test_plot_editing_draws_every_mode_and_ranking():
    import matplotlib.pyplot as plt

    ks = (1, 10)
    edits = {
        (mode, name): {"corrected": [0.1 * m + 0.01 * n, 0.5], "drop_incorrect": [0.2, 0.3 + 0.01 * n]}
        for m, mode in enumerate(("prune", "finetune"))
        for n, name in enumerate(("z-score", "POT", "random"))
    }
    fig = sal.plot_editing(edits, ks)
    assert len(fig.axes) == 4
    lower_left = fig.axes[2]
    assert [list(line.get_ydata()) for line in lower_left.lines] == [
        edits[("finetune", n)]["corrected"] for n in ("z-score", "POT", "random")
    ]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["z-score", "POT", "random"]
    plt.close(fig)


def test_plot_malicious_draws_the_empirical_cdf():
    import matplotlib.pyplot as plt

    pct = {"z-score": np.array([0.3, 0.1]), "POT": np.array([0.05, 0.2, 0.5])}
    fig = sal.plot_malicious(pct, n_filters=100)
    (ax,) = fig.axes
    assert list(ax.lines[0].get_xdata()) == [0.1, 0.3] and list(ax.lines[0].get_ydata()) == [0.5, 1.0]
    assert list(ax.lines[1].get_ydata()) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert ax.lines[2].get_xdata()[0] == pytest.approx(0.01) and ax.get_xscale() == "log"
    plt.close(fig)
