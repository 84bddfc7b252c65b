"""The measurements an allocator needs: each layer's bytes and damage under each option.

For every eligible weight ``l`` (``Conv2d``/``Linear``) and every option
``o = (s, b)`` of the grid, :func:`measure_table` compresses layer ``l``
*alone* with ``o`` (the other layers left float), then records

* ``bytes[l, o]``: what that weight takes in the real compressed file,
  measured by ``compression.storage`` on the actual pruned and quantized
  tensor (``plan_container``, the function ``save_compressed`` writes
  with), not by a formula: its payload (codes, positions, scales, Huffman
  tables: whatever encoding the storage chooses) plus its share of the JSON
  header (its tensor-table entry and its transform chain);
* ``accuracy_drop[l, o] = acc(model) - acc(model with l compressed by o)``
  and ``loss_increase[l, o] = L(model with l compressed by o) - L(model)``
  on a calibration set: a slice of the *training* data or a validation
  split, never the held-out set (choosing options is tuning).

This is Han et al.'s sensitivity scan (2015, "Learning both Weights and
Connections for Efficient Neural Networks", Figure 5: each layer pruned
alone, no retraining), extended from sparsity alone to (sparsity, bits)
pairs. One file costs ``overhead + sum_l bytes[l, o_l]``, where
``overhead`` (the 14-byte prefix, the architecture JSON, the biases, the
rest of the header) is measured once on a reference model with every layer
at the grid's first option.

The independence assumption
---------------------------
An allocator treats the damage as additive::

    damage(o_1, ..., o_L) ~ sum_l damage_l(o_l)

For the loss this is a second-order Taylor argument: with ``dW_l`` the
change of layer ``l``, ``dL ~ g' dW + 1/2 dW' H dW``, and near a minimum
(``g ~ 0``) with the cross-layer blocks of the Hessian ``H`` ignored, the
increase is a sum of per-layer terms (LeCun et al. 1990's "Optimal Brain
Damage" makes the same diagonal approximation within a layer). Its
weaknesses: errors in successive layers compound, so several moderately
compressed layers together can cost far more than the sum (the cross
terms are not small once the changes are large); accuracy saturates (a
drop cannot exceed the accuracy there is) so summed accuracy drops say
nothing sensible past a few points; on training images a trained model is
near 100% right, so accuracy drops are mostly 0 in steps of ``1 / N`` and
the loss separates options better; and fine-tuning afterwards repairs
some layers more than others, which no scan without retraining sees.
The bytes, by contrast, are additive up to a few header bytes (the
decimal digits of segment offsets, the payload length and its CRC-32 in
the JSON header).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.allocation.options import LayerOption, apply_choice
from compression.quantization.apply import weight_names
from compression.storage.container import ContainerPlan, plan_container
from tinynet.module import Module
from tinynet.train import evaluate

__all__ = ["METRICS", "SensitivityTable", "measure_table", "tensor_share"]

#: What an allocator may minimise: summed accuracy drops or summed loss increases.
METRICS = ("accuracy", "loss")


def _dumps(obj: Any) -> str:
    """JSON exactly as the container writes its header (compact separators)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def tensor_share(plan: ContainerPlan, name: str) -> int:
    """Bytes the parameter ``name`` takes in the planned file: payload plus header share.

    ``payload`` is the bytes of its segments (``EncodedTensor.nbytes``); the
    header share is its entry in the JSON tensor table and its entry in the
    JSON transform table, each with the comma that separates it from the
    next. Summed over all tensors and added to the rest of the header and
    the prefix, the shares give ``plan.total_bytes`` exactly.
    """
    stored = [t for t in plan.tensors if t.name == name]
    if len(stored) != 1:
        raise ValueError(f"the planned file has no tensor named {name!r}")
    header = json.loads(plan.header.decode("utf-8"))
    entry = next(e for e in header["tensors"] if e["name"] == name)
    share = stored[0].encoded.nbytes + len(_dumps(entry)) + 1
    chain = header["transforms"].get(name)
    if chain is not None:  # '"0.weight":[...],'
        share += len(_dumps(name)) + 1 + len(_dumps(chain)) + 1
    return share


@dataclass
class SensitivityTable:
    """Per-layer bytes and damage of every option (rows: layers, columns: options).

    Attributes
    ----------
    names : list of str, length L
        Weight names, ``"0.weight"``...
    options : list of LayerOption, length O
    layer_bytes : ndarray of int64, shape (L, O)
        Bytes of layer ``l``'s weight in the file when stored with option ``o``.
    accuracy_drop, loss_increase : ndarray of float64, shape (L, O)
        Damage when only layer ``l`` is compressed with option ``o``.
    overhead_bytes : int
        Everything else in the file: prefix, architecture, biases, header.
    base_accuracy, base_loss : float
        Of the uncompressed model on the calibration set.
    n_params : int
        Weights and biases of the model (``4 * n_params`` = float32 bytes).
    per_channel, use_huffman : bool
        How options were stored (the final model must be stored the same way).
    calibration_size : int
        Images the damage was measured on.
    """

    names: list[str]
    options: list[LayerOption]
    layer_bytes: np.ndarray
    accuracy_drop: np.ndarray
    loss_increase: np.ndarray
    overhead_bytes: int
    base_accuracy: float
    base_loss: float
    n_params: int
    per_channel: bool = True
    use_huffman: bool = True
    calibration_size: int = 0

    @property
    def dense_float32_bytes(self) -> int:
        """``4 * n_params``: DESIGN.md's denominator of compression ratios."""
        return 4 * self.n_params

    def drops(self, metric: str = "loss") -> np.ndarray:
        """The damage table the allocator minimises: ``accuracy_drop`` or ``loss_increase``."""
        if metric == "accuracy":
            return self.accuracy_drop
        if metric == "loss":
            return self.loss_increase
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")

    def indices(self, choice: Mapping[str, LayerOption]) -> list[int]:
        """Column of each layer's option, in the order of ``names``."""
        missing = [n for n in self.names if n not in choice]
        if missing:
            raise ValueError(f"the choice has no option for {missing}")
        out = []
        for name in self.names:
            if choice[name] not in self.options:
                raise ValueError(f"{choice[name]} for {name!r} is not an option of the table")
            out.append(self.options.index(choice[name]))
        return out

    def estimate_bytes(self, choice: Mapping[str, LayerOption]) -> int:
        """``overhead_bytes + sum_l layer_bytes[l, o_l]``: the estimated file length."""
        idx = self.indices(choice)
        return self.overhead_bytes + int(sum(self.layer_bytes[l, o] for l, o in enumerate(idx)))

    def estimate_drop(self, choice: Mapping[str, LayerOption], metric: str = "loss") -> float:
        """``sum_l drops[l, o_l]``: the additive estimate of the damage."""
        table = self.drops(metric)
        return float(sum(table[l, o] for l, o in enumerate(self.indices(choice))))

    def smallest_bytes(self) -> int:
        """The smallest file the grid can make: every layer at its cheapest option."""
        return self.overhead_bytes + int(self.layer_bytes.min(axis=1).sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``from_dict`` rebuilds the table)."""
        return {
            "names": list(self.names),
            "options": [o.as_list() for o in self.options],
            "layer_bytes": self.layer_bytes.tolist(),
            "accuracy_drop": self.accuracy_drop.tolist(),
            "loss_increase": self.loss_increase.tolist(),
            "overhead_bytes": self.overhead_bytes,
            "base_accuracy": self.base_accuracy,
            "base_loss": self.base_loss,
            "n_params": self.n_params,
            "per_channel": self.per_channel,
            "use_huffman": self.use_huffman,
            "calibration_size": self.calibration_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SensitivityTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            names=list(d["names"]),
            options=[LayerOption(s, b) for s, b in d["options"]],
            layer_bytes=np.asarray(d["layer_bytes"], dtype=np.int64),
            accuracy_drop=np.asarray(d["accuracy_drop"], dtype=np.float64),
            loss_increase=np.asarray(d["loss_increase"], dtype=np.float64),
            overhead_bytes=int(d["overhead_bytes"]),
            base_accuracy=float(d["base_accuracy"]),
            base_loss=float(d["base_loss"]),
            n_params=int(d["n_params"]),
            per_channel=bool(d["per_channel"]),
            use_huffman=bool(d["use_huffman"]),
            calibration_size=int(d["calibration_size"]),
        )

    def __str__(self) -> str:
        """One line per layer: the bytes and loss increase of a few options."""
        lines = [
            f"sensitivity table: {len(self.names)} layers x {len(self.options)} options, "
            f"overhead {self.overhead_bytes:,} B, base accuracy {self.base_accuracy:.2%} "
            f"on {self.calibration_size:,} calibration images"
        ]
        for l, name in enumerate(self.names):
            cheapest = int(np.argmin(self.layer_bytes[l]))
            lines.append(
                f"  {name:<12} {self.layer_bytes[l].max():>9,} .. {self.layer_bytes[l].min():>7,} B;"
                f" at {self.options[cheapest].label()}: accuracy "
                f"{-self.accuracy_drop[l, cheapest]:+.2%}, loss "
                f"{self.loss_increase[l, cheapest]:+.4f}"
            )
        return "\n".join(lines)


def _score(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    result = evaluate(model, x, y, batch_size=batch_size)
    return float(result["accuracy"]), float(result["loss"])


def measure_table(
    model: Module,
    data: tuple[np.ndarray, np.ndarray],
    options: Sequence[LayerOption],
    *,
    per_channel: bool = True,
    use_huffman: bool = True,
    batch_size: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> SensitivityTable:
    """Scan every (layer, option) pair: bytes in the real file, and damage on ``data``.

    ``len(names) * len(options)`` evaluations of the model on ``data``,
    each on a copy with one layer compressed; ``model`` itself is not
    changed. Each layer is measured with the others float: an allocator
    that adds these numbers up assumes the layers do not interact (see the
    module docstring for why that holds for small changes of the loss and
    where it fails).

    Parameters
    ----------
    model : Module
        Trained, float (no quantizers yet).
    data : tuple (x, y)
        The calibration set: training images or a validation split, never
        the held-out set.
    options : sequence of LayerOption
        The grid (:func:`~compression.allocation.option_grid`).
    per_channel : bool, default True
        One quantization scale per output channel (else per tensor).
    use_huffman : bool, default True
        As ``save_compressed`` will be called.
    progress : callable taking a str, optional
        Called once per layer with a summary line.

    Returns
    -------
    SensitivityTable
    """
    options = list(options)
    if not options:
        raise ValueError("options is empty: pass a grid, e.g. option_grid()")
    x, y = data
    if len(x) == 0:
        raise ValueError("the calibration set is empty")
    names = weight_names(model)
    base_acc, base_loss = _score(model, x, y, batch_size)
    shape = (len(names), len(options))
    layer_bytes = np.zeros(shape, dtype=np.int64)
    acc_drop, loss_up = np.zeros(shape), np.zeros(shape)
    for l, name in enumerate(names):
        for o, option in enumerate(options):
            net = apply_choice(copy.deepcopy(model), {name: option}, per_channel)
            acc, loss = _score(net, x, y, batch_size)
            acc_drop[l, o], loss_up[l, o] = base_acc - acc, loss - base_loss
            layer_bytes[l, o] = tensor_share(plan_container(net, use_huffman), name)
        if progress is not None:
            progress(
                f"{name}: {layer_bytes[l].max():,} .. {layer_bytes[l].min():,} B, accuracy drop "
                f"{acc_drop[l].min():+.2%} .. {acc_drop[l].max():+.2%}"
            )
    reference = apply_choice(copy.deepcopy(model), dict.fromkeys(names, options[0]), per_channel)
    plan = plan_container(reference, use_huffman)
    overhead = plan.total_bytes - sum(tensor_share(plan, name) for name in names)
    n_params = sum(p.size for _, _, _, p in model.named_parameter_slots())
    return SensitivityTable(
        names=names,
        options=options,
        layer_bytes=layer_bytes,
        accuracy_drop=acc_drop,
        loss_increase=loss_up,
        overhead_bytes=int(overhead),
        base_accuracy=base_acc,
        base_loss=base_loss,
        n_params=int(n_params),
        per_channel=per_channel,
        use_huffman=use_huffman,
        calibration_size=int(len(x)),
    )
