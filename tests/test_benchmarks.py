"""The benchmarks cannot rot: their own functions run here on a tiny model for a step or two.

The figures they measure are never asserted (benchmarks/README.md holds them); only that the
scripts still run, and the properties their tables rely on.
"""

import importlib.util
import pathlib
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion_lessons.unet import Attention, UNet, UNetConfig

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
TINY = UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                  attention_heads=2, norm_groups=4)


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_throughput():
    pytest.importorskip("diffusers", reason='diffusers is a benchmark-only extra: pip install -e ".[bench]"')
    return load("train_throughput")


def test_train_throughput_runs_ours_and_diffusers_matched(train_throughput, one_thread):
    rows = train_throughput.benchmark_config("tiny", TINY, batch=2, device=torch.device("cpu"),
                                             steps=1, warmup=1, repeats=2)
    ours, theirs = rows
    assert (ours.model, theirs.model) == ("ours", "diffusers")
    assert ours.params == theirs.params  # the diffusers twin is matched parameter for parameter
    assert ours.flops_per_image == theirs.flops_per_image > 0  # ... and FLOP for FLOP
    assert all(r.images_per_s > 0 and r.images_per_s_range[0] <= r.images_per_s <= r.images_per_s_range[1]
               for r in rows)
    table = train_throughput.markdown_table(rows, peak=None)
    assert table.count("\n") == 3 and "n/a" in table  # header, rule, two rows; no peak: no MFU
    assert "%" in train_throughput.markdown_table(rows, peak=1.0)


def layers(model: torch.nn.Module) -> dict[str, int]:
    """How many layers of each kind; a Dropout(p=0) does nothing and is not counted."""
    kinds = [type(m).__name__ for m in model.modules() if not isinstance(m, torch.nn.Dropout) or m.p > 0]
    return {k: kinds.count(k) for k in ("Conv2d", "Linear", "GroupNorm", "Dropout")}


def test_diffusers_twin_has_our_layers(train_throughput):
    ours, theirs = UNet(TINY), train_throughput.diffusers_unet(TINY)
    heads = [m.heads for m in ours.modules() if isinstance(m, Attention)]  # per attention layer
    assert heads == [m.heads for m in theirs.modules() if type(m).__name__ == "Attention"]  # same places too
    count, count_theirs = layers(ours), layers(theirs)
    # diffusers projects q, k, v and the output with 4 Linear layers where we use 2 1x1 convolutions
    assert count_theirs["Linear"] - count["Linear"] == 4 * len(heads)
    assert count["Conv2d"] - count_theirs["Conv2d"] == 2 * len(heads)
    assert (count["GroupNorm"], count["Dropout"]) == (count_theirs["GroupNorm"], count_theirs["Dropout"])


def test_attention_flops_are_counted_on_the_cpu(train_throughput):
    b, h, n, d = 2, 3, 16, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False, custom_mapping=train_throughput.CPU_ATTENTION_FLOPS) as counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
    # forward: Q·Kᵀ and P·V, 2·(2bhn²d); backward: the scores again plus four products, 5·(2bhn²d)
    assert counter.get_total_flops() == 14 * b * h * n * n * d


def test_peak_is_looked_up_or_given(train_throughput):
    cpu = torch.device("cpu")
    assert train_throughput.peak_tflops(cpu, None) is None  # a CPU's peak is unknown: MFU n/a
    assert train_throughput.peak_tflops(cpu, 12.5) == 12.5
    assert train_throughput.PEAK_TFLOPS["H100"] == train_throughput.PEAK_TFLOPS["H200"] == 989.4
