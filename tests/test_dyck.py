"""Tests of lib/dyck.py against independent references (string reduction, counters, brute force)."""

import itertools

import numpy as np
import pytest
import torch

from lib import dyck
from lib.checks import ClaimNotReproduced, check
from lib.dyck import DyckVocab


def reduce_dyck(word: list[int], k: int) -> bool:
    """Independent Dyck_k check: delete adjacent matching pairs until nothing changes."""
    s = "".join(chr(65 + t) if t < k else chr(97 + t - k) for t in word)
    pairs = [chr(65 + t) + chr(97 + t) for t in range(k)]
    while True:
        new = s
        for p in pairs:
            new = new.replace(p, "")
        if new == s:
            return s == ""
        s = new


def counters_shuffle(word: list[int], k: int) -> bool:
    """Independent Shuffle-Dyck_k check: every type's count never negative, zero at the end."""
    c = [0] * k
    for t in word:
        c[t % k] += 1 if t < k else -1
        if min(c) < 0:
            return False
    return all(x == 0 for x in c)


def strip(w: np.ndarray, k: int) -> list[int]:
    return [int(t) for t in w if t != DyckVocab(k).pad]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_generated_words_are_balanced(k):
    rng = np.random.default_rng(0)
    n = rng.integers(0, 12, size=200)
    for lang, ref in (("dyck", reduce_dyck), ("shuffle", counters_shuffle)):
        words = dyck.sample_words(lang, n, k, rng)
        assert words.shape == (200, 2 * n.max())
        for w, m in zip(words, n):
            w = strip(w, k)
            assert len(w) == 2 * m and ref(w, k)
        assert dyck.recognise(words, k, lang).all()


def test_dyck_sampler_is_uniform_over_words():
    # Dyck_1 words with 3 pairs: Catalan(3) = 5, each with probability 1/5.
    rng = np.random.default_rng(1)
    words = dyck.sample_dyck(np.full(20000, 3), 1, rng)
    _, counts = np.unique(words, axis=0, return_counts=True)
    assert len(counts) == 5
    assert np.abs(counts / 20000 - 0.2).max() < 0.015


@pytest.mark.parametrize("lang", ["dyck", "shuffle"])
def test_recogniser_matches_reference_on_all_short_strings(lang):
    k = 2
    ref = reduce_dyck if lang == "dyck" else counters_shuffle
    for L in range(1, 7):
        words = np.array(list(itertools.product(range(2 * k), repeat=L)), dtype=np.int64)
        want = np.array([ref(list(w), k) for w in words])
        assert (dyck.recognise(words, k, lang) == want).all()


@pytest.mark.parametrize("lang", ["dyck", "shuffle"])
def test_oracle_agrees_with_brute_force(lang):
    k = 2
    vocab = DyckVocab(k)
    ref = reduce_dyck if lang == "dyck" else counters_shuffle
    # All words of the language up to length 8, and all their prefixes.
    words = [w for L in range(0, 9, 2) for w in itertools.product(range(2 * k), repeat=L) if ref(list(w), k)]
    language = set(words)
    prefixes = {w[:i] for w in words for i in range(len(w) + 1)}
    for L in range(0, 4):
        strings = np.array(list(itertools.product(range(2 * k), repeat=L)), dtype=np.int64)
        strings = strings.reshape(len(strings), L)
        seqs = np.concatenate([np.full((len(strings), 1), vocab.bos), strings], axis=1)
        mask = dyck.valid_next(seqs, k, lang)[:, -1]
        for p, row in zip(strings, mask):
            p = tuple(int(t) for t in p)
            for tok in range(2 * k):
                assert row[tok] == (p + (tok,) in prefixes), (p, tok)
            assert row[vocab.eos] == (p in language)
            assert not row[vocab.bos] and not row[vocab.pad]


def test_random_strings_rejected_correctly():
    k = 2
    rng = np.random.default_rng(2)
    strings = np.concatenate([dyck.random_strings(500, 8, k, rng), dyck.random_strings(500, 10, k, rng)[:, :8]])
    got = dyck.recognise(strings, k)
    want = np.array([reduce_dyck(list(w), k) for w in strings])
    assert (got == want).all() and want.sum() < 50
    near = dyck.perturb(dyck.sample_dyck(np.full(300, 6), k, rng), rng, k)
    want = np.array([reduce_dyck(strip(w, k), k) for w in near])
    assert (dyck.recognise(near, k) == want).all() and 0 < want.sum() < 300


def test_construction_recovers_position_and_depth():
    k = 3
    rng = np.random.default_rng(3)
    words = dyck.sample_dyck(np.full(8, 250), k, rng)
    seqs = dyck.to_sequences(words, k, end=False)
    pos, depth = dyck.position_and_depth(seqs, k)
    true_pos, true_depth = dyck.true_position_and_depth(seqs, k)
    assert pos.dtype == torch.float64
    assert np.abs(pos.numpy() - true_pos).max() < 1e-9
    assert np.abs(depth.numpy() - true_depth).max() < 1e-9
    a = dyck.layer1_uniform(seqs, k).numpy()
    assert np.allclose(a[0, :, 0], 1.0 / (np.arange(seqs.shape[1]) + 1.0), rtol=0, atol=1e-15)


@pytest.mark.parametrize("lang", ["dyck", "shuffle"])
def test_construction_recogniser_matches_oracle(lang):
    k = 2
    rng = np.random.default_rng(4)
    valid = dyck.sample_words(lang, rng.integers(1, 15, size=100), k, rng)
    near = dyck.perturb(valid, rng, k)
    rand = dyck.random_strings(100, 6, k, rng)
    for words in (valid, near, rand):
        seqs = dyck.to_sequences(words, k, end=False)
        got = dyck.construction_recognise(seqs, k, lang).numpy()
        assert (got == dyck.recognise(words, k, lang)).all()


def test_construction_generator_matches_oracle():
    k = 3
    rng = np.random.default_rng(5)
    words = dyck.perturb(dyck.sample_dyck(rng.integers(1, 10, size=60), k, rng), rng, k)
    seqs = dyck.to_sequences(np.concatenate([words, dyck.sample_dyck(np.full(60, 9), k, rng)]), k)
    assert (dyck.construction_next_tokens(seqs, k).numpy() == dyck.valid_next(seqs, k)).all()
    samples = dyck.construction_generate(40, k, 30, rng, p_end=0.3)
    vocab = DyckVocab(k)
    ended = (samples == vocab.eos).any(axis=1)
    body = np.where(samples == vocab.eos, vocab.pad, samples)[:, 1:]
    assert ended.sum() > 15 and dyck.recognise(body[ended], k).all()


def test_incremental_generator_equals_full_recomputation():
    # the cached, last-position-only generator step gives the same sets as the whole-prefix computation
    k = 3
    rng = np.random.default_rng(7)
    words = dyck.perturb(dyck.sample_dyck(rng.integers(1, 12, size=50), k, rng), rng, k)
    seqs = dyck.to_sequences(words, k)
    inc = dyck._IncrementalConstruction(len(seqs), k, seqs.shape[1])
    steps = np.stack([inc.push(seqs[:, t]).numpy() for t in range(seqs.shape[1])], axis=1)
    full = dyck.construction_next_tokens(seqs, k).numpy()
    body = seqs != DyckVocab(k).pad  # after padding the sets are not used
    assert (steps[body] == full[body]).all()


def test_without_start_token_position_is_lost():
    k = 2
    n = 12
    opens = np.zeros((1, n), dtype=np.int64)  # "((((((((((((": all positions look the same
    with_start = np.concatenate([[[DyckVocab(k).bos]], opens], axis=1)
    a = dyck.layer1_uniform(opens, k).numpy()
    assert np.all(a[0, :, 0] == 0.0)  # no start token: the position coordinate is 0 everywhere
    h = dyck.stacked_attention_outputs(opens, DyckVocab(k).size)
    assert (h[0] - h[0, :1]).abs().max() < 1e-12  # every position gets the same state
    h = dyck.stacked_attention_outputs(with_start, DyckVocab(k).size)
    assert (h[0, 2:] - h[0, 1:2]).abs().max() > 1e-3  # with the start token they differ


def test_bad_input_raises():
    with pytest.raises(ValueError):
        DyckVocab(0)
    with pytest.raises(ValueError):
        dyck.sample_words("english", 3, 2, np.random.default_rng(0))
    with pytest.raises(ValueError):
        dyck.valid_next(np.zeros((2, 3), dtype=np.int64), 2)
    with pytest.raises(ValueError):
        dyck.sample_dyck(np.array([1.5]), 2, np.random.default_rng(0))


def test_training_helpers_run_and_lower_loss():
    small = dict(d_model=16, n_layers=1, n_heads=2, d_ff=16, steps=12, batch=16, lr=3e-3)
    cfg = dyck.LengthGenConfig.for_profile("quick", show=False, test_max_pairs=30, n_eval=8, **small)
    model, losses = dyck.train_dyck_model(cfg, "none", seed=0)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    acc = dyck.accuracy_by_length(model, cfg, seed=0)
    assert acc.shape == (len(cfg.bins()),) and ((0 <= acc) & (acc <= 1)).all()
    samples = dyck.sample_model(model, cfg.k, 16, 20, seed=0)
    frac, count = dyck.valid_fraction_by_length(samples, cfg.k, [0, 10, 20])
    assert count.sum() <= 16 and frac.shape == (2,)


def test_bayes_close_after_run_matches_enumeration():
    # P(next closes | the word starts with i opening brackets), N uniform on 1..5, words uniform given N
    up, total = np.zeros(6), np.zeros(6)
    for N in range(1, 6):
        words = [w for w in itertools.product((0, 1), repeat=2 * N) if reduce_dyck(list(w), 1)]
        for w in words:
            for i in range(1, 7):
                if i <= len(w) and all(t == 0 for t in w[:i]):
                    total[i - 1] += 1 / len(words)
                    up[i - 1] += (i < len(w) and w[i] == 0) / len(words)
    want = np.where(total > 0, 1 - up / np.where(total > 0, total, 1), np.nan)
    got = dyck.bayes_close_after_run((1, 5), 6)
    assert np.allclose(got, want, equal_nan=True, rtol=0, atol=1e-12)
    assert got[4] == 1.0 and np.isnan(got[5])  # after five opens only closing is possible; six never occur


def _tiny_cfg(**kw):
    small = dict(d_model=16, n_layers=1, n_heads=2, d_ff=16, steps=2, batch=8, lr=1e-2, test_max_pairs=30, n_eval=8)
    return dyck.LengthGenConfig.for_profile("quick", show=False, **{**small, **kw})


def test_arms_train_with_and_without_the_start_token():
    # the start token's embedding gets a gradient (and moves) only when the arm's inputs contain it
    cfg = _tiny_cfg()
    bos = DyckVocab(cfg.k).bos
    for arm, start in (("none", True), ("nostart", False), ("learned", True)):
        torch.manual_seed(0)
        init = dyck.CausalTransformer(cfg.model_config(arm)).W_E.weight[bos].detach().clone()
        model, _ = dyck.train_dyck_model(cfg, arm, seed=0)
        moved = (model.W_E.weight[bos].detach() - init).abs().max() > 1e-6
        assert bool(moved) == start, arm
    with pytest.raises(ValueError):
        dyck.LengthGenConfig.for_profile("quick", show=False, arms=("none", "alibi"))


@pytest.mark.parametrize("start", [True, False])
def test_closing_accuracy_against_the_next_token(start):
    # in Dyck_k exactly one closing bracket is valid, the one the word closes with: compare argmax with it
    k = 2
    cfg = _tiny_cfg()
    torch.manual_seed(1)
    model = dyck.CausalTransformer(cfg.model_config("none")).eval()
    rng = np.random.default_rng(8)
    seqs = dyck.to_sequences(dyck.sample_dyck(rng.integers(1, 12, size=40), k, rng), k)
    correct, total = dyck.closing_accuracy(model, seqs, k, start=start)
    body = seqs if start else seqs[:, 1:]
    with torch.no_grad():
        logits = model(torch.as_tensor(body[:, :-1])).numpy()
    y = body[:, 1:]
    closing = (y >= k) & (y < 2 * k)
    want = (logits[..., k : 2 * k].argmax(-1) + k == y)[closing]
    assert total == closing.sum() and correct == want.sum() and 0 < correct < total


def test_close_probability_after_run():
    cfg = _tiny_cfg()
    torch.manual_seed(2)
    model = dyck.CausalTransformer(cfg.model_config("none")).eval()
    without = dyck.close_probability_after_run(model, cfg.k, 15, start=False)
    with_start = dyck.close_probability_after_run(model, cfg.k, 15, start=True)
    assert np.ptp(without) < 1e-12  # the proposition: a constant input gives the same state everywhere
    assert np.ptp(with_start) > 1e-6  # with the start token the positions differ
    # causality: the value at i is the prediction at the end of the prefix <s> (^i alone
    for i in (1, 7, 15):
        seq = torch.as_tensor([[DyckVocab(cfg.k).bos] + [0] * i])
        with torch.no_grad():
            p = model.double()(seq)[0, -1].softmax(-1)[cfg.k : 2 * cfg.k].sum()
        model.float()
        assert abs(float(p) - with_start[i - 1]) < 1e-12


# Knock-out tests: each claim's check at tiny size, with the mechanism it names (the start token) and without.


def _check_holds(value, **threshold) -> bool:
    """Return whether the chapter's check, at its null (no seed study here), holds for `value`."""
    try:
        return check("knock-out test", value, kind="claim", row="knock-out", record=False, **threshold).holds
    except ClaimNotReproduced:
        return False


@pytest.mark.parametrize("start", [True, False])
def test_knockout_start_token_lemma(start):
    # the lemma's check (position and depth exact to 1e-9) holds with the start token and fails without it
    k = 2
    rng = np.random.default_rng(0)
    seqs = dyck.to_sequences(dyck.sample_dyck(np.full(8, 30), k, rng), k, start=start, end=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, depth = (t.numpy() for t in dyck.position_and_depth(seqs, k))
        true_pos, true_depth = dyck.true_position_and_depth(seqs, k)
        pos_err = np.nan_to_num(np.abs(pos - true_pos).max(), nan=np.inf)
        depth_err = np.nan_to_num(np.abs(depth - true_depth).max(), nan=np.inf)
    assert _check_holds(pos_err, at_most=1e-9) == start
    assert _check_holds(depth_err, at_most=1e-9) == start


def test_blind_error_is_the_best_constant():
    # brute force over a fine grid of constants, against the median's closed form
    target = np.array([0.3, np.nan, 0.45, 0.5, 0.9, 1.0, np.nan])
    grid = np.linspace(0, 1, 100_001)
    finite = target[~np.isnan(target)]
    brute = np.abs(grid[:, None] - finite[None, :]).mean(1).min()
    assert abs(dyck.blind_error(target) - brute) < 1e-5
    with pytest.raises(ValueError):
        dyck.blind_error(np.array([np.nan]))


@pytest.mark.parametrize("start", [True, False])
def test_knockout_start_token_trained(start):
    # the chapter's check "the start token lets the trained no-PE model follow P(close | (^i)": the trained
    # model's mean error must be below the best constant blind to the position; it holds with the start
    # token and fails when the same arm is trained and read without it (the knock-out)
    cfg = _tiny_cfg(steps=100, batch=32, train_pairs=(1, 6), test_max_pairs=12)
    model, _ = dyck.train_dyck_model(cfg, "none", seed=0, start=start)
    bayes = dyck.bayes_close_after_run(cfg.train_pairs, 12)
    p = dyck.close_probability_after_run(model, cfg.k, 12, start=start)
    seen = ~np.isnan(bayes)
    err = np.abs(p - bayes)[seen].mean()
    assert _check_holds(err, at_most=dyck.blind_error(bayes)) == start


# Figures: each draws the values it is given, in the expected panels.


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_layer1_draws_the_outputs_and_errors():
    layer1 = np.random.default_rng(0).random((2, 5, 2))
    true_pos = np.tile(np.arange(5.0), (2, 1))
    true_depth = np.array([[0, 1, 2, 1, 0], [0, 1, 0, 1, 0]], dtype=float)
    depth = true_depth + 1e-12
    fig = dyck.plot_layer1(layer1, true_pos, depth, true_pos, true_depth)
    axes = fig.axes
    assert len(axes) == 3
    assert np.array_equal(axes[0].lines[0].get_ydata(), layer1[0, 1:, 0])
    assert np.array_equal(axes[1].lines[1].get_ydata(), depth[0])
    assert np.allclose(axes[2].lines[1].get_ydata(), 1e-12 + 1e-18)
    assert axes[2].get_yscale() == "log"
    _close(fig)


def test_plot_no_start_draws_one_line_per_network():
    h_with = [np.arange(6.0).reshape(3, 2) + s for s in range(2)]
    h_without = [np.ones((3, 2)) * s for s in range(2)]
    fig = dyck.plot_no_start(h_with, h_without)
    left, right = fig.axes
    assert len(left.lines) == len(right.lines) == 2
    assert np.array_equal(left.lines[1].get_ydata(), h_with[1][:, 0])
    assert np.array_equal(right.lines[1].get_xdata(), [1, 2, 3])
    assert left.get_legend().get_texts()[0].get_text() == "2 random networks"
    _close(fig)


def test_plot_length_generalisation_draws_the_mean_per_arm():
    cfg = _tiny_cfg(arms=("none", "learned"))
    n_bins = len(cfg.bins())
    acc = {arm: np.random.default_rng(i).random((2, n_bins)) for i, arm in enumerate(cfg.arms)}
    fig = dyck.plot_length_generalisation(acc, cfg)
    (ax,) = fig.axes
    assert [bars.get_label() for bars in ax.containers] == ["no PE", "learned PE"]
    assert np.allclose(ax.containers[1].lines[0].get_ydata(), acc["learned"].mean(0))
    assert ax.get_title() == f"Dyck$_{cfg.k}$, 2 seed(s)"
    _close(fig)


def test_plot_close_after_run_draws_the_exact_curve_and_each_model():
    bayes = np.array([0.3, 0.5, 1.0, np.nan])
    p_close = {"none": np.array([0.3, 0.4, 0.9, 0.9]), "nostart": np.full(4, 0.5)}
    fig = dyck.plot_close_after_run(bayes, p_close)
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert np.array_equal(ax.lines[0].get_ydata(), bayes, equal_nan=True)
    assert np.array_equal(ax.lines[2].get_ydata(), p_close["nostart"])
    assert np.array_equal(ax.lines[1].get_xdata(), [1, 2, 3, 4])
    _close(fig)


def test_plot_generation_draws_fractions_and_counts():
    edges = np.array([0, 10, 20, 30])
    frac, count = np.array([0.9, np.nan, 0.5]), np.array([5, 0, 2])
    fig = dyck.plot_generation(frac, count, edges, (1, 20))
    left, right = fig.axes
    assert np.array_equal(left.lines[0].get_ydata(), [0.9, 0.5])
    assert np.array_equal(left.lines[0].get_xdata(), [5.0, 25.0])
    assert [p.get_height() for p in right.patches if p.get_width() == 9.0] == [5, 0, 2]
    _close(fig)
