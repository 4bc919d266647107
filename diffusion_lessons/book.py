"""The course manifest, book.toml: the book's metadata and its chapters in order.

Its ``[book]`` table uses mdBook's keys (title, authors, description, language); each
``[[chapters]]`` entry names a notebook, its title, learning objectives and the minutes
it takes on a laptop CPU. The tests check that it and ``notebooks/`` agree.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Book", "Chapter", "find_manifest", "load_book"]


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

    @property
    def name(self) -> str:
        """The notebook's stem, e.g. "01_markov_noising"."""
        return Path(self.notebook).stem


@dataclass(frozen=True)
class Book:
    """The course manifest (book.toml): its title and chapters, in order.

    Guide: docs/teaching.md
    """

    title: str
    authors: tuple[str, ...]
    description: str
    language: str
    chapters: tuple[Chapter, ...]
    root: Path  # the folder holding book.toml; chapter paths are relative to it


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
    chapters = []
    for n, c in enumerate(data.get("chapters", []), 1):
        missing = [k for k in ("notebook", "title", "objectives", "minutes") if k not in c]
        if missing:
            raise ValueError(f"{path}: chapter {n} is missing {', '.join(missing)}")
        if not isinstance(c["minutes"], (int, float)) or c["minutes"] <= 0:
            raise ValueError(f"{path}: chapter {n} minutes must be a positive number, got {c['minutes']!r}")
        chapters.append(Chapter(c["notebook"], c["title"], tuple(c["objectives"]), float(c["minutes"]),
                                tuple(c.get("exercises", ())), c.get("quiz")))
    return Book(meta["title"], tuple(meta.get("authors", ())), meta.get("description", ""),
                meta.get("language", "en"), tuple(chapters), path.parent)
