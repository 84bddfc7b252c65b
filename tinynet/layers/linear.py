"""``Linear``: the fully connected layer, ``out = x W^T + b``.

This is the first layer to read: its backward pass is three matrix
products, and every other layer follows the same pattern.

Forward, for a batch of ``N`` row vectors ``x`` (shape ``(N, in)``), the
weight ``W`` (shape ``(out, in)``, PyTorch's layout) and the bias ``b``
(shape ``(out,)``)::

    out[n, j] = sum_i x[n, i] * W[j, i] + b[j]        i.e.  out = x @ W.T + b

Backward: given ``dout = dL/dout`` (shape ``(N, out)``), the chain rule on
that sum gives::

    dW = dout.T @ x        (out, in)   each weight sees every example's input
    db = dout.sum(axis=0)  (out,)      the bias is added to every example
    dx = dout @ W          (N, in)     each input feeds every output unit
"""

from __future__ import annotations

import numpy as np

from tinynet.grad_mode import is_grad_enabled
from tinynet.init import pytorch_default_
from tinynet.module import Module
from tinynet.parameter import Parameter


class Linear(Module):
    """Fully connected layer ``out = x W^T + b`` (PyTorch ``torch.nn.Linear``).

    Parameters
    ----------
    in_features : int
        Size of each input vector.
    out_features : int
        Size of each output vector.
    bias : bool, default True
        Whether to add a learned bias.

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features), float32
        Initialised as PyTorch does (:func:`tinynet.init.pytorch_default_`):
        ``U(-1/sqrt(in_features), 1/sqrt(in_features))``.
    bias : Parameter, shape (out_features,), float32, or None
        Same distribution, drawn after the weight.

    Notes
    -----
    Shapes: input ``(N, in_features)`` -> output ``(N, out_features)``.
    As in PyTorch, any number of leading dimensions is accepted,
    ``(*, in_features) -> (*, out_features)``; backward treats them all as
    the batch.

    Examples
    --------
    >>> layer = Linear(784, 300)
    >>> layer
    Linear(in_features=784, out_features=300, bias=True)
    >>> layer(np.zeros((32, 784), dtype=np.float32)).shape
    (32, 300)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Linear {name} must be a non-negative integer, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np.float32))
        self.bias = Parameter(np.empty(self.out_features, dtype=np.float32)) if bias else None
        pytorch_default_(self.weight, self.bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute ``out = x @ W.T + b``.

        Parameters
        ----------
        x : ndarray, shape (N, in_features) (or (*, in_features))

        Returns
        -------
        out : ndarray, shape (N, out_features) (or (*, out_features))

        Raises
        ------
        ValueError
            When the last dimension of ``x`` is not ``in_features``.
        """
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            hint = ""
            if x.ndim > 2 and int(np.prod(x.shape[1:])) == self.in_features:
                hint = ": flatten it first (put a Flatten() before this layer)"
            raise ValueError(
                f"Linear expected input of shape (N, {self.in_features}), got {x.shape}{hint}"
            )
        W = self.weight.value()  # the effective weight (after any transforms)
        out = x @ W.T
        if self.bias is not None:
            out = out + self.bias.value()
        # Keep the input (for dW) and the effective weight (for dx).
        self.cache = (x, W) if is_grad_enabled() else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate ``dW``, ``db`` and return ``dx``.

        Parameters
        ----------
        dout : ndarray, shape (N, out_features) (or (*, out_features))
            dL/dout.

        Returns
        -------
        dx : ndarray, shape of the input, or None
            ``dout @ W``; None when ``requires_input_grad`` is False
            (the parameter gradients are still accumulated).
        """
        if self.cache is None:
            raise self._no_cache_error()
        x, W = self.cache
        expected = x.shape[:-1] + (self.out_features,)
        if dout.shape != expected:
            raise ValueError(f"Linear.backward expected dout of shape {expected}, got {dout.shape}")
        # Treat any leading dimensions as one batch axis of N rows.
        x2 = x.reshape(-1, self.in_features)  # (N, in)
        dout2 = dout.reshape(-1, self.out_features)  # (N, out)
        self.weight.backward(dout2.T @ x2)  # dW: (out, in)
        if self.bias is not None:
            self.bias.backward(dout2.sum(axis=0))  # db: (out,)
        if not self.requires_input_grad:
            return None
        return (dout2 @ W).reshape(x.shape)  # dx: (N, in)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
