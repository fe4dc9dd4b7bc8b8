"""End-to-end and layer-wise training of one network, with information planes of every layer.

Explained in chapter "e2e-information-bottleneck" (Sakamoto & Sato, TMLR 2024). One network
description (`NetSpec`) builds a `LayeredNet`: blocks T_l = f_l(T_{l-1}) (T_0 = X), each with a local
linear head g_l. The same network is trained in one of four modes:

- `"e2e"`: the cross-entropy of the last head only, back-propagated through every block;
- `"layerwise"`: the sum of every block's local cross-entropy, each block's *input detached*, so block l
  is trained only by its own head (all blocks in one pass: the simultaneous variant);
- `"sequential"`: layer-wise, one block after the other, each for an equal share of the steps;
- `"deep_sup"`: the sum of the local losses *without* detaching (deep supervision: the ablation arm that
  keeps the local heads but lets every loss reach every earlier block).

Knock-out: `train(..., detach=False)` (and `local_losses(..., detach=False)`) removes the detaching from the
layer-wise modes, which makes `"layerwise"` compute exactly what `"deep_sup"` computes.

During training the representations of a fixed probe set are captured at chosen steps and turned into
the information plane (nHSIC(X; T_l), nHSIC(Y; T_l)) of every layer with `lib.hsic`, by one or more
*instruments* (`INSTRUMENTS`): the chapter's unbiased CKA, and the paper's NOCCO-type estimator with a
data-scaled bandwidth or with the official code's defaults.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib import hsic, plotting
from lib.cnn import accuracy
from lib.config import Config
from lib.progress import trange
from lib.runtime import one_thread

MODES = ("e2e", "layerwise", "sequential", "deep_sup")
LABELS = {
    "e2e": "E2E",
    "layerwise": "layer-wise",
    "sequential": "sequential layer-wise",
    "deep_sup": "deep supervision",
}
"""Display names of the training modes."""
INSTRUMENTS = {
    "cka": "CKA (unbiased, median σ)",
    "nocco": "NOCCO (median σ)",
    "official": "NOCCO (official defaults)",
}
"""Dependence measures of an information plane: the chapter's unbiased CKA with a Gaussian kernel at the median
bandwidth; the paper's normalised (NOCCO-type) estimator tr(R_T R_X) with the same data-scaled kernel and the
label kernel 1[y = y']; and that estimator with the official code's kernel (sigma = 5, unsquared distance)."""
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class NetSpec:
    """A network description: `kind` "mlp" (Linear+ReLU blocks) or "cnn1d" (Conv1d+ReLU blocks on 1-channel signals).

    `activation` "relu" (default) or "tanh" replaces the ReLU of every block.

    `in_dim` is the number of input features (mlp) or the signal length (cnn1d); `widths` the units or
    channels of blocks 1..L; `pool_after` (cnn1d) the blocks followed by 2x average pooling; `head` (cnn1d)
    "flatten" (a linear map of the whole feature map, as in the official code) or "gap" (global average
    pooling, then linear: a weaker local head).
    """

    kind: str
    in_dim: int
    widths: tuple[int, ...]
    num_classes: int = 10
    pool_after: tuple[int, ...] = ()
    kernel_size: int = 5
    head: str = "flatten"
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; use one of {tuple(ACTIVATIONS)}")
        if self.head not in ("flatten", "gap"):
            raise ValueError(f"unknown head {self.head!r}; use 'flatten' or 'gap'")
        if self.kind not in ("mlp", "cnn1d"):
            raise ValueError(f"unknown network kind {self.kind!r}; use 'mlp' or 'cnn1d'")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding), got {self.kernel_size}")


class LayeredNet(nn.Module):
    """Blocks f_1..f_L with local linear heads g_1..g_L; `forward` returns g_L(T_L), the network's logits."""

    def __init__(self, blocks: Sequence[nn.Module], heads: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(blocks) != len(heads) or not blocks:
            raise ValueError("a LayeredNet needs as many heads as blocks (at least one)")
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList(heads)

    @property
    def depth(self) -> int:
        """Number of blocks L."""
        return len(self.blocks)

    def representations(self, x: torch.Tensor, *, detach_inputs: bool = False) -> list[torch.Tensor]:
        """Return [T_1, ..., T_L]; with `detach_inputs`, block l sees T_{l-1} cut from the graph (layer-wise)."""
        reps = []
        for block in self.blocks:
            x = block(x.detach() if detach_inputs else x)
            reps.append(x)
        return reps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits g_L(T_L)."""
        return self.heads[-1](self.representations(x)[-1])


def build_net(spec: NetSpec) -> LayeredNet:
    """Return the `LayeredNet` that `spec` describes (fresh random weights from torch's current seed)."""
    blocks, heads = [], []
    act = ACTIVATIONS[spec.activation]
    if spec.kind == "mlp":
        prev = spec.in_dim
        for w in spec.widths:
            blocks.append(nn.Sequential(nn.Linear(prev, w), act()))
            heads.append(nn.Linear(w, spec.num_classes))
            prev = w
    else:
        prev, length = 1, spec.in_dim
        for i, w in enumerate(spec.widths, start=1):
            layers: list[nn.Module] = [nn.Conv1d(prev, w, spec.kernel_size, padding=spec.kernel_size // 2), act()]
            if i in spec.pool_after:
                layers.append(nn.AvgPool1d(2))
                length //= 2
            blocks.append(nn.Sequential(*layers))
            if spec.head == "flatten":
                heads.append(nn.Sequential(nn.Flatten(), nn.Linear(w * length, spec.num_classes)))
            else:
                heads.append(nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(w, spec.num_classes)))
            prev = w
    return LayeredNet(blocks, heads)


def local_losses(
    net: LayeredNet, x: torch.Tensor, y: torch.Tensor, mode: str, *, detach: bool = True, local_heads: bool = True
) -> list[torch.Tensor]:
    """Return the losses that `mode` trains on for one batch (one per block, or the last head's alone).

    Knock-outs of the layer-wise modes: `detach=False`, their block inputs are no longer detached;
    `local_heads=False`, the losses of the heads g_1..g_{L-1} are dropped (only the last head's loss is
    returned, still on detached inputs unless `detach=False`).
    """
    # [e2e-ib-def-training]: E2E, one loss l_CE(g_L(T_L), Y) over every parameter
    if mode == "e2e":
        return [F.cross_entropy(net(x), y)]
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; choose one of {MODES}")
    # layer-wise: l_CE(g_l(f_l(sg(T_{l-1}))), Y) for every l; deep supervision: the same without sg
    reps = net.representations(x, detach_inputs=detach and mode in ("layerwise", "sequential"))
    if not local_heads:
        return [F.cross_entropy(net.heads[-1](reps[-1]), y)]
    return [F.cross_entropy(head(t), y) for head, t in zip(net.heads, reps)]


@dataclass
class TrainRecord:
    """What `train` measured: capture steps, nHSIC of every layer with X and Y, accuracy, local losses.

    `planes[instrument]` holds `(x, y)`: [capture][layer] nHSIC(X; T_l) and nHSIC(Y; T_l) by that instrument
    (see `INSTRUMENTS`); `nx`, `ny` are the chapter's CKA.
    """

    mode: str
    steps: list[int] = field(default_factory=list)
    planes: dict[str, tuple[list[list[float]], list[list[float]]]] = field(default_factory=dict)
    test_acc: list[float] = field(default_factory=list)  # accuracy of the last head on the test set
    losses: list[float] = field(default_factory=list)  # training loss (sum over local losses) per epoch

    @property
    def nx(self) -> list[list[float]]:
        """[capture][layer] nHSIC(X; T_l) by the chapter's CKA."""
        return self.planes["cka"][0]

    @property
    def ny(self) -> list[list[float]]:
        """[capture][layer] nHSIC(Y; T_l) by the chapter's CKA."""
        return self.planes["cka"][1]

    def arrays(self, instrument: str = "cka") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return `(steps, x, y)` of one instrument as arrays of shapes (T,), (T, L), (T, L)."""
        x, y = self.planes[instrument]
        return np.array(self.steps), np.array(x), np.array(y)


def capture_steps(total: int, n: int) -> list[int]:
    """Return about `n` capture steps in [0, total], geometrically spaced (dense early, where planes move fast)."""
    if total < 1 or n < 2:
        raise ValueError(f"need total >= 1 and n >= 2, got total={total}, n={n}")
    steps = np.unique(np.round(np.geomspace(1, total, n - 1)).astype(int))
    return [0, *steps.tolist()]


@torch.no_grad()
def probe_representations(net: LayeredNet, x_probe: torch.Tensor) -> list[torch.Tensor]:
    """Return [T_1, ..., T_L] of the probe inputs as float64 matrices (m, d_l), computed in eval mode."""
    was_training = net.training
    net.eval()
    reps = [t.reshape(t.shape[0], -1).double() for t in net.representations(x_probe)]
    net.train(was_training)
    return reps


def information_plane_point(
    net: LayeredNet, Kx: torch.Tensor, Ky: torch.Tensor, x_probe: torch.Tensor, rule: str | float = "median"
) -> tuple[list[float], list[float]]:
    """Return ([nHSIC(X; T_l)]_l, [nHSIC(Y; T_l)]_l) of every layer on the probe set, in one batched call each."""
    Kt = hsic.layer_grams(probe_representations(net, x_probe), rule)  # (L, m, m)
    return hsic.nhsic(Kt, Kx).tolist(), hsic.nhsic(Kt, Ky).tolist()


def paper_plane_point(
    net: LayeredNet, Rx: torch.Tensor, Ry: torch.Tensor, x_probe: torch.Tensor, instrument: str = "official"
) -> tuple[list[float], list[float]]:
    """Return the NOCCO-type nHSIC(X; T_l) and nHSIC(Y; T_l) of every layer (`hsic.nocco`).

    `instrument` "official": the official code's kernel (`hsic.paper_gram`); "nocco": the Gaussian kernel at
    the median bandwidth (`hsic.layer_grams`). `Rx`, `Ry` are the `hsic.paper_projection`s of the inputs' and
    the labels' Gram matrices of the same instrument (`instrument_projections`).
    """
    reps = probe_representations(net, x_probe)
    if instrument == "official":
        Kt = torch.stack([hsic.paper_gram(t) for t in reps])
    else:
        Kt = hsic.layer_grams(reps)
    Rt = hsic.paper_projection(Kt)
    return hsic.trace_product(Rt, Rx).tolist(), hsic.trace_product(Rt, Ry).tolist()


def instrument_grams(x: torch.Tensor, y: torch.Tensor, instrument: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the Gram matrices of the probe inputs `x` and labels `y` that `instrument` compares with."""
    x = x.reshape(x.shape[0], -1).double()
    if instrument == "official":
        return hsic.paper_gram(x), hsic.paper_gram(F.one_hot(y.long()).double())
    if instrument in ("cka", "nocco"):
        return hsic.gaussian_gram(x), hsic.label_gram(y, num_classes=None)
    raise ValueError(f"unknown instrument {instrument!r}; choose one of {tuple(INSTRUMENTS)}")


@one_thread
def train(
    net: LayeredNet,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    mode: str,
    epochs: int,
    lr: float = 1e-3,
    batch: int = 64,
    seed: int = 0,
    probe: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    n_captures: int = 0,
    rule: str | float = "median",
    instruments: Sequence[str] = ("cka",),
    detach: bool = True,
    local_heads: bool = True,
    desc: str = "",
) -> TrainRecord:
    """Train `net` in place in `mode` (see `MODES`) with Adam; return a `TrainRecord`.

    Every mode sees the same minibatches (`seed`). With `n_captures` >= 2, at `capture_steps(total steps,
    n_captures)`: with `probe=(x, y)` the information plane of every layer is recorded by every one of
    `instruments` (see `INSTRUMENTS`; "cka" always); with `test=(x, y)` the last head's test accuracy.
    `detach=False` and `local_heads=False` are the knock-outs of the layer-wise modes (see `local_losses`).
    Tensors move to the device of `net`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown training mode {mode!r}; choose one of {MODES}")
    unknown = set(instruments) - set(INSTRUMENTS)
    if unknown:
        raise ValueError(f"unknown instruments {sorted(unknown)}; choose from {tuple(INSTRUMENTS)}")
    instruments = ["cka", *(i for i in INSTRUMENTS if i != "cka" and i in instruments)]
    if epochs < 1 or batch < 1:
        raise ValueError(f"epochs and batch must be positive, got epochs={epochs}, batch={batch}")
    device = next(net.parameters()).device
    X, y = X.to(device), y.to(device)
    n = X.shape[0]
    per_epoch = -(-n // batch)
    total = epochs * per_epoch
    record = TrainRecord(mode=mode)
    wanted = n_captures >= 2 and (probe is not None or test is not None)
    captures = set(capture_steps(total, n_captures)) if wanted else set()
    if probe is not None:
        xp, yp = probe[0].to(device), probe[1].to(device)
        Kx = hsic.gaussian_gram(xp.reshape(xp.shape[0], -1).double(), rule)
        Ky = hsic.label_gram(yp, num_classes=None)
        projections = {i: tuple(hsic.paper_projection(G) for G in instrument_grams(xp, yp, i)) for i in instruments[1:]}
        record.planes = {i: ([], []) for i in instruments}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def capture(step: int) -> None:
        if step not in captures:
            return
        record.steps.append(step)
        if probe is not None:
            points = {"cka": information_plane_point(net, Kx, Ky, xp, rule)}
            points |= {i: paper_plane_point(net, *R, xp, i) for i, R in projections.items()}
            for i, (px, py) in points.items():
                record.planes[i][0].append(px)
                record.planes[i][1].append(py)
        if test is not None:
            record.test_acc.append(accuracy(net, *test))
            net.train()

    step = 0
    net.train()
    capture(0)
    for epoch in trange(epochs, desc=desc or mode):
        # sequential: block l (and its head) alone during the l-th equal share of the epochs
        active = min(epoch * net.depth // epochs, net.depth - 1) if mode == "sequential" and local_heads else None
        perm = torch.randperm(n, generator=gen).to(device)
        total_loss = 0.0
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            losses = local_losses(net, X[idx], y[idx], mode, detach=detach, local_heads=local_heads)
            loss = losses[active] if active is not None else sum(losses)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * idx.numel()
            step += 1
            capture(step)
        record.losses.append(total_loss / n)
    net.eval()
    return record


def _schedule(cfg) -> dict:
    """Return the `train` arguments that a plane or gap config fixes: epochs, lr, batch, n_captures."""
    return {"epochs": cfg.epochs, "lr": cfg.lr, "batch": cfg.batch, "n_captures": cfg.captures}


def train_arms(
    spec: NetSpec,
    data: tuple[torch.Tensor, torch.Tensor],
    modes: Sequence[str],
    seed: int = 0,
    device: torch.device | str = "cpu",
    *,
    desc: str = "",
    **train_kwargs,
) -> dict[str, tuple[LayeredNet, TrainRecord]]:
    """Train one network per mode, all from the same initialisation and on the same minibatches.

    The network of every mode is built from `spec` after `torch.manual_seed(seed)`, so the arms differ only
    in the training rule; `train_kwargs` go to `train` (epochs, lr, batch, probe, test, n_captures, ...).
    Returns {mode: (trained net, its TrainRecord)}.
    """
    out = {}
    for mode in modes:
        torch.manual_seed(seed)  # the same initial network for every mode
        net = build_net(spec).to(device)
        record = train(net, *data, mode=mode, seed=seed, desc=f"{desc}, {mode}" if desc else mode, **train_kwargs)
        out[mode] = (net, record)
    return out


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> tuple[torch.Tensor, ...]:
    """Return `(X_train, y_train, X_test, y_test)` of MNIST-1D (Greydanus & Kobak), generated locally.

    Uses the `mnist1d` package's generator with its default settings (40-sample signals, 80/20 split);
    `seed=42`, `num_samples=5000` is the standard dataset. X has shape (N, 1, 40), float32. The package
    reseeds NumPy's global generator; its state (and Python's) is restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        args = get_dataset_args()
        args.num_samples, args.seed = num_samples, seed
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)

    def as_x(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).unsqueeze(1)

    def as_y(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.int64)

    return as_x(data["x"]), as_y(data["y"]), as_x(data["x_test"]), as_y(data["y_test"])


def local_accuracies(net: LayeredNet, X: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Return the test accuracy of every local head g_l(T_l) (the last one is the network's accuracy)."""
    device = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        reps = net.representations(X.to(device))
        return [float((head(t).argmax(-1).cpu() == y).float().mean()) for head, t in zip(net.heads, reps)]


# ---------------------------------------------------------------------------------------------------------
# The chapter's experiments (explained in chapter "e2e-information-bottleneck")
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorConfig(Config):
    """Experiment 1: estimators on independent and dependent Gaussian data."""

    m: int = 250  # examples per sample
    dx: int = 64  # dimension of X
    dz: int = 32  # dimension of Z
    repeats: int = 20  # independent samples averaged
    noise: float = 1.0  # dependent pair: Z = tanh(X W) + noise * N(0, I)
    n_perm: int = 200  # permutations of the null distribution
    scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # kernel width / median heuristic
    feature_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # Z multiplied by s (paper's estimator)

    PRESETS = {"quick": {}, "full": {"repeats": 100, "n_perm": 1000}}


def _pair(cfg: EstimatorConfig, gen: torch.Generator, dependent: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return one sample (X, Z) of m examples: independent Gaussians, or Z = tanh(X W) + noise."""
    X = torch.randn(cfg.m, cfg.dx, generator=gen, dtype=torch.float64)
    E = torch.randn(cfg.m, cfg.dz, generator=gen, dtype=torch.float64)
    if not dependent:
        return X, E
    W = torch.randn(cfg.dx, cfg.dz, generator=gen, dtype=torch.float64) / cfg.dx**0.5
    return X, torch.tanh(X @ W) * 2 + cfg.noise * E


@one_thread
def estimator_study(cfg: EstimatorConfig, seed: int = 0) -> dict:
    """Return the estimators' values on independent and dependent pairs, their nulls and bandwidth sweeps.

    Keys: `values[pair][estimator]` (arrays over repeats), `null[estimator]` (permutation values of the first
    dependent pair), `observed[estimator]`, `bias_ratio` (mean biased HSIC over a_K a_L / (m - 1) on the
    independent pairs), `sweep_biased`, `sweep_unbiased` (CKA at kernel widths `scales`), `paper_scale`,
    `nocco_scale` (the NOCCO estimator at the official defaults, and at the median bandwidth, of independent
    pairs with Z scaled by `feature_scales`).
    """
    gen = torch.Generator().manual_seed(seed)
    names = ("biased CKA (σ²=d)", "biased CKA (median)", "nHSIC (ours)", "NOCCO (official)", "NOCCO (median σ)")
    values = {p: {k: [] for k in names} for p in ("independent", "dependent")}
    hsic_b, predicted = [], []
    sweep_b = {c: [] for c in cfg.scales}
    sweep_u = {c: [] for c in cfg.scales}
    paper_scale = {s: [] for s in cfg.feature_scales}
    nocco_scale = {s: [] for s in cfg.feature_scales}
    first = {}
    for _ in range(cfg.repeats):
        for pair in ("independent", "dependent"):
            X, Z = _pair(cfg, gen, pair == "dependent")
            Kd, Ld = hsic.gaussian_gram(X, "dim"), hsic.gaussian_gram(Z, "dim")
            K, L = hsic.gaussian_gram(X), hsic.gaussian_gram(Z)
            Kp, Lp = hsic.paper_gram(X), hsic.paper_gram(Z)
            v = values[pair]
            v[names[0]].append(float(hsic.cka(Kd, Ld, unbiased=False)))
            v[names[1]].append(float(hsic.cka(K, L, unbiased=False)))
            v[names[2]].append(float(hsic.nhsic(K, L)))
            v[names[3]].append(float(hsic.nhsic_paper(Kp, Lp)))
            v[names[4]].append(float(hsic.nocco(K, L)))
            if pair == "dependent" and not first:
                first = {"dim": (Kd, Ld), "ours": (K, L), "paper": (Kp, Lp)}
            if pair == "independent":
                # E[HSIC_b] = a_K a_L / (m - 1), a = E k(x, x) - E k(x, x') (x != x'), under independence
                off = 1 - torch.eye(cfg.m, dtype=K.dtype)
                a_k = float(K.diagonal().mean() - (K * off).sum() / (cfg.m * (cfg.m - 1)))
                a_l = float(L.diagonal().mean() - (L * off).sum() / (cfg.m * (cfg.m - 1)))
                hsic_b.append(float(hsic.hsic_biased(K, L)))
                predicted.append(a_k * a_l / (cfg.m - 1))
                for c in cfg.scales:
                    Kc, Lc = hsic.gaussian_gram(X, scale=c), hsic.gaussian_gram(Z, scale=c)
                    sweep_b[c].append(float(hsic.cka(Kc, Lc, unbiased=False)))
                    sweep_u[c].append(float(hsic.nhsic(Kc, Lc)))
                for s in cfg.feature_scales:
                    paper_scale[s].append(float(hsic.nhsic_paper(Kp, hsic.paper_gram(s * Z))))
                    nocco_scale[s].append(float(hsic.nocco(K, hsic.gaussian_gram(s * Z))))
    null = {
        names[0]: hsic.permutation_null(*first["dim"], hsic.cka_biased, cfg.n_perm, seed=seed),
        names[2]: hsic.permutation_null(*first["ours"], hsic.nhsic, cfg.n_perm, seed=seed),
        names[3]: hsic.permutation_null(*first["paper"], hsic.nhsic_paper, cfg.n_perm, seed=seed),
        names[4]: _nocco_null(*first["ours"], cfg.n_perm, seed),
    }
    observed = {k: values["dependent"][k][0] for k in null}
    return {
        "names": names,
        "values": {p: {k: np.array(v) for k, v in d.items()} for p, d in values.items()},
        "null": {k: v.numpy() for k, v in null.items()},
        "observed": observed,
        "bias_ratio": float(np.mean(hsic_b) / np.mean(predicted)),
        "sweep_biased": {c: float(np.mean(v)) for c, v in sweep_b.items()},
        "sweep_unbiased": {c: float(np.mean(v)) for c, v in sweep_u.items()},
        "paper_scale": {s: float(np.mean(v)) for s, v in paper_scale.items()},
        "nocco_scale": {s: float(np.mean(v)) for s, v in nocco_scale.items()},
    }


def _nocco_null(K: torch.Tensor, L: torch.Tensor, n_perm: int, seed: int) -> torch.Tensor:
    """Return `hsic.nocco(K, L)` under `n_perm` permutations of L's examples (as `hsic.permutation_null`).

    Permuting the examples permutes R_L the same way, so R_L is computed once.
    """
    Rk, Rl = hsic.paper_projection(K), hsic.paper_projection(L)
    return hsic.permutation_null(Rk, Rl, hsic.trace_product, n_perm, seed=seed)


@dataclass(frozen=True)
class PlaneConfig(Config):
    """Experiments 2-3: information planes of an MLP on scikit-learn's digits, one run per training mode."""

    depth: int = 6  # hidden blocks L
    width: int = 64  # units per block
    epochs: int = 60  # passes over the training split
    lr: float = 1e-3  # Adam learning rate
    batch: int = 64  # minibatch
    probe: int = 300  # m: held-out examples on which nHSIC is measured
    captures: int = 20  # information-plane points per run (geometrically spaced steps)
    test_fraction: float = 0.4  # digits held out (probe first, the rest for accuracy)
    modes: tuple[str, ...] = ("e2e", "layerwise", "deep_sup")  # arms
    activation: str = "relu"  # of every block: "relu" or "tanh"
    instruments: tuple[str, ...] = tuple(INSTRUMENTS)  # dependence measures recorded (see INSTRUMENTS)

    PRESETS = {
        "quick": {},
        "full": {"depth": 8, "width": 128, "epochs": 300, "captures": 40, "modes": MODES},
    }


def run_planes(cfg: PlaneConfig, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Train one digits MLP per mode from the same initialisation; return {mode: {"record", "acc", "local_acc"}}."""
    from lib.cnn import digits_split

    Xtr, ytr, Xho, yho = digits_split(cfg.test_fraction, seed=seed)
    Xtr, Xho = Xtr.flatten(1), Xho.flatten(1)
    probe = (Xho[: cfg.probe], yho[: cfg.probe])
    test = (Xho[cfg.probe :], yho[cfg.probe :])
    spec = NetSpec("mlp", Xtr.shape[1], (cfg.width,) * cfg.depth, num_classes=10, activation=cfg.activation)
    arms = train_arms(
        spec,
        (Xtr, ytr),
        cfg.modes,
        seed,
        device,
        probe=probe,
        test=test,
        instruments=cfg.instruments,
        desc=f"digits MLP ({cfg.activation})",
        **_schedule(cfg),
    )
    return {
        mode: {"record": rec, "acc": rec.test_acc[-1], "local_acc": local_accuracies(net, *test)}
        for mode, (net, rec) in arms.items()
    }


def plane_summary(record: TrainRecord, instrument: str = "cka") -> dict[str, float]:
    """Return scalar summaries of one run's information planes by one instrument, at the end of training.

    `last_x`, `last_y`: nHSIC(X; T_L), nHSIC(Y; T_L); `spread`: max - min over layers of nHSIC(X; T_l);
    `inner_x`: mean of nHSIC(X; T_l) over the inner layers 2..L-1; `compression`: the rise-then-fall of
    nHSIC(X; T_L) (`rise_then_fall`, >= 0); `late_fall`: the signed fall of nHSIC(X; T_L) over the second half
    of training (`late_fall`, > 0 for a compression phase); `y_drop`: the fall of nHSIC(Y; T_L) from its peak
    to the end.
    """
    steps, nx, ny = record.arrays(instrument)
    return {
        "last_x": float(nx[-1, -1]),
        "last_y": float(ny[-1, -1]),
        "spread": float(nx[-1].max() - nx[-1].min()),
        "inner_x": float(nx[-1, 1:-1].mean()),
        "compression": rise_then_fall(nx[:, -1]),
        "late_fall": late_fall(steps, nx[:, -1]),
        "y_drop": float(ny[:, -1].max() - ny[-1, -1]),
    }


def late_fall(steps: Sequence[int], x: Sequence[float]) -> float:
    """Return x at the last capture at or before half the training steps minus x at the end (signed).

    Positive when the trajectory falls over the second half of training (a compression phase), negative when it
    rises; unlike `rise_then_fall` it is not clipped at 0, so noise around a plateau averages out.
    """
    steps, x = np.asarray(steps), np.asarray(x, dtype=float)
    half = int(np.searchsorted(steps, steps[-1] / 2, side="right")) - 1
    return float(x[half] - x[-1])


def rise_then_fall(x: Sequence[float]) -> float:
    """Return the size of the largest rise-then-fall of a trajectory that ends at its last point.

    max over b of min(x_b - min_{a <= b} x_a, x_b - x_end): a peak b counts by the smaller of the rise that
    led to it and the fall from it to the end. 0 for a trajectory that only rises, or only falls (a fall
    from initialisation is not a compression phase after fitting).
    """
    x = np.asarray(x, dtype=float)
    lows = np.minimum.accumulate(x)
    return float(max(0.0, np.max(np.minimum(x - lows, x - x[-1]))))


@dataclass(frozen=True)
class GapConfig(Config):
    """Experiments 4-5: E2E vs layer-wise training of a 1-D CNN on MNIST-1D, generated locally."""

    num_samples: int = 5000  # MNIST-1D examples (80% train, 20% test); 5000 is the standard set
    widths: tuple[int, ...] = (32,) * 8  # channels of the conv blocks
    pool_after: tuple[int, ...] = (2, 4, 6)  # blocks followed by 2x average pooling (40 -> 20 -> 10 -> 5)
    head: str = "gap"  # local heads: "gap" (global average pooling + linear) or "flatten" (as the official code)
    epochs: int = 12  # passes over the training split
    lr: float = 3e-3  # Adam learning rate
    batch: int = 128  # minibatch (the paper's)
    repeats: int = 1  # seeds per run (seed, seed + 1, ...)
    modes: tuple[str, ...] = ("e2e", "layerwise", "deep_sup")  # arms
    probe: int = 0  # > 0: also record information planes on this many test examples
    captures: int = 8  # accuracy (and plane) points per run
    instruments: tuple[str, ...] = tuple(INSTRUMENTS)  # dependence measures of the planes (with `probe`)

    PRESETS = {"quick": {}, "full": {"epochs": 100, "repeats": 5}}


def run_gap(cfg: GapConfig, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Train the MNIST-1D CNN in every mode for `repeats` seeds; return {mode: [per-seed dicts]}.

    Each dict holds `acc` (final test accuracy of the network), `local_acc` (every local head) and the
    `record` (accuracy over training, and information planes when `probe` > 0).
    """
    Xtr, ytr, Xte, yte = load_mnist1d(cfg.num_samples)
    probe = (Xte[: cfg.probe], yte[: cfg.probe]) if cfg.probe else None
    spec = NetSpec("cnn1d", Xtr.shape[-1], cfg.widths, pool_after=cfg.pool_after, head=cfg.head)
    out: dict[str, list] = {mode: [] for mode in cfg.modes}
    for r in range(cfg.repeats):
        arms = train_arms(
            spec,
            (Xtr, ytr),
            cfg.modes,
            seed + r,
            device,
            probe=probe,
            test=(Xte, yte),
            instruments=cfg.instruments,
            desc="MNIST-1D CNN",
            **_schedule(cfg),
        )
        for mode, (net, record) in arms.items():
            out[mode].append(
                {"acc": record.test_acc[-1], "local_acc": local_accuracies(net, Xte, yte), "record": record}
            )
    return out


# ---------------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ---------------------------------------------------------------------------------------------------------


def plot_layer_trajectories(
    ax, record: TrainRecord, which: str = "x", cmap: str = "viridis", instrument: str = "cka"
) -> None:
    """Draw nHSIC(X; T_l) (`which="x"`) or nHSIC(Y; T_l) (`"y"`) of every layer against the training step (log)."""
    import matplotlib as mpl

    steps, nx, ny = record.arrays(instrument)
    values = nx if which == "x" else ny
    colors = mpl.colormaps[cmap](np.linspace(0.0, 0.9, values.shape[1]))
    for layer in range(values.shape[1]):
        ax.plot(steps + 1, values[:, layer], color=colors[layer], lw=1.5, label=f"layer {layer + 1}")
    plotting.label(ax, x="training step + 1", y="nHSIC(X; T)" if which == "x" else "nHSIC(Y; T)", xscale="log")


def plot_information_plane(
    ax, record: TrainRecord, title: str = "", cmap: str = "viridis", legend: bool = True, instrument: str = "cka"
) -> None:
    """Draw every layer's trajectory (nHSIC(X; T_l), nHSIC(Y; T_l)) on `ax`: circle at the start, square at the end."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    _, nx, ny = record.arrays(instrument)
    L = nx.shape[1]
    colors = mpl.colormaps[cmap](np.linspace(0.0, 0.9, L))
    for layer in range(L):
        ax.plot(nx[:, layer], ny[:, layer], "-", color=colors[layer], lw=1.5, label=f"layer {layer + 1}")
        ax.plot(nx[0, layer], ny[0, layer], "o", color=colors[layer], ms=5)
        ax.plot(nx[-1, layer], ny[-1, layer], "s", color=colors[layer], ms=6, mec="black")
    plotting.label(ax, x="nHSIC(X; T)", y="nHSIC(Y; T)", title=title or None)
    if not legend:
        return
    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], ls="", marker="o", color="grey", label="start"),
        Line2D([], [], ls="", marker="s", color="grey", mec="black", label="end"),
    ]
    ax.legend(handles=handles, fontsize=8, ncol=2)


def plot_planes(records: dict[str, TrainRecord], prefix: str = "", instrument: str = "cka", title: str | None = None):
    """Draw the information plane of every mode by one instrument, at most three panels in a row, titled `title`."""
    n = len(records)
    ncols, nrows = min(3, n), -(-n // 3)
    fig, ax = plotting.subplots(nrows, ncols, figsize=(4 * ncols, 3.9 * nrows), sharex=True, sharey=True, squeeze=False)
    for k, (mode, record) in enumerate(records.items()):
        a = ax[k // ncols, k % ncols]
        plot_information_plane(a, record, title=f"{prefix}{LABELS[mode]}", legend=k == 0, instrument=instrument)
        a.xaxis.set_tick_params(labelbottom=True)
        a.yaxis.set_tick_params(labelleft=True)
    for k in range(n, nrows * ncols):
        ax[k // ncols, k % ncols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


ESTIMATOR_TICKS = ["biased CKA\n$\\sigma^2 = d$", "biased CKA\nmedian $\\sigma$", "nHSIC\n(ours)"]
"""How the estimator figure names the first three estimators of `estimator_study` (matplotlib mathtext)."""


def plot_estimators(est: dict):
    """Draw an `estimator_study`: the estimators with their permutation bands, and the kernel-width and scale sweeps."""
    fig, ax = plotting.subplots(1, 3, figsize=(12, 3.8))
    names = est["names"][:3]
    x = np.arange(len(names))
    for j, pair in enumerate(("independent", "dependent")):
        vals = [est["values"][pair][k] for k in names]
        means, stds = [v.mean() for v in vals], [v.std() for v in vals]
        ax[0].errorbar(x + (j - 0.5) * 0.3, means, yerr=stds, fmt="o", color=plotting.PALETTE[j], label=pair)
    for xi, k in ((0, names[0]), (2, names[2])):
        lo, hi = np.quantile(est["null"][k], [0.005, 0.995])
        band = "permutation 99%" if xi == 0 else None
        ax[0].fill_between([xi - 0.35, xi + 0.35], lo, hi, color="grey", alpha=0.35, label=band)
    ax[0].set_xticks(x, ESTIMATOR_TICKS)
    plotting.label(ax[0], y="estimate", title="(a) independent vs dependent", legend=True)
    scales = list(est["sweep_biased"])
    ax[1].plot(scales, list(est["sweep_biased"].values()), "o-", label="biased CKA")
    ax[1].plot(scales, list(est["sweep_unbiased"].values()), "s--", label="nHSIC (ours)")
    plotting.label(
        ax[1],
        x="kernel width / median distance",
        y="estimate, independent pairs",
        title="(b) bias vs kernel width",
        xscale="log",
        legend=True,
    )
    plotting.ticks(ax[1], scales)
    feature_scales = list(est["paper_scale"])
    nocco = (
        ("paper_scale", "NOCCO (official)", plotting.PALETTE[2]),
        ("nocco_scale", "NOCCO (median σ)", plotting.PALETTE[3]),
    )
    for key, name, color in nocco:
        ax[2].plot(
            feature_scales, list(est[key].values()), "o-", color=color, label=f"{name}, independent, $Z \\to sZ$"
        )
        plotting.reference(ax[2], est["values"]["dependent"][name].mean(), color=color, label="dependent, $s = 1$")
    plotting.label(ax[2], x="scale $s$ of $Z$", y="NOCCO", title="(c) NOCCO vs scale", xscale="log", legend=True)
    plotting.ticks(ax[2], feature_scales)
    return fig


def plot_last_layer(relu: dict, tanh: dict):
    """Draw the last layer's nHSIC(X; T_L) over training by every instrument, ReLU `run_planes` solid, tanh dashed."""
    fig, ax = plotting.subplots(1, 3, figsize=(13, 3.6))
    for a, (i, name) in zip(ax, INSTRUMENTS.items()):
        for arms, ls, act in ((relu, "-", "ReLU"), (tanh, "--", "tanh")):
            for mode, p in arms.items():
                steps, x, _ = p["record"].arrays(i)
                color = plotting.PALETTE[list(MODES).index(mode)]
                a.plot(steps + 1, x[:, -1], ls, color=color, label=f"{LABELS[mode]}, {act}")
        plotting.label(a, x="training step + 1", y="nHSIC(X; $T_L$)", title=name, xscale="log")
    ax[0].legend(fontsize=7)
    return fig


def plot_roles(planes: dict):
    """Draw every layer's nHSIC(X; T_l) over training (E2E, layer-wise) and the profile over depth at the end (CKA)."""
    fig, ax = plotting.subplots(1, 3, figsize=(12, 3.7))
    for k, mode in enumerate(("e2e", "layerwise")):
        plot_layer_trajectories(ax[k], planes[mode]["record"], "x")
        ax[k].set_title(LABELS[mode])
    ax[0].legend(fontsize=7, ncol=2)
    start = planes["e2e"]["record"].arrays()[1][0]
    layers = np.arange(1, len(start) + 1)
    for k, (mode, p) in enumerate(planes.items()):
        ax[2].plot(layers, p["record"].arrays()[1][-1], "o-", color=plotting.PALETTE[k], label=LABELS[mode])
    ax[2].plot(layers, start, "k--", label="initialisation")
    plotting.label(
        ax[2], x="layer $\\ell$", y="nHSIC(X; $T_\\ell$) at the end", title="profile over depth", legend=True
    )
    return fig


def plot_gap(gap: dict, acc: dict[str, float]):
    """Draw a `run_gap`: test accuracy over training per mode, and every local head's at the end beside `acc["e2e"]`."""
    fig, ax = plotting.subplots(1, 2, figsize=(10, 3.6))
    for k, (mode, runs) in enumerate(gap.items()):
        rec, color = runs[0]["record"], plotting.PALETTE[k]
        ax[0].plot(np.array(rec.steps) + 1, rec.test_acc, "o-", color=color, label=LABELS[mode])
        if mode != "e2e":
            local = np.mean([r["local_acc"] for r in runs], axis=0)
            ax[1].plot(np.arange(1, len(local) + 1), local, "o-", color=color, label=LABELS[mode])
    plotting.reference(ax[1], acc["e2e"], color=plotting.PALETTE[0], label="E2E (last head)")
    plotting.label(ax[0], x="training step + 1", y="test accuracy", title="the network", xscale="log", legend=True)
    plotting.label(
        ax[1],
        x="block $\\ell$",
        y="test accuracy of head $g_\\ell$",
        title="local heads at the end",
        legend=True,
    )
    return fig
