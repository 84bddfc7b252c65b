"""Accuracy of the default recipes under the measurement protocol.

DESIGN.md's protocol: the official MNIST training split is divided once
(seeded, stratified) into train (50,000) and held-out (10,000); models train
on the 50,000 and are reported on the 10,000 held out, as the mean of several
seeds with the spread shown. The recipes below were fixed on the validation
slice (the last 5,000 of train), never on held-out.

    python benchmarks/bench_accuracy.py                       # all models, 3 seeds
    python benchmarks/bench_accuracy.py --models lenet_300_100 --seeds 0 1 2
    python benchmarks/bench_accuracy.py --mini                # the embedded subset

Prints the machine, one line per seed and a summary per model, and writes
the rows as JSON to ``--out`` (default ``benchmarks/results/accuracy.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tinynet
from tinynet.data import DataLoader, load_mnist, load_mnist_mini, random_shift
from tinynet.models import lenet5, lenet5_caffe, lenet_300_100

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@dataclass(frozen=True)
class Recipe:
    """A training recipe: SGD with Nesterov momentum and a cosine schedule."""

    build: object
    epochs: int
    lr: float
    weight_decay: float
    jitter: int  # max random shift in pixels (0: none)
    batch_size: int = 128


RECIPES = {
    "lenet_300_100": Recipe(lenet_300_100, epochs=30, lr=0.05, weight_decay=1e-4, jitter=0),
    "lenet5": Recipe(lenet5, epochs=20, lr=0.05, weight_decay=5e-4, jitter=0),
    "lenet5_caffe": Recipe(lenet5_caffe, epochs=20, lr=0.05, weight_decay=5e-4, jitter=2),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"
    )


def make_loader(recipe: Recipe, data, seed: int) -> DataLoader:
    """Shuffled batches of the 50,000, with the recipe's random shifts (if any)."""
    transform = None
    if recipe.jitter:
        background = float(data.x_train.min())

        def transform(x, rng, k=recipe.jitter, fill=background):
            return random_shift(x, max_shift=k, rng=rng, fill=fill)

    return DataLoader(
        data.x_train,
        data.y_train,
        batch_size=recipe.batch_size,
        shuffle=True,
        seed=seed,
        transform=transform,
    )


def make_optimizer(recipe: Recipe, model, lr: float | None = None) -> tinynet.SGD:
    """SGD with Nesterov momentum 0.9 and the recipe's weight decay."""
    return tinynet.SGD(
        model.parameters(),
        lr=recipe.lr if lr is None else lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=recipe.weight_decay,
    )


def train_model(name: str, recipe: Recipe, data, seed: int, epochs: int, quiet: bool):
    """Train ``recipe.build()`` from ``manual_seed(seed)``; return ``(model, seconds)``."""
    tinynet.manual_seed(seed)
    model = recipe.build()
    opt = make_optimizer(recipe, model)
    scheduler = tinynet.CosineAnnealingLR(opt, T_max=epochs)
    loader = make_loader(recipe, data, seed)
    start = time.perf_counter()
    tinynet.fit(
        model,
        loader,
        tinynet.CrossEntropyLoss(),
        opt,
        epochs,
        scheduler=scheduler,
        seed=seed,
        progress=not quiet,
    )
    return model, time.perf_counter() - start


def train_once(name: str, recipe: Recipe, data, seed: int, epochs: int, quiet: bool) -> dict:
    model, seconds = train_model(name, recipe, data, seed, epochs, quiet)
    heldout = tinynet.evaluate(model, data.x_heldout, data.y_heldout)
    row = {
        "model": name,
        "seed": seed,
        "epochs": epochs,
        "train_images": int(len(data.x_train)),
        "heldout_images": int(len(data.x_heldout)),
        "heldout_accuracy": heldout["accuracy"],
        "train_seconds": seconds,
    }
    if data.x_test is not None:
        row["official_test_accuracy"] = tinynet.evaluate(model, data.x_test, data.y_test)[
            "accuracy"
        ]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    parser.add_argument("--mini", action="store_true", help="use the embedded subset")
    parser.add_argument("--root", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    if args.mini:
        data = load_mnist_mini()
        print("data: embedded subset (8,000 train / 2,000 held-out)")
    else:
        if args.root or SHARED_MNIST.is_dir():
            # a local folder: use what is there (t10k may be absent), download nothing
            data = load_mnist(root=args.root or SHARED_MNIST, download=False)
        else:
            data = load_mnist()  # the cache, downloading what is missing
        print(
            f"data: MNIST protocol split, {len(data.x_train):,} train / {len(data.x_heldout):,} held-out"
        )
    rows = []
    for name in args.models:
        recipe = RECIPES[name]
        epochs = args.epochs or recipe.epochs
        print(
            f"{name}: SGD(lr={recipe.lr}, momentum=0.9, nesterov, weight_decay={recipe.weight_decay}), "
            f"cosine over {epochs} epochs, batch {recipe.batch_size}, jitter {recipe.jitter} px"
        )
        accs = []
        for seed in args.seeds:
            row = train_once(name, recipe, data, seed, epochs, args.quiet)
            rows.append(row)
            accs.append(row["heldout_accuracy"])
            print(
                f"  seed {seed}: held-out {row['heldout_accuracy']:.2%} "
                f"({row['train_seconds']:.0f} s)",
                flush=True,
            )
        accs = np.array(accs)
        print(
            f"  {name}: mean {accs.mean():.2%}, min {accs.min():.2%}, max {accs.max():.2%}, "
            f"std {accs.std(ddof=1) if len(accs) > 1 else 0.0:.2%} over {len(accs)} seeds"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
