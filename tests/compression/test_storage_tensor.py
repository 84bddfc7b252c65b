"""The per-tensor encoder: which encoding it picks, that it says why, and that it is exact."""

import numpy as np
import pytest

import tinynet
from compression.storage.dense import encode_dense
from compression.storage.encoded import EncodedTensor
from compression.storage.tensor import (
    STORAGE_HANDLERS,
    encode_parameter,
    restore_parameter,
    round_trip_is_exact,
)


def magnitude_mask(w, sparsity):
    """Keep-mask dropping the round(sparsity * n) smallest |w| (test helper)."""
    drop = np.argsort(np.abs(w).ravel(), kind="stable")[: round(sparsity * w.size)]
    keep = np.ones(w.size, dtype=bool)
    keep[drop] = False
    return keep.reshape(w.shape)


def masked_param(shape, sparsity, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    param = tinynet.Parameter(w)
    param.add_transform(tinynet.Mask(magnitude_mask(w, sparsity)))
    return param


def reload(param, encoded):
    """What load_compressed does: transforms from their config, then the decoded arrays."""
    fresh = tinynet.Parameter(np.zeros(param.shape, dtype=param.dtype))
    for t in param.transforms:
        fresh.add_transform(type(t).from_config(t.get_config(), param.shape))
    restore_parameter(fresh, encoded.decode())
    return fresh


def test_a_dense_tensor_stays_dense_float32():
    w = np.random.default_rng(0).standard_normal((100, 300)).astype(np.float32)
    enc = encode_parameter(tinynet.Parameter(w))
    assert enc.codec == "dense" and enc.description == "dense, raw float32"
    assert enc.bits == 30_000 * 32 and enc.nbytes == 120_000
    assert "fewest bytes" in enc.reason


def test_a_95_percent_sparse_masked_tensor_picks_relative_indices_or_csr():
    param = masked_param((100, 300), 0.95)
    enc = encode_parameter(param)
    assert enc.codec == "sparse" and enc.meta["format"] in ("relative", "csr")
    assert "relative" in enc.description or "CSR" in enc.description
    assert "1500/30000 kept" in enc.description
    assert enc.nbytes == min(enc.alternatives.values())
    bitmask = [b for d, b in enc.alternatives.items() if "bitmask" in d]
    assert bitmask and bitmask[0] > enc.nbytes
    # values: 1500 kept float32 plus one float32 zero per filler
    fillers = enc.meta["values"]["count"] - 1500
    assert enc.bits_by_term()["values"] == (1500 + fillers) * 32


def test_a_50_percent_sparse_masked_tensor_picks_the_bitmask():
    param = masked_param((100, 300), 0.5)
    enc = encode_parameter(param)
    assert enc.meta["format"] == "bitmask" and "bitmask" in enc.description
    assert enc.bits_by_term()["indices"] == 30_000  # one bit per entry
    assert enc.bits_by_term()["values"] == 15_000 * 32


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_masked_round_trip_restores_mask_and_effective_value(sparsity):
    param = masked_param((20, 30), sparsity, seed=1)
    fresh = reload(param, encode_parameter(param))
    np.testing.assert_array_equal(fresh.transforms[0].mask, param.transforms[0].mask)
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh.value(), param.value())


def test_kept_zeros_are_never_mistaken_for_fillers():
    # every kept value is +0.0, so a relative width whose maximum skip a kept
    # entry uses would be ambiguous: the encoder must avoid it, and stay exact
    param = masked_param((40, 50), 0.97, seed=2)
    param.data[:] = 0.0
    enc = encode_parameter(param)
    fresh = reload(param, enc)
    np.testing.assert_array_equal(fresh.transforms[0].mask, param.transforms[0].mask)


def test_a_pruned_then_stripped_tensor_is_stored_sparse():
    param = masked_param((100, 300), 0.95)
    with tinynet.no_grad():
        baked = tinynet.Parameter(param.value().copy())  # -0.0 where negative weights were pruned
    assert np.signbit(baked.data[baked.data == 0]).any()
    enc = encode_parameter(baked)
    assert enc.codec == "sparse"
    assert enc.nbytes == encode_parameter(param).nbytes  # same bytes as the masked tensor
    np.testing.assert_array_equal(reload(baked, enc).data, baked.data)


def test_a_chain_without_handler_falls_back_to_the_state_codec():
    param = masked_param((10, 10), 0.5)
    param.add_transform(tinynet.Mask(magnitude_mask(param.data, 0.7)))  # pruned twice
    enc = encode_parameter(param)
    assert enc.codec == "state"
    assert enc.bits == 100 * 32 + 2 * 100  # latent float32 + two 1-bit masks
    fresh = reload(param, enc)
    np.testing.assert_array_equal(fresh.data, param.data)
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh.value(), param.value())


def test_a_handler_that_loses_information_is_rejected(monkeypatch):
    def forgets_the_mask(param, value, use_huffman):
        return [encode_dense(np.zeros_like(value))]  # cheap but wrong

    monkeypatch.setitem(STORAGE_HANDLERS, ("Mask",), forgets_the_mask)
    param = masked_param((10, 10), 0.5)
    assert not round_trip_is_exact(param, encode_dense(param.data))  # no mask: not exact
    enc = encode_parameter(param)
    assert enc.codec == "state" and "rejected as not exact" in enc.reason


def test_a_later_transform_registers_how_it_is_stored(monkeypatch):
    calls = []

    def handler(param, value, use_huffman):
        calls.append(param)
        return [EncodedTensor("dense", *_dense_parts(value), description="custom")]

    monkeypatch.setitem(STORAGE_HANDLERS, ("Mask", "Mask"), handler)
    param = masked_param((4, 4), 0.5)
    param.add_transform(tinynet.Mask(param.transforms[0].mask))
    enc = encode_parameter(param)
    assert calls == [param]
    # the custom candidate forgets the masks, so the exact state codec wins
    assert enc.codec == "state"


def _dense_parts(value):
    enc = encode_dense(value)
    return enc.meta, enc.segments


def test_huffman_can_be_switched_off():
    param = masked_param((100, 300), 0.95)
    enc = encode_parameter(param, use_huffman=False)
    assert enc.bits_by_term()["huffman_tables"] == 0
    assert enc.nbytes >= encode_parameter(param).nbytes


def test_float64_parameters_are_stored_exactly():
    w = np.random.default_rng(0).standard_normal((3, 4))
    enc = encode_parameter(tinynet.Parameter(w))
    assert enc.bits == 12 * 64
    assert reload(tinynet.Parameter(w), enc).data.tobytes() == w.tobytes()
