"""Tests of lib.lpft: LP / FT / LoRA mechanics, metrics, and the NTK facts the chapter relies on."""

import copy
import functools

import pytest
import torch
from torch import nn

from lib.lpft import (
    DigitsTransferConfig,
    LinearHeadModel,
    LoRALinear,
    TextConfig,
    add_lora,
    feature_change,
    ft_ratio,
    head_norm,
    linear_probe,
    mlp_backbone,
    one_step_check,
    residuals,
    run_digits_transfer,
    run_text_methods,
    set_trainable,
    shift_and_noise,
    train,
    tuned_copy,
)
from lib.ntk import empirical_ntk, ntk_split

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0, width=6, C=3):
    torch.manual_seed(seed)
    return LinearHeadModel(mlp_backbone(4, width, 2), width, C)


def _data(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_linear_probe_changes_only_the_head():
    model = _model()
    before = copy.deepcopy(model)
    x, y = _data()
    losses = linear_probe(model, x, y, steps=50, lr=0.05)
    assert losses[-1] < losses[0]
    for (n, p0), p1 in zip(before.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(p0, p1) != n.startswith("head.")
    assert feature_change(before.backbone, model.backbone, x) == 0.0


def test_fine_tuning_moves_features_and_train_validates():
    model = _model(1)
    before = copy.deepcopy(model)
    x, y = _data()
    set_trainable(model, "ft")
    train(model, x, y, steps=5, lr=0.1)
    assert feature_change(before.backbone, model.backbone, x) > 0
    with pytest.raises(ValueError):
        train(model, x, y[:3], steps=1, lr=0.1)
    with pytest.raises(ValueError):
        train(model, x, y, steps=1, lr=0.1, optimizer="lbfgs")


def test_feature_change_by_hand():
    a, b = nn.Identity(), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        b.weight.copy_(2 * torch.eye(2))
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert feature_change(a, b, x) == pytest.approx((5.0 + 1.0) / 2)
    assert feature_change(a, b, x, relative=True) == pytest.approx(1.0)


def test_lora_is_zero_at_init_and_leaves_P_unchanged():
    model = _model(2).double()
    x, _ = _data(5)
    x = x.double()
    P, _ = ntk_split(model.backbone, model.head, x)
    lora = copy.deepcopy(model)
    names = add_lora(lora.backbone, lambda n: True, r=3, sigma=0.5)
    assert names == ["1", "3"]
    assert torch.equal(lora(x), model(x))
    lora_params = [n for n, _ in lora.backbone.named_parameters() if "lora_" in n]
    P_lora, F_lora = ntk_split(lora.backbone, lora.head, x, names=lora_params)
    assert torch.equal(P_lora, P)
    trainable = set_trainable(lora, "lora")
    assert len(trainable) == 2 + 2 * len(names)
    assert all(not p.requires_grad for m in lora.modules() if isinstance(m, LoRALinear) for p in m.base.parameters())


def test_lora_kernel_concentrates_on_sigma2_r_F():
    # F^LoRA = sum over adapted layers of g(x) g(x')^T (A x)^T (A x') at B = 0, and A^T A / (r sigma^2) -> I,
    # so for a large rank F^LoRA / (sigma^2 r) is close to F^FT over the adapted weights (Prop. 4.4).
    model = _model(3).double()
    x, _ = _data(3)
    x = x.double()
    _, F_ft = ntk_split(model.backbone, model.head, x, names=["1.weight", "3.weight"])
    r, sigma = 20_000, 0.7
    torch.manual_seed(0)
    lora = copy.deepcopy(model)
    add_lora(lora.backbone, ["1", "3"], r=r, sigma=sigma)
    names = [n for n, _ in lora.backbone.named_parameters() if "lora_" in n]
    F_lora = ntk_split(lora.backbone, lora.head, x, names=names)[1]
    rel = float((F_lora - sigma**2 * r * F_ft).norm() / (sigma**2 * r * F_ft).norm())
    assert rel < 0.05


def test_add_lora_errors():
    model = _model()
    with pytest.raises(ValueError):
        add_lora(model.backbone, ["0"], r=2, sigma=1.0)  # a Flatten, not a Linear
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(ValueError):
        set_trainable(model, "everything")


def test_one_step_linearisation_error_is_second_order():
    model = _model(4)
    x, y = _data(6)
    errs = one_step_check(model, x, y, etas=(1e-2, 1e-3))
    assert 8 < errs[0][1] / errs[1][1] < 12


def test_head_norm_residuals_and_ft_ratio():
    model = _model(5)
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    assert head_norm(model) == pytest.approx((3 * 6) ** 0.5)
    logits = torch.zeros(2, 3)
    d = residuals(logits, torch.tensor([0, 2]))
    assert torch.allclose(d.sum(1), torch.zeros(2), atol=1e-6) and d[0, 0] == pytest.approx(2 / 3)
    x, y = _data(4)
    theta = empirical_ntk(model, x)
    P, F = ntk_split(model.backbone, model.head, x)
    one_step, frob = ft_ratio(P, F, residuals(model(x).detach(), y))
    assert 0 <= one_step <= 1.5 and frob == pytest.approx(float(F.norm() / theta.norm()), rel=1e-4)


def test_shift_and_noise_and_config():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 0] = 1.0
    out = shift_and_noise(x, shift=2, noise=0.0)
    assert out[..., 2].sum() == 8 and out[..., 0].sum() == 0
    with pytest.raises(ValueError):
        shift_and_noise(torch.zeros(8, 8), 1, 0.0)
    cfg = DigitsTransferConfig.for_profile("quick", show=False)
    assert cfg.n_train > 0 and DigitsTransferConfig.for_profile("full", show=False).seeds >= 5
    with pytest.raises(ValueError):
        LinearHeadModel(nn.Identity(), 4, 1)


def test_head_norm_gradient_matches_finite_differences():
    import torch.nn.functional as Fn

    from lib.lpft import head_norm_gradient

    model = _model(6).double()
    x, y = _data(8)
    x = x.double()
    g = head_norm_gradient(model, x, y)
    V = model.head.weight.detach()
    eps = 1e-6
    for k in range(3):
        u = V[k] / V[k].norm()
        losses = []
        for s in (eps, -eps):
            W = V.clone()
            W[k] += s * u
            losses.append(float(Fn.cross_entropy(model.backbone(x).detach() @ W.T + model.head.bias.detach(), y)))
        assert g[k].item() == pytest.approx((losses[0] - losses[1]) / (2 * eps), rel=1e-5, abs=1e-9)


def test_tuned_copy_starts_from_the_given_head_and_leaves_it_alone():
    lp = _model(7)
    with torch.no_grad():
        lp.head.weight.mul_(30.0)
    before = copy.deepcopy(lp)
    seen = []
    out = tuned_copy(lp, lambda m: seen.append(m.head.weight.detach().clone()))
    assert torch.equal(seen[0], lp.head.weight) and torch.equal(out.head.bias, lp.head.bias)
    x, y = _data()
    set_trainable(lp, "ft")
    tuned = tuned_copy(lp, lambda m: train(m, x, y, steps=3, lr=0.1))
    assert not torch.equal(tuned.head.weight, lp.head.weight)
    assert all(torch.equal(a, b) for a, b in zip(before.parameters(), lp.parameters(), strict=True))


def _tiny_digits(**kw):
    base = dict(width=8, depth=1, pretrain_steps=5, n_train=40, n_val=30, lp_steps=30, ft_steps=0, head_scales=(1.0,))
    return DigitsTransferConfig.for_profile("quick", show=False, **{**base, **kw})


def test_digits_lp_ft_starts_from_the_lp_head():
    # with no FT step, LP-FT is LP: same head, same predictions, no feature change
    res = run_digits_transfer(_tiny_digits(), seed=0)
    assert res["head_norm_lpft"] == res["head_norm_lp"] > 2 * res["head_norm_init"]
    assert res["acc_id_LP-FT"] == res["acc_id_LP"] and res["fc_LP-FT"] == 0.0
    assert res["cal_LP-FT"] == res["cal_LP"]


def _text_split(seed=0, n=40, d_in=4, C=2):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_in, C, generator=g)
    out = {}
    for split, m in (("train", n), ("val", 30), ("test", 30), ("ood", 20)):
        x = torch.randn(m, d_in, generator=g)
        out[f"x_{split}"], out[f"y_{split}"] = x, (x @ w + 0.7 * torch.randn(m, C, generator=g)).argmax(1)
    return out


def _tiny_text(**kw):
    base = dict(n_ntk=12, ft_steps=0, batch_size=8, ft_lr=0.05, lpft_lr=0.02, lp_cv=3)
    return TextConfig.for_profile("quick", show=False, **{**base, **kw})


def test_text_methods_lp_is_cross_validated_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    backbone = mlp_backbone(4, 6, 1)
    d = _text_split()
    res = run_text_methods(backbone, d, _tiny_text(), seed=0, keep_models=True)
    lp = res["models"]["LP"]
    feats = backbone(d["x_train"]).detach().double().numpy()
    ref = LogisticRegression(C=res["lp_C"], max_iter=5000).fit(feats, d["y_train"].numpy())
    probs = lp(d["x_test"]).softmax(1).detach().double().numpy()
    ref_probs = ref.predict_proba(backbone(d["x_test"]).detach().double().numpy())
    assert abs(probs - ref_probs).max() < 1e-2  # two L-BFGS fits of one objective, each to tol 1e-4
    norms = [n for _, n in res["lp_norm_path"]]  # the L2 solution's norm grows with C = 1 / strength
    assert all(b >= a - 1e-6 for a, b in zip(norms, norms[1:])) and norms[-1] > 5 * norms[0]
    # no FT step: LP-FT is LP; the ablation arm has the LP head's direction and the initial norm
    assert res["head_norm_LP-FT"] == res["head_norm_lp"] and res["acc_id_LP-FT"] == res["acc_id_LP"]
    assert res["head_norm_LP-FT (init norm)"] == pytest.approx(res["head_norm_init"], rel=1e-5)
    assert max(res["norm_grad_lp"]) < 0  # at the regularised optimum CE still pushes the norm up


def test_text_methods_ft_ratio_is_taken_at_the_trained_model():
    torch.manual_seed(1)
    backbone = mlp_backbone(4, 6, 1)
    d = _text_split(1, C=3)
    res = run_text_methods(backbone, d, _tiny_text(ft_steps=25), seed=1, n_classes=3, keep_models=True)
    x, y = d["x_train"][:12], d["y_train"][:12]
    for name in ("FT", "LP-FT", "LP-FT (init norm)"):
        model = res["models"][name]
        P, F = ntk_split(model.backbone, model.head, x)
        with torch.no_grad():
            delta = residuals(model(x), y)
        assert res[f"ft_ratio_{name}"] == pytest.approx(ft_ratio(P, F, delta)[0], rel=1e-4)
        assert res[f"ft_ratio_{name}"] != pytest.approx(res[f"ft_ratio_start_{name}"], rel=1e-3)
    assert res["fc_FT"] > 0 and res["head_norm_LP-FT"] != res["head_norm_lp"]


class _FakeTokenizer:
    """Maps each word to an id in [5, 50) by its characters; pads with 0 (enough for a tiny BERT)."""

    def __call__(self, texts, padding=True, truncation=True, max_length=64, return_tensors="pt"):
        ids = [[5 + sum(map(ord, w)) % 45 for w in t.split()][:max_length] for t in texts]
        L = max(map(len, ids))
        return {
            "input_ids": torch.tensor([r + [0] * (L - len(r)) for r in ids]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (L - len(r)) for r in ids]),
        }


def test_a_glue_task_reaches_the_text_experiment(monkeypatch):
    # a verified 3-class task without an OOD split, run on a tiny BERT: the splits, the class count and
    # the empty OOD split go through `text_inputs` and `run_text_methods`
    from transformers import BertConfig, BertModel

    from lib import lpft, text_data

    g = torch.Generator().manual_seed(0)
    names = ("contradiction", "entailment", "neutral")
    tr = ([f"premise {i} [SEP] hypothesis {i % 7}" for i in range(50)], torch.randint(0, 3, (50,), generator=g))
    dev = ([f"dev premise {i} [SEP] no {i % 5}" for i in range(20)], torch.randint(0, 3, (20,), generator=g))
    fake = text_data.TextSplits(*tr, *dev, [], torch.zeros(0, dtype=torch.long), names, "cb (verified)")
    torch.manual_seed(0)
    conf = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    conf._attn_implementation = "eager"  # forward-mode AD (the FT ratio) needs eager attention, as in load_minilm
    bert = BertModel(conf, add_pooling_layer=False).eval()
    monkeypatch.setattr(lpft, "load_minilm", lambda device: (_FakeTokenizer(), bert))
    monkeypatch.setattr(text_data, "load_glue", lambda task, sha256=None: fake)
    for top in (0, 1):
        cfg = _tiny_text(task="cb", sha256="0" * 64, n_train=24, n_test=16, n_ood=10, top_layers=top, ft_steps=2)
        backbone, d, n_classes = lpft.text_inputs(cfg, seed=0, device="cpu")
        assert n_classes == 3 and d["x_train"].shape[0] == 24 and d["x_ood"].shape[0] == 0
        assert d["x_val"].shape[0] == d["x_test"].shape[0] == 8
        res = run_text_methods(backbone, d, cfg, seed=0, n_classes=n_classes)
        assert res["acc_ood_LP-FT"] != res["acc_ood_LP-FT"]  # NaN: no OOD split
        assert 0.0 <= res["acc_id_LP-FT"] <= 1.0


def test_minilm_encoder_ignores_padding_columns_and_runs_under_vmap():
    # dropping all-padding columns changes no feature; under vmap (the NTK) nothing is dropped
    from transformers import BertConfig, BertModel

    from lib.lpft import MiniLMEncoder
    from lib.ntk import empirical_ntk

    torch.manual_seed(0)
    conf = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    conf._attn_implementation = "eager"
    enc = MiniLMEncoder(BertModel(conf, add_pooling_layer=False).eval())
    ids = torch.randint(1, 50, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    x = torch.stack([ids * mask, mask], dim=1)
    padded = torch.cat([x, torch.zeros(3, 2, 4, dtype=torch.long)], dim=2)
    with torch.no_grad():
        assert torch.allclose(enc(padded), enc(x), atol=1e-6)
        assert torch.allclose(enc(x[:1]), enc(x)[:1], atol=1e-6)
    model = LinearHeadModel(enc, 8, 2)
    theta = empirical_ntk(model, padded, names=["head.weight"])
    with torch.no_grad():
        phi = enc(x)
    assert torch.allclose(theta[:, :, 0, 0], phi @ phi.T, atol=1e-5)


# ---------------------------------------------------------------- knock-outs (DESIGN.md "Knock-out tests")
# Each claim's measurement at tiny size, with the mechanism it names and without it: the chapter's check (at its
# null) holds with the mechanism and fails without it.

_KNOCKOUT_SIZES = dict(width=32, depth=1, pretrain_steps=100, n_train=60, n_val=60, lp_steps=300, ft_steps=100, n_ntk=8)


@functools.cache
def _knockout_run(**switches):
    cfg = DigitsTransferConfig.for_profile(
        "quick", show=False, head_scales=(0.3, 1.0, 3.0), **_KNOCKOUT_SIZES, **switches
    )
    return run_digits_transfer(cfg, seed=0)


def test_knockout_cross_entropy_grows_the_head_by_an_order_of_magnitude():
    # claim: LP with CE grows the head norm 10x or more (null 10); the squared loss has a finite minimiser
    def growth(res):
        return res["head_norm_lp"] / res["head_norm_init"]

    assert growth(_knockout_run()) >= 10.0
    assert growth(_knockout_run(lp_loss="mse")) < 10.0


def test_knockout_the_lp_head_keeps_the_features_in_place():
    # claim: feature change FT / LP-FT >= 1; the LP head with its class rows permuted (same norm, wrong classes,
    # large residuals) moves the features more than FT
    def ratio(res):
        return res["fc_FT"] / res["fc_LP-FT"]

    assert ratio(_knockout_run()) >= 1.0
    assert ratio(_knockout_run(lpft_head="permuted")) < 1.0


def test_knockout_a_larger_accurate_head_moves_the_features_less():
    # claim: Spearman(head scale, feature change) <= 0; rescaling a random (inaccurate) head instead, the
    # larger head moves the features more
    from scipy.stats import spearmanr

    def rho(res):
        cs, fcs = zip(*res["sweep"], strict=True)
        return spearmanr(cs, fcs)[0]

    assert rho(_knockout_run()) <= 0.0
    assert rho(_knockout_run(lpft_head="random")) > 0.0


def test_knockout_the_lp_head_makes_f_carry_the_step():
    # claim: the FT ratio of LP-FT is above FT's; from a zero head F = V Theta^phi V^T vanishes at the start
    def gap(res):
        return res["ft_ratio_LP-FT"] - res["ft_ratio_FT"]

    assert gap(_knockout_run()) >= 0.0
    assert gap(_knockout_run(lpft_head="zero")) < 0.0
    model = _model(8)
    x, y = _data(6)
    with torch.no_grad():
        model.head.weight.zero_()
    P, F = ntk_split(model.backbone, model.head, x)
    assert ft_ratio(P, F, residuals(model(x).detach(), y))[0] == 0.0 < 0.5


def test_knockout_the_large_head_makes_lp_ft_over_confident():
    # claim: fitted temperature of LP-FT / of FT at its larger rate >= 1; the LP head rescaled to the initial norm
    # (same direction and accuracy) is not over-confident
    def ratio(res):
        return res["cal_LP-FT"]["T"] / res["cal_FT (larger rate)"]["T"]

    assert ratio(_knockout_run()) >= 1.0
    assert ratio(_knockout_run(lpft_head="init-norm")) < 1.0


def test_knockouts_of_lora_at_initialisation():
    # claims: P^LoRA = P^FT (exact), and the error of sigma^2 r F^FT falls like r^(-1/2) (slope in [-0.78, -0.22],
    # error at the largest rank <= 0.5). A nonzero B moves the features (P changes); a shared row of A is no
    # random projection (no concentration)
    import numpy as np

    from lib.lpft import lora_check

    cfg = DigitsTransferConfig.for_profile("quick", show=False, **_KNOCKOUT_SIZES, lora_ranks=(1, 4, 16, 64, 256))

    def measure(init):
        out = lora_check(cfg, seed=0, init=init)
        ranks, errs = map(np.array, zip(*out["errors"], strict=True))
        return out["p_max_abs_diff"], np.polyfit(np.log(ranks), np.log(errs), 1)[0], errs[-1]

    p_diff, slope, err = measure("standard")
    assert p_diff == 0.0 and -0.78 <= slope <= -0.22 and err <= 0.5
    assert measure("nonzero-B")[0] > 0.0
    _, slope, err = measure("shared-A")
    assert not -0.78 <= slope <= -0.22 and err > 0.5


def test_lpft_start_knockouts_by_hand():
    from lib.lpft import lpft_start

    lp = _model(9)
    with torch.no_grad():
        lp.head.weight.mul_(20.0)
    assert lpft_start(lp, "lp", 1.0) is lp
    assert head_norm(lpft_start(lp, "zero", 1.0)) == 0.0
    assert head_norm(lpft_start(lp, "init-norm", 1.5)) == pytest.approx(1.5, rel=1e-6)
    scaled = lpft_start(lp, "init-norm", 1.5)
    assert torch.allclose(scaled.head.weight / 1.5, lp.head.weight / head_norm(lp), atol=1e-6)
    permuted = lpft_start(lp, "permuted", 1.0)
    assert torch.equal(permuted.head.weight[1], lp.head.weight[0]) and head_norm(permuted) == head_norm(lp)
    assert torch.equal(
        lpft_start(lp, "random", 1.0, seed=3).head.weight, lpft_start(lp, "random", 1.0, seed=3).head.weight
    )
    assert all(torch.equal(a, b) for a, b in zip(lp.backbone.parameters(), permuted.backbone.parameters(), strict=True))
    with pytest.raises(ValueError):
        lpft_start(lp, "none", 1.0)


def test_squared_loss_lp_reaches_the_least_squares_head():
    # the knock-out loss: LP with loss="mse" converges to the least-squares head (closed form), a finite one
    torch.manual_seed(10)
    model = LinearHeadModel(nn.Identity(), 4, 3)
    x, y = _data(40, seed=3)
    linear_probe(model, x, y, steps=2000, lr=0.02, loss="mse")
    phi = torch.cat([x, torch.ones(40, 1)], 1).double()
    target = torch.nn.functional.one_hot(y, 3).double()
    W = torch.linalg.lstsq(phi, target).solution.float()
    assert torch.allclose(model.head.weight, W[:-1].T, atol=1e-3) and torch.allclose(model.head.bias, W[-1], atol=1e-3)


# Figures: each draws the values it is given, in the expected panels.


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def test_plot_decomposition_draws_both_kernels_and_the_step_errors():
    from lib.lpft import plot_decomposition
    from lib.ntk import kernel_matrix

    gen = torch.Generator().manual_seed(0)
    dec = {"P": torch.randn(3, 3, 2, 2, generator=gen), "F": 10 * torch.randn(3, 3, 2, 2, generator=gen)}
    dec["one_step"] = [(1e-2, 1e-3), (1e-3, 1e-4), (1e-4, 1e-5)]
    fig = plot_decomposition(dec)
    axes = [ax for ax in fig.axes if ax.images]  # the two heat maps (their colour bars are axes too)
    assert len(axes) == 2 and len(fig.axes) == 5
    for ax, name in zip(axes, ("P", "F"), strict=True):
        assert (ax.images[0].get_array() == kernel_matrix(dec[name]).numpy()).all()
    step = fig.axes[2]
    assert step.get_xscale() == "log"
    assert list(step.lines[0].get_ydata()) == [1e-3, 1e-4, 1e-5]
    _close(fig)


def test_plot_transfer_draws_the_four_panels():
    from lib.lpft import plot_transfer

    first_run = {"lp_head_norms": [1.0, 2.0, 4.0], "head_norm_ft": 1.5}
    accuracy = {"LP": [0.8, 0.6], "FT": [0.7, 0.5], "FT (larger rate)": [0.85, 0.6], "LP-FT": [0.9, 0.7]}
    fig = plot_transfer(first_run, {"FT": 3.0, "LP-FT": 1.0}, [0.3, 1.0, 3.0], [5.0, 2.0, 1.0], accuracy)
    norms, change, sweep, acc = fig.axes
    assert list(norms.lines[0].get_ydata()) == [1.0, 2.0, 4.0] and norms.lines[1].get_ydata()[0] == 1.5
    assert _bar_heights(change) == [3.0, 1.0]
    assert list(sweep.lines[0].get_ydata()) == [5.0, 2.0, 1.0] and sweep.get_xscale() == "log"
    assert _bar_heights(acc) == [0.8, 0.6, 0.7, 0.5, 0.85, 0.6, 0.9, 0.7]
    _close(fig)


def test_plot_calibration_draws_before_and_after_temperature_scaling():
    from lib.lpft import plot_calibration

    calibration = {
        "FT": {"T": 0.5, "ece": 0.2, "ece_ts": 0.05, "mce": 0.4, "mce_ts": 0.1},
        "LP-FT": {"T": 2.0, "ece": 0.1, "ece_ts": 0.03, "mce": 0.3, "mce_ts": 0.2},
    }
    fig = plot_calibration(calibration)
    ece, mce = fig.axes
    assert _bar_heights(ece) == [0.2, 0.1, 0.05, 0.03]
    assert _bar_heights(mce) == [0.4, 0.3, 0.1, 0.2]
    assert ece.get_legend() is not None and mce.get_legend() is None
    _close(fig)


def test_plot_lora_draws_the_errors_and_the_guide():
    from lib.lpft import plot_lora

    fig = plot_lora([1, 4, 16], [0.8, 0.4, 0.2])
    (ax,) = fig.axes
    assert list(ax.lines[0].get_ydata()) == [0.8, 0.4, 0.2]
    assert list(ax.lines[1].get_ydata()) == pytest.approx([0.8, 0.4, 0.2])  # r^(-1/2) from the first point
    _close(fig)


def test_plot_minilm_draws_the_path_the_feature_change_and_the_mce():
    from lib.lpft import plot_minilm

    arms = ["LP", "FT", "LP-FT"]
    text = {"lp_norm_path": [(0.1, 0.5), (1.0, 2.0), (10.0, 9.0)], "head_norm_init": 0.8, "lp_C": 1.0}
    text.update({"fc_FT": 2.0, "fc_LP-FT": 0.5})
    text.update({f"cal_{m}": {"mce": 0.3 + k / 10, "mce_ts": 0.1 + k / 10} for k, m in enumerate(arms)})
    fig = plot_minilm(text, arms)
    path, change, mce = fig.axes
    assert list(path.lines[0].get_ydata()) == [0.5, 2.0, 9.0]
    assert path.lines[1].get_ydata()[0] == 0.8 and path.lines[2].get_xdata()[0] == 1.0
    assert _bar_heights(change) == [2.0, 0.5]
    assert _bar_heights(mce) == pytest.approx([0.3, 0.4, 0.5, 0.1, 0.2, 0.3])
    _close(fig)
