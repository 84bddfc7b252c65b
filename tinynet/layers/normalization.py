"""Batch normalisation: ``BatchNorm1d`` and ``BatchNorm2d`` (Ioffe & Szegedy 2015).

For each channel ``c`` the layer normalises over every value of that
channel in the batch (the batch axis, and for images the spatial axes too),
then applies a learned affine map::

    mu      = mean(x)                           over the m values of channel c
    var     = mean((x - mu)^2)                  biased: divides by m
    inv_std = 1 / sqrt(var + eps)
    xhat    = (x - mu) * inv_std
    out     = gamma * xhat + beta               gamma = weight, beta = bias

``m`` is ``N`` for ``(N, C)``, ``N*L`` for ``(N, C, L)`` and ``N*H*W`` for
``(N, C, H, W)``. At test time (``eval()``) the batch statistics are
replaced by running averages collected during training::

    running_mean = (1 - momentum) * running_mean + momentum * mu
    running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

(the *unbiased* variance for the running estimate, as PyTorch does).

Backward in training mode (Ioffe & Szegedy 2015, section 3). ``mu`` and
``var`` depend on every ``x`` of the channel, so ``dx`` has three terms.
Writing ``dxhat = gamma * dout`` and summing over the channel's ``m`` values::

    dvar = sum(dxhat * (x - mu)) * (-1/2) * inv_std^3
    dmu  = -inv_std * sum(dxhat)                  (the dvar term vanishes:
                                                    sum(x - mu) = 0)
    dx   = dxhat * inv_std + dvar * 2 (x - mu) / m + dmu / m

Substituting ``x - mu = xhat / inv_std`` and collecting ``inv_std / m``::

    dx = (inv_std / m) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))

and, since ``gamma`` is constant over the channel and ``dbeta = sum(dout)``,
``dgamma = sum(dout * xhat)``, the compact form we compute is::

    dx = (gamma * inv_std / m) * (m * dout - dbeta - xhat * dgamma)

In eval mode ``mu`` and ``var`` are constants, so the layer is an affine
map per channel and ``dx = dout * gamma * inv_std``.
"""

from __future__ import annotations

import numpy as np

from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module
from tinynet.parameter import Parameter


class _BatchNorm(Module):
    """Shared implementation: normalise over every axis except the channel axis 1.

    Subclasses set ``_allowed_ndims`` and ``_shape_text`` (used in error
    messages, with ``{C}`` for the channel count).

    Parameters
    ----------
    num_features : int
        Number of channels ``C``.
    eps : float, default 1e-5
        Added to the variance before the square root.
    momentum : float or None, default 0.1
        Weight of the new batch in the running averages; None uses the
        cumulative average ``factor = 1 / num_batches_tracked`` (PyTorch).

    Attributes
    ----------
    weight : Parameter, shape (C,), float32, ones
        ``gamma``.
    bias : Parameter, shape (C,), float32, zeros
        ``beta``.
    running_mean : ndarray, shape (C,), float32, zeros (buffer)
    running_var : ndarray, shape (C,), float32, ones (buffer)
    num_batches_tracked : ndarray, shape (), int64 (buffer)
        Training batches seen so far.
    """

    _allowed_ndims: tuple[int, ...] = ()
    _shape_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        name = type(self).__name__
        if (
            isinstance(num_features, bool)
            or not isinstance(num_features, (int, np.integer))
            or num_features < 1
        ):
            raise ValueError(
                f"{name} num_features must be a positive integer, got {num_features!r}"
            )
        if not eps > 0:
            raise ValueError(f"{name} eps must be positive, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{name} momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        # Order matters: it gives PyTorch's state_dict keys and order.
        self.weight = Parameter(np.ones(self.num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(self.num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    # ------------------------------------------------------------------ shapes
    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim not in self._allowed_ndims or x.shape[1] != self.num_features:
            expected = self._shape_text.format(C=self.num_features)
            raise ValueError(
                f"{type(self).__name__} expected input of shape {expected}, got {x.shape}"
            )

    def _channel_shape(self, x: np.ndarray) -> tuple[int, ...]:
        """``(1, C, 1, ...)``: a per-channel ``(C,)`` array broadcast against ``x``."""
        return (1, self.num_features) + (1,) * (x.ndim - 2)

    @staticmethod
    def _reduce_axes(x: np.ndarray) -> tuple[int, ...]:
        """Every axis but the channel axis 1: ``(0,)``, ``(0, 2)`` or ``(0, 2, 3)``."""
        return (0,) + tuple(range(2, x.ndim))

    # ----------------------------------------------------------------- forward
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise per channel, then scale and shift.

        Training mode: batch statistics (biased variance), and the running
        statistics are updated (even under ``no_grad``, as in PyTorch).
        Eval mode: the running statistics; nothing is updated.

        Parameters
        ----------
        x : ndarray, shape (N, C), (N, C, L) or (N, C, H, W)

        Returns
        -------
        out : ndarray, same shape and dtype as ``x``
        """
        x = np.asarray(x)
        self._check_input(x)
        axes = self._reduce_axes(x)
        shape = self._channel_shape(x)
        m = x.size // self.num_features  # values per channel
        if self.training:
            if m < 2:
                raise ValueError(
                    f"{type(self).__name__} expected more than 1 value per channel when "
                    f"training, got input of shape {x.shape}"
                )
            mean = x.mean(axis=axes)  # (C,)
            var = x.var(axis=axes)  # (C,), biased (divides by m)
            self._update_running_stats(mean, var, m)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1 / np.sqrt(var + self.eps)  # (C,)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        gamma = self.weight.value()
        beta = self.bias.value()
        out = gamma.reshape(shape) * xhat + beta.reshape(shape)
        # The mode at forward time decides which backward formula applies.
        self.cache = (xhat, inv_std, gamma, self.training) if is_grad_enabled() else None
        return out

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        """``running = (1 - factor) * running + factor * batch`` (unbiased var)."""
        self.num_batches_tracked = np.array(self.num_batches_tracked + 1, dtype=np.int64)
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased_var = var * (m / (m - 1))  # Bessel's correction
        new_mean = (1 - factor) * self.running_mean + factor * mean
        new_var = (1 - factor) * self.running_var + factor * unbiased_var
        # Keep the buffers' dtype whatever the input's.
        self.running_mean = new_mean.astype(self.running_mean.dtype, copy=False)
        self.running_var = new_var.astype(self.running_var.dtype, copy=False)

    # ---------------------------------------------------------------- backward
    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate ``dgamma``, ``dbeta`` and return ``dx``.

        Training mode (batch statistics)::

            dx = (gamma * inv_std / m) * (m * dout - dbeta - xhat * dgamma)

        Eval mode (running statistics, constants)::

            dx = dout * gamma * inv_std

        Parameters
        ----------
        dout : ndarray, same shape as the output

        Returns
        -------
        dx : ndarray, same shape as the input, or None when
            ``requires_input_grad`` is False.
        """
        if self.cache is None:
            raise self._no_cache_error()
        xhat, inv_std, gamma, was_training = self.cache
        if dout.shape != xhat.shape:
            raise ValueError(
                f"{type(self).__name__}.backward expected dout of shape {xhat.shape}, "
                f"got {dout.shape}"
            )
        axes = self._reduce_axes(dout)
        shape = self._channel_shape(dout)
        dgamma = (dout * xhat).sum(axis=axes)  # (C,)
        dbeta = dout.sum(axis=axes)  # (C,)
        self.weight.backward(dgamma)
        self.bias.backward(dbeta)
        if not self.requires_input_grad:
            return None
        scale = (gamma * inv_std).reshape(shape)  # gamma / sqrt(var + eps), per channel
        if not was_training:
            return dout * scale
        m = dout.size // self.num_features
        return (scale / m) * (m * dout - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs (PyTorch ``torch.nn.BatchNorm1d``).

    Statistics per channel over the batch axis (and ``L``). Typically after
    a ``Linear`` layer. See the module docstring for the formulas, and
    :class:`_BatchNorm` for the parameters and buffers.

    Examples
    --------
    >>> bn = BatchNorm1d(16)
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    """

    _allowed_ndims = (2, 3)
    _shape_text = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` images (PyTorch ``torch.nn.BatchNorm2d``).

    Statistics per channel over the batch and both spatial axes
    (``m = N*H*W`` values). Typically after a ``Conv2d``. See the module
    docstring for the formulas, and :class:`_BatchNorm` for the parameters
    and buffers.
    """

    _allowed_ndims = (4,)
    _shape_text = "(N, {C}, H, W)"
