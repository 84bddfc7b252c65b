"""Mini-batches and data augmentation.

:class:`DataLoader` (or the plain generator :func:`batches`) cuts arrays into
mini-batches, reshuffled every epoch from a seed, with no Python loop over
samples: one fancy index per batch. :func:`random_shift` jitters images by a
few pixels, the augmentation Hinton et al. (2015) used for their teacher.

Randomness never depends on NumPy's version: a random permutation is made as
``argsort`` of uniform random keys, with a stable sort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from tinynet.random import as_rng, get_rng


def _permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random permutation of ``range(n)``: the stable argsort of ``n`` uniform keys."""
    return np.argsort(rng.random(n), kind="stable")


# --------------------------------------------------------------------------- mini-batches


def _check_arrays(arrays: tuple[np.ndarray, ...], batch_size: int) -> int:
    """Return the common length of ``arrays``; check ``batch_size``."""
    if not arrays:
        raise ValueError("give at least one array, e.g. batches(x, y)")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"all arrays must have the same length (axis 0), got {lengths}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return lengths[0]


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)  # ceil(n / batch_size)


def _iterate(arrays, batch_size, order, drop_last) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield tuples of batches; ``order`` is a permutation, or None for slices (views)."""
    n = len(arrays[0])
    for b in range(_num_batches(n, batch_size, drop_last)):
        start, stop = b * batch_size, min((b + 1) * batch_size, n)
        idx = slice(start, stop) if order is None else order[start:stop]
        yield tuple(a[idx] for a in arrays)  # one fancy index per array per batch


def batches(
    *arrays: np.ndarray,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int | np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Cut arrays into mini-batches along axis 0, together.

    ``for xb, yb in batches(x, y, batch_size=64, shuffle=True, seed=0): ...``

    Parameters
    ----------
    *arrays : ndarray
        Same length N along axis 0, e.g. ``x`` (N, 1, 28, 28) and ``y`` (N,).
    batch_size : int
    shuffle : bool
        Visit the samples in a random order (one permutation per call).
    seed : int, Generator or None
        For the shuffle; None draws from the global generator (``tinynet.manual_seed``).
    drop_last : bool
        Skip the last batch if it is smaller than ``batch_size``.

    Yields
    ------
    tuple of ndarray
        One batch of each array (views when ``shuffle`` is False).
    """
    _check_arrays(arrays, batch_size)
    order = _permutation(as_rng(seed), len(arrays[0])) if shuffle else None
    yield from _iterate(arrays, batch_size, order, drop_last)


class DataLoader:
    """A re-iterable source of mini-batches: one ``for`` loop over it is one epoch.

    Like ``torch.utils.data.DataLoader(TensorDataset(x, y), batch_size, shuffle)``,
    but deterministic: epoch ``e`` draws everything (its order, and the
    ``rng`` given to ``transform``) from ``np.random.default_rng([seed, e])``,
    so two loaders with the same seed give identical sequences of batches.

    Parameters
    ----------
    *arrays : ndarray
        Same length N along axis 0.
    batch_size : int
    shuffle : bool
        Reshuffle at every epoch.
    seed : int or None
        Base seed; None draws one from the global generator (``tinynet.manual_seed``).
    drop_last : bool
        Skip the last, smaller batch.
    transform : callable, optional
        ``transform(x_batch, rng) -> x_batch``, called as
        ``transform(x_batch, rng=rng)`` on the first array of each batch
        (augmentation, e.g. :func:`random_shift`, or
        ``functools.partial(random_shift, max_shift=1)``).

    Examples
    --------
    >>> loader = DataLoader(x, y, batch_size=64, seed=0, transform=random_shift)  # doctest: +SKIP
    >>> len(loader)          # batches per epoch                                  # doctest: +SKIP
    >>> for xb, yb in loader: ...                                                 # doctest: +SKIP
    """

    def __init__(
        self,
        *arrays: np.ndarray,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int | None = 0,
        drop_last: bool = False,
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ) -> None:
        self.n = _check_arrays(arrays, batch_size)
        if seed is None:
            seed = int(get_rng().integers(2**32))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.arrays = arrays
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, int(seed)
        self.drop_last, self.transform = drop_last, transform
        self.epoch = 0  # the epoch the next iteration will be

    def __len__(self) -> int:
        return _num_batches(self.n, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (to resume a run)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = _permutation(rng, self.n) if self.shuffle else None
        for batch in _iterate(self.arrays, self.batch_size, order, self.drop_last):
            if self.transform is not None:
                batch = (self.transform(batch[0], rng=rng), *batch[1:])
            yield batch

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={self.n}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, batches={len(self)})"
        )


# --------------------------------------------------------------------------- augmentation


def shift_images(
    x: np.ndarray, dy: np.ndarray, dx: np.ndarray, fill: float | None = None
) -> np.ndarray:
    """Translate each image by its own whole number of pixels.

    ``out[n, ..., i, j] = x[n, ..., i - dy[n], j - dx[n]]`` where that pixel
    exists, else ``fill``: positive ``dy`` moves the content down, positive
    ``dx`` to the right.

    Parameters
    ----------
    x : ndarray, shape (N, ..., H, W)
    dy, dx : ndarray of int, shape (N,)
    fill : float, optional
        Value of uncovered pixels; default ``x.min()`` (the background: 0
        before normalisation).

    Returns
    -------
    ndarray, shape and dtype of ``x``
    """
    dy, dx = np.asarray(dy), np.asarray(dx)
    H, W = x.shape[-2:]
    out = np.full_like(x, x.min() if fill is None else fill)
    # one vectorised copy per distinct (dy, dx) pair, not per image
    for sy, sx in sorted(set(zip(dy.tolist(), dx.tolist()))):
        if abs(sy) >= H or abs(sx) >= W:
            continue  # shifted entirely out of the frame
        sel = np.flatnonzero((dy == sy) & (dx == sx))
        dst_r, src_r = slice(max(sy, 0), H + min(sy, 0)), slice(max(-sy, 0), H - max(sy, 0))
        dst_c, src_c = slice(max(sx, 0), W + min(sx, 0)), slice(max(-sx, 0), W - max(sx, 0))
        out[sel, ..., dst_r, dst_c] = x[sel, ..., src_r, src_c]
    return out


def random_shift(
    x: np.ndarray,
    max_shift: int = 2,
    rng: int | np.random.Generator | None = None,
    fill: float | None = None,
) -> np.ndarray:
    """Input jitter: shift each image by independent integers ``dy, dx`` in ``[-max_shift, max_shift]``.

    Hinton, Vinyals and Dean (2015) trained their MNIST teacher on images
    jittered by up to 2 pixels. Uncovered pixels take the background value
    ``x.min()``. Usable directly as ``DataLoader(..., transform=random_shift)``.

    Parameters
    ----------
    x : ndarray, shape (N, ..., H, W)
    max_shift : int
    rng : int, Generator or None
        None draws from the global generator (``tinynet.manual_seed``).
    fill : float, optional
        Value of uncovered pixels; default ``x.min()`` (the background).

    Returns
    -------
    ndarray, shape and dtype of ``x``
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)):
        raise TypeError(f"max_shift must be an int, got {type(max_shift).__name__}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if x.ndim < 3:
        raise ValueError(f"random_shift expects images of shape (N, ..., H, W), got {x.shape}")
    shifts = as_rng(rng).integers(-max_shift, max_shift + 1, size=(2, len(x)))
    return shift_images(x, shifts[0], shifts[1], fill)
