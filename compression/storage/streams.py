"""Segments and streams: the byte strings a compressed tensor is made of.

A compressed tensor is a short list of :class:`Segment` s: named runs of
bytes, each counted in exact bits and charged to one *term* of the size
report:

===================  ==========================================================
term                 what it holds
===================  ==========================================================
values               the numbers themselves: float32 values, codebook codes,
                     quantized integers
indices              where the values go: bitmask, CSR arrays, relative indices
codebook             the table of shared values (weight sharing)
scales_zero_points   quantization scales and zero-points
huffman_tables       the code-length tables of Huffman-coded streams
===================  ==========================================================

A segment of ``bits`` bits takes ``ceil(bits / 8)`` bytes: every segment
starts on a byte boundary, so the file pays at most 7 bits of padding per
segment. Two kinds of stream build segments:

* an *integer stream* (codes, indices) is bit-packed at a fixed width, or
  Huffman-coded when that is smaller, table included;
* a *value stream* (floats) is stored raw, or as a lossless codebook (each
  distinct value once, plus an integer stream of codes) when that is smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.storage import huffman
from compression.storage.bitpack import check_bits, pack_bits, packed_bits, unpack_bits
from compression.storage.codebook import MAX_K, code_bits, codebook_encode

TERMS = ("values", "indices", "codebook", "scales_zero_points", "huffman_tables")

# dtypes a file may name (little-endian on disk); anything else is refused
DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64".split()
    )
}


@dataclass(frozen=True)
class Segment:
    """A named byte string: ``len(data) == ceil(bits / 8)``; ``term`` is one of ``TERMS``."""

    name: str
    term: str
    bits: int
    data: bytes

    def __post_init__(self) -> None:
        if self.term not in TERMS:
            raise ValueError(f"segment term must be one of {TERMS}, got {self.term!r}")
        if len(self.data) != (self.bits + 7) // 8:
            raise ValueError(
                f"segment {self.name!r}: {self.bits} bits need {(self.bits + 7) // 8} bytes, "
                f"got {len(self.data)}"
            )


def total_bytes(segments: list[Segment]) -> int:
    """Bytes the segments occupy in a file (each rounded up to whole bytes)."""
    return sum(len(s.data) for s in segments)


class SegmentReader:
    """Hands a decoder its segments by name, and checks that each is used exactly once."""

    def __init__(self, segments: list[Segment]) -> None:
        self._segments = {s.name: s for s in segments}
        if len(self._segments) != len(segments):
            raise ValueError("two segments of one tensor share a name")
        self._used: set[str] = set()

    def take(self, name: str, bits: int | None = None) -> Segment:
        """The segment called ``name``; with ``bits``, check its declared length too."""
        if name not in self._segments or name in self._used:
            raise ValueError(f"segment {name!r} is missing")
        segment = self._segments[name]
        if bits is not None and segment.bits != bits:
            raise ValueError(f"segment {name!r} holds {segment.bits} bits, expected {bits}")
        self._used.add(name)
        return segment

    def finish(self) -> None:
        """Raise if some segment was never read (a file must hold nothing unexplained)."""
        extra = sorted(set(self._segments) - self._used)
        if extra:
            raise ValueError(f"unexpected segments {extra}")


def dtype_name(dtype: Any) -> str:
    """The whitelisted name of a dtype (``'float32'``), or a ValueError."""
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise ValueError(f"cannot store arrays of dtype {name}; supported: {sorted(DTYPES)}")
    return name


def _count(meta: dict, key: str = "count") -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key!r} must be a non-negative integer, got {value!r}")
    return value


# ------------------------------------------------------------ integer streams


def encode_int_stream(
    values: np.ndarray, bits: int, name: str, term: str, use_huffman: bool = True
) -> tuple[dict[str, Any], list[Segment]]:
    """Bit-pack ``values`` at ``bits`` bits, or Huffman-code them when that takes fewer bytes.

    Packed: ``count * bits`` bits. Huffman: ``sum count(s) * L(s)`` data bits
    plus a ``5 * alphabet`` bit table (``alphabet = max(values) + 1``), in a
    segment ``name + ".table"`` charged to ``huffman_tables``.

    Returns ``(meta, segments)``; ``meta`` is ``{"count", "bits"}`` plus
    ``"huffman": alphabet`` when Huffman was chosen.
    """
    values = np.asarray(values, dtype=np.int64).ravel()
    bits = check_bits(bits)
    meta: dict[str, Any] = {"count": int(values.size), "bits": bits}
    packed = [Segment(name, term, packed_bits(values.size, bits), pack_bits(values, bits))]
    if not use_huffman or values.size == 0 or bits > 16:
        return meta, packed
    alphabet = int(values.max()) + 1
    counts = np.bincount(values, minlength=alphabet)
    p = counts[counts > 0] / values.size
    entropy_bits = float(-(counts[counts > 0] * np.log2(p)).sum())  # no prefix code does better
    if huffman.table_bits(alphabet) + entropy_bits >= packed[0].bits:
        return meta, packed
    lengths = huffman.stream_lengths(values, alphabet)
    if lengths.max() > huffman.MAX_CODE_LENGTH:
        return meta, packed
    data, nbits = huffman.huffman_encode(values, lengths)
    table = Segment(
        name + ".table", "huffman_tables", huffman.table_bits(alphabet), pack_bits(lengths, 5)
    )
    coded = [table, Segment(name, term, nbits, data)]
    if total_bytes(coded) < total_bytes(packed):
        return {**meta, "huffman": alphabet}, coded
    return meta, packed


def decode_int_stream(meta: dict[str, Any], reader: SegmentReader, name: str) -> np.ndarray:
    """Inverse of :func:`encode_int_stream` (reads the segments it wrote from ``reader``)."""
    count, bits = _count(meta), check_bits(meta["bits"])
    if "huffman" not in meta:
        return unpack_bits(reader.take(name, count * bits).data, bits, count)
    alphabet = _count(meta, "huffman")
    if bits > 16 or not 1 <= alphabet <= 1 << bits:
        raise ValueError(f"Huffman alphabet {alphabet} does not fit {bits}-bit symbols")
    table = reader.take(name + ".table", huffman.table_bits(alphabet))
    lengths = unpack_bits(table.data, huffman.LENGTH_BITS, alphabet)
    segment = reader.take(name)
    return huffman.huffman_decode(segment.data, segment.bits, lengths, count)


# -------------------------------------------------------------- value streams


def encode_raw(array: np.ndarray, name: str, term: str = "values") -> Segment:
    """An array's bytes as they are, little-endian: ``size * itemsize * 8`` bits."""
    dtype = DTYPES[dtype_name(array.dtype)]
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return Segment(name, term, 8 * len(data), data)


def decode_raw(segment: Segment, dtype: str, count: int) -> np.ndarray:
    """Inverse of :func:`encode_raw` for ``count`` items of the whitelisted ``dtype``."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; supported: {sorted(DTYPES)}")
    expected = 8 * count * DTYPES[dtype].itemsize
    if segment.bits != expected:
        raise ValueError(f"segment {segment.name!r} holds {segment.bits} bits, expected {expected}")
    return np.frombuffer(segment.data, dtype=DTYPES[dtype]).astype(DTYPES[dtype].newbyteorder("="))


def encode_values(
    values: np.ndarray, name: str, use_huffman: bool = True
) -> tuple[dict[str, Any], list[Segment], str]:
    """Store a 1-D array raw, or as a lossless codebook when that takes fewer bytes.

    Raw: ``n * itemsize * 8`` bits. Codebook (floats only): ``k`` distinct
    values at ``itemsize * 8`` bits plus ``n`` codes of ``code_bits(k)``
    bits (or Huffman-coded). A weight-shared layer's 16 values cost
    ``16 * 32`` bits plus 4 bits per weight; a freshly trained layer's
    values are all distinct, so it stays raw.

    Returns ``(meta, segments, description)``.
    """
    values = np.asarray(values).ravel()
    meta: dict[str, Any] = {"count": int(values.size), "dtype": dtype_name(values.dtype)}
    raw = [encode_raw(values, name)]
    best = (meta, raw, f"raw {meta['dtype']}")
    if values.dtype.kind != "f" or values.size < 2:
        return best
    codebook, codes = codebook_encode(values)
    k = len(codebook)
    table_bits = k * 8 * values.dtype.itemsize
    # cheapest the codes could be: packed, or Huffman at >= 1 bit per code plus its table
    codes_floor = values.size * code_bits(k) if k <= MAX_K else 0
    if use_huffman:
        codes_floor = min(codes_floor, values.size + huffman.table_bits(k))
    if k > MAX_K or table_bits + codes_floor >= raw[0].bits:
        return best
    codes_meta, code_segments = encode_int_stream(
        codes, code_bits(k), name + ".codes", "values", use_huffman
    )
    segments = [encode_raw(codebook, name + ".codebook", "codebook"), *code_segments]
    if total_bytes(segments) < total_bytes(raw):
        how = "Huffman" if "huffman" in codes_meta else f"{code_bits(k)}-bit"
        return (
            {**meta, "codebook": k, "codes": codes_meta},
            segments,
            f"codebook of {k} {meta['dtype']} + {how} codes",
        )
    return best


def decode_values(meta: dict[str, Any], reader: SegmentReader, name: str) -> np.ndarray:
    """Inverse of :func:`encode_values`."""
    count, dtype = _count(meta), meta["dtype"]
    if "codebook" not in meta:
        return decode_raw(reader.take(name), dtype, count)
    k = _count(meta, "codebook")
    codebook = decode_raw(reader.take(name + ".codebook"), dtype, k)
    codes_meta = meta["codes"]
    if _count(codes_meta) != count or codes_meta["bits"] != code_bits(max(k, 1)):
        raise ValueError(f"codes of {name!r} do not match a {k}-entry codebook of {count} values")
    codes = decode_int_stream(codes_meta, reader, name + ".codes")
    if codes.size and codes.max() >= k:
        raise ValueError(f"a code of {name!r} points past the end of its {k}-entry codebook")
    return codebook[codes]
