"""The ``sparse`` codec: kept values plus their positions, in the cheapest position format.

::

    bits = value stream (nnz + fillers values) + position stream(s)

    positions: bitmask   n                                 (1 bit per entry)
               CSR       (rows + 1) * w_ptr + nnz * w_col  (see sparse.py)
               relative  (nnz + fillers) * b, b in 1..16   (Deep Compression)

Every format is tried (every ``b`` for relative indices, with and without
Huffman on the index stream) and the fewest bytes win. The values are a
raw float32 stream, or a lossless codebook when they take few distinct
values (pruned *and* weight-shared: Deep Compression's full pipeline; the
fillers' zero then needs its own codebook entry, and it is counted).

Worked example: 8 entries, only the last kept (value 2.5). Bitmask: 8
bits; relative 3-bit: one index (7 zeros skipped) = 3 bits; plus 32 bits
of value either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.storage import huffman, sparse
from compression.storage.bitpack import check_bits
from compression.storage.encoded import EncodedTensor, check_shape, is_plus_zero, register_codec
from compression.storage.streams import (
    Segment,
    SegmentReader,
    decode_int_stream,
    decode_values,
    encode_int_stream,
    encode_values,
    total_bytes,
)


def encode_sparse(
    array: np.ndarray,
    keep: np.ndarray | None = None,
    mask_key: str | None = None,
    use_huffman: bool = True,
) -> EncodedTensor:
    """Store the kept entries of ``array`` with their positions, in the cheapest format.

    Parameters
    ----------
    array : ndarray
        The effective tensor (zeros where pruned).
    keep : ndarray of bool, same shape, optional
        Entries to store (a pruning mask). Default: every nonzero entry
        (``-0.0`` counts as zero and comes back as ``+0.0``; a pruned
        negative weight times a zero mask is ``-0.0``).
    mask_key : str, optional
        When given (``"0.mask"``), decoding also returns ``keep`` under that
        name, so a ``Mask`` transform can be rebuilt.
    use_huffman : bool, default True
        Allow Huffman coding of index and code streams (only when smaller).

    Returns
    -------
    EncodedTensor
        ``alternatives`` lists the bytes of each position format tried.

    Notes
    -----
    When decoding, a filler is an entry with the maximum skip ``2**b - 1``
    whose value is ``+0.0``. A *kept* entry with that skip and value ``+0.0``
    would be mistaken for one, so that ``b`` is not valid for the tensor
    and is not tried.
    """
    array = np.asarray(array)
    flat = np.ascontiguousarray(array.ravel())
    keep = (flat != 0) if keep is None else np.asarray(keep, dtype=bool).ravel()
    if keep.shape != flat.shape:
        raise ValueError(f"keep must have the shape of array {array.shape}, got {np.shape(keep)}")
    positions = np.flatnonzero(keep)
    values = flat[positions]
    meta: dict[str, Any] = {"shape": list(array.shape), "mask_key": mask_key}

    row_ptr, col_idx = sparse.csr_encode(positions, array.shape)
    w_ptr, w_col = sparse.csr_widths(len(positions), array.shape)
    bitmask = sparse.bitmask_encode(positions, flat.size)
    value_stream = encode_values(values, "values", use_huffman)  # the same for both
    candidates = [
        _candidate(meta, "bitmask", [("bitmask", bitmask, 1, False)], value_stream),
        _candidate(
            meta,
            "csr",
            [("row_ptr", row_ptr, w_ptr, False), ("col_idx", col_idx, w_col, use_huffman)],
            value_stream,
        ),
    ]
    b = best_relative_bits(positions, values, use_huffman)
    if b is not None:
        codes, is_filler = sparse.relative_encode(positions, b)
        stored = np.zeros(len(codes), dtype=flat.dtype)  # fillers store +0.0
        stored[~is_filler] = values
        streams = [("codes", codes, b, use_huffman)]
        value_stream = encode_values(stored, "values", use_huffman)
        candidates.append(_candidate({**meta, "bits": b}, "relative", streams, value_stream))
    kept = f"sparse ({len(positions)}/{flat.size} kept): "
    best = min(candidates, key=lambda c: total_bytes(c[1]))
    return EncodedTensor(
        "sparse",
        best[0],
        best[1],
        kept + best[2],
        alternatives={kept + desc: total_bytes(segs) for _, segs, desc in candidates},
    )


def _candidate(
    meta: dict[str, Any],
    fmt: str,
    streams: list[tuple[str, np.ndarray, int, bool]],
    value_stream: tuple[dict[str, Any], list[Segment], str],
) -> tuple[dict[str, Any], list[Segment], str]:
    """One complete sparse encoding: position streams (``indices``), then the values."""
    segments: list[Segment] = []
    metas: dict[str, Any] = {}
    for name, ints, bits, huff in streams:
        metas[name], segs = encode_int_stream(ints, bits, name, "indices", huff)
        segments += segs
    values_meta, value_segments, how = value_stream
    names = {"bitmask": "bitmask", "csr": "CSR", "relative": f"relative {meta.get('bits')}-bit"}
    desc = f"{names[fmt]} positions"
    if any("huffman" in m for m in metas.values()):
        desc += " (Huffman)"
    full = {**meta, "format": fmt, "positions": metas, "values": values_meta}
    return full, segments + value_segments, f"{desc}; values: {how}"


def best_relative_bits(positions: np.ndarray, values: np.ndarray, use_huffman: bool) -> int | None:
    """The index width ``b`` in 1..16 with the fewest bits, or None if none is valid.

    Estimated bits for each ``b``: ``min(entries * b, Huffman data + table)``
    for the indices, plus ``fillers * value_bits`` for the fillers' zeros.
    """
    skips = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1) - 1
    zero_skips = skips[is_plus_zero(values)]  # kept +0.0 entries are ambiguous with fillers
    value_bits = 8 * values.dtype.itemsize
    best, best_bits = None, None
    for b in range(1, 17):
        period = 1 << b
        if (zero_skips % period == period - 1).any():
            continue
        n_fillers = int((skips // period).sum())
        entries = len(skips) + n_fillers
        index_bits = entries * b
        if use_huffman and entries:
            hist = np.bincount(skips % period, minlength=period)  # real entries' codes
            hist[period - 1] += n_fillers  # fillers skip the maximum
            counts = {int(s): int(hist[s]) for s in np.flatnonzero(hist)}
            coded = huffman.encoded_bits(counts) + huffman.table_bits(max(counts) + 1)
            index_bits = min(index_bits, coded)
        total = index_bits + n_fillers * value_bits
        if best_bits is None or total < best_bits:
            best, best_bits = b, total
    return best


def decode_positions(
    fmt: str,
    streams: dict[str, Any],
    reader: SegmentReader,
    shape: tuple[int, ...],
    relative_stream: str = "codes",
    relative_bits: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat positions of the stored entries, read back from their position streams.

    ``fmt`` is ``"bitmask"`` (stream ``"bitmask"``: one bit per entry),
    ``"csr"`` (streams ``"row_ptr"`` and ``"col_idx"``) or ``"relative"``
    (stream ``relative_stream``: ``relative_bits``-bit skips, fillers
    included). Every sparse codec (float values, quantized codes, shared
    weights' codes) stores its positions this way.

    Returns
    -------
    positions : ndarray of int, shape (stored entries,)
    relative : ndarray of int or None
        The relative codes (``"relative"`` only): a filler is a skip of
        ``2^b - 1`` whose value is zero, and the caller drops it.
    """
    size = int(np.prod(shape, dtype=np.int64))
    if fmt == "bitmask":
        if streams["bitmask"]["count"] != size or streams["bitmask"]["bits"] != 1:
            raise ValueError(f"the bitmask does not have one bit for each of {size} entries")
        bitmask = decode_int_stream(streams["bitmask"], reader, "bitmask")
        return sparse.bitmask_decode(bitmask), None
    if fmt == "csr":
        row_ptr = decode_int_stream(streams["row_ptr"], reader, "row_ptr")
        col_idx = decode_int_stream(streams["col_idx"], reader, "col_idx")
        return sparse.csr_decode(row_ptr, col_idx, shape), None
    if fmt == "relative":
        b = check_bits(relative_bits)
        if streams[relative_stream]["bits"] != b:
            raise ValueError("relative index codes do not have the declared width")
        relative = decode_int_stream(streams[relative_stream], reader, relative_stream)
        return sparse.relative_decode(relative, b), relative
    raise ValueError(f"unknown position format {fmt!r}")


@register_codec("sparse")
def decode_sparse(meta: dict[str, Any], reader: SegmentReader) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_sparse`: ``{"value": array}`` (+ ``{mask_key: keep}``)."""
    shape = check_shape(meta)
    size = int(np.prod(shape, dtype=np.int64))
    fmt = meta["format"]
    positions, codes = decode_positions(
        fmt, meta["positions"], reader, shape, "codes", meta.get("bits")
    )
    values = decode_values(meta["values"], reader, "values")
    if len(values) != len(positions):
        raise ValueError(f"{len(positions)} positions but {len(values)} values")
    if codes is not None:
        real = ~((codes == (1 << meta["bits"]) - 1) & is_plus_zero(values))
        positions, values = positions[real], values[real]
    if positions.size and positions[-1] >= size:
        raise ValueError(f"position {positions[-1]} lies outside a tensor of {size} entries")
    out = np.zeros(size, dtype=values.dtype)
    out[positions] = values
    decoded = {"value": out.reshape(shape)}
    if meta["mask_key"] is not None:
        keep = np.zeros(size, dtype=bool)
        keep[positions] = True
        decoded[str(meta["mask_key"])] = keep.reshape(shape)
    return decoded
