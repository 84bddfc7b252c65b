"""Shared, binary and ternary weights in the compressed file: true bit cost, exact round trips."""

import json
import os
import struct

import numpy as np
import pytest

import compression.quantization.storage_sharing  # noqa: F401  (registers the handlers)
import tinynet
from compression.pruning import prune_model
from compression.quantization.binary import binarize, ternarize
from compression.quantization.sharing import deep_compression_bits, share_weights
from compression.quantization.storage_sharing import encode_binary, encode_shared_weights
from compression.storage import load_compressed, plan_container, save_compressed, size_report
from compression.storage.container import CompressedFileError
from compression.storage.encoded import decode_tensor
from compression.storage.tensor import encode_parameter
from tinynet import Linear, ReLU, Sequential
from tinynet.grad_mode import no_grad

X = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)


def mlp(seed=0):
    tinynet.manual_seed(seed)
    return Sequential(Linear(20, 30), ReLU(), Linear(30, 5))


def outputs(model, x=X):
    model.eval()
    with no_grad():
        return model(x)


def round_trip(model, path):
    """Save without Huffman; the file's length is the report's; the loaded model's outputs match."""
    nbytes = save_compressed(model, path, use_huffman=False)
    assert nbytes == os.path.getsize(path)
    assert nbytes == size_report(model, use_huffman=False, reference_files=False).total_bytes
    loaded = load_compressed(path)
    np.testing.assert_array_equal(outputs(loaded), outputs(model))
    return loaded


def chosen(param):
    return encode_parameter(param, use_huffman=False)


# --------------------------------------------------------------- shared weights
def test_shared_weights_cost_n_log2k_plus_32k_bits(tmp_path):
    model = mlp()
    share_weights(model, bits=4)  # k = 16
    enc = chosen(model[0].weight)
    assert enc.codec == "shared_weights" and enc.meta["format"] == "dense"
    assert enc.description == "shared 16-entry codebook, 4-bit codes"
    assert enc.bits_by_term()["values"] == 600 * 4  # n * ceil(log2 k)
    assert enc.bits_by_term()["codebook"] == 16 * 32
    assert enc.nbytes == 600 * 4 // 8 + 16 * 4
    # the whole file: 14-byte prefix + JSON header + payload, the payload counted by hand:
    # 0.weight 300 + 64, 0.bias 30 * 4, 2.weight 150 * 4 bits = 75 + 64, 2.bias 5 * 4
    plan = plan_container(model, use_huffman=False)
    assert len(plan.payload) == (300 + 64) + 120 + (75 + 64) + 20
    assert plan.total_bytes == 14 + len(plan.header) + 643
    loaded = round_trip(model, tmp_path / "shared.tnc")
    assert os.path.getsize(tmp_path / "shared.tnc") == plan.total_bytes
    for i in (0, 2):
        mine, theirs = model[i].weight.transforms[0], loaded[i].weight.transforms[0]
        np.testing.assert_array_equal(theirs.assignments, mine.assignments)
        np.testing.assert_array_equal(theirs.centroids.data, mine.centroids.data)


def test_a_non_power_of_two_k_rounds_the_code_up():
    model = mlp()
    share_weights(model, k=5)  # 3-bit codes
    enc = chosen(model[0].weight)
    assert enc.bits == 600 * 3 + 5 * 32


def test_equal_and_unused_centroids_survive_the_round_trip(tmp_path):
    # the codes are stored, not recomputed from the values: two equal centroids stay two
    model = mlp()
    t = share_weights(model, k=4)["0.weight"]
    t.centroids.data[:] = [0.1, 0.1, -0.2, 0.3]
    t.assignments[t.assignments == 3] = 0  # centroid 3 is now used by nobody
    loaded = round_trip(model, tmp_path / "odd.tnc")
    np.testing.assert_array_equal(loaded[0].weight.transforms[0].assignments, t.assignments)
    np.testing.assert_array_equal(loaded[0].weight.transforms[0].centroids.data, t.centroids.data)


def test_fine_tuned_centroids_round_trip(tmp_path):
    model = mlp()
    share_weights(model, k=8)
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    crit = tinynet.MSELoss()
    for _ in range(3):
        crit(model(X), np.zeros((5, 5), np.float32))
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    round_trip(model, tmp_path / "tuned.tnc")


# --------------------------------------------------------- pruned and shared
def test_pruned_and_shared_at_half_sparsity_takes_a_bitmask(tmp_path):
    model = mlp()
    prune_model(model, 0.5)
    share_weights(model, bits=3)  # k = 8
    enc = chosen(model[0].weight)
    assert enc.codec == "shared_weights" and enc.meta["format"] == "bitmask"
    assert "300/600 clustered" in enc.description
    # bitmask 600 bits + 300 codes of 3 bits + 8 centroids of 32 bits
    assert enc.bits_by_term() == {
        "values": 900,
        "indices": 600,
        "codebook": 256,
        "scales_zero_points": 0,
        "huffman_tables": 0,
    }
    assert enc.nbytes == 75 + 113 + 32
    assert enc.nbytes == min(enc.alternatives.values())
    # the reserved-code layout: 600 codes of ceil(log2 9) = 4 bits, no positions
    reserved = [b for d, b in enc.alternatives.items() if "reserved code 8" in d]
    assert reserved == [600 * 4 // 8 + 32]
    loaded = round_trip(model, tmp_path / "pruned_shared.tnc")
    mask, shared = loaded[0].weight.transforms
    np.testing.assert_array_equal(mask.mask, model[0].weight.transforms[0].mask)
    np.testing.assert_array_equal(shared.assignments, model[0].weight.transforms[1].assignments)


def test_pruned_and_shared_at_high_sparsity_takes_relative_indices(tmp_path):
    tinynet.manual_seed(0)
    model = Sequential(Linear(200, 100), ReLU(), Linear(100, 5))
    prune_model(model, 0.95)
    share_weights(model, bits=5, include=["0.weight"])  # Deep Compression's fc setting
    enc = chosen(model[0].weight)
    assert enc.meta["format"] == "relative"
    b, nnz = enc.meta["bits"], 1000
    stored = enc.meta["streams"]["codes"]["count"]  # kept entries + fillers
    assert stored >= nnz
    # (nnz + fillers) * (b + ceil(log2(32 + 1))) + 32 centroids of 32 bits
    assert enc.bits == stored * (b + 6) + 32 * 32
    assert enc.nbytes < min(b for d, b in enc.alternatives.items() if "bitmask" in d)
    x = np.random.default_rng(0).standard_normal((3, 200)).astype(np.float32)
    save_compressed(model, tmp_path / "sparse.tnc")
    loaded = load_compressed(tmp_path / "sparse.tnc")
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    np.testing.assert_array_equal(
        loaded[0].weight.transforms[0].mask, model[0].weight.transforms[0].mask
    )


@pytest.mark.parametrize("fmt", ["reserved", "bitmask", "csr", "relative"])
@pytest.mark.parametrize("use_huffman", [False, True])
def test_every_layout_decodes_exactly(fmt, use_huffman):
    rng = np.random.default_rng(3)
    assignments = rng.integers(-1, 6, size=(12, 40))
    assignments[:, 5:30] = -1  # long runs of pruned entries: fillers for small b
    centroids = rng.standard_normal(6).astype(np.float32)
    everything = encode_shared_weights(assignments, centroids, 1, "0.mask", use_huffman)
    assert len(everything.alternatives) == 4
    enc = encode_shared_weights(assignments, centroids, 1, "0.mask", use_huffman, (fmt,))
    assert enc.meta["format"] == fmt
    decoded = enc.decode()
    np.testing.assert_array_equal(decoded["1.assignments"], assignments)
    np.testing.assert_array_equal(decoded["1.centroids"], centroids)
    np.testing.assert_array_equal(decoded["0.mask"], assignments >= 0)
    expected = np.where(assignments >= 0, centroids[np.maximum(assignments, 0)], 0)
    np.testing.assert_array_equal(decoded["value"], expected)


def test_a_damaged_layout_is_refused():
    enc = encode_shared_weights(np.array([0, 1, -1, 1]), np.zeros(2, np.float32), use_huffman=False)
    bad = {**enc.meta, "format": "zigzag"}
    with pytest.raises(ValueError, match="unknown shared_weights format 'zigzag'"):
        decode_tensor("shared_weights", bad, enc.segments)
    with pytest.raises(ValueError, match=r"assignments must lie in -1..1"):
        encode_shared_weights(np.array([0, 2]), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"layouts \['dense'\] do not apply here"):
        encode_shared_weights(np.array([0, -1]), np.zeros(2, np.float32), formats=("dense",))


def test_a_file_whose_codebook_outnumbers_its_weights_is_refused_before_allocating(tmp_path):
    # k is read from the header before any array: a hostile k of 2**31 must not allocate 8 GB
    model = mlp()
    share_weights(model, bits=2)
    path = tmp_path / "shared.tnc"
    save_compressed(model, path)
    blob = path.read_bytes()
    (length,) = struct.unpack_from("<I", blob, 10)
    header = json.loads(blob[14 : 14 + length])
    for k in (601, 2**31):  # the first layer has 30 x 20 = 600 weights
        header["transforms"]["0.weight"][0]["config"]["k"] = k
        text = json.dumps(header).encode()
        path.write_bytes(blob[:10] + struct.pack("<I", len(text)) + text + blob[14 + length :])
        with pytest.raises(CompressedFileError, match=rf"k in 1..600 .*got {k}"):
            load_compressed(path)


def test_a_k_that_disagrees_with_the_stored_codebook_is_refused(tmp_path):
    # found by flipping every bit of a real header: "k":63 -> "k":73 loaded, the stored
    # 63-entry codebook silently replacing the 73 centroids the header had promised
    model = mlp()
    share_weights(model, bits=2)  # k = 4
    path = tmp_path / "shared.tnc"
    save_compressed(model, path)
    blob = path.read_bytes()
    (length,) = struct.unpack_from("<I", blob, 10)
    header = json.loads(blob[14 : 14 + length])
    header["transforms"]["0.weight"][0]["config"]["k"] = 5
    text = json.dumps(header).encode()
    path.write_bytes(blob[:10] + struct.pack("<I", len(text)) + text + blob[14 + length :])
    with pytest.raises(CompressedFileError, match=r"centroids expected shape \(5,\), got \(4,\)"):
        load_compressed(path)


# ------------------------------------------------------------ binary, ternary
@pytest.mark.parametrize(
    ("scale", "scale_bits"), [("tensor", 32), ("channel", 30 * 32), (0.05, 0), (None, 0)]
)
def test_binary_weights_cost_one_bit_each_plus_the_scales(tmp_path, scale, scale_bits):
    model = mlp()
    binarize(model, scale)
    enc = chosen(model[0].weight)
    assert enc.codec == "binary"
    assert enc.bits_by_term()["values"] == 600
    assert enc.bits_by_term()["scales_zero_points"] == scale_bits
    assert enc.nbytes == 75 + scale_bits // 8
    round_trip(model, tmp_path / "binary.tnc")


def test_ternary_weights_cost_two_bits_each_plus_one_scale(tmp_path):
    model = mlp()
    ternarize(model)
    enc = chosen(model[0].weight)
    assert enc.codec == "quantized" and enc.description.startswith("ternary: ")
    assert enc.bits == 600 * 2 + 32
    round_trip(model, tmp_path / "ternary.tnc")


def test_huffman_may_shrink_ternary_codes_further(tmp_path):
    # after TWN most weights are zero: Huffman codes 0 in one bit
    model = mlp()
    ternarize(model, threshold=0.95)
    enc = encode_parameter(model[0].weight, use_huffman=True)
    assert enc.nbytes <= chosen(model[0].weight).nbytes
    nbytes = save_compressed(model, tmp_path / "t.tnc")
    assert nbytes == size_report(model, reference_files=False).total_bytes
    np.testing.assert_array_equal(outputs(load_compressed(tmp_path / "t.tnc")), outputs(model))


def test_deep_compression_pipeline_on_lenet5_caffe_round_trips(tmp_path):
    # Han et al. 2015's per-layer keep ratios, then 8-bit conv / 5-bit fc sharing
    tinynet.manual_seed(0)
    model = tinynet.models.lenet5_caffe()
    prune_model(model, {"0.weight": 0.34, "2.weight": 0.88, "5.weight": 0.92, "7.weight": 0.81})
    share_weights(model, deep_compression_bits(model))
    report = size_report(model, reference_files=False)
    rows = {r["tensor"]: r for r in report.rows}
    assert all(rows[f"{i}.weight"]["encoding"].startswith("shared (") for i in (0, 2, 5, 7))
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert save_compressed(model, tmp_path / "dc.tnc") == report.total_bytes
    loaded = load_compressed(tmp_path / "dc.tnc")
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))


def test_a_damaged_binary_header_is_refused():
    enc = encode_binary(np.ones((3, 2)), np.ones(3, np.float32), axis=0)
    with pytest.raises(ValueError, match="binary axis must be None or 0"):
        decode_tensor("binary", {**enc.meta, "axis": 1}, enc.segments)
    with pytest.raises(ValueError, match="one bit for each of 8 entries"):
        decode_tensor("binary", {**enc.meta, "shape": [4, 2]}, enc.segments)


def test_a_fresh_process_loads_a_shared_file_without_importing_quantization(tmp_path):
    # load_compressed registers the quantization package's transforms and codecs itself
    import subprocess
    import sys

    import tinynet as tn
    from compression.quantization import share_weights
    from compression.storage import save_compressed

    tn.manual_seed(0)
    model = tn.models.lenet_300_100()
    share_weights(model, bits=4)
    path = tmp_path / "shared.tnc"
    save_compressed(model, path)
    code = (
        "import sys; from compression.storage import load_compressed; "
        f"m = load_compressed({str(path)!r}); "
        "print(type(m[1].weight.transforms[0]).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SharedWeights"
