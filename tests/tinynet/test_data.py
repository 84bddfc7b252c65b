"""tinynet.data and tinynet.idx: IDX files, the protocol splits, the loaders, batches, jitter.

The download path (local HTTP server) is in test_download.py.
"""

import gzip
import importlib.resources
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.data import (
    MNIST_MEAN,
    MNIST_STD,
    TEST_FILES,
    TRAIN_FILES,
    DataLoader,
    MNISTData,
    batches,
    load_fashion_mnist,
    load_mnist,
    load_mnist_mini,
    protocol_split,
    random_shift,
    shift_images,
    stratified_sample,
    validation_split,
)
from tinynet.download import md5_hex
from tinynet.idx import idx_bytes, read_idx, write_idx

REPO = Path(__file__).resolve().parents[2]
REAL_MNIST = REPO.parent / "shared" / "data" / "mnist"
MNIST_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # official train


# ----------------------------------------------------------------------------- IDX


def test_idx_header_known_answer():
    assert idx_bytes(np.array([3, 1, 4], dtype=np.uint8)) == bytes.fromhex(
        "00000801 00000003 030104"
    )
    raw = idx_bytes(np.array([[1, -2]], dtype=np.int16))
    assert raw == bytes.fromhex("00000b02 00000001 00000002 0001fffe")  # big-endian payload


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 0, 7], dtype=np.int8),
        np.array([[-300, 2], [3, 30000]], dtype=np.int16),
        np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        np.array([[1.5, -2.25]], dtype=np.float32),
        np.array([np.pi, -1e300], dtype=np.float64),
    ],
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    assert path.read_bytes().startswith(b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # a writable copy
    np.testing.assert_array_equal(read_idx(path.read_bytes()), array)


def test_gzip_is_detected_by_magic_bytes_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", a, compress=False)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "zipped", a, compress=True)), a)


def test_write_idx_is_deterministic(tmp_path):
    a = np.arange(100, dtype=np.uint8)
    assert (
        write_idx(tmp_path / "1.gz", a).read_bytes() == write_idx(tmp_path / "2.gz", a).read_bytes()
    )


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: raw[:-1], "truncated: header declares shape \\(2, 3\\)"),
        (lambda raw: raw + b"\x00\x00", "2 bytes beyond what the header declares"),
        (lambda raw: b"\x08\x03" + raw[2:], "not an IDX file"),
        (lambda raw: raw[:2] + b"\x42" + raw[3:], "not an IDX file"),
        (lambda raw: raw[:6], "truncated header"),
        (lambda raw: raw[:3], "too short"),
        (lambda raw: gzip.compress(raw, mtime=0)[:-5], "gzip data is corrupt or truncated"),
        # four dimensions of 2**32 - 1: their product must not wrap around in int64
        (
            lambda raw: b"\x00\x00\x08\x04" + b"\xff" * 16 + raw[12:],
            r"truncated: .* \(340282366604025813516997721482669850625 payload bytes\)",
        ),
    ],
)
def test_bad_idx_files_are_refused_naming_the_file(tmp_path, mutate, message):
    raw = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    path = tmp_path / "broken-idx2-ubyte"
    path.write_bytes(mutate(raw))
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_idx_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_idx_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="write_idx supports dtypes"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


# ----------------------------------------------------------------------------- protocol


def mnist_like_labels(seed=0):
    labels = np.repeat(np.arange(10), MNIST_COUNTS)
    return np.random.default_rng(seed).permutation(labels)


def test_protocol_split_sizes_disjoint_sorted_stratified():
    labels = mnist_like_labels()
    train_idx, heldout_idx = protocol_split(labels)
    assert train_idx.shape == (50_000,) and heldout_idx.shape == (10_000,)
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(heldout_idx) > 0)
    assert np.intersect1d(train_idx, heldout_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, heldout_idx), np.arange(60_000))
    exact = 10_000 * np.array(MNIST_COUNTS) / 60_000
    assert np.all(np.abs(np.bincount(labels[heldout_idx]) - exact) < 1)
    assert np.all(np.abs(np.bincount(labels[train_idx]) - (np.array(MNIST_COUNTS) - exact)) < 1)


def test_protocol_split_is_deterministic_and_depends_on_seed():
    labels = mnist_like_labels()
    a, b, c = protocol_split(labels), protocol_split(labels), protocol_split(labels, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_stratified_sample_known_answers():
    # shares 2.5, 1.5, 1.0 -> floors 2, 1, 1; the tie on .5 goes to the smaller label
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    picked = stratified_sample(labels, 5, seed=0)
    assert np.bincount(labels[picked]).tolist() == [3, 1, 1]
    # pinned: fails if NumPy's random stream or our algorithm ever changes
    assert picked.tolist() == [1, 2, 3, 6, 8]
    assert stratified_sample(np.arange(20) % 4, 6, seed=0).tolist() == [0, 1, 2, 8, 11, 13]


@settings(deadline=None, max_examples=30)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_sample_exact_size_within_one_of_each_share(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    n = round(fraction * labels.size)
    picked = stratified_sample(labels, n, seed)
    assert picked.size == n and np.unique(picked).size == n
    shares = n * np.array(counts) / labels.size
    assert np.all(np.abs(np.bincount(labels[picked], minlength=len(counts)) - shares) < 1)


@pytest.mark.parametrize("n_heldout", [0, 60_000, -1])
def test_protocol_split_refuses_bad_sizes(n_heldout):
    with pytest.raises(ValueError, match="n_heldout must be in 1..59999"):
        protocol_split(mnist_like_labels(), n_heldout)


def test_protocol_split_refuses_float_labels():
    with pytest.raises(ValueError, match="1-D integer array"):
        protocol_split(np.zeros(10))


def test_validation_split_is_the_last_n_val_after_a_seeded_shuffle():
    x = np.arange(100) * 10
    y = np.arange(100)
    x_tr, y_tr, x_val, y_val = validation_split(x, y, 20, seed=3)
    order = np.argsort(np.random.default_rng(3).random(100), kind="stable")
    np.testing.assert_array_equal(y_val, np.sort(order[-20:]))
    np.testing.assert_array_equal(x_tr, 10 * y_tr)
    assert y_tr.size == 80 and np.union1d(y_tr, y_val).size == 100
    again = validation_split(x, y, 20, seed=3)
    np.testing.assert_array_equal(again[3], y_val)
    with pytest.raises(ValueError, match="n_val must be in 1..99"):
        validation_split(x, y, 100)


# ----------------------------------------------------------------------------- mini set


def test_load_mnist_mini_shapes_dtypes_balance():
    data = load_mnist_mini()
    assert isinstance(data, MNISTData) and data.name == "mnist-mini"
    assert data.x_train.shape == (8000, 1, 28, 28) and data.x_train.dtype == np.float32
    assert data.x_heldout.shape == (2000, 1, 28, 28) and data.x_heldout.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_heldout.dtype == np.int64
    assert data.x_test is None and data.y_test is None
    share = np.array(MNIST_COUNTS) / 60_000
    # two stratified draws in a row: within 2 images of the official share
    assert np.all(np.abs(np.bincount(data.y_train) - 8000 * share) < 2)
    assert np.all(np.abs(np.bincount(data.y_heldout) - 2000 * share) < 2)
    assert "CC BY-SA 3.0" in data.attribution


def test_load_mnist_mini_is_deterministic_and_normalised():
    a, b = load_mnist_mini(), load_mnist_mini()
    np.testing.assert_array_equal(a.x_train, b.x_train)
    raw = load_mnist_mini(normalize=False)
    assert raw.x_train.min() == 0.0 and raw.x_train.max() == 1.0
    np.testing.assert_array_equal(np.round(raw.x_train * 255) / np.float32(255), raw.x_train)
    expected = (raw.x_heldout - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    np.testing.assert_array_equal(a.x_heldout, expected)
    assert abs(a.x_train.mean()) < 0.02 and abs(a.x_train.std() - 1) < 0.02


def test_mini_validation_split_defaults_to_a_tenth():
    x_tr, y_tr, x_val, y_val = load_mnist_mini().validation_split()
    assert x_tr.shape == (7200, 1, 28, 28) and x_val.shape == (800, 1, 28, 28)
    assert y_tr.shape == (7200,) and y_val.shape == (800,)


def test_mini_npz_has_attribution_and_nothing_pickled():
    resource = importlib.resources.files("tinynet.datasets") / "mnist_mini.npz"
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["x_train"].dtype == np.uint8 and arrays["y_train"].dtype == np.uint8
    attribution = arrays["attribution"]
    assert attribution.dtype.kind == "U"
    text = str(attribution)
    for needed in [
        "Yann LeCun",
        "Corinna Cortes",
        "Burges",
        "CC BY-SA 3.0",
        "https://creativecommons.org/licenses/by-sa/3.0/",
    ]:
        assert needed in text
    assert np.intersect1d(arrays["index_train"], arrays["index_heldout"]).size == 0
    readme = (importlib.resources.files("tinynet.datasets") / "README.md").read_text()
    assert "CC BY-SA 3.0" in readme and "scripts/build_mnist_mini.py" in readme


# ----------------------------------------------------------------------------- local IDX folder


def write_fake_mnist(folder, n_train=60, n_test=20):
    """Small IDX files in the four ways users keep them; returns arrays and ``files=``."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_FILES[0]: rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        TRAIN_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        TEST_FILES[0]: rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        TEST_FILES[1]: (np.arange(n_test) % 10).astype(np.uint8),
    }
    write_idx(folder / (TRAIN_FILES[0] + ".gz"), arrays[TRAIN_FILES[0]])  # gzipped, .gz
    write_idx(folder / TRAIN_FILES[1], arrays[TRAIN_FILES[1]])  # plain
    write_idx(folder / TEST_FILES[0], arrays[TEST_FILES[0]], compress=True)  # gzipped, no .gz
    write_idx(folder / (TEST_FILES[1] + ".gz"), arrays[TEST_FILES[1]], compress=False)
    files = {n: (md5_hex(idx_bytes(a)), len(idx_bytes(a))) for n, a in arrays.items()}
    return arrays, files


def test_load_mnist_from_local_folder(tmp_path):
    arrays, files = write_fake_mnist(tmp_path)
    data = load_mnist(tmp_path, download=False, normalize=False, n_heldout=10, files=files)
    images, labels = arrays[TRAIN_FILES[0]], arrays[TRAIN_FILES[1]]
    train_idx, heldout_idx = protocol_split(labels, 10)
    np.testing.assert_array_equal(data.x_train[:, 0], images[train_idx] / np.float32(255))
    np.testing.assert_array_equal(data.y_heldout, labels[heldout_idx])
    np.testing.assert_array_equal(data.y_test, arrays[TEST_FILES[1]])
    assert data.x_test.shape == (20, 1, 28, 28) and data.x_test.dtype == np.float32
    assert data.validation_split()[2].shape == (5, 1, 28, 28)
    assert "x_test=(20, 1, 28, 28)" in repr(data)


def test_load_mnist_refuses_a_local_file_with_wrong_checksum(tmp_path):
    _, files = write_fake_mnist(tmp_path)
    files[TRAIN_FILES[1]] = ("0" * 32, files[TRAIN_FILES[1]][1])
    with pytest.raises(ValueError, match="MD5 checksum mismatch") as info:
        load_mnist(tmp_path, download=False, n_heldout=10, files=files)
    assert str(tmp_path / TRAIN_FILES[1]) in str(info.value) and "delete" in str(info.value)


def test_load_fashion_mnist_from_local_folder(tmp_path):
    arrays, files = write_fake_mnist(tmp_path)
    data = load_fashion_mnist(tmp_path, download=False, n_heldout=10, files=files)
    assert data.name == "fashion-mnist" and data.classes[9] == "Ankle boot"
    raw = arrays[TEST_FILES[0]] / np.float32(255)
    np.testing.assert_allclose(data.x_test[:, 0], (raw - 0.2860) / 0.3530, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="official MNIST files not present")
def test_real_mnist_protocol_and_the_committed_mini_set(monkeypatch):
    with pytest.warns(UserWarning, match="x_test is None"):
        data = load_mnist(REAL_MNIST, download=False, normalize=False)
    assert data.x_train.shape == (50_000, 1, 28, 28) and data.x_heldout.shape == (10_000, 1, 28, 28)
    exact = 10_000 * np.array(MNIST_COUNTS) / 60_000
    assert np.all(np.abs(np.bincount(data.y_heldout) - exact) < 1)
    assert data.validation_split()[2].shape == (5000, 1, 28, 28)
    # rebuilding the mini set from the official files gives the committed arrays
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script prepends the repo root
    spec = importlib.util.spec_from_file_location(
        "build_mini", REPO / "scripts/build_mnist_mini.py"
    )
    build_mini = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_mini)
    rebuilt = build_mini.build(*build_mini.read_official(REAL_MNIST))
    resource = importlib.resources.files("tinynet.datasets") / "mnist_mini.npz"
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        for key, array in rebuilt.items():
            np.testing.assert_array_equal(npz[key], array, err_msg=key)


# ----------------------------------------------------------------------------- batches


def test_batches_in_order_are_views_and_keep_arrays_aligned():
    x, y = np.arange(10) * 2, np.arange(10)
    got = list(batches(x, y, batch_size=4))
    assert [len(b[1]) for b in got] == [4, 4, 2]
    assert all(np.shares_memory(b[0], x) for b in got)
    assert [len(b[0]) for b in batches(x, y, batch_size=4, drop_last=True)] == [4, 4]
    for xb, yb in batches(x, y, batch_size=3, shuffle=True, seed=0):
        np.testing.assert_array_equal(xb, 2 * yb)
    seen = np.concatenate([b[1] for b in batches(x, y, batch_size=3, shuffle=True, seed=0)])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))


def test_batches_refuses_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        next(batches(np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(batches(np.zeros(3), batch_size=0))


def test_dataloader_covers_every_sample_once_per_epoch():
    x, y = np.arange(103) * 2, np.arange(103)
    loader = DataLoader(x, y, batch_size=10, seed=0)
    assert len(loader) == 11
    for _ in range(2):
        epoch = list(loader)
        assert len(epoch) == 11 and len(epoch[-1][0]) == 3
        seen = np.concatenate([yb for _, yb in epoch])
        assert sorted(seen.tolist()) == list(range(103))
        assert all(np.array_equal(xb, 2 * yb) for xb, yb in epoch)
    dropped = DataLoader(x, y, batch_size=10, drop_last=True)
    assert len(dropped) == 10 and all(len(b[0]) == 10 for b in dropped)


def test_dataloader_is_deterministic_and_reshuffles_each_epoch():
    x = np.arange(50)
    a, b = DataLoader(x, batch_size=50, seed=7), DataLoader(x, batch_size=50, seed=7)
    a0, a1 = next(iter(a))[0], next(iter(a))[0]
    b0, b1 = next(iter(b))[0], next(iter(b))[0]
    np.testing.assert_array_equal(a0, b0)
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a0, a1)
    a.set_epoch(1)
    np.testing.assert_array_equal(next(iter(a))[0], a1)
    assert not np.array_equal(next(iter(DataLoader(x, batch_size=50, seed=8)))[0], a0)
    in_order = DataLoader(x, batch_size=50, shuffle=False)
    np.testing.assert_array_equal(next(iter(in_order))[0], x)


def test_dataloader_transform_applies_to_first_array_only():
    x, y = np.zeros((8, 1, 5, 5), dtype=np.float32), np.arange(8)
    calls = []

    def add_one(xb, rng):
        calls.append(isinstance(rng, np.random.Generator))
        return xb + 1

    loader = DataLoader(x, y, batch_size=4, transform=add_one)
    for xb, yb in loader:
        assert np.all(xb == 1) and yb.max() < 8
    assert calls == [True, True] and np.all(x == 0)
    shifted = [DataLoader(x + np.eye(5), batch_size=8, transform=random_shift) for _ in range(2)]
    np.testing.assert_array_equal(next(iter(shifted[0]))[0], next(iter(shifted[1]))[0])


# ----------------------------------------------------------------------------- jitter


def test_shift_images_known_answer():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = shift_images(x, np.array([1]), np.array([-1]))  # down 1, left 1, fill x.min() = 0
    expected = [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]]
    np.testing.assert_array_equal(out[0, 0], expected)
    assert np.all(shift_images(x, np.array([4]), np.array([0]), fill=-1.0) == -1)


def test_random_shift_moves_a_single_pixel_by_its_shift():
    x = np.zeros((200, 1, 7, 7), dtype=np.float32)
    x[:, 0, 3, 3] = 1.0
    out = random_shift(x, max_shift=2, rng=np.random.default_rng(0))
    n, _, rows, cols = np.nonzero(out)
    np.testing.assert_array_equal(n, np.arange(200))  # exactly one pixel per image
    dy, dx = rows - 3, cols - 3
    assert dy.min() == -2 and dy.max() == 2 and dx.min() == -2 and dx.max() == 2
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 25
    np.testing.assert_array_equal(shift_images(x, dy, dx), out)


def test_random_shift_seeded_shapes_dtypes_and_background():
    x = load_mnist_mini().x_heldout[:64]
    a, b = random_shift(x, rng=1), random_shift(x, rng=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32
    assert not np.array_equal(a, random_shift(x, rng=2))
    assert a.min() == x.min()  # filled with the (normalised) background
    filled = random_shift(np.full((50, 1, 7, 7), 5.0), rng=3, fill=-1.0)
    assert set(np.unique(filled).tolist()) == {-1.0, 5.0}
    np.testing.assert_array_equal(random_shift(x, max_shift=0, rng=0), x)
    u8 = np.full((3, 28, 28), 255, dtype=np.uint8)
    assert random_shift(u8, rng=0).dtype == np.uint8
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        random_shift(x, max_shift=-1)


@settings(deadline=None, max_examples=25)
@given(dy=st.integers(-2, 2), dx=st.integers(-2, 2), seed=st.integers(0, 1000))
def test_shift_then_shift_back_restores_images_with_a_blank_border(dy, dx, seed):
    x = np.zeros((3, 1, 9, 9))
    x[:, :, 2:7, 2:7] = np.random.default_rng(seed).random((3, 1, 5, 5)) + 0.1
    shifted = shift_images(x, np.full(3, dy), np.full(3, dx), fill=0.0)
    np.testing.assert_array_equal(shift_images(shifted, np.full(3, -dy), np.full(3, -dx)), x)
