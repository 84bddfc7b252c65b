"""Fixtures shared by the compression tests."""

import pytest

import tinynet
from compression.sweep import SweepTask, build_model, train_recipe
from tinynet.models import lenet_300_100


@pytest.fixture(scope="session")
def trained_task(tmp_path_factory):
    """A sweep task whose baseline is LeNet-300-100 trained for 2 epochs on 1,000 embedded images.

    Trained once per test session; a technique's tests use it as the
    baseline to compress (or the teacher to distil from).
    """
    path = tmp_path_factory.mktemp("trained") / "baseline.npz"
    task = SweepTask(epochs=1, train_size=1000, baseline_path=str(path))
    data = task.data()
    model = build_model(lenet_300_100, 0)
    train_recipe(model, data.x_train, data.y_train, epochs=2, seed=0)
    tinynet.save(model, path)
    return task
