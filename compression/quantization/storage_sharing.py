"""How shared, binary and ternary weights are stored: at their true bit cost.

Importing this module registers a storage handler (see
``compression/storage/tensor.py``) for each chain below, so that
``size_report`` and ``save_compressed`` count, and write, these bits:

=============================  ==============================================================
chain                          stored (bits, before Huffman and the padding of each segment
                               to whole bytes)
=============================  ==============================================================
``SharedWeights``              codes + codebook: ``n * ceil(log2 k) + 32 k``
``Mask, SharedWeights``        the cheapest of (``nnz`` kept of ``n``, ``c = ceil(log2 k)``,
                               ``c' = ceil(log2(k + 1))``):

                               - bitmask: ``n + nnz * c + 32 k``
                               - CSR: ``(rows + 1) * w_ptr + nnz * w_col + nnz * c + 32 k``
                               - relative ``b``-bit indices with fillers (Deep Compression):
                                 ``(nnz + f) * (b + c') + 32 k``; a filler's code is the
                                 reserved code ``k`` ("no centroid", a zero)
                               - every entry's code, pruned ones with the reserved code:
                                 ``n * c' + 32 k`` (no positions at all)
``BinaryWeights``              one bit per weight + the scales: ``n + 32 C`` (``C`` = 1 per
                               tensor, channels per channel, 0 for a fixed scale)
``TernaryWeights``             two bits per weight + one scale: ``2 n + 32``
=============================  ==============================================================

Example: a (300, 784) weight shared with ``k = 32`` takes
``235,200 * 5 + 32 * 32 = 1,177,024`` bits (147,128 bytes) instead of
7,526,400 bits (940,800 bytes) as float32: ``6.4x``.

Each codec's decoder gives back what the loader needs to rebuild the
transform exactly: the shared weights' codes and centroids (not only the
effective values: two centroids may be equal, and an unused centroid still
belongs to the codebook), the mask, and a latent value whose binarization
or ternarization reproduces the stored signs and scale (``alpha * sign``:
re-binarizing it gives ``alpha`` back exactly, see ``binary._mean_abs``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.quantization.binary import SCALES, _broadcast, binary_codes, ternary_codes
from compression.quantization.sharing import PRUNED, SharedWeights
from compression.storage import sparse
from compression.storage.codebook import MAX_K, code_bits
from compression.storage.encoded import EncodedTensor, check_shape, register_codec
from compression.storage.quantized import encode_quantized
from compression.storage.sparse_codec import decode_positions
from compression.storage.streams import (
    DTYPES,
    SegmentReader,
    decode_int_stream,
    decode_raw,
    dtype_name,
    encode_int_stream,
    encode_raw,
    total_bytes,
)
from compression.storage.tensor import register_storage_handler
from tinynet.parameter import Parameter

__all__ = ["decode_binary", "decode_shared_weights", "encode_binary", "encode_shared_weights"]


# ----------------------------------------------------------- shared weights
FORMATS = ("dense", "reserved", "bitmask", "csr", "relative")


def encode_shared_weights(
    assignments: np.ndarray,
    centroids: np.ndarray,
    index: int = 0,
    mask_key: str | None = None,
    use_huffman: bool = True,
    formats: tuple[str, ...] | None = None,
) -> EncodedTensor:
    """Codes and codebook of a :class:`SharedWeights` transform, in the cheapest layout.

    Parameters
    ----------
    assignments : ndarray of int, any shape
        Each weight's centroid in ``0..k-1``, or ``-1`` (pruned, not stored).
    centroids : ndarray, shape (k,)
        The codebook, stored raw (32 bits per entry for float32).
    index : int
        Position of the ``SharedWeights`` in its chain (the decoder returns
        ``"<index>.assignments"`` and ``"<index>.centroids"``).
    mask_key : str, optional
        ``"0.mask"`` when a ``Mask`` precedes it: decoding also returns
        ``assignments >= 0`` under that name.
    use_huffman : bool
        Allow Huffman coding of the code and index streams (when smaller).
    formats : tuple of str, optional
        Layouts to try (default: every one that applies): ``"dense"`` when
        nothing is pruned; otherwise ``"reserved"``, ``"bitmask"``,
        ``"csr"``, ``"relative"`` (see the module docstring).

    Returns
    -------
    EncodedTensor
        Codec ``"shared_weights"``; ``alternatives`` lists each layout tried.

    Examples
    --------
    >>> enc = encode_shared_weights(np.arange(1000) % 16, np.zeros(16, np.float32),
    ...                             use_huffman=False)
    >>> enc.bits    # 1000 * 4 + 16 * 32
    4512
    """
    a = np.asarray(assignments, dtype=np.int64)
    centroids = np.asarray(centroids).ravel()
    k, flat = len(centroids), a.ravel()
    if flat.size and (flat.min() < PRUNED or flat.max() >= k):
        raise ValueError(f"assignments must lie in -1..{k - 1}, got {flat.min()}..{flat.max()}")
    layouts = _layouts(a, k, use_huffman)
    if formats is not None:
        unknown = sorted(set(formats) - set(layouts))
        if unknown:
            raise ValueError(f"layouts {unknown} do not apply here; these do: {sorted(layouts)}")
        layouts = {fmt: layouts[fmt] for fmt in formats}
    meta = {
        "shape": list(a.shape),
        "k": k,
        "dtype": dtype_name(centroids.dtype),
        "index": int(index),
        "mask_key": mask_key,
    }
    codebook = encode_raw(centroids, "codebook", "codebook")
    nnz = int((flat >= 0).sum())
    candidates = []
    for fmt, (extra, streams) in layouts.items():
        segments, metas = [codebook], {}
        for name, ints, bits, huff in streams:
            term = "values" if name == "codes" else "indices"
            metas[name], segs = encode_int_stream(ints, bits, name, term, huff)
            segments += segs
        desc = _describe(fmt, extra, k, nnz, flat.size, metas)
        candidates.append(({**meta, **extra, "format": fmt, "streams": metas}, segments, desc))
    best = min(candidates, key=lambda cand: total_bytes(cand[1]))
    return EncodedTensor(
        "shared_weights",
        best[0],
        best[1],
        best[2],
        alternatives={desc: total_bytes(segs) for _, segs, desc in candidates},
    )


Stream = tuple[str, np.ndarray, int, bool]  # name, integers, bits each, Huffman allowed


def _layouts(a: np.ndarray, k: int, huff: bool) -> dict[str, tuple[dict[str, Any], list[Stream]]]:
    """Every layout that applies: ``{format: (extra meta, [integer streams])}``."""
    flat = a.ravel()
    positions = np.flatnonzero(flat >= 0)
    codes = flat[positions]
    if len(positions) == flat.size:  # nothing pruned: codes only
        return {"dense": ({}, [("codes", codes, code_bits(k), huff)])}
    if k >= MAX_K:
        return {}  # no spare code for "no centroid": left to the generic `state` encoding
    c = code_bits(k + 1)  # codes 0..k, where k means "no centroid" (pruned, or a filler)
    row_ptr, col_idx = sparse.csr_encode(positions, a.shape)
    w_ptr, w_col = sparse.csr_widths(len(positions), a.shape)
    # relative indices: the b with the fewest packed bits, (nnz + fillers) * (b + c)
    b = min(range(1, 17), key=lambda b: (len(codes) + sparse.count_fillers(positions, b)) * (b + c))
    skips, is_filler = sparse.relative_encode(positions, b)
    stored = np.full(len(skips), k, dtype=np.int64)  # fillers get the code k
    stored[~is_filler] = codes
    return {
        "reserved": ({}, [("codes", np.where(flat >= 0, flat, k), c, huff)]),
        "bitmask": (
            {},
            [
                ("bitmask", sparse.bitmask_encode(positions, flat.size), 1, False),
                ("codes", codes, code_bits(k), huff),
            ],
        ),
        "csr": (
            {},
            [
                ("row_ptr", row_ptr, w_ptr, False),
                ("col_idx", col_idx, w_col, huff),
                ("codes", codes, code_bits(k), huff),
            ],
        ),
        "relative": ({"bits": b}, [("skips", skips, b, huff), ("codes", stored, c, huff)]),
    }


def _describe(fmt: str, extra: dict, k: int, nnz: int, n: int, metas: dict) -> str:
    how = "Huffman" if "huffman" in metas["codes"] else f"{metas['codes']['bits']}-bit"
    where = {
        "dense": "",
        "reserved": f" ({nnz}/{n} clustered): reserved code {k} for pruned,",
        "bitmask": f" ({nnz}/{n} clustered): bitmask positions,",
        "csr": f" ({nnz}/{n} clustered): CSR positions,",
        "relative": f" ({nnz}/{n} clustered): relative {extra.get('bits')}-bit positions,",
    }[fmt]
    return f"shared{where} {k}-entry codebook, {how} codes"


@register_codec("shared_weights")
def decode_shared_weights(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_shared_weights`: value, assignments, centroids (and the mask)."""
    shape, k, index = check_shape(meta), meta["k"], meta["index"]
    code_bits(k)  # checks that k is an integer in 1..65536
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"the transform index must be an integer >= 0, got {index!r}")
    size, fmt, streams = int(np.prod(shape, dtype=np.int64)), meta["format"], meta["streams"]
    if fmt not in FORMATS:
        raise ValueError(f"unknown shared_weights format {fmt!r}; known: {FORMATS}")
    if meta["dtype"] not in DTYPES or DTYPES[meta["dtype"]].kind != "f":
        raise ValueError(f"codebook dtype {meta['dtype']!r} is not a float type")
    centroids = decode_raw(reader.take("codebook"), meta["dtype"], k)
    width = code_bits(k) if fmt in ("dense", "bitmask", "csr") else code_bits(k + 1)
    if streams["codes"]["bits"] != width:
        raise ValueError(f"{fmt} codes of a {k}-entry codebook must have {width} bits")
    if fmt in ("bitmask", "csr", "relative"):
        positions, _ = decode_positions(fmt, streams, reader, shape, "skips", meta.get("bits"))
    else:  # dense, reserved: a code for every entry
        positions = np.arange(size)
    codes = decode_int_stream(streams["codes"], reader, "codes")
    if len(codes) != len(positions) or (codes.size and codes.max() > k):
        raise ValueError(
            f"{len(codes)} codes (largest {codes.max(initial=0)}) for {len(positions)} entries "
            f"of a {k}-entry codebook"
        )
    real = codes < k  # code k marks a pruned entry (reserved) or a filler (relative)
    if fmt in ("dense", "bitmask", "csr") and not real.all():
        raise ValueError(f"a code points past the end of the {k}-entry codebook")
    positions, codes = positions[real], codes[real]
    if positions.size and positions.max() >= size:
        raise ValueError(f"position {positions.max()} lies outside a tensor of {size} entries")
    assignments = np.full(size, PRUNED, dtype=np.int64)
    assignments[positions] = codes
    assignments = assignments.reshape(shape)
    value = np.append(centroids, 0).astype(centroids.dtype)[assignments]  # PRUNED reads the 0
    decoded = {
        "value": value,
        f"{index}.assignments": assignments,
        f"{index}.centroids": centroids,
    }
    if meta["mask_key"] is not None:
        decoded[str(meta["mask_key"])] = assignments >= 0
    return decoded


@register_storage_handler("SharedWeights")
def _shared(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    t: SharedWeights = param.transforms[0]
    return [encode_shared_weights(t.assignments, t.centroids.data, 0, None, use_huffman)]


@register_storage_handler("Mask", "SharedWeights")
def _pruned_and_shared(
    param: Parameter, value: np.ndarray, use_huffman: bool
) -> list[EncodedTensor]:
    mask, t = param.transforms[0].mask, param.transforms[1]
    if not np.array_equal(mask, t.assignments >= 0):
        return []  # a mask changed after sharing: only the generic `state` encoding is exact
    return [encode_shared_weights(t.assignments, t.centroids.data, 1, "0.mask", use_huffman)]


# ------------------------------------------------------------------ binary
def encode_binary(
    signs: np.ndarray, scale: np.ndarray | None, axis: int | None, dtype: Any = np.float32
) -> EncodedTensor:
    """One bit per weight (1 for +1, 0 for -1) plus the scales, raw.

    Parameters
    ----------
    signs : ndarray, values in {-1, +1}
    scale : ndarray, shape () or (C,), or None
        ``alpha`` per tensor (``axis=None``) or per channel along ``axis``;
        None stores no scale (a fixed scale lives in the transform's config).
    axis : int or None
    dtype : dtype, default float32
        Of the scales and of the decoded value.

    Examples
    --------
    >>> encode_binary(np.ones((30, 20)), np.ones(30, np.float32), axis=0).bits   # 600 + 30 * 32
    1560
    """
    signs = np.asarray(signs)
    meta: dict[str, Any] = {
        "shape": list(signs.shape),
        "axis": axis,
        "scale": scale is not None,
        "dtype": dtype_name(dtype),
    }
    meta["signs"], segments = encode_int_stream(signs > 0, 1, "signs", "values", False)
    if scale is not None:
        scale = np.asarray(scale, dtype=dtype).ravel()
        channels = 1 if axis is None else signs.shape[axis]
        if scale.size != channels:
            raise ValueError(f"scale must have {channels} entries (axis={axis}), got {scale.size}")
        segments.append(encode_raw(scale, "scale", "scales_zero_points"))
    where = "none" if scale is None else ("per tensor" if axis is None else "per channel")
    return EncodedTensor("binary", meta, segments, f"binary: 1-bit signs, scale {where}")


@register_codec("binary")
def decode_binary(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_binary`: ``{"value": alpha * s}`` (``s`` alone without a scale)."""
    shape, axis = check_shape(meta), meta["axis"]
    if axis not in (None, 0) or (axis == 0 and not shape):
        raise ValueError(f"binary axis must be None or 0 for shape {shape}, got {axis!r}")
    size = int(np.prod(shape, dtype=np.int64))
    if meta["signs"]["count"] != size or meta["signs"]["bits"] != 1:
        raise ValueError(f"the signs do not hold one bit for each of {size} entries")
    s = 2 * decode_int_stream(meta["signs"], reader, "signs").reshape(shape) - 1
    if meta["dtype"] not in DTYPES or DTYPES[meta["dtype"]].kind != "f":
        raise ValueError(f"binary dtype {meta['dtype']!r} is not a float type")
    if not meta["scale"]:
        return {"value": s.astype(DTYPES[meta["dtype"]].newbyteorder("="))}
    channels = 1 if axis is None else shape[0]
    alpha = decode_raw(reader.take("scale"), meta["dtype"], channels)
    alpha = _broadcast(alpha if axis == 0 else alpha.reshape(()), len(shape))
    return {"value": alpha * s.astype(alpha.dtype)}


@register_storage_handler("BinaryWeights")
def _binary(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    t = param.transforms[0]
    signs, alpha = binary_codes(param.data, t.scale)
    stored = alpha if t.scale in SCALES else None
    return [encode_binary(signs, stored, 0 if t.scale == "channel" else None, param.dtype)]


@register_storage_handler("TernaryWeights")
def _ternary(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    t, alpha = ternary_codes(param.data, param.transforms[0].threshold)
    encoded = encode_quantized(
        t, 2, alpha, None, qmin=-1, dtype=param.dtype, use_huffman=use_huffman
    )
    encoded.description = "ternary: " + encoded.description
    return [encoded]
