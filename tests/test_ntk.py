"""Tests of lib.ntk: empirical NTK against finite differences and a hand-computed linear model."""

import pytest
import torch
from torch import nn

from lib.ntk import apply_kernel, empirical_ntk, feature_ntk, jacobian, kernel_matrix, ntk_split, split_apply


def _small_net(seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Linear]:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh())
    head = nn.Linear(4, 2)
    return nn.Sequential(backbone, head).double(), backbone.double(), head.double()


def test_jacobian_matches_finite_differences():
    model, _, _ = _small_net()
    x = torch.randn(3, 3, dtype=torch.float64)
    jac = jacobian(model, x)
    name, p = "0.0.weight", dict(model.named_parameters())["0.0.weight"]
    eps = 1e-6
    for idx in [(0, 0), (2, 1), (4, 2)]:
        with torch.no_grad():
            p[idx] += eps
            up = model(x)
            p[idx] -= 2 * eps
            down = model(x)
            p[idx] += eps
        fd = (up - down) / (2 * eps)
        assert torch.allclose(jac[name][:, :, idx[0], idx[1]], fd, atol=1e-8)


def test_ntk_of_linear_model_by_hand():
    # f(x) = W x + b: Theta(x, x') = (x . x' + 1) I_C exactly.
    torch.manual_seed(1)
    model = nn.Linear(4, 3).double()
    x1, x2 = torch.randn(5, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    theta = empirical_ntk(model, x1, x2)
    expected = (x1 @ x2.T + 1)[:, :, None, None] * torch.eye(3, dtype=torch.float64)
    assert theta.shape == (5, 2, 3, 3)
    assert torch.allclose(theta, expected, atol=1e-12)


def test_decomposition_P_plus_F_equals_ntk():
    model, backbone, head = _small_net(2)
    x = torch.randn(4, 3, dtype=torch.float64)
    theta = empirical_ntk(model, x)
    P, F = ntk_split(backbone, head, x)
    assert float((theta - P - F).norm() / theta.norm()) < 1e-12


def test_F_equals_V_feature_ntk_Vt_and_scales_with_head_squared():
    model, backbone, head = _small_net(3)
    x = torch.randn(3, 3, dtype=torch.float64)
    P, F = ntk_split(backbone, head, x)
    V = head.weight.detach()
    F_direct = torch.einsum("ch,nmhk,dk->nmcd", V, feature_ntk(backbone, x), V)
    assert torch.allclose(F, F_direct, atol=1e-12)
    with torch.no_grad():
        head.weight.mul_(2.5)
    P2, F2 = ntk_split(backbone, head, x)
    assert torch.allclose(F2, 2.5**2 * F, rtol=1e-12, atol=1e-14)
    assert torch.equal(P2, P)


def test_float64_option_and_parameter_subset():
    model, _, _ = _small_net(4)
    model = model.float()
    x = torch.randn(2, 3)
    full = empirical_ntk(model, x, dtype=torch.float64)
    assert full.dtype == torch.float64 and next(model.parameters()).dtype == torch.float32
    head_only = empirical_ntk(model, x, names=["1.weight", "1.bias"], dtype=torch.float64)
    with torch.no_grad():
        phi = model[0](x).double()
    assert torch.allclose(head_only, (phi @ phi.T + 1)[:, :, None, None] * torch.eye(2, dtype=torch.float64))


def test_kernel_helpers_and_errors():
    theta = torch.randn(3, 4, 2, 2)
    delta = torch.randn(4, 2)
    mat = kernel_matrix(theta)
    assert mat.shape == (6, 8)
    assert torch.allclose(apply_kernel(theta, delta).reshape(-1), mat @ delta.reshape(-1), atol=1e-5)
    with pytest.raises(ValueError):
        apply_kernel(theta, torch.randn(3, 2))
    with pytest.raises(ValueError):
        kernel_matrix(torch.randn(3, 3))
    model, backbone, head = _small_net()
    with pytest.raises(ValueError):
        empirical_ntk(model, torch.randn(2, 3, dtype=torch.float64), names=["nope"])
    with pytest.raises(TypeError):
        ntk_split(backbone, nn.Identity(), torch.randn(2, 3, dtype=torch.float64))


def test_split_apply_equals_the_kernels_applied_to_delta():
    _, backbone, head = _small_net(5)
    x = torch.randn(6, 3, dtype=torch.float64)
    delta = torch.randn(6, 2, dtype=torch.float64)
    P, F = ntk_split(backbone, head, x)
    step_p, step_f = split_apply(backbone, head, x, delta)
    assert torch.allclose(step_p, apply_kernel(P, delta), atol=1e-12)
    assert torch.allclose(step_f, apply_kernel(F, delta), atol=1e-12)
    sub = ["2.weight", "2.bias"]  # a subset of the backbone parameters, as for LoRA
    assert torch.allclose(
        split_apply(backbone, head, x, delta, sub)[1],
        apply_kernel(ntk_split(backbone, head, x, names=sub)[1], delta),
        atol=1e-12,
    )
    with pytest.raises(ValueError):
        split_apply(backbone, head, x, delta[:3])
