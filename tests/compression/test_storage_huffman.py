"""Canonical Huffman coding: hand-worked lengths and codes, round trips, damaged data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.storage import huffman

CLRS = {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}  # Cormen et al., sec. 16.3


def test_code_lengths_worked_out_by_hand():
    # merges: f+e=14, c+b=25, 14+d=30, 25+30=55, a+55=100
    assert huffman.code_lengths(CLRS) == {"a": 1, "b": 3, "c": 3, "d": 3, "e": 4, "f": 4}
    assert huffman.encoded_bits(CLRS) == 45 * 1 + (13 + 12 + 16) * 3 + (9 + 5) * 4 == 224


def test_canonical_codes():
    codes = huffman.canonical_codes(huffman.code_lengths(CLRS))
    assert codes == {"a": "0", "b": "100", "c": "101", "d": "110", "e": "1110", "f": "1111"}


def test_edge_cases_of_the_lengths():
    assert huffman.code_lengths({}) == {}
    assert huffman.code_lengths({7: 100}) == {7: 1}  # a lone symbol still needs one bit
    assert huffman.code_lengths({0: 1, 1: 1}) == {0: 1, 1: 1}
    assert huffman.code_lengths({0: 3, 1: 0, 2: 1}) == {0: 1, 2: 1}  # zero counts get no code


def test_stream_encoding_of_the_example():
    # the example as integers a..f = 0..5, in a stream of 100 symbols
    symbols = np.repeat(np.arange(6), [45, 13, 12, 16, 9, 5])
    lengths = huffman.stream_lengths(symbols, 6)
    np.testing.assert_array_equal(lengths, [1, 3, 3, 3, 4, 4])
    data, nbits = huffman.huffman_encode(symbols, lengths)
    assert nbits == 224 and len(data) == 28
    assert huffman.table_bits(6) == 30  # six 5-bit lengths
    # the first codeword is a = '0', then b = '100' comes after the 45 a's
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    assert not bits[:45].any() and list(bits[45:48]) == [1, 0, 0]
    np.testing.assert_array_equal(huffman.huffman_decode(data, nbits, lengths, 100), symbols)


@settings(deadline=None, max_examples=40)
@given(st.integers(0, 2**31), st.integers(1, 300), st.integers(1, 40), st.floats(0.05, 0.95))
def test_round_trip(seed, count, alphabet, p):
    symbols = np.minimum(np.random.default_rng(seed).geometric(p, size=count) - 1, alphabet - 1)
    lengths = huffman.stream_lengths(symbols, alphabet)
    data, nbits = huffman.huffman_encode(symbols, lengths)
    counts = np.bincount(symbols, minlength=alphabet)
    assert nbits == int((counts * lengths).sum())
    assert nbits >= -(counts[counts > 0] * np.log2(counts[counts > 0] / count)).sum() - 1e-9
    np.testing.assert_array_equal(huffman.huffman_decode(data, nbits, lengths, count), symbols)


def test_damaged_streams_are_refused():
    symbols = np.repeat(np.arange(6), [45, 13, 12, 16, 9, 5])
    lengths = huffman.stream_lengths(symbols, 6)
    data, nbits = huffman.huffman_encode(symbols, lengths)
    with pytest.raises(ValueError, match="Kraft"):
        huffman.huffman_decode(data, nbits, np.array([1, 1, 1, 0, 0, 0]), 100)
    with pytest.raises(ValueError, match="bytes"):
        huffman.huffman_decode(data[:-1], nbits, lengths, 100)
    with pytest.raises(ValueError, match="more than"):
        huffman.huffman_decode(data, nbits, lengths, 99)
    with pytest.raises(ValueError, match="damaged"):
        huffman.huffman_decode(data, nbits, lengths, 101)
    incomplete = np.array([2, 2, 2, 0, 0, 0])  # '11' is no code
    with pytest.raises(ValueError, match="damaged"):
        huffman.huffman_decode(b"\xc0", 2, incomplete, 1)
