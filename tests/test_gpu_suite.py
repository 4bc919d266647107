"""benchmarks/gpu_suite.sh cannot rot while no GPU is at hand: its --dry-run runs every step here, on the CPU.

One dry run (a few minutes on 2 cores) serves every test below. The figures it measures are never asserted,
only that each step ran and left what the GPU run will need: statuses, JSON, the weights and their card.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

import diffusion_lessons as dl

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["cuda_tests", "train_mnist", "export_mnist", "throughput_eager", "throughput_eager_ema",
         "throughput_compile", "train_emoji", "throughput_cudagraphs"]
THROUGHPUT = [s for s in STEPS if s.startswith("throughput")]


def has_diffusers() -> bool:
    return importlib.util.find_spec("diffusers") is not None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The suite's --dry-run with this interpreter first on PATH (no wheels: what this Python has is what runs)."""
    tmp = tmp_path_factory.mktemp("gpu_suite")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHON", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--dry-run", "--out", str(tmp / "out"),
                           "--tar", str(tmp / "suite.tar.gz"), "--wheels", ""],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    return done, tmp / "out", tmp / "suite.tar.gz"


def test_every_step_runs_and_is_recorded(dry_run):
    done, out, _ = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == STEPS and summary["dry_run"] and summary["finished"]
    assert summary["failed_steps"] == [] and summary["machine"]["torch"] == torch.__version__
    for entry in summary["steps"]:
        step = json.loads((out / f"{entry['name']}.json").read_text())["suite_step"]  # each step's JSON parses
        assert step["status"] == entry["status"] and (step["log"] is None or (out / step["log"]).is_file())
        if entry["name"] in THROUGHPUT and not has_diffusers():
            assert entry["status"].startswith("skipped: diffusers missing")
        elif entry["name"] == "cuda_tests" and not torch.cuda.is_available():
            assert entry["status"] == "skipped: needs a CUDA GPU"
        else:
            assert entry["status"] == "ok", entry


def test_cuda_tests_are_counted(dry_run):
    _, out, _ = dry_run
    counts = json.loads((out / "cuda_tests.json").read_text())["pytest"]
    assert counts["tests"] >= 10 and counts["failures"] == counts["errors"] == 0  # the marked tests, all collected
    if not torch.cuda.is_available():
        assert counts["skipped"] == counts["tests"]


@pytest.mark.skipif(not has_diffusers(), reason='diffusers is a benchmark-only extra: pip install -e ".[bench]"')
def test_throughput_records_both_models_per_config(dry_run):
    _, out, _ = dry_run
    for step, configs in [("throughput_eager", {"cifar", "mnist"}), ("throughput_compile", {"mnist-small"}),
                          ("throughput_cudagraphs", {"mnist-small"})]:
        result = json.loads((out / f"{step}.json").read_text())
        rows = {(r["config"], r["model"]): r for r in result["rows"]}
        assert set(rows) == {(c, m) for c in configs for m in ("ours", "diffusers")}, step
        assert all(r["images_per_s"] > 0 and r["flops_per_image"] > 0 for r in rows.values())
        assert all((r["ours_over_diffusers"] is not None) == (r["model"] == "ours") for r in rows.values())
    assert json.loads((out / "throughput_cudagraphs.json").read_text())["compile_mode"] == "reduce-overhead"


def test_the_trained_weights_load_with_their_card(dry_run):
    _, out, _ = dry_run
    p = dl.pretrained(out / "mnist_unet.pt")
    assert p.num_classes == 10 and p.card["steps"] == 20 and p.card["weights"] == "ema"
    assert "--steps 20 --batch-size 16" in p.card["command"] and p.card["machine"]
    exported = json.loads((out / "export_mnist.json").read_text())
    assert 0 <= exported["eval"]["ema"]["label_agreement_guidance_3"] <= 1 and (out / "mnist_samples.png").is_file()


def test_the_emoji_step_trains_a_text_dit_and_records_it(dry_run):
    _, out, _ = dry_run
    card = json.loads((out / "train_emoji.json").read_text())
    assert card["steps"] == 3 and card["batch_size"] == 16 and card["images_per_second"] > 0
    assert card["final_loss"] > 0 and "train_emoji.py" in card["command"]


def test_the_tarball_holds_everything_but_checkpoints(dry_run):
    _, out, tar = dry_run
    with tarfile.open(tar) as f:
        names = {Path(n).name for n in f.getnames()}
    assert {"summary.json", "mnist_unet.pt", "cuda_tests.json", "train_mnist.log"} <= names
    assert "checkpoint.pt" not in names and (out / "train_mnist" / "checkpoint.pt").is_file()
