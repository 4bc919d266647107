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
def grade_student_edition(tmp_path_factory):
    """grade_student_edition("01_markov_noising"): the grader's result for that chapter's student edition.

    Each edition is executed once per session, on demand (a fresh kernel, smoke budget), and
    serves both tests/test_student.py (it runs top to bottom) and tests/test_grading.py (zero marks).
    """
    from diffusion_lessons.book import load_book
    from diffusion_lessons.grading import grade_submission
    from diffusion_lessons.student import write_student_editions

    book = load_book(ROOT / "book.toml")
    written = write_student_editions(tmp_path_factory.mktemp("student"), book)
    paths = {chapter.name: path for chapter, path in zip(book.chapters, written, strict=True)}
    grades = {}

    def grade(name: str):
        if name not in grades:
            grades[name] = grade_submission(paths[name], book, timeout=900, budget="smoke")
        return grades[name]

    return grade
