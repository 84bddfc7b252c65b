"""The quantization entries of the sweep: post-training, quantization-aware, LSQ, k-means.

Four ways to store a trained model's weights in ``b`` bits, swept over
``b = 8, 6, 4, 3, 2`` so the report draws one accuracy-against-bytes curve
for each:

=====================  ========================================================
``PTQ``                post-training (Krishnamoorthi 2018, sec. 3.1): weights
                       per output channel from their min/max, activations from
                       a min-max observer over 512 training images; no training
``QAT``                quantization-aware training (Jacob et al. 2018): the
                       fake-quantized twin (:func:`prepare_qat`, min-max
                       scales) fine-tuned, then frozen
``LSQ``                the same with learned step sizes (Esser et al. 2020)
``k-means sharing``    Deep Compression's weight sharing (Han et al. 2016):
                       ``2^b`` centroids per layer, linear initialisation,
                       centroids fine-tuned; activations stay float
=====================  ========================================================

In the first three, every weight and every hidden activation uses ``b``
bits; only the logits (the last layer's output) stay at
:data:`LOGIT_BITS` = 8, since four levels cannot rank ten classes. (Many
low-bit papers also keep the first layer's weights at 8 bits; in an MLP
that layer holds 88% of the weights, so the file would hardly shrink.) The
image itself is 8-bit already (MNIST pixels); biases stay float32 (an
integer engine keeps them in int32 anyway). Each row records every layer's
bit width (:func:`~compression.quantization.bit_widths`).

Fine-tuning reuses the pruning entry's :func:`~compression.pruning.technique.fine_tune`
(the recipe at a tenth of its learning rate, cosine, +-1 pixel shifts) for
:data:`FINE_TUNE_EPOCHS` epochs; determinism as there: everything that draws
comes from the point's ``seed``.
"""

from __future__ import annotations

from typing import Any

from compression.pruning.technique import LR_FACTOR, fine_tune
from compression.quantization.apply import (
    activation_targets,
    freeze_quantizers,
    prepare_qat,
    quantize_activations,
    quantize_weights,
    weight_names,
)
from compression.quantization.sharing import centroid_groups, share_weights
from compression.sweep.task import RECIPE, SweepTask
from compression.sweep.techniques import Technique, register_technique
from tinynet.module import Module

__all__ = [
    "BIT_GRID",
    "CALIBRATION_IMAGES",
    "FINE_TUNE_EPOCHS",
    "LOGIT_BITS",
    "bits_label",
    "fine_tune_centroids",
    "fine_tune_quantized",
    "kmeans_share",
    "lsq_twin",
    "post_training",
    "qat_twin",
    "ptq_widths",
]

#: Bit widths of a full sweep (the issue's 8-to-2-bit curves).
BIT_GRID = (8, 6, 4, 3, 2)
#: Width of the logits (the last layer's output).
LOGIT_BITS = 8
#: Training images the post-training observers see.
CALIBRATION_IMAGES = 512
#: Epochs of quantization-aware fine-tuning (at most ``task.epochs``).
FINE_TUNE_EPOCHS = 2


def ptq_widths(model: Module, bits: int) -> tuple[dict[str, int], dict[str, int]]:
    """``(weight widths, activation widths)``: ``bits`` everywhere but the logits.

    >>> from tinynet.models import lenet_300_100
    >>> w, a = ptq_widths(lenet_300_100(), 4)
    >>> w, a
    ({'1.weight': 4, '3.weight': 4, '5.weight': 4}, {'2': 4, '4': 4, '5': 8})
    """
    targets = activation_targets(model)
    a_bits = {name: bits for name in targets}
    a_bits[targets[-1]] = LOGIT_BITS
    return {name: bits for name in weight_names(model)}, a_bits


def post_training(baseline: Module, bits: int, seed: int, task: SweepTask) -> Module:
    """Post-training quantization at ``bits``: per-channel weights, then min-max activations.

    The observers see the first :data:`CALIBRATION_IMAGES` training images
    (the quantized weights already in place, so the ranges are theirs).
    """
    w_bits, a_bits = ptq_widths(baseline, bits)
    quantize_weights(baseline, w_bits, per_channel=True)
    calibration = task.data().x_train[:CALIBRATION_IMAGES]
    quantize_activations(baseline, calibration, a_bits)
    return baseline


def qat_twin(baseline: Module, bits: int, seed: int, task: SweepTask) -> Module:
    """The min-max fake-quantized twin at ``bits`` (logits at 8), ranges from calibration."""
    w_bits, a_bits = ptq_widths(baseline, bits)
    return prepare_qat(
        baseline,
        w_bits,
        a_bits,
        method="minmax",
        inplace=True,
        calibration=task.data().x_train[:CALIBRATION_IMAGES],
    )


def lsq_twin(baseline: Module, bits: int, seed: int, task: SweepTask) -> Module:
    """The LSQ twin at ``bits`` (logits at 8; step sizes learned)."""
    w_bits, a_bits = ptq_widths(baseline, bits)
    return prepare_qat(
        baseline,
        w_bits,
        a_bits,
        method="lsq",
        inplace=True,
        calibration=task.data().x_train[:CALIBRATION_IMAGES],
    )


def kmeans_share(baseline: Module, bits: int, seed: int, task: SweepTask) -> Module:
    """Every weight clustered into ``2^bits`` shared values (linear initialisation)."""
    share_weights(baseline, bits, init="linear")
    return baseline


def fine_tune_quantized(model: Module, bits: int, seed: int, task: SweepTask) -> None:
    """Fine-tune a quantized twin for ``min(FINE_TUNE_EPOCHS, task.epochs)`` epochs, then freeze.

    The straight-through estimator carries the gradient to the latent
    weights (QAT), to the step sizes (LSQ) or to the centroids (k-means
    sharing); :func:`freeze_quantizers` then fixes every scale so the file
    stores ``bits``-bit integers.
    """
    fine_tune(model, task, seed, min(FINE_TUNE_EPOCHS, task.epochs))
    freeze_quantizers(model)


def fine_tune_centroids(model: Module, bits: int, seed: int, task: SweepTask) -> None:
    """Fine-tune only the shared centroids (assignments fixed), at a per-layer learning rate.

    See :func:`~compression.quantization.sharing.centroid_groups`: each
    layer's centroids step at the fine-tuning rate times ``k / n``.
    """
    groups = centroid_groups(model, RECIPE["lr"] * LR_FACTOR)
    fine_tune(model, task, seed, min(FINE_TUNE_EPOCHS, task.epochs), params=groups)


def bits_label(bits: Any) -> str:
    """``4`` -> ``"4-bit"``."""
    return f"{bits}-bit"


_COMMON = dict(grid=BIT_GRID, fast_grid=(8, 4, 2), label=bits_label)
_LOGITS = f"logits at {LOGIT_BITS} bits"

register_technique(
    Technique(
        name="PTQ",
        apply=post_training,
        description=(
            "post-training quantization: per-channel min-max weights, activations from a "
            f"min-max observer over {CALIBRATION_IMAGES} training images; {_LOGITS}"
        ),
        **_COMMON,
    )
)
register_technique(
    Technique(
        name="QAT",
        apply=qat_twin,
        fine_tune=fine_tune_quantized,
        description=(
            f"quantization-aware training: min-max fake quantization, {FINE_TUNE_EPOCHS} epochs "
            f"of fine-tuning at a tenth of the learning rate; {_LOGITS}"
        ),
        **_COMMON,
    )
)
register_technique(
    Technique(
        name="LSQ",
        apply=lsq_twin,
        fine_tune=fine_tune_quantized,
        description=(
            f"learned step size quantization (Esser et al. 2020), {FINE_TUNE_EPOCHS} epochs of "
            f"fine-tuning; {_LOGITS}"
        ),
        **_COMMON,
    )
)
register_technique(
    Technique(
        name="k-means sharing",
        apply=kmeans_share,
        fine_tune=fine_tune_centroids,
        description=(
            "weight sharing (Deep Compression): 2^b centroids per layer, linear initialisation, "
            f"centroids fine-tuned for {FINE_TUNE_EPOCHS} epochs; activations float"
        ),
        **_COMMON,
    )
)
