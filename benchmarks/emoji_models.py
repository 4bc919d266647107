"""Lesson 10's measurements on 32x32 emoji: DiT against the U-Net, latent against pixel diffusion, and the
shipped text-to-emoji model.

    python benchmarks/emoji_models.py autoencoder   # trains and ships weights/emoji_autoencoder.pt
    python benchmarks/emoji_models.py compare       # results/emoji_models.json (+ a sample grid per model)
    python benchmarks/emoji_models.py evaluate      # results/emoji_text.json: the shipped pretrained("emoji")

``compare`` trains three class-conditional models (the 8 emoji groups) for the same number of steps
of the same batches of ``emoji(split="train")``: a U-Net and a DiT of matched parameter counts on
pixels, and the same DiT on the autoencoder's 8x8x4 latents. For each it measures FLOPs per call
(torch's FlopCounterMode), CPU seconds per training step and per sample, and the quality of 400
samples (50 per group, EDM's stochastic sampler with 30 levels, x̂0 clipped to [-1, 1] for the pixel
models, guidance 2): the Fréchet distance
against the held-out emoji on the emoji classifier's features, and category agreement. One heavy
job: run it alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import diffusion_lessons as dl
from diffusion_lessons import metrics
from diffusion_lessons.data import EMOJI_ATTRIBUTION, emoji
from diffusion_lessons.dit import DiT, DiTConfig
from diffusion_lessons.latent import AUTOENCODER_PATH as AUTOENCODER
from diffusion_lessons.latent import AutoencoderConfig, pretrained_autoencoder, train_autoencoder
from diffusion_lessons.pretrained import RESULTS_DIR, pretrained
from diffusion_lessons.runtime import cpu_name, save_atomic
from diffusion_lessons.sampling import edm_sample
from diffusion_lessons.unet import UNet, UNetConfig, count_parameters

UNET = dict(in_channels=3, image_size=32, base_channels=32, channel_mults=(1, 2, 2), attention_resolutions=(8,),
            num_classes=8)
DIT = dict(patch_size=4, hidden_size=120, depth=6, heads=4, num_classes=8)  # 1.66M parameters: the U-Net has 1.63M
# ema_power: the EMA's decay grows from 0 towards 0.999 (a plain 0.999 keeps 0.999^1200 = 30% of the zero-output
# initial weights after 1200 steps: measured, its samples were pure noise)
TRAIN = dict(batch_size=64, lr=3e-4, warmup_steps=200, ema_decay=0.999, ema_power=0.75, schedule="cosine", seed=0,
             device="cpu", log_every=50, checkpoint_every=100_000)
N_PER_GROUP, SAMPLE_STEPS, GUIDANCE = 50, 30, 2.0  # EDM levels (59 network calls), classifier-free guidance


def machine() -> str:
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.python_version()}"


def save_grid(images: torch.Tensor, path: Path, rows: int = 8) -> None:
    """A grid PNG of images (R·C, 3, 32, 32) in [-1, 1], one group per row."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # (N, 32, 32, 3)
    cols = len(x) // rows
    grid = x[: rows * cols].reshape(rows, cols, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, cols * 32, 3)
    Image.fromarray(grid).save(path)


def cmd_autoencoder(args: argparse.Namespace) -> dict:
    images = emoji(split="train").images
    config = AutoencoderConfig(channels=args.channels, steps=args.steps)
    start = time.process_time()
    ae, losses = train_autoencoder(images, config)
    test = emoji(split="test").images
    with torch.no_grad():
        recon = ae.decode(ae.encode(test))
    card = {"command": "python benchmarks/emoji_models.py " + " ".join(sys.argv[1:]), "machine": machine(),
            "train_seconds": round(ae.train_seconds), "cpu_seconds": round(time.process_time() - start),
            "parameters": count_parameters(ae), "final_loss": round(float(np.mean(losses[-50:])), 5),
            "test_rmse": round((recon - test).pow(2).mean().sqrt().item(), 4), "scale": round(ae.scale.item(), 4),
            "data": f"dl.emoji(split='train'): {len(images)} emoji", "attribution": EMOJI_ATTRIBUTION}
    save_atomic({"config": config.to_dict(), "state_dict": ae.state_dict(), "card": card}, AUTOENCODER)
    print(json.dumps(card, indent=1))
    return card


def sample(model: torch.nn.Module, x_T: torch.Tensor, s, y: torch.Tensor, guidance: float,
           generator: torch.Generator, clip_x0: bool = False) -> torch.Tensor:
    """EDM's stochastic sampler (Algorithm 2, churn 10). It starts at σ = 80, not at the cosine schedule's last
    step (σ ≈ 20,000, where an ε error of 1% is an x̂0 error of 200): measured, DDIM and DPM-Solver++ from
    t = 999 without clipping give noise on the shipped model, EDM's sampler emoji. ``clip_x0`` clamps x̂0 to
    [-1, 1] (pixel models only: latents have no such range); the short comparison runs need it."""
    return edm_sample(model, x_T, s, steps=SAMPLE_STEPS, churn=10.0, y=y, guidance=guidance, clip_x0=clip_x0,
                      generator=generator)


def flops_per_call(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.zeros(x.shape[0], dtype=torch.long), y)
    return counter.get_total_flops() // x.shape[0]


def evaluate_samples(images: torch.Tensor, labels: torch.Tensor, test: torch.Tensor) -> dict:
    return {"fd": round(metrics.emoji_frechet_distance(test, images), 3),
            "category_agreement": round(metrics.category_agreement(images, labels), 3)}


def cmd_compare(args: argparse.Namespace) -> dict:
    images, _, labels = emoji(split="train")
    test = emoji(split="test").images
    ae = pretrained_autoencoder()
    with torch.no_grad():
        latents = torch.cat([ae.encode(b) for b in images.split(256)])  # (N, 4, 8, 8), unit variance
    y = torch.arange(8).repeat_interleave(N_PER_GROUP)  # 50 of each group
    rng = torch.Generator().manual_seed(1)
    balanced = torch.cat([torch.nonzero(labels == k).squeeze(1)[torch.randperm(int((labels == k).sum()),
                                                                               generator=rng)[:N_PER_GROUP]]
                          for k in range(8)])  # up to 50 real training emoji per group
    results = {"machine": machine(), "steps": args.steps, "train": TRAIN, "samples": len(y),
               "sample_steps": SAMPLE_STEPS, "guidance": GUIDANCE, "test_images": len(test), "models": {},
               "floor": {"what": "training emoji (up to 50 per group) against the held-out emoji",
                         **evaluate_samples(images[balanced], labels[balanced], test)},
               "classifier_test_accuracy": metrics.emoji_classifier().card["test_accuracy"]}
    with torch.no_grad():
        recon = torch.cat([ae.decode(ae.encode(b)) for b in test.split(256)])
    results["autoencoder"] = {"test_rmse": round((recon - test).pow(2).mean().sqrt().item(), 4),
                              "fd_reconstructions": round(metrics.emoji_frechet_distance(test, recon), 3),
                              "parameters": count_parameters(ae), "numbers_per_image": [3 * 32 * 32, 4 * 8 * 8]}
    save_grid(torch.cat([test[:16], recon[:16]]), RESULTS_DIR / "emoji_autoencoder.png", rows=2)
    kinds = [k for k in ("unet", "dit", "latent_dit") if k in args.models]
    for kind in kinds:
        torch.manual_seed(0)
        if kind == "unet":
            model, data = UNet(UNetConfig(**UNET)), images
        elif kind == "dit":
            model, data = DiT(DiTConfig(**DIT)), images
        else:
            model, data = DiT(DiTConfig(image_size=8, in_channels=4, **dict(DIT, patch_size=1))), latents
        shape = tuple(data.shape[1:])
        config = dl.TrainConfig(steps=args.steps, **TRAIN)
        start = time.perf_counter()
        result = dl.train(model, data, config, labels=labels)
        train_s = time.perf_counter() - start
        net = result.ema.eval()
        x_T = torch.randn((len(y), *shape), generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            out = torch.cat([sample(net, xb, config.noise_schedule(), yb, GUIDANCE, gen, clip_x0=kind != "latent_dit")
                             for xb, yb in zip(x_T.split(100), y.split(100), strict=True)])
            sample_s = time.perf_counter() - start
            if kind == "latent_dit":
                start = time.perf_counter()
                out = torch.cat([ae.decode(b) for b in out.split(256)])
                decode_s = time.perf_counter() - start
            else:
                out, decode_s = out.clamp(-1, 1), 0.0
        row = {"parameters": count_parameters(model), "data_shape": list(shape),
               "flops_per_call": flops_per_call(net, x_T[:4], y[:4]),
               "train_seconds": round(train_s, 1), "seconds_per_step": round(train_s / args.steps, 4),
               "final_loss": round(float(np.mean(result.losses[-100:])), 4),
               "seconds_per_sample": round((sample_s + decode_s) / len(y), 4),
               "decode_seconds_per_sample": round(decode_s / len(y), 5),
               **evaluate_samples(out, y, test)}
        near, _ = metrics.nearest_neighbours(out, images)
        row["median_nn_distance"] = round(near.median().item(), 4)
        row["steps"] = args.steps
        results["models"][kind + args.suffix] = row
        save_grid(out.reshape(8, N_PER_GROUP, 3, 32, 32)[:, :12].reshape(-1, 3, 32, 32),
                  RESULTS_DIR / f"emoji_{kind}{args.suffix}.png")
        print(kind, json.dumps(row), flush=True)
    near, _ = metrics.nearest_neighbours(test, images)
    results["test_median_nn_distance"] = round(near.median().item(), 4)
    path = RESULTS_DIR / "emoji_models.json"
    if path.is_file() and args.merge:
        old = json.loads(path.read_text())
        results["models"] = {**old.get("models", {}), **results["models"]}
        results["steps"] = old.get("steps", results["steps"])
    path.write_text(json.dumps(results, indent=1) + "\n")
    return results


def cmd_evaluate(args: argparse.Namespace) -> dict:
    p = pretrained("emoji")
    images, captions, _ = emoji(split="train")
    test, test_captions, test_labels = emoji(split="test")
    model, s = p.model, p.schedule
    out_rows = {"machine": machine(), "guidance": {}, "test_images": len(test)}
    reps = 3  # each held-out caption three times: 537 samples
    prompts = [c for c in test_captions for _ in range(reps)]
    want = test_labels.repeat_interleave(reps)
    shape = (model.config.in_channels, model.config.image_size, model.config.image_size)  # pixels or latents

    def generate(x_T: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return torch.cat([p.to_images(sample(model, xb, s, yb, w, gen))
                              for xb, yb in zip(x_T.split(100), y.split(100), strict=True)])

    x_T = torch.randn(len(prompts), *shape, generator=torch.Generator().manual_seed(0))
    y = model.tokenize(prompts)
    for w in args.guidance:
        start = time.perf_counter()
        out = generate(x_T, y, w)
        seconds = time.perf_counter() - start
        near, _ = metrics.nearest_neighbours(out, images)
        row = {**evaluate_samples(out, want, test), "seconds_per_sample": round(seconds / len(prompts), 4),
               "median_nn_distance": round(near.median().item(), 4)}
        out_rows["guidance"][str(w)] = row
        print(w, row, flush=True)
    near, _ = metrics.nearest_neighbours(test, images)
    out_rows["test_median_nn_distance"] = round(near.median().item(), 4)
    # the training captions: does the model reproduce its training images?
    idx = torch.randperm(len(captions), generator=torch.Generator().manual_seed(0))[:300]
    out = generate(torch.randn(len(idx), *shape, generator=torch.Generator().manual_seed(1)),
                   model.tokenize([captions[i] for i in idx]), args.guidance[1])
    near, which = metrics.nearest_neighbours(out, images)
    out_rows["train_captions"] = {"samples": len(idx), "guidance": args.guidance[1],
                                  "median_nn_distance": round(near.median().item(), 4),
                                  "nearest_is_own_image": round((which == idx).float().mean().item(), 3)}
    print(out_rows["train_captions"])
    path = RESULTS_DIR / "emoji_text.json"
    path.write_text(json.dumps(out_rows, indent=1) + "\n")
    return out_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("autoencoder")
    a.add_argument("--steps", type=int, default=2000)
    a.add_argument("--channels", type=int, default=32)
    c = sub.add_parser("compare")
    c.add_argument("--steps", type=int, default=1200)
    c.add_argument("--models", nargs="+", default=["unet", "dit", "latent_dit"])
    c.add_argument("--merge", action="store_true", help="keep the other models' rows of the results file")
    c.add_argument("--suffix", default="", help="appended to each row's name, e.g. _4400 for a longer run")
    e = sub.add_parser("evaluate")
    e.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 6.0])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"autoencoder": cmd_autoencoder, "compare": cmd_compare, "evaluate": cmd_evaluate}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
