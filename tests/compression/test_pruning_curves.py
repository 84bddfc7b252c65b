"""Density curves: every method reaches every density, and the baseline is left alone."""

import numpy as np
import pytest

import tinynet
from compression.pruning import density_curve, gradual_schedule, plot_density_curve
from tinynet import Linear, ReLU, Sequential
from tinynet.data import DataLoader


def small_model():
    tinynet.manual_seed(0)
    return Sequential(Linear(20, 30), ReLU(), Linear(30, 4))


def toy_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    return x, y


def make_fine_tune(calls):
    x, y = toy_data()

    def fine_tune(model, epochs, callbacks):
        calls.append((epochs, [type(c).__name__ for c in callbacks]))
        opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
        tinynet.fit(
            model,
            DataLoader(x, y, batch_size=16, shuffle=True, seed=0),
            tinynet.CrossEntropyLoss(),
            opt,
            epochs,
            callbacks=list(callbacks),
            progress=False,
        )

    return fine_tune


def evaluate(model):
    x, y = toy_data()
    return tinynet.evaluate(model, x, y)["accuracy"]


def test_every_method_reaches_every_density_and_leaves_the_baseline_dense():
    baseline = small_model()
    before = {k: v.copy() for k, v in baseline.state_dict().items()}
    calls = []
    points = density_curve(
        baseline,
        make_fine_tune(calls),
        evaluate,
        densities=(1.0, 0.5, 0.1),
        epochs=2,
        steps_per_epoch=4,
    )
    assert [(p.method, p.density) for p in points] == [
        (m, d) for m in ("one-shot", "iterative", "gradual") for d in (1.0, 0.5, 0.1)
    ]
    weights = 20 * 30 + 30 * 4
    biases = 30 + 4
    for p in points:
        # global pruning of the two weight matrices; biases kept and counted
        assert p.nonzero <= round(p.density * weights) + biases
        assert p.nonzero >= round(p.density * weights) - 5  # a trained weight is rarely 0.0
        assert p.compression == pytest.approx((weights + biases) / p.nonzero)
    epochs = {(p.method, p.density): p.epochs for p in points}
    assert epochs[("one-shot", 0.1)] == 2
    assert epochs[("iterative", 0.5)] == 2 and epochs[("iterative", 0.1)] == 4
    assert epochs[("gradual", 1.0)] == 0
    # one-shot 2 points, iterative 2 rounds, gradual 2 runs with its schedule attached
    assert [c[1] for c in calls] == [[], [], [], [], ["GradualPruning"], ["GradualPruning"]]
    for key, value in baseline.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert plot_density_curve(points).get_xlabel() == "weights kept (density)"


def test_gradual_schedule_spends_two_thirds_of_the_run_pruning():
    schedule = gradual_schedule(0.9, epochs=3, steps_per_epoch=50)
    assert schedule.t0 == 0 and schedule.n * schedule.dt == 100
    assert schedule.sparsity_at(100) == pytest.approx(0.9)
    assert schedule.sparsity_at(0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"densities": (1.0, 0.0)}, r"densities must lie in \(0, 1\], got 0.0"),
        ({"densities": (1.5,)}, r"densities must lie in \(0, 1\], got 1.5"),
        ({"methods": ("random",)}, "methods must be among"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"steps_per_epoch": None}, "gradual pruning needs steps_per_epoch"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    args = {"densities": (1.0, 0.5), "epochs": 1, "steps_per_epoch": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        density_curve(small_model(), make_fine_tune([]), evaluate, **args)
