"""Saving and loading a ``state_dict``: a plain ``.npz`` file, never pickle.

The file is a zip archive with one ``.npy`` member per array (exactly what
``numpy.savez`` writes, so ``numpy.load`` opens it too), plus one reserved
member, ``__tinynet__``: a JSON header stored as a unicode string array::

    {"format": "tinynet-state", "version": 1,
     "keys": ["0.weight", "0.bias", ...],          # the state_dict order
     "metadata": {"transforms": {...}}}            # StateDict.metadata

Two rules make this safe to share and safe to write:

* **No pickle.** ``torch.save`` pickles, and unpickling a file can run any
  code its author chose. Here every array is plain numbers (object arrays
  are refused when saving and when loading), and the transform chains are
  described as JSON from a whitelist of known types (see
  :mod:`tinynet.transforms`).
* **Atomic writes.** The file is written to a temporary name in the same
  directory, flushed to disk, and only then renamed over the target
  (``os.replace`` is atomic). A crash or a full disk half-way leaves the old
  file intact, never a truncated one.

Corresponds to ``torch.save(model.state_dict(), path)`` and
``model.load_state_dict(torch.load(path))``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinynet.module import Module, StateDict

FORMAT_NAME = "tinynet-state"
FORMAT_VERSION = 1
HEADER_KEY = "__tinynet__"

# "0.weight", "fc1.bias", "3.parametrizations.weight.0.mask": dotted identifiers.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def save(obj: Module | Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write a module's ``state_dict`` (or a ``state_dict``) to ``path`` as ``.npz``.

    Parameters
    ----------
    obj : Module or mapping of str to ndarray
        A module (its ``state_dict()`` is saved) or a state_dict, possibly a
        :class:`tinynet.StateDict` whose ``metadata`` (the transform spec) is
        saved in the header.
    path : str or path-like
        Target file; written as given (the ``.npz`` suffix is a convention,
        not added for you).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        For an object that is neither, a key that is not a string, an array
        of object dtype (it would need pickle), or metadata that is not JSON.
    ValueError
        For a key that is not of the state_dict form (``"0.weight"``).
    """
    state = obj.state_dict() if isinstance(obj, Module) else obj
    if not isinstance(state, Mapping):
        raise TypeError(f"save expects a Module or a state_dict mapping, got {type(obj).__name__}")
    arrays = {}
    for key, value in state.items():
        _check_key(key, f"save({os.fspath(path)!r})")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(
                f"cannot save {key!r}: arrays of dtype {array.dtype} hold Python objects, which "
                "would need pickle; convert it to a numeric array first"
            )
        arrays[key] = array
    metadata = dict(getattr(state, "metadata", {}))
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "keys": list(arrays),
        "metadata": metadata,
    }
    try:
        header_text = json.dumps(header)
    except (TypeError, ValueError) as err:
        raise TypeError(f"state_dict metadata must be JSON-serialisable: {err}") from None
    arrays[HEADER_KEY] = np.array(header_text)  # a 0-d unicode array, not an object array

    path = Path(path)
    _atomic_write_npz(path, arrays)
    return path


def _atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an .npz next to ``path``, fsync it, then rename it over ``path``."""
    # Same directory, so the rename never crosses file systems (it would not be atomic).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npz(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """What ``numpy.savez`` does: one ``<key>.npy`` zip member per array (no pickle)."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def load(path: str | os.PathLike[str]) -> StateDict:
    """Read a file written by :func:`save`; return its :class:`tinynet.StateDict`.

    ``model.load_state_dict(tinynet.load(path))`` restores the model,
    transform chains (masks...) included: they travel in ``.metadata``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Naming the file and the problem, when it is not a readable ``.npz``
        (random bytes, truncated, a single ``.npy``), would need unpickling,
        lacks the ``__tinynet__`` header, has another format name, a newer
        format version, or keys that do not match the header.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"no such file: {name!r}")
    try:
        _check_magic(name)
        with np.load(name, allow_pickle=False) as npz:
            members = list(npz.files)
            if HEADER_KEY not in members:
                raise ValueError(
                    f"it has no {HEADER_KEY!r} header, so it was not written by tinynet.save"
                )
            header = _parse_header(_read_member(npz, HEADER_KEY))
            keys = header["keys"]
            if sorted(members) != sorted([*keys, HEADER_KEY]):
                raise ValueError(
                    f"its arrays {sorted(set(members) - {HEADER_KEY})} do not match the keys "
                    f"listed in its header {sorted(keys)}"
                )
            state = StateDict((key, _read_member(npz, key)) for key in keys)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise ValueError(
            f"cannot load {name!r}: it is a truncated or damaged zip archive ({err})"
        ) from None
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot load {name!r} as a tinynet state file: {err}") from None
    state.metadata = header["metadata"]
    return state


def _check_magic(name: str) -> None:
    """An .npz is a zip archive: its first bytes are ``PK\\x03\\x04``. Say what else it is."""
    with open(name, "rb") as f:
        start = f.read(6)
    if start.startswith(b"PK\x03\x04"):
        return
    if not start:
        raise ValueError("the file is empty")
    if start.startswith(b"\x93NUMPY"):
        raise ValueError("it holds a single .npy array, not an .npz archive")
    raise ValueError(
        f"it is not an .npz (zip) archive (it starts with {start!r}); "
        "tinynet never unpickles files or reads other formats"
    )


def _read_member(npz: Any, key: str) -> np.ndarray:
    """One array of the archive; pickled (object) arrays are refused, not unpickled."""
    try:
        return npz[key]
    except ValueError as err:
        if "allow_pickle" in str(err):  # numpy's refusal of an object array
            raise ValueError(
                f"its array {key!r} cannot be read without unpickling ({err})"
            ) from None
        raise ValueError(f"its array {key!r} is truncated or corrupted ({err})") from None
    except Exception as err:  # zlib.error, struct.error...: a corrupted member
        raise ValueError(f"its array {key!r} is corrupted ({err!r})") from None


def _parse_header(array: np.ndarray) -> dict[str, Any]:
    """Decode and check the JSON header (raises ValueError saying what is wrong)."""
    if array.shape != () or array.dtype.kind != "U":
        raise ValueError(
            f"its {HEADER_KEY!r} header should be a unicode string, "
            f"got dtype {array.dtype} shape {array.shape}"
        )
    try:
        header = json.loads(str(array))
    except json.JSONDecodeError as err:
        raise ValueError(f"its {HEADER_KEY!r} header is not valid JSON ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else header
        raise ValueError(f"its format is {found!r}, expected {FORMAT_NAME!r}")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"its format version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"it was written in format version {version}, newer than the version "
            f"{FORMAT_VERSION} this tinynet reads: upgrade tinynet"
        )
    keys = header.get("keys")
    if (
        not isinstance(keys, list)
        or not all(isinstance(key, str) for key in keys)
        or len(set(keys)) != len(keys)
    ):
        raise ValueError("its header has no valid list of unique string 'keys'")
    for key in keys:
        _check_key(key, "its header")
    if not isinstance(header.get("metadata", {}), dict):
        raise ValueError("its header 'metadata' is not a JSON object")
    header.setdefault("metadata", {})
    return header


def _check_key(key: Any, where: str) -> None:
    """State_dict keys are dotted identifiers such as ``"0.weight"``."""
    if not isinstance(key, str):
        raise TypeError(f"{where}: state_dict keys must be strings, got {key!r}")
    if key == HEADER_KEY or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"{where}: {key!r} is not a state_dict key (dotted names such as '0.weight')"
        )
