import json

import pytest

from diffusion_lessons import exercises
from diffusion_lessons.book import find_manifest, load_book
from diffusion_lessons.quiz import available_quizzes


def test_every_notebook_listed_and_every_listed_notebook_exists(root):
    book = load_book(root / "book.toml")
    listed = [c.notebook for c in book.chapters]
    on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "notebooks").glob("*.ipynb"))
    assert sorted(listed) == on_disk
    assert listed == sorted(listed), "chapters are listed in the order of their numbers"
    assert len(set(listed)) == len(listed)


def test_chapters_name_real_quizzes_exercises_and_markers(root):
    book = load_book(root / "book.toml")
    assert book.title and book.description and book.language == "en"
    for chapter in book.chapters:
        assert chapter.objectives and chapter.minutes > 0
        assert chapter.quiz in available_quizzes()
        source = "\n".join("".join(c["source"]) for c in json.loads((root / chapter.notebook).read_text())["cells"])
        assert f'load_quiz("{chapter.quiz}")' in source
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
])
def test_bad_manifest(tmp_path, text, message):
    path = tmp_path / "book.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_book(path)
