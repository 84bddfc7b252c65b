"""Sparse positions: bitmask, CSR and relative indices with fillers (Deep Compression)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.storage import sparse


def test_relative_indices_fillers_on_a_hand_made_gap_pattern():
    # 3-bit indices hold 0..7 skipped zeros (a gap of at most 8).
    # positions [1, 20]: skip 1 zero (position 0) -> code 1;
    # then 18 zeros (2..19): skip 7, filler at 9; skip 7, filler at 17; skip 2 -> 20.
    positions = np.array([1, 20])
    assert sparse.count_fillers(positions, 3) == 2
    codes, is_filler = sparse.relative_encode(positions, 3)
    np.testing.assert_array_equal(codes, [1, 7, 7, 2])
    np.testing.assert_array_equal(is_filler, [False, True, True, False])
    np.testing.assert_array_equal(sparse.relative_decode(codes, 3), [1, 9, 17, 20])
    assert sparse.relative_bits(positions, 3) == 4 * 3


def test_relative_fillers_at_the_run_boundaries():
    # a run of exactly 7 zeros fits one 3-bit index; 8 zeros need one filler; 16 need two
    assert sparse.count_fillers(np.array([7]), 3) == 0
    assert sparse.count_fillers(np.array([8]), 3) == 1
    assert sparse.count_fillers(np.array([16]), 3) == 2
    assert sparse.count_fillers(np.array([0, 1, 2]), 1) == 0
    # Deep Compression's Fig. 2 pattern (their index 15 after 4): 10 zeros -> 1 filler at 3 bits
    assert sparse.count_fillers(np.array([1, 4, 15]), 3) == 1


def test_bitmask_and_csr_known_answers():
    positions = np.array([1, 6])  # shape (2, 4): row 0 col 1, row 1 col 2
    assert sparse.bitmask_bits(8) == 8
    np.testing.assert_array_equal(sparse.bitmask_encode(positions, 8), [0, 1, 0, 0, 0, 0, 1, 0])
    row_ptr, col_idx = sparse.csr_encode(positions, (2, 4))
    np.testing.assert_array_equal(row_ptr, [0, 1, 2])
    np.testing.assert_array_equal(col_idx, [1, 2])
    # w_ptr = bits_needed(2) = 2, w_col = bits_needed(3) = 2: 3 * 2 + 2 * 2
    assert sparse.csr_bits(2, (2, 4)) == 10
    # a 300x784 layer keeping 11,760 weights: 301 * 14 + 11,760 * 10 bits
    assert sparse.csr_bits(11_760, (300, 784)) == 301 * 14 + 11_760 * 10


def test_position_costs_count_filler_values():
    costs = sparse.position_costs(np.array([1, 20]), (21,), value_bits=32)
    assert costs["bitmask"] == 21
    assert costs["relative3"] == 4 * 3 + 2 * 32  # two fillers store a float32 zero each
    assert costs["relative5"] == 2 * 5  # 18 zeros fit in 5 bits: no filler
    assert costs["relative4"] == 3 * 4 + 32  # 18 > 15: one filler
    assert costs["csr"] == 2 * 2 + 2 * 5  # one row: row_ptr [0, 2], columns 1 and 20
    assert sparse.cheapest_positions(np.array([1, 20]), (21,), 32) == ("relative5", 10)


def test_cheapest_positions_dense_versus_very_sparse():
    rng = np.random.default_rng(0)
    half = np.flatnonzero(rng.random(10_000) < 0.5)
    assert sparse.cheapest_positions(half, (100, 100), 32)[0] == "bitmask"
    few = np.flatnonzero(rng.random(10_000) < 0.02)
    assert sparse.cheapest_positions(few, (100, 100), 32)[0].startswith("relative")


masks = st.integers(0, 2**31).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(1, 12), st.integers(1, 12), st.floats(0, 1))
)


@settings(deadline=None, max_examples=40)
@given(masks, st.integers(1, 16))
def test_round_trips(case, bits):
    seed, rows, cols, density = case
    keep = np.random.default_rng(seed).random((rows, cols)) < density
    positions = np.flatnonzero(keep)
    np.testing.assert_array_equal(
        sparse.bitmask_decode(sparse.bitmask_encode(positions, keep.size)), positions
    )
    row_ptr, col_idx = sparse.csr_encode(positions, keep.shape)
    np.testing.assert_array_equal(sparse.csr_decode(row_ptr, col_idx, keep.shape), positions)
    codes, is_filler = sparse.relative_encode(positions, bits)
    assert codes.max(initial=0) < 2**bits
    assert is_filler.sum() == sparse.count_fillers(positions, bits)
    np.testing.assert_array_equal(sparse.relative_decode(codes, bits)[~is_filler], positions)
