"""``Flatten``: merge a range of dimensions into one (PyTorch ``torch.nn.Flatten``).

Typically between the convolutional part of a network and its first
``Linear`` layer: ``(N, C, H, W) -> (N, C*H*W)``. A reshape moves no
numbers, so its backward pass is the reverse reshape::

    out = x.reshape(N, C*H*W)        dx = dout.reshape(N, C, H, W)
"""

from __future__ import annotations

import math

import numpy as np

from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module


class Flatten(Module):
    """Flatten dimensions ``start_dim..end_dim`` (inclusive) into one.

    Parameters
    ----------
    start_dim : int, default 1
        First dimension to merge (1 keeps the batch dimension).
    end_dim : int, default -1
        Last dimension to merge; negative counts from the end.

    Notes
    -----
    Shapes: ``(d0, ..., d_start, ..., d_end, ...)`` ->
    ``(d0, ..., d_start * ... * d_end, ...)``; with the defaults
    ``(N, C, H, W) -> (N, C*H*W)`` and ``(N, D) -> (N, D)``.
    The output is a view of the input when NumPy can make one.
    Cache: the input shape (a tuple).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        ndim = max(len(shape), 1)  # like torch, a 0-d input counts as 1-d
        start, end = self.start_dim, self.end_dim
        start = start + ndim if start < 0 else start
        end = end + ndim if end < 0 else end
        if not (0 <= start < ndim and 0 <= end < ndim):
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) expected an "
                f"input with dimensions {self.start_dim} and {self.end_dim}, got shape {shape}"
            )
        if start > end:
            raise ValueError(
                f"Flatten start_dim ({self.start_dim}) comes after end_dim ({self.end_dim}) "
                f"for an input of shape {shape}"
            )
        shape = shape if shape else (1,)
        return shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Reshape ``x`` with dimensions ``start_dim..end_dim`` merged."""
        x = np.asarray(x)
        out = x.reshape(self._output_shape(x.shape))
        self.cache = x.shape if is_grad_enabled() else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Reshape ``dout`` back to the input shape (None if no input grad is needed)."""
        if self.cache is None:
            raise self._no_cache_error()
        in_shape = self.cache
        expected = self._output_shape(in_shape)
        if dout.shape != expected:
            raise ValueError(
                f"Flatten.backward expected dout of shape {expected}, got {dout.shape}"
            )
        if not self.requires_input_grad:
            return None
        return dout.reshape(in_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
