"""Training a denoiser: the DDPM objective and a train loop that is small on a CPU and fast on GPUs.

Lesson: notebooks/04_training.ipynb

The objective (Ho et al. 2020, Algorithm 1): draw x_0 from the data, t uniformly from
{0, ..., T-1} and ε ~ N(0, I); form x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε; minimise ‖ε - ε_θ(x_t, t)‖².
With ``prediction="v"`` the network predicts v = √ᾱ_t ε - √(1-ᾱ_t) x_0 instead
(Salimans & Ho 2022), which behaves better at the ends of the schedule.

Everything about GPUs lives in this module, in ``_setup_device`` and ``train``:
bf16 autocast, channels_last, torch.compile, fused AdamW, pinned memory with
non-blocking copies, and no host-device synchronisation inside the inner loop (the
losses are gathered on the device and read every ``log_every`` steps). Several GPUs
or machines work through ``torchrun`` and DistributedDataParallel.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from .noising import q_sample
from .runtime import default_device
from .schedules import NoiseSchedule

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "diffusion_loss",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]

PREDICTIONS = ("eps", "v")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Frozen: a run's config is saved in its checkpoints and checked on resume."""

    steps: int = 2000  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int = 128  # images per step, over all processes together
    lr: float = 2e-4  # AdamW peak learning rate (Ho et al. use 2e-4)
    warmup_steps: int = 200  # linear warm-up of the learning rate from 0
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the gradient norm at this value (Ho et al.: 1.0)
    ema_decay: float = 0.999  # decay of the exponential moving average of the weights
    prediction: str = "eps"  # what the network predicts: "eps" (DDPM) or "v"
    schedule: str = "linear"  # noise schedule name, see NoiseSchedule.from_name
    T: int = 1000  # diffusion steps
    p_uncond: float = 0.1  # share of labels replaced by "no label" (classifier-free guidance)
    seed: int = 0  # seeds weights' noise, data order, t and ε: a run is repeatable
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), or e.g. "cpu", "cuda:1"
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 elsewhere), "bf16" or "fp32"
    compile: bool = False  # torch.compile the model (CUDA: worth it for long runs)
    channels_last: bool = True  # NHWC memory layout for images (faster convolutions on GPUs and CPUs)
    log_every: int = 50  # read the losses back and update the progress bar every this many steps
    checkpoint_every: int = 500  # write a checkpoint every this many steps (and at the end)
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "T", "log_every", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        NoiseSchedule.from_name(self.schedule, T=2)  # raises for an unknown schedule name

    def noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_name(self.schedule, T=self.T)


def diffusion_loss(
    model: nn.Module,
    x0: Tensor,
    s: NoiseSchedule,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    y: Tensor | None = None,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The DDPM training loss on a batch x0 (B, ...), a scalar (Ho et al. Algorithm 1).

    t (B,) defaults to uniform steps in [0, T-1]; noise defaults to N(0, I); both drawn
    from ``generator`` when given. ``prediction="v"`` regresses v instead of ε.

    Lesson: notebooks/04_training.ipynb
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if t is None:
        t = torch.randint(0, s.T, (x0.shape[0],), device=x0.device, generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = q_sample(x0, t, s, noise)  # the forward process, lesson 01
    pred = model(x_t, t) if y is None else model(x_t, t, y)
    if prediction == "eps":
        target = noise
    else:  # v = √ᾱ_t ε - √(1-ᾱ_t) x_0
        alpha_bar = s.alpha_bars.to(x0.device, x0.dtype)[t].reshape(-1, *([1] * (x0.ndim - 1)))
        target = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    return F.mse_loss(pred.float(), target.float())


class TrainingDiverged(RuntimeError):
    """The loss became NaN or exploded; the message says what to try."""


@dataclass
class TrainResult:
    """What ``train`` returns: the trained model, its EMA copy and the loss history."""

    model: nn.Module  # the raw weights after the last step (unwrapped from DDP / compile)
    ema: nn.Module  # the exponential moving average of the weights: usually the better sampler
    losses: list[float]  # the training loss at every step, from step 1
    steps: int  # optimizer steps done in total
    images_per_second: float  # measured over this call's steps (excluding the first, warm-up block)
    config: TrainConfig = field(repr=False)


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, as ``load_checkpoint`` returns them."""

    model: dict  # state dict of the raw model
    ema: dict  # state dict of the EMA model (an AveragedModel's ``module``)
    optimizer: dict
    step: int
    losses: list[float]
    train_config: dict
    model_config: dict
    rng: dict  # the trainer's generator (t, ε, label dropout) and torch's / CUDA's (dropout)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write(f)`` to a temporary file in the same folder, fsync, then ``os.replace`` it onto ``path``.

    A crash or a kill mid-write leaves the previous file intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_atomic(obj: object, path: str | Path) -> Path:
    """``torch.save`` through ``write_atomic``: checkpoints, exported weights, the classifier."""
    return write_atomic(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write a checkpoint atomically (``save_atomic``)."""
    save_atomic(asdict(checkpoint), path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    missing = {f.name for f in fields(Checkpoint)} - set(data)
    if missing:
        raise ValueError(f"{path} is not a diffusion-lessons checkpoint (missing {sorted(missing)})")
    return Checkpoint(**data)


# ----------------------------------------------------------------------------- devices
def _setup_device(config: TrainConfig) -> tuple[torch.device, int, int, bool]:
    """Pick the device, join the process group under torchrun. Returns (device, rank, world, distributed)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    rank = int(os.environ.get("RANK", "0"))
    if config.device != "auto":
        device = torch.device(config.device)
    else:
        device = default_device()
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world, distributed


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _model_config(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return config.to_dict()
    return {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}


def _check_resume(ckpt: Checkpoint, config: TrainConfig, model: nn.Module, path: Path) -> None:
    if ckpt.model_config != _model_config(model):
        diff = {k: (ckpt.model_config.get(k), v) for k, v in _model_config(model).items()
                if ckpt.model_config.get(k) != v}
        raise ValueError(f"{path} was written for another model config; differences (checkpoint, now): {diff}")
    # These may change on resume: how long to train and how to run; the rest defines the run.
    free = {"steps", "device", "precision", "compile", "log_every", "checkpoint_every", "num_workers"}
    now = asdict(config)
    diff = {k: (ckpt.train_config.get(k), now[k]) for k in now if k not in free and ckpt.train_config.get(k) != now[k]}
    if diff:
        raise ValueError(f"{path} was written with another training config; differences (checkpoint, now): {diff}")


def _as_dataset(data: Dataset | Tensor, labels: Tensor | None) -> Dataset:
    if isinstance(data, Tensor):
        if labels is not None:
            if labels.shape != (data.shape[0],):
                raise ValueError(f"labels must have shape ({data.shape[0]},), got {tuple(labels.shape)}")
            return TensorDataset(data, labels)
        return TensorDataset(data)
    if labels is not None:
        raise ValueError("labels are only taken with a tensor of data; a Dataset yields its own")
    return data


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def train(
    model: nn.Module,
    data: Dataset | Tensor,
    config: TrainConfig | None = None,
    labels: Tensor | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` to denoise ``data`` (a tensor (N, ...) in [-1, 1] or a Dataset).

    ``labels`` (N,) makes it class-conditional (with ``p_uncond`` of them dropped to the
    model's "no label" class). With ``out_dir``, checkpoints go to out_dir/checkpoint.pt
    (every ``checkpoint_every`` steps and at the end) and ``resume=True`` continues from
    there exactly. ``callback({"step", "loss", "model", "ema"})`` runs after every
    ``log_every`` steps (rank 0 only), e.g. to draw samples along the way.

    Lesson: notebooks/04_training.ipynb
    """
    config = config or TrainConfig()
    device, rank, world, distributed = _setup_device(config)
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number of processes ({world})")
    dataset = _as_dataset(data, labels)
    if len(dataset) < config.batch_size:
        raise ValueError(f"the data set has {len(dataset)} examples, fewer than one batch ({config.batch_size})")
    s = config.noise_schedule().to(device)  # the tables live on the device: no per-step copies
    conditional = getattr(model, "null_label", None) is not None
    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if resume and (ckpt_path is None or not ckpt_path.is_file()):
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {ckpt_path}")

    # --- GPU settings, all in one place --------------------------------------------
    on_cuda = device.type == "cuda"
    autocast_dtype = _autocast_dtype(config, device)  # bf16 keeps fp32's range: no loss scaling needed
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # pick the fastest convolution kernels for our shapes
    # NHWC: tensor cores on CUDA want it; on the CPU, oneDNN's convolutions measured ~20% faster.
    memory_format = torch.channels_last if (config.channels_last and device.type != "mps") else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=on_cuda)  # one fused kernel for all parameters on CUDA
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if config.compile:
        net = torch.compile(net)

    # --- state: fresh, or restored from a checkpoint ---------------------------------
    gen = torch.Generator(device=device)  # t, ε and label dropout: one stream, the same on every rank
    gen.manual_seed(config.seed)
    torch.manual_seed(config.seed + rank)  # dropout
    step, losses = 0, []
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        _check_resume(ckpt, config, model, ckpt_path)
        model.load_state_dict(ckpt.model)
        ema.module.load_state_dict(ckpt.ema)
        ema.n_averaged.fill_(max(ckpt.step, 1))
        optimizer.load_state_dict(ckpt.optimizer)
        step, losses = ckpt.step, list(ckpt.losses)
        gen.set_state(ckpt.rng["generator"])
        torch.set_rng_state(ckpt.rng["torch"])
        if on_cuda and ckpt.rng.get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt.rng["cuda"])

    def checkpoint() -> None:
        if ckpt_path is None or rank != 0:
            return
        save_checkpoint(ckpt_path, Checkpoint(
            model={k: v.detach().cpu() for k, v in model.state_dict().items()},
            ema={k: v.detach().cpu() for k, v in ema.module.state_dict().items()},
            optimizer=optimizer.state_dict(), step=step, losses=losses,
            train_config=asdict(config), model_config=_model_config(model),
            rng={"generator": gen.get_state(), "torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state() if on_cuda else None},
        ))

    # --- data: each rank sees its share of every global batch --------------------------
    local_batch = config.batch_size // world
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True,
                        num_workers=config.num_workers, pin_memory=on_cuda,
                        persistent_workers=config.num_workers > 0,
                        generator=torch.Generator())  # its own seed stream: dropout's RNG stays untouched
    batches_per_epoch = len(loader)

    def batches():
        epoch, skip = divmod(step, batches_per_epoch)
        while True:
            sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
            for i, batch in enumerate(loader):
                if i >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0

    def local_slice(x: Tensor) -> Tensor:  # this rank's rows of a tensor drawn for the global batch
        return x[rank::world] if distributed else x

    # --- the loop ---------------------------------------------------------------------
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="training", unit="step", dynamic_ncols=True)
    net.train()
    pending = torch.zeros(config.log_every, device=device)  # losses waiting to be read back
    n_pending, timed_images, timed_seconds = 0, 0, 0.0
    block_start, first_block = time.perf_counter(), True
    data_iter = batches()
    while step < config.steps:
        batch = next(data_iter)
        x0 = batch[0].to(device, non_blocking=True)  # from pinned memory: the copy overlaps compute
        images = x0.ndim == 4
        if images:
            x0 = x0.contiguous(memory_format=memory_format)
        B = config.batch_size
        # Draw t, ε and the label dropout for the global batch, take this rank's rows: the
        # result does not depend on how the batch is split across processes.
        t = local_slice(torch.randint(0, s.T, (B,), device=device, generator=gen))
        noise = local_slice(torch.randn((B, *x0.shape[1:]), device=device, generator=gen))
        if images:
            noise = noise.contiguous(memory_format=memory_format)
        y = None
        if conditional:
            drop = local_slice(torch.rand(B, device=device, generator=gen) < config.p_uncond)
            if len(batch) > 1:
                y = batch[1].to(device, non_blocking=True).long()
                y = torch.where(drop, torch.full_like(y, model.null_label), y)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.warmup_steps)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = diffusion_loss(net, x0, s, t=t, noise=noise, y=y, prediction=config.prediction)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema.update_parameters(model)
        pending[n_pending] = loss.detach()
        n_pending += 1
        step += 1

        if n_pending == config.log_every or step == config.steps:
            values = pending[:n_pending]
            if distributed:
                dist.all_reduce(values, op=dist.ReduceOp.AVG)  # the loss of the global batch
            values = values.tolist()  # the one host-device sync, every log_every steps
            losses.extend(values)
            elapsed = time.perf_counter() - block_start
            if not first_block:  # the first block pays for compilation and warm-up
                timed_images += n_pending * B
                timed_seconds += elapsed
            rate = n_pending * B / elapsed
            first_block, n_pending, block_start = False, 0, time.perf_counter()
            _check_divergence(values, step, config)
            if bar is not None:
                bar.update(len(values))
                bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", img_s=f"{rate:.0f}")
            if callback is not None and rank == 0:
                callback({"step": step, "loss": sum(values) / len(values), "model": model, "ema": ema.module})
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()

    if bar is not None:
        bar.close()
    if distributed:
        dist.barrier()
    rate = timed_images / timed_seconds if timed_seconds > 0 else float("nan")
    return TrainResult(model=model, ema=ema.module, losses=losses, steps=step, images_per_second=rate,
                       config=config)


def _check_divergence(values: list[float], step: int, config: TrainConfig) -> None:
    bad = next((v for v in values if not math.isfinite(v) or v > 100.0), None)
    if bad is None:
        return
    what = "became NaN" if math.isnan(bad) else "became infinite" if math.isinf(bad) else f"exploded to {bad:.3g}"
    raise TrainingDiverged(
        f"the training loss {what} by step {step}. Try: a lower learning rate (lr={config.lr:g}, e.g. "
        f"{config.lr / 4:g}); a longer warm-up (warmup_steps={config.warmup_steps}); gradient clipping "
        f"(grad_clip={config.grad_clip}); checking that the data is scaled to [-1, 1]; precision='fp32'."
    )
