"""``Module`` and ``Sequential``: the contract every layer follows.

Every module has two methods a student can read side by side::

    out = module.forward(x)       # computes the output, keeps a cache
    dx  = module.backward(dout)   # dL/dx from dL/dout, accumulates dL/dW

``forward`` stores what ``backward`` needs in ``self.cache`` (only while
gradients are enabled, see :func:`tinynet.no_grad`). ``backward`` *adds*
parameter gradients into ``param.grad`` through ``param.backward(dW)``, and
returns the gradient with respect to the input. It never updates weights:
that is the optimizer's job.

Parameters, child modules and buffers (running statistics) are ordinary
attributes; assigning a :class:`Parameter` or a :class:`Module` to an
attribute registers it, in order, as in ``torch.nn.Module``. That order gives
the ``state_dict`` keys (``"0.weight"``, ``"1.running_mean"``...), which are
PyTorch's, so a tinynet ``state_dict`` loads into the equivalent PyTorch
model without renaming.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinynet.parameter import Parameter

Hook = Callable[["Module", np.ndarray, np.ndarray], Any]


class StateDict(OrderedDict):
    """An ordered mapping of names to arrays, plus ``metadata``.

    ``metadata["transforms"]`` describes each parameter's transform chain
    (see :func:`tinynet.transforms.transform_spec`) so that
    ``load_state_dict`` can rebuild masks and quantizers; it is plain JSON
    data, never code.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metadata: dict[str, Any] = {}


class HookHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Hook]) -> None:
        self._hooks = hooks
        self.id = HookHandle._next_id
        HookHandle._next_id += 1

    def remove(self) -> None:
        """Unregister the hook (idempotent)."""
        self._hooks.pop(self.id, None)


class Module:
    """Base class of every layer and model (PyTorch ``torch.nn.Module``).

    Attributes
    ----------
    training : bool
        True in training mode (``Dropout`` drops, ``BatchNorm`` uses batch
        statistics); set by :meth:`train` and :meth:`eval`.
    cache : object
        What ``forward`` kept for ``backward`` (None under ``no_grad``).
    requires_input_grad : bool
        When False, ``backward`` may skip computing dL/dx and return None
        (the first layer of a network never needs it; ``fit`` uses this).
    output_transforms : list of Transform
        Applied to the output after ``forward`` (fake quantization of
        activations, PACT clipping); see :meth:`add_output_transform`.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_param_names", [])
        object.__setattr__(self, "_module_names", [])
        object.__setattr__(self, "_buffer_names", [])
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "output_transforms", [])
        self.training = True
        self.requires_input_grad = True
        self.cache: Any = None

    # ------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_param_names" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                f"before assigning {name!r}"
            )
        for names in (self._param_names, self._module_names):
            if name in names:
                names.remove(name)
        if isinstance(value, Parameter):
            self._param_names.append(name)
        elif isinstance(value, Module):
            self._module_names.append(name)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """Register a non-trainable array (running statistics) saved in ``state_dict``."""
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, np.asarray(array))

    # ------------------------------------------------------------ the contract
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output; override in every layer."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Return dL/dx given dL/dout; override in every layer."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.forward(x)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, x, out)
            if result is not None:
                out = result
        for transform in self.output_transforms:
            out = transform.forward(out)
        return out

    # ------------------------------------------------------- output transforms
    def add_output_transform(self, transform: Any) -> Any:
        """Transform this module's output: ``out = t(forward(x))``; returns ``transform``.

        Activation quantization attaches here, so a quantized ReLU is still
        ``model[2]`` and ``Sequential`` indices (and ``state_dict`` keys) do
        not shift. The transform's state is saved under
        ``"<module>.output_transforms.<i>.<name>"`` and its trainable
        parameters (an LSQ step size, PACT's clipping level) are among
        ``model.parameters()``.

        The gradient runs back through :meth:`output_backward`, which the
        containing ``Sequential`` calls before this module's ``backward``
        (every tinynet model is a ``Sequential``; a bare module that is not
        inside one must call ``module.backward(module.output_backward(dout))``).
        Forward hooks see the output before the transforms.
        """
        if not hasattr(transform, "forward") or not hasattr(transform, "backward"):
            raise TypeError(
                f"an output transform needs forward and backward, got {type(transform).__name__}"
            )
        self.output_transforms.append(transform)
        return transform

    def output_backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/d(forward's output) from dL/d(transformed output): the transforms in reverse."""
        for transform in reversed(self.output_transforms):
            dout = transform.backward(dout)
        return dout

    def register_forward_hook(self, hook: Hook) -> HookHandle:
        """Call ``hook(module, input, output)`` after every forward.

        A hook that returns a value replaces the output (as in PyTorch); the
        gradient then flows back to ``backward`` unchanged, so such hooks
        must be identity-like for gradients (observers return None).
        Returns a handle whose ``remove()`` unregisters the hook.
        """
        handle = HookHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def _no_cache_error(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}.backward called without a cached forward pass: "
            "run forward with gradients enabled (not inside tinynet.no_grad()) first"
        )

    # --------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct child modules with their attribute names."""
        for name in self._module_names:
            yield name, getattr(self, name)

    def children(self) -> Iterator[Module]:
        """Direct child modules."""
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, with dotted names."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant."""
        for _, module in self.named_modules():
            yield module

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name in self._param_names:
            param = getattr(self, name)
            if param is not None:
                yield name, param

    def named_parameter_slots(
        self, prefix: str = ""
    ) -> Iterator[tuple[str, Module, str, Parameter]]:
        """Every ``(qualified_name, owner_module, attribute, Parameter)``.

        ``qualified_name`` is the plain PyTorch name (``"0.weight"``) whether
        or not the parameter carries transforms.
        """
        for mod_name, module in self.named_modules():
            for attr, param in module._own_parameters():
                full = f"{mod_name}.{attr}" if mod_name else attr
                yield prefix + full, module, attr, param

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Every trainable array, with its ``state_dict`` key.

        A parameter with transforms appears as
        ``"<module>.parametrizations.<name>.original"``, and each Parameter
        owned by its transforms as ``"<module>.parametrizations.<name>.<i>.<attr>"``
        (the keys of ``torch.nn.utils.parametrize``); Parameters of output
        transforms as ``"<module>.output_transforms.<i>.<attr>"``.
        """
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for attr, param in module._own_parameters():
                if not param.transforms:
                    yield prefix + attr, param
                    continue
                base = f"{prefix}parametrizations.{attr}."
                yield base + "original", param
                for sub, owned in param.transform_parameters():
                    yield base + sub, owned
            for i, transform in enumerate(module.output_transforms):
                for attr, owned in transform.named_parameters():
                    yield f"{prefix}output_transforms.{i}.{attr}", owned

    def parameters(self) -> list[Parameter]:
        """All parameters (trainable arrays), in ``state_dict`` order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every buffer (running statistics) with its ``state_dict`` key."""
        for mod_name, module in self.named_modules():
            for name in module._buffer_names:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(module, name)

    # ------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module, every descendant, and their transforms.

        Transforms see the mode too (``transform.training``): an activation
        quantizer updates its range while training and freezes it in eval mode.
        """
        for module in self.modules():
            module.training = bool(mode)
            for transform in module.output_transforms:
                transform.training = bool(mode)
            for _, param in module._own_parameters():
                for transform in param.transforms:
                    transform.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (``train(False)``)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to None."""
        for param in self.parameters():
            param.zero_grad()

    def astype(self, dtype: Any) -> Module:
        """Convert every floating parameter and buffer to ``dtype`` in place.

        ``model.astype(np.float64)`` is how gradient checks run in double
        precision; integer buffers (``num_batches_tracked``) keep their type.
        """
        for module in self.modules():
            for _, param in module._own_parameters():
                param.astype(dtype)
            for name in module._buffer_names:
                buf = getattr(module, name)
                if np.issubdtype(buf.dtype, np.floating):
                    object.__setattr__(module, name, buf.astype(dtype))
            for transform in module.output_transforms:
                transform.astype(dtype)
        return self

    # -------------------------------------------------------------- state dict
    def state_dict(self) -> StateDict:
        """Every parameter and buffer by name (copies), PyTorch's keys and order.

        Per module: its own parameters, then its own buffers, then its
        children. Parameters with transforms use parametrize-style keys and
        the chain is described in ``state_dict().metadata["transforms"]``.
        """
        from tinynet.transforms import output_transform_spec, transform_spec

        out = StateDict()
        for key, array, _ in self._state_entries():
            out[key] = np.array(array, copy=True)
        spec = transform_spec(self)
        if spec:
            out.metadata["transforms"] = spec
        output_spec = output_transform_spec(self)
        if output_spec:
            out.metadata["output_transforms"] = output_spec
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Transform chains named in ``state.metadata["transforms"]`` (a
        :class:`StateDict`, as ``state_dict()`` and ``tinynet.load`` return)
        are rebuilt first, from the whitelist of known transform types. A
        plain key (``"0.weight"``) may also be loaded into a parameter that
        has transforms: it sets the latent value.

        Raises
        ------
        ValueError
            On missing or unexpected keys (with ``strict``), or a shape that
            differs from the parameter's.
        """
        from tinynet.transforms import apply_output_transform_spec, apply_transform_spec

        metadata = getattr(state, "metadata", {})
        if metadata.get("transforms"):
            apply_transform_spec(self, metadata["transforms"])
        if metadata.get("output_transforms"):
            apply_output_transform_spec(self, metadata["output_transforms"])
        entries = {key: (array, setter) for key, array, setter in self._state_entries()}
        remaining = dict(state)
        for full, _, attr, param in list(self.named_parameter_slots()):
            base = _parametrization_base(full, attr)
            if param.transforms and full in remaining and base + "original" not in remaining:
                remaining[base + "original"] = remaining.pop(full)
                for i, transform in enumerate(param.transforms):
                    for name, array in transform.named_state():
                        remaining.setdefault(f"{base}{i}.{name}", array)
            elif not param.transforms and base + "original" in remaining:
                raise ValueError(
                    f"state has transform keys for {full!r} ({base}original...) but no "
                    "description of the chain: load a StateDict from state_dict() or "
                    "tinynet.load, or attach the same transforms to the model first"
                )
        missing = [k for k in entries if k not in remaining]
        unexpected = [k for k in remaining if k not in entries]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict into {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        for key, (target, _) in entries.items():
            if key in remaining:
                source = np.asarray(remaining[key])
                if source.shape != np.shape(target):
                    raise ValueError(
                        f"load_state_dict: {key!r} expected shape {np.shape(target)}, "
                        f"got {source.shape}"
                    )
        for key, (_, setter) in entries.items():
            if key in remaining:
                setter(np.asarray(remaining[key]))

    def _state_entries(self) -> Iterator[tuple[str, np.ndarray, Callable[[np.ndarray], None]]]:
        """Every ``(key, current array, setter)`` of the state, in ``state_dict`` order.

        Per module: its own parameters (with their transforms' state under
        parametrize-style keys), then its own buffers, then its output
        transforms' state, then its children.
        ``state_dict`` copies the arrays; ``load_state_dict`` calls the setters,
        which keep each target's dtype.
        """
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for attr, param in module._own_parameters():

                def set_data(a: np.ndarray, p: Parameter = param) -> None:
                    p.data = np.array(a, dtype=p.data.dtype, copy=True)

                if not param.transforms:
                    yield prefix + attr, param.data, set_data
                    continue
                base = f"{prefix}parametrizations.{attr}."
                yield base + "original", param.data, set_data
                for i, transform in enumerate(param.transforms):
                    for name, array in transform.named_state():

                        def set_state(a: np.ndarray, t: Any = transform, n: str = name) -> None:
                            t.set_state(n, a)

                        yield f"{base}{i}.{name}", array, set_state
            for name in module._buffer_names:

                def set_buffer(a: np.ndarray, m: Module = module, n: str = name) -> None:
                    old = getattr(m, n)
                    object.__setattr__(m, n, np.array(a, dtype=old.dtype, copy=True))

                yield prefix + name, getattr(module, name), set_buffer
            for i, transform in enumerate(module.output_transforms):
                for name, array in transform.named_state():

                    def set_output(a: np.ndarray, t: Any = transform, n: str = name) -> None:
                        t.set_state(n, a)

                    yield f"{prefix}output_transforms.{i}.{name}", array, set_output

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


def _parametrization_base(full: str, attr: str) -> str:
    """``"0.weight"`` -> ``"0.parametrizations.weight."``."""
    prefix = full[: len(full) - len(attr)]
    return f"{prefix}parametrizations.{attr}."


class Sequential(Module):
    """A chain of modules applied in order (PyTorch ``torch.nn.Sequential``).

    ``forward`` feeds each module's output to the next; ``backward`` walks
    the chain in reverse, passing ``dout`` from the last module to the first.
    Children are named ``"0"``, ``"1"``..., which gives the keys
    ``"0.weight"``. Indexing returns a module, slicing a new ``Sequential``
    sharing the same modules.

    When ``requires_input_grad`` is False, modules before the first one with
    trainable parameters are told they need not compute dL/dx either (for
    LeNet-5 that spares the first convolution's input-gradient scatter).
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential expects Module arguments, argument {i} is {type(module).__name__}"
                )
            setattr(self, str(i), module)

    def _layers(self) -> list[Module]:
        return [getattr(self, name) for name in self._module_names]

    def __len__(self) -> int:
        return len(self._module_names)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers())

    def __getitem__(self, index: int | slice) -> Module:
        layers = self._layers()
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def append(self, module: Module) -> Sequential:
        """Add a module at the end."""
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply every module in order."""
        needs_grad = self.requires_input_grad
        for layer in self._layers():
            layer.requires_input_grad = needs_grad
            needs_grad = needs_grad or any(p.requires_grad for p in layer.parameters())
            x = layer(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Backpropagate through every module in reverse order."""
        for layer in reversed(self._layers()):
            dout = layer.backward(layer.output_backward(dout))
            if dout is None:
                return None
        return dout
