"""The sweep runner: evaluate one function over a grid of settings, serially or in parallel.

A *sweep* asks the same question at many settings (hidden width 16, 32, 64...;
later sparsity 50%, 80%, 95%...) and collects one :class:`Row` per setting:
what the compressed model costs (``nbytes``, the length of its file), what
it is worth (held-out ``accuracy``) and how fast it runs (``time_ms``: a
smaller file is not always a faster model).

::

    rows = run_sweep(evaluate_point, grid, seed=0)           # serial (notebooks)
    rows = run_sweep(evaluate_point, grid, seed=0, jobs=2)   # local process pool
    rows = run_sweep(evaluate_point, grid, executor=ex)      # any Executor

``evaluate_point(setting, seed) -> Row`` is called once per grid point.

**Seeds.** Point ``i`` gets the seed :func:`point_seed` ``(seed, i)``, whichever
process or thread runs it and in whatever order, so a serial and a parallel
run give the same rows (``time_ms`` apart, which is a measurement). The
evaluator must draw every random number from that seed (``tinynet.manual_seed``
before building a model: ``compression.sweep.task.build_model``), and, to run
on threads, hold :data:`TINYNET_STATE_LOCK` (tinynet's generator and
``no_grad`` flag are shared by the threads of a process).

**One BLAS thread per worker.** NumPy's matrix products run in a BLAS library
(OpenBLAS here) that starts one thread per core. With ``jobs=2`` on a 2-core
machine, two workers of two BLAS threads each would fight over two cores;
BLAS threads busy-wait, so oversubscription can make a run several times
*slower* than a serial one. So :func:`local_process_pool` starts workers
with ``OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1``. BLAS
reads these variables once, when it is loaded, so they must be in the
environment *before* a worker imports NumPy: the pool uses the ``spawn``
start method (a fresh interpreter; ``fork`` would copy the parent's BLAS,
threads and all) and sets the variables while workers are being started.
A side effect worth knowing: threaded BLAS adds numbers in a different
order, so a model trained with 2 BLAS threads differs in its last bits from
one trained with 1. ``python -m compression`` therefore runs with one BLAS
thread in every process, serial or not.

**Beyond one machine.** ``executor`` takes any ``concurrent.futures.Executor``
and only calls ``submit`` on it, so a class that outgrows one machine hands
it a cluster without changing this code (neither is a dependency of tinynet):

* Dask: ``from distributed import Client; client = Client("scheduler:8786")``,
  then ``run_sweep(f, grid, executor=client.get_executor())``. Start the
  workers with one thread each (``dask worker ... --nthreads 1``) and the BLAS
  variables above set to 1.
* Ray ships no ``Executor`` class (ray-project/ray issue 29456), but one is
  four lines: a subclass of ``concurrent.futures.Executor`` whose
  ``submit(self, fn, /, *args, **kwargs)`` returns
  ``ray.remote(fn).remote(*args, **kwargs).future()``.

Every worker needs ``tinynet`` installed and ``evaluate_point`` importable:
a function defined at the top level of a module (not a lambda, a closure or
a notebook cell), or an instance of such a class.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Environment variables that set the number of BLAS threads (OpenBLAS, MKL, OpenMP builds).
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: tinynet keeps two pieces of state per *process*: the global random generator
#: (``manual_seed``) and the gradient mode (``no_grad``). Threads share them: a thread that
#: evaluates under ``no_grad`` switches off caching for a thread that is training, and two
#: threads seeding and building models interleave their draws. So an evaluator that trains
#: holds this lock for a whole point (``TechniquePoint`` does): with a ThreadPoolExecutor
#: points are then correct, but run one at a time; in a process pool (one thread per
#: worker) or serially the lock is never contended and costs nothing.
TINYNET_STATE_LOCK = threading.RLock()


@dataclass(frozen=True)
class Row:
    """One grid point of a sweep: a compressed model, measured.

    Attributes
    ----------
    technique : str
        Which technique produced the model (``"dense"``, ``"width"``...).
    setting : str
        The grid setting, as the technique labels it (``"784-64-10"``).
    nbytes : int
        Length in bytes of the model's compressed file
        (``compression.storage.save_compressed``), header included.
    accuracy : float
        Held-out accuracy, a fraction in [0, 1].
    time_ms : float
        Median wall-clock time of one forward pass over a fixed batch, in
        milliseconds (see ``compression.sweep.measure``). A measurement: the
        only field that differs between two runs of the same sweep.
    extra : dict of str -> number
        Further deterministic metrics (``parameters``, ``ratio``,
        ``val_accuracy``...). Wall-clock times never go here.
    artifact : str
        File name of the kept compressed model (``""`` when not kept).
    index, seed : int
        Position in the grid and the seed it was evaluated with (filled in
        by :func:`run_sweep`).
    """

    technique: str
    setting: str
    nbytes: int
    accuracy: float
    time_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    artifact: str = ""
    index: int = -1
    seed: int = -1

    def without_time(self) -> Row:
        """The same row with ``time_ms = 0``: what must match between two runs."""
        return replace(self, time_ms=0.0)


def point_seed(seed: int, index: int) -> int:
    """The seed of grid point ``index`` in a sweep seeded with ``seed``.

    ``numpy.random.SeedSequence([seed, index])`` mixes the two numbers into
    a well-spread 32-bit seed, so neighbouring points (and neighbouring
    sweep seeds) get unrelated random streams; ``seed * 1000 + index``
    would make sweep 0's point 1000 collide with sweep 1's point 0.

    >>> point_seed(0, 0) == point_seed(0, 0) != point_seed(0, 1)
    True
    """
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _one_blas_thread() -> None:
    """Worker initializer: one BLAS thread for anything loaded from now on."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"


@contextlib.contextmanager
def local_process_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` of ``jobs`` workers, each with ONE BLAS thread.

    The BLAS variables are set in this process's environment while the pool
    is open (workers may be started lazily, on the first ``submit``) and
    restored afterwards; workers are started with ``spawn`` so their BLAS
    reads them (see the module docstring for why).

    >>> with local_process_pool(2) as pool:            # doctest: +SKIP
    ...     rows = run_sweep(f, grid, executor=pool)
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_one_blas_thread,
        ) as pool:
            yield pool
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_picklable(evaluate_point: Callable[..., Any]) -> None:
    """Raise ``TypeError`` unless a worker process can receive ``evaluate_point``.

    A process pool sends the function to its workers by *name*
    (``module.qualname``); the worker imports the module and looks it up.
    Lambdas, closures (functions defined inside functions) and anything
    defined in a notebook cell or an interactive session have no importable
    name.
    """
    owner = evaluate_point if hasattr(evaluate_point, "__qualname__") else type(evaluate_point)
    name = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', '?')}"
    advice = (
        "define it at the top level of an importable module (or make it an instance of a "
        "top-level class), or run serially (executor=None, jobs=1), which needs no pickling"
    )
    try:
        pickle.dumps(evaluate_point)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise TypeError(
            f"evaluate_point {name} cannot be sent to worker processes ({err}): {advice}"
        ) from None
    main = sys.modules.get("__main__")
    if getattr(owner, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise TypeError(
            f"evaluate_point {name} is defined in a notebook or interactive session, which "
            f"worker processes cannot import: {advice}"
        )


class _NoProgress:
    """Stands in for a tqdm bar when progress is off (and tqdm is not even imported)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm  # a widget in notebooks, text in a terminal

    return tqdm(total=total, desc=desc, unit="point", dynamic_ncols=True)


def _checked(row: Any, index: int, seed: int, setting: Any) -> Row:
    if not isinstance(row, Row):
        raise TypeError(
            f"evaluate_point must return a compression.sweep.Row, got {type(row).__name__} "
            f"for grid point {index} (setting {setting!r})"
        )
    return replace(row, index=index, seed=seed)


def run_sweep(
    evaluate_point: Callable[[Any, int], Row],
    grid: Sequence[Any],
    *,
    seed: int = 0,
    executor: Executor | None = None,
    jobs: int = 1,
    progress: bool = True,
    desc: str = "sweep",
) -> list[Row]:
    """Evaluate ``evaluate_point(setting, point_seed(seed, i))`` for every grid point.

    Parameters
    ----------
    evaluate_point : callable ``(setting, seed) -> Row``
        Builds, compresses and measures one model. Must use only ``seed``
        for randomness. For process pools it must be picklable
        (:func:`check_picklable`).
    grid : sequence
        The settings, in order; point ``i`` is ``grid[i]``.
    seed : int, default 0
        The sweep's seed; point ``i`` gets :func:`point_seed` ``(seed, i)``.
    executor : concurrent.futures.Executor, optional
        Where to run the points (only ``submit`` is used). Default: serially
        in this process, or a :func:`local_process_pool` when ``jobs > 1``.
    jobs : int, default 1
        Workers of a :func:`local_process_pool` when ``executor`` is None;
        1 runs serially. Give either ``executor`` or ``jobs > 1``, not both.
    progress : bool, default True
        A ``tqdm`` bar counting finished points.
    desc : str
        The bar's label.

    Returns
    -------
    list of Row
        In grid order (``row.index == i``), whatever order points finished in.

    Raises
    ------
    ValueError
        For ``jobs < 1`` or both ``executor`` and ``jobs > 1``.
    TypeError
        When a process pool cannot receive ``evaluate_point``, or it does not
        return a :class:`Row`.
    RuntimeError
        When a point raises; names the point and chains the original error.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if executor is not None and jobs != 1:
        raise ValueError(f"pass executor= or jobs= (a local process pool), not both (jobs={jobs})")
    grid = list(grid)
    seeds = [point_seed(seed, i) for i in range(len(grid))]
    if executor is None and jobs > 1:
        with local_process_pool(jobs) as pool:
            return run_sweep(
                evaluate_point, grid, seed=seed, executor=pool, progress=progress, desc=desc
            )
    rows: list[Row | None] = [None] * len(grid)
    with _progress(len(grid), desc, progress) as bar:
        if executor is None:  # serial: the simplest loop, in this process
            for i, (setting, s) in enumerate(zip(grid, seeds)):
                rows[i] = _checked(_call(evaluate_point, setting, s, i), i, s, setting)
                bar.update(1)
            return rows  # type: ignore[return-value]
        if isinstance(executor, ProcessPoolExecutor):
            check_picklable(evaluate_point)
        futures: dict[Future, int] = {
            executor.submit(evaluate_point, setting, s): i
            for i, (setting, s) in enumerate(zip(grid, seeds))
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    row = future.result()
                except Exception as err:
                    raise _point_failed(i, grid[i], seeds[i], err) from err
                rows[i] = _checked(row, i, seeds[i], grid[i])
                bar.update(1)
        finally:
            for future in futures:
                future.cancel()  # after a failure, do not start the remaining points
    return rows  # type: ignore[return-value]


def _call(evaluate_point: Callable[[Any, int], Row], setting: Any, seed: int, index: int) -> Row:
    try:
        return evaluate_point(setting, seed)
    except Exception as err:
        raise _point_failed(index, setting, seed, err) from err


def _point_failed(index: int, setting: Any, seed: int, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"grid point {index} (setting {setting!r}, seed {seed}) failed: {type(err).__name__}: {err}"
    )
