"""lib.plotting: the vocabulary the paper rooms draw with draws exactly the values it is given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lib import plotting  # noqa: E402


def test_mean_band_draws_the_mean_and_one_standard_deviation():
    fig, ax = plotting.subplots()
    runs = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 6.0]])
    mean, std = plotting.mean_band(ax, [1, 2, 3], runs, label="arm")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(std, [1.0, 1.0, 2.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.0) and band.max() == pytest.approx(6.0)
    with pytest.raises(ValueError, match="3 columns for 2 x values"):
        plotting.mean_band(ax, [1, 2], runs)


def test_a_single_run_has_no_band():
    fig, ax = plotting.subplots()
    plotting.mean_band(ax, [0, 1], [3.0, 4.0])
    assert not ax.collections and list(ax.lines[0].get_ydata()) == [3.0, 4.0]


def test_reference_label_ticks_bars_and_heatmap():
    fig, (a, b) = plotting.subplots(1, 2)
    plotting.reference(a, 0.5, label="chance")
    plotting.reference(a, x=2.0)
    assert list(a.lines[0].get_ydata()) == [0.5, 0.5] and list(a.lines[1].get_xdata()) == [2.0, 2.0]
    with pytest.raises(ValueError, match="not both"):
        plotting.reference(a, 1.0, x=1.0)
    plotting.label(a, x="step", y="loss", title="t", xscale="log", legend=True)
    assert (a.get_xlabel(), a.get_ylabel(), a.get_title(), a.get_xscale()) == ("step", "loss", "t", "log")
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["chance"]
    plotting.ticks(a, [1, 10, 100])
    assert [t.get_text() for t in a.get_xticklabels()] == ["1", "10", "100"]
    plotting.bars(b, ["g1", "g2"], {"s1": [1.0, 2.0], "s2": [3.0, 4.0]})
    heights = [p.get_height() for p in b.patches]
    assert heights == [1.0, 2.0, 3.0, 4.0] and [t.get_text() for t in b.get_xticklabels()] == ["g1", "g2"]
    image = plotting.heatmap(b, np.eye(3), cbar="weight")
    np.testing.assert_array_equal(image.get_array(), np.eye(3))
    assert len(fig.axes) == 3  # the two panels and the colour bar
