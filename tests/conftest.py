import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture
def gen() -> torch.Generator:
    """A fixed-seed generator: statistical tests are repeatable, and still able to fail."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """A throwaway course for the grader: a copy of the package, book.toml and the lesson notebooks.

    The grader restores any course file that changes while a submission runs; grading a copy
    keeps it from ever touching the checkout (e.g. a file being edited during the tests).
    """
    import shutil
    from types import SimpleNamespace

    import diffusion_lessons
    from diffusion_lessons.book import load_book

    root = tmp_path_factory.mktemp("course").resolve()
    package = pathlib.Path(diffusion_lessons.__file__).resolve().parent
    shutil.copytree(package, root / "diffusion_lessons", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "book.toml", root / "book.toml")
    shutil.copytree(ROOT / "docs", root / "docs")  # the syllabus that book.toml names
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return SimpleNamespace(root=root, book=load_book(root / "book.toml"), package=root / "diffusion_lessons")


@pytest.fixture(scope="session")
def grade_student_edition(tmp_path_factory, course):
    """grade_student_edition("01_markov_noising"): the grader's result for that chapter's student edition.

    Each edition is executed once per session, on demand (a fresh kernel, smoke budget), and
    serves both tests/test_student.py (it runs top to bottom) and tests/test_grading.py (zero marks).
    """
    from diffusion_lessons.grading import grade_submission
    from diffusion_lessons.student import write_student_editions

    book = course.book
    written = write_student_editions(tmp_path_factory.mktemp("student"), book)
    paths = {chapter.name: path for chapter, path in zip(book.notebooks, written, strict=True)}
    grades = {}

    def grade(name: str):
        if name not in grades:
            grades[name] = grade_submission(paths[name], book, timeout=900, budget="smoke", package=course.package)
        return grades[name]

    return grade


@pytest.fixture
def grade_two_submissions(tmp_path):
    """grade(notebook, exercises, solution, checks, wrong) -> (right, wrong) grading results, on a throwaway course.

    ``solution`` is the lesson's solution cell (with nbgrader's markers), ``checks`` its checker calls; the right
    submission is the solution without the markers, as a learner would copy it.
    """
    return lambda *args: _grade_two(tmp_path, *args)


def _grade_two(tmp_path: pathlib.Path, notebook: str, exercises: list[str], solution: str, checks: str, wrong: str):
    import shutil

    import nbformat

    import diffusion_lessons
    from diffusion_lessons.book import load_book
    from diffusion_lessons.grading import grade_submissions

    course = tmp_path / "course"
    package = course / "diffusion_lessons"
    shutil.copytree(pathlib.Path(diffusion_lessons.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (course / "book.toml").write_text(
        f'[book]\ntitle = "t"\n\n[[chapters]]\nnotebook = "notebooks/{notebook}.ipynb"\ntitle = "t"\n'
        f'objectives = ["o"]\nminutes = 1\nexercises = {list(exercises)!r}\n'.replace("'", '"'))
    lesson = nbformat.v4.new_notebook()
    lesson.cells = [nbformat.v4.new_code_cell(solution, metadata={"tags": ["solution"]}),
                    nbformat.v4.new_code_cell(checks)]
    (course / "notebooks").mkdir()
    nbformat.write(lesson, course / "notebooks" / f"{notebook}.ipynb")
    subs = []
    answer = "\n".join(line for line in solution.splitlines() if "### " not in line)  # a learner's own copy
    for name, source in [("alice", answer), ("mallory", wrong)]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        subs.append(tmp_path / f"{name}_{notebook}.ipynb")
        nbformat.write(nb, subs[-1])
    return grade_submissions(subs, load_book(course / "book.toml"), package=package, timeout=60, check_seconds=20)


@pytest.fixture
def one_thread():
    """Tiny tensors: on a busy machine torch's thread pool spins and makes checker tests slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def wrong_seeds():
    """wrong_seeds(check, fn, mistake): the seeds 0-99 on which ``check(fn)`` does not fail with ``mistake`` named,
    each with what the checker said. A wrong answer must be named on every one of them."""
    def seeds(check, fn, mistake):
        wrong = []
        for seed in range(100):
            result = check(fn, seed=seed)
            if result.passed or result.mistake != mistake:
                wrong.append(f"seed {seed}: {result.status} (mistake={result.mistake!r}): {result.message}")
        return wrong

    return seeds
