"""Per-layer sensitivity scan: accuracy as each layer *alone* is pruned harder.

Han et al. (2015, Figure 5) prune one layer at a time, without retraining,
and plot accuracy against that layer's sparsity: layers whose curve falls
early are sensitive and get a lower sparsity. For every eligible parameter
``W_l`` and every sparsity ``s`` of the grid::

    mask W_l to sparsity s (magnitude, layer-wise)   # the others unchanged
    row = (l, s, evaluate_fn(model))
    restore W_l exactly as it was (its transform chain and latent values)

No training happens, and the model is left as it was found. Distiller calls
this ``sensitivity_analysis``; PyTorch has no counterpart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.pruning.apply import eligible_parameters, prune_model
from compression.pruning.masks import check_sparsity
from tinynet.module import Module
from tinynet.train import evaluate
from tinynet.transforms import Mask

__all__ = ["SensitivityRow", "plot_sensitivity", "sensitivity_scan"]


@dataclass(frozen=True)
class SensitivityRow:
    """The model's accuracy with parameter ``name`` alone pruned to ``sparsity``."""

    name: str
    sparsity: float
    accuracy: float


def sensitivity_scan(
    model: Module,
    data: tuple[np.ndarray, np.ndarray],
    sparsities: Sequence[float],
    evaluate_fn: Callable[[Module, tuple[np.ndarray, np.ndarray]], float] | None = None,
    *,
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
    prune_bias: bool = False,
) -> list[SensitivityRow]:
    """Accuracy of ``model`` with each eligible parameter alone pruned to each sparsity.

    Parameters
    ----------
    model : Module
        Trained; possibly already carrying masks (the scan prunes on top
        and puts back what was there).
    data : tuple (x, y)
        Where to measure (a validation slice: choosing sparsities is tuning).
    sparsities : sequence of float in [0, 1]
    evaluate_fn : callable ``(model, data) -> float``, optional
        Default: ``tinynet.evaluate(model, x, y)["accuracy"]``.
    include, exclude_first, prune_bias
        Which parameters, as in :func:`~compression.pruning.eligible_parameters`.

    Returns
    -------
    list of SensitivityRow
        ``len(parameters) * len(sparsities)`` rows, parameter by parameter,
        sparsities in the order given.
    """
    sparsities = [check_sparsity(s, "each sparsity") for s in sparsities]
    if evaluate_fn is None:
        evaluate_fn = _accuracy
    params = eligible_parameters(
        model, include=include, exclude_first=exclude_first, prune_bias=prune_bias
    )
    rows = []
    for name, param in params:
        saved_data, saved_chain = param.data.copy(), list(param.transforms)
        saved_masks = [(t, t.mask) for t in saved_chain if isinstance(t, Mask)]
        for s in sparsities:
            prune_model(model, {name: s}, prune_bias=prune_bias)
            rows.append(SensitivityRow(name, s, float(evaluate_fn(model, data))))
            # Put the parameter back before the next point (masks only grow):
            # the same transform objects, their old keep-masks, the old values.
            param.data[...] = saved_data
            param.transforms[:] = saved_chain
            for mask, keep in saved_masks:
                mask.mask = keep
    return rows


def _accuracy(model: Module, data: tuple[np.ndarray, np.ndarray]) -> float:
    return float(evaluate(model, *data)["accuracy"])


def plot_sensitivity(rows: Sequence[SensitivityRow], ax: Any = None) -> Any:
    """One line per parameter: accuracy (y) against its sparsity (x). Returns the Axes."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    names = list(dict.fromkeys(r.name for r in rows))
    for name in names:
        mine = [r for r in rows if r.name == name]
        ax.plot([r.sparsity for r in mine], [r.accuracy for r in mine], marker="o", label=name)
    ax.set_xlabel("sparsity of this parameter alone")
    ax.set_ylabel("accuracy")
    ax.set_title("Sensitivity of each layer to pruning (no retraining)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax
