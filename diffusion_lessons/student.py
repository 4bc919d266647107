"""Student editions: the lesson notebooks with every solution replaced by a stub.

The lesson notebooks are the single source. Solution code sits between nbgrader's
markers, in cells tagged ``solution``::

    def my_q_sample(x0, t, s, noise):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

A student edition is made by nbgrader's own ``ClearSolutions`` preprocessor (the one
behind ``nbgrader generate_assignment``), so it is exactly what nbgrader would give a
teacher: each region becomes ``# YOUR CODE HERE`` and ``raise NotImplementedError()``
at the region's indentation. Before that, this module checks the markers (an unclosed,
nested or stray marker is a ``MarkerError`` naming the notebook and the cell) and gives
each solution cell nbgrader's cell metadata. Then every output is cleared, so quiz
answers (folded into the quiz's static HTML) and the solutions' printed results are
not in the file.

The lesson notebooks are written so that a student edition still runs top to bottom:
a checker reports "not implemented yet" for a stub, and the lesson goes on with the
package's own function.

    diffusion-lessons student _build/student     # or: make student

Teachers who run nbgrader's whole workflow (release, collect, autograde, feedback) get
the lesson notebooks in nbgrader's course layout instead, with a hidden autograded test
after each exercise (``write_nbgrader_source``; see docs/teaching.md):

    diffusion-lessons student course --nbgrader   # course/source/01_markov_noising/...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .book import Book, load_book

__all__ = [
    "BEGIN",
    "END",
    "SOLUTION_TAG",
    "MarkerError",
    "SolutionRegion",
    "nbgrader_metadata",
    "nbgrader_source",
    "solution_regions",
    "student_notebook",
    "write_nbgrader_source",
    "write_student_editions",
]

BEGIN = "### BEGIN SOLUTION"  # nbgrader matches "BEGIN SOLUTION" anywhere in a line; so do we
END = "### END SOLUTION"
SOLUTION_TAG = "solution"  # the cell tag that marks a solution cell in the lesson notebooks
_BEGIN_WORDS, _END_WORDS = "BEGIN SOLUTION", "END SOLUTION"  # nbgrader's default delimiters


class MarkerError(ValueError):
    """A solution marker that is unclosed, nested or out of place; the message names notebook and cell."""


@dataclass(frozen=True)
class SolutionRegion:
    cell: int  # index of the cell in nb.cells (0-based)
    begin: int  # line index of the BEGIN marker in the cell's source (0-based)
    end: int  # line index of the END marker
    lines: tuple[str, ...]  # the solution lines between the markers


def _describe_cell(where: str, nb: NotebookNode, index: int) -> str:
    cell = nb.cells[index]
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"{where}, cell {index + 1} of {len(nb.cells)} ({cell.cell_type}, starting {first!r})"


def solution_regions(nb: NotebookNode, where: str = "notebook") -> list[SolutionRegion]:
    """Every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of ``nb``, checked.

    Raises ``MarkerError`` (naming ``where`` and the cell) for a BEGIN without its END, a
    BEGIN inside a region, an END without a BEGIN, and a code cell tagged ``solution``
    that has no region (nbgrader would blank the whole cell, and the lesson would break).
    """
    regions = []
    for i, cell in enumerate(nb.cells):
        begin = None
        lines = cell.source.splitlines()
        for n, line in enumerate(lines):
            if _BEGIN_WORDS in line:
                if begin is not None:
                    raise MarkerError(f"{_describe_cell(where, nb, i)}: nested {BEGIN} at line {n + 1}; the one "
                                      f"at line {begin + 1} is not closed yet (add {END} before it)")
                begin = n
            elif _END_WORDS in line:
                if begin is None:
                    raise MarkerError(f"{_describe_cell(where, nb, i)}: {END} at line {n + 1} has no {BEGIN} "
                                      "before it")
                regions.append(SolutionRegion(i, begin, n, tuple(lines[begin + 1:n])))
                begin = None
        if begin is not None:
            raise MarkerError(f"{_describe_cell(where, nb, i)}: {BEGIN} at line {begin + 1} is never closed "
                              f"(add {END} after the solution)")
        tagged = SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
        if tagged and cell.cell_type == "code" and not any(r.cell == i for r in regions):
            raise MarkerError(f"{_describe_cell(where, nb, i)}: the cell is tagged {SOLUTION_TAG!r} but has no "
                              f"{BEGIN} ... {END} region; mark the lines to remove (the whole cell would go)")
    return regions


def nbgrader_metadata(nb: NotebookNode, name: str, regions: list[SolutionRegion]) -> None:
    """Give every solution cell (tagged ``solution`` or holding a region) nbgrader's cell metadata, in place.

    This is what nbgrader's "Create Assignment" toolbar writes for an "Autograded answer"
    cell (schema version 3); nbgrader's preprocessors refuse a region outside such a cell.
    """
    with_region = {r.cell for r in regions}
    for i, cell in enumerate(nb.cells):
        if i in with_region or SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            cell.metadata["nbgrader"] = {
                "grade": False, "grade_id": f"{name}-{cell.get('id') or i}", "locked": False,
                "schema_version": 3, "solution": True, "task": False,
            }


def student_notebook(nb: NotebookNode, name: str = "notebook", where: str | None = None) -> NotebookNode:
    """The student edition of a lesson notebook: solutions stubbed, outputs and widget state cleared.

    ``name`` is the chapter (e.g. "01_markov_noising"): it is recorded in the notebook's
    metadata, where the grader finds it even if a student renames the file. ``where``
    names the notebook in error messages (default: ``name``).
    """
    from nbconvert.preprocessors import ClearOutputPreprocessor

    try:
        from nbgrader.preprocessors import ClearSolutions
    except ImportError as e:
        raise ImportError("student editions are made with nbgrader: pip install 'diffusion-lessons[teach]'") from e

    nb = copy.deepcopy(nb)
    regions = solution_regions(nb, where or name)
    nbgrader_metadata(nb, name, regions)
    nb, _ = ClearSolutions(enforce_metadata=True).preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    nb.metadata.pop("widgets", None)  # saved widget state holds the quiz's text and the solutions' pictures
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # run timestamps
    nb.metadata["diffusion_lessons"] = {"chapter": name, "edition": "student"}
    return nb


def write_student_editions(out_dir: str | Path, book: Book | None = None) -> list[Path]:
    """Write the student edition of every chapter of ``book`` (default: book.toml) into ``out_dir``.

    Returns the paths written, in the book's order. Nothing is written if any notebook's
    markers are wrong.
    """
    book = load_book() if book is None else book
    editions = []
    for chapter in book.chapters:
        path = book.root / chapter.notebook
        nb = nbformat.read(path, as_version=4)
        editions.append((Path(chapter.notebook).name, student_notebook(nb, chapter.name, chapter.notebook)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, nb in editions:
        nbformat.validate(nb)
        nbformat.write(nb, out_dir / filename)
        written.append(out_dir / filename)
    return written


def nbgrader_source(nb: NotebookNode, name: str = "notebook", where: str | None = None) -> NotebookNode:
    """The lesson notebook as nbgrader's *source* version: solutions kept, nbgrader's metadata added.

    Solution cells become nbgrader "autograded answer" cells. After the cell that calls an
    exercise's checker, a locked "autograded tests" cell (1 point) is inserted whose test
    is hidden from students (nbgrader's ``### BEGIN HIDDEN TESTS``): it asserts that the
    checker passes on the student's function.
    """
    from .grading import find_exercises

    nb = copy.deepcopy(nb)
    nbgrader_metadata(nb, name, solution_regions(nb, where or name))
    for n, exercise in enumerate(find_exercises(nb)):
        call = f"{exercise.checker}({exercise.function}"
        after = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and call in c.source
                     and not c.metadata.get("nbgrader", {}).get("solution"))
        test = (f"# Autograded (nbgrader): the checker above must pass.\n"
                f"### BEGIN HIDDEN TESTS\n"
                f"from diffusion_lessons.exercises import {exercise.checker}\n"
                f"_result = {exercise.checker}({exercise.function})\n"
                f"assert _result.passed, _result.message\n"
                f"### END HIDDEN TESTS")
        cell = nbformat.v4.new_code_cell(test, metadata={"nbgrader": {
            "grade": True, "grade_id": f"{name}-test-{n + 1}-{exercise.name}", "locked": True, "points": 1,
            "schema_version": 3, "solution": False, "task": False}})
        nb.cells.insert(after + 1, cell)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)  # nbgrader clears outputs, not saved widget state
    return nb


def write_nbgrader_source(course_dir: str | Path, book: Book | None = None) -> list[Path]:
    """Write every chapter as an nbgrader assignment: ``course_dir/source/<chapter>/<notebook>``.

    Then, in ``course_dir``: ``nbgrader generate_assignment 01_markov_noising`` makes the
    release version (nbgrader's own student edition), and ``nbgrader autograde`` grades.
    """
    book = load_book() if book is None else book
    sources = [(chapter, nbgrader_source(nbformat.read(book.root / chapter.notebook, as_version=4), chapter.name,
                                         chapter.notebook)) for chapter in book.chapters]
    written = []
    for chapter, nb in sources:
        path = Path(course_dir) / "source" / chapter.name / Path(chapter.notebook).name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        written.append(path)
    return written
