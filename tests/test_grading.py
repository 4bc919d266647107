import csv
import pathlib

import nbformat
import pytest

from diffusion_lessons.book import load_book
from diffusion_lessons.cli import main
from diffusion_lessons.grading import Exercise, find_exercises, grade_submission, grades_table, write_csv

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = load_book(ROOT / "book.toml")
CHAPTERS = [c.name for c in BOOK.chapters]


def _submission(path, *sources, chapter="01_markov_noising"):
    nb = nbformat.v4.new_notebook(metadata={"diffusion_lessons": {"chapter": chapter, "edition": "student"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


RIGHT_STEP = ("def my_markov_step(x, t, s, e):\n    b = s.betas[t].item()\n"
              "    return math.sqrt(1 - b) * x + math.sqrt(b) * e")
# a classic mistake: one step's α_t where the jump needs ᾱ_t
WRONG_JUMP = ("def my_q_sample(x, t, s, e):\n    a = s.alphas[t].item()\n"
              "    return math.sqrt(a) * x + math.sqrt(1 - a) * e")


def test_exercises_are_checker_calls_on_functions_from_solution_cells():
    found = {c.name: find_exercises(nbformat.read(BOOK.root / c.notebook, as_version=4)) for c in BOOK.chapters}
    assert found["01_markov_noising"] == [Exercise("check_markov_step", "my_markov_step"),
                                         Exercise("check_q_sample", "my_q_sample")]
    for chapter in BOOK.chapters:  # book.toml's exercise names agree with the notebooks
        assert {e.name for e in found[chapter.name]} == set(chapter.exercises), chapter.name


def test_solution_notebook_gets_full_marks():
    grade = grade_submission(ROOT / "notebooks" / "01_markov_noising.ipynb", BOOK, budget="smoke")
    assert grade.chapter == "01_markov_noising" and grade.cell_errors == ()
    assert grade.total == 2 and grade.score == 2, grades_table([grade])


@pytest.mark.parametrize("name", CHAPTERS)
def test_student_edition_gets_zero(grade_student_edition, name):
    grade = grade_student_edition(name)
    chapter = next(c for c in BOOK.chapters if c.name == name)
    assert {r.exercise.name for r in grade.results} == set(chapter.exercises) and grade.score == 0
    assert {r.status for r in grade.results} <= {"not implemented"}


def test_a_mixed_submission_is_graded_per_exercise(tmp_path):
    cheat = "import diffusion_lessons.exercises as ex\nex.check_q_sample = lambda fn: True"
    path = _submission(tmp_path / "alice.ipynb", "import math", RIGHT_STEP, WRONG_JUMP, cheat, "1 / 0")
    grade = grade_submission(path, BOOK, timeout=120)
    by_name = {r.exercise.name: r for r in grade.results}
    assert by_name["markov_step"].passed and by_name["q_sample"].status == "failed"  # the checkers as shipped
    assert "ᾱ_t" in by_name["q_sample"].message  # the checker's diagnosis
    assert grade.cell_errors == ("cell 5: ZeroDivisionError: division by zero",)
    table = grades_table([grade])
    assert "markov_step (my_markov_step)" in table and "q_sample (my_q_sample)" in table and "1/2" in table
    write_csv([grade], tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["exercise"], r["status"], r["passed"]) for r in rows] == [
        ("markov_step", "passed", "1"), ("q_sample", "failed", "0")]
    # the exercises come from the lesson notebook: one the student deleted is "missing", not skipped
    grade = grade_submission(_submission(tmp_path / "bob.ipynb", "import math", RIGHT_STEP), BOOK, timeout=120)
    assert [r.status for r in grade.results] == ["passed", "missing"]


def test_time_limit_stops_a_runaway_submission(tmp_path):
    path = _submission(tmp_path / "loop_01_markov_noising.ipynb", "import math", RIGHT_STEP, "while True:\n    pass",
                       chapter="")  # the chapter is found from the file name
    grade = grade_submission(path, BOOK, timeout=10)  # counted from the kernel's start: the def takes milliseconds
    assert grade.chapter == "01_markov_noising"
    assert "time limit of 10 s" in grade.note
    assert [r.status for r in grade.results] == ["passed", "missing"]  # the kernel was interrupted, then checked


def test_cli_prints_a_table(tmp_path, capsys):
    path = _submission(tmp_path / "carol.ipynb", "import math", RIGHT_STEP, WRONG_JUMP)
    assert main(["grade", str(path), "--manifest", str(ROOT / "book.toml"), "--csv", str(tmp_path / "g.csv")]) == 0
    out = capsys.readouterr().out
    assert "carol.ipynb" in out and "pass" in out and "FAIL" in out and "1/2" in out
    assert (tmp_path / "g.csv").is_file()
    assert main(["grade", str(tmp_path / "nope.ipynb")]) == 2
    assert "no such submission" in capsys.readouterr().err
