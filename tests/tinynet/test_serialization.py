"""Tests for tinynet.serialization: round trips, atomic writes, hostile files."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import serialization
from tinynet.module import StateDict
from tinynet.serialization import HEADER_KEY, load, save
from tinynet.transforms import Mask


def mixed_state() -> StateDict:
    """Every dtype a state_dict holds, in a deliberately non-alphabetical order."""
    state = StateDict()
    state["1.weight"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    state["0.running_mean"] = np.array([0.5, -1.5], dtype=np.float64)
    state["0.num_batches_tracked"] = np.array(7, dtype=np.int64)  # 0-d int64, as in PyTorch
    state["0.parametrizations.weight.0.mask"] = np.array([[True, False, True]])
    state["10.bias"] = np.zeros(0, dtype=np.float32)
    state.metadata["note"] = {"anything": [1, 2, "json"]}
    return state


def test_round_trip_values_dtypes_order_and_metadata(tmp_path):
    state = mixed_state()
    path = tmp_path / "state.npz"
    assert save(state, path) == path
    loaded = load(path)
    assert isinstance(loaded, StateDict)
    assert list(loaded) == list(state)  # key order kept
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        assert loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value)
    assert loaded["0.num_batches_tracked"].shape == ()
    assert int(loaded["0.num_batches_tracked"]) == 7
    assert loaded.metadata == {"note": {"anything": [1, 2, "json"]}}


def test_file_is_a_plain_npz_with_a_unicode_header(tmp_path):
    path = tmp_path / "state.npz"
    save(mixed_state(), path)
    with np.load(path, allow_pickle=False) as npz:
        header = npz[HEADER_KEY]
        assert header.dtype.kind == "U" and header.shape == ()
        meta = json.loads(str(header))
    assert meta["format"] == "tinynet-state" and meta["version"] == 1
    assert meta["keys"] == list(mixed_state())


def test_save_a_module_and_load_into_a_fresh_one(tmp_path):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2))
    path = tmp_path / "model.npz"
    save(model, path)
    tinynet.manual_seed(1)
    other = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2))
    other.load_state_dict(load(path))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(other(x), model(x))


def test_masked_model_round_trip(tmp_path):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2))
    mask = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    model[0].weight.add_transform(Mask(mask))
    path = tmp_path / "masked.npz"
    save(model, path)
    loaded = load(path)
    assert "0.parametrizations.weight.original" in loaded
    assert loaded.metadata["transforms"] == {"0.weight": [{"type": "Mask", "config": {}}]}

    tinynet.manual_seed(1)
    fresh = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.ReLU(), tinynet.Linear(3, 2))
    fresh.load_state_dict(loaded)
    assert [type(t).__name__ for t in fresh[0].weight.transforms] == ["Mask"]
    np.testing.assert_array_equal(fresh[0].weight.transforms[0].mask, mask)
    np.testing.assert_array_equal(fresh[0].weight.value(), model[0].weight.value())
    assert np.all(fresh[0].weight.value()[~mask] == 0)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(fresh(x), model(x))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    save(mixed_state(), path)
    old_bytes = path.read_bytes()

    calls = []
    real_write_array = np.lib.format.write_array

    def fail_on_second_array(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", fail_on_second_array)
    new_state = StateDict({"0.weight": np.ones((3, 3)), "0.bias": np.ones(3)})
    with pytest.raises(OSError, match="disk full"):
        save(new_state, path)
    assert len(calls) == 2  # the write really was interrupted half-way
    assert path.read_bytes() == old_bytes
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]


def test_write_is_flushed_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    save(mixed_state(), tmp_path / "s.npz")
    assert events[:2] == ["fsync", "replace"]  # then the directory is fsynced too


def test_save_refuses_object_arrays_and_bad_keys(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(TypeError, match="pickle"):
        save({"0.weight": np.array([{"a": 1}], dtype=object)}, path)
    with pytest.raises(TypeError, match="strings"):
        save({0: np.ones(2)}, path)
    with pytest.raises(ValueError, match="not a state_dict key"):
        save({"../evil": np.ones(2)}, path)
    with pytest.raises(ValueError, match="not a state_dict key"):
        save({HEADER_KEY: np.ones(2)}, path)
    with pytest.raises(TypeError, match="Module or a state_dict"):
        save([np.ones(2)], path)
    bad_meta = StateDict({"w": np.ones(2)})
    bad_meta.metadata["f"] = object()
    with pytest.raises(TypeError, match="JSON"):
        save(bad_meta, path)
    assert os.listdir(tmp_path) == []  # nothing written by any failed call


def test_saved_file_gets_ordinary_permissions(tmp_path):
    path = tmp_path / "perm.npz"
    save(mixed_state(), path)
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert path.stat().st_mode == reference.stat().st_mode  # not mkstemp's private 0o600


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")


def write_npz_members(path, members: dict[str, bytes]) -> None:
    """Write a zip archive with hand-made .npy members (to build hostile files)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def header_bytes(**fields) -> bytes:
    header = {"format": "tinynet-state", "version": 1, "keys": ["w"], "metadata": {}}
    header.update(fields)
    return npy_bytes(np.array(json.dumps(header)))


def hostile_files(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, a phrase the error message must contain)."""
    files = {}
    good = tmp_path / "good.npz"
    save(mixed_state(), good)
    data = good.read_bytes()

    p = tmp_path / "pickled_member.npz"
    obj = np.array([{"evil": 1}], dtype=object)
    write_npz_members(p, {HEADER_KEY: header_bytes(), "w": npy_bytes(obj, allow_pickle=True)})
    files["pickled_member"] = (p, "unpickling")

    p = tmp_path / "pickled.npy"
    np.save(p, obj, allow_pickle=True)
    files["pickled_npy"] = (p, ".npy")

    p = tmp_path / "pickle.pkl"
    p.write_bytes(b"\x80\x04\x95" + os.urandom(40))
    files["pickle"] = (p, "never unpickles")

    p = tmp_path / "truncated.npz"
    p.write_bytes(data[: len(data) // 2])
    files["truncated"] = (p, "truncated")

    p = tmp_path / "random.bin"
    p.write_bytes(np.random.default_rng(0).bytes(500))
    files["random"] = (p, "not an .npz")

    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    files["empty"] = (p, "empty")

    p = tmp_path / "no_header.npz"
    np.savez(p, w=np.ones(3))
    files["no_header"] = (p, "header")

    p = tmp_path / "newer.npz"
    write_npz_members(p, {HEADER_KEY: header_bytes(version=2), "w": npy_bytes(np.ones(2))})
    files["newer_version"] = (p, "version 2")

    p = tmp_path / "wrong_format.npz"
    write_npz_members(p, {HEADER_KEY: header_bytes(format="other"), "w": npy_bytes(np.ones(2))})
    files["wrong_format"] = (p, "'other'")

    p = tmp_path / "bad_json.npz"
    write_npz_members(p, {HEADER_KEY: npy_bytes(np.array("{not json")), "w": npy_bytes(np.ones(2))})
    files["bad_json"] = (p, "JSON")

    p = tmp_path / "object_header.npz"
    write_npz_members(p, {HEADER_KEY: npy_bytes(np.array(["x"], dtype=object), allow_pickle=True)})
    files["object_header"] = (p, "unpickling")

    p = tmp_path / "extra_member.npz"
    write_npz_members(
        p, {HEADER_KEY: header_bytes(), "w": npy_bytes(np.ones(2)), "x": npy_bytes(np.ones(2))}
    )
    files["extra_member"] = (p, "do not match")

    p = tmp_path / "short_member.npz"  # its .npy header promises 2**31 floats, 16 bytes follow
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (2**31,)}
    )
    write_npz_members(p, {HEADER_KEY: header_bytes(), "w": buf.getvalue() + bytes(16)})
    files["short_member"] = (p, "'w' is truncated or corrupted")

    p = tmp_path / "bad_key.npz"
    write_npz_members(p, {HEADER_KEY: header_bytes(keys=["a/b"]), "a/b": npy_bytes(np.ones(2))})
    files["bad_key"] = (p, "not a state_dict key")
    return files


def test_hostile_files_raise_value_error_naming_the_file(tmp_path):
    for name, (path, phrase) in hostile_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            load(path)
        message = str(info.value)
        assert os.fspath(path) in message, name
        assert phrase in message, (name, message)


def test_load_never_unpickles(tmp_path, monkeypatch):
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle.load was called")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    for path, _ in hostile_files(tmp_path).values():
        with pytest.raises(ValueError):
            serialization.load(path)


@settings(deadline=None, max_examples=25)
@given(
    shapes=st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=1, max_size=4),
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_]),
)
def test_round_trip_property(tmp_path_factory, shapes, dtype):
    rng = np.random.default_rng(len(shapes))
    state = StateDict(
        (f"{i}.w", (rng.normal(size=tuple(s)) * 10).astype(dtype)) for i, s in enumerate(shapes)
    )
    path = tmp_path_factory.mktemp("prop") / "s.npz"
    save(state, path)
    loaded = load(path)
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)
