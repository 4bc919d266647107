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
    paths = {chapter.name: path for chapter, path in zip(book.chapters, written, strict=True)}
    grades = {}

    def grade(name: str):
        if name not in grades:
            grades[name] = grade_submission(paths[name], book, timeout=900, budget="smoke", package=course.package)
        return grades[name]

    return grade
