"""``Conv2d``: the 2-D convolution layer (PyTorch ``torch.nn.Conv2d``).

A convolution slides ``C_out`` small filters of shape ``(C_in, kh, kw)``
over the (zero-padded) input and takes a dot product at every position::

    out[n, co, i, j] = b[co] + sum_{c, a, e} x_pad[n, c, i*sh + a, j*sw + e] * W[co, c, a, e]

    x   : (N, C_in, H, W)        W : (C_out, C_in, kh, kw)        b : (C_out,)
    out : (N, C_out, OH, OW)     OH = floor((H + 2*ph - kh) / sh) + 1, same for OW

Backward, given ``dout = dL/dout``::

    dW[co] = sum_{n, i, j} dout[n, co, i, j] * (window of x_pad at (i, j))
    db[co] = sum_{n, i, j} dout[n, co, i, j]
    dx     = every window receives W[co] * dout[n, co, i, j], added up where
             windows overlap (a "full" correlation of dout with the kernel)

The array math lives in :mod:`tinynet.functional`: ``conv2d_naive`` spells
these sums out with loops; ``conv2d_forward`` / ``conv2d_backward`` (used
here) turn them into matrix products with im2col. Read both.
"""

from __future__ import annotations

import numpy as np

from tinynet import functional as F
from tinynet.grad_mode import is_grad_enabled
from tinynet.init import pytorch_default_
from tinynet.module import Module
from tinynet.parameter import Parameter


class Conv2d(Module):
    """2-D convolution over NCHW batches (PyTorch ``torch.nn.Conv2d``).

    Parameters
    ----------
    in_channels : int
        ``C_in``, channels of the input.
    out_channels : int
        ``C_out``, number of filters (channels of the output).
    kernel_size : int or (int, int)
        ``(kh, kw)``.
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Zeros added on each side of the height and width.
    bias : bool, default True

    Attributes
    ----------
    weight : Parameter, shape (out_channels, in_channels, kh, kw), float32
        Initialised as PyTorch does (:func:`tinynet.init.pytorch_default_`):
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = C_in*kh*kw``.
    bias : Parameter, shape (out_channels,), float32, or None
        Same distribution, drawn after the weight.

    Notes
    -----
    Shapes: ``(N, C_in, H, W) -> (N, C_out, OH, OW)`` with
    ``OH = floor((H + 2*padding - kh) / stride) + 1``.
    When ``requires_input_grad`` is False (the first layer of a network),
    ``backward`` skips ``dx`` and returns None.

    Examples
    --------
    >>> conv = Conv2d(1, 6, 5, padding=2)
    >>> conv
    Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
    >>> conv(np.zeros((32, 1, 28, 28), dtype=np.float32)).shape
    (32, 6, 28, 28)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Conv2d {name} must be a positive integer, got {value!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = F._pair(stride, "stride")
        self.padding = F._pair(padding, "padding", minimum=0)
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        self.bias = Parameter(np.empty(self.out_channels, dtype=np.float32)) if bias else None
        pytorch_default_(self.weight, self.bias)

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expected input of shape (N, {self.in_channels}, H, W), got {x.shape}"
            )
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        H, W = x.shape[2:]
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(
                f"Conv2d input of spatial size {H}x{W} (padding {ph}x{pw}) is smaller than "
                f"the kernel {kh}x{kw}: got input of shape {x.shape}"
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the convolution (see :func:`tinynet.functional.conv2d_forward`).

        Parameters
        ----------
        x : ndarray, shape (N, in_channels, H, W)

        Returns
        -------
        out : ndarray, shape (N, out_channels, OH, OW)

        Raises
        ------
        ValueError
            When ``x`` is not 4-D with ``in_channels`` channels, or is
            smaller than the kernel.
        """
        x = np.asarray(x)
        self._check_input(x)
        self.cache = None  # free the previous im2col matrix before making a new one
        W = self.weight.value()  # the effective weight (after any transforms)
        b = self.bias.value() if self.bias is not None else None
        out, cache = F.conv2d_forward(x, W, b, self.stride, self.padding)
        # The cache holds the im2col matrix (for dW) and W (for dx).
        self.cache = cache if is_grad_enabled() else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate ``dW``, ``db`` and return ``dx``.

        Parameters
        ----------
        dout : ndarray, shape (N, out_channels, OH, OW)

        Returns
        -------
        dx : ndarray, shape (N, in_channels, H, W), or None
            None when ``requires_input_grad`` is False: the im2col-transposed
            product and the col2im scatter are then skipped entirely.
        """
        if self.cache is None:
            raise self._no_cache_error()
        x_shape = self.cache[0]
        expected = (x_shape[0], self.out_channels) + self._output_hw(x_shape)
        if dout.shape != expected:
            raise ValueError(f"Conv2d.backward expected dout of shape {expected}, got {dout.shape}")
        dx, dW, db = F.conv2d_backward(dout, self.cache, need_dx=self.requires_input_grad)
        self.weight.backward(dW)
        if self.bias is not None:
            self.bias.backward(db)
        return dx

    def _output_hw(self, x_shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (
            F.conv_output_size(x_shape[2], kh, sh, ph),
            F.conv_output_size(x_shape[3], kw, sw, pw),
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text
