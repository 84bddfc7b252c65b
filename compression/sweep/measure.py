"""Measuring one compressed model: bytes of its real file, held-out accuracy, inference time.

**Bytes** are the length of the file ``compression.storage.save_compressed``
writes, read back from the disk with ``os.path.getsize``: not a formula, not
``4 * parameters``, not a gzip estimate. (It equals
``size_report(model).total_bytes``, which counts the same bytes term by
term without writing; measuring the file keeps us honest if they ever
disagreed.)

**Time** is the median of ``repeats`` forward passes over one fixed batch
(after one warm-up pass), under ``tinynet.no_grad()`` in eval mode, in
milliseconds. It depends on the machine, its load and the number of BLAS
threads, so compare times only within one run. A file that is 10x smaller
is *not* 10x faster: a pruned model still multiplies dense matrices full of
zeros until a sparse kernel runs it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from compression.storage import save_compressed
from tinynet.grad_mode import no_grad
from tinynet.module import Module
from tinynet.train import eval_mode, evaluate

#: Images in the fixed batch that inference time is measured on.
TIME_BATCH = 500
#: Timed forward passes (the median is reported).
TIME_REPEATS = 5


def compressed_size(model: Module, path: str | os.PathLike[str] | None = None) -> int:
    """Bytes of ``model``'s compressed file, measured on disk.

    Parameters
    ----------
    model : Module
    path : path-like, optional
        Where to keep the file. Default: a temporary file, deleted afterwards.

    Returns
    -------
    int
        ``os.path.getsize`` of the file ``save_compressed`` wrote.
    """
    if path is not None:
        save_compressed(model, path)
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as tmp:
        return compressed_size(model, os.path.join(tmp, "model.tnc"))


def inference_time_ms(model: Module, x: np.ndarray, repeats: int = TIME_REPEATS) -> float:
    """Median milliseconds of ``model(x)`` over ``repeats`` runs, after one warm-up run.

    Parameters
    ----------
    model : Module
    x : ndarray, shape (N, ...)
        The fixed batch (the same for every model of a sweep).
    repeats : int, default 5

    Returns
    -------
    float
        Median wall-clock time of one forward pass, in milliseconds.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    times = []
    with no_grad(), eval_mode(model):
        model(x)  # warm-up: first-touch memory, lazily built buffers
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` found: ``nbytes``, ``accuracy`` and ``time_ms``."""

    nbytes: int
    accuracy: float
    time_ms: float


def measure(
    model: Module,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    path: str | os.PathLike[str] | None = None,
    time_batch: int = TIME_BATCH,
) -> Measurement:
    """File bytes, accuracy on ``(x_eval, y_eval)`` and inference time of one model.

    Parameters
    ----------
    model : Module
        The compressed model, exactly as it will be saved.
    x_eval, y_eval : ndarray, shapes (N, ...) and (N,)
        Held-out data: accuracy is measured on all of it, time on its first
        ``time_batch`` images.
    path : path-like, optional
        Keep the compressed file here (else a temporary file).
    time_batch : int, default 500

    Returns
    -------
    Measurement
    """
    nbytes = compressed_size(model, path)
    accuracy = evaluate(model, x_eval, y_eval)["accuracy"]
    if accuracy is None:
        raise ValueError("y_eval must hold integer class labels to measure accuracy")
    time_ms = inference_time_ms(model, x_eval[:time_batch])
    return Measurement(nbytes, float(accuracy), time_ms)
