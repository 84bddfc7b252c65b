"""Sensitivity scan: every (layer, sparsity) row, the model left exactly as it was."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import tinynet
from compression.pruning import (
    SensitivityRow,
    current_keep,
    plot_sensitivity,
    prune_model,
    sensitivity_scan,
)
from tinynet.models import mlp


def blobs(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return x.astype(np.float32), y.astype(np.int64)


def state(model):
    """Latent values and keep-masks of every parameter, and the transform objects."""
    return [
        (name, p.data.copy(), current_keep(p), [id(t) for t in p.transforms])
        for name, _, _, p in model.named_parameter_slots()
    ]


def assert_same_state(a, b):
    assert [(n, ids) for n, _, _, ids in a] == [(n, ids) for n, _, _, ids in b]
    for (_, da, ka, _), (_, db, kb, _) in zip(a, b):
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(ka, kb)


def test_scan_rows_are_complete_and_the_model_is_unchanged():
    x, y = blobs()
    tinynet.manual_seed(0)
    model = mlp((8, 6, 2))
    before = state(model)
    out_before = tinynet.predict(model, x)
    seen = []

    def count_zeros(m, data):  # a hand-checkable "accuracy": fraction of weights kept
        w1, w2 = m[1].weight, m[3].weight
        seen.append((int((~current_keep(w1)).sum()), int((~current_keep(w2)).sum())))
        return 1.0 - len(seen) / 100

    rows = sensitivity_scan(model, (x, y), [0.0, 0.5, 1.0], evaluate_fn=count_zeros)
    assert [(r.name, r.sparsity) for r in rows] == [
        ("1.weight", 0.0),
        ("1.weight", 0.5),
        ("1.weight", 1.0),
        ("3.weight", 0.0),
        ("3.weight", 0.5),
        ("3.weight", 1.0),
    ]
    assert all(isinstance(r, SensitivityRow) for r in rows)
    # Each point prunes only its layer (48 and 12 weights), from the original model.
    assert seen == [(0, 0), (24, 0), (48, 0), (0, 0), (0, 6), (0, 12)]
    assert_same_state(before, state(model))
    np.testing.assert_array_equal(tinynet.predict(model, x), out_before)


def test_scan_on_a_masked_model_restores_its_masks_and_accuracy_falls():
    x, y = blobs()
    tinynet.manual_seed(1)
    model = mlp((8, 16, 2))
    tinynet.fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        tinynet.SGD(model.parameters(), lr=0.2),
        5,
        batch_size=16,
        progress=False,
    )
    prune_model(model, 0.25)  # already masked: the scan must put these masks back
    before = state(model)
    rows = sensitivity_scan(model, (x, y), [0.0, 1.0], exclude_first=True)
    assert [r.name for r in rows] == ["3.weight", "3.weight"]
    assert rows[0].accuracy == tinynet.evaluate(model, x, y)["accuracy"] > 0.9
    assert rows[1].accuracy <= 0.75  # no output weights: a constant prediction
    assert_same_state(before, state(model))
    with pytest.raises(ValueError, match=r"each sparsity must be a number in \[0, 1\]"):
        sensitivity_scan(model, (x, y), [0.5, 2.0])


def test_plot_draws_one_line_per_parameter():
    rows = [
        SensitivityRow("1.weight", 0.0, 0.9),
        SensitivityRow("1.weight", 0.5, 0.8),
        SensitivityRow("3.weight", 0.0, 0.9),
        SensitivityRow("3.weight", 0.5, 0.5),
    ]
    ax = plot_sensitivity(rows)
    assert [line.get_label() for line in ax.get_lines()] == ["1.weight", "3.weight"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [0.9, 0.5])
    plt.close("all")
