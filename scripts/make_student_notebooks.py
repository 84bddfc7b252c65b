"""Make the student notebooks: each exercise's solution replaced by a stub, checks kept.

Usage (from the repository root)::

    python scripts/make_student_notebooks.py                 # every lesson -> students/
    python scripts/make_student_notebooks.py 04 05           # some lessons, by (part of) name
    python scripts/make_student_notebooks.py --out /srv/class
    python scripts/make_student_notebooks.py --force         # also overwrite edited ones

**Where they go.** Into ``students/`` at the repository root (``--out`` to
choose another folder), one ``NN_<topic>.ipynb`` per lesson in
``notebooks/``. They are made from the committed lessons whenever you need
them and are **not committed** (add ``students/`` to ``.gitignore``).

**What changes.** The solution notebooks mark every answer in an exercise
cell between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines, followed
in the same cell by code that checks it. In the student notebook:

- each marked block (markers included) becomes, at the block's indentation::

      # Exercise 5.2 -- your answer replaces the next line; the check below reads: grad_ex
      raise NotImplementedError("Exercise 5.2: LSQ's step-size gradient by hand")

  numbered ``<lesson>.<index>``: the lesson from the file name's leading
  digits, the index counting the lesson's exercise cells from 1 (two blocks
  in one cell are one exercise). The one-line task is the bold heading that
  opens the exercise's text in the markdown before the cell, the course's
  convention ``**2. LSQ's step-size gradient by hand.**``; without one, the
  first line of that markdown's last paragraph (shortened), else "see the
  exercise above". Comments inside a solution are never used: they are
  part of the answer (lesson 5's exercise 2 works it out in one). For a
  block at the top level of the cell, the names it defines that the check
  reads are listed in the comment.
- the check (and any top-level stub) is wrapped, indented, in
  ``with lesson.exercise("5.2"):`` (``tinynet.lesson.exercise``), which
  prints ``Exercise 5.2: correct``, or ``not attempted yet`` while the stub
  is there (and lets "Run all" go on to the end), or stops with
  ``AssertionError: Exercise 5.2: not yet right: <the failed check>``;
- every output and execution count is cleared, a short note on how the
  exercises work is added after the title, everything else (the setup cell
  with its stamp, the lesson, the markdown) is kept as it is.

**Never overwriting a student's work.** Each student notebook records in its
metadata (``metadata.tinynet_student.cells_sha256``) the SHA-256 of what was
generated: the type and source of every cell, in order. Before writing, the
file already at the destination is compared with its own record:

- missing, or unedited (only run: outputs do not count): written; if the new
  text is byte for byte what is there, the file is not touched at all, so a
  second run is idempotent;
- edited (a cell's source changed, or cells added, removed or moved):
  skipped with a message; ``--force`` overwrites it (the edits are lost);
- not made by this script (no record, or not a notebook): never touched,
  even with ``--force``: move it away yourself.

Only the standard library is used; the output is nbformat 4 JSON written
the way ``nbformat.write`` writes it.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "students"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
META_KEY = "tinynet_student"
#: ``**2. LSQ's step-size gradient by hand.**``: an exercise's number and title.
HEADING = re.compile(r"\*\*\s*(\d+)\.\s+(.+?)\*\*", re.DOTALL)
TASK_CHARS = 70


@dataclass(frozen=True)
class Block:
    """One solution block: line indices of its BEGIN and END markers, and their indentation."""

    begin: int
    end: int
    indent: str


def source_of(cell: dict) -> str:
    """A cell's source as one string (notebooks store it as a list of lines or a string)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def find_blocks(lines: list[str], where: str) -> list[Block]:
    """The solution blocks of a cell's lines; ``where`` names the cell in error messages."""
    blocks, begin = [], None
    for i, line in enumerate(lines):
        marker = line.strip()
        if marker == BEGIN:
            if begin is not None:
                raise ValueError(f"{where}: line {i + 1} opens a solution inside another one")
            begin = i
        elif marker == END:
            if begin is None:
                raise ValueError(f"{where}: line {i + 1} closes a solution that was never opened")
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            blocks.append(Block(begin, i, indent))
            begin = None
    if begin is not None:
        raise ValueError(f"{where}: the solution opened on line {begin + 1} is never closed")
    return blocks


def task_of(markdown: list[str]) -> str:
    """The one-line task of an exercise from the markdown cells before it (see the docstring)."""
    text = "\n\n".join(markdown)
    headings = HEADING.findall(text)
    if headings:
        task = " ".join(headings[-1][1].split())
    else:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        task = paragraphs[-1].splitlines()[0].strip(" #*") if paragraphs else ""
    task = task.rstrip(".:").strip()
    if len(task) > TASK_CHARS:
        task = task[: TASK_CHARS - 3].rstrip() + "..."
    return task or "see the exercise above"


def python_string(text: str) -> str:
    """``text`` as a Python string literal, in double quotes when it can be."""
    return f'"{text}"' if '"' not in text and "\\" not in text else repr(text)


def stored_and_read(tree: ast.AST) -> tuple[list[str], set[str]]:
    """Names a piece of code assigns (in order of appearance) and names it reads."""
    stored, read = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read.add if isinstance(node.ctx, ast.Load) else stored.append)(node.id)
        elif isinstance(node, ast.arg):
            stored.append(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stored.append(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            stored += [(a.asname or a.name).split(".")[0] for a in node.names]
    return list(dict.fromkeys(stored)), read


def names_the_check_reads(lines: list[str], blocks: list[Block], block: Block) -> list[str]:
    """Names a top-level solution block defines that the rest of the cell reads.

    The rest is what the student sees after the block (other solutions left
    out); a name it also assigns itself (a loop variable) does not count.
    Returns ``[]`` when either part is not valid Python on its own.
    """
    inside = {i for b in blocks for i in range(b.begin, b.end + 1)}
    rest = [lines[i] for i in range(block.end + 1, len(lines)) if i not in inside]
    try:
        defined, _ = stored_and_read(ast.parse("\n".join(lines[block.begin + 1 : block.end])))
        rest_stored, rest_read = stored_and_read(ast.parse("\n".join(rest)))
    except SyntaxError:
        return []
    return [name for name in defined if name in rest_read and name not in rest_stored]


def stub(number: str, task: str, indent: str, names: list[str]) -> list[str]:
    """The lines that replace a solution block: a comment or two and the ``raise``."""
    lines = [f"{indent}# Exercise {number} -- your answer replaces the next line."]
    if names:
        lines.append(f"{indent}# The check below reads: {', '.join(names)}")
    message = python_string(f"Exercise {number}: {task}")
    return lines + [f"{indent}raise NotImplementedError({message})"]


def first_statement_from(tree: ast.Module, line: int) -> int | None:
    """Line (1-based) where the first top-level statement at or after ``line`` starts."""
    for node in tree.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if start >= line:
            return start
    return None


def indent_from(source: str, start: int, number: str) -> str:
    """Wrap lines ``start``.. (1-based) of ``source`` in ``with lesson.exercise(number):``.

    Every line is indented by four spaces except blank ones and the inner
    lines of a token that spans several lines, a triple-quoted string
    (indenting those would change the string).
    """
    in_token = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        in_token.update(range(token.start[0] + 1, token.end[0] + 1))
    lines = source.split("\n")
    wrapped = lines[: start - 1] + [f'with lesson.exercise("{number}"):']
    for n, line in enumerate(lines[start - 1 :], start=start):
        wrapped.append(line if not line.strip() or n in in_token else "    " + line)
    return "\n".join(wrapped)


def student_source(source: str, number: str, task: str, where: str) -> str:
    """An exercise cell with its solutions stubbed and its check wrapped (see the docstring)."""
    lines = source.split("\n")
    blocks = find_blocks(lines, where)
    out: list[str] = []
    top_level_stub = None  # 1-based line of the first top-level stub in ``out``
    after_last = 0
    for block in blocks:
        out += lines[after_last : block.begin]
        names = names_the_check_reads(lines, blocks, block) if not block.indent else []
        if not block.indent and top_level_stub is None:
            top_level_stub = len(out) + 1
        out += stub(number, task, block.indent, names)
        after_last = block.end + 1
    check_line = len(out) + 1
    out += lines[after_last:]
    student = "\n".join(out)
    try:
        tree = ast.parse(student)
    except SyntaxError as err:
        raise ValueError(f"{where}: the student version is not valid Python: {err}") from err
    # A top-level stub goes inside the ``with`` (its comment first); else the check does.
    start = top_level_stub or first_statement_from(tree, check_line)
    if start is None:
        return student  # nothing to check: leave the stubs as they are
    student = indent_from(student, start, number)
    ast.parse(student)  # a bug here must stop the script, not reach a student
    return student


def lesson_number(path: Path) -> str:
    """``"5"`` for ``05_quantization.ipynb``."""
    match = re.match(r"(\d+)_", path.name)
    if match is None:
        raise ValueError(
            f"{path.name}: a lesson's file name starts with its number, like 05_x.ipynb"
        )
    return str(int(match.group(1)))


def as_lines(text: str) -> list[str]:
    """A source string as the list of lines nbformat stores."""
    return text.splitlines(keepends=True)


def note_cell(source_name: str, lesson: str) -> dict:
    """The markdown cell, after the title, that says how the exercises work."""
    text = (
        f"*Student version of `{source_name}`, made by `scripts/make_student_notebooks.py`.* "
        "Run the notebook top to bottom as it is. The exercises at the end each stop at "
        f'`raise NotImplementedError("Exercise {lesson}.N: ...")`: replace that line with your '
        f"answer and run the cell. Its check prints `Exercise {lesson}.N: correct`, or "
        "`not attempted yet` while the line is there, or stops with `not yet right:` and the "
        "check that failed."
    )
    return {"cell_type": "markdown", "id": "student-version-note", "metadata": {}, "source": text}


def cells_hash(nb: dict) -> str:
    """SHA-256 of the type and source of every cell, in order (outputs and metadata ignored)."""
    cells = [[cell.get("cell_type"), source_of(cell)] for cell in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def make_student_notebook(nb: dict, path: Path) -> tuple[dict, int]:
    """The student version of the solution notebook ``nb`` read from ``path``.

    Returns the new notebook (``nb`` is not changed) and its number of exercises.
    """
    lesson = lesson_number(path)
    cells, markdown, count = [], [], 0
    for i, cell in enumerate(nb["cells"]):
        cell = {key: value for key, value in cell.items()}
        source = source_of(cell)
        if cell["cell_type"] == "markdown":
            markdown.append(source)
        elif cell["cell_type"] == "code":
            if any(line.strip() in (BEGIN, END) for line in source.split("\n")):
                count += 1
                number, where = f"{lesson}.{count}", f"{path.name}, cell {i}"
                task = task_of(markdown)
                heading = HEADING.findall("\n\n".join(markdown))
                if heading and heading[-1][0] != str(count):
                    print(f"warning: {where} is exercise {number}, its text says {heading[-1][0]}")
                source = student_source(source, number, task, where)
                markdown = []
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"] = {
                k: v for k, v in cell.get("metadata", {}).items() if k != "execution"
            }
        cell["source"] = as_lines(source)
        cells.append(cell)
    if cells and cells[0]["cell_type"] == "markdown":
        cells.insert(1, note_cell(path.name, lesson))
    student = {**nb, "cells": cells, "metadata": dict(nb.get("metadata", {}))}
    student["metadata"][META_KEY] = {
        "generated_from": f"notebooks/{path.name}",
        "generator": "scripts/make_student_notebooks.py",
        "cells_sha256": cells_hash(student),
    }
    return student, count


def notebook_text(nb: dict) -> str:
    """The file's text, as ``nbformat.write`` makes it (sorted keys, indent 1)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_student(student: dict, path: Path, force: bool = False) -> str:
    """Write ``student`` to ``path`` unless that would lose someone's work; say what was done.

    Returns one of ``"written"``, ``"updated"``, ``"unchanged"``, ``"overwritten (--force)"``,
    or a sentence starting with ``"skipped"``.
    """
    text = notebook_text(student)
    status = "written"
    if path.exists():
        try:
            on_disk = json.loads(path.read_text(encoding="utf-8"))
            record = on_disk.get("metadata", {}).get(META_KEY, {}).get("cells_sha256")
        except (ValueError, AttributeError, UnicodeDecodeError):
            record = None
        if record is None:
            return "skipped: not made by this script, never overwritten (move it away yourself)"
        if record != cells_hash(on_disk):
            if not force:
                return (
                    "skipped: edited since it was made; --force overwrites it (the edits are lost)"
                )
            status = "overwritten (--force)"
        elif path.read_text(encoding="utf-8") == text:
            return "unchanged"
        else:
            status = "updated"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # not mkstemp's 600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return status


def select(source_dir: Path, names: list[str]) -> list[Path]:
    """Lessons in ``source_dir`` whose file name contains one of ``names`` (all if empty)."""
    every = sorted(source_dir.glob(LESSON_GLOB))
    chosen = [p for p in every if not names or any(name in p.name for name in names)]
    missing = [name for name in names if not any(name in p.name for p in every)]
    if missing:
        known = ", ".join(p.name for p in every) or "none"
        raise SystemExit(f"no lesson matches {missing}; lessons in {source_dir}: {known}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only lessons whose file name contains these")
    parser.add_argument("--src", type=Path, default=SOURCE_DIR, help="the solution notebooks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: students/")
    parser.add_argument("--force", action="store_true", help="overwrite edited student notebooks")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.src.resolve():
        raise SystemExit(f"--out must not be the solution folder {args.src}")
    paths = select(args.src, args.names)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where the folder should be, or no permission
        problem = f"cannot create the --out folder {str(args.out)!r}: {err.strerror}"
        raise SystemExit(problem) from None
    if not paths:
        print(f"no lessons ({LESSON_GLOB}) in {args.src}")
    for path in paths:
        with open(path, encoding="utf-8") as f:
            student, count = make_student_notebook(json.load(f), path)
        status = write_student(student, args.out / path.name, args.force)
        print(f"{args.out / path.name}: {status} ({count} exercises)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
