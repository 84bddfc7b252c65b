"""The per-tensor encoder: store each parameter the cheapest way that rebuilds it exactly.

For a :class:`tinynet.Parameter`, :func:`encode_parameter`

1. asks the *storage handler* registered for its chain of transform types
   (``()`` for a plain parameter, ``("Mask",)`` for a pruned one...) for
   candidate encodings;
2. adds the ``state`` encoding, which stores any parameter (latent value +
   every transform's state arrays) and so is always available;
3. keeps the candidate with the fewest bytes whose round trip is exact:
   decoding it and restoring a copy of the parameter gives exactly the
   same effective value (the same numbers; ``-0.0`` and ``0.0`` are the
   same weight) and the same transform state (the mask).

and reports which one it chose and why (``reason``, ``alternatives``).

Built-in handlers:

=============  ===============================================================
chain          candidates
=============  ===============================================================
``()``         ``dense`` (raw float32, or lossless codebook); ``sparse`` over
               the nonzero entries, if there are zeros (a pruned-then-stripped
               tensor stays small)
``("Mask",)``  ``sparse`` over the mask's kept entries, returning the mask
=============  ===============================================================

``compression.quantization`` registers more when it is imported
(``load_compressed`` imports it): ``FakeQuantize``, ``LSQ`` and the same after
a ``Mask`` (b-bit codes plus scales; positions for the masked ones),
``SharedWeights`` with or without a ``Mask`` (codes plus codebook),
``BinaryWeights`` (1 bit per weight plus scales) and ``TernaryWeights``.

Extending it (how a later transform says how it is stored)
----------------------------------------------------------
Register a function for the chain of transform type names it handles::

    @register_storage_handler("Mask", "FakeQuantize")
    def _pruned_and_quantized(param, value, use_huffman):
        q, scale, zp = ...            # integers of the effective value
        return [encode_quantized(q, bits, scale, zp, axis=0, use_huffman=use_huffman)]

It receives the parameter, its effective value and whether Huffman coding
is allowed, and returns candidate
:class:`EncodedTensor` s whose decoders produce ``"value"`` (the latent
value to restore) and ``"<i>.<state name>"`` for transform state that the
transform's ``from_config`` does not rebuild. The transforms themselves are
rebuilt from their JSON config (``tinynet.transforms.transform_spec``), so a
handler never needs pickle. Any candidate whose round trip is not exact is
rejected, so a handler cannot silently lose information.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from compression.storage.dense import encode_dense, encode_state
from compression.storage.encoded import EncodedTensor
from compression.storage.sparse_codec import encode_sparse
from tinynet.grad_mode import no_grad
from tinynet.parameter import Parameter

StorageHandler = Callable[[Parameter, np.ndarray, bool], list[EncodedTensor]]
STORAGE_HANDLERS: dict[tuple[str, ...], StorageHandler] = {}


def register_storage_handler(*transform_types: str) -> Callable[[StorageHandler], StorageHandler]:
    """Decorator: ``handler(param, value, use_huffman) -> [EncodedTensor, ...]`` for a chain."""

    def add(handler: StorageHandler) -> StorageHandler:
        STORAGE_HANDLERS[tuple(transform_types)] = handler
        return handler

    return add


@register_storage_handler()
def _plain(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    candidates = [encode_dense(value, use_huffman)]
    if np.count_nonzero(value) < value.size:  # zeros to skip: try storing only the nonzeros
        candidates.append(encode_sparse(value, use_huffman=use_huffman))
    return candidates


@register_storage_handler("Mask")
def _masked(param: Parameter, value: np.ndarray, use_huffman: bool) -> list[EncodedTensor]:
    mask = param.transforms[0].mask
    return [encode_sparse(value, keep=mask, mask_key="0.mask", use_huffman=use_huffman)]


def chain_of(param: Parameter) -> tuple[str, ...]:
    """The parameter's transform types by name: ``()``, ``("Mask",)``..."""
    return tuple(type(t).__name__ for t in param.transforms)


def state_entries(param: Parameter) -> dict[str, np.ndarray]:
    """``{"value": latent data, "<i>.<name>": transform state...}`` (what ``state`` stores)."""
    entries = {"value": param.data}
    for i, transform in enumerate(param.transforms):
        for name, array in transform.named_state():
            entries[f"{i}.{name}"] = np.asarray(array)
    return entries


def restore_parameter(param: Parameter, arrays: dict[str, np.ndarray]) -> None:
    """Put decoded arrays back: ``"value"`` into ``data``, ``"<i>.<name>"`` into transform state.

    Raises
    ------
    ValueError
        For a missing ``"value"``, a name that is not state of this chain,
        or a shape that differs from the parameter's.
    """
    allowed = set(state_entries(param))
    unknown = sorted(set(arrays) - allowed)
    if "value" not in arrays or unknown:
        raise ValueError(
            f"decoded arrays {sorted(arrays)} do not fit a parameter with state {sorted(allowed)}"
        )
    value = np.asarray(arrays["value"])
    if value.shape != param.shape or value.dtype.kind != "f":
        raise ValueError(
            f"decoded value of shape {value.shape} and dtype {value.dtype} for a parameter of "
            f"shape {param.shape}"
        )
    param.data = np.array(value, copy=True)
    for key, array in arrays.items():
        if key != "value":
            index, name = key.split(".", 1)
            param.transforms[int(index)].set_state(name, array)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and numbers (NaN equals NaN; ``-0.0`` equals ``0.0``).

    A pruned negative weight's effective value is ``w * 0 = -0.0``; storing
    it as ``+0.0`` changes no output, so the two count as the same weight.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def round_trip_is_exact(param: Parameter, encoded: EncodedTensor) -> bool:
    """Decode ``encoded`` as the loader would: same effective value and transform state?

    Like ``load_compressed``, start from transforms rebuilt from their JSON
    config alone (a ``Mask`` of ones), so a candidate that forgets some
    state is caught.
    """
    clone = Parameter(np.zeros_like(param.data), requires_grad=param.requires_grad)
    for t in param.transforms:
        clone.add_transform(type(t).from_config(copy.deepcopy(t.get_config()), param.shape))
    try:
        restore_parameter(clone, encoded.decode())
    except ValueError:
        return False
    with no_grad():
        if not _same(clone.value(), param.value()):
            return False
    for mine, theirs in zip(clone.transforms, param.transforms):
        for (_, a), (_, b) in zip(mine.named_state(), theirs.named_state()):
            if not _same(a, b):
                return False
    return True


def encode_parameter(
    param: Parameter, use_huffman: bool = True, verify: bool = True
) -> EncodedTensor:
    """Choose and return the cheapest exact encoding of ``param``.

    Parameters
    ----------
    param : Parameter
    use_huffman : bool, default True
        Allow Huffman coding of integer streams (used only when smaller).
    verify : bool, default True
        Decode each candidate before accepting it (cheapest first) and
        reject any whose round trip is not exact.

    Returns
    -------
    EncodedTensor
        With ``reason`` (a sentence) and ``alternatives`` (every candidate
        considered, description -> bytes).

    Examples
    --------
    A dense float32 tensor stays dense; a 95%-sparse masked one usually
    takes relative indices (see ``reason``).
    """
    with no_grad():
        value = np.asarray(param.value())
    handler = STORAGE_HANDLERS.get(chain_of(param))
    candidates = handler(param, value, use_huffman) if handler is not None else []
    candidates.append(encode_state(state_entries(param)))  # always possible
    alternatives: dict[str, int] = {}
    for c in candidates:
        alternatives.update(c.alternatives or {c.description: c.nbytes})
    rejected = []
    for c in sorted(candidates, key=lambda c: c.nbytes):  # stable: handler's order breaks ties
        if verify and not round_trip_is_exact(param, c):
            rejected.append(c.description)
            continue
        others = sorted((b, d) for d, b in alternatives.items() if d != c.description)
        runner_up = f"; next best: {others[0][1]} ({others[0][0]:,} B)" if others else ""
        c.reason = (
            f"fewest bytes of {len(alternatives)} candidates for a parameter with transforms "
            f"{list(chain_of(param)) or 'none'}: {c.nbytes:,} B{runner_up}"
            + (f"; rejected as not exact: {rejected}" if rejected else "")
        )
        c.alternatives = alternatives
        return c
    raise RuntimeError(f"no exact encoding found for {param!r}")  # state is always exact


def encode_buffer(array: np.ndarray, use_huffman: bool = True) -> EncodedTensor:
    """A buffer (BatchNorm's running statistics): stored ``dense``, exactly as it is."""
    encoded = encode_dense(np.asarray(array), use_huffman)
    encoded.reason = "buffers are stored dense"
    return encoded
