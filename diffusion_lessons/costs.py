"""What the course's models cost to train, and how they compare with today's large models (lesson 11).

    >>> runs = course_training_runs()          # the shipped weights' own cards: time, parameters, images
    >>> energy_wh(runs[0].seconds, watts=15)   # an estimate: measured time × a power you state

The times are what each weights file's ``card`` recorded when the project trained it (``weights/README.md``).
Energy is not measured (no meter was attached): it is time × a stated power, and the lesson says which power
and why, so a reader can redo it with their own. The large models' figures are published ones, each with its
source; they are quoted, not measured here.

Lesson: notebooks/11_generative_models.ipynb
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .pretrained import WEIGHTS_DIR

__all__ = ["LARGE_MODELS", "LargeModel", "TrainingRun", "course_training_runs", "energy_wh"]


@dataclass(frozen=True)
class TrainingRun:
    """One shipped model's training, as its card recorded it.

    Lesson: notebooks/11_generative_models.ipynb
    """

    name: str  # the weights file, e.g. "mnist_unet.pt"
    what: str  # what the model is
    seconds: float  # wall time of the training run on the card's machine
    parameters: int
    machine: str


# file -> (what it is, the card's key for its time, that key's unit in seconds)
_RUNS = {
    "mnist_unet.pt": ("DDPM U-Net, MNIST digits (lessons 05-08)", "training_wall_time_min", 60),
    "mnist_flow_unet.pt": ("flow-matching U-Net, MNIST digits (lesson 09)", "training_wall_time_min", 60),
    "emoji_dit.pt": ("text-to-emoji DiT (lesson 10)", "train_seconds", 1),
    "emoji_autoencoder.pt": ("emoji autoencoder (lesson 10)", "train_seconds", 1),
    "emoji_classifier.pt": ("emoji classifier, for measuring (lesson 10)", "wall_time_s", 1),
    "mnist_classifier.pt": ("digit classifier, for measuring (lesson 05)", "cpu_time_s", 1),
}


def course_training_runs() -> list[TrainingRun]:
    """The training runs behind the course's shipped weights, read from their cards.

    The digit classifier's card records CPU time (its wall time was on a shared machine); the others' wall time.

    Lesson: notebooks/11_generative_models.ipynb
    """
    runs = []
    for name, (what, key, unit) in _RUNS.items():
        card = torch.load(WEIGHTS_DIR / name, map_location="cpu", weights_only=True)["card"]
        parameters = card.get("parameters")
        runs.append(TrainingRun(name, what, float(card[key]) * unit, int(parameters) if parameters else 0,
                                card.get("machine", "")))
    return runs


def energy_wh(seconds: float, watts: float) -> float:
    """Energy in watt-hours of ``seconds`` of work at a steady ``watts``: an estimate, as good as the power stated.

    Lesson: notebooks/11_generative_models.ipynb
    """
    for name, value in (("seconds", seconds), ("watts", watts)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return seconds * watts / 3600


@dataclass(frozen=True)
class LargeModel:
    """A published model and the published figures about it, with where they come from.

    Lesson: notebooks/11_generative_models.ipynb
    """

    name: str
    parameters: float  # of the denoiser
    training_images: float | None  # image-text pairs or images it was trained on, as published
    gpu_hours: float | None  # accelerator hours for training, as published
    gpu_watts: float | None  # the accelerator's rated power (its TDP), for an energy estimate of the GPUs alone
    source: str


LARGE_MODELS = (
    LargeModel("Stable Diffusion v1", 860e6, 2.3e9, 150_000, 250,
               "the CompVis model card (stable-diffusion-v1-4): 150,000 hours of A100 PCIe 40GB (250 W), "
               "11,250 kg CO2-eq estimated; a 860M-parameter U-Net with a 123M-parameter text encoder; "
               "trained on subsets of LAION-2B(en), about 2.3 billion image-text pairs"),
    LargeModel("SDXL", 2.6e9, None, None, None, "Podell et al. 2023: a 2.6B-parameter U-Net; its training "
               "compute and data size were not published in the paper"),
    LargeModel("DiT-XL/2", 675e6, 1.28e6, None, None, "Peebles & Xie 2023: 675M parameters, trained on "
               "ImageNet's 1.28 million images at 256x256 (on TPU v3-256 pods; hours not stated as GPU hours)"),
)
