r"""Knowledge distillation (Hinton, Vinyals and Dean 2015): the loss and its gradient by hand.

A *student* learns from the labels and from a trained *teacher*'s softened
output distribution. With logits ``s`` (student) and ``t`` (teacher) of
shape (N, C), labels ``y``, temperature ``T > 0`` and weight ``alpha``::

    p_T = softmax(s / T)            q_T = softmax(t / T)       (soft targets)

    loss = (1 - alpha) * CE(s, y)  +  alpha * T^2 * KL(q_T || p_T)

    KL(q || p) = (1/N) sum_n sum_c q[n, c] * (log q[n, c] - log p[n, c])

Both terms are *batch means*: the KL divergence is summed over the classes
and averaged over the N examples (PyTorch's ``kl_div(..., reduction=
"batchmean")``; ``reduction="mean"`` would also divide by C, a common bug).

The gradient, derived by hand. For the hard term the usual
``dCE/ds = (softmax(s) - onehot(y)) / N``. For the soft term, with
``u = s / T``, ``KL = sum q (log q - log_softmax(u))`` and
``d log_softmax(u)_c / du_j = 1[c = j] - p_j``::

    dKL/du = (p_T - q_T) / N            (sum_c q_c = 1)
    dKL/ds = (p_T - q_T) / (N T)

    d loss / ds = (1 - alpha) (softmax(s) - onehot(y)) / N  +  alpha * T * (p_T - q_T) / N

**Why T^2.** The soft term's gradient carries a factor ``1/T`` from the
chain rule, and for large ``T`` ``p_T - q_T ~ (s - t) / (C T)`` carries
another: without the ``T^2`` the soft targets' gradient would shrink like
``1/T^2`` as the temperature rises, and the hard term would take over. With
it the two keep their relative size at any ``T`` (Hinton et al., Sec. 2).
Lesson 07 shows the mistake by removing the factor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinynet.losses import log_softmax

__all__ = ["KDLoss", "check_kd_arguments", "kd_loss"]


def check_kd_arguments(
    student_logits: Any, teacher_logits: Any, labels: Any, T: Any, alpha: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Validate and convert the arguments of :func:`kd_loss`; raise a ``ValueError`` that says what."""
    s = np.asarray(student_logits)
    t = np.asarray(teacher_logits)
    y = np.asarray(labels)
    if s.ndim != 2:
        raise ValueError(f"student_logits must have shape (N, C), got {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have the student's shape {s.shape}, got {t.shape}")
    if y.shape != (s.shape[0],):
        raise ValueError(
            f"labels must have shape ({s.shape[0]},) for {s.shape[0]} logits, got {y.shape}"
        )
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= s.shape[1])):
        raise ValueError(f"labels must be integers in [0, {s.shape[1]}), got {y.dtype} {y[:5]}...")
    if isinstance(T, bool) or not isinstance(T, int | float | np.floating | np.integer):
        raise TypeError(f"T (temperature) must be a number, got {type(T).__name__}")
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"T (temperature) must be positive and finite, got {T}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating | np.integer):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if s.dtype.kind != "f":
        s = s.astype(np.float32)
    return s, t.astype(s.dtype, copy=False), y, float(T), float(alpha)


def kd_loss(
    student_logits: Any, teacher_logits: Any, labels: Any, T: float, alpha: float
) -> tuple[float, np.ndarray]:
    """Distillation loss and its gradient with respect to the student's logits.

    Parameters
    ----------
    student_logits, teacher_logits : ndarray, shape (N, C)
    labels : ndarray of int, shape (N,)
    T : float > 0
        Temperature of the soft targets (Hinton et al.: 20 for MNIST).
    alpha : float in [0, 1]
        Weight of the soft term; 0 is plain cross-entropy, 1 soft targets only.

    Returns
    -------
    loss : float
        ``(1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))``,
        batch mean.
    d_student_logits : ndarray, shape (N, C), the student's dtype
        The gradient derived in the module docstring.

    Computed with ``log_softmax`` (shifted by the row maximum), so logits of
    1e4 give finite numbers; a class the teacher gives probability exactly
    0 contributes 0 to the KL divergence (``0 * log 0 = 0``).

    Examples
    --------
    Equal logits: the soft term vanishes, the loss is the cross-entropy
    ``log 2`` times ``1 - alpha``.

    >>> loss, grad = kd_loss([[0.0, 0.0]], [[0.0, 0.0]], [0], T=4.0, alpha=0.5)
    >>> round(loss, 6), grad.tolist()
    (0.346574, [[-0.25, 0.25]])
    """
    s, t, y, T, alpha = check_kd_arguments(student_logits, teacher_logits, labels, T, alpha)
    n = s.shape[0]
    rows = np.arange(n)
    log_p = log_softmax(s)
    ce = -float(log_p[rows, y].mean())
    log_p_T = log_softmax(s / s.dtype.type(T))
    log_q_T = log_softmax(t / t.dtype.type(T))
    q_T = np.exp(log_q_T)
    kl_terms = np.where(q_T > 0, q_T * (log_q_T - log_p_T), 0.0)
    kl = float(kl_terms.sum() / n)
    loss = (1 - alpha) * ce + alpha * T * T * kl

    d_hard = np.exp(log_p)
    d_hard[rows, y] -= 1
    d_soft = np.exp(log_p_T) - q_T
    grad = ((1 - alpha) * d_hard + (alpha * T) * d_soft) / n
    return loss, grad.astype(s.dtype, copy=False)


class KDLoss:
    """:func:`kd_loss` behind the loss contract of ``tinynet.fit``.

    ``loss = crit(student_logits, labels, teacher_logits)`` returns a float and
    ``crit.backward()`` the gradient with respect to ``student_logits``. Feed
    ``fit`` batches ``(x, labels, teacher_logits)``: cached teacher outputs in
    a ``DataLoader`` for a fixed dataset, or
    :class:`~compression.distillation.TeacherBatches` when the inputs are
    augmented (the teacher must see the same shifted images).

    Parameters
    ----------
    T : float > 0
    alpha : float in [0, 1]
    """

    def __init__(self, T: float, alpha: float) -> None:
        check_kd_arguments(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1, int), T, alpha)
        self.T, self.alpha = float(T), float(alpha)
        self._grad: np.ndarray | None = None

    def __call__(self, student_logits: np.ndarray, labels: np.ndarray, *extra: np.ndarray) -> float:
        if len(extra) != 1:
            raise ValueError(
                "KDLoss needs batches (x, labels, teacher_logits): got "
                f"{1 + len(extra)} target array(s) instead of 2"
            )
        loss, self._grad = kd_loss(student_logits, extra[0], labels, self.T, self.alpha)
        return loss

    def backward(self) -> np.ndarray:
        if self._grad is None:
            raise RuntimeError("KDLoss.backward() called before the loss was computed")
        return self._grad

    def __repr__(self) -> str:
        return f"KDLoss(T={self.T:g}, alpha={self.alpha:g})"
