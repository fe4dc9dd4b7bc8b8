"""Tests of lib.lpft: LP / FT / LoRA mechanics, metrics, and the NTK facts the chapter relies on."""

import copy

import pytest
import torch
from torch import nn

from lib.lpft import (
    DigitsTransferConfig,
    LinearHeadModel,
    LoRALinear,
    add_lora,
    feature_change,
    ft_ratio,
    head_norm,
    linear_probe,
    mlp_backbone,
    one_step_check,
    residuals,
    set_trainable,
    shift_and_noise,
    train,
)
from lib.ntk import empirical_ntk, ntk_split


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
