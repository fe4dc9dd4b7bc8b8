"""Tests of lib.longtail against independent references: closed forms, brute-force boundary searches."""

import contextlib
import io
import math
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import longtail as lt
from lib.checks import ClaimNotReproduced, check
from lib.data import DatasetUnavailable, OfflineFallback, sha256_of


def test_benchmark_counts_match_the_published_totals():
    c10, c100 = lt.benchmark_counts("cifar10-lt"), lt.benchmark_counts("cifar100-lt")
    assert c10[0] == 5000 and c10[-1] == 50 and c10.sum() == 12406  # CIFAR-10-LT, imbalance 100
    assert c100[0] == 500 and c100[-1] == 5 and c100.sum() == 10847  # CIFAR-100-LT, imbalance 100
    assert np.all(np.diff(c100) <= 0)
    inet = lt.benchmark_counts("imagenet-lt")
    assert len(inet) == 1000 and inet[0] == 1280 and inet[-1] == 5


def test_step_profile_and_bad_arguments():
    c = lt.long_tail_counts(100, 10, 0.1, "step")
    assert c.tolist() == [100] * 5 + [10] * 5
    with pytest.raises(ValueError, match="profile"):
        lt.long_tail_counts(100, 10, 0.1, "zipf")
    with pytest.raises(ValueError):
        lt.long_tail_counts(100, 1, 0.1)


def test_long_tailed_split_is_disjoint_balanced_and_follows_the_counts():
    y = np.repeat(np.arange(4), 30)
    counts = [20, 8, 3, 1]
    split = lt.long_tailed_split(y, counts, test_per_class=5, val_per_class=2, class_order=[2, 0, 3, 1], seed=1)
    assert split.counts.tolist() == [8, 1, 20, 3]  # rank r goes to class class_order[r]
    assert np.bincount(y[split.train], minlength=4).tolist() == split.counts.tolist()
    assert np.bincount(y[split.test], minlength=4).tolist() == [5] * 4
    assert np.bincount(y[split.val], minlength=4).tolist() == [2] * 4
    all_idx = np.concatenate([split.train, split.val, split.test])
    assert len(np.unique(all_idx)) == len(all_idx)
    with pytest.raises(ValueError, match="needs"):
        lt.long_tailed_split(y, [40, 1, 1, 1], test_per_class=5)


@pytest.mark.parametrize(("K", "d"), [(2, 1), (3, 2), (5, 4), (10, 32), (100, 128)])
def test_simplex_etf_gram_matrix(K, d):
    W = lt.simplex_etf(K, d, seed=3).double()
    assert W.shape == (K, d)
    gram = W @ W.T
    expected = torch.full((K, K), -1.0 / (K - 1), dtype=torch.float64)
    expected.fill_diagonal_(1.0)
    torch.testing.assert_close(gram, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(W.sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(lt.etf_gram(K).double(), expected)
    assert math.acos(float(gram[0, 1])) == pytest.approx(lt.etf_angle(K), abs=1e-6)


def test_etf_head_is_fixed_and_linear():
    net = lt.LTNet((1, 4, 4), 5, feature_dim=8, width=16, seed=0)
    assert not any("head" in name for name, _ in net.named_parameters())
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(net(x), net.features(x) @ net.head_weight().T)
    with pytest.raises(ValueError):
        lt.simplex_etf(10, 5)


def test_feature_norm_penalty_closed_form():
    h = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert lt.feature_norm_penalty(h, 0.1).item() == pytest.approx(0.5 * 0.1 * (25 + 1) / 2)


def test_mla_is_invariant_to_a_positive_logit_scale_and_ala_is_not():
    torch.manual_seed(0)
    counts = lt.long_tail_counts(100, 10, 0.01)
    z = torch.randn(400, 10)
    for gamma in (0.3, 1.0, 2.0):
        base = lt.predict(z, "mla", counts, gamma)
        for c in (0.01, 0.5, 7.0):
            assert torch.equal(lt.predict(c * z, "mla", counts, gamma), base)
            assert torch.equal(lt.predict(c * z, "1vs1", counts, gamma), lt.predict(z, "1vs1", counts, gamma))
    ala = lt.predict(z, "ala", counts, 1.0)
    assert not torch.equal(lt.predict(10.0 * z, "ala", counts, 1.0), ala)
    assert not torch.equal(lt.predict(0.1 * z, "ala", counts, 1.0), ala)


def test_adjusters_at_gamma_zero_and_onevsone_with_equal_counts_are_argmax():
    torch.manual_seed(1)
    z = torch.randn(300, 7)
    counts = lt.long_tail_counts(50, 7, 0.05)
    for m in ("ala", "mla", "1vs1"):
        assert torch.equal(lt.predict(z, m, counts, 0.0), z.argmax(1))
    equal = np.full(7, 40)
    for gamma in (0.5, 1.0, 3.0):
        assert torch.equal(lt.predict(z, "1vs1", equal, gamma), z.argmax(1))


def test_onevsone_votes_match_a_loop_over_pairs():
    torch.manual_seed(2)
    K, counts, gamma = 6, np.array([50, 30, 12, 7, 3, 2]), 0.7
    z = torch.randn(40, K, dtype=torch.float64)
    theta = lt.onevsone_angles(counts, gamma)
    rho = lt.etf_angle(K)
    votes = torch.zeros(40, K, dtype=torch.long)
    for i in range(K):
        for j in range(K):
            if i != j:  # i beats j iff z_i cos(rho - theta_ij) > z_j cos(theta_ij)
                votes[:, i] += (z[:, i] * math.cos(rho - theta[i, j]) > z[:, j] * math.cos(theta[i, j])).long()
    torch.testing.assert_close(lt.onevsone_votes(z, counts, gamma, chunk=7), votes)


def _plane(K: int, i: int, j: int):
    """ETF of K classes and an orthonormal basis (e1 = w_i, e2) of the plane of w_i and w_j."""
    W = lt.simplex_etf(K, K, seed=K).double()
    e1 = W[i]
    e2 = W[j] - (W[j] @ e1) * e1
    return W, e1, e2 / e2.norm()


def _boundary_angle(W, e1, e2, score, radius=1.0, steps=2001):
    """Brute force: the first angle phi in [0, rho] where class i stops beating class j (score <= 0)."""
    rho = math.acos(float(W[0] @ W[1]))
    phi = torch.linspace(0.0, rho, steps, dtype=torch.float64)
    h = radius * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2)
    s = score(h @ W.T)
    if bool((s > 0).all()):
        return rho
    k = int(torch.nonzero(s <= 0)[0])
    if k == 0:
        return 0.0
    lo, hi = phi[k - 1].item(), phi[k].item()  # refine by bisection
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        hm = radius * (math.cos(mid) * e1 + math.sin(mid) * e2)
        lo, hi = (mid, hi) if score((hm @ W.T)[None])[0] > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def _pair_score(kind, counts, gamma, i, j):
    """Return a function of logits (B, K): positive where class i beats class j under the adjuster `kind`."""
    if kind == "1vs1":
        return lambda z: lt.onevsone_beats(z, counts, gamma)[:, i, j].double() - 0.5
    adjust = lt.mla_logits if kind == "mla" else lt.ala_logits
    return lambda z: adjust(z, counts, gamma)[:, i] - adjust(z, counts, gamma)[:, j]


@pytest.mark.parametrize("K", [3, 4])
def test_implied_angles_match_a_brute_force_boundary_search(K):
    counts = np.array([60, 20, 7, 2][:K])
    for i, j in [(0, 1), (K - 1, 1)]:
        W, e1, e2 = _plane(K, i, j)
        for gamma in (0.4, 1.5):
            found = _boundary_angle(W, e1, e2, _pair_score("mla", counts, gamma, i, j))
            assert found == pytest.approx(float(lt.mla_angles(counts, gamma)[i, j]), abs=1e-7)
            found = _boundary_angle(W, e1, e2, _pair_score("1vs1", counts, gamma, i, j))
            assert found == pytest.approx(float(lt.onevsone_angles(counts, gamma)[i, j]), abs=1e-7)
            for radius in (0.5, 8.0):  # ALA's boundary moves with the feature norm
                found = _boundary_angle(W, e1, e2, _pair_score("ala", counts, gamma, i, j), radius)
                assert found == pytest.approx(float(lt.ala_angles(counts, gamma, scale=radius)[i, j]), abs=1e-7)


def test_angle_maps_are_complementary_and_vectorised_over_gamma():
    counts = lt.benchmark_counts("cifar100-lt")
    rho = lt.etf_angle(100)
    gammas = [0.2, 0.5, 1.0]
    for fn in (lt.mla_angles, lt.ala_angles):
        theta = fn(counts, gammas)
        assert theta.shape == (3, 100, 100)
        torch.testing.assert_close(theta + theta.transpose(1, 2), torch.full_like(theta, rho))
        torch.testing.assert_close(theta[1], fn(counts, 0.5))
    # MLA's angles stay in (rho - pi/2, pi/2): the 1vs1 adjuster's can go beyond (see the chapter)
    theta = lt.mla_angles(counts, 3.0)
    assert theta.max() < math.pi / 2 and theta.min() > rho - math.pi / 2


def test_matched_gamma_is_the_first_order_match():
    for K in (10, 100, 1000):
        rho = lt.etf_angle(K)
        g = lt.matched_mla_gamma(rho, 0.5)
        counts = np.array([1000, 1001])  # log ratio 1e-3: the first-order term dominates
        d_mla = lt.mla_angles(counts, g, rho)[1, 0] - rho / 2
        d_opt = lt.onevsone_angles(counts, 0.5, rho)[1, 0] - rho / 2
        assert float(d_mla / d_opt) == pytest.approx(1.0, abs=1e-3)
    assert lt.matched_mla_gamma(math.pi / 2, 1.0) == pytest.approx(math.pi / 4)


def test_angle_error_ignores_the_diagonal():
    a = torch.zeros(2, 3, 3)
    b = torch.eye(3).expand(2, 3, 3) * 5
    torch.testing.assert_close(lt.angle_error(a, b), torch.zeros(2))


def test_power_bound_maximiser_is_the_onevsone_angle():
    # Proposition 2 in the chapter's form: maximise -n_k^-beta theta^-q - n_k'^-beta (rho - theta)^-q
    n_k, n_j, beta, q, rho = 400.0, 9.0, 0.5, 1.0, lt.etf_angle(10)
    theta = np.linspace(1e-4, rho - 1e-4, 2_000_001)
    best = theta[np.argmax(-(n_k**-beta) * theta**-q - n_j**-beta * (rho - theta) ** -q)]
    gamma = beta / (q + 1)
    expected = float(lt.onevsone_angles(np.array([n_k, n_j]), gamma, rho)[0, 1])
    assert best == pytest.approx(expected, abs=1e-5)


def test_nc_metrics_on_collapsed_and_noisy_features():
    K, d = 5, 8
    W = lt.simplex_etf(K, d, seed=0)
    y = torch.arange(K).repeat_interleave(20)
    m = lt.nc_metrics(3.0 * W[y], y, K)
    assert m["nc1"] == pytest.approx(0.0, abs=1e-10)
    assert m["etf_gap"] == pytest.approx(0.0, abs=1e-6)
    assert m["equinorm"] == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    noisy = lt.nc_metrics(3.0 * W[y] + torch.randn(len(y), d), y, K)
    assert noisy["nc1"] > 0.01 and noisy["etf_gap"] > 0.01
    # a non-ETF geometry: two classes share a direction
    W2 = W.clone()
    W2[1] = W2[0]
    assert lt.nc_metrics(W2[y], y, K)["etf_gap"] > 0.2


def test_angular_spread_and_loglog_slope():
    e = torch.eye(2, dtype=torch.float64)
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    spread = lt.angular_spread(h, y, e)
    torch.testing.assert_close(spread, torch.tensor([math.pi / 4, 0.0], dtype=torch.float64))
    n = np.array([1, 10, 100, 1000])
    assert lt.loglog_slope(n, 3.0 * n**-0.5) == pytest.approx(-0.5)


def test_per_class_accuracy_and_gamma_sweep():
    pred = torch.tensor([0, 0, 1, 2, 2, 2])
    y = torch.tensor([0, 1, 1, 2, 2, 0])
    torch.testing.assert_close(lt.per_class_accuracy(pred, y, 3), torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    z, y, counts = torch.randn(50, 4), torch.randint(0, 4, (50,)), np.array([40, 20, 5, 1])
    for method in ("ala", "mla", "1vs1"):
        curve = lt.gamma_sweep(z, y, counts, method, [0.0, 0.7, 2.0])
        assert curve.shape == (3, 4)
        for i, g in enumerate((0.0, 0.7, 2.0)):  # the vectorised sweep equals one prediction per gamma
            torch.testing.assert_close(curve[i], lt.per_class_accuracy(lt.predict(z, method, counts, g), y, 4))


def test_training_and_adjusters_end_to_end_on_a_tiny_mixture():
    counts = lt.long_tail_counts(40, 4, 0.1)
    data = lt.mixture_lt_data(counts, val_per_class=10, test_per_class=10, dim=6, clusters=1, noise=0.3, seed=0)
    cfg = lt.LongTailConfig(width=32, feature_dim=8, epochs=30, track_every=10, gamma_step=0.5, gamma_max=1.0)
    rep = lt.run_replicate(data, cfg=cfg, seed=0)
    assert rep["hist"]["loss"][-1] < rep["hist"]["loss"][0]
    assert rep["hist"]["epoch"] == [10, 20, 30]
    assert rep["z_test"].shape == (40, 4) and rep["spread_val"].shape == (4,)
    ev = lt.evaluate_adjusters(rep, cfg.gamma_grid())
    assert set(ev) == {"none", "ala", "mla", "1vs1"}
    assert ev["mla"]["val_curve"].shape == (3,) and ev["none"]["acc"] > 0.5


def test_cnn_backbone_runs_on_images():
    net = lt.LTNet((3, 8, 8), 4, feature_dim=8, cnn_channels=(4, 8), seed=0)
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 4)


def _fake_cifar10(root):
    """Write a tiny archive in CIFAR-10's layout (random pixels, 60 training images per class)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, per_class in [*[(f"data_batch_{i}", 12) for i in range(1, 6)], ("test_batch", 3)]:
            labels = np.repeat(np.arange(10), per_class).tolist()
            blob = pickle.dumps({"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), "labels": labels})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (root / "cifar").mkdir(parents=True)
    path = root / "cifar" / "cifar-10-python.tar.gz"
    path.write_bytes(buf.getvalue())
    return path


def test_cifar_loader_checks_the_archive_and_falls_back_visibly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="not there"):
        lt.load_cifar_lt("cifar10")
    with pytest.warns(OfflineFallback):
        data = lt.load_cifar_lt_or_fallback("cifar10", fallback_n_max=30)
    assert "offline fallback" in capsys.readouterr().out
    assert data["source"].startswith("gaussian-mixture") and len(data["counts"]) == 10
    archive = _fake_cifar10(tmp_path)
    with pytest.raises(DatasetUnavailable, match="SHA-256"):  # not the real archive
        lt.load_cifar_lt("cifar10")
    spec = {**lt.CIFAR["cifar10"], "sha256": sha256_of(archive), "n_max": 50}
    monkeypatch.setitem(lt.CIFAR, "cifar10", spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OfflineFallback)
        data = lt.load_cifar_lt("cifar10", imbalance=0.1)
    assert data["counts"].tolist() == lt.long_tail_counts(50, 10, 0.1).tolist()
    assert data["X_train"].shape[1:] == (3, 32, 32) and len(data["y_test"]) == 20 and len(data["y_val"]) == 10
    assert np.bincount(data["y_train"].numpy(), minlength=10).tolist() == data["counts"].tolist()


def test_knockout_makes_mla_additive_inside_the_block_only():
    counts, z = np.array([90, 30, 5]), torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    mla = lt.predict(z, "mla", counts, 0.8)
    with lt.knockout("additive-mla"):
        assert torch.equal(lt.predict(z, "mla", counts, 0.8), lt.predict(z, "ala", counts, 0.8))
        torch.testing.assert_close(
            lt.gamma_sweep(z, z.argmax(1), counts, "mla", [0.0, 0.8]),
            lt.gamma_sweep(z, z.argmax(1), counts, "ala", [0.0, 0.8]),
        )
        torch.testing.assert_close(lt.mla_angles(counts, 0.8), lt.ala_angles(counts, 0.8))
    assert torch.equal(lt.predict(z, "mla", counts, 0.8), mla)
    with pytest.raises(ValueError, match="unknown knock-out"), lt.knockout("uniform"):
        pass


def test_unclipped_ala_angles_are_nan_exactly_where_the_boundary_leaves_the_arc():
    counts, rho = lt.benchmark_counts("cifar10-lt"), lt.etf_angle(10)
    for gamma, r in ((0.2, 1.0), (0.6, 1.0), (1.0, 3.0)):
        clipped = lt.ala_angles(counts, gamma, rho, scale=r)
        free = lt.ala_angles(counts, gamma, rho, scale=r, clip=False)
        # the prior's offset gamma |log(n_k/n_k')| beats the largest logit gap r (1 - cos rho) on the arc
        log_ratio = np.log(counts)[:, None] - np.log(counts)[None, :]
        leaves = torch.as_tensor(gamma * np.abs(log_ratio) > r * (1 - math.cos(rho)))
        assert torch.equal(free.isnan(), leaves)
        torch.testing.assert_close(free[~leaves], clipped[~leaves])
        assert bool(((clipped[leaves] == 0) | (clipped[leaves] == rho)).all())


def test_evaluate_adjusters_oracle_and_per_method_grids_match_a_loop():
    gen = torch.Generator().manual_seed(4)
    counts = np.array([60, 25, 9, 3])
    y_val, y_test = torch.arange(4).repeat(30), torch.arange(4).repeat(40)
    rep = {"counts": counts, "y_val": y_val, "y_test": y_test}
    for name, y in (("val", y_val), ("test", y_test)):  # logits favouring the head classes
        rep[f"z_{name}"] = (
            2 * F.one_hot(y, 4) + torch.randn(len(y), 4, generator=gen) + torch.tensor([1.0, 0.5, 0, -0.5])
        )
    grids = {"ala": [0.0, 0.5, 1.0, 1.5], "mla": [0.0, 0.3, 0.6], "1vs1": [0.0, 0.5]}
    ev = lt.evaluate_adjusters(rep, grids, test_curves=("ala", "mla"))
    for m, grid in grids.items():
        val = [lt.per_class_accuracy(lt.predict(rep["z_val"], m, counts, g), y_val, 4).mean().item() for g in grid]
        test = [lt.per_class_accuracy(lt.predict(rep["z_test"], m, counts, g), y_test, 4).mean().item() for g in grid]
        best = int(np.argmax(val))  # the first best on ties, as documented
        assert ev[m]["gamma"] == grid[best]
        assert ev[m]["acc"] == pytest.approx(test[best])
        if m == "1vs1":
            assert "oracle" not in ev[m] and "test_curve" not in ev[m]
        else:
            assert ev[m]["oracle"] == pytest.approx(max(test))


def test_mla_gamma_from_spread_is_the_matched_band():
    low, high = lt.mla_gamma_from_spread(0.5, 10)
    rho = lt.etf_angle(10)
    assert (low, high) == (lt.matched_mla_gamma(rho, 0.25), lt.matched_mla_gamma(rho, 0.5))
    assert lt.mla_gamma_from_spread(1.0, 10**6)[1] == pytest.approx(math.pi / 4, abs=1e-5)


def _holds(value: float, **null) -> bool:
    """Whether the claim check with this null holds (no seed study applies in the tests)."""
    try:
        return check("knock-out test", value, kind="claim", row="la-test", record=False, **null).holds
    except ClaimNotReproduced:
        return False


def test_knockout_additive_mla_fails_the_claims_about_mla():
    """Additive MLA (that is, ALA) must fail the checks of the claims that rest on MLA being multiplicative:
    its edge in accuracy over ALA with 100 classes, its closer agreement with the 1vs1 adjuster, its scale
    invariance. The logits come from one network trained at tiny size; the knock-out acts after training."""
    cfg = lt.MixtureConfig(val_size=1000, test_size=2000, gamma_max_1vs1=0.8)  # the quick sizes, smaller sets
    counts = lt.long_tail_counts(cfg.n_max, 100, cfg.imbalance)
    data = lt.mixture_lt_data(
        counts, val_per_class=10, test_per_class=20, dim=cfg.dim, clusters=cfg.clusters, noise=cfg.noise, seed=0
    )
    rep = lt.run_replicate(data, cfg, seed=0)
    grids = {"ala": cfg.gamma_grid(), "mla": cfg.gamma_grid(), "1vs1": cfg.gamma_grid_1vs1()}
    tie = 1 / cfg.test_size
    for knocked in (False, True):
        with lt.knockout("additive-mla") if knocked else contextlib.nullcontext():
            ev = lt.evaluate_adjusters(rep, grids, test_curves=("ala", "mla"))
            z = rep["z_test"]
            changed = (lt.predict(2.0 * z, "mla", counts, 1.0) != lt.predict(z, "mla", counts, 1.0)).float().mean()
        agree = {m: (ev[m]["pred"] == ev["1vs1"]["pred"]).double().mean().item() for m in ("ala", "mla")}
        expect = not knocked
        assert _holds(ev["mla"]["acc"] - ev["ala"]["acc"], at_least=tie) is expect
        assert _holds(ev["mla"]["oracle"] - ev["ala"]["oracle"], at_least=tie) is expect
        assert _holds(agree["mla"] - agree["ala"], at_least=tie) is expect
        assert _holds(changed.item(), close_to=0.0, tol=0.0) is expect


def test_knockout_gamma_from_the_wrong_spread_fails_the_gamma_claim():
    """MLA's gamma predicted from the spread exponent of the long-tailed arm reaches most of the oracle's gain;
    from the spread of the balanced arm (which does not follow the counts) it must not."""
    cfg = lt.LongTailConfig(epochs=40, width=64, track_every=0)
    counts = lt.long_tail_counts(cfg.n_max, 10, cfg.imbalance)
    arms = {"long-tailed": counts, "balanced": np.full(10, round(counts.mean()))}
    reps = {}
    for arm, c in arms.items():
        data = lt.digits_lt_data(c, val_per_class=cfg.val_per_class, test_per_class=cfg.test_per_class, seed=0)
        reps[arm] = lt.run_replicate(data, cfg, seed=0)
    lt_rep = reps["long-tailed"]
    ev = lt.evaluate_adjusters(lt_rep, cfg.gamma_grid(), ("mla",))
    gain = ev["mla"]["oracle"] - ev["none"]["acc"]
    assert gain > 0.02
    for arm, expect in (("long-tailed", True), ("balanced", False)):
        s = -lt.loglog_slope(lt_rep["counts"], reps[arm]["spread_val"])  # spreads against the same digits' counts
        gamma = lt.mla_gamma_from_spread(s, 10)[1]
        pred = lt.predict(lt_rep["z_test"], "mla", lt_rep["counts"], gamma)
        acc = lt.per_class_accuracy(pred, lt_rep["y_test"], 10).mean().item()
        assert _holds((acc - ev["none"]["acc"]) / gain, at_least=0.5) is expect, (arm, s, gamma)


# Figures: each draws the values it is given, in the expected panels.


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def test_plot_angles_draws_the_errors_every_pair_and_the_rho_sweep():
    counts = np.array([50, 20, 8, 3])
    grid = np.linspace(0.0, 1.0, 5)
    errors = {"MLA": torch.tensor([0.3, 0.1, 0.05, 0.1, 0.2]), "ALA": torch.tensor([0.3, 0.2, 0.15, 0.2, 0.4])}
    best = {"MLA": (0.5, 0.05), "ALA": (0.5, 0.15)}
    rhos = {"3": lt.etf_angle(3), "∞": math.pi / 2}
    sweep = {"3": {"MLA": (0.5, 0.2), "ALA": (0.5, 0.1)}, "∞": {"MLA": (0.4, 0.01), "ALA": (0.3, 0.08)}}
    fig = lt.plot_angles(counts, grid, errors, best, sweep, rhos, 0.5)
    left, middle, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_ydata(), errors["MLA"])
    np.testing.assert_allclose(left.lines[2].get_ydata(), errors["ALA"])
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    # one point per ordered pair of classes, at the 1vs1 angle and the implied angle of the best gamma
    off = ~torch.eye(4, dtype=torch.bool)
    np.testing.assert_allclose(middle.lines[1].get_xdata(), lt.onevsone_angles(counts, 0.5)[off])
    np.testing.assert_allclose(middle.lines[1].get_ydata(), lt.mla_angles(counts, 0.5)[off])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [0.2, 0.01])
    np.testing.assert_allclose(right.lines[1].get_ydata(), [0.1, 0.08])
    _close(fig)


def test_plot_collapse_draws_the_mean_curves_of_both_heads():
    def rep(scale):
        return {"hist": {"epoch": [1, 2, 3], "nc1": [scale, scale / 2, scale / 4], "etf_gap": [scale, 0.5, 0.1]}}

    reps = {"ETF head": [rep(1.0), rep(3.0)], "learned head": [rep(2.0), rep(2.0)]}
    fig = lt.plot_collapse(reps)
    nc1, gap = fig.axes
    np.testing.assert_allclose(nc1.lines[0].get_ydata(), [2.0, 1.0, 0.5])
    np.testing.assert_allclose(gap.lines[1].get_ydata(), [2.0, 0.5, 0.1])
    assert nc1.get_yscale() == "log" and [t.get_text() for t in nc1.get_legend().get_texts()] == list(reps)
    _close(fig)


def test_plot_spread_draws_every_class_at_the_long_tailed_counts():
    counts = np.array([40, 10, 2])
    reps = {
        "ETF head": [{"counts": counts, "spread_val": torch.tensor([0.1, 0.2, 0.4])}],
        "balanced": [{"counts": np.full(3, 17), "spread_val": torch.tensor([0.3, 0.3, 0.3])}],
    }
    fig = lt.plot_spread(reps, {"ETF head": np.array([-0.5]), "balanced": np.array([0.0])})
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_xdata(), counts)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.1, 0.2, 0.4])
    np.testing.assert_allclose(ax.lines[2].get_xdata(), counts)  # the balanced arm at the long-tailed counts
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [0.3, 0.3, 0.3])
    assert ax.get_xscale() == "log"
    _close(fig)


def test_plot_adjusters_draws_mean_bars_and_replicates():
    acc = {m: np.array([v, v + 0.02]) for m, v in (("none", 0.8), ("ala", 0.9), ("mla", 0.91), ("1vs1", 0.92))}
    agree = {m: np.array([v, v]) for m, v in (("none", 0.7), ("ala", 0.95), ("mla", 0.99))}
    names = {"none": "none", "ala": "ALA", "mla": "MLA", "1vs1": "1vs1"}
    fig = lt.plot_adjusters(acc, agree, names)
    left, right = fig.axes
    np.testing.assert_allclose(_bar_heights(left), [0.81, 0.91, 0.92, 0.93])
    np.testing.assert_allclose(_bar_heights(right), [0.7, 0.95, 0.99])
    np.testing.assert_allclose(left.lines[1].get_ydata(), acc["ala"])
    assert [t.get_text() for t in right.get_xticklabels()] == ["none", "ALA", "MLA"]
    _close(fig)


def test_plot_gamma_draws_the_group_curves_and_the_gammas():
    gammas = np.array([0.0, 0.5, 1.0])
    curves = {"head (3)": np.array([0.9, 0.9, 0.8]), "medium (4)": np.array([0.7, 0.8, 0.8])}
    fig = lt.plot_gamma(gammas, curves, (0.3, 0.6), 0.6, [0.5, 0.5, 1.0])
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curves["head (3)"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), curves["medium (4)"])
    verticals = [line.get_xdata()[0] for line in ax.lines[2:5]]
    assert verticals == [0.6, 0.5, 1.0]  # the predicted gamma, then each distinct tuned gamma
    _close(fig)


def test_plot_many_classes_draws_the_edges_and_the_agreement():
    edge = {10: {"tuned": np.array([-0.01, 0.01]), "oracle": np.array([0.0, 0.02])}}
    edge[100] = {"tuned": np.array([0.01, 0.03]), "oracle": np.array([0.02, 0.02])}
    agree = {
        10: {"mla": np.array([0.8]), "ala": np.array([0.7])},
        100: {"mla": np.array([0.9]), "ala": np.array([0.6])},
    }
    fig = lt.plot_many_classes(edge, agree)
    left, right = fig.axes
    np.testing.assert_allclose(_bar_heights(left), [0.0, 0.01, 0.02, 0.02])
    np.testing.assert_allclose(_bar_heights(right), [0.8, 0.7, 0.9, 0.6])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["K = 10", "K = 100"]
    _close(fig)
