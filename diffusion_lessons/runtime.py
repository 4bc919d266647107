"""Where the lessons run: the device, the learner vs smoke budget, and files written atomically.

Setting the environment variable ``DIFFUSION_LESSONS_BUDGET=smoke`` switches every
notebook to its smallest budget (CI uses it for long lessons); the default is
``learner``, the budget book.toml's minutes are measured with.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import torch

__all__ = ["budget", "cpu_name", "default_device", "is_smoke", "kernel_env", "save_atomic", "write_atomic"]

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


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write(f)`` to a temporary file in the same folder, fsync, then ``os.replace`` it onto ``path``.

    A crash or a kill mid-write leaves the previous file intact, never a half-written one.

    Lesson: notebooks/04_training.ipynb
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # the rename itself reaches the disk
    return path


def _fsync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a power cut (POSIX; skipped where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to fsync a folder
    finally:
        os.close(fd)


def save_atomic(obj: object, path: str | Path) -> Path:
    """``torch.save`` through ``write_atomic``: checkpoints, exported weights, the classifier.

    Lesson: notebooks/04_training.ipynb
    """
    return write_atomic(path, lambda f: torch.save(obj, f))


