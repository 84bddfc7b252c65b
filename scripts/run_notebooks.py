"""Regenerate the committed lesson notebooks: execute each one and save it in place.

Usage (from the repository root)::

    python scripts/run_notebooks.py                 # every notebook, default mode
    python scripts/run_notebooks.py 01 02_conv      # a subset, by (part of) name
    python scripts/run_notebooks.py --fast          # FAST=1: the quick CI mode
    python scripts/run_notebooks.py --dry-run       # execute, write nothing

Each notebook is executed top to bottom with ``nbclient`` on the ``python3``
kernel, in ``notebooks/`` (so relative paths work as they do for a reader),
with the environment variable ``TINYNET_COMMIT`` set to the current commit
(``git rev-parse --short HEAD``, suffixed ``-dirty`` when files other than the
notebooks are changed or untracked; ``uncommitted`` before the first commit),
which the setup cell prints. ``FAST`` is set explicitly to ``1`` or ``0`` so a
value in your shell does not leak in. The repository root is put first on
``PYTHONPATH`` so the kernel imports this checkout's ``tinynet``. The kernel
gets one BLAS thread (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` are 1 unless you set them), as ``python -m compression``
does: threaded BLAS adds in another order, which changes the last bits of
trained weights, and after a few pruning rounds that is a different mask and
a different figure. With one thread the committed outputs come back exactly
(times apart).

Commit the notebooks with outputs from a default run (no ``--fast``). The
script prints each notebook's run time; a notebook that raises stops with
the failing cell's error and leaves the committed file untouched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def current_commit() -> str:
    """Short hash of HEAD (``-dirty`` if other files changed), or ``uncommitted``."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return "uncommitted"
        # Changed or untracked files (other than the notebooks themselves) mean the
        # outputs do not come from HEAD alone.
        status = git("status", "--porcelain", "--", ".", ":!notebooks/*.ipynb")
    except OSError:
        return "unknown"
    dirty = status.returncode == 0 and status.stdout.strip() != ""
    return head.stdout.strip() + ("-dirty" if dirty else "")


def select(names: list[str]) -> list[Path]:
    """Notebooks in ``notebooks/`` whose file name contains one of ``names`` (all if empty)."""
    every = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not names:
        return every
    chosen = [nb for nb in every if any(name in nb.name for name in names)]
    missing = [name for name in names if not any(name in nb.name for nb in every)]
    if missing:
        known = ", ".join(nb.name for nb in every) or "none"
        raise SystemExit(f"no notebook matches {missing}; notebooks are: {known}")
    return chosen


def kernel_env(fast: bool, commit: str) -> dict[str, str]:
    """The kernel's environment: ours plus TINYNET_COMMIT, FAST, PYTHONPATH and one BLAS thread."""
    env = dict(os.environ)
    env["TINYNET_COMMIT"] = commit
    env["FAST"] = "1" if fast else "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")  # reproducible figures (see the module docstring)
    # Figures must be embedded in the saved notebook even if the shell says MPLBACKEND=Agg.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def execute(path: Path, env: dict[str, str], timeout: int):
    """Run one notebook in ``notebooks/`` and return the executed notebook object."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        record_timing=False,
    )
    client.execute(env=env)
    return nb


def write_in_place(nb, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then rename over."""
    import nbformat

    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # not mkstemp's 600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only notebooks whose name contains these")
    parser.add_argument("--fast", action="store_true", help="FAST=1: fewer epochs, less data")
    parser.add_argument("--dry-run", action="store_true", help="execute but do not save")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    commit = current_commit()
    env = kernel_env(args.fast, commit)
    mode = "FAST" if args.fast else "default"
    paths = select(args.names)
    if not paths:
        print(f"no notebooks in {NOTEBOOKS}")
        return 0
    print(f"running {len(paths)} notebook(s) in {mode} mode at commit {commit}")
    total = 0.0
    for path in paths:
        start = time.perf_counter()
        nb = execute(path, env, args.timeout)
        seconds = time.perf_counter() - start
        total += seconds
        if not args.dry_run:
            write_in_place(nb, path)
        print(f"{path.name:40s} {seconds:7.1f} s  ({mode} mode)", flush=True)
    print(f"{'total':40s} {total:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
