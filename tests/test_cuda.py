"""What only a CUDA GPU can show: bf16 autocast, compile and channels_last, fused AdamW, checkpoints that move
between devices, samplers that agree across devices, and host-device synchronisation in the training step.

Skipped without a GPU. benchmarks/gpu_suite.sh runs them, with every other test marked ``cuda``, whenever a
GPU machine is at hand:  python -m pytest -m cuda tests/
"""

import copy
import dataclasses
import importlib.util
import pathlib
import sys

import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons.pretrained import export_pretrained, pretrained
from diffusion_lessons.sampling import ddim_sample, dpm_solver_sample
from diffusion_lessons.training import TrainConfig, diffusion_loss, load_checkpoint, train
from diffusion_lessons.unet import UNet, UNetConfig

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(14,), dropout=0.1, num_classes=10)
BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def exact_fp32():
    """fp32 matmuls and convolutions without TF32 (train() turns TF32 on for the whole process), restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _mnist(n=64):
    images, labels = dl.mnist5k()
    keep = torch.arange(0, 5000, 5000 // n)[:n]  # every class
    return images[keep], labels[keep]


def _batch(b=8, device="cuda"):
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.rand(b, 1, 28, 28, generator=gen) * 2 - 1).to(device)
    t = torch.randint(0, 1000, (b,), generator=gen).to(device)
    noise = torch.randn(b, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (b,), generator=gen).to(device)
    return x0, t, noise, y


def test_bf16_autocast_step_keeps_fp32_weights_and_a_finite_loss():
    torch.manual_seed(0)
    model = UNet(TINY).cuda().to(memory_format=torch.channels_last)
    x0, t, noise, y = _batch()
    x0, noise = x0.contiguous(memory_format=torch.channels_last), noise.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = diffusion_loss(model, x0, dl.NoiseSchedule.linear().to("cuda"), t=t, noise=noise, y=y)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and 0.1 < loss.item() < 10
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast casts copies, not the weights


def test_compiled_channels_last_step_matches_eager(exact_fp32):
    """torch.compile (inductor) on NHWC: the same loss and gradients as eager NCHW, to fp32 rounding."""
    torch.manual_seed(0)
    eager = UNet(dataclasses.replace(TINY, dropout=0.0)).cuda()
    fast = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    x0, t, noise, y = _batch()
    s = dl.NoiseSchedule.linear().to("cuda")
    loss = diffusion_loss(eager, x0, s, t=t, noise=noise, y=y)
    loss.backward()
    nhwc = {"memory_format": torch.channels_last}
    loss_fast = diffusion_loss(torch.compile(fast), x0.contiguous(**nhwc), s, t=t, noise=noise.contiguous(**nhwc), y=y)
    loss_fast.backward()
    torch.testing.assert_close(loss_fast, loss, rtol=1e-4, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_cuda_training_uses_fused_adamw_and_its_checkpoint_loads_on_the_cpu(tmp_path, exact_fp32):
    images, labels = _mnist()
    torch.manual_seed(0)
    config = TrainConfig(steps=3, batch_size=16, log_every=3, device="cuda")
    result = train(UNet(TINY), images, config, labels=labels, out_dir=tmp_path, progress=False)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # train() turned TF32 on
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt.optimizer["param_groups"][0]["fused"] is True  # one fused AdamW kernel for all parameters
    assert all(v.device.type == "cpu" for v in ckpt.ema.values())
    out = export_pretrained(tmp_path / "checkpoint.pt", tmp_path / "w.pt", {"command": "test"}, weights="ema")
    on_cpu = pretrained(out, device="cpu").model
    x0, t, _, y = _batch()
    with torch.no_grad():
        want = result.ema.eval()(x0, t, y).float().cpu()  # the EMA weights, still on the GPU
        torch.testing.assert_close(on_cpu(x0.cpu(), t.cpu(), y.cpu()), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("sampler", [ddim_sample, dpm_solver_sample])
def test_samplers_on_cuda_match_the_cpu(sampler, exact_fp32):
    """The shipped model, the same seeded x_T: the deterministic samplers end at the same digits on both devices."""
    model = pretrained("mnist").model
    x_T = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10)
    on_cpu = sampler(model, x_T, pretrained("mnist").schedule, steps=10, y=y, guidance=3.0)
    p = pretrained("mnist", device="cuda")
    on_gpu = sampler(p.model, x_T.cuda(), p.schedule, steps=10, y=y.cuda(), guidance=3.0)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=2e-2)
    assert (on_gpu.cpu() - on_cpu).abs().mean() < 1e-3


def _throughput():
    pytest.importorskip("diffusers", reason='train_throughput.py imports diffusers: pip install -e ".[bench]"')
    spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARKS / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = module
    spec.loader.exec_module(module)
    return module


def _steps_under_sync_check(tt, ema: str, steps: int = 3) -> None:
    """Warm up a training step of train_throughput.py (ours, bf16, NHWC), then run ``steps`` more with
    CUDA's sync debug mode on "error": any host-device synchronisation raises."""
    device = torch.device("cuda")
    tc = TrainConfig()
    torch.manual_seed(0)
    tr = tt.make_trainee("ours", UNet(TINY), device, False, tc, ema=ema)
    x0 = _batch()[0].contiguous(memory_format=torch.channels_last)
    s = tc.noise_schedule().to(device)
    for _ in range(2):  # lazy initialisation (cuBLAS, cuDNN, the optimizer's state) may synchronise once
        tt.train_step(tr, x0, s, torch.bfloat16, tc.grad_clip)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            tt.train_step(tr, x0, s, torch.bfloat16, tc.grad_clip)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_training_step_never_waits_for_the_gpu():
    """draw t and ε, loss, backward, clip, fused AdamW, EMA: queued without a single host-device sync."""
    _steps_under_sync_check(_throughput(), ema="train")


def test_averaged_model_ema_waits_for_the_gpu_every_step():
    """Why train() has its own EMA: AveragedModel keeps n_averaged on the CPU and copies it to the
    GPU at each update, a blocking copy. If this starts failing, torch has removed that sync."""
    with pytest.raises(RuntimeError, match="synchroniz"):
        _steps_under_sync_check(_throughput(), ema="averaged-model")
