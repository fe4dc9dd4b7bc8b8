"""Empirical neural tangent kernels with `torch.func`, and the split of a linear-head model's NTK.

Explained in chapter "Linear probing then fine-tuning, from the NTK" (`chapters/lp-ft-ntk`).

For a model with outputs in R^C and parameters theta, the empirical NTK of two inputs is the C x C
matrix Theta(x, x') = J(x) J(x')^T with J(x) = d f(x) / d theta. For a model f(x) = V phi(x) + b it
splits exactly into a part that only sees the pre-trained features and a part that goes through the
backbone's Jacobian (`ntk_split`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap


def select_params(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Return `{name: parameter}` (detached) for `names`, or for every parameter when None.

    Explained in chapter lp-ft-ntk. Unknown names raise a `ValueError` that lists the valid ones.
    """
    all_params = dict(model.named_parameters())
    if names is None:
        return {k: v.detach() for k, v in all_params.items()}
    names = list(names)
    missing = [n for n in names if n not in all_params]
    if missing:
        raise ValueError(f"model has no parameter(s) {missing}; it has {sorted(all_params)}")
    if not names:
        raise ValueError("names is empty: the NTK of no parameters is zero; pass None for all of them")
    return {k: all_params[k].detach() for k in names}


def jacobian(model: nn.Module, x: torch.Tensor, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Return per-example Jacobians `{name: (N, C, *param.shape)}` of `model` at the inputs `x` (N, ...).

    Explained in chapter lp-ft-ntk. The model must map a batch (N, ...) to outputs (N, C) and treat
    examples independently (no batch norm in training mode).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise TypeError("x must be a tensor with a leading batch dimension")
    params = select_params(model, names)
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in params}

    def f_single(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        """Return f(x_i) for one example, shape (C,), as a function of the selected parameters."""
        out = functional_call(model, {**frozen, **buffers, **p}, (xi.unsqueeze(0),))
        if out.dim() != 2:
            raise ValueError(f"model must return (N, C) outputs, got shape {tuple(out.shape)}")
        return out.squeeze(0)

    return vmap(jacrev(f_single), in_dims=(None, 0))(params, x)


def _flat(jac: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """Return the Jacobians concatenated into one (N, C, P) tensor."""
    return torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=2)


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    names: Iterable[str] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Return the empirical NTK of shape (N1, N2, C, C): Theta[n, m] = J(x1_n) J(x2_m)^T.

    Explained in chapter lp-ft-ntk. `names` restricts theta to those parameters; `dtype=torch.float64`
    computes in double precision on a copy of the model (the model itself is not changed).
    """
    if dtype is not None:
        model = _copy_as(model, dtype)
        x1 = x1.to(dtype) if x1.is_floating_point() else x1
        x2 = x2.to(dtype) if x2 is not None and x2.is_floating_point() else x2
    j1 = _flat(jacobian(model, x1, names), x1.shape[0])
    j2 = j1 if x2 is None else _flat(jacobian(model, x2, names), x2.shape[0])
    return torch.einsum("ncp,mdp->nmcd", j1, j2)


def _copy_as(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Return a deep copy of `model` with floating parameters and buffers cast to `dtype`."""
    return copy.deepcopy(model).to(dtype)


class _Projected(nn.Module):
    """x -> V phi(x) with V fixed (a buffer): the head without its bias, on top of the backbone."""

    def __init__(self, backbone: nn.Module, V: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("V", V.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return V phi(x), shape (N, C)."""
        return self.backbone(x) @ self.V.T


def ntk_split(
    backbone: nn.Module,
    head: nn.Linear,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    names: Iterable[str] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (P, F), each (N1, N2, C, C): the pre-train-effective and FT-effective parts of the NTK.

    Explained in chapter lp-ft-ntk. For f(x) = V phi(x) + b with theta = (V, b, backbone params):
    P(x, x') = (<phi(x), phi(x')> + 1) I_C and F(x, x') = V Theta^phi(x, x') V^T, where Theta^phi is
    the backbone's (feature) NTK over the backbone parameters `names` (all of them when None).
    F is computed as the NTK of x -> V phi(x) (C outputs, not h), which is cheaper and equal.
    With `head.bias` absent the `+ 1` is dropped.
    """
    if not isinstance(head, nn.Linear):
        raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
    if dtype is not None:
        backbone, head = _copy_as(backbone, dtype), _copy_as(head, dtype)
        x1 = x1.to(dtype) if x1.is_floating_point() else x1
        x2 = x2.to(dtype) if x2 is not None and x2.is_floating_point() else x2
    with torch.no_grad():
        phi1 = backbone(x1)
        phi2 = phi1 if x2 is None else backbone(x2)
    if phi1.shape[1] != head.in_features:
        raise ValueError(f"backbone gives {phi1.shape[1]} features but head expects {head.in_features}")
    eye = torch.eye(head.out_features, dtype=phi1.dtype, device=phi1.device)
    # [lp-ft-ntk-thm-decomposition]: P(x, x') = (<phi(x), phi(x')> + 1) I_C; F(x, x') = V Theta^phi V^T
    gram = phi1 @ phi2.T + (1.0 if head.bias is not None else 0.0)
    P = gram[:, :, None, None] * eye
    names = list(select_params(backbone, names))
    F = empirical_ntk(_Projected(backbone, head.weight), x1, x2, [f"backbone.{n}" for n in names])
    return P, F


def split_apply(
    backbone: nn.Module,
    head: nn.Linear,
    x: torch.Tensor,
    delta: torch.Tensor,
    names: Iterable[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (sum_i P(x_n, x_i) delta_i, sum_i F(x_n, x_i) delta_i), each (N, C), without forming P or F.

    Explained in chapter lp-ft-ntk. These are the two parts of the first gradient step's logit change
    (Prop. 4.1, Eq. 1). F's part is J (J^T delta) with J the Jacobian of x -> V phi(x) over the backbone
    parameters `names` (all when None): one vector-Jacobian product, then one Jacobian-vector product,
    so memory stays at one copy of the parameters even for a Transformer.
    """
    if not isinstance(head, nn.Linear):
        raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
    if delta.shape != (x.shape[0], head.out_features):
        raise ValueError(f"delta must have shape {(x.shape[0], head.out_features)}, got {tuple(delta.shape)}")
    params = select_params(backbone, names)
    rest = {k: v.detach() for k, v in backbone.named_parameters() if k not in params}
    rest.update({k: v.detach() for k, v in backbone.named_buffers()})
    V = head.weight.detach()

    def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return V phi(x), shape (N, C), as a function of the selected backbone parameters."""
        return functional_call(backbone, {**rest, **p}, (x,)) @ V.T

    with torch.no_grad():
        phi = backbone(x)
    # P(x_n, x_i) = (<phi(x_n), phi(x_i)> + 1) I_C
    step_p = (phi @ phi.T + (1.0 if head.bias is not None else 0.0)) @ delta.to(phi.dtype)
    out, pullback = vjp(f, params)
    (g,) = pullback(delta.to(out.dtype))  # g = sum_i J(x_i)^T delta_i
    # F(x_n, x_i) = J(x_n) J(x_i)^T, so sum_i F(x_n, x_i) delta_i = J(x_n) g
    _, step_f = jvp(f, (params,), (g,))
    return step_p, step_f.detach()


def feature_ntk(
    backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, names: Iterable[str] | None = None
) -> torch.Tensor:
    """Return Theta^phi (N1, N2, h, h): the NTK of the feature map itself (costly for large h)."""
    return empirical_ntk(backbone, x1, x2, names)


def kernel_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Return the (N1*C, N2*C) matrix of an (N1, N2, C, C) kernel (example-major ordering)."""
    if theta.dim() != 4:
        raise ValueError(f"expected an (N1, N2, C, C) kernel, got shape {tuple(theta.shape)}")
    n1, n2, c1, c2 = theta.shape
    return theta.permute(0, 2, 1, 3).reshape(n1 * c1, n2 * c2)


def apply_kernel(theta: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Return sum_i Theta(x_n, x_i) delta_i for each n: shape (N1, C), for delta of shape (N2, C)."""
    if delta.shape != (theta.shape[1], theta.shape[3]):
        want = (theta.shape[1], theta.shape[3])
        raise ValueError(f"delta must have shape {want}, got {tuple(delta.shape)}")
    return torch.einsum("nmcd,md->nc", theta, delta)
