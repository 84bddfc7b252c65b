"""The ``Deep Compression`` entry of the sweep: prune, share weights, Huffman-code.

Han, Mao and Dally (2016) chain three techniques, and this entry runs the
whole chain (:func:`~compression.pipeline.deep_compression`) on the sweep's
trained baseline, once per setting ``(final sparsity, bits)``::

    rounds = pruning_rounds(final)          # ROUNDS rounds, the kept fraction shrinking
                                            # geometrically: 1 -> (1 - final)
    prune + retrain, round by round         # PRUNE_EPOCHS after each round, masks held
    k-means of each layer's kept weights    # 2^bits - 1 centroids (+ the filler zero's code),
                                            # linear initialisation
    fine-tune the centroids                 # SHARE_EPOCHS, assignments fixed
    Huffman-code the codes and the indices  # no training: same weights, fewer bytes

Every retraining is the pruning entry's
:func:`~compression.pruning.technique.fine_tune` (the baseline recipe at a
tenth of its learning rate, cosine schedule, +-1 pixel shifts); the
centroids step at that rate times ``k / kept`` per layer (a centroid's
gradient is the *sum* of its weights' gradients, Han et al. 2016 eq. 3),
the biases at that rate. Epochs are capped by ``task.epochs``, so
``--fast --epochs 1`` runs one epoch per round.

Each stage's file is written and measured by the pipeline (in a temporary
folder); the row keeps them as ``extra["stages"]`` (bytes and held-out
accuracy of the model loaded back from each stage's file) and
``extra["kept"]`` (the fraction of the weights stored). The row's own file
is the last stage's model, saved by the sweep like every other point, so
its bytes are those of a real file that loads back. ``bit_widths`` comes
from the shared layers (``ceil(log2(2^b - 1 + 1)) = b`` bits per code).

Determinism: pruning and k-means (linear initialisation) draw nothing; the
retraining after round ``i`` draws from ``seed + 1000 i`` (see
``deep_compression``), ``seed`` being the point's.
"""

from __future__ import annotations

import tempfile
from typing import Any

from compression.pipeline.deep_compression import deep_compression
from compression.pipeline.recipe import DeepCompressionRecipe
from compression.pruning.technique import LR_FACTOR, fine_tune
from compression.sweep.task import RECIPE, SweepTask
from compression.sweep.techniques import Compressed, Technique, register_technique
from tinynet.module import Module

__all__ = [
    "GRID",
    "PRUNE_EPOCHS",
    "ROUNDS",
    "SHARE_EPOCHS",
    "TaskRetrain",
    "compress_deep",
    "pipeline_label",
    "pipeline_recipe",
    "pruning_rounds",
    "stages_line",
]

#: Settings ``(final sparsity, bits per weight code)`` of a full sweep. The first is
#: Han et al.'s LeNet-300-100 setting (92% pruned, 6 bits); the others trade accuracy
#: for bytes.
GRID = ((0.92, 6), (0.95, 5), (0.97, 4), (0.98, 4))
#: A quick run's setting (``--fast``, tests).
FAST_GRID = ((0.9, 5),)
#: Pruning rounds per point.
ROUNDS = 4
#: Retraining epochs after each pruning round (at most ``task.epochs``).
PRUNE_EPOCHS = 2
#: Epochs of centroid fine-tuning (at most ``task.epochs``).
SHARE_EPOCHS = 2


def pruning_rounds(final: float, rounds: int = ROUNDS) -> tuple[float, ...]:
    """Sparsities of ``rounds`` rounds ending at ``final``, the kept fraction shrinking geometrically.

    Round ``i`` (1..n) keeps ``(1 - final) ** (i / n)`` of the weights, so
    every round removes the same *fraction of what is left* (Han et al. 2015
    prune iteratively for the same reason: small steps, each one retrained).

    >>> pruning_rounds(0.9, 2)
    (0.6838, 0.9)
    """
    if not 0.0 < final < 1.0:
        raise ValueError(f"final sparsity must lie in (0, 1), got {final!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    kept = [(1.0 - final) ** (i / rounds) for i in range(1, rounds)]
    return tuple(round(1.0 - k, 4) for k in kept) + (final,)


def pipeline_recipe(setting: tuple[float, int], task: SweepTask) -> DeepCompressionRecipe:
    """The pipeline's recipe for ``setting = (final sparsity, bits)`` on ``task``."""
    final, bits = setting
    return DeepCompressionRecipe(
        rounds=pruning_rounds(final),
        prune_epochs=min(PRUNE_EPOCHS, task.epochs),
        bits=bits,
        share_epochs=min(SHARE_EPOCHS, task.epochs),
    )


class TaskRetrain:
    """``retrain(model, epochs, params, seed)`` for the pipeline: the task's fine-tuning recipe.

    ``params`` is None after a pruning round (every parameter at the
    fine-tuning rate) or the centroid groups of
    :func:`~compression.pipeline.sharing_groups` (each with its own rate).
    """

    def __init__(self, task: SweepTask) -> None:
        self.task = task

    def __call__(self, model: Module, epochs: int, params: Any, seed: int) -> None:
        fine_tune(model, self.task, seed, epochs, params=params)


def stages_line(result: Any) -> str:
    """``"pruned 81,448 B 95.25% -> shared 29,416 B 95.30% -> Huffman 24,542 B 95.30%"``."""
    names = {"pruned": "pruned", "shared": "shared", "huffman": "Huffman"}
    return " -> ".join(
        f"{names[s.name]} {s.file_bytes:,} B {s.accuracy:.2%}"
        for s in result.stages
        if s.name in names
    )


def compress_deep(
    baseline: Module, setting: tuple[float, int], seed: int, task: SweepTask
) -> Compressed:
    """Deep Compression of the baseline at ``setting = (final sparsity, bits)``.

    Returns a :class:`~compression.sweep.techniques.Compressed`: the model
    loaded back from the last stage's file, and the stages for the row.
    """
    data = task.data()
    recipe = pipeline_recipe(setting, task)
    with tempfile.TemporaryDirectory(prefix="deep_compression_") as stage_dir:
        result = deep_compression(
            baseline,
            recipe,
            TaskRetrain(task),
            (data.x_heldout, data.y_heldout),
            stage_dir,
            lr=RECIPE["lr"] * LR_FACTOR,
            seed=seed,
        )
    extra = {"kept": round(result.final.kept, 4), "stages": stages_line(result)}
    return Compressed(result.model, extra)


def pipeline_label(setting: tuple[float, int]) -> str:
    """``(0.9, 6)`` -> ``"90% pruned, 6-bit"``."""
    final, bits = setting
    return f"{100 * final:g}% pruned, {bits}-bit"


register_technique(
    Technique(
        name="Deep Compression",
        apply=compress_deep,
        grid=GRID,
        fast_grid=FAST_GRID,
        description=(
            f"Han et al. 2016's pipeline: global magnitude pruning in {ROUNDS} rounds, "
            f"{PRUNE_EPOCHS} epochs of retraining after each; k-means sharing of the kept "
            f"weights (2^b - 1 centroids and a code for the filler zero), centroids fine-tuned "
            f"for {SHARE_EPOCHS} epochs; relative indices; Huffman coding"
        ),
        label=pipeline_label,
    )
)
