r"""Hint training (FitNets, Romero et al. 2015): a student's hidden layer learns the teacher's.

Knowledge distillation (:mod:`compression.distillation.kd`) only looks at
the outputs. FitNets also give the student a *hint*: the teacher's hidden
features ``u(x)`` at one layer (the *hint layer*). A student's hidden layer
(the *guided layer*), with features ``v(x)``, usually has a different width,
so a small learned *regressor* ``r`` maps the student's features to the
teacher's shape, and the student's first layers and the regressor are
trained together to minimise (Romero et al., Eq. 3)::

    L_HT = 1/2 || u(x) - r(v(x)) ||^2

**Our normalisation: per-batch mean.** For a batch of N examples, with the
regressor's outputs ``r_n = r(v(x_n))`` and the teacher's features ``u_n``
(each of shape ``(D,)``, or ``(C, H, W)`` for feature maps; the norm runs
over every entry of one example)::

    L = (1/N) sum_n 1/2 || r_n - u_n ||^2

The gradient, by hand: ``d/dr 1/2 ||r - u||^2 = r - u``, and the mean
brings ``1/N``::

    dL/dr_n = (r_n - u_n) / N

From there the regressor's own backward carries on: for a ``Linear``
regressor ``r = v W^T + b`` (``W`` of shape ``(D_teacher, D_student)``),
``dW = dr^T v``, ``db = sum_n dr_n`` and ``dv = dr W``, which flows on into
the student's layers. (A ``Conv2d`` with 1x1 kernels is the same per pixel.)

How it relates to ``MSELoss``: ``tinynet.MSELoss`` (and PyTorch's
``F.mse_loss``, ``reduction="mean"``) divides by the number of *entries*
``N * D`` and has no 1/2, so ``MSELoss = (2 / D) * HintLoss``. The two
differ only by a constant, but the constant multiplies the gradient, so it
matters for the learning rate; :class:`HintLoss` keeps the paper's
per-example ``1/2 ||.||^2`` and averages over the batch like every loss
here (``F.mse_loss(r, u, reduction="sum") / (2 * N)`` in PyTorch).

**Two stages, one training loop.** FitNets train a thin student in two stages:

1. *Hints.* Train the student's layers up to the guided layer, and the
   regressor, on ``L`` (:func:`fitnets_stage1`). This is plain
   ``tinynet.fit`` on the model :func:`hint_model` builds, which *shares*
   the student's first layers (so training it trains the student), with
   batches ``(x, u(x))`` from :class:`HintBatches` and the loss
   :class:`HintLoss`.
2. *Knowledge distillation.* Throw the regressor away and train the whole
   student, now starting from the hinted weights, with
   :class:`~compression.distillation.KDLoss` and
   :class:`~compression.distillation.TeacherBatches`.

Layers are named by their index in a flat ``Sequential`` (``"2"``, as in
``state_dict`` keys ``"2.weight"``); the model zoo's networks are all flat.
Why cut the student instead of reading its hidden layer with a forward hook
(``register_forward_hook``)? With the cut, the hint model's *output* is what
the loss compares, so ``fit``'s contract (``loss = crit(model(x), u)``,
``model.backward(crit.backward())``) needs nothing new, and the layers after
the guided one take no part in stage 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from tinynet.callbacks import History
from tinynet.data import DataLoader
from tinynet.grad_mode import is_grad_enabled
from tinynet.layers import Conv2d, Linear
from tinynet.losses import Loss
from tinynet.module import Module, Sequential
from tinynet.optim import SGD
from tinynet.train import fit, predict

__all__ = [
    "HintBatches",
    "HintLoss",
    "feature_shape",
    "fitnets_stage1",
    "hint_model",
    "make_regressor",
    "teacher_hints",
    "truncate",
]


# ------------------------------------------------------------ layers by name
def layer_index(model: Module, layer: int | str) -> int:
    """Position of ``layer`` (a name such as ``"2"``, or the int 2) among ``model``'s children.

    Raises a ``ValueError`` listing the layers that do exist.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"hints need a tinynet Sequential, got {type(model).__name__}")
    names = [name for name, _ in model.named_children()]
    if isinstance(layer, bool) or str(layer) not in names:
        listed = ", ".join(
            f"{name} {type(child).__name__}" for name, child in model.named_children()
        )
        raise ValueError(f"layer {layer!r} not found: the model's layers are {listed}")
    return names.index(str(layer))


def truncate(model: Module, upto: int | str) -> Sequential:
    """The first layers of ``model``, up to and including ``upto``, *sharing* their modules.

    ``truncate(model, "2")(x)`` is the output of layer 2 of ``model``
    (PyTorch: ``model[:3]``). The layers are the same objects, not copies:
    training the truncated model trains ``model``.

    Examples
    --------
    >>> from tinynet.models import lenet_300_100
    >>> net = lenet_300_100()
    >>> part = truncate(net, "2")          # Flatten, Linear(784, 300), ReLU
    >>> len(part), part[1] is net[1]
    (3, True)
    """
    part = model[: layer_index(model, upto) + 1]
    part.training = model.training
    return part


def feature_shape(model: Module, layer: int | str, x: np.ndarray) -> tuple[int, ...]:
    """Shape of one example's features at ``layer``: ``(D,)`` or ``(C, H, W)``.

    Runs ``x[:1]`` through the first layers in eval mode, without gradients.
    """
    return tuple(predict(truncate(model, layer), np.asarray(x)[:1]).shape[1:])


def make_regressor(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> Module:
    """The regressor ``r`` mapping the student's features to the teacher's shape.

    Parameters
    ----------
    student_shape, teacher_shape : tuple of int
        One example's features (no batch axis), as :func:`feature_shape`
        gives them: ``(D_s,)`` and ``(D_t,)`` for fully connected layers,
        ``(C_s, H, W)`` and ``(C_t, H, W)`` for feature maps.

    Returns
    -------
    Module
        ``Linear(D_s, D_t)`` for vectors; ``Conv2d(C_s, C_t, kernel_size=1)``
        for feature maps (the same linear map at every pixel: ``C_s * C_t +
        C_t`` parameters instead of a fully connected layer's ``C_s H W *
        C_t H W``). Default PyTorch initialisation, drawn from tinynet's
        global generator (``tinynet.manual_seed``).

    FitNets use a convolutional regressor whose kernel shrinks the student's
    map to the teacher's size; with a 1x1 kernel the spatial sizes must agree.
    """
    s, t = tuple(int(n) for n in student_shape), tuple(int(n) for n in teacher_shape)
    if len(s) == 1 and len(t) == 1:
        return Linear(s[0], t[0])
    if len(s) == 3 and len(t) == 3:
        if s[1:] != t[1:]:
            raise ValueError(
                f"a 1x1 Conv2d regressor keeps the spatial size: expected a teacher map of size "
                f"{s[1:]} like the student's {s}, got {t}"
            )
        return Conv2d(s[0], t[0], kernel_size=1)
    raise ValueError(
        "make_regressor expected two feature vectors (D,) or two feature maps (C, H, W), "
        f"got student {s} and teacher {t}"
    )


def hint_model(student: Module, student_layer: int | str, regressor: Module) -> Sequential:
    """``Sequential(student's layers up to student_layer..., regressor)``: what stage 1 trains.

    Its output is ``r(v(x))``, of the teacher's feature shape. The student's
    layers are shared, so ``tinynet.fit(hint_model(...), ...)`` trains the
    student's guided layers in place (and the regressor with them).
    """
    if not isinstance(regressor, Module):
        raise TypeError(f"regressor must be a tinynet Module, got {type(regressor).__name__}")
    model = Sequential(*truncate(student, student_layer), regressor)
    model.training = student.training
    return model


# ------------------------------------------------------------ teacher features
def teacher_hints(
    teacher: Module, teacher_layer: int | str, x: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """The teacher's features at ``teacher_layer`` for every row of ``x``, shape (N, ...).

    In eval mode (no dropout, BatchNorm's running statistics), under
    ``tinynet.no_grad()``; every module's mode is given back afterwards.
    Cache them for a fixed dataset, like
    :func:`~compression.distillation.teacher_logits`.
    """
    return predict(truncate(teacher, teacher_layer), x, batch_size=batch_size)


class HintBatches:
    """Re-iterable batches ``(x, u(x))`` from batches ``(x, *targets)``: stage 1's data.

    ``u(x)`` is the teacher's output at ``teacher_layer``, computed for each
    batch (so with data augmentation the teacher sees the same shifted
    images as the student) in eval mode without gradients. The labels are
    dropped: the hint loss does not use them.

    Parameters
    ----------
    batches : iterable of tuples
        A ``tinynet.data.DataLoader``, for instance.
    teacher : Sequential
    teacher_layer : int or str
        Name of the hint layer (``"2"``); checked here.
    """

    def __init__(
        self,
        batches: Iterable[tuple[np.ndarray, ...]],
        teacher: Module,
        teacher_layer: int | str,
    ) -> None:
        self.batches = batches
        self.teacher_part = truncate(teacher, teacher_layer)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in self.batches:
            x = batch[0]
            yield x, predict(self.teacher_part, x, batch_size=len(x))


# ------------------------------------------------------------ the loss
class HintLoss(Loss):
    r"""FitNets' hint loss: ``L = (1/N) sum_n 1/2 ||r_n - u_n||^2`` (see the module docstring).

    Follows the loss contract of ``tinynet.fit``: ``loss = crit(r, u)``
    returns a float, ``crit.backward()`` returns ``dL/dr = (r - u) / N``
    with the shape and dtype of ``r``.

    ``outputs``, shape (N, D) or (N, C, H, W), are the regressor's output
    ``r(v(x))``; ``targets``, the same shape, the teacher's features ``u(x)``
    (cast to the outputs' dtype).

    PyTorch: ``F.mse_loss(r, u, reduction="sum") / (2 * N)``.

    Examples
    --------
    One example, ``r - u = (3, 4)``: ``1/2 * (9 + 16) = 12.5``.

    >>> crit = HintLoss()
    >>> crit(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]]))
    12.5
    >>> crit.backward().tolist()
    [[3.0, 4.0]]
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Half the squared distance per example, averaged over the batch."""
        r = np.asarray(outputs)
        u = np.asarray(targets)
        if r.shape != u.shape:
            raise ValueError(
                f"HintLoss expected teacher features of the regressor output's shape {r.shape}, "
                f"got {u.shape}: the regressor must map the student's features to the teacher's"
            )
        if not np.issubdtype(r.dtype, np.floating):
            raise TypeError(f"HintLoss expected floating-point outputs, got dtype {r.dtype}")
        if r.ndim < 2 or r.shape[0] == 0:
            raise ValueError(
                f"HintLoss expected a batch of shape (N, ...) with N >= 1, got {r.shape}"
            )
        diff = r - u.astype(r.dtype, copy=False)
        self.cache = diff if is_grad_enabled() else None
        return float(0.5 * np.sum(diff * diff) / r.shape[0])

    def backward(self) -> np.ndarray:
        """Return ``(r - u) / N``, same shape and dtype as the outputs."""
        if self.cache is None:
            raise self._no_cache_error()
        diff = self.cache
        return diff / diff.dtype.type(diff.shape[0])


# ------------------------------------------------------------ stage 1
def fitnets_stage1(
    student: Module,
    teacher: Module,
    student_layer: int | str,
    teacher_layer: int | str,
    x: np.ndarray,
    epochs: int,
    *,
    lr: float = 1e-3,
    momentum: float = 0.9,
    batch_size: int = 128,
    transform: Callable[..., np.ndarray] | None = None,
    regressor: Module | None = None,
    seed: int = 0,
) -> tuple[Module, History]:
    """FitNets stage 1: train the student up to ``student_layer`` to predict the teacher's hint.

    Builds (unless given) the regressor from the two layers' feature shapes,
    then runs, with ``loader = DataLoader(x, batch_size=batch_size,
    shuffle=True, seed=seed, transform=transform)``::

        fit(hint_model(student, student_layer, regressor),
            HintBatches(loader, teacher, teacher_layer), HintLoss(), SGD(...), epochs)

    The student's layers up to ``student_layer`` change in place; the
    teacher does not. Stage 2 is ordinary distillation of the whole student::

        regressor, history = fitnets_stage1(student, teacher, "2", "2", x, 5)
        loader = DataLoader(x, y, batch_size=128, seed=0)
        fit(student, TeacherBatches(loader, teacher), KDLoss(T=4, alpha=0.9), SGD(...), 20)

    Parameters
    ----------
    student, teacher : Sequential
    student_layer, teacher_layer : int or str
        The guided layer and the hint layer (names such as ``"2"``).
    x : ndarray, shape (N, ...)
        Training inputs. No labels: the hint loss does not use them.
    epochs : int
    lr, momentum : float
        Of the ``SGD`` optimizer over the student's guided layers and the
        regressor. The loss *sums* over the teacher's ``D`` features, so its
        gradient grows with ``D``: keep the rate well below a cross-entropy
        one. (With LeNet-300-100's 300 ReLU features as the hint and 16- or
        32-unit students on the embedded subset, rate 0.01 stalled the hint
        loss and left 4 students of 6 with dead ReLUs, at chance after
        stage 2; 1e-3 and 3e-4 trained.)
    batch_size : int, default 128
    transform : callable, optional
        Data augmentation, as in ``DataLoader`` (``tinynet.data.random_shift``).
    regressor : Module, optional
        Default :func:`make_regressor` of the two feature shapes (drawn from
        tinynet's global generator: call ``tinynet.manual_seed`` first).
    seed : int, default 0
        Seed of the shuffling and the augmentation.

    Returns
    -------
    regressor : Module
        Trained; not needed after stage 1.
    history : History
        ``history["loss"]`` is the hint loss per epoch.
    """
    x = np.asarray(x)
    t_shape = feature_shape(teacher, teacher_layer, x)
    if regressor is None:
        regressor = make_regressor(feature_shape(student, student_layer, x), t_shape)
    model = hint_model(student, student_layer, regressor)
    out_shape = feature_shape(model, len(model) - 1, x)
    if out_shape != t_shape:
        raise ValueError(
            f"the regressor must output the teacher's features: expected {t_shape} per example, "
            f"got {out_shape}"
        )
    loader = DataLoader(x, batch_size=batch_size, shuffle=True, seed=seed, transform=transform)
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum)
    hints = HintBatches(loader, teacher, teacher_layer)
    history = fit(model, hints, HintLoss(), optimizer, epochs, progress=False)
    return regressor, history
