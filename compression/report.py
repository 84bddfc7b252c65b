"""The main job's report: a folder a reader can open and check.

``python -m compression`` (see ``compression/__main__.py``) sweeps every
technique and calls :func:`write_report`, which writes::

    report/
      README.md             what ran (command, data, seeds, machine, time) and the results
      accuracy_vs_size.png  held-out accuracy against compressed bytes, Pareto front
      rows.csv, rows.md     every grid point: bytes, accuracy, inference time, extras
      size_reports.md       the per-layer, per-term size report of each technique's best point
      deep_compression.md   each Deep Compression point: its stages, and Han et al.'s
                            per-layer table (Tables 2/3) of its file
      density_curve.png     pruning from 100% to 1% of the weights: one-shot, iterative, gradual
      models/               every point's compressed file (its length is its row's bytes)
      baseline_*.npz/.json  the cached baseline and its sidecar (written by __main__)
      cache/                every finished point's row and file, and the density curve
                            (written by __main__: a rerun resumes, see compression.sweep.cache)

"Best point" means the highest *validation* accuracy (then fewest bytes):
choosing by held-out accuracy would tune on the numbers we report.

Published points (Han et al. 2016) are drawn, and the paper's per-layer
figures printed, only when the data is full MNIST and the model is one the
paper used (:func:`compression.sweep.plot.published_points`).
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compression.pruning.curves import DensityPoint, density_table_markdown, plot_density_curve
from compression.storage import SizeReport, load_compressed
from compression.sweep import (
    BLAS_THREAD_VARIABLES,
    TECHNIQUES,
    Reference,
    Row,
    best_by_technique,
    pareto_front,
    plot_accuracy_vs_size,
    to_csv,
    to_markdown,
)
from compression.sweep.measure import TIME_BATCH, TIME_REPEATS
from compression.sweep.plot import paper_references
from tinynet.plotting import format_bytes

FILES = ("README.md", "accuracy_vs_size.png", "rows.csv", "rows.md", "size_reports.md")
#: Written when the rows hold Deep Compression points.
PIPELINE_FILE = "deep_compression.md"
#: The technique whose points get Han et al.'s per-layer table.
PIPELINE = "Deep Compression"


def load_average() -> str:
    """``"1.52 1.20 0.98"`` (1, 5 and 15 minutes), or ``"n/a"`` where the OS has none."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def machine_info() -> dict[str, str]:
    """Where the run happened: OS, CPU count, Python and NumPy versions, BLAS threads, load."""
    blas = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in BLAS_THREAD_VARIABLES)
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas threads": blas,
    }


@dataclass
class RunInfo:
    """What the README says about the run (filled in by ``__main__``)."""

    command: str
    model: str
    dataset: str  # MNISTData.name: "mnist-mini", "mnist", "fashion-mnist"
    seed: int
    epochs: int
    fast: bool
    jobs: int
    images: dict[str, int]  # {"train": 7200, "validation": 800, "held-out": 2000}
    baseline: dict[str, Any]  # the sidecar, plus "cached": bool and "file"
    started: str = ""
    seconds: float = 0.0
    load_before: str = ""
    load_after: str = ""
    machine: dict[str, str] = field(default_factory=machine_info)
    model_name: str = ""  # the tinynet.models name ("lenet_300_100"), for the paper's tables
    cache_notes: list[str] = field(default_factory=list)  # what the cache reused or refused


def plot_caption(model: str, dataset: str, references: Sequence[Reference] | None) -> str:
    """The line under the plot that says whose the stars are, or why there are none."""
    if references:
        return (
            "Stars: Han et al. 2016's published numbers (theirs, not ours: official test set, "
            "trained on all 60,000 images)."
        )
    if paper_references(model):
        return (
            "No published points: Han et al. 2016's numbers are full-MNIST results, and these "
            f"rows come from {dataset}; they are drawn only beside runs on full MNIST."
        )
    return "No published points: no paper in ANCHORS.md used this model."


def save_plot(
    rows: Sequence[Row],
    path: str | os.PathLike[str],
    dataset: str,
    references: Sequence[Reference] | None = None,
    caption: str = "",
) -> Path:
    """Draw :func:`plot_accuracy_vs_size` in the lessons' style and save it as a PNG."""
    import matplotlib
    from matplotlib.figure import Figure  # a Figure without pyplot: no window, no global state

    from tinynet.lesson import MPL_DEFAULTS

    with matplotlib.rc_context({**MPL_DEFAULTS, "figure.figsize": (10.0, 6.0), "savefig.dpi": 110}):
        fig = Figure()
        ax = fig.subplots()
        plot_accuracy_vs_size(rows, ax=ax, references=references, dataset=dataset)
        if caption:
            ax.text(0.0, -0.14, caption, transform=ax.transAxes, fontsize=8, va="top")
        fig.savefig(path)
    return Path(path)


def size_reports_markdown(best: dict[str, Row], reports: dict[str, SizeReport]) -> str:
    """One section per technique: its best point and ``str(size_report)`` of that file."""
    lines = [
        "# Size reports of the best point of each technique",
        "",
        "Best = highest validation accuracy, then fewest bytes. Each table counts every bit",
        "of the point's compressed file in `models/`, per tensor and per term; the total is",
        "the file's length on disk.",
        "",
    ]
    for name, row in best.items():
        report = reports[name]
        lines += [
            f"## {name}: {row.setting}",
            "",
            f"- file: `models/{row.artifact}`, {row.nbytes:,} bytes ({format_bytes(row.nbytes)})",
            f"- held-out accuracy {row.accuracy:.2%}, "
            f"validation accuracy {row.extra.get('val_accuracy', float('nan')):.2%}",
            "",
            "```text",
            str(report),
            "```",
            "",
        ]
    return "\n".join(lines)


def pipeline_tables(rows: Sequence[Row], models: Path, model: str, dataset: str) -> dict[str, Any]:
    """Han et al.'s per-layer table of each Deep Compression point's file, by setting.

    The paper's rows are printed under ours only on full MNIST (the rule of
    the plot). The table's total after Huffman coding is the file's length.
    """
    from compression.pipeline import PAPER, han_table

    paper = model if dataset == "mnist" and model in PAPER else None
    tables = {}
    for row in rows:
        if row.technique != PIPELINE or not row.artifact:
            continue
        table = han_table(load_compressed(models / row.artifact), huffman=True, paper=paper)
        if table.totals()[1] != row.nbytes:
            raise RuntimeError(f"han_table of {row.artifact} does not add up to its file")
        tables[row.setting] = table
    return tables


def pipeline_markdown(rows: Sequence[Row], tables: dict[str, Any], dataset: str) -> str:
    """``deep_compression.md``: each point's stages, then its per-layer table."""
    lines = [
        "# Deep Compression, point by point",
        "",
        "Each point: prune (rounds of global magnitude pruning, retrained after each),",
        "share weights (k-means per layer, centroids fine-tuned), Huffman-code. The stages'",
        "bytes are those of each stage's own file; their accuracies are held-out accuracies",
        "of the model loaded back from that file. The per-layer table is Han et al. 2016's",
        "Tables 2/3 for the final file (P = pruning, Q = quantization by sharing, H = Huffman;",
        "bits per *kept* weight; rate = stored bytes / float32 bytes): its total is the file's",
        "length, header included.",
        "",
    ]
    if dataset != "mnist":
        lines += [
            f"The paper's own per-layer figures are not printed: this run used {dataset}, and",
            "published numbers are shown only beside results on full MNIST.",
            "",
        ]
    for row in rows:
        if row.setting not in tables or row.technique != PIPELINE:
            continue
        lines += [
            f"## {row.setting}",
            "",
            f"- file `models/{row.artifact}`: {row.nbytes:,} bytes, "
            f"{row.extra.get('ratio', float('nan')):.1f}x smaller than the dense float32 model, "
            f"held-out accuracy {row.accuracy:.2%}",
            f"- stages: {row.extra.get('stages', '')}",
            f"- bit widths: {row.extra.get('bit_widths', '')}",
            "",
            tables[row.setting].to_markdown(),
        ]
    return "\n".join(lines)


def density_markdown(points: Sequence[DensityPoint], epochs: int) -> list[str]:
    """The README section on the pruning density curve."""
    return [
        "## Pruning: accuracy from 100% down to 1% of the weights",
        "",
        "Global magnitude pruning of the baseline's weights (biases kept and counted in",
        f"the compression), each point fine-tuned for {epochs} epoch(s) with the pruning",
        "recipe: **one-shot** prunes straight to the density; **iterative** (Han et al.",
        f"2015) prunes step by step through the densities, {epochs} epoch(s) after each;",
        "**gradual** (Zhu and Gupta 2017) prunes during training along a cubic schedule.",
        "Held-out accuracy:",
        "",
        "![density curve](density_curve.png)",
        "",
        density_table_markdown(points),
    ]


def front_lines(rows: Sequence[Row]) -> list[str]:
    """The Pareto front as a Markdown list."""
    return [
        f"- {r.technique} {r.setting}: {r.nbytes:,} bytes, {r.accuracy:.2%}"
        for r in pareto_front(rows)
    ]


def pipeline_section(
    rows: Sequence[Row], best: dict[str, Row], tables: dict[str, Any]
) -> list[str]:
    """The README's Deep Compression section: every point's stages, the best one's table."""
    points = [r for r in rows if r.technique == PIPELINE]
    if not points:
        return []
    chosen = best[PIPELINE]
    lines = ["## Deep Compression, stage by stage", ""]
    lines += [
        f"- **{r.setting}**: {r.nbytes:,} bytes ({r.extra.get('ratio', float('nan')):.1f}x), "
        f"{r.accuracy:.2%}; {r.extra.get('stages', '')}"
        for r in points
    ]
    lines += [
        "",
        f"Per-layer table of the best point ({chosen.setting}, chosen on validation):",
        "",
    ]
    if chosen.setting in tables:
        lines.append(tables[chosen.setting].to_markdown())
    lines += [f"Every point's table: [{PIPELINE_FILE}]({PIPELINE_FILE}).", ""]
    return lines


def readme_markdown(
    rows: Sequence[Row],
    best: dict[str, Row],
    info: RunInfo,
    density: Sequence[DensityPoint] | None = None,
    density_epochs: int = 0,
    tables: dict[str, Any] | None = None,
    caption: str = "",
) -> str:
    """The report's front page."""
    baseline = info.baseline
    how = (
        "reused from the cache (not retrained)"
        if baseline.get("cached")
        else f"trained in this run ({baseline.get('train_seconds', 0):.1f} s)"
    )
    mode = " (**fast mode**: a smoke test of the pipeline, not a result)" if info.fast else ""
    images = ", ".join(f"{n:,} {part}" for part, n in info.images.items())
    lines = [
        f"# Accuracy against size: {info.model} on {info.dataset}{mode}",
        "",
        f"Command: `{info.command}`",
        "",
        f"- data: {info.dataset} ({images} images); accuracy is measured on held-out,",
        "  choices (the best point) on validation",
        f"- seed {info.seed}; every grid point is seeded from (seed, its index in the grid)",
        f"- baseline: {info.model}, {info.epochs} epochs, held-out accuracy "
        f"{baseline.get('heldout_accuracy', float('nan')):.2%}; {how}: `{baseline.get('file')}`",
        "- techniques: "
        + "; ".join(
            f"**{n}**: {TECHNIQUES[n].description}" if n in TECHNIQUES else f"**{n}**"
            for n in dict.fromkeys(r.technique for r in rows)
        ),
        "",
        "![accuracy against size](accuracy_vs_size.png)",
        "",
        *([caption, ""] if caption else []),
        "## Best point of each technique",
        "",
        to_markdown(list(best.values())),
        "## Pareto front",
        "",
        "No other point is both smaller and more accurate than these:",
        "",
        *front_lines(rows),
        "",
        *pipeline_section(rows, best, tables or {}),
        "## What the numbers mean",
        "",
        "- **bytes** is the length of the point's compressed file in `models/`",
        "  (`compression.storage.save_compressed`, header included). Every file was",
        "  loaded back with `load_compressed` and gave exactly the accuracy in its row.",
        "- **ratio** is the baseline's dense float32 size (4 bytes per parameter) over",
        "  the file's bytes.",
        f"- **time (ms)** is the median of {TIME_REPEATS} forward passes over {TIME_BATCH} "
        "held-out images: compare times within this run only (a point reused from the",
        "  cache keeps the time measured when it was computed).",
        "- Published reference points are drawn only beside results on full MNIST"
        + (
            ' (labelled "(paper)"; the papers report the official test set, trained on'
            " all 60,000 images: a reference, not a like-for-like comparison)."
            if info.dataset == "mnist"
            else "; this run used other data, so none are drawn."
        ),
        "",
        "All rows: [rows.md](rows.md) ([rows.csv](rows.csv)); per-layer sizes of each",
        "technique's best point: [size_reports.md](size_reports.md)"
        + (
            f"; Deep Compression's per-layer tables: [{PIPELINE_FILE}]({PIPELINE_FILE})."
            if tables
            else "."
        ),
        "",
        *(density_markdown(density, density_epochs) if density else []),
        "## Run",
        "",
        f"- started {info.started}, wall time {info.seconds:.1f} s, {info.jobs} job(s)",
        f"- load average (1, 5, 15 min) before: {info.load_before}; after: {info.load_after}",
        *[f"- {note}" for note in info.cache_notes],
        *[f"- {key}: {value}" for key, value in info.machine.items()],
        "",
    ]
    return "\n".join(lines)


def write_report(
    out: str | os.PathLike[str],
    rows: Sequence[Row],
    info: RunInfo,
    size_reports: dict[str, SizeReport],
    references: Sequence[Reference] | None = None,
    density: Sequence[DensityPoint] | None = None,
    density_epochs: int = 0,
) -> list[Path]:
    """Write the report files (:data:`FILES`, and :data:`PIPELINE_FILE`) into ``out``.

    Parameters
    ----------
    out : path-like
        The report folder (created if needed); its ``models/`` holds the
        rows' files (the Deep Compression points' tables are read from them).
    rows : sequence of Row
        Every grid point of every technique.
    info : RunInfo
    size_reports : dict of technique -> SizeReport
        ``size_report`` of each technique's best point (:func:`best_by_technique`).
    references : sequence of Reference, optional
        Published points (:func:`~compression.sweep.plot.published_points`);
        drawn only when ``info.dataset == "mnist"``.
    density : sequence of DensityPoint, optional
        The pruning density curve (:func:`compression.pruning.density_curve`);
        written as ``density_curve.png`` and a README section.
    density_epochs : int
        Its fine-tuning epochs per point, for the README.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best = best_by_technique(rows)
    if info.dataset != "mnist":
        references = None  # never beside curves from other data (the plot would warn)
    caption = plot_caption(info.model_name or info.model, info.dataset, references)
    save_plot(rows, out / "accuracy_vs_size.png", info.dataset, references, caption)
    to_csv(rows, out / "rows.csv")
    (out / "rows.md").write_text(to_markdown(rows), encoding="utf-8")
    (out / "size_reports.md").write_text(size_reports_markdown(best, size_reports), "utf-8")
    written = [out / name for name in FILES]
    tables = pipeline_tables(rows, out / "models", info.model_name or info.model, info.dataset)
    if tables:
        text = pipeline_markdown(rows, tables, info.dataset)
        (out / PIPELINE_FILE).write_text(text, encoding="utf-8")
        written.append(out / PIPELINE_FILE)
    if density:
        import matplotlib.pyplot as plt

        ax = plot_density_curve(density, title=f"{info.model} on {info.dataset} (held-out)")
        ax.figure.savefig(out / "density_curve.png", dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(out / "density_curve.png")
    readme = readme_markdown(rows, best, info, density, density_epochs, tables, caption)
    (out / "README.md").write_text(readme, encoding="utf-8")
    return written


def utc_now() -> str:
    """``"2025-01-31 14:05 UTC"``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
