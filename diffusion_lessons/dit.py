"""The transformer denoiser: DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers").

Lesson: notebooks/10_colour_transformers_text.ipynb

The U-Net of lesson 03 sees an image through convolutions; DiT cuts it into patches, treats
each patch as a token, and lets every token attend to every other. Same job, same signature:
``model(x_t, t, y)`` returns ε̂ shaped like x_t, so ``train`` and every sampler take it.

==================  ================  ============================================================
code                paper             meaning
==================  ================  ============================================================
``p``               p                 patch side: an image (C, H, W) becomes (H/p)·(W/p) tokens
``patchify``        "Patchify"        (B, C, H, W) → (B, N, p·p·C), N = HW/p²; each row is one patch
``pos``             "sine-cosine"     fixed 2-D positional embedding (B, N, D), added to the tokens
``c``               c                 the conditioning vector: embed(t) + embed(y), (B, D)
``shift, scale``    β, γ              adaLN: LayerNorm(x)·(1 + γ(c)) + β(c), per block and sub-layer
``gate``            α                 adaLN-Zero: each residual branch is scaled by α(c), zero at init
==================  ================  ============================================================

A block (Fig. 3, "adaLN-Zero"), for the attention and then the MLP sub-layer::

    x = x + α₁(c) · Attention(LayerNorm(x)·(1 + γ₁(c)) + β₁(c))
    x = x + α₂(c) · MLP(LayerNorm(x)·(1 + γ₂(c)) + β₂(c))

The six vectors come from one linear layer of c, initialised to zero: every block starts as
the identity, and the model predicts 0 (the final layer is zero too), like our U-Net.

Conditioning: ``DiTConfig(num_classes=K)`` takes labels y (B,), as the U-Net does;
``DiTConfig(words=...)`` takes captions as token ids y (B, caption_length), encoded by a small
``TextEncoder`` trained with the model, whose caption vector is added to c. The empty caption
(all padding, id 0) is the "no caption" of classifier-free guidance: ``null_label = 0``, so the
samplers' ``torch.full_like(y, null_label)`` builds it. Why adaLN and not cross-attention?
The captions are one to six words and DiT found adaLN-Zero the best way to feed it a vector;
cross-attention (Stable Diffusion's) lets each patch read each word, which matters for long
prompts and costs a second attention in every block.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .text import PAD, TextEncoder, split_words, tokenize
from .unet import _check_input_dtype, _check_steps, _is_int, sinusoidal_embedding

__all__ = ["DiT", "DiTBlock", "DiTConfig", "modulate", "patchify", "position_embedding", "unpatchify"]


def patchify(x: Tensor, p: int) -> Tensor:
    """Images (B, C, H, W) → patches (B, N, p·p·C), N = (H/p)·(W/p), row by row; each patch's pixels
    in (row, column, channel) order, as DiT's reference code lays them out.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)  # (B, N, p·p·C)


def unpatchify(tokens: Tensor, p: int, channels: int) -> Tensor:
    """Patches (B, N, p·p·C) → images (B, C, H, W), the inverse of ``patchify`` (square images).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    side = math.isqrt(tokens.shape[1])
    return rearrange(tokens, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=side, p1=p, p2=p, c=channels)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN's modulation x·(1 + scale) + shift, with one (shift, scale) per sample: x (B, N, D), shift (B, D).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    return x * (1 + scale[:, None, :]) + shift[:, None, :]  # the same for every token of a sample


def position_embedding(grid: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine embedding (grid², dim): half the channels encode the row, half the column
    (the sinusoidal embedding of lesson 03, once per axis; as in MAE and DiT).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sinusoidal_embedding(rows.flatten(), dim // 2, max_period=10_000.0),
                      sinusoidal_embedding(cols.flatten(), dim // 2, max_period=10_000.0)], dim=1)  # (grid², dim)


@dataclass(frozen=True)
class DiTConfig:
    """The DiT's shape. The defaults are the lesson's 32x32 emoji model.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    image_size: int = 32  # height = width, a multiple of patch_size
    in_channels: int = 3  # 3 for RGB; a latent's channels for latent diffusion
    patch_size: int = 4  # p: each p x p patch is one token, so (image_size / p)² tokens
    hidden_size: int = 192  # D: the width of every token
    depth: int = 6  # transformer blocks
    heads: int = 6  # attention heads; must divide hidden_size
    mlp_ratio: float = 4.0  # the MLP's hidden width, x hidden_size
    num_classes: int | None = None  # labels 0..num_classes-1 (+ "no label"); None: no labels
    words: tuple[str, ...] = ()  # the text encoder's vocabulary; empty: no captions
    caption_length: int = 8  # tokens per caption (longer ones are cut)
    text_depth: int = 2  # transformer layers of the text encoder

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "patch_size", "hidden_size", "depth", "heads", "caption_length",
                     "text_depth"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.hidden_size % self.heads or self.hidden_size % 4:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads}) and by 4 "
                             "(the 2-D position embedding)")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, numbers.Real) or self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        if self.num_classes is not None and (not _is_int(self.num_classes) or self.num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive integer, got {self.num_classes!r}")
        if isinstance(self.words, str) or any(not isinstance(w, str) or split_words(w) != [w] for w in self.words):
            raise ValueError("words must be a tuple of lower-case words (dl.text.build_vocabulary(captions) makes one)")
        object.__setattr__(self, "words", tuple(self.words))
        if self.words and self.num_classes is not None:
            raise ValueError("a DiT takes labels (num_classes) or captions (words), not both")

    @property
    def grid(self) -> int:
        """Patches per side: the token grid is grid x grid."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        return dict(asdict(self), model="DiT")  # "model": how pretrained() knows which class to build


class Attention(nn.Module):
    """Multi-head self-attention over the tokens (B, N, D)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)  # (B, h, N, d)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q·kᵀ/√d)·v, (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))  # (B, N, D)


class DiTBlock(nn.Module):
    """One transformer block with adaLN-Zero conditioning (Peebles & Xie, Fig. 3).

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)  # adaLN supplies the affine part
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # c → β₁, γ₁, α₁, β₂, γ₂, α₂
        nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: α = 0, so the block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # x (B, N, D), c (B, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """A diffusion transformer: ``model(x, t, y=None)`` → ε̂ (B, C, H, W), like ``UNet``.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    def __init__(self, config: DiTConfig | None = None):
        super().__init__()
        c = self.config = config if config is not None else DiTConfig()
        if not isinstance(c, DiTConfig):
            raise ValueError(f"config must be a DiTConfig, got {type(c).__name__}")
        D, p = c.hidden_size, c.patch_size
        self.patch_embed = nn.Linear(p * p * c.in_channels, D)  # one patch's pixels → a token
        self.register_buffer("pos", position_embedding(c.grid, D)[None], persistent=False)  # (1, N, D)
        self.time_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        self.label_emb = nn.Embedding(c.num_classes + 1, D) if c.num_classes is not None else None  # +1: no label
        self.text = TextEncoder(len(c.words) + 2, c.caption_length, D, c.text_depth) if c.words else None
        self.blocks = nn.ModuleList(DiTBlock(D, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.final = nn.Linear(D, p * p * c.in_channels)
        for layer in (self.final_ada[1], self.final):  # predict 0 at first: the loss starts at E[ε²] = 1
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for module in self.modules():  # DiT's init: Xavier-uniform linear layers (the zeroed ones stay zero)
            if isinstance(module, nn.Linear) and module.weight.abs().sum() > 0 and module is not self.patch_embed:
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def null_label(self) -> int | None:
        """The "no label" value: num_classes for labels, 0 (padding: the empty caption) for captions, else None."""
        if self.config.words:
            return PAD
        return self.config.num_classes

    @property
    def caption_length(self) -> int | None:
        """Tokens per caption for a text model (y is then (B, caption_length)), else None."""
        return self.config.caption_length if self.config.words else None

    def tokenize(self, captions: list[str] | str) -> Tensor:
        """Captions → token ids (B, caption_length) for ``y``, on the model's device."""
        if not self.config.words:
            raise ValueError("this DiT takes no captions (build it with DiTConfig(words=...))")
        return tokenize(captions, self.config.words, self.config.caption_length).to(self.pos.device)

    def unknown_words(self, caption: str) -> list[str]:
        """The words of ``caption`` the model never saw in training: each becomes one "unknown" token."""
        known = set(self.config.words)
        return [w for w in split_words(caption) if w not in known]

    def _check(self, x: Tensor, t: Tensor | int, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        c = self.config
        want = f"(B, {c.in_channels}, {c.image_size}, {c.image_size})"
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a torch.Tensor of shape {want}, got {type(x).__name__}")
        if x.shape[1:] != (c.in_channels, c.image_size, c.image_size) or x.ndim != 4:
            raise ValueError(f"x must have shape {want} (a DiT's token grid is fixed), got {tuple(x.shape)}")
        _check_input_dtype(x, self.patch_embed.weight, "DiT")
        t = _check_steps(t, x)
        if y is None:
            return t, None
        if self.null_label is None:
            raise ValueError("y was given but the DiT is unconditional: build it with DiTConfig(num_classes=...) "
                             "or DiTConfig(words=...)")
        text = bool(c.words)
        want_y = (x.shape[0], c.caption_length) if text else (x.shape[0],)
        what = "token ids (model.tokenize(captions))" if text else "integer labels"
        if not isinstance(y, Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            got = y.dtype if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must be a LongTensor of {what}, got {got}")
        if tuple(y.shape) != want_y:
            raise ValueError(f"y must have shape {want_y}, {what}, got {tuple(y.shape)}")
        if y.device != x.device:
            raise ValueError(f"y must be on x's device ({x.device}), got {y.device}")
        top = len(c.words) + 1 if text else c.num_classes
        if y.device.type == "cpu" and y.numel() and (y.min() < 0 or y.max() > top):
            bad = y[(y < 0) | (y > top)][0].item()
            raise ValueError(f"y must hold {'token ids' if text else 'labels'} in [0, {top}], got {bad}")
        return t, y.long()

    def condition(self, t: Tensor, y: Tensor | None, batch: int) -> Tensor:
        """c = embed(t) + embed(y): (B, D). No y: the "no label" class, or the empty caption."""
        c = self.time_mlp(sinusoidal_embedding(t, 256).to(self.time_mlp[0].weight.dtype))  # (B, D)
        if self.label_emb is not None:
            if y is None:
                y = torch.full((batch,), self.config.num_classes, device=c.device, dtype=torch.long)
            c = c + self.label_emb(y)
        if self.text is not None:
            if y is None:
                y = torch.full((batch, self.config.caption_length), PAD, device=c.device, dtype=torch.long)
            c = c + self.text(y)
        return c

    def forward(self, x: Tensor, t: Tensor | int, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) noisy images, t (B,) steps, y labels (B,) or token ids (B, L) or None → (B, C, H, W)."""
        t, y = self._check(x, t, y)
        cfg = self.config
        c = self.condition(t, y, x.shape[0]).to(x.dtype)  # (B, D)
        h = self.patch_embed(patchify(x, cfg.patch_size)) + self.pos.to(x.dtype)  # (B, N, D)
        for block in self.blocks:
            h = block(h, c)  # (B, N, D)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        h = self.final(modulate(self.final_norm(h), shift, scale))  # (B, N, p·p·C)
        return unpatchify(h, cfg.patch_size, cfg.in_channels)  # (B, C, H, W)
