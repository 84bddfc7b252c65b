"""``sparsity_report``: how many parameters are really nonzero, layer by layer.

Han et al. 2015 report pruning as "12x fewer parameters": the total number
of weights and biases divided by the number left nonzero. This report counts
exactly that, from the *effective* values the layers compute with. It counts
parameters, not bytes: what a file really takes, indices included, is
``compression.storage.size_report``'s job (a 90%-sparse model is not 10x
smaller on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.pruning.apply import effective_value
from tinynet.module import Module
from tinynet.transforms import Mask

__all__ = ["SparsityReport", "sparsity_report"]


@dataclass
class SparsityReport:
    """Nonzero effective entries per parameter and in total (:func:`sparsity_report`).

    ``rows`` are dicts with ``name``, ``shape``, ``kept`` (nonzero entries of
    the effective value), ``total``, ``sparsity`` and ``masked`` (has a Mask).
    """

    rows: list[dict[str, Any]]

    @property
    def kept(self) -> int:
        return sum(r["kept"] for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r["total"] for r in self.rows)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total if self.total else 0.0

    @property
    def compression(self) -> float:
        """``total / kept``: Han et al.'s "12x fewer parameters" (inf if nothing is kept)."""
        return self.total / self.kept if self.kept else float("inf")

    def __str__(self) -> str:
        lines = [f"{'parameter':<28} {'shape':<16} {'nonzero':>10} {'total':>10} {'sparsity':>9}"]
        for r in self.rows:
            mark = " (mask)" if r["masked"] else ""
            lines.append(
                f"{r['name'] + mark:<28} {str(r['shape']):<16} {r['kept']:>10,} "
                f"{r['total']:>10,} {r['sparsity']:>9.2%}"
            )
        lines.append(
            f"{'total':<28} {'':<16} {self.kept:>10,} {self.total:>10,} {self.sparsity:>9.2%}"
            f"   ({self.compression:.1f}x fewer nonzero parameters)"
        )
        return "\n".join(lines)


def sparsity_report(model: Module) -> SparsityReport:
    """Count the nonzero effective entries of every parameter (weights *and* biases).

    Counts what the layers compute with (``param.value()``), so a stripped
    model whose zeros are baked into ``data`` reports the same as the masked
    one. Parameters owned by transforms (codebooks) are not listed.
    This counts parameters, not bytes: for bytes see
    ``compression.storage.size_report``.
    """
    rows = []
    for name, _, _, param in model.named_parameter_slots():
        kept = int(np.count_nonzero(effective_value(param)))
        rows.append(
            {
                "name": name,
                "shape": param.shape,
                "kept": kept,
                "total": param.size,
                "sparsity": 1.0 - kept / param.size if param.size else 0.0,
                "masked": any(isinstance(t, Mask) for t in param.transforms),
            }
        )
    return SparsityReport(rows)
