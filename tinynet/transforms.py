"""Weight transforms: the one mechanism every weight-side technique plugs into.

A :class:`Transform` maps a parameter's latent value to the value the layer
uses, and maps the gradient back (the chain rule)::

    forward :  W_eff = t(W)
    backward:  dL/dW = (dt/dW)^T dL/dW_eff

Pruning masks (``W * M``, gradient ``dW_eff * M``), fake quantization with a
straight-through gradient (``dW_eff * 1[in range]``), clipping and weight
sharing are all transforms, so they compose: a parameter can be masked, then
quantized, then shared, without any layer knowing. The idea is PyTorch's
``torch.nn.utils.parametrize``; ``strip`` is its ``remove_parametrizations``
(and ``torch.nn.utils.prune.remove``).

A transform may own

* *state* (``state_names``): arrays saved in ``state_dict`` under
  ``"<module>.parametrizations.<param>.<i>.<name>"`` (a mask, a codebook's
  assignments);
* trainable *parameters* (``param_names``): :class:`Parameter` objects that
  appear in ``model.parameters()`` and receive their gradient from the
  transform's ``backward`` (the centroids of weight sharing).

The chain is described by :func:`transform_spec` as plain JSON (a type name
and a config per transform), and rebuilt by :func:`apply_transform_spec`
from a whitelist of registered types. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tinynet.parameter import Parameter

if TYPE_CHECKING:  # pragma: no cover
    from tinynet.module import Module

TRANSFORM_TYPES: dict[str, type[Transform]] = {}


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator: add a transform type to the whitelist used when loading."""
    TRANSFORM_TYPES[cls.__name__] = cls
    return cls


class Transform:
    """Base class of a weight transform.

    Subclasses implement :meth:`forward` and :meth:`backward`, list their
    saved arrays in ``state_names`` and their trainable Parameters in
    ``param_names``, and describe their hyperparameters with
    :meth:`get_config` / :meth:`from_config`.
    """

    state_names: ClassVar[tuple[str, ...]] = ()
    param_names: ClassVar[tuple[str, ...]] = ()

    cache: Any = None
    #: Set by ``Module.train()`` / ``eval()`` on the module that holds the transform.
    training: bool = True

    def forward(self, w: np.ndarray) -> np.ndarray:
        """Map the incoming value ``w`` to the outgoing (more effective) value."""
        raise NotImplementedError

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        """Map dL/d(output) to dL/dw; accumulate into owned parameters' grads."""
        raise NotImplementedError

    # ---------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters (not arrays)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> Transform:
        """Build a transform for a parameter of ``shape``; arrays come later from the state."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_config")

    def named_state(self) -> list[tuple[str, np.ndarray]]:
        """Arrays saved in ``state_dict``: state arrays, then owned parameters' data."""
        items = [(name, getattr(self, name)) for name in self.state_names]
        items += [(name, p.data) for name, p in self.named_parameters()]
        return items

    def set_state(self, name: str, array: np.ndarray) -> None:
        """Load one array saved by :meth:`named_state` (dtype and shape kept)."""
        if name not in self.param_names and name not in self.state_names:
            raise KeyError(f"{type(self).__name__} has no state named {name!r}")
        old = getattr(self, name)
        current = old.data if name in self.param_names else np.asarray(old)
        if np.shape(array) != current.shape:
            raise ValueError(
                f"{type(self).__name__}.{name} expected shape {current.shape}, "
                f"got {np.shape(array)}"
            )
        value = np.array(array, dtype=current.dtype, copy=True)
        if name in self.param_names:
            old.data = value  # a trainable Parameter: keep the object, replace its values
        else:
            setattr(self, name, value)

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """Trainable values owned by this transform."""
        return [(name, getattr(self, name)) for name in self.param_names]

    def astype(self, dtype: Any) -> None:
        """Convert floating state and owned parameters to ``dtype``."""
        for name in self.state_names:
            array = np.asarray(getattr(self, name))
            if np.issubdtype(array.dtype, np.floating):
                setattr(self, name, array.astype(dtype))
        for _, param in self.named_parameters():
            param.astype(dtype)

    def __repr__(self) -> str:
        config = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({config})"


@register_transform
class Mask(Transform):
    """A fixed binary mask: ``W_eff = W * M`` (PyTorch ``prune.custom_from_mask``).

    Forward ``W_eff = W * M``; backward ``dL/dW = dL/dW_eff * M``, so masked
    entries get zero gradient. Whatever an optimizer then does to their
    latent value (momentum and weight decay still move it), the effective
    weight stays exactly zero, because the mask multiplies it in every
    forward pass. Fine-tuning cannot undo the pruning.

    Parameters
    ----------
    mask : array_like of bool, same shape as the parameter
        True keeps an entry, False drops it.
    """

    state_names = ("mask",)

    def __init__(self, mask: Any) -> None:
        self.mask = np.asarray(mask, dtype=bool)

    def forward(self, w: np.ndarray) -> np.ndarray:
        if w.shape != self.mask.shape:
            raise ValueError(
                f"Mask of shape {self.mask.shape} applied to a weight of shape {w.shape}"
            )
        return w * self.mask  # float * bool keeps the float's dtype

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        return d_out * self.mask

    @property
    def sparsity(self) -> float:
        """Fraction of entries dropped."""
        return 1.0 - float(self.mask.mean()) if self.mask.size else 0.0

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], shape: tuple[int, ...]) -> Mask:
        return cls(np.ones(shape, dtype=bool))

    def __repr__(self) -> str:
        return f"Mask(sparsity={self.sparsity:.3f})"


# ---------------------------------------------------------------- model level
def transform_spec(model: Module) -> dict[str, list[dict[str, Any]]]:
    """Describe every transform chain of ``model`` as JSON-ready data.

    Returns
    -------
    dict
        ``{"0.weight": [{"type": "Mask", "config": {}}], ...}`` for each
        parameter that has transforms (plain PyTorch names as keys).
    """
    spec: dict[str, list[dict[str, Any]]] = {}
    for full, _, _, param in model.named_parameter_slots():
        if param.transforms:
            spec[full] = [
                {"type": type(t).__name__, "config": t.get_config()} for t in param.transforms
            ]
    return spec


def apply_transform_spec(model: Module, spec: dict[str, list[dict[str, Any]]]) -> Module:
    """Rebuild transform chains described by :func:`transform_spec`.

    Only registered (whitelisted) types are built; their arrays are filled
    afterwards by ``load_state_dict``. A parameter that already carries a
    chain of the same types is left as it is.

    Raises
    ------
    ValueError
        For an unknown parameter name, an unknown transform type, an entry
        that is not exactly ``{"type", "config"}``, or a config with a key
        the transform does not keep (see ``_check_config``).
    """
    if not isinstance(spec, dict):
        raise ValueError(f"transform spec must be a dict, got {type(spec).__name__}")
    slots = {full: param for full, _, _, param in model.named_parameter_slots()}
    for name, chain in spec.items():
        if name not in slots:
            raise ValueError(
                f"transform spec names parameter {name!r}, which the model does not have"
            )
        _check_chain(chain, f"transform spec for {name!r}")
        param = slots[name]
        types = [e["type"] for e in chain]
        if [type(t).__name__ for t in param.transforms] == types:
            continue
        if param.transforms:
            raise ValueError(
                f"parameter {name!r} already has transforms "
                f"{[type(t).__name__ for t in param.transforms]}, the state describes {types}"
            )
        for entry in chain:
            cls = TRANSFORM_TYPES.get(entry["type"])
            if cls is None:
                raise ValueError(
                    f"unknown transform type {entry['type']!r} for {name!r}; "
                    f"known types: {sorted(TRANSFORM_TYPES)} (the compression package's "
                    "transforms register when it is imported: import compression.quantization "
                    "or compression.clipping)"
                )
            transform = cls.from_config(entry["config"], param.shape)
            _check_config(transform, entry["config"], f"{name!r}")
            param.add_transform(transform)
    return model


def _check_chain(chain: Any, where: str) -> None:
    """A chain is a list of ``{"type": str, "config": dict}``, no other keys."""
    if not isinstance(chain, list) or not all(
        isinstance(e, dict)
        and set(e) == {"type", "config"}
        and isinstance(e["type"], str)
        and isinstance(e["config"], dict)
        for e in chain
    ):
        raise ValueError(
            f"{where} must be a list of {{'type': str, 'config': dict}} entries, got {chain!r}"
        )


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, NumPy scalars numbers)."""
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def _kept(stored: Any, written: Any) -> bool:
    """Does ``written`` keep every key and value of ``stored`` (dicts compared key by key)?"""
    if isinstance(stored, dict) and isinstance(written, dict):
        return all(k in written and _kept(v, written[k]) for k, v in stored.items())
    return stored == written and type(stored) is type(written)


def _check_config(transform: Transform, config: dict[str, Any], where: str) -> None:
    """Refuse a config the rebuilt transform does not keep.

    ``get_config`` is what saving writes, so a transform built from a saved
    config describes itself with the same keys and values. A key it does not
    know (a corrupted or hand-edited file) or a value it changed shows up as
    a difference. A key missing from ``config`` is allowed: it takes its
    default, as in files written before that option existed.
    """
    written = _as_json(transform.get_config())
    if not _kept(_as_json(config), written):
        raise ValueError(
            f"{type(transform).__name__} for {where}: config {config!r} does not describe the "
            f"transform it builds, which has config {written!r} (an unknown key, or a value "
            "it does not keep)"
        )


def output_transform_spec(model: Module) -> dict[str, list[dict[str, Any]]]:
    """Describe every module's output transforms: ``{"2": [{"type": ..., "config": ...}]}``.

    Module names as in ``named_modules`` (``""`` is the model itself).
    """
    spec: dict[str, list[dict[str, Any]]] = {}
    for name, module in model.named_modules():
        if module.output_transforms:
            spec[name] = [
                {"type": type(t).__name__, "config": t.get_config()}
                for t in module.output_transforms
            ]
    return spec


def apply_output_transform_spec(model: Module, spec: dict[str, list[dict[str, Any]]]) -> Module:
    """Rebuild output transforms described by :func:`output_transform_spec` (whitelisted types).

    ``from_config`` receives the shape ``()``: an output transform's state
    is sized by its config (a per-channel quantizer records its channels).
    A module that already carries transforms of the same types is left as it is.
    Entries and configs are checked as by :func:`apply_transform_spec`.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"output transform spec must be a dict, got {type(spec).__name__}")
    modules = dict(model.named_modules())
    for name, chain in spec.items():
        if name not in modules:
            raise ValueError(f"output transform spec names module {name!r}, which does not exist")
        _check_chain(chain, f"output transform spec for {name!r}")
        module = modules[name]
        types = [e["type"] for e in chain]
        if [type(t).__name__ for t in module.output_transforms] == types:
            continue
        if module.output_transforms:
            raise ValueError(f"module {name!r} already has other output transforms")
        for entry in chain:
            cls = TRANSFORM_TYPES.get(entry["type"])
            if cls is None:
                raise ValueError(
                    f"unknown transform type {entry['type']!r} for the output of {name!r}; "
                    f"known types: {sorted(TRANSFORM_TYPES)} (the compression package's "
                    "transforms register when it is imported: import compression.quantization "
                    "or compression.clipping)"
                )
            transform = cls.from_config(entry["config"], ())
            _check_config(transform, entry["config"], f"the output of {name!r}")
            module.add_output_transform(transform)
    return model


def strip(model: Module) -> Module:
    """Bake every effective value into ``data`` and remove the transforms.

    After ``strip`` the model's ``state_dict`` has the plain PyTorch keys
    (``"0.weight"``) and holds the effective values (masked zeros, quantized
    levels). The analogue of ``torch.nn.utils.prune.remove`` /
    ``parametrize.remove_parametrizations(..., leave_parametrized=True)``.
    Returns the same model, changed in place.
    """
    for _, _, _, param in model.named_parameter_slots():
        param.remove_transforms(bake=True)
    return model
