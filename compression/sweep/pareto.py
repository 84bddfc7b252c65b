"""The Pareto front of a sweep: the points no other point beats on both bytes and accuracy.

Point ``a`` *dominates* point ``b`` when it is at least as small and at
least as accurate, and strictly better in one of the two::

    a.nbytes <= b.nbytes  and  a.accuracy >= b.accuracy
    and (a.nbytes < b.nbytes  or  a.accuracy > b.accuracy)

The front is every point that nothing dominates: for any size budget, the
best accuracy the sweep found within it. Two points with equal bytes and
equal accuracy do not dominate each other, so both stay. Sorted by bytes,
the front's accuracy rises (strictly, apart from such ties): plotted as a
step line, it says "with this many bytes you can have this accuracy".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar


class SizedResult(Protocol):
    """Anything with ``nbytes`` and ``accuracy`` (a :class:`~compression.sweep.Row`)."""

    nbytes: int
    accuracy: float


R = TypeVar("R", bound=SizedResult)


def dominates(a: SizedResult, b: SizedResult) -> bool:
    """True when ``a`` is no larger and no less accurate than ``b``, and better in one."""
    no_worse = a.nbytes <= b.nbytes and a.accuracy >= b.accuracy
    return no_worse and (a.nbytes < b.nbytes or a.accuracy > b.accuracy)


def pareto_front(rows: Iterable[R]) -> list[R]:
    """The rows that no other row dominates, sorted by bytes (then accuracy, highest first).

    Compares every pair: ``O(n^2)``, plenty for sweeps of a few hundred points.

    Examples
    --------
    >>> from compression.sweep import Row
    >>> rows = [Row("a", "1", 100, 0.90, 0.0), Row("a", "2", 200, 0.95, 0.0),
    ...         Row("b", "1", 150, 0.89, 0.0), Row("b", "2", 400, 0.95, 0.0)]
    >>> [(r.nbytes, r.accuracy) for r in pareto_front(rows)]
    [(100, 0.9), (200, 0.95)]
    """
    rows = list(rows)
    front = [r for r in rows if not any(dominates(other, r) for other in rows)]
    return sorted(front, key=lambda r: (r.nbytes, -r.accuracy))


def best_by_technique(rows: Sequence[Any], key: str = "val_accuracy") -> dict[str, Any]:
    """The best row of each technique: highest ``extra[key]``, then fewest bytes.

    ``key`` is a validation metric on purpose: choosing the "best" point by
    held-out accuracy would tune on the numbers we report. Rows without
    ``extra[key]`` fall back to ``accuracy``.
    """
    best: dict[str, Any] = {}
    for row in rows:
        score = (row.extra.get(key, row.accuracy), -row.nbytes)
        current = best.get(row.technique)
        if current is None or score > (current.extra.get(key, current.accuracy), -current.nbytes):
            best[row.technique] = row
    return best
