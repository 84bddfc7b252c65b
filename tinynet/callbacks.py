"""Callbacks: code that runs at fixed points of :func:`tinynet.fit`.

A callback is a small object whose methods ``fit`` calls after each
optimizer step, at the end of each epoch, and so on. Techniques that act
during training (a gradual pruning schedule raising the sparsity every few
steps, a quantizer that freezes its ranges after a few epochs) are
callbacks, so there is only one training loop. This file also holds the
:class:`History` a run returns and the :class:`Trainer` state callbacks see.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tinynet.module import Module, StateDict


class History:
    """Per-epoch record of a :func:`fit` run: lists you can plot directly.

    Attributes (also readable as ``history["loss"]``)
    ----------
    loss, accuracy : list of float
        Training loss and accuracy, means over each epoch's batches
        (``accuracy`` only when the targets are integer class labels).
    val_loss, val_accuracy : list of float
        The same on the validation data (empty without ``val``).
    lr : list of float
        Learning rate of the first parameter group during each epoch.
    time : list of float
        Seconds spent training each epoch (validation excluded).
    best_epoch : int or None
        0-based index of the best epoch by ``monitor``:
        ``history.val_loss[history.best_epoch]`` is the best validation loss.
    stopped_epoch : int or None
        0-based index of the epoch after which early stopping ended training.

    Example: ``plt.plot(history.epochs, history.val_accuracy)``.
    """

    keys = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")

    def __init__(self) -> None:
        for key in self.keys:
            setattr(self, key, [])
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def append(self, logs: dict[str, float]) -> None:
        """Add one epoch's values (keys missing from ``logs`` are skipped)."""
        for key in self.keys:
            if logs.get(key) is not None:
                getattr(self, key).append(logs[key])

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers 1, 2, ... for the x axis of a plot."""
        return list(range(1, len(self.loss) + 1))

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.keys:
            raise KeyError(f"History has no {key!r}; keys are {self.keys}")
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.loss)

    def as_dict(self) -> dict[str, list[float]]:
        """A plain ``dict`` of copies of the lists (for pandas or JSON)."""
        return {key: list(getattr(self, key)) for key in self.keys}

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.as_dict().items() if v and k != "time"}
        return f"History(epochs={len(self)}, best_epoch={self.best_epoch}, last={last})"


class Trainer:
    """The state of one :func:`fit` run, as callbacks see it.

    Attributes
    ----------
    model, optimizer, loss_fn
        What ``fit`` was called with.
    history : History
        Filled in as epochs finish.
    epochs : int
        The number of epochs asked for.
    epoch : int
        The current epoch, counted from 0.
    global_step : int
        Optimizer steps taken so far, over all epochs.
    stop_training : bool
        Set it to True in a callback to stop after the current epoch.
    """

    def __init__(self, model: Module, optimizer: Any, loss_fn: Any, history: History, epochs: int):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.history, self.epochs = history, epochs
        self.epoch = 0
        self.global_step = 0
        self.stop_training = False


class Callback:
    """Base class for code that runs at fixed points of :func:`fit`.

    Override only the methods you need; the others do nothing. Every method
    receives the :class:`Trainer`, whose attributes ``model``,
    ``optimizer``, ``history``, ``epoch`` (0-based), ``global_step``
    (optimizer steps done so far) you may read, and whose
    ``stop_training`` flag you may set to end training after the current
    epoch. Order within one epoch::

        on_epoch_begin -> (step, on_step_end) x steps -> validation
        -> scheduler.step() -> on_epoch_end

    ``fit`` calls its own :class:`EarlyStopping` before your callbacks.

    Example: stop when the training loss is small enough::

        class StopAt(Callback):
            def on_epoch_end(self, trainer, epoch, logs):
                if logs["loss"] < 0.01:
                    trainer.stop_training = True
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once, before the first epoch."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Called at the start of each epoch (``epoch`` counts from 0)."""

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        """Called after each ``optimizer.step()``; ``step`` = steps done so far (from 1).

        Pruning schedules plug in here: recompute masks every few steps.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        """Called after validation; ``logs`` holds this epoch's history entries."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch (not when an exception ends training)."""


class EarlyStopping(Callback):
    """Remember the best epoch by ``monitor``; optionally stop early and restore it.

    ``fit`` always runs one of these first (it fills ``history.best_epoch``);
    ``patience`` turns on the stopping, and ``restore_best`` then loads the
    best epoch's weights (``model.state_dict()`` copies) when training ends.
    The Keras callback of the same name.

    Parameters
    ----------
    monitor : {"val_loss", "val_accuracy", "loss", "accuracy"}
        Losses are minimised, accuracies maximised.
    patience : int or None
        Stop after this many epochs in a row without improvement; None never stops.
    restore_best : bool
        With ``patience``, load the best weights at the end of training.
    """

    modes: ClassVar[dict[str, str]] = {
        "val_loss": "min",
        "loss": "min",
        "val_accuracy": "max",
        "accuracy": "max",
    }

    def __init__(
        self, monitor: str = "val_loss", patience: int | None = None, restore_best: bool = True
    ):
        if monitor not in self.modes:
            raise ValueError(f"monitor must be one of {sorted(self.modes)}, got {monitor!r}")
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"patience must be a positive integer (epochs), got {patience!r}")
        self.monitor, self.patience, self.restore_best = monitor, patience, restore_best
        self.best_value: float | None = None
        self.best_state: StateDict | None = None
        self.epochs_since_best = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            if self.patience is not None:
                raise ValueError(
                    f"monitor={self.monitor!r} was not measured: accuracy needs 2-D outputs and "
                    "integer class labels as the first target; monitor a loss instead"
                )
            return
        better = self.best_value is None or (
            value < self.best_value
            if self.modes[self.monitor] == "min"
            else value > self.best_value
        )
        if better:
            self.best_value, self.epochs_since_best = value, 0
            trainer.history.best_epoch = epoch
            if self.patience is not None and self.restore_best:
                self.best_state = trainer.model.state_dict()
            return
        self.epochs_since_best += 1
        if self.patience is not None and self.epochs_since_best >= self.patience:
            trainer.history.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer: Trainer) -> None:
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
