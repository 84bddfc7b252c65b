"""Quantizing a whole model: post-training, quantization-aware training, and back to float.

The transforms of :mod:`fake_quant` and :mod:`lsq` act on one tensor; these
functions decide where they go (Krishnamoorthi 2018, "Quantizing deep
convolutional networks for efficient inference: a whitepaper", sec. 3-4):

* **weights**: every ``Conv2d`` and ``Linear`` weight (``"1.weight"``),
  per output channel (``axis=0``) or per tensor; biases stay float (an
  integer engine keeps them in int32 at scale ``S_in * S_w``, Jacob et al.
  2018 sec. 2.4, so they cost 32 bits either way);
* **activations** (:func:`activation_targets`): the output of each
  ``Conv2d``/``Linear``, taken after the BatchNorm and the activation
  function that follow it, when they do. For LeNet-5-Caffe (conv-pool-conv-
  pool-fc-relu-fc) that is ``conv1``, ``conv2``, the ReLU after ``fc1``, and
  the logits: a max-pool of grid values is a grid value, so pooling
  needs no quantizer of its own.

The first layer's input (the image) is not quantized here: that belongs to
the integer engine (``integer.py``). MNIST pixels are 8-bit to begin with
(``k / 255``, then normalised).

Post-training (PTQ): :func:`quantize_weights` (frozen min-max scales), then
:func:`quantize_activations` (ranges from a calibration set).

Quantization-aware training (QAT, Jacob et al. 2018 sec. 3; Krishnamoorthi
2018 sec. 3.2): :func:`prepare_qat` returns a *copy* of the model (like
PyTorch's ``prepare_qat(model, inplace=False)``) with fake quantizers on
weights and activations, to be trained with ``tinynet.fit`` as usual; then
:func:`freeze_quantizers` fixes every scale, and the size counter stores the
weights at their bit width. :func:`strip_quantization` goes back to a float
model. Mixed precision: every ``bits`` argument also takes a dict
(parameter or module name -> bits), as Deep Compression keeps conv layers
at 8 bits and fully connected ones at 5.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from compression.pruning.apply import prunable_layers
from compression.quantization.affine import check_bits
from compression.quantization.binary import BinaryWeights, TernaryWeights
from compression.quantization.fake_quant import ActivationQuantize, FakeQuantize
from compression.quantization.lsq import LSQ
from compression.quantization.observers import (
    MinMaxObserver,
    Observer,
    calibrate,
    calibration_inputs,
)
from compression.quantization.sharing import SharedWeights
from tinynet.grad_mode import no_grad
from tinynet.layers import BatchNorm1d, BatchNorm2d, LeakyReLU, ReLU, Sigmoid, Tanh
from tinynet.module import Module
from tinynet.transforms import Mask

__all__ = [
    "activation_targets",
    "bit_widths",
    "weight_bits",
    "freeze_quantizers",
    "observe_ranges",
    "prepare_qat",
    "quantize_activations",
    "quantize_weights",
    "strip_quantization",
]

WEIGHT_QUANTIZERS = (FakeQuantize, LSQ)
OUTPUT_QUANTIZERS = (ActivationQuantize, LSQ)
ACTIVATION_FUNCTIONS = (ReLU, LeakyReLU, Sigmoid, Tanh)
NONNEGATIVE_OUTPUTS = (ReLU, Sigmoid)  # an unsigned grid wastes nothing on these


def is_activation(module: Module) -> bool:
    """An activation function: one of ``ACTIVATION_FUNCTIONS``, or a class that says so.

    Layers defined elsewhere (``compression.clipping``'s ``Clip``, ``ReLU6``,
    ``PACT``) set the class attributes ``activation_function = True`` and
    ``nonnegative_output = True`` rather than being listed here (that
    package imports this one).
    """
    return isinstance(module, ACTIVATION_FUNCTIONS) or getattr(module, "activation_function", False)


def is_nonnegative(module: Module) -> bool:
    """Outputs never below zero, so an unsigned grid fits them (see :func:`is_activation`)."""
    return isinstance(module, NONNEGATIVE_OUTPUTS) or getattr(module, "nonnegative_output", False)


# -------------------------------------------------------------- where quantizers go
def weight_names(model: Module) -> list[str]:
    """``"<layer>.weight"`` of every ``Conv2d`` and ``Linear``, in order."""
    return [f"{name}.weight" if name else "weight" for name, _ in prunable_layers(model)]


def activation_targets(model: Module) -> list[str]:
    """Module names whose outputs get activation quantizers, one per ``Conv2d``/``Linear``.

    For each such layer: the layer itself, or, if it is followed by BatchNorm
    layers and/or an activation function (``ReLU``, ``LeakyReLU``,
    ``Sigmoid``, ``Tanh``, and any :func:`is_activation`), the last of those, in execution order of the
    leaf modules. The last target is the network's output (the logits).
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    weighted = {id(m) for _, m in prunable_layers(model)}
    targets = []
    for i, (_, module) in enumerate(leaves):
        if id(module) not in weighted:
            continue
        j = i
        while j + 1 < len(leaves) and isinstance(leaves[j + 1][1], BatchNorm1d | BatchNorm2d):
            j += 1
        if j + 1 < len(leaves) and is_activation(leaves[j + 1][1]):
            j += 1
        targets.append(leaves[j][0])
    return targets


def _bits_for(bits: int | Mapping[str, int], names: list[str], what: str) -> dict[str, int]:
    """``{name: bits}``: one width for every name, or the given dict (names checked)."""
    if isinstance(bits, Mapping):
        unknown = [n for n in bits if n not in names]
        if unknown:
            raise ValueError(
                f"bits names {unknown}, which are not {what}s; the {what}s are {names}"
            )
        return {n: check_bits(b) for n, b in bits.items()}
    bits = check_bits(bits)
    return dict.fromkeys(names, bits)


def _observers_for(
    observer: Callable[[], Observer] | Mapping[str, Callable[[], Observer]], names: list[str]
) -> dict[str, Callable[[], Observer]]:
    """``{name: observer factory}``: one factory for every name, or the given dict (checked)."""
    if not isinstance(observer, Mapping):
        return dict.fromkeys(names, observer)
    unknown = [n for n in observer if n not in names]
    missing = [n for n in names if n not in observer]
    if unknown or missing:
        raise ValueError(
            f"observer dict must name every quantized module {names}; "
            f"unknown: {unknown}, missing: {missing}"
        )
    return dict(observer)


def _has_quantizer(transforms: list[Any]) -> bool:
    return any(isinstance(t, WEIGHT_QUANTIZERS + OUTPUT_QUANTIZERS) for t in transforms)


def _weighted_params(model: Module, names: list[str]) -> dict[str, Any]:
    slots = {full: p for full, _, _, p in model.named_parameter_slots()}
    for name in names:
        if _has_quantizer(slots[name].transforms):
            raise ValueError(f"{name} is already quantized: strip_quantization(model) first")
    return {name: slots[name] for name in names}


def _target_modules(model: Module, names: list[str]) -> dict[str, Module]:
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"the model has no modules named {unknown}")
    for name in names:
        if _has_quantizer(modules[name].output_transforms):
            raise ValueError(f"the output of {name!r} is already quantized")
    return {name: modules[name] for name in names}


# ------------------------------------------------------------- post-training
def quantize_weights(
    model: Module,
    bits: int | Mapping[str, int] = 8,
    per_channel: bool = True,
    symmetric: bool = True,
    narrow_range: bool = False,
    power_of_two: bool = False,
) -> Module:
    """Post-training weight quantization: a frozen :class:`FakeQuantize` on each weight.

    Scale and zero-point come from the weight's current (effective, e.g.
    masked) minimum and maximum, per output channel or per tensor, and are
    frozen. In place; returns ``model``.

    Parameters
    ----------
    model : Module
    bits : int or dict of str -> int, default 8
        One width for every ``Conv2d``/``Linear`` weight, or
        ``{"1.weight": 8, "3.weight": 5}`` (mixed precision; weights not
        named stay float).
    per_channel : bool, default True
        One scale per output unit (``axis=0``) instead of one per tensor.
    symmetric, narrow_range, power_of_two : bool
        See :class:`FakeQuantize`.
    """
    names = weight_names(model)
    widths = _bits_for(bits, names, "weight")
    params = _weighted_params(model, list(widths))
    for name, b in widths.items():
        param = params[name]
        with no_grad():
            w = param.value()
        param.add_transform(
            FakeQuantize.for_weight(
                w,
                b,
                symmetric=symmetric,
                narrow_range=narrow_range,
                axis=0 if per_channel else None,
                power_of_two=power_of_two,
                frozen=True,
            )
        )
    return model


def quantize_activations(
    model: Module,
    batches: Any,
    bits: int | Mapping[str, int] = 8,
    observer: Callable[[], Observer] | Mapping[str, Callable[[], Observer]] = MinMaxObserver,
    layers: list[str] | None = None,
    symmetric: bool = False,
    batch_size: int = 256,
    sequential: bool = False,
) -> Module:
    """Post-training activation quantization from a calibration set.

    An observer per target module records its outputs over ``batches``
    (:func:`calibrate`), then a frozen :class:`ActivationQuantize` with that
    range is attached to each target's output. Call it after
    :func:`quantize_weights`, so the ranges are those of the quantized
    weights. In place; returns ``model``.

    Parameters
    ----------
    model : Module
    batches : array, tuple of arrays, or iterable of batches
        Calibration inputs (a few hundred training images are plenty).
    bits : int or dict of str -> int, default 8
        One width, or ``{module name: bits}``.
    observer : callable returning an Observer, or dict of str -> such callables
        A class (``MovingAverageMinMaxObserver``) or any factory, for every
        target; or ``{module name: factory}`` naming every target (each
        layer its own calibrator, e.g. ``CrossEntropyObserver`` for the
        logits only). Default ``MinMaxObserver``.
    layers : list of str, optional
        Module names; default :func:`activation_targets`.
    symmetric : bool, default False
        Unsigned affine grids (False) or signed, zero-point 0.
    sequential : bool, default False
        False: one calibration pass of the float activations, every range
        observed at once. True: the targets one at a time, in order, each
        observed with the quantizers before it already attached, so each
        range is chosen for the (already rounded) values it will really
        receive. Costs one pass per target. At 2-3 bits on LeNet-5 this
        helps the clipping calibrators (MSE: 98.5% -> 98.6% at 3 bits)
        and hurts min-max (97.7% -> 97.3%: rounding noise upstream widens
        the extremes), see ``benchmarks/bench_clipping.py``.
    """
    names = activation_targets(model) if layers is None else list(layers)
    widths = _bits_for(bits, names, "quantized module")
    modules = _target_modules(model, list(widths))
    factories = _observers_for(observer, list(widths))
    steps = [list(widths)] if not sequential else [[name] for name in widths]
    for step in steps:
        observers = calibrate(
            model, {name: factories[name]() for name in step}, batches, batch_size
        )
        for name in step:
            quantizer = ActivationQuantize.from_observer(
                observers[name], widths[name], symmetric=symmetric
            )
            modules[name].add_output_transform(quantizer)
    return model


# ------------------------------------------------------ quantization-aware training
def prepare_qat(
    model: Module,
    weight_bits: int | Mapping[str, int] = 4,
    act_bits: int | Mapping[str, int] = 4,
    first_last_bits: int | None = None,
    method: str = "minmax",
    per_channel: bool = True,
    inplace: bool = False,
    calibration: Any = None,
) -> Module:
    """The fake-quantized twin of a float model, ready for ``tinynet.fit``.

    Parameters
    ----------
    model : Module
        A float model (usually trained: QAT fine-tunes it).
    weight_bits, act_bits : int or dict, default 4
        Widths of weights and of activations (:func:`activation_targets`).
    first_last_bits : int, optional
        Keep the first and last layer at this width (commonly 8, as Esser
        et al. 2020 do): the first and last weights, the last layer's input
        activation and its output.
    method : {"minmax", "lsq"}
        ``"minmax"``: :class:`FakeQuantize` weights (symmetric, scales from
        min/max at every step, per channel with ``per_channel``) and
        :class:`ActivationQuantize` outputs (moving-average ranges).
        ``"lsq"``: :class:`LSQ` everywhere (per tensor; trainable step sizes,
        unsigned after ReLU and Sigmoid).
    per_channel : bool, default True
        For ``"minmax"`` weights.
    inplace : bool, default False
        False returns a deep copy and leaves ``model`` as it was (PyTorch's
        default); True changes and returns ``model`` itself.
    calibration : array, tuple of arrays, or iterable of batches, optional
        Inputs run once through the twin (:func:`observe_ranges`) so every
        activation quantizer starts from a measured range, and the twin can
        be evaluated before any training (then it is post-training
        quantization). Without it, the first training batch sets them.
    """
    if method not in ("minmax", "lsq"):
        raise ValueError(f"method must be 'minmax' or 'lsq', got {method!r}")
    twin = model if inplace else copy.deepcopy(model)
    w_names, targets = weight_names(twin), activation_targets(twin)
    w_bits = _bits_for(weight_bits, w_names, "weight")
    a_bits = _bits_for(act_bits, targets, "quantized module")
    if first_last_bits is not None:
        first_last_bits = check_bits(first_last_bits)
        for name in {w_names[0], w_names[-1]}:
            w_bits[name] = first_last_bits
        for name in targets[-2:]:  # the last layer's input and its output
            a_bits[name] = first_last_bits
    params = _weighted_params(twin, list(w_bits))
    modules = _target_modules(twin, list(a_bits))
    for name, b in w_bits.items():
        param = params[name]
        if method == "lsq":
            quantizer: Any = LSQ(b, signed=True, role="weight")
            with no_grad():
                quantizer.initialize(param.value())  # s = 2 mean|w| / sqrt(Q_P)
        else:
            axis = 0 if per_channel else None
            channels = param.shape[0] if per_channel else 1
            quantizer = FakeQuantize(b, symmetric=True, axis=axis, channels=channels)
        param.add_transform(quantizer)
    for name, b in a_bits.items():
        module = modules[name]
        if method == "lsq":
            signed = not is_nonnegative(module)
            module.add_output_transform(LSQ(b, signed=signed, role="activation"))
        else:
            module.add_output_transform(ActivationQuantize(b))
    if calibration is not None:
        observe_ranges(twin, calibration)
    return twin


def observe_ranges(model: Module, batches: Any, batch_size: int = 256) -> Module:
    """Let a QAT twin's activation quantizers see ``batches``, layer after layer, without training.

    The model runs in eval mode (BatchNorm statistics untouched, Dropout
    off) while its ``ActivationQuantize`` transforms stay in training mode,
    so each one's observer records the outputs that reach it through the
    quantizers before it; ``LSQ`` step sizes that are not yet initialised
    take their first batch. Nothing is learned. In place; returns ``model``.
    """
    was_training = model.training
    model.eval()
    quantizers = [t for m in model.modules() for t in m.output_transforms]
    for t in quantizers:
        t.training = True
    try:
        seen = 0
        for x in calibration_inputs(batches, batch_size):
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("observe_ranges: the calibration set has no batch")
    finally:
        model.train(was_training)
    return model


def freeze_quantizers(model: Module) -> Module:
    """Fix every scale: weight quantizers keep their current scale, observers stop.

    After QAT, before evaluating for the record or saving: a
    :class:`FakeQuantize` computes its scale from the current weight one last
    time and freezes it (so ``compression.storage`` can store the weight as
    ``b``-bit integers), and every :class:`ActivationQuantize` stops
    observing (PyTorch ``disable_observer``). LSQ step sizes are parameters:
    they are fixed once the optimizer stops. In place; returns ``model``.
    """
    for _, _, _, param in model.named_parameter_slots():
        for t in param.transforms:
            if isinstance(t, FakeQuantize) and not t.frozen:
                with no_grad():
                    param.value()  # the last recomputation of scale and zero-point
                t.frozen = True
    for module in model.modules():
        for t in module.output_transforms:
            if isinstance(t, ActivationQuantize):
                t.disable_observer()
    return model


def strip_quantization(model: Module, bake: bool = False) -> Module:
    """Remove every quantizer from weights and outputs: back to a float model, in place.

    Parameters
    ----------
    bake : bool, default False
        False: the weights go back to their latent float values (what QAT
        was training underneath). True: they keep their quantized values
        (the model computes with the quantized weights, in float, without
        activation quantization). Other transforms (pruning masks) stay.

    Raises
    ------
    ValueError
        With ``bake``, when a transform other than a ``Mask`` would remain
        on a quantized weight (applying it again to the baked value could
        change it).
    """
    for name, _, _, param in model.named_parameter_slots():
        if not _has_quantizer(param.transforms):
            continue
        others = [t for t in param.transforms if not isinstance(t, WEIGHT_QUANTIZERS)]
        if bake:
            if not all(isinstance(t, Mask) for t in others):
                raise ValueError(
                    f"cannot bake {name}: it also carries {[type(t).__name__ for t in others]}"
                )
            with no_grad():
                param.data = param.value().astype(param.dtype, copy=True)
        param.transforms = others
        param.grad = None
    for module in model.modules():
        kept = [t for t in module.output_transforms if not isinstance(t, OUTPUT_QUANTIZERS)]
        module.output_transforms[:] = kept
    return model


def weight_bits(transforms: list[Any]) -> int:
    """The width a weight is stored at, from its transforms: 32 when none quantizes it.

    ``FakeQuantize``/``LSQ``/``SharedWeights``: their ``bits``; binary 1,
    ternary 2. The last such transform wins (it is the one applied last).
    """
    bits = 32
    for t in transforms:
        if isinstance(t, (*WEIGHT_QUANTIZERS, SharedWeights)):
            bits = t.bits
        elif isinstance(t, BinaryWeights):
            bits = 1
        elif isinstance(t, TernaryWeights):
            bits = 2
    return bits


def bit_widths(model: Module) -> dict[str, int]:
    """Each ``Conv2d``/``Linear`` weight's width (32 when float) and each quantized output's.

    Keys are ``"1.weight"`` and ``"2.output"`` (the output of module ``"2"``),
    in model order: the line every quantized result should state. Weights
    shared by k-means count ``log2(k)`` bits, binary 1 and ternary 2.
    """
    widths: dict[str, int] = {}
    weighted = {id(m) for _, m in prunable_layers(model)}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if id(module) in weighted:
            widths[prefix + "weight"] = weight_bits(module.weight.transforms)
        for t in module.output_transforms:
            if isinstance(t, OUTPUT_QUANTIZERS):
                widths[prefix + "output"] = t.bits
    return widths
