"""Weight initialisation: PyTorch's ``torch.nn.init``, in NumPy.

A network starts from random weights, and *how* random matters: if the
weights are too large, activations grow layer after layer and explode; too
small, and they shrink towards zero and the gradient vanishes. The classic
fix is to choose the spread of the weights from the layer's *fan*, the
number of inputs (``fan_in``) or outputs (``fan_out``) each unit is wired to,
so that the variance of the signal stays about the same through the network.

* Glorot & Bengio 2010 ("Understanding the difficulty of training deep
  feedforward neural networks") keep the variance of both the forward signal
  and the backward gradient: ``Var(w) = 2 / (fan_in + fan_out)``.
* He et al. 2015 ("Delving Deep into Rectifiers") correct this for ReLU,
  which zeroes half its inputs: ``Var(w) = 2 / fan_in``. In general
  ``std = gain / sqrt(fan)`` with the *gain* of the nonlinearity
  (:func:`calculate_gain`).

A uniform distribution ``U(-b, b)`` has standard deviation ``b / sqrt(3)``,
so the uniform variants use the bound ``b = sqrt(3) * std``.

Every function here works **in place** on a :class:`~tinynet.Parameter`
(its ``data``) or on a floating ``ndarray``, keeps its dtype (float32 stays
float32), returns it (as ``torch.nn.init`` does), and draws from ``rng``:
``None`` means the global generator :func:`tinynet.random.get_rng` (so
``tinynet.manual_seed`` governs it), an ``int`` a fresh seeded generator.
Defaults and formulas are exactly PyTorch's; the random numbers are not the
same as PyTorch's (different generators), only their distribution.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

from tinynet.parameter import Parameter
from tinynet.random import as_rng

Tensor = TypeVar("Tensor", Parameter, np.ndarray)
RngLike = int | np.random.Generator | None

# Layers without a nonlinearity after them: their gain is 1.
_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


# --------------------------------------------------------------------- helpers
def _array_of(w: Parameter | np.ndarray) -> np.ndarray:
    """The array to fill: a Parameter's ``data`` or the ndarray itself."""
    array = w.data if isinstance(w, Parameter) else w
    if not isinstance(array, np.ndarray):
        raise TypeError(f"init functions need a Parameter or an ndarray, got {type(w).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"init functions need a floating-point array, got dtype {array.dtype}")
    return array


def _fill(w: Tensor, values: np.ndarray) -> Tensor:
    """Copy ``values`` into ``w`` in place, cast to ``w``'s dtype."""
    array = _array_of(w)
    array[...] = values.astype(array.dtype, copy=False)
    return w


# ------------------------------------------------------------------- the gain
def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity (PyTorch ``torch.nn.init.calculate_gain``).

    The factor by which the nonlinearity shrinks the standard deviation of
    its input is undone by multiplying the weights' std by the gain:

    ================= =============================================
    nonlinearity      gain
    ================= =============================================
    linear, conv*     1
    sigmoid           1
    tanh              5/3
    relu              sqrt(2)
    leaky_relu        sqrt(2 / (1 + negative_slope^2))
    selu              3/4
    ================= =============================================

    Parameters
    ----------
    nonlinearity : str
        One of the names above.
    param : float, optional
        The negative slope of ``leaky_relu`` (default 0.01).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown nonlinearity (named in the message) or a slope that
        is not a number.
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float, np.number)):
            negative_slope = float(param)
        else:
            raise ValueError(f"negative_slope must be a number, got {param!r}")
        return math.sqrt(2.0 / (1.0 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(
        f"unsupported nonlinearity {nonlinearity!r}: expected one of "
        f"{', '.join(_LINEAR_FNS)}, sigmoid, tanh, relu, leaky_relu, selu"
    )


# -------------------------------------------------------------------- the fan
def fan_in_and_fan_out(w: Parameter | np.ndarray | tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight (PyTorch ``init._calculate_fan_in_and_fan_out``).

    For a ``Linear`` weight of shape ``(out_features, in_features)`` each
    output unit sums ``in_features`` inputs: ``fan_in = in_features`` and
    ``fan_out = out_features``. For a ``Conv2d`` weight of shape
    ``(out_channels, in_channels, kh, kw)`` each output value sums a
    ``kh x kw`` window of every input channel::

        fan_in  = in_channels  * kh * kw
        fan_out = out_channels * kh * kw

    Parameters
    ----------
    w : Parameter, ndarray or tuple of int
        The weight, or just its shape; at least 2 dimensions.

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        For fewer than 2 dimensions (a bias has no fan of its own).
    """
    shape = tuple(w.shape) if hasattr(w, "shape") else tuple(w)
    if len(shape) < 2:
        raise ValueError(
            "fan_in and fan_out need a weight with at least 2 dimensions "
            f"(out_features, in_features, ...), got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])  # kh * kw for a conv, 1 for a linear layer
    fan_in = shape[1] * receptive_field
    fan_out = shape[0] * receptive_field
    return fan_in, fan_out


# PyTorch's (private) name, for readers coming from torch.nn.init.
_calculate_fan_in_and_fan_out = fan_in_and_fan_out


def _fan(w: Parameter | np.ndarray, mode: str) -> int:
    """``fan_in`` or ``fan_out`` according to ``mode``."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(w)
    return fan_in if mode == "fan_in" else fan_out


# ------------------------------------------------------- plain distributions
def uniform_(w: Tensor, a: float = 0.0, b: float = 1.0, rng: RngLike = None) -> Tensor:
    """Fill ``w`` with draws from ``U(a, b)`` (PyTorch ``torch.nn.init.uniform_``)."""
    array = _array_of(w)
    return _fill(w, as_rng(rng).uniform(a, b, size=array.shape))


def normal_(w: Tensor, mean: float = 0.0, std: float = 1.0, rng: RngLike = None) -> Tensor:
    """Fill ``w`` with draws from ``N(mean, std^2)`` (PyTorch ``torch.nn.init.normal_``)."""
    array = _array_of(w)
    return _fill(w, as_rng(rng).normal(mean, std, size=array.shape))


def constant_(w: Tensor, val: float) -> Tensor:
    """Fill ``w`` with ``val`` (PyTorch ``torch.nn.init.constant_``)."""
    _array_of(w)[...] = val
    return w


def zeros_(w: Tensor) -> Tensor:
    """Fill ``w`` with zeros (PyTorch ``torch.nn.init.zeros_``)."""
    return constant_(w, 0.0)


def ones_(w: Tensor) -> Tensor:
    """Fill ``w`` with ones (PyTorch ``torch.nn.init.ones_``)."""
    return constant_(w, 1.0)


# ----------------------------------------------------------- He (Kaiming) init
def kaiming_uniform_(
    w: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: RngLike = None,
) -> Tensor:
    """He initialisation, uniform (PyTorch ``torch.nn.init.kaiming_uniform_``).

    He et al. 2015, "Delving Deep into Rectifiers", eq. (10)::

        gain  = calculate_gain(nonlinearity, a)
        std   = gain / sqrt(fan)
        bound = sqrt(3) * std
        w ~ U(-bound, bound)

    Parameters
    ----------
    w : Parameter or ndarray, at least 2-D
        Filled in place.
    a : float
        Negative slope of the leaky ReLU that follows (only used with
        ``nonlinearity="leaky_relu"``; ``a=0`` is a plain ReLU).
    mode : {"fan_in", "fan_out"}
        ``fan_in`` preserves the variance of the forward signal,
        ``fan_out`` that of the backward gradient.
    nonlinearity : str
        See :func:`calculate_gain`; PyTorch's default is ``"leaky_relu"``.
    rng : int, numpy.random.Generator or None

    Returns
    -------
    w
    """
    if _array_of(w).size == 0:  # nothing to fill (and a fan of 0)
        return w
    fan = _fan(w, mode)
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(w, -bound, bound, rng=rng)


def kaiming_normal_(
    w: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: RngLike = None,
) -> Tensor:
    """He initialisation, normal (PyTorch ``torch.nn.init.kaiming_normal_``).

    He et al. 2015::

        std = calculate_gain(nonlinearity, a) / sqrt(fan)
        w ~ N(0, std^2)

    Arguments as in :func:`kaiming_uniform_`.
    """
    if _array_of(w).size == 0:  # nothing to fill (and a fan of 0)
        return w
    fan = _fan(w, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(w, 0.0, std, rng=rng)


# ---------------------------------------------------------- Glorot (Xavier)
def xavier_uniform_(w: Tensor, gain: float = 1.0, rng: RngLike = None) -> Tensor:
    """Glorot initialisation, uniform (PyTorch ``torch.nn.init.xavier_uniform_``).

    Glorot & Bengio 2010, eq. (16) (with an optional gain)::

        std   = gain * sqrt(2 / (fan_in + fan_out))
        bound = sqrt(3) * std = gain * sqrt(6 / (fan_in + fan_out))
        w ~ U(-bound, bound)
    """
    if _array_of(w).size == 0:  # nothing to fill (and a fan of 0)
        return w
    fan_in, fan_out = fan_in_and_fan_out(w)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(w, -bound, bound, rng=rng)


def xavier_normal_(w: Tensor, gain: float = 1.0, rng: RngLike = None) -> Tensor:
    """Glorot initialisation, normal (PyTorch ``torch.nn.init.xavier_normal_``).

    Glorot & Bengio 2010::

        std = gain * sqrt(2 / (fan_in + fan_out))
        w ~ N(0, std^2)
    """
    if _array_of(w).size == 0:  # nothing to fill (and a fan of 0)
        return w
    fan_in, fan_out = fan_in_and_fan_out(w)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(w, 0.0, std, rng=rng)


# ------------------------------------------------- PyTorch's layer default
def pytorch_default_(
    weight: Parameter | np.ndarray,
    bias: Parameter | np.ndarray | None = None,
    rng: RngLike = None,
) -> None:
    """The default initialisation of ``nn.Linear`` and ``nn.Conv2d`` (``reset_parameters``).

    PyTorch initialises the weight with ``kaiming_uniform_(a=sqrt(5))``:
    the leaky-ReLU gain with slope ``sqrt(5)`` is ``sqrt(2 / (1 + 5)) =
    sqrt(1/3)``, so the bound is ``sqrt(3) * sqrt(1/3) / sqrt(fan_in)``::

        weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bias   ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))

    (the weight first, then the bias, from the same generator). ``fan_in``
    is ``in_features`` for a linear layer and ``in_channels * kh * kw`` for
    a convolution. This is LeCun's ``1/sqrt(fan_in)`` scale, not He's.

    Parameters
    ----------
    weight : Parameter or ndarray, shape (out, in) or (out, in, kh, kw)
    bias : Parameter or ndarray, shape (out,), optional
    rng : int, numpy.random.Generator or None
        None draws from :func:`tinynet.random.get_rng`.
    """
    rng = as_rng(rng)  # resolve once: weight and bias come from one stream
    kaiming_uniform_(weight, a=math.sqrt(5.0), rng=rng)
    if bias is not None:
        fan_in, _ = fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, rng=rng)


__all__ = [
    "calculate_gain",
    "constant_",
    "fan_in_and_fan_out",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "pytorch_default_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
