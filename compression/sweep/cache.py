"""Resumable sweeps: every finished grid point kept on disk, found again by what made it.

The full report on MNIST trains for an hour and more (LeNet-5-Caffe here).
A run that is killed after forty minutes should not start again from zero,
and a rerun of a finished report should not redo anything. So each grid point, once measured, is stored in a
cache folder::

    <folder>/<technique>_<setting>_<hash>.tnc    the point's compressed file
    <folder>/<technique>_<setting>_<hash>.json   its row, its key, the file's SHA-256

``<hash>`` is the SHA-256 of the point's **key** (:func:`point_key`):
everything that determines the point (dataset, model, training epochs and
images, the baseline file's SHA-256, the technique's name and description,
the setting, the point's seed, the cache format and tinynet's version).
Change any of them and the key changes: the old entry is simply not found.
What the key cannot see is a change in the code that leaves all of these
alone (a technique's internals, unchanged description): after such a change,
recompute with ``python -m compression --fresh``.

**Atomic writes.** The ``.tnc`` is written first, then the ``.json``, each
to a temporary name and then renamed (``os.replace``, atomic on one
filesystem). The JSON is the entry's commit mark: a run killed while
writing leaves a stray temporary file or a ``.tnc`` without its JSON,
never a JSON for a file that is not complete.

**Nothing is unpickled.** An entry is JSON, read with ``json.loads`` and
checked field by field; the file must have the recorded length and
SHA-256. Anything else (truncated, edited, another format, a key that does
not match) is refused with a message saying why, and the point is
recomputed: :meth:`PointCache.lookup` returns the reason instead of a row.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tinynet
from compression.storage.container import write_atomic
from compression.sweep.runner import Row, point_seed
from compression.sweep.task import SweepTask

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CachedPoint",
    "PointCache",
    "point_key",
    "scan_cache",
    "sha256_of",
    "read_entry",
    "write_entry",
]

CACHE_FORMAT = "tinynet-sweep-point"
CACHE_VERSION = 1

#: What a cached row's fields must be (bool is an int in Python: refused separately).
_ROW_TYPES = {
    "technique": str,
    "setting": str,
    "nbytes": int,
    "accuracy": (int, float),
    "time_ms": (int, float),
    "extra": dict,
    "artifact": str,
    "index": int,
    "seed": int,
}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def point_key(
    task: SweepTask, technique: Any, setting: Any, seed: int, baseline_sha256: str
) -> dict[str, Any]:
    """Everything that determines one grid point's row and file, as plain JSON values.

    ``technique`` is a :class:`~compression.sweep.Technique`: its name, its
    description (which states its epochs and choices) and its label of
    ``setting`` go in. ``seed`` is the point's seed
    (:func:`~compression.sweep.point_seed` of the sweep's seed and the
    point's index), so it covers both.
    """
    return {
        "format": CACHE_VERSION,
        "tinynet": tinynet.__version__,
        "dataset": task.dataset,
        "model": task.model,
        "epochs": task.epochs,
        "train_size": task.train_size,
        "baseline_sha256": baseline_sha256,
        "technique": technique.name,
        "description": technique.description,
        "setting": technique.label(setting),
        "setting_repr": repr(setting),
        "seed": int(seed),
        "keeps_file": task.artifact_dir is not None,
    }


def _digest(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def _copy_atomic(source: Path, target: Path) -> None:
    write_atomic(target, Path(source).read_bytes())


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (json cannot write ``np.int64``)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def read_entry(
    path: str | os.PathLike[str], kind: str, key: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """One JSON cache entry: ``(info, None)`` if valid, ``(None, why)`` if refused, ``(None, None)``
    if there is none.

    Valid means: JSON (``json.loads``, nothing else), an object whose
    ``format`` is ``kind``, whose ``version`` is :data:`CACHE_VERSION` and
    whose ``key`` equals ``key``. The caller checks the body.
    """
    path = Path(path)
    if not path.is_file():
        return None, None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("format") != kind:
            raise ValueError(f"not a {kind} entry")
        if info.get("version") != CACHE_VERSION:
            raise ValueError(f"version {info.get('version')!r}, expected {CACHE_VERSION}")
        if info.get("key") != key:
            raise ValueError("its key does not match what this run needs")
    except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError included
        return None, f"{path} refused ({err})"
    return info, None


def write_entry(
    path: str | os.PathLike[str], kind: str, key: dict[str, Any], body: dict[str, Any]
) -> None:
    """Write a JSON cache entry (``format``, ``version``, ``key``, then ``body``) atomically."""
    info = {"format": kind, "version": CACHE_VERSION, "key": key, **body}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(info, indent=1) + "\n").encode("utf-8"))


def _check_row(fields: Any) -> Row:
    """A :class:`Row` from a cached JSON object, every field checked; ``ValueError`` otherwise."""
    if not isinstance(fields, dict) or set(fields) != set(_ROW_TYPES):
        got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise ValueError(f"its row must have the fields {sorted(_ROW_TYPES)}, got {got}")
    for name, kind in _ROW_TYPES.items():
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"row field {name!r} has the wrong type ({type(value).__name__})")
    for name in ("accuracy", "time_ms"):
        if not math.isfinite(fields[name]):
            raise ValueError(f"row field {name!r} is not a finite number")
    if not all(
        isinstance(k, str) and (v is None or isinstance(v, (str, int, float)))
        for k, v in fields["extra"].items()
    ):
        raise ValueError("row field 'extra' must map names to numbers or strings")
    artifact = fields["artifact"]
    if artifact and (artifact != os.path.basename(artifact) or artifact.startswith(".")):
        raise ValueError(f"artifact {artifact!r} is not a plain file name")
    return Row(**{**fields, "accuracy": float(fields["accuracy"])})


@dataclass(frozen=True)
class PointCache:
    """A folder of finished grid points (see the module docstring).

    Attributes
    ----------
    folder : str
        Created when the first point is stored.
    fresh : bool, default False
        Find nothing (every point is recomputed, and overwrites its entry).
    """

    folder: str
    fresh: bool = False

    def paths(self, key: dict[str, Any]) -> tuple[Path, Path]:
        """``(<stem>.json, <stem>.tnc)`` of the entry for ``key``."""
        stem = f"{_safe(key['technique'])}_{_safe(key['setting'])}_{_digest(key)}"
        folder = Path(self.folder)
        return folder / f"{stem}.json", folder / f"{stem}.tnc"

    def lookup(self, key: dict[str, Any]) -> tuple[Row | None, str | None]:
        """``(row, None)`` when a valid entry exists; ``(None, why)`` when one is refused;
        ``(None, None)`` when there is none (or ``fresh``)."""
        entry, file = self.paths(key)
        if self.fresh:
            return None, None
        info, problem = read_entry(entry, CACHE_FORMAT, key)
        if info is None:
            return None, problem
        try:
            row = _check_row(info.get("row"))
            if row.artifact:
                if not file.is_file():
                    raise ValueError(f"its file {file.name} is missing")
                if file.stat().st_size != row.nbytes or sha256_of(file) != info.get("sha256"):
                    raise ValueError(f"its file {file.name} is not the one it recorded")
        except (OSError, ValueError) as err:
            return None, f"{entry} refused ({err})"
        return row, None

    def store(self, key: dict[str, Any], row: Row, artifact: str | os.PathLike[str] | None) -> None:
        """Keep ``row`` (and a copy of its file ``artifact``) under ``key``: file first, JSON last."""
        entry, file = self.paths(key)
        body: dict[str, Any] = {}
        if artifact is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            _copy_atomic(Path(artifact), file)
            body["sha256"] = sha256_of(file)
        fields = asdict(row)
        fields["extra"] = {k: _plain(v) for k, v in row.extra.items()}
        body["row"] = {k: _plain(v) if k != "extra" else v for k, v in fields.items()}
        write_entry(entry, CACHE_FORMAT, key, body)

    def restore(self, key: dict[str, Any], row: Row, artifact_dir: str | None) -> None:
        """Copy a cached point's file back into ``artifact_dir`` (the report's ``models/``)."""
        if artifact_dir is not None and row.artifact:
            _copy_atomic(self.paths(key)[1], Path(artifact_dir) / row.artifact)


@dataclass(frozen=True)
class CachedPoint:
    """``evaluate_point`` that looks in a :class:`PointCache` before computing.

    Wraps a :class:`~compression.sweep.TechniquePoint`; picklable, so worker
    processes use the cache too (entries have distinct names, and every
    write is atomic).
    """

    point: Any  # a TechniquePoint (its .technique and .task make the key)
    cache: PointCache
    baseline_sha256: str

    def key(self, setting: Any, seed: int) -> dict[str, Any]:
        return point_key(self.point.task, self.point.technique, setting, seed, self.baseline_sha256)

    def __call__(self, setting: Any, seed: int) -> Row:
        key = self.key(setting, seed)
        artifact_dir = self.point.task.artifact_dir
        row, _ = self.cache.lookup(key)  # a refused entry was reported by the scan
        if row is not None:
            self.cache.restore(key, row, artifact_dir)
            return row
        row = self.point(setting, seed)
        path = os.path.join(artifact_dir, row.artifact) if artifact_dir and row.artifact else None
        self.cache.store(key, row, path)
        return row


def scan_cache(
    task: SweepTask,
    techniques: Sequence[Any],
    cache: PointCache,
    seed: int,
    fast: bool,
    log: Callable[[str], None],
) -> tuple[str, set[tuple[str, int]]]:
    """Which points of the sweep ``cache`` already holds; says so (and why any is refused).

    Returns the baseline file's SHA-256 (part of every key) and the
    ``(technique, index)`` pairs found.
    """
    if task.baseline_path is None:
        raise ValueError("a cached sweep needs task.baseline_path (its SHA-256 is in every key)")
    baseline_sha256 = sha256_of(task.baseline_path)
    found: set[tuple[str, int]] = set()
    total = 0
    for technique in techniques:
        for i, setting in enumerate(technique.settings(fast)):
            total += 1
            key = point_key(task, technique, setting, point_seed(seed, i), baseline_sha256)
            row, problem = cache.lookup(key)
            if row is not None:
                found.add((technique.name, i))
            elif problem is not None:
                log(f"cache: {problem}; recomputing {technique.name} {technique.label(setting)}")
    if cache.fresh:
        log(f"cache: --fresh, recomputing all {total} points (and overwriting {cache.folder})")
    else:
        log(
            f"cache: {len(found)} of {total} points found in {cache.folder} (skipped), "
            f"{total - len(found)} to compute"
        )
    return baseline_sha256, found
