"""Gradient mode: whether layers keep what their backward pass needs.

During training every layer stores, in ``forward``, the arrays its
``backward`` will need (the input of a ``Linear``, the argmax positions of a
``MaxPool2d``...). For inference that is wasted memory and time, so

>>> with tinynet.no_grad():          # doctest: +SKIP
...     logits = model(x)            # no layer keeps a cache

switches it off, like ``torch.no_grad()``. Layers ask :func:`is_grad_enabled`
before caching; calling ``backward`` after a ``no_grad`` forward raises an
error that says why.

The switch is per thread, as in PyTorch: one thread evaluating under
``no_grad`` does not stop another thread's training from caching.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


def is_grad_enabled() -> bool:
    """Return True when layers should cache what ``backward`` needs (this thread)."""
    return getattr(_state, "enabled", True)


def _set(enabled: bool) -> None:
    _state.enabled = enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager for inference: layers keep no caches inside it."""
    previous = is_grad_enabled()
    _set(False)
    try:
        yield
    finally:
        _set(previous)


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager that switches caching back on (inside ``no_grad``)."""
    previous = is_grad_enabled()
    _set(True)
    try:
        yield
    finally:
        _set(previous)
