"""Classifier-free guidance on the shipped MNIST model: quality vs diversity against the scale w (lesson 06).

    nice -n 10 .venv/bin/python benchmarks/guidance_quality.py      # --n 500 --scales 0 1 1.5 2 3 5 8 ...

For each guidance scale w, N digits (labels 0, 1, ..., 9, 0, 1, ...) are sampled from the
SAME seeded noise x_T with a deterministic sampler (DPM-Solver++(2M), 20 steps, by default; ``--sampler ddim``:
DDIM, 50 steps, η = 0), and measured
with the shipped classifier (``diffusion_lessons.metrics``) against the held-out test digits:

- label agreement: the share of samples the classifier reads as the digit asked for;
- FLD: the Fréchet distance of the classifier features to ``metrics.reference_images()`` (1000);
- within-class spread: the mean pairwise distance between the features of samples the classifier
  puts in the same class, averaged over the classes, divided by the same number for the held-out
  digits (1.0: as varied as real digits; below 1: guidance makes each digit more alike);
- wall time of the sampling.

w = 0 is the unconditional model (sampled with ``y=None``: the "no label" class, one network call
per step; its agreement with the labels 0..9 is chance, 0.1). Its class histogram (which digits the
unconditional model draws) is reported too. Finally, the time to sample 64 digits with the sampler at the
recommended scale (median of a few runs, wall and CPU seconds). ``--timing-only`` redoes just that timing
(e.g. for the 50-step DDIM sampler, ``--timing-only --sampler ddim``, or on a quieter machine) and adds it to
the results file, one entry per sampler, thread count and scale.

Writes a Markdown table to stdout and everything to ``diffusion_lessons/results/guidance_quality.json``,
which lesson 06 reads and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

from diffusion_lessons import metrics
from diffusion_lessons.data import mnist5k
from diffusion_lessons.pretrained import RESULTS_DIR, pretrained
from diffusion_lessons.runtime import cpu_name, write_atomic
from diffusion_lessons.sampling import ddim_sample, dpm_solver_sample

RESULTS = RESULTS_DIR / "guidance_quality.json"  # shipped in the package: lesson 06 reads it
AGREEMENT_TARGET = 0.98  # the shipped model's target: conditional samples agree with their labels



def write_json(path: Path, result: dict) -> None:
    """The results file, written atomically: a run killed mid-write leaves the shipped file whole."""
    text = json.dumps(result, indent=2) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def sample(model, s, x_T: Tensor, labels: Tensor | None, w: float, sampler: str, steps: int,
           batch: int) -> Tensor:
    """Digits from x_T (N, 1, 28, 28) at guidance w, ``batch`` at a time; w = 0 samples with y=None."""
    out = []
    for i in range(0, len(x_T), batch):
        x, y = x_T[i:i + batch], None if labels is None or w == 0 else labels[i:i + batch]
        kwargs = {"y": y, "guidance": 1.0 if y is None else w}
        if sampler == "ddim":
            out.append(ddim_sample(model, x, s, steps=steps, eta=0.0, **kwargs))
        else:
            out.append(dpm_solver_sample(model, x, s, steps=steps, **kwargs))
    return torch.cat(out).clamp(-1, 1)  # (N, 1, 28, 28)


def within_class_spread(feats: Tensor, classes: Tensor) -> float:
    """Mean pairwise L2 distance between features (N, D) of the same class, averaged over classes.

    Classes with fewer than 2 members are skipped (no pair to measure).
    """
    spreads = []
    for c in classes.unique():
        f = feats[classes == c].double()  # (n_c, D)
        n = len(f)
        if n >= 2:
            spreads.append((torch.cdist(f, f).sum() / (n * (n - 1))).item())  # the diagonal is 0
    return sum(spreads) / len(spreads) if spreads else float("nan")


def class_histogram(images: Tensor) -> list[int]:
    """How many images the classifier reads as each digit 0..9."""
    return torch.bincount(metrics.classify(images), minlength=10).tolist()


def recommend(rows: list[dict], target: float = AGREEMENT_TARGET) -> float:
    """The scale with the lowest FLD among those whose agreement reaches ``target``.

    If none does, the scale with the highest agreement (ties: the lower FLD). w = 0 never counts.
    """
    guided = [r for r in rows if r["w"] > 0]
    ok = [r for r in guided if r["agreement"] >= target]
    best = min(ok, key=lambda r: r["fld"]) if ok else max(guided, key=lambda r: (r["agreement"], -r["fld"]))
    return best["w"]


def measure(images: Tensor, labels: Tensor, ref: Tensor, ref_spread: float) -> dict:
    """Agreement with ``labels``, FLD to ``ref``, within-class spread relative to ``ref_spread``, class histogram."""
    feats = metrics.features(images)
    return {
        "agreement": metrics.label_agreement(images, labels),
        "fld": metrics.frechet_distance(ref, images),
        "spread": within_class_spread(feats, metrics.classify(images)) / ref_spread,
        "histogram": class_histogram(images),
    }


def sampler_label(sampler: str, steps: int) -> str:
    return f"DDIM, {steps} steps, η=0" if sampler == "ddim" else f"DPM-Solver++(2M), {steps} steps"


def describe_timing(t: dict) -> str:
    return (f"64 digits, {t['sampler']}, w = {t['w']:g}, {t['threads']} threads: median {t['median_s']:.1f} s wall, "
            f"{t['median_cpu_s']:.1f} CPU s (runs {t['runs_s']} s; load average {t['load_average_before']} before, "
            f"{t['load_average_after']} after, on {os.cpu_count()} cores)")


def time_64(model, s, w: float, sampler: str, steps: int, repeats: int) -> dict:
    """Seconds to sample 64 digits (labels 0..9, ...) at guidance w: every run, and the median."""
    labels = torch.arange(64) % 10
    x_T = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    load_before = os.getloadavg()[0]
    runs, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        sample(model, s, x_T, labels, w, sampler, steps, batch=64)
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)  # CPU seconds of this process, all its threads together
    return {"sampler": sampler_label(sampler, steps), "w": w, "digits": 64, "threads": torch.get_num_threads(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "runs_s": [round(r, 2) for r in runs],
            "median_s": round(statistics.median(runs), 2), "cpu_s": [round(c, 2) for c in cpu],
            "median_cpu_s": round(statistics.median(cpu), 2),
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="digits per guidance scale")
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 1, 1.5, 2, 3, 5, 8], help="guidance scales w")
    parser.add_argument("--sampler", choices=["dpm", "ddim"], default="dpm", help="DPM-Solver++(2M) or DDIM (η=0)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: 20 DPM-Solver++, 50 DDIM)")
    parser.add_argument("--batch", type=int, default=250, help="digits per sampler call")
    parser.add_argument("--seed", type=int, default=0, help="seeds x_T, shared by every scale")
    parser.add_argument("--timing-repeats", type=int, default=3, help="runs of the 64-digit timing (0: skip)")
    parser.add_argument("--timing-scale", type=float, default=None, help="w for the timing (default: recommended)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only redo the 64-digit timing (e.g. on a quieter machine) and update it in --out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file to write")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (50 if args.sampler == "ddim" else 20)

    p = pretrained("mnist")
    model, s = p.model, p.schedule
    sampler_name = sampler_label(args.sampler, steps)
    if args.timing_only:
        result = json.loads(args.out.read_text())
        w_time = result["recommended_w"] if args.timing_scale is None else args.timing_scale
        timing = time_64(model, s, w_time, args.sampler, steps, max(args.timing_repeats, 1))
        same = (timing["sampler"], timing["threads"], timing["w"])
        result["timing_64"] = [t for t in result["timing_64"]
                               if (t["sampler"], t["threads"], t["w"]) != same] + [timing]
        write_json(args.out, result)
        print(describe_timing(timing))
        return
    labels = torch.arange(args.n) % 10  # (N,) 0, 1, ..., 9, 0, 1, ...: balanced like the reference set
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))  # the same for every w
    ref = metrics.reference_images()  # (1000, 1, 28, 28): the held-out test digits
    ref_spread = within_class_spread(metrics.features(ref), metrics.classify(ref))
    train, train_labels = mnist5k(split="train")
    real = torch.cat([train[train_labels == d][: args.n // 10] for d in range(10)])  # N real digits, never in ref
    floor = metrics.frechet_distance(ref, real)  # real vs real at this N: the best a model can hope for

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print(f"shipped model: {p.card.get('steps', '?')} training steps, final={p.card.get('final')}; "
          f"{args.n} digits per scale, {sampler_name}, seed {args.seed}\n")
    print("| guidance w | label agreement | FLD (lower is better) | within-class spread (real = 1) | wall time |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for w in args.scales:
        start = time.perf_counter()
        start_cpu = time.process_time()
        images = sample(model, s, x_T, labels, w, args.sampler, steps, args.batch)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        row = {"w": w, **measure(images, labels, ref, ref_spread), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "network_calls_per_step": 1 if w in (0, 1) else 2}
        rows.append(row)
        note = " (unconditional: chance is 0.1)" if w == 0 else ""
        print(f"| {w:g}{note} | {row['agreement']:.3f} | {row['fld']:.2f} | {row['spread']:.2f} | {wall:.0f} s |",
              flush=True)
    real_row = {"agreement": metrics.label_agreement(real, torch.arange(args.n) // (args.n // 10)), "fld": floor,
                "spread": within_class_spread(metrics.features(real), metrics.classify(real)) / ref_spread}
    print(f"| real training digits ({args.n}) | {real_row['agreement']:.3f} | {floor:.2f} "
          f"| {real_row['spread']:.2f} | |")

    unconditional = next((r for r in rows if r["w"] == 0), None)
    if unconditional is not None:
        hist = unconditional["histogram"]
        print("\nunconditional samples (w = 0), the digit the classifier reads:")
        print("| digit | " + " | ".join(map(str, range(10))) + " |")
        print("|---|" + "---:|" * 10)
        print("| samples | " + " | ".join(map(str, hist)) + " |")
        print(f"covers all ten digits: {min(hist) > 0} (fewest: {min(hist)}, most: {max(hist)} of {args.n})")

    w_rec = recommend(rows)
    reached = any(r["w"] > 0 and r["agreement"] >= AGREEMENT_TARGET for r in rows)
    why = f"lowest FLD with agreement >= {AGREEMENT_TARGET}" if reached else \
        f"no scale reached agreement {AGREEMENT_TARGET}: the highest agreement"
    print(f"\nrecommended scale: w = {w_rec:g} ({why})")
    timings = []
    if args.timing_repeats > 0:
        w_time = w_rec if args.timing_scale is None else args.timing_scale
        timings.append(time_64(model, s, w_time, args.sampler, steps, args.timing_repeats))
        print(describe_timing(timings[0]))

    result = {
        "benchmark": "benchmarks/guidance_quality.py",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores of an {cpu_name()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "model": {"name": "mnist", "final": p.card.get("final"), "training_steps": p.card.get("steps")},
        "settings": {"n": args.n, "sampler": sampler_name, "seed": args.seed, "labels": "arange(n) % 10",
                     "reference": "metrics.reference_images(): the 1000 held-out test digits",
                     "spread": "mean pairwise feature distance within a classified class, relative to the "
                               "held-out digits"},
        "rows": rows,
        "real": {"n": args.n, **real_row},
        "recommended_w": w_rec,
        "agreement_target": AGREEMENT_TARGET,
        "target_reached": reached,
        "unconditional_histogram": unconditional["histogram"] if unconditional else None,
        "timing_64": timings,
    }
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
