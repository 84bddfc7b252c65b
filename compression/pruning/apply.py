"""Applying pruning masks to a model: which parameters, layer-wise or global, composing masks.

The array math lives in :mod:`compression.pruning.masks`; this file is the
thin layer that puts its keep-masks on a model's parameters as
:class:`tinynet.Mask` transforms (``W_eff = W * M``, gradient ``dW * M``),
the analogue of ``torch.nn.utils.prune``'s forward pre-hooks. Because the
layer only ever sees ``W_eff``, a pruned weight stays *exactly* zero
through any number of optimizer steps, whatever momentum or weight decay
do to the latent value underneath, and its gradient is zero.

Making masks permanent and rewinding are in :mod:`compression.pruning.permanent`,
counting nonzeros in :mod:`compression.pruning.report`.

Which parameters are eligible is a choice, stated in every summary:

* default: the weights of every ``Conv2d`` and ``Linear`` (DESIGN.md's
  protocol; Han et al. 2015 prune weights only);
* ``prune_bias=True`` adds those layers' biases (few, and important: each
  one shifts a whole unit);
* ``exclude_first=True`` leaves the first layer dense (it sees raw pixels
  and is often the most sensitive);
* ``include=[...]`` restricts pruning to the named parameters.

Composition. If a parameter already carries a ``Mask``, the new keep-mask is
computed on the *effective* value with the already-pruned entries ranked
first, then written into that same ``Mask``: sparsity never decreases, and
asking for less than a parameter already has leaves it as it is. Otherwise
a new ``Mask`` is inserted at the *front* of the chain (``W_eff = t(W * M)``)
so that later transforms (a fake quantizer, whose grid contains 0) see the
zeros; ``compression.storage`` stores such a chain sparsely.

Sparsity is absolute throughout: 0.9 means 90% of the entries are zero,
however many were zero before (unlike the *amount* of a second
``torch.nn.utils.prune`` call, which is relative to what remains).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from compression.pruning.masks import check_sparsity, num_to_drop, smallest_mask
from tinynet.grad_mode import no_grad
from tinynet.layers import Conv2d, Linear
from tinynet.module import Module
from tinynet.parameter import Parameter
from tinynet.transforms import Mask

__all__ = [
    "PruningRow",
    "PruningSummary",
    "add_mask",
    "current_keep",
    "effective_value",
    "eligible_parameters",
    "prunable_layers",
    "prune_model",
]


# ------------------------------------------------------------------ masks
def current_keep(param: Parameter) -> np.ndarray:
    """The parameter's keep-mask: the AND of every ``Mask`` in its chain (all True if none)."""
    keep = np.ones(param.shape, dtype=bool)
    for t in param.transforms:
        if isinstance(t, Mask):
            keep &= t.mask
    return keep


def add_mask(param: Parameter, keep: np.ndarray) -> Mask:
    """Prune ``param`` with ``keep`` (True keeps), composing with any mask it has.

    The result keeps an entry only if both the old mask and ``keep`` do
    (AND). The first ``Mask`` of the chain holds it; with no ``Mask`` yet, one
    is inserted at the front of the chain. Returns that ``Mask``.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != param.shape:
        raise ValueError(f"keep-mask of shape {keep.shape} for a parameter of shape {param.shape}")
    combined = current_keep(param) & keep
    for t in param.transforms:
        if isinstance(t, Mask):
            t.mask = combined
            return t
    mask = Mask(combined)
    param.transforms.insert(0, mask)  # W_eff = t_n(...t_1(W * M))
    return mask


def effective_value(param: Parameter) -> np.ndarray:
    """``param.value()`` computed without keeping anything for backward."""
    with no_grad():
        return np.asarray(param.value())


def _pruning_scores(param: Parameter) -> np.ndarray:
    """``|W_eff|`` as float64, with already-pruned entries at -1 so they are dropped first."""
    scores = np.abs(effective_value(param)).astype(np.float64)
    scores[~current_keep(param)] = -1.0
    return scores


# ------------------------------------------------------------- eligibility
def prunable_layers(model: Module) -> list[tuple[str, Module]]:
    """Every ``Conv2d`` and ``Linear`` of ``model``, in module order, with its name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (Conv2d, Linear))]


def eligible_parameters(
    model: Module,
    *,
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
    prune_bias: bool = False,
) -> list[tuple[str, Parameter]]:
    """The parameters that pruning may touch, with their names (``"1.weight"``).

    Candidates are the weights of every ``Conv2d`` and ``Linear``, plus their
    biases with ``prune_bias``, minus the first such layer's with
    ``exclude_first``. ``include`` (parameter names) keeps only those.

    Raises
    ------
    ValueError
        When nothing is eligible, or ``include`` names a parameter that is
        not a candidate (the message lists the candidates).
    """
    layers = prunable_layers(model)
    if exclude_first:
        layers = layers[1:]
    candidates: list[tuple[str, Parameter]] = []
    for name, layer in layers:
        prefix = f"{name}." if name else ""
        candidates.append((prefix + "weight", layer.weight))
        if prune_bias and layer.bias is not None:
            candidates.append((prefix + "bias", layer.bias))
    if include is not None:
        wanted = [include] if isinstance(include, str) else list(include)
        known = dict(candidates)
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(
                f"include names {unknown}, which are not eligible; the candidates are "
                f"{sorted(known)} (biases need prune_bias=True, the first layer "
                "exclude_first=False)"
            )
        candidates = [(n, p) for n, p in candidates if n in wanted]
    if not candidates:
        raise ValueError(
            f"nothing to prune in this {type(model).__name__}: no eligible parameters "
            f"(it has {len(prunable_layers(model))} Conv2d/Linear layers; "
            f"include={include!r}, exclude_first={exclude_first}, prune_bias={prune_bias})"
        )
    return candidates


def _eligibility_text(names: list[str], exclude_first: bool, prune_bias: bool) -> str:
    bias = "biases pruned too" if prune_bias else "biases not pruned"
    first = "first layer left dense" if exclude_first else "first layer included"
    return f"weights of Conv2d and Linear layers ({', '.join(names)}); {bias}; {first}"


# ---------------------------------------------------------------- summary
@dataclass
class PruningRow:
    """One parameter after pruning: ``kept`` of ``total`` entries, and the magnitude threshold."""

    name: str
    shape: tuple[int, ...]
    kept: int
    total: int
    threshold: float

    @property
    def sparsity(self) -> float:
        """Fraction of entries dropped."""
        return 1.0 - self.kept / self.total if self.total else 0.0


@dataclass
class PruningSummary:
    """What :func:`prune_model` did: the scope, the eligibility rule and one row per parameter."""

    scope: str
    eligibility: str
    rows: list[PruningRow]

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.rows)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    @property
    def sparsity(self) -> float:
        """Sparsity over the pruned parameters together."""
        return 1.0 - self.kept / self.total if self.total else 0.0

    def __str__(self) -> str:
        lines = [f"{self.scope} pruning of {self.eligibility}"]
        lines.append(f"{'parameter':<20} {'kept':>10} {'total':>10} {'sparsity':>9} {'|w| <=':>10}")
        for r in self.rows:
            lines.append(
                f"{r.name:<20} {r.kept:>10,} {r.total:>10,} {r.sparsity:>9.2%} {r.threshold:>10.4g}"
            )
        lines.append(f"{'total':<20} {self.kept:>10,} {self.total:>10,} {self.sparsity:>9.2%}")
        return "\n".join(lines)


# ------------------------------------------------------------------ prune
def prune_model(
    model: Module,
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "layer",
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
    prune_bias: bool = False,
) -> PruningSummary:
    """Magnitude-prune ``model`` in place with ``Mask`` transforms.

    - ``scope="layer"``: each eligible parameter ``W`` (``n`` entries) loses
      its ``round(s * n)`` smallest ``|W_eff|`` (PyTorch ``l1_unstructured``
      per parameter). ``sparsity`` may be a dict ``{"1.weight": 0.92, ...}``
      giving each named parameter its own sparsity (Han et al. 2015 keep
      8% / 9% / 26% of LeNet-300-100's three layers); parameters not named
      are left alone.
    - ``scope="global"``: one threshold across all eligible parameters;
      ``round(s * N)`` entries of smallest ``|W_eff|`` among all ``N``
      eligible entries (PyTorch ``global_unstructured`` with
      ``L1Unstructured``).

    Already-pruned entries rank first, so the masks compose (see the module
    docstring). Ties: lower index (in the order of :func:`eligible_parameters`,
    then C order) dropped first.

    Parameters
    ----------
    model : Module
    sparsity : float in [0, 1], or dict of name -> float (layer scope)
        Absolute fraction of entries to drop.
    scope : {"layer", "global"}
    include, exclude_first, prune_bias
        Eligibility, see :func:`eligible_parameters`.

    Returns
    -------
    PruningSummary
        ``print()`` it for a table; ``rows`` per parameter.

    Raises
    ------
    ValueError
        For a sparsity outside [0, 1] (or not a number), an unknown scope,
        a dict in global scope or naming ineligible parameters, or when
        nothing is eligible.
    """
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    params = eligible_parameters(
        model, include=include, exclude_first=exclude_first, prune_bias=prune_bias
    )
    if isinstance(sparsity, Mapping):
        if scope == "global":
            raise ValueError("a dict of per-parameter sparsities needs scope='layer'")
        eligible = dict(params)
        unknown = [n for n in sparsity if n not in eligible]
        if unknown:
            raise ValueError(
                f"sparsity names {unknown}, not eligible; eligible: {sorted(eligible)}"
            )
        targets = {n: check_sparsity(s, f"sparsity[{n!r}]") for n, s in sparsity.items()}
        params = [(n, p) for n, p in params if n in targets]
    else:
        s = check_sparsity(sparsity)
        targets = {n: s for n, _ in params}

    scores = [_pruning_scores(p) for _, p in params]
    if scope == "layer":
        keeps = [
            smallest_mask(sc, num_to_drop(targets[n], sc.size))
            for (n, _), sc in zip(params, scores)
        ]
    else:
        flat = np.concatenate([sc.ravel() for sc in scores])
        keep_all = smallest_mask(flat, num_to_drop(targets[params[0][0]], flat.size))
        keeps, start = [], 0
        for sc in scores:
            keeps.append(keep_all[start : start + sc.size].reshape(sc.shape))
            start += sc.size

    rows = []
    for (name, param), keep, sc in zip(params, keeps, scores):
        mask = add_mask(param, keep)
        # The largest |W_eff| dropped (scores of earlier-pruned entries are -1).
        threshold = max(0.0, float(sc[~mask.mask].max())) if not mask.mask.all() else 0.0
        rows.append(PruningRow(name, param.shape, int(mask.mask.sum()), param.size, threshold))
    names = [n for n, _ in params]
    return PruningSummary(scope, _eligibility_text(names, exclude_first, prune_bias), rows)
