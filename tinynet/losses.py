"""Losses: a number to minimise, and its gradient with respect to the outputs.

Every loss in tinynet (and in ``compression``: distillation, hints,
penalties) follows one contract, the one :func:`tinynet.fit` relies on::

    crit = CrossEntropyLoss()
    loss = crit(outputs, targets)   # a Python float, mean over the batch
    dout = crit.backward()          # d loss / d outputs, same shape and dtype as outputs
    model.backward(dout)            # ...and from there back through the network

``forward`` keeps what ``backward`` needs in ``self.cache`` (only while
gradients are enabled, see :func:`tinynet.no_grad`), exactly like a layer.
Unlike a layer, ``backward`` takes no argument: the loss is the end of the
chain, so its upstream gradient is ``d loss / d loss = 1``.

The numerically careful parts are :func:`log_softmax` (log-sum-exp with the
maximum subtracted) and the fused softmax + cross-entropy gradient
``(softmax(z) - onehot(y)) / N``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinynet.grad_mode import is_grad_enabled


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""Stable ``log(softmax(z))`` along ``axis`` (PyTorch ``F.log_softmax``).

    .. math::

        \log \mathrm{softmax}(z)_c = z_c - m - \log \sum_k e^{z_k - m},
        \qquad m = \max_k z_k

    Subtracting the maximum changes nothing mathematically (it cancels) but
    makes the largest exponent ``e^0 = 1``: nothing overflows, and the sum is
    at least 1, so its log is finite. ``exp(1000)`` alone would be ``inf``.

    Parameters
    ----------
    z : ndarray, shape (..., C, ...)
        Logits (any floating dtype; the result has the same dtype).
    axis : int
        The class axis.

    Returns
    -------
    ndarray, same shape as z
        Log-probabilities; ``exp`` of them sums to 1 along ``axis``.
    """
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable ``softmax(z)_c = e^{z_c - m} / sum_k e^{z_k - m}``, ``m = max_k z_k``.

    PyTorch ``F.softmax``. Same shape and dtype as ``z``; sums to 1 along
    ``axis``. See :func:`log_softmax` for why the maximum is subtracted.
    """
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


class Loss:
    """Base class of every loss: the loss contract.

    - ``loss = crit(outputs, *targets)`` calls :meth:`forward` and returns a
      Python ``float``, the **mean** over the batch (PyTorch's default
      ``reduction="mean"``).
    - ``forward`` stores what the gradient needs in ``self.cache`` (only
      when :func:`tinynet.is_grad_enabled`; under ``tinynet.no_grad()`` the
      loss is still computed, e.g. for validation, but nothing is kept).
    - ``crit.backward()`` returns ``d loss / d outputs``: same shape and dtype
      as ``outputs`` (float32 in, float32 out). It uses the cache of the most
      recent forward; calling it with no cache raises a ``RuntimeError``
      that says so.

    Subclasses implement ``forward`` and ``backward``.
    """

    def __init__(self) -> None:
        self.cache: Any = None

    def __call__(self, outputs: np.ndarray, *targets: Any) -> float:
        return self.forward(outputs, *targets)

    def forward(self, outputs: np.ndarray, *targets: Any) -> float:
        """Return the mean loss as a float; override in every loss."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self) -> np.ndarray:
        """Return d loss / d outputs; override in every loss."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _no_cache_error(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}.backward() called without a cached forward pass: "
            "first compute loss = criterion(outputs, targets) with gradients enabled "
            "(not inside tinynet.no_grad())"
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _check_floating(name: str, what: str, x: np.ndarray) -> None:
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} expected floating-point {what}, got dtype {x.dtype}")


class CrossEntropyLoss(Loss):
    r"""Softmax cross-entropy on logits (PyTorch ``nn.CrossEntropyLoss``).

    Forward, for logits ``z`` of shape (N, C) and class indices ``y``:

    .. math::

        L = \frac{1}{N} \sum_i -\log \mathrm{softmax}(z_i)_{y_i}

    With ``label_smoothing = eps`` the one-hot target becomes
    ``q = (1 - eps) onehot(y) + eps / C`` and ``L = mean_i sum_c -q_ic log p_ic``
    (Szegedy et al. 2016; exactly PyTorch's definition).

    Backward (fused):

    .. math::

        \frac{\partial L}{\partial z_{ic}} = \frac{p_{ic} - q_{ic}}{N},
        \qquad p = \mathrm{softmax}(z)

    Why fuse? Backpropagating through the two steps separately needs
    ``dL/dp_y = -1 / p_y``, which is huge or ``inf`` when the model is
    confidently wrong (``p_y`` underflows to 0 for logit gaps of ~100 in
    float32), and then multiplies it by the softmax Jacobian
    ``diag(p) - p p^T``, whose entries are tiny: ``inf * 0 = nan``. Doing
    the algebra by hand first, the ``1 / p_y`` cancels and what is left,
    ``p - q``, is a difference of two numbers in [0, 1]: bounded, and computed
    from the stable softmax. That is why PyTorch's loss takes logits, not
    probabilities.

    Parameters
    ----------
    label_smoothing : float in [0, 1], default 0.0

    Notes
    -----
    Only ``reduction="mean"``, no class ``weight`` and no ``ignore_index``
    (PyTorch skips targets equal to -100; here they are an error).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _check(self, z: np.ndarray, y: np.ndarray) -> None:
        name = type(self).__name__
        if z.ndim != 2:
            raise ValueError(f"{name} expected logits of shape (N, C), got {z.shape}")
        _check_floating(name, "logits", z)
        N, C = z.shape
        if y.shape != (N,):
            hint = ": targets are class indices, not one-hot vectors" if y.shape == z.shape else ""
            raise ValueError(f"{name} expected targets of shape ({N},), got {y.shape}{hint}")
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(
                f"{name} expected integer class indices, got targets of dtype {y.dtype}"
            )
        if N == 0:
            raise ValueError(f"{name} got an empty batch: logits of shape {z.shape}")
        bad = (y < 0) | (y >= C)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"{name} targets must be class indices in [0, {C}), got {int(y[i])} at position {i}"
            )

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy of logits ``z`` (N, C) against class indices ``y`` (N,)."""
        z = np.asarray(z)
        y = np.asarray(y)
        self._check(z, y)
        N, C = z.shape
        logp = log_softmax(z, axis=1)  # (N, C)
        nll = -logp[np.arange(N), y]  # (N,)  -log p_{i, y_i}
        eps = self.label_smoothing
        if eps > 0.0:
            # sum_c -q_ic log p_ic = (1 - eps) * nll_i + eps * mean_c(-log p_ic)
            per_sample = (1.0 - eps) * nll - eps * np.mean(logp, axis=1)
        else:
            per_sample = nll
        self.cache = (np.exp(logp), y) if is_grad_enabled() else None
        return float(np.mean(per_sample))

    def backward(self) -> np.ndarray:
        """Return ``dz = (softmax(z) - q) / N``, shape (N, C), dtype of the logits."""
        if self.cache is None:
            raise self._no_cache_error()
        p, y = self.cache
        N, C = p.shape
        eps = self.label_smoothing
        dz = p - eps / C if eps > 0.0 else p.copy()  # subtract the uniform part of q
        dz[np.arange(N), y] -= 1.0 - eps  # ...and its one-hot part
        dz /= N
        return dz

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""


class MSELoss(Loss):
    r"""Mean squared error (PyTorch ``nn.MSELoss``).

    .. math::

        L = \frac{1}{n} \sum_j (y_j - t_j)^2, \qquad
        \frac{\partial L}{\partial y_j} = \frac{2 (y_j - t_j)}{n}

    where ``n`` is the number of elements (the mean is over *all* of them,
    batch and features, as in PyTorch).

    ``outputs`` and ``targets`` must have the same shape (PyTorch would
    broadcast with a warning, which hides bugs such as (N, 1) against (N,)).
    Targets are cast to the outputs' dtype, so float32 outputs give a float32
    gradient.
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Mean of ``(outputs - targets)**2`` over every element."""
        name = type(self).__name__
        y = np.asarray(outputs)
        t = np.asarray(targets)
        if y.shape != t.shape:
            raise ValueError(
                f"{name} expected outputs and targets of the same shape, "
                f"got outputs {y.shape} and targets {t.shape}"
            )
        _check_floating(name, "outputs", y)
        if y.size == 0:
            raise ValueError(f"{name} got empty outputs of shape {y.shape}")
        diff = y - t.astype(y.dtype, copy=False)
        self.cache = diff if is_grad_enabled() else None
        return float(np.mean(diff * diff))

    def backward(self) -> np.ndarray:
        """Return ``2 (outputs - targets) / n``, same shape and dtype as the outputs."""
        if self.cache is None:
            raise self._no_cache_error()
        diff = self.cache
        return diff * (2.0 / diff.size)
