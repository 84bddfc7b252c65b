"""compression.sweep: seeded grid points, any executor, the Pareto front, plots and tables."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tinynet
from compression.storage import load_compressed, size_report
from compression.sweep import (
    PAPER_REFERENCES,
    TECHNIQUES,
    Row,
    SweepTask,
    Technique,
    TechniquePoint,
    available_techniques,
    best_by_technique,
    build_model,
    check_picklable,
    compressed_size,
    dominates,
    paper_references,
    pareto_front,
    plot_accuracy_vs_size,
    point_seed,
    register_technique,
    run_sweep,
    run_techniques,
    to_csv,
    to_markdown,
)
from compression.sweep.plot import published_points
from compression.sweep.techniques import TECHNIQUE_MODULES, keep_baseline


def row(technique, setting, nbytes, accuracy, **extra):
    return Row(technique, setting, nbytes, accuracy, time_ms=1.0, extra=extra)


def seeded_point(setting, seed):
    """A cheap evaluator: accuracy drawn from the point's seed (no BLAS involved)."""
    rng = np.random.default_rng(seed)
    return Row("toy", str(setting), 100 * setting, float(rng.random()), 0.5, {"draw": rng.random()})


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """A LeNet-300-100 baseline (untrained: only its bytes matter) and a 500-image budget."""
    folder = tmp_path_factory.mktemp("sweep")
    baseline = folder / "baseline.npz"
    tinynet.save(build_model(tinynet.models.lenet_300_100, 0), baseline)
    return SweepTask(epochs=1, train_size=500, baseline_path=str(baseline))


# ------------------------------------------------------------------ seeds and runner


def test_point_seed_depends_on_seed_and_index_only():
    assert point_seed(0, 3) == point_seed(0, 3)
    seeds = {point_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150  # no collisions between sweeps or points
    with pytest.raises(ValueError, match="index must be a non-negative integer"):
        point_seed(0, -1)


def test_serial_sweep_keeps_grid_order_and_records_seeds():
    rows = run_sweep(seeded_point, [3, 1, 2], seed=7, progress=False)
    assert [r.setting for r in rows] == ["3", "1", "2"]
    assert [r.index for r in rows] == [0, 1, 2]
    assert [r.seed for r in rows] == [point_seed(7, i) for i in range(3)]
    again = run_sweep(seeded_point, [3, 1, 2], seed=7, progress=False)
    assert again == rows
    other = run_sweep(seeded_point, [3, 1, 2], seed=8, progress=False)
    assert [r.accuracy for r in other] != [r.accuracy for r in rows]


def test_thread_pool_executor_works_unchanged(tiny_task):
    serial = run_techniques(tiny_task, seed=0, fast=True, progress=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = run_techniques(tiny_task, seed=0, fast=True, executor=pool, progress=False)
    quantizers = ["PTQ", "QAT", "LSQ", "k-means sharing"]
    assert [r.technique for r in serial] == ["dense", "width", "width", "pruning", "pruning"] + [
        name for name in quantizers for _ in (8, 4, 2)
    ] + ["PTQ + clipping"] * 3 + ["distillation", "distillation"] + ["low rank"] * 2 + [
        "Deep Compression"
    ]
    assert [r.without_time() for r in threaded] == [r.without_time() for r in serial]


SERIAL_SCRIPT = """
import dataclasses, json, sys
from compression.sweep import SweepTask, run_techniques
task = SweepTask(epochs=1, train_size=500, baseline_path=sys.argv[1])
rows = run_techniques(task, seed=0, fast=True, progress=False)
print(json.dumps([dataclasses.asdict(r.without_time()) for r in rows]))
"""


def test_serial_and_process_pool_give_the_same_rows(tiny_task):
    # The serial run happens in a fresh interpreter with one BLAS thread, as in
    # `python -m compression`: threaded BLAS sums in another order and changes the
    # last bits of trained weights, so the comparison needs the same thread count.
    # It sees this process's sys.path, as the pool's spawned workers do.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", SERIAL_SCRIPT, tiny_task.baseline_path],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    serial = json.loads(done.stdout.strip().splitlines()[-1])
    parallel = run_techniques(tiny_task, seed=0, fast=True, jobs=2, progress=False)
    assert [dataclasses.asdict(r.without_time()) for r in parallel] == serial
    assert all(r.time_ms > 0 for r in parallel)


def test_process_pools_refuse_what_workers_cannot_import():
    def closure(setting, seed):
        return seeded_point(setting, seed)

    with pytest.raises(TypeError, match="top level of an importable module"):
        run_sweep(lambda s, seed: seeded_point(s, seed), [1, 2], jobs=2, progress=False)
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        check_picklable(closure)
    check_picklable(seeded_point)  # a top-level function is fine


def test_runner_errors_teach():
    with pytest.raises(ValueError, match="jobs must be a positive integer, got 0"):
        run_sweep(seeded_point, [1], jobs=0)
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="not both"):
        run_sweep(seeded_point, [1], executor=pool, jobs=2)
    with pytest.raises(TypeError, match="must return a compression.sweep.Row, got dict"):
        run_sweep(lambda s, seed: {"accuracy": 1.0}, [1], progress=False)

    def fails_on_two(setting, seed):
        if setting == 2:
            raise ValueError("bad setting")
        return seeded_point(setting, seed)

    with pytest.raises(
        RuntimeError, match=r"grid point 1 \(setting 2, seed \d+\) failed: ValueError"
    ):
        run_sweep(fails_on_two, [1, 2, 3], progress=False)
    with ThreadPoolExecutor(2) as pool, pytest.raises(RuntimeError, match="grid point 1"):
        run_sweep(fails_on_two, [1, 2, 3], executor=pool, progress=False)


# --------------------------------------------------------------------- bytes


def test_bytes_are_the_length_of_the_file_on_disk(tiny_task, tmp_path):
    task = dataclasses.replace(tiny_task, artifact_dir=str(tmp_path))
    point = TechniquePoint(TECHNIQUES["dense"], task)
    result = point("float32", seed=0)
    path = tmp_path / result.artifact
    assert result.nbytes == os.path.getsize(path)
    model = load_compressed(path)
    assert result.nbytes == size_report(model, reference_files=False).total_bytes
    baseline = task.baseline()
    assert compressed_size(baseline) == size_report(baseline, reference_files=False).total_bytes
    # 266,610 float32 parameters, plus the container's header
    assert 4 * 266_610 < result.nbytes < 4 * 266_610 + 4000
    assert result.extra["parameters"] == 266_610
    assert result.extra["ratio"] == round(4 * 266_610 / result.nbytes, 4)
    assert tinynet.evaluate(model, *task.data()[5:7])["accuracy"] == result.accuracy


def test_width_points_are_mlps_trained_from_their_seed(tiny_task):
    point = TechniquePoint(TECHNIQUES["width"], tiny_task)
    a, b = point(16, seed=1), point(16, seed=2)
    assert a.setting == "784-16-10" and a.extra["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
    assert a.without_time() == point(16, seed=1).without_time()
    assert a.extra["val_accuracy"] != b.extra["val_accuracy"] or a.accuracy != b.accuracy
    assert a.accuracy > 0.5  # one epoch on 500 images already beats chance (10%) by far


def test_deep_compression_point_is_a_real_file_with_its_stages(tiny_task, tmp_path):
    from compression.pipeline import han_table
    from compression.pipeline.technique import pipeline_recipe, pruning_rounds

    assert pruning_rounds(0.9, 2) == (0.6838, 0.9)  # kept: 1 -> 0.316 -> 0.1
    assert pruning_rounds(0.95) == (0.5271, 0.7764, 0.8943, 0.95)
    recipe = pipeline_recipe((0.9, 5), tiny_task)
    assert (recipe.prune_epochs, recipe.share_epochs, recipe.bits) == (1, 1, 5)  # capped by epochs

    task = dataclasses.replace(tiny_task, artifact_dir=str(tmp_path))
    technique = TECHNIQUES["Deep Compression"]
    assert technique.fast_grid == ((0.9, 5),)
    result = TechniquePoint(technique, task)((0.9, 5), seed=3)
    path = tmp_path / result.artifact
    assert result.setting == "90% pruned, 5-bit" and result.nbytes == os.path.getsize(path)
    model = load_compressed(path)
    assert tinynet.evaluate(model, *task.data()[5:7])["accuracy"] == result.accuracy
    assert result.extra["bit_widths"] == "1.weight=5 3.weight=5 5.weight=5"
    assert result.extra["kept"] == pytest.approx(0.1, abs=1e-4)
    stages = result.extra["stages"].split(" -> ")
    assert [s.split()[0] for s in stages] == ["pruned", "shared", "Huffman"]
    assert stages[-1].startswith(f"Huffman {result.nbytes:,} B")  # the last stage is the file
    assert result.extra["ratio"] == round(4 * 266_610 / result.nbytes, 4) > 25
    assert han_table(model).totals()[1] == result.nbytes  # the per-layer table adds up to it


# ------------------------------------------------------------------ registry


def test_registry_holds_what_exists_and_refuses_duplicates():
    assert list(TECHNIQUES)[:2] == ["dense", "width"]
    assert TECHNIQUE_MODULES[-1] == "compression.pipeline.technique"
    assert list(available_techniques())[-1] == "Deep Compression"
    width = TECHNIQUES["width"]
    assert width.settings(fast=True) == width.fast_grid and len(width.grid) > len(width.fast_grid)
    with pytest.raises(ValueError, match="'dense' is already registered"):
        register_technique(Technique("dense", keep_baseline, ("a",), ("a",), "again"))
    with pytest.raises(ValueError, match="non-empty grid"):
        register_technique(Technique("empty", keep_baseline, (), (), "nothing"))
    assert "empty" not in TECHNIQUES


# -------------------------------------------------------------------- Pareto


def test_pareto_front_known_answer():
    rows = [
        row("a", "1", 100, 0.90),  # front: smallest
        row("a", "2", 200, 0.95),  # front
        row("b", "1", 150, 0.89),  # dominated by a1 (smaller and more accurate)
        row("b", "2", 200, 0.94),  # dominated by a2 (same bytes, less accurate)
        row("b", "3", 400, 0.95),  # dominated by a2 (same accuracy, larger)
        row("c", "1", 500, 0.97),  # front: most accurate
        row("c", "2", 500, 0.97),  # an exact tie does not dominate: both stay
        row("c", "3", 50, 0.10),  # front: nothing is smaller
    ]
    front = pareto_front(rows)
    assert [(r.technique, r.setting) for r in front] == [
        ("c", "3"),
        ("a", "1"),
        ("a", "2"),
        ("c", "1"),
        ("c", "2"),
    ]
    assert dominates(rows[0], rows[2]) and not dominates(rows[2], rows[0])
    assert not dominates(rows[5], rows[6]) and not dominates(rows[6], rows[5])
    assert pareto_front([]) == []


def test_best_point_is_chosen_on_validation_not_held_out():
    rows = [
        row("w", "small", 100, 0.90, val_accuracy=0.95),
        row("w", "big", 400, 0.97, val_accuracy=0.93),  # better held-out, worse validation
        row("w", "same", 300, 0.91, val_accuracy=0.95),  # tie on validation: fewer bytes wins
        row("d", "only", 900, 0.96),  # no validation metric: falls back to accuracy
    ]
    best = best_by_technique(rows)
    assert best["w"].setting == "small" and best["d"].setting == "only"


# ---------------------------------------------------------------------- plot


def _figure():
    from matplotlib.figure import Figure

    fig = Figure()
    return fig, fig.subplots()


ROWS = [
    row("dense", "baseline", 1_067_960, 0.955),  # dominated by the 64-wide MLP
    row("width", "784-16-10", 51_984, 0.93),
    row("width", "784-64-10", 204_632, 0.96),
]


def test_plot_draws_one_series_per_technique_and_the_front():
    _, ax = _figure()
    plot_accuracy_vs_size(ROWS, ax=ax, dataset="mnist-mini")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["Pareto front", "dense", "width"]
    assert ax.get_xscale() == "log"
    front = next(line for line in ax.get_lines() if line.get_label() == "Pareto front")
    assert front.get_drawstyle() == "steps-post"
    assert list(front.get_xdata()) == [51_984, 204_632, 1_067_960]  # runs on to the largest
    np.testing.assert_allclose(front.get_ydata(), [93.0, 96.0, 96.0])


def test_references_are_refused_beside_the_embedded_subset():
    references = paper_references("lenet_300_100")
    assert [r.nbytes for r in references] == [1_070_000, 27_000]
    assert all("(paper)" in r.label for r in PAPER_REFERENCES)
    for dataset in ("mnist-mini", "fashion-mnist", None):
        _, ax = _figure()
        with pytest.warns(UserWarning, match="reference points not drawn"):
            plot_accuracy_vs_size(ROWS, ax=ax, references=references, dataset=dataset)
        assert "published (paper)" not in ax.get_legend_handles_labels()[1]
        assert not any("Han et al." in t.get_text() for t in ax.texts)


def test_references_are_drawn_beside_full_mnist():
    _, ax = _figure()
    references = published_points("lenet_300_100", "mnist")
    plot_accuracy_vs_size(ROWS, ax=ax, references=references, dataset="mnist")
    assert "published (paper): theirs, not ours" in ax.get_legend_handles_labels()[1]
    texts = [t.get_text() for t in ax.texts]
    assert "Han et al. 2016 (paper), Deep Compression: 27 KB, 98.42%" in texts
    assert "Han et al. 2016 (paper), dense: 1070 KB, 98.36%" in texts
    assert paper_references("lenet5") == []  # LeCun's LeNet-5 is not the paper's network


def test_published_points_only_for_full_mnist_and_the_papers_models():
    caffe = [r.text for r in published_points("lenet5_caffe", "mnist")]
    assert caffe == [
        "Han et al. 2016 (paper), dense: 1720 KB, 99.20%",
        "Han et al. 2016 (paper), Deep Compression: 44 KB, 99.26%",
    ]
    assert len(published_points("lenet_300_100", "mnist")) == 2
    for model, dataset in [
        ("lenet_300_100", "mnist-mini"),  # the embedded subset: another experiment
        ("lenet_300_100", "fashion-mnist"),
        ("lenet5_caffe", "mnist-mini"),
        ("lenet5", "mnist"),  # LeCun's LeNet-5: no paper here used it
        ("lenet_300_100", None),
    ]:
        assert published_points(model, dataset) == [], (model, dataset)


def test_many_techniques_label_only_the_front():
    rows = [
        row(f"t{i}", f"s{j}", 1000 * (i + 1) + 10 * j, 0.5 + 0.04 * i - 0.001 * j)
        for i in range(6)
        for j in range(3)
    ]
    _, ax = _figure()
    with pytest.warns(UserWarning, match="reference points not drawn"):
        plot_accuracy_vs_size(rows, ax=ax, references=PAPER_REFERENCES, dataset="mnist-mini")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{r.technique} {r.setting}" for r in pareto_front(rows))
    lines = [c.lines[0] for c in ax.containers if c.get_label().startswith("t")]  # errorbars
    assert len({(line.get_color(), line.get_marker()) for line in lines}) == 6


# -------------------------------------------------------------------- tables


def test_csv_has_every_field_and_extra(tmp_path):
    rows = [
        dataclasses.replace(row("w", "784-8-10", 26_537, 0.8985, ratio=40.2), index=0, seed=5),
        dataclasses.replace(row("d", "base, f32", 1_067_960, 0.9745, parameters=266_610), index=0),
    ]
    path = to_csv(rows, tmp_path / "rows.csv")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "technique",
        "setting",
        "bytes",
        "accuracy",
        "time_ms",
        "parameters",
        "ratio",
        "artifact",
        "index",
        "seed",
    ]
    assert table[0]["bytes"] == "26537" and float(table[0]["accuracy"]) == 0.8985
    assert table[0]["ratio"] == "40.2" and table[0]["parameters"] == ""
    assert table[1]["setting"] == "base, f32" and table[1]["parameters"] == "266610"
    assert table[0]["seed"] == "5"


def test_markdown_table_marks_the_front():
    text = to_markdown(ROWS)
    lines = text.strip().splitlines()
    assert lines[0] == "| technique | setting | bytes | size | accuracy | time (ms) | front |"
    assert len(lines) == 2 + len(ROWS)
    assert lines[2] == "| dense | baseline | 1,067,960 | 1.07 MB | 95.50% | 1.00 |  |"
    assert lines[3].endswith("| yes |") and lines[4].endswith("| yes |")
