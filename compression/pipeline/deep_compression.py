"""Deep Compression end to end: prune, share weights, Huffman-code; every stage measured.

Han, Mao and Dally (2016, ICLR, *Deep Compression: Compressing Deep Neural
Networks with Pruning, Trained Quantization and Huffman Coding*) chain three
techniques, each making the next one pay more:

1. **Pruning** (Han et al. 2015): drop the weights of smallest ``|w|``,
   retrain, repeat. LeNet-300-100 keeps 8% of its weights. The file stores
   the kept values and their positions as *relative indices* (the gap to
   the previous kept weight in ``b`` bits; a gap too long for ``b`` bits
   stores a filler zero).
2. **Trained quantization** (weight sharing): k-means on each layer's kept
   weights; every weight stores the ``log2(k)``-bit number of its centroid,
   and the ``k`` float centroids are stored once. For ``n`` weights of ``b``
   bits the rate is (eq. 1, :func:`~compression.storage.codebook.deep_compression_ratio`)::

       r = n * b / (n * log2(k) + k * b)

   Then the centroids are fine-tuned with the assignments fixed: a
   centroid's gradient is the sum of its weights' gradients (eq. 3).
3. **Huffman coding** of the codes and of the relative indices, whose
   distributions are far from uniform (20-30% fewer bits in the paper).

Han et al. report LeNet-300-100 1070 KB -> 27 KB (40x; 32x before Huffman;
6-bit weights, 5-bit indices) and LeNet-5 1720 KB -> 44 KB (39x).

:func:`deep_compression` runs the stages (in :mod:`compression.pipeline.stages`)
with the caller's retraining function and records a
:class:`~compression.pipeline.stages.StageResult` for each: the accuracy of
the model loaded back from the stage's file, that file's bytes, and the
ratio ``4 * parameters / bytes`` (DESIGN.md's definition; the header, biases,
codebooks, indices and Huffman tables all count)::

    stage     file                                     Huffman
    dense     every parameter as float32               off
    pruned    kept values (float32) + positions        off
    shared    b-bit codes + codebooks + positions      off
    huffman   the same, streams Huffman-coded          on

With ``cache_key``, every stage's file stays in ``out_dir`` under a name
that hashes the settings it depends on (and a ``.json`` beside it with its
timing), so a rerun resumes instead of retraining, and a longer pruning
schedule resumes from a shorter one's rounds.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tinynet
from compression.pipeline.recipe import DeepCompressionRecipe, check_recipe
from compression.pipeline.stages import (
    Retrain,
    StageResult,
    centroid_counts,
    fine_tune_shared,
    kept_fraction,
    measure_stage,
    prune_round,
    share_stage,
)
from compression.storage import load_compressed, save_compressed
from compression.storage.container import write_atomic
from tinynet.module import Module

__all__ = ["DeepCompressionResult", "deep_compression"]

#: Seed offset between retraining calls: round ``i`` (from 1) uses ``seed + SEED_STEP * i``.
SEED_STEP = 1000


@dataclass
class DeepCompressionResult:
    """What :func:`deep_compression` measured.

    Attributes
    ----------
    stages : list of StageResult
        ``dense``, ``pruned``, ``shared``, ``huffman``, in order.
    rounds : list of dict
        One per pruning round: ``sparsity``, ``kept`` (fraction of the
        weights), ``accuracy`` (after its retraining), ``seconds``, ``cached``.
    model : Module
        The model loaded back from the last stage's file.
    recipe : DeepCompressionRecipe
    """

    stages: list[StageResult]
    rounds: list[dict[str, Any]]
    model: Module
    recipe: DeepCompressionRecipe
    notes: list[str] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        """The stage called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {[s.name for s in self.stages]}")

    @property
    def final(self) -> StageResult:
        """The last stage (the file to ship)."""
        return self.stages[-1]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the recipe, each stage, each pruning round."""
        return {
            "recipe": self.recipe.as_dict(),
            "stages": [s.as_dict() for s in self.stages],
            "rounds": self.rounds,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{'stage':<8} {'accuracy':>9} {'bytes':>11} {'ratio':>7} {'kept':>7} {'s':>7}"]
        for s in self.stages:
            lines.append(
                f"{s.name:<8} {s.accuracy:>9.2%} {s.file_bytes:>11,} {s.ratio:>6.1f}x "
                f"{s.kept:>7.2%} {s.seconds:>7.1f}" + ("  (cached)" if s.cached else "")
            )
        return "\n".join(lines + self.notes)


def _accuracy(model: Module, eval_data: tuple[np.ndarray, np.ndarray]) -> float:
    return float(tinynet.evaluate(model, *eval_data)["accuracy"])


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The ``.json`` written beside a cached stage file, or None when either is missing."""
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        return None
    return json.loads(side.read_text())


def _write_sidecar(path: Path, info: dict[str, Any]) -> None:
    write_atomic(path.with_suffix(".json"), (json.dumps(info, indent=1) + "\n").encode("utf-8"))


def deep_compression(
    dense: Module,
    recipe: DeepCompressionRecipe,
    retrain: Retrain,
    eval_data: tuple[np.ndarray, np.ndarray],
    out_dir: str | os.PathLike[str],
    *,
    lr: float,
    seed: int = 0,
    cache_key: str | None = None,
    fresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> DeepCompressionResult:
    """Run prune -> share -> Huffman on a copy of ``dense``; measure every stage's file.

    Parameters
    ----------
    dense : Module
        The trained model (left unchanged: the pipeline works on a copy).
    recipe : DeepCompressionRecipe
        Pruning schedule, bits per layer, epochs; checked against ``dense``
        before anything is trained.
    retrain : Retrain
        ``retrain(model, epochs, params, seed)``, see :data:`~compression.pipeline.stages.Retrain`.
        Called after each pruning round with ``params=None``, and once for
        the shared model with the centroid groups of :func:`~compression.pipeline.stages.sharing_groups`.
    eval_data : (x, y)
        Where every stage's accuracy is measured (held-out, or validation
        while choosing a recipe).
    out_dir : path
        Where the stage files go (created if needed).
    lr : float
        Learning rate the centroid groups are scaled from (``lr * k / kept``).
    seed : int
        Retraining call ``i`` (pruning round ``i = 1, 2, ...``, then the
        centroid fine-tuning) gets ``seed + 1000 * i``.
    cache_key : str, optional
        Names the dense model, data and retraining (the caller knows what
        they are); with it, stage files found in ``out_dir`` are reused. Without
        it nothing is reused.
    fresh : bool
        Ignore (and overwrite) cached stage files.
    log : callable, optional
        Receives one line per finished step (``print`` for progress).

    Returns
    -------
    DeepCompressionResult
    """
    check_recipe(recipe, dense)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = cache_key or "deep_compression"
    reuse = cache_key is not None and not fresh
    say = log or (lambda line: None)

    stages = [measure_stage("dense", dense, out / f"{prefix}_dense.tnc", eval_data, False)]
    say(f"dense: {stages[0].accuracy:.2%}, {stages[0].file_bytes:,} B")

    model, rounds, last = _pruning(dense, recipe, retrain, eval_data, out, prefix, reuse, seed, say)
    stages.append(
        measure_stage(
            "pruned",
            model,
            last,  # the last round's file is the pruned stage's file
            eval_data,
            False,
            write=False,
            seconds=sum(r["seconds"] for r in rounds),
            cached=all(r["cached"] for r in rounds),
            details={"rounds": len(rounds)},
        )
    )

    shared_path = out / f"{prefix}_shared_{recipe.share_key(lr)}.tnc"
    model, info, cached = _sharing(model, recipe, retrain, eval_data, shared_path, reuse, lr, seed)
    stages.append(
        measure_stage(
            "shared",
            model,
            shared_path,
            eval_data,
            False,
            write=False,
            seconds=info["seconds"],
            cached=cached,
            details={"k": info["k"], "clustered_accuracy": info["clustered_accuracy"]},
        )
    )
    say(
        f"shared: k = {info['k']}, {info['clustered_accuracy']:.2%} after k-means, "
        f"{stages[-1].accuracy:.2%} after fine-tuning ({info['seconds']:.0f} s)"
        + (" (cached)" if cached else "")
    )

    # 3. Huffman coding: the same weights, the streams coded where that is smaller
    huffman_path = out / f"{prefix}_huffman_{recipe.share_key(lr)}.tnc"
    begin = time.perf_counter()
    huffman = measure_stage("huffman", model, huffman_path, eval_data, True)
    huffman.seconds = time.perf_counter() - begin
    notes = []
    if huffman.file_bytes > stages[-1].file_bytes:
        # tiny tensors: the code tables and their header entries cost more than they save
        notes.append(
            f"Huffman coding made the file larger ({huffman.file_bytes:,} B > "
            f"{stages[-1].file_bytes:,} B): the last stage keeps the shared file"
        )
        huffman = measure_stage("huffman", model, shared_path, eval_data, False, write=False)
    stages.append(huffman)
    say(f"huffman: {huffman.file_bytes:,} B, {huffman.ratio:.1f}x, {huffman.accuracy:.2%}")
    return DeepCompressionResult(stages, rounds, load_compressed(huffman.path), recipe, notes)


def _pruning(
    dense: Module,
    recipe: DeepCompressionRecipe,
    retrain: Retrain,
    eval_data: tuple[np.ndarray, np.ndarray],
    out: Path,
    prefix: str,
    reuse: bool,
    seed: int,
    say: Callable[[str], None],
) -> tuple[Module, list[dict[str, Any]], Path]:
    """Stage 1, round by round; resume after the last of the leading rounds found cached."""

    def record(info: dict[str, Any], cached: bool) -> None:
        rounds.append({**info, "cached": cached})
        say(
            f"prune round {len(rounds)}: {info['kept']:.2%} of the weights kept, "
            f"{info['accuracy']:.2%}, {info['seconds']:.0f} s" + (" (cached)" if cached else "")
        )

    n = len(recipe.rounds)
    paths = [out / f"{prefix}_prune{i + 1}_{recipe.prune_key(i)}.tnc" for i in range(n)]
    rounds: list[dict[str, Any]] = []
    for path in paths if reuse else []:
        info = _read_sidecar(path)
        if info is None:
            break
        record(info, cached=True)
    start = len(rounds)
    model = load_compressed(paths[start - 1]) if start else copy.deepcopy(dense)
    for i in range(start, n):
        sparsity = recipe.rounds[i]
        begin = time.perf_counter()
        epochs = recipe.epochs_after(i)
        prune_round(model, sparsity, retrain, epochs, seed + SEED_STEP * (i + 1), recipe.scope)
        seconds = time.perf_counter() - begin
        save_compressed(model, paths[i], use_huffman=False)
        info = {
            "sparsity": dict(sparsity) if isinstance(sparsity, Mapping) else sparsity,
            "kept": kept_fraction(model),
            "accuracy": _accuracy(model, eval_data),
            "seconds": seconds,
        }
        _write_sidecar(paths[i], info)
        record(info, cached=False)
    return model, rounds, paths[-1]


def _sharing(
    model: Module,
    recipe: DeepCompressionRecipe,
    retrain: Retrain,
    eval_data: tuple[np.ndarray, np.ndarray],
    path: Path,
    reuse: bool,
    lr: float,
    seed: int,
) -> tuple[Module, dict[str, Any], bool]:
    """Stage 2: k-means per layer, centroid fine-tuning, the file; or the cached file."""
    info = _read_sidecar(path) if reuse else None
    if info is not None:
        return load_compressed(path), info, True
    begin = time.perf_counter()
    info = {"k": centroid_counts(model, recipe.bits, recipe.zero_code)}
    share_stage(model, recipe.bits, recipe.zero_code, recipe.init)
    info["clustered_accuracy"] = _accuracy(model, eval_data)
    seed_i = seed + SEED_STEP * (len(recipe.rounds) + 1)
    fine_tune_shared(model, retrain, recipe.share_epochs, lr, seed_i, recipe.train_rest)
    info["seconds"] = time.perf_counter() - begin
    save_compressed(model, path, use_huffman=False)
    _write_sidecar(path, info)
    return model, info, False
