"""Steps vs quality (lesson 05): the shipped MNIST model sampled by DDPM, DDIM and DPM-Solver++(2M), measured.

    .venv/bin/python benchmarks/sampling_quality.py [--n 500] [--batch 250] [--seed 0] [--threads N]
        [--samplers ddpm:1000 ddim:10 ...] [--out diffusion_lessons/results/sampling_quality.json] [--merge]

Every sampler starts from the same seeded noise x_T (N, 1, 28, 28) and is asked for the
same labels, ``arange(N) % 10`` at guidance 1.0: the plain class-conditional model, one
network call per step, and exactly the class balance of the reference set. So the rows
differ only in the sampler (a paired comparison: much of the noise of a small-N
estimate is shared by all rows). For each sampler the script measures

- the wall time of generating all N digits (batches of ``--batch``, ``torch.inference_mode``),
- FLD, the Fréchet distance between classifier features of the samples and of the 1000
  held-out test digits (``metrics.reference_images()``), lower is better,
- label agreement, the share of samples the classifier reads as the digit asked for.

A row "real digits" scores N training digits with the same labels the same way: the floor
that FLD reaches for samples indistinguishable from the data at this N (FLD is biased
upward at small N). Results go to ``--out`` as JSON (rewritten after every sampler, so a
long run that is cut short keeps what it measured), with the machine, the model's card,
the first 10 samples of each sampler (one per digit, for the lesson's pictures) and the
command; the Markdown table is printed at the end. ``--merge`` keeps the rows already in
``--out`` (same N, seed and model) and measures only the samplers named, e.g. to re-run one
row. Each row records the 1-minute load average before and after it: on a shared machine the
wall times are only as steady as the load.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import diffusion_lessons as dl
from diffusion_lessons import flow, metrics, sampling
from diffusion_lessons.pretrained import RESULTS_DIR, pretrained
from diffusion_lessons.runtime import cpu_name, write_atomic

CHURN = 10.0  # EDM Alg. 2 S_churn for the "heunc" rows: γ = min(10/N, √2 - 1)
DEFAULT_OUT = RESULTS_DIR / "sampling_quality.json"  # shipped in the package: lesson 05 reads it
DEFAULT_SAMPLERS = ["dpm:10", "dpm:20", "dpm1:10", "dpm1:20", "ddim:10", "ddim:20", "ddim:50", "ddim:100", "ddim1:20",
                    "ddim1:50", "ddpm:1000"]  # cheap ones first
NAMES = {"ddpm": "DDPM (ancestral, σ²=β̃)", "ddim": "DDIM η=0", "ddim1": "DDIM η=1", "dpm": "DPM-Solver++(2M)",
         "dpm1": "SDE-DPM-Solver++(2M) η=1", "euler": "Euler, Karras σ (EDM)", "heun": "Heun, Karras σ (EDM Alg. 1)",
         "heuni": "Heun, Karras σ, fractional t", "heunc": f"Heun + churn {CHURN:g} (EDM Alg. 2)",
         "fme": "flow matching, Euler", "fmm": "flow matching, midpoint", "fmh": "flow matching, Heun"}
FLOW_KINDS = {"fme": "euler", "fmm": "midpoint", "fmh": "heun"}  # lesson 09: need a flow model (--model)
EDM_KINDS = {"euler": {"method": "euler"}, "heun": {}, "heuni": {"round_sigma": False}, "heunc": {"churn": CHURN}}



def parse_sampler(spec: str) -> tuple[str, int]:
    """"ddim:20" -> ("ddim", 20). Kinds: ddpm (steps must be T), ddim (η=0), ddim1 (η=1), dpm (η=0), dpm1 (η=1),
    and lesson 08's euler, heun, heuni (fractional t), heunc (churn): these take Karras levels, not steps."""
    kind, _, steps = spec.partition(":")
    if kind not in NAMES or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"a sampler is KIND:STEPS with KIND in {sorted(NAMES)}, got {spec!r}")
    return kind, int(steps)


def sample(model, s, kind: str, steps: int, x_T: torch.Tensor, y: torch.Tensor, batch: int, seed: int) -> torch.Tensor:
    """All N digits with one sampler, ``batch`` at a time; stochastic samplers draw from a seeded generator."""
    gen = torch.Generator().manual_seed(seed + 1)  # the noise added along the way (DDPM, DDIM η=1)
    out = []
    for xb, yb in zip(x_T.split(batch), y.split(batch), strict=True):
        common = {"generator": gen, "y": yb, "guidance": 1.0}
        if kind == "ddpm":
            if steps != s.T:
                raise ValueError(f"DDPM runs every step: ddpm:{s.T}, got ddpm:{steps}")
            out.append(sampling.ddpm_sample(model, xb, s, **common))
        elif kind in FLOW_KINDS:  # lesson 09: integrate the velocity from t = 0 to 1 in ``steps`` equal steps
            out.append(flow.flow_sample(model, xb, steps=steps, method=FLOW_KINDS[kind], y=yb))
        elif kind in EDM_KINDS:  # lesson 08: ``steps`` Karras levels, 2·steps - 1 calls for Heun
            method = EDM_KINDS[kind].get("method", "heun")
            options = {k: v for k, v in EDM_KINDS[kind].items() if k != "method"}
            out.append(sampling.edm_sample(model, xb, s, steps=steps, method=method, **options, **common))
        elif kind in ("ddim", "ddim1"):
            out.append(sampling.ddim_sample(model, xb, s, steps=steps, eta=0.0 if kind == "ddim" else 1.0, **common))
        else:
            eta = 1.0 if kind == "dpm1" else 0.0
            out.append(sampling.dpm_solver_sample(model, xb, s, steps=steps, eta=eta, **common))
    return torch.cat(out).clamp(-1, 1)  # (N, 1, 28, 28)


class Counted:
    """The model, counting its calls: the network evaluations (NFE) each sampler spends."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.null_label = getattr(model, "null_label", None)

    def __call__(self, *args):
        self.calls += 1
        return self.model(*args)


def preview(images: torch.Tensor) -> str:
    """The first 10 images as base64 uint8 (10·784 bytes): for the lesson's picture of each sampler."""
    return base64.b64encode(((images[:10] + 1) * 127.5).round().to(torch.uint8).numpy().tobytes()).decode()


def real_digits(n: int, y: torch.Tensor) -> torch.Tensor:
    """n training digits with labels y: for each label, its training digits in order."""
    x_train, y_train = dl.mnist5k(split="train")
    pools = {c: x_train[y_train == c] for c in range(10)}
    taken = dict.fromkeys(range(10), 0)
    out = []
    for c in y.tolist():
        out.append(pools[c][taken[c]])
        taken[c] += 1
    return torch.stack(out)


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def markdown_table(results: dict) -> str:
    """The rows in reading order (DDPM, DDIM, DPM-Solver; fewer steps first), then the real-digit floor."""
    rows = sorted(results["rows"], key=lambda r: (list(NAMES).index(r["kind"]), r["steps"]))
    ddpm = next((r for r in rows if r["kind"] == "ddpm"), None)

    def ratio(fld: float) -> str:
        return f"{fld / ddpm['fld']:.2f}" if ddpm else "n/a"

    lines = ["| sampler | steps = network calls | FLD ↓ | FLD / DDPM's | label agreement ↑ | wall time "
             "| ms per digit |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['fld']:.2f} | {ratio(r['fld'])} "
                     f"| {r['label_agreement']:.1%} | {r['seconds']:.1f} s "
                     f"| {1000 * r['seconds'] / results['n']:.1f} |")
    real = results["real"]
    lines.append(f"| real digits (train split): the floor | | {real['fld']:.2f} | {ratio(real['fld'])} "
                 f"| {real['label_agreement']:.1%} | | |")
    return "\n".join(lines)


def goal_line(results: dict) -> str:
    rows = results["rows"]
    ddpm = next((r for r in rows if r["kind"] == "ddpm"), None)
    twenty = [r for r in rows if r["steps"] == 20]
    if not ddpm or not twenty:
        return "goal: needs the ddpm:1000 row and a 20-step row"
    best = min(twenty, key=lambda r: r["fld"])
    ok = best["fld"] <= 1.1 * ddpm["fld"]
    return (f"goal (a 20-step sampler within 10% of 1000-step DDPM's FLD): {'met' if ok else 'NOT met'}: "
            f"{best['sampler']} at 20 steps scores {best['fld']:.2f}, {best['fld'] / ddpm['fld']:.2f}x DDPM's "
            f"{ddpm['fld']:.2f}, {ddpm['seconds'] / best['seconds']:.0f}x faster")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="digits per sampler (FLD is biased at small N: state it)")
    parser.add_argument("--batch", type=int, default=250, help="digits per batch")
    parser.add_argument("--seed", type=int, default=0, help="seeds x_T and the noise of stochastic samplers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--samplers", nargs="+", type=parse_sampler,
                        default=[parse_sampler(spec) for spec in DEFAULT_SAMPLERS],
                        help="KIND:STEPS, KIND in ddpm, ddim (η=0), ddim1 (η=1), dpm (η=0), dpm1 (η=1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON results file")
    parser.add_argument("--model", default="mnist",
                        help="shipped model name (mnist; mnist_flow for the fme/fmm/fmh kinds) or a .pt file")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --out measured with the same N, seed and model, re-measure the others")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    p = pretrained(args.model)
    model, s = p.model, p.schedule
    is_flow = p.train_config.objective == "flow"
    for kind, _ in args.samplers:
        if (kind in FLOW_KINDS) != is_flow:
            parser.error(f"sampler {kind} needs a {'flow' if kind in FLOW_KINDS else 'diffusion'} model; "
                         f"--model {args.model} is trained with objective={p.train_config.objective!r}")
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))  # (N, 1, 28, 28)
    y = torch.arange(args.n) % 10  # (N,) labels 0..9, 0..9, ...: the test set's class balance
    reference = metrics.reference_images()  # (1000, 1, 28, 28) held-out test digits
    real = real_digits(args.n, y)
    results = {
        "command": shlex.join(["python", "benchmarks/sampling_quality.py", *argv]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores of {cpu_name()}", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_average_at_start": round(os.getloadavg()[0], 2),
        "n": args.n, "batch": args.batch, "seed": args.seed,
        "conditioning": "class-conditional, labels arange(N) % 10, guidance 1.0 (one network call per step)",
        "reference": "metrics.reference_images(): the 1000 held-out test digits, 100 of each",
        "model": {"name": str(args.model), **{k: p.card.get(k) for k in ("final", "steps", "date", "machine")
                                              if k in p.card}},
        "real": {"fld": metrics.frechet_distance(reference, real), "label_agreement": metrics.label_agreement(real, y),
                 "preview": preview(real)},
        "rows": [],
    }
    if args.merge and args.out.is_file():
        old = json.loads(args.out.read_text())
        if all(old.get(k) == results[k] for k in ("n", "seed", "model")):
            wanted = set(args.samplers)
            results["rows"] = [r for r in old["rows"] if (r["kind"], r["steps"]) not in wanted]
            results["command"] = old["command"] + " ; " + results["command"]
            results["date"] = old["date"] + " ; " + results["date"]  # the first run's rows, then this one's
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {results['machine']}; "
          f"N={args.n} digits per sampler, batch {args.batch}; model card final={p.card.get('final')}", flush=True)
    with torch.inference_mode():
        for kind, steps in args.samplers:
            load = os.getloadavg()[0]
            counted = Counted(model)
            start = time.perf_counter()
            images = sample(counted, s, kind, steps, x_T, y, args.batch, args.seed)
            seconds = time.perf_counter() - start
            batches = -(-args.n // args.batch)
            row = {"sampler": NAMES[kind], "kind": kind, "steps": steps, "nfe": counted.calls // batches,
                   "seconds": round(seconds, 2),
                   "fld": metrics.frechet_distance(reference, images),
                   "label_agreement": metrics.label_agreement(images, y), "preview": preview(images),
                   "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}  # 1-min, before and after
            results["rows"].append(row)
            results["load_average_at_end"] = round(os.getloadavg()[0], 2)
            write_json(args.out, results)
            print(f"{row['sampler']:>30} {steps:>5} steps, {row['nfe']:>4} calls: FLD {row['fld']:8.3f}  agreement "
                  f"{row['label_agreement']:.3f}  {seconds:7.1f} s", flush=True)
    print()
    print(markdown_table(results))
    print()
    print(goal_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
