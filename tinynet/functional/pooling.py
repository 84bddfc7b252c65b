"""Pooling as plain functions on arrays: naive loops and the fast path.

Max pooling keeps the largest value of each ``kh x kw`` window; its backward
pass sends each window's gradient to ONE position, the first maximum in
row-major window order (ties are common after quantization; PyTorch does the
same). Average pooling spreads each window's gradient evenly.

Max pooling loops over the ``kh*kw`` offsets of the window (4 for 2x2),
each a strided view of the whole batch. Arithmetic on a view that skips
every other number runs 5-10x slower in NumPy than on contiguous memory, so
the forward pass copies each view once and records the winning offset
``arg`` (1 byte per output); the backward pass then only writes
``dout * (arg == t)`` into each view -- 3-4x faster than recomputing the
maxima there (2.7-4.7x on the LeNet pooling layers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinynet.functional._shapes import IntPair, _output_shape, _pair


# ----------------------------------------------------------------- pooling
def _pool_args(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None):
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    OH, OW = _output_shape(x.shape, kernel, stride, (0, 0))
    return kernel, stride, OH, OW


def _window_offsets(x: np.ndarray, kernel, stride, OH: int, OW: int):
    """Yield, for each kernel offset ``(a, e)`` in row-major order, the view
    ``v[n, c, i, j] = x[n, c, i*sh + a, j*sw + e]`` of shape (N, C, OH, OW).

    Pooling is a reduction over these ``kh*kw`` views, so a loop over the
    few offsets replaces a loop over the many output positions.
    """
    (kh, kw), (sh, sw) = kernel, stride
    for a in range(kh):
        for e in range(kw):
            yield x[:, :, a : a + (OH - 1) * sh + 1 : sh, e : e + (OW - 1) * sw + 1 : sw]


def max_pool2d_naive(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None
) -> np.ndarray:
    """Max pooling with a loop over output positions (for reading and testing).

    ``out[n, c, i, j] = max_{a, e} x[n, c, i*sh + a, j*sw + e]``; ``stride``
    defaults to ``kernel_size``; windows that would run past the edge are
    dropped (floor mode, as PyTorch).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)

    Returns
    -------
    out : ndarray, shape (N, C, OH, OW), ``OH = floor((H - kh)/sh) + 1``
    """
    (kh, kw), (sh, sw), OH, OW = _pool_args(x, kernel_size, stride)
    out = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            out[:, :, i, j] = x[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].max(axis=(2, 3))
    return out


def max_pool2d_backward_naive(
    dout: np.ndarray, x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None
) -> np.ndarray:
    """Gradient of :func:`max_pool2d_naive`: one window at a time.

    Each window's gradient goes to ONE position, its first maximum in
    row-major order (``np.argmax`` of the flattened window). With ties (two
    equal maxima, common after quantization) the others get nothing, as in
    PyTorch; splitting it would change the sum of the gradient.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    (kh, kw), (sh, sw), OH, OW = _pool_args(x, kernel_size, stride)
    dx = np.zeros_like(x, dtype=dout.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    a, e = np.unravel_index(np.argmax(window), (kh, kw))
                    dx[n, c, i * sh + a, j * sw + e] += dout[n, c, i, j]
    return dx


def max_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Fast max pooling (PyTorch ``F.max_pool2d``): a running max over ``kh*kw`` shifted views.

    Visit the window offsets ``t = a*kw + e`` in row-major order, keeping the
    running maximum ``out`` and the offset ``arg`` it came from. An offset
    replaces the winner only when it is *strictly* greater, so among equal
    maxima the first one stays: ``arg`` is the first maximum of each window,
    the one the backward pass sends the gradient to (PyTorch's rule).

    Each strided view is copied once into a contiguous scratch array; the
    comparisons then run on contiguous memory, several times faster in NumPy
    than on a view that skips every other number.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), default kernel_size

    Returns
    -------
    out : ndarray, shape (N, C, OH, OW), ``OH = floor((H - kh)/sh) + 1``
    cache : tuple ``(x_shape, arg, kernel, stride)``; ``arg`` (small unsigned
        integers, shape of ``out``) holds each window's first-maximum offset.
    """
    kernel, stride, OH, OW = _pool_args(x, kernel_size, stride)
    views = _window_offsets(x, kernel, stride, OH, OW)
    out = next(views).copy()  # offset t = 0
    arg = np.zeros(out.shape, dtype=np.min_scalar_type(kernel[0] * kernel[1] - 1))
    view_t, better, t_where_better = (
        np.empty_like(out),
        np.empty(out.shape, bool),
        np.empty_like(arg),
    )
    for t, view in enumerate(views, start=1):
        np.copyto(view_t, view)  # the one strided read of this offset
        np.greater(view_t, out, out=better)  # strictly: ties keep the earlier offset
        np.maximum(out, view_t, out=out)
        # arg = where(better, t, arg), written as max(arg, better * t): t exceeds every earlier arg
        np.multiply(better, arg.dtype.type(t), out=t_where_better)
        np.maximum(arg, t_where_better, out=arg)
    return out, (x.shape, arg, kernel, stride)


def max_pool2d_backward(dout: np.ndarray, cache: tuple[Any, ...]) -> np.ndarray:
    """Gradient of :func:`max_pool2d_forward`: ``dout`` goes to each window's first maximum.

    ``dx[window's offset t] = dout * (arg == t)`` for each offset ``t``: every
    window hands its whole gradient to the one input that won it, ties
    included (see :func:`max_pool2d_backward_naive` for the loop version).

    Parameters
    ----------
    dout : ndarray, shape (N, C, OH, OW)
    cache : tuple from :func:`max_pool2d_forward`

    Returns
    -------
    dx : ndarray, shape (N, C, H, W); zero where no window took its maximum
    """
    x_shape, arg, kernel, stride = cache
    OH, OW = arg.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    overlap = stride[0] < kernel[0] or stride[1] < kernel[1]
    won = np.empty(arg.shape, dtype=bool)
    for t, dx_view in enumerate(_window_offsets(dx, kernel, stride, OH, OW)):
        np.equal(arg, t, out=won)
        if overlap:  # an input may win several windows: add up
            dx_view += dout * won
        else:  # each input is in at most one window: write in place
            np.multiply(dout, won, out=dx_view)
    return dx


def avg_pool2d_naive(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None
) -> np.ndarray:
    """Average pooling with a loop over output positions (for reading and testing).

    ``out[n, c, i, j] = mean_{a, e} x[n, c, i*sh + a, j*sw + e]`` (no padding,
    floor mode, as PyTorch ``AvgPool2d`` with its defaults).
    """
    (kh, kw), (sh, sw), OH, OW = _pool_args(x, kernel_size, stride)
    out = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            out[:, :, i, j] = x[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].mean(axis=(2, 3))
    return out


def avg_pool2d_backward_naive(
    dout: np.ndarray, x_shape: tuple[int, ...], kernel_size: IntPair, stride: IntPair | None = None
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_naive`: each window's ``dout / (kh*kw)`` to all its pixels."""
    dx = np.zeros(x_shape, dtype=dout.dtype)
    (kh, kw), (sh, sw), OH, OW = _pool_args(dx, kernel_size, stride)
    for i in range(OH):
        for j in range(OW):
            share = dout[:, :, i, j, None, None] / (kh * kw)
            dx[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw] += share
    return dx


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Fast average pooling (PyTorch ``F.avg_pool2d``): the mean of ``kh*kw`` shifted views.

    Returns
    -------
    out : ndarray, shape (N, C, OH, OW)
    cache : tuple ``(x_shape, kernel, stride)``
    """
    kernel, stride, OH, OW = _pool_args(x, kernel_size, stride)
    views = _window_offsets(x, kernel, stride, OH, OW)
    out = next(views).copy()
    for view in views:
        out += view
    out *= 1.0 / (kernel[0] * kernel[1])  # a Python float keeps float32 float32
    return out, (x.shape, kernel, stride)


def avg_pool2d_backward(dout: np.ndarray, cache: tuple[Any, ...]) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_forward`: ``dx[window] += dout / (kh*kw)``.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    x_shape, kernel, stride = cache
    OH, OW = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout * (1.0 / (kernel[0] * kernel[1]))
    for dx_view in _window_offsets(dx, kernel, stride, OH, OW):
        dx_view += share
    return dx


def max_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None) -> np.ndarray:
    """Output of :func:`max_pool2d_forward` alone (PyTorch ``F.max_pool2d``)."""
    return max_pool2d_forward(x, kernel_size, stride)[0]


def avg_pool2d(x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None) -> np.ndarray:
    """Output of :func:`avg_pool2d_forward` alone (PyTorch ``F.avg_pool2d``)."""
    return avg_pool2d_forward(x, kernel_size, stride)[0]
