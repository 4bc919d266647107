"""The shipped MNIST model against its targets (issue 12), from the results the other benchmarks wrote.

    python benchmarks/targets.py [--quality diffusion_lessons/results/sampling_quality.json]
        [--eval benchmarks/results/pretrained_mnist_eval.json]
        [--guidance diffusion_lessons/results/guidance_quality.json]

Runs no network: it reads

- ``sampling_quality.py``'s rows (1000-step DDPM, DDIM 50 steps η = 0, DPM-Solver++(2M) 10 steps; no guidance);
- ``ema_vs_raw.py``'s measurements of the shipped weight set (guidance 3 with 20 DPM-Solver++ steps; the
  class shares of unconditional samples);
- ``guidance_quality.py``'s timing of 64 digits with 20 DPM-Solver++ steps at guidance 3,

and prints one Markdown table: each target, the measured value and whether it is met.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffusion_lessons.pretrained import RESULTS_DIR, pretrained

HERE = Path(__file__).parent


def rows_of(quality: dict) -> dict:
    return {(r["kind"], r["steps"]): r for r in quality["rows"]}


def targets(quality: dict, evaluation: dict, guidance: dict, weights: str) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each of the issue's targets; ``weights``: the shipped set, "ema" or "raw"."""
    rows = rows_of(quality)
    ddpm, ddim50, dpm10 = rows["ddpm", 1000], rows["ddim", 50], rows["dpm", 10]
    shipped = evaluation[weights]
    timing = [t for t in guidance.get("timing_64", []) if t["sampler"].startswith("DPM-Solver++(2M), 20")
              and t["w"] == 3]
    out = [
        ("DDIM 50 steps, η = 0, no guidance: FLD within 15% of 1000-step DDPM's",
         f"{ddim50['fld']:.2f} vs {ddpm['fld']:.2f} ({ddim50['fld'] / ddpm['fld'] - 1:+.0%})",
         ddim50["fld"] <= 1.15 * ddpm["fld"]),
        ("DDIM 50 steps, η = 0, no guidance: label agreement ≥ 97%", f"{ddim50['label_agreement']:.1%}",
         ddim50["label_agreement"] >= 0.97),
        ("DPM-Solver++(2M) 10 steps: FLD within 25% of 1000-step DDPM's",
         f"{dpm10['fld']:.2f} vs {ddpm['fld']:.2f} ({dpm10['fld'] / ddpm['fld'] - 1:+.0%})",
         dpm10["fld"] <= 1.25 * ddpm["fld"]),
        ("unconditional samples: every digit between 5% and 15%",
         f"{shipped['uncond_share_min']:.1%} to {shipped['uncond_share_max']:.1%} "
         f"(counts {shipped['uncond_counts']} of {evaluation['n']})",
         0.05 <= shipped["uncond_share_min"] and shipped["uncond_share_max"] <= 0.15),
        ("guidance 3, 20 DPM-Solver++ steps: label agreement ≥ 99%", f"{shipped['dpm20_w3_agreement']:.1%}",
         shipped["dpm20_w3_agreement"] >= 0.99),
    ]
    if timing:
        t = timing[-1]
        out.append(("guidance 3, 20 DPM-Solver++ steps: 64 digits in under 5 s on 2 cores",
                    f"{t['median_s']:.1f} s (median of {len(t['runs_s'])}, {t['threads']} threads)",
                    t["median_s"] < 5.0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quality", type=Path, default=RESULTS_DIR / "sampling_quality.json")
    parser.add_argument("--eval", type=Path, default=HERE / "results" / "pretrained_mnist_eval.json")
    parser.add_argument("--guidance", type=Path, default=RESULTS_DIR / "guidance_quality.json")
    args = parser.parse_args(argv)
    quality, evaluation, guidance = (json.loads(p.read_text()) for p in (args.quality, args.eval, args.guidance))
    weights = pretrained("mnist").card["weights"]  # the set the package ships
    print(f"N = {quality['n']} digits per row; {quality['machine']}; model: {quality['model']}, {weights} weights\n")
    print("| target | measured | met |\n|---|---|---|")
    for target, measured, met in targets(quality, evaluation, guidance, weights):
        print(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
