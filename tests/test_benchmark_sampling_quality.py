"""benchmarks/sampling_quality.py cannot rot: its main() runs here end to end on a tiny untrained model.

The figures it measures are never asserted (benchmarks/README.md and the results file hold them).
"""

import importlib.util
import json
import pathlib
import sys
import warnings

import pytest
import torch

from diffusion_lessons import metrics
from diffusion_lessons.pretrained import Pretrained
from diffusion_lessons.training import TrainConfig
from diffusion_lessons.unet import UNet, UNetConfig

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "sampling_quality.py"


@pytest.fixture(scope="module")
def bench():
    if not metrics.CLASSIFIER_PATH.is_file():
        pytest.skip("the metrics classifier's weights are not in the package yet")
    spec = importlib.util.spec_from_file_location("sampling_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sampling_quality"] = module
    spec.loader.exec_module(module)
    return module


def tiny_pretrained(name="mnist", device="cpu"):
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(),
                            norm_groups=4, num_classes=10)).eval()
    config = TrainConfig(T=20)  # a short schedule: DDPM in 20 steps
    return Pretrained(model, config.noise_schedule(), config, {"final": False, "steps": 0})


def test_main_writes_rows_previews_and_a_table(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "pretrained", tiny_pretrained)
    T = tiny_pretrained().schedule.T
    out = tmp_path / "q.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FLD warns at N below the feature dimension
        assert bench.main(["--n", "12", "--batch", "5", "--samplers", "ddim:2", "dpm:2", f"ddpm:{T}", "heun:3",
                           "euler:3", "heunc:2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [(r["kind"], r["steps"]) for r in results["rows"]] == [("ddim", 2), ("dpm", 2), ("ddpm", T), ("heun", 3),
                                                                  ("euler", 3), ("heunc", 2)]
    assert [r["nfe"] for r in results["rows"]] == [2, 2, T, 5, 3, 3]  # network calls: Heun makes 2·steps - 1
    assert results["n"] == 12 and results["machine"] and results["model"]["final"] is False
    for r in [*results["rows"], results["real"]]:
        assert r["fld"] >= 0 and 0 <= r["label_agreement"] <= 1
        assert bench.base64.b64decode(r["preview"]).__len__() == 10 * 28 * 28
    printed = capsys.readouterr().out
    assert "| DDPM" in printed and "real digits" in printed and "goal" in printed


def test_sampler_specs_are_checked(bench):
    assert bench.parse_sampler("ddim:20") == ("ddim", 20)
    for bad in ("ddim", "rk4:10", "ddim:x"):
        with pytest.raises(Exception, match="KIND:STEPS"):
            bench.parse_sampler(bad)


def test_flow_kinds_need_a_flow_model_and_count_their_calls(bench, monkeypatch, tmp_path):
    def tiny_flow(name="mnist_flow", device="cpu"):
        p = tiny_pretrained()
        return Pretrained(p.model, p.schedule, TrainConfig(objective="flow"), p.card)

    monkeypatch.setattr(bench, "pretrained", tiny_flow)
    out = tmp_path / "f.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bench.main(["--n", "10", "--batch", "10", "--model", "mnist_flow", "--samplers", "fme:2", "fmm:2",
                           "fmh:1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["nfe"] for r in rows] == [2, 4, 2]  # Euler 1 call per step; midpoint and Heun 2
    with pytest.raises(SystemExit):
        bench.main(["--n", "10", "--model", "mnist_flow", "--samplers", "ddim:2", "--out", str(out)])
