"""The per-layer table of Deep Compression (Han et al. 2016, Tables 2 and 3), from the real file.

Han, Mao and Dally give, for each layer: the number of weights, the
fraction kept by pruning (P), the bits per weight and per index after
quantization (P+Q) and after Huffman coding (P+Q+H), and the compression
rate, the stored size as a percentage of the float32 size. This module
builds the same table for a model, with every number taken from the
storage's own :func:`~compression.storage.size_report` (once without
Huffman coding, once with), so that::

    sum of the layer rows + the container header = the file's length

per column (the header, the JSON architecture and tensor table, is a row
of its own: Han et al. count no such thing). For a layer with ``n``
weights of which ``kept`` are stored::

    weight bits = bits of its value/code stream / kept       (fillers' codes included)
    index bits  = bits of its position stream / kept         (0 for a dense layer)
    bytes       = every byte of the layer in the file: codes, positions,
                  codebook, Huffman tables, its bias (float32)
    rate        = bytes / (4 * (weights + biases))            (Han et al. 3.1% = 32x)

Each column describes the file actually written, whose layout the storage
chooses per tensor (fewest bytes): with relative indices a pruned layer's
fillers add codes and indices beyond its kept weights; with Huffman coding
allowed, a small layer may switch to one code per entry (a reserved code
for the zeros, no index stream at all), so its weight bits can *rise* while
its bytes fall.

The paper's numbers (:data:`PAPER`, from ``ANCHORS.md``) are printed under
ours, each labelled as theirs; a dash marks a figure ANCHORS.md does not
give. Their "LeNet-5" is LeNet-5-Caffe (431,080 parameters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from compression.pruning.apply import current_keep
from compression.storage import size_report
from tinynet.module import Module

__all__ = ["PAPER", "DeepCompressionTable", "LayerRow", "PaperLayer", "PaperNumbers", "han_table"]


# ----------------------------------------------------------- the paper's
@dataclass(frozen=True)
class PaperLayer:
    """One layer as the paper reports it (None: not given in ANCHORS.md)."""

    name: str
    kept: float | None
    weight_bits: int | None
    index_bits: int | None


@dataclass(frozen=True)
class PaperNumbers:
    """A model's Deep Compression figures as published."""

    source: str
    layers: tuple[PaperLayer, ...]
    kept: float  # of all weights, after pruning
    dense_kb: float
    compressed_kb: float
    ratio_before_huffman: float
    ratio: float
    error_dense: float  # percent
    error_compressed: float  # percent


_SOURCE = (
    "Han, Mao, Dally 2016 (Deep Compression), as quoted in ANCHORS.md; the layers' kept "
    "fractions are those of Han et al. 2015, the pruning it starts from"
)
#: Published reference points, by model name (``tinynet.models``).
PAPER = {
    "lenet_300_100": PaperNumbers(
        _SOURCE,
        (
            PaperLayer("ip1", 0.08, 6, 5),
            PaperLayer("ip2", 0.09, 6, 5),
            PaperLayer("ip3", 0.26, 6, 5),
        ),
        kept=22 / 267,  # 22K of 267K parameters (Han et al. 2015)
        dense_kb=1070,
        compressed_kb=27,
        ratio_before_huffman=32,
        ratio=40,
        error_dense=1.64,
        error_compressed=1.58,
    ),
    "lenet5_caffe": PaperNumbers(
        _SOURCE,
        (
            PaperLayer("conv1", 0.66, 8, 5),
            PaperLayer("conv2", 0.12, 8, 5),
            PaperLayer("ip1", 0.08, 5, 5),
            PaperLayer("ip2", 0.19, 5, 5),
        ),
        kept=36 / 431,  # 36K of 431K
        dense_kb=1720,
        compressed_kb=44,
        ratio_before_huffman=33,
        ratio=39,
        error_dense=0.80,
        error_compressed=0.74,
    ),
}


# -------------------------------------------------------------- our rows
@dataclass
class LayerRow:
    """One layer of the file: ``(before, after)`` Huffman coding in each pair."""

    layer: str
    layer_type: str
    weights: int  # entries of its weight tensor
    parameters: int  # weights and biases
    kept: int  # weights stored
    value_bits: tuple[int, int]  # the weight's code (or value) stream
    index_bits: tuple[int, int]  # the weight's position stream
    nbytes: tuple[int, int]  # every tensor of the layer, in the file

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.weights if self.weights else 1.0

    def bits_per_weight(self, i: int) -> float:
        """Weight bits (P+Q for ``i = 0``, P+Q+H for ``i = 1``) per kept weight."""
        return self.value_bits[i] / self.kept if self.kept else 0.0

    def bits_per_index(self, i: int) -> float:
        return self.index_bits[i] / self.kept if self.kept else 0.0

    def rate(self, i: int) -> float:
        """Stored bytes over float32 bytes: Han et al.'s "compress rate"."""
        return self.nbytes[i] / (4 * self.parameters)


@dataclass
class DeepCompressionTable:
    """Han et al.'s Tables 2/3 for our file, with their numbers beside ours.

    ``totals()`` equals the file's length without and with Huffman coding.
    """

    rows: list[LayerRow]
    header_bytes: tuple[int, int]
    parameters: int
    paper: PaperNumbers | None = None
    title: str = ""

    def totals(self) -> tuple[int, int]:
        """Bytes of the whole file ``(before, after)`` Huffman: the rows plus the header."""
        return tuple(  # type: ignore[return-value]
            sum(r.nbytes[i] for r in self.rows) + self.header_bytes[i] for i in (0, 1)
        )

    def ratios(self) -> tuple[float, float]:
        """``4 * parameters / file bytes``, before and after Huffman."""
        before, after = self.totals()
        return 4 * self.parameters / before, 4 * self.parameters / after

    def _total_row(self) -> LayerRow:
        def add(attr: str) -> tuple[int, int]:
            return tuple(sum(getattr(r, attr)[i] for r in self.rows) for i in (0, 1))  # type: ignore[return-value]

        return LayerRow(
            "total",
            "",
            sum(r.weights for r in self.rows),
            self.parameters,
            sum(r.kept for r in self.rows),
            add("value_bits"),
            add("index_bits"),
            self.totals(),
        )

    # ------------------------------------------------------------ output
    HEAD = (
        "layer",
        "#weights",
        "kept",
        "weight bits P+Q",
        "P+Q+H",
        "index bits P+Q",
        "P+Q+H",
        "bytes P+Q",
        "P+Q+H",
        "rate P+Q",
        "P+Q+H",
    )

    def _ours(self, r: LayerRow, name: str) -> list[str]:
        return [
            name,
            f"{r.weights:,}",
            f"{r.kept_fraction:.1%}",
            f"{r.bits_per_weight(0):.2f}",
            f"{r.bits_per_weight(1):.2f}",
            f"{r.bits_per_index(0):.2f}",
            f"{r.bits_per_index(1):.2f}",
            f"{r.nbytes[0]:,}",
            f"{r.nbytes[1]:,}",
            f"{r.rate(0):.2%}",
            f"{r.rate(1):.2%}",
        ]

    def _theirs(self, p: PaperLayer) -> list[str]:
        def show(v: Any, fmt: str = "{}") -> str:
            return "-" if v is None else fmt.format(v)

        return [
            f"  {p.name} (Han et al. 2016)",
            "",
            show(p.kept, "{:.0%}"),
            show(p.weight_bits),
            "-",
            show(p.index_bits),
            "-",
            "-",
            "-",
            "-",
            "-",
        ]

    def cells(self) -> list[list[str]]:
        """Body of the table: our layers (paper rows under them), header, total."""
        paper = self.paper
        if paper is not None and len(paper.layers) != len(self.rows):
            paper = None  # another architecture: the layers cannot be matched one to one
        body = []
        for i, r in enumerate(self.rows):
            body.append(self._ours(r, f"{r.layer} ({r.layer_type})"))
            if paper is not None:
                body.append(self._theirs(paper.layers[i]))
        header = ["(container header)", "", "", "", "", "", ""]
        header += [f"{self.header_bytes[0]:,}", f"{self.header_bytes[1]:,}", "", ""]
        body.append(header)
        body.append(self._ours(self._total_row(), "total"))
        if paper is not None:
            body.append(
                [
                    "  total (Han et al. 2016)",
                    "",
                    f"{paper.kept:.0%}",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"{paper.compressed_kb:g} KB",
                    f"{1 / paper.ratio_before_huffman:.2%}",
                    f"{1 / paper.ratio:.2%}",
                ]
            )
        return body

    def summary(self) -> list[str]:
        """The ratios in words, ours and (labelled) theirs."""
        (before, after), (r0, r1) = self.totals(), self.ratios()
        lines = [
            f"ours: {4 * self.parameters:,} B of float32 -> {before:,} B before Huffman "
            f"({r0:.1f}x), {after:,} B after ({r1:.1f}x); the file's length, header included",
        ]
        if self.paper is not None:
            p = self.paper
            lines.append(
                f"Han et al. 2016 (their numbers): {p.dense_kb:g} KB -> {p.compressed_kb:g} KB, "
                f"{p.ratio:g}x ({p.ratio_before_huffman:g}x before Huffman), error "
                f"{p.error_dense:.2f}% -> {p.error_compressed:.2f}%; rates = 1 / their ratios; "
                "'-': not given in ANCHORS.md"
            )
        return lines

    def __str__(self) -> str:
        body = self.cells()
        rows = [list(self.HEAD), *body]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEAD))]

        def fmt(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(fmt(list(self.HEAD)))
        title = [self.title] if self.title else []
        return "\n".join(
            [*title, fmt(list(self.HEAD)), rule, *map(fmt, body), rule, *self.summary()]
        )

    def to_markdown(self) -> str:
        """The table as Markdown, the summary as a list under it."""
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| " + " | ".join(self.HEAD) + " |", "|---" + "|--:" * (len(self.HEAD) - 1) + "|"]
        lines += ["| " + " | ".join(c.strip() for c in cells) + " |" for cells in self.cells()]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in self.summary()) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready rows, totals and the paper's figures."""
        return {
            "title": self.title,
            "rows": [asdict(r) for r in self.rows],
            "header_bytes": list(self.header_bytes),
            "total_bytes": list(self.totals()),
            "ratios": list(self.ratios()),
            "parameters": self.parameters,
            "paper": None if self.paper is None else asdict(self.paper),
        }


def han_table(
    model: Module, huffman: bool = True, paper: str | None = None, title: str = ""
) -> DeepCompressionTable:
    """Build the per-layer table of ``model``'s compressed file (Han et al. 2016, Tables 2/3).

    Parameters
    ----------
    model : Module
        Pruned and weight-shared (any model works: a dense layer keeps 100%).
    huffman : bool, default True
        Whether the "P+Q+H" column's file uses Huffman coding (False when
        the pipeline kept the un-coded file; the two columns then agree).
    paper : str, optional
        A key of :data:`PAPER` (``"lenet_300_100"``, ``"lenet5_caffe"``): print
        the paper's rows beside ours, matched layer by layer in order.
    title : str

    Returns
    -------
    DeepCompressionTable
        ``totals()`` equals ``(size_report(model, False).total_bytes,
        size_report(model, huffman).total_bytes)``.
    """
    if paper is not None and paper not in PAPER:
        raise ValueError(f"paper must be one of {sorted(PAPER)} or None, got {paper!r}")
    reports = [size_report(model, use_huffman=h, reference_files=False) for h in (False, huffman)]
    params = {full: p for full, _, _, p in model.named_parameter_slots()}
    rows: dict[str, LayerRow] = {}
    for report_rows in zip(*(r.rows for r in reports)):
        first = report_rows[0]
        if first["layer"] == "(container)":
            continue
        row = rows.setdefault(
            first["layer"],
            LayerRow(first["layer"], first["layer_type"], 0, 0, 0, (0, 0), (0, 0), (0, 0)),
        )
        row.nbytes = tuple(a + r["total_bytes"] for a, r in zip(row.nbytes, report_rows))  # type: ignore[assignment]
        if first["kind"] == "parameter":
            row.parameters += first["elements"]
        if first["tensor"].endswith(".weight") or first["tensor"] == "weight":
            row.weights = first["elements"]
            row.kept = int(current_keep(params[first["tensor"]]).sum())
            row.value_bits = tuple(r["values_bits"] for r in report_rows)  # type: ignore[assignment]
            row.index_bits = tuple(r["indices_bits"] for r in report_rows)  # type: ignore[assignment]
    header = tuple(r.by_layer()["(container)"] for r in reports)
    table = DeepCompressionTable(
        list(rows.values()),
        header,  # type: ignore[arg-type]
        reports[0].n_params,
        PAPER.get(paper) if paper else None,
        title,
    )
    if table.totals() != (reports[0].total_bytes, reports[1].total_bytes):
        raise RuntimeError("the table's rows do not add up to the size report's total")
    return table
