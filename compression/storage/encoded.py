"""``EncodedTensor`` and the codec registry: how a tensor is stored, and how to read it back.

A *codec* is a pair of plain functions on arrays:

* ``encode_<codec>(arrays...) -> EncodedTensor``: a codec name, a small
  JSON-ready ``meta`` (shape, bit widths, which position format...), and
  the :class:`~compression.storage.streams.Segment` s holding the bits;
* a decoder ``(meta, SegmentReader) -> dict of arrays``, registered in
  :data:`CODECS` under the codec's name. It returns ``"value"`` (the
  tensor) and, for transform state, ``"<i>.<name>"`` (the ``state_dict``
  suffix of that state, e.g. ``"0.mask"``).

=================  =================================  ===================================
codec (file)       stores                             bits (before Huffman and padding)
=================  =================================  ===================================
dense (dense.py)   every value                        ``n * 32`` (float32), or a lossless
                                                      codebook when smaller
state (dense.py)   a parameter's state_dict entries   latent values raw, masks 1 bit each
sparse             kept values + their positions      ``nnz * 32 + positions``
(sparse_codec.py)
quantized          b-bit integers + scale and         ``n * b + C * (32 + b)``
(quantized.py)     zero-point per tensor or channel   (C channels)
shared             log2(k)-bit codes + codebook       ``n * log2(k) + k * 32``
(quantized.py)
=================  =================================  ===================================

A file names its codecs; only the names in :data:`CODECS` can be decoded.
Decoders check every length against the meta, so a damaged file raises
``ValueError`` instead of decoding garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compression.storage.streams import TERMS, Segment, SegmentReader, total_bytes

MAX_ELEMENTS = 1 << 28  # a file may not make the loader allocate more than this per tensor

Decoder = Callable[[dict[str, Any], SegmentReader], dict[str, np.ndarray]]
CODECS: dict[str, Decoder] = {}


def register_codec(name: str) -> Callable[[Decoder], Decoder]:
    """Decorator: make ``name`` a codec the file format can name, decoded by the function."""

    def add(decoder: Decoder) -> Decoder:
        CODECS[name] = decoder
        return decoder

    return add


@dataclass
class EncodedTensor:
    """One tensor's encoding: codec name, JSON-ready meta, segments, and why it was chosen.

    Attributes
    ----------
    codec : str
        A key of :data:`CODECS`.
    meta : dict
        Everything the decoder needs besides the segments (plain JSON).
    segments : list of Segment
    description : str
        What was stored, e.g. ``"sparse (11760/235200 kept): relative 6-bit indices..."``.
    reason : str
        Why this encoding won (filled in by the chooser, see ``tensor.py``).
    alternatives : dict of str -> int
        Every candidate considered, with its size in bytes.
    """

    codec: str
    meta: dict[str, Any]
    segments: list[Segment]
    description: str
    reason: str = ""
    alternatives: dict[str, int] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        """Exact payload bits (no padding)."""
        return sum(s.bits for s in self.segments)

    @property
    def nbytes(self) -> int:
        """Bytes in the file (each segment rounded up to a whole byte)."""
        return total_bytes(self.segments)

    def bits_by_term(self) -> dict[str, int]:
        """Bits per report term (``values``, ``indices``...)."""
        return {t: sum(s.bits for s in self.segments if s.term == t) for t in TERMS}

    def bytes_by_term(self) -> dict[str, int]:
        """Bytes per report term."""
        return {t: sum(len(s.data) for s in self.segments if s.term == t) for t in TERMS}

    def decode(self) -> dict[str, np.ndarray]:
        """Decode these very segments (a round trip check)."""
        return decode_tensor(self.codec, self.meta, self.segments)


def decode_tensor(
    codec: str, meta: dict[str, Any], segments: list[Segment]
) -> dict[str, np.ndarray]:
    """Arrays back from a codec name, its meta and its segments.

    Raises
    ------
    ValueError
        For an unknown codec, or segments that do not match the meta
        (missing, of the wrong length, left over).
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known codecs: {sorted(CODECS)}")
    if not isinstance(meta, dict):
        raise ValueError(f"codec meta must be a JSON object, got {type(meta).__name__}")
    reader = SegmentReader(segments)
    arrays = CODECS[codec](meta, reader)
    reader.finish()
    return arrays


def check_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """``meta["shape"]`` as a tuple, checked (non-negative ints, at most MAX_ELEMENTS entries)."""
    shape = meta["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError(f"shape must be a list of non-negative integers, got {shape!r}")
    if float(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
        raise ValueError(f"shape {shape} has more than {MAX_ELEMENTS} elements")
    return tuple(shape)


def is_plus_zero(values: np.ndarray) -> np.ndarray:
    """True where the bit pattern is all zeros (``+0.0``; ``-0.0`` is not)."""
    values = np.ascontiguousarray(values)
    return values.view(f"u{values.dtype.itemsize}") == 0
