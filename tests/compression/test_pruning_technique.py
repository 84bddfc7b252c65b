"""Procedures (one-shot, iterative, lottery ticket, L1 penalty) and the sweep's pruning entry."""

import dataclasses
import os

import numpy as np
import pytest

import tinynet
from compression.pruning import (
    L1Penalty,
    current_keep,
    effective_value,
    eligible_parameters,
    iterative_prune,
    lottery_sparsity,
    lottery_ticket,
    one_shot,
    retrain,
    snapshot,
    sparsity_report,
)
from compression.pruning.technique import percent_pruned
from compression.storage import load_compressed
from compression.sweep import TECHNIQUES, SweepTask, TechniquePoint, available_techniques
from tinynet.callbacks import Callback
from tinynet.models import lenet_300_100, mlp


def blobs(n=128, seed=0):
    """Two well-separated Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return x.astype(np.float32), y.astype(np.int64)


def small_mlp():
    return mlp((8, 32, 2))  # weights 8*32 = 256 and 32*2 = 64


FIT = {"batch_size": 32, "seed": 0}


def weight_sparsity(model):
    params = eligible_parameters(model)
    kept = sum(int(current_keep(p).sum()) for _, p in params)
    return 1 - kept / sum(p.size for _, p in params)


def pruned_are_zero(model):
    return all(
        np.all(effective_value(p)[~current_keep(p)] == 0) for _, p in eligible_parameters(model)
    )


# ------------------------------------------------------------- procedures


def test_one_shot_prunes_exactly_and_fine_tuning_keeps_the_masks():
    x, y = blobs()
    tinynet.manual_seed(0)
    model = small_mlp()
    result = one_shot(model, 0.75, (x, y), epochs=2, lr=0.05, fit_kwargs=FIT)
    assert result.sparsity == 0.75 and [r.kept for r in result.summary.rows] == [64, 16]
    assert len(result.history) == 2
    assert weight_sparsity(model) == 0.75 and pruned_are_zero(model)
    assert tinynet.evaluate(model, x, y)["accuracy"] > 0.9  # separable: still solved
    no_tune = one_shot(small_mlp(), 0.5)
    assert no_tune.history is None
    with pytest.raises(ValueError, match="needs training data"):
        one_shot(small_mlp(), 0.5, epochs=1)


def test_iterative_prune_rounds_and_lower_learning_rate():
    x, y = blobs()
    tinynet.manual_seed(0)
    model = small_mlp()
    retrain(model, (x, y), 3, 0.1, FIT)  # train first, then prune and retrain
    assert tinynet.evaluate(model, x, y)["accuracy"] > 0.9
    rounds = iterative_prune(
        model, (x, y), [0.5, 0.8, 0.9], retrain_epochs=1, lr=0.5, fit_kwargs=FIT, scope="global"
    )
    assert [r.sparsity for r in rounds] == [0.5, 0.8, 0.9]
    assert [r.summary.kept for r in rounds] == [160, 64, 32]  # of 320 weights
    assert all(r.history.lr == [0.05] for r in rounds)  # lr * lr_factor
    assert weight_sparsity(model) == pytest.approx(0.9) and pruned_are_zero(model)
    assert tinynet.evaluate(model, x, y)["accuracy"] > 0.9
    with pytest.raises(ValueError, match="non-decreasing"):
        iterative_prune(small_mlp(), (x, y), [0.8, 0.5], 1, 0.1)


class StartWeights(Callback):
    """The effective weights at the start of every fit call (right after rewinding)."""

    def __init__(self):
        self.starts = []

    def on_train_begin(self, trainer):
        self.starts.append(snapshot(trainer.model))


def test_lottery_ticket_rewinds_survivors_to_their_initial_values():
    x, y = blobs()
    starts = StartWeights()
    model, rounds = lottery_ticket(
        small_mlp, (x, y), rounds=3, epochs=1, lr=0.1, fit_kwargs={**FIT, "callbacks": [starts]}
    )
    tinynet.manual_seed(0)
    initial = snapshot(small_mlp())  # what lottery_ticket built from seed 0
    assert [r.sparsity for r in rounds] == pytest.approx([0.0, 0.2, 0.36, 0.488], abs=1e-12)
    assert rounds[0].summary is None
    for r in (1, 2, 3):  # global: round(s * 320) of the 320 weights dropped
        assert rounds[r].summary.kept == 320 - round(lottery_sparsity(r) * 320)
    for name, w0 in initial.items():  # round 0 starts from W_0
        np.testing.assert_array_equal(starts.starts[0][name], w0)
    # After rounds 1..3 the latent values start as W_0 * mask (biases: W_0 too).
    final_keep = {n: current_keep(p) for n, _, _, p in model.named_parameter_slots()}
    for name, w0 in initial.items():
        np.testing.assert_array_equal(starts.starts[3][name], np.where(final_keep[name], w0, 0))
    assert weight_sparsity(model) == pytest.approx(lottery_sparsity(3), abs=1 / 320)
    assert pruned_are_zero(model)


def test_l1_penalty_value_and_gradient_match_finite_differences():
    x, y = blobs(16)
    tinynet.manual_seed(3)
    model = mlp((8, 5, 2)).astype(np.float64)
    loss_fn = L1Penalty(model, lam=0.01)
    params = [p for _, p in eligible_parameters(model)]
    crit_only = tinynet.CrossEntropyLoss()(model(x.astype(np.float64)), y)
    total = loss_fn(model(x.astype(np.float64)), y)
    assert total == pytest.approx(crit_only + 0.01 * sum(np.abs(p.data).sum() for p in params))

    for p in model.parameters():
        p.grad = None
    model.backward(loss_fn.backward())  # fit's order: zero_grad, then loss_fn.backward()

    def loss_at():
        return loss_fn(model(x.astype(np.float64)), y)

    eps = 1e-6
    for p in model.parameters():  # biases too: their gradient has no penalty term
        for idx in [(0,) * p.data.ndim, tuple(s - 1 for s in p.shape)]:
            old = p.data[idx]
            p.data[idx] = old + eps
            up = loss_at()
            p.data[idx] = old - eps
            down = loss_at()
            p.data[idx] = old
            assert p.grad[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_l1_penalty_in_fit_pushes_weights_towards_zero():
    x, y = blobs()
    norms = {}
    for lam in (0.0, 0.05):
        tinynet.manual_seed(0)
        model = small_mlp()
        loss_fn = L1Penalty(model, lam)
        optimizer = tinynet.SGD(model.parameters(), lr=0.1)
        tinynet.fit(model, (x, y), loss_fn, optimizer, 5, progress=False, **FIT)
        norms[lam] = sum(float(np.abs(p.data).sum()) for _, p in eligible_parameters(model))
    assert norms[0.05] < 0.8 * norms[0.0]
    with pytest.raises(ValueError, match="lam must be a non-negative number"):
        L1Penalty(small_mlp(), -1.0)


# ---------------------------------------------------------------- sweep entry


@pytest.fixture(scope="module")
def pruning_task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    tinynet.manual_seed(0)
    model = lenet_300_100()
    task = SweepTask(epochs=1, train_size=300, baseline_path=str(folder / "baseline.npz"))
    task.train(model, seed=0)
    tinynet.save(model.state_dict(), task.baseline_path)
    return dataclasses.replace(task, artifact_dir=str(folder))


def test_pruning_is_registered_after_dense_and_width():
    techniques = available_techniques()
    assert list(techniques)[:3] == ["dense", "width", "pruning"]
    pruning = techniques["pruning"]
    assert pruning.grid == (0.5, 0.8, 0.9, 0.95, 0.98) and pruning.fast_grid == (0.5, 0.9)
    assert percent_pruned(0.9) == "90% pruned" and percent_pruned(0.985) == "98.5% pruned"


def test_pruning_point_is_sparse_smaller_and_deterministic(pruning_task):
    available_techniques()
    point = TechniquePoint(TECHNIQUES["pruning"], pruning_task)
    row = point(0.9, seed=5)
    assert row.setting == "90% pruned"
    assert row.without_time() == point(0.9, seed=5).without_time()  # same seed, same row
    path = os.path.join(pruning_task.artifact_dir, row.artifact)
    assert os.path.getsize(path) == row.nbytes
    dense = TechniquePoint(TECHNIQUES["dense"], pruning_task)("float32", seed=5)
    assert row.nbytes < 0.2 * dense.nbytes  # 10% of the weights kept, indices included
    model = load_compressed(path)  # the masks survive the file
    report = sparsity_report(model)
    weights = sum(r["total"] for r in report.rows if r["name"].endswith("weight"))
    kept = sum(r["kept"] for r in report.rows if r["name"].endswith("weight"))
    assert kept == weights - round(0.9 * weights)  # global: exactly 90% of all weights
    assert tinynet.evaluate(model, *pruning_task.data()[5:7])["accuracy"] == row.accuracy
    assert "accuracy_before_fine_tune" in row.extra
