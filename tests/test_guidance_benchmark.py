"""benchmarks/guidance_quality.py cannot rot: its pure helpers are checked here (the figures it measures are
never asserted; benchmarks/README.md holds them), and its sampling helper runs on a tiny untrained model."""

import importlib.util
import pathlib
import sys

import pytest
import torch

from diffusion_lessons.schedules import NoiseSchedule
from diffusion_lessons.unet import UNet, UNetConfig

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "guidance_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("guidance_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["guidance_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_within_class_spread(bench):
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0], [10.0, 12.0], [50.0, 50.0]])
    classes = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one member: no pair, skipped
    assert bench.within_class_spread(feats, classes) == pytest.approx((5.0 + 2.0) / 2)
    assert bench.within_class_spread(feats * 3, classes) == pytest.approx(3 * 3.5)  # scales with the features


def test_recommend_prefers_the_lowest_fld_that_reaches_the_target(bench):
    rows = [{"w": 0, "agreement": 0.1, "fld": 1.0}, {"w": 1, "agreement": 0.95, "fld": 3.0},
            {"w": 2, "agreement": 0.985, "fld": 2.0}, {"w": 3, "agreement": 0.99, "fld": 2.5},
            {"w": 8, "agreement": 1.0, "fld": 9.0}]
    assert bench.recommend(rows) == 2  # w = 0 never counts, even with the lowest FLD
    assert bench.recommend(rows, target=0.995) == 8
    assert bench.recommend([{"w": 1, "agreement": 0.9, "fld": 3.0}, {"w": 2, "agreement": 0.9, "fld": 2.0}]) == 2


def test_sample_shares_the_noise_and_handles_w_zero(bench):
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                            attention_resolutions=(4,), attention_heads=2, norm_groups=4, num_classes=10)).eval()
    s = NoiseSchedule.linear(T=20)
    x_T, labels = torch.randn(6, 1, 8, 8), torch.arange(6) % 10
    for sampler in ("ddim", "dpm"):
        batched = bench.sample(model, s, x_T, labels, 3.0, sampler, steps=4, batch=6)
        split = bench.sample(model, s, x_T, labels, 3.0, sampler, steps=4, batch=4)  # batches of 4 and 2
        torch.testing.assert_close(batched, split, atol=1e-5, rtol=1e-5)
        assert batched.shape == x_T.shape and batched.abs().max() <= 1
        unconditional = bench.sample(model, s, x_T, None, 0.0, sampler, steps=4, batch=6)
        torch.testing.assert_close(bench.sample(model, s, x_T, labels, 0.0, sampler, steps=4, batch=6), unconditional)
