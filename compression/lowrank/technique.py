"""The ``low rank`` entry of the sweep: truncated SVD by energy kept, then fine-tuning.

For each energy ``e`` of the grid, :class:`~compression.sweep.TechniquePoint`
does::

    model = factorize_to(baseline_copy, e, seed, task)   # each hidden layer: the smallest rank
                                                         # keeping e of sum(s^2), if it saves
    fine_tune_factored(model, e, seed, task)             # FINE_TUNE_EPOCHS at lr / 10

and measures the file ``save_compressed`` writes: the two thin factors of
each factorised layer in float32, ``r * (m + n)`` weights instead of
``m * n``, so the bytes fall with the rank.

**The classifier stays dense.** The last ``Linear``/``Conv2d`` (the
logits) is not factorised: at rank ``r < 10`` the ten class scores would lie
in an ``r``-dimensional subspace, and the layer holds few weights (1,010 of
LeNet-300-100's 266,610). On the embedded data (20-epoch baseline, one
seed), at 50% energy, factorising it too (rank 3) cost 3.5 points after
fine-tuning (93.0% against 96.5% held-out) to save 670 weights. (The same reason the quantization entries keep the logits
at 8 bits.)

**Why energy, and why fine-tuning.** A trained layer still carries much of
its random initialisation, whose spectrum is flat: LeNet-300-100's first
layer needs rank 178 of 300 to keep 90% of its energy and 28 to keep 50%.
So the grid reaches low energies, where the factored model loses several
points at once, and a short fine-tuning of both factors (Xue et al. 2013
fine-tune after the SVD too) wins most of them back; the row's
``accuracy_before_fine_tune`` shows how much. The fine-tuning is the
pruning entry's :func:`~compression.pruning.technique.fine_tune` (the
baseline recipe at a tenth of its learning rate, cosine schedule, +-1 pixel
shifts). Determinism: the SVD draws nothing; the fine-tuning draws from the
point's ``seed``.
"""

from __future__ import annotations

from compression.lowrank.factorize import choose_ranks, factorizable_layers, low_rank
from compression.pruning.technique import fine_tune
from compression.sweep.task import SweepTask
from compression.sweep.techniques import Technique, register_technique
from tinynet.module import Module

__all__ = [
    "ENERGY_GRID",
    "FINE_TUNE_EPOCHS",
    "energy_label",
    "factorize_to",
    "fine_tune_factored",
    "hidden_layers",
]

#: Energies of a full sweep: the fraction of each layer's ``sum(s^2)`` kept.
ENERGY_GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: Epochs of fine-tuning after factorising (at most ``task.epochs``).
FINE_TUNE_EPOCHS = 2


def hidden_layers(model: Module) -> list[str]:
    """Names of every ``Linear``/``Conv2d`` but the last (the classifier stays dense)."""
    return list(factorizable_layers(model))[:-1]


def factorize_to(baseline: Module, energy: float, seed: int, task: SweepTask) -> Module:
    """The baseline with each hidden layer at the smallest rank keeping ``energy`` of ``sum(s^2)``.

    :func:`~compression.lowrank.choose_ranks` picks the ranks; layers where
    that rank would save no weights stay as they are. A new model.
    """
    return low_rank(baseline, choose_ranks(baseline, energy, layers=hidden_layers(baseline)))


def fine_tune_factored(model: Module, energy: float, seed: int, task: SweepTask) -> None:
    """Retrain both factors of every layer for ``min(FINE_TUNE_EPOCHS, task.epochs)`` epochs.

    The sweep's ``fine_tune`` hook (``energy`` is not needed: the ranks are
    in the model's shapes).
    """
    fine_tune(model, task, seed, min(FINE_TUNE_EPOCHS, task.epochs))


def energy_label(energy: float) -> str:
    """``0.9`` -> ``"90% energy"``; ``0.95`` -> ``"95% energy"``."""
    return f"{100 * energy:g}% energy"


register_technique(
    Technique(
        name="low rank",
        apply=factorize_to,
        grid=ENERGY_GRID,
        fast_grid=(0.8, 0.5),
        description=(
            "truncated SVD of every layer but the classifier, at the smallest rank keeping the "
            "given fraction of sum(s^2) (only where two thin factors are smaller), then "
            f"{FINE_TUNE_EPOCHS} epochs of fine-tuning at a tenth of the learning rate; float32"
        ),
        label=energy_label,
        fine_tune=fine_tune_factored,
    )
)
