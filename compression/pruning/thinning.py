"""Thinning: structured pruning that really removes neurons and filters.

Zeroing a whole neuron with a mask (what ``torch.nn.utils.prune.ln_structured``
does) saves nothing: the matrix products keep their size. Removing it does.
For a ``Linear`` producer ``W1 (H, D)`` feeding a consumer ``W2 (C, H)``,
keeping the units ``k`` (a boolean vector of length ``H``)::

    x -> W1[k, :], b1[k] -> [BatchNorm: gamma[k], beta[k], mean[k], var[k]]
      -> ReLU / MaxPool / Dropout ... -> W2[:, k]

and for a ``Conv2d`` producer ``(F, C_in, kh, kw)`` the kept filters ``k``
become the next convolution's kept input channels ``W2[:, k, :, :]``. Across
the ``Flatten`` between the last convolution and the first ``Linear``,
channel ``c`` of an ``(N, F, H, W)`` map becomes the ``H*W`` input columns
``c*H*W .. (c+1)*H*W - 1`` (C-order flattening), so a removed filter
removes that whole block::

    columns kept = np.repeat(k, H * W)

Per-unit state travels with its unit: ``Mask`` transforms are sliced with
their parameters (and a later transform type registers how its own state is
sliced with :func:`register_slicer`).

When the removed units were masked as
:func:`compression.pruning.structured.mask_units` does, the thin model's
outputs equal the masked model's up to float rounding: the only difference
is which zeros take part in the sums. Thinning returns a *new* model and
leaves the original untouched. Distiller calls this "thinning"; PyTorch has
no equivalent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from compression.pruning.structured import (
    BATCHNORMS,
    UNIT_LAYERS,
    check_path,
    flat_layers,
    path_to_consumer,
    removed_units,
)
from compression.storage.architecture import build_module, describe_module, global_rng_untouched
from tinynet.layers import Conv2d, Flatten, Linear
from tinynet.module import Module, Sequential
from tinynet.parameter import Parameter
from tinynet.transforms import Mask, Transform

__all__ = ["SLICERS", "count_parameters", "register_slicer", "thin", "thinning_report"]

# ---------------------------------------------------------- slicing state
Slicer = Callable[[Transform, Callable[[np.ndarray], np.ndarray]], Transform]
#: Transform type name -> function(transform, take) returning the sliced transform.
SLICERS: dict[str, Slicer] = {}


def register_slicer(type_name: str) -> Callable[[Slicer], Slicer]:
    """Decorator: how to slice the state of a transform type when its parameter is thinned.

    ``slicer(transform, take)`` gets ``take``, a function that slices an
    array of the parameter's shape (or any array indexed like it), and
    returns a new transform. Per-channel state (a quantizer's scales along
    axis 0) would be sliced with the same kept indices by a later lesson.
    """

    def add(slicer: Slicer) -> Slicer:
        SLICERS[type_name] = slicer
        return slicer

    return add


@register_slicer("Mask")
def _slice_mask(mask: Transform, take: Callable[[np.ndarray], np.ndarray]) -> Transform:
    assert isinstance(mask, Mask)
    return Mask(take(mask.mask))


def _slice_parameter(param: Parameter, keep_by_axis: dict[int, np.ndarray]) -> Parameter:
    """A new Parameter holding ``data`` with only the kept indices along each axis."""

    def take(a: np.ndarray) -> np.ndarray:
        for axis, keep in keep_by_axis.items():
            a = np.compress(keep, a, axis=axis)
        return np.array(a, copy=True)

    new = Parameter(take(param.data), requires_grad=param.requires_grad)
    for t in param.transforms:
        slicer = SLICERS.get(type(t).__name__)
        if slicer is None:
            raise ValueError(
                f"cannot thin a parameter carrying a {type(t).__name__} transform: no slicer is "
                f"registered for it (known: {sorted(SLICERS)}); strip it first"
            )
        sliced = slicer(t, take)
        if isinstance(sliced, Mask) and sliced.mask.all():
            continue  # the mask only removed what thinning removed: nothing left to mask
        new.add_transform(sliced)
    return new


# ----------------------------------------------------------------- thin
def thin(model: Module, keep: Mapping[str, np.ndarray] | None = None) -> Sequential:
    """A new, smaller dense ``Sequential`` without the removed units.

    Parameters
    ----------
    model : Sequential
        Flat; layers ``Linear``, ``Conv2d``, ``BatchNorm1d/2d``, ``Flatten``
        and the pass-through layers (see the module docstring).
    keep : dict of layer name -> ndarray of bool (n_units,), optional
        Kept units of each ``Linear``/``Conv2d`` (as :func:`~compression.pruning.prune_units`
        returns). Default: :func:`~compression.pruning.removed_units`, the units masked to zero.

    Returns
    -------
    Sequential
        Same layer indices (so ``state_dict`` keys keep their names); each
        producer has fewer output units, each consumer the matching fewer
        inputs; BatchNorm parameters and running statistics sliced; Mask
        transforms sliced with their parameters (a sliced mask that keeps
        everything is dropped: it only masked what thinning removed, so a
        purely structured-pruned model comes out plain and dense, while
        unstructured masks on the kept units stay); same training modes and
        ``requires_grad`` flags. No hooks, caches or gradients are copied.
        Its outputs equal the model's when the removed units were masked
        as :func:`~compression.pruning.mask_units` does.

    Raises
    ------
    ValueError
        When a unit of the last ``Linear``/``Conv2d`` is to be removed, a
        layer would keep no unit, a mask does not fit its layer, or a layer
        between a producer and its consumer cannot be thinned.
    """
    layers = flat_layers(model)
    keep = removed_units(model) if keep is None else keep
    out_keep: dict[int, np.ndarray] = {}  # producer index -> kept output units
    in_keep: dict[int, np.ndarray] = {}  # consumer index -> kept inputs (axis 1 of the weight)
    bn_keep: dict[int, np.ndarray] = {}
    for name, units in keep.items():
        i = int(name) if str(name).isdigit() else -1
        if not 0 <= i < len(layers) or not isinstance(layers[i], UNIT_LAYERS):
            raise ValueError(f"keep names layer {name!r}, not a Linear/Conv2d of this model")
        units = np.asarray(units, dtype=bool)
        n_units = layers[i].weight.shape[0]
        if units.shape != (n_units,):
            raise ValueError(f"keep[{name!r}] must have shape ({n_units},), got {units.shape}")
        if units.all():
            continue
        if not units.any():
            raise ValueError(
                f"keep[{name!r}] removes every unit of layer {name}: keep at least one"
            )
        path, consumer = path_to_consumer(layers, i)
        if consumer is None:
            raise ValueError(
                f"layer {name!r} is the last Linear/Conv2d: its outputs (the classes) are never "
                "removed"
            )
        check_path(layers, i, path)
        out_keep[i] = units
        columns = units
        for j in path:
            if isinstance(layers[j], BATCHNORMS):
                bn_keep[j] = units
            if isinstance(layers[j], Flatten):
                columns = _flattened_columns(units, layers[consumer], consumer)
        if isinstance(layers[consumer], Conv2d) and columns is not units:
            raise ValueError(f"layer {consumer} is a Conv2d after a Flatten: cannot thin")
        in_keep[consumer] = columns

    with global_rng_untouched():  # building layers draws default weights; overwritten below
        new_layers = [
            _thin_layer(layer, out_keep.get(i), in_keep.get(i), bn_keep.get(i))
            for i, layer in enumerate(layers)
        ]
    thinned = Sequential(*new_layers)
    for old, new in zip(layers, new_layers):
        new.training = old.training
    thinned.training = model.training
    return thinned


def _flattened_columns(units: np.ndarray, consumer: Module, index: int) -> np.ndarray:
    """Channel keep ``(C,)`` -> column keep ``(C * H * W,)`` of the Linear after the Flatten."""
    if not isinstance(consumer, Linear) or consumer.in_features % units.size:
        raise ValueError(
            f"layer {index} after the Flatten must be a Linear whose in_features is a multiple "
            f"of the {units.size} channels, got {consumer!r}"
        )
    return np.repeat(units, consumer.in_features // units.size)


def _thin_layer(
    layer: Module, rows: np.ndarray | None, cols: np.ndarray | None, channels: np.ndarray | None
) -> Module:
    """One new layer: rows (outputs), cols (inputs) or BatchNorm channels removed."""
    if isinstance(layer, UNIT_LAYERS):
        out_n = layer.weight.shape[0] if rows is None else int(rows.sum())
        in_n = layer.weight.shape[1] if cols is None else int(cols.sum())
        if isinstance(layer, Linear):
            new: Module = Linear(in_n, out_n, bias=layer.bias is not None)
        else:
            new = Conv2d(
                in_n, out_n, layer.kernel_size, layer.stride, layer.padding, layer.bias is not None
            )
        axes = {a: k for a, k in ((0, rows), (1, cols)) if k is not None}
        new.weight = _slice_parameter(layer.weight, axes)
        if layer.bias is not None:
            new.bias = _slice_parameter(layer.bias, {0: rows} if rows is not None else {})
        return new
    if isinstance(layer, BATCHNORMS):
        k = np.ones(layer.num_features, dtype=bool) if channels is None else channels
        new = type(layer)(int(k.sum()), eps=layer.eps, momentum=layer.momentum)
        new.weight = _slice_parameter(layer.weight, {0: k})
        new.bias = _slice_parameter(layer.bias, {0: k})
        new.register_buffer("running_mean", layer.running_mean[k].copy())
        new.register_buffer("running_var", layer.running_var[k].copy())
        new.register_buffer("num_batches_tracked", np.array(layer.num_batches_tracked, copy=True))
        return new
    return build_module(describe_module(layer))  # a fresh copy of a layer without weights


# --------------------------------------------------------------- counting
def count_parameters(model: Module) -> int:
    """Number of stored parameter entries (weights and biases, masked or not)."""
    return sum(p.size for p in model.parameters())


def thinning_report(original: Module, thinned: Module) -> str:
    """A table of each weighted layer's shape and parameter count, before and after."""
    lines = [f"{'layer':<6} {'type':<12} {'weight before':<18} {'weight after':<18} {'params':>16}"]
    for name, old in original.named_children():
        new = getattr(thinned, name)
        before = sum(p.size for p in old.parameters())
        if not before:
            continue
        after = sum(p.size for p in new.parameters())
        lines.append(
            f"{name:<6} {type(old).__name__:<12} {str(old.weight.shape):<18} "
            f"{str(new.weight.shape):<18} {before:>7,} -> {after:<7,}"
        )
    b, a = count_parameters(original), count_parameters(thinned)
    lines.append(f"total parameters: {b:,} -> {a:,} ({b / a:.2f}x fewer)")
    return "\n".join(lines)
