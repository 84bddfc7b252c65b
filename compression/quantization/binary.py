"""The extremes: binary (1-bit) and ternary (2-bit) weights, trained straight through.

Binary weights (BinaryConnect, Courbariaux, Bengio and David 2015) keep only
the sign of each weight, times a scale::

    W_eff = alpha * sign(W)            sign(0) = +1

with ``alpha`` the mean ``|W|`` of the layer (or of each output channel): the
scale that minimises ``||W - alpha * sign(W)||^2`` (XNOR-Net, Rastegari et
al. 2016, sec. 3.1), a fixed number (BinaryConnect's ``H``), or 1.

Ternary weights (TWN, Li, Zhang and Liu 2016) add a zero::

    delta = 0.7 * mean |W|                    (TWN's approximation of the best threshold)
    t     = sign(W) * 1[|W| > delta]  in {-1, 0, +1}
    alpha = mean of |W| over the entries with |W| > delta   (the best scale for that delta)
    W_eff = alpha * t

``sign`` has derivative 0 almost everywhere, so the true gradient would
never move the weights. Training instead uses the *straight-through
estimator* (STE): the backward pass treats the quantizer as (nearly) the
identity and updates the float *latent* weights ``W``; only the forward
pass sees the quantized ones (BinaryConnect, Algorithm 1). Our rules:

* binary: ``dW = dW_eff * 1[|W| <= limit]`` (``limit = 1``): the derivative of
  ``hardtanh``, which cancels the gradient of weights already far past the
  switching point (Hubara, Courbariaux et al. 2016, *Binarized Neural
  Networks*, sec. 1.3); BinaryConnect also clips the latent weights to
  ``[-1, 1]`` after each update: :func:`clip_latent` / :class:`ClipLatent`;
* ternary: ``dW = dW_eff``, passed straight through (as TWN trains).

In both, ``alpha`` is treated as a constant in the backward pass (its own
small derivative, ``sign(W_j) / n`` times ``sum_i sign(W_i) dW_eff[i]``,
which XNOR-Net includes in a simplified form, is dropped). PyTorch has no
such layer; Larq's ``ste_sign`` quantizer (``clip_value=1``) is the binary rule.

Storage: 1 bit per weight plus the scales, and 2 bits per weight plus one
scale (see ``storage_sharing.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from compression.quantization.sharing import quantizable_weights
from tinynet.callbacks import Callback, Trainer
from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module
from tinynet.transforms import Transform, register_transform

__all__ = [
    "BinaryWeights",
    "ClipLatent",
    "TernaryWeights",
    "binarize",
    "binary_codes",
    "clip_latent",
    "ternarize",
    "ternary_codes",
]

SCALES = ("tensor", "channel")


# -------------------------------------------------------------- array math
def _mean_abs(w: np.ndarray, per_channel: bool, where: np.ndarray | None = None) -> np.ndarray:
    """Mean ``|w|`` (over the whole tensor, or per output channel = axis 0), in ``w``'s dtype.

    Summed in float64: the mean of ``n`` copies of one float32 number ``a`` is
    then exactly ``a`` (``n * a`` needs at most 24 + log2(n) < 53 bits), so
    re-binarizing ``alpha * sign(W)`` gives back the same ``alpha`` (what
    lets a compressed file store only the signs and the scale).
    An empty selection (``where`` all False) has mean 0.
    """
    axes = tuple(range(1, w.ndim)) if per_channel else None
    magnitude = np.abs(w).astype(np.float64)
    if where is None:
        return np.mean(magnitude, axis=axes).astype(w.dtype)
    total = np.sum(magnitude, axis=axes, where=where)
    count = np.sum(where, axis=axes)
    return (total / np.maximum(count, 1)).astype(w.dtype)


def _check_scale(scale: Any) -> None:
    if scale is None or scale in SCALES:
        return
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValueError(
            f"scale must be 'tensor', 'channel', a positive number or None, got {scale!r}"
        )


def binary_codes(w: np.ndarray, scale: str | float | None = "tensor") -> tuple[np.ndarray, Any]:
    """``(s, alpha)`` with ``W_eff = alpha * s``: the signs (``sign(0) = +1``) and the scale.

    Parameters
    ----------
    w : ndarray, shape (C, ...) (PyTorch layout: output channels first)
    scale : {"tensor", "channel"}, positive float, or None
        ``"tensor"``: ``alpha = mean |W|`` (one number); ``"channel"``: one
        ``mean |W[c]|`` per output channel, shape (C,); a float: that fixed
        ``alpha`` (BinaryConnect's ``H``); None: ``alpha = 1`` (pure +-1).

    Returns
    -------
    s : ndarray of int8, shape of w, in {-1, +1}
    alpha : ndarray of w's dtype, shape () or (C,)

    Examples
    --------
    >>> s, alpha = binary_codes(np.array([[0.5, -1.5], [0.0, -0.2]]))
    >>> s.tolist(), float(alpha)        # mean |w| = 2.2 / 4
    ([[1, -1], [1, -1]], 0.55)
    """
    _check_scale(scale)
    s = np.where(w >= 0, 1, -1).astype(np.int8)
    if scale in SCALES:
        return s, _mean_abs(w, per_channel=scale == "channel")
    return s, np.array(1.0 if scale is None else scale, dtype=w.dtype)


def ternary_codes(w: np.ndarray, threshold: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """``(t, alpha)`` with ``W_eff = alpha * t``: TWN's ternary values and scale.

    ``delta = threshold * mean |W|``; ``t = sign(W)`` where ``|W| > delta``, else 0;
    ``alpha`` = mean ``|W|`` over those entries (0 when there are none).

    Returns
    -------
    t : ndarray of int8, shape of w, in {-1, 0, +1}
    alpha : ndarray of w's dtype, shape ()

    Examples
    --------
    >>> t, alpha = ternary_codes(np.array([0.9, -0.1, 0.3, -0.6]))
    >>> t.tolist(), float(alpha)        # delta = 0.7 * 0.475 = 0.3325
    ([1, 0, 0, -1], 0.75)
    """
    delta = threshold * np.mean(np.abs(w), dtype=np.float64)
    big = np.abs(w) > delta
    t = (np.sign(w) * big).astype(np.int8)
    return t, _mean_abs(w, per_channel=False, where=big)


def _broadcast(alpha: np.ndarray, ndim: int) -> np.ndarray:
    """Shape (C,) -> (C, 1, ..., 1) so it multiplies a weight row by row; () stays ()."""
    return alpha.reshape((-1,) + (1,) * (ndim - 1)) if alpha.ndim == 1 else alpha


# -------------------------------------------------------------- transforms
@register_transform
class BinaryWeights(Transform):
    """``W_eff = alpha * sign(W)``, with BinaryConnect's straight-through gradient.

    Forward: see :func:`binary_codes`. Backward (``alpha`` held constant)::

        dL/dW = dL/dW_eff * 1[|W| <= limit]

    Parameters
    ----------
    scale : {"tensor", "channel"}, positive float, or None, default "tensor"
        How ``alpha`` is chosen (see :func:`binary_codes`).
    limit : float, default 1.0
        Half-width of the window where the gradient passes (hardtanh's).

    Examples
    --------
    >>> t = BinaryWeights()
    >>> t.forward(np.array([0.5, -1.5, 0.0, -0.2]))
    array([ 0.55, -0.55,  0.55, -0.55])
    >>> t.backward(np.array([1.0, 1.0, 1.0, 1.0]))    # |-1.5| > 1: blocked
    array([1., 0., 1., 1.])
    """

    def __init__(self, scale: str | float | None = "tensor", limit: float = 1.0) -> None:
        _check_scale(scale)
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise ValueError(f"limit must be a positive number, got {limit!r}")
        self.scale = scale if scale is None or isinstance(scale, str) else float(scale)
        self.limit = float(limit)

    def forward(self, w: np.ndarray) -> np.ndarray:
        if self.scale == "channel" and w.ndim < 2:
            raise ValueError(f"scale='channel' needs a weight with output channels, got {w.shape}")
        s, alpha = binary_codes(w, self.scale)
        self.cache = (np.abs(w) <= self.limit) if is_grad_enabled() else None
        return _broadcast(alpha, w.ndim) * s.astype(w.dtype)

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError("BinaryWeights.backward called without a forward pass in grad mode")
        return d_out * self.cache

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "limit": self.limit}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> BinaryWeights:
        return cls(config.get("scale", "tensor"), config.get("limit", 1.0))


@register_transform
class TernaryWeights(Transform):
    """``W_eff = alpha * t``, ``t`` in {-1, 0, +1} (TWN), with a straight-through gradient.

    Forward: see :func:`ternary_codes`. Backward: ``dL/dW = dL/dW_eff``.

    Parameters
    ----------
    threshold : float in (0, 1), default 0.7
        ``delta = threshold * mean |W|`` (TWN's 0.7 approximates the optimal
        threshold for uniform or Gaussian weights).

    Examples
    --------
    >>> TernaryWeights().forward(np.array([0.9, -0.1, 0.3, -0.6]))
    array([ 0.75,  0.  ,  0.  , -0.75])
    """

    def __init__(self, threshold: float = 0.7) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)

    def forward(self, w: np.ndarray) -> np.ndarray:
        t, alpha = ternary_codes(w, self.threshold)
        return alpha * t.astype(w.dtype)

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        return d_out

    def get_config(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> TernaryWeights:
        return cls(config.get("threshold", 0.7))


# ------------------------------------------------------------- model level
def _add_to_weights(
    model: Module, make: Any, include: Iterable[str] | None, exclude_first: bool
) -> dict[str, Transform]:
    params = quantizable_weights(model, include, exclude_first)
    for name, param in params:
        if param.transforms:
            chain = [type(t).__name__ for t in param.transforms]
            raise ValueError(
                f"{name!r} already has transforms {chain}; binary and ternary weights replace "
                "the weight entirely (a pruned zero would become +alpha): start from a float model"
            )
    return {name: param.add_transform(make()) for name, param in params}


def binarize(
    model: Module,
    scale: str | float | None = "tensor",
    *,
    limit: float = 1.0,
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
) -> dict[str, BinaryWeights]:
    """Give every Conv2d and Linear weight a :class:`BinaryWeights` transform (in place).

    Parameters
    ----------
    model : Module
    scale, limit
        See :class:`BinaryWeights`.
    include, exclude_first
        Which weights (see ``sharing.quantizable_weights``); biases stay float.

    Returns
    -------
    dict of str -> BinaryWeights

    Raises
    ------
    ValueError
        For a weight that already has transforms, or a bad ``scale``.
    """
    _check_scale(scale)
    return _add_to_weights(model, lambda: BinaryWeights(scale, limit), include, exclude_first)


def ternarize(
    model: Module,
    threshold: float = 0.7,
    *,
    include: Iterable[str] | None = None,
    exclude_first: bool = False,
) -> dict[str, TernaryWeights]:
    """Give every Conv2d and Linear weight a :class:`TernaryWeights` transform (in place).

    Same rules as :func:`binarize`.
    """
    TernaryWeights(threshold)  # check it once, before touching the model
    return _add_to_weights(model, lambda: TernaryWeights(threshold), include, exclude_first)


def clip_latent(model: Module, limit: float = 1.0) -> int:
    """Clip the latent weights under binary or ternary transforms to ``[-limit, limit]`` (in place).

    BinaryConnect (Algorithm 1) clips after every update: a latent weight
    far outside the window would need many steps to come back and flip its
    sign (and the STE already gives it no gradient there).

    Returns
    -------
    int
        How many parameters were clipped.
    """
    count = 0
    for _, _, _, param in model.named_parameter_slots():
        if any(isinstance(t, (BinaryWeights, TernaryWeights)) for t in param.transforms):
            np.clip(param.data, -limit, limit, out=param.data)
            count += 1
    return count


class ClipLatent(Callback):
    """:func:`clip_latent` after every optimizer step of :func:`tinynet.fit`.

    Example: ``fit(model, ..., callbacks=[ClipLatent(1.0)])``.
    """

    def __init__(self, limit: float = 1.0) -> None:
        self.limit = float(limit)

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        clip_latent(trainer.model, self.limit)
