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

The exercises' checks
---------------------
In the student notebooks made by ``scripts/make_student_notebooks.py``, each
answer is a stub that raises ``NotImplementedError("Exercise 5.2: ...")``
and each exercise's check runs inside :func:`exercise`::

    with lesson.exercise("5.2"):
        raise NotImplementedError("Exercise 5.2: LSQ's step-size gradient by hand")
        assert np.allclose(grad_ex, lsq_step_gradient(v_ex, 0.5, 2, 1))

which prints ``Exercise 5.2: correct`` when every check passes, prints
``Exercise 5.2: not attempted yet ...`` (and lets the notebook go on) while a
stub is still there, and re-raises a failed check as
``AssertionError: Exercise 5.2: not yet right: <the check that failed>``.
"""

from __future__ import annotations

import ast
import datetime
import inspect
import linecache
import os
import platform
import re
import subprocess
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
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


# The exercises' checks (see "The exercises' checks" in the module docstring).

#: An exercise number: lesson, a dot, the exercise's index within the lesson ("5.2").
EXERCISE_NUMBER = re.compile(r"^\d+\.\d+$")
#: The message of a stub left by ``scripts/make_student_notebooks.py``: "Exercise 5.2: ...".
STUB_MESSAGE = re.compile(r"^Exercise (\d+\.\d+):")


def stub_number(error: BaseException) -> str | None:
    """The exercise number of an unanswered stub, or None for any other error.

    A stub is a ``NotImplementedError`` whose message starts with
    ``"Exercise <lesson>.<index>:"``; a ``NotImplementedError`` raised by
    tinynet itself (with another message) is a real error, not a stub.
    """
    if not isinstance(error, NotImplementedError) or not error.args:
        return None
    match = STUB_MESSAGE.match(str(error.args[0]))
    return match.group(1) if match else None


def failed_check(tb: TracebackType | None, frame: FrameType | None) -> str:
    """The source of the statement in ``frame`` that the exception ``tb`` came through.

    That is the check as the student reads it in the cell (``assert ...``,
    or the ``gradcheck(...)`` call whose assertion failed deeper down), with
    a multi-line statement joined into one line. Falls back to the deepest
    line of the traceback, then to ``"line <n>"`` when no source is known.
    """
    frames = list(traceback.walk_tb(tb))
    if not frames:
        return "unknown line"
    summaries = traceback.extract_tb(tb)
    chosen = summaries[-1]
    for (f, _), summary in zip(frames, summaries):
        if f is frame:
            chosen = summary
    first = chosen.lineno or 0
    last = getattr(chosen, "end_lineno", None)  # Python 3.11+
    if last is None:  # Python 3.10: the statement's last line from the parsed source
        last = statement_end(chosen.filename, first)
    lines = [linecache.getline(chosen.filename, n).strip() for n in range(first, last + 1)]
    text = " ".join(line for line in lines if line)
    return text or f"line {first}"


def statement_end(filename: str, first: int) -> int:
    """The last line of the shortest statement that starts on line ``first`` of ``filename``.

    Python 3.10's tracebacks give only the line a statement starts on; the
    parsed source (``ast`` nodes carry ``end_lineno``) gives where it ends.
    ``first`` itself when the source is unknown or does not parse.
    """
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return first
    ends = [
        node.end_lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and node.lineno == first and node.end_lineno
    ]
    return min(ends, default=first)


class ExerciseCheck:
    """The context manager returned by :func:`exercise`; see there."""

    def __init__(self, number: str) -> None:
        if not isinstance(number, str) or not EXERCISE_NUMBER.match(number):
            raise ValueError(
                f'an exercise number is "<lesson>.<index>" as a string, like "5.2"; got {number!r}'
            )
        self.number = number
        self._frame: FrameType | None = None

    def __enter__(self) -> ExerciseCheck:
        current = inspect.currentframe()
        self._frame = current.f_back if current is not None else None  # the cell's frame
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        frame, self._frame = self._frame, None  # do not keep the cell's frame alive
        name = f"Exercise {self.number}"
        if error is None:
            print(f"{name}: correct")
            return False
        stub = stub_number(error)
        if stub == self.number:
            print(f"{name}: not attempted yet (replace the `raise NotImplementedError` line)")
            return True  # swallowed: "Run all" goes on to the next exercise
        if stub is not None:
            print(f"{name}: not attempted yet (it needs exercise {stub} first)")
            return True
        if isinstance(error, AssertionError):
            # Rewrite the message in place: the traceback still points at the failing line.
            detail = str(error)
            message = f"{name}: not yet right: {failed_check(tb, frame)}"
            error.args = (f"{message}\n{detail}" if detail else message,)
            return False
        if isinstance(error, Exception):
            print(f"{name}: your code raised {type(error).__name__} (the traceback follows)")
        return False  # any other error propagates unchanged


def exercise(number: str) -> ExerciseCheck:
    """Run an exercise's check and say whether the answer is right.

    Parameters
    ----------
    number : str
        ``"<lesson>.<index>"``, e.g. ``"5.2"`` for the second exercise of lesson 5.

    Returns
    -------
    ExerciseCheck
        A context manager. When its block

        - finishes: prints ``Exercise 5.2: correct``;
        - raises the stub's ``NotImplementedError("Exercise 5.2: ...")``: prints
          ``Exercise 5.2: not attempted yet ...`` and **swallows** it, so that
          "Run all" on a student notebook reaches the end (a stub of another
          exercise, say 5.1, gives ``not attempted yet (it needs exercise 5.1
          first)``);
        - raises an ``AssertionError`` (a failed ``assert``, or a
          ``GradcheckError``): re-raises it as ``Exercise 5.2: not yet right:
          <the check's source line>`` followed by the original message;
        - raises anything else: prints one line naming the error and lets it
          propagate unchanged, with its traceback.

    Examples
    --------
    >>> with exercise("5.2"):
    ...     assert 1 + 1 == 2
    Exercise 5.2: correct
    >>> with exercise("5.2"):
    ...     raise NotImplementedError("Exercise 5.2: a stub")
    Exercise 5.2: not attempted yet (replace the `raise NotImplementedError` line)
    """
    return ExerciseCheck(number)
