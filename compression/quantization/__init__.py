"""compression.quantization: any bit width, post-training and quantization-aware.

Read in this order (each file is one lesson):

===================  =========================================================
``affine``           array math: ``qparams``, ``quantize``, ``dequantize``,
                     ``fake_quantize`` and the straight-through ``ste_mask``
``observers``        ranges from data: min-max, moving average; ``calibrate``
``fake_quant``       ``FakeQuantize`` (weights) and ``ActivationQuantize``
                     (outputs) as transforms with the straight-through gradient
``lsq``              learned step size (Esser et al. 2020), its gradient by hand
``apply``            whole models: post-training ``quantize_weights`` and
                     ``quantize_activations``, ``prepare_qat``, back to float
``folding``          BatchNorm folded into the layer before it
``bias_correction``  the mean output shift of quantized weights, removed
``kmeans``           1-D k-means: the array math of weight sharing
``sharing``          ``SharedWeights``: a codebook per layer (Deep Compression)
``binary``           binary (BinaryConnect) and ternary (TWN) weights
``storage_quant``,   how each of these is stored, at its true bit cost
``storage_sharing``
``integer_ops``,     integer-only inference (Jacob et al. 2018): int8 products
``integer_layers``,  summed exactly, fixed-point rescaling, every integer shown
``integer_pooling``,
``integer``
===================  =========================================================

Importing this package registers its transforms (so ``tinynet.load`` and
``load_compressed`` can rebuild them) and their storage codecs.

>>> from compression.quantization import qparams, fake_quantize
>>> scale, zero_point = qparams(-1.0, 3.0, bits=8)
>>> float(fake_quantize(0.1, scale, zero_point, 0, 255))
0.0941176526248455

PyTorch counterparts: ``torch.ao.quantization`` (``MinMaxObserver``,
``FakeQuantize``, ``fake_quantize_per_tensor_affine``/``per_channel_affine``,
``fuse_conv_bn_eval``).
"""

from compression.quantization import storage_quant, storage_sharing  # noqa: F401  (codecs)
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
from compression.quantization.apply import (
    activation_targets,
    bit_widths,
    freeze_quantizers,
    observe_ranges,
    prepare_qat,
    quantize_activations,
    quantize_weights,
    strip_quantization,
)
from compression.quantization.bias_correction import bias_correction, quantize_weight_array
from compression.quantization.binary import (
    BinaryWeights,
    ClipLatent,
    TernaryWeights,
    binarize,
    binary_codes,
    clip_latent,
    ternarize,
    ternary_codes,
)
from compression.quantization.fake_quant import ActivationQuantize, FakeQuantize
from compression.quantization.folding import fold_batchnorm, folded_index_map
from compression.quantization.integer import (
    IntegerSequential,
    compile_integer,
    fake_quant_reference,
)
from compression.quantization.integer_ops import matmul_exact, quantize_multiplier, rescale
from compression.quantization.kmeans import INITS, assign_nearest, init_centroids, kmeans_1d
from compression.quantization.lsq import LSQ, lsq_levels, lsq_step_gradient
from compression.quantization.observers import (
    OBSERVER_TYPES,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    Observer,
    calibrate,
    min_max,
    register_observer,
)
from compression.quantization.sharing import (
    PRUNED,
    SharedWeights,
    centroid_groups,
    deep_compression_bits,
    quantizable_weights,
    share_weights,
)

__all__ = [
    "observe_ranges",
    "centroid_groups",
    # affine array math
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
    # observers, fake quantization, LSQ, models
    "OBSERVER_TYPES",
    "ActivationQuantize",
    "FakeQuantize",
    "LSQ",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "activation_targets",
    "bit_widths",
    "calibrate",
    "freeze_quantizers",
    "lsq_levels",
    "lsq_step_gradient",
    "min_max",
    "prepare_qat",
    "quantize_activations",
    "quantize_weights",
    "register_observer",
    "strip_quantization",
    # post-training helpers
    "bias_correction",
    "fold_batchnorm",
    "folded_index_map",
    "quantize_weight_array",
    # integer-only inference
    "IntegerSequential",
    "compile_integer",
    "fake_quant_reference",
    "matmul_exact",
    "quantize_multiplier",
    "rescale",
    # weight sharing, binary, ternary
    "INITS",
    "PRUNED",
    "BinaryWeights",
    "ClipLatent",
    "SharedWeights",
    "TernaryWeights",
    "assign_nearest",
    "binarize",
    "binary_codes",
    "clip_latent",
    "deep_compression_bits",
    "init_centroids",
    "kmeans_1d",
    "quantizable_weights",
    "share_weights",
    "ternarize",
    "ternary_codes",
]
