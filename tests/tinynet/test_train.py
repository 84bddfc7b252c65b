"""Tests for tinynet.train: fit, evaluate, predict, callbacks, early stopping, divergence."""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet.train import Callback, History, TrainingDiverged, evaluate, fit, predict


def blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs in 2-D, centred at (-2, -2) and (2, 2): linearly separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)
    return x.astype(np.float32), y.astype(np.int64)


def small_mlp(seed: int = 0) -> tinynet.Sequential:
    tinynet.manual_seed(seed)
    return tinynet.Sequential(tinynet.Linear(2, 8), tinynet.ReLU(), tinynet.Linear(8, 2))


def weights(model: tinynet.Module) -> dict[str, np.ndarray]:
    return dict(model.state_dict())


class Recorder(Callback):
    """Counts every callback call and remembers the arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_begin(self, trainer):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_step_end(self, trainer, step):
        self.calls.append(("step", step, trainer.global_step))

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, trainer):
        self.calls.append(("train_end",))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def test_small_mlp_learns_separable_blobs():
    x, y = blobs(200)
    xv, yv = blobs(100, seed=1)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        10,
        val=(xv, yv),
        batch_size=20,
        progress=False,
    )
    assert isinstance(hist, History)
    assert len(hist) == 10 and len(hist.val_loss) == 10 and len(hist.lr) == 10
    assert hist.val_accuracy[-1] > 0.9
    assert hist["accuracy"][-1] > 0.9
    assert hist.loss[-1] < hist.loss[0]
    assert hist.lr == [0.1] * 10
    assert hist.epochs == list(range(1, 11))
    assert evaluate(model, xv, yv)["accuracy"] > 0.9
    assert model.training  # fit leaves the model in training mode


def test_fit_is_deterministic():
    x, y = blobs(120)
    runs = []
    for _ in range(2):
        model = small_mlp(seed=3)
        opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
        hist = fit(
            model,
            (x, y),
            tinynet.CrossEntropyLoss(),
            opt,
            3,
            val=(x, y),
            batch_size=16,
            seed=7,
            progress=False,
        )
        runs.append((hist, weights(model)))
    (h1, w1), (h2, w2) = runs
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert h1[key] == h2[key]
    assert list(w1) == list(w2)
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k])


def test_different_seed_shuffles_differently():
    x, y = blobs(120)
    losses = []
    for seed in (0, 1):
        model = small_mlp(seed=3)
        opt = tinynet.SGD(model.parameters(), lr=0.05)
        losses.append(
            fit(
                model,
                (x, y),
                tinynet.CrossEntropyLoss(),
                opt,
                1,
                batch_size=16,
                seed=seed,
                progress=False,
            ).loss[0]
        )
    assert losses[0] != losses[1]


class Snapshot(Callback):
    """Keeps a copy of the weights at the end of every epoch; sets the lr per epoch."""

    def __init__(self, lrs: list[float]) -> None:
        self.lrs = lrs
        self.states: list[dict[str, np.ndarray]] = []

    def on_epoch_begin(self, trainer, epoch):
        for group in trainer.optimizer.param_groups:
            group["lr"] = self.lrs[epoch]

    def on_epoch_end(self, trainer, epoch, logs):
        self.states.append(weights(trainer.model))


def test_early_stopping_stops_and_restores_best_weights():
    x, y = blobs(100)
    xv, yv = blobs(100, seed=1)
    model = small_mlp()
    # two epochs of descent, then gradient *ascent* (a negative lr): the loss must get worse
    snap = Snapshot([0.1, 0.1, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5])
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        8,
        val=(xv, yv),
        batch_size=25,
        callbacks=[snap],
        early_stopping=2,
        progress=False,
    )
    best = int(np.argmin(hist.val_loss))
    assert best == hist.best_epoch == 1
    assert hist.stopped_epoch == best + 2  # two epochs without improvement
    assert len(hist) == best + 3 < 8
    restored = weights(model)
    for k, v in snap.states[best].items():
        np.testing.assert_array_equal(restored[k], v)
    # the last epoch's weights were different: the restore did something
    assert any(not np.array_equal(snap.states[-1][k], restored[k]) for k in restored)
    assert evaluate(model, xv, yv)["loss"] == pytest.approx(hist.val_loss[best], rel=1e-5)


def test_no_restore_keeps_last_weights_and_patience_alias():
    x, y = blobs(100)
    model = small_mlp()
    snap = Snapshot([0.1, -0.5, -0.5, -0.5, -0.5])
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        5,
        val=(x, y),
        callbacks=[snap],
        patience=1,
        restore_best=False,
        monitor="val_accuracy",
        progress=False,
    )
    assert len(hist) < 5
    final = weights(model)
    for k, v in snap.states[-1].items():
        np.testing.assert_array_equal(final[k], v)


def test_early_stopping_needs_validation_data():
    x, y = blobs(20)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs validation data"):
        fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 2, patience=1, progress=False)
    with pytest.raises(ValueError, match="monitor"):
        fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 2, monitor="acc", progress=False)


def test_nan_loss_raises_training_diverged_with_advice():
    x, y = blobs(64)
    x[5, 0] = np.nan  # one bad input poisons the first batch that contains it
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.5)
    with pytest.raises(TrainingDiverged, match="lower the learning rate") as info:
        fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 3, batch_size=8, progress=False)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert "lr=0.5" in str(err) and "try 0.05" in str(err) and "max_grad_norm" in str(err)
    assert err.epoch == 1 and 1 <= err.step <= 8
    assert not np.isfinite(err.loss)


def test_exploding_learning_rate_diverges_without_numpy_warnings(recwarn):
    x, y = blobs(64)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=1e30)
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 50, batch_size=8, progress=False)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_callbacks_are_called_the_right_number_of_times():
    x, y = blobs(50)
    rec = Recorder()
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        3,
        batch_size=16,
        callbacks=[rec],
        progress=False,
    )
    steps_per_epoch = 4  # ceil(50 / 16)
    names = rec.names()
    assert names[0] == "train_begin" and names[-1] == "train_end"
    assert names.count("epoch_begin") == names.count("epoch_end") == 3
    steps = [c for c in rec.calls if c[0] == "step"]
    assert [c[1] for c in steps] == list(range(1, 3 * steps_per_epoch + 1))
    assert all(c[1] == c[2] for c in steps)  # step argument == trainer.global_step
    first_epoch = names[1 : names.index("epoch_end") + 1]
    assert first_epoch == ["epoch_begin"] + ["step"] * steps_per_epoch + ["epoch_end"]
    logs = [c[2] for c in rec.calls if c[0] == "epoch_end"]
    assert set(logs[0]) == {"loss", "accuracy", "lr", "time"}


def test_callback_can_stop_training():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                trainer.stop_training = True

    x, y = blobs(40)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        10,
        callbacks=[StopAfterTwo()],
        progress=False,
    )
    assert len(hist) == 2


class RecordingLoss(tinynet.MSELoss):
    """MSE that also records the extra target arrays it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.extras: list[tuple[np.ndarray, ...]] = []

    def __call__(self, outputs, target, *extra):
        self.extras.append(extra)
        return super().__call__(outputs, target)


def test_extra_targets_are_passed_to_the_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2)).astype(np.float32)
    target = rng.normal(size=(30, 2)).astype(np.float32)
    teacher = np.arange(60, dtype=np.float32).reshape(30, 2)  # row i holds (2i, 2i + 1)
    loss = RecordingLoss()
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.01)
    hist = fit(model, (x, target, teacher), loss, opt, 2, batch_size=8, progress=False)
    assert len(loss.extras) == 2 * 4
    seen = np.concatenate([e[0] for e in loss.extras[:4]])
    assert seen.shape == (30, 2)
    np.testing.assert_array_equal(np.sort(seen[:, 0]), teacher[:, 0])  # every row, once
    assert hist.accuracy == []  # float targets: no accuracy


def test_fit_accepts_an_iterable_of_batches():
    x, y = blobs(40)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 40, 10)]
    rec = Recorder()
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        batches,
        tinynet.CrossEntropyLoss(),
        opt,
        2,
        val=batches,
        callbacks=[rec],
        progress=False,
    )
    assert rec.names().count("step") == 8
    assert len(hist.val_accuracy) == 2


def test_requires_input_grad_false_during_fit_and_restored_after():
    x, y = blobs(20)
    seen = []

    class Probe(Callback):
        def on_step_end(self, trainer, step):
            seen.append((trainer.model.requires_input_grad, trainer.model[0].requires_input_grad))

    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 1, callbacks=[Probe()], progress=False)
    assert seen and all(flags == (False, False) for flags in seen)
    assert model.requires_input_grad is True

    class Boom(Callback):
        def on_step_end(self, trainer, step):
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 1, callbacks=[Boom()], progress=False)
    assert model.requires_input_grad is True


def test_scheduler_steps_once_per_epoch_and_lr_is_logged():
    x, y = blobs(40)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    sched = tinynet.StepLR(opt, step_size=1, gamma=0.5)
    hist = fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 3, scheduler=sched, progress=False)
    np.testing.assert_allclose(hist.lr, [0.1, 0.05, 0.025])


def test_max_grad_norm_limits_the_update():
    x, y = blobs(16)
    model = small_mlp()
    before = weights(model)
    opt = tinynet.SGD(model.parameters(), lr=1.0)
    fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        1,
        batch_size=16,
        max_grad_norm=1e-3,
        progress=False,
    )
    after = weights(model)
    change = np.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))
    assert change <= 1e-3 * 1.0001  # one SGD step of lr 1 with |g| <= 1e-3


def test_evaluate_and_predict_keep_modes_and_caches():
    x, y = blobs(50)
    model = tinynet.Sequential(tinynet.Linear(2, 4), tinynet.Dropout(0.5), tinynet.Linear(4, 2))
    model.train()
    model[1].eval()  # a mixed state that must come back exactly
    result = evaluate(model, x, y, batch_size=7)
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert all(m.cache is None for m in model.modules())
    logits = predict(model, x, batch_size=7)
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert all(m.cache is None for m in model.modules())

    # batched results equal one big batch in eval mode
    model.eval()
    with tinynet.no_grad():
        full = model(x)
    np.testing.assert_allclose(logits, full, rtol=1e-6)
    shifted = full - full.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert result["loss"] == pytest.approx(float(-logp[np.arange(50), y].mean()), rel=1e-5)
    assert result["accuracy"] == pytest.approx(float((full.argmax(1) == y).mean()))


def test_evaluate_with_a_regression_loss_has_no_accuracy():
    x = np.ones((6, 2), np.float32)
    model = small_mlp()
    with tinynet.no_grad():
        out = model(x)
    result = evaluate(model, x, np.zeros((6, 2), np.float32), loss_fn=tinynet.MSELoss())
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(float((out**2).mean()), rel=1e-6)


def test_bad_arguments_teach():
    x, y = blobs(10)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    loss = tinynet.CrossEntropyLoss()
    with pytest.raises(ValueError, match="same length"):
        fit(model, (x, y[:5]), loss, opt, 1, progress=False)
    with pytest.raises(TypeError, match="tuple of arrays"):
        fit(model, x, loss, opt, 1, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, (x, y), loss, opt, 1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, (x, y), loss, opt, -1, progress=False)


def test_progress_bar_runs(capsys):
    x, y = blobs(20)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 2, val=(x, y), progress=True)
    assert len(hist) == 2
    assert "epoch 2/2" in capsys.readouterr().err


def test_best_epoch_is_recorded_without_early_stopping_and_weights_are_not_restored():
    x, y = blobs(60)
    model = small_mlp()
    snap = Snapshot([0.1, 0.1, -0.5])
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    hist = fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        3,
        val=(x, y),
        callbacks=[snap],
        progress=False,
    )
    assert len(hist) == 3 and hist.stopped_epoch is None
    assert hist.best_epoch == int(np.argmin(hist.val_loss)) == 1
    final = weights(model)
    for k, v in snap.states[-1].items():  # the last epoch's weights, not the best
        np.testing.assert_array_equal(final[k], v)


def test_monitoring_an_accuracy_that_is_not_measured_is_an_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2)).astype(np.float32)
    t = rng.normal(size=(20, 2)).astype(np.float32)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="was not measured"):
        fit(
            model,
            (x, t),
            tinynet.MSELoss(),
            opt,
            2,
            val=(x, t),
            patience=1,
            monitor="val_accuracy",
            progress=False,
        )


def test_weights_broken_by_the_last_step_are_caught_by_validation():
    class Poison(Callback):
        def on_step_end(self, trainer, step):
            if step == 2:  # the last step of the first epoch
                trainer.model[0].weight.data[:] = np.inf

    x, y = blobs(40)
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingDiverged, match="validation loss became nan at epoch 1, step 2"):
        fit(
            model,
            (x, y),
            tinynet.CrossEntropyLoss(),
            opt,
            1,
            val=(x, y),
            batch_size=20,
            callbacks=[Poison()],
            progress=False,
        )
