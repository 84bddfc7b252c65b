"""The compressed file: its length is the report's total, it loads back exactly, it refuses bad files."""

import json
import os
import struct

import numpy as np
import pytest

import tinynet
from compression.storage import (
    CompressedFileError,
    load_compressed,
    save_compressed,
    size_report,
)
from compression.storage.quantized import encode_quantized
from compression.storage.tensor import STORAGE_HANDLERS
from tinynet.transforms import TRANSFORM_TYPES


def prune(model, sparsity):
    """Put a magnitude Mask on every conv and linear weight (test helper)."""
    for name, _, _, param in model.named_parameter_slots():
        if name.endswith("weight") and param.data.ndim > 1:
            w = param.data
            drop = np.argsort(np.abs(w).ravel(), kind="stable")[: round(sparsity * w.size)]
            keep = np.ones(w.size, dtype=bool)
            keep[drop] = False
            param.add_transform(tinynet.Mask(keep.reshape(w.shape)))
    return model


def small_conv_model():
    """Every whitelisted layer type, with trained BatchNorm statistics."""
    tinynet.manual_seed(3)
    model = tinynet.Sequential(
        tinynet.Conv2d(1, 4, 3, padding=1),
        tinynet.BatchNorm2d(4),
        tinynet.ReLU(),
        tinynet.MaxPool2d(2),
        tinynet.Conv2d(4, 6, 3, stride=2),
        tinynet.LeakyReLU(0.1),
        tinynet.AvgPool2d(2),
        tinynet.Flatten(),
        tinynet.Dropout(0.3),
        tinynet.Linear(6, 10),
        tinynet.BatchNorm1d(10, momentum=None),
        tinynet.Tanh(),
        tinynet.Sequential(tinynet.Linear(10, 3, bias=False), tinynet.Sigmoid()),
    )
    x = np.random.default_rng(0).standard_normal((8, 1, 12, 12)).astype(np.float32)
    for _ in range(3):
        model(x)  # training mode: BatchNorm running statistics move away from 0 and 1
    return model.eval()


def outputs(model, x):
    model.eval()
    with tinynet.no_grad():
        return model(x)


def check_round_trip(model, x, path):
    nbytes = save_compressed(model, path)
    assert nbytes == os.path.getsize(path) == size_report(model, reference_files=False).total_bytes
    loaded = load_compressed(path)
    assert not loaded.training
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    return loaded


MNIST_X = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)


def test_dense_lenet_300_100(tmp_path):
    tinynet.manual_seed(0)
    model = tinynet.models.lenet_300_100()
    loaded = check_round_trip(model, MNIST_X, tmp_path / "dense.tnc")
    for (_, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert a.tobytes() == b.tobytes()


def test_masked_lenet_300_100(tmp_path):
    tinynet.manual_seed(0)
    model = prune(tinynet.models.lenet_300_100(), 0.95)
    loaded = check_round_trip(model, MNIST_X, tmp_path / "masked.tnc")
    assert os.path.getsize(tmp_path / "masked.tnc") < 70_000  # vs 1,068,724 for the .npz
    for (name, _, _, a), (_, _, _, b) in zip(
        model.named_parameter_slots(), loaded.named_parameter_slots()
    ):
        assert [type(t).__name__ for t in b.transforms] == [type(t).__name__ for t in a.transforms]
        if a.transforms:
            np.testing.assert_array_equal(b.transforms[0].mask, a.transforms[0].mask, name)


def test_small_conv_model_with_batchnorm_and_masks(tmp_path):
    model = prune(small_conv_model(), 0.6)
    x = np.random.default_rng(2).standard_normal((5, 1, 12, 12)).astype(np.float32)
    loaded = check_round_trip(model, x, tmp_path / "conv.tnc")
    for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert int(loaded[1].num_batches_tracked) == 3
    assert loaded[10].momentum is None and loaded[5].negative_slope == 0.1
    assert loaded[12][0].bias is None


def test_float64_model_round_trip(tmp_path):
    model = small_conv_model().astype(np.float64)
    x = np.random.default_rng(2).standard_normal((2, 1, 12, 12))
    loaded = check_round_trip(model, x, tmp_path / "f64.tnc")
    assert loaded[0].weight.dtype == np.float64


def test_loading_leaves_the_global_generator_alone(tmp_path):
    tinynet.manual_seed(0)
    save_compressed(tinynet.models.lenet5(), tmp_path / "lenet5.tnc")
    tinynet.manual_seed(7)
    expected = tinynet.get_rng().random(3)
    tinynet.manual_seed(7)
    load_compressed(tmp_path / "lenet5.tnc")
    np.testing.assert_array_equal(tinynet.get_rng().random(3), expected)


def test_writes_are_atomic_and_replace(tmp_path):
    path = tmp_path / "m.tnc"
    path.write_bytes(b"old contents")
    model = prune(small_conv_model(), 0.5)
    save_compressed(model, path)
    assert os.listdir(tmp_path) == ["m.tnc"]  # no temporary file left behind
    assert path.read_bytes()[:4] == b"\x89TNC"


def test_save_refuses_layers_outside_the_whitelist(tmp_path):
    class MyLinear(tinynet.Linear):
        pass

    with pytest.raises(ValueError, match="cannot store .*MyLinear"):
        save_compressed(tinynet.Sequential(MyLinear(2, 2)), tmp_path / "x.tnc")
    assert not (tmp_path / "x.tnc").exists()


# ----------------------------------------------------------- refused files


@pytest.fixture
def good_file(tmp_path):
    tinynet.manual_seed(0)
    model = prune(
        tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2)), 0.5
    )
    path = tmp_path / "good.tnc"
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
    with pytest.raises(CompressedFileError, match=match) as info:
        load_compressed(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_file_loads(good_file):
    assert isinstance(load_compressed(good_file), tinynet.Sequential)


def test_bit_flip_in_the_magic(good_file):
    blob = bytearray(good_file.read_bytes())
    blob[1] ^= 0x01
    refused(good_file, bytes(blob), "magic")


def test_truncated_by_one_byte(good_file):
    refused(good_file, good_file.read_bytes()[:-1], "truncated")


def test_one_extra_byte(good_file):
    refused(good_file, good_file.read_bytes() + b"\x00", "1 unexpected bytes")


def test_version_99(good_file):
    blob = bytearray(good_file.read_bytes())
    blob[8:10] = struct.pack("<H", 99)
    refused(good_file, bytes(blob), "unsupported format version 99")


def test_hostile_json_naming_os_system(good_file):
    prefix, header, payload = split(good_file.read_bytes())
    header["model"]["children"][1] = {"type": "os.system", "args": {"command": "rm -rf /"}}
    refused(good_file, join(prefix, header, payload), "unknown layer type 'os.system'")


def test_header_that_is_not_json(good_file):
    prefix, _, payload = split(good_file.read_bytes())
    bad = b"{not json"
    refused(good_file, prefix + struct.pack("<I", len(bad)) + bad + payload, "not valid JSON")


def test_header_with_unexpected_structure(good_file):
    prefix, header, payload = split(good_file.read_bytes())
    header = dict(header)
    refused(good_file, join(prefix, [1, 2, 3], payload), "header has keys")
    header["extra"] = 1
    refused(good_file, join(prefix, header, payload), "header has keys")


def test_header_length_past_the_end(good_file):
    original = good_file.read_bytes()
    blob = bytearray(original)
    blob[10:14] = struct.pack("<I", 10**9)
    refused(good_file, bytes(blob), "truncated")
    refused(good_file, original[:9], "truncated: 9 bytes")


def test_corrupted_payload(good_file):
    blob = bytearray(good_file.read_bytes())
    blob[-1] ^= 0x40
    refused(good_file, bytes(blob), "checksum")


def test_offsets_out_of_range(good_file):
    original = good_file.read_bytes()
    prefix, header, payload = split(original)
    header["tensors"][0]["segments"][0][2] = 10_000  # offset
    refused(good_file, join(prefix, header, payload), "malformed or does not start")
    prefix, header, payload = split(original)
    header["tensors"][-1]["segments"][-1][3] = 10**6  # bits: past the payload
    refused(good_file, join(prefix, header, payload), "past the payload")


def test_unknown_codec_transform_and_oversized_layer(good_file):
    original = good_file.read_bytes()
    prefix, header, payload = split(original)
    header["tensors"][0]["codec"] = "pickle"
    refused(good_file, join(prefix, header, payload), "unknown codec 'pickle'")
    prefix, header, payload = split(original)
    header["transforms"]["0.weight"] = [{"type": "subprocess.Popen", "config": {}}]
    refused(good_file, join(prefix, header, payload), "unknown transform type")
    prefix, header, payload = split(original)
    header["model"]["children"][0]["args"]["in_features"] = 10**9
    refused(good_file, join(prefix, header, payload), "more than")
    prefix, header, payload = split(original)
    header["model"]["children"][0]["args"]["in_features"] = "4"
    refused(good_file, join(prefix, header, payload), "must be of kind int")


def test_tensor_meta_that_does_not_match_the_segments(good_file):
    prefix, header, payload = split(good_file.read_bytes())
    header["tensors"][1]["meta"]["shape"] = [4]  # 0.bias has 3 entries
    refused(good_file, join(prefix, header, payload), "0.bias")


def test_entries_that_are_not_json_objects_are_refused(good_file):
    # found by mutating every value of a real header: each came out as an AttributeError
    original = good_file.read_bytes()
    prefix, header, payload = split(original)
    header["tensors"][0]["meta"] = 0
    refused(good_file, join(prefix, header, payload), "'meta' must be a JSON object, got int")
    prefix, header, payload = split(original)
    header["tensors"][0] = {}
    refused(good_file, join(prefix, header, payload), "malformed header")


def test_a_transform_config_it_does_not_keep_is_refused(good_file):
    # Mask takes no options: a key in its config is a corruption or an edit, not a setting
    prefix, header, payload = split(good_file.read_bytes())
    header["transforms"]["0.weight"][0]["config"]["sparsity"] = 0.9
    refused(good_file, join(prefix, header, payload), "Mask for '0.weight'.*an unknown key")


def test_every_bit_flip_of_a_pruned_file_is_refused(good_file):
    # A header carries no checksum of its own (the CRC covers the payload), so this rests on
    # the loader's checks: a flip in the prefix, a key, a type name, an offset or a config
    # must each be caught. Bits 0 and 1 change digits (4 -> 5, 4 -> 6), bit 5 a letter's case.
    original = good_file.read_bytes()
    loaded = []
    for i in range(len(original)):
        for bit in (0, 1, 5):
            blob = bytearray(original)
            blob[i] ^= 1 << bit
            good_file.write_bytes(bytes(blob))
            try:
                load_compressed(good_file)
            except CompressedFileError:
                continue
            loaded.append((i, bit, original[max(0, i - 12) : i + 4]))
    assert loaded == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_compressed(tmp_path / "nope.tnc")


# ------------------------------------------- a later transform plugs in


class Snap(tinynet.Transform):
    """Round weights to multiples of ``step`` (a stand-in for a later quantization transform)."""

    def __init__(self, step):
        self.step = float(step)

    def forward(self, w):
        step = w.dtype.type(self.step)
        return np.round(w / step) * step

    def backward(self, d_out):
        return d_out  # straight-through

    def get_config(self):
        return {"step": self.step}

    @classmethod
    def from_config(cls, config, shape):
        return cls(config["step"])


def store_snapped(param, value, use_huffman):
    step = np.float32(param.transforms[0].step)
    q = np.round(value / step).astype(np.int64)
    qmin = int(q.min())
    bits = max(1, int(q.max() - qmin).bit_length())
    return [encode_quantized(q, bits, step, qmin=qmin, use_huffman=use_huffman)]


def test_a_registered_transform_and_storage_handler_round_trip(tmp_path, monkeypatch):
    monkeypatch.setitem(TRANSFORM_TYPES, "Snap", Snap)
    monkeypatch.setitem(STORAGE_HANDLERS, ("Snap",), store_snapped)
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(20, 30), tinynet.ReLU(), tinynet.Linear(30, 5))
    model[0].weight.add_transform(Snap(0.05))  # |w| < 0.224: 9 levels, 4-bit codes
    report = size_report(model, reference_files=False)
    row = next(r for r in report.rows if r["tensor"] == "0.weight")
    assert row["encoding"].startswith("quantized")
    assert row["scales_zero_points_bits"] == 32  # one float32 scale, zero-point 0 not stored
    assert row["values_bits"] <= 600 * 4  # 4-bit codes (or fewer, Huffman-coded)
    x = np.random.default_rng(0).standard_normal((3, 20)).astype(np.float32)
    loaded = check_round_trip(model, x, tmp_path / "snap.tnc")
    assert isinstance(loaded[0].weight.transforms[0], Snap)
    assert loaded[0].weight.transforms[0].step == 0.05


# ------------------------------------------------- output transforms in the file


class Shift(tinynet.Transform):
    """Add a stored per-feature offset to a module's output (stand-in for an activation quantizer)."""

    state_names = ("offset",)

    def __init__(self, features):
        self.features = int(features)
        self.offset = np.zeros(features, dtype=np.float32)

    def forward(self, x):
        return x + self.offset.astype(x.dtype)

    def backward(self, d_out):
        return d_out

    def get_config(self):
        return {"features": self.features}

    @classmethod
    def from_config(cls, config, shape):
        return cls(config["features"])


def shifted_model():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2))
    model[1].add_output_transform(Shift(3)).offset[:] = [0.5, -1.0, 2.0]
    return model


def test_output_transforms_are_stored_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setitem(TRANSFORM_TYPES, "Shift", Shift)
    model = shifted_model()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    loaded = check_round_trip(model, x, tmp_path / "shift.tnc")
    np.testing.assert_array_equal(loaded[1].output_transforms[0].offset, [0.5, -1.0, 2.0])
    rows = {r["tensor"]: r for r in size_report(model, reference_files=False).rows}
    row = rows["1.output_transforms.0.offset"]
    assert row["kind"] == "output" and row["layer"] == "1" and row["values_bits"] == 3 * 32
    _, header, _ = split((tmp_path / "shift.tnc").read_bytes())
    assert header["output_transforms"] == {"1": [{"type": "Shift", "config": {"features": 3}}]}


def test_files_without_output_transforms_keep_the_version_1_header(good_file):
    _, header, _ = split(good_file.read_bytes())
    assert "output_transforms" not in header  # written only when the model has some


def test_unregistered_output_transforms_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="transform 'Shift' of '1' is not registered"):
        save_compressed(shifted_model(), tmp_path / "x.tnc")
    monkeypatch.setitem(TRANSFORM_TYPES, "Shift", Shift)
    path = tmp_path / "shift.tnc"
    save_compressed(shifted_model(), path)
    monkeypatch.delitem(TRANSFORM_TYPES, "Shift")
    with pytest.raises(CompressedFileError, match="unknown transform type 'Shift'"):
        load_compressed(path)


def test_output_state_of_the_wrong_shape_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(TRANSFORM_TYPES, "Shift", Shift)
    path = tmp_path / "shift.tnc"
    save_compressed(shifted_model(), path)
    prefix, header, payload = split(path.read_bytes())
    header["output_transforms"]["1"][0]["config"]["features"] = 4
    refused(path, join(prefix, header, payload), "offset")
    prefix, header, payload = split(path.read_bytes())
    header["output_transforms"] = {"7": []}
    refused(path, join(prefix, header, payload), "module '7'")
