"""The download path of load_mnist, against a local HTTP server on 127.0.0.1.

The server serves small synthetic IDX files that the tests make; the
expected checksums and sizes are passed with ``files=`` and the mirrors with
``mirrors=``, so nothing here touches the network.
"""

import gzip
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tinynet import download
from tinynet.data import TEST_FILES, TRAIN_FILES, load_mnist
from tinynet.download import DownloadError, cache_dir, download_verified, md5_hex
from tinynet.idx import idx_bytes

N_TRAIN, N_TEST, N_HELDOUT = 60, 20, 10


def make_dataset(seed=0):
    """Small MNIST-like arrays: 6 images of each class for train, 2 for t10k."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_FILES[0]: rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        TRAIN_FILES[1]: np.repeat(np.arange(10, dtype=np.uint8), N_TRAIN // 10),
        TEST_FILES[0]: rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        TEST_FILES[1]: np.repeat(np.arange(10, dtype=np.uint8), N_TEST // 10),
    }
    raw = {name: idx_bytes(a) for name, a in arrays.items()}
    files = {name: (md5_hex(r), len(r)) for name, r in raw.items()}
    return arrays, raw, files


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, cut = route
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])  # cut: connection drops early
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server; ``server.routes[path] = (body, cut)``, ``server.hits`` logs GETs."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.hits = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve(server, prefix, raw, names=None, cut=None):
    """Serve gzipped copies of ``raw[name]`` under ``/prefix/name.gz``."""
    for name in names or raw:
        server.routes[f"/{prefix}/{name}.gz"] = (gzip.compress(raw[name], mtime=0), cut)
    return f"{server.url}/{prefix}/"


def closed_port_url():
    """A URL on a port where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_caches_verifies_and_second_call_stays_offline(server, tmp_path, monkeypatch):
    arrays, raw, files = make_dataset()
    mirror = serve(server, "mnist", raw)
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    data = load_mnist(mirrors=[mirror], files=files, n_heldout=N_HELDOUT, verbose=False)
    folder = tmp_path / "mnist"
    assert cache_dir("mnist") == folder
    assert files_in(folder) == sorted(n + ".gz" for n in raw)
    assert len(server.hits) == 4
    assert data.x_train.shape == (N_TRAIN - N_HELDOUT, 1, 28, 28)
    assert data.x_test.shape == (N_TEST, 1, 28, 28)
    np.testing.assert_array_equal(data.y_test, arrays[TEST_FILES[1]])
    x_expected = (arrays[TEST_FILES[0]] / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)
    np.testing.assert_allclose(data.x_test[:, 0], x_expected, rtol=1e-6, atol=1e-6)

    again = load_mnist(mirrors=[mirror], files=files, n_heldout=N_HELDOUT, verbose=False)
    assert len(server.hits) == 4  # served from the cache
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_first_mirror_failing_then_second_succeeding(server, tmp_path):
    _, raw, files = make_dataset()
    good = serve(server, "good", raw)
    missing = f"{server.url}/missing/"  # 404 for everything
    data = load_mnist(
        tmp_path,
        mirrors=[closed_port_url(), missing, good],
        files=files,
        n_heldout=N_HELDOUT,
        verbose=False,
        timeout=5,
    )
    assert data.x_test is not None
    assert sum(h.startswith("/missing/") for h in server.hits) == 4
    assert sum(h.startswith("/good/") for h in server.hits) == 4
    assert files_in(tmp_path) == sorted(n + ".gz" for n in raw)


def test_corrupted_file_is_refused_and_leaves_nothing(server, tmp_path):
    _, raw, files = make_dataset()
    bad = dict(raw)
    flipped = bytearray(raw[TRAIN_FILES[0]])
    flipped[-1] ^= 0xFF  # one pixel changed: same size, different checksum
    bad[TRAIN_FILES[0]] = bytes(flipped)
    mirror = serve(server, "mnist", bad)
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        load_mnist(tmp_path, mirrors=[mirror], files=files, verbose=False)
    assert TRAIN_FILES[0] in str(info.value)
    assert files_in(tmp_path) == [TRAIN_FILES[1] + ".gz"]  # only the good file was kept


def test_truncated_file_is_refused_and_leaves_nothing(server, tmp_path):
    _, raw, files = make_dataset()
    gz = gzip.compress(raw[TRAIN_FILES[0]], mtime=0)
    server.routes["/cut/" + TRAIN_FILES[0] + ".gz"] = (gz[: len(gz) // 2], None)
    with pytest.raises(DownloadError, match="corrupt or truncated"):
        download_verified(
            TRAIN_FILES[0], tmp_path, [f"{server.url}/cut/"], *files[TRAIN_FILES[0]], verbose=False
        )
    assert files_in(tmp_path) == []


def test_transfer_cut_short_is_refused_and_leaves_nothing(server, tmp_path):
    _, raw, files = make_dataset()
    mirror = serve(server, "drop", raw, names=[TRAIN_FILES[0]], cut=100)
    with pytest.raises(DownloadError, match="truncated transfer: received 100 of"):
        download_verified(
            TRAIN_FILES[0], tmp_path, [mirror], *files[TRAIN_FILES[0]], verbose=False, timeout=5
        )
    assert files_in(tmp_path) == []


def test_offline_error_names_files_mirrors_and_folder(tmp_path):
    _, _, files = make_dataset()
    mirrors = [closed_port_url(), closed_port_url()]
    folder = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        load_mnist(folder, mirrors=mirrors, files=files, verbose=False, timeout=5)
    message = str(info.value)
    assert isinstance(info.value, OSError)
    for name in TRAIN_FILES:
        assert f"{name}.gz" in message
    for mirror in mirrors:
        assert mirror in message
    assert str(folder) in message and "root=" in message
    assert files_in(folder) == []


def test_download_false_raises_file_not_found_with_instructions(tmp_path):
    _, _, files = make_dataset()
    with pytest.raises(FileNotFoundError, match="download=False") as info:
        load_mnist(tmp_path, download=False, files=files)
    assert TRAIN_FILES[0] + ".gz" in str(info.value) and str(tmp_path) in str(info.value)


def test_missing_test_split_gives_x_test_none_with_warning(server, tmp_path):
    _, raw, files = make_dataset()
    mirror = serve(server, "mnist", raw, names=TRAIN_FILES)  # no t10k on this mirror
    with pytest.warns(UserWarning, match="x_test is None"):
        data = load_mnist(
            tmp_path, mirrors=[mirror], files=files, n_heldout=N_HELDOUT, verbose=False
        )
    assert data.x_test is None and data.y_test is None
    assert data.x_heldout.shape == (N_HELDOUT, 1, 28, 28)


def test_unknown_checksum_checks_size_and_warns(server, tmp_path):
    _, raw, files = make_dataset()
    name = TRAIN_FILES[1]
    mirror = serve(server, "m", raw, names=[name])
    with pytest.warns(UserWarning, match="no known MD5"):
        _, labels = download_verified(name, tmp_path, [mirror], None, files[name][1], verbose=False)
    assert labels.shape == (N_TRAIN,)
    with pytest.raises(DownloadError, match="uncompressed size"):
        download_verified(name, tmp_path / "b", [mirror], None, files[name][1] + 1, verbose=False)


def test_default_tables_are_consistent():
    for dataset in ("mnist", "fashion-mnist"):
        assert download.MIRRORS[dataset]
        assert set(download.FILES[dataset]) == set(TRAIN_FILES + TEST_FILES)
    assert download.MIRRORS["mnist"][-1].startswith("http://yann.lecun.com")
    assert download.FILES["mnist"][TRAIN_FILES[0]] == (
        "6bbc9ace898e44ae57da46a324031adb",
        47_040_016,
    )
    assert download.FILES["mnist"][TRAIN_FILES[1]] == ("a25bea736e30d166cdddb491f175f624", 60_008)
