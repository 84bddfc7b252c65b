"""The layers of the integer engine: each step written as integer array math.

Every activation tensor between two layers is an integer array ``q``
(uint8, or int8) standing for the real numbers (Jacob et al. 2018, eq. 1)::

    r = S * (q - Z)          S: scale (float32), Z: zero-point (an integer)

described by an :class:`ActQuant`. A ``Linear`` or ``Conv2d`` layer with
input ``(S1, Z1)``, int8 weights ``w_q`` of scale ``S2`` (per output channel
``c``: ``S2[c]``, zero-point 0) and output ``(S3, Z3)`` computes, for one
output value (Jacob et al. eq. 4 with ``Z2 = 0``)::

    1. centre       x   = q1 - Z1                       integers in [qmin - Z1, qmax - Z1]
    2. accumulate   acc = sum_k x[k] * w_q[c, k]        exact, int32
    3. bias         acc = acc + b_q[c]                  b_q = round(b / (S1 * S2[c])), int32
    4. rescale      y   = round(acc * M[c])             M[c] = S1 * S2[c] / S3 = M0 2^-31 2^-shift
    5. zero-point   q3  = clamp(y + Z3, lo, qmax)       lo = qmin, or Z3 with a fused ReLU

Why these steps. The real output is ``S3 (q3 - Z3) = sum_k S1 x[k] S2 w_q[c, k]
+ b``, so ``q3 - Z3 = (S1 S2 / S3) (acc_without_bias + b / (S1 S2))`` -- the
bias lands in the accumulator only when quantized with scale ``S1 * S2``
and zero-point 0 (step 3). Step 1 subtracts the input zero-point *before*
multiplying: the readable form of Jacob et al.'s eq. 7, which instead
expands ``sum (q1 - Z1) q2 = sum q1 q2 - Z1 sum q2`` to keep the inner loop
on raw uint8 (the same integers; here the centred values are held in
float32 for BLAS, see ``integer_ops``). It also makes zero padding right:
a padded pixel must stand for the real 0, i.e. ``q = Z1``, i.e. ``x = 0``.

*ReLU for free.* A ReLU after the layer is observed (calibrated) on its
output, whose minimum is 0, so ``Z3`` is the smallest integer (0 for
uint8). ``ReLU(r) = max(r, 0)`` is ``max(q3, Z3)`` in integers: clamping
step 5 at ``Z3`` instead of ``qmin`` *is* the ReLU.

*Pooling, flatten and a ReLU that could not be fused* act on the integers
directly and keep the input's ``(S, Z)``: see ``integer_pooling``.

Each layer also has ``forward_float``: the *fake-quantized twin*, the same
layer in float32 with ``fake_quantize`` at the same points with the same
parameters, against which the integers are tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.quantization.affine import fake_quantize, qparams, qrange, quantize
from compression.quantization.integer_ops import (
    INT32_MAX,
    INT32_MIN,
    ROUNDINGS,
    matmul_exact,
    quantize_multiplier,
    rescale,
)
from tinynet import functional as F

__all__ = ["ActQuant", "IntegerConv2d", "IntegerLayer", "IntegerLinear"]


@dataclass(frozen=True)
class ActQuant:
    """How one activation tensor is held as integers: ``r = scale * (q - zero_point)``.

    ``q`` lies in ``[qmin, qmax]``: ``[0, 2^b - 1]`` (stored as uint8) or,
    for signed activations, ``[-2^(b-1), 2^(b-1) - 1]`` (int8).
    """

    scale: float
    zero_point: int
    qmin: int
    qmax: int
    bits: int

    @classmethod
    def from_range(cls, x_min: float, x_max: float, bits: int, signed: bool = False) -> ActQuant:
        """Affine parameters covering ``[x_min, x_max]`` (PyTorch ``MinMaxObserver``).

        Unsigned: :func:`~compression.quantization.affine.qparams`. Signed: the
        same scale, and the grid shifted down by ``2^(b-1)`` (``Z - 128`` for int8).
        """
        scale, zero_point = qparams(x_min, x_max, bits)
        qmin, qmax = qrange(bits, signed=signed)
        offset = qmin  # 0 unsigned, -2^(b-1) signed
        return cls(float(scale), int(zero_point) + offset, qmin, qmax, bits)

    @property
    def dtype(self) -> type:
        """uint8 or int8: the storage of every integer in ``[qmin, qmax]``."""
        return np.uint8 if self.qmin >= 0 else np.int8

    @property
    def max_centred(self) -> int:
        """``max |q - Z|`` over the grid: the bound used to size exact float32 chunks."""
        return max(self.zero_point - self.qmin, self.qmax - self.zero_point)

    def quantize(self, x: Any) -> np.ndarray:
        """``clip(round(x / S) + Z, qmin, qmax)`` as uint8 / int8.

        The float32 operations of :func:`~compression.quantization.affine.quantize`
        (``x * (1/S)``, round half to even, ``+ Z``, clip) in place, without its
        int64 detour; the tests check both give the same integers.
        """
        t = np.asarray(x, dtype=np.float32) * (np.float32(1) / np.float32(self.scale))
        np.rint(t, out=t)
        t += np.float32(self.zero_point)
        np.clip(t, self.qmin, self.qmax, out=t)
        return t.astype(self.dtype)

    def dequantize(self, q: Any) -> np.ndarray:
        """``S * (q - Z)`` in float32."""
        return (np.asarray(q, dtype=np.int64) - self.zero_point).astype(np.float32) * np.float32(
            self.scale
        )

    def fake_quantize(self, x: Any) -> np.ndarray:
        """``dequantize(quantize(x))`` in float (PyTorch ``fake_quantize_per_tensor_affine``)."""
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax)

    def __str__(self) -> str:
        kind = "uint" if self.qmin >= 0 else "int"
        return f"{kind}{self.bits} S={self.scale:.4g} Z={self.zero_point}"


class IntegerLayer:
    """Base of the engine's layers: ``forward(q) -> q`` on integers, ``forward_float`` its twin."""

    in_quant: ActQuant
    out_quant: ActQuant
    source: str = ""  # which layers of the float model it came from, e.g. "0 Conv2d + 1 ReLU"

    def forward(self, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, q: np.ndarray) -> np.ndarray:
        return self.forward(q)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}: {self.in_quant} -> {self.out_quant})"


# --------------------------------------------------------- Linear and Conv2d
class _IntegerWeighted(IntegerLayer):
    """Shared by :class:`IntegerLinear` and :class:`IntegerConv2d`: everything but step 2.

    Parameters
    ----------
    weight : ndarray, shape (C_out, K) or (C_out, C_in, kh, kw)
        The float layer's effective weight (after any transforms).
    bias : ndarray, shape (C_out,), or None
    in_quant, out_quant : ActQuant
        Quantization of the input and of the output (after a fused ReLU).
    weight_bits : int, default 8
        Signed, symmetric (zero-point 0).
    per_channel : bool, default True
        One weight scale ``S2[c]`` per output channel, from each channel's
        ``max|W[c]|``; else one for the whole tensor.
    narrow_range : bool, default True
        Weights in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, symmetric around 0.
    relu : bool, default False
        A ReLU follows and is fused: clamp at ``Z3`` (step 5).
    rounding : {"double", "single"}
        Of the rescale (:func:`~compression.quantization.integer_ops.rescale`).
    stride, padding : int or (int, int)
        :class:`IntegerConv2d` only (keyword arguments).

    Raises
    ------
    OverflowError
        If ``K * max|q - Z1| * max|w_q| + max|b_q|`` exceeds 2^31 - 1: the
        int32 accumulator could overflow for some input.
    """

    #: Step 2's exact integer product ``matmul(a, b, a_max, b_max) -> int32``; a benchmark
    #: may swap in NumPy's plain integer matmul to compare.
    matmul = staticmethod(matmul_exact)

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        in_quant: ActQuant,
        out_quant: ActQuant,
        weight_bits: int = 8,
        per_channel: bool = True,
        narrow_range: bool = True,
        relu: bool = False,
        rounding: str = "double",
    ) -> None:
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.rounding = rounding  # of the rescale, step 4 (integer_ops.rescale)
        W = np.asarray(weight, dtype=np.float32)
        C_out = W.shape[0]
        b = np.zeros(C_out, np.float32) if bias is None else np.asarray(bias, np.float32)
        self.in_quant, self.out_quant, self.relu = in_quant, out_quant, relu
        self.weight_float, self.bias_float = W, b  # kept for the twin and the lesson
        self.weight_bits, self.per_channel = weight_bits, per_channel

        # Weights: symmetric, zero-point 0; one scale per output channel (axis 0).
        axes = tuple(range(1, W.ndim))
        w_min, w_max = (W.min(axis=axes), W.max(axis=axes)) if per_channel else (W.min(), W.max())
        w_scale, _ = qparams(w_min, w_max, weight_bits, symmetric=True, narrow_range=narrow_range)
        self.w_scale = np.broadcast_to(w_scale, (C_out,)).astype(np.float32)  # S2[c]
        self.w_qmin, self.w_qmax = qrange(weight_bits, signed=True, narrow_range=narrow_range)
        self.zeros = np.zeros(C_out, dtype=np.int64)  # zero-points of weights and bias
        self.w_q = quantize(W, self.w_scale, self.zeros, self.w_qmin, self.w_qmax, axis=0)
        self.w_q = self.w_q.astype(np.int8)
        # The same integers as float32, for BLAS (exact: see integer_ops.matmul_exact).
        self.w_f32 = self.w_q.reshape(C_out, -1).astype(np.float32)  # (C_out, K)

        # Bias: int32 with scale S1 * S2[c] and zero-point 0 (Jacob et al. Sec. 2.4).
        self.bias_scale = (np.float32(in_quant.scale) * self.w_scale).astype(np.float32)
        bias_q = quantize(b, self.bias_scale, self.zeros, INT32_MIN, INT32_MAX, axis=0)  # int64

        # Step 4's multiplier, per output channel, in float64 then fixed point.
        self.M = np.float64(in_quant.scale) * self.w_scale.astype(np.float64) / out_quant.scale
        self.M0, self.shift = quantize_multiplier(self.M)

        # Worst-case accumulator: K * max|x| * max|w_q| + max|b_q| must fit in int32.
        self.x_bound = in_quant.max_centred
        self.w_bound = max(-self.w_qmin, self.w_qmax)
        K = self.w_f32.shape[1]
        worst = K * self.x_bound * self.w_bound + int(np.abs(bias_q).max(initial=0))
        if worst > INT32_MAX:
            raise OverflowError(
                f"{type(self).__name__}: the int32 accumulator could overflow: K * max|q - Z| * "
                f"max|w_q| + max|b_q| = {K} * {self.x_bound} * {self.w_bound} + "
                f"{int(np.abs(bias_q).max(initial=0))} = {worst} > 2^31 - 1 "
                "(use fewer activation or weight bits)"
            )
        self.bias_q = bias_q.astype(np.int32)
        self.lo = out_quant.zero_point if relu else out_quant.qmin  # the fused ReLU, step 5

    # per-channel arrays (C,) as (1, C) for (N, C) or (1, C, 1, 1) for (N, C, H, W)
    def _channels(self, a: np.ndarray, ndim: int) -> np.ndarray:
        return a.reshape((1, -1) + (1,) * (ndim - 2))

    def _accumulate(self, x: np.ndarray) -> np.ndarray:
        """Step 2: ``acc = x (*) w_q`` in int32, exactly; layer-specific."""
        raise NotImplementedError

    def _float_op(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check(self, q: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self, q: np.ndarray) -> np.ndarray:
        """Integers in, integers out: steps 1-5 of the module docstring."""
        self._check(q)
        x = q.astype(np.float32) - np.float32(self.in_quant.zero_point)  # 1. exact in float32
        acc = self._accumulate(x)  # 2. int32
        acc += self._channels(self.bias_q, acc.ndim)  # 3.
        return self._requantize(acc)  # 4. and 5.

    def _requantize(self, acc: np.ndarray) -> np.ndarray:
        """Steps 4-5: ``clamp(rescale(acc, M0, shift) + Z3, lo, qmax)`` in the output dtype."""
        M0, shift = self._channels(self.M0, acc.ndim), self._channels(self.shift, acc.ndim)
        y = rescale(acc, M0, shift, self.rounding)
        y += self.out_quant.zero_point
        np.clip(y, self.lo, self.out_quant.qmax, out=y)
        return y.astype(self.out_quant.dtype)

    def steps(self, q: np.ndarray) -> dict[str, Any]:
        """Every intermediate of :meth:`forward` for input ``q``, for the lesson.

        Keys: ``q_in``, ``Z_in``, ``x`` (``q_in - Z_in``, int64), ``w_q``, ``acc``
        (int32, before the bias), ``bias_q``, ``acc_bias``, ``M`` (float64),
        ``M0``, ``shift``, ``y`` (rescaled), ``Z_out``, ``q_out``.
        """
        self._check(q)
        x = q.astype(np.int64) - self.in_quant.zero_point
        acc = self._accumulate(x.astype(np.float32))
        acc_bias = acc + self._channels(self.bias_q, acc.ndim)
        M0, shift = self._channels(self.M0, acc.ndim), self._channels(self.shift, acc.ndim)
        y = rescale(acc_bias, M0, shift, self.rounding)
        return {
            "q_in": q,
            "Z_in": self.in_quant.zero_point,
            "x": x,
            "w_q": self.w_q,
            "acc": acc,
            "bias_q": self.bias_q,
            "acc_bias": acc_bias,
            "M": self.M,
            "M0": self.M0,
            "shift": self.shift,
            "y": y,
            "Z_out": self.out_quant.zero_point,
            "q_out": self._requantize(acc_bias),
        }

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        """The fake-quantized twin: float32 math on fake-quantized weights, bias and output.

        ``W_fq = fake_quantize(W, S2, 0)`` per channel, ``b_fq`` with scale
        ``S1 * S2`` (int32 range), ``out = fake_quantize(relu?(x W_fq + b_fq), S3, Z3)``.
        ``x`` must already be fake-quantized with the input's ``(S1, Z1)``.
        """
        W_fq = fake_quantize(
            self.weight_float, self.w_scale, self.zeros, self.w_qmin, self.w_qmax, axis=0
        )
        b_fq = fake_quantize(
            self.bias_float, self.bias_scale, self.zeros, INT32_MIN, INT32_MAX, axis=0
        )
        out = self._float_op(np.asarray(x, dtype=np.float32), W_fq, b_fq)
        if self.relu:
            out = np.maximum(out, np.float32(0))
        return self.out_quant.fake_quantize(out)

    def __repr__(self) -> str:
        w = f"int{self.weight_bits} {'per-channel' if self.per_channel else 'per-tensor'}"
        relu = " + ReLU" if self.relu else ""
        return (
            f"{type(self).__name__}({self.source}: {self.in_quant} -> {self.out_quant}{relu}; "
            f"weights {w}; M0 in [{self.M0.min()}, {self.M0.max()}], "
            f"shift in [{self.shift.min()}, {self.shift.max()}])"
        )


class IntegerLinear(_IntegerWeighted):
    """``Linear`` in integers: ``acc[n, c] = sum_k (q[n, k] - Z1) * w_q[c, k]`` (shapes (N, K) -> (N, C)).

    Build it from a float layer's ``weight`` ``(C, K)`` and ``bias`` ``(C,)``
    and the input and output :class:`ActQuant`; the other arguments (weight
    bits, per channel, narrow range, fused ReLU, rounding) are listed on
    ``_IntegerWeighted``.
    """

    def _check(self, q: np.ndarray) -> None:
        if q.ndim != 2 or q.shape[1] != self.w_f32.shape[1]:
            raise ValueError(
                f"IntegerLinear expected input of shape (N, {self.w_f32.shape[1]}), got {q.shape}"
            )

    def _accumulate(self, x: np.ndarray) -> np.ndarray:
        return self.matmul(x, self.w_f32.T, self.x_bound, self.w_bound)  # (N, C_out)

    def _float_op(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return x @ W.T + b


class IntegerConv2d(_IntegerWeighted):
    """``Conv2d`` in integers: im2col of the centred input, then the exact chunked matmul.

    ``acc[n, c, i, j] = sum_{ci, a, e} x_pad[n, ci, i*s + a, j*s + e] * w_q[c, ci, a, e]``
    with ``x = q - Z1`` zero-padded (a padded 0 is the real 0). Shapes
    ``(N, C_in, H, W) -> (N, C_out, OH, OW)``; the columns are ordered as
    in :func:`tinynet.functional.conv2d_forward` (batch last for short rows).
    """

    def __init__(
        self, weight: np.ndarray, bias: np.ndarray | None, *args: Any, **kwargs: Any
    ) -> None:
        stride, padding = kwargs.pop("stride", 1), kwargs.pop("padding", 0)
        super().__init__(weight, bias, *args, **kwargs)
        self.kernel_size = tuple(np.shape(weight)[2:])
        self.stride, self.padding = F._pair(stride, "stride"), F._pair(padding, "padding", 0)

    def _check(self, q: np.ndarray) -> None:
        C_in = self.weight_float.shape[1]
        if q.ndim != 4 or q.shape[1] != C_in:
            raise ValueError(
                f"IntegerConv2d expected input of shape (N, {C_in}, H, W), got {q.shape}"
            )

    def _accumulate(self, x: np.ndarray) -> np.ndarray:
        N = x.shape[0]
        C_out, K = self.w_f32.shape
        OH = F.conv_output_size(x.shape[2], self.kernel_size[0], self.stride[0], self.padding[0])
        OW = F.conv_output_size(x.shape[3], self.kernel_size[1], self.stride[1], self.padding[1])
        batch_last = OW < F.BATCH_LAST_BELOW
        cols = F.im2col(x, self.kernel_size, self.stride, self.padding, batch_last)  # (K, N*OH*OW)
        if batch_last:  # one product, columns (oh, ow, n)
            acc = self.matmul(self.w_f32, cols, self.w_bound, self.x_bound)  # (C_out, OH*OW*N)
            return acc.reshape(C_out, OH, OW, N).transpose(3, 0, 1, 2)
        cols3 = cols.reshape(K, N, OH * OW).transpose(1, 0, 2)  # (N, K, OH*OW)
        acc = self.matmul(self.w_f32, cols3, self.w_bound, self.x_bound)  # (N, C_out, OH*OW)
        return acc.reshape(N, C_out, OH, OW)

    def _float_op(self, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return F.conv2d(x, W, b, self.stride, self.padding)
