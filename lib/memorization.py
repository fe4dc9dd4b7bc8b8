"""Memorisation capacity of transformers: exact constructions, random datasets, size searches.

Explained in chapter "The optimal memorization capacity of transformers"
(`chapters/memorization-capacity`), after Kajitsuka and Sato (ICLR 2025). Three parts:

* random datasets of N token sequences of length n with a label per sequence (next-token) or per token
  (seq2seq), and their token-wise separation (r, delta);
* the construction, exact: an averaging attention layer plus a projection gives every sequence an
  integer id (a *contextual mapping*), and a deep, narrow ReLU network built by *bit extraction* maps
  the ids to the labels with O(sqrt(N) log N) parameters, whose weights hold O(sqrt(N) log N) bits;
  all arithmetic is on Python integers (float64 cannot hold the weights);
* the smallest trained model that memorises: the shared `lib.transformer` trained at several FFN widths
  at once (one vmapped program), and a bisection with early stopping and restarts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lib import plotting
from lib.progress import trange
from lib.runtime import one_thread
from lib.transformer import CausalTransformer, TransformerConfig, lm_loss

TASKS = ("next-token", "seq2seq")

# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoData:
    """N sequences `tokens` (N, n) over `vocab` tokens and their `labels` in [0, n_labels).

    next-token: `labels` has shape (N,), one label per sequence (read at the last position).
    seq2seq: `labels` has shape (N, n); equal tokens of one sequence have equal labels (the label is
    a function of the sequence and the token, as a transformer without position encoding needs).
    """

    tokens: Tensor
    labels: Tensor
    vocab: int
    n_labels: int
    task: str

    @property
    def N(self) -> int:
        """Return the number of sequences."""
        return self.tokens.shape[0]

    @property
    def n(self) -> int:
        """Return the sequence length."""
        return self.tokens.shape[1]


def random_dataset(N: int, n: int, vocab: int, n_labels: int, task: str, seed: int) -> MemoData:
    """Return N random sequences, pairwise distinct as multisets, with uniform random labels."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if math.comb(vocab + n - 1, n) < 2 * N:
        raise ValueError(f"too few multisets of {n} tokens from {vocab} for N={N}")
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (0, n))
    while tokens.shape[0] < N:  # draw, then keep the first of every multiset
        more = torch.randint(0, vocab, (N + N // 4 + 8, n), generator=gen)
        pool = torch.cat([tokens, more])
        keys = pool.sort(1).values.numpy()
        _, first = np.unique(keys, axis=0, return_index=True)
        tokens = pool[np.sort(first)][:N]
    if task == "next-token":
        labels = torch.randint(0, n_labels, (N,), generator=gen)
    else:  # one label per (sequence, token value), read off at every position
        table = torch.randint(0, n_labels, (N, vocab), generator=gen)
        labels = table.gather(1, tokens)
    return MemoData(tokens, labels, vocab, n_labels, task)


def token_vectors(vocab: int, d: int, R: int, seed: int) -> Tensor:
    """Return `vocab` pairwise-distinct integer token vectors in {0, ..., R-1}^d (int64, (V, d))."""
    if R**d < vocab:
        raise ValueError(f"only {R**d} integer vectors in [0, {R})^{d}, need {vocab}")
    gen = torch.Generator().manual_seed(seed)
    while True:
        X = torch.randint(0, R, (vocab, d), generator=gen)
        if torch.unique(X, dim=0).shape[0] == vocab:
            return X


def separation(X: Tensor, tokens: Tensor) -> tuple[float, float]:
    """Return (r, delta): the largest norm of a used token and the smallest distance of two distinct ones."""
    used = X[torch.unique(tokens)].double()
    r = float(used.norm(dim=1).max())
    D = torch.cdist(used, used)
    D.fill_diagonal_(float("inf"))
    return r, float(D.min())


# ---------------------------------------------------------------------------------------------------
# The contextual mapping: averaging attention + projection
# ---------------------------------------------------------------------------------------------------


def projection(d: int, M: int, seed: int) -> Tensor:
    """Return the projection u, uniform in {0, ..., M-1}^d (int64)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    return torch.randint(0, M, (d,), generator=gen)


def context_ids(tokens: Tensor, X: Tensor, u: Tensor, mode: str = "average") -> Tensor:
    """Return one integer id per sequence (int64, (N,)).

    "average": the id is n times the output of an attention layer with uniform weights (W_Q = W_K = 0,
    so softmax = hardmax = 1/n) and value map u^T, i.e. n * (1/n) sum_t u^T x_t = sum_t u^T x_t.
    "last": the ablation without attention: the id of the last token alone, u^T x_n.
    """
    q = X @ u  # u^T x_v for every token v: the projected tokens
    if mode == "average":
        # paper: attention output (1/n) sum_t softmax(0)_t x_t, projected by u; times n
        return q[tokens].sum(1)
    if mode == "last":
        return q[tokens[:, -1]]
    raise ValueError(f"mode must be 'average' or 'last', got {mode!r}")


def token_ids(tokens: Tensor, X: Tensor, u: Tensor) -> Tensor:
    """Return seq2seq ids (N, n): id(x_k, X) = K * (token index of x_k) + context id of X.

    K exceeds every context id, so the pair (token, context) is read off the id: the skip connection
    carries x_k, the attention carries the context, and the FFN sees both: up to nN distinct ids, the
    count behind [mc-thm-seq2seq].
    """
    ctx = context_ids(tokens, X, u)
    K = int(ctx.max()) + 1
    return tokens * K + ctx[:, None]


def min_gap(ids: Sequence[int] | Tensor) -> int:
    """Return the smallest difference of two distinct-position ids (0 when two ids coincide)."""
    v = np.sort(np.asarray(ids, dtype=np.int64).ravel())
    return int(np.diff(v).min()) if v.size > 1 else 0


def unique_pairs(ids: Tensor, labels: Tensor) -> tuple[list[int], list[int]]:
    """Return the distinct ids and their labels; raise if one id carries two labels."""
    table: dict[int, int] = {}
    for i, y in zip(ids.ravel().tolist(), labels.ravel().tolist(), strict=True):
        if table.setdefault(i, y) != y:
            raise ValueError(f"id {i} carries two labels: the ids are not a contextual mapping")
    keys = sorted(table)
    return keys, [table[k] for k in keys]


# ---------------------------------------------------------------------------------------------------
# Exact ReLU networks on integers
# ---------------------------------------------------------------------------------------------------


@dataclass
class ReLUNet:
    """h_l = ReLU(A_l h_{l-1} + c_l) for the hidden layers, then a linear output y = A h + c.

    Weights are Python integers (exact, any size). `layers[-1]` is the linear output layer.
    """

    layers: list[tuple[np.ndarray, np.ndarray]]

    def n_params(self) -> int:
        """Return the number of weights and biases, counted entry by entry."""
        return sum(A.size + c.size for A, c in self.layers)

    def depth(self) -> int:
        """Return the number of hidden layers."""
        return len(self.layers) - 1

    def width(self) -> int:
        """Return the largest hidden width."""
        return max(A.shape[0] for A, _ in self.layers[:-1])

    def max_bits(self) -> int:
        """Return the bits of the largest weight: max over entries of bit_length(|w|) (+1 for a sign)."""
        return max(max(int(abs(int(w))).bit_length() + (int(w) < 0) for w in (*A.ravel(), *c)) for A, c in self.layers)

    def __call__(self, z: Sequence[int]) -> list[int]:
        """Return the network's outputs on integer inputs `z` (one scalar input each), exactly."""
        h = np.array([[int(v) for v in z]], dtype=object)  # (1, B)
        for i, (A, c) in enumerate(self.layers):
            rows = []
            for r in range(A.shape[0]):  # sparse rows: most weights are zero
                acc = np.full(h.shape[1], int(c[r]), dtype=object)
                for j in np.flatnonzero(A[r] != 0):
                    acc = acc + int(A[r, j]) * h[j]
                rows.append(acc)
            h = np.array(rows, dtype=object)
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0)
        return [int(v) for v in h[0]]


def float_outputs(net: ReLUNet, z: Sequence[int], dtype=np.float64) -> np.ndarray:
    """Return the outputs of `net` with every weight rounded to `dtype` (float64: 53-bit mantissa)."""
    h = np.asarray(z, dtype=dtype)[None, :]
    for i, (A, c) in enumerate(net.layers):
        h = A.astype(dtype) @ h + c.astype(dtype)[:, None]
        if i < len(net.layers) - 1:
            h = np.maximum(h, 0)
    return h[0]


def blocks_for_bit_budget(N: int, max_id: int, n_labels: int, bits: int) -> int:
    """Return the number of blocks that keeps every block's word within `bits` bits (>= 1 entry each)."""
    p = plan(N, max_id, n_labels)
    s = max(1, bits // (p.rho + p.b))
    return -(-N // s)


class _Builder:
    """Build a ReLU network layer by layer; the registers are affine functions of the last hidden layer."""

    def __init__(self) -> None:
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.regs = {"z": ({0: 1}, 0)}  # register -> (coefficients over the last layer's units, constant)

    def layer(self, units: list[tuple[dict[str, int], int]], out: dict[str, tuple[dict[int, int], int]]):
        """Add a hidden layer; unit j = ReLU(sum_r a_r reg_r + a0); registers become affine in the units."""
        width_in = (self.layers[-1][0].shape[0]) if self.layers else 1
        A = np.zeros((len(units), width_in), dtype=object)
        A[:] = 0
        c = np.zeros(len(units), dtype=object)
        c[:] = 0
        for j, (coef, const) in enumerate(units):
            total = const
            for name, a in coef.items():
                rcoef, rconst = self.regs[name]
                for i, b in rcoef.items():
                    A[j, i] += a * b
                total += a * rconst
            c[j] = total
        self.layers.append((A, c))
        self.regs = out

    def output(self, name: str) -> ReLUNet:
        """Finish with the linear output layer that reads register `name`."""
        coef, const = self.regs[name]
        A = np.zeros((1, self.layers[-1][0].shape[0]), dtype=object)
        A[:] = 0
        for i, b in coef.items():
            A[0, i] = b
        c = np.array([const], dtype=object)
        return ReLUNet([*self.layers, (A, c)])


def _pass(names: Sequence[str], start: int) -> tuple[list, dict]:
    """Return ReLU units that pass non-negative registers `names` on, and their new register map."""
    units = [({k: 1}, 0) for k in names]
    regs = {k: ({start + i: 1}, 0) for i, k in enumerate(names)}
    return units, regs


@dataclass(frozen=True)
class MemorizerPlan:
    """Sizes of a bit-extraction memoriser: N points, m blocks of s, rho bits per id, b per label."""

    N: int
    m: int
    s: int
    rho: int
    b: int

    @property
    def word_bits(self) -> int:
        """Return L = s (rho + b): the bits each block's big weight holds."""
        return self.s * (self.rho + self.b)


def plan(N: int, max_id: int, n_labels: int, blocks: int | None = None) -> MemorizerPlan:
    """Return the sizes: m = ceil(sqrt N) blocks (or `blocks`) of s = ceil(N/m) points each."""
    m0 = blocks if blocks is not None else math.isqrt(N - 1) + 1
    s = -(-N // m0)
    m = -(-N // s)
    rho = (max_id + 1).bit_length()  # ids lie in [0, 2^rho - 2]; 2^rho - 1 pads empty entries
    b = max(1, (n_labels - 1).bit_length())
    return MemorizerPlan(N=N, m=m, s=s, rho=rho, b=b)


def bit_extraction_param_count(p: MemorizerPlan) -> int:
    """Return the parameter count of `bit_extraction_memorizer` from its layer widths (closed form).

    Widths: 1 input; 2m - 1 (block selection); per stored entry one layer of 5 and rho - 1 of 6 (id
    bits), one of 5 (comparison) and b pairs of layers of 6 and 5 (label bits); a linear output of 1.
    A layer of width w after one of width w' has w (w' + 1) parameters.
    """
    if p.rho < 2:
        raise ValueError("the closed form assumes ids of at least 2 bits (N >= 2)")
    selection = (2 * p.m - 1) * 2
    first_bits = 5 * (2 * p.m) + (p.s - 1) * 5 * 6  # first id-bit layer of each entry
    per_entry = 36 + 42 * (p.rho - 2) + 35 + p.b * (36 + 35)
    return selection + first_bits + p.s * per_entry + 6


def bit_extraction_memorizer(
    ids: Sequence[int], labels: Sequence[int], n_labels: int, blocks: int | None = None
) -> tuple[ReLUNet, MemorizerPlan]:
    """Return a deep narrow ReLU network f with f(ids[i]) = labels[i] exactly, and its sizes.

    After Vardi, Yehudai and Shamir's optimal memoriser, as used by Kajitsuka and Sato: sort the N ids
    into m ~ sqrt(N) blocks of s ~ sqrt(N); for block j one integer weight W_j concatenates the bits of
    its s (id, label) pairs (s (rho + b) bits). The first layer selects W_{j(z)} with m step functions;
    then s (rho + 1 + 2b) layers of width <= 6 peel W's bits off one at a time (bit extraction), rebuild
    each stored id, compare it with z and add the stored label where they are equal.
    """
    ids = [int(v) for v in ids]
    labels = [int(v) for v in labels]
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be pairwise distinct (a contextual mapping)")
    if min(ids) < 0:
        raise ValueError("ids must be non-negative integers")
    if any(not 0 <= y < n_labels for y in labels):
        raise ValueError(f"labels must lie in [0, {n_labels})")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    zs, ys = [ids[i] for i in order], [labels[i] for i in order]
    p = plan(len(zs), zs[-1], n_labels, blocks)
    pad = (1 << p.rho) - 1  # an id no input has
    L = p.word_bits

    # W_j = bits (z_{j,1}, y_{j,1}, ..., z_{j,s}, y_{j,s}), most significant first
    words = []
    for j in range(p.m):
        w = 0
        for k in range(p.s):
            i = j * p.s + k
            z, y = (zs[i], ys[i]) if i < p.N else (pad, 0)
            w = (w << (p.rho + p.b)) | (z << p.b) | y
        words.append(w)
    thetas = [zs[j * p.s] for j in range(1, p.m)]

    net = _Builder()
    # selection: units z, then ReLU(z - theta_k + 1), ReLU(z - theta_k) for k = 1..m-1
    units = [({"z": 1}, 0)]
    for t in thetas:
        units += [({"z": 1}, 1 - t), ({"z": 1}, -t)]
    # W(z) = W_0 + sum_k (W_k - W_{k-1}) 1[z >= theta_k]
    coef = {}
    for k in range(1, p.m):
        coef[2 * k - 1] = words[k] - words[k - 1]
        coef[2 * k] = words[k - 1] - words[k]
    net.layer(units, {"z": ({0: 1}, 0), "W": (coef, words[0]), "c": ({}, 0), "out": ({}, 0)})

    half = 1 << (L - 1)
    for _ in range(p.s):
        for r in range(p.rho):  # id bits: bit = 1[W >= 2^(L-1)]; W <- 2W - 2^L bit; c <- 2c + bit
            keep = ["W", "c", "z", "out"] if r else ["W", "z", "out"]
            units = [({"W": 1}, 1 - half), ({"W": 1}, -half)]
            more, regs = _pass(keep, 2)
            regs["W"] = ({2: 2, 0: -(1 << L), 1: 1 << L}, 0)
            regs["c"] = ({3: 2, 0: 1, 1: -1}, 0) if r else ({0: 1, 1: -1}, 0)
            net.layer(units + more, regs)
        # compare: dd = ReLU(c - z) + ReLU(z - c) = |c - z|
        units = [({"c": 1, "z": -1}, 0), ({"c": -1, "z": 1}, 0)]
        more, regs = _pass(["W", "z", "out"], 2)
        regs["dd"] = ({0: 1, 1: 1}, 0)
        net.layer(units + more, regs)
        for k in range(p.b):  # label bits; e = 1[c = z] = ReLU(1 - dd)
            units = [({"W": 1}, 1 - half), ({"W": 1}, -half)]
            units.append(({"dd": -1}, 1) if k == 0 else ({"e": 1}, 0))
            more, regs = _pass(["W", "z", "out"], 3)
            regs["W"] = ({3: 2, 0: -(1 << L), 1: 1 << L}, 0)
            regs["e"] = ({2: 1}, 0)
            regs["bit"] = ({0: 1, 1: -1}, 0)
            net.layer(units + more, regs)
            # out <- out + 2^(b-1-k) AND(e, bit), AND(e, bit) = ReLU(e + bit - 1)
            units = [({"e": 1, "bit": 1}, -1)]
            more, regs = _pass(["e", "W", "z", "out"], 1)
            regs["out"] = ({4: 1, 0: 1 << (p.b - 1 - k)}, 0)
            net.layer(units + more, regs)
    return net.output("out"), p


def lookup_memorizer(ids: Sequence[int], labels: Sequence[int]) -> ReLUNet:
    """Return the per-label look-up network f(z) = sum_i y_i bump(z - z_i), 3 ReLUs per point.

    bump(x) = ReLU(x + 1) - 2 ReLU(x) + ReLU(x - 1) is 1 at x = 0 and 0 at every other integer: one
    hidden layer of width 3N, 9N + 1 parameters, weights of rho bits: the baseline with slope 1.
    """
    units_A, units_c, coef = [], [], []
    for z, y in zip(ids, labels, strict=True):
        for shift, w in ((1, 1), (0, -2), (-1, 1)):
            units_A.append(1)
            units_c.append(int(shift) - int(z))
            coef.append(w * int(y))
    A = np.array(units_A, dtype=object).reshape(-1, 1)
    c = np.array(units_c, dtype=object)
    out = np.array([coef], dtype=object)
    return ReLUNet([(A, c), (out, np.array([0], dtype=object))])


# ---------------------------------------------------------------------------------------------------
# Trained transformers: many FFN widths at once, and the minimum-size search
# ---------------------------------------------------------------------------------------------------


def model_config(data: MemoData, d_model: int, d_ff: int, n_layers: int = 1) -> TransformerConfig:
    """Return the encoder used here: no position encoding, bidirectional attention (as in the paper)."""
    return TransformerConfig(
        vocab_size=data.vocab,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=1,
        pos_enc="none",
        d_ff=d_ff,
        causal=False,
    )


def n_params_at(data: MemoData, d_model: int, width: int, n_layers: int = 1) -> int:
    """Return the trainable parameters of the model with FFN width `width` (W_U rows of used labels)."""
    net = CausalTransformer(model_config(data, d_model, 1, n_layers))  # the masked models' layout
    unused = (data.vocab - data.n_labels) * d_model  # rows of W_U no label reads
    return net.n_params() - unused + n_layers * 2 * d_model * (width - 1)


def accuracy(logits: Tensor, data: MemoData) -> Tensor:
    """Return the training accuracy per model (K,) from logits (K, N, n, V)."""
    pred = logits[..., : data.n_labels].argmax(-1)
    if data.task == "next-token":
        return (pred[:, :, -1] == data.labels).double().mean(1)
    return (pred == data.labels).double().mean((1, 2))


KNOCKOUTS = ("no-ffn", "ignore-mask")
"""Switches of `train_widths` that remove the FFN's width as a variable (knock-outs of the FFN mechanism):
"no-ffn" masks every model's FFN to width 0, "ignore-mask" gives every model the largest width."""


def width_mask(widths: Sequence[int], wmax: int, knockout: str | None = None) -> Tensor:
    """Return the (K, wmax) 0/1 mask that keeps the first widths[k] hidden units of model k.

    `knockout` (one of `KNOCKOUTS`) replaces every width by 0 ("no-ffn") or by `wmax` ("ignore-mask").
    """
    w = torch.tensor([int(v) for v in widths])
    if knockout == "no-ffn":
        w = torch.zeros_like(w)
    elif knockout == "ignore-mask":
        w = torch.full_like(w, wmax)
    elif knockout is not None:
        raise ValueError(f"knockout must be None or one of {KNOCKOUTS}, got {knockout!r}")
    if int(w.min()) < 0 or int(w.max()) > wmax:
        raise ValueError(f"widths must lie in [0, {wmax}], got {widths}")
    return (torch.arange(wmax)[None, :] < w[:, None]).float()


def mask_ffn(params: dict[str, Tensor], m: Tensor, n_layers: int) -> dict[str, Tensor]:
    """Return `params` with the FFN hidden units where `m` (wmax,) is 0 removed: their W_1 rows and W_2 columns
    are multiplied by 0, so they contribute nothing and receive no gradient.

    The FFN width is the resource of [mc-thm-seq2seq]: the feed-forward network attaches a label to
    every (token, sequence) pair, so its width is what seq2seq memorisation needs more of as n grows.
    """
    p = dict(params)
    for li in range(n_layers):
        key = f"blocks.{li}.mlp.W_"
        p[key + "1.weight"] = p[key + "1.weight"] * m[:, None]
        p[key + "2.weight"] = p[key + "2.weight"] * m[None, :]
    return p


def init_seeds(widths: Sequence[int], seed: int) -> list[int]:
    """Return the initialisation seed of each model: the r-th model of a width gets seed * 1000 + r.

    Models of different widths with the same r share every weight but the FFN units beyond the smaller width
    (a paired comparison: they differ only in width).
    """
    seen: dict[int, int] = {}
    out = []
    for w in widths:
        r = seen.get(int(w), 0)
        seen[int(w)] = r + 1
        out.append(seed * 1000 + r)
    return out


@dataclass
class WidthSweep:
    """Training accuracy of K models (FFN `widths`, restarts) after `steps` (first step at 100%)."""

    widths: list[int]
    final_acc: list[float]
    hit_step: list[int]  # first logged step with 100% training accuracy, -1 if never
    steps: int


@one_thread
def train_widths(
    data: MemoData,
    widths: Sequence[int],
    d_model: int,
    steps: int,
    lr: float,
    seed: int,
    n_layers: int = 1,
    eval_every: int = 50,
    device: torch.device | str = "cpu",
    desc: str = "training",
    knockout: str | None = None,
) -> WidthSweep:
    """Train one model per entry of `widths` at once (vmap over stacked weights); stop early when all fit.

    Every model has the largest FFN width; model k masks the hidden units beyond widths[k] (`mask_ffn`), so the
    models differ only in width and, across restarts, initialisation (`init_seeds`). Full-batch Adam.
    `knockout` (one of `KNOCKOUTS`) removes the width as a variable: the FFN's knock-out.
    """
    from torch.func import functional_call, stack_module_state, vmap

    wmax = max(max(widths), 1)
    cfg = model_config(data, d_model, wmax, n_layers)
    models = []
    for s in init_seeds(widths, seed):
        torch.manual_seed(s)
        models.append(CausalTransformer(cfg).to(device))
    params, buffers = stack_module_state(models)
    base = CausalTransformer(cfg).to("meta")
    mask = width_mask(widths, wmax, knockout).to(device)
    x = data.tokens.to(device)
    y = data.labels.to(device)
    C = data.n_labels

    def forward(p, b, m):
        return functional_call(base, (mask_ffn(p, m, n_layers), b), (x,))[..., :C]

    batched = vmap(forward)
    opt = torch.optim.Adam(params.values(), lr=lr)
    K = len(widths)
    hit = [-1] * K
    acc = torch.zeros(K)
    done = 0
    for step in trange(steps, desc=desc):
        logits = batched(params, buffers, mask)  # (K, N, n, C)
        if data.task == "next-token":
            loss = sum(lm_loss(logits[k, :, -1:], y[:, None]) for k in range(K))
        else:
            loss = sum(lm_loss(logits[k], y) for k in range(K))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if done % eval_every == 0 or done == steps:
            with torch.no_grad():
                acc = accuracy(batched(params, buffers, mask), data).cpu()
            for k in range(K):
                if hit[k] < 0 and acc[k] == 1.0:
                    hit[k] = done
            if all(h > 0 for h in hit):
                break
    return WidthSweep(list(widths), [float(a) for a in acc], hit, done)


def min_fitting_width(sweep: WidthSweep) -> int:
    """Return the smallest width at which some restart reached 100% training accuracy (-1 if none)."""
    fits = [w for w, h in zip(sweep.widths, sweep.hit_step, strict=True) if h > 0]
    return min(fits) if fits else -1


def bisect_min_size(fits: Callable[[int], bool], lo: int, hi: int, restarts: int = 1) -> tuple[int, list[int]]:
    """Return (smallest size in (lo, hi] for which `fits` holds, sizes probed), by bisection.

    Assumes `fits(lo)` is False and `fits(hi)` is True and that fitting is monotone in the size; each
    probe tries up to `restarts` times (`fits` draws a new initialisation each call) and stops at the
    first success (early stopping). Returns hi when nothing smaller fits.
    """
    probed = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probed.append(mid)
        if any(fits(mid) for _ in range(restarts)):
            hi = mid
        else:
            lo = mid
    return hi, probed


@dataclass
class SizeSearch:
    """Result of `min_width_search`: the smallest fitting FFN width (or `censored`) and every probe."""

    min_width: int  # smallest width with 100% training accuracy; `censored` if none in the grid
    censored: int  # the value reported when nothing fits: twice the largest width tried
    probes: dict[int, float]  # width -> best training accuracy over restarts
    steps: int  # training steps of the longest probe


def min_width_search(
    data: MemoData,
    grid: Sequence[int],
    d_model: int,
    steps: int,
    lr: float,
    seed: int,
    restarts: int = 1,
    refine: bool = False,
    device: torch.device | str = "cpu",
    knockout: str | None = None,
) -> SizeSearch:
    """Return the smallest FFN width that memorises `data` (100% training accuracy).

    First the whole `grid` x `restarts` is trained as one batched program with early stopping; then,
    if `refine`, a bisection between the largest failing and the smallest fitting grid width, each probe
    with `restarts` initialisations trained at once. `knockout` (one of `KNOCKOUTS`, grid only, no
    bisection) removes the width as a variable.
    """
    probes: dict[int, float] = {}

    def run(widths: list[int], tag: int) -> dict[int, bool]:
        sw = train_widths(
            data,
            [w for w in widths for _ in range(restarts)],
            d_model,
            steps,
            lr,
            seed=seed * 7 + tag,
            device=device,
            desc=f"widths {widths}",
            knockout=knockout,
        )
        out = {}
        for w in widths:
            accs = [a for ww, a in zip(sw.widths, sw.final_acc, strict=True) if ww == w]
            hits = [h for ww, h in zip(sw.widths, sw.hit_step, strict=True) if ww == w]
            probes[w] = max(max(accs), probes.get(w, 0.0))
            out[w] = any(h > 0 for h in hits)
        nonlocal longest
        longest = max(longest, sw.steps)
        return out

    longest = 0
    grid = sorted(grid)
    fit = run(grid, 0)
    censored = 2 * grid[-1]
    fitting = [w for w in grid if fit[w]]
    if not fitting:
        return SizeSearch(censored, censored, probes, longest)
    best = fitting[0]
    below = [w for w in grid if w < best]
    if refine and below and knockout is None:
        tag = iter(range(1, 100))
        best, _ = bisect_min_size(lambda w: run([w], next(tag))[w], below[-1], best)
    return SizeSearch(best, censored, dict(sorted(probes.items())), longest)


def search_arguments(*search, **options) -> dict:
    """Return the arguments of `min_width_search` after its `data` (grid, d_model, steps, lr, seed, restarts,
    refine, device, knockout) by name, defaults filled in, as a call with `*search, **options` binds them."""
    bound = inspect.signature(min_width_search).bind(None, *search, **options)
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name != "data"}


def width_study(
    sizes: dict[str, int], ns: Sequence[int], vocab: int, *search, **options
) -> dict[tuple[str, int], SizeSearch]:
    """Return the minimum-width search of every (task, n): `sizes[task]` random sequences of length n.

    `search` and `options` are the arguments of `min_width_search` after its `data` (`search_arguments`); the
    datasets are drawn with its `seed`. The grid must contain width 0 (the model without FFN): `width_measures`
    compares every width with it.
    """
    settings = search_arguments(*search, **options)
    if 0 not in settings["grid"]:
        raise ValueError("the grid must contain width 0, the arm without feed-forward network")
    out = {}
    for task, N in sizes.items():
        for n in ns:
            data = random_dataset(N, n, vocab, 2, task, settings["seed"])
            out[task, n] = min_width_search(data, **settings)
    return out


def ffn_gain(search: SizeSearch, n_labels: int) -> float:
    """Return the training labels the best FFN width fits beyond width 0: (best - width-0 accuracy) * labels."""
    return (max(search.probes.values()) - search.probes[0]) * n_labels


def width_measures(study: dict[tuple[str, int], SizeSearch], sizes: dict[str, int]) -> dict[str, float]:
    """Return what the chapter checks of a `width_study` (n_lo, n_hi: the shortest and longest lengths).

    * `gain_s2s`: seq2seq labels (one per position) at n_hi that the best FFN width fits beyond width 0;
    * `grow_s2s`, `grow_next`: minimum fitting width at n_hi minus at n_lo, per task, counted only when a
      width of the grid fits at both lengths (else 0: no growth was measured; a model whose FFN does
      nothing fits at no width, and must not read as one that needs more width than the grid);
    * `contrast`: grow_s2s - grow_next;
    * `share_s2s`: how much the FFN's share of the seq2seq labels (best width minus width 0, a fraction) grows
      from n_lo to n_hi, in labels of the n_hi set; `share_contrast`: the same growth minus next-token's, in the
      same units. Both are 0 when the FFN's width does nothing (the knock-outs), and smoother than the minimum
      width, which a single label short at one width can move by a grid step.
    """
    ns = sorted({n for _, n in study})
    lo, hi = ns[0], ns[-1]
    s2s, nxt = "seq2seq", "next-token"

    def growth(task: str) -> float:
        a, b = study[task, lo], study[task, hi]
        found = a.min_width < a.censored and b.min_width < b.censored
        return float(b.min_width - a.min_width) if found else 0.0

    def share(task: str) -> float:  # growth of the FFN's share of the labels, a fraction
        return ffn_gain(study[task, hi], 1) - ffn_gain(study[task, lo], 1)

    grow = {t: growth(t) for t in sizes}
    labels_hi = sizes[s2s] * hi
    out = {
        "gain_s2s": ffn_gain(study[s2s, hi], labels_hi),
        "grow_s2s": grow[s2s],
        "share_s2s": share(s2s) * labels_hi,
    }
    if nxt in grow:  # a study of seq2seq alone (the knock-out tests) has no next-token arm
        out |= {
            "grow_next": grow[nxt],
            "contrast": grow[s2s] - grow[nxt],
            "share_contrast": (share(s2s) - share(nxt)) * labels_hi,
        }
    return out


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Return the least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(lx, ly, 1)[0])


# ---------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ---------------------------------------------------------------------------------------------------


def _slope_line(ax, x: Sequence[float], y0: float, slope: float, label: str) -> None:
    """Draw the power law through (x[0], y0) with the given log-log slope, dotted grey: a reference rate."""
    x = np.asarray(x, dtype=float)
    ax.plot(x, y0 * (x / x[0]) ** slope, ":", color="gray", label=label)


def plot_gaps(Ns: Sequence[int], ns: Sequence[int], gaps: np.ndarray, distinct_avg: float, distinct_last: float):
    """Draw the smallest id gap against N per length n (`gaps[n, N]`), and the fractions of distinct ids."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(11, 3.8))
    for a, n in enumerate(ns):
        ax.plot(Ns, gaps[a], "o-", label=f"n = {n}")
    _slope_line(ax, Ns, gaps[0, 0], -2.0, "slope -2")
    plotting.label(
        ax, x="number of sequences N", y="smallest gap of normalised ids", xscale="log", yscale="log", legend=True
    )
    plotting.bars(bx, ["averaging attention", "last token only"], {"distinct ids": [distinct_avg, distinct_last]})
    plotting.label(bx, y=f"distinct ids / N (N = {max(Ns)})", ylim=(0, 1.05))
    return fig


def plot_counts(
    Ns: Sequence[int],
    P_bit: Sequence[int],
    P_look: Sequence[int],
    word_bits: Sequence[int],
    rhos: Sequence[int],
    slope_bit: float,
    slope_look: float,
):
    """Draw the parameters of the bit-extraction and look-up memorisers against N, and their largest weights' bits."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(11, 3.8))
    ax.plot(Ns, P_bit, "o-", label=f"bit extraction (slope {slope_bit:.2f})")
    ax.plot(Ns, P_look, "s--", label=f"look-up (slope {slope_look:.2f})")
    plotting.label(ax, x="number of sequences N", y="parameters", xscale="log", yscale="log", legend=True)
    plotting.label(bx, xscale="log", yscale="log")  # before the reference line: its limits are those of a log axis
    bx.plot(Ns, np.array(word_bits) + 1, "o-", label="bit extraction")
    bx.plot(Ns, np.array(rhos) + 1, "s--", label="look-up")
    plotting.reference(bx, 24, color="gray", ls=":", label="float32 significand (24 bits)")
    plotting.label(bx, x="number of sequences N", y="bits of the largest weight", legend=True)
    return fig


def plot_length(
    ns: Sequence[int], N: int, P_next: Sequence[int], P_s2s: Sequence[int], slope_next: float, slope_s2s: float
):
    """Draw the parameters of the next-token and seq2seq constructions at fixed N against the length n (log-log)."""
    fig, ax = plotting.subplots(1, 1)
    ax.plot(ns, P_next, "o-", label=f"next-token (slope {slope_next:.2f})")
    ax.plot(ns, P_s2s, "s--", label=f"seq2seq (slope {slope_s2s:.2f})")
    _slope_line(ax, ns, P_s2s[0], 0.5, "slope 1/2")
    plotting.label(ax, x="sequence length n", y=f"parameters (N = {N})", xscale="log", yscale="log", legend=True)
    return fig


def plot_trained(study: dict[tuple[str, int], SizeSearch], ns: Sequence[int]):
    """Draw a `width_study`: training accuracy against the FFN width, and the minimum fitting width against n."""
    fig, (ax, bx) = plotting.subplots(1, 2, figsize=(11, 3.8))
    for (task, n), s in study.items():
        style = "o-" if task == "seq2seq" else "s--"
        ax.plot([w + 1 for w in s.probes], list(s.probes.values()), style, label=f"{task}, n = {n}")
    ax.set_xscale("log", base=2)
    plotting.label(ax, x="FFN width + 1", y="training accuracy", legend=True)
    for task, style in zip(TASKS, ("s--", "o-")):
        bx.plot(ns, [study[task, n].min_width for n in ns], style, label=task)
    censored = next(iter(study.values())).censored
    plotting.reference(bx, censored, color="gray", ls=":", label="nothing in the grid fits")
    bx.set_xscale("log", base=2)
    plotting.label(bx, x="sequence length n", y="minimum FFN width (100% train acc.)", legend=True)
    return fig


def plot_bit_budget(
    Ns: Sequence[int],
    P_bit: Sequence[int],
    P_cap: Sequence[int],
    P_look: Sequence[int],
    slope_bit: float,
    slope_cap: float,
    bit_budget: int,
):
    """Draw the parameters against N with unbounded and with `bit_budget`-bit block words, beside the look-up net."""
    fig, ax = plotting.subplots(1, 1)
    ax.plot(Ns, P_bit, "o-", label=f"unbounded bits (slope {slope_bit:.2f})")
    ax.plot(Ns, P_cap, "^-", label=f"{bit_budget}-bit block words (slope {slope_cap:.2f})")
    ax.plot(Ns, P_look, "s--", label="look-up")
    plotting.label(ax, x="number of sequences N", y="parameters", xscale="log", yscale="log", legend=True)
    return fig
