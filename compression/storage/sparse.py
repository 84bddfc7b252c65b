"""Where the kept weights are: three ways to store the positions of a sparse tensor.

A pruned tensor of ``n`` entries keeps ``nnz`` of them. Storing it densely
costs ``32 * n`` bits whatever ``nnz`` is (zeros cost as much as weights).
Storing only the kept values costs ``32 * nnz`` bits *plus the positions*,
and the positions are the part that tools forget to count. Positions are
flat indices into the tensor in C order (``np.flatnonzero(mask)``).

=================  ============================================  ==================
format             bits                                          cheapest when
=================  ============================================  ==================
bitmask            ``n``                                         sparsity < ~90%
CSR                ``(rows + 1) * w_ptr + nnz * w_col``          rows are short
relative, ``b``    ``(nnz + fillers) * b`` (+ a zero value       sparsity > ~90%
bits               per filler)
=================  ============================================  ==================

CSR (compressed sparse row, as ``scipy.sparse.csr_matrix`` and Han et al.
2015) views the tensor as ``rows = shape[0]`` rows of ``cols = n / rows``
entries; ``row_ptr`` (``rows + 1`` entries of ``w_ptr = bits_needed(nnz)``
bits) says where each row's entries start, ``col_idx`` (``nnz`` entries of
``w_col = bits_needed(cols - 1)`` bits) gives each entry's column.

Relative indices (Han, Mao, Dally 2016, Deep Compression, sec. 3 and
Fig. 2) store, for each kept entry, how many zeros were *skipped* since the
previous stored entry, in ``b`` bits, so at most ``2**b - 1``. A longer run
of zeros gets a *filler*: an explicit zero stored after ``2**b - 1``
skipped zeros, which costs an index *and a value* (a zero; in a codebook,
a code for zero). A run of ``r`` zeros before a kept entry needs
``r // 2**b`` fillers. Trailing zeros after the last entry cost nothing
(the tensor's size is known).
"""

from __future__ import annotations

import numpy as np

from compression.storage.bitpack import bits_needed, check_bits

# ---------------------------------------------------------------- bitmask


def bitmask_bits(size: int) -> int:
    """Bits of a bitmask: one per entry, ``size``. A 300x784 mask: 235,200 bits."""
    return int(size)


def bitmask_encode(positions: np.ndarray, size: int) -> np.ndarray:
    """0/1 array of length ``size`` with ones at ``positions`` (pack it at 1 bit).

    Example: positions ``[1, 3]``, size 5 -> ``[0, 1, 0, 1, 0]``: 5 bits.
    """
    mask = np.zeros(int(size), dtype=np.uint8)
    mask[np.asarray(positions, dtype=np.int64)] = 1
    return mask


def bitmask_decode(mask: np.ndarray) -> np.ndarray:
    """Positions of the ones of a 0/1 array (inverse of :func:`bitmask_encode`)."""
    return np.flatnonzero(np.asarray(mask)).astype(np.int64)


# -------------------------------------------------------------------- CSR


def csr_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, cols)`` of the CSR view: ``(shape[0], size / shape[0])``; 1-D -> one row."""
    size = int(np.prod(shape, dtype=np.int64))
    if len(shape) < 2 or shape[0] == 0:
        return 1, size
    return int(shape[0]), size // int(shape[0])


def csr_widths(nnz: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(w_ptr, w_col) = (bits_needed(nnz), bits_needed(cols - 1))``."""
    _, cols = csr_shape(shape)
    return bits_needed(nnz), bits_needed(max(cols - 1, 0))


def csr_bits(nnz: int, shape: tuple[int, ...]) -> int:
    """Bits of CSR positions: ``(rows + 1) * w_ptr + nnz * w_col``.

    Example: shape (2, 4), positions ``[1, 6]`` (row 0 col 1, row 1 col 2):
    ``w_ptr = bits_needed(2) = 2``, ``w_col = bits_needed(3) = 2``, so
    ``3 * 2 + 2 * 2 = 10`` bits.
    """
    rows, _ = csr_shape(shape)
    w_ptr, w_col = csr_widths(nnz, shape)
    return (rows + 1) * w_ptr + int(nnz) * w_col


def csr_encode(positions: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(row_ptr, col_idx)`` of sorted flat ``positions`` in a tensor of ``shape``.

    ``row_ptr[r]:row_ptr[r + 1]`` are the entries of row ``r``; for the
    example of :func:`csr_bits` ``row_ptr = [0, 1, 2]`` and ``col_idx = [1, 2]``.
    """
    rows, cols = csr_shape(shape)
    positions = np.asarray(positions, dtype=np.int64)
    row, col = np.divmod(positions, max(cols, 1))
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    row_ptr[1:] = np.cumsum(np.bincount(row, minlength=rows))
    return row_ptr, col


def csr_decode(row_ptr: np.ndarray, col_idx: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat positions from CSR arrays (checked: a damaged file must not decode silently)."""
    rows, cols = csr_shape(shape)
    row_ptr = np.asarray(row_ptr, dtype=np.int64)
    col_idx = np.asarray(col_idx, dtype=np.int64)
    counts = np.diff(row_ptr)
    if (
        row_ptr.shape != (rows + 1,)
        or row_ptr[0] != 0
        or row_ptr[-1] != col_idx.size
        or (counts < 0).any()
    ):
        raise ValueError(f"CSR row_ptr {row_ptr[:8]}... is not a valid row pointer array")
    if col_idx.size and col_idx.max() >= cols:
        raise ValueError(f"CSR column index {col_idx.max()} is outside 0..{cols - 1}")
    positions = np.repeat(np.arange(rows, dtype=np.int64), counts) * cols + col_idx
    if (np.diff(positions) <= 0).any():
        raise ValueError("CSR positions are not strictly increasing within rows")
    return positions


# ------------------------------------------------------- relative indices


def _skips(positions: np.ndarray) -> np.ndarray:
    """Zeros skipped before each kept entry: ``p[i] - p[i - 1] - 1`` with ``p[-1] = -1``."""
    positions = np.asarray(positions, dtype=np.int64)
    return np.diff(positions, prepend=-1) - 1


def count_fillers(positions: np.ndarray, bits: int) -> int:
    """Filler zeros needed with ``bits``-bit relative indices: ``sum(skip // 2**bits)``.

    Example (3 bits, at most 7 skipped zeros per index): positions ``[1, 20]``
    skip 1 zero, then 18 zeros; ``18 // 8 = 2`` fillers (at positions 9 and 17).
    """
    return int((_skips(positions) >> check_bits(bits)).sum())


def relative_bits(positions: np.ndarray, bits: int) -> int:
    """Index bits: ``(nnz + fillers) * bits``. Each filler also stores a zero value."""
    return (len(positions) + count_fillers(positions, bits)) * check_bits(bits)


def relative_encode(positions: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative indices with fillers (Deep Compression, Fig. 2).

    Parameters
    ----------
    positions : ndarray of int, shape (nnz,)
        Strictly increasing flat positions.
    bits : int in 1..16

    Returns
    -------
    codes : ndarray of int64, shape (nnz + fillers,)
        Zeros skipped before each stored entry, each in ``0..2**bits - 1``.
    is_filler : ndarray of bool, shape (nnz + fillers,)
        True for the filler entries (whose value must be stored as zero).

    Examples
    --------
    >>> relative_encode(np.array([1, 20]), 3)   # skips 1, then 7 + filler, 7 + filler, 2
    (array([1, 7, 7, 2]), array([False,  True,  True, False]))
    """
    period = 1 << check_bits(bits)
    skips = _skips(positions)
    if (skips < 0).any():
        raise ValueError("relative_encode: positions must be strictly increasing and >= 0")
    fillers = skips // period
    real_slots = np.cumsum(fillers + 1) - 1  # where each real entry lands in the stream
    total = int(real_slots[-1]) + 1 if len(real_slots) else 0
    codes = np.full(total, period - 1, dtype=np.int64)  # a filler skips the maximum
    codes[real_slots] = skips % period
    is_filler = np.ones(total, dtype=bool)
    is_filler[real_slots] = False
    return codes, is_filler


def relative_decode(codes: np.ndarray, bits: int) -> np.ndarray:
    """Positions of every stored entry, fillers included: ``cumsum(codes + 1) - 1``.

    Which entries are fillers is decided with their values (see
    :mod:`compression.storage.codecs`): a filler is a zero stored after the
    maximum skip.
    """
    check_bits(bits)
    return np.cumsum(np.asarray(codes, dtype=np.int64) + 1) - 1


# ------------------------------------------------------------- the choice


def position_costs(
    positions: np.ndarray, shape: tuple[int, ...], value_bits: int
) -> dict[str, int]:
    """Bits to store ``positions`` in each format, fillers' values included.

    Returns ``{"bitmask": n, "csr": ..., "relative1": ..., ..., "relative16": ...}``
    where ``relative<b>`` is ``(nnz + fillers) * b + fillers * value_bits``
    (a filler stores a zero value of ``value_bits`` bits). The kept values
    themselves cost the same in every format and are not included.
    """
    size = int(np.prod(shape, dtype=np.int64))
    nnz = len(positions)
    costs = {"bitmask": bitmask_bits(size), "csr": csr_bits(nnz, shape)}
    skips = _skips(positions)
    for b in range(1, 17):
        fillers = int((skips >> b).sum())
        costs[f"relative{b}"] = (nnz + fillers) * b + fillers * int(value_bits)
    return costs


def cheapest_positions(
    positions: np.ndarray, shape: tuple[int, ...], value_bits: int
) -> tuple[str, int]:
    """``(format, bits)`` of the cheapest entry of :func:`position_costs` (ties: first listed)."""
    costs = position_costs(positions, shape, value_bits)
    best = min(costs, key=costs.__getitem__)
    return best, costs[best]
