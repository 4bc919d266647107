"""Training-step speed and MFU: our U-Net against diffusers' UNet2DModel, matched layer for layer, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--configs mnist mnist-small cifar] [--batch N]
        [--steps N] [--warmup N] [--repeats N] [--compile] [--compile-mode M] [--no-channels-last]
        [--ema {train,averaged-model}] [--peak-tflops X] [--device D] [--threads N] [--json PATH]

A training step is the one ``diffusion_lessons.training.train`` runs (lesson 04): draw t and ε,
``diffusion_loss`` (forward), backward, gradient clipping, AdamW, the EMA update. Data loading
is left out: each model trains on a fixed batch already on the device. diffusers' UNet2DModel
runs in the very same step through a thin wrapper, configured to match each of our configs
(same blocks, channels, attention resolutions, heads, norm groups, dropout: the parameter
counts come out equal), at the same batch and precision.

Device and precision, as train() sets them:
  CUDA  bf16 autocast, channels_last, TF32, cuDNN autotuning, fused AdamW, --compile optional
  CPU   fp32, channels_last (oneDNN's convolutions are faster in NHWC)
The noise schedule's tables live on the device, as in train(). --compile-mode reduce-overhead adds
CUDA graphs to --compile (the forward and backward replay as graphs: no per-kernel launches);
max-autotune also searches kernel configurations (minutes of compilation per model). The EMA is
train()'s own (training.EMA: one torch._foreach_lerp_, the step count a Python int); --ema
averaged-model swaps in torch's AveragedModel, which keeps its count n_averaged on the CPU and copies
it to the GPU at every update, a blocking copy, so each step waits for the GPU's queued work.

Timing: --warmup steps per model first (not timed), then --repeats rounds; in each round every
model runs --steps steps, one model after the other (A, B, A, B, ...), so machine noise hits both.
torch.cuda.synchronize() closes every timed region on a GPU. The table shows the median round.

FLOPs are counted once per model with torch.utils.flop_counter.FlopCounterMode over one forward
and backward pass (convolutions, matmuls, attention; norms and elementwise ops count as zero, as
usual for MFU). MFU = achieved FLOP/s / the accelerator's peak: known GPUs are looked up in
PEAK_TFLOPS by name, --peak-tflops overrides; on a CPU it is n/a unless --peak-tflops is given,
and the ratio ours / diffusers is the figure to read.

--json PATH writes the machine, the settings and every row (images/s, TFLOP/s, MFU, the ratio), again
after each config, so a run stopped part-way leaves the configs it finished.

diffusers is a benchmark-only extra:  pip install -e ".[bench]"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from diffusion_lessons.runtime import cpu_name
from diffusion_lessons.schedules import NoiseSchedule
from diffusion_lessons.training import EMA, TrainConfig, diffusion_loss
from diffusion_lessons.unet import UNet, UNetConfig, count_parameters

CONFIGS: dict[str, UNetConfig] = {
    # lesson 04's MNIST model, 28x28x1 (the UNetConfig defaults, ~1.6M parameters)
    "mnist": UNetConfig(),
    # the small model the CPU lessons train in minutes (~0.28M parameters)
    "mnist-small": UNetConfig(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(7,)),
    # Ho et al. 2020's CIFAR-10 U-Net, 32x32x3 (35.7M parameters)
    "cifar": UNetConfig(in_channels=3, image_size=32, base_channels=128, channel_mults=(1, 2, 2, 2),
                        attention_resolutions=(16,), attention_heads=1, norm_groups=32),
}

# Default batch per config: Ho et al.'s 128 on a GPU; on 2 CPU cores small enough to finish in minutes.
DEFAULT_BATCH = {"cuda": {"mnist": 128, "mnist-small": 128, "cifar": 128},
                 "cpu": {"mnist": 32, "mnist-small": 64, "cifar": 8}}
DEFAULT_STEPS = {"cuda": (20, 10, 5), "cpu": (1, 2, 5)}  # (--steps, --warmup, --repeats)
COMPILE_MODES = ("default", "max-autotune", "reduce-overhead")  # torch.compile's modes (inductor)
EMAS = ("train", "averaged-model")  # train()'s sync-free EMA, or torch's AveragedModel (a sync per step)

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s. The first name
# found in torch.cuda.get_device_name() wins, so the more specific names come first.
PEAK_TFLOPS = {
    "H100 PCIe": 756.5,
    "H100 NVL": 835.5,
    "H100": 989.4,  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,  # SXM and PCIe
}


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel with our denoiser signature, so diffusion_loss runs it unchanged."""

    def __init__(self, unet: nn.Module, null_label: int | None = None):
        super().__init__()
        self.unet = unet
        self.null_label = null_label  # as UNet.null_label: the "no label" class, None when unconditional

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:  # x (B, C, H, W), t (B,)
        if y is None and self.null_label is not None:  # as ours: no labels given means "no label"
            y = torch.full((x.shape[0],), self.null_label, device=x.device, dtype=torch.long)
        return self.unet(x, t, class_labels=y).sample  # (B, C, H, W)


def diffusers_unet(c: UNetConfig) -> DiffusersUNet:
    """The UNet2DModel closest to UNet(c): the same down/middle/up structure, layer for layer.

    Both follow Ho et al.'s U-Net: per level ``num_res_blocks`` residual blocks down and one
    more up, self-attention after each block at the chosen resolutions (AttnDownBlock2D /
    AttnUpBlock2D there, DownBlock2D / UpBlock2D elsewhere), strided-conv downsampling,
    nearest + conv upsampling, ResBlock-attention-ResBlock in the middle, a 4·base time MLP.
    UNet2DModel takes one attention head size for all its attention layers; it is set from
    the middle block's channels, which is exact when every attended level has those channels
    (true of all CONFIGS).
    """
    try:
        from diffusers import UNet2DModel
    except ImportError as e:
        raise ImportError('this benchmark needs diffusers: pip install -e ".[bench]"') from e
    if c.channel_mults[0] != 1:
        raise ValueError(f"UNet2DModel's first level has the stem's channels: channel_mults must start at 1, "
                         f"got {c.channel_mults}")
    attended = [res in c.attention_resolutions for res in c.resolutions]  # per level, top to bottom
    unet = UNet2DModel(
        sample_size=c.image_size,
        in_channels=c.in_channels,
        out_channels=c.in_channels,
        block_out_channels=tuple(c.base_channels * m for m in c.channel_mults),  # channels per level
        layers_per_block=c.num_res_blocks,  # residual blocks per level going down (+1 going up, as ours)
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attended),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attended)),
        mid_block_type="UNetMidBlock2D",  # ResBlock, attention, ResBlock
        attention_head_dim=c.base_channels * c.channel_mults[-1] // c.attention_heads,  # channels per head
        norm_num_groups=c.norm_groups,  # GroupNorm groups everywhere
        dropout=c.dropout,  # in every residual block
        time_embedding_dim=4 * c.base_channels,  # as our time_mlp
        num_class_embeds=c.num_classes + 1 if c.num_classes else None,  # + "no label", as ours
    )
    return DiffusersUNet(unet, null_label=c.num_classes)



def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    threads = torch.get_num_threads()
    return f"CPU {cpu_name()}, {threads} thread{'' if threads == 1 else 's'}{load}"


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The accelerator's peak TFLOP/s at the precision we run: --peak-tflops, else PEAK_TFLOPS, else None."""
    if override is not None:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)
    return None  # a CPU's peak depends on its cores, clocks and vector units: pass --peak-tflops


@dataclass
class Trainee:
    """One model with everything train() keeps beside it."""

    name: str  # "ours" or "diffusers"
    model: nn.Module  # the raw weights
    net: nn.Module  # what the loss calls: the model, or torch.compile(model)
    optimizer: torch.optim.Optimizer
    ema: EMA | AveragedModel
    gen: torch.Generator  # t and ε, one stream per model, seeded alike


def compiled(model: nn.Module, mode: str = "default", backend: str = "inductor") -> nn.Module:
    """torch.compile(model) in one of COMPILE_MODES. The modes are inductor's: another backend (e.g.
    "aot_eager", which generates no code, for a quick check on a CPU) takes none and runs as "default"."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"mode must be one of {COMPILE_MODES}, got {mode!r}")
    if backend != "inductor":
        return torch.compile(model, backend=backend)
    return torch.compile(model, mode=None if mode == "default" else mode)


def make_trainee(name: str, model: nn.Module, device: torch.device, compile: bool, tc: TrainConfig,
                 memory_format: torch.memory_format = torch.channels_last, compile_mode: str = "default",
                 compile_backend: str = "inductor", ema: str = "train") -> Trainee:
    """Move ``model`` to the device and give it AdamW and an EMA, as train() does (``ema="averaged-model"``:
    torch's AveragedModel instead of train()'s EMA, to measure its per-step sync)."""
    if ema not in EMAS:
        raise ValueError(f"ema must be one of {EMAS}, got {ema!r}")
    on_cuda = device.type == "cuda"
    model = model.to(device, memory_format=memory_format)  # NHWC by default, as train() with channels_last=True
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                  fused=on_cuda)  # one fused kernel for all parameters on CUDA
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
                if ema == "averaged-model" else EMA(model, tc.ema_decay, tc.ema_power))
    net = compiled(model, compile_mode, compile_backend) if compile else model
    net.train()
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    return Trainee(name, model, net, optimizer, averaged, gen)


def layout(x: Tensor) -> torch.memory_format:
    """NHWC (channels_last) or NCHW: the noise is laid out as the batch is, as in train()."""
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def train_step(tr: Trainee, x0: Tensor, s: NoiseSchedule, autocast_dtype: torch.dtype | None, grad_clip: float) -> None:
    """One step of train()'s loop on the batch x0 (B, C, H, W): loss, backward, clip, AdamW, EMA."""
    B, device = x0.shape[0], x0.device
    t = torch.randint(0, s.T, (B,), device=device, generator=tr.gen)  # (B,)
    noise = torch.randn(x0.shape, device=device, generator=tr.gen).contiguous(memory_format=layout(x0))
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        loss = diffusion_loss(tr.net, x0, s, t=t, noise=noise)
    tr.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(tr.model.parameters(), grad_clip)
    tr.optimizer.step()
    tr.ema.update_parameters(tr.model)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one that scaled_dot_product_attention
# calls (torch 2.13): without these two entries attention would count as zero FLOPs on a CPU.
_aten = torch.ops.aten
CPU_ATTENTION_FLOPS = {
    _aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    _aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad_out, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad_out, q, k, v),
}


def count_flops(tr: Trainee, x0: Tensor, s: NoiseSchedule, autocast_dtype: torch.dtype | None) -> int:
    """FLOPs of one forward and backward pass of the (uncompiled) model on the batch x0, loss included."""
    B, device = x0.shape[0], x0.device
    t = torch.randint(0, s.T, (B,), device=device, generator=tr.gen)
    noise = torch.randn(x0.shape, device=device, generator=tr.gen).contiguous(memory_format=layout(x0))
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = diffusion_loss(tr.model, x0, s, t=t, noise=noise)
        loss.backward()
    tr.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(trainees: list[Trainee], x0: Tensor, s: NoiseSchedule, autocast_dtype: torch.dtype | None,
                     grad_clip: float, steps: int, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each trainee, one entry per round; the rounds interleave the trainees."""
    device = x0.device
    for tr in trainees:  # warm-up: compilation, cuDNN autotuning, allocator, caches
        for _ in range(warmup):
            train_step(tr, x0, s, autocast_dtype, grad_clip)
    sync(device)
    seconds: dict[str, list[float]] = {tr.name: [] for tr in trainees}
    for _ in range(repeats):
        for tr in trainees:  # A, B, A, B, ...: noise on the machine hits every model alike
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                train_step(tr, x0, s, autocast_dtype, grad_clip)
            sync(device)  # the GPU runs ahead of Python: wait for the last kernel before reading the clock
            seconds[tr.name].append((time.perf_counter() - start) / steps)
    return seconds


@dataclass
class Row:
    """One line of the results table."""

    config: str
    model: str
    params: int
    batch: int
    precision: str
    images_per_s: float  # median over the rounds
    images_per_s_range: tuple[float, float]  # slowest and fastest round
    flops_per_image: float  # forward + backward


def benchmark_config(name: str, c: UNetConfig, batch: int, device: torch.device, steps: int, warmup: int,
                     repeats: int, compile: bool = False, channels_last: bool = True, compile_mode: str = "default",
                     compile_backend: str = "inductor", ema: str = "train") -> list[Row]:
    """Build our UNet(c) and its diffusers twin, count their FLOPs, time them interleaved."""
    tc = TrainConfig()  # lr, weight decay, grad clip, EMA decay: train()'s defaults
    s = tc.noise_schedule().to(device)  # the tables on the device, as in train(): no copy per step
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None  # train()'s precision="auto"
    precision = "bf16 autocast" if autocast_dtype is not None else "fp32"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(tc.seed)
    options = {"compile_mode": compile_mode, "compile_backend": compile_backend, "ema": ema}
    trainees = [make_trainee("ours", UNet(c), device, compile, tc, memory_format, **options),
                make_trainee("diffusers", diffusers_unet(c), device, compile, tc, memory_format, **options)]
    gen = torch.Generator().manual_seed(tc.seed)
    x0 = torch.rand((batch, c.in_channels, c.image_size, c.image_size), generator=gen) * 2 - 1  # (B, C, H, W)
    x0 = x0.to(device).contiguous(memory_format=memory_format)
    flops = {tr.name: count_flops(tr, x0, s, autocast_dtype) for tr in trainees}
    seconds = time_interleaved(trainees, x0, s, autocast_dtype, tc.grad_clip, steps, warmup, repeats)
    rows = []
    for tr in trainees:
        rates = [batch / sec for sec in seconds[tr.name]]
        rows.append(Row(name, tr.name, count_parameters(tr.model), batch, precision, statistics.median(rates),
                        (min(rates), max(rates)), flops[tr.name] / batch))
    return rows


def rate(images_per_s: float) -> str:
    """Three significant digits, without exponents: 1.23, 45.6, 789, 12,345."""
    return f"{images_per_s:,.0f}" if images_per_s >= 100 else f"{images_per_s:.3g}"


def markdown_table(rows: list[Row], peak: float | None) -> str:
    """The results as a Markdown table; the ratio ours / diffusers is in each config's "ours" row."""
    lines = ["| config | model | params | batch | precision | images/s | GFLOP/image (fwd+bwd) | TFLOP/s | MFU "
             "| ours / diffusers |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    reference = {r.config: r.images_per_s for r in rows if r.model == "diffusers"}
    for r in rows:
        tflops = r.flops_per_image * r.images_per_s / 1e12
        mfu = f"{tflops / peak:.1%}" if peak else "n/a"
        ratio = f"{r.images_per_s / reference[r.config]:.2f}x" if r.model == "ours" and r.config in reference else ""
        lo, hi = r.images_per_s_range
        lines.append(f"| {r.config} | {r.model} | {r.params:,} | {r.batch} | {r.precision} "
                     f"| {rate(r.images_per_s)} ({rate(lo)}-{rate(hi)}) | {r.flops_per_image / 1e9:.3f} "
                     f"| {tflops:.4g} | {mfu} | {ratio} |")
    return "\n".join(lines)


def results(rows: list[Row], peak: float | None) -> list[dict]:
    """The rows as dicts for --json, with TFLOP/s, MFU (None without a peak) and, in "ours" rows, the ratio."""
    reference = {r.config: r.images_per_s for r in rows if r.model == "diffusers"}
    out = []
    for r in rows:
        tflops = r.flops_per_image * r.images_per_s / 1e12
        ratio = r.images_per_s / reference[r.config] if r.model == "ours" and r.config in reference else None
        out.append(dict(asdict(r), tflops=tflops, mfu=tflops / peak if peak else None, ours_over_diffusers=ratio))
    return out


def write_json(path: Path, header: dict, rows: list[Row], peak: float | None) -> None:
    """--json: the run's header and the rows so far, replaced whole (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(header, rows=results(rows, peak)), indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), help="models to time")
    parser.add_argument("--batch", type=int, help="images per step, for every config (default: per config, "
                        f"GPU {DEFAULT_BATCH['cuda']}, CPU {DEFAULT_BATCH['cpu']})")
    parser.add_argument("--steps", type=int, help="timed steps per round (default: GPU 20, CPU 1)")
    parser.add_argument("--warmup", type=int, help="untimed steps per model first (default: GPU 10, CPU 2)")
    parser.add_argument("--repeats", type=int, help="timed rounds; the table shows the median (default: GPU 5, CPU 5)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models (give it --warmup >= 3)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="with --compile: reduce-overhead adds CUDA graphs, max-autotune searches kernels")
    parser.add_argument("--compile-backend", default="inductor",
                        help='with --compile: "inductor" (the default, generates kernels); "aot_eager" only traces '
                             "(a quick CPU check of the compiled path; ignores --compile-mode)")
    parser.add_argument("--ema", choices=EMAS, default="train",
                        help="train()'s sync-free EMA, or torch's AveragedModel (a host-device sync per step on CUDA)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="NCHW instead of train()'s NHWC (on CUDA, GroupNorm runs NCHW: worth comparing)")
    parser.add_argument("--peak-tflops", type=float, help="the accelerator's peak TFLOP/s at this precision, for MFU")
    parser.add_argument("--device", default="auto", help='"auto" (CUDA if present, else CPU), "cpu" or "cuda[:i]"')
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own, one per core)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON, after each config")
    args = parser.parse_args()

    try:
        import diffusers
    except ImportError:
        sys.exit('diffusers is not installed; it is a benchmark-only extra:  pip install -e ".[bench]"')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    kind = "cuda" if device.type == "cuda" else "cpu"
    steps, warmup, repeats = (given if given is not None else default for given, default in
                              zip((args.steps, args.warmup, args.repeats), DEFAULT_STEPS[kind], strict=True))

    # --- GPU settings, as train() sets them ---------------------------------------------
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left outside autocast
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # pick the fastest convolution kernels for our shapes

    peak = peak_tflops(device, args.peak_tflops)
    compile_note = ""
    if args.compile:
        compile_note = f"; torch.compile, mode {args.compile_mode}"
        if args.compile_backend != "inductor":
            compile_note = f"; torch.compile, backend {args.compile_backend} (mode ignored)"
    header = {"machine": machine_name(device), "device": str(device), "torch": torch.__version__,
              "diffusers": diffusers.__version__, "peak_tflops": peak, "steps": steps, "warmup": warmup,
              "repeats": repeats, "compile": args.compile, "compile_mode": args.compile_mode if args.compile else None,
              "compile_backend": args.compile_backend if args.compile else None,
              "channels_last": not args.no_channels_last, "ema": args.ema, "configs": args.configs}
    print(f"machine: {machine_name(device)}; torch {torch.__version__}; diffusers {diffusers.__version__}")
    print(f"peak: {f'{peak:g} TFLOP/s' if peak else 'unknown (MFU n/a; pass --peak-tflops)'}; "
          f"{warmup} warm-up steps, then {repeats} rounds of {steps} step{'s' * (steps != 1)} per model, interleaved; "
          f"images/s is the median round (slowest-fastest in brackets)"
          f"{compile_note}{'; NCHW' if args.no_channels_last else '; channels_last'}; EMA {args.ema}")
    if device.type == "cpu" and args.batch is None:
        print(f"CPU run: small batches {DEFAULT_BATCH['cpu']} and few steps to finish in minutes; "
              "read the ratio ours / diffusers, not the absolute figures")
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if device.type == "cpu" and torch.get_num_threads() > 1 and busy >= 1.0:
        print(f"the machine is busy (load average {busy:.1f}): with {torch.get_num_threads()} threads every step "
              "waits for the thread whose core is taken; --threads 1 gives steadier figures")
    print(flush=True)
    rows = []
    for name in args.configs:
        batch = args.batch or DEFAULT_BATCH[kind][name]
        print(f"timing {name}, batch {batch} ...", file=sys.stderr, flush=True)
        rows += benchmark_config(name, CONFIGS[name], batch, device, steps, warmup, repeats, args.compile,
                                 channels_last=not args.no_channels_last, compile_mode=args.compile_mode,
                                 compile_backend=args.compile_backend, ema=args.ema)
        if args.json:
            write_json(args.json, header, rows, peak)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(markdown_table(rows, peak))


if __name__ == "__main__":
    main()
