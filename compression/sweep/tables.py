"""A sweep's rows as tables: CSV for programs, Markdown for people.

Columns: ``technique, setting, bytes, accuracy, time_ms``, then every key
of ``extra`` (sorted; empty where a row lacks it), then ``artifact, index,
seed``. Markdown adds a human-readable size, accuracy in percent, and
whether the row is on the Pareto front; it leaves out the long text columns
of :data:`CSV_ONLY` (Deep Compression's ``stages``, which the report shows
in its own section).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compression.sweep.pareto import pareto_front
from compression.sweep.runner import Row
from tinynet.plotting import format_bytes

HEAD = ["technique", "setting", "bytes", "accuracy", "time_ms"]
TAIL = ["artifact", "index", "seed"]
#: ``extra`` keys written to CSV but not to Markdown tables (a sentence per cell).
CSV_ONLY = ("stages",)


def extra_keys(rows: Sequence[Row]) -> list[str]:
    """Every key of every row's ``extra``, sorted."""
    return sorted({key for row in rows for key in row.extra})


def row_dict(row: Row, keys: Sequence[str]) -> dict[str, Any]:
    """One row as a flat dict with the CSV columns (``extra`` spread into ``keys``)."""
    out: dict[str, Any] = {
        "technique": row.technique,
        "setting": row.setting,
        "bytes": row.nbytes,
        "accuracy": row.accuracy,
        "time_ms": round(row.time_ms, 4),
    }
    out.update({key: row.extra.get(key, "") for key in keys})
    out.update({"artifact": row.artifact, "index": row.index, "seed": row.seed})
    return out


def to_csv(rows: Sequence[Row], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` to ``path`` as CSV (header line first); return the path."""
    keys = extra_keys(rows)
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HEAD + keys + TAIL, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row_dict(row, keys) for row in rows)
    return path


def _cell(key: str, value: Any) -> str:
    """Accuracies in percent, big integers with thousands separators."""
    if value == "" or value is None:
        return ""
    if "accuracy" in key and isinstance(value, float):
        return f"{100 * value:.2f}%"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``: one line per row, in the order given.

    ``front`` marks the rows on the Pareto front (:func:`pareto_front`).
    """
    keys = [key for key in extra_keys(rows) if key not in CSV_ONLY]
    front = {id(r) for r in pareto_front(rows)}
    head = ["technique", "setting", "bytes", "size", "accuracy", "time (ms)", *keys, "front"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row.technique,
            row.setting,
            f"{row.nbytes:,}",
            format_bytes(row.nbytes),
            _cell("accuracy", row.accuracy),
            f"{row.time_ms:.2f}",
            *[_cell(key, row.extra.get(key, "")) for key in keys],
            "yes" if id(row) in front else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
