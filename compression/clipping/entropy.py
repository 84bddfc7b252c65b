"""Entropy (KL-divergence) calibration, as TensorRT does it (Migacz 2017).

Szymon Migacz, "8-bit Inference with TensorRT" (GTC 2017), the
"entropy calibration" slides. Quantizing is encoding: the quantized
tensor should lose as little *information* as possible about the float
one. So choose the threshold ``T`` whose quantized distribution ``Q`` is
closest to the float distribution ``P`` in Kullback-Leibler divergence::

    KL(P || Q) = sum_j P_j * log(P_j / Q_j)

The algorithm, on a histogram of ``|x|`` with 2048 bins and ``L`` levels
(``L = 128`` at 8 bits: the non-negative half of a signed int8 grid;
``2^(b-1)`` at ``b`` bits)::

    for i in L .. 2048:                         # candidate: keep the first i bins
        P = bins[0 .. i-1], with every count beyond (the outliers)
            added to P[i-1]                     # clipping sends them to the top
        Q = bins[0 .. i-1] merged into L groups of i // L bins (the last
            group takes the rest); each group's total spread evenly over
            its non-empty bins (an empty bin stays empty)
        normalise P and Q; smooth their zeros; divergence[i] = KL(P || Q)
    m = argmin divergence (the first, on ties)
    T = (m + 0.5) * bin_width                   # as the slides write it

``Q`` is what the ``L``-level quantizer can still tell apart: it keeps
only each group's total. A small ``i`` makes ``Q`` sharp but piles the
outliers onto ``P[i-1]``; a large ``i`` keeps them in place but blurs the
bulk of the distribution into coarse groups.

Smoothing: ``KL`` is infinite where ``P_j > 0`` and ``Q_j = 0`` (the top
bin of ``P`` holds outliers that ``Q`` does not). As MXNet's and ONNX
Runtime's implementations of this algorithm do, each zero entry gets
``eps = 1e-4`` of probability, taken from the non-zero entries; here they
are scaled by ``1 - eps * n_zero`` (MXNet subtracts an equal amount from
each, which can turn a tiny entry negative).

The slides' ``L = 128`` suits a *signed* grid, whose non-negative half has
128 integers. For non-negative data (ReLU outputs) on an unsigned grid
all ``2^b`` integers cover ``[0, T]``: ``levels="grid"`` uses ``L = 2^b``
there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.clipping.histogram import DEFAULT_BINS, ClippingObserver
from compression.quantization.observers import register_observer

__all__ = [
    "KLObserver",
    "kl_divergence",
    "kl_threshold",
    "quantize_distribution",
    "smooth_distribution",
]

LEVEL_RULES = ("tensorrt", "grid")
EPS = 1e-4


def quantize_distribution(p: np.ndarray, levels: int) -> np.ndarray:
    """Merge ``p`` into ``levels`` groups and spread each total over the group's non-empty bins.

    Groups are ``len(p) // levels`` bins wide; the last one takes whatever
    remains. Shape ``(len(p),)``, same total as ``p``.

    >>> quantize_distribution(np.array([5.0, 1.0, 3.0, 0.0]), levels=2)   # [5, 1] | [3, 0]
    array([3., 3., 3., 0.])
    >>> quantize_distribution(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), levels=2)   # [1, 2] | [3, 4, 5]
    array([1.5, 1.5, 4. , 4. , 4. ])
    """
    p = np.asarray(p, dtype=np.float64)
    if not 1 <= levels <= p.size:
        raise ValueError(f"levels must lie in 1..{p.size} (the number of bins), got {levels}")
    width = p.size // levels
    group = np.minimum(np.arange(p.size) // width, levels - 1)  # group of each bin
    totals = np.bincount(group, weights=p, minlength=levels)
    nonzero = p > 0
    n_nonzero = np.bincount(group, weights=nonzero, minlength=levels)
    spread = totals / np.maximum(n_nonzero, 1)
    return np.where(nonzero, spread[group], 0.0)


def smooth_distribution(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Normalise ``p`` to sum 1, give each zero entry ``eps``, scale the others by ``1 - eps * n_zero``.

    >>> smooth_distribution(np.array([3.0, 1.0, 0.0]), eps=0.01)
    array([0.7425, 0.2475, 0.01  ])
    """
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    if not total > 0:
        raise ValueError("cannot smooth a distribution with no mass")
    zero = p == 0
    n_zero = int(zero.sum())
    if eps * n_zero >= 1:
        raise ValueError(f"eps={eps} is too large for {n_zero} zero entries")
    return np.where(zero, eps, p / total * (1 - eps * n_zero))


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(P || Q) = sum_j P_j log(P_j / Q_j)`` of two normalised distributions (terms with P_j = 0 are 0).

    >>> round(kl_divergence(np.array([0.5, 0.5]), np.array([0.9, 0.1])), 4)
    0.5108
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def kl_threshold(
    counts: np.ndarray, levels: int, eps: float = EPS, start: int | None = None
) -> tuple[int, np.ndarray]:
    """TensorRT's search: the number of bins ``m`` to keep, and every candidate's divergence.

    Parameters
    ----------
    counts : ndarray, shape (bins,)
        Histogram of ``|x|``.
    levels : int
        ``L``, the quantized levels (128 at 8 bits).
    start : int, optional
        The smallest candidate ``i`` (default ``levels``; never below it).

    Returns
    -------
    m : int
        In ``levels .. bins``; the threshold is ``(m + 0.5) * bin_width``.
    divergences : ndarray, shape (bins + 1,)
        ``divergences[i]`` for each candidate ``i`` (``inf`` for the others).

    >>> m, kl = kl_threshold(np.array([5, 1, 3, 2, 0, 0, 0, 0]), levels=4)
    >>> m, float(kl[4])             # 4 bins hold everything: Q = P exactly at i = 4
    (4, 0.0)
    >>> bool(kl[8] > 0)             # i = 8 merges [5, 1] into one level: information lost
    True
    """
    counts = np.asarray(counts, dtype=np.float64)
    bins = counts.size
    if not 1 <= levels <= bins:
        raise ValueError(
            f"KL calibration needs at most as many levels as bins: {levels} levels, {bins} bins"
        )
    divergences = np.full(bins + 1, np.inf)
    beyond = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # beyond[i] = sum(counts[i:])
    first = levels if start is None else max(levels, min(int(start), bins))
    for i in range(first, bins + 1):
        kept = counts[:i]
        if not kept.any():
            continue  # everything lies beyond: Q would be empty
        p = kept.copy()
        p[i - 1] += beyond[i]  # the outliers, clipped to the top bin
        q = quantize_distribution(kept, levels)
        divergences[i] = kl_divergence(smooth_distribution(p, eps), smooth_distribution(q, eps))
    return int(np.argmin(divergences)), divergences


@register_observer
class KLObserver(ClippingObserver):
    """Entropy calibration: the threshold whose ``levels``-level histogram diverges least.

    See the module docstring for the algorithm (:func:`kl_threshold`) and
    ``T = (m + 0.5) * bin_width``. ``L`` at ``b`` bits is ``2^(b-1)``
    (``levels="tensorrt"``, 128 at 8 bits), or with ``levels="grid"`` the
    ``2^b`` integers of an unsigned grid when the data are non-negative.

    Two details of NVIDIA's own implementation (``pytorch-quantization``'s
    ``_compute_amax_entropy``), without which ReLU outputs calibrate to
    nonsense: the first bin's count is replaced by the second's before the
    search (after a ReLU most values are exactly 0; that spike would
    dominate ``P``, and a tiny threshold that keeps only the spike sharp
    would "win"), and the candidates start at bin ``bins / 16`` (128 of
    2048), so the threshold is never below 1/16 of the largest value.

    Parameters
    ----------
    bins : int, default 2048
    levels : {"tensorrt", "grid"}, default "tensorrt"
    zero_spike : bool, default True
        Replace the first bin's count by the second's (see above).

    Raises
    ------
    ValueError
        From ``range``/``qparams`` when ``L`` exceeds the number of bins
        (above 12 bits with 2048 bins).

    >>> obs = KLObserver(bins=8, zero_spike=False)
    >>> obs.observe(np.array([0.5] * 5 + [1.5] + [2.5] * 3 + [3.5] * 2 + [8.0]))
    >>> float(obs.range(bits=3)[1])       # L = 4: keep 4 bins of width 1, T = 4.5
    4.5
    """

    def __init__(
        self, bins: int = DEFAULT_BINS, levels: str = "tensorrt", zero_spike: bool = True
    ) -> None:
        if levels not in LEVEL_RULES:
            raise ValueError(f"levels must be one of {LEVEL_RULES}, got {levels!r}")
        self.levels = levels
        self.zero_spike = bool(zero_spike)
        super().__init__(bins)

    def n_levels(self, bits: int, symmetric: bool = False) -> int:
        """``L`` for a ``bits``-bit grid."""
        if self.levels == "grid" and float(self.min_val) >= 0 and not symmetric:
            return 1 << bits
        return 1 << (bits - 1)

    def threshold(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> float:
        n = self.n_levels(bits, symmetric)
        if n > self.bins:
            raise ValueError(
                f"KL calibration at {bits} bits compares {n} quantized levels, more than the "
                f"histogram's {self.bins} bins: use fewer bits or more bins"
            )
        counts = self.histogram.sum(axis=0).astype(np.float64)
        if self.zero_spike and counts.size > 1:
            counts[0] = counts[1]
        m, _ = kl_threshold(counts, n, start=self.bins // 16)
        return (m + 0.5) * float(self.bin_width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "levels": self.levels, "zero_spike": self.zero_spike}
