import dataclasses
import itertools
import json
import math
import subprocess
import sys

import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons import runtime, training
from diffusion_lessons.sampling import ddpm_sample
from diffusion_lessons.training import (
    TrainConfig,
    TrainingDiverged,
    diffusion_loss,
    load_checkpoint,
    save_checkpoint,
    train,
)
from diffusion_lessons.unet import MLPDenoiser, UNet, UNetConfig

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(14,), dropout=0.1, num_classes=10)
S = dl.NoiseSchedule.linear(T=100)


class Oracle(torch.nn.Module):
    """Returns a fixed tensor: lets the tests set the network's answer."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def forward(self, x, t, y=None):
        return self.answer


def test_loss_is_zero_for_the_true_noise_and_one_for_zero():
    x0, noise, t = torch.randn(64, 2), torch.randn(64, 2), torch.randint(0, 100, (64,))
    assert diffusion_loss(Oracle(noise), x0, S, t=t, noise=noise).item() == 0.0
    assert diffusion_loss(Oracle(torch.zeros(64, 2)), x0, S, t=t, noise=noise).item() == pytest.approx(
        noise.pow(2).mean().item())
    a = S.alpha_bars[t].unsqueeze(1)
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    assert diffusion_loss(Oracle(v), x0, S, t=t, noise=noise, prediction="v").item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="prediction must be one of"):
        diffusion_loss(Oracle(v), x0, S, prediction="x0")


def test_loss_hands_the_model_the_noised_input_and_t():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, t, y=None):
            seen.update(x=x, t=t, y=y)
            return torch.zeros_like(x)

    x0, noise, t = torch.randn(8, 2), torch.randn(8, 2), torch.arange(8)
    diffusion_loss(Spy(), x0, S, t=t, noise=noise, y=torch.ones(8, dtype=torch.long))
    torch.testing.assert_close(seen["x"], dl.q_sample(x0, t, S, noise))
    assert torch.equal(seen["t"], t) and seen["y"].tolist() == [1] * 8


def test_toy_training_lowers_the_loss_and_samples_land_on_the_data():
    data = dl.toy_2d("moons", n=2000, seed=0)
    config = TrainConfig(steps=400, batch_size=512, lr=3e-3, warmup_steps=20, ema_decay=0.95, T=100,
                         schedule="cosine", log_every=50)
    torch.manual_seed(0)
    result = train(MLPDenoiser(), data, config, progress=False)
    assert len(result.losses) == 400
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-50:]) / 50
    assert last < 0.5 * first, (first, last)
    g = torch.Generator().manual_seed(0)
    samples = ddpm_sample(result.ema, torch.randn(1000, 2, generator=g), config.noise_schedule(), generator=g)
    noise = torch.randn(1000, 2, generator=g) * data.std(0)  # a Gaussian with the data's spread: the baseline

    def distance(points):  # median distance from a point to the nearest training point
        return torch.cdist(points, data).min(1).values.median().item()

    assert distance(samples) < 0.4 * distance(noise), (distance(samples), distance(noise))


def _mnist(n=64):
    images, labels = dl.mnist5k()
    keep = torch.arange(0, 5000, 5000 // n)[:n]  # every class
    return images[keep], labels[keep]


def test_class_conditional_training_runs_and_returns_the_history():
    images, labels = _mnist()
    torch.manual_seed(0)
    steps = []
    result = train(UNet(TINY), images, TrainConfig(steps=4, batch_size=16, log_every=2, p_uncond=0.5),
                   labels=labels, progress=False, callback=lambda d: steps.append(d["step"]))
    assert result.steps == 4 and len(result.losses) == 4 and steps == [2, 4]
    short = train(UNet(TINY), images, TrainConfig(steps=2, batch_size=16, log_every=2), labels=labels, progress=False)
    for rate in (result.images_per_second, short.images_per_second):  # one block only: its rate, not NaN
        assert math.isfinite(rate) and rate > 0, rate
    assert isinstance(result.ema, UNet) and not any(p.requires_grad is False for p in result.model.parameters())


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    images, labels = _mnist()
    torch.manual_seed(0)
    result = train(UNet(TINY), images, TrainConfig(steps=3, batch_size=16, log_every=1), labels=labels,
                   out_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt.step == 3 and ckpt.losses == result.losses and ckpt.model_config == TINY.to_dict()
    for weights, trained in [(ckpt.model, result.model), (ckpt.ema, result.ema)]:
        fresh = UNet(UNetConfig(**ckpt.model_config)).eval()
        fresh.load_state_dict(weights)
        x, t, y = images[:4], torch.tensor([1, 20, 50, 99]), labels[:4]
        trained = trained.to(memory_format=torch.contiguous_format).eval()  # training ran channels_last
        torch.testing.assert_close(fresh(x, t, y), trained(x, t, y), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp")) and oct((tmp_path / "checkpoint.pt").stat().st_mode)[-3:] != "600"


@pytest.mark.parametrize("ema_power", [0.0, 0.75])
def test_resume_continues_exactly(tmp_path, ema_power):
    """Stop after 3 of 7 steps, resume in a new call: same losses and weights (EMA too) as one run of 7."""
    images, labels = _mnist()
    config = TrainConfig(steps=7, batch_size=16, log_every=2, checkpoint_every=3, warmup_steps=3, ema_power=ema_power)
    torch.manual_seed(0)
    whole = train(UNet(TINY), images, config, labels=labels, out_dir=tmp_path / "a", progress=False)
    torch.manual_seed(0)
    train(UNet(TINY), images, dataclasses.replace(config, steps=3), labels=labels, out_dir=tmp_path / "b",
          progress=False)
    torch.manual_seed(123)  # a different initialisation: everything must come from the checkpoint
    resumed = train(UNet(TINY), images, config, labels=labels, out_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.losses == whole.losses
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    images, labels = _mnist()
    torch.manual_seed(0)
    train(UNet(TINY), images, TrainConfig(steps=2, batch_size=16, log_every=1), labels=labels,
          out_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def dies_mid_write(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(1000)  # half a file on disk, then the process is "killed"
        raise KeyboardInterrupt

    monkeypatch.setattr(training.torch, "save", dies_mid_write)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "checkpoint.pt", ckpt)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "checkpoint.pt").step == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_resume_refuses_another_config(tmp_path):
    images, labels = _mnist()
    train(UNet(TINY), images, TrainConfig(steps=1, batch_size=16), labels=labels, out_dir=tmp_path, progress=False)
    other = UNet(dataclasses.replace(TINY, base_channels=32))
    with pytest.raises(ValueError, match=r"another model config.*base_channels"):
        train(other, images, TrainConfig(steps=2, batch_size=16), labels=labels, out_dir=tmp_path, resume=True,
              progress=False)
    with pytest.raises(ValueError, match=r"another training config.*lr"):
        train(UNet(TINY), images, TrainConfig(steps=2, batch_size=16, lr=1e-3), labels=labels, out_dir=tmp_path,
              resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(UNet(TINY), images, TrainConfig(steps=2, batch_size=16), labels=labels, out_dir=tmp_path / "none",
              resume=True, progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt is corrupt"):  # one line, not torch's unpickling advice
        load_checkpoint(tmp_path / "junk.pt")


def test_ema_decay_warm_up_schedule():
    """Constant without a warm-up; with one, 0 at the first update (a copy), rising, never above the ceiling."""
    assert [training.ema_decay_at(k, 0.999) for k in (0, 1, 10**6)] == [0.999] * 3
    for power in (2 / 3, 0.75, 1.0):
        decays = [training.ema_decay_at(k, 0.999, power) for k in range(0, 100_000, 97)]
        assert decays[0] == 0.0 and all(a <= b for a, b in itertools.pairwise(decays)) and max(decays) == 0.999
    assert training.ema_decay_at(9, 0.999, 1.0) == pytest.approx(0.9)  # 1 - 1/(1 + 9): the mean of 10 weights
    assert training.ema_decay_at(10_000, 0.9999, 0.75) == pytest.approx(0.999, abs=1e-6)  # ema-pytorch's "10K steps"


@pytest.mark.parametrize("ema_power", [0.0, 0.75])
def test_ema_is_the_moving_average_of_the_weights_after_each_step(ema_power):
    """θ_ema after k steps = d·θ_ema + (1 - d)·θ_k with d = ema_decay_at(k - 1), the first update a copy."""
    images, labels = _mnist()
    config = TrainConfig(steps=5, batch_size=16, log_every=1, ema_decay=0.9, ema_power=ema_power)
    seen = []
    torch.manual_seed(0)
    train(UNet(TINY), images, config, labels=labels, progress=False,
          callback=lambda info: seen.append(({k: v.clone() for k, v in info["model"].state_dict().items()},
                                             {k: v.clone() for k, v in info["ema"].state_dict().items()})))
    expected = dict(seen[0][0])  # the first update copies the weights
    for k, (weights, ema) in enumerate(seen, start=1):
        if k > 1:
            d = training.ema_decay_at(k - 1, 0.9, ema_power)
            expected = {name: d * expected[name] + (1 - d) * weights[name] for name in weights}
        for name, value in ema.items():
            torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_with_advice():
    data = dl.toy_2d("moons", n=256)
    data[5, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"became NaN by step .*lower learning rate.*scaled to"):
        train(MLPDenoiser(), data, TrainConfig(steps=20, batch_size=64, log_every=5), progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
    ({"ema_power": -0.5}, r"ema_power must be >= 0 \(0 turns the EMA warm-up off\), got -0.5"),
    ({"ema_power": float("inf")}, "ema_power must be a finite number"),
    ({"prediction": "x0"}, "prediction must be one of"),
    ({"precision": "fp16"}, "precision must be"),
    ({"schedule": "quadratic"}, "schedule name must be one of"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(MLPDenoiser(), torch.zeros(10, 2), TrainConfig(batch_size=64), progress=False)
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        train(MLPDenoiser(), torch.zeros(10, 2), TrainConfig(batch_size=4), labels=torch.zeros(3), progress=False)


def _cli(*args, cwd, torchrun=False):
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun else [
        sys.executable]
    cmd = [*prefix, "-m", "diffusion_lessons.cli", "train", *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_ddp_with_two_gloo_processes_agrees_with_one_process(tmp_path):
    """Same global batch split over two processes: same losses and weights, up to float rounding.

    The checkpoint at step 3 falls between two logs (every 2 steps): its unlogged loss is averaged over
    the two processes, a collective every rank must join (a rank that skipped it would hang the run)."""
    args = ["--dataset", "sklearn_digits", "--image-size", "16", "--steps", "4", "--batch-size", "16",
            "--base-channels", "16", "--channel-mults", "1,2", "--dropout", "0", "--log-every", "2",
            "--checkpoint-every", "3", "--no-progress", "--class-cond", "--device", "cpu"]
    _cli(*args, "--out", "one", cwd=tmp_path)
    _cli(*args, "--out", "two", cwd=tmp_path, torchrun=True)
    one, two = load_checkpoint(tmp_path / "one/checkpoint.pt"), load_checkpoint(tmp_path / "two/checkpoint.pt")
    assert one.losses == pytest.approx(two.losses, rel=1e-5)
    for k in one.model:
        torch.testing.assert_close(one.model[k], two.model[k], rtol=1e-4, atol=1e-6)
    summary = json.loads((tmp_path / "two/summary.json").read_text())
    assert summary["steps"] == 4 and summary["model_config"]["num_classes"] == 10


def test_cli_trains_on_a_folder_of_images_and_resumes(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = (torch.rand(40, 30, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    args = ["--dataset", str(folder), "--image-size", "16", "--batch-size", "4", "--base-channels", "16",
            "--channel-mults", "1,2", "--no-progress", "--out", "run"]
    _cli(*args, "--steps", "2", cwd=tmp_path)
    out = _cli(*args, "--steps", "3", "--resume", cwd=tmp_path)
    assert "trained 3 steps" in out.stdout
    assert load_checkpoint(tmp_path / "run/checkpoint.pt").model_config["in_channels"] == 3


def test_cli_reports_bad_datasets_clearly(tmp_path, capsys):
    from diffusion_lessons.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["train", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no images" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    assert main(["train", "--dataset", str(tmp_path / "bad"), "--out", str(tmp_path / "r")]) == 2
    assert "could not be read as images: broken.png" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path / "r")]) == 2
    assert "--dataset must be one of" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_bf16_channels_last_training_runs_and_resumes(tmp_path, compile):  # pragma: no cover - GPU only
    images, labels = _mnist()
    config = TrainConfig(steps=4, batch_size=16, log_every=2, checkpoint_every=2, compile=compile)
    torch.manual_seed(0)
    result = train(UNet(TINY), images, config, labels=labels, out_dir=tmp_path, progress=False)
    assert next(result.model.parameters()).is_cuda and len(result.losses) == 4
    assert all(0.1 < v < 10 for v in result.losses)
    resumed = train(UNet(TINY), images, dataclasses.replace(config, steps=6), labels=labels, out_dir=tmp_path,
                    resume=True, progress=False)
    assert resumed.losses[:4] == result.losses and len(resumed.losses) == 6


def test_write_atomic_fsyncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    import os
    import stat

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(runtime.os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)),
                                                           real_fsync(fd)))
    runtime.write_atomic(tmp_path / "out.bin", lambda f: f.write(b"data"))
    assert (tmp_path / "out.bin").read_bytes() == b"data"
    if os.name == "posix":
        assert synced == [False, True]  # the file's bytes first, then the folder that holds the rename


def test_checkpoint_stores_a_checksum_and_the_data_id(tmp_path):
    torch.manual_seed(0)
    train(MLPDenoiser(hidden=16, depth=1), dl.toy_2d("moons", n=64), TrainConfig(steps=2, batch_size=16),
          out_dir=tmp_path, progress=False, data_id="moons:64")
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert len(raw["sha256"]) == 64 and raw["data_id"] == "moons:64"
    assert load_checkpoint(tmp_path / "checkpoint.pt").data_id == "moons:64"


class _LabelSpy(torch.nn.Module):
    """A class-conditional stand-in: records the labels it is trained with."""

    null_label = 10  # the "no label" class of a 10-class model

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, y=None):
        self.seen.append(y.detach().clone())
        return x * self.w


@pytest.mark.parametrize("p_uncond", [0.0, 0.3])
def test_label_dropout_replaces_a_share_p_uncond_of_the_labels(p_uncond):
    data = torch.rand(256, 1, 4, 4) * 2 - 1
    labels = torch.arange(256) % 10
    spy = _LabelSpy()
    train(spy, data, TrainConfig(steps=40, batch_size=64, p_uncond=p_uncond, log_every=10), labels=labels,
          progress=False)
    seen = torch.cat(spy.seen)  # (40 · 64,)
    dropped = (seen == spy.null_label).float().mean().item()
    assert abs(dropped - p_uncond) < 0.03, dropped  # 2560 draws: the share's std is under 0.01
    assert ((seen >= 0) & (seen <= 9) | (seen == spy.null_label)).all()  # kept labels are real classes
    assert len(seen.unique()) == (10 if p_uncond == 0 else 11)


def test_warmup_ramps_the_learning_rate_linearly(tmp_path):
    assert [training._lr_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert training._lr_factor(0, 0) == 1.0  # no warm-up: the full rate from the first step
    for steps, expected in [(2, 2e-3 * 2 / 5), (7, 2e-3)]:  # the rate of the last step, saved with the optimizer
        out = tmp_path / f"run{steps}"
        train(MLPDenoiser(hidden=16, depth=1), dl.toy_2d("moons", n=64),
              TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=5), out_dir=out, progress=False)
        lr = load_checkpoint(out / "checkpoint.pt").optimizer["param_groups"][0]["lr"]
        assert math.isclose(lr, expected, rel_tol=1e-9), (steps, lr)


def test_our_ema_averages_as_torchs_averaged_model():
    """training.EMA (a Python step count: no host-device sync) = AveragedModel(use_buffers=True) at a constant decay."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = UNet(TINY)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema = training.EMA(model, 0.9, 0.0)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        reference.update_parameters(model)
        ema.update_parameters(model)
    for (name, want), got in zip(reference.module.state_dict().items(), ema.module.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")
    assert ema.updates == 3
