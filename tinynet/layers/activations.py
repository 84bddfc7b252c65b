"""Elementwise activations: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``.

An elementwise function ``out = f(x)`` has a diagonal Jacobian, so its
backward pass is just a product, entry by entry::

    dx = dout * f'(x)

Each layer caches the least it needs to compute ``f'``: a boolean mask
(1 byte per entry) for the ReLUs, the *output* for sigmoid and tanh, whose
derivatives are functions of the output:

    sigmoid'(x) = s (1 - s)      with s = sigmoid(x)
    tanh'(x)    = 1 - t^2        with t = tanh(x)

None of them has parameters. All keep the input's dtype.
"""

from __future__ import annotations

import numpy as np

from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module


class _Elementwise(Module):
    """Shared ``backward`` plumbing: check the cache, then ``dx = dout * f'``."""

    def _local_grad(self, dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Return ``dx = dout * f'(x)`` (None when ``requires_input_grad`` is False).

        Parameters
        ----------
        dout : ndarray, same shape as the output

        Returns
        -------
        dx : ndarray, same shape as the input, or None
        """
        if self.cache is None:
            raise self._no_cache_error()
        if dout.shape != self.cache.shape:
            raise ValueError(
                f"{type(self).__name__}.backward expected dout of shape "
                f"{self.cache.shape}, got {dout.shape}"
            )
        if not self.requires_input_grad:
            return None
        return self._local_grad(dout, self.cache)


class ReLU(_Elementwise):
    """Rectified linear unit ``out = max(x, 0)`` (PyTorch ``torch.nn.ReLU``).

    Backward: ``dx = dout * 1[x > 0]``. At ``x = 0`` the derivative is
    undefined; like PyTorch we use 0 there.

    Shapes: any input shape; output has the same shape.
    Cache: the boolean mask ``x > 0``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``max(x, 0)`` (NaN stays NaN, as in PyTorch)."""
        x = np.asarray(x)
        self.cache = (x > 0) if is_grad_enabled() else None
        return np.maximum(x, 0)

    def _local_grad(self, dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return dout * mask


class LeakyReLU(_Elementwise):
    """Leaky ReLU ``out = x if x > 0 else negative_slope * x`` (PyTorch ``torch.nn.LeakyReLU``).

    Maas et al. 2013. Backward: ``dx = dout`` where ``x > 0``, else
    ``negative_slope * dout`` (at ``x = 0`` the slope, as in PyTorch).

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for negative inputs.

    Shapes: any input shape; output has the same shape.
    Cache: the boolean mask ``x > 0``.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(
            negative_slope, (int, float, np.number)
        ):
            raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
        # A Python float: a NumPy float64 scalar would turn float32 arrays into float64.
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``where(x > 0, x, negative_slope * x)``."""
        x = np.asarray(x)
        mask = x > 0
        self.cache = mask if is_grad_enabled() else None
        return np.where(mask, x, x * self.negative_slope)

    def _local_grad(self, dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask, dout, dout * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Elementwise):
    """Logistic sigmoid ``out = 1 / (1 + exp(-x))`` (PyTorch ``torch.nn.Sigmoid``).

    Computed without overflow: ``exp(-x)`` overflows for ``x`` around -1000
    (float64) or -100 (float32). With ``e = exp(-|x|)``, which lies in
    ``(0, 1]`` and never overflows::

        sigmoid(x) = 1 / (1 + e)   for x >= 0
        sigmoid(x) = e / (1 + e)   for x < 0      (multiply top and bottom by exp(x))

    Backward: ``dx = dout * s * (1 - s)`` with ``s`` the cached output.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``sigmoid(x)``, stable for any ``x``."""
        x = np.asarray(x)
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.cache = out if is_grad_enabled() else None
        return out

    def _local_grad(self, dout: np.ndarray, out: np.ndarray) -> np.ndarray:
        return dout * out * (1 - out)


class Tanh(_Elementwise):
    """Hyperbolic tangent ``out = tanh(x)`` (PyTorch ``torch.nn.Tanh``).

    Backward: ``dx = dout * (1 - t^2)`` with ``t`` the cached output.
    (``np.tanh`` is already stable for large ``|x|``.)
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``tanh(x)``."""
        out = np.tanh(np.asarray(x))
        self.cache = out if is_grad_enabled() else None
        return out

    def _local_grad(self, dout: np.ndarray, out: np.ndarray) -> np.ndarray:
        return dout * (1 - out * out)
