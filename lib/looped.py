"""Looped transformers: one shared block run r times, with optional timestep modulation.

Explained in chapter "Looped transformers" (`chapters/looped-transformers`), after Xu and Sato,
"On Expressive Power of Looped Transformers: Theoretical Analysis and Enhancement via Timestep
Encoding" (ICML 2025). Built on `lib.transformer` (its attention, MLP, norms and block are reused)::

    x = W_E[idx] (+ P)                                   embedding, as in CausalTransformer
    h_0 = x;  h_t = TF_t(h_{t-1})                        no input injection
    h_0 = 0;  h_t = TF_t(h_{t-1} + x)                    with input injection
    out = W_U Norm(h_r)

where TF_t is the one shared block (`lib.transformer.Block`). Without modulation TF_t = TF for every
loop t. With modulation (adaLN style, as the official code: scales gamma and gates alpha per sublayer,
no shifts) the loop index t gives::

    h = h + (1 + alpha_1(t)) * Attn(Norm(h) * (1 + gamma_1(t)))
    h = h + (1 + alpha_2(t)) * MLP(Norm(h) * (1 + gamma_2(t)))

`modulation="timestep"`: (gamma, alpha)(t) = W_out SiLU(W_2 SiLU(W_1 PE(t))), PE the sinusoid of
`lib.transformer.sinusoidal_encoding`, W_out initialised at zero. `modulation="gains"`: the control
with two learned scalars per loop, alpha_1(t) and alpha_2(t), and no scales. Both start at zero, so at
initialisation the modulated model equals the plain looped one exactly. (The official code's gates
are alpha(t), not 1 + alpha(t): its block starts as the identity.)

Knock-outs (switches that remove a mechanism a claim names, for the tests and the controls):
`freeze_index=True` hands the modulation the loop index 0 on every loop (same parameters, no loop
dependence); `single_pass=True` applies the block once whatever r is (no looping).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib import plotting
from lib.config import Config
from lib.progress import trange
from lib.runtime import one_thread
from lib.transformer import (
    Block,
    CausalTransformer,
    TransformerConfig,
    make_norm,
    sinusoidal_encoding,
    train_lm,
)

MODULATIONS = ("none", "gains", "timestep")


@dataclass(frozen=True)
class LoopedConfig:
    """A looped transformer: the shared block's config, the readout size and the loop options."""

    block: TransformerConfig  # n_layers is ignored: there is one block
    n_out: int | None = None  # readout size; None: vocab_size (logits over tokens)
    injection: bool = False  # h_t = TF(h_{t-1} + x) from h_0 = 0
    modulation: str = "none"  # one of MODULATIONS
    loops: int = 4  # r used when forward() is called without r
    max_loops: int = 64  # largest r for modulation="gains" (one row per loop)
    t_dim: int = 32  # width of the sinusoidal timestep encoding PE(t)
    freeze_index: bool = False  # knock-out: the modulation sees t = 0 on every loop
    single_pass: bool = False  # knock-out: the block runs once whatever r is

    def __post_init__(self) -> None:
        if self.modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS}, got {self.modulation!r}")
        if self.t_dim % 2:
            raise ValueError(f"t_dim must be even (sine and cosine pairs), got {self.t_dim}")
        for name in ("loops", "max_loops"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoopedConfig.{name} must be >= 1")


class TimestepModulation(nn.Module):
    """Loop index t -> (gamma_1, alpha_1, gamma_2, alpha_2)(t), each (d,); zero at init."""

    def __init__(self, d: int, t_dim: int, max_loops: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_encoding(max_loops, t_dim), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(t_dim, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU())
        self.out = nn.Linear(d, 4 * d)
        nn.init.zeros_(self.out.weight)  # zero init: the modulated block starts as the plain block
        nn.init.zeros_(self.out.bias)

    def forward(self, t: int) -> tuple[Tensor, ...]:
        """Return the four modulation vectors (scale, gate of attention; scale, gate of the MLP) of loop t."""
        if t >= self.pe.shape[0]:  # beyond the table: compute the sinusoid for this t
            pe = sinusoidal_encoding(t + 1, self.pe.shape[1], device=self.pe.device)[t]
        else:
            pe = self.pe[t]
        return tuple(self.out(self.mlp(pe)).chunk(4))


class LoopGains(nn.Module):
    """Loop index t -> gates (alpha_1(t), alpha_2(t)): two learned scalars per loop, zero at init."""

    def __init__(self, max_loops: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(max_loops, 2))

    def forward(self, t: int) -> tuple[Tensor | float, ...]:
        """Return (gamma_1, alpha_1, gamma_2, alpha_2) with no scales."""
        if t >= self.alpha.shape[0]:
            raise ValueError(f"loop {t} >= max_loops={self.alpha.shape[0]} of the per-loop gains")
        return 0.0, self.alpha[t, 0], 0.0, self.alpha[t, 1]


class LoopedTransformer(nn.Module):
    """Token ids (B, T) -> outputs (B, T, n_out) after r loops of one shared block.

    Explained in chapter looped-transformers. The parameter count does not depend on r.
    """

    def __init__(self, cfg: LoopedConfig):
        super().__init__()
        self.cfg = cfg
        b = cfg.block
        self.W_E = nn.Embedding(b.vocab_size, b.d_model)
        self.P = nn.Embedding(b.max_len, b.d_model) if b.pos_enc == "learned" else None
        self.block = Block(b)
        self.norm_final = make_norm(b.norm, b.d_model)
        self.W_U = nn.Linear(b.d_model, cfg.n_out or b.vocab_size, bias=False)
        self.apply(self._init_weights)
        self.modulation: nn.Module | None = None
        if cfg.modulation == "timestep":
            self.modulation = TimestepModulation(b.d_model, cfg.t_dim, cfg.max_loops)
        elif cfg.modulation == "gains":
            self.modulation = LoopGains(cfg.max_loops)

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise weight matrices N(0, init_std^2) and biases at zero, as CausalTransformer does."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.block.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def n_params(self) -> int:
        """Return the number of trainable parameters (independent of r)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def embed(self, idx: Tensor) -> Tensor:
        """Return x = W_E[idx] (+ P[t]): the embedding of `CausalTransformer.embed`."""
        h = self.W_E(idx.long())
        T = idx.shape[1]
        if self.P is not None:
            h = h + self.P(torch.arange(T, device=idx.device))
        elif self.cfg.block.pos_enc == "sinusoidal":
            h = h + sinusoidal_encoding(T, h.shape[-1], device=idx.device, dtype=h.dtype)
        return h

    def step(self, h: Tensor, t: int) -> Tensor:
        """Return TF_t(h): one pass of the shared block, modulated by loop t when asked."""
        if self.modulation is None:
            return self.block(h)[0]
        blk = self.block
        g1, a1, g2, a2 = self.modulation(0 if self.cfg.freeze_index else t)
        # [lt-def-tmlt]: h <- h + (1 + alpha_1(t)) Attn(Norm(h) (1 + gamma_1(t)))
        a, _ = blk.attn(blk.norm_attn(h) * (1 + g1))
        h = h + (1 + a1) * a
        if blk.mlp is not None:
            # h <- h + (1 + alpha_2(t)) MLP(Norm(h) (1 + gamma_2(t)))
            h = h + (1 + a2) * blk.mlp(blk.norm_mlp(h) * (1 + g2))
        return h

    def hidden(self, idx: Tensor, r: int | None = None) -> Tensor:
        """Return the residual stream h_r (B, T, d) after r loops (default `cfg.loops`)."""
        r = self.cfg.loops if r is None else r
        if r < 1:
            raise ValueError(f"the number of loops r must be >= 1, got {r}")
        x = self.embed(idx)
        h = torch.zeros_like(x) if self.cfg.injection else x
        for t in range(1 if self.cfg.single_pass else r):
            h = self.step(h + x if self.cfg.injection else h, t)
        return h

    def forward(self, idx: Tensor, r: int | None = None) -> Tensor:
        """Return W_U Norm(h_r): logits or regression outputs (B, T, n_out)."""
        return self.W_U(self.norm_final(self.hidden(idx, r)))


def unroll(model: LoopedTransformer, r: int) -> CausalTransformer:
    """Return a standard r-layer CausalTransformer whose every layer is a copy of the shared block.

    For a plain looped model without injection it computes the same function at r loops, but its r
    blocks are separate parameters (the test of weight sharing compares gradients with it).
    """
    if model.cfg.modulation != "none" or model.cfg.injection:
        raise ValueError("unroll is defined for plain looped models without input injection")
    b = model.cfg.block
    deep = CausalTransformer(dataclasses.replace(b, n_layers=r))
    deep.W_E.load_state_dict(model.W_E.state_dict())
    if model.P is not None:
        deep.P.load_state_dict(model.P.state_dict())
    for blk in deep.blocks:
        blk.load_state_dict(copy.deepcopy(model.block.state_dict()))
    deep.norm_final.load_state_dict(model.norm_final.state_dict())
    if deep.W_U.weight.shape != model.W_U.weight.shape:
        raise ValueError("unroll needs n_out == vocab_size")
    deep.W_U.load_state_dict(model.W_U.state_dict())
    return deep.to(model.W_E.weight.dtype)


# ---------------------------------------------------------------- tasks with exact labels


def memorisation_set(M: int, N: int, V: int, n_labels: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Return M distinct random sequences (M, N) over V tokens and a random label (M,) for each."""
    if M > V**N:
        raise ValueError(f"only {V**N} distinct sequences of length {N} over {V} tokens, asked for {M}")
    codes = torch.randperm(V**N, generator=generator)[:M]
    powers = V ** torch.arange(N - 1, -1, -1)
    X = (codes[:, None] // powers) % V
    y = torch.randint(0, n_labels, (M,), generator=generator)
    return X, y


def edit_distance(a: Tensor, b: Tensor, indel: int = 1, sub: int = 1) -> Tensor:
    """Return the weighted edit distance (B,) between rows of a (B, n) and b (B, m) (dynamic programming).

    D[i, j] = min(D[i-1, j] + indel, D[i, j-1] + indel, D[i-1, j-1] + sub * [a_i != b_j]).
    """
    B, n = a.shape
    m = b.shape[1]
    prev = torch.arange(m + 1).repeat(B, 1) * indel  # D[0, j] = j * indel
    for i in range(1, n + 1):
        cur = [torch.full((B,), i * indel)]
        for j in range(1, m + 1):
            diag = prev[:, j - 1] + sub * (a[:, i - 1] != b[:, j - 1]).long()
            cur.append(torch.minimum(torch.minimum(prev[:, j] + indel, cur[j - 1] + indel), diag))
        prev = torch.stack(cur, dim=1)
    return prev[:, m]


def lcs_length(a: Tensor, b: Tensor) -> Tensor:
    """Return the length (B,) of a longest common subsequence of rows of a (B, n) and b (B, m).

    L[i, j] = L[i-1, j-1] + 1 if a_i = b_j, else max(L[i-1, j], L[i, j-1]).
    """
    B, n = a.shape
    m = b.shape[1]
    prev = torch.zeros(B, m + 1, dtype=torch.long)
    for i in range(1, n + 1):
        cur = [torch.zeros(B, dtype=torch.long)]
        for j in range(1, m + 1):
            same = a[:, i - 1] == b[:, j - 1]
            cur.append(torch.where(same, prev[:, j - 1] + 1, torch.maximum(prev[:, j], cur[j - 1])))
        prev = torch.stack(cur, dim=1)
    return prev[:, m]


ED_PAD, ED_BAR, ED_SEP = 0, 1, 2
"""Special tokens of the edit-distance prompts; letters are tokens 3, 4, ..."""


def _edit_pair(rng: random.Random, length: int, pool: int, using: tuple[int, int]) -> tuple[list[int], list[int]]:
    """Return one pair of strings as the official generator draws them (see `edit_distance_task`)."""
    while True:
        letters = rng.sample(range(pool), rng.randint(*using))
        a = [rng.choice(letters) for _ in range(length)]
        if rng.random() < 0.4:  # a random second string of nearby length
            b = [rng.choice(letters) for _ in range(rng.randint(max(1, length - 3), length + 2))]
        else:  # the first string after 1..length random edits
            b = a[:]
            for _ in range(rng.randint(1, length)):
                op = rng.randrange(3)
                if op == 0 and len(b) > 2:
                    del b[rng.randrange(len(b))]
                elif op == 1:
                    b[rng.randrange(len(b))] = rng.choice(letters)
                elif op == 2:
                    b.insert(rng.randrange(len(b) + 1), rng.choice(letters))
        if a != b and max(1, length - 3) <= len(b) <= length + 2:
            return (b, a) if len(a) > len(b) else (a, b)


def _edit_distance_lists(a: list[int], b: list[int], indel: int, sub: int) -> int:
    """Return the weighted edit distance of two lists (the recursion of `edit_distance`, in plain Python)."""
    prev = [j * indel for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        cur = [i * indel]
        for j in range(1, len(b) + 1):
            cur.append(min(prev[j] + indel, cur[j - 1] + indel, prev[j - 1] + (sub if a[i - 1] != b[j - 1] else 0)))
        prev = cur
    return prev[-1]


def edit_distance_task(
    B: int,
    length: int,
    generator: torch.Generator,
    pool: int = 26,
    using: tuple[int, int] = (3, 10),
    indel: int = 2,
    sub: int = 3,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return prompts (B, 2 length + 4), the position of their SEP (B,) and the edit distances (B,).

    The official task's format: a prompt is `a | b SEP` then padding, the answer is read at SEP. Each pair
    draws 3..10 letters of a pool of 26 (`using`), a first string of `length` letters, and with probability
    0.4 a random second string of length length - 3 .. length + 2, else the first string after 1..length
    random deletions, substitutions or insertions; equal pairs are drawn again and the shorter string goes
    first. Costs: insert/delete 2, substitute 3 (the official code's). Labels lie in [0, 4 length + 4].
    """
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    T = 2 * length + 4
    X = torch.full((B, T), ED_PAD, dtype=torch.long)
    sep = torch.empty(B, dtype=torch.long)
    y = torch.empty(B, dtype=torch.long)
    for i in range(B):
        a, b = _edit_pair(rng, length, pool, using)
        row = [c + 3 for c in a] + [ED_BAR] + [c + 3 for c in b] + [ED_SEP]
        X[i, : len(row)] = torch.tensor(row)
        sep[i] = len(row) - 1
        y[i] = _edit_distance_lists(a, b, indel, sub)
    return X, sep, y


# ---------------------------------------------------------------- targets with known moduli


def sine_target(X: Tensor, k: float) -> Tensor:
    """Return f(X)_n = sin(2 pi k (x_n + mean_m x_m) / 2) for tokens x in [0, 1] of X (B, N)."""
    return torch.sin(torch.pi * k * (X + X.mean(-1, keepdim=True)))


def sine_moduli(k: float, N: int, delta: float) -> dict[str, float]:
    """Return the sequence, contextual and token moduli of `sine_target` at scale delta (p = inf, d = 1).

    |d f_n / d x_n| = pi k (1 + 1/N) and |d f_n / d x_m| = pi k / N (m != n), each capped at the range 2.
    """
    tok = min(torch.pi * k * (1 + 1 / N) * delta, 2.0)
    cont = min(torch.pi * k / N * (N - 1) ** 0.5 * delta, 2.0)  # Cauchy-Schwarz over the N - 1 others
    seq = min(torch.pi * k * ((1 + 1 / N) ** 2 + (N - 1) / N**2) ** 0.5 * delta, 2.0)
    return {"sequence": float(seq), "contextual": float(cont), "token": float(tok)}


def theorem_delta(r: int | Tensor, N: int, d: int) -> Tensor:
    """Return the theorem's scale delta = ((r - N) / 2)^(-1 / ((N + 1) d + 1)) for r > N (inf otherwise)."""
    r = torch.as_tensor(r, dtype=torch.float64)
    out = ((r - N) / 2).clamp_min(0) ** (-1.0 / ((N + 1) * d + 1))
    return torch.where(r > N, out, torch.full_like(out, float("inf")))


# ---------------------------------------------------------------- experiments


@dataclass(frozen=True)
class MemoriseConfig(Config):
    """Memorisation of random labels by one shared block looped r times (Experiment 2)."""

    M: int = 1024  # sequences to memorise
    N: int = 4  # tokens per sequence
    V: int = 16  # vocabulary
    n_labels: int = 16  # random labels
    d: int = 16  # width
    heads: int = 2
    d_ff: int = 64
    loops: tuple[int, ...] = (1, 2, 4, 8)  # r of the plain and the timestep arms
    arms: tuple[str, ...] = ("none", "timestep", "frozen", "gains")  # see `MEMORISE_ARMS`
    arm_loops: int = 4  # r at which the control arms (frozen, gains) are trained
    inits: int = 1  # initialisations per arm (shared by all arms: init i is the same draw in every arm)
    freeze_index: bool = False  # knock-out for every arm: the modulation sees t = 0 on every loop
    single_pass: bool = False  # knock-out for every arm: the block runs once whatever r is
    steps: int = 600
    batch: int = 256
    lr: float = 3e-3
    PRESETS = {
        "quick": {"loops": (1, 4), "arms": ("none", "timestep", "frozen"), "steps": 500},
        "full": {"M": 2048, "loops": (1, 2, 4, 8, 16), "steps": 3000, "arm_loops": 8, "inits": 3},
    }

    def looped(self, arm: str = "none", loops: int = 4) -> LoopedConfig:
        """Return the looped model's config for one arm (`MEMORISE_ARMS`)."""
        if arm not in MEMORISE_ARMS:
            raise ValueError(f"arm must be one of {tuple(MEMORISE_ARMS)}, got {arm!r}")
        block = TransformerConfig(
            vocab_size=self.V,
            d_model=self.d,
            n_heads=self.heads,
            max_len=self.N,
            d_ff=self.d_ff,
            norm="rms",
            init_std=0.1,
        )
        modulation = "timestep" if arm == "frozen" else arm
        return LoopedConfig(
            block,
            n_out=self.n_labels,
            modulation=modulation,
            loops=loops,
            max_loops=64,
            freeze_index=arm == "frozen" or self.freeze_index,
            single_pass=self.single_pass,
        )


MEMORISE_ARMS = {
    "none": "plain looped",
    "timestep": "timestep encoding",
    "frozen": "timestep network, loop index frozen at 0",
    "gains": "per-loop gains",
}
"""The arms of Experiment 2: the frozen arm has the timestep arm's parameters, without loop dependence."""


def accuracy_last(model: nn.Module, X: Tensor, y: Tensor, r: int | None = None, chunk: int = 4096) -> float:
    """Return the accuracy of the prediction at the last position of X (M, N) against y (M,)."""
    model.eval()
    hits = 0
    with torch.no_grad():
        for s in range(0, len(X), chunk):
            out = model(X[s : s + chunk], r) if r is not None else model(X[s : s + chunk])
            hits += int((out[:, -1].argmax(-1) == y[s : s + chunk]).sum())
    return hits / len(X)


@one_thread
def train_memorise(model: LoopedTransformer, X: Tensor, y: Tensor, cfg: MemoriseConfig, seed: int) -> list[float]:
    """Train `model` (at its default r) on the memorisation set by minibatch AdamW; return the losses."""
    gen = torch.Generator().manual_seed(seed)
    dev = model.W_E.weight.device
    X, y = X.to(dev), y.to(dev)
    full = cfg.batch >= len(X)  # full-batch training when the batch covers the set
    B = len(X) if full else cfg.batch
    mask = torch.zeros(B, X.shape[1], dtype=torch.bool, device=dev)
    mask[:, -1] = True
    idx_all = torch.randint(0, len(X), (cfg.steps, B), generator=gen).to(dev)
    targets = torch.zeros(len(X), X.shape[1], dtype=torch.long, device=dev)
    targets[:, -1] = y

    def batch(step: int) -> tuple[Tensor, Tensor, Tensor]:
        if full:
            return X, targets, mask
        i = idx_all[step]
        return X[i], targets[i], mask

    return train_lm(model, batch, cfg.steps, lr=cfg.lr, desc=f"memorise r={model.cfg.loops}")


def run_memorisation(cfg: MemoriseConfig, seed: int, device: torch.device | str = "cpu") -> dict:
    """Train every (arm, r) of Experiment 2 from `cfg.inits` shared initialisations; return accuracies.

    Init i (seed `seed * 1000 + i`) is the same draw for every arm: the plain, timestep and frozen models
    start from the same shared block and see the same minibatches, so their differences are paired.
    `acc` holds the mean over inits, `acc_inits` every init, `acc_frozen_eval` the trained timestep model
    evaluated with its loop index frozen at 0 (how much the trained model uses the loop index).
    """
    X, y = memorisation_set(cfg.M, cfg.N, cfg.V, cfg.n_labels, torch.Generator().manual_seed(seed))
    runs = [(arm, r) for arm in cfg.arms for r in cfg.loops if arm in ("none", "timestep") or r == cfg.arm_loops]
    acc_inits: dict = {run: [] for run in runs}
    frozen_eval: dict = {}
    params, losses = {}, {}
    for i in range(cfg.inits):
        for arm, r in runs:
            torch.manual_seed(seed * 1000 + i)
            model = LoopedTransformer(cfg.looped(arm, loops=r)).to(device)
            loss = train_memorise(model, X, y, cfg, seed * 1000 + i)
            if i == 0:
                losses[(arm, r)] = loss
            acc_inits[(arm, r)].append(accuracy_last(model, X.to(device), y.to(device)))
            params[arm] = model.n_params()
            if arm == "timestep":
                model.cfg = dataclasses.replace(model.cfg, freeze_index=True)
                frozen_eval.setdefault(r, []).append(accuracy_last(model, X.to(device), y.to(device)))
    acc = {k: sum(v) / len(v) for k, v in acc_inits.items()}
    frozen_eval = {r: sum(v) / len(v) for r, v in frozen_eval.items()}
    return {"acc": acc, "acc_inits": acc_inits, "acc_frozen_eval": frozen_eval, "params": params, "losses": losses}


def memorisation_claims(res: dict, r: int) -> dict[str, float]:
    """Return the differences of training accuracy that Experiment 2 checks, at r loops against r = 1.

    loops: plain at r minus plain at 1; timestep: timestep minus plain at r; loop_index: timestep minus
    frozen at r (same parameters); index_over_params: that difference minus frozen minus plain at r (the
    part of the timestep model's gain that the loop dependence brings, minus the part its parameters bring
    without it); uses_index: the trained timestep model minus itself with the index frozen at evaluation;
    static: timestep minus plain at r = 1 (where no loop dependence is possible).
    A difference whose arms were not trained is left out.
    """
    acc, out = res["acc"], {}
    if ("none", 1) in acc and ("none", r) in acc:
        out["loops"] = acc[("none", r)] - acc[("none", 1)]
    if ("timestep", r) in acc:
        out["uses_index"] = acc[("timestep", r)] - res["acc_frozen_eval"][r]
        if ("none", r) in acc:
            out["timestep"] = acc[("timestep", r)] - acc[("none", r)]
        if ("frozen", r) in acc:
            out["loop_index"] = acc[("timestep", r)] - acc[("frozen", r)]
            if ("none", r) in acc:  # the loop dependence's share minus the parameters' share of the gain
                out["index_over_params"] = out["loop_index"] - (acc[("frozen", r)] - acc[("none", r)])
    if ("timestep", 1) in acc and ("none", 1) in acc:
        out["static"] = acc[("timestep", 1)] - acc[("none", 1)]
    return out


@dataclass(frozen=True)
class RateConfig(Config):
    """Approximation error against the number of loops for a smooth and a rough target (Experiment 3)."""

    N: int = 4  # tokens per sequence (the theorem's N)
    V: int = 32  # grid of token values x = v / (V - 1)
    ks: tuple[float, ...] = (1.0, 4.0)  # frequencies: smooth, rough
    d: int = 32
    heads: int = 2
    d_ff: int = 64
    loops: tuple[int, ...] = (1, 2, 4, 8)
    steps: int = 400
    batch: int = 256
    lr: float = 3e-3
    n_test: int = 4096
    single_pass: bool = False  # knock-out: the block runs once whatever r is
    PRESETS = {
        "quick": {"d": 16, "d_ff": 32, "loops": (1, 4), "steps": 300, "batch": 128},
        "full": {"d": 64, "d_ff": 256, "loops": (1, 2, 4, 8, 16), "steps": 4000},
    }

    def looped(self, loops: int, single_pass: bool = False) -> LoopedConfig:
        """Return the looped regression model's config: no positions, bidirectional, one output per token."""
        block = TransformerConfig(
            vocab_size=self.V,
            d_model=self.d,
            n_heads=self.heads,
            max_len=self.N,
            pos_enc="none",
            causal=False,
            d_ff=self.d_ff,
            norm="rms",
            init_std=0.1,
        )
        return LoopedConfig(block, n_out=1, loops=loops, single_pass=single_pass)


@one_thread
def train_regression(model: LoopedTransformer, k: float, cfg: RateConfig, seed: int) -> tuple[list[float], float]:
    """Train `model` on fresh batches of `sine_target` with frequency k; return losses and test error.

    The test error is the mean squared error over a fixed test set divided by the target's variance.
    """
    gen = torch.Generator().manual_seed(seed)
    dev = model.W_E.weight.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    tokens = torch.randint(0, cfg.V, (cfg.steps + 1, cfg.batch, cfg.N), generator=gen)
    test = torch.randint(0, cfg.V, (cfg.n_test, cfg.N), generator=gen).to(dev)
    losses = []
    model.train()
    for step in trange(cfg.steps, desc=f"regression k={k:g} r={model.cfg.loops}"):
        idx = tokens[step].to(dev)
        loss = F.mse_loss(model(idx)[..., 0], sine_target(idx / (cfg.V - 1), k))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        y = sine_target(test / (cfg.V - 1), k)
        err = float(F.mse_loss(model(test)[..., 0], y) / y.var())
    return losses, err


def run_rate(cfg: RateConfig, seed: int, device: torch.device | str = "cpu") -> dict:
    """Train one looped model per (target, r) of Experiment 3; return normalised test errors."""
    err, losses = {}, {}
    for j, (k, r) in enumerate(itertools.product(cfg.ks, cfg.loops)):
        torch.manual_seed(seed * 1000 + j // len(cfg.loops))  # paired over r: same init, same samples
        model = LoopedTransformer(cfg.looped(r, single_pass=cfg.single_pass)).to(device)
        losses[(k, r)], err[(k, r)] = train_regression(model, k, cfg, seed * 1000 + j // len(cfg.loops))
    return {"err": err, "losses": losses}


@dataclass(frozen=True)
class EditConfig(Config):
    """Edit distance in the official task's format: looped, looped + timestep, standard (Experiment 4)."""

    length: int = 4  # length of the first string (the second: length - 3 .. length + 2)
    pool: int = 26  # letters of the alphabet; each pair uses 3..10 of them
    d: int = 64
    heads: int = 4
    d_ff: int = 256
    loops: tuple[int, ...] = (1, 4, 8)
    std_layers: int = 4  # layers of the standard (untied) transformer
    steps: int = 8000
    batch: int = 64
    lr: float = 1e-3
    n_train: int = 200_000  # a fixed training set, as the official code (1e6 pairs), sampled with replacement
    n_test: int = 2048
    PRESETS = {
        "quick": {},
        "full": {"length": 8, "loops": (1, 4, 8, 16), "steps": 20000, "batch": 128},
    }

    def block(self, layers: int = 1) -> TransformerConfig:
        """Return the block config (causal, sinusoidal positions, RMSNorm, as in the paper's code)."""
        return TransformerConfig(
            vocab_size=self.pool + 3,
            d_model=self.d,
            n_layers=layers,
            n_heads=self.heads,
            max_len=2 * self.length + 4,
            pos_enc="sinusoidal",
            d_ff=self.d_ff,
            norm="rms",
        )

    @property
    def n_classes(self) -> int:
        """Return the number of possible distances (costs 2 and 3): 0..4 length + 4."""
        return 4 * self.length + 5


class Readout(nn.Module):
    """A CausalTransformer whose unembedding is replaced by a readout of `n_out` classes."""

    def __init__(self, cfg: TransformerConfig, n_out: int):
        super().__init__()
        self.tf = CausalTransformer(cfg)
        self.tf.W_U = nn.Linear(cfg.d_model, n_out, bias=False)
        nn.init.normal_(self.tf.W_U.weight, std=cfg.init_std)

    def n_params(self) -> int:
        """Return the number of trainable parameters."""
        return self.tf.n_params()

    def forward(self, idx: Tensor) -> Tensor:
        """Return outputs (B, T, n_out)."""
        return self.tf(idx)


@one_thread
def run_edit_distance(cfg: EditConfig, seed: int, device: torch.device | str = "cpu") -> dict:
    """Train looped (plain, timestep, frozen index) models and one standard transformer; return accuracies.

    Every model reads its prediction at the SEP position of each prompt. Trained on minibatches of a fixed
    training set of `n_train` pairs; tested on fresh pairs that are not in it (as the official code does).
    """
    gen = torch.Generator().manual_seed(seed)
    X_tr, s_tr, y_tr = edit_distance_task(cfg.n_train, cfg.length, gen, cfg.pool)
    X_test, s_test, y_test = edit_distance_task(cfg.n_test, cfg.length, gen, cfg.pool)
    seen = set(map(tuple, X_tr.tolist()))
    new = torch.tensor([tuple(row) not in seen for row in X_test.tolist()], dtype=torch.bool)
    X_test, s_test, y_test = (t[new].to(device) for t in (X_test, s_test, y_test))  # unseen pairs only
    X_tr, s_tr, y_tr = (t.to(device) for t in (X_tr, s_tr, y_tr))
    r_max = max(cfg.loops)
    arms = [(mod, r) for r in cfg.loops for mod in ("none", "timestep")] + [("frozen", r_max)]
    arms.append(("standard", cfg.std_layers))
    acc, params = {}, {}
    for arm, r in arms:
        torch.manual_seed(seed * 1000)
        data = torch.Generator().manual_seed(seed * 1000 + 1)
        if arm == "standard":
            model = Readout(cfg.block(r), cfg.n_classes).to(device)
        else:
            mod = "timestep" if arm == "frozen" else arm
            lcfg = LoopedConfig(cfg.block(), cfg.n_classes, modulation=mod, loops=r, freeze_index=arm == "frozen")
            model = LoopedTransformer(lcfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        model.train()
        for _ in trange(cfg.steps, desc=f"edit distance {arm} r={r}"):
            i = torch.randint(0, cfg.n_train, (cfg.batch,), generator=data).to(device)
            loss = F.cross_entropy(model(X_tr[i])[torch.arange(cfg.batch), s_tr[i]], y_tr[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = model(X_test)[torch.arange(len(X_test)), s_test].argmax(-1)
            acc[(arm, r)] = float((pred == y_test).float().mean())
        params[(arm, r)] = model.n_params()
    return {"acc": acc, "params": params, "n_test": len(y_test)}


# Figures (drawn with lib.plotting's vocabulary; each returns its figure)


def plot_zero_init(loops: list[int], diffs: dict[str, list[float]]):
    """Draw the largest output difference from the plain model against r, per modulated arm (Experiment 1)."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.0, 3.4))
    arms = {
        "timestep": ("timestep encoding, at init", "-"),
        "gains": ("per-loop gains, at init", "--"),
        "perturbed": ("timestep, output layer perturbed", ":"),
    }
    for name, diff in diffs.items():
        text, ls = arms[name]
        ax.semilogy(loops, np.maximum(diff, 1e-12), ls, marker="o", ms=3, label=text)  # zero drawn at 1e-12
    plotting.label(ax, x="number of loops r", y="max |output difference|", legend=True)
    return fig


def plot_memorisation(res: dict, cfg: MemoriseConfig):
    """Draw the training accuracy of each arm against r, and the arms' smoothed loss curves (Experiment 2)."""
    acc, params, r_arm = res["acc"], res["params"], cfg.arm_loops
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(10, 3.6))
    for arm, ls in (("none", "-"), ("timestep", "--")):
        text = f"{MEMORISE_ARMS[arm]} ({params[arm]} par.)"
        ax.plot(cfg.loops, [acc[(arm, r)] for r in cfg.loops], ls, marker="o", label=text)
    for arm, marker in (("frozen", "^"), ("gains", "s")):
        if arm in cfg.arms:
            ax.plot([r_arm], [acc[(arm, r_arm)]], marker, ms=8, label=f"{MEMORISE_ARMS[arm]} ({params[arm]} par.)")
    plotting.reference(ax, 1 / cfg.n_labels, color="0.5", ls=":", label="chance")
    ax.set_xscale("log", base=2)
    plotting.ticks(ax, cfg.loops)
    plotting.label(ax, x="number of loops r", y="training accuracy")
    ax.legend(fontsize=7)
    window = 25  # moving average over this many steps
    for arm, ls in zip(cfg.arms, ("-", "--", ":", "-.")):
        loss = np.convolve(res["losses"][(arm, r_arm)], np.ones(window) / window, mode="valid")
        bx.plot(loss, ls, label=MEMORISE_ARMS[arm])
    plotting.label(bx, x="training step", y=f"training loss (r = {r_arm})")
    bx.legend(fontsize=7)
    return fig


def plot_rate(err: dict, cfg: RateConfig):
    """Draw the test error against r per target, and the token modulus at the theorem's scale delta(r) (Exp. 3)."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(10, 3.6))
    for k, ls in zip(cfg.ks, ("-", "--")):
        ax.loglog(cfg.loops, [err[(k, r)] for r in cfg.loops], ls, marker="o", label=f"k = {k:g}")
    plotting.ticks(ax, cfg.loops)
    plotting.label(ax, x="number of loops r", y="test MSE / Var f", legend=True)
    r_grid = np.unique(np.geomspace(cfg.N + 1, 1e6, 60).astype(int))  # the theorem needs r > N
    delta = theorem_delta(torch.tensor(r_grid), cfg.N, 1).numpy()
    for k, ls in zip(cfg.ks, ("-", "--")):
        bound = [sine_moduli(k, cfg.N, float(dl))["token"] for dl in delta]
        bx.semilogx(r_grid, bound, ls, label=f"token modulus at delta(r), k = {k:g}")
    plotting.label(bx, x="number of loops r", y="modulus at delta(r)", legend=True)
    return fig


def plot_edit_distance(distances: Tensor, cfg: EditConfig, res: dict | None = None):
    """Draw the distribution of the edit distances and, when trained (`res`), each arm's accuracy against r."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(10, 3.4))
    counts = torch.bincount(distances, minlength=cfg.n_classes).numpy()
    ax.bar(range(cfg.n_classes), counts / counts.sum())
    plotting.label(ax, x="edit distance", y="fraction of pairs")
    if res is not None:
        acc, r_max = res["acc"], max(cfg.loops)
        for arm, ls, text in (("none", "-", "plain looped"), ("timestep", "--", "timestep encoding")):
            bx.plot(cfg.loops, [acc[(arm, r)] for r in cfg.loops], ls, marker="o", label=text)
        bx.plot([r_max], [acc[("frozen", r_max)]], "^", ms=8, label="frozen loop index")
        standard = acc[("standard", cfg.std_layers)]
        plotting.reference(bx, standard, color="0.4", ls=":", label=f"standard, {cfg.std_layers} layers")
        bx.set_xscale("log", base=2)
    else:
        bx.text(0.5, 0.5, "full profile only", ha="center", va="center")
    plotting.label(bx, x="number of loops r", y="test accuracy", legend=res is not None)
    return fig


__all__ = [
    "MODULATIONS",
    "ED_BAR",
    "ED_PAD",
    "ED_SEP",
    "EditConfig",
    "LoopGains",
    "LoopedConfig",
    "LoopedTransformer",
    "MemoriseConfig",
    "RateConfig",
    "Readout",
    "TimestepModulation",
    "accuracy_last",
    "edit_distance",
    "edit_distance_task",
    "lcs_length",
    "MEMORISE_ARMS",
    "memorisation_claims",
    "memorisation_set",
    "plot_edit_distance",
    "plot_memorisation",
    "plot_rate",
    "plot_zero_init",
    "run_edit_distance",
    "run_memorisation",
    "run_rate",
    "sine_moduli",
    "sine_target",
    "theorem_delta",
    "train_memorise",
    "train_regression",
    "unroll",
]
