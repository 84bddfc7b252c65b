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
   dense model, saying so in ``notes``;
5. if every attempt ends over the budget, trims the last fine-tuned model
   until its file fits (:func:`trim_to_budget`: the smallest surviving
   weights of its largest compressed layer are pruned, no retraining), so a
   returned model fits; the accuracy reported is measured after trimming.

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

import numpy as np

from compression.allocation.budget import Allocation, check_budget
from compression.allocation.options import LayerOption, apply_choice
from compression.allocation.table import SensitivityTable
from compression.pruning.apply import current_keep, eligible_parameters, prune_model
from compression.storage.report import size_report
from tinynet.module import Module

__all__ = ["BudgetResult", "choice_from_dict", "compress_to_budget", "trim_to_budget"]


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
        ``real_bytes <= budget`` (True unless even pruning every compressed
        weight could not fit; see :func:`trim_to_budget`).
    notes : list of str
        What happened: each tightening and trimming, and why.
    seconds : float
    model : Module
        The compressed, fine-tuned model (not in :meth:`to_dict`).
    trimmed : int
        Weights pruned after fine-tuning to make the file fit (0 normally).
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
    trimmed: int = 0

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
            "trimmed": self.trimmed,
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
    lowered target), the last fine-tuned model is trimmed to the budget
    (:func:`trim_to_budget`, recorded in ``notes`` and ``trimmed``) and its
    accuracy measured again; ``fits=False`` (with a warning) only if even
    that could not make it fit.

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
    over = last.real_bytes
    last.trimmed = trim_to_budget(
        last.model, budget, list(last.allocation.choice), table.use_huffman
    )
    last.real_bytes, last.layer_bytes = _file(last.model, table.use_huffman)
    last.fits = last.real_bytes <= budget
    last.accuracy_after = float(evaluate_fn(last.model))
    notes.append(
        f"trimmed: {last.trimmed:,} more weights pruned after fine-tuning (no retraining), "
        f"{over:,} B -> {last.real_bytes:,} B; accuracy measured after trimming"
    )
    last.seconds = time.perf_counter() - start
    if not last.fits:
        warnings.warn(
            f"still {last.real_bytes - budget:,} B over the budget of {budget:,} B after "
            f"{max_attempts} attempts and trimming; returned with fits=False",
            stacklevel=2,
        )
    return last


def trim_to_budget(model: Module, budget: int, names: list[str], use_huffman: bool = True) -> int:
    """Prune more weights of ``model`` (in place) until its file fits ``budget``; returns how many.

    The last resort when fine-tuning has lengthened the Huffman codes past
    the budget. Each step takes the named weight with the most surviving
    entries (the largest compressed layer, where one weight more or less
    matters least), estimates its bytes per surviving weight
    ``b = bytes / kept`` from the file, and prunes its ``ceil(excess / b)``
    smallest surviving entries (``prune_model``, composing with the mask
    already there, so a frozen quantizer's scale does not move). The file is
    counted again after each step; it shrinks with each, so the loop ends,
    at the latest when nothing named survives.

    Parameters
    ----------
    model : Module
        Compressed (``Mask`` then ``FakeQuantize`` per named weight) or float.
    budget : int
        Bytes of the whole file.
    names : list of str
        The weights that may lose entries (``"5.weight"``).
    use_huffman : bool
        How the file is written (as the sensitivity table's ``use_huffman``).

    Examples
    --------
    A file already within its budget is left alone:

    >>> from tinynet import Linear, Sequential
    >>> trim_to_budget(Sequential(Linear(4, 3)), 10**6, ["0.weight"])
    0
    """
    params = dict(eligible_parameters(model, include=names))
    pruned = 0
    real, per_tensor = _file(model, use_huffman)
    while real > budget:
        kept = {n: int(current_keep(p).sum()) for n, p in params.items()}
        name = max(kept, key=kept.get)
        if kept[name] == 0:
            break  # nothing named survives: the budget cannot be met this way
        per_weight = per_tensor.get(name, real) / kept[name]
        n = min(kept[name], max(1, int(np.ceil((real - budget) / per_weight))))
        size = params[name].size
        prune_model(model, {name: (size - kept[name] + n) / size})
        pruned += n
        real, per_tensor = _file(model, use_huffman)
    return pruned


def choice_from_dict(d: Mapping[str, Any]) -> dict[str, LayerOption]:
    """``{name: [sparsity, bits]}`` (as in :meth:`BudgetResult.to_dict`) back to options."""
    return {name: LayerOption(s, b) for name, (s, b) in d.items()}
