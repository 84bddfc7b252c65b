"""Codebooks (weight sharing): store a small table of values and an index into it per weight.

If a tensor's ``n`` weights take only ``k`` distinct values (after k-means
weight sharing, Han et al. 2016, or after quantization), store the ``k``
values once, as a table of ``b``-bit floats, and for every weight only the
``log2(k)``-bit number of its table entry::

    bits = n * ceil(log2(k)) + k * b

Deep Compression (Han, Mao, Dally 2016, sec. 3, eq. 1) gives the ratio::

    r = n * b / (n * log2(k) + k * b)

e.g. ``n = 1000`` float32 weights (``b = 32``) shared among ``k = 16``
values: ``4000`` bits of codes plus ``16 * 32 = 512`` bits of codebook,
``4512`` bits instead of ``32000``: ``r = 7.09``.

Here a code takes ``max(1, ceil(log2(k)))`` bits (a whole number of bits
per code, and at least one), so the stored size equals the formula when
``k`` is a power of two and is slightly larger otherwise.
"""

from __future__ import annotations

import math

import numpy as np

MAX_K = 1 << 16


def code_bits(k: int) -> int:
    """Bits per code for a ``k``-entry codebook: ``max(1, ceil(log2(k)))``; k=16 -> 4, k=17 -> 5."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise ValueError(f"k (codebook size) must be an integer in 1..{MAX_K}, got {k!r}")
    return max(1, (int(k) - 1).bit_length())


def codebook_bits(n: int, k: int, value_bits: int = 32) -> int:
    """Stored bits of ``n`` codes and a ``k``-entry table: ``n * code_bits(k) + k * value_bits``."""
    return int(n) * code_bits(k) + int(k) * int(value_bits)


def deep_compression_ratio(n: int, k: int, b: int = 32) -> float:
    """Han et al.'s ratio ``r = n*b / (n*log2(k) + k*b)`` (real-valued ``log2``).

    >>> round(deep_compression_ratio(1000, 16), 4)
    7.0922
    """
    return n * b / (n * math.log2(k) + k * b)


def codebook_encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lossless codebook of an array: ``(codebook, codes)`` with ``codebook[codes] == values``.

    The codebook holds each distinct value once, compared *bit for bit*
    (so ``-0.0`` and ``0.0`` are two entries, and the round trip is exact).

    Parameters
    ----------
    values : ndarray, shape (n,)

    Returns
    -------
    codebook : ndarray, shape (k,), same dtype as ``values``
    codes : ndarray of int64, shape (n,), in ``0..k-1``

    Examples
    --------
    >>> codebook_encode(np.array([0.5, -1.0, 0.5], dtype=np.float32))
    (array([ 0.5, -1. ], dtype=float32), array([0, 1, 0]))
    """
    values = np.ascontiguousarray(np.asarray(values).ravel())
    as_bits = values.view(f"u{values.dtype.itemsize}") if values.dtype.kind == "f" else values
    _, first, codes = np.unique(as_bits, return_index=True, return_inverse=True)
    return values[first], codes.astype(np.int64).ravel()


def codebook_decode(codebook: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``codebook[codes]`` (checked: every code must name a table entry)."""
    codebook = np.asarray(codebook)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= len(codebook)):
        raise ValueError(f"codes must lie in 0..{len(codebook) - 1}, got max {codes.max()}")
    return codebook[codes]
