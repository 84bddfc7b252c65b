"""Weight transfer: a student that starts as a thinned, pruned copy of its teacher.

A student need not start from random weights. Keep the teacher's most
important hidden units (structured pruning,
:func:`compression.pruning.prune_units`), remove the others for real
(:func:`compression.pruning.thin`), and the result is a smaller network of
the student's shape that already computes something close to the teacher:
exactly what the teacher computes with the removed units' outputs set to
zero. Distillation then only has to repair the damage.

Shapes, for Hinton et al.'s teacher 784-1200-1200-10 and a 784-800-800-10
student (``k1``, ``k2``: boolean vectors of the 800 kept units of each
hidden layer, the 800 of largest L1 weight-row norm)::

    teacher                     student
    1.weight (1200, 784)   ->   W1[k1, :]      (800, 784)     1.bias  b1[k1]  (800,)
    3.weight (1200, 1200)  ->   W2[k2][:, k1]  (800, 800)     3.bias  b2[k2]  (800,)
    5.weight (10, 1200)    ->   W3[:, k2]      (10, 800)      5.bias  b3      (10,)

The output classes are never removed. Convolutions work the same way with
filters as units (see :mod:`compression.pruning.thinning`).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from compression.pruning.structured import flat_layers, prune_units, unit_layer_names
from compression.pruning.thinning import thin
from tinynet.module import Module, Sequential

__all__ = ["hidden_widths", "masked_copy", "student_from_teacher", "target_widths"]

#: ``score`` names and the norm ``p`` of ``prune_units`` they select.
NORMS = {"l1": 1, "l2": 2}


def hidden_widths(model: Module) -> dict[str, int]:
    """Units of every ``Linear``/``Conv2d`` but the last, by layer name.

    >>> from tinynet.models import mlp
    >>> hidden_widths(mlp((784, 1200, 1200, 10)))
    {'1': 1200, '3': 1200}
    """
    layers = flat_layers(model)
    return {name: int(layers[int(name)].weight.shape[0]) for name in unit_layer_names(model)[:-1]}


def target_widths(
    model: Module, widths: Sequence[int] | Mapping[str, int] | float
) -> dict[str, int]:
    """The student's width of each hidden layer; a ``ValueError`` says what is wrong.

    ``widths`` is a sequence (one width per hidden layer, in order), a dict
    ``{layer name: width}`` (layers not named keep every unit), or a float
    in (0, 1]: the fraction of every hidden layer's units to keep
    (``max(1, round(fraction * units))``).
    """
    teacher = hidden_widths(model)
    if not teacher:
        raise ValueError("the teacher has no hidden Linear/Conv2d layer whose units could be kept")
    if isinstance(widths, numbers.Real) and not isinstance(widths, (bool, np.bool_)):
        if not 0.0 < widths <= 1.0:
            raise ValueError(f"a keep fraction must lie in (0, 1], got {widths}")
        return {name: max(1, round(widths * n)) for name, n in teacher.items()}
    if isinstance(widths, Mapping):
        unknown = [name for name in widths if name not in teacher]
        if unknown:
            raise ValueError(f"widths names layers {unknown}; the hidden layers are {teacher}")
        wanted = {**teacher, **{str(name): w for name, w in widths.items()}}
    elif isinstance(widths, Sequence) and not isinstance(widths, str):
        if len(widths) != len(teacher):
            raise ValueError(
                f"widths lists {len(widths)} width(s) for the teacher's {len(teacher)} hidden "
                f"layer(s) {teacher}"
            )
        wanted = dict(zip(teacher, widths))
    else:
        raise TypeError(
            "widths must be a sequence of ints, a dict {layer name: int} or a keep fraction, "
            f"got {type(widths).__name__}"
        )
    for name, w in wanted.items():
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Integral):
            raise TypeError(f"widths[{name!r}] must be an int, got {w!r}")
        if not 1 <= w <= teacher[name]:
            raise ValueError(
                f"widths[{name!r}] must be in 1..{teacher[name]} (the teacher's units), got {w}"
            )
    return {name: int(w) for name, w in wanted.items()}


def masked_copy(
    teacher: Module,
    widths: Sequence[int] | Mapping[str, int] | float,
    score: str | Mapping[str, np.ndarray] = "l1",
) -> tuple[Sequential, dict[str, np.ndarray]]:
    """A copy of ``teacher`` with its least important hidden units masked to zero.

    The reference the thinned student must agree with: same shapes as the
    teacher, the removed units' weight rows, biases (and BatchNorm ``gamma``,
    ``beta``) held at zero by ``Mask`` transforms.

    Parameters
    ----------
    teacher : Sequential
        Flat, as the model zoo's networks; left untouched.
    widths : sequence of int, dict of layer name -> int, or float
        Units to keep per hidden layer (see :func:`target_widths`).
    score : {"l1", "l2"} or dict of layer name -> ndarray (units,)
        Importance of a unit: the L1 or L2 norm of its weight row (filter),
        or scores of your own (activations, Taylor; from
        :mod:`compression.pruning.scores`).

    Returns
    -------
    masked : Sequential
    keep : dict of layer name -> ndarray of bool (units,)
        The kept units of each hidden layer.
    """
    wanted = target_widths(teacher, widths)
    units = hidden_widths(teacher)
    sparsity = {name: (units[name] - w) / units[name] for name, w in wanted.items()}
    masked = copy.deepcopy(teacher)
    for module in masked.modules():
        module.cache = None
    if isinstance(score, Mapping):
        keep = prune_units(masked, sparsity, scores=score)
    elif score in NORMS:
        keep = prune_units(masked, sparsity, p=NORMS[score])
    else:
        raise ValueError(f"score must be one of {sorted(NORMS)} or a dict of scores, got {score!r}")
    for name, w in wanted.items():
        if int(keep[name].sum()) != w:  # only if the teacher came with units already removed
            raise ValueError(
                f"layer {name!r} keeps {int(keep[name].sum())} units, not {w}: the teacher "
                "already had units masked to zero"
            )
    return masked, keep


def student_from_teacher(
    teacher: Module,
    widths: Sequence[int] | Mapping[str, int] | float,
    score: str | Mapping[str, np.ndarray] = "l1",
) -> Sequential:
    """A smaller student initialised from the teacher: its most important hidden units, thinned.

    ``thin(masked_copy(teacher, widths, score))``: a new dense ``Sequential``
    whose hidden layers have ``widths`` units, holding the teacher's weights
    of the kept units (see the module docstring for the shapes). Its outputs
    equal the masked teacher's up to float rounding. The teacher is not changed.

    Parameters
    ----------
    teacher : Sequential
    widths : sequence of int, dict of layer name -> int, or float in (0, 1]
        Per hidden layer: the number of units to keep (between 1 and the
        teacher's), or the same fraction of every layer's units.
    score : {"l1", "l2"} or dict of layer name -> ndarray (units,)
        How units are ranked (default the L1 norm of the weight row,
        PyTorch ``prune.ln_structured(n=1, dim=0)``).

    Returns
    -------
    Sequential
        Same layer indices as the teacher (``state_dict`` keys keep their names).

    Examples
    --------
    >>> import tinynet
    >>> from tinynet.models import mlp
    >>> _ = tinynet.manual_seed(0)
    >>> student = student_from_teacher(mlp((784, 1200, 1200, 10)), [800, 800])
    >>> [tuple(p.shape) for p in student.parameters()][::2]
    [(800, 784), (800, 800), (10, 800)]
    """
    masked, keep = masked_copy(teacher, widths, score)
    return thin(masked, keep)
