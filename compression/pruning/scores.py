r"""Importance scores for structures: one number per neuron or filter.

Structured pruning removes whole *units*: a neuron of a ``Linear`` (row
``j`` of its weight ``(out, in)`` and bias ``b[j]``) or a filter of a
``Conv2d`` (``W[j]`` of shape ``(in, kh, kw)`` and ``b[j]``). Which units
go is decided by a score of shape ``(n_units,)``; the lowest scores are
pruned (:func:`compression.pruning.masks.unit_mask`). Three families:

1. **Weight norms** (Li et al. 2017, *Pruning Filters for Efficient
   ConvNets*): the L1 or L2 norm of each unit's weights,

   .. math:: s_j = \|W_j\|_p = \Big(\sum_{i} |W_{j,i}|^p\Big)^{1/p},

   where ``i`` runs over every axis but 0. PyTorch
   ``prune.ln_structured(module, "weight", amount, n=p, dim=0)``.
   Needs no data.

2. **Activations** on a calibration batch ``x`` (Hu et al. 2016 call the
   zero fraction APoZ, *average percentage of zeros*). For the output
   ``a`` of a module, shape ``(N, C)`` or ``(N, C, H, W)``, unit ``c``::

       mean_abs[c]      = mean over n (and h, w) of |a[n, c, h, w]|
       zero_fraction[c] = mean over n (and h, w) of 1[a[n, c, h, w] == 0]

   A unit whose ReLU output is always zero (``zero_fraction == 1``, a
   "dead" neuron) contributes nothing: removing it changes no output.

3. **First-order Taylor** (Molchanov et al. 2017, *Pruning Convolutional
   Neural Networks for Resource Efficient Inference*, eq. 8): removing unit
   ``c`` (setting its activation to 0) changes the loss by about
   ``|dL/da * a|``. Per example, averaged over the ``M`` positions of the
   feature map, then over the batch::

       score[c] = mean over n of | mean over (h, w) of a[n,c,h,w] * dL_n/da[n,c,h,w] |

   where ``L_n`` is example ``n``'s own loss.

   For a ``Linear`` output there is one position (``M = 1``). Molchanov et
   al. then divide each layer's scores by their L2 norm to compare layers;
   we leave that to the caller.

Scores (2) and (3) observe a module's *output* through a forward hook, so
pass the module whose output represents the units: the ``ReLU`` after a
layer to see post-activation values (as the papers do), or the layer itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.pruning.masks import expand_unit_mask, unit_mask
from tinynet.grad_mode import enable_grad, no_grad
from tinynet.module import Module

__all__ = [
    "ActivationStats",
    "activation_stats",
    "ln_structured_mask",
    "taylor_scores",
    "unit_norms",
]


# ------------------------------------------------------------- weight norms
def unit_norms(w: np.ndarray, p: int = 2) -> np.ndarray:
    """The L``p`` norm of each unit's weights: ``||W[j]||_p`` over every axis but 0.

    Parameters
    ----------
    w : ndarray, shape (out, in) or (out, in, kh, kw)
        A ``Linear`` or ``Conv2d`` weight (or a bias, shape ``(out,)``).
    p : {1, 2}
        1: sum of magnitudes; 2: Euclidean norm.

    Returns
    -------
    scores : ndarray, shape (out,)

    Examples
    --------
    >>> unit_norms(np.array([[1.0, -2.0], [3.0, 0.0], [0.5, 0.5]]), p=1)
    array([3., 3., 1.])
    """
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"p must be 1 or 2 (the L1 or L2 norm), got {p!r}")
    w = np.asarray(w)
    if w.ndim == 0:
        raise ValueError("unit_norms needs a weight with a unit axis 0, got a scalar")
    flat = np.abs(w.reshape(w.shape[0], -1))  # (out, everything else)
    if p == 1:
        return flat.sum(axis=1)
    return np.sqrt((flat * flat).sum(axis=1))


def ln_structured_mask(w: np.ndarray, sparsity: float, n: int = 2) -> np.ndarray:
    """Weight-shaped keep-mask removing the ``round(sparsity * out)`` units of smallest norm.

    PyTorch ``prune.ln_structured(module, "weight", amount=sparsity, n=n,
    dim=0)`` on a fresh tensor: the scores are :func:`unit_norms` and whole
    rows (filters) are dropped. Ties: lower unit index dropped first.

    Returns
    -------
    keep : ndarray of bool, shape of ``w``
    """
    w = np.asarray(w)
    return expand_unit_mask(unit_mask(unit_norms(w, n), sparsity), w.shape)


# ---------------------------------------------------------------- plumbing
@contextlib.contextmanager
def evaluating(model: Module) -> Iterator[None]:
    """Run ``model`` in eval mode (no Dropout, BatchNorm running stats untouched), then restore.

    Scoring must not change the model: in training mode a calibration
    forward pass would update BatchNorm's running statistics.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _batches(n: int, batch_size: int | None) -> Iterator[slice]:
    step = n if batch_size is None else int(batch_size)
    if step < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    for start in range(0, n, step):
        yield slice(start, start + step)


def _check_member(model: Module, module: Module) -> None:
    if not any(m is module for m in model.modules()):
        raise ValueError(f"{type(module).__name__} to score is not a module of this model")


def _unit_axis_sum(a: np.ndarray) -> np.ndarray:
    """Sum over every axis but the unit axis 1: ``(N, C, ...) -> (C,)``."""
    if a.ndim < 2:
        raise ValueError(f"expected an output of shape (N, C) or (N, C, H, W), got {a.shape}")
    return a.sum(axis=(0,) + tuple(range(2, a.ndim)))


# ------------------------------------------------------------- activations
@dataclass
class ActivationStats:
    """Per-unit statistics of one module's output over a calibration set.

    Attributes
    ----------
    mean_abs : ndarray, shape (C,)
        Mean of ``|a|`` over examples (and positions).
    zero_fraction : ndarray, shape (C,)
        Fraction of exact zeros; 1.0 marks a dead unit.
    count : int
        Values averaged per unit (``N``, or ``N * H * W``).
    """

    mean_abs: np.ndarray
    zero_fraction: np.ndarray
    count: int


def activation_stats(
    model: Module, module: Module, x: np.ndarray, batch_size: int | None = None
) -> ActivationStats:
    """Mean ``|activation|`` and fraction of zeros per unit of ``module``'s output.

    Runs ``model`` on the calibration batch ``x`` in eval mode under
    ``no_grad`` (the model's modes and running statistics are left as they
    were), observing ``module``'s output with a forward hook that is removed
    afterwards.

    Parameters
    ----------
    model : Module
    module : Module
        A module of ``model``; its output ``(N, C)`` or ``(N, C, H, W)``
        has units along axis 1.
    x : ndarray
        Calibration inputs, e.g. ``(N, 1, 28, 28)``.
    batch_size : int, optional
        Run in chunks of this many examples (default: all at once).

    Returns
    -------
    ActivationStats
        ``mean_abs`` and ``zero_fraction`` of shape ``(C,)``, float64.
    """
    _check_member(model, module)
    totals: dict[str, Any] = {"abs": None, "zeros": None, "count": 0}

    def observe(_: Module, __: np.ndarray, out: np.ndarray) -> None:
        a = np.asarray(out, dtype=np.float64)
        abs_sum, zero_sum = _unit_axis_sum(np.abs(a)), _unit_axis_sum((a == 0).astype(np.float64))
        if totals["abs"] is None:
            totals["abs"], totals["zeros"] = abs_sum, zero_sum
        else:
            totals["abs"] += abs_sum
            totals["zeros"] += zero_sum
        totals["count"] += a.size // a.shape[1]

    handle = module.register_forward_hook(observe)
    try:
        with evaluating(model), no_grad():
            for batch in _batches(len(x), batch_size):
                model(x[batch])
    finally:
        handle.remove()
    if totals["abs"] is None:
        raise ValueError("activation_stats needs a non-empty calibration batch x")
    count = totals["count"]
    return ActivationStats(totals["abs"] / count, totals["zeros"] / count, count)


# ------------------------------------------------------------------ Taylor
def taylor_scores(
    model: Module,
    module: Module,
    x: np.ndarray,
    y: np.ndarray,
    criterion: Any,
    batch_size: int | None = None,
) -> np.ndarray:
    """First-order Taylor importance of each unit of ``module``'s output (Molchanov et al. 2017).

    For each batch of ``N`` examples: forward (a hook keeps ``a``, the
    module's output), ``loss = criterion(model(x), y)``,
    ``model.backward(criterion.backward())`` (the module's ``backward``
    receives ``dL/da``, which we record), then::

        da[n]    = N * dL/da[n]      the gradient of example n's own loss
                                     (the loss is a batch mean)
        t[n, c]  = mean over (h, w) of a[n, c, h, w] * da[n, c, h, w]
        score[c] = mean over n of |t[n, c]|

    Using each example's own loss makes the scores independent of how the
    calibration set is cut into batches (for losses that are means of
    per-example terms, as every tinynet loss is).

    tinynet has no backward hooks, so ``module.backward`` is wrapped for the
    duration of the call (an instance attribute that is deleted afterwards).
    The model runs in eval mode; its gradients are put back as they were.

    Parameters
    ----------
    model : Module
    module : Module
        A module of ``model``; units along axis 1 of its output.
    x, y : ndarray
        A batch of inputs and their targets.
    criterion : loss object
        Follows the loss contract: ``loss = criterion(outputs, y)``,
        ``criterion.backward()`` returns ``dL/doutputs``.
    batch_size : int, optional
        Process in chunks of this many examples.

    Returns
    -------
    scores : ndarray, shape (C,), float64
    """
    _check_member(model, module)
    seen: dict[str, Any] = {}
    totals: dict[str, Any] = {"sum": None, "n": 0}

    def keep_output(_: Module, __: np.ndarray, out: np.ndarray) -> None:
        seen["a"] = out

    original_backward = module.backward

    def recording_backward(dout: np.ndarray) -> np.ndarray | None:
        a = np.asarray(seen["a"], dtype=np.float64)
        da = np.asarray(dout, dtype=np.float64) * a.shape[0]  # per-example loss gradient
        prod = a * da  # (N, C, ...)
        per_example = prod.reshape(prod.shape[0], prod.shape[1], -1).mean(axis=2)  # (N, C)
        s = np.abs(per_example).sum(axis=0)
        totals["sum"] = s if totals["sum"] is None else totals["sum"] + s
        totals["n"] += prod.shape[0]
        return original_backward(dout)

    saved_grads = [(p, p.grad) for p in model.parameters()]
    model.zero_grad()  # backward would add into the saved arrays in place
    needed_input_grad = model.requires_input_grad
    model.requires_input_grad = True  # every layer passes dL/dx back, up to `module`
    handle = module.register_forward_hook(keep_output)
    object.__setattr__(module, "backward", recording_backward)
    try:
        with evaluating(model), enable_grad():
            for batch in _batches(len(x), batch_size):
                criterion(model(x[batch]), y[batch])
                model.backward(criterion.backward())
    finally:
        handle.remove()
        del module.backward  # back to the class's method
        model.requires_input_grad = needed_input_grad
        for p, g in saved_grads:
            p.grad = g
    if totals["sum"] is None:
        raise ValueError(
            "taylor_scores saw no gradient for this module: it must be on the path "
            "from the input to the loss, and x must not be empty"
        )
    return totals["sum"] / totals["n"]
