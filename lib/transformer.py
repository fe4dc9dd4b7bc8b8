"""A small causal transformer, in one readable file (nanoGPT-style), shared by several chapters.

Introduced in chapter "Induction heads as associative memories" (`chapters/induction-heads`); reused by
the Dyck, looped-transformer, memorization and benign-overfitting chapters.

The model maps token ids `idx` of shape (B, T) to next-token logits of shape (B, T, V)::

    h_0 = W_E[idx] (+ P)                       token embedding (+ absolute position encoding)
    h_l = h_{l-1} + Attn_l(Norm(h_{l-1}))      causal self-attention, every head sees positions s <= t
    h_l = h_l + MLP_l(Norm(h_l))               only when d_ff > 0 (d_ff = 0: attention-only layers)
    logits = W_U Norm(h_L)

Conventions:

* Causal attention *includes the current position*: the query at t attends to keys s = 0, ..., t.
* Positional encoding `pos_enc`: "none" (no position information: the model can only use the causal
  mask), "learned" (absolute, one trainable vector per position; sequences longer than `max_len` are an
  error), "sinusoidal" (absolute, fixed; any length) or "rope" (rotary, relative: applied to queries and
  keys inside attention; any length). `max_len` only limits "learned".
* Start (BOS) token: there is no special machinery. A start token is a *data-level convention*: reserve a
  token id (commonly `vocab_size - 1`), prepend it with `with_start_token`, and count it in `vocab_size`.
  It gives attention a place to put weight at t = 0 and marks the first position without a position code.
* `freeze_embeddings` freezes the token embedding `W_E`; `freeze_unembedding` freezes `W_U`;
  `tie_embeddings` uses `W_U = W_E` (one shared, trainable-or-frozen matrix).
* `norm`: "layer" (LayerNorm), "rms" (RMSNorm) or "none" (identity; the residual stream stays linear,
  as in the associative-memory analyses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib.progress import trange

POS_ENCODINGS = ("none", "learned", "sinusoidal", "rope")
NORMS = ("layer", "rms", "none")


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and switches of a `CausalTransformer`. Explained in chapter induction-heads."""

    vocab_size: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    max_len: int = 256  # longest sequence for pos_enc="learned"; other encodings extrapolate
    pos_enc: str = "learned"  # one of POS_ENCODINGS
    d_ff: int = 0  # hidden width of the feed-forward block; 0 = attention-only layers
    norm: str = "layer"  # one of NORMS
    bias: bool = False  # biases in the linear maps (q, k, v, o, feed-forward)
    freeze_embeddings: bool = False  # W_E not trained
    freeze_unembedding: bool = False  # W_U not trained
    tie_embeddings: bool = False  # W_U = W_E
    causal: bool = True  # False gives bidirectional attention (an encoder)
    rope_base: float = 10000.0
    init_std: float = 0.02  # std of the normal initialisation of every weight matrix

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise ValueError(f"TransformerConfig.d_ff must be an int >= 0 (0 = no MLP), got {self.d_ff!r}")
        if self.pos_enc not in POS_ENCODINGS:
            raise ValueError(f"pos_enc must be one of {POS_ENCODINGS}, got {self.pos_enc!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.pos_enc == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_model/n_heads={self.head_dim}")
        if self.pos_enc == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal encoding needs an even d_model, got {self.d_model}")
        if self.tie_embeddings and self.freeze_embeddings != self.freeze_unembedding:
            raise ValueError("tie_embeddings shares W_E and W_U: freeze both or neither")

    @property
    def head_dim(self) -> int:
        """Return d_model / n_heads."""
        return self.d_model // self.n_heads


def with_start_token(idx: Tensor, start_token: int) -> Tensor:
    """Return `idx` (B, T) with the start (BOS) token id prepended: shape (B, T + 1)."""
    start = torch.full((idx.shape[0], 1), start_token, dtype=idx.dtype, device=idx.device)
    return torch.cat([start, idx], dim=1)


def causal_mask(T: int, device: torch.device | str | None = None) -> Tensor:
    """Return the (T, T) boolean mask M[t, s] = (s <= t): a query sees itself and the past."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def _angle_dtype(device: torch.device | str | None) -> torch.dtype:
    """Return float64 for computing angles, or float32 on Apple MPS (which has no float64)."""
    return torch.float32 if torch.device(device or "cpu").type == "mps" else torch.float64


def sinusoidal_encoding(
    T: int, d: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Return the (T, d) fixed encoding P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(same)."""
    wide = _angle_dtype(device)
    t = torch.arange(T, device=device, dtype=wide)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, device=device, dtype=wide) / d)
    P = torch.zeros(T, d, device=device, dtype=wide)
    P[:, 0::2] = torch.sin(t * freq)
    P[:, 1::2] = torch.cos(t * freq)
    return P.to(dtype)


def rope_rotate(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Return x (..., T, D) with each pair (x_2i, x_2i+1) at position t rotated by angle t * base^(-2i/D).

    Rotations compose: <rope(q, t), rope(k, s)> depends on t and s only through t - s.
    """
    D = x.shape[-1]
    wide = _angle_dtype(x.device)
    theta = base ** (-torch.arange(0, D, 2, device=x.device, dtype=wide) / D)  # (D/2,)
    angle = positions.to(wide)[:, None] * theta[None, :]  # (T, D/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class RMSNorm(nn.Module):
    """RMSNorm(x) = g * x / sqrt(mean(x^2) + eps)."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        """Return x (..., d) divided by its root mean square over the last axis, times the gain."""
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def make_norm(kind: str, d: int) -> nn.Module:
    """Return LayerNorm, RMSNorm or the identity for `kind` in {"layer", "rms", "none"}."""
    return {"layer": lambda: nn.LayerNorm(d), "rms": lambda: RMSNorm(d), "none": nn.Identity}[kind]()


class CausalSelfAttention(nn.Module):
    """Multi-head attention: A = softmax(Q K^T / sqrt(d_h) + mask), y = concat_h(A_h V_h) W_O."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.W_Q = nn.Linear(d, d, bias=cfg.bias)
        self.W_K = nn.Linear(d, d, bias=cfg.bias)
        self.W_V = nn.Linear(d, d, bias=cfg.bias)
        self.W_O = nn.Linear(d, d, bias=cfg.bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """Return x (B, T, d) reshaped to (B, H, T, d_h)."""
        B, T, _ = x.shape
        return x.view(B, T, self.cfg.n_heads, self.cfg.head_dim).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (output (B, T, d), attention probabilities (B, H, T, T))."""
        B, T, d = x.shape
        q, k, v = self.split_heads(self.W_Q(x)), self.split_heads(self.W_K(x)), self.split_heads(self.W_V(x))
        if self.cfg.pos_enc == "rope":
            positions = torch.arange(T, device=x.device)
            q = rope_rotate(q, positions, self.cfg.rope_base)
            k = rope_rotate(k, positions, self.cfg.rope_base)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.cfg.head_dim)  # (B, H, T, T)
        if self.cfg.causal:
            scores = scores.masked_fill(~causal_mask(T, x.device), float("-inf"))
        A = scores.softmax(dim=-1)
        y = (A @ v).transpose(1, 2).reshape(B, T, d)
        return self.W_O(y), A


class MLP(nn.Module):
    """MLP(x) = W_2 GELU(W_1 x)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.W_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.W_2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Return W_2 GELU(W_1 x) for x (..., d_model)."""
        return self.W_2(F.gelu(self.W_1(x)))


class Block(nn.Module):
    """One pre-norm layer: h = h + Attn(Norm(h)); h = h + MLP(Norm(h)) (the MLP only when d_ff > 0)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_attn = make_norm(cfg.norm, cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.norm_mlp = make_norm(cfg.norm, cfg.d_model) if cfg.d_ff else None
        self.mlp = MLP(cfg) if cfg.d_ff else None

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Return (new residual stream, attention probabilities)."""
        a, A = self.attn(self.norm_attn(h))
        h = h + a
        if self.mlp is not None:
            h = h + self.mlp(self.norm_mlp(h))
        return h, A


class CausalTransformer(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V). Explained in chapter induction-heads."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"CausalTransformer needs a TransformerConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.W_E = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.P = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.pos_enc == "learned" else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm_final = make_norm(cfg.norm, cfg.d_model)
        self.W_U = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        if cfg.tie_embeddings:
            self.W_U.weight = self.W_E.weight
        self.W_E.weight.requires_grad_(not cfg.freeze_embeddings)
        self.W_U.weight.requires_grad_(not cfg.freeze_unembedding)  # tied: validated equal to W_E

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise every weight matrix N(0, init_std^2) and every bias to zero."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def n_params(self, trainable_only: bool = True) -> int:
        """Return the number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _check_input(self, idx: Tensor) -> None:
        """Raise TypeError / ValueError unless idx is a (B, T) integer tensor of valid token ids."""
        if not isinstance(idx, Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, time), got shape {tuple(idx.shape)}")
        if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        T = idx.shape[1]
        if T == 0:
            raise ValueError("idx has no positions (T = 0)")
        if self.P is not None and T > self.cfg.max_len:
            raise ValueError(
                f"sequence length {T} exceeds max_len={self.cfg.max_len} of the learned positional "
                "encoding; use pos_enc='rope', 'sinusoidal' or 'none' to run on longer sequences"
            )
        if idx.device.type != "meta" and idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.cfg.vocab_size:
                raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size}), got range [{lo}, {hi}]")

    def embed(self, idx: Tensor) -> Tensor:
        """Return h_0 = W_E[idx] + P[t] (the position term only for absolute encodings)."""
        h = self.W_E(idx)
        T = idx.shape[1]
        if self.cfg.pos_enc == "learned":
            h = h + self.P(torch.arange(T, device=idx.device))
        elif self.cfg.pos_enc == "sinusoidal":
            h = h + sinusoidal_encoding(T, self.cfg.d_model, device=idx.device, dtype=h.dtype)
        return h

    def forward(self, idx: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Return logits (B, T, V), or (logits, [attention (B, H, T, T) of each layer]) if return_attn."""
        self._check_input(idx)
        h = self.embed(idx.long())
        maps = []
        for block in self.blocks:
            h, A = block(h)
            maps.append(A)
        logits = self.W_U(self.norm_final(h))
        return (logits, maps) if return_attn else logits


def lm_loss(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Return the mean cross-entropy of `logits` (B, T, V) against `targets` (B, T) over `mask` (B, T).

    `targets[:, t]` is the token the model should predict at position t (usually `idx[:, t + 1]`); the
    mean runs over the positions where `mask` is True (all positions when `mask` is None). A float `mask`
    holds non-negative weights w: the loss is then sum_t w_t l_t / sum_t w_t.
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in (B, T)")
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten().long(), reduction="none")
    if mask is None:
        return losses.mean()
    if mask.shape != targets.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the shape of targets {tuple(targets.shape)}")
    mask = mask.flatten().to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)


def train_lm(
    model: nn.Module,
    batches: Callable[[int], tuple[Tensor, Tensor, Tensor | None]] | Iterator,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.99),
    desc: str = "training",
    log_every: int = 0,
    on_log: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `model` with AdamW on next-token loss; return the loss of every step.

    `batches(step)` (or `next(batches)`) returns (inputs (B, T), targets (B, T), mask (B, T) or None),
    already on the model's device. Every `log_every` steps `on_log(step, loss)` is called.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    model.train()
    losses = []
    for step in trange(steps, desc=desc):
        x, y, mask = batches(step) if callable(batches) else next(batches)
        loss = lm_loss(model(x), y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_log is not None and log_every and (step + 1) % log_every == 0:
            on_log(step + 1, losses[-1])
    model.eval()
    return losses
