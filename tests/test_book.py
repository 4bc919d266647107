import json

import pytest

from diffusion_lessons import exercises
from diffusion_lessons.book import estimate_study_time, find_manifest, format_minutes, load_book
from diffusion_lessons.quiz import available_quizzes


def test_every_notebook_listed_and_every_listed_notebook_exists(root):
    book = load_book(root / "book.toml")
    listed = [c.notebook for c in book.notebooks]
    on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "notebooks").glob("*.ipynb"))
    assert sorted(listed) == on_disk
    assert listed == sorted(listed), "chapters, then projects, are listed in the order of their names"
    assert len(set(listed)) == len(listed)
    assert all(c.name.startswith("p") and c.project for c in book.projects)
    assert not any(c.project for c in book.chapters)
    assert len(book.projects) >= 3


def test_study_times_follow_the_lessons_as_they_stand(root):
    """book.toml's study time of each lesson is the estimate of its notebook and quiz today (docs/syllabus.md
    explains the rates): a lesson that grows, or gains an exercise, must say so."""
    book = load_book(root / "book.toml")
    for chapter in book.chapters:
        estimate = estimate_study_time(chapter, root)
        assert chapter.study_minutes == estimate.rounded, (chapter.name, estimate)
        assert estimate.exercises > 0 or not chapter.exercises
    for project in book.projects:
        assert project.study_minutes >= 4 * 60  # an assignment of a week, stated in its brief
        source = (root / project.notebook).read_text(encoding="utf-8")
        assert "## Rubric" in source and "## Part A" in source and "## Part C" in source, project.name
    assert format_minutes(95) == "1 h 35 min" and format_minutes(120) == "2 h" and format_minutes(40) == "40 min"


def test_the_syllabus_follows_the_course(root):
    """Every lesson and project is in the syllabus with its study time; its links to notebooks resolve."""
    book = load_book(root / "book.toml")
    text = (root / book.syllabus).read_text(encoding="utf-8")
    for c in book.notebooks:
        assert f"../{c.notebook}" in text, f"the syllabus never links {c.notebook}"
        assert format_minutes(c.study_minutes) in text, f"the syllabus does not state {c.name}'s study time"
    readme = (root / "README.md").read_text(encoding="utf-8")
    for c in book.notebooks:  # the README's tables show the same study times
        row = next((line for line in readme.splitlines() if f"({c.notebook})" in line and line.startswith("|")), "")
        assert f"| {format_minutes(c.study_minutes)} |" in row, f"README's row for {c.name}: {row!r}"


def test_chapters_name_real_quizzes_exercises_and_markers(root):
    book = load_book(root / "book.toml")
    assert book.title and book.description and book.language == "en"
    for chapter in book.notebooks:
        assert chapter.objectives and chapter.minutes > 0
        assert chapter.quiz in available_quizzes() or (chapter.project and chapter.quiz is None)
        source = "\n".join("".join(c["source"]) for c in json.loads((root / chapter.notebook).read_text())["cells"])
        assert chapter.quiz is None or f'load_quiz("{chapter.quiz}")' in source
        for name in chapter.exercises:
            assert callable(getattr(exercises, f"check_{name}")), name
            assert f"check_{name}(" in source, f"{chapter.notebook} never calls check_{name}"
        assert source.count("### BEGIN SOLUTION") == source.count("### END SOLUTION") >= len(chapter.exercises)


def test_find_manifest_walks_up(root, monkeypatch):
    monkeypatch.chdir(root / "notebooks")
    assert find_manifest() == root / "book.toml"


@pytest.mark.parametrize("text, message", [
    ("[[chapters]]\nnotebook='a.ipynb'", r"\[book\] table"),
    ("[book]\ntitle='t'\n[[chapters]]\nnotebook='a.ipynb'\ntitle='x'", "chapter 1 is missing objectives, minutes"),
    ("[book]\ntitle='t'\n[[chapters]]\nnotebook='a'\ntitle='x'\nobjectives=[]\nminutes=0",
     "minutes must be a positive number"),
    ("[book]\ntitle='t'\n[[chapters]]\nnotebook='a'\ntitle='x'\nobjectives=[]\nminutes=1\nstudy_minutes='2 h'",
     "chapter 1 study_minutes must be a positive number, got '2 h'"),
    ("[book]\ntitle='t'\n[[projects]]\nnotebook='p'\ntitle='x'\nobjectives=[]\nminutes=1",
     "project 1 needs study_minutes"),
    ("[book]\ntitle='t'\nsyllabus=3", "syllabus must be a path relative to book.toml, got 3"),
])
def test_bad_manifest(tmp_path, text, message):
    path = tmp_path / "book.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_book(path)
