"""diffusion_lessons: the tested code behind the diffusion-lessons notebooks.

The public API, in the order the lessons meet it:

- ``NoiseSchedule`` (lesson 02) and the forward process ``markov_step``, ``q_sample``,
  ``q_posterior`` (lesson 01);
- data sets in ``data``, pictures in ``plotting``, sliders in ``widgets``;
- exercise checkers in ``exercises`` and quizzes in ``quiz``;
- the course manifest in ``book``.
"""

from .data import load_dataset, mnist5k, sklearn_digits, toy_2d
from .noising import markov_chain, markov_step, q_posterior, q_sample
from .quiz import load_quiz
from .runtime import budget, default_device
from .schedules import NoiseSchedule

__version__ = "0.1.0"

__all__ = [
    "NoiseSchedule",
    "budget",
    "default_device",
    "load_dataset",
    "load_quiz",
    "markov_chain",
    "markov_step",
    "mnist5k",
    "q_posterior",
    "q_sample",
    "sklearn_digits",
    "toy_2d",
]
