"""Observers: watch tensors go by and choose the range ``[x_min, x_max]`` a quantizer covers.

A weight's range can be read off the weight. An activation's cannot: it
depends on the input, so post-training quantization runs a *calibration
set* (a few hundred training images) through the float model and lets an
observer on each layer's output record what it sees (Jacob et al. 2018,
sec. 3; Krishnamoorthi 2018, "Quantizing deep convolutional networks for
efficient inference: a whitepaper", sec. 3). From the range, :func:`qparams`
gives the scale and zero-point.

Two observers, PyTorch's (``torch.ao.quantization``):

* :class:`MinMaxObserver`: the running minimum and maximum of everything
  seen, ``x_min = min over batches of min(x)`` (``MinMaxObserver``,
  ``PerChannelMinMaxObserver``);
* :class:`MovingAverageMinMaxObserver`: an exponential moving average of
  each batch's minimum and maximum; the first batch sets the range, then::

      x_min <- x_min + c * (min(x) - x_min)        c = averaging_constant = 0.01

  (``MovingAverageMinMaxObserver``, used while training: one outlier batch
  cannot stretch the range for ever).

Per tensor (``axis=None``): one range. Per channel (``axis=1`` for an
``(N, C, H, W)`` activation, ``axis=0`` for a weight): one range per index
along ``axis``, reducing over every other axis.

The interface, for the calibration methods a later lesson adds (percentile,
MSE, ACIQ, KL): a subclass overrides

* :meth:`Observer.observe` to keep what the method needs from each batch
  (a histogram, say), and
* :meth:`Observer.range` to turn that into ``(x_min, x_max)``,

registers itself with :func:`register_observer`, and lists any array it
must save in ``state_names``. :meth:`Observer.qparams` and :func:`calibrate`
then work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from compression.quantization.affine import qparams
from tinynet.grad_mode import no_grad
from tinynet.module import Module
from tinynet.train import eval_mode

__all__ = [
    "OBSERVER_TYPES",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "calibrate",
    "min_max",
    "register_observer",
]

OBSERVER_TYPES: dict[str, type[Observer]] = {}


def register_observer(cls: type[Observer]) -> type[Observer]:
    """Class decorator: make an observer type buildable by name (a saved quantizer names it)."""
    OBSERVER_TYPES[cls.__name__] = cls
    return cls


def min_max(x: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of ``x``, per tensor or per channel along ``axis``.

    Parameters
    ----------
    x : ndarray, any shape, not empty
    axis : int or None
        None: one value each, shape ``()``. An axis: one per channel,
        shape ``(x.shape[axis],)``, reducing over every other axis.

    Returns
    -------
    x_min, x_max : ndarray of float32

    >>> min_max(np.array([[1.0, -2.0], [3.0, 0.5]]), axis=0)
    (array([-2. ,  0.5], dtype=float32), array([1., 3.], dtype=float32))
    """
    x = np.asarray(x, dtype=np.float32)
    if axis is None:
        return np.array(x.min(), dtype=np.float32), np.array(x.max(), dtype=np.float32)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} does not exist for an input of shape {x.shape}")
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (C, everything else)
    return rows.min(axis=1), rows.max(axis=1)


class Observer:
    """Base class: records ranges of the tensors passed to :meth:`observe`.

    Parameters
    ----------
    axis : int or None, default None
        Channel axis for per-channel ranges; None for one range.
    channels : int, optional
        Number of channels along ``axis`` (sizes the state arrays before
        anything is observed, as loading a saved quantizer needs). Default:
        taken from the first tensor observed.

    Attributes
    ----------
    min_val, max_val : ndarray of float32, shape () or (C,)
        The recorded range; ``+inf`` and ``-inf`` until something is observed
        (PyTorch's initial values).
    """

    state_names: ClassVar[tuple[str, ...]] = ("min_val", "max_val")

    def __init__(self, axis: int | None = None, channels: int | None = None) -> None:
        if axis is None and channels not in (None, 1):
            raise ValueError(f"a per-tensor observer (axis=None) has one channel, got {channels}")
        self.axis = axis
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        """Forget everything observed."""
        shape = () if self.axis is None else (self.channels or 0,)
        self.min_val = np.full(shape, np.inf, dtype=np.float32)
        self.max_val = np.full(shape, -np.inf, dtype=np.float32)

    @property
    def observed(self) -> bool:
        """True once some data has been seen."""
        return self.min_val.size > 0 and bool(np.all(self.min_val <= self.max_val))

    def observe(self, x: np.ndarray) -> None:
        """Record one batch (an empty one is ignored, as in PyTorch)."""
        x = np.asarray(x)
        if x.size == 0:
            return
        batch_min, batch_max = min_max(x, self.axis)
        if self.axis is not None:
            if self.channels is None:
                self.channels = int(batch_min.size)
                self.reset()
            elif batch_min.size != self.channels:
                raise ValueError(
                    f"{type(self).__name__} expects {self.channels} channels along axis "
                    f"{self.axis}, got an input of shape {x.shape}"
                )
        self.update(batch_min, batch_max)

    def update(self, batch_min: np.ndarray, batch_max: np.ndarray) -> None:
        """Fold one batch's range into the recorded one (subclasses decide how)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement update")

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x_min, x_max)`` to quantize over, float32 of shape () or (C,).

        Raises
        ------
        ValueError
            If nothing has been observed yet.
        """
        if not self.observed:
            raise ValueError(
                f"{type(self).__name__} has observed no data yet: run calibration batches "
                "through the model first (see calibrate)"
            )
        return self.min_val.copy(), self.max_val.copy()

    def qparams(
        self,
        bits: int,
        symmetric: bool = False,
        narrow_range: bool = False,
        power_of_two: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, zero_point)`` for the observed range (see :func:`affine.qparams`).

        PyTorch ``observer.calculate_qparams()``.
        """
        x_min, x_max = self.range()
        return qparams(x_min, x_max, bits, symmetric, narrow_range, power_of_two)

    # --------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        """JSON-ready constructor arguments."""
        return {"axis": self.axis, "channels": self.channels}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Observer:
        """Build an observer from :meth:`get_config`'s output."""
        return cls(**config)

    def named_state(self) -> list[tuple[str, np.ndarray]]:
        """The arrays to save, by name."""
        return [(name, getattr(self, name)) for name in self.state_names]

    def set_state(self, name: str, array: np.ndarray) -> None:
        """Load one array saved by :meth:`named_state` (its shape is checked)."""
        if name not in self.state_names:
            raise KeyError(f"{type(self).__name__} has no state named {name!r}")
        old = getattr(self, name)
        if np.shape(array) != old.shape:
            raise ValueError(
                f"{type(self).__name__}.{name} expected shape {old.shape}, got {np.shape(array)}"
            )
        setattr(self, name, np.array(array, dtype=old.dtype, copy=True))

    def __repr__(self) -> str:
        where = "per tensor" if self.axis is None else f"axis={self.axis}"
        return f"{type(self).__name__}({where}, min_val={self.min_val}, max_val={self.max_val})"


@register_observer
class MinMaxObserver(Observer):
    """The running extremes: ``x_min = min(x_min, min(batch))``, ``x_max = max(x_max, max(batch))``.

    PyTorch ``MinMaxObserver`` (per tensor) and ``PerChannelMinMaxObserver``
    (with ``axis``). One outlier anywhere in the calibration set sets the
    range, which is why clipping methods exist.
    """

    def update(self, batch_min: np.ndarray, batch_max: np.ndarray) -> None:
        self.min_val = np.asarray(np.minimum(self.min_val, batch_min), dtype=np.float32)
        self.max_val = np.asarray(np.maximum(self.max_val, batch_max), dtype=np.float32)


@register_observer
class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's extremes.

    The first batch sets the range; after it, with ``c = averaging_constant``::

        x_min <- x_min + c * (min(batch) - x_min)
        x_max <- x_max + c * (max(batch) - x_max)

    PyTorch ``MovingAverageMinMaxObserver`` / ``MovingAveragePerChannelMinMaxObserver``
    (``averaging_constant=0.01``), the observer of quantization-aware
    training (Jacob et al. 2018, sec. 3: "exponential moving averages
    (EMA) with the smoothing parameter being close to 1").
    """

    def __init__(
        self,
        axis: int | None = None,
        channels: int | None = None,
        averaging_constant: float = 0.01,
    ) -> None:
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must lie in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)
        super().__init__(axis, channels)

    def update(self, batch_min: np.ndarray, batch_max: np.ndarray) -> None:
        if not self.observed:  # the first batch sets the range
            self.min_val, self.max_val = batch_min.copy(), batch_max.copy()
            return
        c = np.float32(self.averaging_constant)  # all in float32, as PyTorch computes it
        self.min_val = np.asarray(self.min_val + c * (batch_min - self.min_val), dtype=np.float32)
        self.max_val = np.asarray(self.max_val + c * (batch_max - self.max_val), dtype=np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "averaging_constant": self.averaging_constant}


# ------------------------------------------------------------- calibration
def calibration_inputs(batches: Any, batch_size: int = 256) -> Iterator[np.ndarray]:
    """The input arrays of a calibration set, one batch at a time.

    ``batches`` is, as for ``tinynet.fit``: an array ``x`` of shape
    ``(N, ...)`` or a tuple of arrays ``(x, y, ...)`` (cut into batches of
    ``batch_size``; labels are not needed), or an iterable of batches, each
    an array or a tuple ``(x, ...)`` (a ``DataLoader``).
    """
    if isinstance(batches, tuple) and batches and isinstance(batches[0], np.ndarray):
        batches = batches[0]
    if isinstance(batches, np.ndarray):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        for start in range(0, len(batches), batch_size):
            yield batches[start : start + batch_size]
        return
    for batch in batches:
        yield batch[0] if isinstance(batch, tuple | list) else batch


def calibrate(
    model: Module,
    observers: Mapping[str, Observer] | Iterable[str],
    batches: Any,
    batch_size: int = 256,
) -> dict[str, Observer]:
    """Run a calibration set through ``model`` and let observers record module outputs.

    Each observer is attached to its module with ``register_forward_hook``
    (it sees the module's output before any output transform), the batches
    run under :func:`tinynet.no_grad` in eval mode (Dropout off, BatchNorm
    running statistics untouched), then the hooks are removed and every
    module gets its mode back, even if a batch fails.

    Parameters
    ----------
    model : Module
    observers : dict of module name -> Observer, or iterable of module names
        Names as in ``model.named_modules()`` (``"2"`` for ``model[2]``); a
        plain name gets a per-tensor :class:`MinMaxObserver`.
    batches : array, tuple of arrays, or iterable of batches
        See :func:`calibration_inputs`.
    batch_size : int, default 256
        Used when ``batches`` is an array or a tuple of arrays.

    Returns
    -------
    dict of str -> Observer
        The observers (the same objects when a dict was given).

    Raises
    ------
    ValueError
        For an unknown module name, or a calibration set with no batch.
    """
    if not isinstance(observers, Mapping):
        observers = {name: MinMaxObserver() for name in observers}
    observers = dict(observers)
    modules = dict(model.named_modules())
    unknown = [name for name in observers if name not in modules]
    if unknown:
        raise ValueError(
            f"calibrate: the model has no modules named {unknown}; it has {sorted(modules)}"
        )
    handles = []
    for name, observer in observers.items():

        def hook(module: Module, x: np.ndarray, out: np.ndarray, obs: Observer = observer) -> None:
            obs.observe(out)

        handles.append(modules[name].register_forward_hook(hook))
    n_batches = 0
    try:
        with no_grad(), eval_mode(model):
            for x in calibration_inputs(batches, batch_size):
                if len(x) == 0:
                    continue
                model(x)
                n_batches += 1
    finally:
        for handle in handles:
            handle.remove()
    if n_batches == 0:
        raise ValueError(
            "the calibration set is empty: no batch reached the model, so no range was "
            "observed (pass a few hundred training inputs)"
        )
    return observers
