"""quantization.storage_quant: quantized weights stored at b bits, activation quantizers in the file."""

import json
import os
import struct

import numpy as np
import pytest

import tinynet
from compression.quantization.apply import (
    freeze_quantizers,
    prepare_qat,
    quantize_activations,
    quantize_weights,
)
from compression.quantization.storage_quant import encode_sparse_quantized
from compression.storage import CompressedFileError, load_compressed, save_compressed, size_report
from compression.storage.tensor import encode_parameter

X = np.random.default_rng(0).standard_normal((16, 20)).astype(np.float32)


def mlp(seed=0):
    tinynet.manual_seed(seed)
    return tinynet.Sequential(tinynet.Linear(20, 30), tinynet.ReLU(), tinynet.Linear(30, 5))


def outputs(model, x=X):
    model.eval()
    with tinynet.no_grad():
        return model(x)


def round_trip(model, path, x=X):
    nbytes = save_compressed(model, path)
    report = size_report(model, reference_files=False)
    assert nbytes == os.path.getsize(path) == report.total_bytes
    loaded = load_compressed(path)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    return loaded, {row["tensor"]: row for row in report.rows}


def prune(param, sparsity, seed=0):
    keep = np.random.default_rng(seed).random(param.shape) >= sparsity
    param.add_transform(tinynet.Mask(keep))
    return keep


# ---------------------------------------------------------- b bits per value
def test_per_channel_symmetric_weights_cost_b_bits_plus_a_scale_per_channel():
    model = quantize_weights(mlp(), {"0.weight": 6, "2.weight": 3})
    enc = encode_parameter(model[0].weight, use_huffman=False)
    assert enc.codec == "quantized_state"
    bits = enc.bits_by_term()
    assert bits["values"] == 600 * 6  # 30 x 20 weights at 6 bits
    assert bits["scales_zero_points"] == 30 * 32  # symmetric: zero-points are 0, not stored
    assert encode_parameter(model[2].weight, use_huffman=False).bits_by_term()["values"] == 150 * 3


def test_affine_per_tensor_stores_a_zero_point():
    model = quantize_weights(mlp(), 4, per_channel=False, symmetric=False)
    bits = encode_parameter(model[0].weight, use_huffman=False).bits_by_term()
    assert bits["values"] == 600 * 4 and bits["scales_zero_points"] == 32 + 4


def test_quantized_model_round_trips_exactly_with_its_scales(tmp_path):
    model = quantize_weights(mlp(), 8)
    quantize_activations(model, X, 8)
    loaded, rows = round_trip(model, tmp_path / "ptq.tnc")
    for i in (0, 2):
        ours, theirs = model[i].weight.transforms[0], loaded[i].weight.transforms[0]
        assert repr(ours) == repr(theirs)
        np.testing.assert_array_equal(ours.scale, theirs.scale)
        np.testing.assert_array_equal(ours.zero_point, theirs.zero_point)
    assert rows["0.weight"]["encoding"].startswith("quantized 8-bit codes, scale per channel")
    # activation ranges: two float32 numbers per quantized output, kind "output"
    out_rows = [r for r in rows.values() if r["kind"] == "output"]
    assert [r["tensor"] for r in out_rows] == [
        "1.output_transforms.0.min_val",
        "1.output_transforms.0.max_val",
        "2.output_transforms.0.min_val",
        "2.output_transforms.0.max_val",
    ]
    assert all(r["values_bits"] == 32 for r in out_rows)
    assert loaded[1].output_transforms[0].get_config() == model[1].output_transforms[0].get_config()


def test_lenet_300_100_at_8_bits_costs_a_quarter(tmp_path):
    tinynet.manual_seed(0)
    model = quantize_weights(tinynet.models.lenet_300_100(), 8)
    report = size_report(model, use_huffman=False, reference_files=False)
    rows = {r["tensor"]: r for r in report.rows}
    for name, n, c in [("1.weight", 235200, 300), ("3.weight", 30000, 100), ("5.weight", 1000, 10)]:
        assert rows[name]["values_bits"] == 8 * n
        assert rows[name]["scales_zero_points_bits"] == 32 * c
    header = rows["header"]["total_bytes"]
    assert report.total_bytes == 266200 + 4 * 410 + 4 * 410 + header  # codes, scales, biases


def test_lsq_weights_store_codes_and_the_step_size(tmp_path):
    model = prepare_qat(mlp(), 4, 4, method="lsq")
    model.train()
    model(X)  # initialise the activation step sizes
    enc = encode_parameter(model[0].weight, use_huffman=False)
    assert enc.codec == "quantized_state" and enc.bits_by_term()["values"] == 600 * 4
    assert enc.bits_by_term()["scales_zero_points"] == 32
    loaded, rows = round_trip(model, tmp_path / "lsq.tnc")
    assert float(loaded[0].weight.transforms[0].step_size.data) == float(
        model[0].weight.transforms[0].step_size.data
    )
    assert rows["1.output_transforms.0.step_size"]["kind"] == "output"


def test_a_scale_that_moves_with_the_weight_is_stored_as_floats_until_frozen(tmp_path):
    model = prepare_qat(mlp(), 4, 4)
    model.train()
    model(X)  # ranges of the activation quantizers
    enc = encode_parameter(model[0].weight)
    assert enc.codec == "state"  # the b-bit candidate would not decode to the same weights
    assert "rejected as not exact" in enc.reason
    round_trip(model, tmp_path / "moving.tnc")
    freeze_quantizers(model)
    assert encode_parameter(model[0].weight).codec == "quantized_state"
    round_trip(model, tmp_path / "frozen.tnc")


# ------------------------------------------------------- pruned, then quantized
@pytest.mark.parametrize("method", ["minmax", "lsq"])
def test_pruned_and_quantized_store_codes_of_kept_weights_only(tmp_path, method):
    model = mlp()
    keep = prune(model[0].weight, 0.9)
    model = prepare_qat(model, 5, 8, method=method)
    model.train()
    model(X)
    freeze_quantizers(model)
    assert [type(t).__name__ for t in model[0].weight.transforms][0] == "Mask"
    enc = encode_parameter(model[0].weight, use_huffman=False)
    assert enc.codec == "sparse_quantized"
    kept = int(keep.sum())
    fillers = enc.meta["codes"]["count"] - kept
    assert enc.bits_by_term()["values"] == 5 * (kept + fillers)
    loaded, _ = round_trip(model, tmp_path / "pruned.tnc")
    np.testing.assert_array_equal(loaded[0].weight.transforms[0].mask, keep)


def test_sparse_quantized_worked_example():
    # 16 entries, kept at positions 1 and 14, 4-bit signed codes, one scale:
    #   bitmask  16 + 8 code bits (3 B with padding) + 4 B scale = 7 B
    #   CSR      rows 2, cols 8: 3 x 2 + 2 x 3 = 12 bits (2 B) + 1 B codes + 4 B = 7 B
    #   relative 4-bit: skips 1 and 12, no filler: 8 bits (1 B) + 1 B codes + 4 B = 6 B
    q = np.zeros((2, 8), dtype=np.int64)
    q[0, 1], q[1, 6] = 3, -8
    keep = q != 0
    codes = {
        "bits": 4,
        "scale": np.float32(0.5),
        "zero_point": None,
        "axis": None,
        "qmin": -8,
        "state": {"scale": "scale", "zero_point": "zero_point"},
    }
    enc = encode_sparse_quantized(q, keep, codes, 1, "0.mask", np.float32, use_huffman=False)
    assert enc.nbytes == 6 and enc.meta["format"] == "relative" and enc.meta["index_bits"] == 4
    assert sorted(enc.alternatives.values()) == [6, 7, 7]
    decoded = enc.decode()
    np.testing.assert_array_equal(decoded["value"], q * 0.5)
    np.testing.assert_array_equal(decoded["0.mask"], keep)
    assert decoded["1.scale"] == np.float32(0.5) and decoded["1.scale"].shape == ()
    assert decoded["1.zero_point"] == 0


def sparse_case(gaps, q_kept, bits=3):
    positions = np.cumsum(gaps)
    q = np.zeros(positions[-1] + 10, dtype=np.int64)
    keep = np.zeros(q.shape, dtype=bool)
    q[positions], keep[positions] = q_kept, True
    codes = {
        "bits": bits,
        "scale": np.float32(0.1),
        "zero_point": None,
        "axis": None,
        "qmin": -(1 << (bits - 1)),
        "state": {"scale": "scale"},
    }
    return q, keep, codes


def decodes_exactly(q, keep, codes, huffman=False):
    enc = encode_sparse_quantized(q, keep, codes, 0, "m", np.float32, use_huffman=huffman)
    decoded = enc.decode()
    np.testing.assert_array_equal(decoded["m"], keep)
    np.testing.assert_array_equal(decoded["value"], (q * np.float32(0.1)).astype(np.float32))
    return enc


def test_relative_indices_with_fillers_round_trip():
    rng = np.random.default_rng(0)
    gaps = rng.integers(10, 30, size=40)
    gaps[[7, 20]] = 50  # skip 49 > 2^5 - 1: one filler each at 5-bit indices
    q, keep, codes = sparse_case(gaps, rng.integers(-4, 4, size=40))
    enc = decodes_exactly(q, keep, codes)  # (40 + 2) x (5 + 3) bits: the cheapest
    assert enc.meta["format"] == "relative" and enc.meta["index_bits"] == 5
    assert enc.meta["codes"]["count"] == 42  # the fillers store code 0
    decodes_exactly(q, keep, codes, huffman=True)


def test_a_kept_code_zero_after_the_maximum_skip_is_not_mistaken_for_a_filler():
    rng = np.random.default_rng(0)
    gaps = rng.integers(10, 30, size=40)
    gaps[[7, 20]] = 50
    gaps[5] = 32  # skip 31 = 2^5 - 1, the maximum at 5 bits ...
    q_kept = rng.integers(-3, 4, size=40)
    q_kept[5] = -4  # ... and code 0 (q = qmin): at 5 bits it would read as a filler
    q, keep, codes = sparse_case(gaps, q_kept)
    enc = decodes_exactly(q, keep, codes)
    assert enc.meta["format"] == "relative" and enc.meta["index_bits"] == 6


# --------------------------------------------------------- hostile files
@pytest.fixture
def quantized_file(tmp_path):
    model = quantize_weights(mlp(), 4)
    quantize_activations(model, X, 8)
    path = tmp_path / "q.tnc"
    save_compressed(model, path)
    return path


def split(blob):
    (length,) = struct.unpack_from("<I", blob, 10)
    return blob[:10], json.loads(blob[14 : 14 + length]), blob[14 + length :]


def join(prefix, header, payload):
    text = json.dumps(header).encode()
    return prefix + struct.pack("<I", len(text)) + text + payload


def refused(path, blob, match):
    path.write_bytes(blob)
    with pytest.raises(CompressedFileError, match=match):
        load_compressed(path)


def test_output_transforms_in_the_header_are_whitelisted(quantized_file):
    original = quantized_file.read_bytes()
    prefix, header, payload = split(original)
    header["output_transforms"]["1"][0]["type"] = "os.system"
    refused(quantized_file, join(prefix, header, payload), "unknown transform type 'os.system'")
    prefix, header, payload = split(original)
    header["output_transforms"]["1"][0]["config"]["observer"] = "builtins.eval"
    refused(quantized_file, join(prefix, header, payload), "unknown observer")
    prefix, header, payload = split(original)
    del header["output_transforms"]
    refused(quantized_file, join(prefix, header, payload), "tensor list does not match")
    prefix, header, payload = split(original)
    header["output_transforms"] = []
    refused(quantized_file, join(prefix, header, payload), "must be a JSON object")


def test_transform_entries_must_be_exactly_what_saving_writes(quantized_file):
    # found by flipping every bit of a real LSQ header: "config" -> "coNfig" dropped the
    # config, so the quantizer came back with its defaults and the model gave other outputs
    original = quantized_file.read_bytes()
    prefix, header, payload = split(original)
    entry = header["output_transforms"]["1"][0]
    entry["coNfig"] = entry.pop("config")
    refused(quantized_file, join(prefix, header, payload), "'type': str, 'config': dict")
    prefix, header, payload = split(original)
    header["transforms"]["0.weight"][0]["extra"] = 1
    refused(quantized_file, join(prefix, header, payload), "'type': str, 'config': dict")
    prefix, header, payload = split(original)
    header["transforms"]["0.weight"][0]["config"]["bitz"] = 4
    refused(quantized_file, join(prefix, header, payload), "bitz")
    prefix, header, payload = split(original)
    header["output_transforms"]["1"][0]["config"]["observer_config"]["axes"] = 0
    refused(quantized_file, join(prefix, header, payload), "axes")


def test_a_config_key_from_a_later_version_may_be_missing(quantized_file):
    # files written before an option existed load with its default
    prefix, header, payload = split(quantized_file.read_bytes())
    del header["transforms"]["0.weight"][0]["config"]["power_of_two"]
    quantized_file.write_bytes(join(prefix, header, payload))
    loaded = load_compressed(quantized_file)
    assert loaded[0].weight.transforms[0].power_of_two is False


def test_quantized_tensors_that_do_not_fit_are_refused(quantized_file):
    original = quantized_file.read_bytes()
    prefix, header, payload = split(original)
    entry = next(e for e in header["tensors"] if e["name"] == "0.weight")
    entry["meta"]["state"] = {"scale": "0.evil"}
    refused(quantized_file, join(prefix, header, payload), "0.weight")
    prefix, header, payload = split(original)
    entry = next(e for e in header["tensors"] if e["name"].endswith("max_val"))
    entry["meta"]["shape"] = [2]
    refused(quantized_file, join(prefix, header, payload), "max_val")
