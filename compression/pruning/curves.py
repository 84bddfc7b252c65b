"""Density curves: accuracy as the kept fraction of weights falls from 100% to 1%.

Three ways to reach a density ``d`` (the fraction of prunable weights kept;
sparsity ``1 - d``) from a trained dense baseline, each with global
magnitude pruning (one ``|W|`` threshold across layers) and the same
fine-tuning recipe, supplied by the caller:

=============  ==============================================================
``one-shot``   prune the baseline straight to ``d``, then fine-tune for
               ``epochs``
``iterative``  Han et al. 2015: one chain through the densities in
               decreasing order; at each, prune further and fine-tune for
               ``epochs``. Its point at ``d`` has used ``epochs`` per density
               visited so far (the table says how many)
``gradual``    Zhu and Gupta 2017: prune during ``epochs`` of training along
               the cubic schedule (:class:`~compression.pruning.GradualPruning`),
               reaching ``d`` two thirds of the way through and training on
               at the final density for the last third
=============  ==============================================================

One-shot and gradual spend the same epochs per point; iterative spends
more, which is part of the comparison (and of why Han et al. iterate).

The caller passes ``fine_tune(model, epochs, callbacks)``, which trains
``model`` in place (masks held, as every tinynet optimizer step respects
``Mask`` transforms), and ``evaluate(model) -> accuracy``. Everything that
draws random numbers lives in those two functions, so a seeded
``fine_tune`` makes the whole curve reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from compression.pruning.apply import prune_model
from compression.pruning.report import sparsity_report
from compression.pruning.schedules import GradualPruning
from tinynet.module import Module

__all__ = [
    "DENSITIES",
    "METHODS",
    "DensityPoint",
    "density_curve",
    "density_table_markdown",
    "gradual_schedule",
    "plot_density_curve",
]

#: From dense to 1% kept (the issue's range).
DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
METHODS = ("one-shot", "iterative", "gradual")

FineTune = Callable[[Module, int, Sequence[Any]], None]
Evaluate = Callable[[Module], float]


@dataclass(frozen=True)
class DensityPoint:
    """One point of a density curve.

    ``density`` is the kept fraction of the prunable weights; ``nonzero``
    and ``compression`` count every parameter (weights and biases, as Han
    et al.'s "12x"); ``epochs`` is the fine-tuning spent on this model since
    the dense baseline.
    """

    method: str
    density: float
    accuracy: float
    nonzero: int
    compression: float
    epochs: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _point(
    method: str, density: float, model: Module, accuracy: float, epochs: int
) -> DensityPoint:
    report = sparsity_report(model)
    return DensityPoint(method, density, accuracy, report.kept, report.compression, epochs)


def density_curve(
    baseline: Module,
    fine_tune: FineTune,
    evaluate: Evaluate,
    densities: Sequence[float] = DENSITIES,
    methods: Sequence[str] = METHODS,
    epochs: int = 2,
    steps_per_epoch: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[DensityPoint]:
    """Prune copies of ``baseline`` to every density by every method; measure each.

    Parameters
    ----------
    baseline : Module
        The trained dense model (never modified: each method works on a copy).
    fine_tune : callable ``(model, epochs, callbacks) -> None``
        Trains ``model`` in place for ``epochs`` with the given extra
        callbacks (``gradual`` passes its :class:`GradualPruning`).
    evaluate : callable ``(model) -> float``
        Accuracy of a model (held-out or validation).
    densities : sequence of float in (0, 1]
        Kept fractions; ``1.0`` is the baseline itself (0 epochs).
    methods : subset of ``("one-shot", "iterative", "gradual")``
    epochs : int >= 1
        Fine-tuning epochs per point (per density visited, for iterative).
    steps_per_epoch : int
        Optimizer steps in one epoch of ``fine_tune``; needed by ``gradual``
        to place its schedule.
    progress : callable ``(str) -> None``, optional
        Called with one line per point (e.g. ``print``).

    Returns
    -------
    list of DensityPoint
        Ordered by method, then by decreasing density.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods must be among {METHODS}, got {unknown}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    for d in densities:
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 < d <= 1:
            raise ValueError(f"densities must lie in (0, 1], got {d!r}")
    if "gradual" in methods and (steps_per_epoch is None or steps_per_epoch < 1):
        raise ValueError(f"gradual pruning needs steps_per_epoch >= 1, got {steps_per_epoch!r}")
    order = sorted(set(float(d) for d in densities), reverse=True)
    dense_accuracy = evaluate(baseline)

    points: list[DensityPoint] = []

    def record(point: DensityPoint) -> None:
        points.append(point)
        if progress is not None:
            progress(
                f"{point.method:<9} density {point.density:>6.1%}  accuracy {point.accuracy:.2%}  "
                f"{point.compression:6.1f}x  ({point.epochs} epochs)"
            )

    for method in methods:
        chain = copy.deepcopy(baseline) if method == "iterative" else None
        spent = 0
        for d in order:
            if d == 1.0:
                record(_point(method, 1.0, baseline, dense_accuracy, 0))
                continue
            if method == "iterative":
                prune_model(chain, 1.0 - d, scope="global")
                fine_tune(chain, epochs, [])
                spent += epochs
                model = chain
            elif method == "one-shot":
                model = copy.deepcopy(baseline)
                prune_model(model, 1.0 - d, scope="global")
                fine_tune(model, epochs, [])
                spent = epochs
            else:
                model = copy.deepcopy(baseline)
                fine_tune(model, epochs, [gradual_schedule(1.0 - d, epochs, steps_per_epoch)])
                spent = epochs
            record(_point(method, d, model, evaluate(model), spent))
    return points


def gradual_schedule(sparsity: float, epochs: int, steps_per_epoch: int) -> GradualPruning:
    """Zhu and Gupta's cubic schedule from 0 to ``sparsity`` over the first 2/3 of the steps.

    Pruning starts at step 0 and updates ``n`` times, every ``dt`` steps,
    with ``n * dt`` about two thirds of ``epochs * steps_per_epoch`` (at
    most 100 updates); the rest of the run trains at the final sparsity,
    recovering from the last cut.
    """
    total = epochs * steps_per_epoch
    span = max(1, (2 * total) // 3)
    n_updates = max(1, min(100, span))
    every = max(1, span // n_updates)
    return GradualPruning(sparsity, start_step=0, n_updates=n_updates, every=every, scope="global")


def plot_density_curve(
    points: Sequence[DensityPoint],
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Accuracy against density (log axis, 100% on the left), one line per method.

    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"one-shot": "o", "iterative": "s", "gradual": "^"}
    for method in dict.fromkeys(p.method for p in points):
        rows = sorted((p for p in points if p.method == method), key=lambda p: -p.density)
        ax.plot(
            [100 * p.density for p in rows],
            [100 * p.accuracy for p in rows],
            marker=markers.get(method, "."),
            label=method,
        )
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted({100 * p.density for p in points}, reverse=True)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("weights kept (density)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def density_table_markdown(points: Sequence[DensityPoint]) -> str:
    """A Markdown table: one row per density, one accuracy column per method."""
    methods = list(dict.fromkeys(p.method for p in points))
    densities = sorted({p.density for p in points}, reverse=True)
    cell = {(p.method, p.density): p for p in points}
    lines = [
        "| kept | compression | " + " | ".join(methods) + " |",
        "|---:|---:|" + "---:|" * len(methods),
    ]
    for d in densities:
        first = next(cell[(m, d)] for m in methods if (m, d) in cell)
        accs = [f"{cell[(m, d)].accuracy:.2%}" if (m, d) in cell else "" for m in methods]
        lines.append(f"| {d:.0%} | {first.compression:.1f}x | " + " | ".join(accs) + " |")
    return "\n".join(lines) + "\n"
