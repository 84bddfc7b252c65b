"""Fake quantization as transforms: weights and activations on a ``b``-bit grid, in float.

*Simulated* (fake) quantization rounds a tensor to the values its integers
stand for and keeps computing in float (Jacob et al. 2018, sec. 3;
Krishnamoorthi 2018, sec. 3.2)::

    x_hat = (clip(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale

The network then sees exactly the numbers an integer engine would use,
which is what post-training quantization measures and what
quantization-aware training (QAT) trains against. ``round`` has zero
derivative almost everywhere, so the backward pass uses the
straight-through estimator (Bengio et al. 2013, "Estimating or Propagating
Gradients Through Stochastic Neurons"): the gradient passes unchanged where
the rounded integer lies in ``[qmin, qmax]`` and is zero where it clips::

    dL/dx = dL/dx_hat * 1[qmin <= round(x / scale) + zero_point <= qmax]

Two transforms:

* :class:`FakeQuantize`, on a *weight* (``param.add_transform``): its scale
  and zero-point are either recomputed from the current weight's minimum
  and maximum at every forward pass (QAT, like PyTorch's weight fake-quant)
  or *frozen* (post-training quantization, and after QAT): then they are
  state arrays saved in ``state_dict``. Per channel along ``axis=0`` (one
  scale per output unit of a ``Linear`` or filter of a ``Conv2d``) or per
  tensor.
* :class:`ActivationQuantize`, on a module's *output*
  (``module.add_output_transform``): unsigned affine by default; its range
  comes from an observer that updates on training passes and is frozen on
  every other pass.

PyTorch: ``torch.ao.quantization.FakeQuantize``, whose forward is
``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from compression.quantization.affine import (
    check_bits,
    fake_quantize,
    qparams,
    qrange,
    ste_mask,
)
from compression.quantization.observers import OBSERVER_TYPES, Observer, min_max
from tinynet.grad_mode import is_grad_enabled
from tinynet.transforms import Transform, register_transform

__all__ = ["ActivationQuantize", "FakeQuantize"]


def _no_cache(name: str) -> RuntimeError:
    return RuntimeError(
        f"{name}.backward called without a cached forward pass: run forward with "
        "gradients enabled (not inside tinynet.no_grad()) first"
    )


@register_transform
class FakeQuantize(Transform):
    """Weight fake quantization with a straight-through gradient.

    Forward ``W_eff = fake_quantize(W, scale, zero_point, qmin, qmax, axis)``;
    backward ``dL/dW = dL/dW_eff * ste_mask(W, ...)``.

    Parameters
    ----------
    bits : int in 2..16, default 8
    symmetric : bool, default True
        Signed grid, zero-point 0 (``[-128, 127]`` at 8 bits); False: unsigned
        affine (``[0, 255]``) with a zero-point.
    narrow_range : bool, default False
        Drop the lowest integer (``[-127, 127]``, Jacob et al.'s int8 weights).
    axis : int or None, default None
        Per-channel axis (0 for ``Linear`` and ``Conv2d`` weights:
        Krishnamoorthi 2018 sec. 3.1 recommends per-channel weights), or None
        for one scale per tensor.
    channels : int, default 1
        Entries along ``axis`` (sizes ``scale`` and ``zero_point``).
    power_of_two : bool, default False
        Round scales up to powers of two (fixed-point, see ``affine.pow2_scale``).
    frozen : bool, default False
        False: recompute ``scale`` and ``zero_point`` from ``min/max`` of the
        incoming weight at every forward (QAT). True: keep the stored ones.

    Attributes
    ----------
    scale : ndarray of float32, shape () or (C,)
    zero_point : ndarray of int64, same shape
        The parameters used by the last forward pass (saved in ``state_dict``).
    """

    state_names: ClassVar[tuple[str, ...]] = ("scale", "zero_point")

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = True,
        narrow_range: bool = False,
        axis: int | None = None,
        channels: int = 1,
        power_of_two: bool = False,
        frozen: bool = False,
    ) -> None:
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.narrow_range = bool(narrow_range)
        self.axis = axis
        self.power_of_two = bool(power_of_two)
        self.frozen = bool(frozen)
        self.qmin, self.qmax = qrange(self.bits, signed=self.symmetric, narrow_range=narrow_range)
        shape = () if axis is None else (int(channels),)
        self.scale = np.ones(shape, dtype=np.float32)
        self.zero_point = np.zeros(shape, dtype=np.int64)

    @classmethod
    def for_weight(cls, w: np.ndarray, bits: int = 8, **kwargs: Any) -> FakeQuantize:
        """A quantizer sized for ``w`` whose scale and zero-point are computed from ``w`` now."""
        axis = kwargs.get("axis")
        channels = 1 if axis is None else np.shape(w)[axis]
        fq = cls(bits, channels=channels, **kwargs)
        fq.observe(w)
        return fq

    def observe(self, w: np.ndarray) -> None:
        """Set ``scale`` and ``zero_point`` from ``w``'s minimum and maximum (per channel)."""
        x_min, x_max = min_max(w, self.axis)
        if x_min.shape != self.scale.shape:
            raise ValueError(
                f"FakeQuantize sized for {self.scale.size} channels along axis {self.axis}, "
                f"got a weight of shape {np.shape(w)}"
            )
        self.scale, self.zero_point = qparams(
            x_min, x_max, self.bits, self.symmetric, self.narrow_range, self.power_of_two
        )

    def forward(self, w: np.ndarray) -> np.ndarray:
        if not self.frozen:
            self.observe(w)
        args = (self.scale, self.zero_point, self.qmin, self.qmax, self.axis)
        self.cache = ste_mask(w, *args) if is_grad_enabled() else None
        return fake_quantize(w, *args)

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise _no_cache("FakeQuantize")
        return d_out * self.cache  # float * bool keeps the float's dtype

    def astype(self, dtype: Any) -> None:
        """Scales stay float32 (the affine math computes them in float32, as PyTorch does)."""

    def get_config(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
            "axis": self.axis,
            "power_of_two": self.power_of_two,
            "frozen": self.frozen,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> FakeQuantize:
        axis = config.get("axis")
        if axis is not None and not (isinstance(axis, int) and -len(shape) <= axis < len(shape)):
            raise ValueError(f"FakeQuantize axis {axis!r} does not exist for shape {shape}")
        channels = 1 if axis is None else shape[axis]
        return cls(**config, channels=channels)

    def __repr__(self) -> str:
        where = "per tensor" if self.axis is None else f"per channel (axis {self.axis})"
        kind = "symmetric" if self.symmetric else "affine"
        state = "frozen" if self.frozen else "from min/max each pass"
        return f"FakeQuantize({self.bits}-bit {kind}, {where}, {state})"


@register_transform
class ActivationQuantize(Transform):
    """Activation fake quantization on a module's output, its range from an observer.

    Forward: on a training pass (``training`` is True, the observer is
    enabled and gradients are on) the observer first records the output;
    then ``x_hat = fake_quantize(x, scale, zero_point, qmin, qmax)`` with
    ``(scale, zero_point)`` from the observed range. On any other pass
    (evaluation under ``tinynet.no_grad``, ``disable_observer()``) the
    range stays as it is; ``model.eval()`` sets ``training`` False on every
    transform, so an eval-mode pass never moves it either. Backward: the
    straight-through mask.

    Parameters
    ----------
    bits : int in 2..16, default 8
    symmetric : bool, default False
        False: unsigned affine (``[0, 255]`` with a zero-point, the usual
        choice for activations, ReLU outputs included); True: signed, zero-point 0.
    narrow_range : bool, default False
    power_of_two : bool, default False
    observer : str, default "MovingAverageMinMaxObserver"
        A registered observer type (``observers.OBSERVER_TYPES``).
    observer_config : dict, optional
        Its constructor arguments (``{"averaging_constant": 0.01}``,
        ``{"axis": 1, "channels": 20}`` for per-channel ranges).
    observer_enabled : bool, default True
        False freezes the range (post-training quantization; after QAT).

    Attributes
    ----------
    observer : Observer
        Holds the range (``min_val``, ``max_val``: the state saved in ``state_dict``).
    training : bool
        Set by ``Module.train()`` / ``eval()``; False freezes the range like
        ``disable_observer``.

    Notes
    -----
    PyTorch's ``FakeQuantize`` observes on every forward pass until
    ``disable_observer`` is called. Here the observer also skips passes
    without gradients, so evaluating a model during QAT (``tinynet.evaluate``
    and ``fit``'s validation run under ``no_grad``) does not move its ranges.
    """

    state_names: ClassVar[tuple[str, ...]] = ("min_val", "max_val")
    training: bool = True

    def __init__(
        self,
        bits: int = 8,
        symmetric: bool = False,
        narrow_range: bool = False,
        power_of_two: bool = False,
        observer: str = "MovingAverageMinMaxObserver",
        observer_config: dict[str, Any] | None = None,
        observer_enabled: bool = True,
    ) -> None:
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.narrow_range = bool(narrow_range)
        self.power_of_two = bool(power_of_two)
        self.qmin, self.qmax = qrange(self.bits, signed=self.symmetric, narrow_range=narrow_range)
        if observer not in OBSERVER_TYPES:
            raise ValueError(f"unknown observer {observer!r}; known: {sorted(OBSERVER_TYPES)}")
        self.observer: Observer = OBSERVER_TYPES[observer].from_config(dict(observer_config or {}))
        self.observer_enabled = bool(observer_enabled)

    @classmethod
    def from_observer(cls, observer: Observer, bits: int = 8, **kwargs: Any) -> ActivationQuantize:
        """A frozen quantizer whose range is the one ``observer`` recorded (post-training)."""
        aq = cls(
            bits,
            observer=type(observer).__name__,
            observer_config=observer.get_config(),
            observer_enabled=False,
            **kwargs,
        )
        for name, array in observer.named_state():
            aq.observer.set_state(name, array)
        aq.qparams()  # fails now, not later, if the observer saw nothing
        return aq

    def enable_observer(self, enabled: bool = True) -> None:
        """Let training passes update the range (PyTorch ``enable_observer``)."""
        self.observer_enabled = bool(enabled)

    def disable_observer(self) -> None:
        """Freeze the range (PyTorch ``disable_observer``)."""
        self.observer_enabled = False

    def qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, zero_point)`` of the current range."""
        try:
            return self.observer.qparams(
                self.bits, self.symmetric, self.narrow_range, self.power_of_two
            )
        except ValueError as err:
            raise ValueError(
                f"ActivationQuantize has no range yet ({err}); a training pass with the "
                "observer enabled sets it, or build it from a calibrated observer"
            ) from None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training and self.observer_enabled and is_grad_enabled():
            self.observer.observe(x)
        scale, zero_point = self.qparams()
        args = (scale, zero_point, self.qmin, self.qmax, self.observer.axis)
        self.cache = ste_mask(x, *args) if is_grad_enabled() else None
        return fake_quantize(x, *args)

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise _no_cache("ActivationQuantize")
        return d_out * self.cache

    # ---------------------------------------- state lives in the observer
    def named_state(self) -> list[tuple[str, np.ndarray]]:
        return self.observer.named_state()

    def set_state(self, name: str, array: np.ndarray) -> None:
        self.observer.set_state(name, array)

    def astype(self, dtype: Any) -> None:
        """Ranges stay float32 (as PyTorch's observers keep them)."""

    def get_config(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
            "power_of_two": self.power_of_two,
            "observer": type(self.observer).__name__,
            "observer_config": self.observer.get_config(),
            "observer_enabled": self.observer_enabled,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> ActivationQuantize:
        return cls(**config)

    def __repr__(self) -> str:
        kind = "symmetric" if self.symmetric else "affine"
        state = "observing" if self.observer_enabled else "frozen"
        return (
            f"ActivationQuantize({self.bits}-bit {kind}, {type(self.observer).__name__}, {state})"
        )
