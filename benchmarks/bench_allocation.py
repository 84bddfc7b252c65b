"""Byte-budget allocation against uniform sparsity and bit width, at equal bytes (issue 8).

For each seed and each budget ``B = float32 bytes / k`` (``k`` = 20, 40, 60, 80):

1. the dense model (``bench_pruning.dense_baseline``'s cache: the
   recipe trained on the protocol's 50,000 training images) is scanned
   layer by layer over the (sparsity, bits) grid of
   ``compression.allocation`` (``SPARSITIES`` x ``BITS``): each layer's
   bytes in the real file and the loss increase on a calibration set, the
   protocol's validation slice of train (the last 5,000 after the seeded
   shuffle; 800 on the embedded data). The held-out images are never
   used for any choice. The scan is cached per seed in ``benchmarks/.cache/``.
2. **allocator**: per-layer options minimising the summed loss increase
   within ``B`` (exact knapsack); **uniform**: one sparsity and one bit
   width for every layer, the setting whose loss increase, all layers
   compressed together, is smallest among those that fit ``B``.
3. both are fine-tuned the same way (``FINE_TUNE_EPOCHS`` epochs at a tenth
   of the recipe's learning rate, cosine, distilled from the dense model
   with ``T = 4, alpha = 0.7`` as in ``bench_pruning``'s target, the same
   batches for both), masks and frozen quantizers kept; the real file is
   checked against ``B`` and the target lowered if it is over; a file still
   over after three attempts is trimmed to fit (``trim_to_budget``: more
   of the largest layer's smallest weights pruned, no retraining).

Reported: held-out accuracy before and after fine-tuning, the real file
bytes, per budget the mean difference allocator - uniform over seeds. The
issue's target: the allocator beats uniform at equal bytes on at least
three budgets.

Why LeNet-5-Caffe (``--model lenet_300_100`` also works): its four
weights differ 800-fold in size (500 in conv1, 400,000 in fc1) and in how
much they tolerate (conv1 sees the pixels, fc1 is highly redundant), so a
per-layer choice has room to differ from a uniform one. In LeNet-300-100
the first layer holds 88% of the weights, so a uniform setting is nearly
what any allocator would choose for it.

::

    python benchmarks/bench_allocation.py                         # 4 budgets x 3 seeds
    python benchmarks/bench_allocation.py --seeds 0 --budgets 40  # one budget, one seed
    python benchmarks/bench_allocation.py --mini --seeds 0        # embedded data, smoke test

Results: ``benchmarks/results/allocation.json`` (``allocation_mini.json``
with ``--mini``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_accuracy import RECIPES, machine  # noqa: E402
from bench_pruning import (  # noqa: E402
    CACHE,
    dense_baseline,
    heldout_accuracy,
    load_data,
    retrainer,
)

from compression.allocation import (  # noqa: E402
    BITS,
    SPARSITIES,
    SensitivityTable,
    allocate,
    best_fitting,
    compress_to_budget,
    measure_table,
    option_grid,
    uniform_candidates,
)

HERE = Path(__file__).resolve().parent
#: Budgets as fractions of the float32 bytes: B = 4 * parameters / k. Four, so that "at
#: least three" is a real test: at 1/20 (86 kB for LeNet-5-Caffe, twice Deep Compression's
#: 44 kB) both methods are expected to sit within noise of the dense model.
BUDGETS = (20, 40, 60, 80)
#: Fine-tuning after allocation (both methods alike).
FINE_TUNE_EPOCHS = 3
#: Distillation from the dense model during fine-tuning (bench_pruning's target recipe).
KD_T, KD_ALPHA = 4.0, 0.7
#: What the allocator minimises (see compression/allocation/table.py).
METRIC = "loss"


def calibration_set(data) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's validation slice of train (the last tenth after the seeded shuffle)."""
    _, _, x_val, y_val = data.validation_split()
    return x_val, y_val


def cached_table(name: str, dense, data, seed: int, tag: str, options) -> SensitivityTable:
    """The sensitivity table of ``dense`` on the calibration set, cached as JSON per seed."""
    calibration = calibration_set(data)
    key = json.dumps(
        {
            "options": [o.as_list() for o in options],
            "calibration": len(calibration[1]),
            "epochs": RECIPES[name].epochs,
        }
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = CACHE / f"allocation_{name}_{tag}_seed{seed}_{digest}.json"
    if path.exists():
        return SensitivityTable.from_dict(json.loads(path.read_text()))
    start = time.perf_counter()
    table = measure_table(
        dense, calibration, options, progress=lambda line: print(f"    {line}", flush=True)
    )
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_dict()) + "\n")
    tmp.replace(path)
    print(
        f"  seed {seed}: scanned {len(table.names)} layers x {len(options)} options on "
        f"{table.calibration_size:,} calibration images in {time.perf_counter() - start:.0f} s "
        f"-> {path.name}",
        flush=True,
    )
    return table


def choice_line(result) -> str:
    """``"0.weight 50%/8b, 2.weight ..."``."""
    return ", ".join(f"{n} {o.sparsity:.0%}/{o.bits}b" for n, o in result.allocation.choice.items())


def run(name: str, data, seeds, budgets, mini: bool, epochs: int, quiet: bool) -> dict:
    tag = "mini" if mini else "mnist"
    options = option_grid(SPARSITIES, BITS)
    print(
        f"{name}: grid sparsity {list(SPARSITIES)} x bits {list(BITS)}; the allocator minimises "
        f"the summed {METRIC} increase (knapsack); fine-tuning {epochs} epochs at lr x0.1, "
        f"distilled T={KD_T:g} alpha={KD_ALPHA:g}",
        flush=True,
    )
    rows, tables = [], {}
    for seed in seeds:
        dense = dense_baseline(name, data, seed, tag, quiet)
        dense_acc = heldout_accuracy(dense, data)
        table = cached_table(name, dense, data, seed, tag, options)
        tables[seed] = table.to_dict()
        print(
            f"  seed {seed}: dense held-out {dense_acc:.2%}, float32 {table.dense_float32_bytes:,} B,"
            f" smallest file on the grid {table.smallest_bytes():,} B",
            flush=True,
        )
        calibration = calibration_set(data)

        def fine_tune(model, seed=seed, dense=dense):
            retrain = retrainer(name, data, seed, teacher=dense, T=KD_T, alpha=KD_ALPHA)
            retrain(model, epochs)  # a fresh retrainer: both methods see the same batches

        def evaluate_fn(model):
            return heldout_accuracy(model, data)

        for k in budgets:
            budget = table.dense_float32_bytes // k
            candidates = uniform_candidates(dense, table, calibration, budget, METRIC)
            choosers = {
                "allocator": lambda b, t=table: allocate(t, b, METRIC),
                "uniform": lambda b, t=table, c=candidates: best_fitting(c, b, t),
            }
            for method, choose in choosers.items():
                result = compress_to_budget(dense, table, budget, choose, fine_tune, evaluate_fn)
                row = {
                    "model": name,
                    "seed": seed,
                    "fraction": k,
                    "dense_accuracy": dense_acc,
                    **result.to_dict(),
                    "solver": result.method,  # "knapsack" or "uniform"
                    "method": method,  # "allocator" or "uniform"
                }
                rows.append(row)
                print(
                    f"    1/{k} ({budget:,} B) {method:<9}: {result.accuracy_before:.2%} -> "
                    f"{result.accuracy_after:.2%} after fine-tuning, file {result.real_bytes:,} B "
                    f"(estimated {result.allocation.estimated_bytes:,}), {result.seconds:.0f} s; "
                    f"{choice_line(result)}",
                    flush=True,
                )
                for note in result.notes:
                    print(f"      {note}", flush=True)
    return {"rows": rows, "tables": tables}


def summarise(rows: list[dict], budgets) -> int:
    """Per budget: mean accuracies, mean difference; returns the budgets the allocator wins."""
    print("  held-out accuracy after fine-tuning, mean over seeds (difference in points):")
    wins = 0
    for k in budgets:
        mine = {r["seed"]: r for r in rows if r["fraction"] == k and r["method"] == "allocator"}
        base = {r["seed"]: r for r in rows if r["fraction"] == k and r["method"] == "uniform"}
        seeds = sorted(set(mine) & set(base))
        if not seeds:
            continue
        diffs = [100 * (mine[s]["accuracy_after"] - base[s]["accuracy_after"]) for s in seeds]
        ahead = float(np.mean(diffs)) > 0
        wins += ahead
        print(
            f"    1/{k}: allocator {np.mean([mine[s]['accuracy_after'] for s in seeds]):.2%} "
            f"({np.mean([mine[s]['real_bytes'] for s in seeds]):,.0f} B) vs uniform "
            f"{np.mean([base[s]['accuracy_after'] for s in seeds]):.2%} "
            f"({np.mean([base[s]['real_bytes'] for s in seeds]):,.0f} B): "
            f"{np.mean(diffs):+.2f} points (per seed {', '.join(f'{d:+.2f}' for d in diffs)})"
            f"{' allocator ahead' if ahead else ''}",
            flush=True,
        )
    return wins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5_caffe", choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--budgets", nargs="+", type=int, default=list(BUDGETS), help="k: budget = float32 / k"
    )
    parser.add_argument("--epochs", type=int, default=FINE_TUNE_EPOCHS)
    parser.add_argument("--mini", action="store_true", help="use the embedded subset")
    parser.add_argument("--root", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    data, description = load_data(args.mini, args.root)
    print(f"data: {description}", flush=True)
    start = time.perf_counter()
    result = run(args.model, data, args.seeds, args.budgets, args.mini, args.epochs, args.quiet)
    wins = summarise(result["rows"], args.budgets)
    met = wins >= 3
    print(
        f"  allocator ahead on {wins} of {len(args.budgets)} budgets -> target (beats uniform at "
        f"equal bytes on at least 3 budgets) {'MET' if met else 'NOT MET'}"
        f"{'' if len(args.seeds) >= 3 else ' (fewer than 3 seeds: not the protocol)'}; "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"allocation{'_mini' if args.mini else ''}.json"
    payload = {
        "machine": machine(),
        "data": description,
        "command": "python benchmarks/bench_allocation.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "grid": {"sparsities": list(SPARSITIES), "bits": list(BITS)},
        "metric": METRIC,
        "fine_tune": {"epochs": args.epochs, "lr_factor": 0.1, "T": KD_T, "alpha": KD_ALPHA},
        "budget_fractions": list(args.budgets),
        "allocator_ahead_on": wins,
        **result,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
