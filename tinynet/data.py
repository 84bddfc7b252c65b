"""Datasets, the measurement protocol, and mini-batches.

The measurement protocol (DESIGN.md "Data and the measurement protocol")
------------------------------------------------------------------------
The official MNIST *training* split (60,000 images) is divided once, by a
seeded, stratified split (:func:`protocol_split`), into

- **train** (50,000): what models learn from. Tuning and early stopping use
  its validation slice, the last 5,000 after a seeded shuffle
  (:meth:`MNISTData.validation_split`);
- **held-out** (10,000): where results are reported.

The official test split (t10k), when present, is kept apart as ``x_test``
and reported as "official test accuracy".

Where the data comes from
-------------------------
- :func:`load_mnist_mini`: 8,000 train + 2,000 held-out images shipped inside
  the package (``tinynet/datasets/mnist_mini.npz``); offline, used by tests,
  CI and the notebooks.
- :func:`load_mnist`, :func:`load_fashion_mnist`: the official IDX files,
  from a folder or downloaded once into a cache (see :mod:`tinynet.download`
  and :mod:`tinynet.idx`).

All three return an :class:`MNISTData`. Then :class:`DataLoader` (or the
plain generator :func:`batches`) cuts arrays into mini-batches, and
:func:`random_shift` jitters images by a few pixels for augmentation (both
in :mod:`tinynet.loader`, re-exported here).

Randomness never depends on NumPy's version: a random permutation is made
as ``argsort`` of uniform random keys (``Generator.random`` is a fixed
formula of the PCG64 stream), with a stable sort.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinynet.download import DownloadError, cache_dir, fetch_idx_files
from tinynet.loader import (  # noqa: F401  (re-exported: tinynet.data.DataLoader ...)
    DataLoader,
    _permutation,
    batches,
    random_shift,
    shift_images,
)

#: Mean and standard deviation of MNIST training pixels scaled to [0, 1]
#: (the usual constants of ``torchvision.transforms.Normalize((0.1307,), (0.3081,))``).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: The same for Fashion-MNIST.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST_ATTRIBUTION = (
    "MNIST database of handwritten digits by Yann LeCun, Corinna Cortes and "
    "Christopher J.C. Burges (http://yann.lecun.com/exdb/mnist/), licensed under "
    "CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/)."
)
FASHION_MNIST_ATTRIBUTION = (
    "Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf, Zalando Research "
    "(https://github.com/zalandoresearch/fashion-mnist), MIT licence."
)

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MINI_FILE = "mnist_mini.npz"
MINI_KEYS = ("x_train", "y_train", "x_heldout", "y_heldout", "attribution")


# --------------------------------------------------------------------------- splits


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}"
        )
    return labels


def stratified_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Pick ``n`` indices at random so that every class keeps its proportion.

    Class ``c`` with ``n_c`` of the ``N`` labels gets ``n * n_c / N`` picks,
    rounded by the largest-remainder method: every class gets the floor of its
    quota, and the classes with the largest fractional parts (ties: the smaller
    label) get one more, so the counts add up to exactly ``n`` and each is
    within one image of its exact share. Within a class, the picks are the
    samples with the smallest random keys.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n : int
        How many to pick, ``0 <= n <= N``.
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    ndarray of int64, shape (n,)
        Sorted indices into ``labels``.
    """
    labels = _check_labels(labels)
    N = labels.size
    if not 0 <= n <= N:
        raise ValueError(f"n must be in 0..{N} (the number of labels), got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts // N  # integer arithmetic: exact
    remainder = n * counts - quota * N
    quota[np.argsort(-remainder, kind="stable")[: n - quota.sum()]] += 1
    keys = np.random.default_rng(seed).random(N)
    picked = []
    for c, k in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        picked.append(members[np.argsort(keys[members], kind="stable")[:k]])
    return np.sort(np.concatenate(picked))


def protocol_split(
    labels: np.ndarray, n_heldout: int = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split the official training split into train and held-out, stratified and seeded.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        Labels of the official training split (N = 60,000 for MNIST).
    n_heldout : int
        Size of the held-out part (10,000 by the protocol).
    seed : int
        The protocol uses 0.

    Returns
    -------
    train_idx : ndarray of int64, shape (N - n_heldout,)
    heldout_idx : ndarray of int64, shape (n_heldout,)
        Sorted, disjoint, together ``range(N)``; each class's share of the
        held-out part is within one image of ``n_heldout * n_c / N``.
    """
    labels = _check_labels(labels)
    if not 0 < n_heldout < labels.size:
        raise ValueError(f"n_heldout must be in 1..{labels.size - 1}, got {n_heldout}")
    heldout_idx = stratified_sample(labels, n_heldout, seed)
    in_train = np.ones(labels.size, dtype=bool)
    in_train[heldout_idx] = False
    return np.flatnonzero(in_train), heldout_idx


def validation_split(
    x: np.ndarray, y: np.ndarray, n_val: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut a validation slice off a training set: the last ``n_val`` after a seeded shuffle.

    Both parts keep the samples in their original order.

    Returns
    -------
    x_tr, y_tr, x_val, y_val : ndarray
        ``len(x) - n_val`` and ``n_val`` samples.
    """
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {n}")
    if not 0 < n_val < n:
        raise ValueError(f"n_val must be in 1..{n - 1}, got {n_val}")
    order = _permutation(np.random.default_rng(seed), n)
    tr, val = np.sort(order[: n - n_val]), np.sort(order[n - n_val :])
    return x[tr], y[tr], x[val], y[val]


# --------------------------------------------------------------------------- datasets


def to_float32(
    images: np.ndarray, normalize: bool = True, mean: float = MNIST_MEAN, std: float = MNIST_STD
) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 (N, 1, H, W), as ``ToTensor`` + ``Normalize``.

    ``x = images / 255``; with ``normalize``, ``x = (x - mean) / std``, all in
    float32 (the same operations, so the same numbers, as torchvision).
    """
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    x = images.astype(np.float32)[:, None, :, :]  # add the channel axis: NCHW
    x /= np.float32(255.0)
    if normalize:
        x -= np.float32(mean)
        x /= np.float32(std)
    return x


@dataclass(repr=False)
class MNISTData:
    """What every loader returns: the protocol's splits of one dataset.

    Attributes
    ----------
    x_train, y_train : ndarray, float32 (N, 1, 28, 28) and int64 (N,)
        Train part of the protocol (50,000 for full MNIST, 8,000 for the mini set).
    x_heldout, y_heldout : ndarray
        Held-out part: where results are reported (10,000, or 2,000).
    x_test, y_test : ndarray or None
        The official test split (t10k), or None when it is not available.
    name : str
        ``"mnist"``, ``"mnist-mini"`` or ``"fashion-mnist"``.
    classes : tuple of str
        Class names, indexed by label.
    attribution : str
        Credit and licence of the data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = "mnist"
    classes: tuple[str, ...] = MNIST_CLASSES
    attribution: str = MNIST_ATTRIBUTION

    def validation_split(
        self, n_val: int | None = None, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_tr, y_tr, x_val, y_val)`` from train; ``n_val`` defaults to a tenth of train.

        That is 5,000 for full MNIST and 800 for the mini set (see :func:`validation_split`).
        """
        n_val = len(self.y_train) // 10 if n_val is None else n_val
        return validation_split(self.x_train, self.y_train, n_val, seed)

    def __repr__(self) -> str:
        test = "None" if self.x_test is None else str(self.x_test.shape)
        return (
            f"MNISTData(name={self.name!r}, x_train={self.x_train.shape}, "
            f"x_heldout={self.x_heldout.shape}, x_test={test}, dtype={self.x_train.dtype})"
        )


@functools.lru_cache(maxsize=1)
def _read_mini() -> dict[str, np.ndarray]:
    """The uint8 arrays of ``mnist_mini.npz``, read once per process (read-only)."""
    resource = importlib.resources.files("tinynet.datasets") / MINI_FILE
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        missing = [k for k in MINI_KEYS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{MINI_FILE}: missing arrays {missing}; rebuild it with scripts/build_mnist_mini.py"
            )
        arrays = {k: npz[k] for k in MINI_KEYS}
    for a in arrays.values():
        a.flags.writeable = False  # shared between calls: nobody may change them
    return arrays


def load_mnist_mini(normalize: bool = True) -> MNISTData:
    """The embedded MNIST subset: 8,000 train and 2,000 held-out images, offline.

    Read from ``tinynet/datasets/mnist_mini.npz`` (``np.load`` with
    ``allow_pickle=False``), built by ``scripts/build_mnist_mini.py`` as
    stratified, seeded samples of the protocol's train and held-out parts.
    See ``tinynet/datasets/README.md`` for its licence (CC BY-SA 3.0).

    Parameters
    ----------
    normalize : bool
        True: ``(x / 255 - 0.1307) / 0.3081``; False: ``x / 255``.

    Returns
    -------
    MNISTData
        ``x_train`` (8000, 1, 28, 28) float32, ``y_train`` (8000,) int64,
        ``x_heldout`` (2000, 1, 28, 28), ``y_heldout`` (2000,), ``x_test`` None.
    """
    arrays = _read_mini()
    return MNISTData(
        x_train=to_float32(arrays["x_train"], normalize),
        y_train=arrays["y_train"].astype(np.int64),
        x_heldout=to_float32(arrays["x_heldout"], normalize),
        y_heldout=arrays["y_heldout"].astype(np.int64),
        name="mnist-mini",
        attribution=str(arrays["attribution"]),
    )


#: What differs between the two official datasets: pixel statistics, class names, credit.
_OFFICIAL = {
    "mnist": ((MNIST_MEAN, MNIST_STD), MNIST_CLASSES, MNIST_ATTRIBUTION),
    "fashion-mnist": (
        (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_ATTRIBUTION,
    ),
}


def _load_official(
    dataset: str,
    loader: str,
    root: str | os.PathLike | None,
    download: bool,
    normalize: bool,
    n_heldout: int,
    **fetch_kwargs,
) -> MNISTData:
    """Fetch the IDX files, apply the protocol split, convert to float32."""
    (mean, std), classes, attribution = _OFFICIAL[dataset]
    folder = cache_dir(dataset) if root is None else Path(root).expanduser()
    kwargs = dict(download=download, loader=loader, **fetch_kwargs)
    train = fetch_idx_files(dataset, TRAIN_FILES, folder, **kwargs)
    images, labels = (train[name] for name in TRAIN_FILES)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} training images but {len(labels)} labels")
    x_test = y_test = None
    try:  # the official test split is optional
        test = fetch_idx_files(dataset, TEST_FILES, folder, **kwargs)
        x_test = to_float32(test[TEST_FILES[0]], normalize, mean, std)
        y_test = test[TEST_FILES[1]].astype(np.int64)
    except (FileNotFoundError, DownloadError) as err:
        warnings.warn(
            f"{dataset}: the official test split (t10k) is unavailable, so x_test is None.\n{err}",
            stacklevel=3,
        )
    train_idx, heldout_idx = protocol_split(labels, n_heldout, seed=0)
    return MNISTData(
        x_train=to_float32(images[train_idx], normalize, mean, std),
        y_train=labels[train_idx].astype(np.int64),
        x_heldout=to_float32(images[heldout_idx], normalize, mean, std),
        y_heldout=labels[heldout_idx].astype(np.int64),
        x_test=x_test,
        y_test=y_test,
        name=dataset,
        classes=classes,
        attribution=attribution,
    )


def load_mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    normalize: bool = True,
    *,
    n_heldout: int = 10_000,
    **fetch_kwargs,
) -> MNISTData:
    """Full MNIST from the official IDX files, split by the protocol.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Folder holding the IDX files (``train-images-idx3-ubyte`` etc., gzipped
        or not, with or without ``.gz``). Default: the cache
        ``$TINYNET_DATA/mnist`` or ``~/.cache/tinynet/mnist``.
    download : bool
        Download missing files from the mirrors in ``tinynet.download.MIRRORS``
        into ``root`` (or the cache).
    normalize : bool
        True: ``(x / 255 - 0.1307) / 0.3081``; False: ``x / 255``.
    n_heldout : int
        Size of the held-out part (10,000 by the protocol).
    **fetch_kwargs
        ``mirrors=``, ``files=``, ``timeout=``, ``verbose=``: see
        :func:`tinynet.download.fetch_idx_files`.

    Returns
    -------
    MNISTData
        train (50,000) and held-out (10,000) from the official training
        split; ``x_test`` the official t10k split, or None (with a warning)
        when it can be neither found nor downloaded.

    Raises
    ------
    FileNotFoundError, tinynet.download.DownloadError
        The training files are missing (the message says what to download,
        from where, and into which folder).
    ValueError
        A file fails its checksum or is not valid IDX.
    """
    args = (root, download, normalize, n_heldout)
    return _load_official("mnist", "load_mnist", *args, **fetch_kwargs)


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    download: bool = True,
    normalize: bool = True,
    *,
    n_heldout: int = 10_000,
    **fetch_kwargs,
) -> MNISTData:
    """Fashion-MNIST (Xiao et al. 2017): same files, format and protocol as :func:`load_mnist`.

    The cache folder is ``fashion-mnist``; normalisation uses Fashion-MNIST's
    own statistics, ``(x / 255 - 0.2860) / 0.3530``.
    """
    args = (root, download, normalize, n_heldout)
    return _load_official("fashion-mnist", "load_fashion_mnist", *args, **fetch_kwargs)
