"""The ``PTQ + clipping`` entry of the sweep: post-training quantization with clipped ranges.

The same grid and policy as the ``PTQ`` entry (``compression.quantization.technique``:
every weight and hidden activation at ``b`` bits, the logits at 8, no
training), with one change: ranges are *clipped* where that lowers the
quantization error, instead of spanning every value (min-max):

* each weight matrix is first clipped to ``[-T, T]`` (a projection, as
  :func:`~compression.clipping.clip_weights_` does), ``T`` chosen by
  :func:`~compression.clipping.mse_search` among ``CANDIDATES`` levels
  between ``max|W| / 20`` and ``max|W|`` on the ``b``-bit symmetric grid;
  then quantized per output channel as ``PTQ`` does;
* activation ranges come from :class:`~compression.clipping.MSEObserver`
  (the MSE search on each output's histogram) instead of min-max, then
  :func:`~compression.clipping.bake_ranges` keeps only the chosen range.

Comparing the two entries at equal bits shows what clipping buys: the same
bytes, a different accuracy (and at 2-3 bits, usually a much better one).
"""

from __future__ import annotations

import numpy as np

from compression.clipping.calibration import MSEObserver, mse_search
from compression.clipping.histogram import bake_ranges
from compression.pruning.apply import prunable_layers
from compression.quantization.apply import quantize_activations, quantize_weights
from compression.quantization.technique import (
    BIT_GRID,
    CALIBRATION_IMAGES,
    bits_label,
    ptq_widths,
)
from compression.sweep.task import SweepTask
from compression.sweep.techniques import Technique, register_technique
from tinynet.grad_mode import no_grad
from tinynet.module import Module

__all__ = ["CANDIDATES", "clip_weights_by_mse", "clipped_post_training"]

#: Candidate clipping levels per weight matrix.
CANDIDATES = 100


def clip_weights_by_mse(model: Module, bits: int) -> dict[str, float]:
    """Clip each ``Conv2d``/``Linear`` weight to its MSE-optimal symmetric level, in place.

    Returns ``{layer name: T}``. The latent values are changed (a
    projection), so whatever is applied next (quantization) sees them clipped.
    """
    levels = {}
    for name, layer in prunable_layers(model):
        w = layer.weight.data
        top = float(np.abs(w).max())
        if top == 0:
            continue
        thresholds = np.linspace(top / 20, top, CANDIDATES)
        best, _ = mse_search(w.reshape(-1), thresholds, bits, symmetric=True)
        with no_grad():
            np.clip(w, -best, best, out=w)
        levels[name] = best
    return levels


def clipped_post_training(baseline: Module, bits: int, seed: int, task: SweepTask) -> Module:
    """``PTQ`` at ``bits`` with MSE-clipped weights and MSE-calibrated activation ranges."""
    w_bits, a_bits = ptq_widths(baseline, bits)
    clip_weights_by_mse(baseline, bits)
    quantize_weights(baseline, w_bits, per_channel=True)
    calibration = task.data().x_train[:CALIBRATION_IMAGES]
    quantize_activations(baseline, calibration, a_bits, observer=MSEObserver)
    bake_ranges(baseline)
    return baseline


register_technique(
    Technique(
        name="PTQ + clipping",
        apply=clipped_post_training,
        grid=BIT_GRID,
        fast_grid=(8, 4, 2),
        label=bits_label,
        description=(
            "post-training quantization as PTQ, but each weight matrix clipped to its "
            "MSE-optimal level first and activation ranges chosen by MSE search; logits at 8 bits"
        ),
    )
)
