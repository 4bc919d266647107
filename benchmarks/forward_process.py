"""Why lesson 01's closed form matters: noising a batch to step t in one jump (q_sample)
versus walking the Markov chain t steps (markov_chain), timed side by side in one run.

    .venv/bin/python benchmarks/forward_process.py [--batch 256] [--t 999]

Prints a Markdown table row per case with the median time and the chain/jump ratio.
Uses torch.utils.benchmark, which warms up and repeats until the estimate is stable.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

import diffusion_lessons as dl
from diffusion_lessons.runtime import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="digits per batch")
    parser.add_argument("--t", type=int, nargs="+", default=[99, 999], help="target steps (0-based)")
    args = parser.parse_args()

    s = dl.NoiseSchedule.linear()
    x0 = dl.mnist5k()[0][: args.batch]  # (B, 1, 28, 28)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print(f"batch of {args.batch} MNIST digits (B, 1, 28, 28), linear schedule T={s.T}\n")
    print("| target step t | q_sample (one jump) | markov_chain (t+1 steps) | chain / jump |")
    print("|---:|---:|---:|---:|")
    for t in args.t:
        env = {"dl": dl, "x0": x0, "s": s, "t": t}
        jump = benchmark.Timer("dl.q_sample(x0, t, s)", globals=env).blocked_autorange(min_run_time=1.0)
        chain = benchmark.Timer("dl.markov_chain(x0, s, t_end=t)", globals=env).blocked_autorange(min_run_time=1.0)
        print(f"| {t} | {jump.median * 1e3:.3f} ms | {chain.median * 1e3:.1f} ms | {chain.median / jump.median:.0f}x |")


if __name__ == "__main__":
    main()
