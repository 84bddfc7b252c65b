r"""Activation clipping: ``Clip(c)``, ``ReLU6``, and PACT's learned clipping level.

A ReLU output has no upper bound, so an activation quantizer must cover
whatever the largest output happens to be. A *clipping* activation bounds it::

    y = clip(x, 0, c) = min(max(x, 0), c)

``ReLU6`` (``c = 6``, MobileNet, Howard et al. 2017) is the best-known case:
its range ``[0, 6]`` is known before any data is seen, so a fixed-point
grid can be laid on it at once.

PACT (Choi, Wang, Venkataramani, Chuang, Srinivasan, Gopalakrishnan 2018,
"PACT: Parameterized Clipping Activation for Quantized Neural Networks")
makes the level a trainable parameter ``alpha``, one per layer, and lets
gradient descent choose it: a large ``alpha`` keeps the big activations
(little clipping error) but makes the quantization step ``alpha / (2^k - 1)``
coarse; a small one does the opposite.

Boundary convention (the derivative of ``clip`` is undefined at ``0`` and at
``c``): we follow PyTorch's ``hardtanh``/``relu6``, whose input gradient is
``1[0 < x < c]``, zero *at* both end points (``torch.clamp`` instead
passes the gradient at the end points; the weight transform of
``weights.py`` follows that one).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from compression.quantization.affine import check_bits
from compression.storage.architecture import register_layer_type
from tinynet.grad_mode import is_grad_enabled
from tinynet.layers import ReLU
from tinynet.module import Module, Sequential
from tinynet.parameter import Parameter

__all__ = ["PACT", "Clip", "ReLU6", "pact_alphas", "pact_quantize", "replace_relu_with_pact"]


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"the clipping level {name} must be positive, got {value}")
    return float(value)


class Clip(Module):
    """Clipping activation ``y = clip(x, 0, c)`` (PyTorch ``nn.Hardtanh(0, c)``).

    Backward: ``dx = dout * 1[0 < x < c]`` (zero at both end points, as
    PyTorch's ``hardtanh_backward``).

    Parameters
    ----------
    c : float, default 6.0
        The upper clipping level, positive.

    Shapes: any input shape; output has the same shape. Cache: the boolean
    mask ``0 < x < c``.

    >>> Clip(2.0)(np.array([-1.0, 0.5, 2.0, 3.0]))
    array([0. , 0.5, 2. , 2. ])
    """

    #: For ``compression.quantization.activation_targets``: an activation whose
    #: outputs are never negative (see ``compression.quantization.apply.is_activation``).
    activation_function = True
    nonnegative_output = True

    def __init__(self, c: float = 6.0) -> None:
        super().__init__()
        self.c = _check_positive(c, "c")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``min(max(x, 0), c)`` in ``x``'s dtype."""
        x = np.asarray(x)
        self.cache = ((x > 0) & (x < self.c)) if is_grad_enabled() else None
        return np.clip(x, 0, self.c).astype(x.dtype, copy=False)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Return ``dx = dout * 1[0 < x < c]`` (None when ``requires_input_grad`` is False)."""
        if self.cache is None:
            raise self._no_cache_error()
        if dout.shape != self.cache.shape:
            raise ValueError(
                f"{type(self).__name__}.backward expected dout of shape {self.cache.shape}, "
                f"got {dout.shape}"
            )
        if not self.requires_input_grad:
            return None
        return dout * self.cache

    def extra_repr(self) -> str:
        return f"c={self.c}"


class ReLU6(Clip):
    """``y = min(max(x, 0), 6)``: :class:`Clip` with ``c = 6`` (PyTorch ``nn.ReLU6``)."""

    def __init__(self) -> None:
        super().__init__(6.0)

    def extra_repr(self) -> str:
        return ""


# ---------------------------------------------------------------------- PACT
def pact_quantize(y: np.ndarray, alpha: float, bits: int) -> np.ndarray:
    """PACT's quantizer (eq. 2): ``y_q = round(y * (2^b - 1) / alpha) * alpha / (2^b - 1)``.

    ``y`` is already clipped to ``[0, alpha]``, so the ``2^b`` levels are
    ``0, alpha / (2^b - 1), ..., alpha``. Rounds half to even (NumPy, as
    PyTorch's ``torch.round``). Computed in ``y``'s dtype.

    >>> pact_quantize(np.array([0.0, 0.2, 0.5, 0.9, 1.5]), alpha=1.5, bits=2)  # step 0.5
    array([0. , 0. , 0.5, 1. , 1.5])
    """
    y = np.asarray(y)
    levels = y.dtype.type((1 << check_bits(bits)) - 1)
    alpha = y.dtype.type(alpha)
    return np.round(y * (levels / alpha)) * (alpha / levels)


class PACT(Module):
    r"""Parameterized clipping activation with a learned level ``alpha`` (Choi et al. 2018).

    Replaces a ReLU. Forward (PACT eq. 1, then eq. 2 with ``bits``)::

        y   = clip(x, 0, alpha)  = 0 (x <= 0),  x (0 < x < alpha),  alpha (x >= alpha)
        y_q = round(y * (2^b - 1) / alpha) * alpha / (2^b - 1)           (only with bits)

    Backward, derived by hand. Without the quantizer, ``y`` is piecewise
    linear in ``x`` and in ``alpha``::

        dy/dx     = 1[0 < x < alpha]          (zero at the ends, as PyTorch's hardtanh)
        dy/dalpha = 1[x >= alpha]             (the clipped entries move with alpha)

    and ``alpha`` is shared by the whole layer, so its gradient is a sum
    over every entry of the batch::

        dL/dalpha = sum_i dL/dy_i * 1[x_i >= alpha]

    With the quantizer, ``round`` has derivative 0 almost everywhere. PACT
    uses the straight-through estimator on the whole quantizer,
    ``dy_q/dy = 1`` (eq. 3), which gives the same two gradients::

        dy_q/dx     = dy_q/dy * dy/dx     = 1[0 < x < alpha]
        dy_q/dalpha = dy_q/dy * dy/dalpha = 1[x >= alpha]

    (Passing the estimator through ``round`` alone and differentiating
    ``y_q`` in ``alpha`` as a product would add ``(y_q - x) / alpha`` for
    ``0 < x < alpha``: the term LSQ keeps, Esser et al. 2020, see
    ``compression.quantization.lsq``. PACT drops it.)

    Regularisation: the paper adds ``lambda * alpha^2`` to the loss so the
    level does not drift up. That is plain L2 weight decay on ``alpha``:
    give the alphas their own parameter group,
    ``SGD([{"params": weights}, {"params": pact_alphas(model), "weight_decay": 5e-4}], lr)``.

    Parameters
    ----------
    alpha : float, default 10.0
        Initial clipping level (the paper starts at 10), positive.
    bits : int in 2..16, optional
        Quantize the output to ``2^bits`` levels on ``[0, alpha]``; None
        keeps it in float (a learned ReLU-n).

    Attributes
    ----------
    alpha : Parameter, shape ()
        Saved in ``state_dict`` as ``"<name>.alpha"``.

    Shapes: any input shape; output has the same shape. Cache: two boolean
    masks, ``0 < x < alpha`` and ``x >= alpha``.

    >>> pact = PACT(alpha=2.0, bits=2)          # levels 0, 2/3, 4/3, 2
    >>> pact(np.array([-1.0, 0.5, 1.0, 5.0]))
    array([0.        , 0.66666667, 1.33333333, 2.        ])
    >>> pact.backward(np.array([1.0, 1.0, 1.0, 3.0]))   # dx = dout * 1[0 < x < alpha]
    array([0., 1., 1., 0.])
    >>> float(pact.alpha.grad)                  # sum of dout where x >= alpha
    3.0
    """

    #: For ``compression.quantization.activation_targets``: an activation whose
    #: outputs are never negative (see ``compression.quantization.apply.is_activation``).
    activation_function = True
    nonnegative_output = True

    def __init__(self, alpha: float = 10.0, bits: int | None = None) -> None:
        super().__init__()
        self.alpha = Parameter(np.array(_check_positive(alpha, "alpha"), dtype=np.float32))
        self.bits = None if bits is None else check_bits(bits)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``clip(x, 0, alpha)``, quantized to ``2^bits`` levels when ``bits`` is set."""
        x = np.asarray(x)
        alpha = float(self.alpha.value())
        if not alpha > 0:
            raise ValueError(
                f"PACT alpha became {alpha}; the clipping level must stay positive: lower the "
                "learning rate of alpha (or its weight decay)"
            )
        a = x.dtype.type(alpha)
        self.cache = ((x > 0) & (x < a), x >= a) if is_grad_enabled() else None
        y = np.clip(x, 0, a).astype(x.dtype, copy=False)
        if self.bits is not None:
            y = pact_quantize(y, a, self.bits)
        return y

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Accumulate ``dL/dalpha = sum(dout * 1[x >= alpha])``; return ``dout * 1[0 < x < alpha]``."""
        if self.cache is None:
            raise self._no_cache_error()
        inside, clipped = self.cache
        if dout.shape != inside.shape:
            raise ValueError(
                f"PACT.backward expected dout of shape {inside.shape}, got {dout.shape}"
            )
        d_alpha = np.sum(dout * clipped, dtype=np.float64)
        self.alpha.backward(np.asarray(d_alpha, dtype=self.alpha.dtype))
        if not self.requires_input_grad:
            return None
        return dout * inside

    def extra_repr(self) -> str:
        bits = "" if self.bits is None else f", bits={self.bits}"
        return f"alpha={float(self.alpha.data):.4g}{bits}"


# ------------------------------------------------------------ model helpers
def replace_relu_with_pact(
    model: Module,
    alpha: float = 10.0,
    bits: int | None | Mapping[str, int | None] = None,
) -> Module:
    """A copy of ``model`` with every ``ReLU`` replaced by :class:`PACT`, in the same slot.

    Slots (``Sequential`` indices) stay where they were, so every other
    ``state_dict`` key is unchanged; each PACT adds ``"<index>.alpha"``.
    The model must be a ``Sequential`` (nested ones are rebuilt too), as
    every tinynet model is. The original model is not touched.

    Parameters
    ----------
    model : Sequential
    alpha : float, default 10.0
        Initial level of every PACT.
    bits : int, None, or dict of module name -> int or None
        Output bits of every PACT, or per ReLU by its name in
        ``model.named_modules()`` (``{"2": 8, "5": 3}``; ReLUs not named keep
        float outputs).

    >>> from tinynet import Linear
    >>> net = replace_relu_with_pact(Sequential(Linear(2, 3), ReLU(), Linear(3, 1)), bits=4)
    >>> net[1], [name for name, _ in net.named_parameters()]
    (PACT(alpha=10, bits=4), ['0.weight', '0.bias', '1.alpha', '2.weight', '2.bias'])
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"replace_relu_with_pact expects a Sequential, got {type(model).__name__}")
    relus = [name for name, m in model.named_modules() if isinstance(m, ReLU)]
    if isinstance(bits, Mapping):
        unknown = sorted(set(bits) - set(relus))
        if unknown:
            raise ValueError(f"bits names {unknown}, which are not ReLUs; the ReLUs are {relus}")

    def rebuild(seq: Sequential, prefix: str) -> Sequential:
        layers = []
        for i, layer in enumerate(seq):
            name = f"{prefix}{i}"
            if isinstance(layer, ReLU):
                b = bits.get(name) if isinstance(bits, Mapping) else bits
                layers.append(PACT(alpha, b))
            elif isinstance(layer, Sequential):
                layers.append(rebuild(layer, name + "."))
            else:
                layers.append(copy.deepcopy(layer))
        out = Sequential(*layers)
        out.train(seq.training)
        return out

    return rebuild(model, "")


def pact_alphas(model: Module) -> list[Parameter]:
    """The ``alpha`` of every :class:`PACT` in ``model`` (for their own parameter group)."""
    return [m.alpha for m in model.modules() if isinstance(m, PACT)]


# The compressed file format (compression.storage) describes these layers too.
register_layer_type(Clip, {"c": "float"})
register_layer_type(ReLU6, {})
register_layer_type(PACT, {"bits": "int?"})
