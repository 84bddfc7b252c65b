"""Shared argument helpers for convolution and pooling: pairs and output sizes.

The output size of a window of size ``k`` sliding with stride ``s`` over an
input of size ``H`` padded by ``p`` zeros on each side is::

    OH = floor((H + 2p - k) / s) + 1        (same for W)
"""

from __future__ import annotations

import numpy as np

IntPair = int | tuple[int, int]


# ----------------------------------------------------------------- helpers
def _pair(value: IntPair, name: str, minimum: int = 1) -> tuple[int, int]:
    """Turn ``3`` or ``(3, 3)`` into ``(3, 3)``, checking the values."""
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum for v in pair
    ):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length ``floor((size + 2*padding - kernel) / stride) + 1``.

    Raises ``ValueError`` when the (padded) input is smaller than the kernel.
    """
    if size + 2 * padding < kernel:
        raise ValueError(
            f"input of size {size} (padded by {padding} on each side) is smaller than "
            f"the kernel of size {kernel}"
        )
    return (size + 2 * padding - kernel) // stride + 1


def _output_shape(x_shape, kernel, stride, padding) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return (
        conv_output_size(x_shape[2], kh, sh, ph),
        conv_output_size(x_shape[3], kw, sw, pw),
    )
