"""EMA or raw weights? Label agreement, FLD and class coverage of a training checkpoint's two sets.

    python benchmarks/ema_vs_raw.py runs/pretrained_mnist/checkpoint.pt benchmarks/results/pretrained_mnist_eval.json

Samples N=300 digits with DPM-Solver++(2M), 20 steps, labels arange(N) % 10 at guidance 1 and 3
(seed 0), and 300 unconditional ones (seed 1); measures them with diffusion_lessons.metrics
against the held-out test digits. This chose which weights the shipped MNIST model carries
(diffusion_lessons/weights/README.md).
"""
import json
import sys

import torch

from diffusion_lessons import metrics
from diffusion_lessons.sampling import dpm_solver_sample
from diffusion_lessons.training import TrainConfig, load_checkpoint
from diffusion_lessons.unet import UNet, UNetConfig

c = load_checkpoint(sys.argv[1])
s = TrainConfig(**c.train_config).noise_schedule()
ref = metrics.reference_images()
out = {"step": c.step}
N = 300
for name, sd in [("ema", c.ema), ("raw", c.model)]:
    m = UNet(UNetConfig(**c.model_config))
    m.load_state_dict(sd)
    m.eval()
    r = {}
    y = torch.arange(N) % 10
    for w in [1.0, 3.0]:
        g = torch.Generator().manual_seed(0)
        x = dpm_solver_sample(m, torch.randn(N, 1, 28, 28, generator=g), s, steps=20, y=y, guidance=w)
        r[f"agree_w{w:g}"] = round(metrics.label_agreement(x, y), 4)
        r[f"fld_w{w:g}"] = round(metrics.frechet_distance(ref, x), 3)
    g = torch.Generator().manual_seed(1)
    x = dpm_solver_sample(m, torch.randn(N, 1, 28, 28, generator=g), s, steps=20)
    r["uncond_classes"] = torch.bincount(metrics.classify(x), minlength=10).tolist()
    r["fld_uncond"] = round(metrics.frechet_distance(ref, x), 3)
    out[name] = r
    print(name, r, flush=True)
json.dump(out, open(sys.argv[2], "w"), indent=1)
