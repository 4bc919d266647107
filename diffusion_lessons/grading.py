"""Grading submitted notebooks: every exercise's checker, run on the student's own functions.

    diffusion-lessons grade submissions/*.ipynb [--timeout 600] [--csv grades.csv]

For each submission the grader

1. finds the chapter (the student edition records it in its metadata; else the file
   name, e.g. ``alice_01_markov_noising.ipynb``) and, in the chapter's lesson notebook,
   the exercises: every ``check_<exercise>(fn)`` call whose ``fn`` is defined in a
   solution cell (e.g. ``check_q_sample(my_q_sample)``);
2. executes the submission, and nothing else, top to bottom in a fresh kernel (a
   separate process, working in an empty temporary folder, with the smoke budget),
   under a time limit for the whole notebook; a cell that raises does not stop it;
3. then, in that kernel, reloads ``diffusion_lessons.exercises`` (the checkers as
   shipped, even if the submission replaced them) and runs each checker on the student's
   function, each under its own time limit;
4. reports, per exercise: passed, failed, not implemented, error, missing (no such
   function) or timeout, with the checker's message.

The submission's code never runs in the grader's own process. The kernel is an
ordinary Python process with the teacher's permissions, though: it is no sandbox
against a submission written to cheat or to do harm. Grade untrusted work inside a
container or a throwaway account.
"""

from __future__ import annotations

import ast
import copy
import csv
import json
import math
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

import nbformat
from nbformat import NotebookNode

from .book import Book, Chapter, load_book
from .runtime import kernel_env
from .student import _BEGIN_WORDS, SOLUTION_TAG

__all__ = ["STATUSES", "Exercise", "ExerciseResult", "Grade", "find_exercises", "grade_submission",
           "grades_table", "write_csv"]

STATUSES = ("passed", "failed", "not implemented", "error", "missing", "timeout")
CHECK_SECONDS = 120  # time limit for one checker, on top of the submission's own limit
_MARKER = "DIFFUSION_LESSONS_GRADE "  # prefix of the line the grading cell prints its result on


@dataclass(frozen=True)
class Exercise:
    checker: str  # a function of diffusion_lessons.exercises, e.g. "check_q_sample"
    function: str  # the student's function handed to it, e.g. "my_q_sample"

    @property
    def name(self) -> str:
        """The exercise's name, e.g. "q_sample" (book.toml's ``exercises`` use these)."""
        return self.checker.removeprefix("check_")

    def __str__(self) -> str:
        return f"{self.name} ({self.function})"


@dataclass(frozen=True)
class ExerciseResult:
    exercise: Exercise
    status: str  # one of STATUSES
    message: str  # the checker's words, or why it could not run

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Grade:
    submission: Path
    chapter: str | None  # e.g. "01_markov_noising"; None if the submission matched no chapter
    results: tuple[ExerciseResult, ...]
    cell_errors: tuple[str, ...]  # "cell 12: NameError: ..." for each cell of the submission that raised
    seconds: float  # wall time to execute and check
    note: str = ""  # e.g. that the time limit was reached

    @property
    def score(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)


# ------------------------------------------------------------------ finding the exercises
def _python_source(source: str) -> ast.Module | None:
    """A code cell's source as a Python AST (IPython magics translated first); None if it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def _is_solution_cell(cell: NotebookNode) -> bool:
    return (SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
            or cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)
            or _BEGIN_WORDS in cell.source)


def find_exercises(nb: NotebookNode) -> list[Exercise]:
    """The exercises of a lesson notebook: ``check_*(fn)`` calls whose ``fn`` a solution cell defines.

    A checker called on a function that no solution cell defines (e.g. a demonstration
    that the checker catches a buggy function) is not an exercise.
    """
    code = [(cell, _python_source(cell.source)) for cell in nb.cells if cell.cell_type == "code"]
    defined: set[str] = set()
    for cell, tree in code:
        if tree is not None and _is_solution_cell(cell):
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defined.add(node.name)
                elif isinstance(node, ast.Assign):
                    defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    found: list[Exercise] = []
    for _, tree in code:
        for node in ast.walk(tree) if tree is not None else ():
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name)):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            exercise = Exercise(name, node.args[0].id)
            if name.startswith("check_") and exercise.function in defined and exercise not in found:
                found.append(exercise)
    return found


def _chapter_of(nb: NotebookNode, path: Path, book: Book) -> Chapter | None:
    """The chapter a submission belongs to: from the student edition's metadata, else from its file name."""
    recorded = nb.metadata.get("diffusion_lessons", {}).get("chapter")
    for chapter in book.chapters:
        if chapter.name == recorded:
            return chapter
    matches = [c for c in book.chapters if c.name in path.stem]
    return max(matches, key=lambda c: len(c.name)) if matches else None


# ------------------------------------------------------------------ running the submission
def _grading_setup() -> str:
    return (
        "import importlib as _dl_importlib, json as _dl_json\n"
        "import diffusion_lessons.exercises as _dl_exercises\n"
        "_dl_exercises = _dl_importlib.reload(_dl_exercises)  # the checkers as shipped\n"
        "def _dl_grade(checker, function):\n"
        "    fn = globals().get(function)\n"
        "    if not callable(fn):\n"
        "        return {'status': 'missing', 'message': f'the notebook defines no function {function}'}\n"
        "    check = getattr(_dl_exercises, checker, None)\n"
        "    if check is None:\n"
        "        return {'status': 'error', 'message': f'diffusion_lessons.exercises has no {checker}'}\n"
        "    try:\n"
        "        result = check(fn)\n"
        "    except Exception as e:\n"
        "        return {'status': 'error', 'message': f'the checker raised {type(e).__name__}: {e}'}\n"
        "    return {'status': result.status, 'message': result.message}\n"
    )


def _grading_cell(exercise: Exercise) -> str:
    return f"print({_MARKER!r} + _dl_json.dumps(_dl_grade({exercise.checker!r}, {exercise.function!r})))\n"


def _parse_result(cell: NotebookNode, exercise: Exercise) -> ExerciseResult:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    lines = [line for line in text.splitlines() if line.startswith(_MARKER)]
    if lines:  # the last one: the grading cell prints it after the student's function has run
        data = json.loads(lines[-1][len(_MARKER):])
        if data.get("status") in STATUSES:
            return ExerciseResult(exercise, data["status"], str(data.get("message", "")))
    errors = [f"{o['ename']}: {o['evalue']}" for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if any(e.startswith(("KeyboardInterrupt", "TimeoutError")) for e in errors) or not (errors or text):
        return ExerciseResult(exercise, "timeout", f"the checker did not finish within {CHECK_SECONDS} s")
    return ExerciseResult(exercise, "error", "; ".join(errors) or "the checker printed no result")


def _poll_in_slices(channel, seconds: float = 2.0) -> None:
    """Make ``channel.get_msg`` wait in short slices, in place.

    nbclient waits for a cell's reply with one long wait; with widgets in the notebook that
    wait sometimes misses the reply until it times out (jupyter/nbclient#312), which would
    stall the grader for a whole time limit. A fresh wait sees a message already there.
    """
    get_msg = channel.get_msg

    async def sliced(timeout: float | None = None, **kwargs):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = seconds if deadline is None else min(seconds, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=wait, **kwargs)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced


def grade_submission(path: str | Path, book: Book | None = None, timeout: float = 600.0,
                     budget: str = "smoke", kernel_name: str = "python3") -> Grade:
    """Execute one submitted notebook in a fresh kernel and run the checker of each of its exercises.

    ``timeout`` limits the submission's execution (seconds, all cells together, from the
    moment its kernel is ready); each
    checker then gets ``CHECK_SECONDS``. ``budget`` is the lessons' budget in the kernel
    ("smoke": short training runs, as in CI; "learner": the full lesson).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = Path(path)
    start = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    book = load_book() if book is None else book
    chapter = _chapter_of(nb, path, book)
    source = book.root / chapter.notebook if chapter is not None else None
    reference = nbformat.read(source, as_version=4) if source is not None and source.is_file() else nb
    exercises = find_exercises(reference)  # from the teacher's notebook: a student cannot drop an exercise

    nb = copy.deepcopy(nb)
    first_grading_cell = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(_grading_setup()))
    nb.cells += [nbformat.v4.new_code_cell(_grading_cell(e)) for e in exercises]
    env = kernel_env(budget)
    note, errors, results = "", [], {}
    with tempfile.TemporaryDirectory(prefix="dl_grade_") as workdir:
        client = NotebookClient(nb, kernel_name=kernel_name, allow_errors=True, interrupt_on_timeout=True,
                                error_on_timeout={"ename": "TimeoutError", "evalue": "time limit reached",
                                                  "traceback": []},
                                resources={"metadata": {"path": workdir}})
        client.reset_execution_trackers()
        try:
            with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):  # the kernel's own log lines
                _poll_in_slices(client.kc.shell_channel)
                deadline = time.monotonic() + timeout  # the submission's cells; the kernel's start is not counted
                for i, cell in enumerate(nb.cells[:first_grading_cell]):
                    if cell.cell_type != "code":
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        note = f"the time limit of {timeout:g} s was reached before cell {i + 1}"
                        break
                    client.timeout = math.ceil(remaining)  # nbclient interrupts the kernel after this
                    began = time.monotonic()
                    client.execute_cell(cell, i)
                    errors += [f"cell {i + 1}: {o['ename']}: {o['evalue']}"
                               for o in cell.outputs if o.get("output_type") == "error"]
                    if time.monotonic() - began >= client.timeout:
                        note = f"the time limit of {timeout:g} s was reached in cell {i + 1}"
                        break
                for i in range(first_grading_cell, len(nb.cells)):
                    client.timeout = CHECK_SECONDS
                    client.execute_cell(nb.cells[i], i)
                    if i > first_grading_cell:
                        exercise = exercises[i - first_grading_cell - 1]
                        results[exercise] = _parse_result(nb.cells[i], exercise)
        except DeadKernelError:
            note = "the kernel died (out of memory, or the submission ended the process)"
    final = tuple(results.get(e) or ExerciseResult(e, "error", note or "not graded") for e in exercises)
    return Grade(path, chapter.name if chapter else None, final, tuple(errors), time.monotonic() - start, note)


# ------------------------------------------------------------------ reporting
_SHORT = {"passed": "pass", "failed": "FAIL", "not implemented": "FAIL: not done", "error": "FAIL: error",
          "missing": "FAIL: missing", "timeout": "FAIL: timeout"}


def grades_table(grades: list[Grade], width: int = 70) -> str:
    """A plain-text table: one row per exercise of each submission, then its score."""
    rows = [("submission", "exercise (function)", "result", "why")]
    for g in grades:
        name = str(g.submission)
        if not g.results:
            rows.append((name, "(no exercises found)", "", g.chapter or "no chapter of book.toml matches"))
        for n, r in enumerate(g.results):
            why = "" if r.passed else re.sub(r"\s+", " ", r.message)
            why = why if len(why) <= width else why[:width - 3] + "..."
            rows.append((name if n == 0 else "", str(r.exercise), _SHORT[r.status], why))
        extra = f"; {len(g.cell_errors)} cell(s) raised" if g.cell_errors else ""
        extra += f"; {g.note}" if g.note else ""
        rows.append(("", "score", f"{g.score}/{g.total}", f"{g.seconds:.0f} s{extra}"))
        for error in g.cell_errors[:3]:
            rows.append(("", "", "", error if len(error) <= width else error[:width - 3] + "..."))
        if len(g.cell_errors) > 3:
            rows.append(("", "", "", f"... and {len(g.cell_errors) - 3} more"))
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 3)
    return "\n".join(line.rstrip() for line in lines)


def write_csv(grades: list[Grade], path: str | Path) -> None:
    """One row per exercise of each submission, for a spreadsheet."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["submission", "chapter", "exercise", "function", "status", "passed", "message"])
        for g in grades:
            for r in g.results:
                out.writerow([g.submission, g.chapter or "", r.exercise.name, r.exercise.function, r.status,
                              int(r.passed), r.message])
