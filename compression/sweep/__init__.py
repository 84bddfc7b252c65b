"""compression.sweep: accuracy against size, one row per setting of a technique.

Read in this order (each file is one lesson):

==============  ============================================================
``runner``      ``run_sweep``: a grid of settings, seeded per point, run
                serially, in a local process pool (one BLAS thread per
                worker) or on any ``concurrent.futures.Executor``; ``Row``
``measure``     bytes of the real compressed file, held-out accuracy,
                median inference time
``task``        ``SweepTask``: data, trained baseline and training recipe,
                by name, so worker processes can rebuild them
``techniques``  the registry: ``Technique`` (apply / fine-tune / grid),
                ``dense`` and ``width``; ``run_techniques`` sweeps them all
``cache``       ``PointCache``: each finished point's row and file on disk
                (JSON, atomic writes, checked on read), so a rerun skips
                it and a killed run resumes
``pareto``      ``pareto_front``: the points nothing beats on both axes
``plot``        ``plot_accuracy_vs_size`` with the front and, on full
                MNIST only, published reference points
``tables``      ``to_csv``, ``to_markdown``
==============  ============================================================

A sweep of any function::

    from compression.sweep import Row, run_sweep, pareto_front, plot_accuracy_vs_size
    rows = run_sweep(evaluate_point, grid=[16, 32, 64], seed=0)   # evaluate_point(setting, seed)

Every registered technique on the embedded data (what ``python -m compression`` does)::

    task = SweepTask(dataset="mini", model="lenet_300_100", epochs=20,
                     baseline_path="baseline.npz")
    rows = run_techniques(task, seed=0, jobs=2)
    plot_accuracy_vs_size(rows, dataset=task.dataset_name)
"""

from compression.sweep.measure import Measurement, compressed_size, inference_time_ms, measure
from compression.sweep.pareto import best_by_technique, dominates, pareto_front
from compression.sweep.plot import (
    PAPER_REFERENCES,
    Reference,
    paper_references,
    plot_accuracy_vs_size,
)
from compression.sweep.runner import (
    BLAS_THREAD_VARIABLES,
    TINYNET_STATE_LOCK,
    Row,
    check_picklable,
    local_process_pool,
    point_seed,
    run_sweep,
)
from compression.sweep.tables import to_csv, to_markdown
from compression.sweep.task import RECIPE, SweepTask, build_model, load_split, train_recipe
from compression.sweep.techniques import (
    TECHNIQUES,
    Technique,
    TechniquePoint,
    available_techniques,
    register_technique,
    run_techniques,
)

__all__ = [
    "BLAS_THREAD_VARIABLES",
    "Measurement",
    "PAPER_REFERENCES",
    "RECIPE",
    "Reference",
    "Row",
    "SweepTask",
    "TECHNIQUES",
    "TINYNET_STATE_LOCK",
    "Technique",
    "TechniquePoint",
    "available_techniques",
    "best_by_technique",
    "build_model",
    "check_picklable",
    "compressed_size",
    "dominates",
    "inference_time_ms",
    "load_split",
    "local_process_pool",
    "measure",
    "paper_references",
    "pareto_front",
    "plot_accuracy_vs_size",
    "point_seed",
    "register_technique",
    "run_sweep",
    "run_techniques",
    "to_csv",
    "to_markdown",
    "train_recipe",
]
