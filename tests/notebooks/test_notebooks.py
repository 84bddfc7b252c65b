"""Every lesson notebook runs top to bottom (FAST mode) and follows the anatomy.

Execution (marked ``notebook``; deselect with ``-m "not notebook"``) runs an
in-memory copy of each ``notebooks/*.ipynb`` with ``FAST=1`` on the
``python3`` kernel, in ``notebooks/``, and fails on the first cell that
raises (the notebooks assert what they claim). The committed file is never
rewritten; the executed copy is saved under pytest's ``tmp_path`` for
inspection. The structural checks read the files only and are fast:

- exactly one setup cell, the first code cell, calling ``lesson.setup``;
- the notebook ends with a "Summary" section followed by "Exercises";
- every ``### BEGIN SOLUTION`` has a matching ``### END SOLUTION`` in the
  same cell, and each exercise cell asserts its answer after the solution;
- no ``%autoreload``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [nb.stem for nb in NOTEBOOKS]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
SETUP_CALL = re.compile(r"\blesson\.setup\(")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)


def cells_of(path: Path) -> list[dict]:
    """The notebook's cells as dicts with ``cell_type`` and ``source`` (a str)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    cells = []
    for cell in nb["cells"]:
        source = cell["source"]
        if isinstance(source, list):
            source = "".join(source)
        cells.append({"cell_type": cell["cell_type"], "source": source})
    return cells


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_setup_cell_before_the_lesson(path):
    cells = cells_of(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    assert SETUP_CALL.search(code[0]["source"]), (
        f"{path.name}: the first code cell must be the setup cell calling lesson.setup(...), "
        f"got:\n{code[0]['source']}"
    )
    later = [i for i, c in enumerate(code[1:], start=2) if SETUP_CALL.search(c["source"])]
    assert not later, f"{path.name}: lesson.setup is called again in code cell(s) {later}"
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert first_code >= 1 and cells[0]["cell_type"] == "markdown", (
        f"{path.name}: the notebook must open with a markdown title cell before the setup cell"
    )
    assert cells[0]["source"].lstrip().startswith("# "), f"{path.name}: first cell is not a title"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ends_with_summary_then_exercises(path):
    headings = []
    for cell in cells_of(path):
        if cell["cell_type"] == "markdown":
            headings += [(len(h), t) for h, t in HEADING.findall(cell["source"])]
    sections = [title.lower() for level, title in headings if level <= 2]
    assert len(sections) >= 2, f"{path.name}: found sections {sections}"
    assert sections[-2].startswith("summary") and sections[-1].startswith("exercises"), (
        f"{path.name} must end with a '## Summary' section and then '## Exercises'; "
        f"its last sections are {sections[-3:]}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_solution_markers_are_balanced_and_checked(path):
    solutions = 0
    for n, cell in enumerate(cells_of(path)):
        lines = [line.strip() for line in cell["source"].splitlines()]
        markers = [line for line in lines if line in (BEGIN, END)]
        if cell["cell_type"] != "code":
            assert not markers, f"{path.name}: solution markers in a {cell['cell_type']} cell {n}"
            continue
        open_ = False
        for marker in markers:
            if marker == BEGIN:
                assert not open_, f"{path.name}: cell {n} has two BEGIN SOLUTION without an END"
                open_ = True
                solutions += 1
            else:
                assert open_, f"{path.name}: cell {n} has an END SOLUTION without a BEGIN"
                open_ = False
        assert not open_, f"{path.name}: cell {n} has a BEGIN SOLUTION without an END"
        if markers:
            last_end = max(i for i, line in enumerate(lines) if line == END)
            after = "\n".join(lines[last_end + 1 :])
            assert "assert" in after, (
                f"{path.name}: exercise cell {n} must check the answer with an assert "
                "after its last END SOLUTION"
            )
    assert solutions >= 1, f"{path.name} has no exercises with solutions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_autoreload(path):
    for cell in cells_of(path):
        assert "autoreload" not in cell["source"], f"{path.name} uses %autoreload"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_fast_mode(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(path, as_version=4)  # an in-memory copy: the file is never written
    env = dict(os.environ)
    env["FAST"] = "1"
    env.setdefault("TINYNET_COMMIT", "test")
    # The kernel imports the same tinynet as this test process (the checkout or the
    # installed wheel), whatever its working directory.
    import tinynet

    where = str(Path(tinynet.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (where, env.get("PYTHONPATH", "")) if p)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed in FAST mode:\n{error}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / path.name)


def test_the_regenerating_script_gives_the_kernel_one_blas_thread(monkeypatch):
    # threaded BLAS changes the last bits of trained weights, then masks and figures
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", root / "scripts" / "run_notebooks.py"
    )
    run_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_notebooks)
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    env = run_notebooks.kernel_env(fast=False, commit="abc1234")
    assert [env[name] for name in names] == ["1", "1", "1"]
    assert env["FAST"] == "0" and env["TINYNET_COMMIT"] == "abc1234"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a value the caller chose is kept
    assert run_notebooks.kernel_env(fast=True, commit="abc1234")["OMP_NUM_THREADS"] == "2"
