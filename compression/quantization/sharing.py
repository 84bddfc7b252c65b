"""Weight sharing: per-layer k-means, a codebook of ``k`` shared values (Deep Compression).

Han, Mao and Dally (2016, *Deep Compression*, sec. 3) let the ``n`` weights
of a layer share only ``k`` distinct values. Each weight then stores the
``log2(k)``-bit number of its *centroid* instead of a 32-bit float::

    W_eff[i] = C[a[i]]        C: the codebook, shape (k,); a[i] in 0..k-1

The codebook is found by k-means on the layer's weights (1-D, so cheap),
and then *fine-tuned*: the assignments ``a`` stay fixed and the centroids
are trained. Since ``W_eff[i] = C[a[i]]``, the chain rule gives each
centroid the **sum of the gradients of the weights assigned to it**
(Han et al. 2016, eq. 3)::

    dL/dC[j] = sum_{i : a[i] = j} dL/dW_eff[i]

Deep Compression uses 8 bits (256 centroids) for conv layers and 5 bits
(32) for fully connected ones, after pruning. The storage (codes plus
codebook, ``n * ceil(log2 k) + 32 k`` bits) is in ``storage_sharing.py``.

Read :mod:`compression.quantization.kmeans` first (the array math:
:func:`init_centroids`, :func:`assign_nearest`, :func:`kmeans_1d`), then
:class:`SharedWeights` (the weight transform) and :func:`share_weights`
(applying it to a model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from compression.pruning.apply import current_keep, effective_value, prunable_layers
from compression.quantization.kmeans import (
    INITS,
    assign_nearest,
    init_centroids,
    kmeans_1d,
)
from tinynet.layers import Conv2d
from tinynet.module import Module
from tinynet.parameter import Parameter
from tinynet.transforms import Transform, register_transform

__all__ = [
    "INITS",
    "PRUNED",
    "SharedWeights",
    "assign_nearest",
    "centroid_groups",
    "deep_compression_bits",
    "init_centroids",
    "kmeans_1d",
    "quantizable_weights",
    "share_weights",
]

PRUNED = -1  # the assignment of a pruned weight: it belongs to no cluster and stays 0


# --------------------------------------------------------------- transform
@register_transform
class SharedWeights(Transform):
    """Weight sharing as a weight transform: ``W_eff = C[a]``.

    Forward (``a`` fixed, ``C`` trainable)::

        W_eff[i] = C[a[i]]       if a[i] >= 0
        W_eff[i] = 0             if a[i] == PRUNED (-1): a pruned weight

    Backward (Han et al. 2016, eq. 3)::

        dL/dC[j] = sum_{i : a[i] = j} dL/dW_eff[i]    (np.bincount with weights)
        dL/dW    = 0

    The centroids are a :class:`tinynet.Parameter` owned by the transform:
    they appear in ``model.parameters()`` as
    ``"<layer>.parametrizations.weight.<i>.centroids"``, optimizers update
    them, and their gradient accumulates (``zero_grad`` resets it).
    The latent weight no longer matters: ``W_eff`` does not depend on it, so
    its gradient is zero (an optimizer's weight decay may still move it,
    harmlessly). ``strip`` bakes ``C[a]`` into the weight.

    Composition with pruning: put it *after* a ``Mask``
    (:func:`share_weights` does); pruned weights get assignment ``-1``, so
    they stay exactly zero whatever the centroids become, and join no
    cluster (their zero gradient is not summed into any centroid). Prune
    *before* sharing: the transform ignores its input, so a mask changed
    afterwards would not reach ``W_eff``.

    Parameters
    ----------
    centroids : array_like, shape (k,)
        The codebook ``C``; becomes a Parameter of ``dtype``.
    assignments : array_like of int, the weight's shape
        ``a``: each weight's centroid, in ``0..k-1``, or ``-1`` (pruned).
    dtype : dtype, default float32
        Of the centroids (the weight's dtype; ``model.astype`` converts both).

    Examples
    --------
    >>> t = SharedWeights([-1.0, 2.0], [[0, 1], [1, -1]])
    >>> t.forward(np.zeros((2, 2), np.float32))
    array([[-1.,  2.],
           [ 2.,  0.]], dtype=float32)
    """

    state_names = ("assignments",)
    param_names = ("centroids",)

    def __init__(self, centroids: Any, assignments: Any, dtype: Any = np.float32) -> None:
        centroids = np.array(centroids, dtype=dtype)
        if centroids.ndim != 1 or centroids.size == 0:
            raise ValueError(f"centroids must have shape (k,) with k >= 1, got {centroids.shape}")
        assignments = np.asarray(assignments)
        if assignments.dtype.kind not in "iu":
            raise ValueError(f"assignments must be integers, got dtype {assignments.dtype}")
        k = centroids.size
        if assignments.size and (assignments.min() < PRUNED or assignments.max() >= k):
            raise ValueError(
                f"assignments must lie in 0..{k - 1} (or -1 for a pruned weight), "
                f"got {assignments.min()}..{assignments.max()}"
            )
        self.centroids = Parameter(centroids)
        self.assignments = assignments.astype(np.int64)

    @property
    def k(self) -> int:
        """Number of centroids (codebook entries)."""
        return int(self.centroids.size)

    @property
    def bits(self) -> int:
        """Bits per stored code: ``max(1, ceil(log2 k))``."""
        return max(1, (self.k - 1).bit_length())

    def forward(self, w: np.ndarray) -> np.ndarray:
        if w.shape != self.assignments.shape:
            raise ValueError(
                f"SharedWeights with assignments of shape {self.assignments.shape} applied to "
                f"a weight of shape {w.shape}"
            )
        # The table [C_0, ..., C_{k-1}, 0]: index -1 (PRUNED) reads its last entry, the zero.
        table = np.append(self.centroids.data, 0).astype(w.dtype)
        return table[self.assignments]

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        clustered = self.assignments >= 0
        d_centroids = np.bincount(
            self.assignments[clustered], weights=d_out[clustered], minlength=self.k
        )
        self.centroids.backward(d_centroids.astype(self.centroids.dtype))
        return np.zeros_like(d_out)  # W_eff does not depend on the latent weight

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> SharedWeights:
        k = config.get("k")
        size = int(np.prod(shape))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max(1, size):
            # share_weights never makes more centroids than weights; the bound also keeps
            # a hostile file from allocating a codebook of 2**31 entries.
            raise ValueError(
                f"SharedWeights config needs an integer k in 1..{max(1, size)} (at most one "
                f"centroid per weight of shape {tuple(shape)}), got {k!r}"
            )
        return cls(np.zeros(k), np.zeros(shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"SharedWeights(k={self.k}, bits={self.bits})"


# ------------------------------------------------------------- model level
def quantizable_weights(
    model: Module, include: Iterable[str] | None = None, exclude_first: bool = False
) -> list[tuple[str, Parameter]]:
    """The weights of every ``Conv2d`` and ``Linear``, by name (``"0.weight"``).

    ``exclude_first`` leaves the first such layer alone; ``include`` keeps
    only the named weights. Biases are never shared (few, and important).

    Raises
    ------
    ValueError
        When ``include`` names something that is not such a weight, or when
        nothing is left.
    """
    layers = prunable_layers(model)[1 if exclude_first else 0 :]
    candidates = [(f"{name}.weight" if name else "weight", m.weight) for name, m in layers]
    if include is not None:
        wanted = [include] if isinstance(include, str) else list(include)
        unknown = sorted(set(wanted) - {n for n, _ in candidates})
        if unknown:
            raise ValueError(
                f"include names {unknown}, which are not Conv2d/Linear weights here; "
                f"the candidates are {[n for n, _ in candidates]}"
            )
        candidates = [(n, p) for n, p in candidates if n in wanted]
    if not candidates:
        raise ValueError(
            f"no Conv2d or Linear weights to quantize in this {type(model).__name__} "
            f"(include={include!r}, exclude_first={exclude_first})"
        )
    return candidates


def deep_compression_bits(model: Module, conv: int = 8, fc: int = 5) -> dict[str, int]:
    """Deep Compression's bit widths: ``conv`` bits for Conv2d, ``fc`` for Linear weights.

    >>> import tinynet
    >>> deep_compression_bits(tinynet.models.lenet5_caffe())
    {'0.weight': 8, '2.weight': 8, '5.weight': 5, '7.weight': 5}
    """
    return {
        f"{name}.weight": conv if isinstance(m, Conv2d) else fc
        for name, m in prunable_layers(model)
    }


def share_weights(
    model: Module,
    bits: int | Mapping[str, int] | None = None,
    *,
    k: int | Mapping[str, int] | None = None,
    init: str = "linear",
    iters: int = 1000,
    seed: Any = None,
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
) -> dict[str, SharedWeights]:
    """Cluster each eligible weight with k-means and add a :class:`SharedWeights` transform.

    Give either ``bits`` (``k = 2**bits`` centroids) or ``k``, one number for
    every layer or a dict by parameter name (``{"0.weight": 8, ...}``; see
    :func:`deep_compression_bits`); with a dict, only the named weights are
    shared. The value clustered is the weight's current effective value.
    If it carries a ``Mask`` (pruned), only the kept entries are clustered;
    the pruned ones get assignment ``-1`` and stay exactly zero.

    Parameters
    ----------
    model : Module
    bits, k : int or dict of str -> int
        Exactly one of them. ``bits`` in 1..16.
    init, iters, seed
        Passed to :func:`kmeans_1d` (``seed`` for ``init="random"``).
    include, exclude_first
        Which weights: see :func:`quantizable_weights`.

    Returns
    -------
    dict of str -> SharedWeights
        The transform added to each weight (``t.k``, ``t.bits``, ``t.centroids``).

    Raises
    ------
    ValueError
        For both or neither of ``bits`` and ``k``, a bad bit width, ``k``
        larger than a layer's number of (kept) weights, a bad ``init``, or
        a weight that is already shared.
    """
    if (bits is None) == (k is None):
        raise ValueError("give exactly one of bits (k = 2**bits centroids) and k")
    params = quantizable_weights(model, include, exclude_first)
    wanted = bits if bits is not None else k
    if isinstance(wanted, Mapping):
        unknown = sorted(set(wanted) - {n for n, _ in params})
        if unknown:
            raise ValueError(
                f"no eligible weight named {unknown}; eligible: {[n for n, _ in params]}"
            )
        params = [(n, p) for n, p in params if n in wanted]
        per_name = dict(wanted)
    else:
        per_name = {n: wanted for n, _ in params}
    if bits is not None:
        for name, b in per_name.items():
            if isinstance(b, bool) or not isinstance(b, int | np.integer) or not 1 <= b <= 16:
                raise ValueError(f"bits for {name!r} must be an integer in 1..16, got {b!r}")
        per_name = {name: 1 << int(b) for name, b in per_name.items()}
    added = {}
    for name, param in params:
        if any(isinstance(t, SharedWeights) for t in param.transforms):
            raise ValueError(f"{name!r} is already weight-shared; strip(model) first to redo it")
        keep = current_keep(param)
        kept_values = effective_value(param)[keep]
        try:
            centroids, codes = kmeans_1d(kept_values, per_name[name], init, iters, seed)
        except ValueError as err:
            raise ValueError(f"{name!r} ({keep.sum()} kept weights): {err}") from None
        assignments = np.full(param.shape, PRUNED, dtype=np.int64)
        assignments[keep] = codes
        added[name] = param.add_transform(SharedWeights(centroids, assignments, dtype=param.dtype))
    return added


def centroid_groups(model: Module, lr: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups that fine-tune only the centroids, one group per layer.

    A centroid's gradient is the *sum* of its weights' gradients (Han et al.
    2016, eq. 3), so with ``n`` clustered weights in ``k`` clusters it is
    about ``n / k`` times larger than one weight's: a step at the network's
    own learning rate would throw the codebook far off. Each layer's group
    gets ``lr * k / n`` (the step its average weight would take under plain
    SGD) and no weight decay (the codebook is not a set of free weights).
    ``n`` counts only the clustered weights: in a pruned layer the masked
    ones (assignment -1) send no gradient to any centroid.

    >>> from tinynet.models import lenet_300_100
    >>> model = lenet_300_100()
    >>> _ = share_weights(model, bits=2, include=["1.weight"])
    >>> [(len(g["params"]), g["lr"] * 784 * 300 / 4) for g in centroid_groups(model, lr=0.01)]
    [(1, 0.01)]
    """
    groups = []
    for _, _, _, param in model.named_parameter_slots():
        for t in param.transforms:
            if isinstance(t, SharedWeights):
                n = max(int((t.assignments >= 0).sum()), 1)
                groups.append({"params": [t.centroids], "lr": lr * t.k / n, "weight_decay": 0.0})
    if not groups:
        raise ValueError(
            "centroid_groups: the model has no weight-shared parameter (see share_weights)"
        )
    return groups
