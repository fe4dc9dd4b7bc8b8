"""Parameter saliency (Levin et al.) and its peaks-over-threshold reformulation (Wang & Sato).

Explained in chapter "parameter-saliency-evt". Per-example filter-wise saliency profiles with
`torch.func` (vmap over examples of the gradient of the loss), streaming reference statistics,
z-score and POT scores for all filters at once, depth-bias summaries, pruning and one-step
fine-tuning of selected filters, planting a malicious filter, and the chapter's figures (`plot_*`).
Filters are the output channels of every `nn.Conv2d` of a model, in forward order (see
`lib.cnn.filter_table`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.func import functional_call, grad, vmap

from lib.cache import cached
from lib.cnn import SmallCNN, conv_layers, digits_split, filter_table, predict_proba, shift_images, train_classifier
from lib.config import Config
from lib.evt import PeaksOverThreshold, pot_from_exceedances
from lib.plotting import PALETTE, label, subplots


@dataclass(frozen=True)
class SaliencyConfig(Config):
    """Sizes of the chapter's experiments (explained in chapter "parameter-saliency-evt")."""

    channels: tuple[int, ...] = (16, 32, 64, 64, 128)  # conv widths of the CNN, first to last layer
    pool_after: tuple[int, ...] = (2, 4)  # layers followed by 2x2 average pooling
    epochs: int = 30  # training epochs on clean digits
    lr: float = 3e-3  # Adam learning rate
    batch: int = 64  # training minibatch
    held_fraction: float = 0.5  # digits held out of training (half reference, half test)
    invert: float = 0.5  # domain shift: probability of inverting an image
    contrast: tuple[float, float] = (0.4, 1.0)  # domain shift: contrast factor range
    translate: int = 1  # domain shift: max translation (pixels)
    noise: float = 0.15  # domain shift: Gaussian noise std
    ref_copies: int = 2  # shifted copies of the reference half (Exercise 3); the clean reference is used once
    test_copies: int = 1  # shifted copies of the test half
    quantile: float = 0.9  # POT threshold: this quantile of the reference saliency
    min_exceed: int = 5  # fewer exceedances than this: no GPD fit
    top_k: int = 10  # top-K filters counted per layer (depth bias)
    ks: tuple[int, ...] = (1, 3, 10, 30)  # numbers of filters pruned / fine-tuned
    finetune_lr: float = 0.05  # step size of the one-step fine-tuning (the paper: 0.001; why: see the chapter)
    max_errors: int = 300  # misclassified shifted examples analysed
    synth_filters: int = 500  # synthetic experiment: filters
    synth_ref: int = 1000  # synthetic experiment: reference samples per filter
    synth_test: int = 100  # synthetic experiment: test examples
    plant_per_layer: int = 4  # malicious filters planted per layer (one at a time)
    plant_scale: float = 3.0  # malicious filter: weights become -plant_scale times themselves
    plant_min_errors: int = 3  # a planted filter counts when it causes at least this many new errors

    PRESETS = {
        "quick": {},
        "full": {
            "channels": (24, 48, 64, 96, 96, 192),
            "pool_after": (2, 4),
            "ref_copies": 4,
            "test_copies": 4,
            "ks": (1, 3, 10, 30, 100),
            "max_errors": 1500,
            "synth_filters": 2000,
            "synth_ref": 5000,
            "synth_test": 200,
            "plant_per_layer": 10,
        },
    }


def _conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the conv weight tensors by parameter name (the parameters whose filters are ranked)."""
    return {f"{name}.weight": m.weight for name, m in conv_layers(model)}


def _loss_fn(model: nn.Module):
    """Return loss(conv_weights, x, y) of one example, with the other parameters held fixed."""
    fixed = {k: v.detach() for k, v in model.named_parameters()}
    fixed.update(dict(model.named_buffers()))

    def loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **weights}, (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    return loss


def per_example_grads(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the per-example gradients of the loss w.r.t. each conv weight: name -> (B, out, in, k, k)."""
    weights = {k: v.detach() for k, v in _conv_weights(model).items()}
    return vmap(grad(_loss_fn(model)), in_dims=(None, 0, 0))(weights, X, y)


def filter_saliency(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch: int = 256) -> torch.Tensor:
    """Return the filter-wise saliency profiles, shape (N, filters), on the model's device.

    Explained in chapter "parameter-saliency-evt".
    """
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} examples but y has {y.shape[0]} labels")
    device = next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, X.shape[0], batch):
        g = per_example_grads(model, X[i : i + batch].to(device), y[i : i + batch].to(device))
        # Eq. (1): s_bar(x, y)_j = (1/|I_j|) sum_{i in I_j} |grad_{theta_i} L(f_theta, x, y)|
        out.append(torch.cat([w.abs().flatten(2).mean(-1) for w in g.values()], dim=1))
    return torch.cat(out).detach()


@dataclass
class ReferenceStats:
    """Streaming reference statistics of filter saliency: count, mean, M2 (Chan et al.) and a top buffer.

    The top buffer keeps, per filter, the `keep` largest values seen, enough to hold every exceedance
    of the POT threshold without storing the whole (N, filters) matrix.
    """

    count: int
    mean: torch.Tensor
    m2: torch.Tensor
    top: torch.Tensor  # (keep, filters), sorted descending

    @classmethod
    def empty(cls, n_filters: int, keep: int, device: torch.device | str = "cpu") -> ReferenceStats:
        """Return statistics of no data for `n_filters` filters, keeping the `keep` largest values each."""
        zeros = torch.zeros(n_filters, dtype=torch.float64, device=device)
        top = torch.full((keep, n_filters), -torch.inf, dtype=torch.float64, device=device)
        return cls(0, zeros, zeros.clone(), top)

    def update(self, S: torch.Tensor) -> None:
        """Fold a batch of saliency profiles S (B, filters) into the statistics."""
        S = S.to(self.mean.device, torch.float64)
        if S.dim() != 2 or S.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected a (batch, {self.mean.shape[0]}) matrix, got {tuple(S.shape)}")
        nb = S.shape[0]
        mean_b = S.mean(0)
        m2_b = ((S - mean_b) ** 2).sum(0)
        n = self.count + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2_b + delta**2 * self.count * nb / n
        self.count = n
        both = torch.cat([self.top, S])
        self.top = torch.topk(both, min(self.top.shape[0], both.shape[0]), dim=0).values

    @classmethod
    def for_quantile(cls, n_filters: int, n_ref: int, quantile: float = 0.9) -> ReferenceStats:
        """Return empty statistics for `n_ref` reference profiles whose top buffer holds the POT exceedances.

        The POT threshold is the ceil((1 - quantile) n_ref) + 1-th largest value, so about
        (1 - quantile) n_ref reference values of each filter exceed it.
        """
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        keep = int(np.ceil((1.0 - quantile) * n_ref)) + 1
        if keep > n_ref:
            raise ValueError(f"{n_ref} reference examples are too few for quantile {quantile}")
        return cls.empty(n_filters, keep)

    @property
    def std(self) -> torch.Tensor:
        """Return the sample standard deviation of each filter's saliency."""
        return (self.m2 / max(self.count - 1, 1)).sqrt()

    def pot(self, *, min_exceed: int = 5, method: str = "mle") -> PeaksOverThreshold:
        """Return the POT model: threshold = smallest kept value, excesses = kept values above it.

        `method` is one of `lib.evt.TAIL_METHODS`: the GPD fit ("mle"), or a knock-out of it ("exponential":
        its shape fixed at 0; "normal": the normal tail of the reference's mean and sd beyond the threshold).
        """
        top = self.top.cpu().numpy()
        if not np.isfinite(top).all():
            raise ValueError("fewer reference examples than the top buffer holds; lower the quantile")
        T = top[-1]
        excess = (top[:-1] - T).T
        normal = (self.mean.cpu().numpy(), self.std.cpu().numpy()) if method == "normal" else None
        return pot_from_exceedances(
            T, np.where(excess > 0, excess, np.nan), self.count, min_exceed, method, normal=normal
        )


def reference_statistics(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, quantile: float = 0.9, batch: int = 256
) -> ReferenceStats:
    """Return streaming saliency statistics of `model` over the reference set `(X, y)`.

    The POT threshold is the ceil((1 - quantile) N) + 1-th largest value, so about (1 - quantile) N
    reference values of each filter exceed it.
    """
    ref = ReferenceStats.for_quantile(filter_table(model)[1].numel(), X.shape[0], quantile)
    for i in range(0, X.shape[0], batch):
        ref.update(filter_saliency(model, X[i : i + batch], y[i : i + batch], batch=batch).cpu())
    return ref


ZERO_SIGMA = 1e-14
"""A filter whose reference standard deviation is at most this is constant on the reference (dead)."""


def standardise(S: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, *, divide: bool = True) -> torch.Tensor:
    """Return (S - mu) / sigma per filter (Eq. 2), dividing by 1 where sigma <= 1e-14 (a dead filter).

    `divide=False` is the knock-out of the division by sigma_j: the centred saliency S - mu.
    """
    S = torch.as_tensor(S).to(torch.float64).cpu()
    mu, sigma = torch.as_tensor(mu).to(torch.float64).cpu(), torch.as_tensor(sigma).to(torch.float64).cpu()
    if not divide:
        return S - mu
    # Eq. (2): s_hat(x, y)_j = (s_bar(x, y)_j - mu_j) / sigma_j
    return (S - mu) / torch.where(sigma > ZERO_SIGMA, sigma, 1.0)


def zscore(S: torch.Tensor, ref: ReferenceStats, *, divide: bool = True) -> torch.Tensor:
    """Return the filter saliency (z-score) of profiles S (B, filters).

    A filter constant on the reference (sigma_j <= 1e-14, a dead filter) is divided by 1 instead, as in
    Levin et al.'s code (`testset_std_abs_grad[testset_std_abs_grad <= 1e-14] = 1`): its score is
    s_j - mu_j. `divide=False` is the knock-out of the division by sigma_j (the centred saliency).
    """
    return standardise(S, ref.mean, ref.std, divide=divide)


def live_filters(ref: ReferenceStats) -> torch.Tensor:
    """Return a boolean mask of the filters whose saliency varies on the reference (sigma_j > 1e-14)."""
    return ref.std.cpu() > ZERO_SIGMA


def filter_share(layer_of: torch.Tensor, among: torch.Tensor | None = None) -> torch.Tensor:
    """Return each layer's share of the filters (of those where `among` is True): a depth-blind top-k share."""
    n_layers = int(layer_of.max()) + 1
    chosen = layer_of if among is None else layer_of[among]
    if chosen.numel() == 0:
        raise ValueError("no filter is selected")
    return torch.bincount(chosen, minlength=n_layers).double() / chosen.numel()


def pot_pvalues(S: torch.Tensor, pot: PeaksOverThreshold) -> torch.Tensor:
    """Return the POT tail probability P(S_j > s_j) of profiles S (B, filters); 1 at or below threshold."""
    # Eq. (5) of [parameter-saliency-evt-def-pot]: P(X - T > x) ~ (n / N) {1 - G(x | alpha, beta)}
    return torch.from_numpy(pot.tail_probability(S.to(torch.float64).cpu().numpy()))


def rank_by_zscore(z: torch.Tensor) -> torch.Tensor:
    """Return, per row, the filter indices sorted by decreasing z-score (most salient first)."""
    return torch.argsort(z, dim=-1, descending=True, stable=True)


def rank_by_pot(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Return, per row, filter indices by increasing tail probability; ties (0 beyond a finite GPD
    endpoint, 1 below the threshold) are broken by decreasing z-score."""
    # [parameter-saliency-evt-def-pot]: increasing p_j; np.lexsort sorts by its last key first
    order = np.lexsort((-z.numpy(), p.numpy()), axis=-1)
    return torch.from_numpy(order)


def random_ranking(n_rows: int, n_filters: int, seed: int = 0) -> torch.Tensor:
    """Return `n_rows` independent uniformly random orderings of the filters."""
    gen = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand(n_rows, n_filters, generator=gen), dim=-1)


def layer_share(ranking: torch.Tensor, layer_of: torch.Tensor, k: int) -> torch.Tensor:
    """Return the share of the top-k filters that lie in each layer, averaged over rows (sums to 1)."""
    if not 1 <= k <= ranking.shape[-1]:
        raise ValueError(f"k must be in 1..{ranking.shape[-1]}, got {k}")
    n_layers = int(layer_of.max()) + 1
    top_layers = layer_of[ranking[:, :k]]
    return F.one_hot(top_layers, n_layers).float().mean(dim=(0, 1))


def layer_gradient_stats(
    ref: ReferenceStats, layer_of: torch.Tensor, among: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-layer averages of the filters' reference mean mu_j and standard deviation sigma_j
    (over the filters where `among` is True, e.g. `live_filters(ref)`; NaN for a layer without any)."""
    n_layers = int(layer_of.max()) + 1
    among = torch.ones_like(layer_of, dtype=torch.bool) if among is None else among.cpu()
    idx = layer_of[among]
    counts = torch.bincount(idx, minlength=n_layers).double()
    mu = torch.zeros(n_layers, dtype=torch.float64).index_add_(0, idx, ref.mean.cpu()[among]) / counts
    sd = torch.zeros(n_layers, dtype=torch.float64).index_add_(0, idx, ref.std.cpu()[among]) / counts
    return mu, sd


def _layer_masks(model: nn.Module, selected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a (B, filters) 0/1 selection into per-layer (B, out) masks keyed by weight name."""
    out, start = {}, 0
    for name, m in conv_layers(model):
        out[f"{name}.weight"] = selected[:, start : start + m.out_channels]
        start += m.out_channels
    return out


def _select(ranking: torch.Tensor, k: int, n_filters: int) -> torch.Tensor:
    sel = torch.zeros(ranking.shape[0], n_filters)
    return sel.scatter_(1, ranking[:, :k], 1.0)


def _pruned_logits(model: nn.Module, x: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return the logits of `x` with each example's selected filters (0/1 masks (B, out)) pruned.

    Zeroing a filter's weights makes its pre-activation equal to its bias, so every conv output channel
    that is selected for an example is replaced by the bias in a forward hook: one batched pass instead
    of a copy of the weights per example.
    """
    hooks = []
    for name, conv in conv_layers(model):
        keep = 1.0 - masks[f"{name}.weight"][:, :, None, None]
        bias = torch.zeros(conv.out_channels, device=x.device) if conv.bias is None else conv.bias.detach()

        def hook(module, inputs, out, keep=keep, bias=bias):
            return out * keep + (1.0 - keep) * bias[None, :, None, None]

        hooks.append(conv.register_forward_hook(hook))
    try:
        return model(x)
    finally:
        for h in hooks:
            h.remove()


def edit_many(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    rankings: dict[str, torch.Tensor],
    ks: tuple[int, ...],
    *,
    mode: str = "prune",
    lr: float = 0.05,
    batch: int = 128,
) -> dict[str, dict[str, np.ndarray]]:
    """Return `edit_and_evaluate`'s result for each ranking of `rankings` (the per-example gradients of
    fine-tuning are computed once for all of them)."""
    if mode not in ("prune", "finetune"):
        raise ValueError(f"mode must be 'prune' or 'finetune', got {mode!r}")
    for name, ranking in rankings.items():
        if ranking.shape[0] != X.shape[0]:
            raise ValueError(f"ranking {name!r} has {ranking.shape[0]} rows for {X.shape[0]} examples")
    device = next(model.parameters()).device
    model.eval()
    weights = {k: v.detach() for k, v in _conv_weights(model).items()}
    fixed = {k: v.detach() for k, v in model.named_parameters()}

    def logits(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **w}, (x.unsqueeze(0),))[0]

    res = {name: {key: np.zeros(len(ks)) for key in ("corrected", "drop_incorrect")} for name in rankings}
    for i in range(0, X.shape[0], batch):
        xb, yb = X[i : i + batch].to(device), y[i : i + batch].to(device)
        with torch.no_grad():
            p0 = F.softmax(model(xb), -1)
        wrong = p0.argmax(-1)
        rows = torch.arange(xb.shape[0], device=device)
        g = per_example_grads(model, xb, yb) if mode == "finetune" else None
        for name, ranking in rankings.items():
            for j, k in enumerate(ks):
                masks = _layer_masks(model, _select(ranking[i : i + batch], k, ranking.shape[1]).to(device))
                with torch.no_grad():
                    if mode == "prune":  # theta_i = 0 on the selected filters
                        p1 = F.softmax(_pruned_logits(model, xb, masks), -1)
                    else:  # one step: theta_i - lambda * grad_{theta_i} L(f_theta, x, y) on the selected filters
                        edited = {
                            n: w.unsqueeze(0) - lr * g[n] * masks[n][:, :, None, None, None] for n, w in weights.items()
                        }
                        p1 = F.softmax(vmap(logits)(edited, xb), -1)
                res[name]["corrected"][j] += float((p1.argmax(-1) == yb).sum())
                res[name]["drop_incorrect"][j] += float((p0[rows, wrong] - p1[rows, wrong]).sum())
    return {name: {key: val / X.shape[0] for key, val in r.items()} for name, r in res.items()}


def edit_and_evaluate(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    ranking: torch.Tensor,
    ks: tuple[int, ...],
    *,
    mode: str = "prune",
    lr: float = 0.05,
    batch: int = 128,
) -> dict[str, np.ndarray]:
    """Return, for each k in `ks`, the effect of editing each example's own top-k filters on that example.

    `mode="prune"` zeroes the filters' weights; `mode="finetune"` takes one gradient step of size `lr` on
    the example's loss, on those filters only. Returns arrays over `ks`: `corrected` (fraction now
    classified correctly), `drop_incorrect` (mean drop of the confidence in the originally predicted
    class). `edit_many` does the same for several rankings at once.
    """
    return edit_many(model, X, y, {"ranking": ranking}, ks, mode=mode, lr=lr, batch=batch)["ranking"]


def plant_malicious_filter(
    model: nn.Module, filter_index: int, *, kind: str = "flip", scale: float = 3.0, seed: int = 0
) -> nn.Module:
    """Return a copy of `model` with filter `filter_index` (global index) corrupted.

    `kind="flip"`: the filter's weights become `-scale` times themselves (it now fires where it was
    silent, `scale` times as strongly). `kind="noise"`: random noise of norm `scale` times the filter's
    norm is added to its weights (`seed` picks the noise).
    """
    names, layer_of, index_in = filter_table(model)
    if not 0 <= filter_index < layer_of.numel():
        raise ValueError(f"filter_index must be in 0..{layer_of.numel() - 1}, got {filter_index}")
    if kind not in ("flip", "noise"):
        raise ValueError(f"kind must be 'flip' or 'noise', got {kind!r}")
    bad = copy.deepcopy(model)
    layer = dict(conv_layers(bad))[names[int(layer_of[filter_index])]]
    j = int(index_in[filter_index])
    with torch.no_grad():
        w = layer.weight[j]
        if kind == "flip":
            w.mul_(-scale)
        else:
            gen = torch.Generator().manual_seed(seed)
            noise = torch.randn(w.shape, generator=gen).to(w.device)
            w.add_(scale * w.norm() * noise / noise.norm())
    return bad


def detection_rank(ranking: torch.Tensor, target: int) -> torch.Tensor:
    """Return, per row, the 1-based position of filter `target` in the ranking."""
    return (ranking == target).float().argmax(-1) + 1


def synthetic_saliencies(
    n_filters: int, n_ref: int, n_test: int, *, heavy: bool, seed: int = 0, with_params: bool = False
) -> tuple[np.ndarray, ...]:
    """Return `(reference (n_ref, F), test (n_test, F), exact P(S_j > test), tail index per filter)`.

    Gaussian filters: S_j ~ N(mu_j, sigma_j^2). Heavy-tailed filters: S_j = mu_j + sigma_j |t_{nu_j}|
    with nu_j log-uniform in [1.5, 50] (the tail index; infinity for the Gaussian case).
    `with_params=True` appends the true location `mu` and scale `sigma` of every filter.
    """
    out = _synthetic(n_filters, n_ref, n_test, heavy=heavy, seed=seed)
    return out if with_params else out[:4]


def _synthetic(n_filters: int, n_ref: int, n_test: int, *, heavy: bool, seed: int) -> tuple[np.ndarray, ...]:
    if min(n_filters, n_ref, n_test) < 1:
        raise ValueError("n_filters, n_ref and n_test must be positive")
    rng = np.random.default_rng(seed)
    mu = rng.uniform(1.0, 3.0, n_filters)
    sigma = rng.uniform(0.2, 1.0, n_filters)
    if not heavy:
        ref = mu + sigma * rng.standard_normal((n_ref, n_filters))
        test = mu + sigma * rng.standard_normal((n_test, n_filters))
        return ref, test, stats.norm.sf(test, mu, sigma), np.full(n_filters, np.inf), mu, sigma
    nu = np.exp(rng.uniform(np.log(1.5), np.log(50.0), n_filters))
    ref = mu + sigma * np.abs(rng.standard_t(nu, (n_ref, n_filters)))
    test = mu + sigma * np.abs(rng.standard_t(nu, (n_test, n_filters)))
    return ref, test, 2.0 * stats.t.sf((test - mu) / sigma, nu), nu, mu, sigma


def topk_overlap(score_a: np.ndarray, score_b: np.ndarray, k: int) -> float:
    """Return the mean over rows of the fraction of the top-k of `score_a` that is in the top-k of `score_b`
    (higher score = more salient)."""
    a, b = np.asarray(score_a, float), np.asarray(score_b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"scores must be two matrices of one shape, got {a.shape} and {b.shape}")
    if not 1 <= k <= a.shape[1]:
        raise ValueError(f"k must be in 1..{a.shape[1]}, got {k}")
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    in_b = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(in_b, top_b, True, axis=1)
    return float(np.take_along_axis(in_b, top_a, axis=1).mean())


def digits_domains(cfg: SaliencyConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return the chapter's data: clean training digits, and held-out digits split into a reference half
    and a test half, each clean and domain-shifted (`lib.cnn.shift_images` with the config's shift).

    Keys: `X_train, y_train, X_ref, y_ref, X_ref_shift, y_ref_shift, X_test, y_test, X_test_shift,
    y_test_shift`. The clean reference set is the reference half once (N distinct digits); the shifted
    reference holds `cfg.ref_copies` and the shifted test set `cfg.test_copies` copies of their half, each
    copy with its own random shift, so every row differs.
    """
    X_train, y_train, X_held, y_held = digits_split(cfg.held_fraction, seed)
    half = X_held.shape[0] // 2
    X_ref, y_ref, X_test, y_test = X_held[:half], y_held[:half], X_held[half:], y_held[half:]
    shift = dict(invert=cfg.invert, contrast=cfg.contrast, translate=cfg.translate, noise=cfg.noise)
    copies = range(cfg.ref_copies)
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_ref": X_ref,
        "y_ref": y_ref,
        "X_ref_shift": torch.cat([shift_images(X_ref, seed=1000 * seed + c, **shift) for c in copies]),
        "y_ref_shift": y_ref.repeat(cfg.ref_copies),
        "X_test": X_test,
        "X_test_shift": torch.cat(
            [shift_images(X_test, seed=1000 * seed + 500 + c, **shift) for c in range(cfg.test_copies)]
        ),
        "y_test_shift": y_test.repeat(cfg.test_copies),
        "y_test": y_test,
    }


def train_digits_cnn(
    cfg: SaliencyConfig,
    data: dict[str, torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    cache: bool = True,
) -> SmallCNN:
    """Return the chapter's CNN trained on the clean training digits (cached on disk by config and seed,
    unless `cache=False`)."""

    def fit() -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = SmallCNN(cfg.channels, pool_after=cfg.pool_after).to(device)
        train_classifier(
            model, data["X_train"], data["y_train"], epochs=cfg.epochs, lr=cfg.lr, batch=cfg.batch, seed=seed
        )
        return {k: v.cpu() for k, v in model.state_dict().items()}

    model = SmallCNN(cfg.channels, pool_after=cfg.pool_after)
    model.load_state_dict(cached("saliency-evt-cnn", cfg, fit, seed=seed) if cache else fit())
    return model.to(device).eval()


@dataclass
class Scores:
    """Saliency of a set of examples: profiles S, z-scores, POT tail probabilities, and both rankings."""

    S: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor
    rank_z: torch.Tensor
    rank_pot: torch.Tensor


def score_examples(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, ref: ReferenceStats, pot: PeaksOverThreshold
) -> Scores:
    """Return the saliency profiles of `(X, y)` and their z-score and POT rankings against `ref`/`pot`."""
    S = filter_saliency(model, X, y).cpu()
    z = zscore(S, ref)
    p = pot_pvalues(S, pot)
    return Scores(S, z, p, rank_by_zscore(z), rank_by_pot(p, z))


def misclassified(model: nn.Module, X: torch.Tensor, y: torch.Tensor, max_n: int | None = None) -> torch.Tensor:
    """Return the indices (at most `max_n`) of the examples that `model` misclassifies."""
    pred = predict_proba(model, X).argmax(-1).cpu()
    idx = (pred != y.cpu()).nonzero().squeeze(1)
    return idx if max_n is None else idx[:max_n]


def order_mismatch(score: np.ndarray, p: np.ndarray) -> float:
    """Return the fraction of rows in which ranking by decreasing `score` differs from ranking by increasing
    tail probability `p` (0: the two orders are the same in every row)."""
    a = np.argsort(-np.asarray(score, float), axis=1, kind="stable")
    b = np.argsort(np.asarray(p, float), axis=1, kind="stable")
    return float((a != b).any(axis=1).mean())


def synthetic_experiment(
    cfg: SaliencyConfig, *, heavy: bool, seed: int = 0, divide: bool = True, tail: str = "mle"
) -> dict[str, np.ndarray | float]:
    """Return z-scores, POT and exact tail probabilities of synthetic filters, and how the rankings agree.

    The z-scores and POT tail probabilities go through `zscore` and `pot_pvalues` against a `ReferenceStats`
    of the reference samples, as in the CNN experiments. Agreement is measured against the exact tail
    probability: mean top-k overlap (k = 1% of the filters) per test example (`top_z`, `top_pot`, and
    `top_centred` for the ablation arm s_j - mu_j without the division by sigma_j); `heavy_share_*` is the
    share of the top-k that comes from the heaviest-tailed third of the filters (1/3 for a fair score, since
    test values are drawn from the filters' own distributions; NaN for normal filters). `mismatch_true` is
    `order_mismatch` of the z-score computed with the filters' true mu_j, sigma_j against the exact tail
    probability (Proposition 1: 0 for normal filters).

    Knock-outs: `divide=False` drops the z-score's division by sigma_j (in `z`, `top_z`, `mismatch_true`,
    `heavy_share_z`); `tail` (one of `lib.evt.TAIL_METHODS`) picks the POT's tail model: "exponential" fixes
    the GPD's shape at 0, "normal" replaces the GPD by the normal tail of the reference's mean and sd.
    """
    R, T, p_true, nu, mu, sd = synthetic_saliencies(
        cfg.synth_filters, cfg.synth_ref, cfg.synth_test, heavy=heavy, seed=seed, with_params=True
    )
    ref = ReferenceStats.for_quantile(cfg.synth_filters, cfg.synth_ref, cfg.quantile)
    ref.update(torch.from_numpy(R))
    z_t = zscore(torch.from_numpy(T), ref, divide=divide)
    p_t = pot_pvalues(torch.from_numpy(T), ref.pot(min_exceed=cfg.min_exceed, method=tail))
    z, p_pot = z_t.numpy(), p_t.numpy()
    k = max(1, cfg.synth_filters // 100)
    true_score = -np.log(p_true)
    pot_rank = rank_by_pot(p_t, z_t).numpy()
    pot_score = np.empty_like(z)
    np.put_along_axis(pot_score, pot_rank, -np.arange(z.shape[1], dtype=float)[None, :], axis=1)
    top_z = topk_overlap(z, true_score, k)
    top_pot = topk_overlap(pot_score, true_score, k)
    # ablation arm: the z-score without its division by sigma_j (centred saliency s_j - mu_j)
    top_centred = topk_overlap(T - R.mean(0), true_score, k)
    z_exact = standardise(torch.from_numpy(T), torch.from_numpy(mu), torch.from_numpy(sd), divide=divide).numpy()
    heaviest = nu <= np.quantile(nu, 1 / 3) if heavy else np.zeros(nu.shape, dtype=bool)

    def share(score: np.ndarray) -> float:
        return float(heaviest[np.argsort(-score, axis=1, kind="stable")[:, :k]].mean()) if heavy else np.nan

    return {
        "z": z,
        "p_pot": p_pot,
        "p_true": p_true,
        "nu": nu,
        "top_z": top_z,
        "top_pot": top_pot,
        "top_centred": top_centred,
        "mismatch_true": order_mismatch(z_exact, p_true),
        "heavy_share_z": share(z),
        "heavy_share_pot": share(pot_score),
        "heavy_share_true": share(true_score),
    }


def malicious_experiment(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    ref: ReferenceStats,
    pot: PeaksOverThreshold,
    cfg: SaliencyConfig,
    *,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Plant one malicious filter at a time (`cfg.plant_per_layer` random filters per layer) and return
    the detection ranks of the planted filter under both scores.

    For each planted filter, the examples that the clean model classifies correctly but the corrupted
    one does not are scored against the clean model's reference statistics `ref`/`pot`. Returns arrays
    over (planted filter, new error) pairs: `rank_z`, `rank_pot` (1 = top), and per planted filter:
    `planted`, `n_errors`.
    """
    _, layer_of, _ = filter_table(model)
    rng = np.random.default_rng(seed)
    ok = predict_proba(model, X).argmax(-1).cpu() == y.cpu()
    out: dict[str, list] = {"rank_z": [], "rank_pot": [], "planted": [], "n_errors": []}
    for layer in range(int(layer_of.max()) + 1):
        candidates = (layer_of == layer).nonzero().squeeze(1).numpy()
        for f in rng.choice(candidates, min(cfg.plant_per_layer, candidates.size), replace=False):
            bad = plant_malicious_filter(model, int(f), scale=cfg.plant_scale, seed=int(f))
            hit = misclassified(bad, X, y)
            hit = hit[ok[hit]]
            out["planted"].append(int(f))
            out["n_errors"].append(hit.numel())
            if hit.numel() < cfg.plant_min_errors:
                continue
            sc = score_examples(bad, X[hit], y[hit], ref, pot)
            out["rank_z"].append(detection_rank(sc.rank_z, int(f)).numpy())
            out["rank_pot"].append(detection_rank(sc.rank_pot, int(f)).numpy())
    # Ranks are empty when no planted filter causes `plant_min_errors` new errors (an untrained model: the smoke run)
    return {
        k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) if k.startswith("rank") else np.array(v)
        for k, v in out.items()
    }


# Figures (drawn with lib.plotting's vocabulary; each returns its figure)


def plot_normality(normal: dict, heavy: dict, rows: slice = slice(0, 10)):
    """Draw z-score against exact tail probability (normal, heavy-tailed) and POT's estimate against the exact one."""
    fig, axes = subplots(1, 3, figsize=(11.0, 3.6))
    ylab = r"$-\log_{10}$ exact tail probability"
    axes[0].scatter(normal["z"][rows].ravel(), -np.log10(normal["p_true"][rows]).ravel(), s=4, color=PALETTE[0])
    label(axes[0], title="normal saliencies", x="z-score", y=ylab)
    colour = np.broadcast_to(np.log10(heavy["nu"]), heavy["z"][rows].shape).ravel()
    sc = axes[1].scatter(
        heavy["z"][rows].ravel(), -np.log10(heavy["p_true"][rows]).ravel(), s=4, c=colour, cmap="viridis"
    )
    fig.colorbar(sc, ax=axes[1], label=r"$\log_{10}$ tail index $\nu$")
    label(axes[1], title="heavy-tailed saliencies", x="z-score", y=ylab)
    tail = heavy["p_pot"] < 1
    axes[2].loglog(
        heavy["p_true"][tail],
        np.maximum(heavy["p_pot"][tail], 1e-8),
        ".",
        ms=2,
        color=PALETTE[1],
        label="filter above threshold",
    )
    axes[2].plot([1e-6, 0.1], [1e-6, 0.1], color="k", lw=1, label="estimate = exact")
    label(axes[2], title="POT estimate (heavy)", x="exact tail probability", y="POT tail probability")
    axes[2].legend(loc="upper left", markerscale=5)
    return fig


def plot_depth(
    mu_layer: np.ndarray,
    sd_layer: np.ndarray,
    beta_layer: np.ndarray,
    share_live: np.ndarray,
    share_z: np.ndarray,
    share_pot: np.ndarray,
    top_k: int,
):
    """Draw per-layer reference mean and spread, median GPD shape, and each ranking's top-K share per layer."""
    fig, axes = subplots(1, 3, figsize=(11.0, 3.6))
    depth = np.arange(1, len(mu_layer) + 1)
    axes[0].semilogy(depth, mu_layer, "o-", label=r"mean $\mu_j$")
    axes[0].semilogy(depth, sd_layer, "s--", label=r"std $\sigma_j$")
    label(axes[0], x="layer", y="filter saliency", title="reference statistics")
    axes[0].legend()
    axes[1].bar(depth, beta_layer, color=PALETTE[2])
    label(axes[1], x="layer", y=r"median GPD shape $\beta_j$", title="tail heaviness")
    w = 0.27
    axes[2].bar(depth - w, share_live, w, label="live filters", color="0.6")
    axes[2].bar(depth, share_z, w, label="z-score top-K")
    axes[2].bar(depth + w, share_pot, w, label="POT top-K")
    label(axes[2], x="layer", y="share", title=f"top-{top_k} filters by layer")
    axes[2].legend()
    return fig


def plot_editing(edits: dict, ks):
    """Draw the fraction corrected and the confidence drop against k, per edit mode and ranking (2 x 2 panels)."""
    fig, axes = subplots(2, 2, sharex=True, figsize=(8.0, 6.4))
    labels = {"corrected": "fraction corrected", "drop_incorrect": "confidence drop"}
    names = list(dict.fromkeys(name for _, name in edits))
    for row, mode in enumerate(("prune", "finetune")):
        for col, key in enumerate(labels):
            ax = axes[row, col]
            for name, style in zip(names, ("o-", "s--", "^:")):
                ax.plot(ks, edits[(mode, name)][key], style, label=name)
            ax.set_xscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            label(ax, title=f"{mode}: {labels[key]}", y=labels[key])
            if row == 1:
                ax.set_xlabel("filters edited k")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncol=3)
    return fig


def plot_malicious(pct: dict[str, np.ndarray], n_filters: int):
    """Draw the cumulative distribution of the planted filter's rank percentile per ranking, and a random ranking."""
    fig, ax = subplots(1, 1, figsize=(5.5, 3.8))
    for (name, v), style in zip(pct.items(), ("-", "--")):
        ax.plot(np.sort(v), np.arange(1, len(v) + 1) / len(v), style, label=name)
    grid = np.logspace(np.log10(1 / n_filters), 0, 50)
    ax.plot(grid, grid, color="0.5", ls=":", label="random ranking")
    label(ax, x="rank percentile of the planted filter", y="cumulative fraction of errors", xscale="log")
    ax.legend()
    return fig
