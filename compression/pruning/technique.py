"""The ``pruning`` entry of the sweep: global magnitude pruning, then masked fine-tuning.

For each sparsity ``s`` of the grid, :class:`~compression.sweep.TechniquePoint`
does::

    model = prune_to(baseline_copy, s, seed, task)   # global |W| threshold, weights only
    fine_tune_masked(model, s, seed, task)           # FINE_TUNE_EPOCHS at lr / 10, masks held

and measures the file ``save_compressed`` writes: masked parameters are
stored sparsely (values of the survivors plus their positions), so the bytes
fall with the sparsity, indices included.

Determinism: like the ``width`` technique, everything that draws comes from
the point's ``seed`` (shuffling and pixel shifts of the fine-tuning) and the
data from ``task.data()``; pruning itself draws nothing (ties go to the
lower index).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import tinynet
from compression.pruning.apply import prune_model
from compression.sweep.task import RECIPE, SweepTask
from compression.sweep.techniques import Technique, register_technique
from tinynet.data import DataLoader, random_shift
from tinynet.module import Module

__all__ = [
    "FINE_TUNE_EPOCHS",
    "LR_FACTOR",
    "fine_tune",
    "fine_tune_masked",
    "percent_pruned",
    "prune_to",
    "steps_per_epoch",
]

#: Epochs of fine-tuning after pruning (at most ``task.epochs``).
FINE_TUNE_EPOCHS = 2
#: Fine-tuning learning rate = ``RECIPE["lr"] * LR_FACTOR`` (Han et al. 2015: a tenth).
LR_FACTOR = 0.1


def prune_to(baseline: Module, sparsity: float, seed: int, task: SweepTask) -> Module:
    """Prune the baseline's ``Linear``/``Conv2d`` weights to ``sparsity`` with one global threshold.

    Every weight matrix competes for the same threshold, the first layer's
    included; biases stay dense (few, and each shifts a whole unit).
    """
    prune_model(baseline, sparsity, scope="global")
    return baseline


def fine_tune_masked(model: Module, sparsity: float, seed: int, task: SweepTask) -> None:
    """Retrain ``model`` in place for ``min(FINE_TUNE_EPOCHS, task.epochs)`` epochs, masks held.

    See :func:`fine_tune`; the sweep's ``fine_tune`` hook (``sparsity`` is
    not needed: the masks are already on the model).
    """
    fine_tune(model, task, seed, min(FINE_TUNE_EPOCHS, task.epochs))


def fine_tune(
    model: Module,
    task: SweepTask,
    seed: int,
    epochs: int,
    callbacks: Sequence[Any] = (),
    params: Any = None,
) -> None:
    """Train a pruned ``model`` in place for ``epochs`` with the recipe at a tenth of its rate.

    The baseline recipe (SGD, Nesterov momentum 0.9, weight decay 5e-4,
    cosine schedule, batches of 128, +-1 pixel shifts) at a tenth of its
    learning rate: the weights are nearly trained, a full rate would throw
    them away. The masks are ``Mask`` transforms, so pruned weights stay 0.
    ``callbacks`` go to ``fit`` (gradual pruning passes its schedule);
    ``params`` (parameters or parameter groups, default all of the model's)
    are what the optimizer updates (weight sharing trains its centroids only).
    """
    data = task.data()
    optimizer = tinynet.SGD(
        model.parameters() if params is None else params,
        lr=RECIPE["lr"] * LR_FACTOR,
        momentum=RECIPE["momentum"],
        nesterov=RECIPE["nesterov"],
        weight_decay=RECIPE["weight_decay"],
    )
    scheduler = tinynet.CosineAnnealingLR(optimizer, T_max=epochs)
    batches = DataLoader(
        data.x_train,
        data.y_train,
        batch_size=RECIPE["batch_size"],
        shuffle=True,
        seed=seed,
        transform=functools.partial(random_shift, max_shift=1),
    )
    tinynet.fit(
        model,
        batches,
        tinynet.CrossEntropyLoss(),
        optimizer,
        epochs=epochs,
        scheduler=scheduler,
        callbacks=list(callbacks),
        seed=seed,
        progress=False,
    )


def steps_per_epoch(task: SweepTask) -> int:
    """Optimizer steps in one epoch of :func:`fine_tune`."""
    return -(-len(task.data().x_train) // RECIPE["batch_size"])


def percent_pruned(sparsity: float) -> str:
    """``0.9`` -> ``"90% pruned"``; ``0.95`` -> ``"95% pruned"``; ``0.985`` -> ``"98.5% pruned"``."""
    return f"{100 * sparsity:g}% pruned"


register_technique(
    Technique(
        name="pruning",
        apply=prune_to,
        grid=(0.5, 0.8, 0.9, 0.95, 0.98),
        fast_grid=(0.5, 0.9),
        description=(
            "global magnitude pruning of the baseline's weights (biases kept), then "
            f"{FINE_TUNE_EPOCHS} epochs of fine-tuning at a tenth of the learning rate with the "
            "masks held; stored sparsely"
        ),
        label=percent_pruned,
        fine_tune=fine_tune_masked,
    )
)
