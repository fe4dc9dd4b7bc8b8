"""A small, plain CNN family, a minibatch classifier trainer, and domain-shifted images.

Shared building block (first explained in chapter "parameter-saliency-evt"). The convolutions are
named `conv1 ... convL`, so a filter is addressed as `(layer, filter)`: output channel `filter` of
layer `layer`. Everything here is paper-free and device-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.data import load_digits, train_test_split
from lib.progress import trange


class SmallCNN(nn.Module):
    """Conv3x3 + ReLU blocks named `conv1..convL`, optional 2x2 average pooling, global pooling, linear head.

    Explained in chapter "parameter-saliency-evt".
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        pool_after: Sequence[int] = (),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive widths, got {channels}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        bad = [p for p in pool_after if not 1 <= p <= len(channels)]
        if bad:
            raise ValueError(f"pool_after names layers {bad} outside 1..{len(channels)}")
        self.channels = channels
        self.pool_after = tuple(sorted(set(pool_after)))
        self.convs = nn.ModuleDict()
        prev = in_channels
        for i, width in enumerate(channels, start=1):
            self.convs[f"conv{i}"] = nn.Conv2d(prev, width, kernel_size, padding=kernel_size // 2)
            prev = width
        self.head = nn.Linear(prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the globally pooled features, shape (B, channels[-1])."""
        if x.dim() != 4:
            raise ValueError(f"SmallCNN expects images of shape (B, C, H, W), got {tuple(x.shape)}")
        for i, conv in enumerate(self.convs.values(), start=1):
            x = F.relu(conv(x))
            if i in self.pool_after:
                x = F.avg_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape (B, num_classes)."""
        return self.head(self.features(x))


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Return `[(parameter-name prefix, conv module)]` of every `nn.Conv2d` in `model`, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def filter_table(model: nn.Module) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Return `(layer names, layer index of each filter, filter index within its layer)` over all conv filters."""
    layers = conv_layers(model)
    if not layers:
        raise ValueError("the model has no nn.Conv2d layer, so it has no filters")
    names = [name for name, _ in layers]
    layer_of = torch.cat([torch.full((m.out_channels,), i) for i, (_, m) in enumerate(layers)])
    index_in = torch.cat([torch.arange(m.out_channels) for _, m in layers])
    return names, layer_of, index_in


def _check_xy(X: torch.Tensor, y: torch.Tensor) -> None:
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} examples but y has {y.shape[0]} labels")
    if y.dtype != torch.int64:
        raise TypeError(f"labels must be int64 class indices, got {y.dtype}")


def train_classifier(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    batch: int = 64,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
    seed: int = 0,
    desc: str = "train",
) -> list[float]:
    """Train `model` in place with Adam and cross-entropy; return the mean loss of each epoch."""
    _check_xy(X, y)
    if epochs < 1 or batch < 1:
        raise ValueError(f"epochs and batch must be positive, got epochs={epochs}, batch={batch}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    X, y = X.to(device), y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in trange(epochs, desc=desc):
        perm = torch.randperm(X.shape[0], generator=gen).to(device)
        total = 0.0
        for start in range(0, X.shape[0], batch):
            idx = perm[start : start + batch]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        history.append(total / X.shape[0])
    model.eval()
    return history


@torch.no_grad()
def predict_proba(model: nn.Module, X: torch.Tensor, *, batch: int = 1024) -> torch.Tensor:
    """Return softmax class probabilities of `model` on `X` (on the model's device), shape (N, classes)."""
    device = next(model.parameters()).device
    model.eval()
    out = [F.softmax(model(X[i : i + batch].to(device)), dim=-1) for i in range(0, X.shape[0], batch)]
    return torch.cat(out)


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, batch: int = 1024) -> float:
    """Return the fraction of examples of `(X, y)` that `model` classifies correctly."""
    _check_xy(X, y)
    pred = predict_proba(model, X, batch=batch).argmax(-1).cpu()
    return float((pred == y.cpu()).float().mean())


def shift_images(
    X: torch.Tensor,
    *,
    invert: float = 0.0,
    translate: int = 0,
    noise: float = 0.0,
    contrast: tuple[float, float] = (1.0, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """Return a domain-shifted copy of images `X` in [0, 1] (shape (N, C, H, W)).

    Each image is, independently and in this order: rescaled in contrast by a factor drawn uniformly
    from `contrast`; inverted (x -> 1 - x) with probability `invert`; translated by up to `translate`
    pixels in each direction (zero fill); given Gaussian noise of std `noise`; clipped to [0, 1].
    """
    if X.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(X.shape)}")
    if not 0.0 <= invert <= 1.0:
        raise ValueError(f"invert is a probability, got {invert}")
    lo, hi = contrast
    if not 0.0 <= lo <= hi:
        raise ValueError(f"contrast must be a range 0 <= lo <= hi, got {contrast}")
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = X.shape
    out = X.clone().float()
    scale = lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen)
    out = out * scale
    flip = torch.rand(n, 1, 1, 1, generator=gen) < invert
    out = torch.where(flip, 1.0 - out, out)
    if translate > 0:
        t = translate
        padded = F.pad(out, (t, t, t, t))
        dy = torch.randint(0, 2 * t + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * t + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        batch_idx = torch.arange(n)[:, None, None, None]
        chan_idx = torch.arange(out.shape[1])[None, :, None, None]
        out = padded[batch_idx, chan_idx, rows, cols]
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=gen)
    return out.clamp(0.0, 1.0)


def digits_split(test_fraction: float = 0.4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Return `(X_train, y_train, X_test, y_test)`: scikit-learn's 8x8 digits split at random."""
    X, y = load_digits()
    train, test = train_test_split(X.shape[0], test_fraction, seed)
    train, test = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(test))
    return X[train], y[train], X[test], y[test]
