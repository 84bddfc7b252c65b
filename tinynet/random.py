"""The one random number generator that tinynet draws from.

Default initialisation (``Linear``, ``Conv2d``) and ``Dropout`` draw from a
module-level :class:`numpy.random.Generator`. ``manual_seed(seed)`` replaces
it, so a script that calls ``tinynet.manual_seed(0)`` first builds the same
model and draws the same dropout masks on every run (the analogue of
``torch.manual_seed``). Every function that draws random numbers also accepts
a ``seed`` or ``rng`` argument of its own; :func:`as_rng` turns either into a
generator.
"""

from __future__ import annotations

import numpy as np

_generator: np.random.Generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed the generator used by default initialisation and ``Dropout``.

    Parameters
    ----------
    seed : int
        Non-negative integer seed.

    Returns
    -------
    numpy.random.Generator
        The new global generator (also returned by :func:`get_rng`).
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def get_rng() -> np.random.Generator:
    """Return the global generator that ``manual_seed`` last set."""
    return _generator


def as_rng(seed_or_rng: int | np.random.Generator | None = None) -> np.random.Generator:
    """Turn a seed, a generator or ``None`` into a generator.

    ``None`` means the global generator (so ``manual_seed`` governs it), an
    integer makes a fresh generator from that seed, and a generator is used
    as it is.
    """
    if seed_or_rng is None:
        return _generator
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if isinstance(seed_or_rng, bool) or not isinstance(seed_or_rng, (int, np.integer)):
        raise TypeError(
            f"seed must be an int, a numpy.random.Generator or None, got {type(seed_or_rng).__name__}"
        )
    return np.random.default_rng(int(seed_or_rng))
