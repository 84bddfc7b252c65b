"""Pruning procedures: one-shot, iterative (Han et al. 2015), lottery tickets, L1 penalty.

Each procedure is a few calls of the same pieces: :func:`prune_model`
(masks), :func:`tinynet.fit` (training, the masks hold), and for lottery
tickets :func:`snapshot` / :func:`rewind`. Training always goes through
:func:`retrain`: plain SGD with momentum 0.9 at a given learning rate, and
``fit_kwargs`` passed to ``fit`` unchanged (``batch_size``, ``seed``,
``val``, ``callbacks``, ``progress``...).

==================  ====================================================
``one_shot``        prune once to the target, optionally fine-tune
``iterative_prune`` prune, retrain at ``lr * lr_factor``, repeat with a
                    higher sparsity (Han et al. 2015)
``lottery_ticket``  train, prune to ``1 - 0.8**r``, rewind survivors to
                    their initial values, retrain (Frankle & Carbin 2019)
``L1Penalty``       a loss wrapper adding ``lam * sum |W|`` to push weights
                    towards zero *before* pruning
==================  ====================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import tinynet
from compression.pruning.apply import PruningSummary, eligible_parameters, prune_model
from compression.pruning.permanent import rewind, snapshot
from compression.pruning.schedules import lottery_sparsity
from tinynet.callbacks import History
from tinynet.losses import CrossEntropyLoss
from tinynet.module import Module

__all__ = [
    "L1Penalty",
    "PruningRound",
    "iterative_prune",
    "lottery_ticket",
    "one_shot",
    "retrain",
]


@dataclass
class PruningRound:
    """One round of a procedure: the sparsity asked for, what pruning did, the retraining."""

    sparsity: float
    summary: PruningSummary | None  # None for the dense round 0 of a lottery ticket
    history: History | None  # None without (re)training


def retrain(
    model: Module,
    train: Any,
    epochs: int,
    lr: float,
    fit_kwargs: dict[str, Any] | None = None,
    loss_fn: Any = None,
) -> History:
    """``fit`` ``model`` for ``epochs`` with SGD (momentum 0.9) at ``lr``; masks hold.

    A new optimizer each call, so no stale momentum carries over from an
    earlier round. ``fit_kwargs`` go to :func:`tinynet.fit` (``progress``
    defaults to False here); ``loss_fn`` defaults to cross-entropy.
    """
    optimizer = tinynet.SGD(model.parameters(), lr=lr, momentum=0.9)
    kwargs = {"progress": False, **(fit_kwargs or {})}
    loss_fn = CrossEntropyLoss() if loss_fn is None else loss_fn
    return tinynet.fit(model, train, loss_fn, optimizer, epochs, **kwargs)


def one_shot(
    model: Module,
    sparsity: float,
    train: Any = None,
    epochs: int = 0,
    lr: float = 0.01,
    fit_kwargs: dict[str, Any] | None = None,
    *,
    scope: str = "layer",
    **eligibility: Any,
) -> PruningRound:
    """Prune ``model`` once to ``sparsity``; fine-tune for ``epochs`` if ``epochs > 0``.

    ``eligibility``: ``include``, ``exclude_first``, ``prune_bias`` as in
    :func:`prune_model`.
    """
    summary = prune_model(model, sparsity, scope=scope, **eligibility)
    history = None
    if epochs > 0:
        if train is None:
            raise ValueError("one_shot with epochs > 0 needs training data: train=(x, y)")
        history = retrain(model, train, epochs, lr, fit_kwargs)
    return PruningRound(float(sparsity), summary, history)


def iterative_prune(
    model: Module,
    train: Any,
    sparsities: Sequence[float],
    retrain_epochs: int,
    lr: float,
    lr_factor: float = 0.1,
    fit_kwargs: dict[str, Any] | None = None,
    *,
    scope: str = "layer",
    **eligibility: Any,
) -> list[PruningRound]:
    """Han et al. (2015): prune, retrain at a lower learning rate, repeat.

    For each ``s`` of ``sparsities`` (increasing, absolute): prune to ``s``
    (the masks compose, so earlier pruned weights stay pruned), then
    retrain for ``retrain_epochs`` at ``lr * lr_factor`` (``lr`` is the
    original training rate; Han et al. retrain at a tenth of it). Returns
    one :class:`PruningRound` per sparsity.
    """
    if any(b < a for a, b in zip(sparsities, sparsities[1:])):
        raise ValueError(f"iterative_prune needs non-decreasing sparsities, got {sparsities}")
    rounds = []
    for s in sparsities:
        summary = prune_model(model, s, scope=scope, **eligibility)
        history = retrain(model, train, retrain_epochs, lr * lr_factor, fit_kwargs)
        rounds.append(PruningRound(s, summary, history))
    return rounds


def lottery_ticket(
    model_fn: Callable[[], Module],
    train: Any,
    rounds: int,
    epochs: int,
    lr: float,
    fit_kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    scope: str = "global",
    **eligibility: Any,
) -> tuple[Module, list[PruningRound]]:
    """Frankle & Carbin (2019): iterative magnitude pruning with rewinding to ``W_0``.

    1. ``tinynet.manual_seed(seed)``; ``model = model_fn()``; ``W_0 = snapshot(model)``.
    2. Train for ``epochs`` (round 0, dense).
    3. For ``r = 1..rounds``: prune the *trained* weights to sparsity
       ``1 - 0.8**r`` (``scope="global"`` as in the paper's conv nets, or
       ``"layer"``); rewind the survivors to their ``W_0`` values (pruned
       entries stay 0) and reset the optimizer's state (:func:`rewind`);
       train again for ``epochs``.

    Returns
    -------
    model : Module
        The final sparse network (the "winning ticket", trained).
    rounds : list of PruningRound
        ``rounds + 1`` entries, round 0 dense.
    """
    tinynet.manual_seed(seed)
    model = model_fn()
    initial = snapshot(model)
    optimizer = tinynet.SGD(model.parameters(), lr=lr, momentum=0.9)
    kwargs = {"progress": False, **(fit_kwargs or {})}
    loss_fn = CrossEntropyLoss()
    history = tinynet.fit(model, train, loss_fn, optimizer, epochs, **kwargs)
    results = [PruningRound(0.0, None, history)]
    for r in range(1, rounds + 1):
        summary = prune_model(model, lottery_sparsity(r), scope=scope, **eligibility)
        rewind(model, initial, optimizer)
        history = tinynet.fit(model, train, loss_fn, optimizer, epochs, **kwargs)
        results.append(PruningRound(lottery_sparsity(r), summary, history))
    return model, results


class L1Penalty:
    """Cross-entropy (or any loss) plus ``lam * sum |W|`` over the eligible weights.

    ``L = crit(out, y) + lam * sum_W sum_ij |W_eff_ij|``, with gradient
    ``dL/dW_eff = lam * sign(W_eff)`` (0 at 0, the subgradient that leaves
    a pruned weight where it is). Pushing weights towards zero before
    pruning makes magnitude pruning drop less (PyTorch: add
    ``lam * sum(p.abs().sum() for p in params)`` to the loss).

    It follows the loss contract of :func:`tinynet.fit`: ``loss(out, *targets)``
    returns a float, and ``backward()`` returns ``dL/d(out)``. Its
    ``backward`` also adds the penalty's gradient to the weights' ``.grad``
    directly, which is right in ``fit``'s order
    (``optimizer.zero_grad(); model.backward(loss_fn.backward())``); call
    ``zero_grad`` *before* ``backward`` when writing your own loop.

    Parameters
    ----------
    model : Module
    lam : float >= 0
        Strength of the penalty.
    crit : loss object, default ``CrossEntropyLoss()``
    include, exclude_first, prune_bias
        Which parameters, as in :func:`~compression.pruning.eligible_parameters`.
    """

    def __init__(
        self,
        model: Module,
        lam: float,
        crit: Any = None,
        *,
        include: Iterable[str] | None = None,
        exclude_first: bool = False,
        prune_bias: bool = False,
    ) -> None:
        if not lam >= 0:
            raise ValueError(f"lam must be a non-negative number, got {lam!r}")
        self.lam = lam
        self.crit = CrossEntropyLoss() if crit is None else crit
        self.params = [
            p
            for _, p in eligible_parameters(
                model, include=include, exclude_first=exclude_first, prune_bias=prune_bias
            )
        ]
        self._weights: list[np.ndarray] | None = None

    def penalty(self) -> float:
        """``lam * sum |W_eff|`` now."""
        return self.lam * sum(float(np.abs(p.value()).sum()) for p in self.params)

    def __call__(self, out: np.ndarray, *targets: np.ndarray) -> float:
        loss = float(self.crit(out, *targets))
        self._weights = [p.value() for p in self.params]  # W_eff, for backward
        return loss + self.lam * sum(float(np.abs(w).sum()) for w in self._weights)

    def backward(self) -> np.ndarray:
        """Add ``lam * sign(W_eff)`` to each weight's gradient; return ``dL/d(out)``."""
        if self._weights is None:
            raise RuntimeError("L1Penalty.backward() called before the loss was computed")
        for param, w in zip(self.params, self._weights):
            param.backward((w.dtype.type(self.lam) * np.sign(w)).astype(w.dtype))
        self._weights = None
        return self.crit.backward()
