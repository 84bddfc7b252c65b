"""What one layer may become: a grid of (sparsity, bits) options, checked, and put on a model.

Every ``Conv2d`` and ``Linear`` weight ``W_l`` gets one option
``(s_l, b_l)`` from the grid::

    W_l  ->  fake_quantize_b_l( W_l * M_l )      M_l = magnitude keep-mask, round(s_l * n_l) zeros

that is Deep Compression's order (Han et al. 2016, "Deep Compression:
Compressing Deep Neural Networks with Pruning, Trained Quantization and
Huffman Coding", sec. 2-3): prune first, then quantize what is left. On
the model it is a chain of two transforms on the parameter,
``[Mask, FakeQuantize]`` (``compression.pruning.prune_model`` then
``compression.quantization.quantize_weights``; the quantizer is symmetric,
per output channel by default, with its scale frozen from the pruned
weight), which ``compression.storage`` writes as ``b_l``-bit codes of the
kept entries plus their positions (bitmask, CSR or relative indices,
whichever is smallest) plus one float32 scale per channel. Sparsity 0
leaves out the mask. Biases stay float32 (they are few; Han et al. keep
them too).

Han et al. 2016 choose these settings per layer by hand (LeNet-5: 8 bits
for the conv layers, 5 for the fully connected ones; pruning rates from
their sensitivity scans, Han et al. 2015 Figure 5). HAQ (Wang et al. 2019,
"HAQ: Hardware-Aware Automated Quantization with Mixed Precision") searches
per-layer bit widths under a resource budget. This package makes the choice
from measurements under a budget in *bytes of the real file*.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from compression.pruning.apply import prune_model
from compression.quantization.affine import MAX_BITS, MIN_BITS
from compression.quantization.apply import quantize_weights, weight_names
from tinynet.module import Module

__all__ = [
    "BITS",
    "SPARSITIES",
    "LayerOption",
    "apply_choice",
    "check_option_bits",
    "check_option_sparsity",
    "option_grid",
]

#: Default sparsities of the grid (0: dense). 0.97-0.99 let the fully connected
#: layers of LeNet-5-Caffe reach budgets of 1/80 of the float32 file.
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
#: Default bit widths of the grid.
BITS = (8, 6, 5, 4, 3, 2)


def check_option_sparsity(sparsity: object) -> float:
    """``sparsity`` as a float after checking it lies in [0, 1).

    1 is refused: a layer with every weight pruned cuts the network in two.

    >>> check_option_sparsity(0.9)
    0.9
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise ValueError(
            f"sparsity must be a number in [0, 1) (the fraction of a layer's weights "
            f"pruned), got {sparsity!r} of type {type(sparsity).__name__}"
        )
    value = float(sparsity)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"sparsity must lie in [0, 1) (the fraction of a layer's weights pruned; 1 would "
            f"remove the whole layer), got {sparsity!r}"
        )
    return value


def check_option_bits(bits: object) -> int:
    """``bits`` as an int after checking it lies in ``MIN_BITS..MAX_BITS`` (2..16).

    >>> check_option_bits(4)
    4
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise ValueError(
            f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r} of type "
            f"{type(bits).__name__}"
        )
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(
            f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits} (the widths "
            "FakeQuantize stores; 1-bit weights: compression.quantization.binary)"
        )
    return int(bits)


@dataclass(frozen=True)
class LayerOption:
    """One way to store one layer's weight: ``sparsity`` pruned, the rest at ``bits`` bits.

    >>> LayerOption(0.9, 4)
    LayerOption(sparsity=0.9, bits=4)
    >>> LayerOption(0.9, 4).label()
    '90% pruned, 4-bit'
    """

    sparsity: float
    bits: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", check_option_sparsity(self.sparsity))
        object.__setattr__(self, "bits", check_option_bits(self.bits))

    def label(self) -> str:
        """``"90% pruned, 4-bit"``."""
        return f"{self.sparsity:.0%} pruned, {self.bits}-bit"

    def as_list(self) -> list[float | int]:
        """``[sparsity, bits]`` (for JSON)."""
        return [self.sparsity, self.bits]


def option_grid(
    sparsities: Iterable[float] = SPARSITIES, bits: Iterable[int] = BITS
) -> list[LayerOption]:
    """Every ``(sparsity, bits)`` pair, sparsities outer, in the order given.

    Raises
    ------
    ValueError
        For an empty list, a repeated value, a sparsity outside [0, 1) or
        bits outside 2..16.

    >>> [o.label() for o in option_grid([0.0, 0.5], [8, 4])]
    ['0% pruned, 8-bit', '0% pruned, 4-bit', '50% pruned, 8-bit', '50% pruned, 4-bit']
    """
    sparsities = [check_option_sparsity(s) for s in sparsities]
    bits = [check_option_bits(b) for b in bits]
    for what, values in (("sparsities", sparsities), ("bits", bits)):
        if not values:
            raise ValueError(f"the option grid needs at least one of each; {what} is empty")
        if len(set(values)) != len(values):
            raise ValueError(f"{what} of the option grid repeat a value: {values}")
    return [LayerOption(s, b) for s in sparsities for b in bits]


def apply_choice(
    model: Module, choice: Mapping[str, LayerOption], per_channel: bool = True
) -> Module:
    """Prune and quantize each named weight with its option, in place; returns ``model``.

    ``choice`` maps weight names (``"0.weight"``, as
    :func:`~compression.quantization.apply.weight_names` lists them) to
    :class:`LayerOption`; weights not named stay float. Each named weight
    gets a ``Mask`` (when its sparsity is above 0: layer-wise magnitude
    pruning, exactly ``round(s * n)`` zeros) and then a frozen
    ``FakeQuantize`` (symmetric, per output channel with ``per_channel``),
    whose scale is taken from the pruned weight.

    Raises
    ------
    ValueError
        For a name that is not a ``Conv2d``/``Linear`` weight of ``model``
        or a weight that is already quantized.
    """
    names = weight_names(model)
    unknown = [n for n in choice if n not in names]
    if unknown:
        raise ValueError(f"choice names {unknown}, which are not weights of the model: {names}")
    options = {name: _as_option(option, name) for name, option in choice.items()}
    sparsity = {n: o.sparsity for n, o in options.items() if o.sparsity > 0}
    if sparsity:
        prune_model(model, sparsity)
    if options:
        bits = {n: o.bits for n, o in options.items()}
        quantize_weights(model, bits, per_channel=per_channel, symmetric=True)
    return model


def _as_option(option: object, name: str) -> LayerOption:
    if isinstance(option, LayerOption):
        return option
    if isinstance(option, tuple | list) and len(option) == 2:
        return LayerOption(*option)
    raise TypeError(
        f"the option for {name!r} must be a LayerOption or (sparsity, bits), got {option!r}"
    )
