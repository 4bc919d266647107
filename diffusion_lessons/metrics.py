"""Measuring sample quality offline: a Fréchet distance on the features of a small MNIST classifier.

Lessons: notebooks/05_sampling.ipynb (steps vs quality), 06_guidance.ipynb, 11_generative_models.ipynb

FID (Heusel et al. 2017) compares two sets of images through the features a network
extracts from them: fit a Gaussian N(μ, Σ) to each set's features and take the Fréchet
(2-Wasserstein) distance between the two Gaussians,

    FD = ‖μ_r - μ_g‖² + Tr(Σ_r + Σ_g - 2 (Σ_r Σ_g)^½).

FID uses Inception-v3 features, whose weights cannot be downloaded here and which know
nothing about handwritten digits anyway. This module uses the same formula on the
penultimate layer of a small MNIST classifier that the project trained itself and ships
in ``weights/mnist_classifier.pt`` (its card says how): the "Fréchet LeNet Distance"
(FLD) of the GAN literature. The classifier also gives a second, easier-to-read number:
``label_agreement``, the share of class-conditional samples it recognises as the class
that was asked for.

    >>> from diffusion_lessons import metrics
    >>> real = metrics.reference_images()           # (1000, 1, 28, 28): held-out test digits
    >>> metrics.frechet_distance(real, samples)     # lower is better; 0 for identical statistics
    >>> metrics.label_agreement(samples, labels)    # 1.0: every sample is the digit asked for

Pitfalls (they matter more than the decimals):

- **Sample count vs feature dimension.** The features have ``D = 32`` dimensions. A
  covariance from N samples has rank at most N - 1, so with N <= D it is singular and the
  distance is dominated by estimation noise; a warning says so. Use a few hundred samples
  (500 or 1000 are good choices here); fewer than 2 is an error.
- **The estimate is biased upward at small N,** and the bias shrinks roughly like 1/N:
  two sets drawn from the *same* distribution score above 0, more so the fewer samples
  they have. Compare models only at the same N (and the same reference set), and read
  the real-vs-real figure at that N as the floor: a model cannot be told apart from the
  data once it gets there. Measured (weights/README.md): test vs train digits, 50 or 100
  of each digit, score 0.31 at N=500 and 0.14 at N=1000.
- **The class mix counts.** Sets with a random mix of digits score about twice the
  balanced figures above (0.66 at N=500); sample class-conditional models with balanced
  labels, e.g. ``torch.arange(N) % 10``, to compare with the balanced reference set.
- **Comparable only with the same classifier and the same reference set.** A retrained
  classifier has other features and gives other numbers. Scores here are *not*
  comparable with published FID numbers (different network, features, data and N).
- **It measures what the classifier sees.** The features were trained to tell digits
  apart; faint artefacts a classifier ignores do not move the score, and FLD says nothing
  about memorisation (a model that copies its training digits scores very well).

The Fréchet distance itself is computed by ``torchmetrics`` (``FrechetInceptionDistance``
with our features passed through an identity "feature extractor"), in float64.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
import warnings
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import EMOJI_CATEGORIES, check_images, emoji, mnist5k
from .runtime import cpu_name, save_atomic

__all__ = [
    "CLASSIFIER_PATH",
    "EMOJI_CLASSIFIER_PATH",
    "EmojiClassifier",
    "MnistClassifier",
    "category_agreement",
    "classifier",
    "classify",
    "emoji_classifier",
    "emoji_features",
    "emoji_frechet_distance",
    "features",
    "frechet_distance",
    "label_agreement",
    "nearest_neighbours",
    "reference_images",
    "train_classifier",
]

CLASSIFIER_PATH = Path(__file__).parent / "weights" / "mnist_classifier.pt"
IMAGE_SHAPE = (1, 28, 28)
VALUE_LIMIT = 2.0  # images are in [-1, 1]; values beyond ±2 mean another scaling, e.g. [0, 255]


# ----------------------------------------------------------------------------- the classifier
class MnistClassifier(nn.Module):
    """A small CNN for 28x28 digits with a low-dimensional feature layer before its output.

    (B, 1, 28, 28) -> conv 16 -> pool -> conv 32, conv 32 -> pool -> conv 64 -> pool
    -> (B, 64·3·3) -> linear + batch norm + ReLU: the features (B, num_features) -> linear: logits (B, 10).

    Lesson: notebooks/05_sampling.ipynb
    """

    def __init__(self, num_features: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_features = num_features  # D: the dimension the Fréchet distance works in

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(1, 16), nn.MaxPool2d(2),  # (B, 16, 14, 14)
            *conv(16, 32), *conv(32, 32), nn.MaxPool2d(2),  # (B, 32, 7, 7)
            *conv(32, 64), nn.MaxPool2d(2),  # (B, 64, 3, 3)
            nn.Flatten(),  # (B, 576)
            nn.Linear(64 * 3 * 3, num_features, bias=False), nn.BatchNorm1d(num_features), nn.ReLU(),  # (B, D)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, 10))  # (B, 10)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate layer: (B, 1, 28, 28) in [-1, 1] -> (B, num_features)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, 10)."""
        return self.head(self.body(x))


def _load_net(path: Path, cls: type[nn.Module], command: str, device: str) -> nn.Module:
    """A shipped classifier: its weights, config and card from ``path``, eval mode, frozen, on ``device``."""
    if not path.is_file():
        raise FileNotFoundError(f"the classifier's weights are missing from the package ({path}); "
                                f"train them with: python -m diffusion_lessons.metrics {command}")
    data = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data: no code runs
    net = cls(**data["model_config"])
    net.load_state_dict(data["state_dict"])
    net.card = data["card"]  # how it was trained and what it scored
    return net.eval().requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def _load_classifier(device: str) -> MnistClassifier:
    return _load_net(CLASSIFIER_PATH, MnistClassifier, "train-classifier", device)


def classifier(device: str | torch.device = "cpu") -> MnistClassifier:
    """The shipped MNIST classifier (eval mode, frozen), loaded once per device.

    ``classifier().card`` holds the command that trained it, the machine, the wall time
    and its held-out accuracy.

    Lesson: notebooks/11_generative_models.ipynb
    """
    return _load_classifier(str(torch.device(device)))


# ----------------------------------------------------------------------------- input checks
def _check_images(images: Tensor, name: str) -> Tensor:
    """``data.check_images`` for the classifier's input: float (N, 1, 28, 28), finite, in [-1, 1]."""
    return check_images(images, name, shape=IMAGE_SHAPE, value_limit=VALUE_LIMIT)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _features(images: Tensor, batch_size: int) -> Tensor:
    net = classifier(images.device)
    with torch.no_grad():
        return torch.cat([net.features(batch.float()) for batch in images.split(batch_size)])  # (N, D)


def _logits(images: Tensor, batch_size: int = 500) -> Tensor:
    net = classifier(images.device)
    with torch.no_grad():
        return torch.cat([net(batch.float()) for batch in images.split(batch_size)])  # (N, 10)


# ----------------------------------------------------------------------------- public API
def features(images: Tensor, batch_size: int = 500) -> Tensor:
    """The classifier's penultimate features: images (N, 1, 28, 28) in [-1, 1] -> (N, D) float32.

    Runs on the images' device, ``batch_size`` images at a time.

    Lesson: notebooks/11_generative_models.ipynb
    """
    _check_batch_size(batch_size)
    return _features(_check_images(images, "images"), batch_size)


def classify(images: Tensor) -> Tensor:
    """The digit the classifier sees in each image: (N, 1, 28, 28) in [-1, 1] -> (N,) int64 in [0, 9].

    Lesson: notebooks/06_guidance.ipynb
    """
    return _logits(_check_images(images, "images")).argmax(dim=1)


def label_agreement(images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` the classifier recognises as their ``labels`` (N,): a number in [0, 1].

    For class-conditional samples, the labels asked for: 1.0 means every sample is
    recognisably the requested digit. Chance level is 0.1.

    Lesson: notebooks/11_generative_models.ipynb
    """
    images = _check_images(images, "images")
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers in [0, 9], got dtype {labels.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), one per image, got {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"labels must be digits in [0, 9], got values in [{int(labels.min())}, {int(labels.max())}]"
                         " (10 is the diffusion model's 'no label' class: it has no digit to agree with)")
    return (classify(images).cpu() == labels.cpu()).float().mean().item()


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """The Fréchet distance between the classifier features of two image sets ("FLD").

    ``real`` and ``fake`` are (N, 1, 28, 28) in [-1, 1], possibly with different N.
    FD = ‖μ_r - μ_f‖² + Tr(Σ_r + Σ_f - 2 (Σ_r Σ_f)^½), in float64. Lower is better;
    biased upward at small N, so compare only at equal N (see the module docstring).

    Lesson: notebooks/11_generative_models.ipynb
    """
    real, fake = _check_images(real, "real"), _check_images(fake, "fake")
    dim = classifier(real.device).num_features
    for name, x in (("real", real), ("fake", fake)):
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"{name} must have at least 2 images to estimate a covariance, got {n}")
        if n <= dim:
            warnings.warn(f"{name} has {n} images, no more than the {dim} feature dimensions: its covariance is "
                          "singular and the Fréchet distance is dominated by estimation noise; use a few hundred",
                          stacklevel=2)
    return _frechet_from_features(_features(real, 500), _features(fake, 500))


class _Precomputed(nn.Module):
    """An identity "feature extractor": torchmetrics' FID is handed features we computed ourselves."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features  # read by torchmetrics, so it needs no dummy image

    def forward(self, x: Tensor) -> Tensor:
        return x


def _frechet_from_features(f_real: Tensor, f_fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D), in float64."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fd = FrechetInceptionDistance(feature=_Precomputed(f_real.shape[1]), normalize=False)
    fd.update(f_real.detach().cpu().double(), real=True)  # the states (sums, covariance sums) are float64
    fd.update(f_fake.detach().cpu().double(), real=False)
    value = fd.compute().item()
    return max(value, 0.0)  # a distance: round-off can leave identical statistics at -1e-13


def reference_images() -> Tensor:
    """The held-out test digits, ``dl.mnist5k(split="test")``: (1000, 1, 28, 28) in [-1, 1], 100 of each digit.

    Neither the shipped diffusion model nor the classifier saw them during training.

    Lesson: notebooks/06_guidance.ipynb
    """
    return mnist5k(split="test")[0]


# ----------------------------------------------------------------------------- training
def _augment(x: Tensor, generator: torch.Generator, degrees: float = 12.0, shift: float = 2.0,
             scale: float = 0.1, background: float = -1.0) -> Tensor:
    """Random small rotations, shifts (in pixels) and zooms of a batch (B, C, S, S) in [-1, 1]; new borders
    get the ``background`` value (-1: MNIST's black; +1: the emoji's white page)."""
    B = x.shape[0]
    u = torch.rand(B, 4, generator=generator) * 2 - 1  # (B, 4) uniform in [-1, 1]
    angle = u[:, 0] * math.radians(degrees)
    zoom = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    side = x.shape[-1]
    tx, ty = u[:, 2] * shift * 2 / side, u[:, 3] * shift * 2 / side  # pixels -> affine_grid's [-1, 1] units
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with 0: shift the background to 0 first, so new borders are background
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def _accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(b).argmax(1) for b in x.split(500)])
    return (pred == y).float().mean().item()


def _describe_machine() -> str:
    return f"{os.cpu_count()}-core {cpu_name()} CPU, torch {torch.__version__}"


def train_classifier(
    out: str | Path | None = None,
    steps: int = 1200,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    num_features: int = 32,
    seed: int = 0,
    num_threads: int | None = 1,
    command: str = "",
    machine: str | None = None,
    progress: bool = False,
) -> tuple[MnistClassifier, dict]:
    """Train the MNIST classifier on ``dl.mnist5k(split="train")`` and measure it on the test split.

    AdamW with a one-cycle learning rate for ``steps`` steps of ``batch_size``, every batch
    randomly rotated (±12°), shifted (±2 px) and zoomed (±10%) so that the classifier also
    reads imperfect generated digits. Seeded: the same call on the same machine gives the
    same weights (the global RNG is restored afterwards). ``num_threads=1`` (the default)
    also makes the sums independent of the core count, and is the fastest on a shared CPU;
    ``None`` keeps torch's setting. With ``out``, the weights, their
    config and a card (``command``, ``machine``, wall time, accuracies) are written there
    atomically. Returns the model (eval mode) and the card.

    Lesson: notebooks/05_sampling.ipynb
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_features", num_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        return _train_classifier(out, steps, batch_size, lr, weight_decay, num_features, seed, command, machine,
                                 progress)
    finally:
        torch.set_num_threads(threads)


def _train_classifier(out: str | Path | None, steps: int, batch_size: int, lr: float, weight_decay: float,
                      num_features: int, seed: int, command: str, machine: str | None,
                      progress: bool) -> tuple[MnistClassifier, dict]:
    start, cpu_start = time.perf_counter(), time.process_time()
    x_train, y_train = mnist5k(split="train")  # (4000, 1, 28, 28): the first 400 of each digit
    x_test, y_test = mnist5k(split="test")  # (1000, 1, 28, 28): the last 100 of each digit, held out
    gen = torch.Generator().manual_seed(seed)  # data order and augmentation
    with torch.random.fork_rng(devices=[]):  # weight init and dropout, without touching the caller's RNG
        torch.manual_seed(seed)
        net = MnistClassifier(num_features=num_features)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
        order, pos = torch.randperm(len(x_train), generator=gen), 0
        net.train()
        for step in range(steps):
            if pos + batch_size > len(order):  # a new epoch: a new shuffle
                order, pos = torch.randperm(len(x_train), generator=gen), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            loss = F.cross_entropy(net(_augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress and ((step + 1) % 100 == 0 or step + 1 == steps):
                print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    net.eval().requires_grad_(False)
    card = {
        "command": command,
        "machine": machine or _describe_machine(),
        "torch": str(torch.__version__),  # a plain str: TorchVersion would not load with weights_only=True
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "data": "dl.mnist5k(split='train'): 4000 digits, the first 400 of each",
        "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
        "num_threads": torch.get_num_threads(),
        "augmentation": "rotation ±12°, shift ±2 px, zoom ±10%",
        "parameters": sum(p.numel() for p in net.parameters()),
        "num_features": num_features,
        "train_accuracy": round(_accuracy(net, x_train, y_train), 4),
        "test_accuracy": round(_accuracy(net, x_test, y_test), 4),  # dl.mnist5k(split='test'), never trained on
        "wall_time_s": round(time.perf_counter() - start, 1),
        "cpu_time_s": round(time.process_time() - cpu_start, 1),  # all threads: less than wall on a shared CPU
    }
    net.card = card
    if out is not None:
        save_atomic({"model_config": {"num_features": num_features},
                    "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                    "card": card}, out)
    return net, card


# ----------------------------------------------------------------------------- emoji (lesson 10)
EMOJI_CLASSIFIER_PATH = Path(__file__).parent / "weights" / "emoji_classifier.pt"
EMOJI_SHAPE = (3, 32, 32)


class EmojiClassifier(nn.Module):
    """A small CNN that tells the 8 emoji groups apart; its penultimate layer gives the emoji's Fréchet distance.

    (B, 3, 32, 32) -> conv 32 -> pool -> conv 64, conv 64 -> pool -> conv 128 -> pool -> (B, 128·4·4)
    -> linear + batch norm + ReLU: the features (B, num_features) -> linear: logits (B, 8).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    def __init__(self, num_features: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.num_features = num_features

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *conv(3, 32), nn.MaxPool2d(2),  # (B, 32, 16, 16)
            *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),  # (B, 64, 8, 8)
            *conv(64, 128), nn.MaxPool2d(2),  # (B, 128, 4, 4)
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, num_features, bias=False), nn.BatchNorm1d(num_features), nn.ReLU(),  # (B, D)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, len(EMOJI_CATEGORIES)))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@lru_cache(maxsize=4)
def _load_emoji_classifier(device: str) -> EmojiClassifier:
    return _load_net(EMOJI_CLASSIFIER_PATH, EmojiClassifier, "train-emoji-classifier", device)


def emoji_classifier(device: str | torch.device = "cpu") -> EmojiClassifier:
    """The shipped emoji classifier (eval mode, frozen); ``.card`` says how it was trained and what it scores.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    return _load_emoji_classifier(str(torch.device(device)))


def _emoji_images(images: Tensor, name: str) -> Tensor:
    return check_images(images, name, shape=EMOJI_SHAPE, value_limit=VALUE_LIMIT)


def emoji_features(images: Tensor, batch_size: int = 500) -> Tensor:
    """The emoji classifier's features: images (N, 3, 32, 32) in [-1, 1] -> (N, D) float32.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    _check_batch_size(batch_size)
    images = _emoji_images(images, "images")
    net = emoji_classifier(images.device)
    with torch.no_grad():
        return torch.cat([net.features(b.float()) for b in images.split(batch_size)])


def emoji_frechet_distance(real: Tensor, fake: Tensor) -> float:
    """The Fréchet distance between two emoji sets (N, 3, 32, 32) on the emoji classifier's features.

    The same formula and pitfalls as ``frechet_distance`` (compare at equal N, against the same
    reference set; real-vs-real at that N is the floor). Lower is better.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    real, fake = _emoji_images(real, "real"), _emoji_images(fake, "fake")
    for name, x in (("real", real), ("fake", fake)):
        if x.shape[0] < 2:
            raise ValueError(f"{name} must have at least 2 images to estimate a covariance, got {x.shape[0]}")
    return _frechet_from_features(emoji_features(real), emoji_features(fake))


def category_agreement(images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` (N, 3, 32, 32) the emoji classifier puts in the group asked for, ``labels`` (N,).

    Read it next to the classifier's own held-out accuracy (its ``card``): it cannot be higher
    than what the classifier gets right on real emoji. Chance is 1/8.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    images = _emoji_images(images, "images")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0],) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer groups of shape ({images.shape[0]},), got "
                         f"{tuple(labels.shape)} {labels.dtype}")
    if labels.min() < 0 or labels.max() >= len(EMOJI_CATEGORIES):
        raise ValueError(f"labels must be in [0, {len(EMOJI_CATEGORIES) - 1}] (dl.data.EMOJI_CATEGORIES)")
    net = emoji_classifier(images.device)
    with torch.no_grad():
        pred = torch.cat([net(b.float()).argmax(1) for b in images.split(500)])
    return (pred.cpu() == labels.cpu()).float().mean().item()


def nearest_neighbours(images: Tensor, pool: Tensor) -> tuple[Tensor, Tensor]:
    """For each image (N, C, H, W), its nearest image in ``pool`` (M, C, H, W) by pixel distance.

    Returns the distances (N,) (root mean squared difference per pixel, in [-1, 1] units) and the
    indices (N,) into ``pool``. The copying check: compare the distances of generated images
    to the training set with those of held-out real images (a new emoji is not a copy).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    images, pool = check_images(images, "images"), check_images(pool, "pool")
    if images.shape[1:] != pool.shape[1:]:
        raise ValueError(f"images and pool must have the same image shape, got {tuple(images.shape[1:])} and "
                         f"{tuple(pool.shape[1:])}")
    d = torch.cdist(images.flatten(1).double(), pool.flatten(1).double())  # (N, M) Euclidean distances
    dist, index = d.min(dim=1)
    return (dist / math.sqrt(images[0].numel())).float(), index


def train_emoji_classifier(out: str | Path | None = None, steps: int = 1500, batch_size: int = 128,
                           lr: float = 3e-3, seed: int = 0, command: str = "",
                           progress: bool = False) -> tuple[EmojiClassifier, dict]:
    """Train the emoji classifier on ``dl.emoji(split="train")`` (shifted, rotated, zoomed batches on a white
    page, random left-right flips) and measure it on the held-out split. One CPU thread, seeded.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    start = time.perf_counter()
    x_train, _, y_train = emoji(split="train")
    x_test, _, y_test = emoji(split="test")
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = EmojiClassifier()
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
            net.train()
            for step in range(steps):
                idx = torch.randint(0, len(x_train), (batch_size,), generator=gen)
                x = _augment(x_train[idx], gen, degrees=10.0, shift=2.0, scale=0.1, background=1.0)
                flip = torch.rand(batch_size, generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                loss = F.cross_entropy(net(x), y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if progress and (step + 1) % 100 == 0:
                    print(f"step {step + 1}/{steps}  loss {loss.item():.4f}", file=sys.stderr, flush=True)
        net.eval().requires_grad_(False)
        card = {"command": command, "machine": _describe_machine(), "torch": str(torch.__version__),
                "data": f"dl.emoji(split='train'): {len(x_train)} emoji; test: {len(x_test)} held out",
                "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "num_threads": 1,
                "parameters": sum(p.numel() for p in net.parameters()),
                "train_accuracy": round(_accuracy(net, x_train, y_train), 4),
                "test_accuracy": round(_accuracy(net, x_test, y_test), 4),
                "wall_time_s": round(time.perf_counter() - start, 1)}
    finally:
        torch.set_num_threads(threads)
    net.card = card
    if out is not None:
        save_atomic({"model_config": {"num_features": net.num_features},
                     "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                     "card": card}, out)
    return net, card


# ----------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lessons.metrics train-classifier --out PATH``: (re)train the shipped classifier."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m diffusion_lessons.metrics", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classifier", help="train the MNIST classifier the metrics use and write its weights")
    t.add_argument("--out", type=Path, default=CLASSIFIER_PATH, help="where to write the weights file")
    t.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    t.add_argument("--batch-size", type=int, default=128, help="digits per step")
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    t.add_argument("--seed", type=int, default=0, help="seeds the weights, data order and augmentation")
    t.add_argument("--threads", type=int, default=1, help="CPU threads (1: repeatable on any machine)")
    t.add_argument("--machine", default=None, help="how the card describes this machine (default: detected)")
    e = sub.add_parser("train-emoji-classifier", help="train the emoji classifier (lesson 10) and write its weights")
    e.add_argument("--out", type=Path, default=EMOJI_CLASSIFIER_PATH, help="where to write the weights file")
    e.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "diffusion_lessons.metrics", *argv])
    if args.command == "train-emoji-classifier":
        _, card = train_emoji_classifier(args.out, steps=args.steps, command=command, progress=True)
        print(f"wrote {args.out}: test accuracy {card['test_accuracy']:.4f}, train accuracy "
              f"{card['train_accuracy']:.4f}, {card['wall_time_s']:.0f} s")
        return 0
    _, card = train_classifier(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               num_threads=args.threads,
                               command=command, machine=args.machine, progress=True)
    print(f"wrote {args.out}: test accuracy {card['test_accuracy']:.4f}, train accuracy "
          f"{card['train_accuracy']:.4f}, {card['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
