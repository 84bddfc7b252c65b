"""The one setup cell of every lesson notebook.

Every notebook in ``notebooks/`` starts with the same cell::

    from tinynet import lesson
    cfg = lesson.setup(seed=0)

which

1. prints a **stamp**: the commit the notebook ran at, the date, and the
   Python and NumPy versions, so that the outputs committed with a notebook
   say where they came from;
2. seeds ``tinynet.manual_seed`` (default initialisation, ``Dropout``) and
   NumPy's legacy global generator, so every run draws the same numbers;
3. reads the ``FAST`` environment variable: ``FAST=1`` runs the lesson with
   fewer epochs and less data (about 30 seconds, what CI does), anything
   else the full lesson;
4. sets the course's matplotlib defaults (small figures, a light grid).

The returned :class:`LessonConfig` has ``cfg.fast`` and
``cfg.pick(default, fast)``, which chooses a number for the current mode::

    epochs = cfg.pick(10, fast=2)

Nothing here can fail because git is missing: the commit comes from the
``TINYNET_COMMIT`` environment variable (``scripts/run_notebooks.py`` sets
it), else from ``git rev-parse --short HEAD``, else it is ``"unknown"``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tinynet.random import manual_seed

T = TypeVar("T")

#: Values of ``FAST`` that switch fast mode on / off (compared lower-cased, stripped).
TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("", "0", "false", "no", "off")

#: The course's matplotlib look: small figures, a light grid, no top/right frame.
MPL_DEFAULTS: dict[str, Any] = {
    "figure.figsize": (6.0, 3.8),
    "figure.dpi": 80,
    "savefig.dpi": 80,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
    "image.cmap": "gray",
}


@dataclass(frozen=True)
class LessonConfig:
    """What :func:`setup` decided for this run of a notebook.

    Attributes
    ----------
    fast : bool
        True when the environment variable ``FAST`` asked for a quick run.
    seed : int
        The seed given to ``tinynet.manual_seed`` and ``numpy.random.seed``.
    commit : str
        The commit the notebook is running at (``"unknown"`` if not known).
    stamp : str
        The line :func:`setup` printed.
    """

    fast: bool
    seed: int
    commit: str
    stamp: str

    def pick(self, default: T, fast: T) -> T:
        """Return ``fast`` in fast mode and ``default`` otherwise.

        >>> LessonConfig(fast=True, seed=0, commit="x", stamp="").pick(10, fast=2)
        2
        """
        return fast if self.fast else default

    @property
    def mode(self) -> str:
        """``"FAST"`` or ``"default"``, for printing."""
        return "FAST" if self.fast else "default"


def parse_fast(value: str | None) -> bool:
    """Interpret the ``FAST`` environment variable.

    Parameters
    ----------
    value : str or None
        The variable's value (``None`` when it is not set).

    Returns
    -------
    bool
        True for ``"1"``, ``"true"``, ``"yes"``, ``"on"`` (any case);
        False for unset, ``""``, ``"0"``, ``"false"``, ``"no"``, ``"off"``.

    Raises
    ------
    ValueError
        For anything else, so a typo (``FAST=ture``) is not silently the
        slow mode.
    """
    if value is None:
        return False
    v = value.strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    raise ValueError(
        f"FAST must be one of {TRUE_VALUES} (fast mode) or {FALSE_VALUES} "
        f"(default mode), got {value!r}"
    )


def _git_short_head(cwd: Path) -> str | None:
    """``git rev-parse --short HEAD`` in ``cwd``, or None on any failure."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    head = result.stdout.strip()
    return head if result.returncode == 0 and head else None


def commit_id() -> str:
    """The commit to stamp: ``$TINYNET_COMMIT``, else git's short HEAD, else ``"unknown"``.

    Git is asked in the directory holding the ``tinynet`` package first (a
    checkout of the repository), then in the current directory. Never raises.
    """
    env = os.environ.get("TINYNET_COMMIT", "").strip()
    if env:
        return env
    package_root = Path(__file__).resolve().parent.parent
    for where in (package_root, Path.cwd()):
        head = _git_short_head(where)
        if head is not None:
            return head
    return "unknown"


def make_stamp(fast: bool, commit: str | None = None) -> str:
    """One line saying where and how a notebook ran.

    ``commit ... | date ... | python ... | numpy ... | mode``. Never raises.
    """
    if commit is None:
        commit = commit_id()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "FAST=1 (fast mode)" if fast else "default mode"
    return (
        f"tinynet lesson | commit {commit} | {now} | python {platform.python_version()} "
        f"| numpy {np.__version__} | {mode}"
    )


def set_plot_defaults() -> None:
    """Apply :data:`MPL_DEFAULTS` (does nothing if matplotlib is missing)."""
    try:
        import matplotlib as mpl
    except ImportError:  # the lessons plot, but the stamp must never fail
        return
    mpl.rcParams.update(MPL_DEFAULTS)


def setup(seed: int = 0, fast: bool | None = None) -> LessonConfig:
    """The one setup cell: stamp, seeds, fast mode, plot defaults.

    Parameters
    ----------
    seed : int
        Seeds ``tinynet.manual_seed`` and ``numpy.random.seed``.
    fast : bool, optional
        Force the mode; by default it is read from the environment
        variable ``FAST`` with :func:`parse_fast`.

    Returns
    -------
    LessonConfig
        ``cfg.fast``, ``cfg.pick(default, fast)``, ``cfg.commit``, ``cfg.stamp``.
    """
    if fast is None:
        fast = parse_fast(os.environ.get("FAST"))
    commit = commit_id()
    stamp = make_stamp(fast, commit)
    print(stamp)
    manual_seed(seed)
    # Legacy global generator, for readers who call np.random.rand(...) directly.
    np.random.seed(seed)  # noqa: NPY002
    set_plot_defaults()
    return LessonConfig(fast=bool(fast), seed=seed, commit=commit, stamp=stamp)
