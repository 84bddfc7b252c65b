"""Gradient checking: compare a hand-written backward pass with finite differences.

For a function ``y = f(x)`` and a random upstream gradient ``G`` (same shape
as ``y``), the scalar ``L = sum(G * f(x))`` has

    dL/dx[i] = ( L(x + eps e_i) - L(x - eps e_i) ) / (2 eps) + O(eps^2)

(central differences). The backward pass under test must return the same
numbers. A *random* ``G`` matters: with ``G = 1`` every gradient that sums to
zero over the batch (BatchNorm's, softmax's) would pass even when wrong.

Everything runs in float64 (``eps = 1e-6`` gives about 1e-9 relative
accuracy there; in float32 the same check would fail on round-off alone).
A failure raises :class:`GradcheckError` naming the tensor, the index, and
the analytic and numeric values. This is CS231n's ``eval_numerical_gradient``
and PyTorch's ``torch.autograd.gradcheck``, made to assert.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from tinynet.module import Module


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numeric one."""


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    dout: np.ndarray | float,
    eps: float = 1e-6,
    indices: list[tuple[int, ...]] | None = None,
) -> np.ndarray:
    """Central-difference estimate of ``d sum(dout * f(x)) / dx``.

    Parameters
    ----------
    f : callable
        Maps an array shaped like ``x`` to an array shaped like ``dout``
        (or a float, with ``dout`` a float). ``x`` is changed in place and
        restored.
    x : ndarray, float64
    dout : ndarray or float
        Upstream gradient ``G``.
    eps : float
        Step size.
    indices : list of index tuples, optional
        Only these entries are estimated (others are left NaN).

    Returns
    -------
    ndarray, shape of x
    """
    grad = np.full(x.shape, np.nan)
    targets = indices if indices is not None else list(np.ndindex(x.shape))
    for idx in targets:
        old = x[idx]
        x[idx] = old + eps
        plus = float(np.sum(np.asarray(f(x)) * dout))
        x[idx] = old - eps
        minus = float(np.sum(np.asarray(f(x)) * dout))
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def _sample(shape: tuple[int, ...], max_checks: int | None, rng: np.random.Generator) -> list:
    size = int(np.prod(shape))
    if max_checks is None or size <= max_checks:
        return list(np.ndindex(shape))
    flat = rng.choice(size, size=max_checks, replace=False)
    return [np.unravel_index(i, shape) for i in sorted(flat)]


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, indices, atol, rtol) -> float:
    worst = 0.0
    for idx in indices:
        a, n = float(analytic[idx]), float(numeric[idx])
        err = abs(a - n) / max(abs(a), abs(n), 1e-12)
        if abs(a - n) > atol + rtol * abs(n):
            raise GradcheckError(
                f"gradient check failed for {name} at index {tuple(int(i) for i in idx)}: "
                f"analytic {a:.10g}, numeric {n:.10g} (relative error {err:.3g})"
            )
        if abs(a - n) > atol:
            worst = max(worst, err)
    return worst


def gradcheck(
    target: Module | Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    backward: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    max_checks: int | None = 100,
    check_input: bool = True,
    check_params: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Check a module's (or a function's) gradient against central differences.

    For a :class:`Module`, a float64 deep copy is checked (the original is
    untouched): dL/dx returned by ``backward`` and dL/dW accumulated in every
    parameter's ``grad`` (for parameters with transforms, the gradient of
    the latent value through the chain). For a plain function ``f(x)``,
    pass ``backward(x, dout) -> dx``.

    Parameters
    ----------
    target : Module or callable
    x : ndarray
        Input; converted to float64.
    backward : callable, optional
        Required when ``target`` is a function.
    eps, atol, rtol : float
        Step size and tolerance: an entry fails when
        ``|analytic - numeric| > atol + rtol * |numeric|``.
    max_checks : int or None
        Entries sampled per tensor (None checks every entry).
    check_input, check_params : bool
        Which gradients to check.
    seed : int
        Seeds the upstream gradient and the sampled entries.

    Returns
    -------
    dict
        Largest relative error per checked tensor (``"input"``, ``"0.weight"``...).

    Raises
    ------
    GradcheckError
        With the tensor name, index, analytic and numeric values.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64, copy=True)
    report: dict[str, float] = {}

    if not isinstance(target, Module):
        if backward is None:
            raise TypeError("gradcheck of a plain function needs backward=(x, dout) -> dx")
        out = np.asarray(target(x.copy()), dtype=np.float64)
        dout = rng.standard_normal(out.shape)
        analytic = np.asarray(backward(x.copy(), dout))
        if analytic.shape != x.shape:
            raise GradcheckError(f"backward returned shape {analytic.shape}, expected {x.shape}")
        idx = _sample(x.shape, max_checks, rng)
        numeric = numerical_gradient(lambda z: target(z.copy()), x, dout, eps, idx)
        report["input"] = _compare("input", analytic, numeric, idx, atol, rtol)
        return report

    module = copy.deepcopy(target).astype(np.float64)
    module.requires_input_grad = True
    module.zero_grad()
    out = module(x.copy())
    dout = rng.standard_normal(out.shape)
    dx = module.backward(dout)

    def loss_of_input(z: np.ndarray) -> np.ndarray:
        return module(z.copy())

    if check_input:
        if dx is None or np.shape(dx) != x.shape:
            raise GradcheckError(
                f"backward returned {None if dx is None else np.shape(dx)}, expected dx of shape {x.shape}"
            )
        idx = _sample(x.shape, max_checks, rng)
        numeric = numerical_gradient(loss_of_input, x, dout, eps, idx)
        report["input"] = _compare("input", dx, numeric, idx, atol, rtol)

    if check_params:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            analytic = param.grad if param.grad is not None else np.zeros_like(param.data)

            def loss_of_param(w: np.ndarray, p: Any = param) -> np.ndarray:
                p.data = w
                return module(x.copy())

            idx = _sample(param.shape, max_checks, rng)
            data = param.data.copy()
            numeric = numerical_gradient(loss_of_param, data, dout, eps, idx)
            param.data = data
            report[name] = _compare(name, analytic, numeric, idx, atol, rtol)
    return report


def check_loss(
    criterion: Any,
    outputs: np.ndarray,
    *targets: Any,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    max_checks: int | None = 100,
    seed: int = 0,
) -> float:
    """Check a loss object's ``backward()`` (d loss / d outputs) numerically.

    ``criterion(outputs, *targets)`` must return a float and
    ``criterion.backward()`` the gradient with respect to ``outputs``
    (the loss contract of :mod:`tinynet.losses`).

    Returns
    -------
    float
        The largest relative error over the checked entries.
    """
    rng = np.random.default_rng(seed)
    z = np.array(outputs, dtype=np.float64, copy=True)
    criterion(z.copy(), *targets)
    analytic = np.asarray(criterion.backward())
    idx = _sample(z.shape, max_checks, rng)
    numeric = numerical_gradient(lambda v: criterion(v.copy(), *targets), z, 1.0, eps, idx)
    return _compare(type(criterion).__name__, analytic, numeric, idx, atol, rtol)
