"""Spend a byte budget where it matters: per-layer sparsity and bits, and the uniform baseline.

Given a trained model, a budget ``B`` in bytes of the compressed file, and a
:class:`~compression.allocation.SensitivityTable` (each layer's bytes and
damage under each option, measured on a calibration set):

1. :func:`allocate` chooses one option per layer minimising the summed
   damage subject to ``overhead + sum_l bytes[l, o_l] <= B`` (the exact
   multiple-choice knapsack of ``knapsack.py``; ``method="greedy"`` for
   the bytes-per-damage greedy). Mixed precision and mixed sparsity per
   layer, as Han et al. 2016 set by hand and HAQ (Wang et al. 2019)
   searches for with reinforcement learning and hardware feedback; here
   the feedback is the real file.
2. :func:`uniform_allocation` is the baseline at the same budget: one
   sparsity and one bit width for every layer, the uniform setting whose
   *measured* damage (all layers compressed together, on the same
   calibration set) is smallest among those that fit.
3. :func:`best_fitting` picks from a ranked list (the uniform candidates
   measured once) for any lower target.

Applying a choice, fine-tuning and checking the real file are in
``compress.py``. Choices use the calibration set and bytes only.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

import numpy as np

from compression.allocation.knapsack import greedy_choice, knapsack_choice
from compression.allocation.options import LayerOption, apply_choice
from compression.allocation.table import METRICS, SensitivityTable
from tinynet.module import Module
from tinynet.train import evaluate

__all__ = [
    "Allocation",
    "allocate",
    "best_fitting",
    "check_budget",
    "uniform_allocation",
    "uniform_candidates",
]


@dataclass
class Allocation:
    """A choice of one option per layer, and what the table predicts for it.

    ``estimated_drop`` is the summed per-layer damage for the allocator; for
    the uniform baseline it is the damage measured with all layers
    compressed together.
    """

    method: str  # "knapsack", "greedy" or "uniform"
    metric: str  # "loss" or "accuracy"
    choice: dict[str, LayerOption]
    estimated_bytes: int
    estimated_drop: float

    def describe(self) -> str:
        """``"0.weight 0% pruned, 8-bit; 2.weight ..."``."""
        return "; ".join(f"{n} {o.label()}" for n, o in self.choice.items())


def check_budget(budget: object, table: SensitivityTable | None = None) -> int:
    """``budget`` as an int after checking it is a positive number of bytes that can be met.

    Raises
    ------
    ValueError
        For a non-positive or non-integer budget, or (given the table) one
        below the smallest file the grid can make; the message gives that
        smallest number of bytes.
    """
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or budget != budget:
        raise ValueError(f"budget must be a positive number of bytes, got {budget!r}")
    if budget <= 0:
        raise ValueError(f"budget must be a positive number of bytes, got {budget}")
    budget = int(budget)  # a fractional byte cannot be spent
    if table is not None and budget < table.smallest_bytes():
        raise ValueError(
            f"budget of {budget:,} bytes is below the smallest achievable file of "
            f"{table.smallest_bytes():,} bytes (every layer at its cheapest option, "
            f"{table.overhead_bytes:,} bytes of header, architecture and biases included)"
        )
    return budget


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def allocate(
    table: SensitivityTable, budget: int, metric: str = "loss", method: str = "knapsack"
) -> Allocation:
    """Per-layer options minimising the summed damage within ``budget`` bytes of file.

    Parameters
    ----------
    table : SensitivityTable
    budget : int
        Bytes of the whole compressed file (header included).
    metric : {"loss", "accuracy"}, default "loss"
        Minimise summed loss increases or summed accuracy drops (on the
        calibration set; see ``table.py`` for why the loss is the default).
    method : {"knapsack", "greedy"}, default "knapsack"

    Raises
    ------
    ValueError
        For a bad budget (below the smallest achievable file: the message
        says how small that is), metric or method.
    """
    budget = check_budget(budget, table)
    drops = table.drops(_check_metric(metric))
    capacity = budget - table.overhead_bytes
    if method == "knapsack":
        idx = knapsack_choice(table.layer_bytes, drops, capacity)
    elif method == "greedy":
        idx = greedy_choice(table.layer_bytes, drops, capacity)
    else:
        raise ValueError(f"method must be 'knapsack' or 'greedy', got {method!r}")
    choice = {name: table.options[o] for name, o in zip(table.names, idx)}
    return Allocation(
        method, metric, choice, table.estimate_bytes(choice), table.estimate_drop(choice, metric)
    )


def uniform_candidates(
    model: Module,
    table: SensitivityTable,
    data: tuple[np.ndarray, np.ndarray],
    budget: int,
    metric: str = "loss",
    batch_size: int = 1000,
) -> list[Allocation]:
    """Every uniform setting that fits ``budget``, best first, damage measured jointly.

    For each option ``o`` of the grid with
    ``overhead + sum_l bytes[l, o] <= budget``, every layer is compressed
    with ``o`` at once and evaluated on ``data`` (the calibration set);
    sorted by that damage in ``metric`` (ties: the other metric, then
    fewer bytes).
    """
    budget = check_budget(budget)
    _check_metric(metric)
    base = evaluate(model, *data, batch_size=batch_size)
    rows = []
    for option in table.options:
        choice = dict.fromkeys(table.names, option)
        nbytes = table.estimate_bytes(choice)
        if nbytes > budget:
            continue
        net = apply_choice(copy.deepcopy(model), choice, table.per_channel)
        result = evaluate(net, *data, batch_size=batch_size)
        acc_drop = float(base["accuracy"] - result["accuracy"])
        loss_up = float(result["loss"] - base["loss"])
        key = (loss_up, acc_drop) if metric == "loss" else (acc_drop, loss_up)
        rows.append((key, nbytes, Allocation("uniform", metric, choice, nbytes, key[0])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def uniform_allocation(
    model: Module,
    table: SensitivityTable,
    data: tuple[np.ndarray, np.ndarray],
    budget: int,
    metric: str = "loss",
) -> Allocation:
    """The most accurate uniform setting (one sparsity, one width) that fits ``budget``.

    Raises
    ------
    ValueError
        When no uniform setting fits (the message gives the smallest).
    """
    budget = check_budget(budget, table)
    return best_fitting(uniform_candidates(model, table, data, budget, metric), budget, table)


def best_fitting(
    candidates: list[Allocation], target: int, table: SensitivityTable | None = None
) -> Allocation:
    """The first of ``candidates`` (best first) whose estimated bytes fit ``target``.

    With :func:`uniform_candidates` measured once at the full budget, this
    is the ``choose`` of :func:`compress_to_budget` for the uniform
    baseline: a lowered target needs no new evaluations.

    Raises
    ------
    ValueError
        When none fits (the message gives the smallest candidate, and the
        smallest uniform file of ``table`` when given).
    """
    for allocation in candidates:
        if allocation.estimated_bytes <= target:
            return allocation
    smallest = min((a.estimated_bytes for a in candidates), default=None)
    if table is not None:
        smallest = min(table.estimate_bytes(dict.fromkeys(table.names, o)) for o in table.options)
    if smallest is None:
        raise ValueError(f"no uniform setting fits {target:,} bytes: the candidate list is empty")
    raise ValueError(
        f"no uniform setting fits {target:,} bytes; the smallest uniform file is {smallest:,} bytes"
    )
