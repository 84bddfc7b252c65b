"""``save_compressed`` / ``load_compressed``: the compressed file format, version 1.

Layout (all integers little-endian)::

    offset  size  content
    0       8     magic bytes  89 54 4E 43 0D 0A 1A 0A  ("\\x89TNC\\r\\n\\x1a\\n")
    8       2     format version (uint16), 1
    10      4     H, length of the JSON header in bytes (uint32)
    14      H     JSON header, UTF-8
    14 + H  P     payload: every tensor's segments, back to back

The magic works like PNG's: the non-ASCII first byte and the ``\\r\\n`` /
``\\x1a`` bytes make a text-mode transfer or a truncated download visible at
once. The JSON header holds::

    {"format": "tinynet-compressed", "version": 1,
     "model": {architecture, see architecture.py},
     "transforms": {"1.weight": [{"type": "Mask", "config": {}}], ...},
     "output_transforms": {"2": [{"type": "ActivationQuantize", "config": {...}}]},
     "tensors": [{"name": "1.weight", "kind": "parameter", "codec": "sparse",
                  "meta": {...}, "segments": [[name, term, offset, bits], ...]}, ...],
     "payload_length": P, "payload_crc32": C}

``"output_transforms"`` (transforms of module outputs: activation
quantizers) is present only when the model has some; their state (a few
float32 numbers each: a range, a step size) follows the parameters and
buffers as tensors of kind ``"output"``, stored dense.

A segment of ``bits`` bits occupies ``ceil(bits / 8)`` bytes at ``offset``
(from the start of the payload); segments tile the payload exactly. So::

    file length = 14 + H + P = size_report(model).total_bytes

Nothing is unpickled or evaluated: layer and transform types come from
whitelists, codecs from :data:`~compression.storage.encoded.CODECS`, and
every length is checked. A file that is truncated, longer than declared,
of another version, corrupted (CRC-32 of the payload) or that names an
unknown type raises :class:`CompressedFileError` (a ``ValueError``) naming
the file. The CRC does not cover the header; there each transform entry
must be exactly ``{"type", "config"}``, a config must hold only keys its
transform keeps (one it lacks takes its default), and every array must have
the shape the header promises, so a damaged key or type name is refused. A
changed number that is still consistent (a bit width of 4 read as 5) can
load: covering the header needs a format version 2.

Writes are atomic: a temporary file in the same directory, ``fsync``, then
``os.replace``.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.storage import dense, quantized, sparse_codec  # noqa: F401  (register codecs)
from compression.storage.architecture import (
    build_module,
    describe_module,
    global_rng_untouched,
    same_structure,
)
from compression.storage.encoded import EncodedTensor, decode_tensor
from compression.storage.streams import TERMS, Segment
from compression.storage.tensor import encode_buffer, encode_parameter, restore_parameter
from tinynet.module import Module
from tinynet.transforms import (
    TRANSFORM_TYPES,
    apply_output_transform_spec,
    apply_transform_spec,
    output_transform_spec,
    transform_spec,
)

MAGIC = b"\x89TNC\r\n\x1a\n"
VERSION = 1
FORMAT_NAME = "tinynet-compressed"
PREFIX = struct.Struct("<8sHI")  # magic, version, header length: 14 bytes


class CompressedFileError(ValueError):
    """A file that ``load_compressed`` refuses: says which file and what is wrong."""


@dataclass
class StoredTensor:
    """One parameter, buffer or output-transform array as planned for the file."""

    name: str  # "1.weight"
    kind: str  # "parameter", "buffer" or "output" (state of an output transform)
    layer: str  # module name, "1"
    layer_type: str  # "Linear"
    encoded: EncodedTensor


@dataclass
class ContainerPlan:
    """Everything ``save_compressed`` writes, before it is written."""

    header: bytes  # the JSON header (UTF-8)
    payload: bytes
    tensors: list[StoredTensor]

    @property
    def total_bytes(self) -> int:
        """``14 + len(header) + len(payload)``: the file's length."""
        return PREFIX.size + len(self.header) + len(self.payload)

    def to_bytes(self) -> bytes:
        """The whole file."""
        return PREFIX.pack(MAGIC, VERSION, len(self.header)) + self.header + self.payload


def plan_container(model: Module, use_huffman: bool = True, verify: bool = True) -> ContainerPlan:
    """Encode every tensor of ``model`` and lay out the file (used by save and by the report)."""
    architecture = describe_module(model)
    with global_rng_untouched():
        if not same_structure(build_module(architecture), model):
            raise ValueError("the model's parameters or buffers differ from what its layers create")
    spec, output_spec = transform_spec(model), output_transform_spec(model)
    for name, chain in [*spec.items(), *output_spec.items()]:
        for entry in chain:
            if TRANSFORM_TYPES.get(entry["type"]) is None:
                raise ValueError(f"transform {entry['type']!r} of {name!r} is not registered")
    owners = {name: (type(m).__name__) for name, m in model.named_modules()}
    tensors = []
    for full, _, attr, param in model.named_parameter_slots():
        layer = full[: -len(attr) - 1] if "." in full else ""
        encoded = encode_parameter(param, use_huffman=use_huffman, verify=verify)
        tensors.append(StoredTensor(full, "parameter", layer, owners[layer], encoded))
    for full, buffer in model.named_buffers():
        layer = full.rsplit(".", 1)[0] if "." in full else ""
        tensors.append(StoredTensor(full, "buffer", layer, owners[layer], encode_buffer(buffer)))
    for full, layer, array, _ in output_states(model):
        encoded = encode_buffer(array)
        encoded.reason = "output-transform state (an activation range, a step size) is stored dense"
        tensors.append(StoredTensor(full, "output", layer, owners[layer], encoded))
    entries, chunks, offset = [], [], 0
    for t in tensors:
        segments = []
        for s in t.encoded.segments:
            segments.append([s.name, s.term, offset, s.bits])
            chunks.append(s.data)
            offset += len(s.data)
        entries.append(
            {
                "name": t.name,
                "kind": t.kind,
                "codec": t.encoded.codec,
                "meta": t.encoded.meta,
                "segments": segments,
            }
        )
    payload = b"".join(chunks)
    header = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "model": architecture,
        "transforms": spec,
        **({"output_transforms": output_spec} if output_spec else {}),
        "tensors": entries,
        "payload_length": len(payload),
        "payload_crc32": zlib.crc32(payload),
    }
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return ContainerPlan(text, payload, tensors)


def output_states(model: Module) -> list[tuple[str, str, Any, Any]]:
    """``(key, module name, array, transform)`` for each array of each output transform's state.

    Keys as in ``state_dict``: ``"2.output_transforms.0.min_val"``.
    """
    out = []
    for layer, module in model.named_modules():
        prefix = f"{layer}." if layer else ""
        for i, transform in enumerate(module.output_transforms):
            for name, array in transform.named_state():
                out.append((f"{prefix}output_transforms.{i}.{name}", layer, array, transform))
    return out


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half.

    The bytes go to a unique temporary file beside ``path``, are flushed to
    disk, and the file is renamed into place (``os.replace`` is atomic on one
    file system); the folder is then synced so the rename itself survives a
    power cut (POSIX). A failure removes the temporary file and re-raises.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_compressed(model: Module, path: str | os.PathLike[str], use_huffman: bool = True) -> int:
    """Write ``model`` in the compressed format; return the file's length in bytes.

    The length equals ``size_report(model).total_bytes``. The write is
    atomic (temporary file in the same directory, ``fsync``, ``os.replace``),
    so a crash never leaves a half-written file under ``path``.

    Raises
    ------
    ValueError
        For a layer or transform type outside the whitelists.
    """
    blob = plan_container(model, use_huffman=use_huffman).to_bytes()
    write_atomic(path, blob)
    return len(blob)


def load_compressed(path: str | os.PathLike[str]) -> Module:
    """Rebuild the model saved by :func:`save_compressed` (in eval mode).

    Its outputs equal the saved model's outputs: the same effective weights
    (masked models come back with their ``Mask`` transforms, quantized ones
    with their quantizers), the same buffers, the same output transforms
    (activation quantizers) with their state. Latent values of pruned or
    quantized weights are not stored (they come back as zeros, or as the
    quantized values), nor are gradients, optimizer state, hooks or
    ``requires_grad`` flags. Loading does not change tinynet's global
    random generator.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CompressedFileError (a ValueError)
        Naming the file and the problem: bad magic, unsupported version,
        truncated, trailing bytes, header that is not JSON or has an
        unexpected structure, unknown layer/transform/codec type, offsets
        out of range, checksum mismatch, undecodable segments.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such file: {name!r}")
    with open(name, "rb") as f:
        blob = f.read()
    # A file may name the quantization and clipping packages' transforms, observers and
    # codecs; importing them registers them (here, not at the top: they import this one).
    import compression.clipping  # noqa: F401
    import compression.quantization  # noqa: F401

    def fail(problem: str) -> CompressedFileError:
        return CompressedFileError(f"cannot load {name!r}: {problem}")

    if len(blob) < PREFIX.size:
        raise fail(f"truncated: {len(blob)} bytes, shorter than the {PREFIX.size}-byte prefix")
    magic, version, header_length = PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise fail(f"not a tinynet compressed file (magic bytes {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise fail(f"unsupported format version {version} (this tinynet reads version {VERSION})")
    if PREFIX.size + header_length > len(blob):
        raise fail(f"truncated: the header needs {header_length} bytes, {len(blob) - 14} remain")
    try:
        header = json.loads(
            blob[PREFIX.size : PREFIX.size + header_length].decode("utf-8"),
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise fail(f"its header is not valid JSON ({err})") from None
    payload = blob[PREFIX.size + header_length :]
    try:
        return _rebuild(header, payload)
    except (
        AttributeError,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        OverflowError,
        RecursionError,
    ) as err:
        raise fail(
            str(err) if isinstance(err, ValueError) else f"malformed header ({err!r})"
        ) from None


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not allowed in the header")


def _rebuild(header: Any, payload: bytes) -> Module:
    """Check the header against the payload, build the model, decode every tensor."""
    expected = {
        "format",
        "version",
        "model",
        "transforms",
        "tensors",
        "payload_length",
        "payload_crc32",
    }
    optional = {"output_transforms"}
    if not isinstance(header, dict) or not expected <= set(header) <= expected | optional:
        keys = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise ValueError(
            f"its header has keys {keys}, expected {sorted(expected)} (and optionally "
            f"{sorted(optional)})"
        )
    if header["format"] != FORMAT_NAME or header["version"] != VERSION:
        raise ValueError(f"its header declares {header['format']!r} version {header['version']!r}")
    declared = header["payload_length"]
    if not isinstance(declared, int) or declared < 0:
        raise ValueError(f"payload_length {declared!r} is not a byte count")
    if len(payload) < declared:
        raise ValueError(
            f"truncated: the payload should be {declared} bytes, {len(payload)} remain"
        )
    if len(payload) > declared:
        raise ValueError(f"{len(payload) - declared} unexpected bytes after the declared payload")
    if zlib.crc32(payload) != header["payload_crc32"]:
        raise ValueError("the payload checksum (CRC-32) does not match: the file is corrupted")
    with global_rng_untouched():
        model = build_module(header["model"])
    if not isinstance(header["transforms"], dict):
        raise ValueError("'transforms' must be a JSON object")
    apply_transform_spec(model, header["transforms"])
    if not isinstance(header.get("output_transforms", {}), dict):
        raise ValueError("'output_transforms' must be a JSON object")
    apply_output_transform_spec(model, header.get("output_transforms", {}))
    slots = [(full, param) for full, _, _, param in model.named_parameter_slots()]
    buffers = list(model.named_buffers())
    outputs = {key: (array, transform) for key, _, array, transform in output_states(model)}
    wanted = [(n, "parameter") for n, _ in slots] + [(n, "buffer") for n, _ in buffers]
    wanted += [(n, "output") for n in outputs]
    entries = header["tensors"]
    if not isinstance(entries, list) or [(e["name"], e["kind"]) for e in entries] != wanted:
        raise ValueError("its tensor list does not match the parameters and buffers of its model")
    segment_lists = _cut_segments(entries, payload)
    params = dict(slots)
    owners = dict(model.named_modules())
    shapes = {n: p.shape for n, p in slots} | {n: b.shape for n, b in buffers}
    shapes |= {n: np.shape(array) for n, (array, _) in outputs.items()}
    for entry, segments in zip(entries, segment_lists):
        if not isinstance(entry["meta"], dict):
            raise ValueError(
                f"tensor {entry['name']!r}: 'meta' must be a JSON object, "
                f"got {type(entry['meta']).__name__}"
            )
        try:
            declared = entry["meta"].get("shape", list(shapes[entry["name"]]))
            if declared != list(shapes[entry["name"]]):  # before allocating anything
                raise ValueError(
                    f"shape {declared} differs from the model's {shapes[entry['name']]}"
                )
            arrays = decode_tensor(entry["codec"], entry["meta"], segments)
            if entry["kind"] == "parameter":
                restore_parameter(params[entry["name"]], arrays)
            elif entry["kind"] == "buffer":
                _restore_buffer(owners, entry["name"], arrays)
            else:
                _restore_output(outputs, entry["name"], arrays)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ValueError(f"tensor {entry['name']!r} cannot be decoded: {err}") from None
    return model.eval()


def _cut_segments(entries: list[Any], payload: bytes) -> list[list[Segment]]:
    """Slice the payload into each tensor's segments; they must tile it exactly, in order."""
    position, out = 0, []
    for entry in entries:
        segments = []
        for item in entry["segments"]:
            name, term, offset, bits = item
            ok = isinstance(name, str) and term in TERMS and isinstance(offset, int)
            if not ok or not isinstance(bits, int) or bits < 0 or offset != position:
                raise ValueError(
                    f"segment {item!r:.80} of {entry['name']!r} is malformed or "
                    f"does not start where the previous one ended ({position})"
                )
            end = offset + (bits + 7) // 8
            if end > len(payload):
                raise ValueError(
                    f"segment {name!r} of {entry['name']!r} ends at byte {end}, "
                    f"past the payload's {len(payload)} bytes"
                )
            segments.append(Segment(name, term, bits, payload[offset:end]))
            position = end
        out.append(segments)
    if position != len(payload):
        raise ValueError(f"{len(payload) - position} payload bytes belong to no segment")
    return out


def _restore_buffer(owners: dict[str, Module], full: str, arrays: dict[str, Any]) -> None:
    """Set a buffer (running statistics) from its decoded ``{"value": array}``."""
    layer, _, attr = full.rpartition(".")
    module = owners[layer]
    old, new = getattr(module, attr), arrays["value"]
    if set(arrays) != {"value"} or new.shape != old.shape or new.dtype.kind != old.dtype.kind:
        raise ValueError(
            f"buffer {full!r} of shape {old.shape} cannot take {new.shape} {new.dtype}"
        )
    module.register_buffer(attr, new.copy())


def _restore_output(outputs: dict[str, Any], full: str, arrays: dict[str, Any]) -> None:
    """Set one array of an output transform's state from its decoded ``{"value": array}``."""
    old, transform = outputs[full]
    old, new = np.asarray(old), arrays["value"]
    if set(arrays) != {"value"} or new.shape != old.shape or new.dtype.kind != old.dtype.kind:
        raise ValueError(f"output state {full!r} of shape {old.shape} cannot take {new.shape}")
    transform.set_state(full.rsplit(".", 1)[1], new.copy())
