"""Models the project trained with its own code, shipped inside the package, loaded offline.

    >>> p = pretrained("mnist")            # class-conditional MNIST U-Net (DDPM)
    >>> f = pretrained("mnist_flow")       # the same U-Net trained with flow matching (lesson 09)
    >>> e = pretrained("emoji")            # a text-to-emoji DiT (lesson 10): y = e.model.tokenize(prompts)
    >>> x = ddim_sample(p.model, torch.randn(16, 1, 28, 28), p.schedule, steps=50,
    ...                 y=torch.arange(16) % 10, guidance=3.0)

Each weights file holds the model's config, the training config (so the noise schedule
is the one it was trained with), one state dict (EMA or raw, measured) and a ``card``: the exact command,
the machine, the training time and the measured figures. ``weights/README.md`` says how
each file was made. Loading uses ``torch.load(weights_only=True)``: no code runs.

Lessons: notebooks/05_sampling.ipynb, 06_guidance.ipynb, 08_continuous_time.ipynb, 09_flow_matching.ipynb,
11_generative_models.ipynb
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .runtime import save_atomic
from .schedules import NoiseSchedule
from .training import TrainConfig, load_checkpoint
from .unet import UNet, UNetConfig

__all__ = ["PRETRAINED", "RESULTS_DIR", "WEIGHTS_DIR", "Pretrained", "benchmark_results", "build_model",
           "export_pretrained", "pretrained"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
PRETRAINED = {"mnist": "mnist_unet.pt", "mnist_flow": "mnist_flow_unet.pt",  # name -> file in WEIGHTS_DIR
              "emoji": "emoji_dit.pt"}
RESULTS_DIR = Path(__file__).parent / "results"  # what benchmarks/ measured of the shipped model, for the lessons


@dataclass
class Pretrained:
    """A shipped model: the network (eval mode), the schedule it was trained with, its card.

    Lesson: notebooks/05_sampling.ipynb
    """

    model: nn.Module  # in eval mode, on the requested device (card["weights"]: "ema" or "raw")
    schedule: NoiseSchedule  # sample with this schedule: a model only knows the noise levels it saw
    train_config: TrainConfig
    card: dict  # how it was trained (command, machine, time) and what it scores
    autoencoder: nn.Module | None = None  # a latent model's decoder (lesson 10): samples are latents until decoded

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """A sampler's output as images in [-1, 1]: decoded by the autoencoder for a latent model, else clamped."""
        if self.autoencoder is not None:
            with torch.no_grad():
                return self.autoencoder.decode(x)
        return x.clamp(-1, 1)

    @property
    def num_classes(self) -> int | None:
        return self.model.config.num_classes


def build_model(model_config: dict) -> nn.Module:
    """The network a config dict describes: a ``DiT`` when it says ``"model": "DiT"``, else a ``UNet``.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    config = dict(model_config)
    if config.pop("model", "UNet") == "DiT":
        from .dit import DiT, DiTConfig

        return DiT(DiTConfig(**config))
    return UNet(UNetConfig(**config))


def pretrained(name: str | Path = "mnist", device: str | torch.device = "cpu") -> Pretrained:
    """Load a shipped model by name (offline), or a file written by ``export_pretrained``.

    ``device`` is where the weights go.

    Lesson: notebooks/05_sampling.ipynb
    """
    if isinstance(name, Path) or str(name).endswith(".pt"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
    elif name in PRETRAINED:
        path = WEIGHTS_DIR / PRETRAINED[name]
        if not path.is_file():
            raise FileNotFoundError(f"the weights of {name!r} are missing from the package ({path})")
    else:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)} or a path to a .pt file, got {name!r}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not {"model_config", "train_config", "state_dict", "card"} <= set(data):
        raise ValueError(f"{path} is not a weights file written by export_pretrained")
    model = build_model(data["model_config"])
    model.load_state_dict(data["state_dict"])
    config = TrainConfig(**data["train_config"])
    autoencoder = None
    if data["card"].get("autoencoder"):  # a latent model: its decoder ships beside it
        from .latent import pretrained_autoencoder

        autoencoder = pretrained_autoencoder(path.parent / data["card"]["autoencoder"]).to(device)
    return Pretrained(model.eval().requires_grad_(False).to(device), config.noise_schedule().to(device), config,
                      data["card"], autoencoder)


def export_pretrained(checkpoint: str | Path, out: str | Path, card: dict, weights: str = "ema") -> Path:
    """Write a shippable weights file from a training checkpoint: one set of weights + configs + card.

    ``weights`` is "ema" (the moving average, usually the better sampler) or "raw" (the last
    step's weights: better when the run is short next to the EMA's window, 1/(1-decay) steps;
    measure both). The optimizer state, the other weights and the RNG states are left out.
    Written to a temporary file and renamed, so a failed export leaves nothing half-written.

    Lesson: notebooks/05_sampling.ipynb
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    ckpt = load_checkpoint(checkpoint)
    state = ckpt.ema if weights == "ema" else ckpt.model
    data = {"model_config": ckpt.model_config, "train_config": ckpt.train_config,
            "state_dict": state, "card": dict(card, steps=ckpt.step, weights=weights)}
    build_model(ckpt.model_config).load_state_dict(state)  # raises now if it would not load later
    return save_atomic(data, out)


def _main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lessons.pretrained CHECKPOINT OUT CARD.json [--weights raw]``: export a run."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m diffusion_lessons.pretrained", description=_main.__doc__)
    parser.add_argument("checkpoint", help="a training run's checkpoint.pt")
    parser.add_argument("out", help="the weights file to write, e.g. diffusion_lessons/weights/mnist_unet.pt")
    parser.add_argument("card", help="a JSON file: command, machine, training time, figures")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema", help="which weights to ship")
    args = parser.parse_args(argv)
    out = export_pretrained(args.checkpoint, args.out, json.loads(Path(args.card).read_text()), args.weights)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


def benchmark_results(name: str) -> dict:
    """The shipped results of a benchmark of the shipped model, e.g. ``benchmark_results("sampling_quality")``.

    Lessons 05 and 06 read these instead of running benchmarks that take minutes to hours;
    they ship inside the package, so a lesson finds them wherever it runs (a student
    edition, the grader's empty folder). ``benchmarks/<name>.py`` writes them.

    Lesson: notebooks/05_sampling.ipynb
    """
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in RESULTS_DIR.glob("*.json"))
        raise ValueError(f"no shipped benchmark results named {name!r}; known: {known}")
    return json.loads(path.read_text())

