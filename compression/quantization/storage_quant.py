"""How quantized weights are stored: ``b`` bits per value, plus scales and zero-points.

A fake-quantized weight is a float array, but every entry is
``(q - zero_point) * scale`` for an integer ``q`` of ``b`` bits, so the
compressed file (``compression.storage``) stores the integers, bit-packed,
and the scales (float32) and zero-points (``b`` bits) per tensor or per
channel::

    bits = n * b + C * 32 + C * b          (the C * b term only for affine grids)

The storage handlers registered here, by transform chain:

=========================  =====================================================
chain                      stored as
=========================  =====================================================
``("FakeQuantize",)``      ``b``-bit codes + scales (+ zero-points)
``("LSQ",)``               ``b``-bit codes + the step size
``("Mask", "FakeQuantize")``  pruned, then quantized (Deep Compression's
``("Mask", "LSQ")``        pipeline): positions of the kept entries (bitmask,
                           CSR or relative indices, the cheapest) + ``b``-bit
                           codes of the kept values only + scales
=========================  =====================================================

The ``sparse`` codec of ``compression.storage`` stores float values (raw, or
a codebook of distinct values), not ``b``-bit integers, so the pruned and
quantized chains get their own codec here, ``sparse_quantized``, built from
the same position formats (``compression.storage.sparse``). With relative
indices, a *filler* (Deep Compression's explicit zero after ``2^k - 1``
skipped entries) stores the code 0; a kept entry with code 0 after the
maximum skip would look like a filler, so such index widths are not used.

A ``FakeQuantize`` that is not frozen recomputes its scale from the weight
at every pass; decoding the integers would give a slightly different
scale, so its ``b``-bit candidate is not exact and the chooser falls back to
storing the float weight: call ``freeze_quantizers(model)`` before saving.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.quantization.affine import quantize
from compression.quantization.fake_quant import FakeQuantize
from compression.quantization.lsq import LSQ
from compression.storage import sparse
from compression.storage.bitpack import check_bits, pack_bits, packed_bits, unpack_bits
from compression.storage.encoded import EncodedTensor, check_shape, register_codec
from compression.storage.quantized import decode_quantized_arrays, dequantize, encode_quantized
from compression.storage.sparse_codec import decode_positions
from compression.storage.streams import (
    DTYPES,
    Segment,
    SegmentReader,
    decode_int_stream,
    decode_raw,
    dtype_name,
    encode_int_stream,
    encode_raw,
    total_bytes,
)
from compression.storage.tensor import register_storage_handler
from tinynet.grad_mode import no_grad
from tinynet.parameter import Parameter

__all__ = ["encode_quantized_state", "encode_sparse_quantized", "quantized_codes"]


# ------------------------------------------------ integers of a quantized weight
def quantized_codes(quantizer: Any, x: np.ndarray) -> dict[str, Any]:
    """The integers of ``quantizer(x)`` and what ``encode_quantized`` needs to store them.

    Returns ``{"q", "bits", "scale", "zero_point" (None when 0), "axis",
    "qmin", "state"}`` where ``state`` names the decoded scale and
    zero-point as the quantizer's state (``{"scale": "scale", ...}``).
    """
    if isinstance(quantizer, FakeQuantize):
        q = quantize(
            x, quantizer.scale, quantizer.zero_point, quantizer.qmin, quantizer.qmax, quantizer.axis
        )
        symmetric = quantizer.symmetric
        return {
            "q": q,
            "bits": quantizer.bits,
            "scale": quantizer.scale,
            "zero_point": None if symmetric else quantizer.zero_point,
            "axis": quantizer.axis,
            "qmin": quantizer.qmin,
            "state": {"scale": "scale", "zero_point": "zero_point"},
        }
    if isinstance(quantizer, LSQ):
        return {
            "q": quantizer.codes(x),
            "bits": quantizer.bits,
            "scale": np.asarray(quantizer.step_size.data),
            "zero_point": None,
            "axis": None,
            "qmin": -quantizer.q_n,
            "state": {"scale": "step_size"},
        }
    raise TypeError(f"no integer codes for a {type(quantizer).__name__}")


def _state_keys(state: dict[str, str], index: int) -> dict[str, str]:
    """``{"scale": "1.scale"}``: state names prefixed with the transform's place in the chain."""
    return {what: f"{index}.{name}" for what, name in state.items()}


def _add_state(
    out: dict[str, np.ndarray],
    meta: dict[str, Any],
    scale: np.ndarray,
    zero_point: np.ndarray | None,
) -> None:
    """Put the decoded scale (and zero-point) under the state keys the meta names."""
    keys = meta["state"]
    if not isinstance(keys, dict) or not set(keys) <= {"scale", "zero_point"}:
        raise ValueError(f"state keys {keys!r} are not a mapping of 'scale' and 'zero_point'")
    shape = () if meta["axis"] is None else (int(meta["channels"]),)
    out[str(keys["scale"])] = np.asarray(scale, dtype=np.float32).reshape(shape)
    if "zero_point" in keys:
        zp = np.zeros(shape, dtype=np.int64) if zero_point is None else zero_point
        out[str(keys["zero_point"])] = np.asarray(zp, dtype=np.int64).reshape(shape)


# --------------------------------------------------- dense codes: quantized_state
def encode_quantized_state(
    codes: dict[str, Any], index: int, dtype: Any, use_huffman: bool
) -> EncodedTensor:
    """``encode_quantized`` (codes + scales), decoding also to the quantizer's state."""
    enc = encode_quantized(
        codes["q"],
        codes["bits"],
        codes["scale"],
        codes["zero_point"],
        codes["axis"],
        codes["qmin"],
        dtype,
        use_huffman,
    )
    enc.meta["state"] = _state_keys(codes["state"], index)
    return EncodedTensor("quantized_state", enc.meta, enc.segments, enc.description)


@register_codec("quantized_state")
def decode_quantized_state(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_quantized_state`: value, scale and zero-point."""
    q, scale, zero_point = decode_quantized_arrays(meta, reader)
    if meta["dtype"] not in DTYPES:
        raise ValueError(f"unknown dtype {meta['dtype']!r}")
    out = {"value": dequantize(q, scale, zero_point, meta["axis"], DTYPES[meta["dtype"]])}
    _add_state(out, meta, scale, zero_point)
    return out


# ------------------------------------------ pruned and quantized: sparse_quantized
def _relative_width(positions: np.ndarray, codes: np.ndarray, bits: int) -> int | None:
    """Index width ``k`` in 1..16 with the fewest bits ``(nnz + fillers) * (k + bits)``.

    Widths where a kept entry with code 0 follows a maximum skip (it would
    read as a filler) are skipped; None if no width is valid.
    """
    skips = np.diff(positions, prepend=-1) - 1
    best, best_bits = None, None
    for k in range(1, 17):
        period = 1 << k
        if ((skips % period == period - 1) & (codes == 0)).any():
            continue
        total = (len(skips) + int((skips // period).sum())) * (k + bits)
        if best_bits is None or total < best_bits:
            best, best_bits = k, total
    return best


def encode_sparse_quantized(
    q: np.ndarray,
    keep: np.ndarray,
    codes: dict[str, Any],
    index: int,
    mask_key: str,
    dtype: Any,
    use_huffman: bool = True,
) -> EncodedTensor:
    """Positions of the kept entries + ``b``-bit codes of their integers + scales.

    Parameters
    ----------
    q : ndarray of int, any shape
        Integers of the whole tensor (only the kept ones are stored).
    keep : ndarray of bool, same shape
        The pruning mask.
    codes : dict
        :func:`quantized_codes`'s bits, scale, zero_point, axis, qmin, state.
    index : int
        The quantizer's place in the transform chain (names its state).
    mask_key : str
        Name under which the decoded mask is returned (``"0.mask"``).
    """
    bits, qmin, axis = check_bits(codes["bits"]), int(codes["qmin"]), codes["axis"]
    q, keep = np.asarray(q, dtype=np.int64), np.asarray(keep, dtype=bool)
    positions = np.flatnonzero(keep.ravel())
    values = q.ravel()[positions] - qmin  # codes of the kept entries, 0 .. 2^b - 1
    channels = 1 if axis is None else q.shape[axis]
    meta: dict[str, Any] = {
        "shape": list(q.shape),
        "bits": bits,
        "qmin": qmin,
        "axis": axis,
        "channels": channels,
        "dtype": dtype_name(dtype),
        "zero_point": codes["zero_point"] is not None,
        "state": _state_keys(codes["state"], index),
        "mask_key": mask_key,
    }
    qp_segments = [
        encode_raw(np.asarray(codes["scale"], np.float32).ravel(), "scale", "scales_zero_points")
    ]
    if codes["zero_point"] is not None:
        zp = np.asarray(codes["zero_point"], dtype=np.int64).ravel() - qmin
        qp_segments.append(
            Segment(
                "zero_point", "scales_zero_points", packed_bits(channels, bits), pack_bits(zp, bits)
            )
        )

    def candidate(fmt: str, streams: list[tuple[str, np.ndarray, int, bool]], stored: np.ndarray):
        metas, segments = {}, []
        for name, ints, width, huff in streams:
            metas[name], segs = encode_int_stream(ints, width, name, "indices", huff)
            segments += segs
        codes_meta, code_segments = encode_int_stream(stored, bits, "codes", "values", use_huffman)
        full = {**meta, "format": fmt, "positions": metas, "codes": codes_meta}
        return full, segments + code_segments + qp_segments

    bitmask = sparse.bitmask_encode(positions, q.size)
    row_ptr, col_idx = sparse.csr_encode(positions, q.shape)
    w_ptr, w_col = sparse.csr_widths(len(positions), q.shape)
    candidates = {
        "bitmask": candidate("bitmask", [("bitmask", bitmask, 1, False)], values),
        "CSR": candidate(
            "csr",
            [("row_ptr", row_ptr, w_ptr, False), ("col_idx", col_idx, w_col, use_huffman)],
            values,
        ),
    }
    k = _relative_width(positions, values, bits)
    if k is not None:
        relative, is_filler = sparse.relative_encode(positions, k)
        stored = np.zeros(len(relative), dtype=np.int64)  # fillers store code 0
        stored[~is_filler] = values
        meta["index_bits"] = k
        candidates[f"relative {k}-bit"] = candidate(
            "relative", [("relative", relative, k, use_huffman)], stored
        )
    sizes = {name: total_bytes(segs) for name, (_, segs) in candidates.items()}
    best = min(sizes, key=sizes.__getitem__)
    where = "per tensor" if axis is None else f"per channel (axis {axis})"
    kept = f"pruned+quantized ({len(positions)}/{q.size} kept, {bits}-bit codes, scale {where}): "
    return EncodedTensor(
        "sparse_quantized",
        candidates[best][0],
        candidates[best][1],
        kept + f"{best} positions",
        alternatives={kept + f"{name} positions": size for name, size in sizes.items()},
    )


@register_codec("sparse_quantized")
def decode_sparse_quantized(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_sparse_quantized`: value, mask, scale and zero-point."""
    shape, bits = check_shape(meta), check_bits(meta["bits"])
    size = int(np.prod(shape, dtype=np.int64))
    qmin, axis, channels = int(meta["qmin"]), meta["axis"], int(meta["channels"])
    if axis is not None and (not isinstance(axis, int) or not 0 <= axis < len(shape)):
        raise ValueError(f"axis {axis!r} is not an axis of shape {shape}")
    if channels != (1 if axis is None else shape[axis]) or meta["dtype"] not in DTYPES:
        raise ValueError(f"{channels} channels or dtype {meta['dtype']!r} do not fit shape {shape}")
    fmt = meta["format"]
    positions, relative = decode_positions(
        fmt, meta["positions"], reader, shape, "relative", meta.get("index_bits")
    )
    if meta["codes"]["bits"] != bits or meta["codes"]["count"] != len(positions):
        raise ValueError(f"{meta['codes']['count']} codes for {len(positions)} positions")
    values = decode_int_stream(meta["codes"], reader, "codes")
    if relative is not None:
        real = ~((relative == (1 << meta["index_bits"]) - 1) & (values == 0))  # drop the fillers
        positions, values = positions[real], values[real]
    if positions.size and positions[-1] >= size:
        raise ValueError(f"position {positions[-1]} lies outside a tensor of {size} entries")
    scale = decode_raw(reader.take("scale"), "float32", channels)
    zero_point = None
    if meta["zero_point"]:
        zero_point = unpack_bits(reader.take("zero_point", channels * bits).data, bits, channels)
        zero_point = zero_point + qmin
    bc = [1] * len(shape)
    if axis is not None:
        bc[axis] = channels
    zp = np.zeros(bc, np.int64) if zero_point is None else zero_point.reshape(bc)
    q = np.array(np.broadcast_to(zp, shape), dtype=np.int64)  # pruned entries: real 0
    q.flat[positions] = values + qmin
    keep = np.zeros(size, dtype=bool)
    keep[positions] = True
    out = {
        "value": dequantize(q, scale, zero_point, axis, DTYPES[meta["dtype"]]),
        str(meta["mask_key"]): keep.reshape(shape),
    }
    _add_state(out, meta, scale, zero_point)
    return out


# ---------------------------------------------------------------- the handlers
def _input_of(param: Parameter, index: int) -> np.ndarray:
    """The value entering transform ``index`` of the chain (the latent value through the rest)."""
    with no_grad():
        x = param.data
        for t in param.transforms[:index]:
            x = t.forward(x)
    return x


@register_storage_handler("FakeQuantize")
@register_storage_handler("LSQ")
def _quantized(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    codes = quantized_codes(param.transforms[0], param.data)
    return [encode_quantized_state(codes, 0, param.dtype, use_huffman)]


@register_storage_handler("Mask", "FakeQuantize")
@register_storage_handler("Mask", "LSQ")
def _pruned_quantized(
    param: Parameter, value: np.ndarray, use_huffman: bool
) -> list[EncodedTensor]:
    mask, quantizer = param.transforms
    codes = quantized_codes(quantizer, _input_of(param, 1))
    return [
        encode_sparse_quantized(codes["q"], mask.mask, codes, 1, "0.mask", param.dtype, use_huffman)
    ]
