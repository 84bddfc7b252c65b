"""``size_report(model)``: every bit of the compressed file, per layer, parameter and term.

Three numbers are often quoted as "the model's size". Only the first is a
file that loads back and gives the stated accuracy with nothing left out:

1. **this report's total**: the length of the file ``save_compressed``
   writes: values, indices, codebooks, scales and zero-points, Huffman
   tables, and the container's own header (the JSON architecture
   description included). ``save_compressed`` returns exactly this number.
2. **the dense float32 file** (``tinynet.save`` of the model with its
   transforms baked in, like ``torch.save(model.state_dict())``): 32 bits
   per weight whether it is zero or not, so pruning does not shrink it.
3. **that file gzipped** (level 9; TensorFlow Model Optimization's proxy):
   smaller after pruning, because runs of zeros compress, but it stores
   neither positions nor codes deliberately, and nobody ships it that way.

The ratio uses Deep Compression's denominator: 4 bytes per weight and bias
of the dense model (1,066,440 bytes for LeNet-300-100's 266,610
parameters; Han et al. write "1070 KB").
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from compression.storage.container import PREFIX, plan_container
from compression.storage.streams import TERMS
from tinynet.module import Module
from tinynet.serialization import save
from tinynet.transforms import strip

COLUMNS = [*TERMS, "container"]
SHORT_NAMES = ["values", "indices", "codebook", "scale+zp", "huffman", "header"]  # bits per term
UNITS = (
    "bits per term (values, indices, codebook, scales and zero-points, Huffman tables, "
    "container header); bytes = what the file holds (each segment padded to whole bytes)"
)


@dataclass
class SizeReport:
    """The size of a model's compressed file, broken down.

    Attributes
    ----------
    rows : list of dict
        One per stored tensor (``layer``, ``layer_type``, ``tensor``,
        ``kind``, ``elements``, ``encoding``, ``reason``, ``<term>_bits``
        and ``<term>_bytes`` for each term, ``total_bits``, ``total_bytes``),
        then one ``(container)`` row for the prefix and JSON header.
    total_bytes : int
        The compressed file's length.
    n_params : int
        Weights and biases of the model (the ratio's denominator / 4).
    dense_npz_bytes, dense_npz_gzip_bytes : int or None
        The two figures other tools quote (None when not measured).
    """

    rows: list[dict[str, Any]]
    total_bytes: int
    n_params: int
    dense_npz_bytes: int | None = None
    dense_npz_gzip_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dense_float32_bytes(self) -> int:
        """``4 * n_params``: Deep Compression's denominator."""
        return 4 * self.n_params

    @property
    def ratio(self) -> float:
        """``dense_float32_bytes / total_bytes``."""
        return self.dense_float32_bytes / self.total_bytes

    def by_layer(self) -> dict[str, int]:
        """Bytes per layer (module name); the container's header under ``"(container)"``."""
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["layer"]] = out.get(row["layer"], 0) + row["total_bytes"]
        return out

    def by_term(self) -> dict[str, int]:
        """Bytes per term over the whole file."""
        return {t: sum(row[f"{t}_bytes"] for row in self.rows) for t in COLUMNS}

    def to_rows(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (copies)."""
        return [dict(row) for row in self.rows]

    def to_csv(self) -> str:
        """All rows as CSV text (every column)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def _table(self) -> tuple[list[str], list[list[str]]]:
        """Header and cells: bits per term, then the bytes the tensor takes in the file."""
        head = ["tensor", "type", *SHORT_NAMES, "bits", "bytes", "encoding"]
        body = [
            [
                row["tensor"],
                row["layer_type"],
                *[f"{row[f'{t}_bits']:,}" for t in COLUMNS],
                f"{row['total_bits']:,}",
                f"{row['total_bytes']:,}",
                row["encoding"],
            ]
            for row in self.rows
        ]
        return head, body

    def _summary(self) -> list[str]:
        lines = [
            f"total (the compressed file): {self.total_bytes:,} bytes, "
            f"{self.ratio:.1f}x smaller than 4 bytes x {self.n_params:,} parameters "
            f"= {self.dense_float32_bytes:,} bytes"
        ]
        if self.dense_npz_bytes is not None:
            lines.append(
                f"dense float32 file (tinynet.save .npz): {self.dense_npz_bytes:,} bytes "
                "- zeros cost 32 bits each, so pruning does not shrink it"
            )
        if self.dense_npz_gzip_bytes is not None:
            lines.append(
                f"that file gzipped (level 9): {self.dense_npz_gzip_bytes:,} bytes "
                "- a proxy: not a file anyone loads, and it hides what is stored"
            )
        return lines + self.notes

    def to_markdown(self) -> str:
        """The table and the summary as Markdown."""
        head, body = self._table()
        lines = [UNITS, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in self._summary()) + "\n"

    def __str__(self) -> str:
        head, body = self._table()
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        numeric = set(range(2, len(head) - 1))

        def fmt(cells: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(fmt(head))
        return "\n".join([UNITS, fmt(head), rule, *map(fmt, body), rule, *self._summary()])


def size_report(
    model: Module, use_huffman: bool = True, reference_files: bool = True
) -> SizeReport:
    """Count the bytes of ``save_compressed(model, ...)``, term by term, without writing it.

    Parameters
    ----------
    model : Module
    use_huffman : bool, default True
        As in ``save_compressed``.
    reference_files : bool, default True
        Also measure the dense ``.npz`` (written to a temporary file) and its
        gzip: the figures other tools quote. Off, they are None (faster).

    Returns
    -------
    SizeReport
        ``str(report)`` prints the table; ``report.total_bytes`` equals the
        length of the file ``save_compressed(model, path)`` writes.
    """
    plan = plan_container(model, use_huffman=use_huffman)
    rows = []
    for t in plan.tensors:
        enc = t.encoded
        bits, nbytes = enc.bits_by_term(), enc.bytes_by_term()
        row: dict[str, Any] = {
            "layer": t.layer,
            "layer_type": t.layer_type,
            "tensor": t.name,
            "kind": t.kind,
            "elements": _elements(enc),
            "encoding": enc.description,
            "reason": enc.reason,
        }
        for term in COLUMNS:
            row[f"{term}_bits"] = bits.get(term, 0)
            row[f"{term}_bytes"] = nbytes.get(term, 0)
        row["total_bits"], row["total_bytes"] = enc.bits, enc.nbytes
        rows.append(row)
    overhead = PREFIX.size + len(plan.header)
    container = {
        "layer": "(container)",
        "layer_type": "",
        "tensor": "header",
        "kind": "header",
        "elements": 0,
        "encoding": f"{PREFIX.size} B prefix + {len(plan.header)} B JSON",
        "reason": "magic, version, header length; architecture and tensor table as JSON",
    }
    for term in COLUMNS:
        container[f"{term}_bits"] = 8 * overhead if term == "container" else 0
        container[f"{term}_bytes"] = overhead if term == "container" else 0
    container["total_bits"], container["total_bytes"] = 8 * overhead, overhead
    rows.append(container)
    n_params = sum(p.size for _, _, _, p in model.named_parameter_slots())
    report = SizeReport(rows, plan.total_bytes, n_params)
    if reference_files:
        report.dense_npz_bytes, report.dense_npz_gzip_bytes = dense_file_sizes(model)
    return report


def _elements(enc: Any) -> int:
    shape = enc.meta.get("shape")
    if shape is None:  # the state codec: its first entry is the value
        shape = enc.meta["entries"][0]["shape"]
    n = 1
    for d in shape:
        n *= d
    return n


def dense_file_sizes(model: Module) -> tuple[int, int]:
    """``(bytes of tinynet.save's .npz, bytes of that file gzipped at level 9)``, measured.

    The model is copied and its transforms baked in (``strip``) first, as a
    user would before shipping it; the file is written to a temporary
    directory and deleted.
    """
    dense = strip(copy.deepcopy(model))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        save(dense, path)
        with open(path, "rb") as f:
            data = f.read()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))
