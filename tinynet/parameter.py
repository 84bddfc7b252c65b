"""``Parameter``: a trainable array, its gradient, and its chain of transforms.

A parameter stores a *latent* value ``data``. Layers never read ``data``
directly: they ask for the *effective* value with :meth:`Parameter.value`
and hand the gradient of that effective value back with
:meth:`Parameter.backward`. Without transforms the two are the same array.
With transforms (a pruning mask, a fake quantizer, weight sharing...) the
effective value is the latent value passed through each transform in turn::

    W_eff = t_n( ... t_2( t_1( data ) ) ... )

and the gradient flows back through the chain by the chain rule::

    grad += dt_1/dW^T ... dt_n/dW^T  dW_eff

This is the same idea as ``torch.nn.utils.parametrize``. Transforms are
defined in :mod:`tinynet.transforms`.

Gradients *accumulate*, as in PyTorch: every ``backward`` adds to ``grad``,
and only ``zero_grad()`` (of the module or the optimizer) resets it to None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from tinynet.transforms import Transform


class Parameter:
    """A trainable array (PyTorch ``torch.nn.Parameter``).

    Parameters
    ----------
    data : array_like
        The stored (latent) value. Floating arrays keep their dtype; anything
        else becomes float32.
    requires_grad : bool, default True
        False freezes the parameter: ``backward`` then adds nothing to
        ``grad`` and optimizers skip it.

    Attributes
    ----------
    data : ndarray
        The latent value that optimizers update.
    grad : ndarray or None
        Same shape as ``data``; the accumulated gradient of the loss with
        respect to ``data`` (None until the first ``backward``).
    transforms : list of Transform
        Applied in order by :meth:`value`; empty for a plain parameter.
    """

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        array = np.asarray(data)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32)
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.transforms: list[Transform] = []

    # ------------------------------------------------------------------ values
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the latent (and effective) value."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the latent value."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """Number of entries."""
        return self.data.size

    def value(self) -> np.ndarray:
        """Return the effective value ``t_n(...t_1(data))`` that layers use.

        With no transforms this is ``data`` itself (no copy). Each transform
        caches what its backward needs only while gradients are enabled.
        """
        w = self.data
        for transform in self.transforms:
            w = transform.forward(w)
        return w

    def backward(self, d_effective: np.ndarray) -> None:
        """Take the gradient of the effective value and accumulate it.

        Applies the chain rule through the transforms in reverse order, then
        adds the result to ``grad`` (when ``requires_grad``). Transforms that
        own parameters (a codebook) accumulate into those on the way.

        Parameters
        ----------
        d_effective : ndarray, same shape as ``data``
            dL/dW_eff as computed by the layer's backward pass.
        """
        if d_effective.shape != self.data.shape:
            raise ValueError(
                f"gradient of shape {self.data.shape} expected for this parameter, "
                f"got {d_effective.shape}"
            )
        g = d_effective
        for transform in reversed(self.transforms):
            g = transform.backward(g)
        if self.requires_grad:
            self.accumulate_grad(g)

    def accumulate_grad(self, g: np.ndarray) -> None:
        """Add ``g`` to ``grad`` (allocate it on the first call)."""
        if self.grad is None:
            self.grad = np.array(g, dtype=self.data.dtype, copy=True)
        else:
            self.grad += g

    def zero_grad(self) -> None:
        """Reset the gradient to None (PyTorch's ``set_to_none=True``)."""
        self.grad = None

    # -------------------------------------------------------------- transforms
    def add_transform(self, transform: Transform) -> Transform:
        """Append a transform to the chain (it acts on the current effective value)."""
        self.transforms.append(transform)
        return transform

    def remove_transforms(self, bake: bool = True) -> None:
        """Remove every transform; with ``bake`` the effective value becomes ``data``."""
        if bake and self.transforms:
            from tinynet.grad_mode import no_grad

            with no_grad():
                self.data = np.array(self.value(), dtype=self.data.dtype, copy=True)
        self.transforms = []
        self.grad = None

    def transform_parameters(self) -> list[tuple[str, Parameter]]:
        """Trainable values owned by the transforms, as ``("0.centroids", p)`` pairs."""
        return [
            (f"{i}.{name}", p)
            for i, t in enumerate(self.transforms)
            for name, p in t.named_parameters()
        ]

    def astype(self, dtype: Any) -> Parameter:
        """Convert ``data`` (and ``grad``, and transform state) to ``dtype`` in place."""
        self.data = self.data.astype(dtype)
        if self.grad is not None:
            self.grad = self.grad.astype(dtype)
        for transform in self.transforms:
            transform.astype(dtype)
        return self

    def __repr__(self) -> str:
        chain = "".join(f" -> {type(t).__name__}" for t in self.transforms)
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen}){chain}"
