"""Streams and whole-tensor codecs: exact round trips (property tests) and strict decoding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.storage.dense import encode_dense, encode_state
from compression.storage.encoded import decode_tensor
from compression.storage.sparse_codec import encode_sparse
from compression.storage.streams import (
    Segment,
    SegmentReader,
    decode_int_stream,
    decode_values,
    encode_int_stream,
    encode_values,
)


@settings(deadline=None, max_examples=40)
@given(st.integers(0, 2**31), st.integers(0, 400), st.integers(1, 16), st.booleans())
def test_int_stream_round_trip(seed, count, bits, skewed):
    rng = np.random.default_rng(seed)
    if skewed:
        values = np.minimum(rng.geometric(0.5, size=count) - 1, (1 << bits) - 1)
    else:
        values = rng.integers(0, 1 << bits, size=count)
    meta, segments = encode_int_stream(values, bits, "s", "indices")
    assert sum(len(s.data) for s in segments) <= (count * bits + 7) // 8  # never worse
    reader = SegmentReader(segments)
    np.testing.assert_array_equal(decode_int_stream(meta, reader, "s"), values)
    reader.finish()


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**31), st.integers(0, 300), st.integers(1, 300))
def test_value_stream_round_trip_is_bit_exact(seed, count, distinct):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal(distinct).astype(np.float32)
    table[0] = -0.0
    values = table[rng.integers(0, distinct, size=count)]
    meta, segments, _ = encode_values(values, "v")
    back = decode_values(meta, SegmentReader(segments), "v")
    assert back.dtype == np.float32 and back.tobytes() == values.tobytes()


arrays = st.tuples(
    st.integers(0, 2**31), st.integers(1, 9), st.integers(1, 40), st.floats(0, 1), st.booleans()
)


@settings(deadline=None, max_examples=50)
@given(arrays)
def test_sparse_codec_round_trip(case):
    seed, rows, cols, density, few_values = case
    rng = np.random.default_rng(seed)
    keep = rng.random((rows, cols)) < density
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    if few_values:  # weight-shared values, some kept entries exactly 0.0 or -0.0
        w = np.array([0.0, -0.0, 0.5, -1.25], dtype=np.float32)[rng.integers(0, 4, (rows, cols))]
    effective = w * keep
    enc = encode_sparse(effective, keep=keep, mask_key="0.mask")
    decoded = decode_tensor(enc.codec, enc.meta, enc.segments)
    np.testing.assert_array_equal(decoded["0.mask"], keep)
    np.testing.assert_array_equal(decoded["value"], effective)
    plain = encode_sparse(effective)  # no mask: the nonzeros
    np.testing.assert_array_equal(plain.decode()["value"], effective)


def test_dense_and_state_round_trips():
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    assert encode_dense(w).decode()["value"].tobytes() == w.tobytes()
    mask = w > 0
    enc = encode_state({"value": w, "0.mask": mask})
    assert enc.bits == 12 * 32 + 12 and enc.bits_by_term()["indices"] == 12
    out = enc.decode()
    np.testing.assert_array_equal(out["0.mask"], mask)
    assert out["value"].tobytes() == w.tobytes()
    counter = np.array(5, dtype=np.int64)  # BatchNorm's num_batches_tracked
    back = encode_dense(counter).decode()["value"]
    assert back.dtype == np.int64 and back.shape == () and int(back) == 5


def test_segments_are_checked():
    with pytest.raises(ValueError, match="need 2 bytes"):
        Segment("s", "values", 9, b"\x00")
    with pytest.raises(ValueError, match="term"):
        Segment("s", "weights", 8, b"\x00")
    enc = encode_dense(np.ones(3, dtype=np.float32) * np.arange(3, dtype=np.float32))
    extra = [*enc.segments, Segment("junk", "values", 8, b"\x00")]
    with pytest.raises(ValueError, match="unexpected segments"):
        decode_tensor(enc.codec, enc.meta, extra)
    with pytest.raises(ValueError, match="missing"):
        decode_tensor(enc.codec, enc.meta, [])
    with pytest.raises(ValueError, match="unknown codec"):
        decode_tensor("pickle", enc.meta, enc.segments)
