"""Weight clipping: keep every weight inside ``[-c, c]``.

Clipping a weight tensor to a symmetric window::

    W_clipped = clip(W, -c, c) = min(max(W, -c), c)

shrinks its range, and the range is what sets a quantizer's step
(``scale = c / (2^(b-1) - 1/2)`` on a symmetric ``b``-bit grid, see
``compression.quantization.affine.qparams``): the same bits then resolve
the bulk of the weights more finely, at the price of the few large
weights that get cut. The clipping level ``c`` can be

* a fixed number, the same for the whole tensor (BinaryConnect's ``[-1, 1]``);
* one number per output channel (an array of shape ``(C_out,)``, broadcast
  along axis 0 like per-channel quantization scales);
* ``k`` times the standard deviation of the layer (or of each output
  channel): ``c = k * std(W)``; ``k = 3`` cuts the 0.3% of a Gaussian's
  mass that lies beyond three sigma.

Two ways to use it:

1. **A projection after each optimizer step** (a constraint, as
   BinaryConnect keeps its latent weights in ``[-1, 1]``, Courbariaux et al.
   2015, Algorithm 1): :func:`clip_weights_` clips the stored weights in
   place, and the :class:`ClipWeights` callback calls it after every step
   of ``tinynet.fit``. The weights the optimizer updates never leave the
   window. This is projected gradient descent.
2. **A weight transform** (:class:`WeightClip`): the stored (latent) weight
   is left alone and the layer sees ``clip(W, -c, c)``; the gradient is
   zero outside the window::

       dL/dW = dL/dW_clipped * 1[-c <= W <= c]

   (PyTorch ``torch.clamp(w, -c, c)``, whose gradient also passes at the
   two end points). A latent weight beyond ``c`` stops receiving gradient,
   so only weight decay brings it back.

*Gradient*-norm clipping (rescaling all gradients when their joint norm is
too large) is a different thing with a similar name: it is
``tinynet.optim.clip_grad_norm_`` (PyTorch ``torch.nn.utils.clip_grad_norm_``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from compression.quantization.sharing import quantizable_weights
from tinynet.callbacks import Callback, Trainer
from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module
from tinynet.transforms import Transform, register_transform

__all__ = [
    "ClipWeights",
    "WeightClip",
    "clip_weight",
    "clip_weights_",
    "clipping_level",
]


# -------------------------------------------------------------- array math
def _check_level(c: Any, name: str = "c") -> np.ndarray:
    """Return ``c`` as a float array after checking every entry is positive and finite."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > 1 or c.size == 0:
        raise ValueError(
            f"{name} must be a number or a 1-D array (one per channel), got shape {c.shape}"
        )
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"the clipping level {name} must be positive, got {c}")
    return c


def _check_k(k: Any) -> float:
    """Return ``k`` (a level in standard deviations) as a float after checking it is positive."""
    if isinstance(k, bool) or not isinstance(k, int | float | np.number) or not k > 0:
        raise ValueError(
            f"k (the level in standard deviations) must be a positive number, got {k!r}"
        )
    return float(k)


def _per_channel_std(w: np.ndarray) -> np.ndarray:
    """Standard deviation of each output channel (axis 0), over every other axis."""
    return w.reshape(w.shape[0], -1).std(axis=1)


def clipping_level(
    w: np.ndarray,
    c: Any = None,
    k: float | None = None,
    per_channel: bool = False,
) -> np.ndarray:
    """The clipping level of ``w``: fixed, per output channel, or ``k`` standard deviations.

    Exactly one of ``c`` and ``k`` is given.

    Parameters
    ----------
    w : ndarray, shape (C_out, ...)
        A weight (``Linear``: ``(out, in)``; ``Conv2d``: ``(out, in, kh, kw)``).
    c : float or array_like of shape (C_out,), optional
        The level itself (positive).
    k : float, optional
        ``c = k * std(w)`` (population standard deviation, ``ddof=0``), of the
        whole tensor, or of each output channel with ``per_channel``.
    per_channel : bool, default False
        With ``k``: one level per output channel.

    Returns
    -------
    ndarray of float64, shape () or (C_out,)

    Raises
    ------
    ValueError
        If neither or both of ``c`` and ``k`` are given, or the level is not
        positive (``k <= 0``, or a constant tensor whose std is 0).

    Examples
    --------
    >>> w = np.array([[1.0, -1.0, 1.0, -1.0], [2.0, 0.0, 0.0, -2.0]])
    >>> float(clipping_level(w, k=2.0))         # std over all 8 entries: sqrt(12 / 8)
    2.449489742783178
    >>> clipping_level(w, k=1.0, per_channel=True)   # row stds: 1 and sqrt(2)
    array([1.        , 1.41421356])
    """
    if (c is None) == (k is None):
        raise ValueError(
            f"give exactly one of c (the level) and k (levels in std), got c={c}, k={k}"
        )
    if c is not None:
        return _check_level(c)
    k = _check_k(k)
    w = np.asarray(w, dtype=np.float64)
    std = _per_channel_std(w) if per_channel else np.asarray(w.std())
    return _check_level(k * std, name=f"k * std = {k} * std(w)")


def _broadcast(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Shape a level of shape () or (C_out,) to broadcast along axis 0 of ``w``, in ``w``'s dtype."""
    c = np.asarray(c, dtype=w.dtype)
    if c.ndim == 0:
        return c
    if w.ndim == 0 or c.shape[0] != w.shape[0]:
        raise ValueError(
            f"a per-channel clipping level needs one entry per output channel: weight of shape "
            f"{w.shape} has {w.shape[0] if w.ndim else 0}, got {c.shape[0]} levels"
        )
    return c.reshape((-1,) + (1,) * (w.ndim - 1))


def clip_weight(w: np.ndarray, c: Any) -> np.ndarray:
    """``clip(w, -c, c)``, with ``c`` a number or one level per output channel (axis 0).

    >>> clip_weight(np.array([[-3.0, 0.5, 2.0], [-0.2, 0.4, 0.9]]), [1.0, 0.3])
    array([[-1. ,  0.5,  1. ],
           [-0.2,  0.3,  0.3]])
    """
    w = np.asarray(w)
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    c = _broadcast(_check_level(c), w)
    return np.clip(w, -c, c)


# -------------------------------------------------- (a) projection after a step
def clip_weights_(
    model: Module,
    c: Any = None,
    k: float | None = None,
    per_channel: bool = False,
    include: Any = None,
) -> int:
    """Clip the stored weights of every ``Conv2d`` and ``Linear`` to ``[-c, c]``, in place.

    The projection step of projected gradient descent: after
    ``optimizer.step()``, every weight outside the window is put back on
    its edge. It acts on ``param.data`` (the latent value the optimizer
    updates), so with transforms on the weight (a pruning mask, a fake
    quantizer) it is the weight *before* them that is clipped. Biases are
    left alone.

    Parameters
    ----------
    model : Module
    c, k, per_channel
        The level, as in :func:`clipping_level`; with ``k`` it is computed
        from each weight as it is now. Note that a level taken from the
        weights it clips moves with them: clipping shrinks the standard
        deviation, so repeating ``k * std`` with a small ``k`` at every step
        keeps narrowing the window. For a fixed constraint compute the level
        once (``clipping_level(w, k=3)``) and pass it as ``c``.
    include : str or iterable of str, optional
        Only these weights (``"0.weight"``); default every ``Conv2d``/``Linear`` weight.

    Returns
    -------
    int
        How many weights (parameters) were clipped.
    """
    params = quantizable_weights(model, include=include)
    for _, param in params:
        level = clipping_level(param.data, c=c, k=k, per_channel=per_channel)
        level = _broadcast(level, param.data)
        np.clip(param.data, -level, level, out=param.data)
    return len(params)


class ClipWeights(Callback):
    """:func:`clip_weights_` after every optimizer step of :func:`tinynet.fit`.

    Example: ``fit(model, ..., callbacks=[ClipWeights(c=0.5)])``. Compare
    ``compression.quantization.ClipLatent``, which does the same for the
    latent weights of binary and ternary layers.
    """

    def __init__(
        self, c: Any = None, k: float | None = None, per_channel: bool = False, include: Any = None
    ) -> None:
        if (c is None) == (k is None):
            raise ValueError(f"give exactly one of c and k, got c={c}, k={k}")
        self.c = None if c is None else _check_level(c)
        self.k = None if k is None else _check_k(k)
        self.per_channel, self.include = bool(per_channel), include

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        clip_weights_(trainer.model, self.c, self.k, self.per_channel, self.include)


# -------------------------------------------------- (b) a transform with its gradient
@register_transform
class WeightClip(Transform):
    """Weight transform ``W_eff = clip(W, -c, c)``; gradient zero outside the window.

    Forward ``W_eff = clip(W, -c, c)``; backward
    ``dL/dW = dL/dW_eff * 1[-c <= W <= c]`` (PyTorch ``torch.clamp``:
    the end points pass the gradient). Compare the projection
    :func:`clip_weights_`, which changes the stored weight instead.

    Parameters
    ----------
    c : float or array_like of shape (C_out,), default 1.0
        The clipping level (one per output channel for an array). Ignored
        when ``k`` is given.
    k : float, optional
        Recompute the level at every forward pass as ``k * std`` of the
        incoming weight (per output channel with ``per_channel``). The
        backward pass treats that level as a constant (as ``FakeQuantize``
        treats the scale it takes from min/max): the small term through
        ``d std / dW`` is dropped.
    per_channel : bool, default False
        With ``k``: one level per output channel.
    channels : int, optional
        Number of output channels, to size ``level`` before it is known
        (``from_config`` uses it when loading).

    Attributes
    ----------
    level : ndarray of float32, shape () or (C_out,)
        The level used by the last forward pass; saved in ``state_dict``.
    """

    state_names: ClassVar[tuple[str, ...]] = ("level",)

    def __init__(
        self,
        c: Any = 1.0,
        k: float | None = None,
        per_channel: bool = False,
        channels: int | None = None,
    ) -> None:
        self.k = None if k is None else _check_k(k)
        self.per_channel = bool(per_channel)
        if k is not None:
            shape = (int(channels),) if per_channel and channels else ()
            self.level = np.ones(shape, dtype=np.float32)
        else:
            self.level = _check_level(c).astype(np.float32)
            self.per_channel = self.level.ndim == 1
        self.cache: np.ndarray | None = None

    def forward(self, w: np.ndarray) -> np.ndarray:
        if self.k is not None:
            self.level = clipping_level(w, k=self.k, per_channel=self.per_channel).astype(
                np.float32
            )
        c = _broadcast(self.level, w)
        self.cache = (w >= -c) & (w <= c) if is_grad_enabled() else None
        return np.clip(w, -c, c)

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError(
                "WeightClip.backward called without a cached forward pass: run forward with "
                "gradients enabled (not inside tinynet.no_grad()) first"
            )
        return d_out * self.cache  # float * bool keeps the float's dtype

    def astype(self, dtype: Any) -> None:
        """The level stays float32; ``forward`` casts it to the weight's dtype."""

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "per_channel": self.per_channel}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> WeightClip:
        per_channel = bool(config.get("per_channel", False))
        channels = shape[0] if per_channel and shape else None
        k = config.get("k")
        if k is not None:
            return cls(k=k, per_channel=per_channel, channels=channels)
        # a fixed level: placeholder ones of the right shape, the state fills them in
        return cls(c=np.ones(channels) if channels else 1.0)

    def __repr__(self) -> str:
        if self.k is not None:
            where = "per channel" if self.per_channel else "per tensor"
            return f"WeightClip(k={self.k} std, {where})"
        return f"WeightClip(c={self.level})"
