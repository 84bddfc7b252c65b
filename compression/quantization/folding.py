"""BatchNorm folding: merge a BatchNorm into the conv or linear layer before it.

Two steps run on a float model before (and just after) its weights are quantized.

**1. BatchNorm folding** (Jacob et al. 2018, Sec. 3.2; Krishnamoorthi 2018).
In eval mode a BatchNorm is a fixed affine map per channel ``c``, with
``mean = running_mean[c]``, ``var = running_var[c]``, ``gamma = weight[c]``,
``beta = bias[c]``::

    BN(y)[c] = gamma * (y[c] - mean) / sqrt(var + eps) + beta

Put the layer's output ``y[c] = (W x)[c] + b[c]`` (``W x`` is ``x @ W.T`` for a
``Linear`` and the convolution for a ``Conv2d``; output channel ``c`` uses
only the row / filter ``W[c]``) into it and write ``s[c] = gamma / sqrt(var + eps)``::

    BN(y)[c] = s[c] * (W x)[c] + s[c] * (b[c] - mean) + beta
             = (W' x)[c] + b'[c]

    W'[c] = s[c] * W[c]                   (one factor per output channel,
                                           broadcast over inputs and kernel)
    b'[c] = s[c] * (b[c] - mean) + beta   (b = 0 when the layer had no bias)

so ``layer -> BN`` is one layer with weights ``W'`` and bias ``b'``, and the
outputs are unchanged (to float rounding). This is PyTorch's
``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``.

*Why fold before quantizing.* Inference engines run ``layer -> BN`` as one
layer, so the weights that get quantized are ``W'``. Quantizing ``W`` and
keeping the BatchNorm instead multiplies the quantized weights by ``s[c]``
afterwards: ``s[c] * W_hat[c]`` lies on a grid of step ``s[c] * scale``, not
the grid the integer engine was given, and per-tensor scales chosen for
``W`` are wrong for ``W'`` (a channel with a large ``s[c]`` has its error
magnified). Fold first, then choose scales for the weights that really run.

**2. Bias correction**, just after quantizing the weights, is in
``bias_correction.py``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np

from compression.storage.architecture import global_rng_untouched
from tinynet.layers import BatchNorm1d, BatchNorm2d, Conv2d, Linear
from tinynet.module import Module, Sequential
from tinynet.parameter import Parameter
from tinynet.transforms import Mask

__all__ = ["fold_batchnorm", "folded_index_map"]

#: Layers a BatchNorm can be folded into, with the BatchNorm type that may follow each.
FOLD_PAIRS = {Linear: BatchNorm1d, Conv2d: BatchNorm2d}
BATCHNORMS = (BatchNorm1d, BatchNorm2d)
WEIGHTED = (Linear, Conv2d)


# ------------------------------------------------------------------ folding
def _check_foldable(model: Module) -> set[int]:
    """Indices of the BatchNorms to fold, after checking each can be folded."""
    if not isinstance(model, Sequential):
        raise ValueError(
            f"fold_batchnorm works on a tinynet Sequential, got {type(model).__name__}"
        )
    for name, module in model.named_modules():
        if isinstance(module, BATCHNORMS) and "." in name:
            raise ValueError(
                f"fold_batchnorm works on a flat Sequential; the BatchNorm {name!r} is inside a "
                "nested module"
            )
    layers = list(model)
    folds = set()
    for i, bn in enumerate(layers):
        if not isinstance(bn, BATCHNORMS):
            continue
        name = type(bn).__name__
        prev = layers[i - 1] if i > 0 else None
        if not isinstance(prev, WEIGHTED):
            got = "nothing (it is the first layer)" if prev is None else type(prev).__name__
            raise ValueError(
                f"layer {i} ({name}) must directly follow a Linear or Conv2d to be folded into "
                f"it, but follows {got}"
            )
        expected = FOLD_PAIRS[type(prev)]
        if type(bn) is not expected:
            raise ValueError(
                f"layer {i} is a {name} after a {type(prev).__name__}: expected {expected.__name__}"
            )
        channels = prev.weight.shape[0]
        if bn.num_features != channels:
            raise ValueError(
                f"layer {i} ({name}) has {bn.num_features} features but layer {i - 1} has "
                f"{channels} output channels"
            )
        if bn.training:
            raise ValueError(
                f"layer {i} ({name}) is in training mode: folding uses the running statistics "
                "(eval mode), which a training-mode BatchNorm does not use; call model.eval() first"
            )
        others = [type(t).__name__ for t in prev.weight.transforms if type(t) is not Mask]
        if others:
            raise ValueError(
                f"layer {i - 1}'s weight carries {others}: fold BatchNorm before quantizing or "
                "sharing weights (only Mask transforms are carried through a fold)"
            )
        if prev.bias is not None and prev.bias.transforms:
            raise ValueError(f"layer {i - 1}'s bias carries transforms: strip them before folding")
        if prev.output_transforms:
            raise ValueError(
                f"layer {i - 1} has output transforms, which act between it and the BatchNorm: "
                "fold before attaching activation quantizers"
            )
        folds.add(i)
    return folds


def folded_index_map(model: Module) -> dict[int, int]:
    """Where each layer of ``model`` ends up in ``fold_batchnorm(model)``.

    Removing the BatchNorms shifts every later index (and so every
    ``state_dict`` key: ``"4.weight"`` may become ``"3.weight"``). A folded
    BatchNorm maps to the index of the layer it was folded into.

    >>> from tinynet import BatchNorm2d, Conv2d, Flatten, Linear, ReLU
    >>> m = Sequential(Conv2d(1, 4, 3), BatchNorm2d(4), ReLU(), Flatten(), Linear(4, 2)).eval()
    >>> folded_index_map(m)
    {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}
    """
    folds = _check_foldable(model)
    mapping, new = {}, -1
    for i in range(len(model)):
        if i not in folds:
            new += 1
        mapping[i] = new
    return mapping


def _folded_layer(layer: Linear | Conv2d, bn: BatchNorm1d | BatchNorm2d) -> Linear | Conv2d:
    """A new layer with ``W' = s W`` and ``b' = s (b - mean) + beta`` (see the module docstring).

    The layer is built anew with the same shape arguments and ``bias=True``
    (the folded bias is in general nonzero even when the layer had none);
    its weight keeps the original's Mask transforms (a mask commutes with a
    per-channel factor: ``(s W) * M = s (W * M)``) and ``requires_grad`` flags.
    Computed in float64, stored in the layer's dtype.
    """
    dtype = layer.weight.data.dtype
    gamma = np.asarray(bn.weight.value(), dtype=np.float64)  # (C,)
    beta = np.asarray(bn.bias.value(), dtype=np.float64)
    mean = np.asarray(bn.running_mean, dtype=np.float64)
    var = np.asarray(bn.running_var, dtype=np.float64)
    s = gamma / np.sqrt(var + bn.eps)  # (C,) one factor per output channel
    W = layer.weight.data  # latent value; Masks are applied on top, unchanged
    W_fold = W * s.reshape((-1,) + (1,) * (W.ndim - 1))  # (C, in) or (C, C_in, kh, kw)
    b = np.zeros_like(s) if layer.bias is None else layer.bias.data.astype(np.float64)
    b_fold = s * (b - mean) + beta  # (C,)

    with global_rng_untouched():  # the constructor draws default weights; replaced below
        if isinstance(layer, Linear):
            new: Linear | Conv2d = Linear(layer.in_features, layer.out_features, bias=True)
        else:
            new = Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                bias=True,
            )
    new.weight = Parameter(W_fold.astype(dtype), requires_grad=layer.weight.requires_grad)
    for mask in layer.weight.transforms:
        new.weight.add_transform(mask)
    bias_grad = layer.bias.requires_grad if layer.bias is not None else True
    new.bias = Parameter(b_fold.astype(dtype), requires_grad=bias_grad)
    for transform in bn.output_transforms:  # whatever followed the BatchNorm now follows the fold
        new.add_output_transform(transform)
    new.training = layer.training
    return new


def fold_batchnorm(model: Module) -> Sequential:
    """A new model with every BatchNorm folded into the Linear / Conv2d before it.

    For each ``Conv2d -> BatchNorm2d`` and ``Linear -> BatchNorm1d`` pair the
    two layers become one (PyTorch ``torch.nn.utils.fusion.fuse_conv_bn_eval``
    / ``fuse_linear_bn_eval``)::

        s  = gamma / sqrt(running_var + eps)        (C,)
        W' = W * s[:, None]  (Linear, (C, in))      W * s[:, None, None, None]  (Conv2d)
        b' = s * (b - running_mean) + beta          (C,)   b = 0 without a bias

    (derivation in the module docstring; Jacob et al. 2018, Sec. 3.2).

    Parameters
    ----------
    model : Sequential, in eval mode
        Flat; the BatchNorms must be in eval mode (the fold uses the running
        statistics, as inference does).

    Returns
    -------
    Sequential
        A deep copy without the BatchNorm layers: later indices shift down
        (and with them the ``state_dict`` keys); :func:`folded_index_map`
        gives old index -> new index. Each folded layer is a *new*
        ``Linear`` / ``Conv2d`` of the same shape with ``bias=True`` (see
        :func:`_folded_layer`), keeping its weight's Mask transforms; output
        transforms of a BatchNorm move to the folded layer. Every other
        layer is a deep copy. Forward hooks and caches are not carried over
        (attach observers after folding). Its eval-mode outputs equal the
        model's: to about 1e-15 relative in float64, 1e-6 in float32. A
        model without BatchNorm comes back as an equal copy. ``model`` is
        not changed.

    Raises
    ------
    ValueError
        For a BatchNorm that does not directly follow a Linear (BatchNorm1d)
        or Conv2d (BatchNorm2d) with as many channels, one in training mode
        or inside a nested module, a weight carrying transforms other than
        Mask (quantize after folding, not before), a bias carrying
        transforms, or output transforms between the layer and its BatchNorm.

    Examples
    --------
    >>> from tinynet import BatchNorm1d, Linear, ReLU
    >>> m = Sequential(Linear(3, 4), BatchNorm1d(4), ReLU(), Linear(4, 2)).eval()
    >>> fold_batchnorm(m)
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Linear(in_features=4, out_features=2, bias=True)
    )
    """
    folds = _check_foldable(model)
    # Deep copy without the forward hooks and caches: the memo tells deepcopy
    # "this object's copy is already known", so they are replaced, not copied.
    memo: dict[int, Any] = {}
    for module in model.modules():
        memo[id(module._forward_hooks)] = OrderedDict()
        if module.cache is not None:
            memo[id(module.cache)] = None
    layers = list(copy.deepcopy(model, memo))
    new_layers = []
    for i, layer in enumerate(layers):
        if i in folds:
            continue  # already folded into layer i - 1
        if i + 1 in folds:
            layer = _folded_layer(layer, layers[i + 1])
        new_layers.append(layer)
    folded = Sequential(*new_layers)
    folded.training = model.training
    folded.requires_input_grad = model.requires_input_grad
    return folded
