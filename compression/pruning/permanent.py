"""After pruning: making masks permanent, and rewinding survivors (lottery tickets).

A ``Mask`` keeps pruned weights out of the layer's computation, but two
things remain underneath: the *latent* values (``param.data``, which weight
decay and stale momentum may keep changing) and the *optimizer state* of
those entries (momentum buffers, Adam's moments). :func:`make_permanent`
zeroes both, so nothing stale can come back when the mask is removed
(``tinynet.strip``, PyTorch ``prune.remove``). :func:`snapshot` and
:func:`rewind` implement Frankle & Carbin's (2019) lottery-ticket step:
reset the surviving weights to their values at initialisation (or early in
training), keep the mask, and let the optimizer start afresh.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from compression.pruning.apply import current_keep
from tinynet.module import Module
from tinynet.optim import Optimizer
from tinynet.parameter import Parameter
from tinynet.transforms import Mask

__all__ = ["make_permanent", "rewind", "snapshot"]


def _updated_by(optimizer: Optimizer, param: Parameter) -> bool:
    return any(p is param for group in optimizer.param_groups for p in group["params"])


def make_permanent(model: Module, optimizer: Optimizer | None = None) -> Module:
    """Zero the latent values under every mask and forget their optimizer state.

    For each parameter with a ``Mask``: ``data[~keep] = 0`` and, if given,
    ``optimizer.reset_state(param, mask=~keep)`` (momentum buffers and Adam
    moments of the pruned entries become 0). The masks stay, so gradients
    stay masked; the pruned entries are now zero underneath as well, so
    ``strip`` (PyTorch ``prune.remove``) or a later unmasking cannot bring
    stale values back. Parameters the optimizer does not update are skipped.
    Returns ``model``.
    """
    for _, _, _, param in model.named_parameter_slots():
        if not any(isinstance(t, Mask) for t in param.transforms):
            continue
        dropped = ~current_keep(param)
        param.data[dropped] = 0
        if optimizer is not None and _updated_by(optimizer, param):
            optimizer.reset_state(param, mask=dropped)
    return model


def snapshot(model: Module) -> dict[str, np.ndarray]:
    """Copies of every parameter's latent value by name, to :func:`rewind` to later.

    Take it right after initialisation (Frankle & Carbin 2019 rewind to
    ``W_0``) or after a few hundred steps (Frankle et al. 2020, "late
    rewinding").
    """
    return {name: param.data.copy() for name, _, _, param in model.named_parameter_slots()}


def rewind(
    model: Module, saved: Mapping[str, np.ndarray], optimizer: Optimizer | None = None
) -> Module:
    """Reset the named parameters to ``saved`` values, keeping every mask (lottery tickets).

    For each name in ``saved``: ``data = saved * keep`` (survivors get their
    saved value, pruned entries stay 0), and the optimizer forgets the
    parameter entirely (``reset_state(param)``: moments and step count, so
    Adam's bias correction restarts). Returns ``model``.
    """
    slots = {name: param for name, _, _, param in model.named_parameter_slots()}
    for name, value in saved.items():
        if name not in slots:
            raise ValueError(f"rewind: the model has no parameter {name!r}")
        param = slots[name]
        value = np.asarray(value)
        if value.shape != param.shape:
            raise ValueError(f"rewind: {name!r} saved with shape {value.shape}, now {param.shape}")
        param.data = np.where(current_keep(param), value, 0).astype(param.dtype)
        if optimizer is not None and _updated_by(optimizer, param):
            optimizer.reset_state(param)
    return model
