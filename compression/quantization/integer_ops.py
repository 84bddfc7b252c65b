"""Integer-only arithmetic: fixed-point rescaling and exact, fast integer matrix products.

This file is the array math of the integer engine (``integer.py``). Two
problems have to be solved before a network can run on integers alone.

1. Rescaling without floats (Jacob et al. 2018, Sec. 2.2)
----------------------------------------------------------
A layer multiplies integers ``q1 - Z1`` (input) by ``q2`` (weights) and
sums them into an int32 accumulator ``acc``. The real output is
``S1 * S2 * acc``; in the output's quantization ``(S3, Z3)`` it is the
integer ``round(acc * M) + Z3`` with the *real* multiplier::

    M = S1 * S2 / S3            (typically 1e-4 .. 1e-1)

Integer hardware has no float multiply, so ``M`` is written once, offline,
as a fixed-point number (:func:`quantize_multiplier`)::

    M = M0 * 2^-31 * 2^-shift,      M0 an int32 in [2^30, 2^31)

(``M0 / 2^31`` lies in [0.5, 1): Jacob et al.'s ``M = 2^-n M0``.) At run
time ``round(acc * M)`` is then one int32 x int32 -> int64 product and two
rounding shifts (:func:`rescale`), exactly as gemmlowp's
``SaturatingRoundingDoublingHighMul`` and ``RoundingDivideByPOT`` and
TensorFlow Lite's ``MultiplyByQuantizedMultiplier`` compute it.
:func:`rescale_reference` spells gemmlowp's code out on Python integers;
the tests check both agree on many random values, and that the result is
within 1 of the exact rational ``acc * M`` (two roundings; TensorFlow
Lite's single-rounding variant, ``rounding="single"``, is within 1/2).

2. Exact integer products at BLAS speed
---------------------------------------
NumPy's integer ``matmul`` does not use BLAS: it runs a plain loop (about
1 GFLOP/s here, against about 150 GFLOP/s for float32). Floats can hold
integers exactly, though:

* a float64 has a 53-bit significand: every integer of magnitude up to
  2^53 is exact, so a float64 matmul of integer-valued arrays is exact when
  no partial sum exceeds 2^53 -- but float64 BLAS runs at half float32's
  speed and moves twice the bytes;
* a float32 has a 24-bit significand: every integer of magnitude up to
  2^24 = 16,777,216 is exact. Adding two exact integers whose true sum is
  at most 2^24 in magnitude gives that sum exactly (it is representable,
  so rounding leaves it alone). So a float32 dot product of integers is
  exact whenever *every partial sum* stays within 2^24 -- in whatever
  order BLAS adds the terms (blocking, SIMD lanes, fused multiply-add),
  because any partial sum of ``k`` terms is bounded by ``k * max|a| * max|b|``.

With ``|a| <= A`` and ``|b| <= B`` a chunk of ``K_c`` terms is exact when
``K_c * A * B <= 2^24`` (:func:`exact_chunk_size`)::

    int8 x int8        A = B = 128     K_c = 2^24 / 2^14 = 1024
    (uint8 - Z) x int8 A = 255, B = 127   K_c = floor(2^24 / 32,385) = 518
    (uint8 - Z) x int8 A = 255, B = 128   K_c = 514   (255 * 128 * 512 < 2^24)

:func:`matmul_exact` splits the inner dimension ``K`` into such chunks,
multiplies each in float32 (BLAS), converts each chunk's result to an
integer array (exact) and adds the chunks in integers. LeNet layers have
``K <= 784``: one or two chunks. :func:`matmul_int64` is the plain integer
reference it is tested against, bit for bit.

References
----------
Jacob, Kligys, Chen, Zhu, Tang, Howard, Adam, Kalenichenko (2018).
Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference. CVPR. Sec. 2.2 (the multiplier), eq. 7.

gemmlowp (Google), ``fixedpoint/fixedpoint.h``:
``SaturatingRoundingDoublingHighMul``, ``RoundingDivideByPOT``; TensorFlow
Lite ``QuantizeMultiplier`` (``quantization_util.cc``) and
``MultiplyByQuantizedMultiplier``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "FLOAT32_EXACT",
    "INT32_MAX",
    "INT32_MIN",
    "ROUNDINGS",
    "exact_chunk_size",
    "matmul_exact",
    "matmul_int64",
    "quantize_multiplier",
    "rescale",
    "rescale_reference",
    "rounding_divide_by_pot_reference",
    "saturating_rounding_doubling_high_mul_reference",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: Every integer of magnitude up to 2^24 is exactly representable in float32.
FLOAT32_EXACT = 2**24


# ------------------------------------------------------ the fixed-point multiplier
def quantize_multiplier(M: Any) -> tuple[np.ndarray, np.ndarray]:
    """Write a positive real multiplier as ``M = M0 * 2^-31 * 2^-shift`` with an int32 ``M0``.

    ``np.frexp`` splits ``M = f * 2^e`` with ``f`` in [0.5, 1); then::

        M0    = round(f * 2^31)   in [2^30, 2^31]   (2^31 if f rounds up: M0 = 2^30, e += 1)
        shift = -e

    so ``M0 / 2^31`` is ``f`` to 31 bits (a relative error below 2^-31).

    * ``0 < M < 1`` (the usual case, ``S1*S2 < S3``): ``shift >= 0``, a
      right shift; ``M`` in [0.5, 1) gives ``shift = 0``.
    * ``M >= 1``: ``shift < 0`` means a *left* shift of the accumulator by
      ``-shift`` bits before the multiply (as TensorFlow Lite does), which
      :func:`rescale` saturates to int32.
    * ``M < 2^-32``: ``|acc * M| < 1/2`` for every int32 ``acc``, so the
      output is always 0: ``M0 = 0, shift = 0`` (TensorFlow Lite's rule too).

    ``round`` here is half up (``floor(f * 2^31 + 1/2)``; ``f * 2^31`` is
    exact in float64). TensorFlow Lite rounds half away from zero, the same
    thing for a positive number.

    Parameters
    ----------
    M : float or ndarray of float, shape (C,)
        Positive and finite, below 2^30 (one per output channel for
        per-channel weights). Computed in float64.

    Returns
    -------
    M0 : ndarray of int32, shape of ``M``
        In [2^30, 2^31), or 0 for ``M < 2^-32``.
    shift : ndarray of int64, shape of ``M``
        Right shift (negative: left shift), in -30..32.

    Examples
    --------
    >>> M0, shift = quantize_multiplier(0.75)       # 0.75 = 0.75 * 2^0
    >>> int(M0), int(shift), int(M0) == 3 * 2**29
    (1610612736, 0, True)
    >>> M0, shift = quantize_multiplier(0.0123)     # 0.0123 = 0.7872 * 2^-6
    >>> int(M0), int(shift)
    (1690499128, 6)
    """
    M = np.asarray(M, dtype=np.float64)
    if M.size == 0 or not np.all(np.isfinite(M)) or np.any(M <= 0):
        raise ValueError(f"the multiplier M = S1*S2/S3 must be positive and finite, got {M}")
    if np.any(M >= 2.0**30):
        raise ValueError(
            f"the multiplier M = S1*S2/S3 must be below 2^30, got {M.max()}: the output "
            "scale is far too small for the input and weight scales"
        )
    f, e = np.frexp(M)  # M = f * 2^e, 0.5 <= f < 1
    M0 = np.floor(f * 2.0**31 + 0.5).astype(np.int64)  # in [2^30, 2^31]
    carry = M0 == 2**31  # f rounded up to 1.0: halve M0, bump the exponent
    M0 = np.where(carry, M0 // 2, M0)
    shift = -(e.astype(np.int64) + carry)
    tiny = M < 2.0**-32
    M0 = np.where(tiny, 0, M0)
    shift = np.where(tiny, 0, shift)
    return M0.astype(np.int32), shift.astype(np.int64)


ROUNDINGS = ("double", "single")


def rescale(acc: Any, M0: Any, shift: Any, rounding: str = "double") -> np.ndarray:
    """``round(acc * M)`` in integer arithmetic, with ``M = M0 * 2^-31 * 2^-shift``.

    ``rounding="double"`` (the default) is gemmlowp's computation, which
    TensorFlow Lite runs by default (``MultiplyByQuantizedMultiplier``), in
    int64 NumPy arithmetic (exact: no intermediate exceeds 2^63):

    0. **Left shift** (only where ``shift < 0``, i.e. ``M >= 1``):
       ``x = saturate_int32(acc * 2^-shift)``; elsewhere ``x = acc``.
    1. **Rounding doubling high multiply** (gemmlowp's
       ``SaturatingRoundingDoublingHighMul(x, M0)``): the int64 product
       ``p = x * M0`` (below 2^62 in magnitude), divided by 2^31 and rounded
       to nearest, *half up*::

           high = floor((p + 2^30) / 2^31) = (p + 2^30) >> 31

       gemmlowp writes this with a "nudge" (``2^30`` if ``p >= 0``, else
       ``1 - 2^30``) and a division that truncates toward zero; for ``p < 0``
       truncation toward zero of ``(p + 1 - 2^30) / 2^31`` equals
       ``floor((p + 2^30) / 2^31)``, so both are one formula with NumPy's
       arithmetic (flooring) shift. (Its saturation case ``x = M0 = -2^31``
       cannot occur: ``M0 >= 0``.)
    2. **Rounding right shift** (gemmlowp's ``RoundingDivideByPOT(high, s)``,
       ``s = max(shift, 0)``): divide by ``2^s`` rounding to nearest, *half
       away from zero*::

           out = sign(high) * floor((|high| + 2^(s-1)) / 2^s)

       (for ``s = 0`` the half is 0 and ``out = high``). gemmlowp gets the
       same with a mask, a remainder and a threshold one larger for negative
       numbers; :func:`rounding_divide_by_pot_reference` is that code.

    *Two roundings.* Step 1 rounds to a whole unit of ``2^-s`` output
    steps, and that error can push a value lying just short of a half-way
    point across it: the result is within 1 (not 1/2) of the exact
    ``acc * M0 * 2^(-31-shift)``. Example: ``acc = -10``, ``M = 0.0473``
    (``M0 = 1625215625``, ``shift = 4``): exact -0.473; step 1 gives
    ``round(-7.57) = -8``, step 2 ``-8 / 16 = -0.5 -> -1``. Small
    accumulators (few bits, few terms) meet this most often.

    ``rounding="single"`` is TensorFlow Lite's ``TFLITE_SINGLE_ROUNDING``
    variant: one product, one rounding, half up, within 1/2 of exact::

        out = (x * M0 + 2^(30 + shift)) >> (31 + shift)      (x = acc, no left shift)

    Parameters
    ----------
    acc : ndarray of int, any shape
        int32 accumulators (values must fit in int32).
    M0, shift : int or ndarray of int
        From :func:`quantize_multiplier`, broadcastable against ``acc``
        (for per-channel multipliers of an ``(N, C, H, W)`` accumulator,
        shape ``(1, C, 1, 1)``).
    rounding : {"double", "single"}

    Returns
    -------
    out : ndarray of int64, the broadcast shape

    Examples
    --------
    >>> M0, shift = quantize_multiplier(0.0123)
    >>> rescale(np.array([1000, -1000, 41, 40]), M0, shift)    # 12.3, -12.3, 0.5043, 0.492
    array([ 12, -12,   1,   0])
    >>> M0, shift = quantize_multiplier(0.0473)
    >>> rescale([-10], M0, shift), rescale([-10], M0, shift, rounding="single")
    (array([-1]), array([0]))
    """
    x = np.asarray(acc)
    M0 = np.asarray(M0, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if rounding == "single":
        total = 31 + shift  # >= 1, since shift >= -30
        out = np.multiply(x, M0, dtype=np.int64)
        out += np.int64(1) << (total - 1)
        out >>= total
        return out
    if rounding != "double":
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if np.any(shift < 0):  # step 0: M >= 1, shift left first (saturating)
        left = np.maximum(-shift, 0)
        x = np.clip(x.astype(np.int64) << left, INT32_MIN, INT32_MAX)
    # step 1: high = round_half_up(x * M0 / 2^31)
    high = np.multiply(x, M0, dtype=np.int64)
    high += 1 << 30
    high >>= 31
    # step 2: out = sign(high) * ((|high| + 2^(s-1)) >> s), rounding half away from zero
    s = np.maximum(shift, 0)
    half = (np.int64(1) << s) >> 1  # 2^(s-1), or 0 when s = 0
    sign = np.sign(high)
    out = np.abs(high, out=high)  # in place: the steps below reuse one array
    out += half
    out >>= s
    out *= sign
    return out


# ------------------------------------------- gemmlowp, spelled out on Python ints
def saturating_rounding_doubling_high_mul_reference(a: int, b: int) -> int:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on two int32 values, literally.

    The high 32 bits of ``2 * a * b`` (so ``a * b / 2^31``), rounded to
    nearest with a "nudge" and a C-style division that truncates toward zero.
    """
    if a == b == INT32_MIN:  # the one product that overflows: saturate
        return INT32_MAX
    ab = a * b  # exact (Python ints never overflow; C uses int64)
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    quotient = abs(num) // (1 << 31)  # C division truncates toward zero
    return quotient if num >= 0 else -quotient


def rounding_divide_by_pot_reference(x: int, exponent: int) -> int:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2^exponent``, rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask  # two's complement: the low bits, always >= 0
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def rescale_reference(acc: int, M0: int, shift: int, rounding: str = "double") -> int:
    """:func:`rescale` for one value, on Python ints, as TFLite's ``MultiplyByQuantizedMultiplier``."""
    if rounding == "single":  # TFLITE_SINGLE_ROUNDING
        return (acc * M0 + (1 << (30 + shift))) >> (31 + shift)
    left, right = max(-shift, 0), max(shift, 0)
    x = min(max(acc * (1 << left), INT32_MIN), INT32_MAX)
    return rounding_divide_by_pot_reference(
        saturating_rounding_doubling_high_mul_reference(x, M0), right
    )


# ------------------------------------------------- exact integer matrix products
def exact_chunk_size(a_max: int, b_max: int) -> int:
    """Largest number of terms ``K_c`` whose float32 dot product is exact: ``K_c*a_max*b_max <= 2^24``.

    >>> exact_chunk_size(128, 128), exact_chunk_size(255, 127), exact_chunk_size(255, 128)
    (1024, 518, 514)
    """
    a_max, b_max = int(a_max), int(b_max)
    if a_max < 0 or b_max < 0:
        raise ValueError(f"a_max and b_max are magnitudes, got {a_max} and {b_max}")
    per_term = a_max * b_max
    if per_term > FLOAT32_EXACT:
        raise ValueError(
            f"a single product of magnitude {a_max} * {b_max} = {per_term} already exceeds "
            "2^24, where float32 stops being exact: use float64 or int64"
        )
    return FLOAT32_EXACT // per_term if per_term else 2**62


def matmul_int64(a: Any, b: Any) -> np.ndarray:
    """The plain reference: ``a @ b`` in int64 (NumPy's integer loop, no BLAS; slow)."""
    return np.matmul(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64))


def matmul_exact(
    a: Any,
    b: Any,
    a_max: int | None = None,
    b_max: int | None = None,
) -> np.ndarray:
    """Exact integer ``a @ b`` as an int32 array, computed with float32 BLAS over chunks of ``K``.

    ::

        K_c  = floor(2^24 / (a_max * b_max))                (exact_chunk_size)
        acc  = sum over chunks k of  int32( float32(a[..., k]) @ float32(b[..., k, :]) )

    Each chunk's float32 product is exact (every partial sum is an integer
    of magnitude at most ``K_c * a_max * b_max <= 2^24``), so converting it
    to int32 loses nothing; the chunks are then added in int32. The result
    equals :func:`matmul_int64` bit for bit.

    Parameters
    ----------
    a : ndarray, shape (..., M, K)
        Integer values, as an integer array or already held in float32.
    b : ndarray, shape (..., K, N)
        Integer values (``np.matmul`` broadcasting of leading dimensions).
    a_max, b_max : int, optional
        Bounds on ``|a|`` and ``|b|`` (say 255 and 127 for centred uint8
        activations and narrow int8 weights). Known bounds make the chunk
        size fixed; when omitted they are measured (one pass over the array).

    Returns
    -------
    acc : ndarray of int32, shape (..., M, N)

    Raises
    ------
    OverflowError
        When ``K * a_max * b_max`` could exceed the int32 range.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"matmul_exact expects (..., M, K) @ (..., K, N), got {a.shape} @ {b.shape}"
        )
    a_max = int(np.abs(a).max(initial=0)) if a_max is None else int(a_max)
    b_max = int(np.abs(b).max(initial=0)) if b_max is None else int(b_max)
    K = a.shape[-1]
    if K * a_max * b_max > INT32_MAX:
        raise OverflowError(
            f"an int32 accumulator could overflow: K * max|a| * max|b| = {K} * {a_max} * "
            f"{b_max} = {K * a_max * b_max} > 2^31 - 1"
        )
    a32 = a if a.dtype == np.float32 else a.astype(np.float32)
    b32 = b if b.dtype == np.float32 else b.astype(np.float32)
    chunk = max(exact_chunk_size(a_max, b_max), 1)
    acc = None
    for k0 in range(0, max(K, 1), chunk):
        part = np.matmul(a32[..., k0 : k0 + chunk], b32[..., k0 : k0 + chunk, :])  # exact
        if acc is None:
            acc = part.astype(np.int32)
        else:
            acc += part.astype(np.int32)
    return acc
