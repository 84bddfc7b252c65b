"""The engine's layers without weights: pooling, flatten, ReLU, directly on the integers.

Each keeps its input's quantization ``r = S (q - Z)``: no rescaling, no
new scale (Jacob et al. 2018 treat them the same way):

* **max pooling**: ``r`` is an increasing function of ``q``, so the window
  holding the largest ``r`` holds the largest ``q``:
  ``max_window S (q - Z) = S (max_window q - Z)``, exactly;
* **flatten**: a reshape moves no numbers;
* **ReLU** (when it could not be fused into the layer before it):
  ``max(r, 0) = S (max(q, Z) - Z)``, since ``Z`` is the integer standing
  for 0;
* **average pooling**: ``mean S (q - Z) = S (mean(q) - Z)``; only the mean
  of the integers has to be rounded back to an integer (how, and where it
  can differ from the float twin: :class:`IntegerAvgPool2d`).

``forward_float`` is each layer's fake-quantized twin (``integer_layers``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compression.quantization.integer_layers import ActQuant, IntegerLayer
from tinynet import functional as F

__all__ = ["IntegerAvgPool2d", "IntegerFlatten", "IntegerMaxPool2d", "IntegerReLU"]


class _SameQuant(IntegerLayer):
    """A layer whose output keeps its input's ``(S, Z)``."""

    def __init__(self, quant: ActQuant) -> None:
        self.in_quant = self.out_quant = quant


class IntegerReLU(_SameQuant):
    """A ReLU that could not be fused: ``max(q, Z)`` (the integer standing for 0)."""

    def forward(self, q: np.ndarray) -> np.ndarray:
        return np.maximum(q, self.in_quant.dtype(self.in_quant.zero_point))

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, np.float32(0))


class IntegerFlatten(_SameQuant):
    """``(N, C, H, W) -> (N, C*H*W)``: a reshape, on integers as on floats."""

    def forward(self, q: np.ndarray) -> np.ndarray:
        return q.reshape(q.shape[0], -1)

    forward_float = forward


class IntegerMaxPool2d(_SameQuant):
    """Max pooling on the integers: ``max_window S (q - Z) = S (max_window q - Z)``.

    Shapes ``(N, C, H, W) -> (N, C, OH, OW)``, ``OH = floor((H - kh) / sh) + 1``
    (no padding, floor mode, as :class:`tinynet.MaxPool2d`). The result is
    exactly the float max pooling of the dequantized input.
    """

    def __init__(self, quant: ActQuant, kernel_size: Any, stride: Any = None) -> None:
        super().__init__(quant)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")

    def _windows(self, q: np.ndarray) -> list[np.ndarray]:
        """The ``kh*kw`` strided views ``q[:, :, i*sh + a, j*sw + e]``, one per window offset."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        OH, OW = (q.shape[2] - kh) // sh + 1, (q.shape[3] - kw) // sw + 1
        return [
            q[:, :, a : a + (OH - 1) * sh + 1 : sh, e : e + (OW - 1) * sw + 1 : sw]
            for a in range(kh)
            for e in range(kw)
        ]

    def forward(self, q: np.ndarray) -> np.ndarray:
        views = self._windows(q)
        out = views[0].copy()
        for view in views[1:]:
            np.maximum(out, view, out=out)
        return out

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        return F.max_pool2d(x, self.kernel_size, self.stride)


class IntegerAvgPool2d(IntegerMaxPool2d):
    """Average pooling on the integers: window sum in int32, then a rounding division.

    The mean of ``S (q - Z)`` is ``S (mean(q) - Z)``, so the output keeps
    ``(S, Z)`` and only ``mean(q)`` must be rounded back to an integer::

        s   = sum_window q                   (int32)
        out = floor((s + n // 2) / n)        n = kh * kw: round half up

    (TensorFlow Lite's rule for its quantized average pooling.) The float
    twin rounds half to even, through float arithmetic, so where the window
    mean is exactly half-way (``s mod 4 == 2`` for 2x2) the two may differ
    by one step.
    """

    def forward(self, q: np.ndarray) -> np.ndarray:
        views = self._windows(q)
        s = views[0].astype(np.int32)
        for view in views[1:]:
            s += view
        n = len(views)
        return ((s + n // 2) // n).astype(q.dtype)

    def forward_float(self, x: np.ndarray) -> np.ndarray:
        return self.in_quant.fake_quantize(F.avg_pool2d(x, self.kernel_size, self.stride))
