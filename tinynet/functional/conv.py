"""Convolution as plain functions on arrays: naive loops, im2col, fast path.

``x`` has shape ``(N, C_in, H, W)`` and the weight ``(C_out, C_in, kh, kw)``
(PyTorch's layout). The output size of a convolution with kernel ``k``,
stride ``s`` and ``p`` zeros of padding on each side of an input of size
``H`` is::

    OH = floor((H + 2p - k) / s) + 1        (same for W)

Each operation comes twice:

* a *naive* version (``conv2d_naive``, ``max_pool2d_naive`` ...) with plain
  loops over output positions: read it to see what is computed;
* a *fast* version (``conv2d_forward``/``conv2d_backward`` ...) used by the
  layers: no Python loop over samples, matrix products done by BLAS. The
  tests check that both give the same numbers.

How the fast convolution works (im2col, Chellapilla et al. 2006; CS231n):
every output value is a dot product between the weight of one output
channel and one ``(C_in, kh, kw)`` window of the input. Copy every window
into one column of a matrix ``cols`` of shape ``(C_in*kh*kw, N*OH*OW)`` and
the whole convolution becomes one matrix product::

    out_cols = W.reshape(C_out, C_in*kh*kw) @ cols          (C_out, N*OH*OW)

and the backward pass two more (``dout_cols`` is ``dout`` arranged like
``out_cols``)::

    dW    = dout_cols @ cols.T        sum over positions of dout * x_patch
    dcols = W2.T @ dout_cols          then col2im: add each column back
                                      onto the window it was copied from
    db    = dout.sum(axis=(0, 2, 3))

``col2im`` *adds* because windows overlap: an input pixel inside several
windows receives the gradient of every output that saw it (this is the
"full correlation" of ``dout`` with the flipped kernel, written as a
scatter).

Performance notes (float32, batch 128, a 2-core machine; reproduce with
``benchmarks/bench_training.py --profile``). The matrix products run near
the BLAS peak; what costs time is *copying* windows into ``cols`` and adding
them back. NumPy copies a strided block one contiguous run at a time, so
runs must be long. In NCHW a window row is only ``OW`` numbers long (10 and
8 for the second convolutions of LeNet-5 and LeNet-5-Caffe). So the columns
of ``cols`` come in one of two orders (the matrix and the math are the
same, only the order of its ``N*OH*OW`` columns differs):

* ``batch_last=True``: columns ordered ``(oh, ow, n)``. The input is first
  transposed to ``(C, H, W, N)`` ("CHWN"), where ``N`` consecutive numbers
  are the same pixel of every sample, so a window row is a run of
  ``OW*N`` numbers: im2col and col2im got 3-5x faster for those layers.
  Costs two small transposes (input and output).
* ``batch_last=False``: columns ordered ``(n, oh, ow)``. No transpose at
  all: ``np.matmul`` broadcasts ``W2 @ cols[:, n, :]`` over the batch (one
  BLAS call per sample) and the result lands directly in NCHW. Best when
  rows are long anyway (the first layer: 28 x 28 images, one channel),
  where the transposes would cost more than they save.

``conv2d_forward`` picks ``batch_last`` when output rows are shorter than
``BATCH_LAST_BELOW`` pixels; both orders are tested against the naive loops.
The first layer of a network skips ``dx`` (``need_dx=False``): no
``W2.T @ dout_cols`` and no col2im.

Tried and dropped: a sum over the ``kh*kw`` kernel offsets of small
``(C_out, C_in) @ (C_in, N*OH*OW)`` products instead of one im2col matrix
(measured 3-4x slower forward, 1.3-1.8x slower for ``dx``: the products are
too thin for BLAS); buffers kept across steps (measured: NumPy's allocator
already reuses the memory, under 100 page faults per step, below 0.1 ms);
``dx`` as a "full" convolution of the zero-padded ``dout`` with the flipped
kernel (not timed: its im2col matrix is over 5x larger than ``dcols``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinynet.functional._shapes import IntPair, _output_shape, _pair

#: Output rows shorter than this use the batch-last ("CHWN") column order.
BATCH_LAST_BELOW = 16


# ------------------------------------------------------------ naive (read me)
def conv2d_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
) -> np.ndarray:
    """Convolution with explicit loops (for reading and testing).

    ``out[n, co, i, j] = sum_{c, a, e} xpad[n, c, i*sh + a, j*sw + e] * w[co, c, a, e] + b[co]``
    (a cross-correlation, as in every deep-learning framework).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    w : ndarray, shape (C_out, C_in, kh, kw)
    b : ndarray, shape (C_out,), or None
    stride, padding : int or (int, int)

    Returns
    -------
    out : ndarray, shape (N, C_out, OH, OW), ``OH = floor((H + 2p - kh)/s) + 1``
    """
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding", 0)
    C_out, _, kh, kw = w.shape
    OH, OW = _output_shape(x.shape, (kh, kw), (sh, sw), (ph, pw))
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((x.shape[0], C_out, OH, OW), dtype=np.result_type(x, w))
    for n in range(x.shape[0]):
        for co in range(C_out):
            for i in range(OH):
                for j in range(OW):
                    window = xpad[n, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    out[n, co, i, j] = np.sum(window * w[co])
    if b is not None:
        out += b.reshape(1, C_out, 1, 1)
    return out


def conv2d_backward_naive(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, stride: IntPair = 1, padding: IntPair = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_naive`, one output position at a time.

    Each output ``out[n, co, i, j]`` came from one window of ``xpad``, so
    its gradient ``g = dout[n, co, i, j]`` flows back as::

        dW[co]        += g * window            (the window it looked at)
        dxpad[window] += g * w[co]             (through the weights it used)
        db[co]        += g

    Parameters
    ----------
    dout : ndarray, shape (N, C_out, OH, OW)
    x : ndarray, shape (N, C_in, H, W)
    w : ndarray, shape (C_out, C_in, kh, kw)

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W)
    dW : ndarray, shape (C_out, C_in, kh, kw)
    db : ndarray, shape (C_out,)
    """
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding", 0)
    N, _, H, W = x.shape
    C_out, _, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad = np.zeros_like(xpad)
    dW = np.zeros_like(w)
    for n in range(N):
        for co in range(C_out):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    dW[co] += dout[n, co, i, j] * xpad[n, :, rows, cols]
                    dxpad[n, :, rows, cols] += dout[n, co, i, j] * w[co]
    db = dout.sum(axis=(0, 2, 3))
    return dxpad[:, :, ph : ph + H, pw : pw + W], dW, db


# --------------------------------------------------------------- im2col
def _padded_chwn(x: np.ndarray, padding: tuple[int, int], batch_last: bool) -> np.ndarray:
    """Zero-padded ``x`` seen as a ``(C, Hp, Wp, N)`` array.

    With ``batch_last`` the memory really is in that order (one copy that
    transposes and pads at once); otherwise the memory stays NCHW (no copy
    at all without padding) and the result is a transposed *view*. Either
    way the caller indexes ``[c, h, w, n]``.
    """
    N, C, H, W = x.shape
    ph, pw = padding
    if batch_last:
        xp = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=x.dtype)
        xp[:, ph : ph + H, pw : pw + W, :] = x.transpose(1, 2, 3, 0)
        return xp
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return x.transpose(1, 2, 3, 0)


def im2col(
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    batch_last: bool = False,
) -> np.ndarray:
    """Copy every convolution window of ``x`` into a column of a matrix.

    ``sliding_window_view`` returns every ``(kh, kw)`` window as a *view*
    (the same memory read with two extra strides, no copy); slicing keeps
    every ``s``-th window, and one reshape copies them into the matrix.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
    batch_last : bool
        Order of the columns: ``(n, oh, ow)`` when False, ``(oh, ow, n)``
        when True (see the module docstring for why both exist).

    Returns
    -------
    cols : ndarray, shape (C*kh*kw, N*OH*OW)
        Row ``(c*kh + a)*kw + e`` holds pixel ``(c, oh*sh + a, ow*sw + e)`` of
        the padded input for every window, matching ``w.reshape(C_out, -1)``.
    """
    (kh, kw), (sh, sw) = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    padding = _pair(padding, "padding", 0)
    OH, OW = _output_shape(x.shape, (kh, kw), (sh, sw), padding)
    xp = _padded_chwn(x, padding, batch_last)  # (C, Hp, Wp, N)
    windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (C, Hp-kh+1, Wp-kw+1, N, kh, kw)
    windows = windows[
        :, : (OH - 1) * sh + 1 : sh, : (OW - 1) * sw + 1 : sw
    ]  # (C, OH, OW, N, kh, kw)
    order = (0, 4, 5, 1, 2, 3) if batch_last else (0, 4, 5, 3, 1, 2)
    return windows.transpose(order).reshape(x.shape[1] * kh * kw, -1)  # the one copy


def col2im(
    dcols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    batch_last: bool = False,
) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every column back onto its window.

    Windows overlap, so this cannot be a view: for each kernel offset
    ``(a, e)`` the rows ``(c, a, e)`` of ``dcols`` form one block that is
    *added* onto the input shifted by ``(a, e)`` -- a loop over the
    ``kh*kw`` offsets, each step one vectorised add over the whole batch.

    Parameters
    ----------
    dcols : ndarray, shape (C*kh*kw, N*OH*OW)
        Columns ordered as :func:`im2col` with the same ``batch_last``
        (a ``(C*kh*kw, N, OH*OW)`` view is accepted too when it is False).
    x_shape : (N, C, H, W)

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    (kh, kw), (sh, sw) = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    ph, pw = _pair(padding, "padding", 0)
    N, C, H, W = x_shape
    OH, OW = _output_shape(x_shape, (kh, kw), (sh, sw), (ph, pw))
    if batch_last:  # memory (C, Hp, Wp, N), like dcols' columns
        d = dcols.reshape(C, kh, kw, OH, OW, N)
        dxp = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=dcols.dtype)
    else:  # memory NCHW, viewed as (C, Hp, Wp, N)
        d = dcols.reshape(C, kh, kw, N, OH, OW).transpose(0, 1, 2, 4, 5, 3)
        dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dcols.dtype).transpose(1, 2, 3, 0)
    for a in range(kh):
        for e in range(kw):
            dxp[:, a : a + (OH - 1) * sh + 1 : sh, e : e + (OW - 1) * sw + 1 : sw] += d[:, a, e]
    dx = dxp[:, ph : ph + H, pw : pw + W].transpose(3, 0, 1, 2)  # (N, C, H, W)
    return np.ascontiguousarray(dx)


# ------------------------------------------------------- fast convolution
def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    batch_last: bool | None = None,
) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Fast convolution: im2col, then one matrix product (PyTorch ``F.conv2d``).

    Forward::

        cols     = im2col(x)                          (C_in*kh*kw, N*OH*OW)
        out_cols = W.reshape(C_out, -1) @ cols + b    (C_out, N*OH*OW)

    then ``out_cols`` is rearranged to NCHW.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    w : ndarray, shape (C_out, C_in, kh, kw)
    b : ndarray, shape (C_out,), or None
    stride, padding : int or (int, int)
    batch_last : bool or None
        Column order of ``cols`` (see the module docstring); None chooses
        ``OW < BATCH_LAST_BELOW``. The result is the same either way.

    Returns
    -------
    out : ndarray, shape (N, C_out, OH, OW), ``OH = floor((H + 2p - kh)/s) + 1``
    cache : tuple
        What :func:`conv2d_backward` needs: ``(x_shape, w, cols, stride,
        padding, batch_last)``.
    """
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding", 0)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(
            f"conv2d expects x of shape (N, C, H, W) and w of shape (C_out, C_in, kh, kw), "
            f"got {x.shape} and {w.shape}"
        )
    N, C, H, W = x.shape
    C_out, C_in, kh, kw = w.shape
    if C != C_in:
        raise ValueError(f"conv2d: input has {C} channels but the weight expects {C_in}")
    OH, OW = _output_shape(x.shape, (kh, kw), stride, padding)
    if batch_last is None:
        batch_last = OW < BATCH_LAST_BELOW
    cols = im2col(x, (kh, kw), stride, padding, batch_last)  # (K, N*OH*OW), K = C_in*kh*kw
    W2 = w.reshape(C_out, -1)  # (C_out, K)
    if batch_last:
        out = W2 @ cols  # one big GEMM: (C_out, OH*OW*N)
        if b is not None:
            out += b[:, None]
        out = np.ascontiguousarray(out.reshape(C_out, OH, OW, N).transpose(3, 0, 1, 2))
    else:
        # cols[:, n] is sample n's (K, OH*OW) block; matmul broadcasts
        # W2 @ block over n (one BLAS call each) and writes (N, C_out, OH*OW),
        # which is already NCHW: no transpose.
        out = np.matmul(W2, cols.reshape(-1, N, OH * OW).transpose(1, 0, 2))
        if b is not None:
            out += b[:, None]
        out = out.reshape(N, C_out, OH, OW)
    return out, (x.shape, w, cols, stride, padding, batch_last)


def conv2d_backward(
    dout: np.ndarray, cache: tuple[Any, ...], need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` from its cache.

    With ``dout_cols`` the upstream gradient arranged like ``out_cols``::

        dW    = dout_cols @ cols.T              sum over all positions of dout * x_patch
        db    = dout.sum(axis=(0, 2, 3))
        dx    = col2im(W2.T @ dout_cols)        each window gets back W * dout

    Parameters
    ----------
    dout : ndarray, shape (N, C_out, OH, OW)
    cache : tuple from :func:`conv2d_forward`
    need_dx : bool
        False skips the input gradient (the first layer of a network does
        not need it; it is a third of the work).

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W), or None when ``need_dx`` is False
    dW : ndarray, shape (C_out, C_in, kh, kw)
    db : ndarray, shape (C_out,)
    """
    x_shape, w, cols, stride, padding, batch_last = cache
    N, C_out, OH, OW = dout.shape
    W2 = w.reshape(C_out, -1)  # (C_out, K)
    db = dout.sum(axis=(0, 2, 3))
    dcols = None
    if batch_last:
        dout_cols = np.ascontiguousarray(dout.transpose(1, 2, 3, 0)).reshape(C_out, -1)
        # dW = dout_cols @ cols.T, one GEMM over all N*OH*OW positions. We ask
        # BLAS for its transpose (K, C_out) instead: the same numbers, but
        # OpenBLAS splits a product with many rows better than one with
        # C_out = 16 rows (1.7x faster for LeNet-5's second convolution).
        dW = (cols @ dout_cols.T).T
        if need_dx:
            dcols = W2.T @ dout_cols  # (K, OH*OW*N)
    else:
        dout3 = dout.reshape(N, C_out, OH * OW)  # a view: no transpose needed
        cols3 = cols.reshape(-1, N, OH * OW).transpose(1, 0, 2)  # (N, K, OH*OW) view
        # Per sample (C_out, L) @ (L, K), summed over the batch. (One GEMM with
        # a 100,000-long inner dimension is 3x slower in OpenBLAS for the
        # first layer, where C_out and K are tiny.)
        dW = np.matmul(dout3, cols3.transpose(0, 2, 1)).sum(axis=0)
        if need_dx:
            dcols = np.matmul(W2.T, dout3).transpose(1, 0, 2)  # (K, N, OH*OW) view
    dx = None
    if need_dx:
        dx = col2im(dcols, x_shape, w.shape[2:], stride, padding, batch_last)
    return dx, dW.reshape(w.shape), db


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
) -> np.ndarray:
    """Output of :func:`conv2d_forward` alone (PyTorch ``torch.nn.functional.conv2d``)."""
    return conv2d_forward(x, w, b, stride, padding)[0]
