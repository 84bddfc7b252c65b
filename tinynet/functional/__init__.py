"""Convolution and pooling as plain functions on arrays (the math behind the layers).

Every function takes NumPy arrays in NCHW layout: ``x`` has shape
``(N, C, H, W)`` (batch, channels, height, width) and a convolution weight
has shape ``(C_out, C_in, kh, kw)`` (PyTorch's layout). A window of size
``k`` sliding with stride ``s`` over an input of size ``H`` padded by ``p``
zeros on each side gives ``OH = floor((H + 2p - k) / s) + 1`` outputs.

Each operation comes twice: a *naive* version with plain loops over output
positions (``conv2d_naive``, ``max_pool2d_naive``...), to read, and a *fast*
version (``conv2d_forward`` / ``conv2d_backward``...) with no Python loop
over samples, used by the layers. The tests check both give the same numbers.

Read in this order:

* :mod:`tinynet.functional.conv`: the naive convolution, im2col/col2im, the
  fast convolution as matrix products, and the measurements behind its
  design;
* :mod:`tinynet.functional.pooling`: max pooling (the first maximum of each
  window gets the gradient) and average pooling.

Everything is importable from here: ``import tinynet.functional as F``.
"""

from tinynet.functional._shapes import IntPair, _pair, conv_output_size
from tinynet.functional.conv import (
    BATCH_LAST_BELOW,
    col2im,
    conv2d,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_naive,
    im2col,
)
from tinynet.functional.pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_backward_naive,
    avg_pool2d_forward,
    avg_pool2d_naive,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_naive,
)

__all__ = [
    "BATCH_LAST_BELOW",
    "IntPair",
    "_pair",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool2d_backward_naive",
    "avg_pool2d_forward",
    "avg_pool2d_naive",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "conv2d_backward_naive",
    "conv2d_forward",
    "conv2d_naive",
    "conv_output_size",
    "im2col",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_backward_naive",
    "max_pool2d_forward",
    "max_pool2d_naive",
]
