"""The ``PTQ + clipping`` sweep entry: MSE-clipped weights, MSE-calibrated activations."""

import numpy as np
import pytest

import tinynet
from compression.clipping import MSEObserver, mse_search
from compression.clipping.technique import CANDIDATES, clip_weights_by_mse
from compression.quantization import ActivationQuantize, bit_widths
from compression.sweep import SweepTask, TechniquePoint, available_techniques
from tinynet import Linear, ReLU, Sequential


def test_an_outlier_is_clipped_to_the_level_the_mse_search_picks():
    tinynet.manual_seed(0)
    model = Sequential(Linear(50, 20), ReLU(), Linear(20, 3))
    w = model[0].weight.data
    w[0, 0] = 1.0  # one outlier far beyond the others (at most 0.14)
    before = w.copy()
    levels = clip_weights_by_mse(model, bits=2)
    top = 1.0
    best, _ = mse_search(
        before.reshape(-1), np.linspace(top / 20, top, CANDIDATES), 2, symmetric=True
    )
    assert levels["0"] == pytest.approx(best, rel=1e-6)
    assert best < 0.15  # the outlier is not worth a whole 2-bit grid
    np.testing.assert_allclose(w, np.clip(before, -best, best), rtol=1e-6)
    assert np.abs(w).max() == pytest.approx(best, rel=1e-6)


def test_the_sweep_entry_quantizes_like_ptq_with_mse_ranges(tmp_path):
    path = tmp_path / "baseline.npz"
    tinynet.manual_seed(0)
    tinynet.save(tinynet.models.lenet_300_100(), path)
    task = SweepTask(epochs=1, train_size=500, baseline_path=str(path))
    technique = available_techniques()["PTQ + clipping"]
    model = technique.apply(task.baseline(), 3, 0, task)
    assert bit_widths(model) == {
        "1.weight": 3,
        "2.output": 3,
        "3.weight": 3,
        "4.output": 3,
        "5.weight": 3,
        "5.output": 8,
    }
    quantizers = [t for m in model.modules() for t in m.output_transforms]
    assert all(isinstance(t, ActivationQuantize) for t in quantizers)
    # bake_ranges has replaced the histograms by the ranges the MSE search chose
    assert not any(isinstance(t.observer, MSEObserver) for t in quantizers)
    row = TechniquePoint(technique, task)(3, 0)
    ptq = TechniquePoint(available_techniques()["PTQ"], task)(3, 0)
    assert abs(row.nbytes - ptq.nbytes) < 0.05 * ptq.nbytes  # the same bits, about the same file
