"""Bias correction (Nagel et al. 2019), and min-max quantization of one weight array.

Rounding errors ``eps = W_hat - W`` do not average out in a layer's output:
the output moves by ``E[y_hat - y] = eps E[x]`` per channel (``E[x]`` is far
from zero after a ReLU). Measuring that mean shift on calibration data and
subtracting it from the bias removes it (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", Sec. 3.2
eq. (1) and Sec. 4.2); see :func:`bias_correction`.

:func:`quantize_weight_array` is min-max quantization of one weight array
(array math, no transform; the weight *transform* used for
quantization-aware training lives in ``fake_quant.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from compression.quantization.affine import fake_quantize, qparams, qrange
from tinynet.grad_mode import no_grad
from tinynet.layers import Conv2d, Linear
from tinynet.module import Module, Sequential

__all__ = ["bias_correction", "quantize_weight_array"]

WEIGHTED = (Linear, Conv2d)


# --------------------------------------------------- weight quantization
def quantize_weight_array(
    w: Any,
    bits: int,
    per_channel: bool = True,
    symmetric: bool = True,
    narrow_range: bool = False,
    axis: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min-max quantize one weight array: ``(w_hat, scale, zero_point)``.

    The range is the array's own minimum and maximum (per output channel
    along ``axis``, or over the whole tensor); :func:`~compression.quantization.qparams`
    turns it into a scale and zero-point and
    :func:`~compression.quantization.fake_quantize` rounds (PyTorch: a
    ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` followed by
    ``fake_quantize_per_tensor_affine`` / ``per_channel_affine``)::

        scale, zero_point = qparams(min(w[c]), max(w[c]), bits, symmetric, narrow_range)
        w_hat[c] = (clip(round(w[c] / scale[c]) + zero_point[c], qmin, qmax) - zero_point[c]) * scale[c]

    Every weight lies inside its range, so ``|w_hat - w| <= scale / 2``
    everywhere (no clipping error). This is plain array math: the result is
    a new array, typically written into a copy of the model
    (``layer.weight.data = w_hat``). Quantization-aware training uses the
    weight *transform* of ``fake_quant.py`` instead, whose rounding is
    redone at every forward pass.

    Parameters
    ----------
    w : ndarray of float, shape (C_out, ...)
        A ``Linear`` weight ``(out, in)`` or ``Conv2d`` weight ``(C_out, C_in, kh, kw)``.
    bits : int in 2..16
    per_channel : bool, default True
        One scale per slice along ``axis`` (per output channel); else one
        for the whole tensor.
    symmetric : bool, default True
        Signed grid, zero-point 0 (the usual choice for weights).
    narrow_range : bool, default False
        Drop the lowest integer (``[-127, 127]`` at 8 bits).
    axis : int, default 0
        The channel axis for ``per_channel`` (ignored otherwise).

    Returns
    -------
    w_hat : ndarray, shape and dtype of ``w``
        The dequantized weights (each is ``(q - zero_point) * scale``).
    scale : ndarray of float32, shape (C,) per channel or () per tensor
    zero_point : ndarray of int64, same shape as ``scale``

    Examples
    --------
    Four bits, narrow (``[-7, 7]``), per channel: row 0 has ``max|w| = 0.7``
    and ``scale = 0.7 / 7 = 0.1``; row 1 has ``scale = 0.14 / 7 = 0.02``:

    >>> w = np.array([[-0.7, 0.33, 0.12], [0.14, -0.045, 0.066]], dtype=np.float32)
    >>> w_hat, scale, zp = quantize_weight_array(w, 4, narrow_range=True)
    >>> w_hat.round(4), scale.round(4)
    (array([[-0.7 ,  0.3 ,  0.1 ],
           [ 0.14, -0.04,  0.06]], dtype=float32), array([0.1 , 0.02], dtype=float32))

    Per tensor, row 1 shares row 0's step of 0.1 and keeps one level in three:

    >>> quantize_weight_array(w, 4, per_channel=False, narrow_range=True)[0][1].round(4)
    array([0.1, 0. , 0.1], dtype=float32)
    """
    w = np.asarray(w)
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    if w.size == 0:
        raise ValueError(f"cannot quantize an empty weight array (shape {w.shape})")
    if not per_channel:
        scale, zero_point = qparams(w.min(), w.max(), bits, symmetric, narrow_range)
        channel_axis = None
    else:
        if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
            raise TypeError(f"axis must be an int, got {type(axis).__name__}")
        if not -w.ndim <= axis < w.ndim:
            raise ValueError(f"axis {axis} does not exist for a weight of shape {w.shape}")
        channel_axis = int(axis) % w.ndim
        others = tuple(a for a in range(w.ndim) if a != channel_axis)
        scale, zero_point = qparams(
            w.min(axis=others), w.max(axis=others), bits, symmetric, narrow_range
        )
    qmin, qmax = qrange(bits, signed=symmetric, narrow_range=narrow_range)
    w_hat = fake_quantize(w, scale, zero_point, qmin, qmax, axis=channel_axis)
    return w_hat, scale, zero_point


# -------------------------------------------------------- bias correction
def _check_pair(float_model: Module, quantized_model: Module) -> None:
    """Raise unless the two models are flat Sequentials with the same layers and weight shapes."""
    for name, model in (("float_model", float_model), ("quantized_model", quantized_model)):
        if not isinstance(model, Sequential):
            raise ValueError(f"{name} must be a tinynet Sequential, got {type(model).__name__}")
    kinds_f = [type(m).__name__ for m in float_model]
    kinds_q = [type(m).__name__ for m in quantized_model]
    if kinds_f != kinds_q:
        raise ValueError(
            f"float_model and quantized_model must have the same layers, got {kinds_f} and "
            f"{kinds_q} (fold BatchNorm in both, or quantize a copy of the folded float model)"
        )
    for i, (f, q) in enumerate(zip(float_model, quantized_model)):
        if isinstance(f, WEIGHTED) and f.weight.shape != q.weight.shape:
            raise ValueError(
                f"layer {i}: weight shapes differ, {f.weight.shape} (float) and "
                f"{q.weight.shape} (quantized)"
            )


def _batched(layer_fn: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``layer_fn`` applied to ``x`` in chunks of ``batch_size`` rows (bounds the memory of im2col)."""
    return np.concatenate([layer_fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _correction_targets(q_layers: list[Module], layers: Iterable[int | str] | None) -> set[int]:
    """Indices of the layers to correct (default: every Linear/Conv2d), each with a plain bias."""
    if layers is None:
        targets = {i for i, m in enumerate(q_layers) if isinstance(m, WEIGHTED)}
    else:
        targets = set()
        for name in layers:
            i = int(name) if str(name).lstrip("-").isdigit() else None
            if i is None or not 0 <= i < len(q_layers) or not isinstance(q_layers[i], WEIGHTED):
                raise ValueError(f"layers names {name!r}, not the index of a Linear or Conv2d")
            targets.add(i)
    for i in sorted(targets):
        if q_layers[i].bias is None:
            raise ValueError(
                f"layer {i} has no bias to correct: build it with bias=True (folding BatchNorm "
                "gives every folded layer a bias)"
            )
        if q_layers[i].bias.transforms:
            raise ValueError(
                f"layer {i}'s bias carries transforms; bias correction writes its data"
            )
    return targets


def bias_correction(
    float_model: Module,
    quantized_model: Module,
    calibration_x: Any,
    layers: Iterable[int | str] | None = None,
    batch_size: int = 256,
) -> dict[int, np.ndarray]:
    """Remove the mean output shift that weight quantization causes, per channel, in place.

    Nagel et al. 2019 ("Data-Free Quantization Through Weight Equalization
    and Bias Correction", Sec. 3.2 eq. (1), Sec. 4.2), the empirical variant.
    For each ``Linear`` / ``Conv2d`` ``l``, front to back, with ``x`` the
    calibration inputs *as the quantized model sees them* at layer ``l``
    (after the earlier layers' corrections)::

        y     = W x + b          the float layer          (N, C) or (N, C, OH, OW)
        y_hat = W_hat x + b_hat  the quantized layer      same shape
        shift[c] = mean over N (and OH, OW) of (y_hat - y)[c]     = ((W_hat - W) E[x])[c] + b_hat - b
        b_hat <- b_hat - shift                                     (C,)

    after which the quantized layer's mean output on the calibration data
    equals the float layer's, channel by channel. The pre-activation outputs
    are compared (``forward``, without output transforms); the input of the
    next layer is the corrected quantized layer's full output (``__call__``,
    activation fake-quantization included). Only the biases of
    ``quantized_model`` change; the weights get their effective values
    through ``param.value()``, so ``quantized_model`` may hold quantized
    arrays (:func:`quantize_weight_array`) or weight transforms.

    Correcting on the quantized model's own inputs isolates each layer's
    weight error; comparing with the float model's activations instead
    would also fold the shifts of earlier layers into this bias. Both
    models run in eval mode under ``no_grad`` (their modes are restored).

    Parameters
    ----------
    float_model : Sequential
        The float reference (folded, if the quantized model was folded).
    quantized_model : Sequential
        Same layers and shapes, quantized weights; its biases are changed.
    calibration_x : ndarray, shape (N, ...)
        Model inputs (a few hundred examples from the training data).
    layers : iterable of int or str, optional
        Indices of the layers to correct (default: every Linear and Conv2d).
    batch_size : int, default 256
        Rows per forward call.

    Returns
    -------
    dict of int -> ndarray of shape (C,)
        The shift subtracted from each corrected layer's bias (Nagel et
        al.'s Fig. 3 plots these per channel).

    Raises
    ------
    ValueError
        When the models' layers or weight shapes differ, a named layer is
        not a Linear/Conv2d, or has no bias (fold BatchNorm first, which
        gives one), or its bias carries transforms.

    Examples
    --------
    >>> from tinynet import Linear
    >>> f, q = Sequential(Linear(2, 1, bias=True)), Sequential(Linear(2, 1, bias=True))
    >>> f[0].weight.data[:] = [[1.0, 1.0]]; q[0].weight.data[:] = [[1.5, 1.0]]
    >>> f[0].bias.data[:] = 0.0; q[0].bias.data[:] = 0.0
    >>> x = np.array([[2.0, 0.0], [0.0, 4.0], [4.0, 2.0]], dtype=np.float32)   # E[x] = (2, 2)
    >>> bias_correction(f, q, x)          # shift = (1.5 - 1) * E[x_0] = 1
    {0: array([1.])}
    >>> q[0].bias.data
    array([-1.], dtype=float32)
    """
    _check_pair(float_model, quantized_model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    q_layers, f_layers = list(quantized_model), list(float_model)
    targets = _correction_targets(q_layers, layers)
    x = np.asarray(calibration_x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"calibration_x must hold at least one example, got shape {x.shape}")

    modes = [(m, m.training) for model in (float_model, quantized_model) for m in model.modules()]
    shifts: dict[int, np.ndarray] = {}
    try:
        float_model.eval()
        quantized_model.eval()
        with no_grad():
            for i, q_layer in enumerate(q_layers[: max(targets, default=-1) + 1]):
                if i in targets:
                    y = _batched(f_layers[i].forward, x, batch_size)
                    y_hat = _batched(q_layer.forward, x, batch_size)
                    # Conv2d: channels on axis 1 of (N, C, OH, OW); Linear: the last axis.
                    channel = 1 if isinstance(q_layer, Conv2d) else y.ndim - 1
                    axes = tuple(a for a in range(y.ndim) if a != channel)
                    shift = np.mean(y_hat - y, axis=axes, dtype=np.float64)  # (C,)
                    bias = q_layer.bias
                    bias.data = (bias.data - shift).astype(bias.data.dtype)
                    shifts[i] = shift
                x = _batched(q_layer, x, batch_size)  # what the next quantized layer sees
    finally:
        for module, training in modes:
            module.training = training
    return shifts
