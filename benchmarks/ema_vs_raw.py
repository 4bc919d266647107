"""EMA or raw weights? The shipped model's targets, measured on both weight sets of a training checkpoint.

    python benchmarks/ema_vs_raw.py runs/pretrained_mnist_v2/checkpoint.pt benchmarks/results/pretrained_mnist_eval.json
        [--n 500] [--batch 250] [--weights ema raw]

For each weight set (the EMA and the last step's raw weights), from the same seeded noise as
``sampling_quality.py`` (x_T seed 0, labels ``arange(N) % 10``, so the rows line up with its table):

- DDIM, 50 steps, η = 0, no guidance: FLD and label agreement (the issue's targets: FLD within
  15% of 1000-step DDPM's, agreement at least 97%);
- DPM-Solver++(2M), 10 steps, no guidance: FLD (target: within 25% of DDPM's);
- DPM-Solver++(2M), 20 steps, guidance 3: label agreement (target: at least 99%);
- unconditional samples (the "no label" class, DPM-Solver++(2M) 20 steps, x_T seed 1): the share of
  each digit as the classifier reads them (target: every digit between 5% and 15%), and FLD.

DDPM's 1000 steps are not run here (1000 network calls per weight set): ``sampling_quality.py``
measures them for the weights that are shipped, and ``targets.py`` puts everything side by side.
This chose which weights the shipped MNIST model carries (diffusion_lessons/weights/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from diffusion_lessons import metrics
from diffusion_lessons.runtime import cpu_name, write_atomic
from diffusion_lessons.sampling import ddim_sample, dpm_solver_sample
from diffusion_lessons.training import TrainConfig, load_checkpoint
from diffusion_lessons.unet import UNet, UNetConfig


def sample(fn, model, x_T: torch.Tensor, y: torch.Tensor | None, batch: int, **kwargs) -> torch.Tensor:
    """Run a sampler over x_T (N, 1, 28, 28) ``batch`` digits at a time; clamp to the data range."""
    ys = [None] * len(x_T.split(batch)) if y is None else y.split(batch)
    return torch.cat([fn(model, xb, y=yb, **kwargs) for xb, yb in zip(x_T.split(batch), ys, strict=True)]).clamp(-1, 1)


def evaluate(model, s, n: int, batch: int) -> dict:
    """The targets' measurements of one weight set (see the module docstring)."""
    ref = metrics.reference_images()  # (1000, 1, 28, 28) held-out test digits
    y = torch.arange(n) % 10
    x_T = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # as sampling_quality.py
    r = {}
    start = time.perf_counter()
    x = sample(ddim_sample, model, x_T, y, batch, s=s, steps=50, eta=0.0)
    r["ddim50_fld"], r["ddim50_agreement"] = metrics.frechet_distance(ref, x), metrics.label_agreement(x, y)
    x = sample(dpm_solver_sample, model, x_T, y, batch, s=s, steps=10)
    r["dpm10_fld"], r["dpm10_agreement"] = metrics.frechet_distance(ref, x), metrics.label_agreement(x, y)
    x = sample(dpm_solver_sample, model, x_T, y, batch, s=s, steps=20, guidance=3.0)
    r["dpm20_w3_fld"], r["dpm20_w3_agreement"] = metrics.frechet_distance(ref, x), metrics.label_agreement(x, y)
    x_u = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x = sample(dpm_solver_sample, model, x_u, None, batch, s=s, steps=20)
    counts = torch.bincount(metrics.classify(x), minlength=10)
    r["uncond_counts"], r["uncond_fld"] = counts.tolist(), metrics.frechet_distance(ref, x)
    r["uncond_share_min"], r["uncond_share_max"] = counts.min().item() / n, counts.max().item() / n
    r["seconds"] = round(time.perf_counter() - start, 1)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a training run's checkpoint.pt")
    parser.add_argument("out", type=Path, help="the JSON file to write")
    parser.add_argument("--n", type=int, default=500, help="digits per measurement")
    parser.add_argument("--batch", type=int, default=250, help="digits per sampler call")
    parser.add_argument("--weights", nargs="+", choices=["ema", "raw"], default=["ema", "raw"])
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    s = TrainConfig(**ckpt.train_config).noise_schedule()
    out = {"checkpoint": str(args.checkpoint), "step": ckpt.step, "n": args.n,
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{os.cpu_count()} cores of {cpu_name()}", "torch": torch.__version__,
           "command": " ".join(["python", "benchmarks/ema_vs_raw.py", *(sys.argv[1:] if argv is None else argv)])}
    for name in args.weights:
        model = UNet(UNetConfig(**ckpt.model_config))
        model.load_state_dict(ckpt.ema if name == "ema" else ckpt.model)
        model.eval().requires_grad_(False)
        with torch.inference_mode():
            out[name] = evaluate(model, s, args.n, args.batch)
        print(name, out[name], flush=True)
        text = json.dumps(out, indent=1) + "\n"
        write_atomic(args.out, lambda f, text=text: f.write(text.encode()))  # after each set: a cut run keeps it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
