"""The training loop: one ``fit``, one ``evaluate``, and callbacks to plug into them.

Every step of gradient descent is the same five lines, written out in
:func:`fit` so you can read them::

    out  = model(x)                       # forward, layers keep their caches
    loss = loss_fn(out, *targets)         # a float
    optimizer.zero_grad()                 # .grad accumulates: reset it first
    model.backward(loss_fn.backward())    # dL/d(out) -> every param.grad
    optimizer.step()                      # W <- W - lr * dL/dW (or Adam's rule)

Everything else is bookkeeping: batching and shuffling, the per-epoch
history, validation, early stopping, a clear error when the loss blows up,
and *callbacks*: small objects whose methods are called at fixed points
(after each optimizer step, at the end of each epoch...). Techniques that
need to act during training, such as a gradual pruning schedule that raises
the sparsity every few steps, are callbacks, so there is only one loop.

PyTorch has no ``fit``; this is the loop every PyTorch tutorial writes by
hand, with the callback points of Keras's ``Model.fit``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from tinynet.callbacks import Callback, EarlyStopping, History, Trainer
from tinynet.data import DataLoader
from tinynet.grad_mode import no_grad
from tinynet.losses import CrossEntropyLoss
from tinynet.module import Module
from tinynet.optim import clip_grad_norm_

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "Trainer",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "predict",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training cannot recover from that.

    Attributes
    ----------
    loss : float
        The non-finite loss value.
    epoch : int
        Epoch number, counted from 1 as in the message.
    step : int
        Optimizer step number over the whole run, counted from 1.
    lr : float or None
        Learning rate of the first parameter group at that moment.
    """

    def __init__(
        self,
        loss: float,
        epoch: int,
        step: int,
        lr: float | None,
        max_grad_norm: float | None = None,
        what: str = "loss",
    ) -> None:
        self.loss, self.epoch, self.step, self.lr = loss, epoch, step, lr
        lr_text = f" (lr={lr:g})" if lr is not None else ""
        lower = f"lower the learning rate (try {lr / 10:g})" if lr else "lower the learning rate"
        if max_grad_norm:
            clip = f"or clip the gradients harder (max_grad_norm={max_grad_norm / 10:g})"
        else:
            clip = "or add gradient clipping (max_grad_norm=1.0)"
        super().__init__(
            f"{what} became {loss} at epoch {epoch}, step {step}{lr_text}: {lower}, "
            f"check the inputs are normalised, {clip}"
        )


def fit(
    model: Module,
    train: Sequence[np.ndarray] | Iterable[Sequence[np.ndarray]],
    loss_fn: Any,
    optimizer: Any,
    epochs: int,
    *,
    val: Sequence[np.ndarray] | Iterable[Sequence[np.ndarray]] | None = None,
    batch_size: int = 128,
    scheduler: Any = None,
    callbacks: Iterable[Callback] = (),
    early_stopping: int | None = None,
    patience: int | None = None,
    monitor: str = "val_loss",
    restore_best: bool = True,
    seed: int = 0,
    progress: bool = True,
    max_grad_norm: float | None = None,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train``; return the :class:`History`.

    Parameters
    ----------
    model : Module
        Put in training mode for each epoch, evaluation mode for validation.
    train : tuple of arrays ``(x, y, *extra)``, or an iterable of batches
        Arrays are cut into shuffled batches by
        ``tinynet.data.DataLoader(*train, batch_size=batch_size, shuffle=True,
        seed=seed)``. Anything else (a ``DataLoader``, a list) must yield
        tuples ``(x, *targets)`` each time it is iterated.
    loss_fn : loss object
        Called as ``loss_fn(outputs, *targets) -> float``; ``loss_fn.backward()``
        returns dL/d(outputs). Extra targets (cached teacher logits for
        distillation) are passed through.
    optimizer : optimizer
        ``zero_grad()``, ``step()`` and ``param_groups`` (for the logged ``lr``).
    epochs : int
        Maximum number of passes over the data.
    val : tuple of arrays or iterable of batches, optional
        Validation data, evaluated after every epoch (``val_loss``,
        ``val_accuracy``).
    batch_size : int, default 128
        Used only when ``train`` is a tuple of arrays.
    scheduler : learning-rate scheduler, optional
        ``scheduler.step()`` is called once at the end of every epoch.
    callbacks : iterable of Callback
        See :class:`Callback` for when each method is called.
    early_stopping, patience : int, optional
        The same setting under two names: stop after this many epochs in a
        row without improvement of ``monitor``.
    monitor : {"val_loss", "val_accuracy", "loss", "accuracy"}
        What counts as "best": losses are minimised, accuracies maximised.
        ``history.best_epoch`` is always recorded when the value exists.
    restore_best : bool, default True
        With early stopping, load the weights of the best epoch at the end.
        Without early stopping the final weights are kept (a pruning
        schedule's later, sparser epochs must not be undone).
    seed : int, default 0
        Seed of the shuffling. Dropout draws from the global generator, so
        call ``tinynet.manual_seed`` before building the model for a
        reproducible run.
    progress : bool, default True
        Show a ``tqdm`` progress bar (works in notebooks); False is silent.
    max_grad_norm : float, optional
        Clip the global gradient norm to this before each step
        (``tinynet.optim.clip_grad_norm_``).

    Returns
    -------
    History
        Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
        ``time`` and the ``best_epoch`` index.

    Raises
    ------
    TrainingDiverged
        When a batch's loss is NaN or infinite (with advice in the message).
    """
    patience = _resolve_patience(early_stopping, patience)
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    best = EarlyStopping(monitor, patience, restore_best)
    if patience is not None and val is None and monitor.startswith("val_"):
        raise ValueError(
            f"early stopping on monitor={monitor!r} needs validation data: pass "
            "val=(x_val, y_val), or monitor='loss' to watch the training loss"
        )
    train_batches = make_batches(train, batch_size, shuffle=True, seed=seed, name="train")
    val_batches = None if val is None else make_batches(val, 1000, shuffle=False, name="val")
    callbacks = [best, *callbacks]
    trainer = Trainer(model, optimizer, loss_fn, History(), epochs)
    bar = _progress_bar(train_batches, epochs) if progress else None

    with restore_requires_input_grad(model, False):
        try:
            for cb in callbacks:
                cb.on_train_begin(trainer)
            for epoch in range(epochs):
                trainer.epoch = epoch
                if bar is not None:
                    bar.set_description(f"epoch {epoch + 1}/{epochs}")
                for cb in callbacks:
                    cb.on_epoch_begin(trainer, epoch)
                logs = _train_one_epoch(trainer, train_batches, callbacks, max_grad_norm, bar)
                if val_batches is not None:
                    logs.update(_validate(trainer, val_batches, logs["lr"], max_grad_norm))
                trainer.history.append(logs)
                if scheduler is not None:
                    scheduler.step()
                for cb in callbacks:
                    cb.on_epoch_end(trainer, epoch, logs)
                if bar is not None:
                    bar.set_postfix(_postfix(logs), refresh=True)
                if trainer.stop_training:
                    break
        finally:
            if bar is not None:
                bar.close()
        for cb in callbacks:
            cb.on_train_end(trainer)
    return trainer.history


def _validate(
    trainer: Trainer, batches: Any, lr: float | None, max_grad_norm: float | None
) -> dict[str, float]:
    """``{"val_loss", "val_accuracy"?}``; a non-finite loss means the last step broke the net."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = _evaluate_batches(trainer.model, batches, trainer.loss_fn)
    if not math.isfinite(result["loss"]):
        raise TrainingDiverged(
            result["loss"],
            trainer.epoch + 1,
            trainer.global_step,
            lr,
            max_grad_norm,
            what="validation loss",
        )
    return {f"val_{k}": v for k, v in result.items() if v is not None}


def _train_one_epoch(
    trainer: Trainer,
    batches: Iterable[Sequence[np.ndarray]],
    callbacks: list[Callback],
    max_grad_norm: float | None,
    bar: Any,
) -> dict[str, float]:
    """One pass over the batches; return ``{"loss", "accuracy"?, "lr", "time"}``."""
    model, optimizer, loss_fn = trainer.model, trainer.optimizer, trainer.loss_fn
    model.train()
    lr = _current_lr(optimizer)
    start = time.perf_counter()
    loss_sum, n_seen, n_correct, n_labelled = 0.0, 0, 0, 0
    for batch in batches:
        x, *targets = batch
        # Overflow in a diverging net would print warnings before our error: silence them.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = model(x)
            loss = float(loss_fn(out, *targets))
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    loss, trainer.epoch + 1, trainer.global_step + 1, lr, max_grad_norm
                )
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            if max_grad_norm is not None:
                clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
        trainer.global_step += 1

        n = len(x)
        loss_sum += loss * n
        n_seen += n
        correct = count_correct(out, targets)
        if correct is not None:
            n_correct += correct
            n_labelled += n
        if bar is not None:
            bar.update(1)
            running = {"loss": loss_sum / n_seen}
            if n_labelled:
                running["accuracy"] = n_correct / n_labelled
            for key in ("val_loss", "val_accuracy"):  # last epoch's, until the next validation
                if trainer.history[key]:
                    running[key] = trainer.history[key][-1]
            bar.set_postfix(_postfix(running), refresh=False)
        for cb in callbacks:
            cb.on_step_end(trainer, trainer.global_step)

    if n_seen == 0:
        raise ValueError("the training data yielded no batches")
    logs = {"loss": loss_sum / n_seen}
    if n_labelled:
        logs["accuracy"] = n_correct / n_labelled
    logs["lr"] = lr
    logs["time"] = time.perf_counter() - start
    return logs


def evaluate(
    model: Module,
    x: np.ndarray,
    y: np.ndarray,
    loss_fn: Any = None,
    batch_size: int = 1000,
) -> dict[str, float | None]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in evaluation mode.

    Runs under :func:`tinynet.no_grad` (no layer keeps a cache) in
    ``eval()`` mode, then gives every module back the mode it had.

    Parameters
    ----------
    x : ndarray, shape (N, ...)
    y : ndarray, shape (N,) integer labels (or whatever ``loss_fn`` takes)
    loss_fn : loss object, optional
        Default ``tinynet.CrossEntropyLoss()``.
    batch_size : int, default 1000

    Returns
    -------
    dict
        ``{"loss": mean loss over the N samples, "accuracy": fraction correct}``;
        ``accuracy`` is None unless ``y`` holds integer class labels.
    """
    if loss_fn is None:
        loss_fn = CrossEntropyLoss()
    batches = make_batches((x, y), batch_size, shuffle=False, name="evaluate")
    return _evaluate_batches(model, batches, loss_fn)


def predict(model: Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Outputs (logits) of ``model`` for every row of ``x``, in evaluation mode.

    Parameters
    ----------
    x : ndarray, shape (N, ...)
    batch_size : int, default 1000

    Returns
    -------
    ndarray, shape (N, ...)
        ``model(x)`` computed batch by batch under ``no_grad`` and concatenated.
    """
    x = np.asarray(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    with eval_mode(model), no_grad():
        outputs = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    if not outputs:
        raise ValueError("predict needs at least one input row, got an empty array")
    return np.concatenate(outputs)


def _evaluate_batches(
    model: Module, batches: Iterable[Sequence[np.ndarray]], loss_fn: Any
) -> dict[str, float | None]:
    """Sample-weighted mean loss and accuracy over batches of ``(x, *targets)``."""
    loss_sum, n_seen, n_correct, n_labelled = 0.0, 0, 0, 0
    with eval_mode(model), no_grad():
        for x, *targets in batches:
            out = model(x)
            loss_sum += float(loss_fn(out, *targets)) * len(x)
            n_seen += len(x)
            correct = count_correct(out, targets)
            if correct is not None:
                n_correct += correct
                n_labelled += len(x)
    if n_seen == 0:
        raise ValueError("evaluation data yielded no batches")
    return {"loss": loss_sum / n_seen, "accuracy": n_correct / n_labelled if n_labelled else None}


# ------------------------------------------------------------------ helpers
def _resolve_patience(early_stopping: int | None, patience: int | None) -> int | None:
    if early_stopping is not None and patience is not None and early_stopping != patience:
        raise ValueError(
            f"early_stopping={early_stopping} and patience={patience} are the same setting: "
            "pass only one"
        )
    return early_stopping if early_stopping is not None else patience


def _current_lr(optimizer: Any) -> float | None:
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        return float(groups[0]["lr"])
    return None


def _progress_bar(batches: Any, epochs: int) -> Any:
    from tqdm.auto import tqdm

    try:
        total: int | None = len(batches) * epochs
    except TypeError:
        total = None
    return tqdm(total=total, desc=f"epoch 1/{epochs}", unit="step", dynamic_ncols=True)


def _postfix(logs: dict[str, Any]) -> dict[str, str]:
    names = {"accuracy": "acc", "val_accuracy": "val_acc"}
    return {
        names.get(k, k): f"{v:.4f}"
        for k, v in logs.items()
        if k in ("loss", "accuracy", "val_loss", "val_accuracy") and v is not None
    }


def make_batches(
    data: Any, batch_size: int, *, shuffle: bool, seed: int = 0, name: str = "data"
) -> Iterable[Sequence[np.ndarray]]:
    """Turn a tuple of arrays into a re-iterable ``DataLoader``; pass batches through.

    A tuple or list whose items are all arrays is ``(x, y, *extra)``; anything
    else is taken to be an iterable of batch tuples already.
    """
    if isinstance(data, (tuple, list)) and data and all(isinstance(a, np.ndarray) for a in data):
        if len(data) < 2:
            raise ValueError(f"{name} must be a tuple (x, y, ...) of arrays, got {len(data)} array")
        lengths = [len(a) for a in data]
        if len(set(lengths)) != 1:
            raise ValueError(f"{name} arrays must have the same length, got lengths {lengths}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return DataLoader(*data, batch_size=batch_size, shuffle=shuffle, seed=seed)
    if isinstance(data, np.ndarray) or not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be a tuple of arrays (x, y, ...) or an iterable of batches, "
            f"got {type(data).__name__}"
        )
    return data


def count_correct(out: np.ndarray, targets: Sequence[np.ndarray]) -> int | None:
    """Number of rows whose argmax equals the label, or None if not classification.

    Classification means 2-D outputs (N, classes) and a 1-D integer label array
    as the first target.
    """
    if not targets:
        return None
    y = np.asarray(targets[0])
    if out.ndim != 2 or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        return None
    return int(np.count_nonzero(out.argmax(axis=1) == y))


@contextlib.contextmanager
def eval_mode(model: Module) -> Iterator[None]:
    """Put every module in eval mode, then give each back its own previous mode."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training


@contextlib.contextmanager
def restore_requires_input_grad(model: Module, value: bool) -> Iterator[None]:
    """Set ``model.requires_input_grad`` for a block and restore it (even on errors)."""
    previous = model.requires_input_grad
    model.requires_input_grad = value
    try:
        yield
    finally:
        model.requires_input_grad = previous
