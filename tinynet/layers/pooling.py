"""Pooling layers: ``MaxPool2d`` and ``AvgPool2d`` (PyTorch ``torch.nn``).

Pooling shrinks each channel by summarising every ``kh x kw`` window with
one number, moving by ``stride`` (default: the window size, so windows
do not overlap)::

    max: out[n, c, i, j] = max_{a, e}  x[n, c, i*sh + a, j*sw + e]
    avg: out[n, c, i, j] = mean_{a, e} x[n, c, i*sh + a, j*sw + e]

    x : (N, C, H, W)  ->  out : (N, C, OH, OW),  OH = floor((H - kh) / sh) + 1

Windows that would run past the edge are dropped ("floor mode", PyTorch's
default). Backward:

* max: each window's gradient goes to ONE input, the window's *first*
  maximum in row-major order; every other input of the window gets 0.
  Ties are common after quantization (many equal values), and this is the
  rule PyTorch follows.
* avg: each input of the window gets ``dout / (kh*kw)``.

No parameters. The array math is in :mod:`tinynet.functional`
(``max_pool2d_naive`` for reading, ``max_pool2d_forward`` for speed).
"""

from __future__ import annotations

import numpy as np

from tinynet import functional as F
from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module


class _Pool2d(Module):
    """Shared plumbing: arguments, shape checks, cache handling."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")

    def _check_input(self, x: np.ndarray) -> None:
        name = type(self).__name__
        if x.ndim != 4:
            raise ValueError(f"{name} expected input of shape (N, C, H, W), got {x.shape}")
        (kh, kw), (H, W) = self.kernel_size, x.shape[2:]
        if H < kh or W < kw:
            raise ValueError(
                f"{name} input of spatial size {H}x{W} is smaller than the window {kh}x{kw}: "
                f"got input of shape {x.shape}"
            )

    def _check_dout(self, dout: np.ndarray, out_shape: tuple[int, ...]) -> None:
        if dout.shape != out_shape:
            raise ValueError(
                f"{type(self).__name__}.backward expected dout of shape {out_shape}, "
                f"got {dout.shape}"
            )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """Max pooling (PyTorch ``torch.nn.MaxPool2d``, no padding, floor mode).

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window ``(kh, kw)``.
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Notes
    -----
    ``(N, C, H, W) -> (N, C, floor((H - kh)/sh) + 1, floor((W - kw)/sw) + 1)``.
    Backward routes each window's gradient to its first maximum.

    Examples
    --------
    >>> pool = MaxPool2d(2)
    >>> pool(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return the max of every window; shape (N, C, OH, OW)."""
        x = np.asarray(x)
        self._check_input(x)
        out, cache = F.max_pool2d_forward(x, self.kernel_size, self.stride)
        self.cache = cache if is_grad_enabled() else None  # (x_shape, arg, kernel, stride)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Send each window's ``dout`` to its first maximum; dx has the input's shape."""
        if self.cache is None:
            raise self._no_cache_error()
        self._check_dout(dout, self.cache[1].shape)
        if not self.requires_input_grad:
            return None
        return F.max_pool2d_backward(dout, self.cache)


class AvgPool2d(_Pool2d):
    """Average pooling (PyTorch ``torch.nn.AvgPool2d``, no padding, floor mode).

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window ``(kh, kw)``.
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Examples
    --------
    >>> pool = AvgPool2d(2)
    >>> pool(np.arange(16.0).reshape(1, 1, 4, 4))[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return the mean of every window; shape (N, C, OH, OW)."""
        x = np.asarray(x)
        self._check_input(x)
        out, cache = F.avg_pool2d_forward(x, self.kernel_size, self.stride)
        self.cache = (cache, out.shape) if is_grad_enabled() else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Spread each window's ``dout`` evenly: ``dout / (kh*kw)`` to each input."""
        if self.cache is None:
            raise self._no_cache_error()
        cache, out_shape = self.cache
        self._check_dout(dout, out_shape)
        if not self.requires_input_grad:
            return None
        return F.avg_pool2d_backward(dout, cache)
