"""Tests of the looped transformer and its tasks (lib/looped.py), against independent references."""

import heapq
import itertools

import pytest
import torch

from lib import looped as lt
from lib.transformer import Block, TransformerConfig


def block_cfg(**kw) -> TransformerConfig:
    base = dict(vocab_size=7, d_model=8, n_heads=2, max_len=6, d_ff=12, norm="rms", init_std=0.3)
    return TransformerConfig(**{**base, **kw})


def model(modulation="none", injection=False, loops=3, n_out=None, **kw) -> lt.LoopedTransformer:
    torch.manual_seed(0)
    cfg = lt.LoopedConfig(block_cfg(**kw), n_out=n_out, modulation=modulation, injection=injection, loops=loops)
    return lt.LoopedTransformer(cfg).double()


def randomise_modulation(m: lt.LoopedTransformer) -> None:
    with torch.no_grad():
        for p in m.modulation.parameters():
            p.normal_(0, 0.3)


# ------------------------------------------------------------------ architecture


@pytest.mark.parametrize("pos_enc", ["learned", "sinusoidal", "none"])
@pytest.mark.parametrize("injection", [False, True])
def test_one_loop_equals_one_block_of_the_shared_transformer(pos_enc, injection):
    m = model(pos_enc=pos_enc, injection=injection)
    deep = lt.unroll(model(pos_enc=pos_enc), 1)  # r = 1: one layer of CausalTransformer, same weights
    idx = torch.randint(0, 7, (5, 6))
    assert torch.allclose(m(idx, r=1), deep(idx), atol=1e-12, rtol=0)


@pytest.mark.parametrize("r", [2, 3, 5])
def test_r_loops_equal_r_identical_layers(r):
    m = model()
    idx = torch.randint(0, 7, (4, 6))
    assert torch.allclose(m(idx, r=r), lt.unroll(m, r)(idx), atol=1e-12, rtol=0)


def test_injection_adds_the_embedding_before_every_loop():
    m = model(injection=True)
    idx = torch.randint(0, 7, (3, 6))
    x = m.embed(idx)
    h = torch.zeros_like(x)
    for _ in range(3):
        h = m.block(h + x)[0]
    assert torch.allclose(m.hidden(idx, 3), h, atol=1e-12, rtol=0)
    assert not torch.allclose(m(idx, 3), model(injection=False)(idx, 3))


def test_parameter_count_does_not_depend_on_r_and_weights_are_one_set():
    m = model()
    one_block = sum(p.numel() for p in Block(block_cfg()).parameters())
    rest = 7 * 8 + 6 * 8 + 8 + 7 * 8  # W_E, learned P, final RMSNorm gain, W_U
    assert m.n_params() == one_block + rest
    idx = torch.randint(0, 7, (2, 6))
    m(idx, r=1)
    m(idx, r=9)
    assert m.n_params() == one_block + rest


def test_gradients_of_the_shared_block_accumulate_over_loops():
    m = model()
    idx = torch.randint(0, 7, (4, 6))
    m(idx, r=3).pow(2).sum().backward()
    deep = lt.unroll(model(), 3)  # three separate copies of the same weights
    deep(idx).pow(2).sum().backward()
    for name, p in m.block.named_parameters():
        summed = sum(dict(b.named_parameters())[name].grad for b in deep.blocks)
        assert torch.allclose(p.grad, summed, atol=1e-10, rtol=1e-8), name
        per_layer = dict(deep.blocks[0].named_parameters())[name].grad
        assert not torch.allclose(p.grad, per_layer)  # a single loop's gradient is not the total


@pytest.mark.parametrize("modulation", lt.MODULATIONS)
def test_causal_outputs_never_depend_on_later_tokens(modulation):
    m = model(modulation, loops=4)
    if m.modulation is not None:
        randomise_modulation(m)
    idx = torch.randint(0, 7, (3, 6))
    for t in range(5):
        changed = idx.clone()
        changed[:, t + 1 :] = (idx[:, t + 1 :] + 1) % 7
        out, out2 = m(idx), m(changed)
        assert torch.allclose(out[:, : t + 1], out2[:, : t + 1], atol=1e-12, rtol=0)
        assert not torch.allclose(out[:, t + 1 :], out2[:, t + 1 :])


@pytest.mark.parametrize("modulation", ["gains", "timestep"])
@pytest.mark.parametrize("injection", [False, True])
def test_zero_initialised_modulation_equals_the_plain_looped_model_exactly(modulation, injection):
    plain = model("none", injection)
    mod = model(modulation, injection)
    mod.load_state_dict(plain.state_dict(), strict=False)  # same shared weights, modulation at init
    idx = torch.randint(0, 7, (4, 6))
    for r in (1, 4, 7):
        assert torch.equal(mod(idx, r), plain(idx, r))


def test_trained_modulation_depends_on_the_loop_and_changes_the_function():
    m = model("timestep")
    randomise_modulation(m)
    assert not torch.allclose(m.modulation(0)[2], m.modulation(1)[2])
    idx = torch.randint(0, 7, (4, 6))
    assert not torch.allclose(m(idx, 3), model("none")(idx, 3))
    # beyond the precomputed table the sinusoid is computed on the fly and agrees with it
    table = m.modulation.pe
    far = lt.TimestepModulation(8, 32, 100)
    assert torch.allclose(far.pe[: table.shape[0]].double(), table.double())


def test_modulated_step_applies_shift_scale_and_gate_to_each_sublayer():
    m = model("timestep")
    randomise_modulation(m)
    h = torch.randn(2, 6, 8, dtype=torch.float64)
    b1, g1, a1, b2, g2, a2 = m.modulation(2)
    blk = m.block
    ref = h + (1 + a1) * blk.attn(blk.norm_attn(h) * (1 + g1) + b1)[0]
    ref = ref + (1 + a2) * blk.mlp(blk.norm_mlp(ref) * (1 + g2) + b2)
    assert torch.allclose(m.step(h, 2), ref, atol=1e-12, rtol=0)


def test_matched_d_ff_matches_the_timestep_parameter_count():
    cfg = lt.MemoriseConfig()
    target = lt.LoopedTransformer(cfg.looped("timestep")).n_params()
    wide = lt.LoopedTransformer(cfg.looped("none", lt.matched_d_ff(cfg.looped(), target))).n_params()
    assert abs(wide - target) <= 2 * cfg.d


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        lt.LoopedConfig(block_cfg(), modulation="film")
    with pytest.raises(ValueError):
        model()(torch.zeros(1, 3, dtype=torch.long), r=0)


# ------------------------------------------------------------------ tasks


def brute_force_edit_distance(a: tuple, b: tuple, alphabet: int, indel: int, sub: int) -> int:
    """Dijkstra over all strings of bounded length, moving by single insertions, deletions, substitutions."""
    limit = len(a) + len(b)
    dist, heap = {a: 0}, [(0, a)]
    while heap:
        d, s = heapq.heappop(heap)
        if s == b:
            return d
        if d > dist.get(s, float("inf")):
            continue
        moves = [(s[:i] + s[i + 1 :], indel) for i in range(len(s))]
        if len(s) < limit:
            moves += [(s[:i] + (c,) + s[i:], indel) for i in range(len(s) + 1) for c in range(alphabet)]
        moves += [(s[:i] + (c,) + s[i + 1 :], sub) for i in range(len(s)) for c in range(alphabet) if c != s[i]]
        for t, w in moves:
            if d + w < dist.get(t, float("inf")):
                dist[t] = d + w
                heapq.heappush(heap, (d + w, t))
    raise AssertionError("unreachable")


def brute_force_lcs(a: tuple, b: tuple) -> int:
    """Longest subsequence of a (all 2^n of them) that is also a subsequence of b."""

    def is_subsequence(s, t):
        it = iter(t)
        return all(c in it for c in s)

    return max(k for k in range(len(a) + 1) for sub in itertools.combinations(a, k) if is_subsequence(sub, b))


@pytest.mark.parametrize("costs", [(1, 1), (2, 3), (1, 3)])
def test_edit_distance_dp_equals_brute_force_on_all_tiny_strings(costs):
    pairs = [
        (a, b)
        for n in (0, 1, 2, 3)
        for a in itertools.product(range(2), repeat=n)
        for b in itertools.product(range(2), repeat=3)
    ]
    for n in (0, 1, 2, 3):
        group = [(a, b) for a, b in pairs if len(a) == n]
        A = torch.tensor([a for a, _ in group], dtype=torch.long).reshape(len(group), n)
        B = torch.tensor([b for _, b in group], dtype=torch.long)
        got = lt.edit_distance(A, B, *costs)
        want = [brute_force_edit_distance(a, b, 2, *costs) for a, b in group]
        assert got.tolist() == want, (n, costs)


def test_lcs_dp_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    A = torch.randint(0, 3, (60, 5), generator=gen)
    B = torch.randint(0, 3, (60, 4), generator=gen)
    want = [brute_force_lcs(tuple(a.tolist()), tuple(b.tolist())) for a, b in zip(A, B)]
    assert lt.lcs_length(A, B).tolist() == want


def test_edit_distance_task_format_and_label_range():
    X, y = lt.edit_distance_task(50, 4, 3, torch.Generator().manual_seed(1))
    assert X.shape == (50, 10) and (X[:, 4] == 3).all() and (X[:, 9] == 3).all()
    assert torch.equal(y, lt.edit_distance(X[:, :4], X[:, 5:9], 2, 3))
    assert int(y.min()) >= 0 and int(y.max()) <= lt.EditConfig(n=4).n_classes - 1


def test_memorisation_set_has_distinct_sequences_and_valid_labels():
    X, y = lt.memorisation_set(500, 3, 8, 5, torch.Generator().manual_seed(0))
    assert X.shape == (500, 3) and len({tuple(r) for r in X.tolist()}) == 500
    assert int(X.max()) < 8 and int(y.max()) < 5 and int(y.min()) >= 0
    with pytest.raises(ValueError):
        lt.memorisation_set(10, 1, 3, 2, torch.Generator())


def test_sine_moduli_bound_the_measured_variation():
    gen = torch.Generator().manual_seed(0)
    N, k, delta = 4, 2.0, 0.05
    X = torch.rand(2000, N, generator=gen, dtype=torch.float64)
    Y = X.clone()
    Y[:, 0] += delta  # perturb token 0 only: token modulus bounds the change of f_0
    tok = (lt.sine_target(Y, k)[:, 0] - lt.sine_target(X, k)[:, 0]).abs().max()
    Z = X.clone()
    Z[:, 1:] += delta / (N - 1) ** 0.5  # perturb the context by delta in norm, token 0 fixed
    cont = (lt.sine_target(Z, k)[:, 0] - lt.sine_target(X, k)[:, 0]).abs().max()
    m = lt.sine_moduli(k, N, delta)
    assert tok <= m["token"] + 1e-12 and tok >= 0.8 * m["token"]
    assert cont <= m["contextual"] + 1e-12 and cont >= 0.8 * m["contextual"]


def test_theorem_delta_shrinks_with_r_and_is_undefined_below_N():
    d = lt.theorem_delta(torch.tensor([3, 5, 10, 100]), N=4, d=1)
    assert torch.isinf(d[0]) and (d[1:].diff() < 0).all()
    assert torch.isclose(d[1], torch.tensor(0.5, dtype=torch.float64) ** (-1 / 6))
