"""The histogram that clipping observers keep, and the range they choose from it.

An observer only sees data; the bit width becomes known later, when the
quantizer asks for ``qparams(bits, ...)``, and the best clipping level
depends on it (4 bits clip much harder than 8). So a clipping observer
records a histogram while observing and chooses the range in
:meth:`ClippingObserver.range` ``(bits, ...)`` (which ``qparams`` calls),
once per grid.

The histogram. Each batch's ``|x|`` is counted into ``bins`` equal bins
over ``[0, bins * bin_width]``, separately for ``x >= 0`` (row 0) and
``x < 0`` (row 1). The first batch sets ``bin_width = max|x| / bins``. A
later batch that reaches beyond the last bin *doubles* the bin width until
it fits, merging neighbouring bins in pairs (:func:`merge_bins`). That
is exact, every count stays in the bin that holds its value, with one
exception: a value exactly on the old top edge (the last bin is closed on
the right) stays just below it. The price: up to half the bins may end
up above the largest value.

The histogram is the observer's saved state (with the minimum and
maximum), so a saved ``ActivationQuantize`` that names the observer
reloads and chooses the same range. :func:`bake_ranges` replaces it with
the two numbers of the chosen range when only those should be stored.

The methods themselves: ``calibration`` (percentile, MSE search), ``aciq``,
``entropy`` (KL).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from compression.quantization.affine import check_bits, qparams
from compression.quantization.fake_quant import ActivationQuantize
from compression.quantization.observers import MinMaxObserver, Observer
from tinynet.module import Module

__all__ = ["DEFAULT_BINS", "ClippingObserver", "bake_ranges", "clipped_range", "merge_bins"]

DEFAULT_BINS = 2048  # TensorRT's histogram size
TOP_SLACK = 1e-9  # relative rounding slack at the top edge of the histogram


def merge_bins(counts: np.ndarray, factor: int) -> np.ndarray:
    """Sum every ``factor`` neighbouring bins (along the last axis) and pad with zeros.

    The histogram's bin width grows by ``factor``; the number of bins stays.

    >>> merge_bins(np.array([1, 2, 3, 4, 5]), 2)
    array([3, 7, 5, 0, 0])
    """
    counts = np.asarray(counts)
    bins = counts.shape[-1]
    merged = np.add.reduceat(counts, np.arange(0, bins, factor), axis=-1)
    out = np.zeros_like(counts)
    out[..., : merged.shape[-1]] = merged
    return out


def clipped_range(x_min: float, x_max: float, threshold: float) -> tuple[float, float]:
    """The range ``[x_min, x_max]`` clipped to ``[-T, T]``: ``(clip(x_min, -T, T), clip(x_max, -T, T))``.

    >>> clipped_range(-1.0, 30.0, 3.0), clipped_range(5.0, 30.0, 3.0)
    ((-1.0, 3.0), (3.0, 3.0))
    """
    t = float(threshold)
    return min(max(float(x_min), -t), t), min(max(float(x_max), -t), t)


# ---------------------------------------------------------- the base class
class ClippingObserver(Observer):
    """Base class: a histogram of ``|x|`` while observing, a clipped range on demand.

    Subclasses implement :meth:`threshold` (a symmetric threshold ``T`` on
    ``|x|``; the observed range is clipped to ``[-T, T]`` by
    :func:`clipped_range`) or, for ranges of another shape,
    :meth:`clip_range`. Per tensor only.

    Made for post-training calibration: the histogram counts every batch
    ever observed, and the range is searched again after each one. For
    quantization-aware training keep ``MovingAverageMinMaxObserver``, or
    learn the range (``PACT``, ``LSQ``).

    Parameters
    ----------
    bins : int, default 2048
        Histogram bins (TensorRT uses 2048).

    Attributes
    ----------
    min_val, max_val : ndarray of float32, shape ()
        The extremes seen (as ``MinMaxObserver``).
    histogram : ndarray of int64, shape (2, bins)
        Counts of ``x >= 0`` (row 0) and of ``x < 0`` (row 1), binned by ``|x|``.
    bin_width : ndarray of float64, shape ()
        0 until a non-zero value has been seen.
    """

    state_names: ClassVar[tuple[str, ...]] = ("min_val", "max_val", "histogram", "bin_width")

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self._ranges: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        super().__init__(axis=None, channels=None)

    def reset(self) -> None:
        super().reset()
        self.histogram = np.zeros((2, self.bins), dtype=np.int64)
        self.bin_width = np.zeros((), dtype=np.float64)
        self._ranges = {}

    # ------------------------------------------------------------- observing
    def observe(self, x: np.ndarray) -> None:
        """Count one batch into the histogram (an empty batch is ignored)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{type(self).__name__} observed inf or nan (a diverged layer?)")
        self.min_val = np.asarray(min(float(self.min_val), x.min()), dtype=np.float32)
        self.max_val = np.asarray(max(float(self.max_val), x.max()), dtype=np.float32)
        magnitude = np.abs(x)
        self._fit_width(float(magnitude.max()))
        width = float(self.bin_width)
        if width > 0:
            index = np.minimum((magnitude / width).astype(np.int64), self.bins - 1)
        else:  # everything seen so far is exactly 0
            index = np.zeros(x.size, dtype=np.int64)
        negative = x < 0
        self.histogram[0] += np.bincount(index[~negative], minlength=self.bins)
        self.histogram[1] += np.bincount(index[negative], minlength=self.bins)
        self._ranges.clear()

    def _fit_width(self, top: float) -> None:
        """Make the histogram reach ``top``: set the width, or double it (merging pairs)."""
        if top <= 0:
            return
        width = float(self.bin_width)
        if width == 0:  # the first non-zero batch; earlier zeros stay in bin 0
            self.bin_width = np.asarray(top / self.bins, dtype=np.float64)
            return
        factor = 1
        while top > width * factor * self.bins * (1 + TOP_SLACK):
            factor *= 2
        if factor > 1:
            self.histogram = merge_bins(self.histogram, factor)
            self.bin_width = np.asarray(width * factor, dtype=np.float64)

    # --------------------------------------------------------- the histogram
    @property
    def count(self) -> int:
        """How many values have been observed."""
        return int(self.histogram.sum())

    def centers(self) -> np.ndarray:
        """Bin centres ``(j + 1/2) * bin_width``, shape (bins,)."""
        return (np.arange(self.bins) + 0.5) * float(self.bin_width)

    def signed_values(self) -> tuple[np.ndarray, np.ndarray]:
        """The histogram as ``(values, counts)``: ``+centre`` for row 0, ``-centre`` for row 1.

        Empty bins are left out. Every value of a bin is represented by its
        centre (an error of at most half a bin width).
        """
        values = np.concatenate([self.centers(), -self.centers()])
        counts = self.histogram.reshape(-1)
        keep = counts > 0
        return values[keep], counts[keep]

    # ---------------------------------------------------------- the range
    def threshold(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> float:
        """The clipping threshold ``T`` on ``|x|`` for this grid (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement threshold")

    def clip_range(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> tuple[float, float]:
        """The observed range clipped to ``[-T, T]``, ``T`` from :meth:`threshold`."""
        t = self.threshold(bits, symmetric, narrow_range, power_of_two)
        return clipped_range(float(self.min_val), float(self.max_val), t)

    def range(
        self,
        bits: int = 8,
        symmetric: bool = False,
        narrow_range: bool = False,
        power_of_two: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The clipped range ``(x_min, x_max)`` for a ``bits``-bit grid, float32 of shape ().

        Computed once per grid and kept until more data is observed.

        Raises
        ------
        ValueError
            If nothing has been observed (an empty calibration set), or
            ``bits`` is outside 2..16.
        """
        super().range()  # raises when nothing was observed
        key = (check_bits(bits), bool(symmetric), bool(narrow_range), bool(power_of_two))
        if key not in self._ranges:
            lo, hi = self.clip_range(*key)
            self._ranges[key] = (np.asarray(lo, np.float32), np.asarray(hi, np.float32))
        lo, hi = self._ranges[key]
        return lo.copy(), hi.copy()

    def qparams(
        self,
        bits: int,
        symmetric: bool = False,
        narrow_range: bool = False,
        power_of_two: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, zero_point)`` of the range this method chooses for ``bits`` bits."""
        x_min, x_max = self.range(bits, symmetric, narrow_range, power_of_two)
        return qparams(x_min, x_max, bits, symmetric, narrow_range, power_of_two)

    # ------------------------------------------------------ serialisation
    def get_config(self) -> dict[str, Any]:
        return {"bins": self.bins}

    def set_state(self, name: str, array: np.ndarray) -> None:
        super().set_state(name, array)
        self._ranges.clear()

    def __repr__(self) -> str:
        config = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        seen = f"{self.count} values in [{float(self.min_val)}, {float(self.max_val)}]"
        return f"{type(self).__name__}({config}; {seen if self.observed else 'nothing observed'})"


def bake_ranges(model: Module) -> int:
    """Replace each clipping observer inside an ``ActivationQuantize`` by its chosen range.

    After ``quantize_activations(..., observer=KLObserver)`` every quantizer
    keeps its observer's histogram (``2 * bins`` counts) as saved state.
    This puts in its place a ``MinMaxObserver`` holding the two numbers the
    method chose for that quantizer's grid, so ``state_dict`` and the
    compressed file store a range, as for min-max calibration. The
    outputs do not change. In place.

    Returns
    -------
    int
        How many quantizers were changed.
    """
    changed = 0
    for module in model.modules():
        for transform in module.output_transforms:
            if not isinstance(transform, ActivationQuantize):
                continue
            observer = transform.observer
            if not isinstance(observer, ClippingObserver):
                continue
            x_min, x_max = observer.range(
                transform.bits, transform.symmetric, transform.narrow_range, transform.power_of_two
            )
            fixed = MinMaxObserver()
            fixed.min_val, fixed.max_val = x_min, x_max
            transform.observer = fixed
            changed += 1
    return changed
