"""Choosing one option per layer under a byte budget: exact knapsack, and the greedy shortcut.

The problem, with ``c[l, o]`` the bytes and ``d[l, o]`` the damage (loss
increase or accuracy drop) of option ``o`` for layer ``l``, and ``C`` the
bytes the layers may take (the budget minus the fixed overhead)::

    minimise    sum_l d[l, o_l]
    subject to  sum_l c[l, o_l] <= C,      one option o_l per layer

is the *multiple-choice knapsack problem*. Two solvers, pure functions on
``(L, O)`` arrays:

:func:`knapsack_choice` -- exact, by dynamic programming over bytes::

    f_0(b) = 0                                            for b = 0..C
    f_l(b) = min_o  f_{l-1}(b - c[l, o]) + d[l, o]        (over o with c[l, o] <= b)

``f_l(b)`` is the least damage of the first ``l`` layers in at most ``b``
bytes; the answer is ``f_L(C)``, and remembering the minimising ``o`` at
every ``(l, b)`` recovers the choice. Time and memory ``O(L * O * C)`` and
``O(L * C)``: for LeNet-5-Caffe at 1/20 of its float32 bytes, 4 layers x 54
options x 86,000 bytes, a fraction of a second. ``resolution`` rounds
every cost *up* to a multiple of that many bytes (and the capacity down),
for budgets of many megabytes; the answer still fits.

:func:`greedy_choice` -- start with every layer at its least damaging
option, then repeatedly take the single move (one layer to a cheaper
option) that saves the most bytes per unit of added damage,
``(c_now - c_new) / (d_new - d_now)``, until the total fits. It optimises
that exchange rate one step at a time, like following the lower convex
hull of each layer's bytes-vs-damage curve, and it can be beaten: a move
with a high rate may save far more bytes than needed and cost more damage
than a cheaper-but-slower move that just fits (the tests show such a
table). Kept for comparison and because it is how many papers describe
their allocators.

This package uses the knapsack: under the additivity assumption (see
``table.py``) it is *exact*, costs almost nothing at these sizes, and its
answer does not depend on the order moves are tried. The assumption, not
the solver, is where the error lies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_choice", "knapsack_choice", "smallest_cost"]


def _check_tables(
    costs: np.ndarray, drops: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    costs = np.asarray(costs)
    drops = np.asarray(drops, dtype=np.float64)
    if costs.ndim != 2 or costs.size == 0:
        raise ValueError(
            f"costs must be a non-empty (layers, options) array, got shape {costs.shape}"
        )
    if drops.shape != costs.shape:
        raise ValueError(f"drops of shape {drops.shape} do not match costs of shape {costs.shape}")
    if not np.issubdtype(costs.dtype, np.integer):
        if not np.all(costs == np.round(costs)):
            raise ValueError("costs must be whole numbers of bytes")
        costs = costs.astype(np.int64)
    if (costs < 0).any():
        raise ValueError("costs must be non-negative numbers of bytes")
    if not np.all(np.isfinite(drops)):
        raise ValueError("drops must be finite numbers")
    need = smallest_cost(costs)
    if capacity < need:
        raise ValueError(
            f"capacity {capacity:,} bytes is below the smallest achievable {need:,} bytes "
            "(every layer at its cheapest option)"
        )
    return costs.astype(np.int64), drops


def smallest_cost(costs: np.ndarray) -> int:
    """``sum_l min_o c[l, o]``: the fewest bytes any choice can take."""
    return int(np.asarray(costs).min(axis=1).sum())


def knapsack_choice(
    costs: np.ndarray, drops: np.ndarray, capacity: int, resolution: int = 1
) -> list[int]:
    """The option of each layer that minimises the summed damage within ``capacity`` bytes.

    Parameters
    ----------
    costs : ndarray of int, shape (L, O)
        Bytes of option ``o`` for layer ``l``.
    drops : ndarray of float, shape (L, O)
        Damage of option ``o`` for layer ``l`` (may be negative: noise).
    capacity : int
        Bytes the layers may take together.
    resolution : int, default 1
        Costs rounded up to multiples of this many bytes (1: exact).

    Returns
    -------
    list of int, length L
        Column of each layer's option. Among options of equal total damage
        at a given (layer, bytes) state, the cheaper one wins.

    Raises
    ------
    ValueError
        When no choice fits (the message gives the smallest achievable
        bytes), or for malformed tables.

    >>> costs = np.array([[10, 6, 2], [10, 5, 1]])
    >>> drops = np.array([[0.0, 1.0, 5.0], [0.0, 3.0, 9.0]])
    >>> knapsack_choice(costs, drops, 14)   # 6 + 5 = 11 bytes, damage 1 + 3 = 4
    [1, 1]
    """
    costs, drops = _check_tables(costs, drops, capacity)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer (bytes), got {resolution!r}")
    units = -(-costs // resolution)  # ceil: a rounded choice never exceeds the real capacity
    cap = int(capacity) // resolution
    if smallest_cost(units) > cap:
        raise ValueError(
            f"with costs rounded up to {resolution} bytes nothing fits in {capacity:,} bytes: "
            "use a smaller resolution"
        )
    n_layers, n_options = costs.shape
    best = np.zeros(cap + 1)  # f_0(b) = 0: no layers, no damage, whatever the bytes
    pick = np.full((n_layers, cap + 1), -1, dtype=np.int32)
    for l in range(n_layers):
        new = np.full(cap + 1, np.inf)
        for o in sorted(range(n_options), key=lambda o: (units[l, o], drops[l, o])):
            c = int(units[l, o])
            if c > cap:
                continue
            candidate = np.full(cap + 1, np.inf)
            candidate[c:] = best[: cap + 1 - c] + drops[l, o]
            better = candidate < new  # strict: the cheaper option keeps a tie
            new[better] = candidate[better]
            pick[l, better] = o
        best = new
    choice = [0] * n_layers
    b = cap  # f_L is non-increasing in b: the full capacity is the best
    for l in reversed(range(n_layers)):
        o = int(pick[l, b])
        choice[l] = o
        b -= int(units[l, o])
    return choice


def greedy_choice(costs: np.ndarray, drops: np.ndarray, capacity: int) -> list[int]:
    """Greedy: from the least damaging options, take the best bytes-per-damage move until it fits.

    Start: each layer at ``argmin_o d[l, o]`` (ties: fewer bytes). Step: over
    every layer ``l`` and every option ``o`` cheaper than its current one,
    the rate ``saved / added`` with ``saved = c_now - c[l, o]`` and
    ``added = d[l, o] - d_now``; a move that adds no damage has an infinite
    rate. Take the highest rate (ties: more bytes saved) and repeat while
    ``sum c > capacity``. Not exact (see the module docstring).

    Parameters and return value as :func:`knapsack_choice`.

    >>> costs = np.array([[10, 4], [10, 9]])
    >>> drops = np.array([[0.0, 2.0], [0.0, 0.5]])
    >>> greedy_choice(costs, drops, 19)   # the optimum is [0, 1], damage 0.5
    [1, 0]
    """
    costs, drops = _check_tables(costs, drops, capacity)
    n_layers, n_options = costs.shape
    choice = [
        min(range(n_options), key=lambda o: (drops[l, o], costs[l, o])) for l in range(n_layers)
    ]
    total = sum(int(costs[l, o]) for l, o in enumerate(choice))
    while total > capacity:
        best_key, best_move = None, None
        for l in range(n_layers):
            now = choice[l]
            for o in range(n_options):
                saved = int(costs[l, now] - costs[l, o])
                if saved <= 0:
                    continue
                added = float(drops[l, o] - drops[l, now])
                rate = saved / added if added > 0 else np.inf
                key = (rate, saved)
                if best_key is None or key > best_key:
                    best_key, best_move = key, (l, o)
        l, o = best_move  # one exists: total > capacity >= the smallest achievable
        total -= int(costs[l, choice[l]] - costs[l, o])
        choice[l] = o
    return choice
