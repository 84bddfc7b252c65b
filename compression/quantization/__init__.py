"""compression.quantization: any bit width, post-training and quantization-aware.

Read in this order (each file is one lesson):

==============  ==============================================================
``affine``      array math: ``qparams``, ``quantize``, ``dequantize``,
                ``fake_quantize`` and the straight-through ``ste_mask``
==============  ==============================================================
"""

from compression.quantization.affine import (
    MAX_BITS,
    MIN_BITS,
    check_axis,
    check_scale,
    dequantize,
    fake_quantize,
    pow2_scale,
    qparams,
    qrange,
    quantize,
    ste_mask,
)

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "check_axis",
    "check_scale",
    "dequantize",
    "fake_quantize",
    "pow2_scale",
    "qparams",
    "qrange",
    "quantize",
    "ste_mask",
]
