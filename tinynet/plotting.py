"""A tiny plotting helper for the course's axis: accuracy against bytes.

Every compression lesson ends on the same picture: held-out accuracy (y)
against the size of the model in bytes (x, logarithmic, because sizes span
orders of magnitude). A dense float32 model takes ``4 * parameters`` bytes;
compressed models take the byte length of their file (``compression.storage``).
Better models sit up and to the left.

This module only draws points; the sweep runner that produces them, with its
Pareto front, is ``compression.sweep``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def format_bytes(n: float) -> str:
    """``1066440 -> "1.07 MB"``, ``3360 -> "3.4 kB"`` (decimal units, as Han et al. use).

    >>> format_bytes(1066440)
    '1.07 MB'
    >>> format_bytes(512)
    '512 B'
    """
    n = float(n)
    if n < 1e3:
        return f"{n:.0f} B"
    if n < 1e6:
        return f"{n / 1e3:.3g} kB"
    if n < 1e9:
        return f"{n / 1e6:.3g} MB"
    return f"{n / 1e9:.3g} GB"


def plot_accuracy_vs_bytes(
    points: Sequence[tuple[str, float, float | Sequence[float]]],
    ax: Any = None,
    label: str | None = None,
    annotate: bool = True,
    **style: Any,
) -> Any:
    """Draw ``(name, bytes, accuracy)`` points on a log-x axis, in percent.

    Parameters
    ----------
    points : sequence of (name, nbytes, accuracy)
        ``accuracy`` is a fraction in [0, 1], or a sequence of fractions
        (one per seed): then the mean is drawn with a bar from the lowest to
        the highest value, so the spread is visible.
    ax : matplotlib Axes, optional
        Drawn on the current axes by default.
    label : str, optional
        Legend entry for this series.
    annotate : bool, default True
        Write each point's name next to it.
    **style
        Passed to ``ax.errorbar`` (``marker``, ``color``, ``linestyle``...).

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if ax is None:
        ax = plt.gca()
    if not points:
        raise ValueError("plot_accuracy_vs_bytes needs at least one (name, bytes, accuracy) point")
    names = [p[0] for p in points]
    nbytes = np.array([float(p[1]) for p in points])
    accs = [np.atleast_1d(np.asarray(p[2], dtype=float)) * 100.0 for p in points]
    mean = np.array([a.mean() for a in accs])
    below = mean - np.array([a.min() for a in accs])
    above = np.array([a.max() for a in accs]) - mean
    style = {"marker": "o", "linestyle": "-", "capsize": 3, **style}
    # yerr as plain lists: matplotlib probes its elements with math.isfinite,
    # which NumPy deprecates for the length-1 arrays a single point gives.
    ax.errorbar(nbytes, mean, yerr=[below.tolist(), above.tolist()], label=label, **style)
    if annotate:
        for name, x, y in zip(names, nbytes, mean):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -11), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.15)  # room for the labels of the outermost points
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(v)))
    ax.set_xlabel("size (bytes, log scale)")
    ax.set_ylabel("held-out accuracy (%)")
    if label is not None:
        ax.legend()
    return ax
