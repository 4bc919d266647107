import json
import pathlib

import nbformat
import pytest

from diffusion_lessons.book import load_book
from diffusion_lessons.cli import main
from diffusion_lessons.quiz import load_quiz
from diffusion_lessons.student import MarkerError, solution_regions, student_notebook, write_student_editions

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = load_book(ROOT / "book.toml")
CHAPTERS = [c.name for c in BOOK.chapters]


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """{chapter name: (lesson notebook, student edition as read back from disk)}."""
    out = tmp_path_factory.mktemp("student")
    written = write_student_editions(out, BOOK)
    assert [p.name for p in written] == [pathlib.Path(c.notebook).name for c in BOOK.chapters]
    return {c.name: (nbformat.read(BOOK.root / c.notebook, as_version=4), nbformat.read(p, as_version=4))
            for c, p in zip(BOOK.chapters, written, strict=True)}


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_line_of_any_solution_is_left(editions, name):
    lesson, student = editions[name]
    regions = solution_regions(lesson, name)
    chapter = next(c for c in BOOK.chapters if c.name == name)
    assert bool(regions) == bool(chapter.exercises), f"{name}: book.toml's exercises and the solutions disagree"
    in_regions = {(r.cell, n) for r in regions for n in range(r.begin, r.end + 1)}
    elsewhere = {line.strip() for i, c in enumerate(lesson.cells) for n, line in enumerate(c.source.splitlines())
                 if (i, n) not in in_regions}  # a line may also appear outside a solution (e.g. an import)
    text = "\n".join(c.source for c in student.cells)
    student_lines = {line.strip() for line in text.splitlines()}
    for r in regions:
        for line in r.lines:
            if line.strip() and line.strip() not in elsewhere:
                assert line.strip() not in student_lines, f"{name}, cell {r.cell + 1}: {line.strip()!r} survived"
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


@pytest.mark.parametrize("name", CHAPTERS)
def test_stub_keeps_the_indentation_and_the_code_around_it(editions, name):
    lesson, student = editions[name]
    for r in solution_regions(lesson, name):
        before = lesson.cells[r.cell].source.splitlines()
        indent = before[r.begin][: len(before[r.begin]) - len(before[r.begin].lstrip())]
        after = student.cells[r.cell].source.splitlines()
        assert after[r.begin:r.begin + 2] == [indent + "# YOUR CODE HERE", indent + "raise NotImplementedError()"]
        assert after[:r.begin] == before[:r.begin]  # e.g. the def line and its docstring


@pytest.mark.parametrize("name", CHAPTERS)
def test_outputs_widget_state_and_quiz_answers_are_not_in_the_file(editions, name, tmp_path):
    _, student = editions[name]
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert "widgets" not in student.metadata
    assert student.metadata["diffusion_lessons"] == {"chapter": name, "edition": "student"}
    text = json.dumps(student)
    chapter = next(c for c in BOOK.chapters if c.name == name)
    quiz = load_quiz(chapter.quiz)
    assert "<details>" not in text
    for q in quiz.questions:
        assert json.dumps(q.explanation)[1:-1] not in text, "a quiz answer is in the student edition"


def test_solution_cells_carry_nbgrader_metadata(editions):
    ids = []
    for _, student in editions.values():
        for cell in student.cells:
            if "solution" in cell.metadata.get("tags", []):
                meta = cell.metadata["nbgrader"]
                assert meta["solution"] is True and meta["grade"] is False and meta["schema_version"] == 3
                ids.append(meta["grade_id"])
    assert ids and len(ids) == len(set(ids))


def _notebook(*sources, tags=("solution",)):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import math")]
    nb.cells += [nbformat.v4.new_code_cell(s, metadata={"tags": list(tags)}) for s in sources]
    return nb


@pytest.mark.parametrize("source, message", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", r"cell 2 of 2 .*'def f\(\):'.*line 2 is never closed"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION\n", r"cell 2 .*nested .* line 3"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", r"cell 2 .*line 3 has no ### BEGIN SOLUTION"),
    ("def f():\n    return 1\n", r"cell 2 .*tagged 'solution' but has no"),
])
def test_marker_errors_name_the_notebook_and_the_cell(source, message):
    with pytest.raises(MarkerError, match=r"^lessons/broken\.ipynb, " + message):
        student_notebook(_notebook(source), "broken", where="lessons/broken.ipynb")


def test_markers_outside_a_tagged_cell_still_count():
    nb = _notebook("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", tags=())
    stub = "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert student_notebook(nb, "x").cells[1].source == stub


def test_cli_writes_editions_and_reports_marker_errors(tmp_path, capsys):
    assert main(["student", str(tmp_path / "out"), "--manifest", str(ROOT / "book.toml")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ipynb")) == sorted(
        pathlib.Path(c.notebook).name for c in BOOK.chapters)
    nbformat.write(_notebook("def f():\n    ### BEGIN SOLUTION\n"), tmp_path / "bad.ipynb")
    (tmp_path / "book.toml").write_text('[book]\ntitle = "t"\n[[chapters]]\nnotebook = "bad.ipynb"\n'
                                        'title = "Bad"\nobjectives = ["x"]\nminutes = 1\n')
    capsys.readouterr()
    assert main(["student", str(tmp_path / "out2"), "--manifest", str(tmp_path / "book.toml")]) == 2
    assert "error: bad.ipynb, cell 2 of 2" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("name", CHAPTERS)
def test_student_edition_runs_top_to_bottom(grade_student_edition, name):
    """Executed in a fresh kernel (smoke budget): no cell raises; every checker says "not implemented"."""
    grade = grade_student_edition(name)
    assert grade.note == "" and grade.cell_errors == (), grade.cell_errors or grade.note
    assert all(r.status == "not implemented" for r in grade.results), grade.results


def test_nbgrader_source_layout_runs_through_nbgrader(tmp_path):
    """nbgrader's own generate_assignment accepts the exported source and strips solutions and hidden tests."""
    import os
    import subprocess
    import sys

    from diffusion_lessons.student import write_nbgrader_source

    written = write_nbgrader_source(tmp_path, BOOK)
    assert written[0] == tmp_path / "source" / "01_markov_noising" / "01_markov_noising.ipynb"
    source = nbformat.read(written[0], as_version=4)
    tests = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata["nbgrader"]["points"] for c in tests] == [1, 1]
    assert "check_q_sample(my_q_sample)" in tests[1].source and "BEGIN HIDDEN TESTS" in tests[1].source
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "01_markov_noising"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    release = (tmp_path / "release" / "01_markov_noising" / "01_markov_noising.ipynb").read_text()
    assert "alpha_bar_t = s.alpha_bars[t].item()" not in release and "raise NotImplementedError()" in release
    assert "HIDDEN TESTS" not in release and "_result.passed" not in release
