"""compression.clipping: why cutting off the largest values can make a quantized network better.

A quantizer's step is its range divided by its levels, so one large value
makes every other value coarser. Clipping trades a big error on a few
values for a smaller one on all the rest. Read in this order:

==================  ===========================================================
``weights``         weights clipped to ``[-c, c]`` (fixed, per channel, or
                    ``k * std``): as a projection after each optimizer step
                    (``clip_weights_``, ``ClipWeights``) or as a transform with
                    its gradient (``WeightClip``)
``activations``     ``Clip(c)`` and ``ReLU6``; PACT, the clipping level learned
                    by gradient descent (Choi et al. 2018), with its quantizer
``histogram``       what a calibrating observer keeps (a histogram of ``|x|``)
                    and how it turns it into a range once the bit width is
                    known; ``bake_ranges``
``calibration``     observers that choose an activation quantizer's range:
                    percentile, mean-squared-error search
``aciq``            the analytic optimum for Laplace and Gaussian data (Banner
                    et al. 2019), and the error curve it minimises
``entropy``         KL-divergence calibration as TensorRT does it (Migacz 2017)
``logits``          the logits' range chosen by the softmax's cross entropy
                    (Nagel et al. 2021): the error that matters for a classifier
``technique``       the ``PTQ + clipping`` entry of the sweep (imported by it)
==================  ===========================================================

Min-max calibration is ``compression.quantization.MinMaxObserver``
(re-exported here); gradient-norm clipping is ``tinynet.clip_grad_norm_``.
Every observer here plugs into ``compression.quantization.quantize_activations``
unchanged::

    quantize_activations(model, x_calib, bits=3, observer=MSEObserver)
    quantize_activations(model, x_calib, bits=3,
                         observer=functools.partial(PercentileObserver, percentile=99.9))

Importing this package registers ``WeightClip`` (so ``tinynet.load``
rebuilds it) and the observers (so a saved ``ActivationQuantize`` that
names one reloads).

>>> import numpy as np
>>> from compression.clipping import PercentileObserver, aciq_coefficient
>>> round(aciq_coefficient(4), 2)                  # Laplace, 4 bits: clip at 5.03 b
5.03
>>> obs = PercentileObserver(percentile=99.0, bins=1000)
>>> obs.observe(np.linspace(0.0, 1.0, 10_001))
>>> round(float(obs.range()[1]), 3)                # the top 1% of |x| is clipped
0.99
"""

from compression.clipping.aciq import (
    DISTRIBUTIONS,
    ACIQObserver,
    aciq_coefficient,
    aciq_quantize,
    gaussian_clipping_mse,
    laplace_clipping_mse,
)
from compression.clipping.activations import (
    PACT,
    Clip,
    ReLU6,
    pact_alphas,
    pact_quantize,
    replace_relu_with_pact,
)
from compression.clipping.calibration import (
    MSEObserver,
    PercentileObserver,
    mse_search,
    percentile_threshold,
    quantization_mse,
)
from compression.clipping.entropy import (
    KLObserver,
    kl_divergence,
    kl_threshold,
    quantize_distribution,
    smooth_distribution,
)
from compression.clipping.histogram import (
    ClippingObserver,
    bake_ranges,
    clipped_range,
    merge_bins,
)
from compression.clipping.logits import (
    CrossEntropyObserver,
    softmax_cross_entropy,
)
from compression.clipping.weights import (
    ClipWeights,
    WeightClip,
    clip_weight,
    clip_weights_,
    clipping_level,
)
from compression.quantization.observers import MinMaxObserver

__all__ = [
    # weights
    "ClipWeights",
    "WeightClip",
    "clip_weight",
    "clip_weights_",
    "clipping_level",
    # activations
    "PACT",
    "Clip",
    "ReLU6",
    "pact_alphas",
    "pact_quantize",
    "replace_relu_with_pact",
    # calibration
    "ACIQObserver",
    "ClippingObserver",
    "CrossEntropyObserver",
    "DISTRIBUTIONS",
    "KLObserver",
    "MSEObserver",
    "MinMaxObserver",
    "PercentileObserver",
    "aciq_coefficient",
    "aciq_quantize",
    "bake_ranges",
    "clipped_range",
    "gaussian_clipping_mse",
    "kl_divergence",
    "kl_threshold",
    "laplace_clipping_mse",
    "merge_bins",
    "mse_search",
    "percentile_threshold",
    "quantization_mse",
    "quantize_distribution",
    "smooth_distribution",
    "softmax_cross_entropy",
]
