"""Canonical Huffman coding: frequent symbols get short codes (Huffman 1952).

Bit-packing spends the same number of bits on every symbol. When some
symbols are much more frequent (the index gaps of a pruned layer, the
codes of a shared layer), a variable-length prefix code spends fewer:
Deep Compression's last stage (Han et al. 2016, sec. 4) saves 20-30% this
way.

Building the code (with :mod:`heapq`): put every symbol in a heap keyed by
its count; repeatedly pop the two lightest nodes, merge them into one whose
count is the sum; every symbol inside a merged node gets one bit deeper.
A symbol's depth is its *code length* ``L(s)``, and::

    data bits = sum over symbols of count(s) * L(s)

Worked example (Cormen et al., sec. 16.3): counts a:45 b:13 c:12 d:16 e:9
f:5 give lengths a1 b3 c3 d3 e4 f4 and ``45*1 + (13+12+16)*3 + (9+5)*4 =
224`` bits, against ``100 * 3 = 300`` bits at a fixed 3 bits per symbol.

*Canonical* codes are fixed by the lengths alone: sort symbols by (length,
symbol), give the first the code 0...0, and each next one the previous
code plus one, shifted left when the length grows. So the decoder needs
only the lengths, and the code table stored in the file is::

    table bits = alphabet_size * 5       (a 5-bit length, 0..31, per symbol;
                                          0 = the symbol does not occur)

For the example: a=0, b=100, c=101, d=110, e=1110, f=1111.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping

import numpy as np

LENGTH_BITS = 5
MAX_CODE_LENGTH = (1 << LENGTH_BITS) - 1  # 31


def code_lengths(counts: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """Huffman code length of every symbol with a positive count.

    Parameters
    ----------
    counts : mapping of symbol -> int
        Symbols must be sortable (ties are broken by symbol order, so the
        result is deterministic). A lone symbol gets length 1.

    Returns
    -------
    dict of symbol -> int

    Examples
    --------
    >>> code_lengths({"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5})
    {'a': 1, 'b': 3, 'c': 3, 'd': 3, 'e': 4, 'f': 4}
    """
    symbols = sorted(s for s, c in counts.items() if c > 0)
    if len(symbols) == 1:
        return {symbols[0]: 1}
    lengths = dict.fromkeys(symbols, 0)
    # heap entries: (count, tie-break order, symbols in this subtree)
    heap = [(int(counts[s]), i, [s]) for i, s in enumerate(symbols)]
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        count_a, _, group_a = heapq.heappop(heap)
        count_b, _, group_b = heapq.heappop(heap)
        for s in group_a + group_b:  # everything under the new node goes one level deeper
            lengths[s] += 1
        heapq.heappush(heap, (count_a + count_b, order, group_a + group_b))
        order += 1
    return lengths


def canonical_codes(lengths: Mapping[Hashable, int]) -> dict[Hashable, str]:
    """Canonical codewords (as '0'/'1' strings) from code lengths.

    >>> canonical_codes({"a": 1, "b": 3, "c": 3, "d": 3, "e": 4, "f": 4})
    {'a': '0', 'b': '100', 'c': '101', 'd': '110', 'e': '1110', 'f': '1111'}
    """
    codes: dict[Hashable, str] = {}
    code, previous = 0, 0
    for s in sorted((s for s in lengths if lengths[s] > 0), key=lambda s: (lengths[s], s)):
        code <<= lengths[s] - previous
        previous = lengths[s]
        codes[s] = format(code, f"0{previous}b")
        code += 1
    return codes


def encoded_bits(counts: Mapping[Hashable, int]) -> int:
    """Data bits of the Huffman-coded stream: ``sum(count(s) * L(s))`` (224 for the example)."""
    lengths = code_lengths(counts)
    return sum(int(counts[s]) * lengths[s] for s in lengths)


def table_bits(alphabet_size: int) -> int:
    """Bits of the stored code table: ``alphabet_size * 5``."""
    return int(alphabet_size) * LENGTH_BITS


def stream_lengths(symbols: np.ndarray, alphabet_size: int) -> np.ndarray:
    """Code length per symbol ``0..alphabet_size-1`` for an integer stream (0 = absent)."""
    counts = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=alphabet_size)
    table = np.zeros(alphabet_size, dtype=np.int64)
    present = {int(s): int(counts[s]) for s in np.flatnonzero(counts)}
    for s, length in code_lengths(present).items():
        table[s] = length
    return table


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Encode integer ``symbols`` with the canonical code of ``lengths``.

    Returns ``(data, nbits)``: the concatenated codewords, most significant
    bit first, in ``ceil(nbits / 8)`` bytes (``nbits = sum count*L``).
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.max(initial=0) > MAX_CODE_LENGTH:
        raise ValueError(f"a Huffman code longer than {MAX_CODE_LENGTH} bits cannot be stored")
    code_of = np.zeros(len(lengths), dtype=np.int64)
    for s, word in canonical_codes({int(s): int(lengths[s]) for s in range(len(lengths))}).items():
        code_of[s] = int(word, 2)
    L, C = lengths[symbols], code_of[symbols]
    if symbols.size and (L == 0).any():
        raise ValueError("huffman_encode: a symbol of the stream has no code (length 0)")
    width = int(L.max(initial=1))
    j = np.arange(width, dtype=np.int64)
    # bit j of a codeword of length L is (C >> (L - 1 - j)) & 1, for j < L only
    shift = np.maximum(L[:, None] - 1 - j, 0)
    bit_matrix = ((C[:, None] >> shift) & 1).astype(np.uint8)
    bits = bit_matrix[j < L[:, None]]  # row by row, the first L bits of each row
    return np.packbits(bits).tobytes(), int(L.sum())


def huffman_decode(data: bytes, nbits: int, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols from ``nbits`` bits coded with the canonical code of ``lengths``.

    Canonical codes can be decoded without a tree: left-align the next
    ``Lmax`` bits as an integer ``w``; the code length is the smallest
    ``L`` whose codes' (left-aligned) upper limit exceeds ``w``, and the
    symbol is found by its rank among the codes of that length.

    Raises
    ------
    ValueError
        For an impossible table (lengths over 31, Kraft sum above 1), a
        wrong data length, non-zero padding, a bit pattern that is no code,
        or bits left over: a damaged file never decodes silently.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH):
        raise ValueError(f"Huffman code lengths must lie in 0..{MAX_CODE_LENGTH}")
    if len(data) != (nbits + 7) // 8:
        raise ValueError(
            f"Huffman data of {nbits} bits needs {(nbits + 7) // 8} bytes, got {len(data)}"
        )
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[nbits:].any():
        raise ValueError("the padding bits after the Huffman data are not zero")
    if count == 0:
        if nbits:
            raise ValueError("Huffman data holds bits but no symbols")
        return np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(lengths)
    if present.size == 0 or np.sum(2.0 ** -lengths[present]) > 1.0:
        raise ValueError("Huffman code lengths do not form a prefix code (Kraft sum > 1)")
    Lmax = int(lengths.max())
    order = present[np.lexsort((present, lengths[present]))]  # sorted by (length, symbol)
    n_of = np.bincount(lengths[present], minlength=Lmax + 1)  # codes per length
    first = np.zeros(Lmax + 1, dtype=np.int64)  # first canonical code of each length
    offset = np.zeros(Lmax + 1, dtype=np.int64)  # its rank in `order`
    code = 0
    for L in range(1, Lmax + 1):
        code <<= 1
        first[L], offset[L] = code, offset[L - 1] + n_of[L - 1]
        code += int(n_of[L])
    limit = np.array([(first[L] + n_of[L]) << (Lmax - L) for L in range(1, Lmax + 1)])
    padded = np.concatenate([bits[:nbits], np.zeros(Lmax, dtype=np.uint8)]).astype(np.int64)
    window = np.zeros(nbits, dtype=np.int64)
    for j in range(Lmax):  # window[p] = the Lmax bits starting at bit p, as an integer
        window = (window << 1) | padded[j : j + nbits]
    length_at = np.searchsorted(limit, window, side="right") + 1  # Lmax + 1 = no code
    steps = length_at.tolist()
    starts, p = [], 0
    for _ in range(count):  # the one sequential step: where does the next codeword start?
        if p >= nbits or steps[p] > Lmax or p + steps[p] > nbits:
            raise ValueError("Huffman data is damaged: a bit pattern matches no code")
        starts.append(p)
        p += steps[p]
    if p != nbits:
        raise ValueError(f"Huffman data holds {nbits - p} bits more than {count} symbols need")
    starts_arr = np.array(starts, dtype=np.int64)
    L = length_at[starts_arr]
    rank = offset[L] + (window[starts_arr] >> (Lmax - L)) - first[L]
    return order[rank]
