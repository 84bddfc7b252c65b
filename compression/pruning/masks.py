"""Pruning masks as array math: which entries of a weight tensor to drop.

Everything here is a pure function on NumPy arrays; a reader can try each
one in a REPL on a 3x3 array. A *keep-mask* is a boolean array of the
weight's shape: ``True`` keeps an entry, ``False`` drops (prunes) it. The
model-level code (:mod:`compression.pruning.apply`) turns keep-masks into
:class:`tinynet.Mask` transforms, ``W_eff = W * M``.

Magnitude pruning (Han et al. 2015)
-----------------------------------
The importance of a weight is its magnitude ``|w|``. To prune a tensor of
``n`` entries to *sparsity* ``s`` (the fraction of **all** entries dropped,
not of those still remaining), drop exactly::

    k = round(s * n)        Python's round: half to even, round(4.5) == 4

entries, those of smallest ``|w|``. This is PyTorch's
``torch.nn.utils.prune.l1_unstructured(module, name, amount=s)`` on a fresh
tensor (it computes the same ``k`` and calls ``torch.topk(|w|, k,
largest=False)``).

Ties. Equal magnitudes are ordered by their position in the flattened
(row-major, C order) tensor: among equal ``|w|`` the entry with the
*lower* flat index is dropped first (we sort with a stable sort).
``torch.topk`` does not specify which of several tied entries it returns
(its documentation says so, and in practice the choice depends on the
length of the tensor and on ``k``), so masks agree with PyTorch exactly
whenever the ``k``-th and ``(k+1)``-th smallest magnitudes differ, which
is almost surely the case for trained float weights, and may differ in
*which* tied entries go otherwise (never in how many).

Worked example, a 3x3 weight (``n = 9``)::

    w = [[ 0.5, -0.1,  0.9],          |w| sorted: 0.05 0.1 0.2 0.3 0.4 0.5 ...
         [-0.3,  0.05, 0.7],
         [ 0.2, -0.8, -0.4]]

    sparsity 1/3: k = round(3.0) = 3   drop 0.05, -0.1, 0.2
    keep = [[T, F, T],
            [T, F, T],
            [F, T, T]]

    sparsity 0.5: k = round(4.5) = 4   (half to even!)  also drop -0.3
    keep = [[T, F, T],
            [F, F, T],
            [F, T, T]]

Global magnitude pruning ranks the entries of several tensors together
(one threshold for the whole model, PyTorch ``prune.global_unstructured``
with ``L1Unstructured``); the threshold rule of Han et al. keeps
``|w| > quality * std(w)`` per layer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_sparsity",
    "expand_unit_mask",
    "global_magnitude_masks",
    "magnitude_mask",
    "magnitude_threshold",
    "num_to_drop",
    "smallest_mask",
    "std_threshold_mask",
    "unit_mask",
]


def check_sparsity(sparsity: object, name: str = "sparsity") -> float:
    """Return ``sparsity`` as a float after checking it is a number in [0, 1].

    Raises
    ------
    ValueError
        Naming ``name``, when ``sparsity`` is not a real number (a bool is
        not, nor is a string), is NaN, or lies outside [0, 1].

    Notes
    -----
    Unlike PyTorch's ``amount``, an integer is *not* a count of entries:
    ``0`` and ``1`` mean 0% and 100%.
    """
    if isinstance(sparsity, (bool, np.bool_)) or not isinstance(sparsity, numbers.Real):
        raise ValueError(
            f"{name} must be a number in [0, 1] (the fraction of entries to drop), "
            f"got {sparsity!r} of type {type(sparsity).__name__}"
        )
    value = float(sparsity)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name} must be a number in [0, 1] (the fraction of entries to drop), got {sparsity!r}"
        )
    return value


def num_to_drop(sparsity: float, n: int) -> int:
    """``k = round(sparsity * n)``: how many of ``n`` entries sparsity drops.

    Python's ``round`` rounds half to even (``round(4.5) == 4``,
    ``round(5.5) == 6``), exactly as PyTorch's ``prune`` computes it.
    """
    return int(round(check_sparsity(sparsity) * n))


def smallest_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask dropping the ``k`` entries of smallest ``scores`` (ties: lower index first).

    The core of every mask in this package: magnitude masks call it with
    ``|w|``, structured masks with one score per unit.

    Parameters
    ----------
    scores : ndarray, any shape
        Importance of each entry; smaller means less important.
    k : int
        Number of entries to drop, ``0 <= k <= scores.size``.

    Returns
    -------
    keep : ndarray of bool, shape of ``scores``
        Exactly ``scores.size - k`` True entries.
    """
    scores = np.asarray(scores)
    if not 0 <= k <= scores.size:
        raise ValueError(f"k must be in [0, {scores.size}], got {k}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: a NaN weight has no magnitude to rank")
    # A stable sort keeps equal scores in index order, so ties drop the lower index first.
    order = np.argsort(scores.ravel(), kind="stable")
    keep = np.ones(scores.size, dtype=bool)
    keep[order[:k]] = False
    return keep.reshape(scores.shape)


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    r"""Keep-mask dropping the ``round(sparsity * w.size)`` entries of smallest ``|w|``.

    .. math::

        k = \mathrm{round}(s \cdot n), \qquad
        M_i = 0 \iff |w_i| \text{ is among the } k \text{ smallest}

    PyTorch ``torch.nn.utils.prune.l1_unstructured(module, name, amount=s)``
    on a fresh tensor. Ties: lower flat index dropped first (see the module
    docstring for how that relates to ``torch.topk``).

    Parameters
    ----------
    w : array_like, any shape
        The weight (or its effective value).
    sparsity : float in [0, 1]
        Fraction of *all* entries to drop (absolute, not relative to what
        earlier pruning already removed).

    Returns
    -------
    keep : ndarray of bool, shape of ``w``
        True keeps an entry; exactly ``round(sparsity * w.size)`` are False.

    Examples
    --------
    >>> w = np.array([[0.5, -0.1, 0.9], [-0.3, 0.05, 0.7], [0.2, -0.8, -0.4]])
    >>> magnitude_mask(w, 1 / 3).astype(int)
    array([[1, 0, 1],
           [1, 0, 1],
           [0, 1, 1]])
    """
    w = np.asarray(w)
    return smallest_mask(np.abs(w), num_to_drop(sparsity, w.size))


def magnitude_threshold(w: np.ndarray, keep: np.ndarray) -> float:
    """The largest ``|w|`` that ``keep`` drops (0.0 when nothing is dropped).

    Every dropped entry has ``|w| <= threshold`` and every kept one
    ``|w| >= threshold`` (equality only for ties).
    """
    dropped = np.abs(np.asarray(w))[~np.asarray(keep, dtype=bool)]
    return float(dropped.max()) if dropped.size else 0.0


def global_magnitude_masks(tensors: Sequence[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """One magnitude threshold across several tensors (PyTorch ``prune.global_unstructured``).

    All entries are ranked together: with ``N = sum of the sizes``, exactly
    ``round(sparsity * N)`` entries of smallest ``|w|`` are dropped, wherever
    they are. Layers whose weights are small lose more than ``sparsity``,
    layers whose weights are large lose less. PyTorch:
    ``prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
    amount=s)``.

    Ties: the tensors are concatenated in the order given (each flattened in
    C order), and the lower position in that concatenation is dropped first.

    Worked example (``N = 7``, sparsity 0.5, ``k = round(3.5) = 4``)::

        a = [0.1, 0.9, -0.5]              global: drop 0.05, 0.1, -0.2, 0.3
        b = [[0.3, -0.2],                 a -> [F, T, T]
             [0.05, 0.6]]                 b -> [[F, F], [F, T]]

    whereas layer-wise 0.5 drops ``round(1.5) = 2`` of ``a`` and
    ``round(2.0) = 2`` of ``b``: ``a -> [F, T, F]``, ``b -> [[T, F], [F, T]]``.

    Parameters
    ----------
    tensors : sequence of array_like
        Any shapes.
    sparsity : float in [0, 1]
        Fraction of all their entries to drop.

    Returns
    -------
    list of ndarray of bool
        One keep-mask per tensor, in order, each of its tensor's shape.
    """
    arrays = [np.asarray(t) for t in tensors]
    if not arrays:
        raise ValueError("global_magnitude_masks needs at least one tensor, got none")
    magnitudes = np.concatenate([np.abs(a).ravel() for a in arrays])
    keep = smallest_mask(magnitudes, num_to_drop(sparsity, magnitudes.size))
    masks, start = [], 0
    for a in arrays:
        masks.append(keep[start : start + a.size].reshape(a.shape))
        start += a.size
    return masks


def std_threshold_mask(w: np.ndarray, quality: float) -> np.ndarray:
    r"""Han et al. 2015's rule: keep ``|w| > quality * std(w)``.

    .. math::

        t = q \cdot \sigma(w), \qquad M_i = 1 \iff |w_i| > t

    ``std`` is the population standard deviation of the layer's weights
    (``np.std``, dividing by ``n``). For roughly Gaussian weights the kept
    fraction is ``P(|z| > q) = erfc(q / sqrt(2))``: ``q = 1`` keeps about
    32%, ``q = 2`` about 5%. The resulting sparsity is whatever the
    threshold gives (not a number you choose), which is why the lessons
    mostly use :func:`magnitude_mask`. Distiller's ``SensitivityPruner``
    applies the same rule (it uses ``torch.std``, which divides by ``n - 1``).

    Worked example: for ``w`` of the module docstring, ``std(w) = 0.5196``.
    ``quality = 0.5`` gives ``t = 0.2598`` and drops 0.05, -0.1 and 0.2
    (the same mask as sparsity 1/3); ``quality = 1`` gives ``t = 0.5196``
    and keeps only 0.9, 0.7 and -0.8 (``|0.5| <= t`` is dropped).

    Parameters
    ----------
    w : array_like, any shape
    quality : float >= 0
        The quality parameter ``q`` (Han et al. call it that; Distiller
        calls it *sensitivity*).

    Returns
    -------
    keep : ndarray of bool, shape of ``w``
    """
    if isinstance(quality, (bool, np.bool_)) or not isinstance(quality, numbers.Real):
        raise ValueError(f"quality must be a non-negative number, got {quality!r}")
    if math.isnan(float(quality)) or quality < 0:
        raise ValueError(f"quality must be a non-negative number, got {quality!r}")
    w = np.asarray(w)
    threshold = float(quality) * float(np.std(w))
    return np.abs(w) > threshold


def unit_mask(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask over units: drop the ``round(sparsity * n_units)`` lowest ``scores``.

    The structured counterpart of :func:`magnitude_mask`: ``scores`` holds one
    importance per neuron or filter (shape ``(n_units,)``, from
    :mod:`compression.pruning.scores`). PyTorch ``prune.ln_structured`` keeps
    the ``n_units - round(amount * n_units)`` units of largest norm, which is
    the same set when scores are distinct. Ties: lower unit index dropped first.

    Returns
    -------
    keep : ndarray of bool, shape (n_units,)
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"unit scores must be 1-D (one per unit), got shape {scores.shape}")
    return smallest_mask(scores, num_to_drop(sparsity, scores.size))


def expand_unit_mask(keep_units: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a per-unit keep-mask ``(n_units,)`` to a parameter of ``shape``.

    Unit ``j`` is row ``j`` of a ``Linear`` weight ``(out, in)``, filter ``j``
    of a ``Conv2d`` weight ``(out, in, kh, kw)``, entry ``j`` of a bias
    ``(out,)``: axis 0 in every case (PyTorch's ``dim=0``).

    Returns
    -------
    keep : ndarray of bool, shape ``shape``
    """
    keep_units = np.asarray(keep_units, dtype=bool)
    if keep_units.ndim != 1 or not shape or shape[0] != keep_units.size:
        raise ValueError(
            f"a unit mask of shape {keep_units.shape} does not match axis 0 of shape {shape}"
        )
    index = (slice(None),) + (None,) * (len(shape) - 1)
    return np.broadcast_to(keep_units[index], shape).copy()
