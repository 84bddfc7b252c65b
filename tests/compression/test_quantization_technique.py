"""The quantization entries of the sweep, and the helpers they rest on.

``observe_ranges`` (a QAT twin calibrated before training), ``centroid_groups``
(the learning rate of shared centroids), ``bit_widths`` for every kind of
quantized weight, and the four registered techniques on a tiny task.
"""

import numpy as np
import pytest

import tinynet
from compression.quantization import (
    binarize,
    bit_widths,
    centroid_groups,
    observe_ranges,
    prepare_qat,
    quantize_activations,
    quantize_weights,
    share_weights,
    ternarize,
)
from compression.quantization.technique import LOGIT_BITS, ptq_widths
from compression.sweep import (
    TechniquePoint,
    available_techniques,
)
from tinynet import BatchNorm1d, Linear, ReLU, Sequential


def small_net(seed: int = 0) -> Sequential:
    tinynet.manual_seed(seed)
    return Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Linear(8, 3))


def test_observe_ranges_gives_the_twin_the_ranges_post_training_would():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    model = small_net().eval()
    model[1].running_mean[:] = rng.normal(size=8)  # BatchNorm statistics must not move
    stats = model[1].running_mean.copy(), model[1].running_var.copy()

    twin = prepare_qat(model, 8, 8, per_channel=True, calibration=x)
    assert not twin.training  # the mode it came in
    np.testing.assert_array_equal(twin[1].running_mean, stats[0])
    np.testing.assert_array_equal(twin[1].running_var, stats[1])

    # Post-training calibration of the same weights on the same data: the first
    # quantizer sees the same numbers, so its range is the same. The logits' differs
    # a little: the twin's observer sees logits computed from *quantized* hidden
    # activations (layer after layer), PTQ's from float ones (all observers at once).
    ptq = quantize_weights(small_net().eval(), 8, per_channel=True)
    ptq[1].running_mean[:] = stats[0]
    quantize_activations(ptq, x, 8)
    (hidden_twin,), (hidden_ptq,) = twin[2].output_transforms, ptq[2].output_transforms
    assert hidden_twin.qparams() == hidden_ptq.qparams()
    (logits_twin,) = twin[3].output_transforms
    with tinynet.no_grad():
        h = twin[2](twin[1](twin[0](x)))  # calling a module applies its output quantizer
        z = twin[3].forward(h)  # forward alone: the logits before theirs
    lo, hi = logits_twin.observer.range()
    assert (lo, hi) == (min(z.min(), 0), max(z.max(), 0))
    with tinynet.no_grad():
        np.testing.assert_allclose(twin(x), ptq(x), atol=0.01)


def test_observe_ranges_refuses_an_empty_calibration_set():
    twin = prepare_qat(small_net(), 4, 4)
    with pytest.raises(ValueError, match="no batch"):
        observe_ranges(twin, [])


def test_a_twin_without_calibration_cannot_be_evaluated_before_training():
    twin = prepare_qat(small_net(), 4, 4).eval()
    with pytest.raises(ValueError, match="no range yet"), tinynet.no_grad():
        twin(np.zeros((2, 6), np.float32))


def test_centroid_groups_scale_the_rate_by_cluster_size_and_skip_weight_decay():
    model = small_net()
    share_weights(model, bits=2)  # k = 4: 48 weights in layer 0, 24 in layer 3
    groups = centroid_groups(model, lr=0.1)
    assert [g["lr"] for g in groups] == pytest.approx([0.1 * 4 / 48, 0.1 * 4 / 24])
    assert all(g["weight_decay"] == 0.0 for g in groups)
    assert all(g["params"][0].size == 4 for g in groups)
    with pytest.raises(ValueError, match="no weight-shared parameter"):
        centroid_groups(small_net(), lr=0.1)


def test_bit_widths_of_every_kind_of_quantized_weight():
    model = small_net()
    share_weights(model, k=5, include=["0.weight"])  # 5 centroids need 3 bits
    assert bit_widths(model) == {"0.weight": 3, "3.weight": 32}
    binary, ternary = small_net(), small_net()
    binarize(binary)
    ternarize(ternary)
    assert bit_widths(binary) == {"0.weight": 1, "3.weight": 1}
    assert bit_widths(ternary) == {"0.weight": 2, "3.weight": 2}


def test_sweep_widths_keep_only_the_logits_at_eight_bits():
    w, a = ptq_widths(small_net(), 3)
    assert w == {"0.weight": 3, "3.weight": 3}
    assert a == {"2": 3, "3": LOGIT_BITS}


@pytest.mark.parametrize("name", ["PTQ", "QAT", "LSQ", "k-means sharing"])
def test_each_technique_stores_its_bits_and_keeps_accuracy_at_8_bits(trained_task, name):
    task = trained_task
    technique = available_techniques()[name]
    row8 = TechniquePoint(technique, task)(8, 0)
    row2 = TechniquePoint(technique, task)(2, 0)
    dense = TechniquePoint(available_techniques()["dense"], task)("float32", 0)
    assert "1.weight=8" in row8.extra["bit_widths"] and "1.weight=2" in row2.extra["bit_widths"]
    # 8-bit weights: at most about a quarter of the float32 file (less when the file
    # finds a cheaper code: LSQ's 8-bit weights use only a few dozen of the 256 levels,
    # so a codebook of the levels used is smaller); 2-bit: about a sixteenth.
    assert row8.nbytes / dense.nbytes < 0.27
    assert row2.nbytes / dense.nbytes < 0.09
    assert row8.accuracy >= dense.accuracy - 0.02
