"""Quizzes and recall cards, stored as data (TOML files in ``diffusion_lessons/quizzes``).

Lesson: notebooks/01_markov_noising.ipynb (first use)

A quiz file holds ``[[questions]]``, easy to hard, each with a hint, one correct
option, the reasoning behind the answer (``explanation``) and, for each wrong option,
the common mistake that leads there (``why``); then ``[[cards]]`` (front, back) for
recall. Teachers extend a quiz by adding entries; ``load_quiz`` checks the format.

In Jupyter a ``Quiz`` displays as a widget (pick an option, check it, ask for a
hint, reveal a card); anywhere else, e.g. in the HTML book, it falls back to static
HTML with the answers folded away in ``<details>``.

Display order. Authors write the options in any order (the correct one may come
first); ``load_quiz`` reorders them once, so the widget, the book and the CLI show
the same order and a learner cannot guess the answer from its letter:

1. Each question gets a stable seed, the SHA-256 of its own text (never Python's
   salted ``hash()`` or a global random generator): the same file always renders
   the same, on every machine and run.
2. Balance: going through the questions in file order, the correct option goes to
   the letter used least so far by earlier answers, among the letters that question
   has (A-D for four options); a tie is broken by the seed. When every question has
   the same number of options, the letters then differ by at most one answer (four
   options and at least five questions: no letter holds more than 40% of them).
3. The wrong options fill the other places in an order drawn from the seed and
   their text, so the authored order carries no information either.
4. ``keep_order = true`` on a question keeps its authored order, for options whose
   order means something (numbers in ascending order, "none of the above" last).
   Such a question's answer letter is counted first, before step 2 places the others.
   Use it sparingly: it brings back the author's habits.

Adding or moving a question can change the letters of the questions after it; the
text of ``why`` and ``explanation`` must therefore never name a letter. Length must
not give the answer away either: tests/test_quiz.py checks every shipped quiz (the
correct option at most 1.3 times its longest distractor, and the longest option in
at most a third of the questions), so write distractors as specific as the answer.
"""

from __future__ import annotations

import hashlib
import html
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["QUIZ_DIR", "Card", "Option", "Question", "Quiz", "available_quizzes", "load_quiz"]

QUIZ_DIR = Path(__file__).parent / "quizzes"
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Option:
    """One option of a question, and for a wrong one the mistake behind it.

    Lesson: notebooks/01_markov_noising.ipynb
    """

    text: str  # what the learner reads
    correct: bool = False  # exactly one option per question is correct
    why: str = ""  # for a wrong option: the common mistake that leads to it


@dataclass(frozen=True)
class Question:
    """A multiple-choice question with a hint and the reasoning behind its answer.

    Lesson: notebooks/01_markov_noising.ipynb
    """

    question: str
    options: tuple[Option, ...]
    difficulty: str  # "easy", "medium" or "hard"
    hint: str  # a nudge that does not give the answer away
    explanation: str  # the reasoning behind the right answer
    keep_order: bool = False  # True: options shown in authored order (e.g. numbers ascending)

    @property
    def answer(self) -> int:
        """Index of the correct option."""
        return next(i for i, o in enumerate(self.options) if o.correct)


@dataclass(frozen=True)
class Card:
    """A recall card: a question to answer in your head, and the answer.

    Lesson: notebooks/01_markov_noising.ipynb
    """

    front: str  # the question to recall an answer to
    back: str  # the answer, revealed on demand


@dataclass(frozen=True)
class Quiz:
    """A lesson's quiz: questions from easy to hard, then recall cards; a widget in Jupyter.

    Lesson: notebooks/01_markov_noising.ipynb
    """

    title: str
    questions: tuple[Question, ...]
    cards: tuple[Card, ...] = ()

    def __repr__(self) -> str:
        counts = ", ".join(f"{sum(q.difficulty == d for q in self.questions)} {d}" for d in DIFFICULTIES)
        return f"Quiz({self.title!r}: {len(self.questions)} questions ({counts}), {len(self.cards)} recall cards)"

    # -- static renderings ----------------------------------------------------
    def to_markdown(self, answers: bool = True) -> str:
        """The quiz as Markdown text; ``answers=False`` leaves out hints and answers."""
        lines = [f"### {self.title}", ""]
        for n, q in enumerate(self.questions, 1):
            lines += [f"**Q{n}** ({q.difficulty}). {q.question}", ""]
            lines += [f"{chr(65 + i)}. {o.text}" for i, o in enumerate(q.options)] + [""]
            if answers:
                lines += [f"*Hint:* {q.hint}", "", f"*Answer:* {chr(65 + q.answer)}. {q.explanation}", ""]
                lines += [f"- *{chr(65 + i)} is a common mistake:* {o.why}" for i, o in enumerate(q.options)
                          if not o.correct and o.why] + [""]
        if self.cards:
            lines += ["#### Recall cards", ""]
            for c in self.cards:
                lines += [f"- {c.front}" + (f" — *{c.back}*" if answers else "")]
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        """Static HTML with hints and answers folded in ``<details>`` (for the book)."""
        e = html.escape
        parts = [f'<div class="dl-quiz"><h4>{e(self.title)}</h4><ol>']
        for q in self.questions:
            opts = "".join(f"<li>{e(o.text)}</li>" for o in q.options)
            mistakes = "".join(f"<li><b>{chr(65 + i)}</b>: {e(o.why)}</li>"
                               for i, o in enumerate(q.options) if not o.correct and o.why)
            parts.append(
                f"<li><p><em>[{q.difficulty}]</em> {e(q.question)}</p><ol type='A'>{opts}</ol>"
                f"<details><summary>Hint</summary><p>{e(q.hint)}</p></details>"
                f"<details><summary>Answer</summary><p><b>{chr(65 + q.answer)}</b>. {e(q.explanation)}</p>"
                + (f"<p>Common mistakes:</p><ul>{mistakes}</ul>" if mistakes else "")
                + "</details></li>"
            )
        parts.append("</ol>")
        if self.cards:
            parts.append("<h5>Recall cards</h5><ul>")
            parts += [f"<li><details><summary>{e(c.front)}</summary><p>{e(c.back)}</p></details></li>"
                      for c in self.cards]
            parts.append("</ul>")
        return "".join(parts) + "</div>"

    # -- Jupyter ---------------------------------------------------------------
    def widget(self):
        """The interactive version: an ipywidgets VBox."""
        import ipywidgets as w

        items = [w.HTML(f"<h4>{html.escape(self.title)}</h4>")]
        items += [_question_widget(n, q) for n, q in enumerate(self.questions, 1)]
        if self.cards:
            items.append(w.HTML("<h5>Recall cards: answer in your head, then reveal</h5>"))
            items += [_card_widget(c) for c in self.cards]
        return w.VBox(items)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": repr(self), "text/html": self.to_html()}
        try:
            bundle.update(self.widget()._repr_mimebundle_())
            bundle["text/plain"] = repr(self)
        except ImportError:  # no ipywidgets: the static page is all we can show
            pass
        return bundle


def _question_widget(n: int, q: Question):
    import ipywidgets as w

    title = w.HTMLMath(f"<b>Q{n}</b> <i>({q.difficulty})</i> {html.escape(q.question)}")
    choice = w.RadioButtons(options=[(o.text, i) for i, o in enumerate(q.options)], value=None,
                            layout=w.Layout(width="auto"))
    check, hint = w.Button(description="Check", button_style="primary"), w.Button(description="Hint")
    feedback = w.HTMLMath()

    def on_check(_):
        if choice.value is None:
            feedback.value = "Pick an option first."
        elif q.options[choice.value].correct:
            feedback.value = f"✅ <b>Right.</b> {html.escape(q.explanation)}"
        else:
            why = q.options[choice.value].why or "Not this one."
            feedback.value = f"❌ <b>Not quite.</b> {html.escape(why)} Try again, or ask for a hint."

    check.on_click(on_check)
    hint.on_click(lambda _: setattr(feedback, "value", f"💡 {html.escape(q.hint)}"))
    return w.VBox([title, choice, w.HBox([check, hint]), feedback],
                  layout=w.Layout(border="1px solid #ddd", padding="6px", margin="4px 0"))


def _card_widget(c: Card):
    import ipywidgets as w

    back = w.HTMLMath()
    button = w.Button(description="Reveal")

    def toggle(_):
        back.value = "" if back.value else f"<i>{html.escape(c.back)}</i>"
        button.description = "Hide" if back.value else "Reveal"

    button.on_click(toggle)
    return w.HBox([w.HTMLMath(f"<b>{html.escape(c.front)}</b>", layout=w.Layout(width="55%")), button, back])


def available_quizzes() -> list[str]:
    """Names of the quizzes shipped with the package (file stems).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    return sorted(p.stem for p in QUIZ_DIR.glob("*.toml"))


def _require(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: missing or empty {key!r}")
    return value.strip()


def _seed(question: str, *parts: str) -> bytes:
    """A stable pseudo-random sort key: SHA-256 of the question's text and ``parts``."""
    return hashlib.sha256("\x1f".join((question, *parts)).encode("utf-8")).digest()


def _display_order(questions: list[Question]) -> list[Question]:
    """The questions with their options in display order (the rule is in the module docstring)."""
    used = Counter(q.answer for q in questions if q.keep_order)  # letter index -> answers there; pinned first
    shown = []
    for q in questions:
        if q.keep_order:
            shown.append(q)
            continue
        letters = range(len(q.options))
        fewest = min(used[i] for i in letters)
        slot = min((i for i in letters if used[i] == fewest), key=lambda i: _seed(q.question, "slot", str(i)))
        used[slot] += 1
        wrong = sorted((o for o in q.options if not o.correct), key=lambda o: _seed(q.question, "option", o.text))
        shown.append(replace(q, options=(*wrong[:slot], q.options[q.answer], *wrong[slot:])))
    return shown


def load_quiz(name: str | Path) -> Quiz:
    """Load a quiz by name (e.g. "01_markov_noising") or from a .toml path, checking it.

    The options of ``Quiz.questions[k].options`` are already in display order (see the
    module docstring); every rendering shows them as they are.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    path = Path(name)
    if path.suffix != ".toml":
        path = QUIZ_DIR / f"{name}.toml"
        if not path.exists():
            raise ValueError(f"name must be one of {available_quizzes()} or a .toml path, got {str(name)!r}")
    with open(path, "rb") as f:
        data = tomllib.load(f)
    questions = []
    for n, entry in enumerate(data.get("questions", []), 1):
        where = f"{path.name}, question {n}"
        options = tuple(Option(_require(o, "text", where), bool(o.get("correct", False)), o.get("why", ""))
                        for o in entry.get("options", []))
        if len(options) < 2 or sum(o.correct for o in options) != 1:
            raise ValueError(f"{where}: needs at least two options and exactly one with correct = true")
        difficulty = _require(entry, "difficulty", where)
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"{where}: difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
        if questions and DIFFICULTIES.index(difficulty) < DIFFICULTIES.index(questions[-1].difficulty):
            raise ValueError(f"{where}: questions must go from easy to hard, but {difficulty!r} "
                             f"follows {questions[-1].difficulty!r}")
        keep_order = entry.get("keep_order", False)
        if not isinstance(keep_order, bool):
            raise ValueError(f"{where}: keep_order must be true or false, got {keep_order!r}")
        questions.append(Question(_require(entry, "question", where), options, difficulty,
                                  _require(entry, "hint", where), _require(entry, "explanation", where), keep_order))
    if not questions:
        raise ValueError(f"{path.name}: a quiz needs at least one [[questions]] entry")
    questions = _display_order(questions)
    cards = tuple(Card(_require(c, "front", f"{path.name}, card {n}"), _require(c, "back", f"{path.name}, card {n}"))
                  for n, c in enumerate(data.get("cards", []), 1))
    return Quiz(_require(data, "title", path.name), tuple(questions), cards)
