"""The book's plotting style: readable in the light and the dark theme.

Explained in chapter "Using this book". Figures are drawn on an opaque white card with a
colour-blind-safe palette (Okabe-Ito), so they read the same on either theme of the HTML.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
"""Okabe-Ito colours, safe for colour-blind readers."""


def use_style() -> None:
    """Apply the house style to matplotlib (idempotent)."""
    mpl.rcParams.update(
        {
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "savefig.bbox": "tight",
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "figure.figsize": (6.4, 3.8),
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "axes.titlesize": 11,
            "legend.frameon": False,
            "text.color": "#222222",
            "axes.labelcolor": "#222222",
            "xtick.color": "#222222",
            "ytick.color": "#222222",
        }
    )


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """Return `plt.subplots(...)` in the house style, sized by the number of panels."""
    use_style()
    kwargs.setdefault("figsize", (3.4 * ncols + 0.6, 3.0 * nrows + 0.4))
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, **kwargs)


# The vocabulary the paper rooms draw with (lib/<paper>.py: `plot_*` functions). A figure function takes the
# experiment's result and returns the figure; the chapter's cell is `fig = room.plot_x(result)` and nothing else.


def show() -> None:
    """Show the current figure (the one output of a figure cell)."""
    plt.show()


def label(
    ax,
    *,
    x: str | None = None,
    y: str | None = None,
    title: str | None = None,
    xscale: str | None = None,
    yscale: str | None = None,
    legend: bool | int = False,
    **kwargs,
) -> None:
    """Name a panel's axes and title, set its scales, and draw a small legend when `legend` (an int sets `ncol`)."""
    values = {"xlabel": x, "ylabel": y, "title": title, "xscale": xscale, "yscale": yscale, **kwargs}
    ax.set(**{k: v for k, v in values.items() if v is not None})
    if legend:
        ax.legend(fontsize=8, ncol=1 if legend is True else int(legend))


def reference(
    ax,
    y: float | None = None,
    *,
    x: float | None = None,
    label: str | None = None,
    color: str = "0.35",
    ls: str = "--",
    **kwargs,
) -> None:
    """Draw a reference line: horizontal at `y` (a null, chance, the paper's value) or vertical at `x`."""
    if (y is None) == (x is None):
        raise ValueError("reference() draws one line: give y (horizontal) or x (vertical), not both.")
    line = ax.axhline if y is not None else ax.axvline
    kwargs.setdefault("lw", 1)
    line(y if y is not None else x, color=color, ls=ls, label=label, **kwargs)


def ticks(ax, values, *, axis: str = "x", fmt: str = "{:g}", labels=None) -> None:
    """Put ticks exactly at `values` (labelled `fmt` or `labels`) and no minor ticks: sweeps on a log axis."""
    values = list(values)
    texts = list(labels) if labels is not None else [fmt.format(v) for v in values]
    (ax.set_xticks if axis == "x" else ax.set_yticks)(values, texts, minor=False)
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(mpl.ticker.NullLocator())


def mean_band(
    ax, x, runs, *, label: str | None = None, color=None, marker: str = "o", ls: str = "-", alpha: float = 0.2
):
    """Draw the mean over runs (rows of `runs`) with a band of plus or minus one standard deviation.

    Returns (mean, std), the values drawn."""
    import numpy as np

    runs = np.atleast_2d(np.asarray(runs, dtype=float))
    x = np.asarray(x, dtype=float)
    if runs.shape[1] != x.shape[0]:
        raise ValueError(f"mean_band: runs have {runs.shape[1]} columns for {x.shape[0]} x values.")
    mean, std = runs.mean(axis=0), runs.std(axis=0)
    (line,) = ax.plot(x, mean, marker=marker, ls=ls, color=color, label=label, ms=4)
    if runs.shape[0] > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=alpha, lw=0)
    return mean, std


def bars(ax, groups, series: dict, *, errors: dict | None = None, width: float = 0.8, colors: dict | None = None):
    """Grouped bars: one group per entry of `groups`, one bar per series (name -> values, one per group)."""
    import numpy as np

    x = np.arange(len(groups))
    w = width / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        color = (colors or {}).get(name, PALETTE[k % len(PALETTE)])
        yerr = None if errors is None else errors.get(name)
        ax.bar(x + (k - (len(series) - 1) / 2) * w, values, w, yerr=yerr, color=color, label=name, capsize=2)
    ax.set_xticks(x, [str(g) for g in groups])


def heatmap(
    ax,
    matrix,
    *,
    x: str | None = None,
    y: str | None = None,
    title: str | None = None,
    cbar: str | None = None,
    cmap: str = "viridis",
    **kwargs,
):
    """Draw a matrix (attention weights, a kernel) with a colour bar labelled `cbar`; returns the image (other
    `imshow` options pass through, e.g. `aspect="equal"` for square cells)."""
    kwargs.setdefault("aspect", "auto")
    kwargs.setdefault("interpolation", "nearest")
    image = ax.imshow(matrix, cmap=cmap, **kwargs)
    ax.grid(False)
    label(ax, x=x, y=y, title=title)
    if cbar is not None:
        ax.figure.colorbar(image, ax=ax, label=cbar)
    return image
