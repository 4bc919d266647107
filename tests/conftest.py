import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture
def gen() -> torch.Generator:
    """A fixed-seed generator: statistical tests are repeatable, and still able to fail."""
    return torch.Generator().manual_seed(1234)
