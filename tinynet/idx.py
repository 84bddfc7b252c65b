"""Reading and writing the IDX format, the file format MNIST is distributed in.

An IDX file is a tiny header followed by the raw array, big-endian::

    bytes 0-1   0x00 0x00          always zero
    byte  2     dtype code          0x08 uint8, 0x09 int8, 0x0B int16,
                                    0x0C int32, 0x0D float32, 0x0E float64
    byte  3     ndim                number of dimensions
    4 * ndim    dims                each a big-endian uint32
    the rest    payload             prod(dims) values, big-endian, C order

So ``train-images-idx3-ubyte`` starts ``00 00 08 03 | 00 00 ea 60 |
00 00 00 1c | 00 00 00 1c``: uint8, three dimensions, 60000 x 28 x 28,
and then 47,040,000 pixel bytes. The distributed files are gzipped; we
recognise gzip by its two magic bytes ``1f 8b``, never by the file name.

A file that is truncated, longer than its header says, or not IDX at all is
refused with a ``ValueError`` naming the file and what is wrong (see
DESIGN.md "Errors"). Reference: http://yann.lecun.com/exdb/mnist/ (bottom of
the page).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

#: IDX dtype code -> NumPy dtype (big-endian, as stored in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _describe(path_or_bytes: str | os.PathLike | bytes, name: str | None) -> str:
    """The name used in error messages: the path, or ``name`` for bytes."""
    if name is not None:
        return name
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return "<IDX bytes>"
    return str(path_or_bytes)


def gunzip_if_needed(data: bytes, name: str = "<IDX bytes>") -> bytes:
    """Return ``data`` decompressed if it starts with the gzip magic ``1f 8b``.

    Parameters
    ----------
    data : bytes
        File content, gzipped or not.
    name : str
        File name for error messages.

    Returns
    -------
    bytes
        The uncompressed content (``data`` itself when it was not gzipped).
    """
    if not data.startswith(GZIP_MAGIC):
        return bytes(data)
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(f"{name}: gzip data is corrupt or truncated ({err})") from err


def parse_idx(raw: bytes, name: str = "<IDX bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes into an array in native byte order.

    Parameters
    ----------
    raw : bytes
        Uncompressed IDX content: header then payload (see the module docstring).
    name : str
        File name for error messages.

    Returns
    -------
    ndarray, shape dims, dtype from the header
        A new, writable array (uint8 for MNIST), native byte order.
    """
    if len(raw) < 4:
        raise ValueError(f"{name}: only {len(raw)} bytes, too short for an IDX header (4 bytes)")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        raise ValueError(
            f"{name}: not an IDX file (magic number {raw[:4].hex(' ')}; expected 00 00 "
            f"<dtype code in {[hex(c) for c in IDX_DTYPES]}> <ndim>)"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{name}: truncated header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a hostile header cannot wrap
    got = len(raw) - header_len
    if got < expected:
        raise ValueError(
            f"{name}: truncated: header declares shape {dims} of {dtype.name} "
            f"({expected} payload bytes) but only {got} bytes follow the header"
        )
    if got > expected:
        raise ValueError(
            f"{name}: {got - expected} bytes beyond what the header declares "
            f"(shape {dims} of {dtype.name} = {expected} payload bytes, found {got})"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # copy: native order, writable


def read_idx(path_or_bytes: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a NumPy array.

    Parameters
    ----------
    path_or_bytes : str, os.PathLike or bytes
        A path to the file, or its content.
    name : str, optional
        Name used in error messages (default: the path, or ``"<IDX bytes>"``).

    Returns
    -------
    ndarray
        E.g. shape (60000, 28, 28) uint8 for ``train-images-idx3-ubyte``,
        shape (60000,) uint8 for ``train-labels-idx1-ubyte``.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the content is not IDX, is truncated, or is longer than declared.

    Examples
    --------
    >>> write_idx("labels.idx1-ubyte", np.array([3, 1, 4], dtype=np.uint8))  # doctest: +SKIP
    >>> read_idx("labels.idx1-ubyte")                                        # doctest: +SKIP
    array([3, 1, 4], dtype=uint8)
    """
    label = _describe(path_or_bytes, name)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        data = Path(path_or_bytes).read_bytes()
    return parse_idx(gunzip_if_needed(data, label), label)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as uncompressed IDX bytes (header + big-endian payload).

    Parameters
    ----------
    array : ndarray
        Of a dtype listed in :data:`IDX_DTYPES` (uint8, int8, int16, int32,
        float32, float64), with 1 to 255 dimensions.
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(
            f"write_idx supports dtypes {sorted(str(d) for d in codes)}, got {array.dtype}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX arrays need 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, codes[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, gzipped if asked (used by the tests).

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    array : ndarray
        See :func:`idx_bytes`.
    compress : bool, optional
        Gzip the file; default: when ``path`` ends with ``.gz``. The gzip
        header's time stamp is fixed to 0 so the same array gives the same bytes.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    data = idx_bytes(array)
    if compress:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
