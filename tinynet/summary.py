"""A table of a model's layers: output shapes, parameters, bytes and multiply-accumulates.

``summary(model, (1, 28, 28))`` runs one forward pass on a batch of zeros
and, with a forward hook on every leaf module, records each layer's output
shape. Then, per layer:

* parameters: the number of trainable entries (weights + biases);
* bytes: 4 per parameter, the float32 size (the denominator of every
  compression ratio in this project);
* MACs, multiply-accumulates for **one** sample::

      Linear(in, out):          in * out                    (per input row)
      Conv2d(C_in, C_out, k):   C_out * H_out * W_out * C_in * kh * kw
      anything else:            0 (pooling, activations, reshapes: no weights)

  One MAC is one ``a += w * x``; FLOPs are about twice the MACs.

This is the table ``torchinfo.summary`` / Keras ``model.summary()`` print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinynet.grad_mode import no_grad
from tinynet.layers import Conv2d, Linear
from tinynet.module import Module

__all__ = ["Summary", "SummaryRow", "count_macs", "summary"]


@dataclass
class SummaryRow:
    """One leaf module's line in the table."""

    index: int
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    bytes: int
    macs: int


class Summary:
    """The result of :func:`summary`: ``rows`` plus totals; ``print()`` it for the table.

    Attributes
    ----------
    rows : list of SummaryRow
        One per leaf module, in the order they ran.
    input_shape : tuple of int
        The shape of one sample (without the batch dimension).
    total_params, total_bytes, total_macs : int
        Sums over the model (parameters counted once, even if a module ran twice).
    """

    def __init__(
        self, rows: list[SummaryRow], input_shape: tuple[int, ...], total_params: int
    ) -> None:
        self.rows = rows
        self.input_shape = input_shape
        self.total_params = total_params
        self.total_bytes = 4 * total_params
        self.total_macs = sum(row.macs for row in rows)

    def __str__(self) -> str:
        header = ("layer", "type", "output shape", "params", "bytes (fp32)", "MACs")
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    r.type,
                    str(r.output_shape),
                    f"{r.params:,}",
                    f"{r.bytes:,} B",
                    f"{r.macs:,}",
                )
            )
        right = {3, 4, 5}  # numbers are right-aligned
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(fmt(header))
        table = [fmt(header), rule, *(fmt(line) for line in lines[1:]), rule]
        table.append(f"input shape (per sample): {self.input_shape}")
        table.append(
            f"total parameters: {self.total_params:,}   "
            f"float32 size: {self.total_bytes:,} B ({self.total_bytes / 1000:,.1f} KB)"
        )
        table.append(f"total MACs per sample: {self.total_macs:,}")
        return "\n".join(table)

    def __repr__(self) -> str:
        return str(self)


def count_macs(module: Module, output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``module`` for the whole batch that gave ``output_shape``.

    ``Linear``: ``in * out`` per output row, so ``weight.size * (output.size / out)``.
    ``Conv2d``: each output value is one dot product of length ``C_in*kh*kw``,
    so ``weight.size * H_out * W_out`` per sample. Other modules: 0.
    """
    if isinstance(module, Linear):
        rows = int(np.prod(output_shape[:-1]))
        return int(module.weight.size) * rows
    if isinstance(module, Conv2d):
        n, _, h_out, w_out = output_shape
        return int(module.weight.size) * h_out * w_out * n
    return 0


def summary(model: Module, input_shape: Sequence[int], dtype: Any = np.float32) -> Summary:
    """Run ``model`` on zeros of shape ``(1, *input_shape)`` and tabulate its layers.

    The pass runs under ``no_grad`` in eval mode (no caches kept, BatchNorm's
    running statistics untouched); every module gets its previous mode back.

    Parameters
    ----------
    model : Module
    input_shape : sequence of int
        One sample's shape, e.g. ``(1, 28, 28)`` for MNIST images.
    dtype : numpy dtype, default float32

    Returns
    -------
    Summary
        ``print(summary(lenet5(), (1, 28, 28)))`` shows, e.g.,
        ``0  Conv2d  (1, 6, 28, 28)  156  624 B  117,600`` (the layer column is
        the ``state_dict`` prefix).
    """
    input_shape = tuple(int(s) for s in input_shape)
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    records: list[tuple[str, Module, tuple[int, ...]]] = []

    def make_hook(name: str) -> Any:
        def hook(module: Module, x: np.ndarray, out: np.ndarray) -> None:
            records.append((name, module, tuple(np.shape(out))))

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in leaves]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            model(np.zeros((1, *input_shape), dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training

    rows = []
    for index, (name, module, shape) in enumerate(records):
        params = sum(p.size for p in module.parameters())
        rows.append(
            SummaryRow(
                index=index,
                name=name or type(module).__name__,
                type=type(module).__name__,
                output_shape=shape,
                params=params,
                bytes=4 * params,
                macs=count_macs(module, shape),
            )
        )
    total_params = sum(p.size for p in model.parameters())
    return Summary(rows, input_shape, total_params)
