"""Find, download and verify the official IDX files of MNIST and Fashion-MNIST.

The rules (DESIGN.md "Data and the measurement protocol"):

1. Look in a folder first: ``root=`` if given, else the cache
   ``$TINYNET_DATA/<dataset>/`` or ``~/.cache/tinynet/<dataset>/``. A file
   may be there as ``name`` or ``name.gz`` (gzip is recognised by its magic
   bytes, not by the name).
2. If it is missing, try each mirror in order (the original site often
   refuses downloads, so it comes last), with a time-out on every request.
3. Verify the *uncompressed* content: its size, its MD5 checksum (from the
   table :data:`FILES`) and its IDX structure. A gzip wrapper can differ
   between copies of the same data, so only the uncompressed bytes are
   compared.
4. Write atomically: download into a temporary file in the same folder and
   ``os.replace`` it into place only once it has been verified, so a failed,
   corrupt or truncated download leaves nothing behind.
5. When nothing works, fail with a message that says which files to fetch,
   from where, and into which folder.

Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tinynet.idx import GZIP_MAGIC, gunzip_if_needed, parse_idx

#: Where to download from, tried in order; each URL prefix + ``name + ".gz"``.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

#: ``{dataset: {file name: (MD5 of the uncompressed content, uncompressed size in bytes)}}``.
#: MD5s of the uncompressed files as published by the datasets' authors (the
#: gzip wrappers differ between mirrors, the content does not).
#: A checksum of ``None`` means "unknown": the file's size and IDX structure
#: are still checked, and a warning says the checksum was not.
#: The sizes follow from the IDX header: 16 + N * 28 * 28 for images, 8 + N for labels.
FILES: dict[str, dict[str, tuple[str | None, int | None]]] = {
    "mnist": {
        "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47_040_016),
        "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60_008),
        "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7_840_016),
        "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10_008),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 47_040_016),
        "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", 60_008),
        "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", 7_840_016),
        "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", 10_008),
    },
}

USER_AGENT = "tinynet (python urllib; teaching framework)"
CHUNK_BYTES = 1 << 16


class DownloadError(ConnectionError):
    """No mirror delivered a verified copy of a file (a subclass of ``OSError``)."""


def cache_dir(dataset: str) -> Path:
    """The cache folder of a dataset: ``$TINYNET_DATA/<dataset>`` or ``~/.cache/tinynet/<dataset>``.

    The dataset gets a folder of its own because MNIST and Fashion-MNIST use
    the same file names.
    """
    base = os.environ.get("TINYNET_DATA")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "tinynet"
    return root / dataset


def md5_hex(raw: bytes) -> str:
    """MD5 checksum of ``raw`` as 32 hex digits (an integrity check, not security)."""
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def verify_idx(raw: bytes, label: str, md5: str | None, size: int | None) -> np.ndarray:
    """Check uncompressed IDX bytes against the expected size and MD5, then parse them.

    Parameters
    ----------
    raw : bytes
        Uncompressed file content.
    label : str
        File name or URL, for messages.
    md5, size : str or None, int or None
        Expected checksum and length; ``None`` skips that check (a missing
        checksum is reported with a warning).

    Returns
    -------
    ndarray
        The parsed array (see :func:`tinynet.idx.parse_idx`).

    Raises
    ------
    ValueError
        Wrong size, wrong checksum, or not a valid IDX file.
    """
    if size is not None and len(raw) != size:
        raise ValueError(
            f"{label}: uncompressed size is {len(raw)} bytes, expected {size} "
            "(truncated or a different file)"
        )
    if md5 is not None:
        got = md5_hex(raw)
        if got != md5:
            raise ValueError(f"{label}: MD5 checksum mismatch: expected {md5}, got {got}")
    array = parse_idx(raw, label)
    if md5 is None:
        warnings.warn(
            f"{label}: no known MD5 checksum (none in tinynet.download.FILES); "
            "checked its size and IDX structure only",
            stacklevel=3,
        )
    return array


def find_local(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists first, else None."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_verified(path: Path, name: str, md5: str | None, size: int | None) -> np.ndarray:
    """Read a local IDX file (gzipped or not) and verify it (see :func:`verify_idx`)."""
    try:
        raw = gunzip_if_needed(Path(path).read_bytes(), str(path))
        return verify_idx(raw, str(path), md5, size)
    except ValueError as err:
        raise ValueError(f"{err}; delete {path} and try again") from err


def _download_to(url: str, destination: Path, timeout: float) -> None:
    """Stream ``url`` into the open-able path ``destination``; checks Content-Length."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        with open(destination, "wb") as f:
            shutil.copyfileobj(response, f, CHUNK_BYTES)
    written = destination.stat().st_size
    if declared is not None and written != int(declared):
        raise ValueError(f"truncated transfer: received {written} of {declared} bytes")


def download_verified(
    name: str,
    folder: Path,
    mirrors: Sequence[str],
    md5: str | None,
    size: int | None,
    timeout: float = 30.0,
    verbose: bool = True,
) -> tuple[Path, np.ndarray]:
    """Download ``name`` (as ``name.gz``) from the first mirror that gives a verified copy.

    Each attempt goes to a temporary file in ``folder``, which is verified and
    then renamed into place with ``os.replace`` (atomic on one file system),
    or deleted.

    Returns
    -------
    (pathlib.Path, ndarray)
        Where the file now lives (``name.gz``, or ``name`` if the mirror sent
        it uncompressed) and its parsed content.

    Raises
    ------
    DownloadError
        If every mirror failed; the message lists each URL and why.
    """
    folder.mkdir(parents=True, exist_ok=True)
    reasons = []
    for mirror in mirrors:
        url = mirror + name + ".gz"
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if verbose:
                print(f"downloading {url} -> {folder}", flush=True)
            _download_to(url, tmp, timeout)
            data = tmp.read_bytes()
            array = verify_idx(gunzip_if_needed(data, url), url, md5, size)
            final = folder / (name + ".gz" if data.startswith(GZIP_MAGIC) else name)
            os.replace(tmp, final)
            return final, array
        except (OSError, ValueError) as err:
            # urllib's URLError (no network, DNS), HTTPError (403, 404) and
            # socket time-outs are all OSErrors; a bad file is a ValueError.
            reasons.append(f"{url}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError("\n".join(reasons) if reasons else "no mirrors given")


def how_to_get(names: Sequence[str], folder: Path, mirrors: Sequence[str], loader: str) -> str:
    """The instructions printed when files are missing: what, from where, into which folder."""
    files = "\n".join(f"    {n}.gz" for n in names)
    urls = "\n".join(f"    {m}" for m in mirrors)
    return (
        f"Download these files by hand:\n{files}\nfrom any of\n{urls}\n"
        f"and put them (gzipped or not) in\n    {folder}\n"
        f"or pass root='<folder holding them>' to {loader}()."
    )


def fetch_idx_files(
    dataset: str,
    names: Sequence[str],
    folder: Path,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    files: Mapping[str, tuple[str | None, int | None]] | None = None,
    timeout: float = 30.0,
    verbose: bool = True,
    loader: str = "load_mnist",
) -> dict[str, np.ndarray]:
    """Load the IDX files ``names`` of ``dataset`` from ``folder``, downloading missing ones.

    Parameters
    ----------
    dataset : str
        Key into :data:`MIRRORS` and :data:`FILES` (``"mnist"``, ``"fashion-mnist"``).
    names : sequence of str
        Uncompressed file names, e.g. ``["train-images-idx3-ubyte", ...]``.
    folder : pathlib.Path
        Where the files are looked for and downloaded to.
    download : bool
        If False, a missing file raises ``FileNotFoundError`` instead.
    mirrors, files : optional
        Override ``MIRRORS[dataset]`` / ``FILES[dataset]`` (tests point these at
        a local server).
    timeout : float
        Seconds per network operation.
    verbose : bool
        Print one line per download attempt.
    loader : str
        Name of the calling function, for the error message.

    Returns
    -------
    dict
        ``{name: array}``, each verified.

    Raises
    ------
    FileNotFoundError, DownloadError
        Missing files (all of them listed, with instructions).
    ValueError
        A local file that fails verification.
    """
    mirrors = tuple(MIRRORS[dataset] if mirrors is None else mirrors)
    files = FILES[dataset] if files is None else files
    arrays, missing, reasons = {}, [], []
    for name in names:
        md5, size = files[name]
        local = find_local(folder, name)
        if local is not None:
            arrays[name] = read_verified(local, name, md5, size)
        elif not download:
            missing.append(name)
        else:
            try:
                _, arrays[name] = download_verified(
                    name, folder, mirrors, md5, size, timeout, verbose
                )
            except DownloadError as err:
                missing.append(name)
                reasons.append(str(err))
    if missing:
        help_text = how_to_get(missing, folder, mirrors, loader)
        if not download:
            raise FileNotFoundError(
                f"{dataset}: {', '.join(missing)} not found in {folder} and download=False.\n"
                + help_text
            )
        tried = "\n".join("  " + line for r in reasons for line in r.splitlines())
        raise DownloadError(
            f"{dataset}: could not download {', '.join(missing)}. Attempts:\n{tried}\n" + help_text
        )
    return arrays


__all__ = [
    "FILES",
    "MIRRORS",
    "DownloadError",
    "cache_dir",
    "download_verified",
    "fetch_idx_files",
    "find_local",
    "how_to_get",
    "md5_hex",
    "read_verified",
    "verify_idx",
]
