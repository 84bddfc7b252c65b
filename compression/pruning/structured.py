"""Structured pruning with masks: zero whole neurons and filters (the masked reference).

A *unit* is a neuron of a ``Linear`` (row ``j`` of its weight ``(out, in)``)
or a filter of a ``Conv2d`` (``W[j]``, shape ``(in, kh, kw)``).
:func:`prune_units` scores the units of each layer (L1/L2 norm by default,
or scores from :mod:`compression.pruning.scores`), keeps the best, and zeroes
the others with ``Mask`` transforms; :mod:`compression.pruning.thinning`
then removes them for real. PyTorch's ``prune.ln_structured`` stops at the
zeroing, which makes nothing smaller or faster.

For the thin model to be *exactly* the masked one, a removed unit must send
exactly zero to the next ``Linear``/``Conv2d`` (its *consumer*).
:func:`mask_units` ensures it by masking

* the unit's weight row (filter);
* **its bias**: a unit with zero weights but a bias of 0.3 outputs
  ReLU(0.3) = 0.3 everywhere, which the consumer would see;
* the ``gamma`` and ``beta`` of a BatchNorm on the way: a zero channel
  comes out of BatchNorm as ``beta - gamma * mean / sqrt(var + eps)`` (eval
  mode) or ``beta`` (training mode), not 0.

Between producer and consumer only layers that map a zero channel to a zero
channel are allowed: ReLU, LeakyReLU, Tanh, Dropout, MaxPool2d, AvgPool2d,
Flatten and BatchNorm (not Sigmoid: ``sigmoid(0) = 0.5``).

The last layer's outputs (the classes) are never removed. This works on a
flat ``Sequential`` (the model zoo's shape); layers are named by their index
(``"1"``), as in ``state_dict`` keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from compression.pruning.apply import add_mask
from compression.pruning.masks import check_sparsity, expand_unit_mask, unit_mask
from compression.pruning.scores import unit_norms
from tinynet.grad_mode import no_grad
from tinynet.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Tanh,
)
from tinynet.module import Module, Sequential

__all__ = ["mask_units", "prune_units", "removed_units"]

#: Layers a zero channel passes through as a zero channel (f(0) = 0, per channel).
PASS_THROUGH = (ReLU, LeakyReLU, Tanh, Dropout, MaxPool2d, AvgPool2d)
BATCHNORMS = (BatchNorm1d, BatchNorm2d)
UNIT_LAYERS = (Linear, Conv2d)


# ------------------------------------------------------------ the chain
def flat_layers(model: Module) -> list[Module]:
    """The layers of a flat ``Sequential``, or a ValueError saying what thinning needs."""
    if not isinstance(model, Sequential):
        raise ValueError(f"thinning works on a flat tinynet Sequential, got {type(model).__name__}")
    layers = list(model)
    for i, layer in enumerate(layers):
        if isinstance(layer, Sequential):
            raise ValueError(
                f"thinning works on a flat Sequential; layer {i} is a nested Sequential"
            )
    return layers


def path_to_consumer(layers: list[Module], i: int) -> tuple[list[int], int | None]:
    """Indices of the layers between producer ``i`` and its consumer, and the consumer's index.

    The consumer is the next ``Linear``/``Conv2d``; None when ``i`` is the last one.
    """
    path = []
    for j in range(i + 1, len(layers)):
        if isinstance(layers[j], UNIT_LAYERS):
            return path, j
        path.append(j)
    return path, None


def check_path(layers: list[Module], i: int, path: list[int]) -> None:
    """Raise unless every layer between producer ``i`` and its consumer keeps zeros at zero."""
    for j in path:
        layer = layers[j]
        if isinstance(layer, Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                raise ValueError(f"thinning needs Flatten(1, -1) at layer {j}, got {layer!r}")
        elif not isinstance(layer, PASS_THROUGH + BATCHNORMS):
            raise ValueError(
                f"cannot remove units of layer {i}: layer {j} ({type(layer).__name__}) does not "
                "map a zero channel to zero, so the next Linear/Conv2d would still see a removed "
                f"unit; allowed in between: {[c.__name__ for c in PASS_THROUGH]}, Flatten and "
                "BatchNorm"
            )


def unit_layer_names(model: Module) -> list[str]:
    """Names (``"1"``, ``"3"``...) of the ``Linear``/``Conv2d`` layers, in order."""
    return [str(i) for i, layer in enumerate(flat_layers(model)) if isinstance(layer, UNIT_LAYERS)]


# --------------------------------------------------------- masking units
def mask_units(model: Module, name: str, keep_units: np.ndarray) -> None:
    """Zero the removed units of layer ``name`` with Mask transforms (the masked reference).

    Masks row/filter ``j`` of the weight, ``b[j]``, and ``gamma[j]``,
    ``beta[j]`` of every BatchNorm between this layer and the next
    ``Linear``/``Conv2d``, for each ``j`` with ``keep_units[j] == False``,
    so the unit sends exactly zero onwards. Composes with existing masks.
    """
    layers = flat_layers(model)
    index = int(name) if str(name).isdigit() else -1
    layer = layers[index] if 0 <= index < len(layers) else None
    if not isinstance(layer, UNIT_LAYERS):
        raise ValueError(f"layer {name!r} is not a Linear or Conv2d of this model")
    path, consumer = path_to_consumer(layers, index)
    keep_units = np.asarray(keep_units, dtype=bool)
    if consumer is None and not keep_units.all():
        raise ValueError(
            f"layer {name!r} is the last Linear/Conv2d: its outputs (the classes) are never removed"
        )
    check_path(layers, index, path)
    add_mask(layer.weight, expand_unit_mask(keep_units, layer.weight.shape))
    if layer.bias is not None:
        add_mask(layer.bias, keep_units)
    for j in path:
        if isinstance(layers[j], BATCHNORMS):
            add_mask(layers[j].weight, keep_units)
            add_mask(layers[j].bias, keep_units)


def prune_units(
    model: Module,
    sparsity: float | Mapping[str, float],
    *,
    layers: list[str] | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
    p: int = 1,
) -> dict[str, np.ndarray]:
    """Structured pruning: mask the ``round(s * n_units)`` least important units of each layer.

    Parameters
    ----------
    model : Sequential
    sparsity : float in [0, 1], or dict of layer name -> float
        Fraction of each layer's units (neurons, filters) to remove.
    layers : list of str, optional
        Names (``"1"``) of the ``Linear``/``Conv2d`` layers to prune; default
        every one but the last (whose outputs are the classes).
    scores : dict of layer name -> ndarray (n_units,), optional
        Importance per unit (activation or Taylor scores from
        :mod:`compression.pruning.scores`); default the L``p`` norm of the
        effective weight (PyTorch ``ln_structured(n=p, dim=0)``).
    p : {1, 2}, default 1

    Returns
    -------
    dict of layer name -> ndarray of bool (n_units,)
        The units now kept (as :func:`removed_units` finds them, so units
        removed by an earlier call stay removed), ready for
        :func:`compression.pruning.thin`.

    Notes
    -----
    ``sparsity`` is absolute, like everywhere in this package: asking a
    layer that already lost half its units for 0.3 removes nothing more.
    Units already removed have norm 0, so they rank first.
    """
    all_names = unit_layer_names(model)
    if isinstance(sparsity, Mapping):
        targets = {n: check_sparsity(s, f"sparsity[{n!r}]") for n, s in sparsity.items()}
        names = list(targets) if layers is None else list(layers)
    else:
        names = all_names[:-1] if layers is None else list(layers)
        targets = {n: check_sparsity(sparsity) for n in names}
    if not names:
        raise ValueError("nothing to prune: the model has no Linear/Conv2d layer before the last")
    unknown = [n for n in names if n not in all_names or n not in targets]
    if unknown:
        raise ValueError(
            f"layers {unknown} are not Linear/Conv2d layers with a sparsity: {all_names}"
        )
    model_layers = flat_layers(model)
    for name in names:
        weight = model_layers[int(name)].weight
        if scores is not None and name in scores:
            unit_scores = np.asarray(scores[name], dtype=np.float64)
        else:
            with no_grad():
                unit_scores = unit_norms(weight.value(), p)
        if unit_scores.shape != (weight.shape[0],):
            raise ValueError(
                f"scores for layer {name!r} must have shape ({weight.shape[0]},), "
                f"got {unit_scores.shape}"
            )
        mask_units(model, name, unit_mask(unit_scores, targets[name]))
    # What is removed now: this call's units, and any removed before (masks only grow).
    removed = removed_units(model)
    return {n: removed.get(n, np.ones(model_layers[int(n)].weight.shape[0], bool)) for n in names}


def removed_units(model: Module) -> dict[str, np.ndarray]:
    """Find the units that send exactly zero onwards; their keep-vectors by layer name.

    Unit ``j`` of a ``Linear``/``Conv2d`` that has a consumer is removable when
    its effective weight row, its bias, and the ``gamma`` and ``beta`` of
    every BatchNorm before the consumer are all zero (what :func:`mask_units`
    leaves). Only layers with a removable unit are listed.
    """
    layers = flat_layers(model)
    found = {}
    with no_grad():
        for name in unit_layer_names(model):
            i = int(name)
            path, consumer = path_to_consumer(layers, i)
            if consumer is None:
                continue
            layer = layers[i]
            w = layer.weight.value()
            zero = ~np.any(w.reshape(w.shape[0], -1) != 0, axis=1)
            if layer.bias is not None:
                zero &= layer.bias.value() == 0
            for j in path:
                if isinstance(layers[j], BATCHNORMS):
                    zero &= (layers[j].weight.value() == 0) & (layers[j].bias.value() == 0)
            if zero.any():
                found[name] = ~zero
    return found
