"""Tests of the induction-head / knowledge-hijack module (lib/induction.py)."""

import math

import pytest
import torch

from lib.checks import ClaimNotReproduced, check
from lib.induction import (
    AssociativeMemoryTransformer,
    InductionConfig,
    MemoryWeights,
    TwoLayerInductionModel,
    closed_form_logits,
    designed_prompts,
    dirichlet_bigram,
    exact_logits,
    hijack_sweep,
    hijack_threshold,
    hijack_tokens,
    icl_accuracy,
    make_task,
    predicted_switch_lengths,
    pregenerated_batches,
    sample_chain,
    sample_sequences,
    stationary_distribution,
    switch_lengths,
    theorem_counts,
    train_induction_model,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_dirichlet_rows_and_stationary_law():
    P = dirichlet_bigram(7, 0.5, seed=3)
    assert P.dtype == torch.float64 and torch.allclose(P.sum(1), torch.ones(7, dtype=torch.float64))
    pi = stationary_distribution(P)
    assert torch.allclose(pi @ P, pi, atol=1e-12) and math.isclose(pi.sum().item(), 1.0)
    # independent check: the power method
    v = torch.full((7,), 1 / 7, dtype=torch.float64)
    for _ in range(2000):
        v = v @ P
    assert torch.allclose(pi, v, atol=1e-9)


def test_bigram_empirical_frequencies_match_the_matrix():
    task = make_task(N=6, K=1, alpha=1.0, seed=1, random_triggers=False)
    z = sample_sequences(task, B=1500, L=60, generator=gen(2)).tokens
    prev, nxt = z[:, :-1].flatten(), z[:, 1:].flatten()
    q = int(task.fixed_triggers[0])
    for i in range(6):
        if i == q:
            continue  # after the trigger comes the sequence's output token, not a bigram draw
        sel = nxt[prev == i]
        freq = torch.bincount(sel, minlength=6).to(torch.float64) / len(sel)
        se = torch.sqrt(task.P[i] * (1 - task.P[i]) / len(sel))
        assert ((freq - task.P[i]).abs() <= 5 * se + 1e-3).all(), (i, freq, task.P[i])
    # the first token follows the stationary law
    first = torch.bincount(z[:, 0], minlength=6).to(torch.float64) / z.shape[0]
    assert (first - task.pi).abs().max() < 0.05


def test_plain_chain_frequencies_and_exclusion():
    P = dirichlet_bigram(5, 1.0, seed=0)
    z = sample_chain(P, 800, 50, gen(1), exclude=torch.tensor([2]))
    assert not (z == 2).any()
    prev, nxt = z[:, :-1].flatten(), z[:, 1:].flatten()
    Q = P.clone()
    Q[:, 2] = 0
    Q = Q / Q.sum(1, keepdim=True)
    sel = nxt[prev == 0]
    freq = torch.bincount(sel, minlength=5).to(torch.float64) / len(sel)
    assert (freq - Q[0]).abs().max() < 0.03


@pytest.mark.parametrize("random_triggers", [False, True])
def test_every_trigger_is_followed_by_its_output(random_triggers):
    task = make_task(N=12, K=3, alpha=0.3, seed=0, random_triggers=random_triggers)
    batch = sample_sequences(task, B=40, L=50, generator=gen(5))
    z, trig, out = batch.tokens, batch.triggers, batch.outputs
    # outputs are never triggers
    assert not (out[:, :, None] == trig[:, None, :]).any()
    for b in range(z.shape[0]):  # brute force over sequences, positions and triggers
        seen = set()
        for t in range(1, z.shape[1]):
            for k in range(task.K):
                if z[b, t - 1] == trig[b, k]:
                    assert z[b, t] == out[b, k]
            expected = int(z[b, t - 1]) in seen and int(z[b, t - 1]) in trig[b].tolist()
            assert bool(batch.icl_mask[b, t]) == expected
            if int(z[b, t - 1]) in trig[b].tolist():
                seen.add(int(z[b, t - 1]))
    if not random_triggers:
        assert (trig == task.fixed_triggers).all()


def test_theorem_counts_brute_force():
    z = torch.tensor([[3, 1, 2, 1, 2, 0, 1, 4, 1]])  # q = 1
    n_q, c, m = theorem_counts(z)
    assert n_q.item() == 3  # positions 2, 4, 7 follow a 1
    assert c[0].tolist() == [0, 0, 2, 0, 1]
    assert m[0].tolist() == [1, 4, 2, 1, 1]


def _prompts(P, B, L, seed):
    z = sample_chain(P, B, L, gen(seed))
    clash = z[:, 0] == z[:, -1]
    z[:, 0] = torch.where(clash, (z[:, 0] + 1) % P.shape[0], z[:, 0])  # the theorem assumes z_0 != q
    return z


def test_hand_wired_logits_equal_the_closed_form_in_float64():
    P = dirichlet_bigram(8, 0.5, seed=0)
    w = MemoryWeights(beta1=40.0, beta2=2.5, lam=1.7, lam_G=0.8)
    model = AssociativeMemoryTransformer(P, max_len=40, weights=w, seed=1)
    z = _prompts(P, 16, 33, seed=2)
    logits = model(z)[:, -1]
    assert logits.dtype == torch.float64
    assert (logits - closed_form_logits(z, P, w)).abs().max() < 1e-10


def test_hand_wired_logits_equal_the_soft_formula_for_any_beta1():
    P = dirichlet_bigram(6, 0.5, seed=4)
    for beta1 in (0.0, 1.5, 6.0):
        w = MemoryWeights(beta1=beta1, beta2=1.3, lam=1.0, lam_G=1.0)
        model = AssociativeMemoryTransformer(P, max_len=30, weights=w, seed=0)
        z = sample_chain(P, 10, 25, gen(7))  # no assumption on z_0 here
        assert (model(z)[:, -1] - exact_logits(z, P, w)).abs().max() < 1e-10
    # a soft previous-token head does NOT give the hard closed form: the assumption matters
    w = MemoryWeights(beta1=2.0, beta2=3.0)
    z = _prompts(P, 10, 25, seed=8)
    assert (exact_logits(z, P, w) - closed_form_logits(z, P, w)).abs().max() > 1e-3


def test_hand_wired_attention_is_previous_token_and_induction():
    P = dirichlet_bigram(6, 0.5, seed=4)
    model = AssociativeMemoryTransformer(P, max_len=20, weights=MemoryWeights(beta1=40.0, beta2=30.0))
    z = torch.tensor([[0, 1, 2, 3, 1, 4, 5, 1]])
    _, (A1, A2) = model(z, return_attn=True)
    assert torch.allclose(A1[0, 1:].argmax(-1), torch.arange(7))  # each t looks at t - 1
    assert set(A2[0, -1].topk(2).indices.tolist()) == {2, 5}  # positions right after earlier 1's


def test_designed_prompts_have_the_theorems_counts():
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    assert P[a, g] == P[a].max() and len({a, g, o}) == 3
    z = designed_prompts(P, a, o, g, c=4, T=30, B=50, generator=gen(1))
    assert z.shape == (50, 31) and (z[:, -1] == a).all() and (z[:, 0] != a).all()
    n_q, c, m = theorem_counts(z)
    assert (n_q == 4).all() and (c[:, o] == 4).all() and (m[:, o] == 4).all() and (m[:, g] == 0).all()
    with pytest.raises(ValueError, match="fit"):
        designed_prompts(P, a, o, g, c=16, T=30, B=2, generator=gen(1))


def test_hijack_threshold_matches_a_brute_force_scan_and_the_model():
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    delta = float(torch.log(P[a, g] / P[a, o]))
    w = MemoryWeights(beta1=40.0, beta2=2.0, lam=2 * delta, lam_G=1.0)  # r = 1/2
    model = AssociativeMemoryTransformer(P, max_len=62, weights=w)
    for T in (20, 40, 60):
        c_star = float(hijack_threshold(T, w, delta))
        # independent: scan the logit gap of the closed form on a fine grid of real c
        grid = torch.linspace(0, 20, 40001, dtype=torch.float64)
        gap = w.lam * math.exp(w.beta2) * grid / (math.exp(w.beta2) * grid + T + 1 - grid) - w.lam_G * delta
        assert abs(grid[(gap > 0).nonzero()[0]].item() - c_star) < 1e-3
        for c in range(0, (T - 1) // 2 + 1):
            z = designed_prompts(P, a, o, g, c, T, B=3, generator=gen(c))
            logits = model(z)[:, -1]
            assert ((logits[:, o] > logits[:, g]) == (c > c_star)).all()
    strong_prior = MemoryWeights(lam=delta, lam_G=1.0)  # r = 1: in-context never wins
    assert math.isinf(float(hijack_threshold(50, strong_prior, delta)))


def test_trainable_model_shapes_causality_and_errors():
    g = gen(0)
    for pos_enc in ("learned", "rope", "none"):
        model = TwoLayerInductionModel(N=10, d=16, max_len=20, pos_enc=pos_enc, generator=g)
        for p in model.parameters():  # leave the zero init to check causality on a non-trivial model
            p.data.normal_(generator=g)
        z = torch.randint(0, 10, (3, 12), generator=g)
        logits, (A1, A2) = model(z, return_attn=True)
        assert logits.shape == (3, 12, 10) and A1.shape == A2.shape == (3, 1, 12, 12)
        z2 = z.clone()
        z2[:, 7:] = (z2[:, 7:] + 1) % 10
        assert torch.allclose(model(z2)[:, :7], logits[:, :7], atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        TwoLayerInductionModel(10, 16, 20, "learned", g)(torch.zeros(1, 21, dtype=torch.long))
    with pytest.raises(ValueError, match="pos_enc"):
        TwoLayerInductionModel(10, 16, 20, "alibi", g)
    with pytest.raises(ValueError, match="triggers"):
        make_task(N=6, K=4, alpha=1.0, seed=0, random_triggers=True)


def test_training_runs_and_returns_a_history():
    cfg = InductionConfig(N=8, K=1, T=12, d=16, batch=8, steps=4, eval_batch=16, eval_every=2)
    task = make_task(cfg.N, cfg.K, cfg.alpha, seed=0, random_triggers=True)
    model, hist = train_induction_model(cfg, task, "rope", seed=0)
    assert hist["step"] == [2, 4] and len(hist["loss"]) == 4
    acc = icl_accuracy(model, task, L=12, B=16, generator=gen(0))
    assert 0.0 <= acc <= 1.0


def test_pregenerated_batches_are_slices_of_one_draw():
    task = make_task(N=8, K=2, alpha=0.5, seed=0, random_triggers=True)
    batches = list(pregenerated_batches(task, B=3, L=7, steps=5, generator=gen(4), max_tokens=3 * 7 * 2))
    assert len(batches) == 5 and all(b.tokens.shape == (3, 7) for b in batches)
    # chunks of 2 steps: the first two batches are the rows of one sample_sequences call with the same stream
    ref = sample_sequences(task, B=6, L=7, generator=gen(4))
    assert torch.equal(torch.cat([batches[0].tokens, batches[1].tokens]), ref.tokens)
    assert torch.equal(torch.cat([batches[0].icl_mask, batches[1].icl_mask]), ref.icl_mask)


def test_weighted_mask_gives_half_the_sum_of_full_and_in_context_losses():
    from lib.transformer import lm_loss

    g = gen(3)
    logits, y = torch.randn(4, 9, 6, generator=g), torch.randint(0, 6, (4, 9), generator=g)
    icl = torch.rand(4, 9, generator=g) < 0.3
    w = 1.0 + icl.double() * (icl.numel() / icl.sum())
    expected = (lm_loss(logits, y) + lm_loss(logits, y, icl)) / 2
    assert torch.allclose(lm_loss(logits, y, w), expected.to(torch.float32), atol=1e-6)


def test_hijack_sweep_uses_the_given_tokens_and_threshold():
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    delta = float(torch.log(P[a, g] / P[a, o]))
    w = MemoryWeights(beta1=40.0, beta2=2.0, lam=2 * delta, lam_G=1.0)
    out = hijack_sweep(P, w, (a, g, o), delta, cs=[0, 5], lengths=[20, 40], B=4, seed=0)
    assert torch.allclose(out["threshold"], hijack_threshold(torch.tensor([20, 40]), w, delta))
    predicted = torch.tensor([0.0, 5.0])[None, :] > out["threshold"][:, None]
    assert torch.equal(out["o_beats_g"] == 1.0, predicted)
    with pytest.raises(ValueError, match="delta"):
        hijack_sweep(P, w, (a, g, o), -1.0, cs=[0], lengths=[20], B=1, seed=0)


def test_relative_memory_keeps_the_closed_form_at_any_length_absolute_does_not():
    P = dirichlet_bigram(8, 0.5, seed=2)
    w = MemoryWeights(beta1=40.0, beta2=2.0, lam=1.3, lam_G=0.7)
    z = _prompts(P, 12, 97, seed=3)  # length 97, four times the stored length 24
    rel = AssociativeMemoryTransformer(P, max_len=20, weights=w, prev_token="relative")  # max_len unused
    assert (rel(z)[:, -1] - closed_form_logits(z, P, w)).abs().max() < 1e-10
    _, (A1, _) = rel(z, return_attn=True)
    assert torch.allclose(A1[0, 1:].argmax(-1), torch.arange(96))  # the previous token at every t
    ape = AssociativeMemoryTransformer(P, max_len=97, weights=w, train_len=24)
    logits = ape(z)[:, -1]
    # independent prediction: rows s >= 24 of the layer-1 attention are uniform (no stored pair)
    assert (logits - exact_logits(z, P, w, train_len=24)).abs().max() < 1e-10
    assert (logits - closed_form_logits(z, P, w)).abs().max() > 1e-2
    _, (A1, _) = ape(z, return_attn=True)
    assert torch.allclose(A1[0, 50, :51], torch.full((51,), 1 / 51, dtype=torch.float64))
    with pytest.raises(ValueError, match="prev_token"):
        AssociativeMemoryTransformer(P, 10, w, prev_token="alibi")


def test_switch_lengths_match_the_threshold_and_catch_an_off_by_one():
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    delta = float(torch.log(P[a, g] / P[a, o]))
    w = MemoryWeights(beta1=40.0, beta2=1.5, lam=2 * delta, lam_G=1.0)  # r = 1/2
    cs = [1, 2, 3, 4]
    observed = switch_lengths(P, w, (a, g, o), cs, max_T=40, B=3, seed=0)
    predicted = predicted_switch_lengths(cs, w, delta, max_T=40)
    # independent: o wins iff T + 1 < c (e^{b2} (1 - r) + r) / r, so the first losing T is ceil(...) - 1
    r, e = 0.5, math.exp(w.beta2)
    by_hand = torch.tensor([math.ceil(c * (e * (1 - r) + r) / r) - 1.0 for c in cs], dtype=torch.float64)
    assert torch.equal(observed, by_hand) and torch.equal(predicted, by_hand)
    # a normaliser of T instead of T + 1 shifts every switch length by one token
    assert ((by_hand + 1) != observed).all()


def test_rope_model_layer1_scores_depend_on_the_offset_only():
    g = gen(1)
    model = TwoLayerInductionModel(N=6, d=16, max_len=40, pos_enc="rope", generator=g)
    z = torch.full((1, 24), 3)  # one repeated token: any structure in A1 comes from positions
    _, (A1, _) = model(z, return_attn=True)
    A = A1[0, 0].double()
    # A1[t, t - k] / A1[t, t] = exp(S(k) - S(0)) must not depend on t (relative scores) ...
    ratios = torch.stack([A[t, t - 8 : t + 1] / A[t, t] for t in range(8, 24)])
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)
    # ... and must depend on k: the rotation makes the scores position-dependent
    assert ratios[0].max() / ratios[0].min() > 1.5
    # the ablation arm ("none", no rotation) attends uniformly on a repeated token
    _, (A1, _) = TwoLayerInductionModel(6, 16, 40, "none", gen(1))(z, return_attn=True)
    assert torch.allclose(A1[0, 0, 10, :11], torch.full((11,), 1 / 11), atol=1e-6)


# Knock-out tests: each claim's check at tiny size, with the mechanism it names and without it.


def _check_holds(value, **threshold) -> bool:
    """Return whether the chapter's check, at its null (no seed study here), holds for `value`."""
    try:
        return check("knock-out test", value, kind="claim", row="knock-out", record=False, **threshold).holds
    except ClaimNotReproduced:
        return False


@pytest.mark.parametrize("knockout", [None, "previous-token", "induction", "global"])
def test_knockout_memories_break_the_theorem(knockout):
    # the check of Experiment 1 (hand-wired logits = closed form, 1e-10) holds with all three memories and
    # fails without any one of them
    P = dirichlet_bigram(8, 0.5, seed=0)
    w = MemoryWeights(beta1=40.0, beta2=2.5, lam=1.7, lam_G=0.8)
    model = AssociativeMemoryTransformer(P, max_len=40, weights=w, seed=1, knockout=knockout)
    z = _prompts(P, 16, 33, seed=2)
    err = float((model(z)[:, -1] - closed_form_logits(z, P, w)).abs().max())
    assert _check_holds(err, at_most=1e-10) == (knockout is None)
    with pytest.raises(ValueError, match="knockout"):
        AssociativeMemoryTransformer(P, 10, w, knockout="all")


@pytest.mark.parametrize("knockout", [None, "induction"])
def test_knockout_induction_head_breaks_the_threshold(knockout):
    # the check of Experiment 2 (o beats g exactly when c > c*(T), on every prompt) needs the induction head
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    delta = float(torch.log(P[a, g] / P[a, o]))
    w = MemoryWeights(beta1=40.0, beta2=3.0, lam=2 * delta, lam_G=1.0)
    cs, lengths = list(range(0, 8)), [16, 32]
    out = hijack_sweep(P, w, (a, g, o), delta, cs, lengths, B=8, seed=0, knockout=knockout)
    predicted = torch.tensor(cs, dtype=torch.float64)[None, :] > out["threshold"][:, None]
    agreement = float(torch.where(predicted, out["o_beats_g"], 1 - out["o_beats_g"]).mean())
    assert _check_holds(agreement, at_least=1.0) == (knockout is None)


@pytest.mark.parametrize("knockout", [None, "global"])
def test_knockout_global_memory_lets_the_context_win(knockout):
    # the check "strong global memory (r >= 1): fraction of prompts where o wins <= 0" needs the bigram memory
    P = dirichlet_bigram(10, 0.3, seed=0)
    a, g, o = hijack_tokens(P)
    delta = float(torch.log(P[a, g] / P[a, o]))
    strong = MemoryWeights(beta1=40.0, beta2=3.0, lam=delta / 1.2, lam_G=1.0)  # r = 1.2
    out = hijack_sweep(P, strong, (a, g, o), delta, list(range(8)), [16, 32], B=8, seed=0, knockout=knockout)
    assert _check_holds(float(out["o_beats_g"].max()), at_most=0.0) == (knockout is None)


def test_knockout_positions_remove_the_trained_induction_head():
    # the checks on the trained models are differences against the arm without positions (the RoPE model with
    # its rotation removed). At tiny size: with the rotation the difference in in-context accuracy clears its
    # null 0 by a wide margin; knocked out (the rotation removed: the arm "none"), the effect is gone and the
    # value is the null itself, below any threshold the seed study derives above it
    cfg = InductionConfig.for_profile("quick", show=False, N=16, K=2, T=16, d=64, steps=200, batch=32, eval_batch=128)
    task = make_task(cfg.N, cfg.K, cfg.alpha, seed=0, random_triggers=True)
    acc = {}
    for pe in ("rope", "none"):
        model, _ = train_induction_model(cfg, task, pe, seed=0)
        acc[pe] = icl_accuracy(model, task, cfg.T, 256, gen(1))
    acc["knocked out"] = acc["none"]  # the RoPE arm without its rotation is the arm "none", trained alike
    assert _check_holds(acc["rope"] - acc["none"], at_least=0.0) and acc["rope"] - acc["none"] > 0.15
    assert acc["knocked out"] - acc["none"] <= 0.0


# Figures: each draws the values it is given, in the expected panels.


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_construction_errors_draws_both_errors():
    import numpy as np

    from lib.induction import plot_construction_errors

    fig = plot_construction_errors([1.0, 2.0, 40.0], [0.5, 1e-3, 0.0], [1e-15, 2e-15, 1e-15])
    (ax,) = fig.axes
    assert np.array_equal(ax.lines[0].get_ydata(), [0.5, 1e-3, 1e-17])  # zeros floored for the log scale
    assert np.array_equal(ax.lines[1].get_ydata(), [1e-15, 2e-15, 1e-15])
    assert ax.get_yscale() == "log"
    _close(fig)


def test_plot_threshold_draws_the_sweep_and_the_switch_lengths():
    import numpy as np

    from lib.induction import plot_threshold

    cs, lengths = [0, 1, 2], [8, 16]
    sweep = {
        "p_o": torch.tensor([[0.1, 0.6, 0.8], [0.05, 0.3, 0.6]]),
        "p_g": torch.tensor([[0.9, 0.4, 0.2], [0.95, 0.7, 0.4]]),
        "threshold": torch.tensor([0.5, 1.2]),
    }
    w = MemoryWeights(beta1=40.0, beta2=3.0, lam=2.0, lam_G=1.0)
    fig = plot_threshold(sweep, cs, lengths, [1, 2], torch.tensor([20.0, 41.0]), w, delta=1.0)
    left, right = fig.axes
    assert np.allclose(left.lines[3].get_ydata(), sweep["p_o"][1])  # per length: P(o), P(g), c*(T)
    assert left.lines[5].get_xdata()[0] == pytest.approx(1.2)
    slope = (math.exp(3.0) * 0.5 + 0.5) / 0.5  # r = lam_G delta / lam = 1/2
    x, y = right.lines[0].get_data()
    assert np.allclose(y, slope * x - 1)
    assert np.array_equal(right.lines[2].get_ydata(), [20.0, 41.0])
    _close(fig)


def test_plot_training_draws_histories_maps_and_circles():
    import numpy as np

    from lib.induction import plot_training

    histories = {"learned": {"step": [0, 10], "icl_acc": [0.1, 0.9]}, "none": {"step": [0, 10], "icl_acc": [0.1, 0.2]}}
    arms = {"learned": "learned absolute", "none": "no positions"}
    tokens = torch.tensor([[3, 1, 3, 2]])
    icl_mask = torch.tensor([False, False, False, True])  # z_3 follows the repeated 3 at position 2
    A = torch.eye(4)[None, None]
    fig = plot_training(histories, arms, A, 0.5 * A, tokens, icl_mask)
    assert len(fig.axes) == 5  # three panels and two colour bars
    assert np.array_equal(fig.axes[0].lines[1].get_ydata(), [0.1, 0.2])
    assert np.array_equal(fig.axes[2].images[0].get_array(), 0.5 * np.eye(4))
    assert np.array_equal(fig.axes[2].collections[0].get_offsets(), [[1, 2]])  # key s = 1 follows z_0 = z_2
    _close(fig)


def test_plot_trained_hijack_draws_rope_and_ablation():
    import numpy as np

    from lib.induction import plot_trained_hijack

    curves = {
        "rope": {"p_o": torch.tensor([[0.0, 0.7], [0.0, 0.4]]), "p_g": torch.tensor([[0.9, 0.2], [0.9, 0.5]])},
        "none": {"p_o": torch.tensor([[0.0, 0.1], [0.0, 0.1]]), "p_g": torch.tensor([[0.9, 0.8], [0.9, 0.8]])},
    }
    fig = plot_trained_hijack(curves, [0, 1], [31, 63])
    (ax,) = fig.axes
    assert len(ax.lines) == 5
    assert np.allclose(ax.lines[2].get_ydata(), [0.0, 0.4])
    assert np.allclose(ax.lines[4].get_ydata(), [0.0, 0.1])
    assert ax.lines[2].get_label() == "P(o), length 64"
    _close(fig)


def test_plot_length_draws_each_arm_on_a_log2_axis():
    import numpy as np

    from lib.induction import plot_length

    length_acc = {"learned": [0.9, 0.5, 0.2], "rope": [0.9, 0.85, 0.8]}
    fig = plot_length(length_acc, [8, 16, 32], 8, {"learned": "learned", "rope": "RoPE"})
    (ax,) = fig.axes
    assert np.array_equal(ax.lines[1].get_ydata(), [0.9, 0.85, 0.8])
    assert ax.lines[2].get_xdata()[0] == 8  # the training length
    assert list(ax.get_xticks()) == [8, 16, 32]
    _close(fig)
