"""k-means in one dimension: the array math of weight sharing (Deep Compression).

Han, Mao and Dally (2016, sec. 3.1) cluster the ``n`` weights of a layer into
``k`` clusters, minimising the within-cluster sum of squares::

    argmin_C  sum_j  sum_{w in cluster j} |w - C[j]|^2

In one dimension a cluster is a run of *sorted* weights, so each round of
Lloyd's algorithm is a few ``searchsorted`` calls and a running sum: no loop
over the weights. Read :func:`init_centroids` (the paper's three
initialisations), :func:`assign_nearest`, then :func:`kmeans_1d`.
:mod:`compression.quantization.sharing` turns the result into a weight
transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinynet.random import as_rng

__all__ = ["INITS", "assign_nearest", "init_centroids", "kmeans_1d"]

INITS = ("linear", "random", "density")


# -------------------------------------------------------------- array math
def init_centroids(
    values: np.ndarray, k: int, init: str = "linear", seed: Any = None
) -> np.ndarray:
    """Starting centroids for k-means, the three ways Han et al. 2016 (sec. 3.2) compare.

    - ``"linear"``: ``k`` points evenly spaced between ``min(w)`` and ``max(w)``.
      The paper's best: the rare large weights (which matter most) get
      centroids of their own, where the other two put almost every
      centroid near zero, where the weights are dense.
    - ``"random"`` (Forgy): ``k`` distinct weights drawn at random (``seed``).
    - ``"density"``: evenly spaced on the *y* axis of the weights' CDF: the
      quantiles at ``(j + 0.5) / k``, so each centroid starts in the middle
      of a slice holding ``1/k`` of the weights.

    Parameters
    ----------
    values : ndarray, shape (n,)
    k : int, 1 <= k <= n
    init : {"linear", "random", "density"}
    seed : int, numpy Generator or None
        Used by ``"random"`` only (None: tinynet's global generator).

    Returns
    -------
    ndarray of float64, shape (k,), sorted ascending

    Examples
    --------
    >>> init_centroids(np.array([-1.0, 0.0, 0.1, 3.0]), 3)
    array([-1.,  1.,  3.])
    """
    values = _check_values(values, k)
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    if init == "random":
        picked = as_rng(seed).choice(values.size, size=k, replace=False)
        return np.sort(values[picked])
    if init == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def assign_nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each value; ``centroids`` sorted ascending.

    In one dimension the nearest centroid is found without computing all
    ``n * k`` distances: value ``v`` belongs to centroid ``j`` exactly when
    it lies between the midpoints ``m[j-1] = (c[j-1] + c[j]) / 2`` and
    ``m[j]``, so one binary search in the ``k - 1`` midpoints
    (``np.searchsorted``, ``O(n log k)``) assigns every value. A value
    exactly on a midpoint goes to the lower centroid.

    Parameters
    ----------
    values : ndarray, shape (n,)
    centroids : ndarray, shape (k,), sorted ascending

    Returns
    -------
    ndarray of int64, shape (n,), in ``0..k-1``

    Examples
    --------
    >>> assign_nearest(np.array([0.0, 4.0, 5.0, 6.0]), np.array([0.0, 10.0]))
    array([0, 0, 0, 1])
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(midpoints, np.asarray(values, dtype=np.float64), side="left")


def kmeans_1d(
    values: np.ndarray, k: int, init: str = "linear", iters: int = 1000, seed: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of a 1-D array (Lloyd's algorithm), as Deep Compression clusters a layer.

    Finds ``k`` centroids ``c_1..c_k`` and a partition of the weights into
    clusters ``C_1..C_k`` that minimise the within-cluster sum of squares
    (Han et al. 2016, eq. 2)::

        argmin_C  sum_{j=1..k} sum_{w in C_j} |w - c_j|^2

    Lloyd's algorithm alternates two steps, each of which can only lower
    that sum, until the clusters stop changing (or ``iters`` rounds):
    (1) assign every weight to its nearest centroid; (2) move every
    centroid to the mean of its weights.

    In one dimension a cluster is a *run of consecutive sorted weights*
    (everything between two midpoints). So the weights are sorted once,
    with a running sum ``S`` (``S[i]`` = sum of the ``i`` smallest); then each
    round needs only ``k - 1`` binary searches for the run boundaries
    ``b_0 = 0 <= b_1 <= ... <= b_k = n`` and ``k`` subtractions::

        count_j = b_j - b_{j-1}        mean_j = (S[b_j] - S[b_{j-1}]) / count_j

    (``O(k log n)`` per round, after one ``O(n log n)`` sort; no loop over
    the weights.) An *empty* cluster (``count_j = 0``) keeps its centroid
    where it was: it costs a codebook entry and no weight uses it. With
    linear initialisation this happens in the sparse tails. The result is
    deterministic (``"random"`` init: given ``seed``).

    Parameters
    ----------
    values : ndarray, any shape (flattened)
        The weights to cluster (finite).
    k : int, 1 <= k <= values.size
    init : {"linear", "random", "density"}
        See :func:`init_centroids`.
    iters : int >= 1
        Largest number of assign-update rounds (1-D Lloyd converges slowly
        on bell-shaped weights: hundreds of rounds, each cheap).
    seed : int, Generator or None
        For ``init="random"``.

    Returns
    -------
    centroids : ndarray of float64, shape (k,), ascending
        Each the mean of its cluster (or its start, if the cluster is empty).
    assignments : ndarray of int64, shape (n,)
        Nearest centroid of each value (flattened order), in ``0..k-1``. After
        convergence these are exactly the clusters the centroids are means of.

    Examples
    --------
    >>> c, a = kmeans_1d(np.array([0.0, 1, 5, 6, 7, 19, 20, 21]), 3)
    >>> c.tolist(), a.tolist()
    ([0.5, 6.0, 20.0], [0, 0, 1, 1, 1, 2, 2, 2])
    """
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    values = _check_values(values, k)
    centroids = init_centroids(values, k, init, seed)
    ordered = np.sort(values)
    running_sum = np.concatenate([[0.0], np.cumsum(ordered)])  # S[i]: sum of the i smallest
    bounds = None
    for _ in range(int(iters)):
        midpoints = (centroids[1:] + centroids[:-1]) / 2
        # b_j = number of weights <= midpoint j (a weight on a midpoint joins the lower cluster)
        new = np.concatenate(
            [[0], np.searchsorted(ordered, midpoints, side="right"), [values.size]]
        )
        if bounds is not None and np.array_equal(new, bounds):
            break  # converged: the update would give the same centroids
        bounds = new
        counts = np.diff(bounds)
        sums = running_sum[bounds[1:]] - running_sum[bounds[:-1]]
        centroids = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), centroids))
    return centroids, assign_nearest(values, centroids)


def _check_values(values: Any, k: Any) -> np.ndarray:
    """Flatten to float64; check that ``1 <= k <= n`` and that every value is finite."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k (number of clusters) must be an integer, got {k!r}")
    if not 1 <= k <= values.size:
        raise ValueError(
            f"k (number of clusters) must lie in 1..{values.size} (the number of weights), got {k}"
        )
    if not np.isfinite(values).all():
        raise ValueError("cannot cluster weights that are NaN or infinite")
    return values
