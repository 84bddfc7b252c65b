"""The model's architecture as JSON, from a whitelist of tinynet layer types.

``load_compressed`` must rebuild the model without pickle and without
``eval``: the file only *names* layer types, with their constructor
arguments, and the loader only builds types it knows. For LeNet-300-100::

    {"type": "Sequential", "args": {}, "children": [
        {"type": "Flatten", "args": {"start_dim": 1, "end_dim": -1}},
        {"type": "Linear", "args": {"in_features": 784, "out_features": 300, "bias": true}},
        {"type": "ReLU", "args": {}}, ...]}

Every argument is checked (name, JSON type) before the constructor is
called, and the total number of weights a file may ask for is capped, so a
hostile file cannot make the loader build ``os.system`` or allocate 100 GB.
The arguments are PyTorch's (``torch.nn.Linear(in_features, out_features,
bias)`` ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinynet.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from tinynet.module import Module, Sequential
from tinynet.random import get_rng

MAX_DEPTH = 16
MAX_WEIGHTS = 1 << 26  # a file may not ask for more (67M weights, 256 MiB of float32)

# type name -> (class, {argument name: JSON kind}); kinds: int, bool, float, float?, pair
LAYER_TYPES: dict[str, tuple[type[Module], dict[str, str]]] = {
    "Sequential": (Sequential, {}),
    "Linear": (Linear, {"in_features": "int", "out_features": "int", "bias": "bool"}),
    "Conv2d": (
        Conv2d,
        {
            "in_channels": "int",
            "out_channels": "int",
            "kernel_size": "pair",
            "stride": "pair",
            "padding": "pair",
            "bias": "bool",
        },
    ),
    "MaxPool2d": (MaxPool2d, {"kernel_size": "pair", "stride": "pair"}),
    "AvgPool2d": (AvgPool2d, {"kernel_size": "pair", "stride": "pair"}),
    "BatchNorm1d": (BatchNorm1d, {"num_features": "int", "eps": "float", "momentum": "float?"}),
    "BatchNorm2d": (BatchNorm2d, {"num_features": "int", "eps": "float", "momentum": "float?"}),
    "ReLU": (ReLU, {}),
    "LeakyReLU": (LeakyReLU, {"negative_slope": "float"}),
    "Sigmoid": (Sigmoid, {}),
    "Tanh": (Tanh, {}),
    "Dropout": (Dropout, {"p": "float"}),
    "Flatten": (Flatten, {"start_dim": "int", "end_dim": "int"}),
}


def register_layer_type(cls: type[Module], spec: dict[str, str]) -> type[Module]:
    """Let the compressed format describe (and build) layers of type ``cls``.

    ``spec`` maps each constructor argument to its JSON kind (``int``,
    ``int?``, ``bool``, ``float``, ``float?``, ``pair``); the value is read
    back from the attribute of the same name. Parameters are stored with
    the weights, not here. Packages outside tinynet (``compression.clipping``'s
    ``Clip``, ``ReLU6``, ``PACT``) register their layers this way.
    """
    name = cls.__name__
    if name in LAYER_TYPES and LAYER_TYPES[name][0] is not cls:
        raise ValueError(f"another layer type is already registered as {name!r}")
    unknown = {kind for kind in spec.values()} - {"int", "int?", "bool", "float", "float?", "pair"}
    if unknown:
        raise ValueError(f"unknown argument kinds {sorted(unknown)} for {name}")
    LAYER_TYPES[name] = (cls, dict(spec))
    return cls


def describe_module(module: Module) -> dict[str, Any]:
    """The JSON description of ``module`` and its children.

    Raises
    ------
    ValueError
        For a module whose type is not in :data:`LAYER_TYPES` (subclasses
        included: their behaviour could differ from what the loader builds).
    """
    name = type(module).__name__
    if name not in LAYER_TYPES or LAYER_TYPES[name][0] is not type(module):
        raise ValueError(
            f"cannot store a {type(module).__module__}.{name}: the compressed format describes "
            f"only these tinynet layer types: {sorted(LAYER_TYPES)}"
        )
    args: dict[str, Any] = {}
    for arg, kind in LAYER_TYPES[name][1].items():
        if arg == "bias":
            value: Any = module.bias is not None
        else:
            value = getattr(module, arg)
        args[arg] = list(value) if kind == "pair" else value
    node: dict[str, Any] = {"type": name, "args": args}
    if isinstance(module, Sequential):
        node["children"] = [describe_module(child) for child in module]
    return node


def _check_arg(layer: str, arg: str, kind: str, value: Any) -> Any:
    """A JSON argument of the expected kind, or a ValueError saying what came instead."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok = {
        "int": is_int,
        "int?": value is None or is_int,
        "bool": isinstance(value, bool),
        "float": is_int or isinstance(value, float),
        "float?": value is None or is_int or isinstance(value, float),
        "pair": isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }[kind]
    if not ok:
        raise ValueError(f"{layer} argument {arg!r} must be of kind {kind}, got {value!r}")
    return tuple(value) if kind == "pair" else value


def _weights_needed(layer: str, args: dict[str, Any]) -> int:
    """Number of parameter entries the layer will allocate (checked against MAX_WEIGHTS)."""
    if layer == "Linear":
        return args["in_features"] * args["out_features"] + args["out_features"]
    if layer == "Conv2d":
        kh, kw = args["kernel_size"]
        return args["out_channels"] * (args["in_channels"] * kh * kw + 1)
    if layer.startswith("BatchNorm"):
        return 4 * args["num_features"]
    return 0


def build_module(node: Any, budget: list[int] | None = None, depth: int = 0) -> Module:
    """Build the module a JSON description names (whitelisted types only).

    Raises
    ------
    ValueError
        For an unknown type, missing or unexpected arguments, arguments of
        the wrong kind or value, nesting deeper than 16, or more than
        ``MAX_WEIGHTS`` weights in total.
    """
    budget = [MAX_WEIGHTS] if budget is None else budget
    if depth > MAX_DEPTH:
        raise ValueError(f"the architecture is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise ValueError(f"a layer must be a JSON object with a 'type' string, got {node!r:.80}")
    layer = node["type"]
    if layer not in LAYER_TYPES:
        raise ValueError(
            f"unknown layer type {layer!r:.80}; only these tinynet types can be loaded: "
            f"{sorted(LAYER_TYPES)}"
        )
    cls, spec = LAYER_TYPES[layer]
    allowed_keys = {"type", "args", "children"} if cls is Sequential else {"type", "args"}
    args = node.get("args")
    if set(node) - allowed_keys or not isinstance(args, dict) or set(args) != set(spec):
        raise ValueError(
            f"{layer} must be described by {sorted(allowed_keys)} with arguments {sorted(spec)}, "
            f"got keys {sorted(node)} and arguments {sorted(args) if isinstance(args, dict) else args!r}"
        )
    kwargs = {arg: _check_arg(layer, arg, spec[arg], args[arg]) for arg in spec}
    budget[0] -= _weights_needed(layer, kwargs)
    if budget[0] < 0:
        raise ValueError(f"the architecture asks for more than {MAX_WEIGHTS} weights")
    if cls is Sequential:
        children = node.get("children")
        if not isinstance(children, list):
            raise ValueError("Sequential needs a 'children' list")
        return Sequential(*[build_module(child, budget, depth + 1) for child in children])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot build {layer}({kwargs}): {err}") from None


@contextlib.contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Building layers draws default initial weights; put tinynet's generator back afterwards."""
    rng = get_rng()
    state = rng.bit_generator.state
    try:
        yield
    finally:
        rng.bit_generator.state = state


def same_structure(a: Module, b: Module) -> bool:
    """Same parameter and buffer names and shapes (a description rebuilt the model faithfully)."""

    def layout(m: Module) -> list[tuple[str, tuple[int, ...]]]:
        params = [(name, p.shape) for name, _, _, p in m.named_parameter_slots()]
        return params + [(name, np.shape(buf)) for name, buf in m.named_buffers()]

    return layout(a) == layout(b)
