r"""ACIQ: the clipping level that minimises the expected quantization error, in closed form.

Banner, Nahshan and Soudry 2019, "Post training 4-bit quantization of
convolutional networks for rapid-deployment" (NeurIPS; ACIQ, "Analytical
Clipping for Integer Quantization"), sec. 3. Clip ``X`` to ``[-alpha, alpha]``
and round it on ``2^M`` levels, a step of ``Delta = 2 alpha / 2^M``. The
expected squared error has two parts:

* **clipping**, from the tails beyond ``alpha``::

      2 * integral_alpha^inf (x - alpha)^2 f(x) dx

* **rounding**, from everything inside: uniform noise of width ``Delta``,
  ``Delta^2 / 12 = alpha^2 / (3 * 4^M)`` (the paper's approximation, which
  counts the whole mass as inside).

For a **Laplace(0, b)** density ``f(x) = exp(-|x| / b) / (2b)`` the tail
integral is ``2 b^2 exp(-alpha / b)`` (substitute ``t = x - alpha``;
``integral_0^inf t^2 exp(-t/b) dt = 2 b^3``), so (the paper's eq. 5)::

    E[(X - Q(X))^2] ~ 2 b^2 exp(-alpha / b) + alpha^2 / (3 * 4^M)

Setting the derivative to zero, ``-2 b exp(-alpha/b) + 2 alpha / (3 * 4^M) = 0``,
gives ``alpha = 3 * 4^M * b * exp(-alpha / b)``: ``alpha* / b`` depends on
``M`` only. Solved numerically: 2.83, 3.90, 5.03 at ``M`` = 2, 3, 4 bits.

For a **Gaussian N(0, sigma^2)**, with ``erf`` the error function::

    E[(X - Q(X))^2] ~ (alpha^2 + sigma^2) * (1 - erf(alpha / (sqrt(2) sigma)))
                      - sqrt(2 / pi) * alpha * sigma * exp(-alpha^2 / (2 sigma^2))
                      + alpha^2 / (3 * 4^M)

whose minimum lies at 1.71, 2.15, 2.56 sigma (the paper's table: 1.71,
2.15, 2.55). The scale is estimated from the data: ``b = mean |x - mean(x)|``
for Laplace, ``sigma = std(x)`` for Gaussian, and the range is centred on
the mean: ``[mean - alpha, mean + alpha]``, cut to the observed extremes.

**Non-negative data** (ReLU outputs on an unsigned grid): the negative
half of the distribution is gone and the ``2^M`` levels cover
``[0, alpha]`` only, a step of ``alpha / 2^M``, as if ``[-alpha, alpha]``
had ``2^(M+1)`` levels. The error ``b^2 exp(-alpha/b) + alpha^2 / (24 * 4^M)``
(for half a Laplace) has its minimum at the ``(M+1)``-bit coefficient,
which is what the authors' code uses ("alpha_laplace_positive"), with the
range ``[0, max(mean, 0) + alpha]``.

The formula models a grid *without* an integer zero-point and with every
level used; a real integer grid (``qparams``) has ``2^M - 1`` steps over the
range and a zero that must be exact. The optimum on it moves by a few
percent (the lesson draws both); :func:`aciq_quantize` is the modelled
quantizer, ``calibration.quantization_mse`` the real one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compression.clipping.histogram import DEFAULT_BINS, ClippingObserver
from compression.quantization.affine import check_bits
from compression.quantization.observers import register_observer

__all__ = [
    "DISTRIBUTIONS",
    "ACIQObserver",
    "aciq_coefficient",
    "aciq_quantize",
    "gaussian_clipping_mse",
    "laplace_clipping_mse",
]

DISTRIBUTIONS = ("laplace", "gaussian")
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _check_m(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 1..32, got {bits!r}")
    return int(bits)


def laplace_clipping_mse(alpha: Any, b: float, bits: int) -> np.ndarray:
    """ACIQ's expected error for Laplace(0, b) data: ``2 b^2 e^(-alpha/b) + alpha^2 / (3 * 4^M)``.

    Parameters
    ----------
    alpha : float or ndarray
        Clipping levels (an array draws the whole curve).
    b : float
        The Laplace scale (``mean |x - mean|``).
    bits : int
        ``M``, levels ``2^M`` over ``[-alpha, alpha]``.

    >>> float(laplace_clipping_mse(2.83, 1.0, bits=2))     # clipping 0.1180 + rounding 0.1669
    0.28487...
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    m = _check_m(bits)
    return 2 * b**2 * np.exp(-alpha / b) + alpha**2 / (3 * 4.0**m)


def gaussian_clipping_mse(alpha: Any, sigma: float, bits: int) -> np.ndarray:
    """ACIQ's expected error for N(0, sigma^2) data (see the module docstring for the formula).

    >>> float(gaussian_clipping_mse(1.71, 1.0, bits=2))     # clipping 0.0262 + rounding 0.0609
    0.08714...
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    m = _check_m(bits)
    clipping = (alpha**2 + sigma**2) * (1 - _erf(alpha / (math.sqrt(2) * sigma)))
    clipping -= math.sqrt(2 / math.pi) * alpha * sigma * np.exp(-(alpha**2) / (2 * sigma**2))
    return clipping + alpha**2 / (3 * 4.0**m)


def aciq_coefficient(bits: int, distribution: str = "laplace") -> float:
    """``alpha* / scale``: where the expected error is smallest, for unit scale.

    Both error curves are convex in ``alpha`` (a decreasing convex tail
    term plus a parabola), so a golden-section search on ``[0, 64]`` finds
    the one minimum.

    >>> [round(aciq_coefficient(m), 2) for m in (2, 3, 4)]
    [2.83, 3.9, 5.03]
    >>> [round(aciq_coefficient(m, "gaussian"), 2) for m in (2, 3, 4)]
    [1.71, 2.15, 2.56]
    """
    mse = _mse_function(distribution)
    m = _check_m(bits)
    lo, hi = 0.0, 64.0
    ratio = (math.sqrt(5) - 1) / 2
    a, c = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fc = float(mse(a, 1.0, m)), float(mse(c, 1.0, m))
    while hi - lo > 1e-10:
        if fa < fc:
            hi, c, fc = c, a, fa
            a = hi - ratio * (hi - lo)
            fa = float(mse(a, 1.0, m))
        else:
            lo, a, fa = a, c, fc
            c = lo + ratio * (hi - lo)
            fc = float(mse(c, 1.0, m))
    return (lo + hi) / 2


def _mse_function(distribution: str) -> Any:
    if distribution == "laplace":
        return laplace_clipping_mse
    if distribution == "gaussian":
        return gaussian_clipping_mse
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def aciq_quantize(x: np.ndarray, alpha: float, bits: int) -> np.ndarray:
    """The quantizer ACIQ's formula models: clip to ``[-alpha, alpha]``, round to steps of ``2 alpha / 2^M``.

    ``Delta * round(clip(x, -alpha, alpha) / Delta)`` with ``Delta = 2 alpha / 2^M``
    (the authors' simulation, a mid-tread grid). Use it to check the
    formula by simulation; ``calibration.quantization_mse`` runs the real
    integer grid instead.

    >>> aciq_quantize(np.array([-3.0, -0.7, 0.3, 0.8, 5.0]), alpha=2.0, bits=2)   # step 1
    array([-2., -1.,  0.,  1.,  2.])
    """
    x = np.asarray(x, dtype=np.float64)
    delta = 2 * alpha / 2.0 ** _check_m(bits)
    return delta * np.round(np.clip(x, -alpha, alpha) / delta)


@register_observer
class ACIQObserver(ClippingObserver):
    """Clip at ACIQ's analytic optimum ``alpha* = k(M) * scale`` for the assumed distribution.

    From the histogram: ``mean``, and ``b = mean |x - mean|`` (Laplace) or
    ``sigma = std(x)`` (Gaussian). Then, at ``M`` bits:

    * data with negative values, or a signed grid:
      ``[max(x_min, mean - alpha), min(x_max, mean + alpha)]``,
      ``alpha = aciq_coefficient(M) * scale``;
    * non-negative data on an unsigned grid (ReLU outputs):
      ``[x_min, min(x_max, alpha)]`` with the ``(M+1)``-bit coefficient (see
      the module docstring), and the scale fitted to the *positive* values
      only (:meth:`positive_scale`).

    Why the positive values only: after a ReLU most values are exactly 0
    (95% in LeNet-5's second conv layer). Fitted on every value, as the
    authors' code does, ``b = mean |x - mean|`` comes out tiny, and
    ``alpha`` clips away nearly all the signal: 8-bit activations then cost
    LeNet-5 20 points. A rectified Laplace(0, b) is 0 with probability 1/2
    and otherwise exponential with mean ``b``, so the positive values alone
    measure ``b``, however many zeros there are.

    Parameters
    ----------
    distribution : {"laplace", "gaussian"}, default "laplace"
    bins : int, default 2048

    >>> obs = ACIQObserver(bins=512)
    >>> obs.observe(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, -40.0, 40.0]))
    >>> [round(float(v), 1) for v in obs.range(bits=2)]   # b = 12.29: alpha = 2.83 b
    [-34.7, 34.7]
    """

    def __init__(self, distribution: str = "laplace", bins: int = DEFAULT_BINS) -> None:
        _mse_function(distribution)  # checks the name
        self.distribution = distribution
        super().__init__(bins)

    def statistics(self) -> tuple[float, float]:
        """``(mean, scale)`` of the observed data, from the histogram."""
        values, counts = self.signed_values()
        mean = float(np.average(values, weights=counts))
        if self.distribution == "laplace":
            return mean, float(np.average(np.abs(values - mean), weights=counts))
        return mean, float(np.sqrt(np.average((values - mean) ** 2, weights=counts)))

    def positive_scale(self) -> float:
        """The scale of non-negative data from its positive part (bin 0 left out).

        Laplace: the positive values of a rectified Laplace(0, b) are
        exponential with mean ``b``; above the first bin (width ``w``) their
        mean is ``w + b`` (the exponential forgets where it starts), so
        ``b = mean(x | x > w) - w``. Gaussian: the positive half of
        N(0, sigma^2) has mean ``sigma * sqrt(2 / pi)``.
        """
        values, counts = self.signed_values()
        w = float(self.bin_width)
        above = values > w
        if not np.any(counts[above]):
            return self.statistics()[1]
        mean = float(np.average(values[above], weights=counts[above]))
        if self.distribution == "laplace":
            return max(mean - w, w)
        return mean * float(np.sqrt(np.pi / 2))

    def clip_range(
        self, bits: int, symmetric: bool, narrow_range: bool, power_of_two: bool
    ) -> tuple[float, float]:
        x_min, x_max = float(self.min_val), float(self.max_val)
        if x_max == x_min:
            return x_min, x_max
        positive = x_min >= 0 and not symmetric
        m = check_bits(bits) + (1 if positive else 0)
        if positive:
            alpha = aciq_coefficient(m, self.distribution) * self.positive_scale()
            return x_min, min(x_max, alpha)
        mean, scale = self.statistics()
        alpha = aciq_coefficient(m, self.distribution) * scale
        return max(x_min, mean - alpha), min(x_max, mean + alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "distribution": self.distribution}
