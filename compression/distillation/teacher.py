"""Teacher outputs for distillation: cached for a fixed dataset, or computed per batch.

``tinynet.fit`` trains on batches ``(x, labels, teacher_logits)`` with
:class:`~compression.distillation.KDLoss`. Two ways to produce them:

* :func:`teacher_logits` runs the teacher once over a fixed training set;
  pass the result to a ``DataLoader`` as a third array (fast: the teacher
  runs once, not once per epoch).
* :class:`TeacherBatches` wraps any loader and runs the teacher on each
  batch, so that with data augmentation (random shifts) the teacher sees the
  same shifted images as the student.

Either way the teacher runs in eval mode (no dropout, BatchNorm running
statistics) under ``tinynet.no_grad()``: it is never trained here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tinynet.grad_mode import no_grad
from tinynet.module import Module

__all__ = ["TeacherBatches", "teacher_logits"]


def teacher_logits(teacher: Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The teacher's outputs on ``x``, shape (N, C), in eval mode and without gradients.

    The teacher's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = teacher.training
    teacher.eval()
    try:
        with no_grad():
            return np.concatenate(
                [teacher(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
            )
    finally:
        teacher.train(was_training)


class TeacherBatches:
    """Re-iterable batches ``(x, *targets, teacher(x))`` from batches ``(x, *targets)``.

    Parameters
    ----------
    batches : iterable of tuples
        A ``tinynet.data.DataLoader`` (any transform it applies happens
        before the teacher sees ``x``).
    teacher : Module
    """

    def __init__(self, batches: Iterable[tuple[np.ndarray, ...]], teacher: Module) -> None:
        self.batches = batches
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for batch in self.batches:
            x = batch[0]
            yield (*batch, teacher_logits(self.teacher, x, batch_size=len(x)))
