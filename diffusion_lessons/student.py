"""Student and learner editions: the lesson notebooks with every solution replaced by a stub.

The lesson notebooks are the single source: the solved lessons, executed, with their
outputs. Solution code sits between nbgrader's markers, in cells tagged ``solution``::

    def my_q_sample(x0, t, s, noise):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

**Markers.** A marker is alone on its line (after the indentation), spelled exactly
``### BEGIN SOLUTION`` / ``### END SOLUTION``, or ``### BEGIN HIDDEN TESTS`` /
``### END HIDDEN TESTS`` around a test the students must not see. Anything else that
looks like one (other case, ``###BEGIN SOLUTION``, ``### BEGIN  SOLUTION``,
``### END SOLUTIONS``, a marker after code) is a ``MarkerError`` naming the notebook and
the cell, and so are an unclosed, nested or stray marker and a code cell tagged
``solution`` without a region: a near miss would otherwise leave a solution in the file,
or make nbgrader (which takes its words anywhere in a line) cut differently from us.

**The stub.** Each solution region becomes ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the region's indentation, and each hidden-test region
is removed, markers included: line for line what nbgrader's ``ClearSolutions`` and
``ClearHiddenTests`` write (tests/test_student.py compares them on every lesson). It is
implemented here (``stub_solutions``), so making an edition needs no nbgrader, and both
editions below use this one implementation.

**Two editions.**

- The *student edition* (``student_notebook``; ``diffusion-lessons student OUTDIR``,
  ``make student``) is what a teacher hands out: stubs, and every output cleared.
- The *learner edition* (``learner_notebook``; ``diffusion-lessons learner DIR``,
  ``make lab``) is a self-study learner's own working copy: stubs, and the outputs a
  learner should look at before running kept (the lesson's figures, tables, printed
  numbers). A code cell's saved outputs are cleared when they would reveal an answer,
  decided from its code (Python's ``ast``, IPython magics translated first):

  1. a solution cell (tagged ``solution``, or holding a solution region);
  2. a cell that calls a checker (a function named ``check_*``: its ✅ says the solution
     is right, its ❌ names a planted bug) or shows a quiz (``load_quiz``, ``Quiz``: its
     HTML folds the answers in);
  3. a cell that reads a name bound by a cell of 1 or 2 (the solution's function, a
     checker's result, a quiz): its prints and figures would be the solution's. The
     names such a cell binds carry the answer on, to the end of the notebook or until
     a cell that reads no answer binds them afresh. Only names of the notebook's
     namespace count (not a function's locals), and imports never carry an answer;
  4. a cell that does not parse as Python (nothing can be said about it).

  In a kept cell, a widget's view is dropped (its saved state is not in the file, and
  JupyterLab would show an error for it); the output keeps its static picture (PNG) if
  it has one, else goes (its plain text is only the widget's repr). The learner edition
  starts with a short note saying all this, and ``write_learner_editions`` writes only
  missing notebooks: a learner's existing copy is never overwritten, except when asked
  for by name (``refresh``), and then the old copy is moved to ``.replaced/``, not deleted.

Both editions keep, of each cell's metadata, only the tags a learner needs (not the
test harness's ``nbval-*``), drop run timestamps, saved widget state and nbgrader's
metadata, and record the chapter (the grader finds it there even if a student renames
the file). The student edition also drops cell attachments; the learner edition keeps
those of cells that hold no solution.

The lesson notebooks are written so that both editions run top to bottom: a checker
reports "not implemented yet" for a stub, and the lesson goes on with the package's own
function.

Teachers who run nbgrader's whole workflow (release, collect, autograde, feedback) get
the lesson notebooks in nbgrader's course layout instead, with nbgrader's metadata and a
hidden autograded test after each exercise (``write_nbgrader_source``; docs/teaching.md):

    diffusion-lessons student course --nbgrader   # course/source/01_markov_noising/...
"""

from __future__ import annotations

import ast
import copy
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .book import Book, load_book

__all__ = [
    "BEGIN",
    "BEGIN_HIDDEN",
    "CODE_STUB",
    "END",
    "END_HIDDEN",
    "SOLUTION_TAG",
    "TEXT_STUB",
    "Exercise",
    "LearnerCopy",
    "MarkerError",
    "SolutionRegion",
    "answer_cells",
    "find_exercises",
    "learner_notebook",
    "marked_regions",
    "nbgrader_metadata",
    "nbgrader_source",
    "solution_regions",
    "stub_solutions",
    "student_notebook",
    "write_learner_editions",
    "write_nbgrader_source",
    "write_student_editions",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"  # nbgrader's hidden tests: removed, markers and all
END_HIDDEN = "### END HIDDEN TESTS"
SOLUTION_TAG = "solution"  # the cell tag that marks a solution cell in the lesson notebooks
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's ClearSolutions.code_stub["python"]
TEXT_STUB = "YOUR ANSWER HERE"  # its text_stub, for a solution in a Markdown cell
_BEGIN_WORDS, _END_WORDS = "BEGIN SOLUTION", "END SOLUTION"  # nbgrader's default delimiters

# marker line -> (which region, opens it?)
_MARKERS = {BEGIN: ("solution", True), END: ("solution", False),
            BEGIN_HIDDEN: ("hidden tests", True), END_HIDDEN: ("hidden tests", False)}
_SPELLING = {(kind, opens): marker for marker, (kind, opens) in _MARKERS.items()}
# what nbgrader takes for a marker (its delimiters anywhere in a line) ...
_NBGRADER_WORDS = (_BEGIN_WORDS, _END_WORDS, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
# ... and what an author probably meant for one
_NEAR_MISS = re.compile(r"#\s*(begin|end)\s*(solution|hidden\s*tests?)", re.IGNORECASE)

CHECKER_PREFIX = "check_"  # diffusion_lessons.exercises' checkers: check_q_sample(fn), ...
QUIZ_CALLS = frozenset({"load_quiz", "Quiz"})  # a call that makes a quiz to show
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# What a widget output keeps once its view goes: a picture. Its text/plain is the widget's repr
# ("interactive(children=(IntSlider(...") and reads as noise to a learner, so it goes too.
_STATIC_FALLBACK = ("image/png",)
_NOTEBOOK_METADATA = ("kernelspec", "language_info")  # all a notebook's metadata an edition keeps
_REPLACED = ".replaced"  # where a refreshed learner copy's previous version goes (hidden in JupyterLab)


class MarkerError(ValueError):
    """A marker that is misspelt, unclosed, nested or out of place; the message names notebook and cell.

    Guide: docs/teaching.md
    """


@dataclass(frozen=True)
class SolutionRegion:
    """One marked region of a lesson notebook: its cell and the lines between its markers.

    Guide: docs/teaching.md
    """

    cell: int  # index of the cell in nb.cells (0-based)
    begin: int  # line index of the BEGIN marker in the cell's source (0-based)
    end: int  # line index of the END marker
    lines: tuple[str, ...]  # the lines between the markers
    kind: str = "solution"  # or "hidden tests"


def _describe_cell(where: str, nb: NotebookNode, index: int) -> str:
    cell = nb.cells[index]
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"{where}, cell {index + 1} of {len(nb.cells)} ({cell.cell_type}, starting {first!r})"


def _is_tagged(cell: NotebookNode, tag: str = SOLUTION_TAG) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def marked_regions(nb: NotebookNode, where: str = "notebook") -> list[SolutionRegion]:
    """Every solution and hidden-test region of ``nb``, in order, checked.

    Raises ``MarkerError`` (naming ``where`` and the cell) for a line that looks like a
    marker but is not one exactly, a BEGIN without its END, a BEGIN inside a region, an
    END without a BEGIN or closing the other kind, and a code cell tagged ``solution``
    that has no solution region (nbgrader would blank the whole cell, and the lesson would break).

    Guide: docs/teaching.md
    """
    regions = []
    for i, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")  # as nbgrader splits: line numbers agree with its own
        opened = None  # (kind, line index) of the region being read
        for n, line in enumerate(lines):
            marker = line.strip()
            if marker not in _MARKERS:
                if any(words in line for words in _NBGRADER_WORDS) or _NEAR_MISS.search(line):
                    lower = line.lower()
                    meant = _SPELLING["hidden tests" if "hidden" in lower else "solution", "begin" in lower]
                    raise MarkerError(f"{_describe_cell(where, nb, i)}: line {n + 1} looks like a marker but is not "
                                      f"one: {marker!r}; write {meant!r} exactly, alone on its line")
                continue
            kind, opens = _MARKERS[marker]
            if opens and opened is not None:
                raise MarkerError(f"{_describe_cell(where, nb, i)}: nested {marker} at line {n + 1}; the "
                                  f"{_SPELLING[opened[0], True]} at line {opened[1] + 1} is not closed yet (add "
                                  f"{_SPELLING[opened[0], False]} before it)")
            if opens:
                opened = (kind, n)
            elif opened is None:
                raise MarkerError(f"{_describe_cell(where, nb, i)}: {marker} at line {n + 1} has no "
                                  f"{_SPELLING[kind, True]} before it")
            elif opened[0] != kind:
                raise MarkerError(f"{_describe_cell(where, nb, i)}: {marker} at line {n + 1} closes the "
                                  f"{_SPELLING[opened[0], True]} at line {opened[1] + 1}; write "
                                  f"{_SPELLING[opened[0], False]}")
            else:
                regions.append(SolutionRegion(i, opened[1], n, tuple(lines[opened[1] + 1:n]), kind))
                opened = None
        if opened is not None:
            raise MarkerError(f"{_describe_cell(where, nb, i)}: {_SPELLING[opened[0], True]} at line "
                              f"{opened[1] + 1} is never closed (add {_SPELLING[opened[0], False]} after it)")
        has_solution = any(r.cell == i and r.kind == "solution" for r in regions)
        if _is_tagged(cell) and cell.cell_type == "code" and not has_solution:
            raise MarkerError(f"{_describe_cell(where, nb, i)}: the cell is tagged {SOLUTION_TAG!r} but has no "
                              f"{BEGIN} ... {END} region; mark the lines to remove (the whole cell would go)")
    return regions


def solution_regions(nb: NotebookNode, where: str = "notebook") -> list[SolutionRegion]:
    """Every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of ``nb``, after checking all markers.

    Guide: docs/teaching.md
    """
    return [r for r in marked_regions(nb, where) if r.kind == "solution"]


def _solution_cells(nb: NotebookNode, regions: list[SolutionRegion]) -> set[int]:
    """Cells tagged ``solution`` or holding a solution region."""
    return {r.cell for r in regions if r.kind == "solution"} | {i for i, c in enumerate(nb.cells) if _is_tagged(c)}


def _stub_cell(cell: NotebookNode) -> None:
    """nbgrader's ClearSolutions and ClearHiddenTests on one cell whose markers are checked, in place."""
    stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
    kept, inside = [], False
    for line in cell.source.split("\n"):  # split, not splitlines: a final newline stays, as in nbgrader
        marker = line.strip()
        if marker == BEGIN:  # the stub takes the region's place, at the marker's indentation
            indent = line[:len(line) - len(line.lstrip())]
            kept += [indent + stub_line for stub_line in stub.split("\n")]
        if marker in (BEGIN, BEGIN_HIDDEN):
            inside = True
        elif marker in (END, END_HIDDEN):
            inside = False
        elif not inside:
            kept.append(line)
    cell.source = "\n".join(kept)


def stub_solutions(nb: NotebookNode, where: str = "notebook") -> NotebookNode:
    """A copy of ``nb`` with each solution region replaced by the stub and each hidden-test region removed.

    The same text as nbgrader's ``ClearSolutions`` then ``ClearHiddenTests``: ``# YOUR CODE
    HERE`` and ``raise NotImplementedError()`` at the region's indentation (``YOUR ANSWER
    HERE`` in a Markdown cell; a Markdown cell tagged ``solution`` without a region becomes
    just that). Outputs and metadata are left as they are. Raises ``MarkerError`` first if
    a marker is wrong (see ``marked_regions``).

    Guide: docs/teaching.md
    """
    nb = copy.deepcopy(nb)
    regions = marked_regions(nb, where)
    for i in {r.cell for r in regions}:
        _stub_cell(nb.cells[i])
    for i, cell in enumerate(nb.cells):
        if _is_tagged(cell) and cell.cell_type != "code" and not any(r.cell == i for r in regions):
            cell.source = TEXT_STUB
    return nb


def nbgrader_metadata(nb: NotebookNode, name: str, regions: list[SolutionRegion]) -> None:
    """Give every solution cell (tagged ``solution`` or holding a region) nbgrader's cell metadata, in place.

    This is what nbgrader's "Create Assignment" toolbar writes for an "Autograded answer"
    cell (schema version 3); nbgrader's preprocessors refuse a region outside such a cell.
    Only the nbgrader source layout keeps it; the editions do not.

    Guide: docs/teaching.md
    """
    for i in sorted(_solution_cells(nb, regions)):
        cell = nb.cells[i]
        cell.metadata["nbgrader"] = {
            "grade": False, "grade_id": f"{name}-{cell.get('id') or i}", "locked": False,
            "schema_version": 3, "solution": True, "task": False,
        }


def _strip_metadata(nb: NotebookNode, name: str, edition: str, keep_attachments: set[int]) -> None:
    """Keep only what an edition needs, in place: the kernel, the tags a learner needs, the chapter.

    Drops the notebook's saved widget state (it holds the quizzes' text and the solutions'
    pictures) and other notebook metadata, every cell metadata key but ``tags`` (run
    timestamps, nbgrader's, collapsed/scrolled ...), the test harness's ``nbval-*`` tags,
    and the attachments of every cell not in ``keep_attachments``.
    """
    nb.metadata = NotebookNode({k: v for k, v in nb.metadata.items() if k in _NOTEBOOK_METADATA})
    nb.metadata["diffusion_lessons"] = {"chapter": name, "edition": edition}
    for i, cell in enumerate(nb.cells):
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if not t.startswith("nbval-")]
        cell.metadata = NotebookNode({"tags": tags} if tags else {})
        if i not in keep_attachments:
            cell.pop("attachments", None)


def _clear_outputs(cell: NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None


def student_notebook(nb: NotebookNode, name: str = "notebook", where: str | None = None) -> NotebookNode:
    """The student edition of a lesson notebook: solutions stubbed, every output cleared, metadata stripped.

    ``name`` is the chapter (e.g. "01_markov_noising"): it is recorded in the notebook's
    metadata, where the grader finds it even if a student renames the file. ``where``
    names the notebook in error messages (default: ``name``).

    Guide: docs/teaching.md
    """
    nb = stub_solutions(nb, where or name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            _clear_outputs(cell)
    _strip_metadata(nb, name, "student", keep_attachments=set())
    return nb


def write_student_editions(out_dir: str | Path, book: Book | None = None) -> list[Path]:
    """Write the student edition of every chapter and project of ``book`` (default: book.toml) into ``out_dir``.

    Returns the paths written, in the book's order. Nothing is written if any notebook's
    markers are wrong.

    Guide: docs/teaching.md
    """
    book = load_book() if book is None else book
    editions = []
    for chapter in book.notebooks:
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


# ------------------------------------------------------------------ the exercises of a lesson
@dataclass(frozen=True)
class Exercise:
    """An exercise of a lesson: the checker and the learner's function handed to it.

    Guide: docs/teaching.md
    """

    checker: str  # a function of diffusion_lessons.exercises, e.g. "check_q_sample"
    function: str  # the student's function handed to it, e.g. "my_q_sample"

    @property
    def name(self) -> str:
        """The exercise's name, e.g. "q_sample" (book.toml's ``exercises`` and ``exercises.EXERCISES`` use these)."""
        return self.checker.removeprefix("check_")

    def __str__(self) -> str:
        return f"{self.name} ({self.function})"



def _is_solution_cell(cell: NotebookNode) -> bool:
    return (SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
            or cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)
            or _BEGIN_WORDS in cell.source)


def find_exercises(nb: NotebookNode) -> list[Exercise]:
    """The exercises of a lesson notebook: ``check_*(fn)`` calls whose ``fn`` a solution cell defines.

    A checker called on a function that no solution cell defines (e.g. a demonstration
    that the checker catches a buggy function) is not an exercise. The grader reads them
    from the teacher's lesson notebook; the nbgrader source layout adds a test after each.

    Guide: docs/teaching.md
    """
    code = [(cell, _parse(cell.source)) for cell in nb.cells if cell.cell_type == "code"]
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
            exercise = Exercise(_called(node), node.args[0].id)
            if exercise.checker.startswith(CHECKER_PREFIX) and exercise.function in defined \
                    and exercise not in found:
                found.append(exercise)
    return found


# ------------------------------------------------------------------ the learner's edition
def _parse(source: str) -> ast.Module | None:
    """A code cell's source as a Python AST (IPython magics translated first, where IPython is installed)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except ImportError:  # pragma: no cover - every Jupyter kernel environment has IPython
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _called(node: ast.Call) -> str:
    """The name a call calls: ``f`` for ``f(x)`` and ``m.f(x)``, else ""."""
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _top_level(tree: ast.Module) -> Iterator[ast.AST]:
    """The nodes of a cell outside nested scopes: what runs in the notebook's namespace."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, _SCOPES):  # a function's locals are not the notebook's names
            todo.extend(ast.iter_child_nodes(node))


def _names(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """(names the cell reads, anywhere; names it binds in the notebook's namespace; names it calls, anywhere).

    Imports bind nothing here: a module holds no answer.
    """
    reads = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    calls = {_called(node) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    binds = set()
    for node in _top_level(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            binds.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(node.name)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            root = node.value  # `results[k] = ...`, `state.x = ...` change the object named `results`, `state`
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name):
                binds.add(root.id)
    return reads, binds, calls


def answer_cells(nb: NotebookNode, where: str = "notebook") -> dict[int, str]:
    """The code cells of a lesson notebook whose saved outputs would reveal an answer: {index: why}.

    The rule of the module docstring: solution cells; cells that call a checker
    (``check_*``) or make a quiz (``load_quiz``, ``Quiz``); cells that read a name bound by
    such a cell, on to the end of the notebook; cells that do not parse.

    Guide: docs/teaching.md
    """
    solutions = _solution_cells(nb, marked_regions(nb, where))
    answers: dict[int, str] = {}
    carriers: set[str] = set()  # names bound to an answer: the solution's function, a checker's result ...
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            answers[i] = "solution" if i in solutions else "does not parse"
            continue
        reads, binds, calls = _names(tree)
        checkers = sorted(c for c in calls if c.startswith(CHECKER_PREFIX))
        if i in solutions:
            answers[i] = "solution"
        elif checkers:
            answers[i] = f"calls the checker {checkers[0]}"
        elif calls & QUIZ_CALLS:
            answers[i] = "shows a quiz"
        elif reads & carriers:
            answers[i] = f"uses {', '.join(sorted(reads & carriers))}"
        if i in answers:
            carriers |= binds
        else:
            carriers -= binds  # bound afresh by a cell that read no answer: free again
    return answers


def _static(output: NotebookNode) -> NotebookNode | None:
    """An output as it may stay in a learner's edition: a widget view becomes its static fallback, or goes."""
    data = output.get("data", {})
    if _WIDGET_VIEW not in data:
        return output
    fallback = {mime: data[mime] for mime in _STATIC_FALLBACK if mime in data}
    if not fallback:
        return None
    output = copy.deepcopy(output)
    output.data = NotebookNode(fallback)
    return output


def _learner_note(name: str) -> NotebookNode:
    return nbformat.v4.new_markdown_cell(
        "> **This is your copy of the lesson**: solve the exercises where it says `# YOUR CODE HERE`, run the "
        "cells, save. `make lab` never overwrites it.\n"
        "> The saved outputs of the exercises, of the cells that use your functions and of the quizzes are "
        "cleared (run the cells to see them); the lesson's own figures and numbers are kept.\n"
        "> `make lab-solutions` opens the solved lessons. For a fresh copy of this one: "
        f"`make lab REFRESH={name}` (yours is moved to `{_REPLACED}/`, not deleted).")


def learner_notebook(nb: NotebookNode, name: str = "notebook", where: str | None = None) -> NotebookNode:
    """The learner's edition of a lesson notebook: solutions stubbed, outputs that reveal no answer kept.

    Which outputs are cleared is decided by ``answer_cells`` (the rule of the module
    docstring); widget views become their static fallback. A note on all this comes first.
    ``name`` is the chapter, recorded in the metadata; ``where`` names the notebook in errors.

    Guide: docs/teaching.md
    """
    where = where or name
    answers = answer_cells(nb, where)
    solutions = _solution_cells(nb, marked_regions(nb, where))
    nb = stub_solutions(nb, where)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if i in answers:
            _clear_outputs(cell)
        else:
            cell.outputs = [out for out in map(_static, cell.outputs) if out is not None]
    _strip_metadata(nb, name, "learner", keep_attachments=set(range(len(nb.cells))) - solutions)
    nb.cells.insert(0, _learner_note(name))
    return nb


@dataclass(frozen=True)
class LearnerCopy:
    """What ``write_learner_editions`` did with one chapter: wrote, kept or refreshed it.

    Guide: docs/teaching.md
    """

    path: Path  # the learner's notebook
    status: str  # "written" (it was missing), "kept" (the learner's copy, untouched) or "refreshed"
    replaced: Path | None = None  # where a refreshed notebook's previous copy was moved


def _write_new(nb: NotebookNode, path: Path) -> bool:
    """Write ``nb`` to ``path`` unless a file is there; False if one is. Never a half-written notebook.

    The text goes to a temporary file first, then is hard-linked into place: a link, unlike
    a rename, fails when the name is taken. Where links are not supported, an exclusive create.
    """
    text = nbformat.writes(nb)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the learner's file is an ordinary one
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            try:
                with open(path, "x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _chapter_named(book: Book, name: str) -> str:
    """The chapter ``name`` refers to (its name, its file name, or its path in book.toml)."""
    for chapter in book.notebooks:
        if name in (chapter.name, Path(chapter.notebook).name, chapter.notebook):
            return chapter.name
    raise ValueError(f"refresh: no chapter {name!r} in the book; chapters: {', '.join(c.name for c in book.notebooks)}")


def write_learner_editions(out_dir: str | Path, book: Book | None = None,
                           refresh: Iterable[str] = ()) -> list[LearnerCopy]:
    """Write the learner's edition of every chapter of ``book`` (default: book.toml) that ``out_dir`` lacks.

    A notebook already in ``out_dir`` is the learner's own work: it is kept, untouched,
    unless its chapter is named in ``refresh`` (e.g. "01_markov_noising"); then it is moved
    to ``out_dir/.replaced/<chapter>-<time>.ipynb`` and a fresh edition written. Returns
    what happened to each chapter, in the book's order. Nothing is written if any
    notebook's markers are wrong or a name in ``refresh`` is not a chapter.

    Guide: docs/teaching.md
    """
    book = load_book() if book is None else book
    refresh = {_chapter_named(book, name) for name in refresh}
    editions = [(chapter, learner_notebook(nbformat.read(book.root / chapter.notebook, as_version=4),
                                           chapter.name, chapter.notebook)) for chapter in book.notebooks]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir must be a folder, got the file {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for chapter, nb in editions:
        nbformat.validate(nb)
        path, replaced = out_dir / Path(chapter.notebook).name, None
        if path.exists() and chapter.name not in refresh:
            copies.append(LearnerCopy(path, "kept"))
            continue
        if path.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            replaced = out_dir / _REPLACED / f"{chapter.name}-{stamp}.ipynb"
            n = 1
            while replaced.exists():
                n += 1
                replaced = out_dir / _REPLACED / f"{chapter.name}-{stamp}-{n}.ipynb"
            replaced.parent.mkdir(exist_ok=True)
            os.replace(path, replaced)
        written = _write_new(nb, path)  # False if the learner saved one there meanwhile
        copies.append(LearnerCopy(path, ("refreshed" if replaced else "written") if written else "kept", replaced))
    return copies


# ------------------------------------------------------------------ nbgrader's course layout
def nbgrader_source(nb: NotebookNode, name: str = "notebook", where: str | None = None) -> NotebookNode:
    """The lesson notebook as nbgrader's *source* version: solutions kept, nbgrader's metadata added.

    Solution cells become nbgrader "autograded answer" cells. After the cell that calls an
    exercise's checker, a locked "autograded tests" cell (1 point) is inserted whose test
    is hidden from students (nbgrader's ``### BEGIN HIDDEN TESTS``): it asserts that the
    checker passes on the student's function.

    Guide: docs/teaching.md
    """
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

    Guide: docs/teaching.md
    """
    book = load_book() if book is None else book
    sources = [(chapter, nbgrader_source(nbformat.read(book.root / chapter.notebook, as_version=4), chapter.name,
                                         chapter.notebook)) for chapter in book.notebooks]
    written = []
    for chapter, nb in sources:
        path = Path(course_dir) / "source" / chapter.name / Path(chapter.notebook).name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        written.append(path)
    return written
