"""Bit-packing: exact lengths, a hand-packed example, round trips, refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.storage.bitpack import (
    bits_needed,
    pack_bits,
    packed_bits,
    packed_bytes,
    unpack_bits,
)


def test_ten_values_at_three_bits_take_30_bits_in_4_bytes():
    values = np.arange(10) % 8
    assert packed_bits(10, 3) == 30
    assert packed_bytes(10, 3) == 4
    assert len(pack_bits(values, 3)) == 4


def test_hand_packed_bytes():
    # 5, 1, 7 at 3 bits: 101 001 111 -> 10100111 1(0000000)
    assert pack_bits([5, 1, 7], 3) == bytes([0b10100111, 0b10000000])
    # 16-bit values are written most significant byte first
    assert pack_bits([0x1234], 16) == b"\x12\x34"
    assert pack_bits([], 5) == b""


def test_bits_needed():
    assert [bits_needed(v) for v in (0, 1, 2, 7, 8, 255, 256)] == [1, 1, 2, 3, 4, 8, 9]


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 16), st.integers(0, 60), st.integers(0, 2**31))
def test_round_trip(bits, count, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, size=count)
    data = pack_bits(values, bits)
    assert len(data) == (count * bits + 7) // 8
    np.testing.assert_array_equal(unpack_bits(data, bits, count), values)


@pytest.mark.parametrize("bits", [0, 33, 2.5, True])
def test_bad_width_is_refused(bits):
    with pytest.raises(ValueError, match="bits must be an integer in 1..32"):
        pack_bits([1], bits)


def test_out_of_range_values_are_refused():
    with pytest.raises(ValueError, match="0..7"):
        pack_bits([8], 3)
    with pytest.raises(ValueError, match="0..7"):
        pack_bits([-1], 3)
    with pytest.raises(TypeError, match="integers"):
        pack_bits(np.array([0.5]), 3)


def test_damaged_data_is_refused():
    with pytest.raises(ValueError, match="need 4 bytes, got 3"):
        unpack_bits(b"\x00\x00\x00", 3, 10)
    with pytest.raises(ValueError, match="padding"):
        unpack_bits(bytes([0b10100111, 0b10000001]), 3, 3)
