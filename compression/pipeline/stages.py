"""The three stages of Deep Compression as functions on a model, and the record each leaves.

Han, Mao and Dally (2016, *Deep Compression*, Fig. 1)::

    trained net --prune + retrain--> sparse net --cluster + fine-tune centroids-->
    sparse, shared net --Huffman-code--> the file

==========================  ============================================================
:func:`prune_round`         one round of magnitude pruning (``Mask`` transforms,
                            ``W_eff = W * M``), then retraining with the masks held
                            (Han et al. 2015)
:func:`share_stage`         per-layer k-means of the *kept* weights
                            (``SharedWeights`` after the ``Mask``: ``W_eff = C[a]``,
                            pruned weights get ``a = -1`` and stay 0)
:func:`sharing_groups`      optimizer groups that fine-tune the centroids, each layer
                            at ``lr * k / kept`` (a centroid's gradient is the *sum*
                            of its weights' gradients, Han et al. 2016 eq. 3)
:func:`fine_tune_shared`    the retraining of the shared net (assignments fixed)
:func:`measure_stage`       a :class:`StageResult`: the real file's bytes and the
                            accuracy of the model *loaded back from that file*
==========================  ============================================================

What each stage does to the file (``compression.storage``):

- dense: every weight and bias as raw float32, ``32 n`` bits, plus the header;
- pruned: kept values as float32 plus their positions, the cheapest of a
  bitmask, CSR and relative indices (``nnz * 32 + positions`` bits);
- shared: ``b``-bit codes plus a ``k``-entry float32 codebook per layer
  instead of the values, ``(nnz + fillers) * (b + index bits) + 32 k`` with
  relative indices (Han et al.'s rate for a dense layer,
  ``r = n*b / (n*log2(k) + k*b)``, :func:`~compression.storage.codebook.deep_compression_ratio`);
- Huffman: the code and index streams Huffman-coded where that is smaller
  (code-length table included). Nothing is retrained: same weights, same accuracy.

The retraining is a function the caller passes in (:data:`Retrain`), so a
benchmark uses its full recipe (distillation, augmentation) and a test a
few SGD steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import tinynet
from compression.pipeline.recipe import Round, check_bits
from compression.pruning.apply import PruningSummary, current_keep, prune_model
from compression.quantization.sharing import (
    SharedWeights,
    centroid_groups,
    quantizable_weights,
    share_weights,
)
from compression.storage import load_compressed, save_compressed
from tinynet.module import Module

__all__ = [
    "Retrain",
    "StageResult",
    "centroid_counts",
    "fine_tune_shared",
    "kept_fraction",
    "measure_stage",
    "prune_round",
    "share_stage",
    "sharing_groups",
]

#: ``retrain(model, epochs, params, seed)``: train ``model`` in place for ``epochs``.
#: ``params`` is None (every parameter, at the retrainer's own learning rate) or a
#: list of optimizer parameter groups (``{"params": [...], "lr": ..., "weight_decay": ...}``,
#: PyTorch style); ``seed`` seeds the shuffling and augmentation of this call.
Retrain = Callable[[Module, int, "list[dict[str, Any]] | None", int], None]


# ------------------------------------------------------------------ record
@dataclass
class StageResult:
    """One stage of the pipeline, measured on the file it wrote.

    Attributes
    ----------
    name : str
        ``"dense"``, ``"pruned"``, ``"shared"`` or ``"huffman"``.
    accuracy : float
        Of the model loaded back from ``path`` (``load_compressed``), on the
        evaluation data the pipeline was given.
    file_bytes : int
        Length of the file on disk, header included.
    parameters : int
        Weights and biases of the dense model; ``dense_bytes = 4 * parameters``.
    huffman : bool
        Whether the file was written with Huffman coding allowed.
    kept : float
        Fraction of the Conv2d/Linear weights stored (1.0 when dense).
    seconds : float
        Time the stage took to compute (training included), when it was computed.
    cached : bool
        True when this run loaded the stage from an earlier run's file.
    """

    name: str
    accuracy: float
    file_bytes: int
    parameters: int
    huffman: bool
    kept: float
    path: str
    seconds: float = 0.0
    cached: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dense_bytes(self) -> int:
        """``4 * parameters``: Deep Compression's denominator (1,066,440 B for LeNet-300-100)."""
        return 4 * self.parameters

    @property
    def ratio(self) -> float:
        """``dense_bytes / file_bytes``."""
        return self.dense_bytes / self.file_bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the ratio."""
        return {**asdict(self), "dense_bytes": self.dense_bytes, "ratio": self.ratio}


def kept_fraction(model: Module) -> float:
    """Fraction of the Conv2d/Linear weights that are stored (kept by their masks)."""
    kept = total = 0
    for _, param in quantizable_weights(model):
        kept += int(current_keep(param).sum())
        total += param.size
    return kept / total


def measure_stage(
    name: str,
    model: Module,
    path: str | os.PathLike[str],
    eval_data: tuple[np.ndarray, np.ndarray],
    use_huffman: bool,
    *,
    write: bool = True,
    seconds: float = 0.0,
    cached: bool = False,
    details: dict[str, Any] | None = None,
) -> StageResult:
    """Write ``model`` to ``path`` (``write=False``: it is there already) and measure that file.

    The accuracy is that of ``load_compressed(path)``, a fresh model built
    from the file alone, so the record states what the file holds.
    """
    if write:
        save_compressed(model, path, use_huffman=use_huffman)
    loaded = load_compressed(path)
    x, y = eval_data
    return StageResult(
        name=name,
        accuracy=float(tinynet.evaluate(loaded, x, y)["accuracy"]),
        file_bytes=os.path.getsize(path),
        parameters=sum(p.size for _, _, _, p in model.named_parameter_slots()),
        huffman=use_huffman,
        kept=kept_fraction(loaded),
        path=os.fspath(path),
        seconds=seconds,
        cached=cached,
        details=dict(details or {}),
    )


# ------------------------------------------------------------------ stages
def prune_round(
    model: Module,
    sparsity: Round,
    retrain: Retrain,
    epochs: int,
    seed: int,
    scope: str = "global",
) -> PruningSummary:
    """Prune ``model`` in place to ``sparsity``, then ``retrain`` it for ``epochs`` (masks held).

    ``sparsity`` is absolute (0.9: 90% of the weights are zero), a float for
    every weight (``scope`` global or layer) or a dict by weight name. The
    masks compose with earlier rounds: pruned weights stay pruned. Biases
    are never pruned (few, and each shifts a whole unit).
    """
    if isinstance(sparsity, Mapping):
        summary = prune_model(model, dict(sparsity), scope="layer")
    else:
        summary = prune_model(model, sparsity, scope=scope)
    if epochs > 0:
        retrain(model, epochs, None, seed)
    return summary


def centroid_counts(model: Module, bits: int | Mapping[str, int], zero_code: bool = True) -> dict:
    """Number of centroids ``k`` for each layer that will be shared (layers with no weight kept skip).

    ``k = 2^b - 1`` for a pruned layer when ``zero_code`` (the last code is the
    zero of the fillers), ``2^b`` otherwise, and never more than the layer's
    kept weights.

    >>> from tinynet.models import lenet_300_100
    >>> centroid_counts(lenet_300_100(), 6)
    {'1.weight': 64, '3.weight': 64, '5.weight': 64}
    """
    per_layer = check_bits(bits, model)
    counts = {}
    for name, param in quantizable_weights(model, include=list(per_layer)):
        kept = int(current_keep(param).sum())
        if kept == 0:
            continue  # nothing left to cluster: the layer stays an all-zero masked tensor
        pruned = kept < param.size
        k = (1 << per_layer[name]) - (1 if zero_code and pruned else 0)
        counts[name] = max(1, min(k, kept))
    return counts


def share_stage(
    model: Module,
    bits: int | Mapping[str, int],
    zero_code: bool = True,
    init: str = "linear",
) -> dict[str, SharedWeights]:
    """Cluster each layer's kept weights into ``k`` shared values (k-means, Han et al. 2016 sec. 3).

    Adds a ``SharedWeights`` transform after each ``Mask``: ``W_eff[i] = C[a[i]]``,
    with ``a[i] = -1`` (a zero) where the mask pruned. ``k`` per layer from
    :func:`centroid_counts`; ``init="linear"`` spaces the starting centroids
    evenly between the smallest and largest weight (the paper's best). A
    layer left out of a ``bits`` dict keeps its float values.

    Returns
    -------
    dict of str -> SharedWeights
        The transform added to each layer.
    """
    k = centroid_counts(model, bits, zero_code)
    if not k:
        return {}
    return share_weights(model, k=k, init=init)


def sharing_groups(model: Module, lr: float, train_rest: bool = True) -> list[dict[str, Any]]:
    """Optimizer groups for fine-tuning a shared model: each layer's centroids, then the rest.

    A centroid's gradient is the sum of the gradients of its weights (Han et
    al. 2016, eq. 3): ``dL/dC_j = sum_{i: a_i = j} dL/dW_i``. A layer with
    ``kept`` weights in ``k`` clusters has about ``kept / k`` weights per
    centroid, so its group steps at ``lr * k / kept`` (each centroid moves
    like its average weight would under plain SGD), without weight decay:
    :func:`compression.quantization.centroid_groups`. With ``train_rest`` every other parameter (biases, layers left unshared)
    is one more group at ``lr``; the latent values under ``SharedWeights``
    are left out (nothing reaches them: ``W_eff = C[a]``).
    """
    try:
        groups = centroid_groups(model, lr)
    except ValueError:
        raise ValueError(
            "sharing_groups: the model has no weight-shared layer (run share_stage)"
        ) from None
    frozen = {
        id(p)
        for _, _, _, param in model.named_parameter_slots()
        for t in param.transforms
        if isinstance(t, SharedWeights)
        for p in (param, t.centroids)
    }
    rest = [p for p in model.parameters() if id(p) not in frozen]
    if train_rest and rest:
        groups.append({"params": rest, "lr": lr})
    return groups


def fine_tune_shared(
    model: Module,
    retrain: Retrain,
    epochs: int,
    lr: float,
    seed: int,
    train_rest: bool = True,
) -> None:
    """Retrain a shared model: the assignments stay, the centroids (and the rest) learn.

    The masks hold (a pruned weight's assignment is -1: it reads 0 whatever
    the centroids become), and every layer keeps at most ``k`` distinct values.
    """
    if epochs > 0:
        retrain(model, epochs, sharing_groups(model, lr, train_rest), seed)
