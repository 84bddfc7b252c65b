"""Calibration: choosing the range an activation quantizer covers, by clipping.

Min-max calibration (``compression.quantization.MinMaxObserver``) covers
everything it saw. One outlier then stretches the range, and with it the
quantizer's step: on a ``b``-bit grid over ``[0, T]`` the step is
``T / (2^b - 1)``, so the rounding error of every *ordinary* value grows
with ``T``. Clipping at a smaller ``T`` trades a large error on a few
values (those beyond ``T``, which all become ``T``) for a smaller error on
all the others. The methods here choose ``T`` from the data:

===============================  =================================================
method                           threshold ``T``
===============================  =================================================
min-max                          ``max |x|`` (``MinMaxObserver``, the baseline)
:class:`PercentileObserver`      the ``p``-th percentile of ``|x|`` (99.99)
:class:`MSEObserver`             the candidate that minimises the mean squared
                                 error of the actual ``b``-bit quantizer on the
                                 observed data
``aciq.ACIQObserver``            ``alpha* = k(b) * scale``: the analytic optimum
                                 for Laplace or Gaussian data
``entropy.KLObserver``           TensorRT's entropy (KL-divergence) calibration
===============================  =================================================

How they plug in. They are observers (:class:`~compression.quantization.Observer`):
``calibrate`` and ``quantize_activations(model, x, bits, observer=MSEObserver)``
use them unchanged. Each keeps a histogram of what it saw and chooses its
range when the quantizer asks for one at a given bit width (see
``histogram.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compression.clipping.histogram import (
    DEFAULT_BINS,
    TOP_SLACK,
    ClippingObserver,
    clipped_range,
)
from compression.quantization.affine import fake_quantize, qparams, qrange
from compression.quantization.observers import register_observer

__all__ = [
    "MSEObserver",
    "PercentileObserver",
    "mse_search",
    "percentile_threshold",
    "quantization_mse",
]


# -------------------------------------------------------------- array math
def percentile_threshold(counts: np.ndarray, bin_width: float, percentile: float) -> float:
    """The ``percentile``-th percentile of a histogram over ``[0, len(counts) * bin_width]``.

    The first bin ``j`` where the cumulative count reaches
    ``percentile / 100 * total`` holds the answer; inside it the values are
    taken as spread evenly (linear interpolation)::

        T = (j + (target - cdf[j - 1]) / counts[j]) * bin_width

    Parameters
    ----------
    counts : ndarray of shape (bins,)
    bin_width : float
    percentile : float in (0, 100]

    >>> percentile_threshold(np.array([2, 2, 2, 2]), 1.0, 50)   # half the mass lies below 2
    2.0
    >>> percentile_threshold(np.array([2, 2, 2, 2]), 1.0, 100)
    4.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    percentile = _check_percentile(percentile)
    total = counts.sum()
    if total <= 0:
        raise ValueError("percentile of an empty histogram: observe some data first")
    target = percentile / 100.0 * total
    cdf = np.cumsum(counts)
    j = min(int(np.searchsorted(cdf, target, side="left")), len(counts) - 1)
    before = cdf[j] - counts[j]
    fraction = (target - before) / counts[j] if counts[j] > 0 else 1.0
    return float((j + min(max(fraction, 0.0), 1.0)) * bin_width)


def quantization_mse(
    x: np.ndarray,
    x_min: float,
    x_max: float,
    bits: int,
    weights: np.ndarray | None = None,
    symmetric: bool = False,
    narrow_range: bool = False,
    power_of_two: bool = False,
) -> float:
    """Mean squared error of quantizing ``x`` on the ``bits``-bit grid over ``[x_min, x_max]``.

    ``mean((x - fake_quantize(x, scale, zero_point, qmin, qmax))^2)`` with
    ``(scale, zero_point) = qparams(x_min, x_max, bits, ...)``: the real
    quantizer of ``ActivationQuantize``, rounding and clipping included.
    ``weights`` (counts of a histogram) make it a weighted mean.

    >>> x = np.array([0.0, 1.0, 2.0, 3.0, 30.0])
    >>> quantization_mse(x, 0.0, 3.0, bits=2)      # grid 0, 1, 2, 3: only 30 -> 3 errs
    145.8
    """
    scale, zero_point = qparams(x_min, x_max, bits, symmetric, narrow_range, power_of_two)
    qmin, qmax = qrange(bits, signed=symmetric, narrow_range=narrow_range)
    x = np.asarray(x, dtype=np.float64)
    x_hat = fake_quantize(x.astype(np.float32), scale, zero_point, qmin, qmax)
    return float(np.average((x - x_hat) ** 2, weights=weights))


def mse_search(
    x: np.ndarray,
    thresholds: np.ndarray,
    bits: int,
    weights: np.ndarray | None = None,
    x_min: float | None = None,
    x_max: float | None = None,
    symmetric: bool = False,
    narrow_range: bool = False,
    power_of_two: bool = False,
) -> tuple[float, np.ndarray]:
    """The clipping threshold with the smallest :func:`quantization_mse`, among ``thresholds``.

    A threshold ``T`` clips the range ``[x_min, x_max]`` (the data's
    extremes unless given) to ``[clip(x_min, -T, T), clip(x_max, -T, T)]``
    (:func:`clipped_range`); the smallest error wins (the first of equal ones)::

        T* = argmin_T  mean((x - Q_T(x))^2)

    Returns
    -------
    best : float
    mses : ndarray, shape (len(thresholds),)
        The error of every candidate (to draw the curve).

    >>> x = np.array([1.0, 2.0, 3.0] * 100 + [30.0])
    >>> best, mses = mse_search(x, [3.0, 6.0, 30.0], bits=2)
    >>> best, np.round(mses, 2)            # clip the one outlier: 27^2 / 301
    (3.0, array([2.42, 2.58, 4.65]))
    """
    x = np.asarray(x, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or np.any(thresholds < 0):
        raise ValueError(f"thresholds must be a non-empty array of values >= 0, got {thresholds}")
    lo = float(x.min()) if x_min is None else float(x_min)
    hi = float(x.max()) if x_max is None else float(x_max)
    mses = np.array(
        [
            quantization_mse(
                x, *clipped_range(lo, hi, t), bits, weights, symmetric, narrow_range, power_of_two
            )
            for t in thresholds
        ]
    )
    return float(thresholds[int(np.argmin(mses))]), mses


def _check_percentile(percentile: Any) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, int | float | np.number):
        raise TypeError(f"percentile must be a number, got {type(percentile).__name__}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    return float(percentile)


# -------------------------------------------------------------- the observers
@register_observer
class PercentileObserver(ClippingObserver):
    """Clip at a percentile of ``|x|``: ``T = percentile_p(|x|)`` (default ``p = 99.99``).

    The simplest clipping rule: ignore the top ``100 - p`` percent of
    magnitudes, whatever the bit width (McKinstry et al. 2019 and NVIDIA's
    ``pytorch-quantization`` use 99.9 to 99.999). ``p = 100`` is min-max.
    Computed from the histogram by :func:`percentile_threshold`.

    Parameters
    ----------
    percentile : float in (0, 100], default 99.99
    bins : int, default 2048

    >>> obs = PercentileObserver(percentile=90.0, bins=100)
    >>> obs.observe(np.linspace(0.0, 100.0, 100_001))   # evenly spread over [0, 100]
    >>> [round(float(v), 2) for v in obs.range()]         # 90% of them lie below 90
    [0.0, 90.0]
    """

    def __init__(self, percentile: float = 99.99, bins: int = DEFAULT_BINS) -> None:
        self.percentile = _check_percentile(percentile)
        super().__init__(bins)

    def threshold(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> float:
        counts = self.histogram.sum(axis=0)
        return percentile_threshold(counts, float(self.bin_width), self.percentile)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "percentile": self.percentile}


@register_observer
class MSEObserver(ClippingObserver):
    """Clip where the quantizer's mean squared error on the observed data is smallest.

    Every bin edge ``T = k * bin_width`` up to ``max|x|`` is a candidate; for
    each, the observed values (bin centres weighted by their counts) go
    through the actual ``bits``-bit quantizer over the clipped range, and
    the candidate with the smallest error wins (:func:`mse_search`)::

        T* = argmin_T  sum_j n_j (c_j - Q_T(c_j))^2 / sum_j n_j

    It depends on the bit width, and on the grid (signed or not, narrow or
    not), which it simulates exactly. PyTorch's ``HistogramObserver``
    searches the same kind of error over its histogram.

    **Two-sided search** (``two_sided=True``). One threshold clips both ends
    by the same amount, but data with both signs, such as logits, are rarely
    symmetric: a long negative tail and a short positive one. On an affine
    grid (``symmetric=False``) the two ends can move separately, so starting
    from ``[-T*, T*]`` the search then minimises over the upper end with the
    lower one fixed, the lower with the upper fixed, and repeats until
    neither moves (coordinate descent over the same candidate edges)::

        hi <- argmin_h  mse(lo, h);   lo <- argmin_l  mse(l, hi);   ...

    Each step only accepts a smaller error, so the result is never worse
    than the one-threshold search; it is a local optimum of the search over
    all (lower, upper) pairs, not always the best pair (within 1% of it in
    the tests), at a cost of a few hundred error evaluations instead of
    hundreds of thousands. Data of one sign (ReLU outputs) and
    symmetric grids are unaffected. Off by default so that a saved
    quantizer reloads with the range it was saved with.

    Parameters
    ----------
    bins : int, default 2048
    max_candidates : int, default 512
        At most this many candidates, evenly spaced bin edges (every edge
        when the data span fewer bins).
    two_sided : bool, default False
        Search the lower and upper end separately for signed data.

    >>> obs = MSEObserver(bins=64)
    >>> obs.observe(np.array([1.0, 2.0, 3.0] * 100 + [30.0]))
    >>> [round(float(obs.range(bits)[1]), 2) for bits in (2, 8)]   # clip hard at 2 bits, not at 8
    [8.91, 30.0]

    Data of both signs, 900 values in [-12, 0] and 100 in [0, 4], at 3 bits:
    one threshold can only trim the long end; two-sided also trims the
    short, sparse one, where fewer values pay for the clipping:

    >>> x = np.concatenate([np.linspace(-12.0, 0.0, 900), np.linspace(0.0, 4.0, 100)])
    >>> for two_sided in (False, True):
    ...     obs = MSEObserver(bins=256, two_sided=two_sided)
    ...     obs.observe(x)
    ...     print([round(float(v), 2) for v in obs.range(3)])
    [-11.2, 4.0]
    [-11.2, 1.92]
    """

    #: Upper bound on the rounds of the two-sided search (each round moves both ends).
    MAX_ROUNDS = 8

    def __init__(
        self, bins: int = DEFAULT_BINS, max_candidates: int = 512, two_sided: bool = False
    ) -> None:
        if isinstance(max_candidates, bool) or not isinstance(max_candidates, int | np.integer):
            raise TypeError(f"max_candidates must be an integer, got {max_candidates!r}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
        if not isinstance(two_sided, bool | np.bool_):
            raise TypeError(f"two_sided must be True or False, got {two_sided!r}")
        self.max_candidates = int(max_candidates)
        self.two_sided = bool(two_sided)
        super().__init__(bins)

    def candidates(self) -> np.ndarray:
        """The thresholds tried: bin edges up to ``max|x|``, and ``max|x|`` itself."""
        top = max(abs(float(self.min_val)), abs(float(self.max_val)))
        width = float(self.bin_width)
        if width == 0:
            return np.array([top])
        n_edges = int(np.ceil(top / width - TOP_SLACK))
        stride = max(1, int(np.ceil(n_edges / self.max_candidates)))
        edges = np.arange(stride, n_edges, stride) * width
        return np.append(edges, top)

    def error_function(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> Callable[[float, float], float]:
        """``error(x_min, x_max)``: the quantity the search minimises on this grid.

        Here the mean squared error over the histogram
        (:func:`quantization_mse`); a subclass may measure another error of
        the same range (``logits.CrossEntropyObserver``: the softmax's).
        """
        values, counts = self.signed_values()

        def error(x_min: float, x_max: float) -> float:
            return quantization_mse(
                values, x_min, x_max, bits, counts, symmetric, narrow_range, power_of_two
            )

        return error

    def threshold(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> float:
        """The candidate ``T`` whose range ``clipped_range(min, max, T)`` errs least."""
        error = self.error_function(bits, symmetric, narrow_range, power_of_two)
        x_min, x_max = float(self.min_val), float(self.max_val)
        candidates = self.candidates()
        errors = [error(*clipped_range(x_min, x_max, t)) for t in candidates]
        return float(candidates[int(np.argmin(errors))])

    def clip_range(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> tuple[float, float]:
        """The one-threshold range, then (``two_sided``, signed data) each end searched alone."""
        lo, hi = super().clip_range(bits, symmetric, narrow_range, power_of_two)
        x_min, x_max = float(self.min_val), float(self.max_val)
        if not self.two_sided or symmetric or not x_min < 0 < x_max:
            return lo, hi
        error = self.error_function(bits, symmetric, narrow_range, power_of_two)
        edges = self.candidates()
        uppers = np.append(edges[edges < x_max], x_max)
        lowers = np.append(-edges[-edges > x_min], x_min)
        best = error(lo, hi)
        for _ in range(self.MAX_ROUNDS):
            moved = False
            errors = [error(lo, h) for h in uppers]
            i = int(np.argmin(errors))
            if errors[i] < best:
                best, hi, moved = errors[i], float(uppers[i]), True
            errors = [error(a, hi) for a in lowers]
            i = int(np.argmin(errors))
            if errors[i] < best:
                best, lo, moved = errors[i], float(lowers[i]), True
            if not moved:
                break
        return lo, hi

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_candidates": self.max_candidates,
            "two_sided": self.two_sided,
        }
