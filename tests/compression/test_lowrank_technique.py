"""The sweep's ``low rank`` entry: factorise by energy, fine-tune, measure a real file."""

import numpy as np

from compression.lowrank import count_parameters
from compression.lowrank.technique import (
    ENERGY_GRID,
    energy_label,
    factorize_to,
    hidden_layers,
)
from compression.storage import load_compressed
from compression.sweep import TECHNIQUES, TechniquePoint
from tinynet import Linear, Sequential
from tinynet.models import lenet5, lenet_300_100
from tinynet.train import evaluate


def test_registered_with_its_grid_label_and_fine_tuning():
    technique = TECHNIQUES["low rank"]  # registered when compression.lowrank.technique is imported
    assert technique.grid == ENERGY_GRID and set(technique.fast_grid) <= set(ENERGY_GRID)
    assert technique.fine_tune is not None and technique.apply is factorize_to
    assert [energy_label(e) for e in (0.9, 0.95, 0.3)] == ["90% energy", "95% energy", "30% energy"]
    assert list(ENERGY_GRID) == sorted(ENERGY_GRID, reverse=True)


def test_the_classifier_stays_dense():
    assert hidden_layers(lenet_300_100()) == ["1", "3"]
    assert hidden_layers(lenet5()) == ["0", "3", "7", "9"]  # conv, conv, fc, fc; not fc "11"


def test_apply_factorises_hidden_layers_and_leaves_the_baseline(trained_task):
    baseline = trained_task.baseline()
    before = baseline.state_dict()
    model = factorize_to(baseline, 0.5, 0, trained_task)
    assert type(model[1]) is Sequential and type(model[3]) is Sequential
    assert type(model[5]) is Linear  # the classifier
    r1, r3 = model[1][0].weight.shape[0], model[3][0].weight.shape[0]
    assert model[1][0].weight.shape == (r1, 784) and model[1][1].weight.shape == (300, r1)
    assert 1 <= r3 < r1 < 216  # ranks that save (max_useful_rank(300, 784) = 216)
    assert count_parameters(model) == r1 * (784 + 300) + 300 + r3 * (300 + 100) + 100 + 1010
    for key, value in baseline.state_dict().items():  # the baseline copy is not changed
        np.testing.assert_array_equal(value, before[key])


def test_point_is_smaller_reloads_and_is_deterministic(trained_task, tmp_path):
    task = trained_task.__class__(**{**trained_task.__dict__, "artifact_dir": str(tmp_path)})
    point = TechniquePoint(TECHNIQUES["low rank"], task)
    row = point(0.5, 3)
    dense = TechniquePoint(TECHNIQUES["dense"], task)("float32", 3)
    params = row.extra["parameters"]
    # This baseline (2 epochs on 1,000 images) is close to its random init, whose spectrum
    # is flat: half the energy still needs ranks 80 and 28 (a 20-epoch one: 28 and 8).
    assert params < count_parameters(lenet_300_100()) / 2
    assert 4 * params < row.nbytes < 4 * params + 4096  # float32 factors plus a small header
    assert row.nbytes < dense.nbytes / 2 and row.extra["ratio"] > 2
    assert 0 <= row.extra["accuracy_before_fine_tune"] <= 1
    # The file loads back (a fresh model built from its JSON) with the row's accuracy.
    data = task.data()
    loaded = load_compressed(tmp_path / row.artifact)
    assert type(loaded[1]) is Sequential
    assert evaluate(loaded, data.x_heldout, data.y_heldout)["accuracy"] == row.accuracy
    again = point(0.5, 3)
    assert (again.nbytes, again.accuracy) == (row.nbytes, row.accuracy)
