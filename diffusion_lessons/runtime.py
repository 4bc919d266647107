"""Where the lessons run: the device, and the learner vs smoke budget.

Setting the environment variable ``DIFFUSION_LESSONS_BUDGET=smoke`` switches every
notebook to its smallest budget (CI uses it for long lessons); the default is
``learner``, the budget book.toml's minutes are measured with.
"""

from __future__ import annotations

import os
import platform
from typing import TypeVar

import torch

__all__ = ["budget", "cpu_name", "default_device", "is_smoke", "kernel_env"]

T = TypeVar("T")
BUDGET_VARIABLE = "DIFFUSION_LESSONS_BUDGET"


def is_smoke() -> bool:
    """True when ``DIFFUSION_LESSONS_BUDGET=smoke``; an unknown value is an error.

    Lesson: notebooks/04_training.ipynb
    """
    value = os.environ.get(BUDGET_VARIABLE, "learner").strip().lower()
    if value not in ("learner", "smoke"):
        raise ValueError(f"{BUDGET_VARIABLE} must be 'learner' or 'smoke', got {value!r}")
    return value == "smoke"


def budget(learner: T, smoke: T) -> T:
    """``learner`` normally, ``smoke`` under the CI smoke budget: ``steps = budget(2000, 50)``.

    Lesson: notebooks/04_training.ipynb
    """
    return smoke if is_smoke() else learner


def kernel_env(budget: str) -> dict[str, str]:
    """The environment for a kernel that runs a lesson notebook: this process's, with the lessons' budget
    ("learner" or "smoke") and matplotlib's non-interactive backend.

    Guide: docs/teaching.md
    """
    return {**os.environ, BUDGET_VARIABLE: budget, "MPLBACKEND": "Agg"}


def default_device() -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU.

    Lesson: notebooks/04_training.ipynb
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_name() -> str:
    """The CPU's model name (e.g. "AMD EPYC 7B13"), for benchmark results and model cards.

    Lesson: notebooks/05_sampling.ipynb
    """
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
