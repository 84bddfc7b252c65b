"""Codebooks and quantized integers: Deep Compression's ratio to the bit, round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.storage.codebook import (
    code_bits,
    codebook_bits,
    codebook_decode,
    codebook_encode,
    deep_compression_ratio,
)
from compression.storage.quantized import dequantize, encode_quantized, encode_shared


def test_deep_compression_ratio_to_the_bit():
    # n = 1000 float32 weights shared among k = 16 centroids:
    # 1000 codes of log2(16) = 4 bits + 16 * 32 bits of codebook = 4512 bits
    n, b, k = 1000, 32, 16
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal(k).astype(np.float32)
    codes = rng.permutation(np.arange(n) % k)  # uniform: Huffman cannot help
    enc = encode_shared(codes.reshape(20, 50), codebook, use_huffman=False)
    terms = enc.bits_by_term()
    assert terms["values"] == n * 4 == 4000
    assert terms["codebook"] == k * b == 512
    assert enc.bits == codebook_bits(n, k) == 4512
    assert enc.nbytes == 500 + 64
    assert n * b / enc.bits == deep_compression_ratio(n, k, b) == 32000 / 4512
    np.testing.assert_array_equal(enc.decode()["value"], codebook[codes].reshape(20, 50))


def test_code_bits():
    assert [code_bits(k) for k in (1, 2, 3, 4, 16, 17, 256, 65536)] == [1, 1, 2, 2, 4, 5, 8, 16]
    with pytest.raises(ValueError, match="1..65536"):
        code_bits(0)


def test_huffman_shrinks_skewed_codes():
    codes = np.zeros(1000, dtype=np.int64)
    codes[:10] = np.arange(10)  # one centroid holds 99% of the weights
    plain = encode_shared(codes, np.arange(16, dtype=np.float32), use_huffman=False)
    coded = encode_shared(codes, np.arange(16, dtype=np.float32))
    assert coded.nbytes < plain.nbytes
    assert coded.bits_by_term()["huffman_tables"] == 10 * 5  # alphabet 0..9, 5 bits each
    np.testing.assert_array_equal(coded.decode()["value"], codes.astype(np.float32))


def test_lossless_codebook_keeps_signed_zeros():
    values = np.array([0.5, -0.0, 0.0, 0.5, -1.0], dtype=np.float32)
    codebook, codes = codebook_encode(values)
    assert len(codebook) == 4
    back = codebook_decode(codebook, codes)
    assert back.tobytes() == values.tobytes()


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**31), st.integers(1, 64), st.integers(1, 200))
def test_shared_round_trip(seed, k, n):
    rng = np.random.default_rng(seed)
    codebook = rng.standard_normal(k).astype(np.float32)
    codes = rng.integers(0, k, size=n)
    enc = encode_shared(codes, codebook)
    np.testing.assert_array_equal(enc.decode()["value"], codebook[codes])


def test_quantized_bits_known_answer():
    # a (300, 784) weight at 8 bits per output channel: codes + 300 scales + 300 zero-points
    q = np.zeros((300, 784), dtype=np.int64)
    enc = encode_quantized(q, 8, np.ones(300), np.zeros(300, int), axis=0, use_huffman=False)
    assert enc.bits == 235_200 * 8 + 300 * 32 + 300 * 8 == 1_893_600
    assert enc.bits_by_term()["scales_zero_points"] == 300 * 40
    symmetric = encode_quantized(q - 128, 8, 0.1, None, qmin=-128, use_huffman=False)
    assert symmetric.bits == 235_200 * 8 + 32  # zero-point 0 is not stored


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**31), st.integers(1, 16), st.sampled_from([None, 0, 1]), st.booleans())
def test_quantized_round_trip(seed, bits, axis, signed):
    rng = np.random.default_rng(seed)
    qmin = -(1 << (bits - 1)) if signed else 0
    q = rng.integers(qmin, qmin + (1 << bits), size=(3, 5))
    channels = 1 if axis is None else q.shape[axis]
    scale = rng.uniform(0.01, 1, size=channels).astype(np.float32)
    zero_point = rng.integers(qmin, qmin + (1 << bits), size=channels)
    enc = encode_quantized(q, bits, scale, zero_point, axis=axis, qmin=qmin)
    expected = dequantize(q, scale, zero_point, axis)
    assert expected.dtype == np.float32
    assert enc.decode()["value"].tobytes() == expected.tobytes()


def test_quantized_refuses_out_of_range_codes():
    with pytest.raises(ValueError, match="0..3"):
        encode_quantized(np.array([4]), 2, 1.0)
    with pytest.raises(ValueError, match="scale must have 2 entries"):
        encode_quantized(np.zeros((2, 2), int), 2, [1.0], axis=0)
