"""The student notebooks of ``scripts/make_student_notebooks.py``: no answers, stubs, checks.

Fast: the lessons themselves are never executed here (``test_notebooks.py``
runs the solution notebooks in FAST mode, which is the test that the
solutions pass). Instead:

- every lesson's student version is made in memory and read line by line:
  no marker and no line of any solution survives, outputs are cleared, it
  is valid nbformat 4, each exercise's stubs raise ``NotImplementedError``
  with its number when run, and each top-level check says "not attempted";
- a small synthetic lesson goes through the whole cycle, cell by cell in
  one namespace as "Run all" does: the solution passes, the unanswered
  student version reaches the end, a right answer says "correct", a wrong
  one "not yet right"; once also in a real kernel (marked ``notebook``);
- the generator writes, leaves unedited files alone or refreshes them,
  refuses to overwrite an edited notebook unless ``--force``, and never
  touches a file it did not make.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib.util
import io
import json
import linecache
import os
import re
import sys
from pathlib import Path

import pytest

from tinynet import lesson

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [nb.stem for nb in NOTEBOOKS]


def load_generator():
    """Import ``scripts/make_student_notebooks.py`` (a script, not a package module)."""
    name = "make_student_notebooks"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[name]


gen = load_generator()


def read(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def student_of(path: Path) -> dict:
    return gen.make_student_notebook(read(path), path)[0]


def solution_lines(source: str) -> list[str]:
    """The stripped lines inside the solution blocks of a cell."""
    lines = source.split("\n")
    return [
        lines[i].strip()
        for block in gen.find_blocks(lines, "test")
        for i in range(block.begin + 1, block.end)
    ]


def exercise_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if "lesson.exercise(" in gen.source_of(c)]


def stubs_of(source: str) -> list[ast.Raise]:
    """Every ``raise NotImplementedError(...)`` statement in a cell."""
    return [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", None) == "NotImplementedError"
    ]


# --- every lesson ----------------------------------------------------------------------


def test_there_are_lessons_with_exercises():
    assert len(NOTEBOOKS) >= 7
    assert all(gen.make_student_notebook(read(p), p)[1] >= 1 for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_solution_survives(path):
    solution, student = read(path), student_of(path)
    text = gen.notebook_text(student)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    # Lines the lesson shows outside its solutions may appear; no other solution line may.
    shown = set()
    for cell in solution["cells"]:
        source = gen.source_of(cell)
        hidden = set(solution_lines(source)) if cell["cell_type"] == "code" else set()
        shown.update(line.strip() for line in source.split("\n") if line.strip() not in hidden)
    student_lines = {
        line.strip() for c in student["cells"] for line in gen.source_of(c).split("\n")
    }
    for cell in solution["cells"]:
        for line in solution_lines(gen.source_of(cell)):
            if re.search(r"\w", line) and line not in shown:
                assert line not in student_lines, f"{path.name}: the solution line {line!r} leaked"
    for cell in student["cells"]:
        assert not cell.get("outputs") and cell.get("execution_count") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_notebook_is_valid_nbformat_4(path):
    nbformat = pytest.importorskip("nbformat")
    student = student_of(path)
    nb = nbformat.reads(gen.notebook_text(student), as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    setup = [c for c in nb.cells if c.cell_type == "code"][0]
    assert "lesson.setup(" in setup.source  # the stamp cell stays, first
    assert nb.metadata["tinynet_student"]["cells_sha256"] == gen.cells_hash(student)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_stub_raises_its_exercise_number(path, capsys):
    solution, student = read(path), student_of(path)
    marked = [c for c in solution["cells"] if "### BEGIN SOLUTION" in gen.source_of(c)]
    cells = exercise_cells(student)
    assert len(cells) == len(marked)
    by_id = {c["id"]: c for c in solution["cells"]}
    headings = []
    for k, cell in enumerate(cells, start=1):
        number = f"{int(path.name[:2])}.{k}"
        source = gen.source_of(cell)
        blocks = gen.find_blocks(gen.source_of(by_id[cell["id"]]).split("\n"), path.name)
        stubs = stubs_of(source)
        assert len(stubs) == len(blocks), f"{path.name} exercise {number}"
        for node in stubs:  # run just the stub statement
            with pytest.raises(NotImplementedError, match=rf"^Exercise {re.escape(number)}: \S"):
                exec(compile(ast.Module([node], []), path.name, "exec"), {})
        # A top-level stub is the first statement of the check: run the ``with`` block alone.
        (check,) = [n for n in ast.parse(source).body if isinstance(n, ast.With)]
        assert ast.unparse(check.items[0]) == f"lesson.exercise({number!r})"
        if isinstance(check.body[0], ast.Raise):
            exec(compile(ast.Module([check], []), path.name, "exec"), {"lesson": lesson})
            assert capsys.readouterr().out.startswith(f"Exercise {number}: not attempted yet")
        headings.append(stubs[0].exc.args[0].value)
    # The one-line tasks come from the exercises' bold headings, numbered as the index.
    titles = re.findall(r"\*\*(\d+)\.\s", "\n".join(gen.source_of(c) for c in solution["cells"]))
    assert titles[-len(cells) :] == [str(k) for k in range(1, len(cells) + 1)]
    assert "see the exercise above" not in " ".join(headings)


def type_the_solution(student_source: str, solution_source: str) -> str:
    """The student cell with each stub replaced by the solution's lines, re-indented."""
    lines = solution_source.split("\n")
    answers = [
        [line[len(b.indent) :] for line in lines[b.begin + 1 : b.end]]
        for b in gen.find_blocks(lines, "test")
    ]
    out: list[str] = []
    for line in student_source.split("\n"):
        if re.match(r"""\s*raise NotImplementedError\(["']Exercise""", line):
            indent = line[: len(line) - len(line.lstrip())]
            while out and out[-1].lstrip().startswith(("# Exercise", "# The check below")):
                out.pop()
            out += [indent + a if a.strip() else a for a in answers.pop(0)]
        else:
            out.append(line)
    assert not answers
    return "\n".join(out)


def without_exercise_blocks(tree: ast.Module) -> str:
    """``ast.dump`` of a cell with ``with lesson.exercise(...):`` replaced by its body."""
    body = []
    for node in tree.body:
        is_check = isinstance(node, ast.With) and "lesson.exercise" in ast.unparse(node.items[0])
        body += node.body if is_check else [node]
    return ast.dump(ast.Module(body, []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_typing_the_solution_into_the_stubs_gives_the_solution_back(path):
    """A student who writes the solution runs exactly the solution notebook's code and checks."""
    solution, student = read(path), student_of(path)
    by_id = {c["id"]: gen.source_of(c) for c in solution["cells"]}
    for cell in exercise_cells(student):
        solved = type_the_solution(gen.source_of(cell), by_id[cell["id"]])
        assert without_exercise_blocks(ast.parse(solved)) == ast.dump(
            ast.parse(by_id[cell["id"]])
        ), f"{path.name}: cell {cell['id']}"


# --- a small lesson, through the whole cycle -------------------------------------------


def md(text: str, n: int) -> dict:
    return {"cell_type": "markdown", "id": f"m{n}", "metadata": {}, "source": text}


def code(text: str, n: int) -> dict:
    cell = {"cell_type": "code", "id": f"c{n}", "metadata": {}, "source": text}
    cell.update(
        execution_count=3, outputs=[{"output_type": "stream", "name": "stdout", "text": "x"}]
    )
    return cell


EX1 = """def square(x):
    y = x  # runs before the stub
    ### BEGIN SOLUTION
    return y * y
    ### END SOLUTION


assert square(3) == 9
print("square is right")"""

EX2 = '''base = 10


def cube(x):
    ### BEGIN SOLUTION
    return x**3
    ### END SOLUTION


### BEGIN SOLUTION
total = cube(2) + base  # 8 + 10
### END SOLUTION
note = """a string
spanning lines"""
assert note == "a string\\nspanning lines"
assert total == 18'''

EX3 = """### BEGIN SOLUTION
# the answer is forty-two, because six times seven
answer = 6 * 7
### END SOLUTION
assert answer == 42"""


def tiny_lesson() -> dict:
    cells = [
        md("# Lesson 9: a tiny test lesson", 0),
        code("from tinynet import lesson\n\ncfg = lesson.setup(seed=0)", 1),
        md("## Summary\n\n- squares.\n\n## Exercises\n\n**1. Squares.** Write `square`.", 2),
        code(EX1, 3),
        md("**2. Two answers in one cell.** Write `cube`, then\nuse it.", 4),
        code(EX2, 5),
        md("No heading here.\n\nCompute the answer to everything", 6),
        code(EX3, 7),
        md("The end.", 8),
        code('finished = True\nprint("end of the lesson")', 9),
    ]
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


TINY = Path("09_tiny.ipynb")


def run_all(nb: dict) -> tuple[dict, str]:
    """Every code cell in order in one namespace, like Jupyter's "Run all"; stops at an error."""
    namespace: dict = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for n, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                source, filename = gen.source_of(cell), f"<cell {n}>"
                linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
                exec(compile(source, filename, "exec"), namespace)
    return namespace, out.getvalue()


@pytest.fixture
def quiet_setup(monkeypatch):
    monkeypatch.setenv("TINYNET_COMMIT", "test")
    mpl = pytest.importorskip("matplotlib")
    with mpl.rc_context():
        yield


def answer(student: dict, cell_id: str, stub_line: str, replacement: str) -> dict:
    """A copy of ``student`` where the line ``stub_line`` of one cell is replaced."""
    nb = copy.deepcopy(student)
    cell = next(c for c in nb["cells"] if c["id"] == cell_id)
    source = gen.source_of(cell)
    assert source.count(stub_line) == 1, source
    cell["source"] = source.replace(stub_line, replacement)
    return nb


def test_the_solution_lesson_passes(quiet_setup):
    namespace, out = run_all(tiny_lesson())
    assert namespace["finished"] and "square is right" in out


def test_student_lesson_runs_to_the_end_with_nothing_answered(quiet_setup):
    student, count = gen.make_student_notebook(tiny_lesson(), TINY)
    assert count == 3
    namespace, out = run_all(student)
    assert namespace["finished"]  # "Run all" reaches the last cell
    for number in ("9.1", "9.2", "9.3"):
        assert f"Exercise {number}: not attempted yet" in out
    assert "correct" not in out and "square is right" not in out
    text = "\n".join(gen.source_of(c) for c in student["cells"])
    assert "forty-two" not in text and "6 * 7" not in text and "y * y" not in text
    # The one-line tasks: the bold heading, else the last paragraph's first line.
    assert 'NotImplementedError("Exercise 9.1: Squares")' in text
    assert 'NotImplementedError("Exercise 9.2: Two answers in one cell")' in text
    assert 'NotImplementedError("Exercise 9.3: Compute the answer to everything")' in text
    assert "# The check below reads: total" in text


def test_a_right_answer_is_correct_and_a_wrong_one_is_not(quiet_setup):
    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    stub = '    raise NotImplementedError("Exercise 9.1: Squares")'
    right = answer(student, "c3", stub, "    return y * y")
    namespace, out = run_all(right)
    assert "square is right\nExercise 9.1: correct" in out and namespace["finished"]

    wrong = answer(student, "c3", stub, "    return 2 * y")
    with pytest.raises(
        AssertionError, match=r"^Exercise 9\.1: not yet right: assert square\(3\) == 9$"
    ):
        run_all(wrong)

    # Exercise 9.2: cube answered, total not yet: the cell still says "not attempted".
    cube = answer(
        student,
        "c5",
        '    raise NotImplementedError("Exercise 9.2: Two answers in one cell")\n\n\n',
        "    return x**3\n\n\n",
    )
    assert "Exercise 9.2: not attempted yet" in run_all(cube)[1]
    both = answer(
        cube,
        "c5",
        '    raise NotImplementedError("Exercise 9.2: Two answers in one cell")',
        "    total = cube(2) + base",
    )
    assert "Exercise 9.2: correct" in run_all(both)[1]


@pytest.mark.notebook
def test_student_lesson_in_a_real_kernel(tmp_path, monkeypatch):
    """What a student sees after "Run all" in Jupyter on the unanswered tiny lesson."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import tinynet

    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    path = tmp_path / TINY.name
    assert gen.write_student(student, path) == "written"
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, FAST="1", TINYNET_COMMIT="test", MPLBACKEND="Agg")
    where = str(Path(tinynet.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (where, env.get("PYTHONPATH", "")) if p)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)  # raises if any cell fails
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "Exercise 9.1: not attempted yet" in printed and "end of the lesson" in printed


# --- never overwrite a student's work --------------------------------------------------


def test_write_then_rewrite_is_idempotent(tmp_path):
    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    path = tmp_path / "sub" / TINY.name
    assert gen.write_student(student, path) == "written"
    text, mtime = path.read_text(encoding="utf-8"), path.stat().st_mtime_ns
    again, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    assert gen.write_student(again, path) == "unchanged"
    assert path.read_text(encoding="utf-8") == text and path.stat().st_mtime_ns == mtime


def test_an_unedited_notebook_is_overwritten(tmp_path):
    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    path = tmp_path / TINY.name
    gen.write_student(student, path)
    ran = read(path)  # the student only ran it: outputs do not count as edits
    ran["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "stamp"}]
    ran["metadata"]["language_info"] = {"name": "python"}
    path.write_text(json.dumps(ran), encoding="utf-8")
    changed = tiny_lesson()  # the teacher changed the lesson
    changed["cells"][8]["source"] = "The end, revised."
    new, _ = gen.make_student_notebook(changed, TINY)
    assert gen.write_student(new, path) == "updated"
    assert path.read_text(encoding="utf-8") == gen.notebook_text(new)


def test_an_edited_notebook_is_kept_unless_forced(tmp_path, capsys):
    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    path = tmp_path / TINY.name
    gen.write_student(student, path)
    edited = read(path)
    cell = next(c for c in edited["cells"] if c["id"] == "c3")
    cell["source"] = gen.source_of(cell).replace("raise NotImplementedError", "return y * y  #")
    path.write_text(json.dumps(edited), encoding="utf-8")
    work = path.read_text(encoding="utf-8")

    status = gen.write_student(student, path)
    assert status.startswith("skipped") and "--force" in status
    assert path.read_text(encoding="utf-8") == work

    # The same through the command line, on a folder of lessons.
    src = tmp_path / "src"
    src.mkdir()
    (src / TINY.name).write_text(json.dumps(tiny_lesson()), encoding="utf-8")
    assert gen.main(["--src", str(src), "--out", str(tmp_path)]) == 0
    assert "skipped: edited" in capsys.readouterr().out
    assert path.read_text(encoding="utf-8") == work
    assert gen.main(["--src", str(src), "--out", str(tmp_path), "--force"]) == 0
    assert "overwritten (--force)" in capsys.readouterr().out
    assert path.read_text(encoding="utf-8") == gen.notebook_text(student)


@pytest.mark.parametrize(
    "content",
    [json.dumps(tiny_lesson()), "not json at all", json.dumps([1, 2]), json.dumps({"cells": []})],
    ids=["solution-notebook", "not-json", "json-list", "no-record"],
)
def test_a_file_it_did_not_make_is_never_touched(tmp_path, content):
    path = tmp_path / TINY.name
    path.write_text(content, encoding="utf-8")
    student, _ = gen.make_student_notebook(tiny_lesson(), TINY)
    for force in (False, True):
        status = gen.write_student(student, path, force=force)
        assert status.startswith("skipped: not made by this script")
        assert path.read_text(encoding="utf-8") == content


def test_out_must_not_be_the_solution_folder(tmp_path):
    with pytest.raises(SystemExit, match="must not be the solution folder"):
        gen.main(["--src", str(tmp_path), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no lesson matches"):
        gen.main(["--src", str(tmp_path), "--out", str(tmp_path / "s"), "99"])
    (tmp_path / "a_file").write_text("")
    for out in (tmp_path / "a_file", tmp_path / "a_file" / "students"):
        with pytest.raises(SystemExit, match="cannot create the --out folder"):
            gen.main(["--src", str(tmp_path), "--out", str(out)])


@pytest.mark.parametrize(
    "source, error",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "never opened"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unbalanced_markers_name_the_cell(source, error):
    nb = tiny_lesson()
    nb["cells"][3]["source"] = source
    with pytest.raises(ValueError, match=rf"^09_tiny\.ipynb, cell 3: .*{error}"):
        gen.make_student_notebook(nb, TINY)
