"""Optimizers and gradient clipping (PyTorch ``torch.optim``; schedules in ``tinynet.lr_scheduler``).

One training step, as in PyTorch::

    optimizer.zero_grad()              # every .grad back to None
    loss = criterion(model(x), y)
    model.backward(criterion.backward())   # fills .grad (gradients accumulate!)
    clip_grad_norm_(model.parameters(), max_norm=5.0)   # optional
    optimizer.step()                   # moves every .data against its .grad
    ...
    scheduler.step()                   # once per epoch: sets the next learning rate

The update rules are PyTorch's, line for line (same numbers in float64), so a
recipe tuned here carries over. Updates happen in place on ``p.data`` and keep
its dtype: float32 parameters stay float32.

Parameters whose ``grad`` is None or that are frozen (``requires_grad`` is
False) are skipped: they do not move and get no optimizer state.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tinynet.parameter import Parameter

ParamsLike = Iterable[Parameter] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class (PyTorch ``torch.optim.Optimizer``): parameter groups and state.

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        Either the parameters (``model.parameters()``), or *parameter groups*:
        dicts with a ``"params"`` list and any hyperparameters that differ from
        ``defaults``, e.g. a smaller learning rate for the centroids of weight
        sharing::

            SGD([{"params": weights}, {"params": centroids, "lr": 1e-3}], lr=0.1)
    defaults : dict
        Hyperparameters for groups that do not set their own.

    Attributes
    ----------
    param_groups : list of dict
        Each group: ``"params"`` (list of Parameter) and its hyperparameters
        (``"lr"``...). Learning-rate schedulers change ``group["lr"]``.
    state : dict of Parameter -> dict
        Per-parameter memory, under PyTorch's names: ``"momentum_buffer"``
        (SGD), ``"step"``, ``"exp_avg"``, ``"exp_avg_sq"`` (Adam).
    """

    def __init__(self, params: ParamsLike, defaults: dict[str, Any]) -> None:
        self._check_hyperparameters(defaults)
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        if isinstance(params, (Parameter, dict, np.ndarray)):
            raise TypeError(
                f"{type(self).__name__} expected an iterable of Parameters or of dicts "
                f"(parameter groups), got a single {type(params).__name__}; "
                "pass model.parameters() or [param]"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        """Raise ValueError for a hyperparameter outside its range."""
        for name in ("lr", "momentum", "weight_decay", "eps"):
            if name in group and not group[name] >= 0.0:  # `not >=` also catches NaN
                raise ValueError(f"invalid {name}: expected a number >= 0, got {group[name]}")
        if "betas" in group:
            for i, beta in enumerate(group["betas"]):
                if not 0.0 <= beta < 1.0:
                    raise ValueError(f"invalid betas[{i}]: expected a number in [0, 1), got {beta}")

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Append a parameter group; missing hyperparameters come from ``defaults``.

        Raises ValueError if a parameter is already in a group (it would be
        updated twice per step) and TypeError for anything but Parameters.
        """
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(
                f"a parameter group must be a dict with a 'params' entry, got {group!r}"
            )
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("parameter group 'params' must be an ordered list, not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers update Parameters, got a {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if id(p) in seen:
                raise ValueError(
                    f"{p!r} is listed in more than one parameter group (or twice in one): "
                    "it would be updated twice per step"
                )
            seen.add(id(p))
        group = {**self.defaults, **group, "params": params}
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every gradient: to None (default, as PyTorch), or fill with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.fill(0)

    def step(self) -> None:
        """Update every parameter that has a gradient; override in every optimizer."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step")

    @staticmethod
    def _params_with_grad(group: dict[str, Any]) -> Iterator[tuple[Parameter, np.ndarray]]:
        """Yield ``(p, grad)`` for the group's trainable parameters that have a gradient."""
        for p in group["params"]:
            if p.requires_grad and p.grad is not None:
                yield p, p.grad.astype(p.data.dtype, copy=False)

    def reset_state(self, param: Parameter, mask: np.ndarray | None = None) -> None:
        """Forget what the optimizer remembers about ``param`` (all, or where ``mask``).

        Momentum keeps moving a weight after its gradient stops. When pruning
        makes a mask permanent, or rewinds weights to their initial values
        (Frankle & Carbin 2019), the stale buffers should go too:

        - ``mask=None``: drop the whole state of ``param`` (momentum buffer,
          Adam's moments *and* its step count, so bias correction restarts):
          the next step treats it as a fresh parameter.
        - ``mask`` (bool array, shape of ``param``): zero the entries of every
          buffer (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``) where the
          mask is **True** (True = forget; pass ``~keep_mask`` for a pruning
          mask). The step count is kept.

        An entry whose gradient stays 0 afterwards (a pruned weight) then never
        moves again: its buffers stay 0 (Adam: ``0 / (0 + eps) = 0``), barring
        weight decay. Caveat: an Adam entry that *does* keep training restarts
        its moments from 0 while the bias correction assumes a long history,
        so its next few steps are up to ~3x larger than usual; for rewound
        weights prefer ``mask=None`` or a new optimizer.

        Not in PyTorch (there one edits ``optimizer.state[p]`` by hand).
        """
        if not any(p is param for group in self.param_groups for p in group["params"]):
            raise ValueError(f"reset_state: {param!r} is not updated by this optimizer")
        if mask is None:
            self.state.pop(param, None)
            return
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(
                f"reset_state expected a boolean mask (True = forget), got {mask.dtype}"
            )
        if mask.shape != param.shape:
            raise ValueError(
                f"reset_state expected a mask of shape {param.shape} (the parameter's), "
                f"got {mask.shape}"
            )
        for buffer in self.state.get(param, {}).values():
            if isinstance(buffer, np.ndarray) and buffer.shape == param.shape:
                buffer[mask] = 0

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {settings}")
        return "\n".join([*lines, ")"])


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum (PyTorch ``torch.optim.SGD``).

    For each parameter ``p`` with gradient ``g``, at step ``t``:

    .. math::

        g &\leftarrow g + \lambda p                       && \text{weight decay (L2)} \\
        b_t &= g \text{ if } t = 1 \text{ else } \mu b_{t-1} + (1 - \tau) g
                                                          && \text{momentum buffer} \\
        g &\leftarrow g + \mu b_t \text{ (Nesterov) else } b_t \\
        p &\leftarrow p - \eta g

    with learning rate ``eta = lr``, ``mu = momentum``, ``tau = dampening``,
    ``lambda = weight_decay``. Without momentum it is plain ``p -= lr * g``.
    This is PyTorch's convention (Sutskever et al. 2013 put ``lr`` inside the
    buffer instead): the buffer holds a decaying sum of gradients and ``lr``
    multiplies it at the end, so changing ``lr`` mid-run changes the step at once.

    Parameters
    ----------
    params : iterable of Parameter or of dict (parameter groups)
    lr : float
        Required.
    momentum, dampening, weight_decay : float, default 0
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def step(self) -> None:
        """Apply one SGD update to every parameter that has a gradient."""
        for group in self.param_groups:
            lr = float(group["lr"])  # Python floats never promote float32 arrays
            momentum = float(group["momentum"])
            dampening = float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            for p, g in self._params_with_grad(group):
                if weight_decay != 0:
                    g = g + weight_decay * p.data  # a new array: p.grad is left as it was
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        # np.array (not g.copy()): an array even for a 0-d parameter
                        buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype)
                    else:
                        buf *= momentum
                        buf += (1.0 - dampening) * g
                    g = g + momentum * buf if group["nesterov"] else buf
                p.data -= lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015; PyTorch ``torch.optim.Adam``).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``
    (``m_0 = v_0 = 0``):

    .. math::

        g &\leftarrow g + \lambda p          && \text{(Adam: L2 in the gradient)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g      && \text{exp\_avg} \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2    && \text{exp\_avg\_sq} \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}
             \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Dividing by ``1 - beta^t`` (bias correction) undoes the pull of the zero
    initialisation during the first steps. ``eps`` is added *after* the bias
    correction of ``sqrt(v)``, exactly where PyTorch adds it.

    Parameters
    ----------
    params : iterable of Parameter or of dict (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
        L2 penalty added to the gradient (so it is rescaled by Adam like the
        gradient). For the decoupled form use :class:`AdamW`.
    decoupled_weight_decay : bool, default False
        True gives AdamW's rule (PyTorch's argument of the same name).
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def step(self) -> None:
        """Apply one Adam (or AdamW) update to every parameter that has a gradient."""
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            weight_decay = float(group["weight_decay"])
            for p, g in self._params_with_grad(group):
                state = self.state[p]
                if not state:  # first step of this parameter
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(p.data)
                    state["exp_avg_sq"] = np.zeros_like(p.data)
                state["step"] += 1
                t = state["step"]
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1.0 - lr * weight_decay  # AdamW: shrink the weight itself
                    else:
                        g = g + weight_decay * p.data  # Adam: L2 gradient
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m *= beta1
                m += (1.0 - beta1) * g
                v *= beta2
                v += (1.0 - beta2) * (g * g)
                bias_correction1 = 1.0 - beta1**t
                bias_correction2 = 1.0 - beta2**t
                denom = np.sqrt(v) / math.sqrt(bias_correction2)
                denom += eps
                p.data -= (lr / bias_correction1) * (m / denom)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019; ``torch.optim.AdamW``).

    Exactly :class:`Adam`'s update, except that weight decay does not enter
    the gradient (where Adam's per-entry scaling would weaken it for entries
    with large gradients); before the Adam step the weight shrinks directly:

    .. math::

        p \leftarrow p \, (1 - \eta \lambda)

    Note the default ``weight_decay=1e-2`` (PyTorch's).
    """

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)


# ------------------------------------------------------------ grad clipping
def clip_grad_norm_(
    parameters: Parameter | Iterable[Parameter],
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    r"""Rescale gradients in place so their joint norm is at most ``max_norm``.

    PyTorch ``torch.nn.utils.clip_grad_norm_``. All gradients (parameters
    whose ``grad`` is None are skipped) are treated as one long vector:

    .. math::

        \|g\| = \Big(\sum_{\text{params}} \|g_p\|^q\Big)^{1/q}, \qquad
        g_p \leftarrow g_p \cdot \min\Big(1, \frac{\text{max\_norm}}{\|g\| + 10^{-6}}\Big)

    (``q = norm_type``; for ``inf``, the largest absolute entry). Clipping
    the joint norm keeps the gradient's *direction* and only shortens it.

    Returns
    -------
    float
        The total norm *before* clipping (useful to log). A non-finite norm
        (an ``inf`` or ``nan`` gradient) is returned as is, and the clipped
        gradients are then ``nan`` (as in PyTorch), unless
        ``error_if_nonfinite`` raises a RuntimeError.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    q = float(norm_type)
    if q == math.inf:
        norms = [float(np.max(np.abs(g))) if g.size else 0.0 for g in grads]
        total_norm = max(norms)
    else:
        norms = [float(np.linalg.norm(g.ravel(), ord=q)) for g in grads]
        total_norm = float(np.linalg.norm(np.array(norms), ord=q))
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(
            f"the total norm of order {q} of the gradients is {total_norm}: "
            "a gradient holds inf or nan, so clipping cannot fix it"
        )
    clip_coef = float(max_norm) / (total_norm + 1e-6)
    clip_coef = clip_coef if clip_coef < 1.0 or math.isnan(clip_coef) else 1.0  # nan stays nan
    for g in grads:
        g *= clip_coef
    return total_norm


__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "clip_grad_norm_",
]
