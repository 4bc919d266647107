"""Latent diffusion (Rombach et al. 2022): diffuse in an autoencoder's small latent space, decode at the end.

Lesson: notebooks/10_colour_transformers_text.ipynb

An image of 32x32x3 = 3,072 numbers is encoded to a latent of 8x8x4 = 256 (a factor 4 per
side, 12x fewer numbers); the denoiser (a DiT with 1x1 patches: 64 tokens) learns the latents'
distribution, and a sample is decoded back to pixels. Stable Diffusion does the same at
512x512 → 64x64x4 (a factor 8, 48x fewer numbers).

==================  ==================  ======================================================
code                paper               meaning
==================  ==================  ======================================================
``encoder``         ℰ                   x (B, 3, H, W) → z (B, c, H/f, W/f), f = 4 here
``decoder``         𝒟                   z → x̃, the reconstruction
``scale``           1/σ̂ (SD: 0.18215)   z is multiplied by it so the latents have unit variance:
                                        the noise schedule assumes data of scale ~1
==================  ==================  ======================================================

Rombach et al. keep the latent's scale in check with a tiny KL term (or vector quantisation)
and train with perceptual and adversarial losses, which keep edges sharp. The course's
autoencoder is deterministic and trained with the mean squared error only, then the latents
are rescaled by their measured standard deviation (the paper's own "rescaling" trick, Sec. G):
simple and honest, and its blurrier edges are part of what the lesson measures, since the
decoder's reconstruction error is a floor no latent model can go below.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import check_images
from .unet import _is_int

__all__ = ["AUTOENCODER_PATH", "Autoencoder", "AutoencoderConfig", "pretrained_autoencoder", "train_autoencoder"]

AUTOENCODER_PATH = Path(__file__).parent / "weights" / "emoji_autoencoder.pt"


@dataclass(frozen=True)
class AutoencoderConfig:
    """The autoencoder's shape and its training. The defaults: 32x32x3 emoji ↔ 8x8x4 latents.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    image_size: int = 32  # height = width of the images; a multiple of 4
    in_channels: int = 3  # RGB
    latent_channels: int = 4  # c: channels of the latent (its side is image_size / 4)
    channels: int = 64  # width of the convolutions (x2 at the 8x8 level)
    steps: int = 3000  # training steps
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # AdamW peak learning rate (cosine decay to 0)
    seed: int = 0  # seeds the weights and the data order

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "latent_channels", "channels", "steps", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two halvings), got {self.image_size}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, H/4, W/4): the shape of one image's latent."""
        return (self.latent_channels, self.image_size // 4, self.image_size // 4)

    def to_dict(self) -> dict:
        return asdict(self)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class Autoencoder(nn.Module):
    """ℰ: (B, 3, 32, 32) → (B, 4, 8, 8) scaled latents; 𝒟: back. ``encode`` and ``decode`` apply the scale.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        c = self.config = config if config is not None else AutoencoderConfig()
        if not isinstance(c, AutoencoderConfig):
            raise ValueError(f"config must be an AutoencoderConfig, got {type(c).__name__}")
        w = c.channels
        self.encoder = nn.Sequential(
            _block(c.in_channels, w), nn.Conv2d(w, w, 4, stride=2, padding=1),  # (B, w, H/2, W/2)
            _block(w, 2 * w), nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),  # (B, 2w, H/4, W/4)
            _block(2 * w, 2 * w), nn.Conv2d(2 * w, c.latent_channels, 1),  # (B, c, H/4, W/4)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c.latent_channels, 2 * w, 3, padding=1), _block(2 * w, 2 * w),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), _block(w, w),  # (B, w, H/2, W/2)
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), _block(w, w),  # (B, w, H, W)
            nn.Conv2d(w, c.in_channels, 3, padding=1),  # (B, 3, H, W)
        )
        self.register_buffer("scale", torch.ones(()))  # 1/std of the raw latents, set after training

    def _check(self, x: Tensor, name: str, shape: tuple[int, int, int]) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, shape))}), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got dtype {x.dtype}")

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] → latents (B, c, H/4, W/4), scaled to unit variance."""
        c = self.config
        self._check(x, "x", (c.in_channels, c.image_size, c.image_size))
        return self.encoder(x) * self.scale

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, c, H/4, W/4) → images (B, 3, H, W), clamped to [-1, 1]."""
        self._check(z, "z", self.config.latent_shape)
        return self.decoder(z / self.scale).clamp(-1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction 𝒟(ℰ(x)), unclamped (what training compares with x)."""
        return self.decoder(self.encoder(x))


def train_autoencoder(images: Tensor, config: AutoencoderConfig | None = None,
                      progress: bool = True) -> tuple[Autoencoder, list[float]]:
    """Train an ``Autoencoder`` on ``images`` (N, 3, H, W) in [-1, 1] by the mean squared error, then set
    its ``scale`` to 1/std of the latents of ``images``. Returns the model (eval mode, frozen) and the losses.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    config = config if config is not None else AutoencoderConfig()
    if not isinstance(config, AutoencoderConfig):
        raise ValueError(f"config must be an AutoencoderConfig, got {type(config).__name__}")
    images = check_images(images, "images", shape=(config.in_channels, config.image_size, config.image_size),
                          value_limit=1.5)
    if images.shape[0] < config.batch_size:
        raise ValueError(f"images has {images.shape[0]} images, fewer than one batch ({config.batch_size})")
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Autoencoder(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)  # lr → 0 by the last step
    losses, start = [], time.perf_counter()
    bar = tqdm(range(config.steps), desc="autoencoder", disable=not progress)
    for step in bar:
        idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=gen)
        x = images[idx]
        loss = F.mse_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval().requires_grad_(False)
    with torch.no_grad():
        z = torch.cat([model.encoder(b) for b in images.split(256)])
        model.scale.fill_(1.0 / z.std().item())
    model.train_seconds = time.perf_counter() - start
    return model, losses


def pretrained_autoencoder(path: str | Path = AUTOENCODER_PATH) -> Autoencoder:
    """The shipped emoji autoencoder (eval mode, frozen), trained by ``benchmarks/emoji_models.py autoencoder``;
    ``.card`` says the command, the machine, the time and its reconstruction error.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no autoencoder weights at {path}; train them with: "
                                "python benchmarks/emoji_models.py autoencoder")
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = Autoencoder(AutoencoderConfig(**data["config"]))
    model.load_state_dict(data["state_dict"])
    model.card = data["card"]
    return model.eval().requires_grad_(False)
