"""Learning-rate schedules (PyTorch ``torch.optim.lr_scheduler``).

Construct a schedule after the optimizer and call ``scheduler.step()`` once
per epoch::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CosineAnnealingLR(opt, T_max=30)
    for epoch in range(30):
        ...                     # optimizer.step() for every batch
        scheduler.step()        # sets the next epoch's learning rate
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

import numpy as np

from tinynet.optim import Optimizer


# --------------------------------------------------------------- lr schedules
class LRScheduler:
    """Base class of learning-rate schedules (PyTorch ``torch.optim.lr_scheduler``).

    Construct it *after* the optimizer and call :meth:`step` once per epoch,
    after that epoch's ``optimizer.step()`` calls. Each group's learning rate
    at its start is kept as ``group["initial_lr"]`` (the *base* lr); epoch
    ``t`` (``last_epoch``, 0 right after construction) gets
    ``group["lr"] = get_lr()[i]``, a closed-form function of ``t`` and the
    base lr. (PyTorch computes most schedules recursively from the previous
    lr; the numbers agree to rounding, and the closed form is what you read
    in the papers.)
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} expected an Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()  # epoch 0

    def get_lr(self) -> list[float]:
        """Learning rate of each group at epoch ``self.last_epoch``; override."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr")

    def step(self) -> None:
        """Advance one epoch and write the new learning rates into the groups."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = float(lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last :meth:`step` set, one per group."""
        return list(self._last_lr)


class StepLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` every ``step_size`` epochs (``lr_scheduler.StepLR``).

    .. math:: \eta_t = \eta_0 \, \gamma^{\lfloor t / \text{step\_size} \rfloor}
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if not isinstance(step_size, (int, np.integer)) or step_size < 1:
            raise ValueError(f"StepLR step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        k = self.last_epoch // self.step_size
        return [base * self.gamma**k for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` at each milestone epoch (``lr_scheduler.MultiStepLR``).

    .. math:: \eta_t = \eta_0 \, \gamma^{\#\{\, m \in \text{milestones} : m \le t \,\}}

    A milestone listed twice counts twice (as in PyTorch).
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        k = bisect.bisect_right(self.milestones, self.last_epoch)  # milestones <= t
        return [base * self.gamma**k for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine decay from the base lr to ``eta_min`` over ``T_max`` epochs.

    Loshchilov & Hutter 2017 (SGDR) without restarts; ``lr_scheduler.CosineAnnealingLR``:

    .. math::

        \eta_t = \eta_{min} + \frac{\eta_0 - \eta_{min}}{2}
                 \left(1 + \cos\frac{\pi t}{T_{max}}\right)

    ``eta_T_max = eta_min``. Past ``T_max`` the cosine rises again (period
    ``2 T_max``), as in PyTorch; usually one trains for exactly ``T_max`` epochs.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        if not T_max > 0:
            raise ValueError(f"CosineAnnealingLR T_max must be > 0, got {T_max!r}")
        self.T_max = T_max
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        cosine = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


class LambdaLR(LRScheduler):
    r"""lr = base lr times any function of the epoch (``lr_scheduler.LambdaLR``).

    .. math:: \eta_t = \eta_0 \, f(t)

    ``lr_lambda`` is one function, or a list with one function per group.
    Linear warm-up over 5 epochs, for example::

        LambdaLR(optimizer, lambda t: min(1.0, (t + 1) / 5))
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
    ) -> None:
        n = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(
                    f"LambdaLR expected {n} lr_lambdas (one per group), got {len(lr_lambda)}"
                )
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]
