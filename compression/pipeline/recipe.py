"""The settings of Deep Compression's three stages, checked before any training starts.

Han, Mao and Dally (2016) compress a trained network in three stages::

    prune (iteratively, retraining)  ->  share weights (k-means per layer,
    centroids fine-tuned)  ->  Huffman-code the file

A :class:`DeepCompressionRecipe` holds every choice of those stages:

====================  ===============================================================
``rounds``            absolute sparsities of the pruning rounds, increasing. A float
                      prunes every weight to that fraction (``scope="global"``: one
                      ``|w|`` threshold for the whole model, ``"layer"``: the same
                      fraction in every layer); a dict ``{"1.weight": 0.92, ...}``
                      gives each layer its own (``scope="layer"``; Han et al. 2015
                      keep 8% / 9% / 26% of LeNet-300-100's three layers)
``prune_epochs``      retraining epochs after each round (``final_prune_epochs``
                      after the last, if given)
``bits``              bits per stored weight code, one number or a dict by weight
                      name (Han et al. 2016: LeNet-300-100 6 everywhere; LeNet-5
                      8 for conv, 5 for fc)
``share_epochs``      epochs of centroid fine-tuning
``init``              k-means initialisation: ``"linear"`` (the paper's best),
                      ``"density"`` or ``"random"``
``zero_code``         reserve one of the ``2^b`` codes of a pruned layer for the
                      zero (see below)
``train_rest``        also fine-tune the biases (float32) with the centroids
====================  ===============================================================

Why ``2^b - 1`` centroids. A pruned layer stored with relative indices needs
a code for the *filler zero* (Deep Compression, sec. 2: when a gap between
kept weights overflows the index width, a zero is stored). With
``zero_code=True`` a ``b``-bit layer gets ``k = 2^b - 1`` centroids, so the
``2^b`` codes are the ``k`` centroids plus the zero and every code fits in
``b`` bits (the storage's ``code_bits(k + 1) = b``). With ``2^b`` centroids
the codes would need ``b + 1`` bits. A layer with nothing pruned keeps
``2^b`` centroids; a layer with fewer kept weights than centroids gets one
centroid per weight (exact).

Layer names are the weight parameters' names (``"1.weight"``), as in
:func:`~compression.pruning.prune_model` and
:func:`~compression.quantization.share_weights`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compression.quantization.kmeans import INITS
from compression.quantization.sharing import quantizable_weights
from tinynet.module import Module

__all__ = [
    "DeepCompressionRecipe",
    "check_bits",
    "check_recipe",
    "check_rounds",
    "layer_names",
]

Round = float | Mapping[str, float]


@dataclass(frozen=True)
class DeepCompressionRecipe:
    """Every setting of the three stages (see the module docstring).

    Examples
    --------
    Han et al. 2016's LeNet-300-100: iterative pruning to 92%, 6-bit codes:

    >>> r = DeepCompressionRecipe(rounds=(0.5, 0.75, 0.875, 0.92), bits=6)
    >>> r.describe()
    'prune global (0.5, 0.75, 0.875, 0.92), 3 epochs per round; share 6 bits, 2 epochs'
    """

    rounds: tuple[Round, ...] = (0.5, 0.75, 0.875, 0.92)
    prune_epochs: int = 3
    final_prune_epochs: int | None = None
    scope: str = "global"
    bits: int | Mapping[str, int] = 5
    share_epochs: int = 2
    init: str = "linear"
    zero_code: bool = True
    train_rest: bool = True

    def epochs_after(self, i: int) -> int:
        """Retraining epochs after round ``i`` (0-based)."""
        last = i == len(self.rounds) - 1
        if last and self.final_prune_epochs is not None:
            return self.final_prune_epochs
        return self.prune_epochs

    def prune_key(self, i: int) -> str:
        """A short hash of everything rounds ``0..i`` depend on (cache file names).

        Two recipes that share their first ``i + 1`` rounds share this key, so
        a longer schedule resumes from a shorter one's cached rounds.
        """
        rounds = [_plain(r) for r in self.rounds[: i + 1]]
        epochs = [self.epochs_after(j) for j in range(i + 1)]
        return _digest({"rounds": rounds, "epochs": epochs, "scope": self.scope})

    def share_key(self, lr: float) -> str:
        """A short hash of the pruning and the sharing settings (cache file names)."""
        return _digest(
            {
                "prune": self.prune_key(len(self.rounds) - 1),
                "bits": _plain(self.bits),
                "epochs": self.share_epochs,
                "init": self.init,
                "zero_code": self.zero_code,
                "train_rest": self.train_rest,
                "lr": lr,
            }
        )

    def describe(self) -> str:
        """One line: the schedule and the bit widths."""
        rounds = tuple(_plain(r) for r in self.rounds)
        final = (
            ""
            if self.final_prune_epochs is None
            else f" ({self.final_prune_epochs} after the last)"
        )
        bits = self.bits if not isinstance(self.bits, Mapping) else dict(self.bits)
        return (
            f"prune {self.scope} {rounds}, {self.prune_epochs} epochs per round{final}; "
            f"share {bits} bits, {self.share_epochs} epochs"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready settings."""
        return {
            "rounds": [_plain(r) for r in self.rounds],
            "prune_epochs": self.prune_epochs,
            "final_prune_epochs": self.final_prune_epochs,
            "scope": self.scope,
            "bits": _plain(self.bits),
            "share_epochs": self.share_epochs,
            "init": self.init,
            "zero_code": self.zero_code,
            "train_rest": self.train_rest,
        }


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------------ checks
def layer_names(model: Module) -> list[str]:
    """The weights Deep Compression compresses: every Conv2d and Linear weight, by name."""
    return [name for name, _ in quantizable_weights(model)]


def _check_names(given: Sequence[str], model: Module, what: str) -> None:
    known = layer_names(model)
    unknown = [n for n in given if n not in known]
    if unknown:
        raise ValueError(
            f"{what} names unknown layers {unknown}; expected weight names of this "
            f"{type(model).__name__}'s Conv2d/Linear layers: {known}"
        )


def check_bits(bits: Any, model: Module) -> dict[str, int]:
    """``bits`` (an int or a dict by weight name) as a dict over the layers it covers.

    Raises
    ------
    ValueError
        For a width that is not an integer in 1..16, or an unknown layer name.
    """
    per_layer = dict(bits) if isinstance(bits, Mapping) else dict.fromkeys(layer_names(model), bits)
    _check_names(list(per_layer), model, "bits")
    for name, b in per_layer.items():
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 1 <= b <= 16:
            raise ValueError(f"bits for {name!r} must be an integer in 1..16, got {b!r}")
    return {name: int(b) for name, b in per_layer.items()}


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(
            f"{what} must be a number in [0, 1) (the fraction of weights removed), got {value!r}"
        )
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"{what} must lie in [0, 1) (the fraction of weights removed; 1 would remove "
            f"every weight, leaving nothing to share), got {value!r}"
        )
    return float(value)


def check_rounds(rounds: Sequence[Round], model: Module, scope: str = "global") -> None:
    """Check a pruning schedule: sparsities in [0, 1), known layers, never decreasing.

    Raises
    ------
    ValueError
        For an empty schedule, a sparsity outside [0, 1), a dict round with
        ``scope="global"`` or with unknown layer names, or a layer whose
        sparsity decreases from one round to the next (masks only grow).
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if isinstance(rounds, (str, bytes, Mapping)) or not isinstance(rounds, Sequence):
        raise ValueError(f"rounds must be a sequence of sparsities, got {rounds!r}")
    if len(rounds) == 0:
        raise ValueError("rounds must hold at least one sparsity, got an empty schedule")
    previous: dict[str, float] = {}
    for i, r in enumerate(rounds):
        if isinstance(r, Mapping):
            if scope == "global":
                raise ValueError(
                    f"round {i} gives per-layer sparsities {dict(r)}: that needs scope='layer'"
                )
            _check_names(list(r), model, f"round {i}")
            current = {
                n: _check_fraction(s, f"sparsity of {n!r} in round {i}") for n, s in r.items()
            }
        else:
            s = _check_fraction(r, f"sparsity of round {i}")
            current = dict.fromkeys(layer_names(model), s)
        for name, s in current.items():
            if s < previous.get(name, 0.0):
                raise ValueError(
                    f"sparsity of {name!r} decreases from {previous[name]} to {s} in round {i}: "
                    "pruning masks only grow, give non-decreasing sparsities"
                )
        previous.update(current)


def _check_epochs(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")


def check_recipe(recipe: DeepCompressionRecipe, model: Module) -> None:
    """Check every setting of ``recipe`` against ``model`` before anything is trained.

    Raises
    ------
    ValueError
        Naming the setting, what was expected and what came.
    """
    if not isinstance(recipe, DeepCompressionRecipe):
        raise TypeError(f"recipe must be a DeepCompressionRecipe, got {type(recipe).__name__}")
    check_rounds(recipe.rounds, model, recipe.scope)
    check_bits(recipe.bits, model)
    _check_epochs(recipe.prune_epochs, "prune_epochs")
    _check_epochs(recipe.share_epochs, "share_epochs")
    if recipe.final_prune_epochs is not None:
        _check_epochs(recipe.final_prune_epochs, "final_prune_epochs")
    if recipe.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {recipe.init!r}")
