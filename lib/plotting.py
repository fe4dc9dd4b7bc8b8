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
