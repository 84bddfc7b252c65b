"""Bit-packing: store ``count`` unsigned integers of ``bits`` bits each, back to back.

A float32 weight takes 32 bits. An integer that only ever lies in
``0..2**bits - 1`` needs only ``bits`` of them, if we stop aligning every
value to a byte. Bit-packing writes each value's ``bits`` binary digits
(most significant first) one after the other and pads the very last byte
with zeros::

    values 5, 1, 7 at 3 bits:   101 001 111   -> 9 bits
    bytes:                      10100111 1_0000000 -> 2 bytes (7 padding zeros)

Exact sizes::

    bits  = count * bits_per_value
    bytes = ceil(bits / 8)

Every other encoder in :mod:`compression.storage` ends in this one: codes of
a codebook, sparse indices and quantized integers are all packed here.
"""

from __future__ import annotations

import numpy as np

MAX_BITS = 32  # codes and indices use 1..16; CSR row pointers of big tensors need more


def check_bits(bits: int, name: str = "bits") -> int:
    """Return ``bits`` as an int after checking it lies in ``1..32``."""
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int | np.integer)
        or not 1 <= bits <= MAX_BITS
    ):
        raise ValueError(f"{name} must be an integer in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


def bits_needed(max_value: int) -> int:
    """Fewest bits that hold every integer in ``0..max_value`` (at least 1).

    ``bits_needed(0) == 1``, ``bits_needed(7) == 3``, ``bits_needed(8) == 4``.
    """
    if max_value < 0:
        raise ValueError(f"max_value must be >= 0, got {max_value}")
    return max(1, int(max_value).bit_length())


def packed_bits(count: int, bits: int) -> int:
    """Exact payload bits of ``count`` values at ``bits`` bits: ``count * bits``."""
    return int(count) * check_bits(bits)


def packed_bytes(count: int, bits: int) -> int:
    """Bytes on disk: ``ceil(count * bits / 8)``; 10 values at 3 bits -> 30 bits -> 4 bytes."""
    return (packed_bits(count, bits) + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers into ``ceil(len(values) * bits / 8)`` bytes.

    Parameters
    ----------
    values : array_like of int, any shape (flattened in C order)
        Each in ``0..2**bits - 1``.
    bits : int in 1..32
        Width of every value.

    Returns
    -------
    bytes
        Most significant bit first; the last byte's unused low bits are 0.

    Examples
    --------
    >>> pack_bits([5, 1, 7], 3)   # 101 001 111 (+ 7 zero bits)
    b'\\xa7\\x80'
    """
    bits = check_bits(bits)
    v = np.asarray(values).ravel()
    if v.size and not np.issubdtype(v.dtype, np.integer) and v.dtype != np.bool_:
        raise TypeError(f"pack_bits expects integers, got dtype {v.dtype}")
    v = v.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= 1 << bits):
        raise ValueError(
            f"pack_bits: values must lie in 0..{(1 << bits) - 1} for bits={bits}, "
            f"got min {v.min()} and max {v.max()}"
        )
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)  # most significant bit first
    bit_matrix = ((v[:, None] >> shifts) & 1).astype(np.uint8)  # (count, bits)
    return np.packbits(bit_matrix.ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: read ``count`` values of ``bits`` bits.

    Returns
    -------
    ndarray of int64, shape (count,)

    Raises
    ------
    ValueError
        When ``data`` is not exactly ``ceil(count * bits / 8)`` bytes long, or
        its padding bits are not zero (a sign of a damaged file).
    """
    bits = check_bits(bits)
    expected = packed_bytes(count, bits)
    if len(data) != expected:
        raise ValueError(
            f"unpack_bits: {count} values of {bits} bits need {expected} bytes, got {len(data)}"
        )
    all_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    n = count * bits
    if all_bits[n:].any():
        raise ValueError("unpack_bits: the padding bits of the last byte are not zero")
    bit_matrix = all_bits[:n].reshape(count, bits).astype(np.int64)
    weights = np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return bit_matrix @ weights
