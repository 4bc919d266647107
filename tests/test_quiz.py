import html
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter

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
    first = quiz.questions[0]
    assert quiz.title == "A tiny quiz" and len(quiz.questions) == 2 and first.options[first.answer].text == "2"
    text = quiz.to_markdown()
    assert "What is 1 + 1?" in text and f"*Answer:* {chr(65 + first.answer)}." in text and "concatenation" in text
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
    right = quiz.questions[0].answer  # the options are shown in load_quiz's order
    check.click()
    assert "Pick an option" in feedback.value
    choice.value = 1 - right
    check.click()
    assert "Not quite" in feedback.value and "concatenation" in feedback.value
    hint.click()
    assert "fingers" in feedback.value
    choice.value = right
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
    (('hint = "Precedence."', 'hint = "Precedence."\nkeep_order = "yes"'),
     "question 2: keep_order must be true or false"),
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


# -- display order: the answer's letter carries no information ----------------------------------
LETTERS = "ABCDEFGH"
MAX_SHARE = 0.4  # no letter may hold more than 40% of a quiz's answers


def _letters(quiz) -> list[str]:
    return [LETTERS[q.answer] for q in quiz.questions]


def _synthetic(tmp_path, sizes, keep=(), reverse=False, name="synthetic.toml"):
    """A quiz whose question k has sizes[k] options, the correct one written first (last if `reverse`)."""
    blocks = ['title = "Synthetic"']
    for k, size in enumerate(sizes):
        options = [f'{{ text = "option 0 of question {k}", correct = true }}']
        options += [f'{{ text = "option {j} of question {k}", why = "wrong {j}" }}' for j in range(1, size)]
        blocks.append("\n".join([
            "[[questions]]", 'difficulty = "easy"', f'question = "Synthetic question number {k}?"',
            'hint = "h"', 'explanation = "e"', f"keep_order = {str(k in keep).lower()}",
            f"options = [{', '.join(reversed(options) if reverse else options)}]"]))
    return load_quiz(_write(tmp_path, "\n\n".join(blocks), name))


def test_ten_questions_authored_with_the_answer_first_are_spread_over_the_letters(tmp_path):
    quiz = _synthetic(tmp_path, [4] * 10)
    counts = Counter(_letters(quiz))
    assert max(counts.values()) / len(quiz.questions) <= MAX_SHARE
    assert max(counts.values()) - min(counts[c] for c in "ABCD") <= 1
    for k, q in enumerate(quiz.questions):  # the same options, each wrong one still with its own why
        assert sorted(o.text for o in q.options) == [f"option {j} of question {k}" for j in range(4)]
        assert q.options[q.answer].text == f"option 0 of question {k}"
        assert all(o.why == f"wrong {o.text.split()[1]}" for o in q.options if not o.correct)


def test_each_answer_goes_to_a_least_used_letter_of_its_question(tmp_path):
    quiz = _synthetic(tmp_path, [2, 4, 3, 4, 2, 4, 3, 3, 4, 2, 4, 4])
    used = Counter()
    for q in quiz.questions:
        letters = range(len(q.options))
        assert used[q.answer] == min(used[i] for i in letters), (q.question, used)
        used[q.answer] += 1


def test_the_authored_order_carries_no_information(tmp_path):
    sizes = [4, 3, 4, 2, 4, 4, 3]
    first = _synthetic(tmp_path, sizes, name="first.toml")
    last = _synthetic(tmp_path, sizes, reverse=True, name="last.toml")  # correct option written last
    assert first == last


def test_keep_order_questions_stay_as_written_and_count_first(tmp_path):
    quiz = _synthetic(tmp_path, [4] * 8, keep={0, 5})
    for k in (0, 5):
        assert [o.text for o in quiz.questions[k].options] == [f"option {j} of question {k}" for j in range(4)]
        assert quiz.questions[k].keep_order and quiz.questions[k].answer == 0
    counts = Counter(_letters(quiz))
    assert [counts[c] for c in "ABCD"] == [2, 2, 2, 2]  # A is taken by the pinned answers only


@pytest.mark.parametrize("name", available_quizzes())
def test_shipped_quizzes_spread_the_answers_over_the_letters(name):
    quiz = load_quiz(name)
    counts = Counter(_letters(quiz))
    assert max(counts.values()) / len(quiz.questions) <= MAX_SHARE, f"{name}: answer letters {dict(counts)}"


@pytest.mark.parametrize("name", available_quizzes())
def test_shipped_quizzes_show_one_order_everywhere(name):
    quiz = load_quiz(name)
    assert load_quiz(name) == quiz
    expected = _letters(quiz)
    options = [[o.text for o in q.options] for q in quiz.questions]

    text = quiz.to_markdown()  # what the CLI prints
    assert re.findall(r"^\*Answer:\* ([A-Z])\.", text, flags=re.M) == expected
    for block, texts in zip(re.split(r"^\*\*Q\d+\*\*", text, flags=re.M)[1:], options, strict=True):
        assert re.findall(r"^([A-Z])\. (.*)$", block, flags=re.M) == list(zip(LETTERS, texts, strict=False))

    page = quiz.to_html()
    assert re.findall(r"<summary>Answer</summary><p><b>([A-Z])</b>", page) == expected
    shown = [re.findall(r"<li>(.*?)</li>", ol) for ol in re.findall(r"<ol type='A'>(.*?)</ol>", page)]
    assert [[html.unescape(t) for t in ol] for ol in shown] == options


@pytest.mark.parametrize("name", available_quizzes())
def test_shipped_quizzes_widget_shows_the_same_order(name):
    pytest.importorskip("ipywidgets")
    quiz = load_quiz(name)
    expected = _letters(quiz)
    boxes = quiz.widget().children[1:1 + len(quiz.questions)]  # title row, then one box per question
    for q, box, letter in zip(quiz.questions, boxes, expected, strict=True):
        _, choice, buttons, feedback = box.children
        assert [label for label, _ in choice.options] == [o.text for o in q.options]
        choice.value = LETTERS.index(letter)  # the letter the book and the CLI print
        buttons.children[0].click()
        assert "Right" in feedback.value


def test_shipped_quiz_order_does_not_depend_on_python_hash_seed():
    dump = ("import json; from diffusion_lessons.quiz import available_quizzes, load_quiz; "
            "print(json.dumps({n: [[o.text for o in q.options] for q in load_quiz(n).questions] "
            "for n in available_quizzes()}))")
    here = {n: [[o.text for o in q.options] for q in load_quiz(n).questions] for n in available_quizzes()}
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", dump], capture_output=True, text=True, env=env, check=True)
        assert json.loads(out.stdout) == here


@pytest.mark.parametrize("name", available_quizzes())
def test_shipped_quizzes_correct_option_is_not_given_away_by_its_length(name):
    quiz = load_quiz(name)
    longest = []
    for n, q in enumerate(quiz.questions, 1):
        right = len(q.options[q.answer].text)
        wrong = max(len(o.text) for o in q.options if not o.correct)
        assert right <= 1.3 * wrong, f"{name} Q{n}: correct option {right} chars, longest distractor {wrong}"
        longest.append(right >= wrong)
    assert sum(longest) <= len(quiz.questions) / 3, f"{name}: correct option longest in {sum(longest)} questions"
