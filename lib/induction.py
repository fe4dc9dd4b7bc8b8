"""Induction heads as associative memories, and knowledge hijack (Wang & Sato; Bietti et al.).

Explained in chapter "Induction heads as associative memories" (`chapters/induction-heads`).

Contents, in the order of the chapter:

* the bigram-with-triggers data model (Bietti et al. 2023): a global bigram matrix with Dirichlet rows,
  plus per-sequence "trigger -> output" pairs that can only be predicted from the context;
* the paper's designed prompts: c copies of "a o" in a context whose global favourite after a is g;
* the hand-wired two-layer associative-memory transformer (float64) and the closed-form logits;
* the hijack threshold: how many in-context copies beat the global bigram at a given length;
* Bietti's trainable two-layer model (frozen random embeddings, W_Q = I), its training, and the
  in-context accuracy at the training length and beyond.

Notation: tokens z_0, ..., z_T with the query z_T = q; p(j | i) the bigram matrix; w_E(z) token embeddings,
p_t position embeddings, w_1(z) the "previous token was z" directions, u_z output (unembedding) vectors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lib import plotting
from lib.config import Config
from lib.runtime import one_thread
from lib.transformer import causal_mask, rope_rotate, train_lm

# ----------------------------------------------------------------------------------------------------------
# Data: bigram with triggers
# ----------------------------------------------------------------------------------------------------------


def dirichlet_bigram(N: int, alpha: float, seed: int) -> Tensor:
    """Return an (N, N) float64 bigram matrix whose rows p(. | i) are drawn from Dirichlet(alpha, ..., alpha)."""
    if N < 4:
        raise ValueError(f"the vocabulary needs at least 4 tokens, got N={N}")
    if alpha <= 0:
        raise ValueError(f"the Dirichlet concentration must be positive, got alpha={alpha}")
    rows = np.random.default_rng(seed).dirichlet(np.full(N, float(alpha)), size=N)
    rows = np.maximum(rows, 1e-12)  # keep log p(j | i) finite
    return torch.from_numpy(rows / rows.sum(1, keepdims=True))


def stationary_distribution(P: Tensor) -> Tensor:
    """Return the stationary distribution pi of the bigram chain: pi P = pi, sum(pi) = 1."""
    N = P.shape[0]
    # solve (P^T - I) pi = 0 with the normalisation row appended (least squares, exact for an ergodic chain)
    A = torch.cat([P.T - torch.eye(N, dtype=P.dtype), torch.ones(1, N, dtype=P.dtype)])
    b = torch.zeros(N + 1, dtype=P.dtype)
    b[-1] = 1.0
    pi = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    return pi.clamp_min(0) / pi.clamp_min(0).sum()


@dataclass(frozen=True)
class BigramTask:
    """The data model: bigram matrix `P`, its stationary law `pi`, K triggers (fixed or redrawn per sequence)."""

    P: Tensor  # (N, N) float64, rows p(. | i)
    pi: Tensor  # (N,) stationary distribution, the law of z_0
    K: int  # number of triggers per sequence
    random_triggers: bool  # False: the K most frequent tokens are the triggers of every sequence

    @property
    def N(self) -> int:
        """Return the vocabulary size."""
        return self.P.shape[0]

    @property
    def fixed_triggers(self) -> Tensor:
        """Return the K most frequent tokens under pi (the triggers when they are fixed)."""
        return self.pi.argsort(descending=True)[: self.K]


def make_task(N: int, K: int, alpha: float, seed: int, random_triggers: bool) -> BigramTask:
    """Return a `BigramTask` with a Dirichlet(alpha) bigram matrix drawn from `seed`."""
    if not 1 <= K <= N // 2:
        raise ValueError(f"need 1 <= K <= N/2 triggers (outputs are drawn from non-triggers), got K={K}, N={N}")
    P = dirichlet_bigram(N, alpha, seed)
    return BigramTask(P=P, pi=stationary_distribution(P), K=K, random_triggers=random_triggers)


def sample_categorical(cdf: Tensor, generator: torch.Generator) -> Tensor:
    """Return one draw per row of a batch of CDFs (B, N): the first j with cdf[j] > u, u ~ U(0, 1)."""
    u = torch.rand(cdf.shape[0], 1, generator=generator, dtype=cdf.dtype, device=cdf.device)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1).clamp_max(cdf.shape[1] - 1)


class TriggerBatch(NamedTuple):
    """A batch of bigram-with-triggers sequences."""

    tokens: Tensor  # (B, L) token ids
    icl_mask: Tensor  # (B, L) True at t when z_{t-1} is a trigger already seen before t-1 (predictable in context)
    triggers: Tensor  # (B, K) the triggers q_k of each sequence
    outputs: Tensor  # (B, K) their output tokens o_k (never triggers)


def sample_triggers(task: BigramTask, B: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Return (triggers (B, K), outputs (B, K)): o_k uniform over the NON-trigger tokens of the sequence."""
    N, K = task.N, task.K
    if task.random_triggers:
        triggers = torch.rand(B, N, generator=generator).argsort(1)[:, :K]
    else:
        triggers = task.fixed_triggers.expand(B, K)
    # o_k ~ Uniform(tokens that are not triggers): mask triggers out of uniform scores, sample K times
    weights = torch.ones(B, N, dtype=torch.float64).scatter(1, triggers, 0.0)
    outputs = torch.multinomial(weights, K, replacement=True, generator=generator)
    return triggers, outputs


def run_chain(
    first: Tensor, cdf_rows: Tensor, L: int, generator: torch.Generator, triggers: Tensor, outputs: Tensor
) -> tuple[Tensor, Tensor]:
    """Return (tokens (B, L), icl_mask (B, L)) of the chain started at `first` (B,) with bigram CDF rows (N, N).

    z_t = o_k if z_{t-1} = q_k (triggers, outputs: (B, K), K = 0 for a plain bigram chain), else
    z_t ~ p(. | z_{t-1}); icl_mask[:, t] is True when z_{t-1} is a trigger already seen before t - 1.
    """
    B = first.shape[0]
    tokens = torch.empty(B, L, dtype=torch.long)
    icl = torch.zeros(B, L, dtype=torch.bool)
    seen = torch.zeros(B, triggers.shape[1], dtype=torch.bool)
    tokens[:, 0] = first
    for t in range(1, L):  # a loop over time only; every step is vectorised over the batch
        prev = tokens[:, t - 1]
        # z_t = o_k if z_{t-1} = q_k, else z_t ~ p(. | z_{t-1})
        is_trig = prev[:, None] == triggers  # (B, K)
        bigram_next = sample_categorical(cdf_rows[prev], generator)
        trig_out = (outputs * is_trig).sum(1)
        tokens[:, t] = torch.where(is_trig.any(1), trig_out, bigram_next)
        icl[:, t] = (is_trig & seen).any(1)
        seen |= is_trig
    return tokens, icl


def sample_sequences(task: BigramTask, B: int, L: int, generator: torch.Generator) -> TriggerBatch:
    """Return B sequences of length L: z_0 ~ pi; z_t = o_k after trigger q_k, else z_t ~ p(. | z_{t-1})."""
    if B < 1 or L < 2:
        raise ValueError(f"need B >= 1 sequences of length L >= 2, got B={B}, L={L}")
    triggers, outputs = sample_triggers(task, B, generator)
    first = sample_categorical(task.pi.cumsum(0).expand(B, -1).contiguous(), generator)
    tokens, icl = run_chain(first, task.P.cumsum(1), L, generator, triggers, outputs)
    return TriggerBatch(tokens, icl, triggers, outputs)


def sample_chain(P: Tensor, B: int, L: int, generator: torch.Generator, exclude: Tensor | None = None) -> Tensor:
    """Return (B, L) bigram sequences from P restricted to tokens not in `exclude` (renormalised rows)."""
    P = P.clone()
    allowed = torch.ones(P.shape[0], dtype=torch.bool)
    if exclude is not None:
        allowed[exclude] = False
        P[:, ~allowed] = 0.0
        P = P / P.sum(1, keepdim=True)
    start = allowed.to(P.dtype) / allowed.sum()
    first = sample_categorical(start.cumsum(0).expand(B, -1).contiguous(), generator)
    no_triggers = torch.empty(B, 0, dtype=torch.long)  # K = 0: every step is a bigram draw
    return run_chain(first, P.cumsum(1), L, generator, no_triggers, no_triggers)[0]


def hijack_tokens(P: Tensor, avoid: Tensor | None = None) -> tuple[int, int, int]:
    """Return (a, g, o): a query with the most peaked p(. | a), its favourite g, and its rarest successor o.

    Tokens in `avoid` (e.g. fixed triggers) are never chosen.
    """
    allowed = torch.ones(P.shape[0], dtype=torch.bool)
    if avoid is not None:
        allowed[avoid] = False
    masked = P.masked_fill(~allowed[None, :], -1.0)  # successors restricted to allowed tokens
    peak = masked.max(1).values.masked_fill(~allowed, -1.0)  # queries restricted to allowed tokens
    a = int(peak.argmax())
    g = int(masked[a].argmax())  # g = argmax_j p(j | a)
    candidates = allowed.clone()
    candidates[[a, g]] = False
    o = int(P[a].masked_fill(~candidates, math.inf).argmin())  # o = argmin_{j != a, g} p(j | a)
    return a, g, o


def designed_prompts(P: Tensor, a: int, o: int, g: int, c: int, T: int, B: int, generator: torch.Generator) -> Tensor:
    """Return B prompts z_0..z_T (shape (B, T + 1)): c copies of "a o" at random places, z_T = a.

    The filler is bigram text that avoids a, o and g, so the counts of the theorem are c_o = n_a = c,
    m_o = c and m_g = 0; the first token is never a.
    """
    if c < 0 or 2 * c > T - 1:
        raise ValueError(f"need 0 <= 2c <= T - 1 to fit c copies of 'a o' after z_0, got c={c}, T={T}")
    F = T - 2 * c  # filler tokens in the context z_0..z_{T-1}
    filler = sample_chain(P, B, F, generator, exclude=torch.tensor([a, o, g]))
    # arrange F filler items and c pair items, the first item being filler: pick c distinct item slots
    # in 1..F+c-1; the k-th pair (k = 0, 1, ...) in slot s_k starts at token position s_k + k
    slots = (torch.rand(B, F + c - 1, generator=generator).argsort(1)[:, :c] + 1).sort(1).values
    starts = slots + torch.arange(c)  # (B, c) positions of the a's
    ctx = torch.empty(B, T, dtype=torch.long)
    is_pair = torch.zeros(B, T, dtype=torch.bool)
    is_pair.scatter_(1, starts, True)
    is_pair.scatter_(1, starts + 1, True)
    ctx[~is_pair] = filler.flatten()
    ctx.scatter_(1, starts, a)
    ctx.scatter_(1, starts + 1, o)
    return torch.cat([ctx, torch.full((B, 1), a)], dim=1)


# ----------------------------------------------------------------------------------------------------------
# The hand-wired associative-memory transformer and its closed-form logits
# ----------------------------------------------------------------------------------------------------------


KNOCKOUTS = (None, "previous-token", "induction", "global")
"""Knock-outs of the hand-wired model: none, or the memory it removes (see `AssociativeMemoryTransformer`)."""


@dataclass(frozen=True)
class MemoryWeights:
    """Strengths of the hand-wired memories: beta1, beta2 (attention), lam (induction), lam_G (bigram)."""

    beta1: float = 40.0
    beta2: float = 3.0
    lam: float = 1.0
    lam_G: float = 1.0


class AssociativeMemoryTransformer(nn.Module):
    """The two-layer transformer written with associative memories (orthonormal embeddings, float64).

    Residual stream x_t = w_E(z_t) + p_t; attention scores x_t^T W_QK x_s over s <= t (current included).
    `prev_token` chooses how layer 1 finds the previous token: "absolute" stores the pairs (p_t, p_{t-1})
    for 1 <= t < `train_len` (default: every position up to `max_len`), as learned absolute positions
    would after training on sequences of length `train_len`; "relative" adds beta1 [s = t - 1] to the
    layer-1 score at every t (a relative memory, one weight per offset), and no p_t enters the stream.
    `knockout` removes one memory (the chapter's knock-outs): "previous-token" (layer 1 attends uniformly),
    "induction" (layer 2 attends uniformly) or "global" (no feed-forward bigram memory, W_F = 0).
    """

    def __init__(
        self,
        P: Tensor,
        max_len: int,
        weights: MemoryWeights,
        seed: int = 0,
        prev_token: str = "absolute",
        train_len: int | None = None,
        knockout: str | None = None,
    ):
        super().__init__()
        if prev_token not in ("absolute", "relative"):
            raise ValueError(f"prev_token must be 'absolute' or 'relative', got {prev_token!r}")
        if knockout not in KNOCKOUTS:
            raise ValueError(f"knockout must be one of {KNOCKOUTS}, got {knockout!r}")
        self.knockout = knockout
        N = P.shape[0]
        self.N, self.max_len, self.weights, self.prev_token = N, max_len, weights, prev_token
        self.train_len = max_len if train_len is None else min(train_len, max_len)
        d = 3 * N + max_len  # room for orthonormal w_E(z), w_1(z), u_z and p_t
        g = torch.Generator().manual_seed(seed)
        Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))  # random orthonormal basis
        self.register_buffer("w_E", Q[:, :N].T.contiguous())  # (N, d) token embeddings w_E(z)
        self.register_buffer("w_1", Q[:, N : 2 * N].T.contiguous())  # (N, d) previous-token directions w_1(z)
        self.register_buffer("u", Q[:, 2 * N : 3 * N].T.contiguous())  # (N, d) output embeddings u_z
        self.register_buffer("p", Q[:, 3 * N :].T.contiguous())  # (max_len, d) positions p_t
        b1, b2, lam, lam_G = weights.beta1, weights.beta2, weights.lam, weights.lam_G
        # W_QK^1 = beta1 sum_{1 <= t < train_len} p_t p_{t-1}^T: the query at t matches the key at t - 1
        L1 = self.train_len if prev_token == "absolute" else 0
        self.register_buffer("W_QK1", b1 * self.p[1:L1].T @ self.p[: max(L1 - 1, 0)])
        # W_OV^1 = sum_z w_1(z) w_E(z)^T: copies "token z" into "the previous token was z"
        self.register_buffer("W_OV1", self.w_1.T @ self.w_E)
        # W_QK^2 = beta2 sum_z w_E(z) w_1(z)^T: the query z_T matches keys whose previous token was z_T
        self.register_buffer("W_QK2", b2 * self.w_E.T @ self.w_1)
        # W_OV^2 = lam sum_z u_z w_E(z)^T: the induction head writes the attended token into the output space
        self.register_buffer("W_OV2", lam * self.u.T @ self.w_E)
        # W_F = lam_G sum_{i,j} log p(j | i) u_j w_E(i)^T: the global bigram memory (feed-forward)
        self.register_buffer("W_F", lam_G * self.u.T @ torch.log(P).T @ self.w_E)
        if knockout == "previous-token":
            self.W_QK1.zero_()
        elif knockout == "induction":
            self.W_QK2.zero_()
        elif knockout == "global":
            self.W_F.zero_()

    @staticmethod
    def attend(x: Tensor, W_QK: Tensor, W_OV: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return (sum_s A[t, s] W_OV x_s, A) with A = softmax_s(x_t^T W_QK x_s + bias[t, s]) over s <= t."""
        T = x.shape[1]
        scores = x @ W_QK @ x.transpose(1, 2)  # (B, T, T)
        if bias is not None:
            scores = scores + bias
        scores = scores.masked_fill(~causal_mask(T, x.device), -math.inf)
        A = scores.softmax(-1)
        return A @ x @ W_OV.T, A

    def forward(self, z: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Return logits (B, T, N) (and the two attention maps) of the hand-wired model on tokens z."""
        # [induction-heads-thm-logits]: previous-token head, induction head, then the bigram memory
        if z.dim() != 2 or (self.prev_token == "absolute" and z.shape[1] > self.max_len):
            raise ValueError(f"z must have shape (B, T) with T <= {self.max_len}, got {tuple(z.shape)}")
        T = z.shape[1]
        if self.prev_token == "absolute":
            x = self.w_E[z] + self.p[:T]
            bias = None
        else:
            x = self.w_E[z]
            # relative memory: score beta1 [t - s = 1], the same at every t
            offset = torch.arange(T, device=z.device)[:, None] - torch.arange(T, device=z.device)[None, :]
            bias = self.weights.beta1 * (offset == 1).to(x.dtype)
            if self.knockout == "previous-token":
                bias = None
        a1, A1 = self.attend(x, self.W_QK1, self.W_OV1, bias)
        x = x + a1  # x_t + w_1(z_{t-1}) (approximately, for large beta1)
        a2, A2 = self.attend(x, self.W_QK2, self.W_OV2)
        x = x + a2
        x = x + x @ self.W_F.T  # feed-forward memory on the residual stream
        logits = x @ self.u.T  # xi_j = u_j^T x
        return (logits, [A1, A2]) if return_attn else logits


def theorem_counts(z: Tensor, N: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Return (n_q (B,), c (B, N), m (B, N)) for prompts z_0..z_T with query q = z_T (N: vocabulary size).

    n_q = #{s in 1..T: z_{s-1} = q}, c_j = #{s in 1..T: z_{s-1} = q, z_s = j}, m_j = #{s in 0..T: z_s = j}.
    """
    N = int(z.max()) + 1 if N is None else N
    q = z[:, -1:]
    after_q = z[:, :-1] == q  # (B, T): position s = 1..T follows q
    onehot = torch.nn.functional.one_hot(z, N).to(torch.float64)  # (B, T + 1, N)
    c = (onehot[:, 1:] * after_q[..., None]).sum(1)
    m = onehot.sum(1)
    return after_q.sum(1).to(torch.float64), c, m


def closed_form_logits(z: Tensor, P: Tensor, w: MemoryWeights) -> Tensor:
    """Return the theorem's logits (B, N) at the last position (hard previous-token head, z_0 != q).

    xi_j = lam [e^{beta2} c_j + (m_j - c_j)] / [e^{beta2} n_q + (T + 1 - n_q)] + lam_G log p(j | q).
    """
    n_q, c, m = theorem_counts(z, P.shape[0])
    T = z.shape[1] - 1
    e = math.exp(w.beta2)
    # xi_j = lam [e^{beta2} c_j + (m_j - c_j)] / [e^{beta2} n_q + (T + 1 - n_q)] + lam_G log p(j | q)
    in_context = w.lam * (e * c + (m - c)) / (e * n_q + (T + 1 - n_q))[:, None]
    return in_context + w.lam_G * torch.log(P[z[:, -1]])


def exact_logits(z: Tensor, P: Tensor, w: MemoryWeights, train_len: int | None = None) -> Tensor:
    """Return the exact logits (B, N) at the last position for any beta1 (soft previous-token head).

    xi_j = lam sum_s softmax_s(beta2 alpha_s) [z_s = j] + lam_G log p(j | q),
    alpha_s = sum_{s' <= s} A1[s, s'] [z_{s'} = q],  A1[s, s'] = e^{beta1 [s' = s - 1]} / (e^{beta1} 1[s>0] + s).
    With `train_len` (absolute memory stored for t < train_len only), the rows s >= train_len are uniform:
    A1[s, s'] = 1 / (s + 1).
    """
    B, L = z.shape
    stored = L if train_len is None else min(train_len, L)
    s = torch.arange(1, stored)
    # A1[s, s'] = e^{beta1 [s' = s - 1]} / (e^{beta1} + s) for 1 <= s < stored; uniform rows otherwise
    A1 = causal_mask(L).to(torch.float64)
    A1[s, s - 1] = math.exp(w.beta1)
    A1 = A1 / A1.sum(1, keepdim=True)
    is_q = (z == z[:, -1:]).to(torch.float64)  # (B, L)
    alpha = is_q @ A1.T  # alpha_s = sum_{s'} A1[s, s'] [z_{s'} = q]
    A2 = torch.softmax(w.beta2 * alpha, dim=1)  # (B, L)
    onehot = torch.nn.functional.one_hot(z, P.shape[0]).to(torch.float64)
    return w.lam * (A2[:, :, None] * onehot).sum(1) + w.lam_G * torch.log(P[z[:, -1]])


def hijack_threshold(T: int | Tensor, w: MemoryWeights, delta: float) -> Tensor:
    """Return c* such that on designed prompts the in-context token o beats g exactly when c > c*.

    With r = lam_G delta / lam, delta = log p(g|a) - log p(o|a): c* = r (T + 1) / (e^{beta2} (1 - r) + r);
    c* = inf when r >= 1 (the global bigram always hijacks the prediction).
    """
    T = torch.as_tensor(T, dtype=torch.float64)
    r = w.lam_G * delta / w.lam
    if r >= 1:
        return torch.full_like(T, math.inf)
    # lam e^{b2} c / (e^{b2} c + T + 1 - c) = lam_G delta  <=>  c = r (T + 1) / (e^{b2} (1 - r) + r)
    return r * (T + 1) / (math.exp(w.beta2) * (1 - r) + r)


@one_thread
def hijack_curves(
    model: nn.Module, P: Tensor, tokens: tuple[int, int, int], cs: list[int], lengths: list[int], B: int, seed: int
) -> dict[str, Tensor]:
    """Return the model's answers on designed prompts for every (length T, copies c).

    Keys, each of shape (len(lengths), len(cs)): "p_o" and "p_g" (mean probabilities of o and g), "top_o" and
    "top_g" (how often o, resp. g, is the argmax), "o_beats_g" (how often o gets a larger logit than g),
    "margin" (mean logit difference xi_o - xi_g).
    """
    a, g, o = tokens
    gen = torch.Generator().manual_seed(seed)
    dev = next(iter(model.buffers())).device
    out = {k: torch.zeros(len(lengths), len(cs), dtype=torch.float64) for k in ("p_o", "p_g", "top_o", "top_g")}
    out["o_beats_g"] = torch.zeros(len(lengths), len(cs), dtype=torch.float64)
    out["margin"] = torch.zeros(len(lengths), len(cs), dtype=torch.float64)
    for i, T in enumerate(lengths):
        for k, c in enumerate(cs):
            z = designed_prompts(P, a, o, g, c, T, B, gen).to(dev)
            with torch.no_grad():
                logits = model(z)[:, -1].to(torch.float64).cpu()
            probs, top = logits.softmax(-1), logits.argmax(-1)
            out["p_o"][i, k], out["p_g"][i, k] = probs[:, o].mean(), probs[:, g].mean()
            out["top_o"][i, k], out["top_g"][i, k] = (top == o).double().mean(), (top == g).double().mean()
            out["o_beats_g"][i, k] = (logits[:, o] > logits[:, g]).double().mean()
            out["margin"][i, k] = (logits[:, o] - logits[:, g]).mean()
    return out


@one_thread
def hijack_sweep(
    P: Tensor,
    w: MemoryWeights,
    tokens: tuple[int, int, int],
    delta: float,
    cs: list[int],
    lengths: list[int],
    B: int,
    seed: int,
    device: torch.device | str = "cpu",
    knockout: str | None = None,
) -> dict[str, Tensor]:
    """Return `hijack_curves` of the hand-wired model plus the theorem's threshold c*(T) ("threshold").

    `tokens` = (a, g, o) (e.g. from `hijack_tokens`) and delta = log p(g | a) - log p(o | a) are the
    caller's. The model runs in float64 on `device` (CPU or CUDA; Apple MPS has no float64). `knockout`
    removes one of its memories (see `AssociativeMemoryTransformer`); the threshold stays the theorem's.
    """
    a, g, o = tokens
    if not delta > 0:
        raise ValueError(f"delta = log p(g|a) - log p(o|a) must be positive (g the favourite), got {delta}")
    model = AssociativeMemoryTransformer(P, max(lengths) + 1, w, seed=seed, knockout=knockout).to(device)
    out = hijack_curves(model, P, (a, g, o), cs, lengths, B, seed)
    out["threshold"] = hijack_threshold(torch.tensor(lengths), w, delta)
    return out


def predicted_switch_lengths(cs: list[int], w: MemoryWeights, delta: float, max_T: int) -> Tensor:
    """Return, for each c, the shortest length T <= max_T at which c copies no longer win: c <= c*(T).

    Read off `hijack_threshold` on the integer grid T = 1..max_T (inf when no T <= max_T qualifies): by the
    corollary, o beats g on designed prompts exactly when T + 1 < c (e^{beta2} (1 - r) + r) / r.
    """
    grid = torch.arange(1, max_T + 1)
    c_star = hijack_threshold(grid, w, delta)  # (max_T,)
    out = torch.full((len(cs),), math.inf, dtype=torch.float64)
    for k, c in enumerate(cs):
        ok = (c <= c_star) & (grid >= 2 * c + 1)  # a length that fits c copies and where g wins
        if ok.any():
            out[k] = float(grid[ok][0])
    return out


@one_thread
def switch_lengths(
    P: Tensor,
    w: MemoryWeights,
    tokens: tuple[int, int, int],
    cs: list[int],
    max_T: int,
    B: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Return, for each c, the shortest length T at which the hand-wired model stops preferring o.

    Scans T = 2c + 1, 2c + 2, ..., max_T with B designed prompts each (c copies of "a o", query a) and
    returns the first T at which xi_o > xi_g fails on at least one prompt (inf if none up to max_T).
    """
    a, g, o = tokens
    gen = torch.Generator().manual_seed(seed)
    model = AssociativeMemoryTransformer(P, max_T + 1, w, seed=seed).to(device)
    out = torch.full((len(cs),), math.inf, dtype=torch.float64)
    for k, c in enumerate(cs):
        for T in range(2 * c + 1, max_T + 1):
            z = designed_prompts(P, a, o, g, c, T, B, gen).to(device)
            with torch.no_grad():
                logits = model(z)[:, -1]
            if not bool((logits[:, o] > logits[:, g]).all()):
                out[k] = float(T)
                break
    return out


# ----------------------------------------------------------------------------------------------------------
# Bietti's trainable two-layer model, its training and evaluation
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InductionConfig(Config):
    """Sizes of the trained two-layer model experiments (explained in chapter induction-heads)."""

    N: int = 32  # vocabulary size
    K: int = 3  # triggers per sequence
    alpha: float = 0.3  # Dirichlet concentration of the bigram rows
    T: int = 32  # training sequence length
    d: int = 128  # width of the residual stream
    batch: int = 64  # fresh sequences per step
    steps: int = 400  # AdamW steps
    lr: float = 3e-3
    eval_batch: int = 512  # sequences per accuracy estimate
    eval_every: int = 50  # steps between accuracy estimates during training
    PRESETS = {
        "quick": {},
        "full": {"N": 64, "K": 5, "T": 256, "d": 256, "steps": 4000, "batch": 128, "eval_every": 200},
    }


class TwoLayerInductionModel(nn.Module):
    """Bietti et al.'s two-layer transformer: frozen random embeddings, W_Q = I, linear feed-forward.

    Trained: W_K^1, W_K^2, W_O^2, W_F and either learned positions p_t ("learned") or, with "rope", the
    layer-1 query/key biases b_Q, b_K (RoPE in layer 1). "none" is the ablation arm: the layer-1 biases
    of "rope" without the rotation, so no position information at all (only the causal mask).
    Frozen at random init: w_E, u, W_OV^1, W_V^2.
    """

    def __init__(self, N: int, d: int, max_len: int, pos_enc: str, generator: torch.Generator):
        super().__init__()
        if pos_enc not in ("learned", "rope", "none"):
            raise ValueError(f"pos_enc must be 'learned', 'rope' or 'none', got {pos_enc!r}")
        self.pos_enc, self.d, self.max_len = pos_enc, d, max_len

        def randn(*shape: int, std: float) -> Tensor:
            return torch.randn(*shape, generator=generator) * std

        self.register_buffer("w_E", randn(N, d, std=1.0))  # token embeddings, N(0, 1) entries
        self.register_buffer("u", randn(N, d, std=d**-0.5))  # output embeddings
        self.register_buffer("W_OV1", randn(d, d, std=d**-0.5))  # layer-1 value/output, frozen
        self.register_buffer("W_V2", randn(d, d, std=d**-0.5))  # layer-2 value, frozen
        self.W_K1 = nn.Parameter(torch.zeros(d, d))
        self.W_K2 = nn.Parameter(torch.zeros(d, d))
        self.W_O2 = nn.Parameter(torch.zeros(d, d))
        self.W_F = nn.Parameter(torch.zeros(d, d))
        if pos_enc == "learned":  # positions >= the training length never get a gradient: they stay random
            self.p = nn.Parameter(randn(max_len, d, std=1.0))
        else:
            self.b_Q = nn.Parameter(randn(d, std=1.0))
            self.b_K = nn.Parameter(randn(d, std=1.0))

    def attention(self, q: Tensor, k: Tensor) -> Tensor:
        """Return softmax_s(q_t^T k_s / sqrt(d)) over s <= t, shape (B, T, T)."""
        T = q.shape[1]
        scores = q @ k.transpose(1, 2) / math.sqrt(self.d)
        return scores.masked_fill(~causal_mask(T, q.device), -math.inf).softmax(-1)

    def forward(self, z: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Return logits (B, T, N) (and the attention maps [A1, A2], each (B, 1, T, T))."""
        if z.dim() != 2:
            raise ValueError(f"z must have shape (B, T), got {tuple(z.shape)}")
        T = z.shape[1]
        x = self.w_E[z]
        if self.pos_enc == "learned":
            if T > self.max_len:
                raise ValueError(f"length {T} exceeds max_len={self.max_len} of the learned positions")
            x = x + self.p[:T]
            A1 = self.attention(x, x @ self.W_K1.T)  # W_Q = I: the query is x_t itself
        elif self.pos_enc == "rope":
            pos = torch.arange(T, device=z.device)
            q = rope_rotate(x + self.b_Q, pos)  # R_t (x_t + b_Q)
            k = rope_rotate(x @ self.W_K1.T + self.b_K, pos)  # R_s (W_K^1 x_s + b_K)
            A1 = self.attention(q, k)
        else:  # "none": the same biases, no rotation: scores depend on the tokens only
            A1 = self.attention(x + self.b_Q, x @ self.W_K1.T + self.b_K)
        x = x + A1 @ x @ self.W_OV1.T  # layer 1: previous-token head
        A2 = self.attention(x, x @ self.W_K2.T)
        x = x + A2 @ x @ (self.W_O2 @ self.W_V2).T  # layer 2: induction head, W_OV^2 = W_O^2 W_V^2
        x = x + x @ self.W_F.T  # feed-forward: global bigram memory
        logits = x @ self.u.T
        return (logits, [A1[:, None], A2[:, None]]) if return_attn else logits


@one_thread
def icl_accuracy(model: nn.Module, task: BigramTask, L: int, B: int, generator: torch.Generator) -> float:
    """Return the accuracy of argmax predictions at in-context positions (2nd+ occurrences of triggers)."""
    batch = sample_sequences(task, B, L + 1, generator)
    dev = next(model.parameters()).device
    with torch.no_grad():
        pred = model(batch.tokens[:, :-1].to(dev)).argmax(-1).cpu()
    mask = batch.icl_mask[:, 1:]
    return float((pred == batch.tokens[:, 1:])[mask].to(torch.float64).mean())


def pregenerated_batches(
    task: BigramTask, B: int, L: int, steps: int, generator: torch.Generator, max_tokens: int = 1 << 22
) -> Iterator[TriggerBatch]:
    """Yield `steps` batches of B sequences of length L, sampled in chunks of up to `max_tokens` tokens.

    One call of `sample_sequences` per chunk keeps the Python loop over time to L iterations per chunk
    (instead of L per step); the batches are the consecutive B-row slices of each chunk.
    """
    per_chunk = max(1, min(steps, max_tokens // (B * L)))
    for start in range(0, steps, per_chunk):
        n = min(per_chunk, steps - start)
        chunk = sample_sequences(task, n * B, L, generator)
        for i in range(n):
            yield TriggerBatch(*(x[i * B : (i + 1) * B] for x in chunk))


@one_thread
def train_induction_model(
    cfg: InductionConfig,
    task: BigramTask,
    pos_enc: str,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[TwoLayerInductionModel, dict[str, list[float]]]:
    """Train the two-layer model on fresh bigram-with-triggers batches; return (model, history).

    Loss: full next-token loss plus the in-context loss (mean over in-context positions), AdamW with
    betas (0.9, 0.99). history: "step", "icl_acc" (every eval_every steps and at the end), "loss" (every step).
    Learned positions are allocated up to 4T (the longest evaluation length of the chapter).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TwoLayerInductionModel(task.N, cfg.d, 4 * cfg.T, pos_enc, gen).to(device)
    batches = pregenerated_batches(task, cfg.batch, cfg.T + 1, cfg.steps, gen)
    n_pos = cfg.batch * cfg.T

    def next_batch(step: int) -> tuple[Tensor, Tensor, Tensor]:
        """Return (inputs, targets, weights) with weights 1 + [in-context] n / n_icl (see below)."""
        batch = next(batches)
        icl = batch.icl_mask[:, 1:].to(torch.float64)
        # train_lm minimises sum_t w_t l_t / sum_t w_t. With w_t = 1 + [t in-context] n / n_icl this is
        # (full loss + in-context loss) / 2, the loss of Bietti et al. halved: AdamW is invariant to the
        # scale of the loss (up to its eps), so the updates are those of the sum (without in-context
        # positions, w = 1 gives the full loss, as the sum does).
        weights = 1.0 + icl * (n_pos / icl.sum().clamp_min(1.0))
        return batch.tokens[:, :-1].to(device), batch.tokens[:, 1:].to(device), weights.float().to(device)

    history: dict[str, list[float]] = {"step": [], "icl_acc": []}
    eval_gen = torch.Generator().manual_seed(seed + 10_000)

    def evaluate(step: int, loss: float) -> None:
        """Record the in-context accuracy at `step` (called by train_lm every eval_every steps)."""
        model.eval()
        history["step"].append(step)
        history["icl_acc"].append(icl_accuracy(model, task, cfg.T, cfg.eval_batch // 4, eval_gen))
        model.train()

    losses = train_lm(
        model,
        next_batch,
        cfg.steps,
        lr=cfg.lr,
        weight_decay=0.0,
        betas=(0.9, 0.99),
        desc=f"train ({pos_enc})",
        log_every=cfg.eval_every,
        on_log=evaluate,
    )
    if not history["step"] or history["step"][-1] != cfg.steps:
        evaluate(cfg.steps, losses[-1])
    history["loss"] = [2.0 * x for x in losses]  # full + in-context loss
    model.eval()
    return model, history


@one_thread
def head_scores(
    model: TwoLayerInductionModel, task: BigramTask, L: int, B: int, generator: torch.Generator
) -> tuple[float, float]:
    """Return (previous-token score, induction score) of a trained model on fresh sequences of length L.

    previous-token score: mean over t >= 1 of the layer-1 attention A1[t, t - 1];
    induction score: mean over in-context query positions t (z_t a trigger seen before) of the layer-2
    attention mass on the positions s with z_{s-1} = z_t (the tokens that followed earlier copies of z_t).
    """
    batch = sample_sequences(task, B, L, generator)
    z = batch.tokens
    dev = next(model.parameters()).device
    with torch.no_grad():
        _, (A1, A2) = model(z.to(dev), return_attn=True)
    A1, A2 = A1[:, 0].cpu().double(), A2[:, 0].cpu().double()
    prev = torch.diagonal(A1, offset=-1, dim1=1, dim2=2).mean()
    # target[b, t, s] = [z_{s-1} = z_t] for s >= 1, s <= t
    follows = torch.zeros(B, L, L, dtype=torch.bool)
    follows[:, :, 1:] = z[:, :, None] == z[:, None, :-1]
    follows &= causal_mask(L)
    is_query = torch.roll(batch.icl_mask, -1, dims=1)  # z_t is a trigger seen before t
    is_query[:, -1] = (z[:, -1:] == batch.triggers).any(1) & follows[:, -1].any(1)
    mass = (A2 * follows).sum(-1)  # (B, L)
    return float(prev), float(mass[is_query].mean())


# ----------------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ----------------------------------------------------------------------------------------------------------

_ARM_LINES = ("o-", "s--", "^:")  # line styles of the trained arms, in the order given


def plot_construction_errors(betas1, hard_err, soft_err):
    """Draw the largest logit error of the hand-wired model against the hard and the exact formula, per beta1."""
    fig, ax = plotting.subplots(1, 1)
    ax.semilogy(betas1, np.maximum(hard_err, 1e-17), "o-", label="hard closed form ($\\beta_1 \\to \\infty$)")
    ax.semilogy(betas1, np.maximum(soft_err, 1e-17), "s--", label="exact formula (any $\\beta_1$)")
    ax.axhline(1e-10, color="gray", lw=0.8, ls=":", label="tolerance of the check")
    plotting.label(ax, x="$\\beta_1$ (sharpness of the previous-token head)", y="max |logit difference|")
    ax.legend()
    return fig


def plot_threshold(sweep: dict, cs, lengths, cs_switch, switch_seen, w: MemoryWeights, delta: float):
    """Draw P(o) and P(g) against the copies c per length with c*(T) (left), and the switch lengths (right)."""
    from matplotlib.lines import Line2D

    fig, (ax, ax2) = plotting.subplots(1, 2, figsize=(10, 3.8))
    for i in range(len(lengths)):
        ax.plot(cs, sweep["p_o"][i], "o-", color=f"C{i}", ms=3)
        ax.plot(cs, sweep["p_g"][i], ":", color=f"C{i}")
        ax.axvline(float(sweep["threshold"][i]), color=f"C{i}", ls="--", lw=0.8)
    handles = [Line2D([], [], color=f"C{i}", label=f"T = {T}") for i, T in enumerate(lengths)]
    handles += [
        Line2D([], [], color="gray", ls="-", marker="o", ms=3, label="P(o)"),
        Line2D([], [], color="gray", ls=":", label="P(g)"),
        Line2D([], [], color="gray", ls="--", lw=0.8, label="c*(T)"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plotting.label(ax, x="in-context copies c of 'a o'", y="probability")
    c_line = np.linspace(0.8, cs_switch[-1] + 0.2, 50)
    # the corollary's switch length: T + 1 = c (e^{beta2}(1 - r) + r) / r
    r = w.lam_G * delta / w.lam
    slope = (np.exp(w.beta2) * (1 - r) + r) / r
    ax2.plot(c_line, slope * c_line - 1, "-", color="C0", label="theorem: T + 1 = c (...) / r")
    ax2.plot(c_line, slope * c_line, ":", color="C1", label="off by one: T = c (...) / r")
    ax2.plot(cs_switch, switch_seen, "o", color="k", ms=4, label="hand-wired model")
    plotting.label(ax2, x="in-context copies c", y="first length T where g wins", legend=True)
    return fig


def plot_training(histories: dict, arms: dict, A1: Tensor, A2: Tensor, tokens: Tensor, icl_mask: Tensor):
    """Draw in-context accuracy during training per arm, and the two attention maps of one sequence.

    `A1`, `A2` are the layer-1 and layer-2 maps (1, heads, T, T) of the sequence `tokens` (1, T) whose
    in-context positions are `icl_mask` (T,); circles mark, for each repeated trigger t, the keys s that follow
    an earlier copy of it (z_{s-1} = z_t).
    """
    fig, axes = plotting.subplots(1, 3, figsize=(11.5, 3.5))
    for (pe, hist), style in zip(histories.items(), _ARM_LINES):
        axes[0].plot(hist["step"], hist["icl_acc"], style, ms=3, label=arms[pe])
    plotting.label(axes[0], x="training step", y="in-context accuracy", ylim=(0, 1.02), legend=True)
    for ax, A, title in ((axes[1], A1, "layer 1 (previous token)"), (axes[2], A2, "layer 2 (induction)")):
        im = ax.imshow(A[0, 0].cpu(), cmap="magma", vmin=0, vmax=1)
        plotting.label(ax, x="key position s", y="query position t", title=title)
        ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.85, label="attention weight")
    is_query = torch.roll(icl_mask, -1)[:, None]
    same = (tokens[0, :, None] == tokens[0, None, :-1]).tril(-1) & is_query
    t_idx, s_idx = torch.nonzero(same, as_tuple=True)
    axes[2].scatter(s_idx + 1, t_idx, s=60, facecolors="none", edgecolors="C2", label="key after an earlier copy")
    axes[2].legend(fontsize=7, loc="upper right", facecolor="white", framealpha=0.9, frameon=True)
    return fig


def plot_trained_hijack(curves: dict, cs, lengths):
    """Draw P(o) and P(g) of the trained RoPE model against the copies c per length, and P(o) of the ablation."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.4, 3.6))
    for i, L in enumerate(lengths):
        ax.plot(cs, curves["rope"]["p_o"][i], "o-", color=f"C{i}", ms=3, label=f"P(o), length {L + 1}")
        ax.plot(cs, curves["rope"]["p_g"][i], ":", color=f"C{i}", label=f"P(g), length {L + 1}")
    ax.plot(cs, curves["none"]["p_o"][0], "-.", color="gray", label="P(o), no positions, length T")
    plotting.label(ax, x="in-context copies c of 'a o'", y="probability")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_length(length_acc: dict, lengths, T: int, arms: dict):
    """Draw the in-context accuracy of each trained arm against the sequence length, with the training length."""
    fig, ax = plotting.subplots(1, 1)
    for (pe, accs), style in zip(length_acc.items(), _ARM_LINES):
        ax.plot(lengths, accs, style, label=arms[pe])
    ax.axvline(T, color="gray", ls=":", lw=0.8, label="training length T")
    ax.set_xscale("log", base=2)
    plotting.ticks(ax, lengths, fmt="{}")
    plotting.label(ax, x="sequence length", y="in-context accuracy", ylim=(0, 1.02), legend=True)
    return fig
