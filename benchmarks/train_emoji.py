"""Train the shipped text-to-emoji model (``pretrained("emoji")``) and export it with its card.

    python benchmarks/train_emoji.py --out runs/emoji --steps 6000
    python benchmarks/train_emoji.py --out runs/emoji --export diffusion_lessons/weights/emoji_dit.pt

A DiT (lesson 10) on 32x32 OpenMoji emoji, conditioned on their captions through the word-level
text encoder, trained with the course's own ``train`` loop (ε-prediction, cosine schedule,
10% of captions dropped for classifier-free guidance). Only ``emoji(split="train")`` is used:
the test split is held out for the Fréchet distance and the nearest-neighbour check.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import diffusion_lessons as dl
from diffusion_lessons.data import emoji
from diffusion_lessons.dit import DiT, DiTConfig
from diffusion_lessons.latent import AUTOENCODER_PATH, pretrained_autoencoder
from diffusion_lessons.pretrained import export_pretrained
from diffusion_lessons.runtime import cpu_name, save_atomic
from diffusion_lessons.text import build_vocabulary

SIZES = {  # "small": the shipped CPU model (4.3M parameters); "large": for a GPU (benchmarks/gpu_suite.sh)
    "small": dict(patch_size=4, hidden_size=176, depth=6, heads=4),
    "large": dict(patch_size=2, hidden_size=384, depth=12, heads=6),  # 256 tokens, ~23M parameters (DiT-S/2-like)
}
MODEL = dict(image_size=32, in_channels=3, caption_length=8)
TRAIN = dict(lr=3e-4, warmup_steps=200, ema_decay=0.999, schedule="cosine", p_uncond=0.1, seed=0,
             checkpoint_every=500, log_every=50)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the run's folder (checkpoint.pt, run.json)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--json", help="also write the card here (the GPU suite reads it)")
    parser.add_argument("--latent", action="store_true",
                        help="diffuse the shipped autoencoder's 8x8x4 latents (patch 1) instead of pixels")
    parser.add_argument("--export", help="write the shippable weights file here from the run's checkpoint")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.export:
        run = json.loads((out / "run.json").read_text())
        path = export_pretrained(out / "checkpoint.pt", args.export, run["card"], weights="ema")
        # float16 storage halves the file (17 -> 8.6 MB); load_state_dict casts back to float32
        data = torch.load(path, map_location="cpu", weights_only=True)
        data["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
        data["card"]["stored_as"] = "float16 (loaded as float32)"
        save_atomic(data, path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return 0
    torch.set_num_threads(args.threads)
    images, captions, _ = emoji(split="train")
    shape = dict(MODEL, **SIZES[args.size])
    if args.latent:  # Rombach et al.: the denoiser learns the autoencoder's latents, one token per latent pixel
        autoencoder = pretrained_autoencoder()
        with torch.no_grad():
            images = torch.cat([autoencoder.encode(b) for b in images.split(256)])  # (N, 4, 8, 8), unit variance
        shape.update(image_size=images.shape[-1], in_channels=images.shape[1], patch_size=1)
    model = DiT(DiTConfig(words=build_vocabulary(captions), **shape))
    y = model.tokenize(captions)
    config = dl.TrainConfig(steps=args.steps, device=args.device, batch_size=args.batch_size, **TRAIN)
    start = time.time()
    result = dl.train(model, images, config, labels=y, out_dir=out, resume=(out / "checkpoint.pt").is_file(),
                      data_id="emoji:train")
    seconds = time.time() - start
    card = {"command": "python " + " ".join(["benchmarks/train_emoji.py", *(argv or sys.argv[1:])]),
            "machine": f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, {platform.python_version()}",
            "train_seconds": round(seconds), "data": "dl.emoji(split='train'): "
            f"{len(captions)} OpenMoji emoji, 32x32 (CC BY-SA 4.0)", "vocabulary": len(model.config.words),
            "parameters": sum(p.numel() for p in model.parameters()), "final_loss": result.losses[-1]
            if result.losses else None, "attribution": dl.data.EMOJI_ATTRIBUTION}
    if args.latent:
        card["autoencoder"] = AUTOENCODER_PATH.name  # pretrained() loads it from beside the weights
    card.update(size=args.size, device=args.device, batch_size=args.batch_size, steps=result.steps,
                images_per_second=round(result.images_per_second, 1))
    if args.device != "cpu":
        card["machine"] = f"{card['machine']}, {torch.cuda.get_device_name() if torch.cuda.is_available() else ''}"
    (out / "run.json").write_text(json.dumps({"card": card}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(card, indent=1))
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
