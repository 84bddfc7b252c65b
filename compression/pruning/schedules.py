"""Pruning schedules: how sparse the model should be at each training step.

Two schedules from the literature, each a pure function you can tabulate,
and a :class:`GradualPruning` callback that applies the first one from
inside :func:`tinynet.fit` (one training loop, see ``tinynet.callbacks``).

**Gradual (automated gradual pruning, Zhu & Gupta 2017).** Start at
sparsity ``s_i`` at step ``t0`` and prune ``n`` more times, every ``dt``
optimizer steps, following a cubic that prunes fast while many redundant
weights remain and slowly near the end::

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3     t0 <= t <= t0 + n*dt
    s_t = s_i                                                  t < t0
    s_t = s_f                                                  t > t0 + n*dt

**Lottery tickets (Frankle & Carbin 2019).** Each round prunes 20% of the
weights that are *still there*, so after round ``r`` the absolute sparsity is
``1 - 0.8**r``.

PyTorch has neither built in (``torch.ao.pruning`` has schedulers of its
own; TensorFlow Model Optimization's ``PolynomialDecay`` is the cubic here).
"""

from __future__ import annotations

from collections.abc import Iterable

from compression.pruning.apply import prune_model
from compression.pruning.masks import check_sparsity
from tinynet.callbacks import Callback, Trainer

__all__ = ["GradualPruning", "agp_sparsity", "lottery_sparsity"]


def _check_step(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def agp_sparsity(step: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """Zhu & Gupta's (2017) cubic sparsity at optimizer step ``step``.

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` for
    ``t0 <= t <= t0 + n * dt``; ``s_i`` before ``t0`` and ``s_f`` after.

    Parameters
    ----------
    step : int >= 0
        Optimizer steps done so far (``t``).
    s_i, s_f : float in [0, 1]
        Initial and final sparsity.
    t0 : int >= 0
        First pruning step.
    n : int >= 1
        Number of pruning steps after ``t0``.
    dt : int >= 1
        Optimizer steps between two pruning steps.

    Returns
    -------
    float
        The target sparsity (fraction of weights that are zero).

    Examples
    --------
    >>> agp_sparsity(0, 0.0, 1.0, t0=0, n=2, dt=10)
    0.0
    >>> agp_sparsity(10, 0.0, 1.0, t0=0, n=2, dt=10)  # 1 - 0.5**3
    0.875
    """
    s_i, s_f = check_sparsity(s_i, "s_i"), check_sparsity(s_f, "s_f")
    step, t0 = _check_step(step, "step", 0), _check_step(t0, "t0", 0)
    n, dt = _check_step(n, "n", 1), _check_step(dt, "dt", 1)
    if step <= t0:
        return s_i
    if step >= t0 + n * dt:
        return s_f
    remaining = 1.0 - (step - t0) / (n * dt)
    return s_f + (s_i - s_f) * remaining**3


def lottery_sparsity(round: int) -> float:
    """Absolute sparsity after ``round`` lottery-ticket rounds: ``1 - 0.8**round``.

    Each round removes 20% of the weights that survived the previous one
    (Frankle & Carbin 2019): 0.2, 0.36, 0.488, 0.5904, ... Round 0 is the
    dense network.
    """
    _check_step(round, "round", 0)
    return 1.0 - 0.8**round


class GradualPruning(Callback):
    """Raise the model's sparsity along :func:`agp_sparsity` from inside ``fit``.

    After optimizer step ``t`` (``on_step_end``), when ``t = t0 + k * dt`` for
    ``k = 0, 1, ..., n``, the model is magnitude-pruned to
    ``agp_sparsity(t, ...)`` with :func:`~compression.pruning.prune_model`.
    Its masks only grow (already-pruned entries are dropped first), and
    being ``Mask`` transforms they keep pruned weights exactly zero through
    the steps in between. ``t0 = 0`` prunes before the first step
    (``on_train_begin``).

    Parameters
    ----------
    final_sparsity : float in [0, 1]
        ``s_f``.
    start_step, n_updates, every : int
        ``t0``, ``n`` and ``dt`` (in optimizer steps, counted over the whole run).
    initial_sparsity : float in [0, 1], default 0.0
        ``s_i``.
    scope : {"layer", "global"}, default "layer"
    include, exclude_first, prune_bias
        Which parameters, as in :func:`~compression.pruning.eligible_parameters`.

    Attributes
    ----------
    updates : list of (step, sparsity)
        Every pruning step taken, for plotting against the schedule.
    """

    def __init__(
        self,
        final_sparsity: float,
        start_step: int,
        n_updates: int,
        every: int,
        initial_sparsity: float = 0.0,
        *,
        scope: str = "layer",
        include: Iterable[str] | None = None,
        exclude_first: bool = False,
        prune_bias: bool = False,
    ) -> None:
        agp_sparsity(start_step, initial_sparsity, final_sparsity, start_step, n_updates, every)
        self.s_i, self.s_f = initial_sparsity, final_sparsity
        self.t0, self.n, self.dt = start_step, n_updates, every
        self.scope = scope
        self.eligibility = {
            "include": include,
            "exclude_first": exclude_first,
            "prune_bias": prune_bias,
        }
        self.updates: list[tuple[int, float]] = []

    def sparsity_at(self, step: int) -> float:
        """The schedule's target at ``step``."""
        return agp_sparsity(step, self.s_i, self.s_f, self.t0, self.n, self.dt)

    def is_update_step(self, step: int) -> bool:
        """True for ``step = t0 + k * dt``, ``k = 0..n``."""
        offset = step - self.t0
        return 0 <= offset <= self.n * self.dt and offset % self.dt == 0

    def _prune(self, trainer: Trainer, step: int) -> None:
        sparsity = self.sparsity_at(step)
        prune_model(trainer.model, sparsity, scope=self.scope, **self.eligibility)
        self.updates.append((step, sparsity))

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.is_update_step(trainer.global_step):
            self._prune(trainer, trainer.global_step)

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        if self.is_update_step(step):
            self._prune(trainer, step)
