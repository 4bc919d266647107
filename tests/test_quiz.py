import textwrap

import pytest

from diffusion_lessons.quiz import available_quizzes, load_quiz

GOOD = """
title = "A tiny quiz"

[[questions]]
difficulty = "easy"
question = "What is 1 + 1?"
hint = "Count on your fingers."
explanation = "One and one make two."
options = [
  { text = "2", correct = true },
  { text = "11", why = "Joining the digits is string concatenation, not addition." },
]

[[questions]]
difficulty = "hard"
question = "What is 2 < 3 & x?"
hint = "Precedence."
explanation = "& binds tighter than <."
options = [{ text = "depends", correct = true }, { text = "True" }]

[[cards]]
front = "β_t is a…"
back = "variance"
"""


def _write(tmp_path, text, name="q.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_and_render(tmp_path):
    quiz = load_quiz(_write(tmp_path, GOOD))
    assert quiz.title == "A tiny quiz" and len(quiz.questions) == 2 and quiz.questions[0].answer == 0
    text = quiz.to_markdown()
    assert "What is 1 + 1?" in text and "*Answer:* A." in text and "concatenation" in text
    hidden = quiz.to_markdown(answers=False)
    assert "Answer" not in hidden and "Hint" not in hidden and "variance" not in hidden
    page = quiz.to_html()
    assert page.count("<details>") == 5  # hint + answer per question, one per card: folded away
    assert "&lt; 3 &amp; x" in page  # escaped
    assert "2 questions (1 easy, 0 medium, 1 hard), 1 recall cards" in repr(quiz)


def test_widget_answers_back(tmp_path):
    pytest.importorskip("ipywidgets")
    quiz = load_quiz(_write(tmp_path, GOOD))
    box = quiz.widget()
    first = box.children[1]  # title row, then one box per question
    _, choice, buttons, feedback = first.children
    check, hint = buttons.children
    check.click()
    assert "Pick an option" in feedback.value
    choice.value = 1
    check.click()
    assert "Not quite" in feedback.value and "concatenation" in feedback.value
    hint.click()
    assert "fingers" in feedback.value
    choice.value = 0
    check.click()
    assert "Right" in feedback.value and "make two" in feedback.value
    card = box.children[-1]
    _, reveal, back = card.children
    reveal.click()
    assert "variance" in back.value and reveal.description == "Hide"
    bundle = quiz._repr_mimebundle_()
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(bundle)


@pytest.mark.parametrize("change, message", [
    (('correct = true }, { text = "True" }', 'correct = true }, { text = "True", correct = true }'),
     "exactly one with correct = true"),
    (('difficulty = "hard"', 'difficulty = "expert"'), "difficulty must be one of"),
    (('difficulty = "easy"', 'difficulty = "medium"', 'difficulty = "hard"', 'difficulty = "easy"'),
     "questions must go from easy to hard"),
    (('hint = "Precedence."', ''), "question 2: missing or empty 'hint'"),
    (('back = "variance"', 'back = ""'), "card 1: missing or empty 'back'"),
])
def test_malformed_quizzes_are_named(tmp_path, change, message):
    text = GOOD
    for old, new in zip(change[::2], change[1::2], strict=True):
        text = text.replace(old, new, 1)
    with pytest.raises(ValueError, match=message):
        load_quiz(_write(tmp_path, text))


def test_unknown_quiz_name():
    with pytest.raises(ValueError, match="name must be one of"):
        load_quiz("99_nothing")


@pytest.mark.parametrize("name", available_quizzes())
def test_shipped_quizzes_are_well_formed(name):
    quiz = load_quiz(name)
    assert len(quiz.questions) >= 4 and len(quiz.cards) >= 3
    assert quiz.questions[0].difficulty == "easy" and quiz.questions[-1].difficulty == "hard"
    for q in quiz.questions:
        wrong = [o for o in q.options if not o.correct]
        assert all(o.why for o in wrong), f"{name}: every wrong option should name the mistake behind it"
