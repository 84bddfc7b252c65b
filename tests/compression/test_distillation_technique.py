"""The ``distillation`` sweep entry: the width technique's students, distilled from the baseline."""

import importlib

import numpy as np
import pytest

from compression.sweep import TechniquePoint, build_model, train_recipe
from compression.sweep.techniques import TECHNIQUE_MODULES, TECHNIQUES
from tinynet.models import mlp

MODULE = "compression.distillation.technique"


@pytest.fixture(scope="module")
def technique():
    """The module (importing it registers "distillation"; the sweep lists it)."""
    assert MODULE in TECHNIQUE_MODULES
    return importlib.import_module(MODULE)


def test_registered_with_the_width_grid(technique):
    entry = TECHNIQUES["distillation"]
    width = TECHNIQUES["width"]
    assert entry.grid == width.grid and entry.fast_grid == width.fast_grid
    assert entry.label(64) == width.label(64) == "784-64-10"
    assert entry.apply is technique.distill_mlp and entry.fine_tune is None
    assert 0 < technique.T and 0 <= technique.ALPHA <= 1


def test_distilled_row_is_sane_and_deterministic(technique, trained_task):
    point = TechniquePoint(TECHNIQUES["distillation"], trained_task)
    row = point(16, 3)
    alone = TechniquePoint(TECHNIQUES["width"], trained_task)(16, 3)
    assert row.technique == "distillation" and row.setting == alone.setting == "784-16-10"
    assert row.extra["parameters"] == alone.extra["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
    # Equal bytes: the same float32 tensors. Only the header's CRC-32 of the payload,
    # written in decimal, can differ in length (up to 10 digits).
    assert abs(row.nbytes - alone.nbytes) < 10
    assert 0.5 < row.accuracy <= 1.0 and 0.5 < row.extra["val_accuracy"] <= 1.0
    assert row.without_time() == point(16, 3).without_time()  # same seed, same row


def test_with_alpha_zero_it_is_exactly_the_width_recipe(technique, trained_task):
    # Only the loss differs from train_recipe: with alpha = 0 the KD loss is the
    # cross-entropy, and the two students come out the same, weight for weight.
    data = trained_task.data()
    x, y = data.x_train[:300], data.y_train[:300]
    teacher = trained_task.baseline()
    alone = build_model(lambda: mlp((784, 12, 10)), 5)
    train_recipe(alone, x, y, epochs=2, seed=5)
    distilled = build_model(lambda: mlp((784, 12, 10)), 5)
    technique.train_distilled(distilled, teacher, x, y, epochs=2, seed=5, T=4.0, alpha=0.0)
    for key, value in alone.state_dict().items():
        np.testing.assert_array_equal(distilled.state_dict()[key], value)


def test_the_teacher_is_not_changed(technique, trained_task):
    teacher = trained_task.baseline()
    before = teacher.state_dict()
    student = technique.distill_mlp(teacher, 8, 0, trained_task)
    assert student[1].weight.shape == (8, 784) and student[3].weight.shape == (10, 8)
    for key, value in teacher.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert not teacher.training  # the baseline came in eval mode and stays so
