"""Codecs for integer-valued tensors: ``quantized`` (affine integers) and ``shared`` (codebook).

``quantized`` stores the integers ``q`` of affine quantization
(``x ~ (q - zero_point) * scale``, Jacob et al. 2018) at ``b`` bits each,
plus a float32 scale and a ``b``-bit zero-point per tensor or per channel::

    bits = n * b + C * 32 + C * b        (C = 1 per tensor, C = channels per channel;
                                          the C * b term is dropped when zero_point=None,
                                          i.e. symmetric quantization with zero-point 0)

Example: a (300, 784) weight at 8 bits, per output channel (axis 0):
``235,200 * 8 + 300 * 32 + 300 * 8 = 1,893,600`` bits (vs 7,526,400 as float32).

``shared`` stores weight sharing (Han et al. 2016): ``k`` float32 centroids
and, per weight, the ``log2(k)``-bit number of its centroid::

    bits = n * ceil(log2(k)) + k * 32

The codes of both may be Huffman-coded when that is smaller (table counted).
These codecs are array functions: the transforms that produce quantized or
shared weights come in a later lesson, and register how their parameters are
stored (see ``tensor.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.storage.bitpack import check_bits, pack_bits, packed_bits, unpack_bits
from compression.storage.codebook import code_bits, codebook_decode
from compression.storage.encoded import EncodedTensor, check_shape, register_codec
from compression.storage.streams import (
    DTYPES,
    Segment,
    SegmentReader,
    decode_int_stream,
    decode_raw,
    dtype_name,
    encode_int_stream,
    encode_raw,
)


def dequantize(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    axis: int | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """``(q - zero_point) * scale`` in ``dtype``; per-channel arrays broadcast along ``axis``.

    The integer difference is exact; it is converted to ``dtype`` and
    multiplied by the scale, as PyTorch's ``dequantize`` does.
    """
    q = np.asarray(q, dtype=np.int64)
    shape = [1] * q.ndim
    if axis is not None:
        shape[axis] = -1
    scale = np.asarray(scale, dtype=dtype).reshape(shape)
    zp = 0 if zero_point is None else np.asarray(zero_point, dtype=np.int64).reshape(shape)
    return (q - zp).astype(dtype) * scale


def encode_quantized(
    q: np.ndarray,
    bits: int,
    scale: np.ndarray | float,
    zero_point: np.ndarray | int | None = None,
    axis: int | None = None,
    qmin: int = 0,
    dtype: Any = np.float32,
    use_huffman: bool = True,
) -> EncodedTensor:
    """Integer codes of ``bits`` bits plus scales (float32) and zero-points (``bits`` bits).

    Parameters
    ----------
    q : ndarray of int, any shape
        Quantized integers, each in ``qmin .. qmin + 2**bits - 1`` (``qmin = 0``
        for unsigned affine, ``-2**(bits-1)`` for signed symmetric).
    bits : int in 1..16
    scale : float or ndarray, shape (C,)
        One scale (``axis=None``) or one per channel along ``axis``.
    zero_point : int or ndarray of int, shape (C,), or None
        In the same range as ``q``; None means 0 and stores nothing.
    axis : int or None
        The channel axis of per-channel quantization (0 for PyTorch weights).
    qmin : int
        The smallest representable integer; codes are stored as ``q - qmin``.
    dtype : dtype, default float32
        Dtype of the decoded (dequantized) tensor.

    Returns
    -------
    EncodedTensor
        Decodes to ``{"value": (q - zero_point) * scale}``; see :func:`decode_quantized_arrays`
        for the integers themselves.

    Examples
    --------
    >>> enc = encode_quantized(np.array([[0, 3], [1, 2]]), 2, np.array([0.5, 0.25]),
    ...                        np.array([1, 2]), axis=0, use_huffman=False)
    >>> enc.bits   # 4 * 2 codes + 2 * 32 scales + 2 * 2 zero-points
    76
    """
    bits = check_bits(bits)
    q = np.asarray(q, dtype=np.int64)
    u = q - qmin
    if u.size and (u.min() < 0 or u.max() >= 1 << bits):
        raise ValueError(
            f"q must lie in {qmin}..{qmin + (1 << bits) - 1} for bits={bits} and qmin={qmin}, "
            f"got {q.min()}..{q.max()}"
        )
    channels = 1 if axis is None else q.shape[axis]
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if scale.size != channels:
        raise ValueError(f"scale must have {channels} entries (axis={axis}), got {scale.size}")
    meta: dict[str, Any] = {
        "shape": list(q.shape),
        "bits": bits,
        "qmin": int(qmin),
        "axis": axis,
        "channels": channels,
        "dtype": dtype_name(dtype),
        "zero_point": zero_point is not None,
    }
    meta["codes"], segments = encode_int_stream(u, bits, "codes", "values", use_huffman)
    segments.append(encode_raw(scale, "scale", "scales_zero_points"))
    if zero_point is not None:
        zp = np.asarray(zero_point, dtype=np.int64).reshape(-1) - qmin
        if zp.size != channels:
            raise ValueError(f"zero_point must have {channels} entries, got {zp.size}")
        zp_bytes = pack_bits(zp, bits)
        segments.append(
            Segment("zero_point", "scales_zero_points", packed_bits(channels, bits), zp_bytes)
        )
    where = "per tensor" if axis is None else f"per channel (axis {axis})"
    return EncodedTensor("quantized", meta, segments, f"quantized {bits}-bit codes, scale {where}")


def decode_quantized_arrays(
    meta: dict[str, Any], reader: SegmentReader
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(q, scale, zero_point)`` as stored (``zero_point`` None when not stored)."""
    shape, bits = check_shape(meta), check_bits(meta["bits"])
    qmin, axis, channels = int(meta["qmin"]), meta["axis"], int(meta["channels"])
    if axis is not None and (not isinstance(axis, int) or not -len(shape) <= axis < len(shape)):
        raise ValueError(f"axis {axis!r} is not an axis of shape {shape}")
    if channels != (1 if axis is None else shape[axis]):
        raise ValueError(f"{channels} channels do not match shape {shape} and axis {axis}")
    size = int(np.prod(shape, dtype=np.int64))
    if meta["codes"]["count"] != size or meta["codes"]["bits"] != bits:
        raise ValueError(f"the codes do not hold {size} values of {bits} bits")
    q = decode_int_stream(meta["codes"], reader, "codes").reshape(shape) + qmin
    scale = decode_raw(reader.take("scale"), "float32", channels)
    zero_point = None
    if meta["zero_point"]:
        zp_bits = reader.take("zero_point", channels * bits).data
        zero_point = unpack_bits(zp_bits, bits, channels) + qmin
    return q, scale, zero_point


@register_codec("quantized")
def decode_quantized(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_quantized`: ``{"value": (q - zero_point) * scale}``."""
    q, scale, zero_point = decode_quantized_arrays(meta, reader)
    if meta["dtype"] not in DTYPES:
        raise ValueError(f"unknown dtype {meta['dtype']!r}")
    return {"value": dequantize(q, scale, zero_point, meta["axis"], DTYPES[meta["dtype"]])}


def encode_shared(
    codes: np.ndarray, codebook: np.ndarray, use_huffman: bool = True
) -> EncodedTensor:
    """Weight sharing: ``code_bits(k)``-bit codes plus a ``k``-entry codebook.

    Parameters
    ----------
    codes : ndarray of int, any shape
        Each weight's centroid number, in ``0..k-1``.
    codebook : ndarray, shape (k,)
        The shared values (float32: 32 bits each).

    Examples
    --------
    Deep Compression's ratio on 1000 weights and 16 centroids:

    >>> enc = encode_shared(np.arange(1000) % 16, np.zeros(16, np.float32), use_huffman=False)
    >>> enc.bits_by_term()["values"], enc.bits_by_term()["codebook"]   # 1000 * 4, 16 * 32
    (4000, 512)
    """
    codes = np.asarray(codes, dtype=np.int64)
    codebook = np.asarray(codebook).ravel()
    k = len(codebook)
    meta: dict[str, Any] = {"shape": list(codes.shape), "k": k}
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise ValueError(f"codes must lie in 0..{k - 1}, got {codes.min()}..{codes.max()}")
    meta["codes"], segments = encode_int_stream(codes, code_bits(k), "codes", "values", use_huffman)
    meta["dtype"] = dtype_name(codebook.dtype)
    segments.insert(0, encode_raw(codebook, "codebook", "codebook"))
    how = "Huffman" if "huffman" in meta["codes"] else f"{code_bits(k)}-bit"
    return EncodedTensor("shared", meta, segments, f"shared: {k}-entry codebook, {how} codes")


@register_codec("shared")
def decode_shared(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_shared`: ``{"value": codebook[codes]}``."""
    shape, k = check_shape(meta), int(meta["k"])
    size = int(np.prod(shape, dtype=np.int64))
    if meta["codes"]["count"] != size or meta["codes"]["bits"] != code_bits(k):
        raise ValueError(f"the codes do not hold {size} values of {code_bits(k)} bits")
    codebook = decode_raw(reader.take("codebook"), meta["dtype"], k)
    codes = decode_int_stream(meta["codes"], reader, "codes")
    return {"value": codebook_decode(codebook, codes).reshape(shape)}
