"""The shipped model and the exporter that makes shippable weights from a training run."""

import json

import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons import metrics
from diffusion_lessons.cli import main
from diffusion_lessons.pretrained import export_pretrained, pretrained
from diffusion_lessons.sampling import dpm_solver_sample


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One step of the CLI on the training split: a real checkpoint to export."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--dataset", "mnist5k", "--split", "train", "--class-cond", "--steps", "1",
                 "--batch-size", "8", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
                 "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_cli_split_and_depth_options_reach_the_run(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["split"] == "train" and summary["model_config"]["num_res_blocks"] == 1
    assert summary["model_config"]["num_classes"] == 10


def test_export_round_trip_gives_the_ema_weights(tiny_run, tmp_path):
    card = {"command": "test", "machine": "here"}
    path = export_pretrained(tiny_run / "checkpoint.pt", tmp_path / "w.pt", card)
    p = pretrained(path)
    ckpt = dl.training.load_checkpoint(tiny_run / "checkpoint.pt")
    for k, v in p.model.state_dict().items():
        torch.testing.assert_close(v, ckpt.ema[k])
    assert p.card == {**card, "steps": 1, "weights": "ema"} and not p.model.training
    assert p.schedule.T == 1000 and p.num_classes == 10
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_export_can_ship_the_raw_weights(tiny_run, tmp_path):
    p = pretrained(export_pretrained(tiny_run / "checkpoint.pt", tmp_path / "w.pt", {}, weights="raw"))
    raw = dl.training.load_checkpoint(tiny_run / "checkpoint.pt").model
    for k, v in p.model.state_dict().items():
        torch.testing.assert_close(v, raw[k])
    with pytest.raises(ValueError, match="weights must be 'ema' or 'raw'"):
        export_pretrained(tiny_run / "checkpoint.pt", tmp_path / "x.pt", {}, weights="best")


def test_bad_names_and_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        pretrained("cifar")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        pretrained(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a weights file written by export_pretrained"):
        pretrained(tmp_path / "other.pt")


def test_shipped_mnist_model_loads_offline_and_its_digits_match_their_labels():
    p = pretrained("mnist")
    assert p.num_classes == 10 and p.train_config.prediction == "eps" and p.card["final"]
    assert {"command", "machine", "steps", "weights"} <= set(p.card)
    y = torch.arange(20) % 10
    g = torch.Generator().manual_seed(0)
    x = dpm_solver_sample(p.model, torch.randn(20, 1, 28, 28, generator=g), p.schedule, steps=10, y=y,
                          guidance=p.card["guidance_scale"])
    assert x.shape == (20, 1, 28, 28) and x.abs().max() <= 1.0 + 1e-5
    assert metrics.label_agreement(x, y) >= 0.9  # the shipped classifier reads them as their labels


def test_the_lessons_benchmark_results_ship_with_the_package():
    from diffusion_lessons.pretrained import benchmark_results

    quality = benchmark_results("sampling_quality")
    assert {(r["kind"], r["steps"]) for r in quality["rows"]} >= {("ddpm", 1000), ("ddim", 20), ("dpm1", 20)}
    guidance = benchmark_results("guidance_quality")
    assert [r["w"] for r in guidance["rows"]][:2] == [0, 1] and guidance["recommended_w"] > 1
    with pytest.raises(ValueError, match=r"no shipped benchmark results named 'fid'.*sampling_quality"):
        benchmark_results("fid")


def test_shipped_flow_model_loads_offline_and_its_digits_match_their_labels():
    from diffusion_lessons import flow

    p = pretrained("mnist_flow")
    assert p.num_classes == 10 and p.train_config.objective == "flow" and p.card["final"]
    assert {"command", "machine", "steps", "weights"} <= set(p.card)
    y = torch.arange(20) % 10
    x = flow.flow_sample(p.model, torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(0)), steps=10,
                         method="midpoint", y=y, guidance=2.0)
    assert x.shape == (20, 1, 28, 28)
    assert metrics.label_agreement(x.clamp(-1, 1), y) >= 0.9
