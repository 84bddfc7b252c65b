"""The ``distillation`` entry of the sweep: the ``width`` technique's students, distilled.

The ``width`` technique trains MLPs 784-h-10 from scratch on the labels.
This one trains the *same* students (same widths, same initial weights,
same batches and pixel shifts for a given seed, same recipe and epochs)
with one change, the loss: Hinton et al.'s
:class:`~compression.distillation.KDLoss` against the sweep's trained
baseline as the teacher, whose logits are computed batch by batch on the
same shifted images (:class:`~compression.distillation.TeacherBatches`).
So at every size the report compares trained-alone and distilled at equal
bytes (both files hold the same float32 parameters), and any difference
comes from the teacher's soft targets.

For each hidden width ``h``, :class:`~compression.sweep.TechniquePoint` does::

    student = distill_mlp(baseline, h, seed, task)   # 784-h-10, KD from the baseline

Determinism: as for ``width``, everything that draws comes from the point's
``seed``; the teacher draws nothing (eval mode, no gradients).
"""

from __future__ import annotations

import functools

import numpy as np

from compression.distillation.kd import KDLoss
from compression.distillation.teacher import TeacherBatches
from compression.sweep.task import SweepTask, build_model, train_recipe
from compression.sweep.techniques import TECHNIQUES, Technique, mlp_label, register_technique
from tinynet.callbacks import History
from tinynet.models import mlp
from tinynet.module import Module

__all__ = ["ALPHA", "T", "distill_mlp", "train_distilled"]

#: Temperature. Hinton et al. found 2.5 to 4 best for small students (30 units
#: per layer on MNIST), 20 for a large one (800 units); ours have 8 to 256.
#: Measured on the embedded subset's *validation* slice (20 epochs of the
#: recipe, means of 3 seeds, teacher LeNet-300-100 at 96.6% there), among
#: (T, alpha) = (2, 0.5), (2, 0.7), (2, 0.9), (3, 0.7), (4, 0.7): (2, 0.9) gave
#: 90.3% / 93.5% / 95.1% at h = 8 / 16 / 32 against 89.4% / 92.5% / 95.3%
#: trained alone (the seeds spread by about 0.5 point); (4, 0.7)
#: gave 88.7% / 92.9% / 94.5%. Small students cannot follow a hot teacher's
#: many small logits: keep T low.
T = 2.0
#: Weight of the soft term (the labels' term gets ``1 - ALPHA``). Hinton et al.
#: also found the best results with a much lower weight on the labels.
ALPHA = 0.9

#: The ``width`` entry, whose grid (and so whose students) this one shares.
WIDTH = TECHNIQUES["width"]


def train_distilled(
    student: Module,
    teacher: Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    T: float = T,
    alpha: float = ALPHA,
) -> History:
    """Train ``student`` in place by distillation from ``teacher``, with the baseline recipe.

    Exactly :func:`compression.sweep.train_recipe` (SGD with Nesterov
    momentum, the recipe's learning rate and weight decay, cosine schedule,
    batches of 128, +-1 pixel shifts drawn from ``seed``) except for the
    loss: ``KDLoss(T, alpha)`` on batches ``(x, y, teacher(x))``.
    """
    return train_recipe(
        student,
        x,
        y,
        epochs,
        seed,
        loss_fn=KDLoss(T, alpha),
        wrap_batches=functools.partial(TeacherBatches, teacher=teacher),
    )


def distill_mlp(baseline: Module, hidden: int, seed: int, task: SweepTask) -> Module:
    """The ``distillation`` technique: an MLP ``784-hidden-10`` distilled from the baseline.

    Built as the ``width`` technique builds it (initial weights from
    ``seed``), trained for ``task.epochs`` with :func:`train_distilled`,
    :data:`T` and :data:`ALPHA`; the baseline is the teacher and is not changed.
    """
    data = task.data()
    features, classes = int(data.x_train[0].size), int(data.y_train.max()) + 1
    student = build_model(functools.partial(mlp, (features, hidden, classes)), seed)
    train_distilled(student, baseline, data.x_train, data.y_train, task.epochs, seed)
    return student


register_technique(
    Technique(
        name="distillation",
        apply=distill_mlp,
        grid=WIDTH.grid,
        fast_grid=WIDTH.fast_grid,
        description=(
            f"the width technique's MLPs 784-h-10, trained with the same recipe but distilled "
            f"from the baseline (Hinton et al. 2015: T = {T:g}, alpha = {ALPHA:g}), float32"
        ),
        label=mlp_label,
    )
)
