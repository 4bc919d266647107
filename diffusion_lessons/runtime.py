"""Where the lessons run: the device, and the learner vs smoke budget.

Setting the environment variable ``DIFFUSION_LESSONS_BUDGET=smoke`` switches every
notebook to its smallest budget (CI uses it for long lessons); the default is
``learner``, the budget book.toml's minutes are measured with.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch

__all__ = ["budget", "default_device", "is_smoke"]

T = TypeVar("T")
BUDGET_VARIABLE = "DIFFUSION_LESSONS_BUDGET"


def is_smoke() -> bool:
    """True when ``DIFFUSION_LESSONS_BUDGET=smoke``; an unknown value is an error."""
    value = os.environ.get(BUDGET_VARIABLE, "learner").strip().lower()
    if value not in ("learner", "smoke"):
        raise ValueError(f"{BUDGET_VARIABLE} must be 'learner' or 'smoke', got {value!r}")
    return value == "smoke"


def budget(learner: T, smoke: T) -> T:
    """``learner`` normally, ``smoke`` under the CI smoke budget: ``steps = budget(2000, 50)``."""
    return smoke if is_smoke() else learner


def default_device() -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
