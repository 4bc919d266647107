"""The denoiser: a U-Net that takes a noisy image x_t and its step t and predicts the noise.

Lesson: notebooks/03_unet.ipynb

The architecture follows Ho et al. 2020 (Appendix B), itself a PixelCNN++ / Wide-ResNet
U-Net: a sinusoidal embedding of t fed to every residual block, self-attention at
chosen resolutions, a down path and an up path joined by skip connections. Optional
class conditioning adds a learned label embedding to the time embedding, with one extra
"no label" class so that a single model can be sampled with and without labels
(classifier-free guidance, Ho & Salimans 2022).

Shapes: x (B, C, H, W), t (B,) integer steps, y (B,) labels; the output is shaped like x.
``UNetConfig`` checks every field when it is made, and ``forward`` checks its inputs
(cheaply: values are read only for CPU tensors), so a mistake is named where it is made.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "MLPDenoiser",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "parameter_table",
    "shape_trace",
    "sinusoidal_embedding",
]


def _is_int(value: object) -> bool:
    """An integer, Python's or numpy's; not a bool (True is an int to Python, never a size here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_steps(t: Tensor | int, x: Tensor) -> Tensor:
    """A denoiser's ``t``: an int (the same step for the batch) or a tensor (B,) on x's device.

    Integer steps, or float ones (the embedding is continuous); never bool or complex. Only
    metadata is read, so the check costs nothing on a GPU.
    """
    batch = x.shape[0]
    if isinstance(t, bool) or not isinstance(t, (int, Tensor)):
        raise ValueError(f"t must be an int or a tensor of shape ({batch},), got {type(t).__name__}")
    if isinstance(t, int):
        return torch.full((batch,), t, device=x.device, dtype=torch.long)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"t must hold steps (integers, or floats for continuous time), got dtype {t.dtype}")
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"t must be on x's device ({x.device}), got {t.device}")
    return t


def _check_input_dtype(x: Tensor, weight: Tensor, model: str) -> None:
    """x must have the dtype of the model's parameters (under autocast, any float dtype: autocast casts)."""
    if x.dtype == weight.dtype or (x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
        return
    fix = (f"convert it with x.to({weight.dtype}) or the model with model.to({x.dtype})" if x.is_floating_point()
           else "scale integer data to floats in [-1, 1] first")
    raise ValueError(f"x must have dtype {weight.dtype}, the dtype of the {model}'s parameters, got {x.dtype}: {fix}")


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Embed steps t (B,) as (B, dim) sines and cosines of geometric frequencies.

    e(t)[i] = sin(t · ω_i) for i < dim/2 and cos(t · ω_{i - dim/2}) after, with
    ω_i = max_period^(-i / (dim/2)): Vaswani et al. 2017 (DDPM's code divides the exponent
    by dim/2 - 1 instead, a difference of no consequence). The inner product
    e(t1)·e(t2) = Σ cos(ω_i (t1 - t2)) depends only on t1 - t2, so nearby steps get
    similar embeddings. Works for float t too.

    Lesson: notebooks/03_unet.ipynb
    """
    if not isinstance(t, Tensor) or t.ndim != 1:
        got = f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-d tensor of steps (B,), got {got}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"t must hold steps (integers or floats), got dtype {t.dtype}")
    if not _is_int(dim) or dim <= 0 or dim % 2:
        raise ValueError(f"dim must be even (a positive integer), got {dim!r}")
    if isinstance(max_period, bool) or not isinstance(max_period, numbers.Real) or not 0 < max_period < math.inf:
        raise ValueError(f"max_period must be a finite number > 0, got {max_period!r}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's shape. The defaults are the lesson's MNIST model (1.62M parameters).

    Lesson: notebooks/03_unet.ipynb
    """

    in_channels: int = 1  # 1 for digits, 3 for RGB
    image_size: int = 28  # height = width; must halve len(channel_mults)-1 times
    base_channels: int = 32  # channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2, 2)  # channels per level, x base_channels
    num_res_blocks: int = 2  # residual blocks per level on the way down
    attention_resolutions: tuple[int, ...] = (7,)  # feature-map sizes that get self-attention
    attention_heads: int = 4  # heads of each self-attention layer
    dropout: float = 0.1  # in every residual block
    norm_groups: int = 8  # GroupNorm groups; must divide every channel count
    num_classes: int | None = None  # None: unconditional; else labels 0..num_classes-1 (+ "no label")

    def __post_init__(self) -> None:
        for name in ("channel_mults", "attention_resolutions"):  # lists (e.g. from JSON) become tuples
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise ValueError(f"{name} must be a tuple of positive integers, got {value!r}")
            value = tuple(value)
            if any(not _is_int(v) or v < 1 for v in value):
                raise ValueError(f"{name} must be a tuple of positive integers, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("image_size", "base_channels", "num_res_blocks", "attention_heads", "norm_groups"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_int(self.in_channels) or self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels!r}")
        object.__setattr__(self, "in_channels", int(self.in_channels))
        levels = len(self.channel_mults)
        if levels == 0:
            raise ValueError("channel_mults must name at least one level, e.g. (1, 2, 2), got ()")
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size must be halvable {levels - 1} times for {levels} levels "
                f"(a multiple of {2 ** (levels - 1)}), got {self.image_size}"
            )
        if self.base_channels % 2:
            raise ValueError(f"base_channels must be even (it is also the time embedding's size), "
                             f"got {self.base_channels}")
        if self.base_channels % self.norm_groups:  # every count is a multiple of base_channels: this is enough
            bad = [f"{self.base_channels * mult} at level {level}" for level, mult in enumerate(self.channel_mults)
                   if (self.base_channels * mult) % self.norm_groups]
            raise ValueError(f"norm_groups ({self.norm_groups}) must divide every channel count, got "
                             f"{', '.join([f'{self.base_channels} at the stem (base_channels)', *bad])}")
        missing = [r for r in self.attention_resolutions if r not in self.resolutions]
        if missing:  # else they would be silently ignored
            raise ValueError(f"attention_resolutions must be feature-map sizes of this U-Net, {self.resolutions}, "
                             f"got {missing[0]}")
        attended = [(f"level {level}", self.base_channels * mult)  # the attention layers and their channels
                    for level, (mult, res) in enumerate(zip(self.channel_mults, self.resolutions, strict=True))
                    if res in self.attention_resolutions]
        for where, channels in [*attended, ("the middle", self.base_channels * self.channel_mults[-1])]:
            if channels % self.attention_heads:
                raise ValueError(f"attention_heads ({self.attention_heads}) must divide the channel count "
                                 f"of every attention layer, got {channels} at {where}")
        if self.num_classes is not None and (not _is_int(self.num_classes) or self.num_classes < 1):
            raise ValueError(f"num_classes must be None or >= 1 (an integer: the number of label classes), "
                             f"got {self.num_classes!r}")
        if self.num_classes is not None:
            object.__setattr__(self, "num_classes", int(self.num_classes))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map size at each level, e.g. (28, 14, 7)."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mults)))

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the time embedding, → GroupNorm → SiLU → dropout → conv; plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)  # time (and label) enter here, one bias per channel
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable deep training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x (B, c_in, H, W), emb (B, emb_dim)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # add the embedding to every pixel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions of a feature map, plus a skip."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention_heads ({heads}) must divide the channel count {channels}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:  # x (B, C, H, W)
        _, _, h, w = x.shape
        qkv = rearrange(self.qkv(self.norm(x)), "b c h w -> b (h w) c").contiguous()  # (B, HW, 3C), C last
        # each head's (HW, d) slice now has d contiguous: what the fused SDPA kernels want
        q, k, v = rearrange(qkv, "b n (three heads d) -> three b heads n d", three=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        out = rearrange(out, "b heads (h w) d -> b (heads d) h w", h=h, w=w)  # (B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve H and W with a strided 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the U-Net: residual blocks, each optionally followed by attention."""

    def __init__(self, blocks: list[ResBlock], attention: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attention = nn.ModuleList(attention)


class UNet(nn.Module):
    """ε_θ(x_t, t, y): predicts the noise in x_t (or v, see training), shaped like x_t.

    Lesson: notebooks/03_unet.ipynb
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        if config is not None and not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig (or None for the lesson's model), "
                             f"got {type(config).__name__}")
        self.config = c = config or UNetConfig()
        base, emb_dim, g = c.base_channels, 4 * c.base_channels, c.norm_groups
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # labels 0..num_classes-1, and num_classes for "no label" (classifier-free guidance)
        self.label_emb = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None
        self.stem = nn.Conv2d(c.in_channels, base, 3, padding=1)

        def attn(ch: int, res: int) -> nn.Module:
            return Attention(ch, c.attention_heads, g) if res in c.attention_resolutions else nn.Identity()

        # Down path: every block output is kept for a skip connection.
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, ch = [base], base
        for level, (mult, res) in enumerate(zip(c.channel_mults, c.resolutions, strict=True)):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, base * mult, emb_dim, c.dropout, g))
                ch = base * mult
                attns.append(attn(ch, res))
                skips.append(ch)
            self.down.append(Level(blocks, attns))
            last = level == len(c.channel_mults) - 1
            self.downsample.append(nn.Identity() if last else Downsample(ch))
            if not last:
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, c.dropout, g)
        self.mid_attn = Attention(ch, c.attention_heads, g)
        self.mid2 = ResBlock(ch, ch, emb_dim, c.dropout, g)

        # Up path: one more block per level than on the way down, each eating one skip.
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(c.channel_mults))):
            mult, res = c.channel_mults[level], c.resolutions[level]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), base * mult, emb_dim, c.dropout, g))
                ch = base * mult
                attns.append(attn(ch, res))
            self.up.append(Level(blocks, attns))
            self.upsample.append(Upsample(ch) if level > 0 else nn.Identity())

        self.out_norm = nn.GroupNorm(g, ch)
        self.out = nn.Conv2d(ch, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # predict 0 at first: the loss starts at E[ε²] = 1
        nn.init.zeros_(self.out.bias)

    @property
    def null_label(self) -> int | None:
        """The label index meaning "no label", or None for an unconditional model."""
        return self.config.num_classes

    def _check(self, x: Tensor, t: Tensor | int, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Check x, t, y (shapes, dtypes, devices; label values only on the CPU) and return t (B,), y."""
        c = self.config
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a torch.Tensor of shape (B, {c.in_channels}, H, W), got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must have shape (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] != x.shape[3] or x.shape[2] % 2 ** (len(c.channel_mults) - 1):
            raise ValueError(
                f"x must be square with a size divisible by {2 ** (len(c.channel_mults) - 1)} "
                f"for {len(c.channel_mults)} levels, got {tuple(x.shape[2:])}"
            )
        _check_input_dtype(x, self.stem.weight, "U-Net")
        t = _check_steps(t, x)
        if y is not None:
            if c.num_classes is None:
                raise ValueError("y was given but the model is unconditional (num_classes=None): call model(x, t), "
                                 "or build a conditional one with UNetConfig(num_classes=...)")
            if not isinstance(y, Tensor):
                raise ValueError(f"y must be a LongTensor of labels of shape ({x.shape[0]},), got {type(y).__name__}")
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise ValueError(f"y must hold integer labels (a LongTensor), got dtype {y.dtype}")
            if y.shape != (x.shape[0],):
                raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            if y.device != x.device:
                raise ValueError(f"y must be on x's device ({x.device}), got {y.device}")
            # Range check only for CPU labels: on a GPU it would stall the pipeline every step.
            if y.device.type == "cpu" and y.numel() and (y.min() < 0 or y.max() > c.num_classes):
                bad = y[(y < 0) | (y > c.num_classes)][0].item()
                raise ValueError(
                    f"y must hold labels in [0, {c.num_classes - 1}] (or {c.num_classes} for no label), got {bad}"
                )
            if y.dtype not in (torch.long, torch.int32):  # what nn.Embedding takes
                y = y.long()
        return t, y

    def forward(self, x: Tensor, t: Tensor | int, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) noisy images, t (B,) steps, y (B,) labels or None → (B, C, H, W)."""
        t, y = self._check(x, t, y)
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.base_channels).to(x.dtype))  # (B, 4·base)
        if self.label_emb is not None:
            if y is None:  # no labels given: every example gets the "no label" class
                y = torch.full((x.shape[0],), self.null_label, device=x.device, dtype=torch.long)
            emb = emb + self.label_emb(y)

        h = self.stem(x)  # (B, base, H, W)
        skips = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            for block, attn in zip(level.blocks, level.attention, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)  # (B, ch, H/2, W/2)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in zip(level.blocks, level.attention, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))  # concatenate the skip on channels
            h = up(h)  # (B, ch, 2H, 2W), except at the top
        return self.out(F.silu(self.out_norm(h)))  # (B, C, H, W)


class MLPDenoiser(nn.Module):
    """A small denoiser for 2-D points: the toy model of lesson 04 (same signature as UNet).

    The point and the time embedding are projected to ``hidden`` features and added,
    then refined by ``depth`` residual blocks (LayerNorm → Linear → SiLU → Linear). The
    residual form trains in seconds where a plain MLP of the same size needs minutes.

    Lesson: notebooks/04_training.ipynb
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 64):
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(depth) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0 (residual blocks), got {depth!r}")
        if not _is_int(emb_dim) or emb_dim < 2 or emb_dim % 2:
            raise ValueError(f"emb_dim must be even (a positive integer: sines and cosines), got {emb_dim!r}")
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor | int, y: Tensor | None = None) -> Tensor:  # x (B, dim), t (B,)
        if y is not None:
            raise ValueError("y was given but MLPDenoiser is unconditional: call model(x, t)")
        dim = self.inp.in_features
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != dim:
            got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, {dim}), got {got}")
        _check_input_dtype(x, self.inp.weight, "MLPDenoiser")
        t = _check_steps(t, x)
        h = self.inp(x) + self.time_mlp(sinusoidal_embedding(t, self.emb_dim).to(x.dtype))  # (B, hidden)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)  # (B, dim)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; with ``trainable_only``, only those with ``requires_grad``.

    All of them by default, so that a frozen model (``pretrained()`` returns one) counts too.

    Lesson: notebooks/03_unet.ipynb
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def shape_trace(
    model: UNet, x: Tensor, t: Tensor, y: Tensor | None = None
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """Run ``model`` once and return (stage, input shape, output shape) for every stage, in order.

    Stages are the stem, each residual block (with its attention, if any), each down- and
    upsampling, the middle, and the output. An up block's input shows the skip concatenated
    on the channels. Lesson 03 prints this as its shape trace.

    Lesson: notebooks/03_unet.ipynb
    """
    if not isinstance(model, UNet):
        raise ValueError(f"model must be a UNet, got {type(model).__name__}")
    stages: list[tuple[str, nn.Module, nn.Module]] = [("stem", model.stem, model.stem)]  # (name, first, last)

    def blocks(prefix: str, level: Level) -> None:
        for j, (block, attn) in enumerate(zip(level.blocks, level.attention, strict=True)):
            plain = isinstance(attn, nn.Identity)
            stages.append((f"{prefix} block {j}" + ("" if plain else " + attention"), block, block if plain else attn))

    for i, (level, down) in enumerate(zip(model.down, model.downsample, strict=True)):
        blocks(f"down {i}", level)
        if not isinstance(down, nn.Identity):
            stages.append((f"downsample {i}", down, down))
    stages += [("middle block 1", model.mid1, model.mid1), ("middle attention", model.mid_attn, model.mid_attn),
               ("middle block 2", model.mid2, model.mid2)]
    for i, (level, up) in enumerate(zip(model.up, model.upsample, strict=True)):
        blocks(f"up {i}", level)
        if not isinstance(up, nn.Identity):
            stages.append((f"upsample {i}", up, up))
    stages.append(("output", model.out_norm, model.out))

    inputs: dict[str, tuple[int, ...]] = {}
    trace: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    handles = []
    for name, first, last in stages:
        handles.append(first.register_forward_pre_hook(
            lambda _m, args, name=name: inputs.__setitem__(name, tuple(args[0].shape))))
        handles.append(last.register_forward_hook(
            lambda _m, _args, out, name=name: trace.append((name, inputs[name], tuple(out.shape)))))
    try:
        with torch.no_grad():
            model(x, t, y)
    finally:
        for h in handles:
            h.remove()
    return trace


def parameter_table(model: UNet) -> list[tuple[str, int]]:
    """Trainable parameters per part of the U-Net, in the order data flows through it.

    Lesson: notebooks/03_unet.ipynb
    """
    if not isinstance(model, UNet):
        raise ValueError(f"model must be a UNet, got {type(model).__name__}")
    parts = [
        ("time embedding MLP", [model.time_mlp]),
        ("label embedding", [model.label_emb] if model.label_emb is not None else []),
        ("stem", [model.stem]),
        ("down path", [model.down, model.downsample]),
        ("middle", [model.mid1, model.mid_attn, model.mid2]),
        ("up path", [model.up, model.upsample]),
        ("output", [model.out_norm, model.out]),
    ]
    return [(name, sum(count_parameters(m) for m in modules)) for name, modules in parts]
