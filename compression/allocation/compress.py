"""Apply a chosen allocation, fine-tune, and hold the real file to the budget.

:func:`compress_to_budget` takes a ``choose(target_bytes) -> Allocation``
(``allocate`` for the per-layer allocator, ``best_fitting`` over the
uniform candidates for the baseline, both in ``budget.py``) and:

1. applies the choice to a fresh copy of the dense model (``Mask`` then a
   frozen ``FakeQuantize`` per weight, ``options.apply_choice``);
2. counts the real file (``size_report``: the length ``save_compressed``
   writes) and, if it is over the budget already, tightens before
   spending a fine-tuning on it;
3. fine-tunes with the masks and the quantizers in place (a retraining
   function you pass: pruned weights stay exactly zero, codes stay
   ``b``-bit, the frozen scales do not move), and counts the file again.
   Fine-tuning moves the weights among the quantization levels, so the
   Huffman-coded length of the codes changes (LeNet-5-Caffe's files with
   2-bit layers grew by 1.7-2.5% in 3 epochs on the embedded data); the
   positions and the fixed-length codes do not;
4. if that file is over the budget, tightens and starts again from the
   dense model, saying so in ``notes``.

The accuracy it reports (``evaluate_fn``) never feeds back into any
choice.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from compression.allocation.budget import Allocation, check_budget
from compression.allocation.options import LayerOption, apply_choice
from compression.allocation.table import SensitivityTable
from compression.storage.report import size_report
from tinynet.module import Module

__all__ = ["BudgetResult", "choice_from_dict", "compress_to_budget"]


@dataclass
class BudgetResult:
    """The record of one model compressed to one budget.

    Attributes
    ----------
    method, metric : str
    budget : int
        Bytes allowed for the whole file.
    allocation : Allocation
        The choice finally used (per-layer option, estimated bytes and damage).
    real_bytes_before, real_bytes : int
        Length of the file ``save_compressed`` writes, before and after fine-tuning.
    layer_bytes : dict of str -> int
        Bytes of each tensor in the final file (``size_report``), header last.
    accuracy_before, accuracy_after : float
        ``evaluate_fn`` of the compressed model before and after fine-tuning.
    fits : bool
        ``real_bytes <= budget``.
    notes : list of str
        What happened: each tightening, and why.
    seconds : float
    model : Module
        The compressed, fine-tuned model (not in :meth:`to_dict`).
    """

    method: str
    metric: str
    budget: int
    allocation: Allocation
    real_bytes_before: int
    real_bytes: int
    layer_bytes: dict[str, int]
    accuracy_before: float
    accuracy_after: float
    fits: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model: Module | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the model; the choice as ``{name: [sparsity, bits]}``."""
        return {
            "method": self.method,
            "metric": self.metric,
            "budget": self.budget,
            "choice": {n: o.as_list() for n, o in self.allocation.choice.items()},
            "estimated_bytes": self.allocation.estimated_bytes,
            "estimated_drop": self.allocation.estimated_drop,
            "real_bytes_before": self.real_bytes_before,
            "real_bytes": self.real_bytes,
            "layer_bytes": dict(self.layer_bytes),
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "fits": self.fits,
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


def _file(net: Module, use_huffman: bool) -> tuple[int, dict[str, int]]:
    """``(file bytes, bytes per tensor)`` of ``save_compressed(net)``, counted without writing."""
    report = size_report(net, use_huffman=use_huffman, reference_files=False)
    return report.total_bytes, {r["tensor"]: r["total_bytes"] for r in report.rows}


def compress_to_budget(
    model: Module,
    table: SensitivityTable,
    budget: int,
    choose: Callable[[int], Allocation],
    fine_tune: Callable[[Module], Any],
    evaluate_fn: Callable[[Module], float],
    max_attempts: int = 3,
) -> BudgetResult:
    """Compress a copy of ``model`` with ``choose(target)``, fine-tune it, keep it within ``budget``.

    ``target`` starts at ``budget``. Each attempt: choose, apply to a fresh
    copy, count the real file; if it is over, tighten and try again (before
    spending a fine-tuning on it); else measure ``evaluate_fn``, run
    ``fine_tune(model)`` (masks and frozen quantizers stay: pruned weights
    stay zero, codes stay ``b``-bit), count the file again, and stop if it
    fits. Tightening: a file ``excess`` bytes over the budget from an
    allocation estimated at ``E`` bytes needs an estimate ``excess`` lower,
    so ``target = min(target, E) - excess`` (a coarse chooser, like the
    uniform grid, then cannot return the same setting). ``max_attempts``
    bounds the retries; if every attempt is over (or nothing fits the
    lowered target), the last fine-tuned model is returned with
    ``fits=False`` and a warning.

    Parameters
    ----------
    model : Module
        Trained, float; left unchanged.
    table : SensitivityTable
        For ``per_channel`` and ``use_huffman`` (how the file is written).
    budget : int
        Bytes of the whole file.
    choose : callable ``target_bytes -> Allocation``
        ``lambda b: allocate(table, b)`` or
        ``lambda b: uniform_allocation(model, table, calibration, b)``.
    fine_tune : callable ``model -> None``
        Retrains in place (e.g. a few epochs at a tenth of the learning rate).
    evaluate_fn : callable ``model -> float``
        The accuracy to report (held-out, for a benchmark).
    """
    budget = check_budget(budget, table)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
    start, target, notes = time.perf_counter(), budget, []
    last: BudgetResult | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            allocation = choose(target)
        except ValueError as err:
            if attempt == 1:
                raise
            notes.append(f"attempt {attempt}: nothing fits the lowered target ({err})")
            break
        net = apply_choice(copy.deepcopy(model), allocation.choice, table.per_channel)
        before, _ = _file(net, table.use_huffman)
        if before > budget:
            target = min(target, allocation.estimated_bytes) - (before - budget)
            notes.append(
                f"attempt {attempt}: estimated {allocation.estimated_bytes:,} B, but the file is "
                f"{before:,} B before fine-tuning, {before - budget:,} B over; target lowered "
                f"to {target:,} B"
            )
            continue
        accuracy_before = float(evaluate_fn(net))
        fine_tune(net)
        real, per_tensor = _file(net, table.use_huffman)
        last = BudgetResult(
            allocation.method,
            allocation.metric,
            budget,
            allocation,
            before,
            real,
            per_tensor,
            accuracy_before,
            float(evaluate_fn(net)),
            real <= budget,
            notes,
            time.perf_counter() - start,
            net,
        )
        if last.fits:
            return last
        target = min(target, allocation.estimated_bytes) - (real - budget)
        notes.append(
            f"attempt {attempt}: {real:,} B after fine-tuning ({before:,} B before: the Huffman "
            f"codes of the retrained weights are longer), {real - budget:,} B over; target "
            f"lowered to {target:,} B"
        )
    if last is None:
        raise RuntimeError(
            f"no attempt of {max_attempts} gave a file within {budget:,} bytes before "
            "fine-tuning: " + " | ".join(notes)
        )
    last.seconds = time.perf_counter() - start
    warnings.warn(
        f"still {last.real_bytes - budget:,} B over the budget of {budget:,} B after "
        f"{len(notes)} attempts; the last model is returned with fits=False",
        stacklevel=2,
    )
    return last


def choice_from_dict(d: Mapping[str, Any]) -> dict[str, LayerOption]:
    """``{name: [sparsity, bits]}`` (as in :meth:`BudgetResult.to_dict`) back to options."""
    return {name: LayerOption(s, b) for name, (s, b) in d.items()}
