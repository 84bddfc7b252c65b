"""Integer-only inference: run a trained float ``Sequential`` on integers alone.

:func:`compile_integer` turns a float tinynet model (``Flatten``,
``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``) into an
:class:`IntegerSequential` (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR):

1. **Calibrate.** Run the float model on calibration images and record
   (with a :class:`~compression.quantization.observers.MinMaxObserver`)
   the min and max of the input and of every ``Linear``/``Conv2d`` output
   (after its ReLU, when one follows: the ReLU is fused). Each range gives
   an activation quantizer ``r = S (q - Z)`` (PyTorch ``MinMaxObserver``
   semantics, :func:`~compression.quantization.affine.qparams`), uint8 by
   default. ``MaxPool2d``, ``AvgPool2d``, ``Flatten`` keep their input's.
2. **Quantize the weights** symmetrically to int8 (narrow range
   ``[-127, 127]``, zero-point 0), one scale per output channel by default;
   biases to int32 with scale ``S_in * S_w`` and zero-point 0; each layer's
   real multiplier ``M = S_in * S_w / S_out`` to a fixed-point ``(M0, shift)``.
3. **Run**: quantize the float input once, then every layer maps integers to
   integers (``integer_layers``: centre, exact int32 accumulation, bias,
   fixed-point rescale, zero-point, clamp), and only the last layer's
   output is turned back into float logits ``S (q - Z)``.

Between the layers nothing but integers flows: no float multiply touches an
activation. (The accumulation *uses* float32 BLAS as an exact integer
machine, see ``integer_ops``; every value it produces is an integer, proved
exact and tested bit for bit against int64.)

:func:`fake_quant_reference` evaluates the *fake-quantized twin*: the same
model in float32 with ``fake_quantize`` at the same points with the same
parameters. Both compute ``round(acc * M)`` per output value, and agree to
within one integer step per layer: the twin rounds ``S1 S2 acc / S3`` in
float (half to even, after float rounding), the engine rounds
``acc * M0 2^-31 2^-shift`` in integers. With ``rounding="single"`` they
differ only where the exact value lies within float error of a half-way
point (almost never); gemmlowp's default double rounding
(``integer_ops.rescale``) is off by one step a little more often, most on
small accumulators. Different integers in one layer then propagate, so
whole-model logits can differ by a few steps, and a prediction can flip
when two logits are nearly tied.

Example
-------
>>> engine = compile_integer(model, data.x_train[:1000])        # doctest: +SKIP
>>> logits = engine(data.x_heldout)                              # doctest: +SKIP
>>> twin = fake_quant_reference(engine, data.x_heldout)          # doctest: +SKIP
>>> engine.explain(data.x_heldout[:1], 0)["acc"]                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from compression.quantization.integer_layers import (
    ActQuant,
    IntegerConv2d,
    IntegerLayer,
    IntegerLinear,
)
from compression.quantization.integer_pooling import (
    IntegerAvgPool2d,
    IntegerFlatten,
    IntegerMaxPool2d,
    IntegerReLU,
)
from compression.quantization.observers import MinMaxObserver, Observer
from tinynet.grad_mode import no_grad
from tinynet.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
)
from tinynet.module import Module, Sequential

__all__ = ["IntegerSequential", "compile_integer", "fake_quant_reference"]

#: The engine stores activations and weights in 8-bit integers.
ENGINE_MIN_BITS, ENGINE_MAX_BITS = 2, 8
SUPPORTED = (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Dropout)


class IntegerSequential:
    """A chain of integer layers between a quantized input and dequantized logits.

    Parameters
    ----------
    input_quant : ActQuant
        How the float input is quantized (from calibration).
    layers : list of IntegerLayer
        Each maps integers to integers; layer ``i``'s ``out_quant`` is layer
        ``i + 1``'s ``in_quant``.
    block_size : int
        Images per block in :meth:`__call__` (:func:`compile_integer` sets it
        with :func:`block_size_for`).

    Notes
    -----
    ``engine(x)`` = ``dequantize(forward_int(quantize_input(x)))``:
    ``(N, ...)`` float32 in, ``(N, classes)`` float32 out.
    """

    def __init__(
        self, input_quant: ActQuant, layers: list[IntegerLayer], block_size: int = 128
    ) -> None:
        self.input_quant = input_quant
        self.layers = list(layers)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        self.block_size = block_size

    @property
    def output_quant(self) -> ActQuant:
        """The last layer's quantizer: logits are ``S (q - Z)`` with it."""
        return self.layers[-1].out_quant if self.layers else self.input_quant

    def quantize_input(self, x: Any) -> np.ndarray:
        """The float input as integers: ``clip(round(x / S) + Z, qmin, qmax)``."""
        return self.input_quant.quantize(x)

    def forward_int(self, q: np.ndarray) -> np.ndarray:
        """Integers in, integers out: every layer in turn."""
        for layer in self.layers:
            q = layer.forward(q)
        return q

    def __call__(self, x: Any) -> np.ndarray:
        """Float logits: quantize the input, run on integers, dequantize the output.

        The batch runs ``block_size`` images at a time. Requantizing makes
        several passes over each int32/int64 accumulator (multiply, round,
        shift, clamp); on a block whose accumulators are a few MB every
        pass stays in the processor's cache, while on a batch of 1000 each
        pass goes to main memory and each new array costs page faults
        (:func:`block_size_for` picks the size). The numbers are the same
        either way: each image is computed independently.
        """
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            raise ValueError(f"expected a batch of at least one input, got shape {x.shape}")
        blocks = []
        for start in range(0, len(x), self.block_size):
            q = self.quantize_input(x[start : start + self.block_size])
            blocks.append(self.output_quant.dequantize(self.forward_int(q)))
        return np.concatenate(blocks)

    def predict(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """Predicted classes (argmax of the logits), in batches of ``batch_size``."""
        x = np.asarray(x)
        return np.concatenate(
            [self(x[i : i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)]
        )

    def explain(self, x: Any, index: int) -> dict[str, Any]:
        """The integers of one layer for input ``x``, step by step (for the lesson).

        ``index`` is the position in :attr:`layers` of a ``Linear`` or
        ``Conv2d`` layer (``repr(engine)`` lists them). The input is run in
        integers through the layers before it; the returned dictionary is
        :meth:`IntegerLinear.steps`'s (``q_in``, ``x = q_in - Z_in``,
        ``w_q``, int32 ``acc``, ``bias_q``, ``M0``, ``shift``, ``y``,
        ``q_out``...), plus ``layer`` and ``q_out_float`` (``S (q_out - Z)``).
        """
        layer = self.layers[index]
        if not hasattr(layer, "steps"):
            raise ValueError(
                f"layer {index} ({type(layer).__name__}) has no weights to explain; choose one "
                f"of {[i for i, lay in enumerate(self.layers) if hasattr(lay, 'steps')]}"
            )
        q = self.forward_int_until(self.quantize_input(x), index)
        steps = layer.steps(q)
        steps["layer"] = layer
        steps["q_out_float"] = layer.out_quant.dequantize(steps["q_out"])
        return steps

    def forward_int_until(self, q: np.ndarray, index: int) -> np.ndarray:
        """The integer input of layer ``index``."""
        for layer in self.layers[:index]:
            q = layer.forward(q)
        return q

    def __iter__(self) -> Iterator[IntegerLayer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> IntegerLayer:
        return self.layers[index]

    def __repr__(self) -> str:
        lines = [f"  input: {self.input_quant}"]
        lines += [f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers)]
        lines.append(f"  output: {self.output_quant}, dequantized to float32 logits")
        return "IntegerSequential(\n" + "\n".join(lines) + "\n)"


# ------------------------------------------------------------------ compiling
def _flat_layers(model: Module) -> list[tuple[str, Module]]:
    """``(index, layer)`` of every layer, nested ``Sequential``s expanded, checked."""
    if not isinstance(model, Sequential):
        raise TypeError(f"compile_integer expects a tinynet Sequential, got {type(model).__name__}")
    out: list[tuple[str, Module]] = []
    for name, layer in model.named_children():
        if isinstance(layer, Sequential):
            out += [(f"{name}.{sub}", child) for sub, child in _flat_layers(layer)]
        elif isinstance(layer, BatchNorm1d | BatchNorm2d):
            raise ValueError(
                f"layer {name} is {type(layer).__name__}: fold it first "
                "(compression.quantization.folding.fold_batchnorm(model)), the integer engine "
                "runs the folded Linear/Conv2d"
            )
        elif not isinstance(layer, SUPPORTED):
            raise ValueError(
                f"layer {name} is {type(layer).__name__}, which the integer engine does not "
                "support (supported: Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten; "
                "Dropout is skipped)"
            )
        elif isinstance(layer, Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            raise ValueError(f"layer {name}: only Flatten(start_dim=1, end_dim=-1) is supported")
        elif not isinstance(layer, Dropout):  # Dropout is the identity at inference
            out.append((name, layer))
    return out


def _plan(layers: list[tuple[str, Module]]) -> list[tuple[str, Module, bool]]:
    """Group each Linear/Conv2d with a ReLU right after it: ``(source, layer, fused_relu)``."""
    plan, i = [], 0
    while i < len(layers):
        name, layer = layers[i]
        fuse = (
            isinstance(layer, Linear | Conv2d)
            and i + 1 < len(layers)
            and isinstance(layers[i + 1][1], ReLU)
        )
        source = f"{name} {type(layer).__name__}"
        if fuse:
            source += f" + {layers[i + 1][0]} ReLU"
        plan.append((source, layer, fuse))
        i += 2 if fuse else 1
    return plan


#: Bytes of one block's largest int64 accumulator: small enough to stay in cache.
BLOCK_BYTES = 2**23


def block_size_for(values_per_image: int) -> int:
    """Images per block so the largest int64 accumulator is about 8 MB: 64..512.

    LeNet-5's first convolution gives 6*28*28 = 4,704 values per image
    (222 images per block); LeNet-300-100's widest layer 300 (512 images).

    A trade-off, measured with ``benchmarks/bench_integer.py``: smaller
    blocks keep requantization in cache (LeNet-5 single-threaded is fastest
    with 64-192 images), but every block makes its own BLAS calls, and each
    multithreaded BLAS call waits for all its threads -- on a busy machine a
    whole scheduler time slice. With 2 BLAS threads and one core busy,
    blocks of 64 ran LeNet-5 4x slower than float32, blocks of 256 at 0.9x.
    """
    return int(np.clip(BLOCK_BYTES // (8 * max(values_per_image, 1)), 64, 512))


def _calibrate(
    plan: list[tuple[str, Module, bool]],
    x: np.ndarray,
    batch_size: int,
    observer: Callable[[], Observer],
) -> tuple[Observer, list[Observer | None], int]:
    """Observe the input and every Linear/Conv2d output (after a fused ReLU).

    Also returns the largest number of output values per image (for the block size).
    """
    x_obs = observer()
    obs = [observer() if isinstance(layer, Linear | Conv2d) else None for _, layer, _ in plan]
    largest = 1
    with no_grad():
        for start in range(0, len(x), batch_size):
            h = x[start : start + batch_size]
            x_obs.observe(h)
            for (_, layer, relu), o in zip(plan, obs):
                h = layer(h)
                if relu:
                    h = np.maximum(h, h.dtype.type(0))
                if o is not None:
                    o.observe(h)
                    largest = max(largest, h[0].size)
    return x_obs, obs, largest


def _check_bits(name: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(bits).__name__} {bits!r}")
    if not ENGINE_MIN_BITS <= bits <= ENGINE_MAX_BITS:
        raise ValueError(
            f"{name} must lie in {ENGINE_MIN_BITS}..{ENGINE_MAX_BITS} for the integer engine "
            f"(it stores 8-bit integers), got {bits}"
        )
    return int(bits)


def compile_integer(
    model: Module,
    x_calib: Any,
    weight_bits: int = 8,
    act_bits: int = 8,
    per_channel: bool = True,
    narrow_range: bool = True,
    signed_activations: bool = False,
    rounding: str = "double",
    observer: Callable[[], Observer] = MinMaxObserver,
    batch_size: int = 1000,
) -> IntegerSequential:
    """Convert a trained float ``Sequential`` into an integer-only :class:`IntegerSequential`.

    Parameters
    ----------
    model : Sequential
        Of ``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``,
        ``Flatten`` (``Dropout`` is skipped; fold ``BatchNorm`` first). The
        effective weights (``weight.value()``, after any transforms) are used.
    x_calib : ndarray, shape (N, ...)
        Calibration inputs; the activation ranges are their min and max.
    weight_bits, act_bits : int in 2..8
        Bits of the weights (signed, symmetric) and of every activation,
        the input and the output logits included.
    per_channel : bool
        One weight scale per output channel (else one per layer).
    narrow_range : bool
        Weights in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (``[-127, 127]``), symmetric
        around 0 as Jacob et al. recommend.
    signed_activations : bool
        int8 activations (zero-point shifted by ``-2^(b-1)``) instead of uint8.
    rounding : {"double", "single"}
        Of the fixed-point rescale (:func:`~compression.quantization.integer_ops.rescale`):
        gemmlowp's two roundings (TensorFlow Lite's default) or one.
    observer : callable returning an Observer, default MinMaxObserver
        Records each activation range on the calibration data
        (:mod:`compression.quantization.observers`; per tensor).
    batch_size : int
        Calibration batch size.

    Returns
    -------
    IntegerSequential

    Raises
    ------
    ValueError
        For an unsupported layer (BatchNorm: fold it first), bits outside
        2..8, empty calibration data.
    OverflowError
        When a layer's int32 accumulator could overflow.
    """
    weight_bits = _check_bits("weight_bits", weight_bits)
    act_bits = _check_bits("act_bits", act_bits)
    x_calib = np.asarray(x_calib, dtype=np.float32)
    if len(x_calib) == 0:
        raise ValueError("x_calib is empty: calibration needs at least one input")
    plan = _plan(_flat_layers(model))
    was_training = model.training
    model.eval()
    try:
        x_obs, obs, largest = _calibrate(plan, x_calib, batch_size, observer)
    finally:
        model.train(was_training)

    def quant(o: Observer) -> ActQuant:
        x_min, x_max = o.range()
        return ActQuant.from_range(x_min, x_max, act_bits, signed=signed_activations)

    current = input_quant = quant(x_obs)
    layers: list[IntegerLayer] = []
    for (source, layer, relu), o in zip(plan, obs):
        if isinstance(layer, Linear | Conv2d):
            W = layer.weight.value()
            b = layer.bias.value() if layer.bias is not None else None
            args = (W, b, current, quant(o), weight_bits, per_channel, narrow_range, relu, rounding)
            if isinstance(layer, Linear):
                new = IntegerLinear(*args)
            else:
                new = IntegerConv2d(*args, stride=layer.stride, padding=layer.padding)
        elif isinstance(layer, MaxPool2d):
            new = IntegerMaxPool2d(current, layer.kernel_size, layer.stride)
        elif isinstance(layer, AvgPool2d):
            new = IntegerAvgPool2d(current, layer.kernel_size, layer.stride)
        elif isinstance(layer, ReLU):
            new = IntegerReLU(current)
        else:
            new = IntegerFlatten(current)
        new.source = source
        layers.append(new)
        current = new.out_quant
    return IntegerSequential(input_quant, layers, block_size_for(largest))


def fake_quant_reference(engine: IntegerSequential, x: Any) -> np.ndarray:
    """The fake-quantized twin's logits: float32, ``fake_quantize`` where the engine quantizes.

    ``h = fake_quantize(x, S_in, Z_in)``, then each layer's ``forward_float``
    (float32 math on fake-quantized weights and bias, output fake-quantized
    with the same ``(S, Z)`` as the engine's). This is what simulated
    quantization (PyTorch's QAT modules, our fake-quant transforms)
    computes; the engine should give the same predictions.
    """
    h = engine.input_quant.fake_quantize(np.asarray(x, dtype=np.float32))
    for layer in engine.layers:
        h = layer.forward_float(h)
    return h
