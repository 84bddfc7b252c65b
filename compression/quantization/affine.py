"""Uniform (affine) quantization as array math: ranges, scales, zero-points, rounding.

A ``b``-bit uniform quantizer maps a real number ``x`` to an integer ``q``
on a grid of ``2^b`` levels, and back (Jacob et al. 2018, "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", eq. 1)::

    q     = clip(round(x / scale) + zero_point, qmin, qmax)      (quantize)
    x_hat = (q - zero_point) * scale                             (dequantize)

* ``scale`` (a positive float) is the step between two levels;
* ``zero_point`` (an integer in ``[qmin, qmax]``) is the integer that
  represents the real 0 exactly, so zero padding and ReLU zeros are exact.

Inside the range, rounding moves ``x`` by at most half a step:
``|x_hat - x| <= scale / 2``. Outside, values are clipped to the nearest end.

Which integers (:func:`qrange`):

==========================  ======================================  ============
range                       integers                                8 bits
==========================  ======================================  ============
unsigned (affine)           ``0 .. 2^b - 1``                        0 .. 255
signed (symmetric)          ``-2^(b-1) .. 2^(b-1) - 1``             -128 .. 127
signed, narrow              ``-(2^(b-1) - 1) .. 2^(b-1) - 1``       -127 .. 127
==========================  ======================================  ============

How the scale comes from a range ``[x_min, x_max]`` (:func:`qparams`,
PyTorch's ``MinMaxObserver``): the range is first widened to include 0, then

* affine: ``scale = (x_max - x_min) / (qmax - qmin)``,
  ``zero_point = qmin - round(x_min / scale)``, clamped to the range;
* symmetric: ``scale = max(-x_min, x_max) / ((qmax - qmin) / 2)``,
  ``zero_point = 0`` (for 8 bits: ``max|x| / 127.5``; narrow: ``/ 127``).

A common tutorial mistake is ``scale = 2^b / max|w|`` (the reciprocal): with
it ``round(w / scale)`` is 0 for every weight and the network outputs a
constant. Another is forgetting the zero-point of an asymmetric range, which
shifts every dequantized value by ``zero_point * scale``. Lesson 05 runs both.

Computation is in float32 and rounds half to even, as PyTorch does, so the
numbers agree with ``torch.fake_quantize_per_tensor_affine`` and
``fake_quantize_per_channel_affine`` bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.storage.quantized import dequantize

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "check_axis",
    "check_scale",
    "dequantize",
    "fake_quantize",
    "pow2_scale",
    "qparams",
    "qrange",
    "quantize",
    "ste_mask",
]

#: Bit widths of the uniform grid (1-bit and ternary weights live in ``binary.py``).
MIN_BITS = 2
MAX_BITS = 16
_EPS32 = np.finfo(np.float32).eps


def check_bits(bits: Any) -> int:
    """Return ``bits`` as an int after checking it lies in ``MIN_BITS .. MAX_BITS``."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise TypeError(f"bits must be an integer, got {type(bits).__name__} {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        hint = " (1-bit and ternary weights: compression.quantization.binary)" if bits < 2 else ""
        raise ValueError(f"bits must lie in {MIN_BITS}..{MAX_BITS}, got {bits}{hint}")
    return int(bits)


def qrange(bits: int, signed: bool = False, narrow_range: bool = False) -> tuple[int, int]:
    """The integers ``(qmin, qmax)`` of a ``bits``-bit grid.

    >>> qrange(8), qrange(8, signed=True), qrange(8, signed=True, narrow_range=True)
    ((0, 255), (-128, 127), (-127, 127))
    >>> qrange(3, signed=True)
    (-4, 3)

    ``narrow_range`` drops the lowest integer: ``-127 .. 127`` is symmetric
    around 0 (Jacob et al.'s int8 weights); unsigned narrow is ``1 .. 2^b - 1``.
    """
    bits = check_bits(bits)
    if signed:
        qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        qmin, qmax = 0, (1 << bits) - 1
    return (qmin + 1, qmax) if narrow_range else (qmin, qmax)


def pow2_scale(scale: Any) -> np.ndarray:
    """Round scales *up* to powers of two: ``2^ceil(log2(scale))``.

    With a power-of-two scale ``2^-n`` the quantizer is fixed-point
    arithmetic, ``q = round(x * 2^n)``, and rescaling is a bit shift, which
    hardware likes. Rounding up keeps the whole range representable; the
    price is a step up to twice as coarse as the free scale.

    >>> pow2_scale([0.3, 0.25, 0.0039])
    array([0.5       , 0.25      , 0.00390625], dtype=float32)
    """
    scale = check_scale(scale)
    return np.exp2(np.ceil(np.log2(scale))).astype(np.float32)


def qparams(
    x_min: Any,
    x_max: Any,
    bits: int,
    symmetric: bool = False,
    narrow_range: bool = False,
    power_of_two: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero-point that map ``[x_min, x_max]`` onto a ``bits``-bit grid.

    PyTorch ``MinMaxObserver.calculate_qparams`` semantics, in float32:

    1. widen the range to include 0: ``x_min <- min(x_min, 0)``, ``x_max <- max(x_max, 0)``;
    2. affine (unsigned ``[0, 2^b - 1]``)::

           scale      = (x_max - x_min) / (qmax - qmin)
           zero_point = clamp(qmin - round(x_min / scale), qmin, qmax)

       symmetric (signed ``[-2^(b-1), 2^(b-1) - 1]``)::

           scale      = max(-x_min, x_max) / ((qmax - qmin) / 2)
           zero_point = 0

    3. ``scale`` never below float32 eps (a constant-zero tensor still gets
       a valid quantizer).

    Parameters
    ----------
    x_min, x_max : float or ndarray of shape (C,)
        The range to cover; arrays give per-channel parameters.
    bits : int in 2..16
    symmetric : bool
        Signed grid with zero-point 0 (weights) instead of unsigned affine
        (activations after ReLU).
    narrow_range : bool
        Drop the lowest integer (``[-127, 127]`` at 8 bits).
    power_of_two : bool
        Round the scale up to a power of two (fixed point, see :func:`pow2_scale`).

    Returns
    -------
    scale : ndarray of float32, shape () or (C,)
    zero_point : ndarray of int64, same shape

    Examples
    --------
    >>> s, z = qparams(-1.0, 3.0, 8)           # 4 / 255 per step; 0 sits at 64
    >>> float(s), int(z)
    (0.01568627543747425, 64)
    >>> s, z = qparams(-1.0, 3.0, 8, symmetric=True)   # 3 / 127.5
    >>> float(s), int(z)
    (0.0235294122248888, 0)
    """
    bits = check_bits(bits)
    x_min = np.asarray(x_min, dtype=np.float32)
    x_max = np.asarray(x_max, dtype=np.float32)
    if x_min.shape != x_max.shape:
        raise ValueError(
            f"x_min and x_max must have one shape, got {x_min.shape} and {x_max.shape}"
        )
    if not (np.all(np.isfinite(x_min)) and np.all(np.isfinite(x_max))):
        raise ValueError("x_min and x_max must be finite (a diverged layer gives inf or nan)")
    if np.any(x_min > x_max):
        raise ValueError(f"x_min must not exceed x_max, got x_min={x_min} and x_max={x_max}")
    qmin, qmax = qrange(bits, signed=symmetric, narrow_range=narrow_range)
    x_min = np.minimum(x_min, np.float32(0))
    x_max = np.maximum(x_max, np.float32(0))
    if symmetric:
        half_levels = np.float32((qmax - qmin) / 2)
        scale = np.maximum(-x_min, x_max) / half_levels
    else:
        scale = (x_max - x_min) / np.float32(qmax - qmin)
    scale = np.maximum(scale, _EPS32).astype(np.float32)
    if power_of_two:
        scale = pow2_scale(scale)
    if symmetric:
        zero_point = np.zeros(scale.shape, dtype=np.int64)
    else:
        zero_point = qmin - np.round(x_min / scale).astype(np.int64)
        zero_point = np.clip(zero_point, qmin, qmax)
    return scale, zero_point


# ------------------------------------------------------------------- checks
def check_scale(scale: Any) -> np.ndarray:
    """Return ``scale`` as float32 after checking every entry is positive and finite."""
    scale = np.asarray(scale, dtype=np.float32)
    if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    return scale


def check_axis(x: np.ndarray, axis: int | None, channels: int) -> tuple[int, ...]:
    """The shape that broadcasts ``channels`` per-channel values along ``axis`` of ``x``.

    ``axis=None`` needs a single value (per tensor) and returns ``()``.
    """
    if axis is None:
        if channels != 1:
            raise ValueError(f"per-tensor quantization needs one scale, got {channels}")
        return ()
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} does not exist for an input of shape {x.shape}")
    axis = axis % x.ndim
    if x.shape[axis] != channels:
        raise ValueError(
            f"per-channel quantization along axis {axis} needs {x.shape[axis]} scales and "
            f"zero-points (input shape {x.shape}), got {channels}"
        )
    shape = [1] * x.ndim
    shape[axis] = channels
    return tuple(shape)


def _prepare(
    x: Any, scale: Any, zero_point: Any, qmin: int, qmax: int, axis: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the arguments and broadcast scale and zero-point against ``x``."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    scale = check_scale(scale).reshape(-1)
    zero_point = np.asarray(zero_point, dtype=np.int64).reshape(-1)
    if zero_point.size != scale.size:
        raise ValueError(
            f"scale and zero_point must have as many entries, got {scale.size} and "
            f"{zero_point.size}"
        )
    if not qmin < qmax:
        raise ValueError(f"qmin must be below qmax, got qmin={qmin} and qmax={qmax}")
    if np.any(zero_point < qmin) or np.any(zero_point > qmax):
        raise ValueError(f"zero_point must lie in [{qmin}, {qmax}], got {zero_point}")
    shape = check_axis(x, axis, scale.size)
    return x, scale.reshape(shape), zero_point.reshape(shape)


def _unclipped(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """``round(x * (1 / scale)) + zero_point`` before clipping, in ``x``'s dtype.

    PyTorch multiplies by the float32 reciprocal of the scale rather than
    dividing; the two differ in the last bit for some inputs, which now and
    then decides a rounding tie. We do what PyTorch does.
    """
    inv_scale = (np.float32(1) / scale).astype(x.dtype)
    return np.round(x * inv_scale) + zero_point.astype(x.dtype)


# ------------------------------------------------------------- the quantizer
def quantize(
    x: Any,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> np.ndarray:
    """Integers ``q = clip(round(x / scale) + zero_point, qmin, qmax)``, int64.

    Parameters
    ----------
    x : ndarray of float, any shape
    scale : float or ndarray of shape (C,)
        Positive; one per channel along ``axis`` for per-channel quantization.
    zero_point : int or ndarray of int, shape (C,)
    qmin, qmax : int
        The integer range (:func:`qrange`).
    axis : int or None
        Channel axis of per-channel parameters (0 for a ``Linear`` or
        ``Conv2d`` weight: one scale per output unit).

    >>> quantize([-1.0, 0.0, 0.1, 3.0, 9.0], 4 / 255, 64, 0, 255)
    array([  0,  64,  70, 255, 255])
    """
    x, scale, zero_point = _prepare(x, scale, zero_point, qmin, qmax, axis)
    return np.clip(_unclipped(x, scale, zero_point), qmin, qmax).astype(np.int64)


def fake_quantize(
    x: Any,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> np.ndarray:
    """Quantize and dequantize in one step: the float value the integer stands for.

    ``(clip(round(x * (1/scale)) + zero_point, qmin, qmax) - zero_point) * scale``,
    in ``x``'s dtype (PyTorch ``fake_quantize_per_tensor_affine`` and, with
    ``axis``, ``fake_quantize_per_channel_affine``). Training sees these
    values in the forward pass; the gradient is the straight-through
    estimator of :func:`ste_mask`.

    >>> fake_quantize([-0.26, 0.1, 0.74, 2.0], 0.25, 0, -2, 1)   # 2-bit signed grid
    array([-0.25,  0.  ,  0.25,  0.25])
    """
    x, scale, zero_point = _prepare(x, scale, zero_point, qmin, qmax, axis)
    q = np.clip(_unclipped(x, scale, zero_point), qmin, qmax)
    return ((q - zero_point.astype(x.dtype)) * scale.astype(x.dtype)).astype(x.dtype, copy=False)


def ste_mask(
    x: Any,
    scale: Any,
    zero_point: Any,
    qmin: int,
    qmax: int,
    axis: int | None = None,
) -> np.ndarray:
    """Where the straight-through gradient passes: the rounded integer lies in ``[qmin, qmax]``.

    ``round`` has derivative 0 almost everywhere, which would stop all
    learning; the straight-through estimator (Bengio et al. 2013) treats it
    as the identity instead, but only inside the range, where the quantizer
    follows ``x``; where it clips, the output does not move with ``x`` and
    the gradient is 0::

        dL/dx = dL/dx_hat * 1[qmin <= round(x / scale) + zero_point <= qmax]

    This is PyTorch's rule (``fake_quantize_per_tensor_affine``'s backward).

    >>> ste_mask([-0.26, 0.1, 0.74, 2.0], 0.25, 0, -2, 1)
    array([ True,  True, False, False])
    """
    x, scale, zero_point = _prepare(x, scale, zero_point, qmin, qmax, axis)
    q = _unclipped(x, scale, zero_point)
    return (q >= qmin) & (q <= qmax)
