"""Pruning schedules: the cubic of Zhu & Gupta by hand, the callback inside fit, lottery rounds."""

import numpy as np
import pytest

import tinynet
from compression.pruning import (
    GradualPruning,
    agp_sparsity,
    current_keep,
    effective_value,
    eligible_parameters,
    lottery_sparsity,
)
from tinynet.callbacks import Callback
from tinynet.models import mlp


def test_agp_sparsity_known_answers():
    # s_i = 0.1, s_f = 0.9, t0 = 100, n = 4, dt = 10: window [100, 140]
    # s_t = 0.9 + (0.1 - 0.9) * (1 - (t - 100) / 40) ** 3
    def s(t):
        return agp_sparsity(t, 0.1, 0.9, t0=100, n=4, dt=10)

    assert s(0) == 0.1 and s(99) == 0.1 and s(100) == 0.1  # before and at t0: s_i
    assert s(110) == pytest.approx(0.9 - 0.8 * 0.75**3)  # 0.5625
    assert s(110) == pytest.approx(0.5625)
    assert s(120) == pytest.approx(0.9 - 0.8 * 0.125)  # 0.8
    assert s(130) == pytest.approx(0.9 - 0.8 * 0.25**3)  # 0.8875
    assert s(140) == 0.9 and s(10_000) == 0.9  # at the end and after: s_f
    assert s(105) == pytest.approx(0.9 - 0.8 * (35 / 40) ** 3)  # between updates too


def test_agp_sparsity_is_non_decreasing_and_errors_teach():
    values = [agp_sparsity(t, 0.0, 0.95, 3, 7, 5) for t in range(60)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match=r"s_f must be a number in \[0, 1\]"):
        agp_sparsity(0, 0.0, 1.5, 0, 1, 1)
    with pytest.raises(ValueError, match="dt must be an integer >= 1"):
        agp_sparsity(0, 0.0, 0.5, 0, 1, 0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        agp_sparsity(0, 0.0, 0.5, 0, 0, 1)


def test_lottery_sparsity_table():
    # 20% of what remains per round: 1 - 0.8**r
    table = {0: 0.0, 1: 0.2, 2: 0.36, 3: 0.488, 4: 0.5904, 5: 0.67232}
    for r, expected in table.items():
        assert lottery_sparsity(r) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="round must be an integer >= 0"):
        lottery_sparsity(-1)


def blobs(n=96, seed=0):
    """Two well-separated Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)).astype(np.float32) + np.where(y[:, None] == 1, 2.0, -2.0)
    return x.astype(np.float32), y.astype(np.int64)


class Recorder(Callback):
    """Sparsity of every eligible weight after every step (runs after GradualPruning)."""

    def __init__(self):
        self.sparsity = {}
        self.zero_where_pruned = []

    def on_step_end(self, trainer, step):
        params = eligible_parameters(trainer.model)
        kept = sum(int(current_keep(p).sum()) for _, p in params)
        total = sum(p.size for _, p in params)
        self.sparsity[step] = 1 - kept / total
        self.zero_where_pruned.append(
            all(np.all(effective_value(p)[~current_keep(p)] == 0) for _, p in params)
        )


def test_gradual_pruning_follows_the_schedule_inside_fit():
    x, y = blobs()
    tinynet.manual_seed(0)
    model = mlp((8, 16, 2))  # weights: 8*16 + 16*2 = 160 entries, 128 and 32
    schedule = GradualPruning(0.8, start_step=2, n_updates=3, every=4, scope="global")
    recorder = Recorder()
    optimizer = tinynet.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    tinynet.fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        optimizer,
        epochs=4,  # 96 / 16 = 6 steps per epoch, 24 steps
        batch_size=16,
        callbacks=[schedule, recorder],
        progress=False,
    )
    # Updates at t0 + k dt = 2, 6, 10, 14 with the cubic's values, exactly.
    assert [t for t, _ in schedule.updates] == [2, 6, 10, 14]
    for t, s in schedule.updates:
        assert s == agp_sparsity(t, 0.0, 0.8, 2, 3, 4)
        assert recorder.sparsity[t] == pytest.approx(round(s * 160) / 160)
    assert recorder.sparsity[2] == 0.0 and recorder.sparsity[14] == pytest.approx(0.8)
    # Between updates the sparsity holds (masks only grow, and nothing grows back)...
    steps = sorted(recorder.sparsity)
    assert steps == list(range(1, 25))
    for t in range(15, 25):
        assert recorder.sparsity[t] == pytest.approx(0.8)
    for a, b in zip(steps, steps[1:]):
        assert recorder.sparsity[b] >= recorder.sparsity[a]
    # ... and the pruned effective weights are exactly zero after every step.
    assert all(recorder.zero_where_pruned)


def test_gradual_pruning_at_step_zero_prunes_before_training():
    x, y = blobs(32)
    tinynet.manual_seed(1)
    model = mlp((8, 4, 2))
    schedule = GradualPruning(0.5, start_step=0, n_updates=1, every=1, initial_sparsity=0.25)
    tinynet.fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        tinynet.SGD(model.parameters(), lr=0.1),
        epochs=1,
        batch_size=16,
        callbacks=[schedule],
        progress=False,
    )
    assert schedule.updates == [(0, 0.25), (1, 0.5)]
    first = model[1].weight  # Flatten, Linear, ReLU, Linear
    assert int((~current_keep(first)).sum()) == 16  # layer-wise: round(0.5 * 32)
