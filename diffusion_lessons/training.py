"""Training a denoiser: the DDPM objective and a train loop that is small on a CPU and fast on GPUs.

Lesson: notebooks/04_training.ipynb

The objective (Ho et al. 2020, Algorithm 1): draw x_0 from the data, t uniformly from
{0, ..., T-1} and ε ~ N(0, I); form x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε; minimise ‖ε - ε_θ(x_t, t)‖².
With ``prediction="v"`` the network predicts v = √ᾱ_t ε - √(1-ᾱ_t) x_0 instead
(Salimans & Ho 2022), which behaves better at the ends of the schedule. With
``objective="flow"`` the same loop trains flow matching instead (``flow.flow_matching_loss``,
lesson 09): t ~ U[0, 1], x_t = (1 - t)·noise + t·x_1, target x_1 - noise.

Everything about GPUs lives in this module: the device in ``_setup_device``, and the
settings in one block of ``train``: bf16 autocast, channels_last, torch.compile, fused
AdamW, pinned memory (with non-blocking copies in ``_batches``). There is no host-device
synchronisation inside the inner loop: ``_LossLog`` keeps the losses on the device and
reads them every ``log_every`` steps. Several GPUs or machines work through ``torchrun``
and DistributedDataParallel.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from .flow import _flow_matching_loss
from .noising import extract, q_sample
from .runtime import default_device, save_atomic
from .schedules import NoiseSchedule

__all__ = [
    "EMA",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "diffusion_loss",
    "ema_decay_at",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]

PREDICTIONS = ("eps", "v")
OBJECTIVES = ("diffusion", "flow")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Frozen: a run's config is saved in its checkpoints and checked on resume.

    Lesson: notebooks/04_training.ipynb
    """

    steps: int = 2000  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int = 128  # images per step, over all processes together
    lr: float = 2e-4  # AdamW peak learning rate (Ho et al. use 2e-4)
    warmup_steps: int = 200  # linear warm-up of the learning rate from 0
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the gradient norm at this value (Ho et al.: 1.0)
    ema_decay: float = 0.999  # decay of the exponential moving average of the weights (its ceiling with ema_power)
    ema_power: float = 0.0  # EMA warm-up: decay min(ema_decay, 1 - (1 + k)^-ema_power) after k updates; 0: off
    prediction: str = "eps"  # what the network predicts: "eps" (DDPM) or "v"
    objective: str = "diffusion"  # "diffusion" (DDPM, on the schedule) or "flow" (flow matching, lesson 09)
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
        """Check every field, types included: a bool is not an int, a float where an int belongs is an error."""
        for name in ("steps", "batch_size", "T", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        for name in ("lr", "weight_decay", "grad_clip", "ema_decay", "ema_power", "p_uncond"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if type(value) not in (int, float):  # e.g. numpy.float64: stored as a plain float, so checkpoints load
                object.__setattr__(self, name, float(value))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_power < 0:
            raise ValueError(f"ema_power must be >= 0 (0 turns the EMA warm-up off), got {self.ema_power}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        for name in ("compile", "channels_last"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        for name in ("prediction", "objective", "schedule", "device", "precision"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "flow" and self.prediction != "eps":
            raise ValueError(f"prediction={self.prediction!r} is for the diffusion objective; flow matching always "
                             f"predicts the velocity x1 - x0")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ValueError(f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', "
                                 f"got {self.device!r}") from None
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
    if not isinstance(model, nn.Module) and not callable(model):
        raise ValueError(f"model must be an nn.Module (or a callable model(x_t, t, y)), got {type(model).__name__}")
    _check_data_tensor(x0, "x0")
    if x0.shape[0] == 0:
        raise ValueError(f"x0 must hold at least one example, got shape {tuple(x0.shape)}")
    if not isinstance(s, NoiseSchedule):
        raise ValueError(f"s must be a NoiseSchedule, got {type(s).__name__}")
    if noise is not None and isinstance(noise, Tensor) and not noise.is_floating_point():
        raise ValueError(f"noise must be a floating-point tensor, got dtype {noise.dtype}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if x0.device.type == "cpu":  # value checks read the tensor: on a GPU they would stall, so CPU only
        _warn_if_out_of_range(x0, "x0")
    if y is not None:
        _check_labels(y, x0.shape[0], getattr(model, "null_label", _UNKNOWN), "y", allow_null=True,
                      caption_length=getattr(model, "caption_length", None))
    return _diffusion_loss(model, x0, s, t, noise, y, prediction, generator)


def _diffusion_loss(model: Callable[..., Tensor], x0: Tensor, s: NoiseSchedule, t: Tensor | None,
                    noise: Tensor | None, y: Tensor | None, prediction: str,
                    generator: torch.Generator | None) -> Tensor:
    """``diffusion_loss`` without the input checks: ``train`` checks its data once, not every step."""
    if t is None:
        t = torch.randint(0, s.T, (x0.shape[0],), device=x0.device, generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = q_sample(x0, t, s, noise)  # the forward process, lesson 01
    pred = model(x_t, t) if y is None else model(x_t, t, y)
    if not isinstance(pred, Tensor) or pred.shape != x_t.shape:
        got = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ValueError(f"the model's output must have x_t's shape {tuple(x_t.shape)}, got {got} "
                         f"(a wrong shape would broadcast in the loss and train on the wrong target)")
    if prediction == "eps":
        target = noise
    else:  # v = √ᾱ_t ε - √(1-ᾱ_t) x_0
        steps = t if isinstance(t, Tensor) and t.ndim == 1 else torch.full((x0.shape[0],), int(t), device=x0.device)
        alpha_bar = extract(s.alpha_bars, steps, x0.shape, x0)  # ᾱ_t, (B, 1, ...)
        target = alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
    return F.mse_loss(pred.float(), target.float())


_UNKNOWN = object()  # a model without a ``null_label`` attribute: it may or may not take labels
DATA_RANGE_WARN = 10.0  # data beyond ±this warns: the course scales data to [-1, 1]


def _check_data_tensor(x: object, name: str) -> None:
    """Refuse what is not a floating-point tensor with a batch dimension (integer data would lose the signal)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (scale images to [-1, 1] floats first, e.g. x / 127.5 - 1)" if not x.is_complex() else ""
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}{hint}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (B, ...) with at least 2 dimensions, got {tuple(x.shape)}")


def _warn_if_out_of_range(x: Tensor, name: str, stacklevel: int = 3) -> None:
    """Warn when x lies far outside [-1, 1], e.g. images left in [0, 255]."""
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if max(abs(lo), abs(hi)) > DATA_RANGE_WARN:
        warnings.warn(f"{name} lies in [{lo:.3g}, {hi:.3g}], far outside [-1, 1]: the course scales data to "
                      f"[-1, 1] (images: x / 127.5 - 1), and the noise schedule assumes that scale",
                      stacklevel=stacklevel)


def _check_labels(y: object, batch: int, null_label: object, name: str, allow_null: bool = False,
                  caption_length: int | None = None) -> None:
    """Labels: an integer tensor (batch,), within the model's classes when the model says how many it has
    (``allow_null``: the "no label" class ``null_label`` too). A text model (``caption_length``, e.g. a
    DiT with words) takes token ids (batch, caption_length) instead; it checks their values itself."""
    what = "token ids (model.tokenize(captions))" if caption_length else "integer class labels"
    if not isinstance(y, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of {what}, got {type(y).__name__}")
    want = (batch, caption_length) if caption_length else (batch,)
    if tuple(y.shape) != want:
        raise ValueError(f"{name} must have shape {want}, {what}, got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold {what}, got dtype {y.dtype}")
    if null_label is _UNKNOWN or caption_length:
        return
    if null_label is None:
        raise ValueError(f"{name} (class labels) were given but the model is unconditional (num_classes=None): "
                         f"build it with e.g. UNetConfig(num_classes=10), or leave the labels out")
    top = null_label if allow_null else null_label - 1
    if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) > top):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        also = f" (or {null_label} for no label)" if allow_null else ""
        raise ValueError(f"{name} must hold labels in [0, {null_label - 1}]{also} (the model's "
                         f"num_classes={null_label}), got {bad}")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or exploded; the message says what to try.

    Lesson: notebooks/04_training.ipynb
    """


@dataclass
class TrainResult:
    """What ``train`` returns: the trained model, its EMA copy and the loss history.

    Lesson: notebooks/04_training.ipynb
    """

    model: nn.Module  # the raw weights after the last step (unwrapped from DDP / compile)
    ema: nn.Module  # the exponential moving average of the weights: usually the better sampler
    losses: list[float]  # the training loss at every step, from step 1
    steps: int  # optimizer steps done in total
    images_per_second: float  # measured over this call's steps (excluding the first, warm-up block, if there are more)
    config: TrainConfig = field(repr=False)


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, as ``load_checkpoint`` returns them.

    Lesson: notebooks/04_training.ipynb
    """

    model: dict  # state dict of the raw model
    ema: dict  # state dict of the EMA model
    optimizer: dict
    step: int
    losses: list[float]  # the loss at every step so far, from step 1 (those not yet logged included)
    train_config: dict
    model_config: dict
    rng: dict  # the trainer's generator (t, ε, label dropout) and torch's / CUDA's (dropout)
    data_id: str | None = None  # what the run trains on, e.g. "mnist5k:train"; checked on resume


def _remove_stale_tmp(path: Path) -> list[Path]:
    """Remove ``.checkpoint.pt.*.tmp`` files left by a write that was killed (see ``write_atomic``)."""
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _checksum(obj: object) -> str:
    """sha256 over a checkpoint's contents in a fixed order: tensors' dtype, shape and bytes; other values' repr."""
    h = hashlib.sha256()

    def visit(x: object) -> None:
        if isinstance(x, Tensor):
            x = x.detach().cpu().contiguous()
            h.update(f"T{x.dtype}{tuple(x.shape)}:".encode())
            h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, any dtype
        elif isinstance(x, dict):
            h.update(f"D{len(x)}:".encode())
            for key in sorted(x, key=repr):
                h.update(f"{key!r}=".encode())
                visit(x[key])
        elif isinstance(x, (list, tuple)):
            h.update(f"L{len(x)}:".encode())
            for item in x:
                visit(item)
        else:
            h.update(f"V{x!r};".encode())  # int, float (repr is exact), str, bool, None

    visit(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write a checkpoint atomically (``save_atomic``), with a sha256 of its contents that loading verifies.

    Lesson: notebooks/04_training.ipynb
    """
    data = asdict(checkpoint)
    data["sha256"] = _checksum(data)
    save_atomic(data, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (``weights_only=True``: no code runs).

    Raises ``ValueError("checkpoint X is corrupt: ...")`` for a damaged file (its checksum does
    not match, or it is empty or truncated) and ``ValueError("... is not a diffusion-lessons
    checkpoint ...")`` for another kind of file. Checkpoints written before checksums existed
    load with a warning.

    Lesson: notebooks/04_training.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is corrupt: the file is empty")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and weights-only errors: one message for all
        if "Unsupported global" in str(e):  # a pickle of arbitrary objects: not ours, and no code runs
            raise ValueError(f"{path} is not a diffusion-lessons checkpoint (it holds objects other than "
                             f"tensors and plain values)") from None
        raise ValueError(f"checkpoint {path} is corrupt: torch.load could not read it "
                         f"({type(e).__name__}; truncated, or not a torch file)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a diffusion-lessons checkpoint (it holds a {type(data).__name__})")
    required = {f.name for f in fields(Checkpoint)} - {"data_id"}  # data_id came later: optional
    missing = required - set(data)
    if missing:
        raise ValueError(f"{path} is not a diffusion-lessons checkpoint (missing {sorted(missing)})")
    stored = data.pop("sha256", None)
    if stored is None:
        warnings.warn(f"checkpoint {path} has no checksum (written by an older version): loaded without "
                      f"verifying it; the next save adds one", stacklevel=2)
    elif stored != _checksum(data):
        raise ValueError(f"checkpoint {path} is corrupt: its contents do not match the sha256 stored in it "
                         f"(bit rot or a damaged copy); use an earlier copy or train again")
    unknown = set(data) - {f.name for f in fields(Checkpoint)}
    if unknown:
        raise ValueError(f"{path} is not a diffusion-lessons checkpoint (unknown fields {sorted(unknown)})")
    return Checkpoint(**data)


# ----------------------------------------------------------------------------- devices
def _setup_device(config: TrainConfig) -> tuple[torch.device, int, int, bool]:
    """Pick the device, join the process group under torchrun. Returns (device, rank, world, distributed)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    rank = int(os.environ.get("RANK", "0"))
    if config.device != "auto":
        device = torch.device(config.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {config.device!r} but CUDA is not available here; use device='auto' or 'cpu'")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device is {config.device!r} but there are {torch.cuda.device_count()} CUDA devices")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device is {config.device!r} but MPS is not available here; use device='auto' or 'cpu'")
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


def _check_resume(ckpt: Checkpoint, config: TrainConfig, model: nn.Module, path: Path, data_id: str | None) -> None:
    if ckpt.data_id is not None and data_id is not None and ckpt.data_id != data_id:
        raise ValueError(f"{path}: the checkpoint was trained on {ckpt.data_id}, this run uses {data_id} "
                         f"(data_id); resume with the same data, or start a new run in another out_dir")
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


def _as_dataset(data: Dataset | Tensor, labels: Tensor | None, null_label: int | None,
                caption_length: int | None = None) -> Dataset:
    """Check the data (and labels) once, before training; wrap a tensor in a TensorDataset."""
    if isinstance(data, Tensor):
        _check_data_tensor(data, "data")
        _warn_if_out_of_range(data, "data", stacklevel=4)
        if labels is not None:
            _check_labels(labels, data.shape[0], null_label, "labels", caption_length=caption_length)
            return TensorDataset(data, labels)
        if null_label is not None:
            _warn_no_labels(null_label)
        return TensorDataset(data)
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a torch.Tensor (N, ...) or a torch Dataset, got {type(data).__name__}"
                         f"{' (use torch.from_numpy)' if type(data).__module__ == 'numpy' else ''}")
    if labels is not None:
        raise ValueError("labels are only taken with a tensor of data; a Dataset yields its own")
    return data


def _paired_dataset(dataset: Dataset, data: Dataset | Tensor, noise: object, config: TrainConfig) -> Dataset:
    """The data set with a fixed noise per example appended to each item (reflow's couplings)."""
    if config.objective != "flow":
        raise ValueError("noise pairs are for objective='flow' (reflow); the diffusion objective draws its own noise")
    if not isinstance(data, Tensor):
        raise ValueError("noise pairs are only taken with a tensor of data, not a Dataset")
    if not isinstance(noise, Tensor) or not noise.is_floating_point():
        raise ValueError(f"noise must be a float tensor shaped like the data {tuple(data.shape)}, "
                         f"got {type(noise).__name__ if not isinstance(noise, Tensor) else noise.dtype}")
    if noise.shape != data.shape:
        raise ValueError(f"noise must have the data's shape {tuple(data.shape)}, one noise per example, "
                         f"got {tuple(noise.shape)}")
    return TensorDataset(*dataset.tensors, noise.to(data.dtype))


def _warn_no_labels(null_label: int, stacklevel: int = 4) -> None:
    warnings.warn(f"the model is class-conditional (num_classes={null_label}) but no labels were given: it "
                  f"learns only the 'no label' class; pass labels=... or build an unconditional model",
                  stacklevel=stacklevel)


def _check_first_batch(batch: object, null_label: int | None, stacklevel: int,
                       caption_length: int | None = None) -> None:
    """A Dataset's first batch: (x,) or (x, y) with float x and, for a conditional model, integer labels y."""
    if not isinstance(batch, (list, tuple)):
        raise ValueError(f"the Dataset must yield tuples (x,) or (x, y), got batches of {type(batch).__name__}")
    _check_data_tensor(batch[0], "the Dataset's x")
    _warn_if_out_of_range(batch[0], "the Dataset's x", stacklevel=stacklevel)
    if len(batch) > 1:
        _check_labels(batch[1], batch[0].shape[0], null_label, "the Dataset's labels y", caption_length=caption_length)
    elif null_label is not None:
        _warn_no_labels(null_label, stacklevel=stacklevel)


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
    data_id: str | None = None,
    noise: Tensor | None = None,
) -> TrainResult:
    """Train ``model`` to denoise ``data`` (a float tensor (N, ...) in [-1, 1] or a Dataset).

    ``labels`` (N,) integers make it class-conditional (with ``p_uncond`` of them dropped to
    the model's "no label" class); the model must then have classes (``UNetConfig(num_classes=...)``),
    and a class-conditional model trained without labels warns. With ``out_dir``, checkpoints
    go to out_dir/checkpoint.pt (every ``checkpoint_every`` steps and at the end, with every
    loss so far) and ``resume=True`` continues from there exactly; ``data_id`` (e.g.
    "mnist5k:train") is stored in them and a resume on other data is refused.
    ``callback({"step", "loss", "model", "ema"})`` runs after every ``log_every`` steps
    (rank 0 only), e.g. to draw samples along the way. ``noise`` (N, ...), only with
    ``objective="flow"`` and a tensor of data, pairs a fixed noise with each example instead of a fresh
    draw: rectified flow's "reflow" trains on such (noise, sample) couplings (lesson 09).

    Lesson: notebooks/04_training.ipynb
    """
    config = _check_train_arguments(model, config, resume, progress, callback, data_id, out_dir)
    null_label = getattr(model, "null_label", None)  # the "no label" class = num_classes; None: unconditional
    caption_length = getattr(model, "caption_length", None)  # a text model: labels are token ids (N, length)
    dataset = _as_dataset(data, labels, null_label, caption_length)  # a tensor is checked whole here, a Dataset by
    # its first batch
    paired = noise is not None
    if paired:
        dataset = _paired_dataset(dataset, data, noise, config)
    ckpt_path = _checkpoint_path(out_dir, resume)
    device, rank, world, distributed = _setup_device(config)
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be divisible by the number of processes ({world})")
    if len(dataset) < config.batch_size:
        raise ValueError(f"the data set has {len(dataset)} examples, fewer than one batch ({config.batch_size})")
    s = config.noise_schedule().to(device)  # the tables live on the device: no per-step copies
    if ckpt_path is not None and rank == 0:
        _remove_stale_tmp(ckpt_path)  # left by a write that was killed: never a checkpoint

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
    ema = EMA(model, config.ema_decay, config.ema_power)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=on_cuda)  # one fused kernel for all parameters on CUDA
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if config.compile:
        net = torch.compile(net)
    pin_memory = on_cuda  # page-locked host batches: the copies to the GPU overlap compute

    # --- state: fresh, or restored from a checkpoint ---------------------------------
    gen = torch.Generator(device=device)  # t, ε and label dropout: one stream, the same on every rank
    gen.manual_seed(config.seed)
    torch.manual_seed(config.seed + rank)  # dropout
    step, losses = 0, []
    if resume:
        step, losses, data_id = _resume_run(ckpt_path, config, model, ema, optimizer, gen, data_id)
    batches = _batches(_loader(dataset, config, rank, world, pin_memory), step, device, memory_format,
                       null_label, check_first=not isinstance(data, Tensor), paired=paired,
                       caption_length=caption_length)
    log = _LossLog(config, device, rank, world, step, losses, progress, callback, model, ema.module)

    # --- the loop: Ho et al. 2020, Algorithm 1 ------------------------------------------
    net.train()
    while step < config.steps:  # repeat
        x0, y, pair = next(batches)  # x_0 ~ q(x_0): this rank's rows of the global batch, labels y or None
        # t ~ Uniform({0, ..., T-1}) (flow: U[0, 1]), ε ~ N(0, I), and p_uncond of the labels replaced by "no label"
        t, eps, y = _draw_t_noise_labels(config, x0, y, null_label, gen, rank, world, memory_format)
        if pair is not None:  # reflow: the noise this example was generated from
            eps = pair
        for group in optimizer.param_groups:  # linear warm-up of the learning rate
            group["lr"] = config.lr * _lr_factor(step, config.warmup_steps)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            # ‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖² (or v's); the data was checked before the loop
            if config.objective == "flow":  # ‖v_θ((1-t) ε + t x_1, t) - (x_1 - ε)‖², x_1 the data
                loss = _flow_matching_loss(net, x0, eps, t, y)
            else:
                loss = _diffusion_loss(net, x0, s, t, eps, y, config.prediction, None)
        optimizer.zero_grad(set_to_none=True)  # take a gradient descent step on ∇_θ of the loss
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema.update_parameters(model)  # the weights' moving average, the usual sampler
        step += 1
        log.record(loss, step)  # read back every log_every steps: progress bar, divergence check, callback
        if ckpt_path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
            losses_so_far = log.so_far()  # every rank takes part (the unlogged losses are averaged over ranks)
            if rank == 0:
                _save_run(ckpt_path, config, model, ema, optimizer, gen, step, losses_so_far, data_id)

    images_per_second = log.close()
    if distributed:
        dist.barrier()
    return TrainResult(model=model, ema=ema.module, losses=log.losses, steps=step,
                       images_per_second=images_per_second, config=config)


def _check_train_arguments(model: object, config: object, resume: object, progress: object, callback: object,
                           data_id: object, out_dir: object) -> TrainConfig:
    """``train``'s arguments other than the data, checked before any work; returns the config (None: the default)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if config is None:
        config = TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    for name, value in (("resume", resume), ("progress", progress)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be a function of one dict, or None, got {type(callback).__name__}")
    if data_id is not None and not isinstance(data_id, str):
        raise ValueError(f"data_id must be a string such as 'mnist5k:train', or None, got {type(data_id).__name__}")
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir must be a path (str or Path) or None, got {type(out_dir).__name__}")
    return config


def _checkpoint_path(out_dir: str | os.PathLike | None, resume: bool) -> Path | None:
    """out_dir/checkpoint.pt, or None without an out_dir; with ``resume``, the checkpoint must exist."""
    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if ckpt_path is not None and ckpt_path.parent.exists() and not ckpt_path.parent.is_dir():
        raise ValueError(f"out_dir must be a folder, but {ckpt_path.parent} is a file")
    if resume and (ckpt_path is None or not ckpt_path.is_file()):
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {ckpt_path}")
    return ckpt_path


# ----------------------------------------------------------------------------- the training loop's parts
def _loader(dataset: Dataset, config: TrainConfig, rank: int, world: int, pin_memory: bool) -> DataLoader:
    """Batches of ``batch_size // world`` examples: this rank's share of every global batch. The sampler shuffles
    the same way on every rank (seeded by ``config.seed`` and the epoch); an incomplete last batch is dropped."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    return DataLoader(dataset, batch_size=config.batch_size // world, sampler=sampler, drop_last=True,
                      num_workers=config.num_workers, pin_memory=pin_memory,
                      persistent_workers=config.num_workers > 0,
                      generator=torch.Generator())  # its own seed stream: dropout's RNG stays untouched


def _batches(loader: DataLoader, step: int, device: torch.device, memory_format: torch.memory_format,
             null_label: int | None, check_first: bool,
             paired: bool = False,
             caption_length: int | None = None) -> Iterator[tuple[Tensor, Tensor | None, Tensor | None]]:
    """x_0 ~ q(x_0), forever: each batch of ``loader`` as (x0 on the device, labels or None, paired noise or
    None), epoch after epoch. ``paired``: the last tensor of each batch is the noise paired with x0.

    Starts at ``step``: a resumed run skips the batches it has already trained on. ``check_first``: check the
    first batch (a Dataset's items; a tensor of data was checked whole before training).
    """
    epoch, skip = divmod(step, len(loader))
    while True:
        loader.sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
        for i, batch in enumerate(loader):
            if i < skip:
                continue
            if check_first:  # warnings point at train's caller: _warn_*, _check_first_batch, here, train, caller
                _check_first_batch(batch, null_label, stacklevel=5, caption_length=caption_length)
                check_first = False
            pair = None
            if paired:
                *batch, pair = batch
                pair = pair.to(device, non_blocking=True)
            x0 = batch[0].to(device, non_blocking=True)  # from pinned memory: the copy overlaps compute
            if x0.ndim == 4:  # images, (B, C, H, W)
                x0 = x0.contiguous(memory_format=memory_format)
                pair = pair.contiguous(memory_format=memory_format) if pair is not None else None
            yield x0, (batch[1] if len(batch) > 1 else None), pair
        epoch, skip = epoch + 1, 0


def _draw_t_noise_labels(config: TrainConfig, x0: Tensor, y: Tensor | None, null_label: int | None,
                         gen: torch.Generator, rank: int, world: int,
                         memory_format: torch.memory_format) -> tuple[Tensor, Tensor, Tensor | None]:
    """Algorithm 1's t ~ Uniform({0, ..., T-1}) (0-based) and ε ~ N(0, I), and the labels to drop (classifier-free
    guidance: each becomes "no label" with probability ``p_uncond``), in this order from ``gen``.

    Each is drawn for the whole global batch (``batch_size``) and this rank keeps its rows, so a run does not
    depend on how its batches are split across processes. x0 (b, ...) is this rank's batch and y (b,) its labels
    or None. Returns t (b,), ε (b, ...) laid out like x0, and the labels on the device with the dropped ones
    replaced by ``null_label`` (None for no labels, or an unconditional model, ``null_label=None``).
    """
    def mine(x: Tensor) -> Tensor:  # this rank's rows of a tensor drawn for the global batch
        return x[rank::world] if world > 1 else x

    B, device = config.batch_size, x0.device
    if config.objective == "flow":  # flow matching's t ~ U[0, 1]
        t = mine(torch.rand(B, device=device, generator=gen))
    else:
        t = mine(torch.randint(0, config.T, (B,), device=device, generator=gen))
    noise = mine(torch.randn((B, *x0.shape[1:]), device=device, generator=gen))
    if x0.ndim == 4:  # images: the same memory layout as x0
        noise = noise.contiguous(memory_format=memory_format)
    if null_label is None:  # an unconditional model: no labels, no draw
        return t, noise, None
    drop = mine(torch.rand(B, device=device, generator=gen) < config.p_uncond)
    if y is not None:
        y = y.to(device, non_blocking=True).long()
        drop = drop.view(-1, *[1] * (y.ndim - 1))  # token ids (b, L): the whole caption is dropped
        y = torch.where(drop, torch.full_like(y, null_label), y)
    return t, noise, y


class _LossLog:
    """The loss log: each step's loss waits on the device (reading it would stall a GPU every step); every
    ``log_every`` steps, and at the last, the waiting losses are read back at once (the mean over processes),
    checked for divergence, shown on the progress bar with the rate in images/s, and handed to ``callback``
    (rank 0 only). ``losses`` (the resumed ones, or empty) grows with every loss read back."""

    def __init__(self, config: TrainConfig, device: torch.device, rank: int, world: int, step: int,
                 losses: list[float], progress: bool, callback: Callable[[dict], None] | None,
                 model: nn.Module, ema: nn.Module) -> None:
        self.config, self.rank, self.world = config, rank, world
        self.callback, self.model, self.ema = callback, model, ema  # what the callback is shown
        self.losses = losses  # every loss read back, from step 1
        self.pending = torch.zeros(config.log_every, device=device)  # losses waiting to be read back
        self.n_pending = 0
        self.bar = None
        if progress and rank == 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=config.steps, initial=step, desc="training", unit="step", dynamic_ncols=True)
        # The rate: the first block pays for compilation and warm-up, so it is timed only if it is the only one.
        self.timed_images, self.timed_seconds, self.first_images, self.first_seconds = 0, 0.0, 0, 0.0
        self.block_start, self.first_block = time.perf_counter(), True

    def record(self, loss: Tensor, step: int) -> None:
        """Keep the loss of ``step`` (counted from 1) on the device; read back every ``log_every`` and at the last."""
        self.pending[self.n_pending] = loss.detach()
        self.n_pending += 1
        if self.n_pending == self.config.log_every or step == self.config.steps:
            self._read_back(step)

    def _read_back(self, step: int) -> None:
        values = self.pending[:self.n_pending]
        if self.world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.AVG)  # the loss of the global batch
        values = values.tolist()  # the one host-device sync, every log_every steps
        self.losses.extend(values)
        images, elapsed = self.n_pending * self.config.batch_size, time.perf_counter() - self.block_start
        if self.first_block:
            self.first_images, self.first_seconds = images, elapsed
        else:
            self.timed_images += images
            self.timed_seconds += elapsed
        rate = images / elapsed
        self.first_block, self.n_pending, self.block_start = False, 0, time.perf_counter()
        _check_divergence(values, step, self.config)
        if self.bar is not None:
            self.bar.update(len(values))
            self.bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", img_s=f"{rate:.0f}")
        if self.callback is not None and self.rank == 0:
            self.callback({"step": step, "loss": sum(values) / len(values), "model": self.model, "ema": self.ema})

    def so_far(self) -> list[float]:
        """Every loss so far, those not yet read back included. Every rank must call it (it averages across them)."""
        unlogged = self.pending[:self.n_pending]
        if self.world > 1 and self.n_pending:
            unlogged = unlogged.clone()
            dist.all_reduce(unlogged, op=dist.ReduceOp.AVG)  # every rank takes part, as in the log
        return self.losses + unlogged.tolist()

    def close(self) -> float:
        """Close the progress bar; return the images per second measured."""
        if self.bar is not None:
            self.bar.close()
        if self.timed_seconds == 0:  # one block in all (a short run): its rate, warm-up included
            self.timed_images, self.timed_seconds = self.first_images, self.first_seconds
        return self.timed_images / self.timed_seconds if self.timed_seconds > 0 else float("nan")


def _save_run(path: Path, config: TrainConfig, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
              gen: torch.Generator, step: int, losses: list[float], data_id: str | None) -> None:
    """Checkpoint the run after ``step`` steps: weights, EMA, optimizer, every loss so far and the RNG streams
    (``gen`` for t, ε and the label dropout; torch's and CUDA's for dropout), so that a resume continues exactly."""
    save_checkpoint(path, Checkpoint(
        model={k: v.detach().cpu() for k, v in model.state_dict().items()},
        ema={k: v.detach().cpu() for k, v in ema.module.state_dict().items()},
        optimizer=optimizer.state_dict(), step=step, losses=losses,
        train_config=asdict(config), model_config=_model_config(model),
        rng={"generator": gen.get_state(), "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state() if gen.device.type == "cuda" else None},
        data_id=data_id,
    ))


def _resume_run(path: Path, config: TrainConfig, model: nn.Module, ema: EMA,
                optimizer: torch.optim.Optimizer, gen: torch.Generator,
                data_id: str | None) -> tuple[int, list[float], str | None]:
    """Load the checkpoint at ``path`` (refused if it belongs to another run) into the model, its EMA, the optimizer
    and the RNG streams. Returns the step reached, the losses so far and the run's data_id."""
    ckpt = load_checkpoint(path)
    _check_resume(ckpt, config, model, path, data_id)
    model.load_state_dict(ckpt.model)
    ema.module.load_state_dict(ckpt.ema)
    ema.updates = ckpt.step  # the EMA was updated once per step
    optimizer.load_state_dict(ckpt.optimizer)
    gen.set_state(ckpt.rng["generator"])
    torch.set_rng_state(ckpt.rng["torch"])
    if gen.device.type == "cuda" and ckpt.rng.get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt.rng["cuda"])
    return ckpt.step, list(ckpt.losses), data_id if data_id is not None else ckpt.data_id


def ema_decay_at(k: int, decay: float, power: float = 0.0) -> float:
    """The EMA's decay for its update after ``k`` earlier ones: ``decay``, or with a warm-up (``power`` > 0)
    min(decay, 1 - (1 + k)^-power), the schedule of ema-pytorch (inv_gamma = 1). A constant decay of 0.999
    averages over about 1000 steps from the start, so early in a run the EMA is mostly the untrained weights;
    the warm-up averages over the last ~k/power... steps instead, growing to the full window (power 3/4 reaches
    0.999 at k = 10,000; 2/3 at k = 31,623).

    Lesson: notebooks/04_training.ipynb
    """
    if power == 0:
        return decay
    return min(decay, 1.0 - (1.0 + k) ** -power)


class EMA:
    """The exponential moving average of a model's weights: after every optimizer step
    θ_ema ← d·θ_ema + (1 - d)·θ with d = ``ema_decay_at(k, decay, power)``, k the updates before this one
    (the first update copies θ). Parameters and float buffers are averaged, other buffers copied.

    torch's ``AveragedModel`` does the same but reads its update count from the device at every step
    (its count lives on the CPU and is copied to the device at every update), a host-device sync that stalls a
    GPU; here the count is a Python int.

    Lesson: notebooks/04_training.ipynb
    """

    def __init__(self, model: nn.Module, decay: float, power: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay, self.power, self.updates = decay, power, 0

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        pairs = list(zip((*self.module.parameters(), *self.module.buffers()),
                         (t.detach() for t in (*model.parameters(), *model.buffers())), strict=True))
        if self.updates == 0:
            torch._foreach_copy_([mine for mine, _ in pairs], [theirs for _, theirs in pairs])
        else:
            floats = [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()]
            weight = 1.0 - ema_decay_at(self.updates, self.decay, self.power)
            torch._foreach_lerp_([mine for mine, _ in floats], [theirs for _, theirs in floats], weight)
            for mine, theirs in pairs:
                if not mine.is_floating_point():  # e.g. integer counters: the model's value
                    mine.copy_(theirs)
        self.updates += 1


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
