"""Low-rank factorisation of a model: each chosen layer becomes two thinner layers.

A structural rewrite (like folding BatchNorm or thinning): it returns a *new*
model and never changes the one it is given.

**Linear.** ``Linear(in, out)`` with weight ``W`` (out, in) and bias ``b``
computes ``x @ W.T + b``. With the rank-``r`` factors ``A`` (out, r) and
``B`` (r, in) of :func:`~compression.lowrank.svd.low_rank_factors`
(``A @ B = W_r``, the truncated SVD)::

    x @ W_r.T + b = (x @ B.T) @ A.T + b

which is two ordinary layers, one after the other::

    Linear(in, out)  ->  Sequential(Linear(in, r, bias=False),   # weight B (r, in)
                                    Linear(r, out))              # weight A (out, r), bias b

**Conv2d.** The weight ``(C_out, C_in, kh, kw)`` is reshaped to the matrix
``(C_out, C_in*kh*kw)`` and factored the same way. Row ``k`` of ``B``,
reshaped to ``(C_in, kh, kw)``, is one filter ``B_k`` (all of ``B``: ``(r,
C_in, kh, kw)``); ``A`` mixes the ``r`` filter responses at each pixel, a 1x1
convolution of weight ``(C_out, r, 1, 1)``. A convolution is linear in its
weight, so ``conv(x, sum_k A[o, k] B_k) = sum_k A[o, k] conv(x, B_k)``::

    Conv2d(C_in, C_out, (kh, kw), stride, padding)
      -> Sequential(Conv2d(C_in, r, (kh, kw), stride, padding, bias=False),  # B, reshaped
                    Conv2d(r, C_out, 1))                                      # A, reshaped; b

This is the "spatial then pointwise" scheme of Denton et al. 2014 (their
"monochromatic"/biclustering variants and Jaderberg et al. 2014's separable
``kh x 1`` then ``1 x kw`` filters go further).

**Where the new layers go.** The pair sits in the old layer's slot as a
nested ``Sequential``, so no other layer's index moves: in LeNet-300-100
(``Flatten, Linear, ReLU, Linear, ReLU, Linear``) factorising layer ``"1"``
gives the keys ``"1.0.weight"`` (B), ``"1.1.weight"`` (A) and ``"1.1.bias"``,
and ``"3.weight"`` keeps its name. Only existing layer types are used, so
``compression.storage.save_compressed`` / ``load_compressed`` store and
rebuild the factored model unchanged; a PyTorch user writes the same
``nn.Sequential(nn.Linear(in, r, bias=False), nn.Linear(r, out))``.

**The saving rule.** A rank-``r`` pair stores ``r * (m + n)`` weights for an
``(m, n)`` matrix; when that is not less than ``m * n`` the layer is left as
it is (:func:`low_rank` never factorises without a saving).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from compression.lowrank.svd import (
    check_rank,
    energy_kept,
    low_rank_factors,
    rank_for_energy,
    saves_parameters,
    singular_values,
    weight_matrix,
)
from compression.storage.architecture import global_rng_untouched
from tinynet.layers import Conv2d, Linear
from tinynet.module import Module, Sequential
from tinynet.parameter import Parameter

__all__ = [
    "LayerRank",
    "choose_ranks",
    "count_parameters",
    "factorizable_layers",
    "factorize_conv2d",
    "factorize_layer",
    "factorize_linear",
    "low_rank",
    "lowrank_report",
    "rank_table",
]

WEIGHTED = (Linear, Conv2d)


# ------------------------------------------------------------ one layer


def _plain_weights(layer: Linear | Conv2d, name: str = "the layer") -> None:
    """Raise if the weight or bias carries transforms (masks, quantizers ...)."""
    for attr in ("weight", "bias"):
        param = getattr(layer, attr)
        if param is not None and param.transforms:
            kinds = [type(t).__name__ for t in param.transforms]
            raise ValueError(
                f"{name}'s {attr} carries transforms {kinds}: a mask's zeros or a quantizer's "
                "levels do not survive U S V^T; bake them in with tinynet.transforms.strip(model) "
                "(or factorise before pruning/quantizing)"
            )


def _set_parameter(layer: Module, attr: str, value: Any, like: Parameter) -> None:
    """``layer.<attr> = Parameter(value)`` with ``like``'s ``requires_grad``."""
    setattr(layer, attr, Parameter(value.copy(), requires_grad=like.requires_grad))


def _pair(first: Module, second: Module, old: Module) -> Sequential:
    """``Sequential(first, second)`` in ``old``'s training mode."""
    pair = Sequential(first, second)
    for module in (pair, first, second):
        module.training = old.training
    pair.requires_input_grad = old.requires_input_grad
    return pair


def factorize_linear(layer: Linear, rank: int) -> Sequential:
    """``Linear(in, out)`` -> ``Sequential(Linear(in, r, bias=False), Linear(r, out))``.

    Parameters
    ----------
    layer : Linear
        Weight ``W`` (out, in), bias ``b`` (out,) or None; no transforms.
    rank : int
        ``r`` in ``1..min(out, in)``.

    Returns
    -------
    Sequential
        ``[0]``: weight ``B = sqrt(s_r) V_r^T`` (r, in), no bias;
        ``[1]``: weight ``A = U_r sqrt(s_r)`` (out, r) and ``b`` (a bias
        only if the layer had one). ``x -> x @ (A @ B).T + b = x @ W_r.T + b``:
        at full rank the layer's outputs to rounding. Same dtype, training
        mode and ``requires_grad`` as ``layer``, which is not changed.
        PyTorch: ``nn.Sequential(nn.Linear(in, r, bias=False), nn.Linear(r, out))``.

    This function factorises at any valid rank, even one that saves nothing
    (``r * (in + out) >= in * out``, full rank included); :func:`low_rank`
    leaves such layers alone.
    """
    if not isinstance(layer, Linear):
        raise TypeError(f"factorize_linear expects a Linear, got {type(layer).__name__}")
    _plain_weights(layer)
    rank = check_rank(rank, layer.weight.shape)
    A, B = low_rank_factors(layer.weight.value(), rank)  # (out, r), (r, in)
    with global_rng_untouched():  # building layers draws default weights; replaced below
        first = Linear(layer.in_features, rank, bias=False)
        second = Linear(rank, layer.out_features, bias=layer.bias is not None)
    _set_parameter(first, "weight", B, layer.weight)
    _set_parameter(second, "weight", A, layer.weight)
    if layer.bias is not None:
        _set_parameter(second, "bias", layer.bias.value(), layer.bias)  # after weight: key order
    return _pair(first, second, layer)


def factorize_conv2d(layer: Conv2d, rank: int) -> Sequential:
    """``Conv2d(C_in, C_out, (kh, kw), s, p)`` -> a rank-``r`` spatial conv, then a 1x1 conv.

    Parameters
    ----------
    layer : Conv2d
        Weight ``W`` (C_out, C_in, kh, kw), seen as the matrix (C_out, C_in*kh*kw); no transforms.
    rank : int
        ``r`` in ``1..min(C_out, C_in*kh*kw)``.

    Returns
    -------
    Sequential
        ``[0]``: ``Conv2d(C_in, r, (kh, kw), stride, padding, bias=False)``,
        weight ``B.reshape(r, C_in, kh, kw)``; ``[1]``: ``Conv2d(r, C_out, 1)``,
        weight ``A.reshape(C_out, r, 1, 1)`` and the layer's bias. Together
        they compute the convolution with the rank-``r`` weight
        ``(A @ B).reshape(C_out, C_in, kh, kw)`` (Denton et al. 2014). Output
        size as the layer's: the 1x1 convolution keeps the spatial size.
    """
    if not isinstance(layer, Conv2d):
        raise TypeError(f"factorize_conv2d expects a Conv2d, got {type(layer).__name__}")
    _plain_weights(layer)
    W = weight_matrix(layer.weight.value())  # (C_out, C_in*kh*kw)
    rank = check_rank(rank, W.shape)
    A, B = low_rank_factors(W, rank)  # (C_out, r), (r, C_in*kh*kw)
    kh, kw = layer.kernel_size
    with global_rng_untouched():
        first = Conv2d(
            layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, bias=False
        )
        second = Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
    _set_parameter(first, "weight", B.reshape(rank, layer.in_channels, kh, kw), layer.weight)
    _set_parameter(second, "weight", A.reshape(layer.out_channels, rank, 1, 1), layer.weight)
    if layer.bias is not None:
        _set_parameter(second, "bias", layer.bias.value(), layer.bias)
    return _pair(first, second, layer)


def factorize_layer(layer: Linear | Conv2d, rank: int) -> Sequential:
    """:func:`factorize_linear` or :func:`factorize_conv2d`, by the layer's type."""
    if isinstance(layer, Linear):
        return factorize_linear(layer, rank)
    if isinstance(layer, Conv2d):
        return factorize_conv2d(layer, rank)
    raise TypeError(f"only Linear and Conv2d layers can be factorised, got {type(layer).__name__}")


# --------------------------------------------------------- choosing ranks


def factorizable_layers(model: Module) -> dict[str, Linear | Conv2d]:
    """Every ``Linear`` and ``Conv2d`` inside ``model``, by its name (``"1"``, ``"3"``...)."""
    return {name: m for name, m in model.named_modules() if name and isinstance(m, WEIGHTED)}


def _matrix_shape(layer: Linear | Conv2d) -> tuple[int, int]:
    """``(m, n)``: ``(out, in)`` or ``(C_out, C_in*kh*kw)``."""
    return layer.weight.shape[0], layer.weight.size // layer.weight.shape[0]


def _check_names(model: Module, names: Iterable[str]) -> dict[str, Linear | Conv2d]:
    """The named layers, or a ValueError listing the layers that could be named."""
    layers = factorizable_layers(model)
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise ValueError(
            f"unknown layer name(s) {unknown}: expected names of Linear/Conv2d layers of this "
            f"model, one of {sorted(layers)}"
        )
    return {name: layers[name] for name in names}


def choose_ranks(
    model: Module, energy: float, layers: Iterable[str] | None = None
) -> dict[str, int]:
    """Per layer, the smallest rank keeping ``energy`` of ``sum(s^2)``; only layers that save.

    Parameters
    ----------
    model : Module
    energy : float in (0, 1]
        Fraction of each weight matrix's squared Frobenius norm to keep
        (:func:`~compression.lowrank.svd.rank_for_energy`).
    layers : iterable of str, optional
        Layer names to consider (default: every ``Linear``/``Conv2d``).

    Returns
    -------
    dict of str -> int
        Name -> rank, in model order, for the layers where ``r * (m + n) <
        m * n``; a layer whose energy needs a rank that saves nothing is
        left out (it stays as it is).

    >>> from tinynet.models import lenet_300_100
    >>> import tinynet; _ = tinynet.manual_seed(0)
    >>> choose_ranks(lenet_300_100(), 0.5)   # random init: a flat spectrum, high ranks
    {'1': 82, '3': 29, '5': 4}
    """
    names = list(factorizable_layers(model)) if layers is None else list(layers)
    ranks = {}
    for name, layer in _check_names(model, names).items():
        _plain_weights(layer, f"layer {name!r}")
        W = weight_matrix(layer.weight.value())
        rank = rank_for_energy(singular_values(W), energy)
        if saves_parameters(*W.shape, rank):
            ranks[name] = rank
    return ranks


# ------------------------------------------------------------ the model


def _copy_without_hooks(model: Module) -> Module:
    """A deep copy without forward hooks and caches (as ``fold_batchnorm`` makes it)."""
    memo: dict[int, Any] = {}  # deepcopy takes what the memo already holds instead of copying
    for module in model.modules():
        memo[id(module._forward_hooks)] = OrderedDict()
        if module.cache is not None:
            memo[id(module.cache)] = None
    return copy.deepcopy(model, memo)


def low_rank(model: Module, ranks: Mapping[str, int]) -> Module:
    """A new model with each named layer replaced by its rank-``r`` factor pair.

    Parameters
    ----------
    model : Module
        Any tinynet model (normally a ``Sequential``); the named layers
        must carry no transforms (strip masks and quantizers first).
    ranks : dict of str -> int
        Layer name (as in ``model.named_modules()``: ``"1"``, or ``"0.2"``
        inside a nested Sequential) -> rank ``r`` in ``1..min(m, n)`` for its
        ``(m, n)`` weight matrix. :func:`choose_ranks` makes one from an energy.

    Returns
    -------
    Module
        A deep copy of ``model`` (no forward hooks or caches) in which each
        named layer whose rank saves parameters (``r * (m + n) < m * n``) is
        the nested ``Sequential`` of :func:`factorize_layer`, in the same
        slot (other keys keep their names); output transforms of a replaced
        layer move to its ``Sequential`` (same output, same key). A named layer
        whose rank saves nothing is **not** factorised: it stays as it is.
        ``model`` itself is not changed.

    Raises
    ------
    ValueError
        For a name that is not a ``Linear``/``Conv2d`` of the model (the
        message lists the names), a rank outside ``1..min(m, n)``, or a
        layer whose weight or bias carries transforms.
    """
    layers = _check_names(model, ranks)
    for name, layer in layers.items():
        _plain_weights(layer, f"layer {name!r}")
        try:
            check_rank(ranks[name], _matrix_shape(layer))
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from None
    new = _copy_without_hooks(model)
    modules = dict(new.named_modules())
    for name, rank in ranks.items():
        layer = modules[name]
        if not saves_parameters(*_matrix_shape(layer), rank):
            continue
        pair = factorize_layer(layer, rank)
        for transform in layer.output_transforms:
            pair.add_output_transform(transform)
        parent_name, _, attr = name.rpartition(".")
        # object.__setattr__ keeps the child's place in the parent's list of children;
        # Module.__setattr__ would re-register it at the end and reorder a Sequential.
        object.__setattr__(modules[parent_name], attr, pair)
    return new


# -------------------------------------------------------------- counting


def count_parameters(model: Module) -> int:
    """Stored parameter entries (weights and biases)."""
    return sum(p.size for p in model.parameters())


class LayerRank(NamedTuple):
    """One row of :func:`rank_table`."""

    name: str
    kind: str  # "Linear" or "Conv2d"
    matrix: tuple[int, int]  # (m, n): (out, in) or (C_out, C_in*kh*kw)
    rank: int | None  # None: not asked for
    energy: float  # fraction of sum(s^2) kept (1.0 when not factorised)
    params_before: int  # weight + bias
    params_after: int
    factorized: bool


def rank_table(model: Module, ranks: Mapping[str, int]) -> list[LayerRank]:
    """For every ``Linear``/``Conv2d``: its matrix, rank, energy kept, parameters before and after.

    ``params_after = r * (m + n) + bias`` for a layer that :func:`low_rank`
    factorises, ``params_before`` for one it leaves (not named, or no saving).
    """
    _check_names(model, ranks)
    rows = []
    for name, layer in factorizable_layers(model).items():
        m, n = _matrix_shape(layer)
        bias = 0 if layer.bias is None else layer.bias.size
        rank = ranks.get(name)
        done = rank is not None and saves_parameters(m, n, rank)
        energy = 1.0
        if done:
            energy = energy_kept(singular_values(weight_matrix(layer.weight.value())), rank)
        after = rank * (m + n) + bias if done else m * n + bias
        rows.append(
            LayerRank(name, type(layer).__name__, (m, n), rank, energy, m * n + bias, after, done)
        )
    return rows


def lowrank_report(model: Module, ranks: Mapping[str, int]) -> str:
    """The :func:`rank_table` as text, with the total parameter count before and after.

    >>> import tinynet; _ = tinynet.manual_seed(0)
    >>> from tinynet.models import lenet_300_100
    >>> print(lowrank_report(lenet_300_100(), {"1": 20, "3": 75}))
    layer  type    matrix      rank  energy kept  parameters
    1      Linear  300 x 784     20        0.153  235,500 -> 21,980
    3      Linear  100 x 300     75            -  30,100 -> 30,100  (no saving: kept)
    5      Linear  10 x 100       -            -  1,010 -> 1,010
    total parameters: 266,610 -> 53,090 (5.02x fewer)
    """
    table = rank_table(model, ranks)
    lines = [
        f"{'layer':<6} {'type':<7} {'matrix':<11} {'rank':>4}  {'energy kept':>11}  parameters"
    ]
    for row in table:
        rank = "-" if row.rank is None else str(row.rank)
        note = "" if row.factorized or row.rank is None else "  (no saving: kept)"
        matrix = f"{row.matrix[0]} x {row.matrix[1]}"
        energy = f"{row.energy:.3f}" if row.factorized else "-"
        lines.append(
            f"{row.name:<6} {row.kind:<7} {matrix:<11} {rank:>4}  {energy:>11}  "
            f"{row.params_before:,} -> {row.params_after:,}{note}"
        )
    before = count_parameters(model)  # BatchNorm and other layers' parameters too
    after = before + sum(row.params_after - row.params_before for row in table)
    lines.append(f"total parameters: {before:,} -> {after:,} ({before / after:.2f}x fewer)")
    return "\n".join(lines)
