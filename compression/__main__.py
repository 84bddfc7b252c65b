"""``python -m compression``: the main job. Sweep every technique, write a report folder.

::

    python -m compression                       # LeNet-300-100, embedded data, report/
    python -m compression --jobs 2              # the same rows, two worker processes
    python -m compression --fast --out /tmp/r   # a 20-second smoke test
    python -m compression --dataset mnist --data-root ~/data/mnist   # ~10 min here; resumable
    python -m compression --fresh               # recompute everything the cache holds

Steps:

1. load the data (default: the embedded MNIST subset, offline);
2. train the baseline with the course's recipe (``compression.sweep.task``),
   or reuse the one cached in the output folder: ``baseline_<model>_<dataset>
   _seed<s>_epochs<e>.npz`` (``tinynet.save``) with a JSON sidecar that says
   how it was made; it is reused only when the sidecar matches the
   arguments and the file's SHA-256;
3. sweep every registered technique (``compression.sweep.run_techniques``),
   keeping each point's compressed file in ``<out>/models/``. Every point
   is cached as soon as it is done (``compression.sweep.cache``: its row and
   file in ``<out>/cache/points/``, under a hash of everything that
   determines it), so a rerun skips finished points and says so, and a
   killed run resumes where it stopped; ``--fresh`` recomputes;
4. check every file: its length on disk equals its row's bytes, and
   ``load_compressed`` gives back a model with exactly its row's accuracy;
5. prune the baseline from 100% to 1% of its weights by one-shot,
   iterative and gradual pruning (``compression.pruning.density_curve``;
   skip with ``--no-density``), cached as a whole in ``<out>/cache/``;
6. write the report (``compression.report``): README.md,
   accuracy_vs_size.png, density_curve.png, rows.csv, rows.md,
   size_reports.md, deep_compression.md. Han et al.'s published points are
   drawn only on full MNIST for the models they used.

**One BLAS thread.** Before NumPy is imported, this module sets
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1
unless you set them: then ``--jobs 1`` and ``--jobs 2`` give the same rows
(threaded BLAS adds in another order, which changes the last bits of
trained weights), and worker processes do not fight over the cores.
"""

from __future__ import annotations

import os

# BLAS reads these once, when NumPy loads it: set them before anything imports NumPy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import tinynet
from compression.pruning.curves import DensityPoint
from compression.report import RunInfo, load_average, utc_now, write_report
from compression.storage import SizeReport, load_compressed, size_report
from compression.sweep import (
    RECIPE,
    Row,
    SweepTask,
    available_techniques,
    best_by_technique,
    build_model,
    run_techniques,
)
from compression.sweep.cache import PointCache, read_entry, sha256_of, write_entry
from compression.sweep.plot import published_points
from compression.sweep.task import DATASETS
from tinynet.download import DownloadError
from tinynet.models import MODELS
from tinynet.train import evaluate

CHOICES_OF_MODEL = ("lenet_300_100", "lenet5", "lenet5_caffe")
FAST_EPOCHS = 2
FAST_TRAIN_SIZE = 2000
SIDECAR_VERSION = 1
DENSITY_CACHE_FORMAT = "tinynet-density-curve"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m compression",
        description="Sweep every compression technique; write an accuracy-against-size report.",
    )
    parser.add_argument("--model", choices=CHOICES_OF_MODEL, default="lenet_300_100")
    parser.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        default="mini",
        help="mini: the embedded subset (offline, default); mnist, fashion-mnist: official files",
    )
    parser.add_argument("--data-root", default=None, help="folder of the IDX files (mnist...)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="report folder")
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"smoke test: {FAST_EPOCHS} epochs, {FAST_TRAIN_SIZE} training images, small grids",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the baseline and the sweep")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    parser.add_argument("--retrain", action="store_true", help="ignore a cached baseline")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="ignore every cache (baseline, points, density curve): recompute and overwrite",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-density", action="store_true", help="skip the pruning density curve")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = FAST_EPOCHS if args.fast else 20
    for name in ("jobs", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


# --------------------------------------------------------------- baseline


def baseline_key(args: argparse.Namespace, train_size: int | None) -> dict[str, Any]:
    """What a cached baseline must match to be reused."""
    return {
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_size": train_size,
        "recipe": RECIPE,
    }


def baseline_paths(out: Path, key: dict[str, Any]) -> tuple[Path, Path]:
    """``(<out>/baseline_<model>_<dataset>_seed<s>_epochs<e>[_train<n>].npz, same .json)``."""
    stem = f"baseline_{key['model']}_{key['dataset']}_seed{key['seed']}_epochs{key['epochs']}"
    if key["train_size"] is not None:
        stem += f"_train{key['train_size']}"
    return out / f"{stem}.npz", out / f"{stem}.json"


def cached_baseline(npz: Path, sidecar: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar, if the cached baseline matches ``key`` and its checksum; else None."""
    if not (npz.is_file() and sidecar.is_file()):
        return None
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("key") != json.loads(json.dumps(key)):
        return None
    if info.get("sha256") != sha256_of(npz):
        return None
    return info


def train_baseline(
    task: SweepTask, seed: int, npz: Path, sidecar: Path, key: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """Train the baseline with the recipe, save it and its sidecar; return the sidecar."""
    data = task.data()
    model = build_model(MODELS[task.model], seed)
    start = time.perf_counter()
    history = task.train(model, seed, val=(data.x_val, data.y_val), progress=progress)
    seconds = time.perf_counter() - start
    tinynet.save(model, npz)
    info = {
        "format": "tinynet-baseline-sidecar",
        "version": SIDECAR_VERSION,
        "key": key,
        "sha256": sha256_of(npz),
        "heldout_accuracy": evaluate(model, data.x_heldout, data.y_heldout)["accuracy"],
        "val_accuracy": history.val_accuracy[-1],
        "train_seconds": round(seconds, 2),
        "created": utc_now(),
        "tinynet_version": tinynet.__version__,
    }
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)  # atomic: a crash never leaves half a sidecar
    return info


# ----------------------------------------------------------------- checks


def verify(rows: list[Row], models: Path, task: SweepTask) -> dict[str, SizeReport]:
    """Every file has its row's length and loads back to its row's accuracy.

    Returns the size reports of each technique's best point. Raises
    ``RuntimeError`` on the first mismatch.
    """
    data = task.data()
    for row in rows:
        path = models / row.artifact
        if os.path.getsize(path) != row.nbytes:
            raise RuntimeError(
                f"{path} has {os.path.getsize(path):,} bytes, its row says {row.nbytes:,}"
            )
        accuracy = evaluate(load_compressed(path), data.x_heldout, data.y_heldout)["accuracy"]
        if accuracy != row.accuracy:
            raise RuntimeError(
                f"{path} loads back to accuracy {accuracy}, its row says {row.accuracy}"
            )
    reports = {}
    for name, row in best_by_technique(rows).items():
        report = size_report(load_compressed(models / row.artifact))
        if report.total_bytes != row.nbytes:
            raise RuntimeError(f"size_report of {row.artifact} says {report.total_bytes:,} bytes")
        reports[name] = report
    return reports


# --------------------------------------------------------- density curve


def density_epochs(fast: bool) -> int:
    """Fine-tuning epochs per point of the density curve."""
    return 1 if fast else 2


def pruning_density_curve(task: SweepTask, npz: Path, seed: int, fast: bool) -> list[Any]:
    """Accuracy from 100% to 1% of the weights: one-shot, iterative and gradual pruning."""
    from compression.pruning import DENSITIES, density_curve
    from compression.pruning.technique import fine_tune, steps_per_epoch

    data = task.data()
    baseline = MODELS[task.model]()
    baseline.load_state_dict(tinynet.load(npz))
    densities = (1.0, 0.1, 0.01) if fast else DENSITIES
    epochs = density_epochs(fast)
    print(
        f"density curve: {len(densities) - 1} densities x 3 methods, {epochs} epoch(s) each",
        flush=True,
    )
    started = time.perf_counter()
    points = density_curve(
        baseline,
        lambda model, n, callbacks: fine_tune(model, task, seed, n, callbacks),
        lambda model: evaluate(model, data.x_heldout, data.y_heldout)["accuracy"],
        densities=densities,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch(task),
        progress=lambda line: print("  " + line, flush=True),
    )
    print(f"density curve: done in {time.perf_counter() - started:.1f} s")
    return points


def density_key(task: SweepTask, npz: Path, seed: int, fast: bool) -> dict[str, Any]:
    """What the density curve depends on (its cache entry must match it)."""
    return {
        "dataset": task.dataset,
        "model": task.model,
        "train_size": task.train_size,
        "baseline_sha256": sha256_of(npz),
        "seed": seed,
        "fast": fast,
        "epochs": density_epochs(fast),
        "tinynet": tinynet.__version__,
    }


def density_points(info: dict[str, Any]) -> list[DensityPoint]:
    """The points of a cached density curve, each field checked (``ValueError`` otherwise)."""
    points = []
    for p in info.get("points", None) or []:
        if not isinstance(p, dict) or set(p) != set(DensityPoint.__dataclass_fields__):
            raise ValueError(f"not a density point: {p!r}")
        numbers = [p[k] for k in ("density", "accuracy", "nonzero", "compression", "epochs")]
        if not isinstance(p["method"], str) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers
        ):
            raise ValueError(f"a density point has fields of the wrong type: {p!r}")
        points.append(DensityPoint(**p))
    if not points:
        raise ValueError("no points")
    return points


def cached_density_curve(
    task: SweepTask, npz: Path, seed: int, fast: bool, out: Path, fresh: bool
) -> list[DensityPoint]:
    """The density curve from ``<out>/cache/``, or computed and stored there (atomically)."""
    key = density_key(task, npz, seed, fast)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = out / "cache" / f"density_{digest}.json"
    info, problem = (None, None) if fresh else read_entry(path, DENSITY_CACHE_FORMAT, key)
    try:
        points = None if info is None else density_points(info)
    except ValueError as err:
        points, problem = None, f"{path} refused ({err})"
    if problem:
        print(f"cache: {problem}; recomputing the density curve")
    if points is not None:
        print(f"density curve: reusing {path} ({len(points)} points; not recomputed)")
        return points
    points = pruning_density_curve(task, npz, seed, fast)
    write_entry(path, DENSITY_CACHE_FORMAT, key, {"points": [p.as_dict() for p in points]})
    return points


# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = utc_now(), load_average()
    start = time.perf_counter()
    out = args.out
    train_size = FAST_TRAIN_SIZE if args.fast else None
    key = baseline_key(args, train_size)
    npz, sidecar = baseline_paths(out, key)
    task = SweepTask(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        baseline_path=str(npz),
        data_root=args.data_root,
        train_size=train_size,
        artifact_dir=str(out / "models"),
    )
    try:
        data = task.data()
    except (FileNotFoundError, DownloadError) as err:  # the message says what to download
        print(f"error: cannot load --dataset {args.dataset}:\n{err}", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(
            f"error: cannot create the report folder {str(out)!r}: {err.strerror}", file=sys.stderr
        )
        return 2
    images = {"train": len(data.y_train), "validation": len(data.y_val)}
    images["held-out"] = len(data.y_heldout)
    print(
        f"compression: {args.model} on {data.name} ({images['train']:,} train / "
        f"{images['validation']:,} validation / {images['held-out']:,} held-out images), "
        f"seed {args.seed}, {args.epochs} epochs" + (" [fast mode]" if args.fast else "")
    )

    info = None if args.retrain or args.fresh else cached_baseline(npz, sidecar, key)
    cached = info is not None
    if cached:
        print(
            f"baseline: reusing cached {npz} (held-out accuracy {info['heldout_accuracy']:.2%}); "
            "not retrained"
        )
    else:
        print(f"baseline: training {args.model} for {args.epochs} epochs ...", flush=True)
        info = train_baseline(task, args.seed, npz, sidecar, key, progress=not args.quiet)
        print(
            f"baseline: trained in {info['train_seconds']:.1f} s, held-out accuracy "
            f"{info['heldout_accuracy']:.2%}; saved {npz} and {sidecar.name}"
        )
    baseline = {**info, "cached": cached, "file": npz.name}

    techniques = list(available_techniques().values())
    n_points = sum(len(t.settings(args.fast)) for t in techniques)
    print(
        f"sweep: {n_points} points of {len(techniques)} technique(s) "
        f"({', '.join(t.name for t in techniques)}), {args.jobs} job(s)",
        flush=True,
    )
    for stale in (out / "models").glob("*.tnc"):  # models/ holds this run's files only
        stale.unlink()
    cache_notes: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        cache_notes.append(line)

    rows = run_techniques(
        task,
        techniques,
        seed=args.seed,
        fast=args.fast,
        jobs=args.jobs,
        progress=not args.quiet,
        cache=PointCache(str(out / "cache" / "points"), fresh=args.fresh),
        log=log,
    )
    for row in rows:
        print(
            f"  {row.technique:16s} {row.setting:22s} {row.nbytes:>10,} B  "
            f"held-out {row.accuracy:.2%}  {row.time_ms:7.2f} ms"
        )
    try:
        reports = verify(rows, out / "models", task)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"verified: every file in {out / 'models'} has its row's length and accuracy")

    density = None
    if not args.no_density:
        density = cached_density_curve(task, npz, args.seed, args.fast, out, args.fresh)

    run = RunInfo(
        command=shlex.join(
            ["python", "-m", "compression", *(sys.argv[1:] if argv is None else argv)]
        ),
        model=args.model,
        dataset=data.name,
        seed=args.seed,
        epochs=args.epochs,
        fast=args.fast,
        jobs=args.jobs,
        images=images,
        baseline=baseline,
        started=started,
        load_before=load_before,
        model_name=args.model,
        cache_notes=cache_notes,
    )
    run.seconds, run.load_after = time.perf_counter() - start, load_average()
    written = write_report(
        out,
        rows,
        run,
        reports,
        published_points(args.model, data.name),
        density=density,
        density_epochs=density_epochs(args.fast),
    )
    print(f"wrote {out}/: {', '.join(p.name for p in written)}, models/ ({len(rows)} files)")
    print(f"done in {run.seconds:.1f} s (load average {run.load_after})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
