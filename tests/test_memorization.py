"""Tests of lib.memorization against independent references (brute force, exact rationals, closed forms)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from lib import memorization as mz


def small(N=40, n=5, vocab=16, C=3, task="next-token", seed=0, d=4, R=16, M=2**20):
    data = mz.random_dataset(N, n, vocab, C, task, seed)
    X = mz.token_vectors(vocab, d, R, seed)
    u = mz.projection(d, M, seed)
    return data, X, u


def test_dataset_sequences_are_distinct_multisets_and_seq2seq_labels_consistent():
    data = mz.random_dataset(60, 4, 8, 2, "seq2seq", 1)
    keys = {tuple(sorted(r)) for r in data.tokens.tolist()}
    assert len(keys) == 60
    for row, lab in zip(data.tokens.tolist(), data.labels.tolist(), strict=True):
        for a, b in itertools.combinations(range(4), 2):
            if row[a] == row[b]:
                assert lab[a] == lab[b]
    with pytest.raises(ValueError):
        mz.random_dataset(10, 2, 2, 2, "next-token", 0)  # only 3 multisets exist


def test_separation_matches_brute_force():
    data, X, _ = small()
    r, delta = mz.separation(X, data.tokens)
    used = sorted(set(data.tokens.ravel().tolist()))
    norms = [math.sqrt(sum(int(v) ** 2 for v in X[i])) for i in used]
    dists = [
        math.sqrt(sum((int(a) - int(b)) ** 2 for a, b in zip(X[i], X[j], strict=True)))
        for i, j in itertools.combinations(used, 2)
    ]
    assert r == pytest.approx(max(norms), rel=1e-12)
    assert delta == pytest.approx(min(dists), rel=1e-12)
    assert delta >= 1  # distinct integer vectors


def test_context_ids_are_n_times_the_uniform_attention_output():
    data, X, u = small(N=12)
    ids = mz.context_ids(data.tokens, X, u)
    for row, i in zip(data.tokens.tolist(), ids.tolist(), strict=True):
        # exact rational attention: weights 1/n each, value u^T x_t
        mean = sum(Fraction(int(X[t] @ u), len(row)) for t in row)
        assert mean * len(row) == i
    # the same through softmax of equal scores (the attention layer with W_Q = W_K = 0)
    q = (X.double() @ u.double())[data.tokens]  # (N, n)
    A = torch.zeros(q.shape, dtype=torch.float64).softmax(-1)
    assert torch.allclose((A * q).sum(1) * data.n, ids.double())


def test_ids_pairwise_distinct_with_the_printed_minimum_gap():
    data, X, u = small(N=50)
    ids = mz.context_ids(data.tokens, X, u).tolist()
    brute = min(abs(a - b) for a, b in itertools.combinations(ids, 2))
    gap = mz.min_gap(ids)
    print(f"minimum id gap {gap}")
    assert gap == brute > 0
    assert mz.min_gap([3, 7, 3]) == 0


def test_ablation_without_attention_collides():
    data, X, u = small(N=50, vocab=16)
    last = mz.context_ids(data.tokens, X, u, mode="last")
    assert len(set(last.tolist())) <= 16 < 50  # pigeonhole: ids of the last token alone
    assert mz.min_gap(last) == 0


@pytest.mark.parametrize("C,blocks", [(2, None), (3, None), (5, 3), (2, 40)])
def test_bit_extraction_memorizes_every_label_exactly(C, blocks):
    data, X, u = small(N=40, C=C)
    ids = mz.context_ids(data.tokens, X, u)
    net, p = mz.bit_extraction_memorizer(ids.tolist(), data.labels.tolist(), C, blocks)
    assert net(ids.tolist()) == data.labels.tolist()
    assert net.n_params() == mz.bit_extraction_param_count(p)
    assert net.width() <= max(6, 2 * p.m - 1)
    # the big weights hold a whole block: s (rho + b) bits (+1 for a sign)
    assert p.word_bits - 1 <= net.max_bits() <= p.word_bits + 2


def test_seq2seq_construction_memorizes_every_token_label():
    data, X, u = small(N=25, n=4, C=2, task="seq2seq")
    ids = mz.token_ids(data.tokens, X, u)
    keys, labels = mz.unique_pairs(ids, data.labels)
    net, _ = mz.bit_extraction_memorizer(keys, labels, 2)
    out = net(ids.ravel().tolist())
    assert out == data.labels.ravel().tolist()
    with pytest.raises(ValueError):
        mz.unique_pairs(torch.tensor([1, 1]), torch.tensor([0, 1]))


def test_param_count_formula_equals_counted_parameters_on_many_plans():
    rng = np.random.default_rng(0)
    for N in (2, 3, 7, 16, 33):
        ids = sorted(rng.choice(10_000, size=N, replace=False).tolist())
        labels = rng.integers(0, 4, size=N).tolist()
        for blocks in (None, 1, N):
            net, p = mz.bit_extraction_memorizer(ids, labels, 4, blocks)
            assert net.n_params() == mz.bit_extraction_param_count(p), (N, blocks)
            assert net(ids) == labels


def test_lookup_memorizer_and_its_count():
    ids, labels = [0, 5, 6, 100], [1, 0, 2, 1]
    net = mz.lookup_memorizer(ids, labels)
    assert net(ids) == labels
    assert net.n_params() == 9 * len(ids) + 1
    assert net([1, 4, 99])[0] == 0  # between the points the output is 0


def test_float64_breaks_the_exact_construction():
    data, X, u = small(N=64, C=2)
    ids = mz.context_ids(data.tokens, X, u).tolist()
    net, _ = mz.bit_extraction_memorizer(ids, data.labels.tolist(), 2)
    with np.errstate(all="ignore"):
        out = mz.float_outputs(net, ids)
    assert not np.array_equal(np.round(out), np.array(data.labels.tolist()))


def test_bisection_finds_the_threshold_with_restarts():
    assert mz.bisect_min_size(lambda w: w >= 13, 0, 64)[0] == 13
    calls = {"n": 0}

    def flaky(w):  # fits from 9 on, but only on every second try
        calls["n"] += 1
        return w >= 9 and calls["n"] % 2 == 0

    assert mz.bisect_min_size(flaky, 0, 32, restarts=2)[0] == 9


def test_loglog_slope_of_a_power_law():
    x = [1, 2, 4, 8, 16]
    assert mz.loglog_slope(x, [3 * v**0.5 for v in x]) == pytest.approx(0.5)


def test_train_widths_fits_a_tiny_set_and_masks_widths():
    data = mz.random_dataset(8, 3, 8, 2, "next-token", 0)
    sw = mz.train_widths(data, [0, 4], d_model=8, steps=150, lr=3e-2, seed=0, eval_every=25)
    assert sw.widths == [0, 4] and len(sw.final_acc) == 2
    assert max(sw.final_acc) == 1.0
    assert mz.min_fitting_width(sw) in (0, 4)
    assert mz.n_params_at(data, 8, 4) - mz.n_params_at(data, 8, 0) == 2 * 8 * 4


def test_min_width_search_grid_then_bisection(monkeypatch):
    calls = []

    def fake(data, widths, d_model, steps, lr, seed, device="cpu", desc="", knockout=None):
        calls.append(list(widths))
        hit = [10 if w >= 5 else -1 for w in widths]
        acc = [1.0 if w >= 5 else 0.9 for w in widths]
        return mz.WidthSweep(list(widths), acc, hit, steps)

    monkeypatch.setattr(mz, "train_widths", fake)
    data = mz.random_dataset(8, 3, 8, 2, "next-token", 0)
    coarse = mz.min_width_search(data, (0, 8, 64), 8, 10, 1e-2, 0, restarts=2)
    assert coarse.min_width == 8 and calls[0] == [0, 0, 8, 8, 64, 64]
    fine = mz.min_width_search(data, (0, 8, 64), 8, 10, 1e-2, 0, refine=True)
    assert fine.min_width == 5 and fine.probes[5] == 1.0
    none = mz.min_width_search(data, (0, 2), 8, 10, 1e-2, 0)
    assert none.min_width == none.censored == 4


def test_width_mask_gives_the_narrow_model_and_its_gradient():
    """A masked wide FFN equals a model built with the narrow width (an independent reference): same logits,
    same gradients; masked units get no gradient; the mask changes both the function and the gradient."""
    from torch.func import functional_call

    from lib.transformer import CausalTransformer

    torch.manual_seed(0)
    data = mz.random_dataset(6, 5, 8, 2, "seq2seq", 0)
    wide = CausalTransformer(mz.model_config(data, 8, 16)).double()
    with torch.no_grad():  # a non-trivial FFN (the default init is tiny)
        for p in wide.parameters():
            p.mul_(20)

    def loss_and_grads(net, params):
        logits = functional_call(net, params, (data.tokens,))
        loss = torch.nn.functional.cross_entropy(logits[..., :2].flatten(0, 1), data.labels.flatten())
        return logits, torch.autograd.grad(loss, list(params.values()))

    def masked(w):
        params = {k: v.detach().clone().requires_grad_() for k, v in wide.named_parameters()}
        m = mz.width_mask([w], 16)[0].double()
        logits, grads = loss_and_grads(wide, mz.mask_ffn(params, m, 1))
        return logits, dict(zip(params, grads, strict=True))

    w = 5
    narrow = CausalTransformer(mz.model_config(data, 8, w)).double()
    state = {k: v.clone() for k, v in wide.state_dict().items()}
    state["blocks.0.mlp.W_1.weight"] = state["blocks.0.mlp.W_1.weight"][:w]
    state["blocks.0.mlp.W_2.weight"] = state["blocks.0.mlp.W_2.weight"][:, :w]
    narrow.load_state_dict(state)
    ref_params = {k: v.detach().clone().requires_grad_() for k, v in narrow.named_parameters()}
    ref_logits, ref_grads = loss_and_grads(narrow, ref_params)
    ref_grads = dict(zip(ref_params, ref_grads, strict=True))

    logits, grads = masked(w)
    assert torch.allclose(logits, ref_logits, atol=1e-12)
    for k, g in grads.items():
        if k == "blocks.0.mlp.W_1.weight":
            assert torch.allclose(g[:w], ref_grads[k], atol=1e-12) and not g[w:].any()
        elif k == "blocks.0.mlp.W_2.weight":
            assert torch.allclose(g[:, :w], ref_grads[k], atol=1e-12) and not g[:, w:].any()
        else:
            assert torch.allclose(g, ref_grads[k], atol=1e-12), k
    # the mask changes the function and the gradient: widths 0, 5 and 16 differ pairwise
    zero, full = masked(0), masked(16)
    for a, b in ((zero, (logits, grads)), ((logits, grads), full), (zero, full)):
        assert (a[0] - b[0]).abs().max() > 1e-3
        assert (a[1]["W_E.weight"] - b[1]["W_E.weight"]).abs().max() > 1e-6


def test_width_mask_knockouts_and_paired_initialisation():
    m = mz.width_mask([0, 2, 4], 4)
    assert m.tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert not mz.width_mask([0, 2, 4], 4, "no-ffn").any()
    assert mz.width_mask([0, 2, 4], 4, "ignore-mask").all()
    with pytest.raises(ValueError):
        mz.width_mask([0, 2], 4, "frozen")
    # the r-th model of every width gets the same initialisation: a paired comparison of widths
    assert mz.init_seeds([0, 0, 8, 8, 32], 3) == [3000, 3001, 3000, 3001, 3000]


# the quick profile's measurement at a tiny size: seq2seq sequences over 16 tokens, lengths 2 and 8
TINY = dict(sizes={"seq2seq": 24}, ns=(2, 8), vocab=16, grid=(0, 4, 16), d_model=8, steps=400, lr=1e-2, seed=0)


def _holds(monkeypatch, name, value, **threshold):
    """Return whether the chapter's check of `value` holds (its null, no seed study; nothing raises)."""
    from lib.checks import check

    monkeypatch.setenv("BOOK_CLAIMS_DEFER", "1")
    return check(name, value, kind="claim", row="mc-test", record=False, **threshold).holds


@pytest.fixture(scope="module")
def tiny_studies():
    return {ko: mz.width_measures(mz.width_study(**TINY, knockout=ko), TINY["sizes"]) for ko in (None, *mz.KNOCKOUTS)}


@pytest.mark.parametrize("knockout", mz.KNOCKOUTS)
def test_ffn_knockout_fails_the_ffn_claims(tiny_studies, knockout, monkeypatch):
    """The FFN claims hold with the FFN and fail with its width removed (masked to 0, or mask ignored)."""
    with_ffn, without = tiny_studies[None], tiny_studies[knockout]
    print(f"with the FFN {with_ffn}; knock-out {knockout}: {without}")
    for key in ("gain_s2s", "grow_s2s", "share_s2s"):  # the chapter's checks, at their nulls
        assert _holds(monkeypatch, key, with_ffn[key], at_least=1), (key, with_ffn)
        assert not _holds(monkeypatch, key, without[key], at_least=1), (key, without)


def _hand_study() -> dict:
    """A width study by hand: two tasks at n = 4 and 16, widths 0, 2, 8 (64 reported when nothing fits)."""
    S = mz.SizeSearch
    return {
        ("seq2seq", 4): S(2, 64, {0: 0.75, 2: 1.0, 8: 1.0}, 10),
        ("seq2seq", 16): S(8, 64, {0: 0.5, 2: 0.75, 8: 1.0}, 10),
        ("next-token", 4): S(2, 64, {0: 0.5, 2: 1.0, 8: 1.0}, 10),
        ("next-token", 16): S(64, 64, {0: 0.25, 2: 0.5, 8: 0.5}, 10),  # nothing fits: no growth counted
    }


def test_width_measures_by_hand():
    m = mz.width_measures(_hand_study(), {"seq2seq": 4, "next-token": 8})
    # 64 seq2seq labels at n = 16; shares: seq2seq 0.25 -> 0.5, next-token 0.5 -> 0.25
    assert m == {
        "gain_s2s": 32.0,
        "grow_s2s": 6.0,
        "share_s2s": 16.0,
        "grow_next": 0.0,
        "contrast": 6.0,
        "share_contrast": 32.0,
    }


def test_search_arguments_bind_positional_and_keyword_arguments_by_name():
    got = mz.search_arguments((0, 4), 8, 10, 1e-2, 3, refine=True)
    assert got == dict(
        grid=(0, 4), d_model=8, steps=10, lr=1e-2, seed=3, restarts=1, refine=True, device="cpu", knockout=None
    )
    with pytest.raises(ValueError, match="width 0"):
        mz.width_study({"seq2seq": 4}, (2,), 8, grid=(2, 4), d_model=8, steps=1, lr=1e-2, seed=0)


# Figures: each draws the values it is given.


def _ydata(ax) -> list[list[float]]:
    return [list(map(float, line.get_ydata())) for line in ax.get_lines()]


def test_plot_gaps():
    import matplotlib.pyplot as plt

    fig = mz.plot_gaps([64, 128], [4, 16], np.array([[1e-3, 2.5e-4], [5e-4, 1.25e-4]]), 1.0, 0.25)
    ax, bx = fig.axes
    assert _ydata(ax) == [[1e-3, 2.5e-4], [5e-4, 1.25e-4], [1e-3, 2.5e-4]]  # the slope -2 line through gaps[0, 0]
    assert [p.get_height() for p in bx.patches] == [1.0, 0.25] and ax.get_xscale() == ax.get_yscale() == "log"
    plt.close(fig)


def test_plot_counts():
    import matplotlib.pyplot as plt

    fig = mz.plot_counts([64, 128], [100, 150], [577, 1153], [30, 40], [20, 22], 0.58, 1.0)
    assert _ydata(fig.axes[0]) == [[100, 150], [577, 1153]]
    assert _ydata(fig.axes[1]) == [[31, 41], [21, 23], [24, 24]]  # bits + 1, and the float32 line
    plt.close(fig)


def test_plot_length():
    import matplotlib.pyplot as plt

    fig = mz.plot_length([2, 8], 1024, [500, 510], [600, 1200], 0.01, 0.5)
    assert _ydata(fig.axes[0]) == [[500, 510], [600, 1200], [600, 1200]] and "1024" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_plot_bit_budget():
    import matplotlib.pyplot as plt

    fig = mz.plot_bit_budget([64, 128], [100, 150], [200, 400], [577, 1153], 0.58, 1.0, 53)
    assert _ydata(fig.axes[0]) == [[100, 150], [200, 400], [577, 1153]]
    assert "53-bit block words (slope 1.00)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


def test_plot_trained():
    import matplotlib.pyplot as plt

    fig = mz.plot_trained(_hand_study(), (4, 16))
    ax, bx = fig.axes
    assert _ydata(ax)[1] == [0.5, 0.75, 1.0] and list(ax.get_lines()[1].get_xdata()) == [1, 3, 9]
    assert _ydata(bx) == [[2, 64], [2, 8], [64, 64]]  # next-token, seq2seq, then the value when nothing fits
    plt.close(fig)
