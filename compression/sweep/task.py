"""What every grid point needs: the data, the trained baseline, and one training recipe.

A :class:`SweepTask` is small (names, numbers and a file path), so it can be
sent to a worker process; each process loads the data itself, once
(:func:`load_split` is cached), and reads the baseline from its file.

The recipe (:func:`train_recipe`) is the one that takes LeNet-300-100 to
about 97% held-out accuracy on the embedded subset (``python -m tinynet``):

* SGD with Nesterov momentum 0.9, learning rate 0.05, weight decay 5e-4
  (``torch.optim.SGD(..., nesterov=True)``);
* a cosine schedule over the epochs (``CosineAnnealingLR(T_max=epochs)``);
* mini-batches of 128, reshuffled every epoch;
* +-1 pixel random shifts of every training image (augmentation: 7,200
  images are few, and without it the same recipe stays near 94.5%).

The protocol: train on the train part minus its validation slice (a tenth,
the same for every seed), report on held-out, tune nothing on held-out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

import tinynet
from tinynet.callbacks import History
from tinynet.data import DataLoader, load_fashion_mnist, load_mnist, load_mnist_mini, random_shift
from tinynet.models import MODELS
from tinynet.module import Module

#: ``--dataset`` names and what ``MNISTData.name`` calls them (used to label plots).
DATASETS = {"mini": "mnist-mini", "mnist": "mnist", "fashion-mnist": "fashion-mnist"}

#: The baseline recipe, written down once (the report and the sidecar quote it).
RECIPE = {
    "optimizer": "SGD",
    "lr": 0.05,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "cosine over the epochs",
    "batch_size": 128,
    "augmentation": "random shifts of +-1 pixel",
}


class Split(NamedTuple):
    """The protocol's parts of one dataset, as float32 images and int64 labels."""

    name: str  # "mnist-mini", "mnist", "fashion-mnist"
    x_train: np.ndarray  # train part minus the validation slice
    y_train: np.ndarray
    x_val: np.ndarray  # validation slice: for choices
    y_val: np.ndarray
    x_heldout: np.ndarray  # where results are reported
    y_heldout: np.ndarray
    x_test: np.ndarray | None  # official t10k split, when present
    y_test: np.ndarray | None


@functools.lru_cache(maxsize=2)
def load_split(dataset: str, data_root: str | None = None, train_size: int | None = None) -> Split:
    """Load ``dataset`` and cut the validation slice off its train part (cached per process).

    Parameters
    ----------
    dataset : {"mini", "mnist", "fashion-mnist"}
        ``mini`` is the embedded subset; the others read the official IDX
        files from ``data_root`` (or tinynet's cache, downloading if needed).
    data_root : str, optional
    train_size : int, optional
        Keep only the first ``train_size`` training images (quick runs).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if dataset == "mini":
        data = load_mnist_mini()
    elif dataset == "mnist":
        data = load_mnist(root=data_root)
    else:
        data = load_fashion_mnist(root=data_root)
    x_tr, y_tr, x_val, y_val = data.validation_split(seed=0)
    if train_size is not None:
        if not 1 <= train_size <= len(x_tr):
            raise ValueError(f"train_size must be in 1..{len(x_tr)}, got {train_size}")
        x_tr, y_tr = x_tr[:train_size], y_tr[:train_size]
    return Split(
        data.name,
        x_tr,
        y_tr,
        x_val,
        y_val,
        data.x_heldout,
        data.y_heldout,
        data.x_test,
        data.y_test,
    )


def build_model(factory: Callable[[], Module], seed: int) -> Module:
    """``factory()`` with tinynet's default initialisation seeded by ``seed``.

    ``tinynet.manual_seed(seed)`` then build: the same seed gives the same
    initial weights in any process. (Threads share the generator: see
    ``runner.TINYNET_STATE_LOCK``.)
    """
    tinynet.manual_seed(seed)
    return factory()


def _shift_by_one_pixel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return random_shift(x, max_shift=1, rng=rng)


def train_recipe(
    model: Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
    loss_fn: Any = None,
    wrap_batches: Callable[[Any], Any] | None = None,
) -> History:
    """Train ``model`` in place with the baseline :data:`RECIPE`; return the history.

    Shuffling and shifts draw from ``seed``; the model's initialisation is
    the caller's (see :func:`build_model`). ``loss_fn`` replaces the
    cross-entropy and ``wrap_batches(loader)`` the batches (distillation
    passes ``KDLoss`` and ``TeacherBatches``: everything else stays the recipe).
    """
    optimizer = tinynet.SGD(
        model.parameters(),
        lr=RECIPE["lr"],
        momentum=RECIPE["momentum"],
        nesterov=RECIPE["nesterov"],
        weight_decay=RECIPE["weight_decay"],
    )
    scheduler = tinynet.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    batches = DataLoader(
        x,
        y,
        batch_size=RECIPE["batch_size"],
        shuffle=True,
        seed=seed,
        transform=_shift_by_one_pixel,
    )
    return tinynet.fit(
        model,
        batches if wrap_batches is None else wrap_batches(batches),
        tinynet.CrossEntropyLoss() if loss_fn is None else loss_fn,
        optimizer,
        epochs=epochs,
        val=val,
        scheduler=scheduler,
        seed=seed,
        progress=progress,
    )


@dataclass(frozen=True)
class SweepTask:
    """Everything a grid point needs, by name: picklable and cheap to send to a worker.

    Attributes
    ----------
    dataset : {"mini", "mnist", "fashion-mnist"}
    model : str
        A key of ``tinynet.models.MODELS`` (``"lenet_300_100"``...): the baseline's architecture.
    epochs : int
        Training epochs for anything trained from scratch (and for fine-tuning budgets).
    baseline_path : str, optional
        ``tinynet.save`` file of the trained baseline.
    data_root : str, optional
        Folder of the IDX files for ``mnist`` / ``fashion-mnist``.
    train_size : int, optional
        Train on the first ``train_size`` images only (quick runs).
    artifact_dir : str, optional
        Keep every point's compressed file in this folder.
    """

    dataset: str = "mini"
    model: str = "lenet_300_100"
    epochs: int = 20
    baseline_path: str | None = None
    data_root: str | None = None
    train_size: int | None = None
    artifact_dir: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {self.model!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")

    @property
    def dataset_name(self) -> str:
        """``MNISTData.name`` of the dataset (``"mnist-mini"`` for ``"mini"``)."""
        return DATASETS[self.dataset]

    def data(self) -> Split:
        """The dataset's protocol split (loaded once per process)."""
        return load_split(self.dataset, self.data_root, self.train_size)

    def baseline(self) -> Module:
        """A fresh copy of the trained baseline, read from ``baseline_path``."""
        if self.baseline_path is None:
            raise ValueError("this SweepTask has no baseline_path: train and save a baseline first")
        model = build_model(MODELS[self.model], 0)  # its weights are replaced just below
        model.load_state_dict(tinynet.load(self.baseline_path))
        return model.eval()

    def train(self, model: Module, seed: int, epochs: int | None = None, **kwargs: Any) -> History:
        """Train ``model`` on this task's training images with :func:`train_recipe`."""
        data = self.data()
        epochs = self.epochs if epochs is None else epochs
        return train_recipe(model, data.x_train, data.y_train, epochs, seed, **kwargs)
