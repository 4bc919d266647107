"""The grader, against honest and hostile submissions.

Every kernel-based test runs against a throwaway copy of the course (the package, book.toml
and the lesson notebooks in a temporary folder), so an attack that rewrites files cannot
damage the checkout; and each checks what a hostile submission must never achieve: a pass
for an exercise it did not solve, a process left running, a file changed outside its own
temporary folder.
"""

import csv
import hashlib
import os
import pathlib
import signal
import sys
import tempfile
import time

import nbformat
import pytest

from diffusion_lessons import grading
from diffusion_lessons.book import load_book
from diffusion_lessons.cli import main
from diffusion_lessons.grading import (
    Exercise,
    clean_text,
    find_exercises,
    grade_submission,
    grade_submissions,
    grades_table,
    write_csv,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = load_book(ROOT / "book.toml")
CHAPTERS = [c.name for c in BOOK.notebooks]
CHAPTER = "01_markov_noising"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; a subreaper needs Linux")

RIGHT_STEP = ("def my_markov_step(x, t, s, e):\n    b = s.betas[t].item()\n"
              "    return math.sqrt(1 - b) * x + math.sqrt(b) * e")
RIGHT_JUMP = ("def my_q_sample(x, t, s, e):\n    a = s.alpha_bars[t].item()\n"
              "    return math.sqrt(a) * x + math.sqrt(1 - a) * e")
# a classic mistake: one step's α_t where the jump needs ᾱ_t
WRONG_JUMP = ("def my_q_sample(x, t, s, e):\n    a = s.alphas[t].item()\n"
              "    return math.sqrt(a) * x + math.sqrt(1 - a) * e")


def _submission(path, *sources, chapter=CHAPTER):
    """A notebook of code cells; ``chapter=None`` leaves the chapter out of its metadata."""
    meta = {"diffusion_lessons": {"chapter": chapter, "edition": "student"}} if chapter is not None else {}
    nb = nbformat.v4.new_notebook(metadata=meta)
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _fingerprint(*folders):
    """Every file under ``folders`` -> sha256 of its bytes."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(pathlib.Path(folder).rglob("*")) if p.is_file()}


def _children():
    """This process's children, from /proc: pid -> start time."""
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            if int(fields[1]) == os.getpid():
                found[int(entry.name)] = fields[19]
    return found


def _is_forger(pid):
    """Whether process ``pid`` runs the loop of test_no_process_outlives_its_submission."""
    try:
        return b"forged" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False




@pytest.fixture
def grade(course, tmp_path, tmp_path_factory, monkeypatch):
    """grade(*paths, **options): the grades, after checking what the run left behind: no process of its
    own, no work folder, and (unless ``tampering=True``, where the grader restored them) no changed file.
    The grader's temporary folders go to ``grade.work``."""
    work = tmp_path_factory.mktemp("work")
    monkeypatch.setattr(tempfile, "tempdir", str(work))

    def run(*paths, tampering=False, **options):
        options = {"timeout": 20, "check_seconds": 10, **options}
        files = _fingerprint(course.root, tmp_path)
        children = _children()
        began = time.monotonic()
        grades = grade_submissions(paths, course.book, package=course.package, **options)
        seconds = time.monotonic() - began
        assert _children() == children, "a process of the submission is still running"
        assert not [p for p in work.iterdir() if "modified" not in p.name], "a work folder was left behind"
        after = _fingerprint(course.root, tmp_path)
        assert after == files, f"changed: {[p for p in after.keys() | files.keys() if after.get(p) != files.get(p)]}"
        assert tampering or not any(g.tampered for g in grades), [g.tampered for g in grades]
        return grades[0] if len(paths) == 1 else grades, seconds

    run.work = work
    return run


# ------------------------------------------------------------------ finding exercises and chapters (no kernel)
def test_exercises_are_checker_calls_on_functions_from_solution_cells():
    found = {c.name: find_exercises(nbformat.read(BOOK.root / c.notebook, as_version=4)) for c in BOOK.notebooks}
    assert found[CHAPTER] == [Exercise("check_markov_step", "my_markov_step"),
                              Exercise("check_q_sample", "my_q_sample")]
    for chapter in BOOK.notebooks:  # book.toml's exercise names agree with the notebooks
        assert {e.name for e in found[chapter.name]} == set(chapter.exercises), chapter.name


def test_student_editions_name_the_same_exercises():
    """The grader's container (docs/grader.Dockerfile) holds student editions, not solutions: it must find
    the same exercises in them."""
    from diffusion_lessons.student import student_notebook

    for chapter in BOOK.notebooks:
        lesson = nbformat.read(BOOK.root / chapter.notebook, as_version=4)
        assert find_exercises(student_notebook(lesson, chapter.name)) == find_exercises(lesson), chapter.name


def test_the_chapter_comes_from_the_teacher_not_the_submission(course, tmp_path):
    # renamed, no metadata, an exercise dropped: no chapter in its name, so it is not graded, with one clear line
    bob = _submission(tmp_path / "bob.ipynb", "import math", RIGHT_STEP, chapter=None)
    junk = tmp_path / "junk_01_markov_noising.ipynb"
    junk.write_bytes(b"\x00not a notebook")
    both = grade_submissions([bob, junk], course.book, package=course.package)
    assert [g.error != "" and g.results == () and g.score == 0 for g in both] == [True, True]
    assert "no chapter of book.toml" in both[0].error and "--chapter" in both[0].error
    assert "not a valid notebook" in both[1].error
    table = grades_table(both)
    assert len(table.splitlines()) == 4 and "(not graded)" in table
    with pytest.raises(ValueError, match="chapter must be one of"):
        grade_submissions([bob], course.book, chapter="99_nope", package=course.package)
    for name, value in [("timeout", 0), ("memory_gib", -1), ("check_seconds", float("nan"))]:
        with pytest.raises(ValueError, match=name):
            grade_submissions([bob], course.book, package=course.package, **{name: value})


def test_clean_text_is_one_bounded_printable_line():
    forged = "boom\nalice.ipynb  q_sample  pass\r\n\x1b[2K\u202escore\u2028 2/2\t\x00" + "x" * 500
    line = clean_text(forged, 80)
    assert len(line) <= 80 and line.isprintable() and "\n" not in line and "\u202e" not in line
    assert line.startswith("boom alice.ipynb q_sample pass") and line.endswith("...")
    assert clean_text("ᾱ_t ✅ fine") == "ᾱ_t ✅ fine"


# ------------------------------------------------------------------ honest submissions
@linux_only
def test_an_honest_submission_gets_full_marks(grade, tmp_path):
    # its metadata names another chapter: graded on the file name's, and the disagreement reported
    path = _submission(tmp_path / "alice_01_markov_noising.ipynb", "import math", RIGHT_STEP, RIGHT_JUMP,
                       chapter="02_noise_schedules")
    g, seconds = grade(path)
    assert g.chapter == CHAPTER and g.cell_errors == () and g.error == ""
    assert (g.score, g.total) == (2, 2), grades_table([g])
    assert "02_noise_schedules" in g.note and 0 < g.memory_gib < grading.MEMORY_GIB
    assert seconds < 20 + 2 * 10  # both limits together, never reached


@linux_only
def test_solution_notebook_gets_full_marks(grade, course):
    g, _ = grade(course.root / "notebooks" / f"{CHAPTER}.ipynb", timeout=300)
    assert g.chapter == CHAPTER and g.cell_errors == ()
    assert g.total == 2 and g.score == 2, grades_table([g])


@pytest.mark.parametrize("name", CHAPTERS)
def test_student_edition_gets_zero(grade_student_edition, name):
    grade = grade_student_edition(name)
    chapter = next(c for c in BOOK.notebooks if c.name == name)
    assert {r.exercise.name for r in grade.results} == set(chapter.exercises) and grade.score == 0
    assert {r.status for r in grade.results} <= {"not implemented"}


@linux_only
def test_a_mixed_submission_is_graded_per_exercise(grade, tmp_path):
    path = _submission(tmp_path / "alice.ipynb", "import math", RIGHT_STEP, WRONG_JUMP, "1 / 0")
    g, _ = grade(path, chapter=CHAPTER)
    by_name = {r.exercise.name: r for r in g.results}
    assert by_name["markov_step"].passed and by_name["q_sample"].status == "failed"
    assert "ᾱ_t" in by_name["q_sample"].message  # the checker's diagnosis
    assert g.cell_errors == ("cell 4: ZeroDivisionError: division by zero",)
    table = grades_table([g])
    assert "markov_step (my_markov_step)" in table and "q_sample (my_q_sample)" in table and "1/2" in table
    write_csv([g], tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["exercise"], r["status"], r["passed"]) for r in rows] == [
        ("markov_step", "passed", "1"), ("q_sample", "failed", "0")]
    # the exercises come from the lesson notebook: one the student deleted is "missing", not skipped
    g, _ = grade(_submission(tmp_path / "bob.ipynb", "import math", RIGHT_STEP), chapter=CHAPTER)
    assert [r.status for r in g.results] == ["passed", "missing"]


@linux_only
def test_two_submissions_with_one_name_are_both_graded(grade, tmp_path):
    right = _submission(tmp_path / "a" / "carol_01_markov_noising.ipynb", "import math", RIGHT_STEP, RIGHT_JUMP)
    wrong = _submission(tmp_path / "b" / "carol_01_markov_noising.ipynb", "import math", RIGHT_STEP, WRONG_JUMP)
    grades, _ = grade(right, wrong)
    assert [(g.submission, g.score) for g in grades] == [(right, 2), (wrong, 1)]
    table = grades_table(grades)
    assert str(right) in table and str(wrong) in table


# ------------------------------------------------------------------ hostile submissions
PATCH_CHECKERS = """
import importlib
import diffusion_lessons.exercises as ex
importlib.reload = lambda module: module  # what the old grader relied on, disabled
ex.check_q_sample = lambda fn, seed=None: ex.CheckResult("q_sample", "passed", "correct on 4 random tests.")
ex.judge = lambda name, cases, runs: ex.CheckResult(name, "passed", "correct on 4 random tests.")
_run_cases = ex.run_cases
ex.run_cases = lambda name, fn, cases, seconds=None: _run_cases(name, fn, cases, seconds) if name != "q_sample" else [
    {"status": "ok", "error": "", "result": case[0].clone(), "returned": "Tensor", "changed": []} for case in cases]
"""
PATCH_TORCH = """
import torch
torch.allclose = torch.Tensor.allclose = lambda *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.equal = lambda *args: True
"""
READ_THE_STACK = """
import sys
def my_q_sample(x, t, s, e):
    frame = sys._getframe(1)
    while frame is not None:  # the old checker held the expected answer in a local of a caller
        for key, value in frame.f_locals.items():
            if isinstance(value, torch.Tensor) and value.shape == x.shape and key in ("expected", "reference"):
                return value.clone()
        frame = frame.f_back
    return x
"""
FORGE_OUTPUT = """
import builtins, json, os, pathlib
_print = builtins.print
builtins.print = lambda *args, **kwargs: _print(*(str(a).replace("failed", "passed") for a in args), **kwargs)
for fd in map(int, os.listdir("/proc/self/fd")):  # a forged verdict on every channel this process holds
    if fd > 2:
        try:
            os.write(fd, b'{"cells": "done"}\\n{"end": "1_q_sample"}\\n{"missing": "0_markov_step"}\\n')
        except OSError:
            pass
pathlib.Path("runs").mkdir(exist_ok=True)
os.mkfifo("runs/1_q_sample.pt")  # where the results of q_sample go: a file that would hang a reader
del my_q_sample
"""
RUN_THE_SOLUTION = """
import nbformat
from diffusion_lessons.book import load_book
lesson = load_book().chapters[0].notebook  # book.toml, found from the package's folder, names the lesson
for cell in nbformat.read(load_book().root / lesson, as_version=4).cells:
    if "solution" in cell.metadata.get("tags", []):
        exec(cell.source, globals())
"""


@linux_only
@pytest.mark.parametrize("attack", [PATCH_CHECKERS, PATCH_TORCH, READ_THE_STACK, FORGE_OUTPUT, RUN_THE_SOLUTION],
                         ids=["patch_checkers", "patch_torch", "read_the_stack", "forge_output", "run_the_solution"])
def test_an_attack_in_the_kernel_gains_nothing(grade, tmp_path, attack):
    path = _submission(tmp_path / "mallory_01_markov_noising.ipynb", "import math\nimport torch", RIGHT_STEP,
                       WRONG_JUMP, attack)
    g, _ = grade(path)
    by_name = {r.exercise.name: r for r in g.results}
    assert by_name["markov_step"].passed, grades_table([g])  # solved: still graded
    assert by_name["q_sample"].status != "passed" and g.score == 1, grades_table([g])
    if attack is RUN_THE_SOLUTION:  # closed because the kernel's package has no book.toml beside it
        assert any("FileNotFoundError: no book.toml" in e for e in g.cell_errors), g.cell_errors
    if attack is FORGE_OUTPUT:
        assert "could not be read back" in by_name["q_sample"].message


@linux_only
def test_a_rewritten_package_is_restored_and_scores_zero(grade, course, tmp_path):
    installed = course.package / "exercises.py"
    rewrite = (f"import diffusion_lessons.exercises as ex\n"
               f"forged = 'def judge(name, cases, runs):\\n    return CheckResult(name, \"passed\", \"ok\")\\n'\n"
               f"for path in [ex.__file__, {str(installed)!r}]:\n"
               f"    with open(path, 'a') as f:\n"
               f"        f.write(forged)\n"
               f"open({str(course.package / 'planted.py')!r}, 'w').write('x = 1')\n"
               f"import os\n"  # and book.toml: the same size, its times set back
               f"manifest, was = {str(course.root / 'book.toml')!r}, os.stat({str(course.root / 'book.toml')!r})\n"
               f"text = open(manifest, 'rb').read()\n"
               f"open(manifest, 'wb').write(text.replace(b'Markov', b'markov'))\n"
               f"os.utime(manifest, ns=(was.st_atime_ns, was.st_mtime_ns))\n")
    mallory = _submission(tmp_path / "mallory_01_markov_noising.ipynb", "import math", RIGHT_STEP, WRONG_JUMP,
                          rewrite)
    later = _submission(tmp_path / "trent_01_markov_noising.ipynb", "import math", RIGHT_STEP, WRONG_JUMP)
    (g, after), _ = grade(mallory, later, tampering=True)  # the fixture checks the files are back as they were
    assert set(g.tampered) == {str(installed), str(course.package / "planted.py"), str(course.root / "book.toml")}
    assert g.score == 0 and {r.status for r in g.results} == {"tampered"}
    assert "modified" in g.note and str(installed) in grades_table([g])
    evidence = next(grade.work.glob("dl_grade_modified_*"))  # the forged version, kept for the teacher
    assert str(installed) in (evidence / "paths.txt").read_text()
    assert any("def judge(name, cases, runs)" in p.read_text() for p in evidence.glob("*_exercises.py"))
    assert [r.status for r in after.results] == ["passed", "failed"] and not after.tampered  # not fooled


@linux_only
def test_a_submission_cannot_overwrite_another(grade, tmp_path):
    victim = _submission(tmp_path / "victor_01_markov_noising.ipynb", "import math", RIGHT_STEP, RIGHT_JUMP)
    attack = f"import nbformat\nnbformat.write(nbformat.v4.new_notebook(), {str(victim)!r})"
    mallory = _submission(tmp_path / "mallory_01_markov_noising.ipynb", "import math", attack)
    (g, v), _ = grade(mallory, victim, tampering=True)
    assert g.tampered == (str(victim.resolve()),) and g.score == 0
    assert v.score == 2 and not v.tampered  # graded on what it handed in, read before anything ran


@linux_only
def test_no_process_outlives_its_submission(grade, tmp_path, tmp_path_factory):
    evidence = tmp_path_factory.mktemp("evidence")  # where the attack says what it started (left out of the check)
    target, pids = evidence / "grades.csv", evidence / "pids.txt"
    loop = (f"import os, time\nwhile True:\n    time.sleep(0.1)\n"
            f"    if os.path.exists({str(target)!r}): open({str(target)!r}, 'w').write('forged')")
    attack = (f"import os, subprocess, sys\n"
              f"loop = {loop!r}\n"
              f"child = subprocess.Popen([sys.executable, '-c', loop], start_new_session=True)\n"
              f"with open({str(pids)!r}, 'a') as f:\n"
              f"    f.write(f'{{child.pid}}\\n')\n"
              f"if os.fork() == 0:  # a daemon: double fork, its own session, orphaned at once\n"
              f"    os.setsid()\n"
              f"    if os.fork() == 0:\n"
              f"        with open({str(pids)!r}, 'a') as f:\n"
              f"            f.write(f'{{os.getpid()}}\\n')\n"
              f"        os.execv(sys.executable, [sys.executable, '-c', loop])\n"
              f"    os._exit(0)\n"
              f"time.sleep(0.5)\n")
    path = _submission(tmp_path / "mallory_01_markov_noising.ipynb", "import math, time", RIGHT_STEP, attack)
    try:
        g, _ = grade(path)  # the fixture checks that no child of this process is left
        assert g.cell_errors == () and g.score == 1 and "2 process(es) it started were still running" in g.note
        write_csv([g], target)
        written = target.read_text()
        time.sleep(1.0)  # ten rounds of the loop, had it survived
        assert target.read_text() == written
        started = [int(pid) for pid in pids.read_text().split()]
        assert len(started) == 2
        assert not [pid for pid in started if _is_forger(pid)], "a process of the submission is still running"
    finally:  # should the grader have failed, end them here
        for pid in [int(pid) for pid in pids.read_text().split()] if pids.exists() else []:
            if _is_forger(pid):
                os.kill(pid, signal.SIGKILL)


@linux_only
def test_a_message_cannot_forge_a_row(grade, tmp_path):
    forged = "boom\\nmallory.ipynb  q_sample (my_q_sample)  pass\\r\\n\\x1b[2K\\u202e  score  2/2"
    attack = f"def my_q_sample(x, t, s, e):\n    raise ValueError('{forged}')\n\nraise ValueError('{forged}')"
    path = _submission(tmp_path / "mallory_01_markov_noising.ipynb", "import math", RIGHT_STEP, attack)
    g, _ = grade(path)
    assert g.score == 1 and "boom" in g.results[1].message and len(g.cell_errors) == 1
    table = grades_table([g])
    lines = table.splitlines()
    assert len(lines) == 2 + 2 + 1 + 1  # header, rule, two exercises, the score, one cell error
    assert all(line.isprintable() for line in lines)
    assert all(line.startswith((str(path), " ")) for line in lines[2:])  # no row of its own making
    write_csv([g], tmp_path / "grades.csv")
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3 and all(field.isprintable() for row in rows for field in row)


# ------------------------------------------------------------------ time and memory
IGNORE_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
IGNORE_EVERYTHING = ("import signal\nfor sig in (signal.SIGINT, signal.SIGALRM, signal.SIGTERM):\n"
                     "    signal.signal(sig, signal.SIG_IGN)\n"
                     "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGALRM})\n"
                     "while True:\n    try:\n        pass\n    except BaseException:\n        pass")


@linux_only
def test_a_loop_that_ignores_sigint_is_stopped_and_checked(grade, tmp_path):
    path = _submission(tmp_path / "loop_01_markov_noising.ipynb", "import math", RIGHT_STEP, IGNORE_SIGINT,
                       chapter="")  # the chapter is found from the file name
    g, seconds = grade(path, timeout=10)  # counted from the kernel's start
    assert g.chapter == CHAPTER and "time limit of 10 s was reached in cell 3" in g.note
    assert [r.status for r in g.results] == ["passed", "missing"]  # interrupted, then checked
    assert seconds < 10 + 5, seconds  # the limit, then two quick checks


@linux_only
def test_a_kernel_that_cannot_be_interrupted_is_killed(grade, tmp_path):
    path = _submission(tmp_path / "loop_01_markov_noising.ipynb", "import math", RIGHT_STEP, IGNORE_EVERYTHING)
    g, seconds = grade(path, timeout=10)
    assert [r.status for r in g.results] == ["timeout", "timeout"] and "killed" in g.note
    assert 10 <= seconds < 10 + 8, seconds  # the limit and a few seconds: killed, not waited for


@linux_only
def test_a_function_that_cannot_be_interrupted_times_out(grade, tmp_path):
    hang = ("def my_q_sample(x, t, s, e):\n    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "    while True:\n        pass")
    path = _submission(tmp_path / "slow_01_markov_noising.ipynb", "import math", RIGHT_STEP, hang)
    g, seconds = grade(path, check_seconds=4)
    assert [r.status for r in g.results] == ["passed", "timeout"], grades_table([g])
    assert "4 s" in g.results[1].message and seconds < 20, seconds  # the cells' limit (20 s) was not waited for


@linux_only
def test_a_memory_hog_is_stopped_by_the_cap(grade, tmp_path):
    hogs = ["hog = bytearray(8 * 2**30)",  # 8 GiB at once, four times the cap
            "hog = torch.ones(2**31)",  # 8 GiB of float32, through torch's allocator
            "hog = []\nwhile True:\n    hog.append(b'x' * 2**26)"]  # 64 MiB at a time, written
    path = _submission(tmp_path / "hog_01_markov_noising.ipynb", "import math\nimport torch", RIGHT_STEP, *hogs,
                       "del hog", RIGHT_JUMP)
    g, _ = grade(path, memory_gib=2)
    assert len(g.cell_errors) == 3 and all("MemoryError" in e or "memory" in e for e in g.cell_errors), g.cell_errors
    assert g.score == 2 and g.memory_gib <= 2  # the kernel lived on, and every exercise was checked


# ------------------------------------------------------------------ the command line
@linux_only
def test_cli_prints_a_table(course, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grading, "_installed_package", lambda: course.package)
    manifest = str(course.root / "book.toml")
    path = _submission(tmp_path / "carol.ipynb", "import math", RIGHT_STEP, WRONG_JUMP)
    assert main(["grade", str(path), "--manifest", manifest, "--chapter", CHAPTER, "--timeout", "20",
                 "--memory", "4", "--csv", str(tmp_path / "g.csv")]) == 0
    out = capsys.readouterr().out
    assert "carol.ipynb" in out and "pass" in out and "FAIL" in out and "1/2" in out
    assert (tmp_path / "g.csv").is_file()
    for argv, words in [([str(tmp_path / "nope.ipynb")], "no such submission"),
                        ([str(path), "--chapter", "99_nope"], "chapter must be one of"),
                        ([str(path), "--memory", "0"], "memory_gib must be a positive number"),
                        ([str(path), "--timeout", "-1"], "timeout must be a positive number")]:
        assert main(["grade", *argv, "--manifest", manifest]) == 2
        err = capsys.readouterr().err
        assert err.startswith("diffusion-lessons: error: ") and words in err and err.count("\n") == 1, err


def test_grade_submission_is_grade_submissions_of_one(course, tmp_path):
    path = _submission(tmp_path / "bob.ipynb", "pass", chapter=None)  # no chapter: nothing runs
    assert grade_submission(path, course.book).error == grade_submissions([path], course.book)[0].error != ""
