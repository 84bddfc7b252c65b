"""The technique registry: each compression technique is one entry, swept the same way.

A :class:`Technique` says how to turn the trained baseline into a compressed
model at one setting of its grid::

    model = technique.apply(baseline, setting, seed, task)   # e.g. prune to `setting`
    if technique.fine_tune is not None:
        technique.fine_tune(model, setting, seed, task)      # e.g. retrain with the mask kept

and :class:`TechniquePoint` measures the result (bytes of its compressed
file, held-out accuracy, inference time) as one :class:`~compression.sweep.Row`.

Two entries live here:

=========  =================================================================
``dense``  the trained baseline as it is: float32 weights in the compressed
           container (the point every technique is compared with)
``width``  smaller dense models: MLPs 784-h-10 trained from scratch with the
           same recipe (lesson 1's accuracy-against-size axis)
=========  =================================================================

and each technique's package registers its own: ``pruning``
(``compression.pruning.technique``), ``PTQ``, ``QAT``, ``LSQ`` and
``k-means sharing`` (``compression.quantization.technique``),
``PTQ + clipping`` (``compression.clipping.technique``), ``distillation``
(``compression.distillation.technique``), ``low rank``
(``compression.lowrank.technique``) and ``Deep Compression``
(``compression.pipeline.technique``).

Adding a technique is one :func:`register_technique` call in the technique's
own module, plus that module's name in :data:`TECHNIQUE_MODULES` so that
``python -m compression`` imports it::

    register_technique(Technique(
        name="magnitude pruning", apply=prune_to, fine_tune=retrain_masked,
        grid=(0.5, 0.8, 0.9, 0.95), fast_grid=(0.5, 0.9),
        label=percent_pruned, description="...",
    ))

``apply``, ``fine_tune`` and ``label`` must be top-level functions (not
lambdas) so that worker processes can receive them (see
``runner.check_picklable``). ``apply`` returns the compressed model, or a
:class:`Compressed` (the model and a few numbers it measured on the way,
which go into the row's ``extra``: the pipeline's stages).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from compression.sweep.cache import CachedPoint, PointCache, scan_cache
from compression.sweep.measure import measure
from compression.sweep.runner import (
    TINYNET_STATE_LOCK,
    Row,
    local_process_pool,
    run_sweep,
)
from compression.sweep.task import SweepTask, build_model
from tinynet.models import mlp
from tinynet.module import Module
from tinynet.train import evaluate

#: Modules that register techniques when imported (later lessons add theirs here).
TECHNIQUE_MODULES: tuple[str, ...] = (
    "compression.pruning.technique",
    "compression.quantization.technique",
    "compression.clipping.technique",
    "compression.distillation.technique",
    "compression.lowrank.technique",
    "compression.pipeline.technique",
)


@dataclass(frozen=True)
class Technique:
    """One compression technique, as the sweep sees it.

    Attributes
    ----------
    name : str
        Short name, used in rows, tables and the plot's legend.
    apply : callable ``(baseline, setting, seed, task) -> Module``
        The compressed model for one setting. ``baseline`` is a fresh copy
        of the trained baseline (change it in place or ignore it);
        ``task`` (:class:`SweepTask`) gives the data and the training recipe.
    grid : tuple
        The settings of a full sweep.
    fast_grid : tuple
        A few settings for a quick run (``--fast``, tests).
    description : str
        One sentence for the report.
    label : callable ``setting -> str``, default ``str``
        How a setting is written in rows and on the plot.
    fine_tune : callable ``(model, setting, seed, task) -> None``, optional
        Retrain the compressed model in place. When given, the accuracy
        before fine-tuning is kept in ``row.extra["accuracy_before_fine_tune"]``.
    """

    name: str
    apply: Callable[[Module, Any, int, SweepTask], Module]
    grid: tuple[Any, ...]
    fast_grid: tuple[Any, ...]
    description: str
    label: Callable[[Any], str] = field(default=str, compare=False)
    fine_tune: Callable[[Module, Any, int, SweepTask], None] | None = None

    def settings(self, fast: bool = False) -> tuple[Any, ...]:
        """``fast_grid`` when ``fast``, else ``grid``."""
        return self.fast_grid if fast else self.grid


@dataclass(frozen=True)
class Compressed:
    """What ``apply`` may return instead of a bare model: the model and what it measured.

    ``extra`` (plain numbers and strings) is copied into the row's ``extra``;
    Deep Compression keeps each stage's bytes and accuracy there, which only
    the run that made them can know.
    """

    model: Module
    extra: dict[str, Any] = field(default_factory=dict)


#: name -> Technique, in the order they were registered (the report's order).
TECHNIQUES: dict[str, Technique] = {}


def register_technique(technique: Technique) -> Technique:
    """Add ``technique`` to :data:`TECHNIQUES`; a name may be registered only once."""
    if not isinstance(technique, Technique):
        raise TypeError(f"register_technique expects a Technique, got {type(technique).__name__}")
    if technique.name in TECHNIQUES:
        raise ValueError(f"a technique called {technique.name!r} is already registered")
    if not technique.grid or not technique.fast_grid:
        raise ValueError(f"technique {technique.name!r} needs a non-empty grid and fast_grid")
    TECHNIQUES[technique.name] = technique
    return technique


def available_techniques() -> dict[str, Technique]:
    """Import every module of :data:`TECHNIQUE_MODULES`; every technique, in the report's order."""
    for module in TECHNIQUE_MODULES:
        importlib.import_module(module)
    # The report's order does not depend on what happened to be imported first: this
    # module's entries, then each of TECHNIQUE_MODULES' in turn, then any others.
    rank = {name: i for i, name in enumerate(TECHNIQUE_MODULES)}
    rank[__name__] = -1

    def position(item: tuple[str, Technique]) -> int:
        return rank.get(item[1].apply.__module__, len(rank))

    return dict(sorted(TECHNIQUES.items(), key=position))  # stable: registration order within


# ----------------------------------------------------------------- dense


def keep_baseline(baseline: Module, setting: Any, seed: int, task: SweepTask) -> Module:
    """The ``dense`` technique: the baseline unchanged (float32 values in the container)."""
    return baseline


def baseline_label(setting: str) -> str:
    """``"float32"`` -> ``"baseline, float32"``."""
    return f"baseline, {setting}"


register_technique(
    Technique(
        name="dense",
        apply=keep_baseline,
        grid=("float32",),
        fast_grid=("float32",),
        description="the trained baseline, every weight a float32 (4 bytes)",
        label=baseline_label,
    )
)


# ----------------------------------------------------------------- width


def train_mlp(baseline: Module, hidden: int, seed: int, task: SweepTask) -> Module:
    """The ``width`` technique: an MLP ``784-hidden-10`` trained from scratch (baseline unused).

    Same data, epochs and recipe as the baseline; initialised from ``seed``.
    """
    data = task.data()
    features, classes = int(data.x_train[0].size), int(data.y_train.max()) + 1
    model = build_model(functools.partial(mlp, (features, hidden, classes)), seed)
    task.train(model, seed)
    return model


def mlp_label(hidden: int) -> str:
    """``64`` -> ``"784-64-10"``."""
    return f"784-{hidden}-10"


register_technique(
    Technique(
        name="width",
        apply=train_mlp,
        grid=(8, 16, 32, 64, 128, 256),
        fast_grid=(16, 64),
        description=(
            "smaller dense models: MLPs 784-h-10 trained from scratch with the baseline's "
            "recipe, float32"
        ),
        label=mlp_label,
    )
)


# ------------------------------------------------------- one grid point


def _file_name(technique: str, label: str) -> str:
    """``"width", "784-64-10"`` -> ``"width_784-64-10.tnc"`` (safe on every filesystem)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{technique}_{label}").strip("_") + ".tnc"


@dataclass(frozen=True)
class TechniquePoint:
    """``evaluate_point`` for :func:`~compression.sweep.run_sweep`: one technique on one task.

    Picklable (a Technique of top-level functions and a small SweepTask),
    so a process pool can run it. Calling it with ``(setting, seed)``
    applies the technique to a fresh copy of the baseline, fine-tunes if the
    technique says so, and measures the model.

    ``row.extra`` holds ``parameters`` (weights and biases stored),
    ``ratio`` (the baseline's dense float32 bytes, 4 per parameter, divided
    by this file's bytes: Deep Compression's compression ratio),
    ``val_accuracy`` (on the validation slice: the number to choose by),
    ``test_accuracy`` (the official t10k split, when the dataset has it),
    ``accuracy_before_fine_tune`` when there is fine-tuning, and
    ``bit_widths`` (each weight's and quantized output's width) when any
    weight or activation is quantized.
    """

    technique: Technique
    task: SweepTask

    def __call__(self, setting: Any, seed: int) -> Row:
        with TINYNET_STATE_LOCK:  # threads share tinynet's generator and no_grad flag
            return self._evaluate(setting, seed)

    def _evaluate(self, setting: Any, seed: int) -> Row:
        task, technique = self.task, self.technique
        data = task.data()
        baseline = task.baseline()
        baseline_bytes = 4 * sum(p.size for p in baseline.parameters())
        model = technique.apply(baseline, setting, seed, task)
        extra: dict[str, Any] = {}
        if isinstance(model, Compressed):
            model, extra = model.model, dict(model.extra)
        if technique.fine_tune is not None:
            before = evaluate(model, data.x_heldout, data.y_heldout)["accuracy"]
            extra["accuracy_before_fine_tune"] = before
            technique.fine_tune(model, setting, seed, task)
        label = technique.label(setting)
        artifact, path = "", None
        if task.artifact_dir is not None:
            artifact = _file_name(technique.name, label)
            path = os.path.join(task.artifact_dir, artifact)
        m = measure(model, data.x_heldout, data.y_heldout, path=path)
        extra["parameters"] = sum(p.size for p in model.parameters())
        extra["ratio"] = round(baseline_bytes / m.nbytes, 4)
        extra["val_accuracy"] = evaluate(model, data.x_val, data.y_val)["accuracy"]
        widths = _bit_widths(model)
        if any(b != 32 for b in widths.values()):  # "1.weight=8 2.output=4 ..."
            extra["bit_widths"] = " ".join(f"{name}={b}" for name, b in widths.items())
        if data.x_test is not None:
            extra["test_accuracy"] = evaluate(model, data.x_test, data.y_test)["accuracy"]
        return Row(technique.name, label, m.nbytes, m.accuracy, m.time_ms, extra, artifact)


def _bit_widths(model: Module) -> dict[str, int]:
    """Each weight's and quantized output's bit width (see ``compression.quantization``)."""
    from compression.quantization.apply import bit_widths  # the sweep does not need it otherwise

    return bit_widths(model)


def run_techniques(
    task: SweepTask,
    techniques: Sequence[Technique] | None = None,
    *,
    seed: int = 0,
    fast: bool = False,
    executor: Any = None,
    jobs: int = 1,
    progress: bool = True,
    cache: PointCache | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Sweep every technique over its grid on ``task``; all rows, technique by technique.

    Each technique is one :func:`run_sweep` (so point ``i`` of a technique
    always gets ``point_seed(seed, i)``, however many techniques there are);
    with ``jobs > 1`` they share one local process pool.

    Parameters
    ----------
    task : SweepTask
        With ``baseline_path`` set.
    techniques : sequence of Technique, optional
        Default: every registered technique (:func:`available_techniques`).
    seed, executor, jobs, progress
        As in :func:`run_sweep`.
    fast : bool, default False
        Use each technique's ``fast_grid``.
    cache : PointCache, optional
        Reuse the points it holds (rows and files, see
        ``compression.sweep.cache``) and store every point computed, as
        soon as it is done: an interrupted sweep resumes where it stopped.
    log : callable, optional
        Receives the cache's messages (how many points were found, which
        entries were refused and why). Default: silent.
    """
    if techniques is None:
        techniques = list(available_techniques().values())
    if executor is None and jobs > 1:
        with local_process_pool(jobs) as pool:
            return run_techniques(
                task,
                techniques,
                seed=seed,
                fast=fast,
                executor=pool,
                progress=progress,
                cache=cache,
                log=log,
            )
    if task.artifact_dir is not None:
        os.makedirs(task.artifact_dir, exist_ok=True)
    if cache is not None:
        baseline_sha256, _ = scan_cache(task, techniques, cache, seed, fast, log or _silent)
    rows: list[Row] = []
    for technique in techniques:
        point: Any = TechniquePoint(technique, task)
        if cache is not None:
            point = CachedPoint(point, cache, baseline_sha256)
        rows += run_sweep(
            point,
            technique.settings(fast),
            seed=seed,
            executor=executor,
            jobs=jobs,
            progress=progress,
            desc=technique.name,
        )
    return rows


def _silent(line: str) -> None:
    return None
