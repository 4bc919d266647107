"""The course manifest, book.toml: the book's metadata and its chapters in order.

Its ``[book]`` table uses mdBook's keys (title, authors, description, language); each
``[[chapters]]`` entry names a notebook, its title, learning objectives and the minutes
it takes on a laptop CPU. The tests check that it and ``notebooks/`` agree.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Book", "Chapter", "StudyTime", "estimate_study_time", "find_manifest", "format_minutes", "load_book"]


@dataclass(frozen=True)
class Chapter:
    """One chapter of book.toml: its notebook, title, objectives, minutes, exercises and quiz.

    Guide: docs/teaching.md
    """

    notebook: str  # path relative to book.toml, e.g. "notebooks/01_markov_noising.ipynb"
    title: str  # shown in the table of contents
    objectives: tuple[str, ...]  # what a learner can do after the chapter
    minutes: float  # time to run top to bottom on 2 CPU cores, as measured
    exercises: tuple[str, ...] = ()  # names of the checked exercises in the chapter
    quiz: str | None = None  # name of the chapter's quiz in diffusion_lessons/quizzes
    study_minutes: float | None = None  # a learner's time: reading, exercises, quiz (estimate_study_time)
    project: bool = False  # a project (book.toml's [[projects]]): open-ended, graded with a rubric

    @property
    def name(self) -> str:
        """The notebook's stem, e.g. "01_markov_noising"."""
        return Path(self.notebook).stem

    @property
    def label(self) -> str:
        """Its number as the course names it: the notebook's prefix, e.g. "08" or "P1" (p1_own_images)."""
        return self.name.split("_", 1)[0].upper()


@dataclass(frozen=True)
class Book:
    """The course manifest (book.toml): its title and chapters, in order.

    Guide: docs/teaching.md
    """

    title: str
    authors: tuple[str, ...]
    description: str
    language: str
    chapters: tuple[Chapter, ...]  # the lessons, in order
    root: Path  # the folder holding book.toml; chapter paths are relative to it
    projects: tuple[Chapter, ...] = ()  # the projects ([[projects]]), after the lessons
    syllabus: str | None = None  # a Markdown page shown in the book after the landing page, e.g. "docs/syllabus.md"

    @property
    def notebooks(self) -> tuple[Chapter, ...]:
        """Every notebook of the course, lessons then projects: what student editions and the grader cover."""
        return self.chapters + self.projects


def find_manifest(start: Path | None = None) -> Path:
    """book.toml in ``start`` (default: the working directory) or a folder above it,
    else beside the installed package (an editable install from a clone).

    Guide: docs/teaching.md
    """
    start = Path.cwd() if start is None else Path(start)
    for folder in [start, *start.resolve().parents, Path(__file__).resolve().parent.parent]:
        if (folder / "book.toml").is_file():
            return folder / "book.toml"
    raise FileNotFoundError(f"no book.toml found in {start} or its parents: run from the course folder")


def load_book(path: str | Path | None = None) -> Book:
    """Read and check book.toml (found with ``find_manifest`` when ``path`` is None).

    Guide: docs/teaching.md
    """
    path = find_manifest() if path is None else Path(path)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    meta = data.get("book")
    if not isinstance(meta, dict) or "title" not in meta:
        raise ValueError(f"{path}: needs a [book] table with at least a title")
    chapters = tuple(_chapter(path, "chapter", n, c, project=False) for n, c in enumerate(data.get("chapters", []), 1))
    projects = tuple(_chapter(path, "project", n, c, project=True) for n, c in enumerate(data.get("projects", []), 1))
    for n, p in enumerate(projects, 1):
        if p.study_minutes is None:
            raise ValueError(f"{path}: project {n} needs study_minutes (a project's time cannot be estimated "
                             "from its notebook: state it)")
    syllabus = meta.get("syllabus")  # checked where it is read: building the book
    if syllabus is not None and not isinstance(syllabus, str):
        raise ValueError(f"{path}: [book] syllabus must be a path relative to book.toml, got {syllabus!r}")
    return Book(meta["title"], tuple(meta.get("authors", ())), meta.get("description", ""),
                meta.get("language", "en"), chapters, path.parent, projects, syllabus)


def _chapter(path: Path, kind: str, n: int, c: dict, project: bool) -> Chapter:
    missing = [k for k in ("notebook", "title", "objectives", "minutes") if k not in c]
    if missing:
        raise ValueError(f"{path}: {kind} {n} is missing {', '.join(missing)}")
    for key in ("minutes", "study_minutes"):
        value = c.get(key, 1)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{path}: {kind} {n} {key} must be a positive number, got {value!r}")
    study = c.get("study_minutes")
    return Chapter(c["notebook"], c["title"], tuple(c["objectives"]), float(c["minutes"]),
                   tuple(c.get("exercises", ())), c.get("quiz"), None if study is None else float(study), project)


def format_minutes(minutes: float) -> str:
    """A time for people: 40 -> "40 min", 120 -> "2 h", 95 -> "1 h 35 min".

    Guide: docs/syllabus.md
    """
    h, m = divmod(round(minutes), 60)
    return " ".join(p for p in (f"{h} h" if h else "", f"{m} min" if m else "") if p) or "0 min"


# ------------------------------------------------------------------ study time
# The rates of the estimate: assumptions, stated (docs/syllabus.md explains them), not measured with students.
READING_WPM = 100  # words of lesson text a minute: about half of silent reading (~240), for text with maths
EQUATION_MINUTES = 1.0  # each displayed equation ($$ ... $$), on top of its words
CODE_CELL_MINUTES = 0.5  # reading a code cell and running it (its computing time is counted apart)
FIGURE_MINUTES = 0.5  # looking at a figure
EXERCISE_MINUTES = 20.0  # a checked exercise: writing it, running the checker, fixing what it names
QUESTION_MINUTES = 1.5  # a quiz question, reading its explanation included
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)


@dataclass(frozen=True)
class StudyTime:
    """A learner's time for one chapter, in minutes, part by part (``estimate_study_time``).

    Guide: docs/syllabus.md
    """

    reading: float
    code: float
    exercises: float
    quiz: float
    computing: float  # the chapter's measured CPU minutes (book.toml's ``minutes``)

    @property
    def total(self) -> float:
        return self.reading + self.code + self.exercises + self.quiz + self.computing

    @property
    def rounded(self) -> int:
        """The total rounded up to 5 minutes: what book.toml states."""
        return int(-(-self.total // 5) * 5)


def estimate_study_time(chapter: Chapter, root: str | Path = ".") -> StudyTime:
    """How long a learner needs for ``chapter``, from its notebook and quiz, at the rates above: words of
    text, displayed equations, code cells and figures, checked exercises, quiz questions, and its computing
    time. A model of the work, stated so a teacher can redo it with rates of their own.

    Guide: docs/syllabus.md
    """
    import nbformat

    nb = nbformat.read(Path(root) / chapter.notebook, as_version=4)
    words = equations = code = figures = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            equations += cell.source.count("$$") // 2
            words += len(_MATH.sub(" x ", cell.source).split())
        elif cell.cell_type == "code" and cell.source.strip():
            code += 1
            figures += sum(any(m in o.get("data", {}) for m in ("image/png", "image/jpeg"))
                           for o in cell.get("outputs", []))
    questions = 0
    if chapter.quiz:
        from .quiz import load_quiz

        questions = len(load_quiz(chapter.quiz).questions)
    return StudyTime(reading=words / READING_WPM + equations * EQUATION_MINUTES,
                     code=code * CODE_CELL_MINUTES + figures * FIGURE_MINUTES,
                     exercises=len(chapter.exercises) * EXERCISE_MINUTES, quiz=questions * QUESTION_MINUTES,
                     computing=chapter.minutes)
