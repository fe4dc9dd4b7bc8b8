"""Dyck_k and Shuffle-Dyck_k, the no-positional-encoding construction, and the length experiment.

Explained in chapter "Hierarchical languages without positional encoding" (`chapters/dyck-no-pe`),
after Hayakawa & Sato (ACL 2025, arXiv:2410.12413).

Contents, in the order of the chapter:

* the token vocabulary (k opening brackets, k closing brackets, an end token, a start token, padding);
* samplers of Dyck_k words (uniform over words of a given length) and of Shuffle-Dyck_k words;
* the valid-next-token oracle and the recogniser (a stack machine, vectorised over the batch);
* the paper's mechanism as an executable float64 model: uniform causal attention from the start token
  gives (1/(i+1), depth_i/(i+1)); a dot-product attention on depth finds the matching bracket; a last
  uniform attention averages the errors. A recogniser and a next-token generator are built on it;
* training and evaluation helpers for the length-generalisation experiment, whose arms (`ARMS`) differ
  in the positional encoding and in whether the input begins with the start token;
* what a trained model predicts after a run of opening brackets, with the training distribution's exact
  answer (the start token's role in a trained model), and sampling from a trained model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lib import plotting
from lib.config import Config
from lib.runtime import one_thread
from lib.transformer import CausalTransformer, TransformerConfig, causal_mask, train_lm

LANGUAGES = ("dyck", "shuffle")


# ---------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DyckVocab:
    """Token ids for k bracket types: opens 0..k-1, closes k..2k-1, then end, start and padding."""

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"the number of bracket types k must be a positive int, got {self.k!r}")

    @property
    def eos(self) -> int:
        """Return the id of the end token."""
        return 2 * self.k

    @property
    def bos(self) -> int:
        """Return the id of the start token (the paper's starting token)."""
        return 2 * self.k + 1

    @property
    def pad(self) -> int:
        """Return the id of the padding token (never a prediction target)."""
        return 2 * self.k + 2

    @property
    def size(self) -> int:
        """Return the vocabulary size, 2k + 3."""
        return 2 * self.k + 3

    def decode(self, ids) -> str:
        """Return a readable string of a token sequence, e.g. `<s>([])</s>`."""
        pairs = "()[]{}<>" if self.k <= 4 else None
        out = []
        for i in np.asarray(ids).tolist():
            if i == self.bos:
                out.append("<s>")
            elif i == self.eos:
                out.append("</s>")
            elif i == self.pad:
                continue
            elif i < self.k:
                out.append(pairs[2 * i] if pairs else f"({i}")
            else:
                out.append(pairs[2 * (i - self.k) + 1] if pairs else f"){i - self.k}")
        return "".join(out)


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")


def _as_pairs(n_pairs) -> np.ndarray:
    n = np.atleast_1d(np.asarray(n_pairs))
    if n.ndim != 1 or not np.issubdtype(n.dtype, np.integer) or (n < 0).any():
        raise ValueError(f"n_pairs must be a non-negative int or 1-d array of ints, got {n_pairs!r}")
    return n.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------------------


def dyck_paths(n_pairs, rng: np.random.Generator) -> np.ndarray:
    """Return uniform Dyck paths: (B, 2 max n) steps +1 (up) / -1 (down), 0 after each path's end.

    Cycle lemma: of the 2n + 1 rotations of a sequence of n ups and n + 1 downs, exactly one (the one
    that starts after the first minimum of the partial sums) stays >= 0 until its last step; dropping
    that last down gives a Dyck path, and each Dyck path arises from exactly 2n + 1 sequences.
    """
    n = _as_pairs(n_pairs)
    B, L = len(n), 2 * int(n.max()) + 1
    active = np.arange(L)[None, :] < (2 * n + 1)[:, None]
    keys = np.where(active, rng.random((B, L)), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    steps = np.where(rank < n[:, None], 1, -1) * active
    partial = np.where(active, np.cumsum(steps, axis=1), np.iinfo(np.int64).max)
    start = partial.argmin(axis=1) + 1
    idx = (start[:, None] + np.arange(L - 1)[None, :]) % (2 * n + 1)[:, None]
    path = np.take_along_axis(steps, idx, axis=1)
    return path * (np.arange(L - 1)[None, :] < 2 * n[:, None])


def _types_by_stack(path: np.ndarray, types_of_opens: np.ndarray) -> np.ndarray:
    """Return the bracket type of every step of `path`: opens get `types_of_opens`, closes their match's."""
    B, T = path.shape
    stack = np.zeros((B, T + 1), dtype=np.int64)
    sp = np.zeros(B, dtype=np.int64)
    rows = np.arange(B)
    out = np.zeros((B, T), dtype=np.int64)
    for t in range(T):
        up, down = path[:, t] == 1, path[:, t] == -1
        stack[rows[up], sp[up]] = types_of_opens[up, t]
        out[up, t] = types_of_opens[up, t]
        sp = sp + up - down
        out[down, t] = stack[rows[down], sp[down]]
    return out


def sample_dyck(n_pairs, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return Dyck_k words, uniform among words with n pairs: (B, 2 max n) ids, padded with `pad`."""
    vocab = DyckVocab(k)
    path = dyck_paths(n_pairs, rng)
    types = _types_by_stack(path, rng.integers(0, k, size=path.shape))
    words = np.where(path == 1, types, types + k)
    return np.where(path == 0, vocab.pad, words)


def sample_shuffle_dyck(n_pairs, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return Shuffle-Dyck_k words with n pairs: (B, 2 max n) ids, padded with `pad`.

    The n pairs are split among the k types (multinomially); each type's brackets form a uniform
    Dyck_1 path, and the k paths are interleaved at random positions.
    """
    vocab = DyckVocab(k)
    n = _as_pairs(n_pairs)
    B, L = len(n), 2 * int(n.max())
    counts = rng.multinomial(n, np.full(k, 1.0 / k))  # (B, k) pairs per type
    paths = dyck_paths(counts.reshape(-1), rng).reshape(B, k, -1)  # (B, k, 2 max n_t)
    # Sorted order: type 0's steps, then type 1's, ... (row-major over (type, step)).
    used = np.arange(paths.shape[2])[None, None, :] < 2 * counts[:, :, None]
    slot = np.cumsum(used.reshape(B, -1), axis=1).reshape(used.shape) - 1
    steps_sorted = np.zeros((B, L), dtype=np.int64)
    types_sorted = np.zeros((B, L), dtype=np.int64)
    b_idx, t_idx, s_idx = np.nonzero(used)
    steps_sorted[b_idx, slot[b_idx, t_idx, s_idx]] = paths[b_idx, t_idx, s_idx]
    types_sorted[b_idx, slot[b_idx, t_idx, s_idx]] = t_idx
    # A random interleaving keeps each type's steps in order: positions of type t, increasing.
    active = np.arange(L)[None, :] < 2 * n[:, None]
    labels = np.where(active, types_sorted, k)
    labels = np.take_along_axis(labels, np.argsort(np.where(active, rng.random((B, L)), 2.0), axis=1), 1)
    order = np.argsort(labels, axis=1, kind="stable")
    words = np.full((B, L), vocab.pad, dtype=np.int64)
    ids = np.where(steps_sorted == 1, types_sorted, types_sorted + k)
    np.put_along_axis(words, order, np.where(active, ids, vocab.pad), axis=1)
    return words


def sample_words(lang: str, n_pairs, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return words of `lang` ("dyck" or "shuffle") with the given numbers of pairs, padded."""
    _check_lang(lang)
    return (sample_dyck if lang == "dyck" else sample_shuffle_dyck)(n_pairs, k, rng)


def to_sequences(words: np.ndarray, k: int, start: bool = True, end: bool = True) -> np.ndarray:
    """Return `<s> w </s>` for each padded word (start/end tokens optional), padded with `pad`."""
    vocab = DyckVocab(k)
    words = np.asarray(words)
    if words.ndim != 2:
        raise ValueError(f"words must be a 2-d array (batch, length), got shape {words.shape}")
    B = words.shape[0]
    lengths = (words != vocab.pad).sum(axis=1)
    out = np.concatenate([words, np.full((B, 1), vocab.pad)], axis=1)
    if end:
        out[np.arange(B), lengths] = vocab.eos
    if start:
        out = np.concatenate([np.full((B, 1), vocab.bos), out], axis=1)
    return out


def random_strings(n: int, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return n uniformly random bracket strings of the given length: (n, length) ids."""
    return rng.integers(0, 2 * k, size=(n, length))


def perturb(words: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """Return near-misses: each word with two random brackets swapped (labels: ask `recognise`)."""
    words = np.array(words)
    lengths = (words != DyckVocab(k).pad).sum(axis=1)
    rows = np.arange(len(words))
    i = (rng.random(len(words)) * lengths).astype(np.int64)
    j = (rng.random(len(words)) * lengths).astype(np.int64)
    words[rows, i], words[rows, j] = words[rows, j], words[rows, i].copy()
    return words


# ---------------------------------------------------------------------------------------------------------
# Oracle and recogniser: a stack machine (Dyck) or k counters (Shuffle-Dyck), vectorised over the batch
# ---------------------------------------------------------------------------------------------------------


def valid_next(seqs: np.ndarray, k: int, lang: str = "dyck") -> np.ndarray:
    """Return (B, T, V) booleans: which tokens may follow each prefix `seqs[:, :t+1]` in `lang`.

    `seqs` start with the start token. After a valid prefix every opening bracket may follow; the
    closing bracket of the innermost open bracket (Dyck) or of any type with an open bracket
    (Shuffle-Dyck); the end token when every bracket is closed. After an invalid prefix, the end
    token, or padding, nothing may follow.
    """
    _check_lang(lang)
    vocab = DyckVocab(k)
    seqs = np.asarray(seqs)
    if seqs.ndim != 2 or not (seqs[:, 0] == vocab.bos).all():
        raise ValueError("seqs must be a (batch, time) array whose first column is the start token")
    B, T = seqs.shape
    rows = np.arange(B)
    stack = np.zeros((B, T + 1), dtype=np.int64)
    sp = np.zeros(B, dtype=np.int64)
    counts = np.zeros((B, k), dtype=np.int64)
    ok = np.ones(B, dtype=bool)
    out = np.zeros((B, T, vocab.size), dtype=bool)
    for t in range(T):
        x = seqs[:, t]
        if t > 0:
            is_open, is_close = x < k, (x >= k) & (x < 2 * k)
            ok &= is_open | is_close  # end, start or padding: nothing follows any more
            typ = np.where(is_close, x - k, x)
            if lang == "dyck":
                top = stack[rows, np.maximum(sp - 1, 0)]
                ok &= ~is_close | ((sp > 0) & (top == typ))
                push = ok & is_open
                stack[rows[push], sp[push]] = typ[push]
                sp = sp + push - (ok & is_close)
            else:
                ok &= ~is_close | (counts[rows, np.minimum(typ, k - 1)] > 0)
                delta = np.where(is_open, 1, -1) * ok
                counts[rows[ok], typ[ok]] += delta[ok]
        depth_zero = (sp == 0) if lang == "dyck" else (counts.sum(axis=1) == 0)
        out[:, t, :k] = ok[:, None]
        if lang == "dyck":
            top = stack[rows, np.maximum(sp - 1, 0)]
            can_close = ok & (sp > 0)
            out[rows[can_close], t, k + top[can_close]] = True
        else:
            out[:, t, k : 2 * k] = ok[:, None] & (counts > 0)
        out[:, t, vocab.eos] = ok & depth_zero
    return out


def recognise(words: np.ndarray, k: int, lang: str = "dyck") -> np.ndarray:
    """Return (B,) booleans: is each padded bracket word in `lang` (Dyck_k or Shuffle-Dyck_k)?"""
    vocab = DyckVocab(k)
    words = np.asarray(words)
    if words.ndim != 2:
        raise ValueError(f"words must be a 2-d array (batch, length), got shape {words.shape}")
    seqs = to_sequences(words, k, start=True, end=False)
    mask = valid_next(seqs, k, lang)
    lengths = (words != vocab.pad).sum(axis=1)
    # A word is in the language iff after reading all of it the end token may follow.
    return mask[np.arange(len(words)), lengths, vocab.eos]


# ---------------------------------------------------------------------------------------------------------
# The construction, executed in float64
# ---------------------------------------------------------------------------------------------------------


def causal_attention(scores: Tensor, values: Tensor) -> Tensor:
    """Return softmax-attention outputs sum_j A_ij v_j with A_ij = 0 for j > i: (B, T, m)."""
    if scores.dim() != 3 or scores.shape[1] != scores.shape[2] or values.shape[:2] != scores.shape[:2]:
        raise ValueError(f"scores must be (B, T, T) and values (B, T, m); got {scores.shape}, {values.shape}")
    A = scores.masked_fill(~causal_mask(scores.shape[1], scores.device), float("-inf")).softmax(dim=-1)
    return A @ values


def _bracket_signs(seqs: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Return (s, is_open, type): s_j = +1 for an opening, -1 for a closing bracket, 0 otherwise."""
    is_open = seqs < k
    is_close = (seqs >= k) & (seqs < 2 * k)
    s = is_open.double() - is_close.double()
    typ = torch.where(is_close, seqs - k, torch.where(is_open, seqs, torch.full_like(seqs, -1)))
    return s, is_open, typ


@one_thread
def layer1_uniform(seqs: Tensor, k: int) -> Tensor:
    """Return the first layer's output (B, T, 2) = (1/(i+1), depth_i/(i+1)) for sequences `<s> w`.

    All attention scores are equal, so the causal softmax is uniform over the i + 1 visible tokens.
    The value of the start token is (1, 0) and that of a bracket is (0, +-1). Without a start token
    in the sequence the first coordinate is 0 everywhere: the position signal is gone.
    """
    # [dyck-no-pe-lem-position]: uniform causal attention, the start token's value carries 1/(i+1)
    seqs = torch.as_tensor(seqs)
    s, _, _ = _bracket_signs(seqs, k)
    values = torch.stack([(seqs == DyckVocab(k).bos).double(), s], dim=-1)
    scores = torch.zeros(seqs.shape[0], seqs.shape[1], seqs.shape[1], dtype=torch.float64)
    # a_i = (1/(i+1)) sum_{j<=i} v_j = (1/(i+1), (#open - #close)/(i+1)) = (1/(i+1), depth_i/(i+1))
    return causal_attention(scores, values)


def position_and_depth(seqs, k: int) -> tuple[Tensor, Tensor]:
    """Return (i, depth_i) read from layer 1: i = 1/a_1 - 1 and depth_i = a_2 / a_1, in float64."""
    a = layer1_uniform(seqs, k)
    # i = 1/(1/(i+1)) - 1;  depth_i = (depth_i/(i+1)) / (1/(i+1))
    return 1.0 / a[..., 0] - 1.0, a[..., 1] / a[..., 0]


def true_position_and_depth(seqs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact integer position and depth of every token (reference for the construction)."""
    seqs = np.asarray(seqs)
    s = (seqs < k).astype(np.int64) - ((seqs >= k) & (seqs < 2 * k)).astype(np.int64)
    return np.broadcast_to(np.arange(seqs.shape[1]), seqs.shape), np.cumsum(s, axis=1)


def type_codes(k: int) -> Tensor:
    """Return the (k, m) codes of the k bracket types: +-1 bits, m = max(1, ceil(log2 k)) (O(log k) width)."""
    m = max(1, int(np.ceil(np.log2(k))))
    bits = (np.arange(k)[:, None] >> np.arange(m)[None, :]) & 1
    return torch.as_tensor(2.0 * bits - 1.0, dtype=torch.float64)


def _code_of(typ: Tensor, k: int) -> Tensor:
    """Return the (..., m) code of each token's type, the zero vector for a token without type."""
    return type_codes(k)[typ.clamp_min(0)] * (typ >= 0)[..., None]


def matching_attention(seqs, k: int, after: bool, alpha: float = 60.0) -> Tensor:
    """Return (B, T, m): the code of the innermost open bracket's type (zero vector when none is open).

    `after=False`: the stack top *before* token i (what a closing bracket at i must match);
    `after=True`: the stack top after token i (what the generator may close next). Scores are dot
    products of a query and a key built from layer 1's read-out (depth and position):
    score_ij = -beta (depth_j - D_i)^2 + alpha j - M [x_j is not an opening bracket or the start],
    so the attention picks the latest opening bracket j at depth D_i. The start token is the bottom of
    the stack: depth 0, value the zero vector.
    """
    vocab = DyckVocab(k)
    seqs = torch.as_tensor(np.asarray(seqs))
    T = seqs.shape[1]
    pos, depth = position_and_depth(seqs, k)
    s, is_open, typ = _bracket_signs(seqs, k)
    # D_i = depth_{i-1} = depth_i - s_i (stack top before token i) or D_i = depth_i (after token i)
    D = depth if after else depth - s
    beta = alpha * (T + 2)  # one unit of depth mismatch outweighs any recency bonus alpha * (j - j')
    big = 4.0 * beta * (T + 2) ** 2  # outweighs any depth mismatch
    is_key = is_open | (seqs == vocab.bos)
    one = torch.ones_like(D)
    # q_i = (2 beta D_i, -beta, alpha, -M),  k_j = (depth_j, depth_j^2, j, [x_j not a key])
    query = torch.stack([2 * beta * D, -beta * one, alpha * one, -big * one], dim=-1)
    key = torch.stack([depth, depth**2, pos, (~is_key).double()], dim=-1)
    scores = query @ key.transpose(1, 2)
    values = _code_of(torch.where(is_open, typ, -1), k)
    return causal_attention(scores, values)


def _closing_errors(seqs: Tensor, k: int, alpha: float = 60.0) -> Tensor:
    """Return e_i = 1 where x_i is a closing bracket that does not match the stack top (float64)."""
    s, _, typ = _bracket_signs(seqs, k)
    m = type_codes(k).shape[1]
    expected = matching_attention(seqs, k, after=False, alpha=alpha)
    # codes match iff <code(expected), code(x_i)> = m; an empty stack gives 0
    agree = (expected * _code_of(typ, k)).sum(-1)
    return ((s < 0) & (agree < m - 0.5)).double()


def _any_error(err: Tensor, pos: Tensor) -> Tensor:
    """Return, at each i, whether some e_j = 1 for j <= i: uniform attention, then (i+1) * mean >= 1/2."""
    B, T = err.shape
    # mean_{j<=i} e_j >= 1/(i+1) as soon as one e_j = 1
    err_mean = causal_attention(torch.zeros(B, T, T, dtype=torch.float64), err[..., None])[..., 0]
    return err_mean * (pos + 1.0) >= 0.5


@one_thread
def construction_recognise(seqs, k: int, lang: str = "dyck", alpha: float = 60.0) -> Tensor:
    """Return (B,) booleans: the hand-built model's verdict on `<s> w` (padding after w allowed).

    Dyck_k: layer 1 gives position and depth; layer 2 (`matching_attention`) gives, at each closing
    bracket, the type it must match; e_i = 1 when it does not; layer 3 averages e uniformly. Accept at
    the last token iff no error occurred and the depth is 0. Shuffle-Dyck_k: layer 1 gives the k depths
    depth_{t,i}/(i+1) (one coordinate per type); e_i = 1 when one of them is negative. `alpha` is the
    recency weight of `matching_attention`.
    """
    _check_lang(lang)
    vocab = DyckVocab(k)
    seqs = torch.as_tensor(np.asarray(seqs))
    if seqs.dim() != 2 or not bool((seqs[:, 0] == vocab.bos).all()):
        raise ValueError("seqs must be a (batch, time) array whose first column is the start token")
    B, T = seqs.shape
    if lang == "dyck":
        pos, depth = position_and_depth(seqs, k)
        err = _closing_errors(seqs, k, alpha)
        final_depth = depth
    else:
        s, _, typ = _bracket_signs(seqs, k)
        onehot = torch.nn.functional.one_hot(typ.clamp_min(0), k).double() * (typ >= 0)[..., None]
        values = torch.cat([(seqs == vocab.bos).double()[..., None], onehot * s[..., None]], dim=-1)
        # a_i = (1/(i+1), depth_{1,i}/(i+1), ..., depth_{k,i}/(i+1))
        a = causal_attention(torch.zeros(B, T, T, dtype=torch.float64), values)
        per_type = a[..., 1:] / a[..., :1]
        pos = 1.0 / a[..., 0] - 1.0
        err = (per_type < -0.5).any(-1).double()
        final_depth = per_type.abs().sum(-1)
    last = (seqs != vocab.pad).sum(dim=1) - 1
    rows = torch.arange(B)
    return ~_any_error(err, pos)[rows, last] & (final_depth[rows, last].abs() < 0.5)


@one_thread
def construction_next_tokens(seqs, k: int) -> Tensor:
    """Return (B, T, V) booleans: the hand-built generator's set of valid next tokens for Dyck_k.

    After a valid prefix: every opening bracket; the closing bracket whose code matches the stack top
    read by `matching_attention(after=True)`; the end token when the depth is 0.
    """
    vocab = DyckVocab(k)
    seqs = torch.as_tensor(np.asarray(seqs))
    B, T = seqs.shape
    pos, depth = position_and_depth(seqs, k)
    not_bracket = ((seqs == vocab.eos) | (seqs == vocab.pad)).double()
    ok = ~_any_error(torch.maximum(_closing_errors(seqs, k), not_bracket), pos)
    codes = type_codes(k)
    top = matching_attention(seqs, k, after=True)
    # read-out: closing bracket t is allowed iff <stack top, code_t> = m
    close_ok = top @ codes.T > codes.shape[1] - 0.5
    out = torch.zeros(B, T, vocab.size, dtype=torch.bool)
    out[..., :k] = ok[..., None]
    out[..., k : 2 * k] = ok[..., None] & close_ok
    out[..., vocab.eos] = ok & (depth.abs() < 0.5)
    return out


def _attend_last(scores: Tensor, values: Tensor) -> Tensor:
    """Return the attention output of the last query only, softmax(scores) @ values: (B, m).

    `scores` (B, t+1) are the last query's scores against all t + 1 keys; under the causal mask the last
    position sees every key, so no mask is needed.
    """
    return (scores.softmax(dim=-1)[..., None] * values).sum(dim=-2)


class _IncrementalConstruction:
    """The hand-built generator run one token at a time, with the keys and values of earlier tokens cached.

    Causal attention never changes the outputs at earlier positions when a token is appended, so each
    step only computes the last position's query in each layer: O(t) work at step t, as with a KV cache.
    `push` returns the same next-token set as `construction_next_tokens(...)[:, -1]`.
    """

    def __init__(self, n: int, k: int, max_len: int, alpha: float = 60.0) -> None:
        self.k, self.vocab, self.t = k, DyckVocab(k), 0
        self.alpha = alpha
        self.beta = alpha * (max_len + 2)  # as in `matching_attention`, with the longest length T = max_len
        self.big = 4.0 * self.beta * (max_len + 2) ** 2
        self.codes = type_codes(k)
        m = self.codes.shape[1]
        z = torch.zeros
        self.v1 = z(n, max_len, 2, dtype=torch.float64)  # layer-1 values (1[<s>], s_j)
        self.key = z(n, max_len, 4, dtype=torch.float64)  # layer-2 keys (depth_j, depth_j^2, j, [not a key])
        self.v2 = z(n, max_len, m, dtype=torch.float64)  # layer-2 values: code of an opening bracket
        self.err = z(n, max_len, 1, dtype=torch.float64)  # layer-3 values e_j

    def push(self, tokens) -> Tensor:
        """Append one token per sequence and return (n, V) booleans: the valid next tokens after it."""
        k, vocab, t = self.k, self.vocab, self.t
        x = torch.as_tensor(np.asarray(tokens))[:, None]
        s, is_open, typ = (a[:, 0] for a in _bracket_signs(x, k))
        self.v1[:, t] = torch.stack([(x[:, 0] == vocab.bos).double(), s], dim=-1)
        # layer 1, last position: a_t = (1/(t+1), depth_t/(t+1)) from uniform scores
        a = _attend_last(torch.zeros(len(x), t + 1, dtype=torch.float64), self.v1[:, : t + 1])
        pos, depth = 1.0 / a[:, 0] - 1.0, a[:, 1] / a[:, 0]
        is_key = is_open | (x[:, 0] == vocab.bos)
        self.key[:, t] = torch.stack([depth, depth**2, pos, (~is_key).double()], dim=-1)
        self.v2[:, t] = _code_of(torch.where(is_open, typ, -1), k)
        keys, one = self.key[:, : t + 1], torch.ones_like(depth)

        def stack_top(D: Tensor) -> Tensor:
            # q_t = (2 beta D_t, -beta, alpha, -M): the latest opening bracket at depth D_t
            q = torch.stack([2 * self.beta * D, -self.beta * one, self.alpha * one, -self.big * one], dim=-1)
            return _attend_last((keys @ q[:, :, None])[..., 0], self.v2[:, : t + 1])

        m = self.codes.shape[1]
        # layer 2 before x_t (D_t = depth_t - s_t): a closing bracket must match the stack top
        agree = (stack_top(depth - s) * _code_of(typ, k)).sum(-1)
        not_bracket = (x[:, 0] == vocab.eos) | (x[:, 0] == vocab.pad)
        self.err[:, t, 0] = (((s < 0) & (agree < m - 0.5)) | not_bracket).double()
        # layer 3: uniform attention over e_0..e_t; an error occurred iff (t+1) * mean >= 1/2
        ok = _attend_last(torch.zeros(len(x), t + 1, dtype=torch.float64), self.err[:, : t + 1])[:, 0] * (pos + 1) < 0.5
        # layer 2 after x_t (D_t = depth_t): the one closing bracket that may come next
        close_ok = stack_top(depth) @ self.codes.T > m - 0.5
        out = torch.zeros(len(x), vocab.size, dtype=torch.bool)
        out[:, :k] = ok[:, None]
        out[:, k : 2 * k] = ok[:, None] & close_ok
        out[:, vocab.eos] = ok & (depth.abs() < 0.5)
        self.t += 1
        return out


@one_thread
def construction_generate(n: int, k: int, max_len: int, rng: np.random.Generator, p_end: float = 0.5) -> np.ndarray:
    """Return n sequences `<s> w </s>` sampled with the hand-built generator's next-token sets.

    At each step: if the end token is allowed, take it with probability `p_end`; otherwise open or close
    with probability 1/2 each (when closing is allowed), the open type uniform. Unfinished sequences are
    cut at `max_len` tokens (they end without `</s>`). The next-token set is computed for the last
    position only, with earlier positions' keys and values cached (`_IncrementalConstruction`).
    """
    vocab = DyckVocab(k)
    model = _IncrementalConstruction(n, k, max_len)
    nxt = np.full(n, vocab.bos, dtype=np.int64)
    cols = [nxt]
    done = np.zeros(n, dtype=bool)
    for step in range(max_len - 1):
        allowed = model.push(nxt).numpy()
        u = rng.random((n, 2))
        can_close = allowed[:, k : 2 * k].any(axis=1)
        close_id = k + allowed[:, k : 2 * k].argmax(axis=1)
        open_id = rng.integers(0, k, size=n)
        nxt = np.where(can_close & (u[:, 0] < 0.5), close_id, open_id)
        may_end = allowed[:, vocab.eos] & (step > 0)  # no empty words
        nxt = np.where(may_end & (u[:, 1] < p_end), vocab.eos, nxt)
        nxt = np.where(done, vocab.pad, nxt)
        done |= nxt == vocab.eos
        cols.append(nxt)
        if done.all():
            break
    return np.stack(cols, axis=1)


@one_thread
def stacked_attention_outputs(seqs, vocab_size: int, n_layers: int = 3, seed: int = 0) -> Tensor:
    """Return the last hidden states (B, T, d) of a random no-PE causal transformer, in float64.

    Used to show that without a start token a constant input "((((...(" gives the same state at every
    position, whatever the weights: no layer can tell position i from position i'.
    """
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        vocab_size=vocab_size,
        d_model=16,
        n_layers=n_layers,
        n_heads=2,
        pos_enc="none",
        d_ff=32,
        norm="rms",
        init_std=0.5,
    )
    model = CausalTransformer(cfg).double().eval()
    with torch.no_grad():
        h = model.embed(torch.as_tensor(np.asarray(seqs)).long())
        for block in model.blocks:
            h, _ = block(h)
    return h


# ---------------------------------------------------------------------------------------------------------
# Training and evaluation: the length-generalisation experiment
# ---------------------------------------------------------------------------------------------------------


ARMS: dict[str, tuple[str, bool]] = {
    "none": ("none", True),
    "nostart": ("none", False),
    "learned": ("learned", True),
    "sinusoidal": ("sinusoidal", True),
    "rope": ("rope", True),
}
"""The arms of the length experiment: name -> (positional encoding, whether inputs begin with `<s>`).

"none" is the paper's setting (no positional encoding, a start token); "nostart" is its ablation (no
positional encoding and no start token), the setting in which the lemma loses the position coordinate.
"""


@dataclass(frozen=True)
class LengthGenConfig(Config):
    """Sizes of the length-generalisation experiment. Explained in chapter dyck-no-pe."""

    k: int = 2
    lang: str = "dyck"
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    norm: str = "layer"
    steps: int = 500
    batch: int = 64
    lr: float = 1e-3
    train_pairs: tuple[int, int] = (1, 20)
    test_max_pairs: int = 100
    bin_width: int = 10
    n_eval: int = 96  # words per length bin
    arms: tuple[str, ...] = ("none", "nostart", "learned", "sinusoidal")  # keys of ARMS
    n_seeds: int = 1
    extra: tuple[tuple[str, int], ...] = ()  # further (language, k) settings, one seed each

    PRESETS = {
        "quick": {},
        "full": {
            "d_model": 64,
            "n_layers": 4,
            "n_heads": 4,
            "d_ff": 256,
            "steps": 2000,
            "batch": 128,
            "n_eval": 256,
            "arms": ("none", "nostart", "learned", "sinusoidal", "rope"),
            "n_seeds": 3,
            "extra": (("dyck", 4), ("dyck", 8), ("shuffle", 2)),
        },
    }

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arms {unknown}; choose from {tuple(ARMS)}")

    def model_config(self, arm: str) -> TransformerConfig:
        """Return the transformer config of one arm (the start token is always in the vocabulary)."""
        return TransformerConfig(
            vocab_size=DyckVocab(self.k).size,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            max_len=2 * self.test_max_pairs + 2,
            pos_enc=ARMS[arm][0],
            d_ff=self.d_ff,
            norm=self.norm,
        )

    def bins(self) -> list[tuple[int, int]]:
        """Return the test bins of pair counts: the training range, then bins of `bin_width` up to the max."""
        lo, hi = self.train_pairs
        edges = list(range(hi + 1, self.test_max_pairs + 1, self.bin_width))
        return [(lo, hi)] + [(a, min(a + self.bin_width - 1, self.test_max_pairs)) for a in edges]


def lm_batch(seqs: np.ndarray, k: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Return (inputs, targets, mask) for next-token training on `<s> w </s>` sequences."""
    seqs = torch.as_tensor(np.asarray(seqs), dtype=torch.long, device=device)
    x, y = seqs[:, :-1], seqs[:, 1:]
    return x, y, y != DyckVocab(k).pad


@one_thread
def train_dyck_model(
    cfg: LengthGenConfig,
    arm: str,
    seed: int,
    device: torch.device | str = "cpu",
    desc: str = "",
    start: bool | None = None,
) -> tuple[CausalTransformer, list[float]]:
    """Return (trained model, losses): next-token training of one arm on words with `cfg.train_pairs` pairs.

    The arm's inputs are `<s> w </s>`, or `w </s>` for an arm without the start token ("nostart").
    `start=False` is the knock-out of the start token for any arm (None: the arm's own setting).
    """
    torch.manual_seed(seed)
    model = CausalTransformer(cfg.model_config(arm)).to(device)
    rng = np.random.default_rng(seed)
    lo, hi = cfg.train_pairs
    start = ARMS[arm][1] if start is None else start

    def batches(step: int) -> tuple[Tensor, Tensor, Tensor]:
        words = sample_words(cfg.lang, rng.integers(lo, hi + 1, size=cfg.batch), cfg.k, rng)
        return lm_batch(to_sequences(words, cfg.k, start=start), cfg.k, device)

    losses = train_lm(model, batches, cfg.steps, lr=cfg.lr, desc=desc or f"train {arm}")
    return model, losses


@torch.no_grad()
def closing_accuracy(
    model: CausalTransformer, seqs: np.ndarray, k: int, lang: str = "dyck", chunk: int = 128, start: bool = True
) -> tuple[int, int]:
    """Return (correct, total) over positions whose next token is a closing bracket.

    Correct means: the closing bracket with the model's highest logit is a valid next token (the
    oracle's verdict). For Dyck_k exactly one closing bracket is valid, so this asks whether the model
    knows *which* bracket closes; whether one closes there at all is a free choice of the word.
    `seqs` are `<s> w </s>`; with `start=False` the model reads them without their first token, and the
    targets are the same (the first bracket, the only target lost, is never a closing one).
    """
    device = next(model.parameters()).device
    allowed = torch.as_tensor(valid_next(seqs, k, lang)[:, :-1], device=device)
    drop = 0 if start else 1
    correct = total = 0
    for a in range(0, len(seqs), chunk):
        x, y, _ = lm_batch(seqs[a : a + chunk, drop:], k, device)
        closing = (y >= k) & (y < 2 * k)
        pred = model(x)[..., k : 2 * k].argmax(-1, keepdim=True) + k
        ok = allowed[a : a + chunk, drop:].gather(-1, pred)[..., 0]
        correct += int(ok[closing].sum())
        total += int(closing.sum())
    return correct, total


@one_thread
def accuracy_by_length(model: CausalTransformer, cfg: LengthGenConfig, seed: int, start: bool = True) -> np.ndarray:
    """Return the closing-bracket accuracy in each bin of `cfg.bins()` (test words drawn from `seed`).

    Every arm is tested on the same words; `start=False` feeds them without the start token.
    """
    rng = np.random.default_rng(10_000 + seed)
    accs = []
    for lo, hi in cfg.bins():
        words = sample_words(cfg.lang, rng.integers(lo, hi + 1, size=cfg.n_eval), cfg.k, rng)
        c, t = closing_accuracy(model, to_sequences(words, cfg.k), cfg.k, cfg.lang, start=start)
        accs.append(c / max(t, 1))
    return np.array(accs)


def length_generalisation(cfg: LengthGenConfig, seeds, device: torch.device | str = "cpu") -> dict:
    """Return {"acc": {arm: (n_seeds, n_bins) list}, "state": {arm: weights of the first seed}, "loss": ...}.

    Only numbers, lists and tensors, so that `lib.cache.cached` can store it; `load_model` rebuilds a model.
    """
    out: dict = {"acc": {}, "state": {}, "loss": {}}
    for arm in cfg.arms:
        rows = []
        for seed in seeds:
            model, losses = train_dyck_model(cfg, arm, seed, device, desc=f"{arm}, seed {seed}")
            rows.append(accuracy_by_length(model, cfg, seed, start=ARMS[arm][1]).tolist())
            if arm not in out["state"]:
                out["state"][arm] = {n: t.detach().cpu() for n, t in model.state_dict().items()}
                out["loss"][arm] = losses
        out["acc"][arm] = rows
    return out


def load_model(cfg: LengthGenConfig, arm: str, state: dict, device: torch.device | str = "cpu") -> CausalTransformer:
    """Return the model of `cfg` for one arm with the given weights, in eval mode."""
    model = CausalTransformer(cfg.model_config(arm))
    model.load_state_dict(state)
    return model.to(device).eval()


@one_thread
@torch.no_grad()
def close_probability_after_run(model: CausalTransformer, k: int, n: int, start: bool = True) -> np.ndarray:
    """Return the model's P(next token closes) after each prefix `(^i`, i = 1..n (opening brackets of type 0).

    Computed in float64 on a CPU copy of the model, in one forward pass over `<s> (^n` (or `(^n` with
    `start=False`): the causal mask makes the output at the i-th bracket the prediction after `(^i`.
    Without the start token these inputs are the constant word of the chapter's proposition, so every i
    gets the same prediction, whatever the weights.
    """
    vocab = DyckVocab(k)
    model64 = copy.deepcopy(model).double().cpu().eval()  # float64, so that "equal" means equal to 1e-15
    seq = torch.zeros(1, n, dtype=torch.long)
    if start:
        seq = torch.cat([torch.full((1, 1), vocab.bos, dtype=torch.long), seq], dim=1)
    probs = model64(seq)[0, -n:].softmax(-1)
    return probs[:, k : 2 * k].sum(-1).numpy()


def bayes_close_after_run(train_pairs: tuple[int, int], n: int) -> np.ndarray:
    """Return the training distribution's P(next token closes | prefix of i opening brackets), i = 1..n.

    Words have N pairs, N uniform on `train_pairs`, and are uniform among Dyck words with N pairs; the
    types of the brackets do not change the shape of the path, so only the count of Dyck paths matters.
    Counted exactly with Python integers: ways(t, h) Dyck-path completions of length 2N - t from height h.
    Where no training word starts with i opening brackets, the value is NaN.
    """
    lo, hi = train_pairs
    up = np.zeros(n)  # weight of words starting with i + 1 opening brackets
    total = np.zeros(n)  # weight of words starting with i opening brackets
    for N in range(lo, hi + 1):
        L = 2 * N
        # ways[h] = number of paths of the remaining steps from height h to 0 that stay >= 0
        ways = [1] + [0] * (L + 1)
        by_step = [None] * (L + 1)
        by_step[L] = ways
        for t in range(L - 1, -1, -1):
            nxt = by_step[t + 1]
            by_step[t] = [(nxt[h + 1] if h + 1 <= L else 0) + (nxt[h - 1] if h >= 1 else 0) for h in range(L + 1)]
        catalan = by_step[0][0]
        for i in range(1, n + 1):
            if i <= N:
                # (^i has weight ways(i, i) / C_N; (^{i+1} has weight ways(i + 1, i + 1) / C_N
                total[i - 1] += by_step[i][i] / catalan
                up[i - 1] += (by_step[i + 1][i + 1] if i + 1 <= N else 0) / catalan
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - up / total, np.nan)


def blind_error(target: np.ndarray) -> float:
    """Return min over constants c of mean_i |c - target_i|: the error of the best prediction blind to i.

    A model that cannot tell the positions of a constant input apart (no start token, no positional encoding)
    predicts one value after every run `(^i`; no constant does better than the median, which this returns the
    error of. NaN entries of `target` (runs that never occur in training) are left out.
    """
    t = np.asarray(target, dtype=np.float64)
    t = t[~np.isnan(t)]
    if t.size == 0:
        raise ValueError("target has no finite entry")
    return float(np.abs(t - np.median(t)).mean())


def bin_mean(acc: np.ndarray, bins: list[tuple[int, int]], lo: int, hi: int) -> np.ndarray:
    """Return the mean accuracy over the bins inside [lo, hi] pairs (one value per seed)."""
    sel = [i for i, (a, b) in enumerate(bins) if a >= lo and b <= hi]
    if not sel:
        raise ValueError(f"no bin lies inside [{lo}, {hi}]; bins are {bins}")
    return np.atleast_2d(acc)[:, sel].mean(axis=1)


# ---------------------------------------------------------------------------------------------------------
# Generation from a trained model
# ---------------------------------------------------------------------------------------------------------


@one_thread
@torch.no_grad()
def sample_model(
    model: CausalTransformer, k: int, n: int, max_len: int, seed: int = 0, temperature: float = 1.0
) -> np.ndarray:
    """Return n sequences sampled from the model, starting from `<s>`, cut at `max_len` tokens."""
    vocab = DyckVocab(k)
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    seqs = torch.full((n, 1), vocab.bos, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(max_len - 1):
        logits = model(seqs)[:, -1, : vocab.eos + 1].double().cpu() / temperature  # brackets and </s> only
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0].to(device)
        nxt = torch.where(done, torch.full_like(nxt, vocab.pad), nxt)
        done |= nxt == vocab.eos
        seqs = torch.cat([seqs, nxt[:, None]], dim=1)
        if bool(done.all()):
            break
    return seqs.cpu().numpy()


def valid_fraction_by_length(seqs: np.ndarray, k: int, edges, lang: str = "dyck") -> tuple[np.ndarray, np.ndarray]:
    """Return (fraction valid, count) of finished samples in each length bin [edges[i], edges[i+1]).

    Length is the number of brackets; a sample is valid when `<s> w </s>` is a word of `lang` followed
    by the end token; samples without an end token are left out.
    """
    vocab = DyckVocab(k)
    seqs = np.asarray(seqs)
    finished = (seqs == vocab.eos).any(axis=1)
    end = np.where(finished, (seqs == vocab.eos).argmax(axis=1), seqs.shape[1])
    body = np.where(np.arange(seqs.shape[1])[None, :] < end[:, None], seqs, vocab.pad)[:, 1:]
    valid = recognise(body, k, lang) & finished
    length = end - 1
    edges = np.asarray(edges)
    which = np.digitize(length, edges) - 1
    frac, count = [], []
    for b in range(len(edges) - 1):
        sel = finished & (which == b)
        count.append(int(sel.sum()))
        frac.append(float(valid[sel].mean()) if sel.any() else float("nan"))
    return np.array(frac), np.array(count)


@dataclass(frozen=True)
class ConstructionConfig(Config):
    """Sizes of the construction experiment. Explained in chapter dyck-no-pe."""

    k: int = 2
    max_pairs: int = 300  # longest test words: 600 brackets
    n_words: int = 64
    n_random: int = 2000
    random_len: int = 12

    PRESETS = {
        # full: words of 1000 brackets; the (B, T, T) float64 attention of 64 such words takes about 0.5 GB
        "quick": {},
        "full": {"max_pairs": 500, "n_random": 20000, "random_len": 16},
    }


@dataclass(frozen=True)
class GenerationConfig(Config):
    """Sizes of the generation experiment. Explained in chapter dyck-no-pe."""

    n_samples: int = 512
    max_len: int = 82  # <s> and up to 80 brackets and </s>: twice the longest training word
    bin_width: int = 10

    PRESETS = {"quick": {}, "full": {"n_samples": 4096, "max_len": 202}}


# ---------------------------------------------------------------------------------------------------------
# Figures (drawn with lib.plotting's vocabulary; each returns its figure)
# ---------------------------------------------------------------------------------------------------------

ARM_LABELS: dict[str, str] = {
    "none": "no PE",
    "nostart": r"no PE, no $\langle s\rangle$",
    "learned": "learned PE",
    "sinusoidal": "sinusoidal PE",
    "rope": "RoPE",
}
"""How the figures name the arms of `ARMS` (matplotlib mathtext)."""

ARM_STYLE: dict[str, dict] = {
    "none": dict(color=plotting.PALETTE[0], ls="-", marker="o"),
    "nostart": dict(color=plotting.PALETTE[0], ls="--", marker="o", mfc="white"),
    "learned": dict(color=plotting.PALETTE[1], ls="-", marker="s"),
    "sinusoidal": dict(color=plotting.PALETTE[2], ls="-", marker="^"),
    "rope": dict(color=plotting.PALETTE[3], ls="-", marker="D"),
}
"""Line style of each arm: the two arms without PE share a colour, the ablation is dashed."""


def plot_layer1(layer1, pos, depth, true_pos, true_depth):
    """Draw the construction's layer-1 outputs, the depth read out from them, and the largest error per position."""
    fig, axes = plotting.subplots(1, 3, figsize=(11.0, 3.4))
    i = np.arange(layer1.shape[1])
    axes[0].plot(i[1:], layer1[0, 1:, 0], label=r"$1/(i+1)$")
    axes[0].plot(i[1:], layer1[0, 1:, 1], label=r"depth$_i/(i+1)$")
    plotting.label(axes[0], x="position $i$ (log scale)", y="attention output", title="layer-1 outputs", xscale="log")
    axes[0].legend()
    axes[1].plot(i, true_depth[0], color=plotting.PALETTE[2], lw=3, alpha=0.5, label="true depth")
    axes[1].plot(i, depth[0], color="k", lw=0.8, label="read out")
    plotting.label(axes[1], x="position $i$", y="depth", title="depth recovered")
    axes[1].legend()
    axes[2].semilogy(i[1:], np.abs(pos - true_pos).max(0)[1:] + 1e-18, label="position")
    axes[2].semilogy(i[1:], np.abs(depth - true_depth).max(0)[1:] + 1e-18, label="depth")
    plotting.reference(axes[2], 1e-9, label="tolerance $10^{-9}$", color="grey")
    plotting.label(axes[2], x="position $i$", y="largest absolute error", ylim=(1e-18, 1e-2), title="largest error")
    axes[2].legend(loc="upper right")
    return fig


def plot_no_start(h_with, h_without):
    """Draw one hidden coordinate against the position for random networks, with and without the start token."""
    fig, axes = plotting.subplots(1, 2, sharey=True)
    for s, (with_start, without_start) in enumerate(zip(h_with, h_without)):
        name = f"{len(h_with)} random networks" if s == 0 else None
        positions = np.arange(1, len(with_start) + 1)
        axes[0].plot(positions, with_start[:, 0], color=plotting.PALETTE[0], alpha=0.8, label=name)
        axes[1].plot(positions, without_start[:, 0], color=plotting.PALETTE[1], alpha=0.8, label=name)
    plotting.label(axes[0], x="position $i$", y="hidden coordinate 1", title=r"with $\langle s\rangle$", legend=True)
    plotting.label(axes[1], x="position $i$", y="hidden coordinate 1", title=r"without $\langle s\rangle$", legend=True)
    axes[1].yaxis.set_tick_params(labelleft=True)
    return fig


def plot_length_generalisation(acc: dict, cfg: LengthGenConfig):
    """Draw closing-bracket accuracy against word length per arm: mean over seeds, bars from min to max."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.4, 3.8))
    centres = np.array([(a + b) / 2 for a, b in cfg.bins()])
    ax.axvspan(*cfg.train_pairs, color="grey", alpha=0.15, label="training lengths")
    for arm in cfg.arms:
        mean = acc[arm].mean(0)
        err = [mean - acc[arm].min(0), acc[arm].max(0) - mean]
        ax.errorbar(centres, mean, yerr=err, ms=4, capsize=2, label=ARM_LABELS[arm], **ARM_STYLE[arm])
    plotting.reference(ax, 1 / cfg.k, label=f"chance (1/{cfg.k})", color="grey", ls=":")
    n_seeds = len(acc[cfg.arms[0]])
    plotting.label(
        ax,
        x="number of bracket pairs",
        y="closing-bracket accuracy",
        title=f"Dyck$_{cfg.k}$, {n_seeds} seed(s)",
        legend=True,
    )
    return fig


def plot_close_after_run(bayes, p_close: dict):
    """Draw P(next token closes) after a run of i opening brackets: the exact curve and each trained model's."""
    fig, ax = plotting.subplots(1, 1, figsize=(6.4, 3.6))
    i_run = np.arange(1, len(bayes) + 1)
    ax.plot(i_run, bayes, color="k", lw=2, label="training distribution (exact)")
    for arm, p in p_close.items():
        ax.plot(i_run, p, label=ARM_LABELS[arm], **ARM_STYLE[arm])
    plotting.label(
        ax,
        x="length $i$ of the run $(^i$",
        y="P(next token closes)",
        ylim=(0, 1.05),
        title="after a run of opening brackets",
        legend=True,
    )
    return fig


def plot_generation(frac, count, edges, train_pairs: tuple[int, int]):
    """Draw the fraction of valid sampled words by length (left) and the number of samples per length bin (right)."""
    fig, axes = plotting.subplots(1, 2)
    edges = np.asarray(edges)
    mid = (edges[:-1] + edges[1:]) / 2
    for ax in axes:
        ax.axvspan(2, 2 * train_pairs[1], color="grey", alpha=0.15, label="training lengths")
    axes[0].plot(mid[count > 0], frac[count > 0], marker="o", label="no PE samples")
    plotting.label(axes[0], x="length of sampled word (brackets)", y="fraction valid", ylim=(0, 1.02), legend=True)
    axes[1].bar(mid, count, width=(edges[1] - edges[0]) * 0.9, label="no PE samples")
    plotting.label(axes[1], x="length of sampled word (brackets)", y="samples", legend=True)
    return fig
