"""The course's picture: held-out accuracy against the bytes of the compressed file.

One series per technique (its own colour and marker), the Pareto front as
a step line over all of them, and optionally published results as
reference points. With more than :data:`FEW_SERIES` techniques only the
front's points are labelled (a label on each of fifty points hides them
all); the legend then sits outside the axes. The look (log-x axis in bytes,
accuracy in percent, labelled points) comes from
:func:`tinynet.plotting.plot_accuracy_vs_bytes`, the same function the
lessons use, so lesson plots and the report look alike.

**Reference points are drawn only beside results on full MNIST.** A paper's
LeNet-300-100 was trained on 60,000 images and tested on the official test
set; a curve from the embedded 8,000-image subset is a different
experiment, and putting the two on one plot invites a comparison that
means nothing. So :func:`plot_accuracy_vs_size` warns and skips the
references unless ``dataset == "mnist"``, and :func:`published_points`
(what the report calls) returns none unless the data is full MNIST and the
model is one the papers used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compression.sweep.pareto import pareto_front
from compression.sweep.runner import Row
from tinynet.plotting import plot_accuracy_vs_bytes

#: A technique with more points than this is drawn without a label on every point.
MAX_ANNOTATED = 8
#: Up to this many techniques, every point is labelled; beyond, only the front's.
FEW_SERIES = 3
#: One colour and one marker per technique (matplotlib's ten, then two more).
COLOURS = tuple(f"C{i}" for i in range(10)) + ("navy", "teal")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d")


@dataclass(frozen=True)
class Reference:
    """A published result, drawn as a labelled star (never presented as ours).

    ``nbytes`` is the paper's size with KB read as 1,000 bytes (Han et al.'s
    1070 KB for LeNet-300-100 is 4 bytes x 266,610 parameters = 1,066,440
    bytes, rounded); ``accuracy`` is ``1 - error`` on the official MNIST
    test set.
    """

    label: str
    nbytes: int
    accuracy: float
    model: str  # the tinynet.models name of the network the paper used
    note: str

    @property
    def text(self) -> str:
        """What the plot writes beside the star: ``"Han et al. 2016 (paper), Deep Compression: 27 KB,
        98.42%"`` (whose, how many bytes, how accurate)."""
        return f"{self.label}: {self.nbytes / 1000:g} KB, {100 * self.accuracy:.2f}%"


#: From ../shared/ANCHORS.md (Han, Mao, Dally 2016, Deep Compression, Table 1).
PAPER_REFERENCES = (
    Reference(
        "Han et al. 2016 (paper), dense", 1_070_000, 1 - 0.0164, "lenet_300_100", "1070 KB, 1.64%"
    ),
    Reference(
        "Han et al. 2016 (paper), Deep Compression",
        27_000,
        1 - 0.0158,
        "lenet_300_100",
        "27 KB, 1.58% error: pruning, 6-bit shared weights, 5-bit relative indices, Huffman",
    ),
    Reference(
        "Han et al. 2016 (paper), dense", 1_720_000, 1 - 0.0080, "lenet5_caffe", "1720 KB, 0.80%"
    ),
    Reference(
        "Han et al. 2016 (paper), Deep Compression",
        44_000,
        1 - 0.0074,
        "lenet5_caffe",
        "44 KB, 0.74% error: conv 8-bit, fc 5-bit shared weights, pruning, Huffman",
    ),
)


def paper_references(model: str) -> list[Reference]:
    """The published points for ``model`` (none for LeCun's ``lenet5``: no paper here used it)."""
    return [r for r in PAPER_REFERENCES if r.model == model]


def published_points(model: str, dataset: str | None) -> list[Reference]:
    """The papers' points to draw beside ``model``'s results on ``dataset``: the only gate.

    Empty unless ``dataset`` is full MNIST (``"mnist"``, ``MNISTData.name``)
    *and* a paper used ``model`` (LeNet-300-100, LeNet-5-Caffe). The embedded
    subset, Fashion-MNIST and LeCun's LeNet-5 get none.

    >>> [r.text for r in published_points("lenet_300_100", "mnist")][1]
    'Han et al. 2016 (paper), Deep Compression: 27 KB, 98.42%'
    >>> published_points("lenet_300_100", "mnist-mini")
    []
    """
    return paper_references(model) if dataset == "mnist" else []


def usable_references(references: Sequence[Reference] | None, dataset: str | None) -> list[Any]:
    """``references`` if ``dataset`` is full MNIST; otherwise warn and return ``[]``."""
    if not references:
        return []
    if dataset != "mnist":
        where = "an unnamed dataset" if dataset is None else f"dataset {dataset!r}"
        warnings.warn(
            f"reference points not drawn: they are published results on full MNIST, and these "
            f"rows come from {where}; a paper's number beside a curve from other data "
            "invites a comparison that means nothing (pass dataset='mnist' for full-MNIST rows)",
            UserWarning,
            stacklevel=3,
        )
        return []
    return list(references)


def plot_accuracy_vs_size(
    rows: Sequence[Row],
    ax: Any = None,
    references: Sequence[Reference] | None = None,
    dataset: str | None = None,
    title: str | None = None,
) -> Any:
    """Held-out accuracy against compressed bytes: one series per technique, and the front.

    Parameters
    ----------
    rows : sequence of Row
        From :func:`~compression.sweep.run_sweep` or ``run_techniques``.
    ax : matplotlib Axes, optional
        Default: the current axes.
    references : sequence of Reference, optional
        Published points (:func:`published_points`), drawn as black stars,
        each labelled with its source, size and accuracy ("Han et al. 2016
        (paper), Deep Compression: 27 KB, 98.42%"), only when ``dataset == "mnist"``.
    dataset : str, optional
        Where the rows come from (``MNISTData.name``: ``"mnist"``,
        ``"mnist-mini"``, ``"fashion-mnist"``).
    title : str, optional
        Default: ``"accuracy against compressed size (<dataset>)"``.

    Returns
    -------
    matplotlib Axes

    Warns
    -----
    UserWarning
        When references are given but ``dataset`` is not ``"mnist"`` (they are skipped).
    """
    import matplotlib.pyplot as plt

    rows = list(rows)
    if not rows:
        raise ValueError("plot_accuracy_vs_size needs at least one row")
    references = usable_references(references, dataset)  # warn before drawing anything
    if ax is None:
        ax = plt.gca()
    techniques = list(dict.fromkeys(r.technique for r in rows))  # first-seen order
    front = pareto_front(rows)
    few = len(techniques) <= FEW_SERIES
    for i, name in enumerate(techniques):
        series = sorted((r for r in rows if r.technique == name), key=lambda r: r.nbytes)
        plot_accuracy_vs_bytes(
            [(r.setting, r.nbytes, r.accuracy) for r in series],
            ax=ax,
            label=name,
            annotate=few and len(series) <= MAX_ANNOTATED,
            color=COLOURS[i % len(COLOURS)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=5,
            linewidth=1.2,
        )
    if not few:  # label the front only: "LSQ 2-bit", "Deep Compression 95% pruned, 5-bit"
        for r in front:
            ax.annotate(
                f"{r.technique} {r.setting}",
                (r.nbytes, 100 * r.accuracy),
                textcoords="offset points",
                xytext=(5, -12),
                fontsize=7,
            )
    largest = max(r.nbytes for r in rows)  # the last step runs on to the largest point
    ax.step(
        [r.nbytes for r in front] + [largest],
        [100 * r.accuracy for r in front] + [100 * front[-1].accuracy],
        where="post",
        color="0.4",
        linestyle=":",
        linewidth=1.5,
        label="Pareto front",
        zorder=0,
    )
    if references:
        plot_accuracy_vs_bytes(
            [(r.text, r.nbytes, r.accuracy) for r in references],
            ax=ax,
            label="published (paper): theirs, not ours",
            annotate=False,
            marker="*",
            markersize=12,
            linestyle="none",
            color="black",
        )
        right = max([r.nbytes for r in rows] + [r.nbytes for r in references])
        for r in references:  # labels of points near the right edge go to their left
            left = r.nbytes > right / 4
            ax.annotate(
                r.text,
                (r.nbytes, 100 * r.accuracy),
                textcoords="offset points",
                xytext=(-6, 6) if left else (6, 6),
                ha="right" if left else "left",
                fontsize=8,
            )
    if few:
        ax.legend()
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title(title or f"accuracy against compressed size ({dataset or 'unnamed data'})")
    return ax
