import copy
import json
import pathlib
import re

import nbformat
import pytest

from diffusion_lessons.book import load_book
from diffusion_lessons.cli import main
from diffusion_lessons.quiz import load_quiz
from diffusion_lessons.student import (
    MarkerError,
    answer_cells,
    learner_notebook,
    solution_regions,
    stub_solutions,
    student_notebook,
    write_learner_editions,
    write_student_editions,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = load_book(ROOT / "book.toml")
CHAPTERS = [c.name for c in BOOK.notebooks]  # lessons and projects
LESSONS = [c.name for c in BOOK.chapters]


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """{chapter name: (lesson notebook, student edition as read back from disk)}."""
    out = tmp_path_factory.mktemp("student")
    written = write_student_editions(out, BOOK)
    assert [p.name for p in written] == [pathlib.Path(c.notebook).name for c in BOOK.notebooks]
    return {c.name: (nbformat.read(BOOK.root / c.notebook, as_version=4), nbformat.read(p, as_version=4))
            for c, p in zip(BOOK.notebooks, written, strict=True)}


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_line_of_any_solution_is_left(editions, name):
    lesson, student = editions[name]
    regions = solution_regions(lesson, name)
    chapter = next(c for c in BOOK.notebooks if c.name == name)
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
    for i, cell in enumerate(lesson.cells):  # a sample answer to a written question (projects) goes whole
        if cell.cell_type == "markdown" and "solution" in cell.metadata.get("tags", []):
            assert student.cells[i].source == "YOUR ANSWER HERE", f"{name}, cell {i + 1}: a sample answer survived"


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
    chapter = next(c for c in BOOK.notebooks if c.name == name)
    assert "<details>" not in text
    for q in load_quiz(chapter.quiz).questions if chapter.quiz else ():
        assert json.dumps(q.explanation)[1:-1] not in text, "a quiz answer is in the student edition"


def test_cells_keep_only_the_tags_a_learner_needs(editions):
    """No nbgrader metadata (the nbgrader source layout keeps it), no run timestamps, no nbval tags."""
    solution_cells = 0
    for name, (lesson, student) in editions.items():
        assert set(student.metadata) == {"kernelspec", "language_info", "diffusion_lessons"}, name
        for before, after in zip(lesson.cells, student.cells, strict=True):
            assert set(after.metadata) <= {"tags"} and "attachments" not in after, f"{name}: {after.metadata}"
            tags = after.metadata.get("tags", [])
            assert tags == [t for t in before.metadata.get("tags", []) if not t.startswith("nbval-")]
            solution_cells += "solution" in tags
    assert solution_cells >= sum(len(c.exercises) for c in BOOK.notebooks)  # the tag that marks an exercise stays


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
        pathlib.Path(c.notebook).name for c in BOOK.notebooks)
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


# ------------------------------------------------------------------ the stub is nbgrader's, without nbgrader
@pytest.mark.parametrize("name", CHAPTERS)
def test_stub_is_what_nbgrader_clear_solutions_writes(name):
    """Our stubbing and nbgrader's ClearSolutions (+ ClearHiddenTests) give the same cells, on every lesson."""
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    from diffusion_lessons.student import nbgrader_metadata, nbgrader_source, stub_solutions

    chapter = next(c for c in BOOK.notebooks if c.name == name)
    lesson = nbformat.read(BOOK.root / chapter.notebook, as_version=4)
    theirs = copy.deepcopy(lesson)
    nbgrader_metadata(theirs, name, solution_regions(theirs, name))
    theirs, _ = preprocessors.ClearSolutions(enforce_metadata=True).preprocess(theirs, {})
    ours = stub_solutions(lesson, name)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert [c.source for c in ours.cells] != [c.source for c in lesson.cells] or not chapter.exercises
    # nbgrader's source layout adds hidden tests: nbgrader's release and our stub remove them alike
    source = nbgrader_source(lesson, name)
    theirs, _ = preprocessors.ClearSolutions(enforce_metadata=True).preprocess(copy.deepcopy(source), {})
    theirs, _ = preprocessors.ClearHiddenTests(enforce_metadata=True).preprocess(theirs, {})
    ours = stub_solutions(source, name)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert "HIDDEN TESTS" not in "".join(c.source for c in ours.cells)


def test_making_editions_needs_no_nbgrader():
    """The learner's environment has no nbgrader: student.py must not import it (nor nbconvert)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['nbgrader'] = sys.modules['nbconvert'] = None\n"
            "from diffusion_lessons.student import student_notebook, learner_notebook\n"
            "import nbformat\n"
            f"nb = nbformat.read({str(BOOK.root / BOOK.notebooks[0].notebook)!r}, as_version=4)\n"
            "assert 'NotImplementedError' in str(student_notebook(nb).cells)\n"
            "assert 'NotImplementedError' in str(learner_notebook(nb).cells)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


# ------------------------------------------------------------------ hardening: near misses, hidden tests, metadata
@pytest.mark.parametrize("marker", [
    "### begin solution", "### Begin Solution", "###BEGIN SOLUTION", "### BEGIN  SOLUTION", "#### BEGIN SOLUTION",
    "# BEGIN SOLUTION", "return 1  ### BEGIN SOLUTION",
])
def test_a_near_miss_begin_marker_is_an_error(marker):
    source = f"def f():\n    {marker}\n    return 1\n    ### END SOLUTION\n"
    with pytest.raises(MarkerError, match=r"^lessons/broken\.ipynb, cell 2 of 2 .*'def f\(\):'.*line 2 looks like a "
                                          r"marker .*'### BEGIN SOLUTION' exactly"):
        student_notebook(_notebook(source), "broken", where="lessons/broken.ipynb")


@pytest.mark.parametrize("marker, meant", [
    ("### END SOLUTIONS", "### END SOLUTION"), ("### end solution", "### END SOLUTION"),
    ("###END SOLUTION", "### END SOLUTION"), ("### BEGIN HIDDEN TEST", "### BEGIN HIDDEN TESTS"),
    ("### END HIDDEN  TESTS", "### END HIDDEN TESTS"),
])
def test_near_misses_of_the_other_markers_are_errors(marker, meant):
    source = f"def f():\n    ### BEGIN SOLUTION\n    return 1\n    {marker}\n    ### END SOLUTION\n"
    with pytest.raises(MarkerError, match=rf"cell 2 of 2 .*line 4 looks like a marker .*'{meant}' exactly"):
        student_notebook(_notebook(source), "broken")


def test_markers_are_exact_with_any_indentation_and_trailing_space():
    nb = _notebook("def f():\n\t### BEGIN SOLUTION   \n\treturn 1\n\t### END SOLUTION\n")
    assert student_notebook(nb).cells[1].source == "def f():\n\t# YOUR CODE HERE\n\traise NotImplementedError()\n"


def test_hidden_tests_are_stripped_with_their_markers():
    source = ("_r = check(f)\n### BEGIN HIDDEN TESTS\nassert secret_answer() == 42\n### END HIDDEN TESTS\n"
              "print('visible')\n")
    nb = _notebook("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    nb.cells.append(nbformat.v4.new_code_cell(source))
    for edition in (student_notebook(nb, "x"), learner_notebook(nb, "x")):
        text = "\n".join(c.source for c in edition.cells)
        assert "secret_answer" not in text and "HIDDEN" not in text
        assert "_r = check(f)\nprint('visible')\n" in text


@pytest.mark.parametrize("source, message", [
    ("### BEGIN HIDDEN TESTS\nassert True\n", r"### BEGIN HIDDEN TESTS at line 1 is never closed"),
    ("### BEGIN HIDDEN TESTS\n### END SOLUTION\n", r"### END SOLUTION at line 2 closes the ### BEGIN HIDDEN TESTS"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n", r"nested ### BEGIN HIDDEN TESTS at line 2"),
    ("assert True\n### END HIDDEN TESTS\n", r"### END HIDDEN TESTS at line 2 has no ### BEGIN HIDDEN TESTS"),
])
def test_hidden_test_markers_are_checked_too(source, message):
    with pytest.raises(MarkerError, match=r"cell 2 of 2 .*" + message):
        student_notebook(_notebook(source, tags=()), "x")


def test_attachments_and_custom_metadata_are_stripped():
    nb = _notebook("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    nb.metadata.update({"widgets": {"state": "..."}, "celltoolbar": "Create Assignment", "authors": ["T"],
                        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells[1].metadata.update({"nbgrader": {"solution": True}, "execution": {"t": 1}, "collapsed": True,
                                 "tags": ["solution", "nbval-ignore-output", "raises-exception"]})
    picture = {"answer.png": {"image/png": "iVBORw0KGgo="}}
    nb.cells.append(nbformat.v4.new_markdown_cell("![](attachment:answer.png)", attachments=picture,
                                                  metadata={"custom": 1}))
    student = student_notebook(nb, "x")
    assert student.cells[1].metadata == {"tags": ["solution", "raises-exception"]}
    assert student.cells[2].metadata == {} and "attachments" not in student.cells[2]
    assert set(student.metadata) == {"kernelspec", "diffusion_lessons"}
    nbformat.validate(student)
    # the learner reads the lesson: a picture in a cell without a solution stays there
    assert learner_notebook(nb, "x").cells[3].attachments == picture


# ------------------------------------------------------------------ the learner's edition
def _code_outputs(cell) -> list:
    """A cell's outputs as the learner edition should keep them: widget views become their fallback, or go."""
    kept = []
    for out in cell.outputs:
        data = out.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            fallback = {k: v for k, v in data.items() if k == "image/png"}
            if fallback:
                kept.append({**out, "data": fallback})
        else:
            kept.append(out)
    return kept


@pytest.fixture(scope="module")
def learner_editions(tmp_path_factory):
    """{chapter name: (lesson notebook, learner edition as read back from disk)}."""
    out = tmp_path_factory.mktemp("lessons")
    copies = write_learner_editions(out, BOOK)
    assert [(c.path.name, c.status) for c in copies] == [(pathlib.Path(c.notebook).name, "written")
                                                         for c in BOOK.notebooks]
    return {c.name: (nbformat.read(BOOK.root / c.notebook, as_version=4), nbformat.read(copy.path, as_version=4))
            for c, copy in zip(BOOK.notebooks, copies, strict=True)}


def _reveals_an_answer(lesson) -> set[int]:
    """An oracle independent of the ast rule, by text: solution cells, checker and quiz calls, solution names.

    Good enough for the lessons as they are (no answer passes through a variable), not in general.
    """
    solved = [c for c in lesson.cells if "solution" in c.metadata.get("tags", [])]
    functions = {m for c in solved for m in re.findall(r"^def (\w+)", c.source, re.MULTILINE)}
    return {i for i, c in enumerate(lesson.cells) if c.cell_type == "code" and (
        c in solved or re.search(r"\bcheck_\w+\(", c.source) or "load_quiz(" in c.source
        or any(re.search(rf"\b{f}\b", c.source) for f in functions))}


@pytest.mark.parametrize("name", LESSONS)  # a project's study runs on the learner's functions: lessons only
def test_learner_edition_keeps_the_lesson_and_clears_the_answers(learner_editions, name):
    lesson, learner = learner_editions[name]
    assert learner.cells[0].cell_type == "markdown" and "make lab-solutions" in learner.cells[0].source
    assert [c.cell_type for c in learner.cells[1:]] == [c.cell_type for c in lesson.cells]
    answers = _reveals_an_answer(lesson)
    assert set(answer_cells(lesson, name)) == answers  # the ast rule agrees with the text oracle here
    chapter = next(c for c in BOOK.notebooks if c.name == name)
    assert any("load_quiz(" in lesson.cells[i].source for i in answers) == (chapter.quiz is not None)
    figures = 0
    for i, (before, after) in enumerate(zip(lesson.cells, learner.cells[1:], strict=True)):
        if before.cell_type != "code":
            assert after.source == before.source
            continue
        if i in answers:
            assert after.outputs == [] and after.execution_count is None, f"{name}, cell {i + 1}"
        else:  # everything else reads as in the solved lesson, before anything is run
            assert after.outputs == _code_outputs(before), f"{name}, cell {i + 1}: {before.source[:60]!r}"
            assert after.execution_count == before.execution_count
            figures += sum("image/png" in out.get("data", {}) for out in after.outputs)
    assert figures > 0


@pytest.mark.parametrize("name", CHAPTERS)
def test_learner_edition_holds_no_answer(learner_editions, name):
    lesson, learner = learner_editions[name]
    text = json.dumps(learner, ensure_ascii=False)
    assert "✅" in json.dumps(lesson, ensure_ascii=False) or not BOOK.notebooks[CHAPTERS.index(name)].exercises
    assert "✅" not in text and "❌" not in text  # no checker's verdict, on the learner's work or a planted bug
    assert "<details>" not in text and "application/vnd.jupyter.widget" not in text
    assert "widgets" not in learner.metadata
    quiz = next(c for c in BOOK.notebooks if c.name == name).quiz
    for q in load_quiz(quiz).questions if quiz else ():
        assert q.explanation not in text, "a quiz answer is in the learner's edition"
    for cell in lesson.cells:  # a project's sample answers to its written questions
        if cell.cell_type == "markdown" and "solution" in cell.metadata.get("tags", []):
            assert cell.source not in text and "YOUR ANSWER HERE" in text
    for r in solution_regions(lesson, name):
        assert learner.cells[r.cell + 1].source == stub_solutions(lesson, name).cells[r.cell].source
    assert learner.metadata["diffusion_lessons"] == {"chapter": name, "edition": "learner"}


def test_names_that_carry_an_answer_are_followed_through_the_notebook():
    nb = _notebook("import torch\ndef my_f(x):\n    ### BEGIN SOLUTION\n    local = x + 1\n    return local\n"
                   "    ### END SOLUTION\n")
    cells = ["y = my_f(2)", "print(y)", "def g():\n    return my_f(1)", "g()", "local = 5\nprint(local)",
             "print(torch.ones(1))", "y = 3", "print(y)", "results = {}\nresults['a'] = my_f(0)", "results"]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    for cell in nb.cells:
        cell.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    # cleared: the solution, `y` and `g` (they hold my_f's results), `results` (changed with one);
    # kept: a function's local is not the notebook's, an import holds no answer, `y` bound afresh
    assert sorted(answer_cells(nb)) == [1, 2, 3, 4, 5, 10, 11]
    learner = learner_notebook(nb, "x")
    kept = [c.source for c in learner.cells[1:] if c.cell_type == "code" and c.outputs]
    assert kept == ["import math", "local = 5\nprint(local)", "print(torch.ones(1))", "y = 3", "print(y)"]


def test_a_widget_keeps_its_static_picture_or_goes():
    nb = _notebook("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0}}
    nb.cells += [nbformat.v4.new_code_cell("slider()", outputs=[
        nbformat.v4.new_output("display_data", data={**view, "image/png": "iVBORw0KGgo=", "text/plain": "Slider"}),
        nbformat.v4.new_output("display_data", data=view),
        nbformat.v4.new_output("stream", text="done\n")])]
    outputs = learner_notebook(nb, "x").cells[-1].outputs
    assert [sorted(o.get("data", {})) for o in outputs] == [["image/png"], []]  # the widget's repr text goes
    assert outputs[1].text == "done\n"


def test_learner_editions_never_overwrite_the_learners_work(tmp_path, capsys):
    out = tmp_path / "lessons"
    write_learner_editions(out, BOOK)
    first, second = (out / pathlib.Path(c.notebook).name for c in BOOK.notebooks[:2])
    mine = nbformat.read(first, as_version=4)
    mine.cells[0].source = "my notes"
    nbformat.write(mine, first)
    work = first.read_bytes()
    second.unlink()
    copies = write_learner_editions(out, BOOK)
    assert [c.status for c in copies[:2]] == ["kept", "written"] and first.read_bytes() == work
    assert all(c.status == "kept" for c in copies[2:])
    # a fresh copy on purpose: the learner's one is moved aside, never deleted
    (fresh,) = [c for c in write_learner_editions(out, BOOK, refresh=[first.name]) if c.status != "kept"]
    assert fresh.status == "refreshed" and fresh.path == first
    assert fresh.replaced.read_bytes() == work and fresh.replaced.parent == out / ".replaced"
    assert "my notes" not in first.read_text()
    with pytest.raises(ValueError, match="no chapter 'nope'"):
        write_learner_editions(tmp_path / "other", BOOK, refresh=["nope"])
    assert not (tmp_path / "other").exists()
    # the CLI says what it kept; its errors are one line, exit 2
    capsys.readouterr()
    assert main(["learner", str(out), "--manifest", str(ROOT / "book.toml")]) == 0
    said = capsys.readouterr().out
    assert f"kept      {first}" in said and f"0 written, {len(BOOK.notebooks)} of your copies kept" in said
    assert main(["learner", str(first), "--manifest", str(ROOT / "book.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffusion-lessons: error: ") and err.count("\n") == 1


def test_a_notebook_saved_meanwhile_is_not_overwritten(tmp_path):
    from diffusion_lessons.student import _write_new

    nb = _notebook("x = 1", tags=())
    path = tmp_path / "a.ipynb"
    assert _write_new(nb, path) and nbformat.read(path, as_version=4).cells[1].source == "x = 1"
    path.write_text("the learner's")
    assert not _write_new(nb, path) and path.read_text() == "the learner's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb"]  # no temporary file left behind


# ------------------------------------------------------------------ two environments
def _extra(name: str, extras: dict) -> set[str]:
    """Every requirement an extra pulls, following diffusion-lessons[...] references."""
    pulled = set()
    for requirement in extras[name]:
        if requirement.startswith("diffusion-lessons["):
            for other in requirement.split("[")[1].rstrip("]").split(","):
                pulled |= {f"[{other.strip()}]"} | _extra(other.strip(), extras)
        else:
            pulled.add(re.split(r"[<>=!~;\[ ]", requirement)[0].lower())
    return pulled


def test_the_learners_environment_has_no_teaching_tools():
    """The lab extra pulls neither nbgrader nor the teach extra; `make lab` installs only it, into its own venv."""
    import shutil
    import subprocess
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "nbgrader" in _extra("dev", extras) and "[teach]" in _extra("dev", extras)  # the check can fail
    lab = _extra("lab", extras)
    assert "nbgrader" not in lab and "[teach]" not in lab and "[dev]" not in lab and "jupyterlab" in lab
    if shutil.which("make") is None:
        pytest.skip("no make here")

    def dry_run(target: str) -> list[str]:  # the commands make would run in a fresh clone
        run = subprocess.run(["make", "-n", target, "VENV=/nonexistent/lab", "DEV_VENV=/nonexistent/dev"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    for target in ("lab", "lab-solutions"):
        installs = [line for line in dry_run(target) if "pip install" in line]
        assert installs and all(line.startswith("/nonexistent/lab/bin/python") for line in installs), installs
        assert [line.split()[-1] for line in installs] == ["torch==2.13.0", '".[lab]"'], installs
        assert not any("/nonexistent/dev" in line for line in dry_run(target) if "echo" not in line)
    installs = [line for line in dry_run("pytest") if "pip install" in line]
    assert [line.split()[-1] for line in installs] == ["torch==2.13.0", '".[dev]"']
    assert all(line.startswith("/nonexistent/dev/bin/python") for line in installs)
