"""``Dropout``: randomly zero activations while training (Srivastava et al. 2014).

In training mode each entry is kept with probability ``1 - p`` and zeroed
with probability ``p``. The kept entries are scaled by ``1 / (1 - p)``
("inverted dropout"), so the expected value of every entry is unchanged::

    mask ~ Bernoulli(1 - p)                 (one draw per entry)
    out  = x * mask / (1 - p)               E[out] = x

and at test time (``eval()``) the layer is the identity, with nothing to
rescale. Backward multiplies by the same mask and scale::

    dx = dout * mask / (1 - p)
"""

from __future__ import annotations

import numpy as np

from tinynet.grad_mode import is_grad_enabled
from tinynet.module import Module
from tinynet.random import get_rng


class Dropout(Module):
    """Inverted dropout (PyTorch ``torch.nn.Dropout``).

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an entry, in ``[0, 1]``. ``p = 0`` is the
        identity; ``p = 1`` zeroes everything (as in PyTorch).

    Notes
    -----
    Shapes: any input shape; output has the same shape.
    The mask is drawn from :func:`tinynet.random.get_rng` at every training
    forward, so ``tinynet.manual_seed`` makes it reproducible. The cache is
    ``(mask, scale)``: a boolean array (1 byte per entry) and a scalar of
    the input's dtype, or ``(None, None)`` when the layer is the identity.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0 <= p <= 1:
            raise ValueError(f"Dropout probability p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Zero each entry with probability ``p`` and scale the rest by ``1/(1-p)``.

        Parameters
        ----------
        x : ndarray, any shape

        Returns
        -------
        out : ndarray, same shape and dtype as ``x``
            ``x`` itself in eval mode (or when ``p = 0``).
        """
        x = np.asarray(x)
        if not self.training or self.p == 0.0:
            self.cache = (None, None) if is_grad_enabled() else None
            return x
        if self.p == 1.0:
            mask = np.zeros(x.shape, dtype=bool)  # drop everything; 1/(1-p) is undefined
            scale = x.dtype.type(0)
        else:
            mask = get_rng().random(x.shape) >= self.p  # True with probability 1 - p
            scale = x.dtype.type(1.0 / (1.0 - self.p))  # cast: keep float32 float32
        self.cache = (mask, scale) if is_grad_enabled() else None
        return x * mask * scale

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        """Return ``dx = dout * mask / (1 - p)`` with the forward pass's mask.

        Returns None when ``requires_input_grad`` is False.
        """
        if self.cache is None:
            raise self._no_cache_error()
        mask, scale = self.cache
        if mask is not None and dout.shape != mask.shape:
            raise ValueError(
                f"Dropout.backward expected dout of shape {mask.shape}, got {dout.shape}"
            )
        if not self.requires_input_grad:
            return None
        if mask is None:  # identity (eval mode or p = 0)
            return dout
        return dout * mask * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"
