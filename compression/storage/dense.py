"""The two simplest codecs: ``dense`` (every value) and ``state`` (a whole state_dict entry set).

``dense``: ``n * itemsize * 8`` bits (``n * 32`` for float32), or, when
smaller, a lossless codebook of the distinct values (useful after weight
sharing or quantization has been baked in by ``strip``). Example: a
(300, 784) float32 weight takes ``235,200 * 32 = 7,526,400`` bits.

``state``: the fallback that stores any parameter, whatever transforms it
carries: its latent value raw and every array of its transforms' state
(``Transform.named_state``), boolean arrays at one bit per entry. Its
size is ``state_dict``'s, minus the byte-per-bool: for a masked (300, 784)
weight ``235,200 * 32 + 235,200 * 1`` bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.storage.encoded import EncodedTensor, check_shape, register_codec
from compression.storage.streams import (
    SegmentReader,
    decode_int_stream,
    decode_raw,
    decode_values,
    dtype_name,
    encode_int_stream,
    encode_raw,
    encode_values,
)


def encode_dense(array: np.ndarray, use_huffman: bool = True) -> EncodedTensor:
    """Every value of ``array``: raw, or a lossless codebook when that takes fewer bytes.

    >>> encode_dense(np.arange(6, dtype=np.float32)).bits   # 6 distinct values: raw, 6 * 32
    192
    >>> encode_dense(np.zeros(6, dtype=np.float32)).bits   # one 32-bit entry + six 1-bit codes
    38
    """
    array = np.asarray(array)
    meta, segments, how = encode_values(array, "values", use_huffman)
    return EncodedTensor(
        "dense", {"shape": list(array.shape), "values": meta}, segments, f"dense, {how}"
    )


@register_codec("dense")
def decode_dense(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_dense`: ``{"value": array}``."""
    shape = check_shape(meta)
    values = decode_values(meta["values"], reader, "values")
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{values.size} values for a tensor of shape {shape}")
    return {"value": values.reshape(shape)}


def encode_state(entries: dict[str, np.ndarray]) -> EncodedTensor:
    """Store named arrays as they are: booleans packed at 1 bit, everything else raw.

    Parameters
    ----------
    entries : dict of str -> ndarray
        ``{"value": latent, "0.mask": mask, ...}`` (the parameter's state_dict
        entries, by suffix).

    Example: ``{"value": float32 (2, 2), "0.mask": bool (2, 2)}`` -> ``4 * 32 + 4 * 1 = 132`` bits.
    """
    described, segments = [], []
    for key, array in entries.items():
        array = np.asarray(array)
        described.append({"key": key, "shape": list(array.shape), "dtype": dtype_name(array.dtype)})
        if array.dtype == np.bool_:
            segments += encode_int_stream(array.ravel(), 1, key, "indices", use_huffman=False)[1]
        else:
            segments.append(encode_raw(array.ravel(), key))
    keys = ", ".join(entries)
    return EncodedTensor("state", {"entries": described}, segments, f"state_dict entries ({keys})")


@register_codec("state")
def decode_state(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_state`."""
    out: dict[str, np.ndarray] = {}
    entries = meta["entries"]
    if not isinstance(entries, list):
        raise ValueError("state entries must be a list")
    for entry in entries:
        key, dtype = entry["key"], entry["dtype"]
        if not isinstance(key, str) or key in out:
            raise ValueError(f"bad or repeated state entry name {key!r}")
        shape = check_shape(entry)
        count = int(np.prod(shape, dtype=np.int64))
        if dtype == "bool":
            stream = {"count": count, "bits": 1}
            out[key] = decode_int_stream(stream, reader, key).astype(bool).reshape(shape)
        else:
            out[key] = decode_raw(reader.take(key), dtype, count).reshape(shape)
    return out
