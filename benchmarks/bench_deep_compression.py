"""Deep Compression (Han, Mao, Dally 2016) under the measurement protocol: 40x, and past it.

Prune (iteratively, retraining by distillation from the dense model) ->
share weights (k-means per layer, centroids fine-tuned, masks kept) ->
Huffman-code, with ``compression.pipeline.deep_compression``. DESIGN.md's
protocol: train on the 50,000, report on the 10,000 held out, seeds 0-2;
recipes are chosen on the validation split (45,000 / 5,000), never on
held-out. Ratios are ``4 bytes x parameters / bytes of the saved file``
(header, biases, codebooks, indices and Huffman tables included), and every
stage's accuracy is that of the model loaded back from its file.

Experiments (``--experiment``):

``target``
    ``TARGET``: Han et al.'s bit widths (LeNet-300-100 6 bits everywhere;
    LeNet-5-Caffe 8 for conv, 5 for fc) after one pruning round more than
    ``bench_pruning``'s 92% (our file pays for its header and float32 biases,
    which Han et al.'s figures leave out). Per seed: each stage's accuracy,
    bytes, ratio and time; the Han-format per-layer table; then the mean
    error gap to our own dense baseline, image by image (the images only one
    of the two models gets wrong, and the gap's standard errors over images
    and over seeds), and the verdict against the issue's targets
    (LeNet-300-100 >= 40x, LeNet-5-Caffe >= 39x, both within 0.1 points).
``push``
    Past the paper: every recipe of ``CANDIDATES`` (more sparsity, fewer
    bits) on the validation split; for each tolerance (0.1 and 0.5 points)
    the candidate with the largest mean ratio whose mean validation error
    gap is within it; then those on held-out, 3 seeds. Aims: 64x
    (LeNet-300-100) and 100x (LeNet-5-Caffe) within 0.1 points.
``shifted``
    A diagnostic, on validation: ``TARGET`` with the dense recipe's own
    pixel shifts, and again with ``--jitter`` pixels (default 1) for the dense
    model and every retraining alike. LeNet-300-100's recipe has no shifts
    (it matches Han et al.'s 98.36%); with them the baseline is much stronger,
    and the question is whether the pipeline's gap to it changes.

::

    python benchmarks/bench_deep_compression.py                        # target, both models
    python benchmarks/bench_deep_compression.py --models lenet_300_100 --seeds 0
    python benchmarks/bench_deep_compression.py --experiment push
    python benchmarks/bench_deep_compression.py --experiment shifted --models lenet_300_100
    python benchmarks/bench_deep_compression.py --mini                 # embedded subset, smoke test

Dense baselines come from ``bench_pruning.dense_baseline`` (cached in
``benchmarks/.cache/``). Every pipeline stage is cached in
``benchmarks/.cache/deep_compression/`` (the compressed file of each pruning
round, of the shared model and of the Huffman-coded one, each with a
``.json`` of its timing), so a rerun resumes; ``--fresh`` recomputes the
stages (the dense baselines stay cached). Results go to
``benchmarks/results/deep_compression.json`` (``_mini`` with ``--mini``),
one key per experiment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_accuracy import RECIPES, Recipe, machine, make_loader  # noqa: E402
from bench_pruning import dense_baseline, load_data, validation_data  # noqa: E402

import tinynet  # noqa: E402
from compression.distillation import KDLoss, TeacherBatches  # noqa: E402
from compression.pipeline import DeepCompressionRecipe, deep_compression, han_table  # noqa: E402
from compression.quantization.sharing import deep_compression_bits  # noqa: E402
from compression.storage import load_compressed  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "deep_compression"
MODELS = ("lenet_300_100", "lenet5_caffe")
#: The issue's ratio targets (Han et al. 2016's 40x and 39x) and push aims.
TARGET_RATIO = {"lenet_300_100": 40.0, "lenet5_caffe": 39.0}
PUSH_AIM = {"lenet_300_100": 64.0, "lenet5_caffe": 100.0}
TOLERANCES = (0.1, 0.5)  # points of held-out error above our dense baseline


@dataclass(frozen=True)
class Setup:
    """The pipeline's recipe and the retraining around it.

    Every retraining (after each pruning round, and of the shared model) is
    the dense recipe's SGD (Nesterov momentum 0.9, its weight decay, its
    pixel shifts) at ``lr`` with a cosine schedule, by distillation from the
    dense model (``KDLoss(T, alpha)``, as ``bench_pruning``'s target). The
    centroids step at ``lr * k / kept`` per layer, the biases at ``lr``.
    """

    recipe: DeepCompressionRecipe
    lr: float
    T: float = 4.0
    alpha: float = 0.7
    share_lr: float | None = None  # the shared model's rate, if not ``lr``

    def key(self) -> str:
        """Hash of the retraining settings (part of every cache file name)."""
        settings = [self.lr, self.T, self.alpha, "kd"]
        if self.share_lr is not None:  # (older cache names stay valid)
            settings.append(self.share_lr)
        return hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:8]

    def describe(self) -> str:
        share = "" if self.share_lr is None else f", shared model at {self.share_lr:g}"
        return (
            f"{self.recipe.describe()}; retraining at lr {self.lr:g} (cosine){share}, "
            f"distillation T={self.T:g} alpha={self.alpha:g}; biases and activations float32"
        )


def bits_for(name: str, conv: int, fc: int) -> dict[str, int]:
    """``conv`` bits for every Conv2d weight, ``fc`` for every Linear weight."""
    return deep_compression_bits(RECIPES[name].build(), conv=conv, fc=fc)


#: bench_pruning's rounds (issue 4: 12.3x within 0.08 points for LeNet-300-100).
BASE_ROUNDS = {
    "lenet_300_100": (0.5, 0.7, 0.8, 0.87, 0.9, 0.92),
    "lenet5_caffe": (0.5, 0.75, 0.875, 0.92),
}


def setup(
    name: str,
    extra: tuple[float, ...],
    conv: int,
    fc: int,
    share_epochs: int,
    final_epochs: int | None = None,
    round_epochs: int | None = None,
    lr: float | None = None,
    base: tuple[float, ...] | None = None,
    share_lr: float | None = None,
    layer_final: dict[str, float] | None = None,
    T: float = 4.0,
    alpha: float = 0.7,
) -> Setup:
    """The base rounds plus ``extra``; ``bench_pruning``'s epochs and learning rate.

    ``final_epochs`` retrains longer after the last round only (the earlier
    rounds, and so their cache files, stay those of the shorter schedule);
    ``round_epochs`` replaces the epochs after every round, ``lr`` the
    retraining rate (``share_lr`` the shared model's) and ``base`` the base rounds.
    ``layer_final`` gives each layer its own final sparsity (``scope="layer"``):
    every round then prunes each layer to its final sparsity times the
    round's share of the last global one (the same number of rounds, ramped alike).
    ``T`` and ``alpha`` are the retraining's distillation from the dense model
    (``alpha = 0``: the labels alone).
    """
    epochs, default_lr = (6, 0.02) if name == "lenet_300_100" else (3, 0.01)
    epochs = round_epochs or epochs
    rounds, scope = (BASE_ROUNDS[name] if base is None else base) + extra, "global"
    if layer_final is not None:
        rounds = tuple(
            {k: round(v * r / rounds[-1], 4) for k, v in layer_final.items()} for r in rounds
        )
        scope = "layer"
    recipe = DeepCompressionRecipe(
        rounds=rounds,
        scope=scope,
        prune_epochs=epochs,
        final_prune_epochs=final_epochs,
        bits=bits_for(name, conv, fc),
        share_epochs=share_epochs,
    )
    return Setup(recipe, default_lr if lr is None else lr, T=T, alpha=alpha, share_lr=share_lr)


#: The learning-rate-rewinding candidates: fewer, longer rounds at the dense rate.
REWIND = {"base": (0.5, 0.75, 0.875, 0.94), "round_epochs": 10, "lr": 0.05, "share_lr": 0.02}

#: The target experiment: Han et al.'s bit widths, one pruning round past 92%.
#: Chosen before any validation run of this pipeline (from the byte counts of
#: one-shot pruned weights: 92% at 6 bits gave about 37x, 94% about 46x);
#: ``--experiment push`` scores it on validation among the CANDIDATES.
TARGET = {
    "lenet_300_100": setup("lenet_300_100", (0.94,), conv=6, fc=6, share_epochs=4),
    "lenet5_caffe": setup("lenet5_caffe", (0.95,), conv=8, fc=5, share_epochs=2),
}

#: The push experiment's candidates, scored on the validation split. Longer
#: schedules extend shorter ones, so their first rounds come from the cache.
CANDIDATES = {
    "lenet_300_100": {
        "92% 6b": setup("lenet_300_100", (), 6, 6, 4),
        "94% 6b": TARGET["lenet_300_100"],
        "94% 5b": setup("lenet_300_100", (0.94,), 5, 5, 4),
        "95% 5b": setup("lenet_300_100", (0.94, 0.95), 5, 5, 4),
        "96% 5b": setup("lenet_300_100", (0.94, 0.95, 0.96), 5, 5, 4),
        "96% 4b": setup("lenet_300_100", (0.94, 0.95, 0.96), 4, 4, 4),
        "97% 4b": setup("lenet_300_100", (0.94, 0.95, 0.96, 0.97), 4, 4, 4),
        "98% 4b": setup("lenet_300_100", (0.94, 0.95, 0.96, 0.97, 0.98), 4, 4, 4),
        # Added at stop 13, after every candidate above missed 0.1 points on
        # validation (best: 94% 5b, +0.16): the same rounds, but 20 epochs
        # after the last one and 8 for the centroids.
        "94% 6b long": setup("lenet_300_100", (0.94,), 6, 6, 8, final_epochs=20),
        "95% 5b long": setup("lenet_300_100", (0.94, 0.95), 5, 5, 8, final_epochs=20),
        "96% 5b long": setup("lenet_300_100", (0.94, 0.95, 0.96), 5, 5, 8, final_epochs=20),
        # ... and, when that did not help either, twice the epochs after every round
        "94% 6b slow": setup("lenet_300_100", (0.94,), 6, 6, 8, round_epochs=12),
        # Added at stop 14: learning-rate rewinding (Renda, Frankle and Carbin
        # 2020): every retraining restarts at the dense recipe's own rate, 0.05,
        # cosine to zero, instead of fine-tuning at 0.02; four rounds of 10
        # epochs. The centroids are still fine-tuned at 0.02.
        "94% 6b rewind": setup("lenet_300_100", (), 6, 6, 4, **REWIND),
        "95% 5b rewind": setup("lenet_300_100", (0.95,), 5, 5, 4, **REWIND),
        # Added at stop 15: Han et al.'s per-layer shape instead of one global
        # threshold. Global pruning to 94% keeps 4% / 19% / 72% of the three
        # layers (the first layer's weights are the smallest); Han et al. keep
        # 8% / 9% / 26%. Here 5.4% / 10% / 26%: the same number of weights.
        "94% 6b Han's shape": setup(
            "lenet_300_100",
            (0.94,),
            6,
            6,
            4,
            layer_final={"1.weight": 0.946, "3.weight": 0.90, "5.weight": 0.74},
        ),
        # ... and the retraining's distillation from the dense model (T 4,
        # alpha 0.7 everywhere above): without it, and at other T and alpha.
        "94% 6b labels only": setup("lenet_300_100", (0.94,), 6, 6, 4, T=1.0, alpha=0.0),
        "94% 6b T 1 a 1": setup("lenet_300_100", (0.94,), 6, 6, 4, T=1.0, alpha=1.0),
        "94% 6b T 2 a 0.7": setup("lenet_300_100", (0.94,), 6, 6, 4, T=2.0, alpha=0.7),
        "94% 6b T 2 a 1": setup("lenet_300_100", (0.94,), 6, 6, 4, T=2.0, alpha=1.0),
        "94% 6b T 4 a 1": setup("lenet_300_100", (0.94,), 6, 6, 4, T=4.0, alpha=1.0),
        "94% 6b T 8 a 1": setup("lenet_300_100", (0.94,), 6, 6, 4, T=8.0, alpha=1.0),
    },
    # Trimmed at stop 13 to what the machine affords (about 25 min per seed on
    # validation): 95% 8/5b is the target's recipe (49x held-out), the rest push.
    "lenet5_caffe": {
        "95% 8/5b": TARGET["lenet5_caffe"],
        "97% 6/4b": setup("lenet5_caffe", (0.95, 0.97), 6, 4, 2),
        "98% 5/4b": setup("lenet5_caffe", (0.95, 0.97, 0.98), 5, 4, 2),
        "98.5% 5/4b": setup("lenet5_caffe", (0.95, 0.97, 0.98, 0.985), 5, 4, 2),
        "99% 5/3b": setup("lenet5_caffe", (0.95, 0.97, 0.98, 0.985, 0.99), 5, 3, 2),
    },
}


def make_retrain(name: str, data, s: Setup, teacher, recipe: Recipe | None = None):
    """``retrain(model, epochs, params, seed)`` for the pipeline (see ``Setup``).

    ``recipe`` (default ``RECIPES[name]``) gives the weight decay and the pixel shifts.
    """
    recipe = RECIPES[name] if recipe is None else recipe

    def retrain(model, epochs, params, seed):
        opt = tinynet.SGD(
            model.parameters() if params is None else params,
            lr=s.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=recipe.weight_decay,
        )
        batches = TeacherBatches(make_loader(recipe, data, seed), teacher)
        tinynet.fit(
            model,
            batches,
            KDLoss(s.T, s.alpha),
            opt,
            epochs,
            scheduler=tinynet.CosineAnnealingLR(opt, T_max=epochs),
            progress=False,
        )

    return retrain


def usable_seeds(name: str, data, seeds, tag: str, quiet: bool) -> list[int]:
    """The seeds whose dense baseline exists or trains; a diverged one is reported and skipped.

    (``bench_accuracy``'s LeNet-5-Caffe recipe, lr 0.05 without warm-up, has
    diverged in its first epoch on the embedded subset's validation split.)
    """
    ok = []
    for seed in seeds:
        try:
            dense_baseline(name, data, seed, tag, quiet)
            ok.append(seed)
        except tinynet.TrainingDiverged as err:
            print(f"  seed {seed} SKIPPED: the dense {name} baseline diverged ({err})", flush=True)
    return ok


def run_one(
    name: str,
    data,
    tag: str,
    seed: int,
    s: Setup,
    fresh: bool,
    quiet: bool,
    log=None,
    recipe: Recipe | None = None,
):
    """The pipeline on ``dense_baseline(name, data, seed)``, scored on ``data``'s held-out part.

    ``recipe`` replaces ``RECIPES[name]`` for the dense model and every
    retraining; ``tag`` must then name it (it names every cache file).
    """
    recipe = RECIPES[name] if recipe is None else recipe
    dense = dense_baseline(name, data, seed, tag, quiet, recipe)
    result = deep_compression(
        dense,
        s.recipe,
        make_retrain(name, data, s, dense, recipe),
        (data.x_heldout, data.y_heldout),
        CACHE,
        lr=s.lr if s.share_lr is None else s.share_lr,  # the centroids' base rate
        seed=seed,
        # the dense baseline's own cache name, then the retraining settings
        cache_key=f"{name}_{tag}_seed{seed}_epochs{recipe.epochs}_{s.key()}",
        fresh=fresh,
        log=log,
    )
    return result


def stage_line(result) -> str:
    return " | ".join(
        f"{st.name} {st.accuracy:.2%} {st.file_bytes:,} B {st.ratio:.1f}x {st.seconds:.0f} s"
        + (" (cached)" if st.cached else "")
        for st in result.stages
    )


def row_of(name: str, seed: int, result, label: str = "") -> dict:
    dense, final = result.stages[0], result.final
    return {
        "model": name,
        "seed": seed,
        "candidate": label,
        "dense_accuracy": dense.accuracy,
        "accuracy": final.accuracy,
        "gap_points": 100 * (dense.accuracy - final.accuracy),
        "file_bytes": final.file_bytes,
        "ratio": final.ratio,
        **result.as_dict(),
    }


def wrong_on(path: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which of the images ``x`` the model saved at ``path`` gets wrong, shape (N,) bool."""
    return tinynet.predict(load_compressed(path), x).argmax(axis=1) != y


def paired_gap(dense_wrong: list[np.ndarray], compressed_wrong: list[np.ndarray]) -> dict:
    """The error gap on the same images, with its two standard errors, in points.

    Per seed ``s`` and image ``i``, ``d_si = compressed_wrong - dense_wrong`` is
    -1, 0 or +1; the gap is ``100 * mean(d)``. Only the discordant images (one
    model right, the other wrong: McNemar's counts) move it, so its standard
    error over images (LeNet-300-100: 0.07-0.08 points per seed) is below the
    0.12 points of one model's accuracy on 10,000 images. The mean over seeds
    has two sources of noise:

    * images: ``100 * std_i(mean_s d_si) / sqrt(N)``, the held-out set being
      one sample of the digits the model will meet;
    * seeds: ``std_s(gap_s) / sqrt(S)``, the training run being one sample of
      the runs the recipe could give (the seed spread, which also holds the
      image noise of each seed's gap).
    """
    d = np.array([c.astype(float) - w.astype(float) for w, c in zip(dense_wrong, compressed_wrong)])
    gaps = 100 * d.mean(axis=1)
    n_seeds, n_images = d.shape
    return {
        "gap_points": float(gaps.mean()),
        "dense_only_wrong": [int(np.sum(v == -1)) for v in d],
        "compressed_only_wrong": [int(np.sum(v == 1)) for v in d],
        "se_images": float(100 * d.mean(axis=0).std(ddof=1) / np.sqrt(n_images)),
        "se_seeds": float(gaps.std(ddof=1) / np.sqrt(n_seeds)) if n_seeds > 1 else None,
    }


def summarize(rows: list[dict]) -> dict:
    """Mean error gap (points, compressed minus dense) and ratios over seeds."""
    gaps = [r["gap_points"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    return {
        "seeds": [r["seed"] for r in rows],
        "dense_error": float(np.mean([1 - r["dense_accuracy"] for r in rows])),
        "error": float(np.mean([1 - r["accuracy"] for r in rows])),
        "gap_points": float(np.mean(gaps)),
        "gap_min": float(min(gaps)),
        "gap_max": float(max(gaps)),
        "ratio_mean": float(np.mean(ratios)),
        "ratio_min": float(min(ratios)),
        "bytes_mean": float(np.mean([r["file_bytes"] for r in rows])),
    }


def run_target(name, data, seeds, mini: bool, fresh: bool, quiet: bool) -> dict:
    s = TARGET[name]
    tag = "mini" if mini else "mnist"
    print(f"{name}: {s.describe()}", flush=True)
    seeds = usable_seeds(name, data, seeds, tag, quiet)
    if not seeds:
        return {"setup": s.describe(), "rows": [], "skipped": "no dense baseline trained"}
    rows, dense_wrong, compressed_wrong = [], [], []
    for seed in seeds:
        log = None if quiet else (lambda line, seed=seed: print(f"    [{seed}] {line}", flush=True))
        start = time.perf_counter()
        result = run_one(name, data, tag, seed, s, fresh, quiet, log)
        rows.append(row_of(name, seed, result))
        for wrong, stage in ((dense_wrong, result.stages[0]), (compressed_wrong, result.final)):
            wrong.append(wrong_on(stage.path, data.x_heldout, data.y_heldout))
        rows[-1]["wall_seconds"] = time.perf_counter() - start
        print(f"  seed {seed}: {stage_line(result)}", flush=True)
        table = han_table(
            result.model,
            huffman=result.final.huffman,
            paper=None if mini else name,  # published points only beside full MNIST
            title=f"{name}, seed {seed}, held-out error {1 - result.final.accuracy:.2%}",
        )
        rows[-1]["table"] = table.as_dict()
        if seed == seeds[0]:
            print("\n".join("    " + line for line in str(table).splitlines()), flush=True)
    summary = summarize(rows)
    summary["paired"] = paired = paired_gap(dense_wrong, compressed_wrong)
    ok = summary["ratio_min"] >= TARGET_RATIO[name] and summary["gap_points"] <= 0.1 + 1e-9
    seeds_se = "" if paired["se_seeds"] is None else f", +-{paired['se_seeds']:.2f} over seeds"
    print(
        f"  {name}: on the same images, the compressed model alone gets "
        f"{paired['compressed_only_wrong']} wrong and the dense model alone "
        f"{paired['dense_only_wrong']} (by seed): gap {paired['gap_points']:+.3f} points, "
        f"standard error +-{paired['se_images']:.3f} over images{seeds_se}",
        flush=True,
    )
    print(
        f"  {name}: mean dense error {summary['dense_error']:.2%}, compressed "
        f"{summary['error']:.2%} ({summary['gap_points']:+.2f} points, seeds "
        f"{summary['gap_min']:+.2f} to {summary['gap_max']:+.2f}), ratio {summary['ratio_mean']:.1f}x "
        f"(min {summary['ratio_min']:.1f}x) over {len(rows)} seed(s) -> target "
        f"(>= {TARGET_RATIO[name]:g}x, <= +0.10 points) {'MET' if ok else 'NOT MET'}"
        + (" [embedded subset: not the protocol]" if mini else ""),
        flush=True,
    )
    return {"setup": s.describe(), "rows": rows, "summary": summary, "met": ok}


def run_push(name, data, seeds, mini: bool, fresh: bool, quiet: bool, val_seeds=None) -> dict:
    val = validation_data(data)
    tag_val, tag = ("mini-val", "mini") if mini else ("mnist-val", "mnist")
    print(
        f"{name}: push, {len(CANDIDATES[name])} candidates on the validation split "
        f"({len(val.x_train):,} train / {len(val.x_heldout):,} validation)",
        flush=True,
    )
    val_seeds = usable_seeds(name, val, val_seeds or seeds, tag_val, quiet)
    seeds = usable_seeds(name, data, seeds, tag, quiet)
    if not (val_seeds and seeds):
        return {"skipped": "no dense baseline trained", "validation_seeds": val_seeds}
    val_rows = []
    for seed in val_seeds:
        for label, s in CANDIDATES[name].items():
            result = run_one(name, val, tag_val, seed, s, fresh, quiet)
            val_rows.append(row_of(name, seed, result, label))
            print(
                f"  seed {seed} {label:<11} validation error {1 - result.final.accuracy:.2%} "
                f"({val_rows[-1]['gap_points']:+.2f} points), {result.final.ratio:.1f}x "
                f"({result.final.file_bytes:,} B)",
                flush=True,
            )
    means = {}
    for label in CANDIDATES[name]:
        means[label] = summarize([r for r in val_rows if r["candidate"] == label])
        print(
            f"    {label:<11} mean validation gap {means[label]['gap_points']:+.3f} points, "
            f"{means[label]['ratio_mean']:.1f}x",
            flush=True,
        )
    chosen = {}
    for tol in TOLERANCES:
        ok = [label for label in means if means[label]["gap_points"] <= tol + 1e-9]
        chosen[tol] = max(ok, key=lambda label: means[label]["ratio_mean"]) if ok else None
        print(f"  within {tol} points on validation: {chosen[tol] or 'none'}", flush=True)
    heldout = {}
    for label in dict.fromkeys(c for c in chosen.values() if c is not None):
        rows = []
        for seed in seeds:
            result = run_one(name, data, tag, seed, CANDIDATES[name][label], fresh, quiet)
            rows.append(row_of(name, seed, result, label))
            print(f"  held-out seed {seed} {label}: {stage_line(result)}", flush=True)
        heldout[label] = {"rows": rows, "summary": summarize(rows)}
    for tol, label in chosen.items():
        if label is None:
            continue
        sm = heldout[label]["summary"]
        print(
            f"  largest ratio within {tol} points (chosen on validation): {label}, held-out "
            f"{sm['gap_points']:+.2f} points ({'within' if sm['gap_points'] <= tol + 1e-9 else 'NOT within'}"
            f" {tol} on held-out), {sm['ratio_mean']:.1f}x (min {sm['ratio_min']:.1f}x; aim "
            f"{PUSH_AIM[name]:g}x)",
            flush=True,
        )
    return {
        "candidates": {label: s.describe() for label, s in CANDIDATES[name].items()},
        "validation_rows": val_rows,
        "validation_means": means,
        "chosen": {str(tol): label for tol, label in chosen.items()},
        "heldout": heldout,
    }


def run_shifted(name, data, seeds, mini: bool, fresh: bool, quiet: bool, jitter: int = 1) -> dict:
    """``TARGET`` on validation twice: with the dense recipe's pixel shifts, and with ``jitter``.

    The second run changes the shifts of the dense model *and* of every
    retraining, so the baseline and the pipeline see the same data: is the
    gap a weak baseline's, or the pruning's?
    """
    val = validation_data(data)
    tag = "mini-val" if mini else "mnist-val"
    own = RECIPES[name]
    if jitter == own.jitter:
        return {"skipped": f"the recipe already shifts by {jitter} px"}
    s = TARGET[name]
    print(f"{name}: {s.describe()}; on validation, shifts {own.jitter} and {jitter} px", flush=True)
    runs = {}
    for shift, recipe, run_tag in (
        (own.jitter, own, tag),  # the push experiment's cache
        (jitter, replace(own, jitter=jitter), f"{tag}-shift{jitter}"),
    ):
        rows = []
        for seed in seeds:
            try:
                result = run_one(name, val, run_tag, seed, s, fresh, quiet, recipe=recipe)
            except tinynet.TrainingDiverged as err:
                print(
                    f"  {shift} px seed {seed} SKIPPED: the dense model diverged ({err})",
                    flush=True,
                )
                continue
            rows.append(row_of(name, seed, result, f"{shift} px"))
            print(f"  {shift} px seed {seed}: {stage_line(result)}", flush=True)
        if not rows:
            runs[f"{shift} px"] = {"rows": [], "skipped": "every dense model diverged"}
            continue
        summary = summarize(rows)
        print(
            f"  {shift} px: mean dense validation accuracy {1 - summary['dense_error']:.2%}, "
            f"gap {summary['gap_points']:+.2f} points (seeds {summary['gap_min']:+.2f} to "
            f"{summary['gap_max']:+.2f}), {summary['ratio_mean']:.1f}x",
            flush=True,
        )
        runs[f"{shift} px"] = {"rows": rows, "summary": summary}
    return {"setup": s.describe(), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--experiment", choices=["target", "push", "shifted", "all"], default="target"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--val-seeds",
        nargs="+",
        type=int,
        default=None,
        help="push: seeds scored on validation (default: --seeds)",
    )
    parser.add_argument(
        "--jitter",
        type=int,
        default=1,
        help="shifted: the pixel shifts of the dense recipe and the retraining (default 1)",
    )
    parser.add_argument("--mini", action="store_true", help="use the embedded subset")
    parser.add_argument("--fresh", action="store_true", help="recompute every pipeline stage")
    parser.add_argument("--root", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    data, description = load_data(args.mini, args.root)
    print(f"data: {description}", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"deep_compression{'_mini' if args.mini else ''}.json"
    saved = json.loads(out.read_text()) if out.exists() else {}
    saved.update({"machine": machine(), "data": description})
    experiments = ["target", "push"] if args.experiment == "all" else [args.experiment]
    for experiment in experiments:
        run = {"target": run_target, "push": run_push, "shifted": run_shifted}[experiment]
        results = saved.setdefault(experiment, {})
        for name in args.models:
            start = time.perf_counter()
            extra = {
                "push": {"val_seeds": args.val_seeds},
                "shifted": {"jitter": args.jitter},
            }.get(experiment, {})
            results[name] = run(name, data, args.seeds, args.mini, args.fresh, args.quiet, **extra)
            results[name]["seconds"] = time.perf_counter() - start
            print(f"  ({experiment} {name}: {results[name]['seconds']:.0f} s)", flush=True)
            # re-read before writing: two runs (one per model) may share the file
            current = json.loads(out.read_text()) if out.exists() else {}
            current.update({"machine": machine(), "data": description})
            current.setdefault(experiment, {})[name] = results[name]
            out.write_text(json.dumps(current, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
