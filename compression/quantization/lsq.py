r"""LSQ: learned step size quantization (Esser et al. 2020, ICLR).

Fixed ranges (min-max, moving averages) decide the step from statistics
that have nothing to do with the loss. LSQ makes the step size ``s`` a
trainable parameter and lets gradient descent choose it (Esser, McKinstry,
Bapst, Appuswamy, Modha 2020, "Learned Step Size Quantization")::

    v_bar = clip(round(v / s), -Q_N, Q_P)          (eq. 1, integers)
    v_hat = v_bar * s                              (eq. 2, what the layer uses)

with ``Q_N = 2^(b-1), Q_P = 2^(b-1) - 1`` for signed data (weights) and
``Q_N = 0, Q_P = 2^b - 1`` for unsigned data (activations after ReLU).
Zero-point 0: the grid is symmetric around 0 (or starts at 0).

The step-size gradient, derived by hand (eq. 3)
------------------------------------------------
Inside the range (``-Q_N < v/s < Q_P``), ``v_hat = s * round(v/s)``. By the
product rule, and passing the derivative straight through ``round`` (STE:
``d round(u)/du = 1``)::

    d v_hat / d s = round(v/s) + s * d round(v/s)/ds
                  = round(v/s) + s * (-v / s^2)
                  = -v/s + round(v/s)

Outside it ``v_hat = -Q_N * s`` or ``Q_P * s``, so ``d v_hat/ds = -Q_N`` or
``Q_P``. All three cases in one line, with ``v_bar`` the clipped integer::

    d v_hat / d s = v_bar - (v/s) * 1[-Q_N < v/s < Q_P]

The first term is what ``round`` actually does (``v_hat`` moves with ``s``
by ``v_bar`` while the integer stays put); the second, ``-v/s``, is the
straight-through part: it is larger near a rounding boundary, so the step
learns from how close values sit to a transition (the paper's Fig. 2).
The input gradient is the straight-through estimator:
``d v_hat / d v = 1[-Q_N < v/s < Q_P]``.

Gradient scale. The step size of a layer collects a sum over ``N`` values,
so its gradient is much larger than a single weight's; the paper multiplies
it by ``g = 1 / sqrt(N * Q_P)`` (sec. 2.2), ``N`` = the number of weights
of the layer, or of activation features per example::

    dL/ds = g * sum_i dL/dv_hat_i * d v_hat_i / d s

Initialisation (sec. 2.1): ``s = 2 * mean(|v|) / sqrt(Q_P)``, from the
weights or from the first batch of activations.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from compression.quantization.affine import check_bits
from tinynet.grad_mode import is_grad_enabled
from tinynet.parameter import Parameter
from tinynet.transforms import Transform, register_transform

__all__ = ["LSQ", "lsq_levels", "lsq_step_gradient"]

ROLES = ("weight", "activation")


def lsq_levels(bits: int, signed: bool) -> tuple[int, int]:
    """``(Q_N, Q_P)``: the grid is ``-Q_N .. Q_P``.

    >>> lsq_levels(4, signed=True), lsq_levels(4, signed=False)
    ((8, 7), (0, 15))
    """
    bits = check_bits(bits)
    if signed:
        return 1 << (bits - 1), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def lsq_step_gradient(v: np.ndarray, s: float, q_n: int, q_p: int) -> np.ndarray:
    """``d v_hat / d s`` for every entry of ``v`` (eq. 3, without the gradient scale).

    ``v_bar - (v/s) * 1[-Q_N < v/s < Q_P]``: ``round(v/s) - v/s`` inside the
    range, ``-Q_N`` below it, ``Q_P`` above it.

    With ``s = 0.5`` on the 2-bit signed grid ``-2 .. 1``: ``v/s = 0.52`` rounds
    up (``1 - 0.52``), ``0.48`` rounds down (``0 - 0.48``), 10 and -18 clip:

    >>> lsq_step_gradient(np.array([0.26, 0.24, 5.0, -9.0]), 0.5, 2, 1)
    array([ 0.48, -0.48,  1.  , -2.  ])
    """
    v = np.asarray(v)
    u = v / v.dtype.type(s)
    v_bar = np.clip(np.round(u), -q_n, q_p)
    inside = (u > -q_n) & (u < q_p)
    return v_bar - u * inside


@register_transform
class LSQ(Transform):
    """Learned step size quantizer, for a weight or for a module's output.

    Forward ``v_hat = s * clip(round(v / s), -Q_N, Q_P)``. Backward:
    ``dL/dv = dL/dv_hat * 1[-Q_N < v/s < Q_P]`` and, into ``step_size``,
    ``g * sum(dL/dv_hat * d v_hat/ds)`` (see the module docstring).

    Parameters
    ----------
    bits : int in 2..16, default 4
    signed : bool, default True
        Signed grid (weights, outputs that can be negative) or unsigned
        (ReLU outputs: all ``2^b`` levels on ``[0, Q_P * s]``).
    role : {"weight", "activation"}
        Sets ``N`` of the gradient scale: every entry of a weight, or the
        features of one example of an activation ``(N_batch, ...)``.
    grad_scale : float, optional
        Override ``g = 1 / sqrt(N * Q_P)`` (1.0 gives the plain gradient,
        as the gradient checks use).

    Attributes
    ----------
    step_size : Parameter, shape ()
        ``s``, trained by the optimizer with the weights.
    initialized : bool
        False until the first forward pass sets ``s = 2 mean|v| / sqrt(Q_P)``
        (kept in the config, so a saved and reloaded quantizer does not
        initialise again).
    """

    param_names: ClassVar[tuple[str, ...]] = ("step_size",)

    def __init__(
        self,
        bits: int = 4,
        signed: bool = True,
        role: str = "weight",
        grad_scale: float | None = None,
        initialized: bool = False,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.bits = check_bits(bits)
        self.signed = bool(signed)
        self.role = role
        self.grad_scale = None if grad_scale is None else float(grad_scale)
        self.q_n, self.q_p = lsq_levels(self.bits, self.signed)
        self.step_size = Parameter(np.array(1.0, dtype=np.float32))
        self.initialized = bool(initialized)

    def initialize(self, v: np.ndarray) -> None:
        """``s = 2 * mean(|v|) / sqrt(Q_P)`` (Esser et al. 2020, sec. 2.1)."""
        s = 2.0 * float(np.mean(np.abs(v))) / np.sqrt(self.q_p)
        tiny = float(np.finfo(np.float32).eps)
        self.step_size.data = np.array(max(s, tiny), dtype=self.step_size.dtype)
        self.initialized = True

    def gradient_scale(self, v: np.ndarray) -> float:
        """``g = 1 / sqrt(N * Q_P)``, ``N`` = entries of a weight, or features per example."""
        if self.grad_scale is not None:
            return self.grad_scale
        n = v.size if self.role == "weight" else v.size // max(len(v), 1)
        return 1.0 / np.sqrt(max(n, 1) * self.q_p)

    def forward(self, v: np.ndarray) -> np.ndarray:
        if not self.initialized:
            self.initialize(v)
        s = v.dtype.type(self.step_size.data)
        if not s > 0:
            raise ValueError(
                f"LSQ step size became {float(s)}: it must stay positive (lower the learning "
                "rate of the step sizes, or their weight decay)"
            )
        u = v / s
        v_bar = np.clip(np.round(u), -self.q_n, self.q_p)
        self.cache = (u, v_bar, self.gradient_scale(v)) if is_grad_enabled() else None
        return v_bar * s

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError(
                "LSQ.backward called without a cached forward pass: run forward with "
                "gradients enabled (not inside tinynet.no_grad()) first"
            )
        u, v_bar, g = self.cache
        inside = (u > -self.q_n) & (u < self.q_p)
        dv_hat_ds = v_bar - u * inside
        ds = g * np.sum(d_out * dv_hat_ds)
        self.step_size.backward(np.array(ds, dtype=self.step_size.dtype))
        return d_out * inside

    def codes(self, v: np.ndarray) -> np.ndarray:
        """The integers ``v_bar = clip(round(v / s), -Q_N, Q_P)`` as int64 (what storage keeps)."""
        s = np.asarray(v).dtype.type(self.step_size.data)
        return np.clip(np.round(np.asarray(v) / s), -self.q_n, self.q_p).astype(np.int64)

    def get_config(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "signed": self.signed,
            "role": self.role,
            "grad_scale": self.grad_scale,
            "initialized": self.initialized,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> LSQ:
        return cls(**config)

    def set_state(self, name: str, array: np.ndarray) -> None:
        """Load the step size, checking it is one number (a damaged file must not broadcast)."""
        if name == "step_size" and np.shape(array) != ():
            raise ValueError(f"LSQ.step_size expected shape (), got {np.shape(array)}")
        super().set_state(name, array)

    def __repr__(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return (
            f"LSQ({self.bits}-bit {kind} {self.role}, step_size={float(self.step_size.data):.4g})"
        )
