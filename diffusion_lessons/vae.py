"""A small variational auto-encoder for digits: the generative model diffusion is compared with.

Lesson: notebooks/11_generative_models.ipynb

The model (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"):

==================  ===========  ====================================================
code                paper        meaning
==================  ===========  ====================================================
``z``               z            a latent code, (B, latent_dim); prior p(z) = N(0, I)
``mu``, ``logvar``  μ, log σ²    the encoder's Gaussian q_φ(z | x) = N(μ(x), diag σ²(x))
``logits``                       the decoder's Bernoulli logits for p_θ(x | z), one per pixel
``recon``           −log p(x|z)  the reconstruction term, in nats per image
``kl``              KL(q ‖ p)    how far q_φ(z | x) is from the prior, in nats per image
==================  ===========  ====================================================

Training maximises the evidence lower bound (ELBO) on log p(x), eq. (3) of the paper:

    log p_θ(x) ≥ ELBO = E_{q_φ(z|x)}[log p_θ(x | z)] − KL(q_φ(z | x) ‖ N(0, I)),

with the expectation estimated by one reparameterised draw z = μ + σ·ε, ε ~ N(0, I)
(so the gradient reaches μ and σ), and the KL in closed form (Appendix B):
KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1). The loss is −ELBO, averaged over the batch.

The likelihood p_θ(x | z): pixels are rescaled from [-1, 1] to [0, 1] and each one is a
Bernoulli with the decoder's probability, −log p(x | z) = Σ_pixels BCE(logits, x01),
as in Kingma & Welling's MNIST experiments. Why not a Gaussian? A Gaussian with a fixed
σ makes the reconstruction term ‖x − x̂‖² / 2σ², and σ silently sets the weight of
reconstruction against the KL: σ = 1 on [-1, 1] pixels gives a model that ignores z and
draws a grey average; a small σ gives sharp reconstructions and poor samples. MNIST
pixels sit near 0 or 1, which a Bernoulli fits with no scale to choose. (Grey pixels are
not 0/1, so this "likelihood" is not a normalised density of continuous images; the
continuous Bernoulli of Loaiza-Ganem & Cunningham 2019 fixes that. For sampling it
makes no difference.) A generated digit is the decoder's mean, the per-pixel
probability mapped back to [-1, 1], not a 0/1 draw from it.

``VAEConfig(num_classes=10)`` makes it a conditional VAE (Sohn et al. 2015): encoder and
decoder both see the label y, the ELBO is that of log p(x | y), and sampling asks for a
digit, as the course's class-conditional diffusion model does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .data import check_images

__all__ = [
    "VAE",
    "VAEConfig",
    "VAEResult",
    "elbo_terms",
    "gaussian_kl",
    "reparameterize",
    "train_vae",
]

IMAGE_SHAPE = (1, 28, 28)  # the VAE is built for MNIST-sized digits


@dataclass(frozen=True)
class VAEConfig:
    """The VAE's shape and how to train it. Frozen: one config, one repeatable run.

    Lesson: notebooks/11_generative_models.ipynb
    """

    latent_dim: int = 16  # size of the latent code z (2 makes a map you can plot, with blurrier digits)
    channels: tuple[int, int] = (16, 32)  # conv channels at 14x14 and at 7x7 (encoder; mirrored in the decoder)
    steps: int = 1500  # optimizer steps (batches) in total
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # Adam learning rate
    num_classes: int | None = None  # 10: a class-conditional VAE (encoder and decoder see the label); None: not
    beta: float = 1.0  # weight of the KL term: 1 is the true ELBO; > 1 is a β-VAE (Higgins et al. 2017)
    seed: int = 0  # seeds the weights, the data order and every ε: a run is repeatable
    log_every: int = 50  # update the progress bar and call the callback every this many steps

    def __post_init__(self) -> None:
        for name in ("latent_dim", "steps", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (len(self.channels) != 2 or
                any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in self.channels)):
            raise ValueError(f"channels must be two positive integers, got {self.channels!r}")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or self.num_classes < 2):
            raise ValueError(f"num_classes must be None or an integer >= 2, got {self.num_classes!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


class VAE(nn.Module):
    """Encoder x → (μ, log σ²), decoder z → Bernoulli logits of every pixel.

    Encoder: (B, 1, 28, 28) → conv stride 2 → (B, c1, 14, 14) → conv stride 2 → (B, c2, 7, 7)
    → flatten → linear → (B, 2·latent_dim), split into μ and log σ².
    Decoder: the mirror image, with transposed convolutions, ending in (B, 1, 28, 28) logits.

    With ``config.num_classes`` set, it is a conditional VAE (Sohn et al. 2015): the label's
    one-hot vector is appended to the encoder's features and to the code, so q_φ(z | x, y)
    and p_θ(x | z, y). The label then carries the class, and the code the rest (the "style":
    slant, thickness, shape). Every method takes the labels ``y`` (B,), required exactly
    when the model is conditional.

    Lesson: notebooks/11_generative_models.ipynb
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = c = config or VAEConfig()
        c1, c2 = c.channels
        k = c.num_classes or 0  # one-hot label size (0: unconditional)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.SiLU(),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.SiLU(),  # (B, c2, 7, 7)
        )
        self.to_moments = nn.Linear(c2 * 7 * 7 + k, 2 * c.latent_dim)  # [features, one-hot y] → [μ, log σ²]
        self.from_latent = nn.Linear(c.latent_dim + k, c2 * 7 * 7)  # [z, one-hot y] → features
        self.decoder = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.SiLU(),  # (B, c1, 14, 14)
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28) logits
        )
        nn.init.zeros_(self.decoder[-1].weight)  # a fresh decoder says "50 % white" for every pixel:
        nn.init.zeros_(self.decoder[-1].bias)  # the reconstruction term starts at exactly 784·log 2 nats

    def _with_label(self, h: Tensor, y: Tensor | None) -> Tensor:
        """Append the one-hot label to h (B, F) → (B, F + num_classes); check y against the model."""
        k = self.config.num_classes
        if k is None:
            if y is not None:
                raise ValueError("labels y were given but this VAE is unconditional (VAEConfig(num_classes=None))")
            return h
        if y is None:
            raise ValueError(f"this VAE is class-conditional (num_classes={k}): pass labels y of shape ({h.shape[0]},)")
        if not isinstance(y, Tensor) or y.shape != (h.shape[0],) or y.is_floating_point():
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must be an integer tensor of shape ({h.shape[0]},), got {shape}")
        if y.numel() and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"y must hold labels in [0, {k - 1}], got values in [{y.min().item()}, {y.max().item()}]")
        return torch.cat([h, F.one_hot(y.long(), k).to(h.dtype)], dim=1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, 1, 28, 28) in [-1, 1] → μ (B, latent_dim), log σ² (B, latent_dim) of q_φ(z | x)."""
        h = rearrange(self.encoder(x), "b c h w -> b (c h w)")  # (B, c2·7·7)
        mu, logvar = self.to_moments(self._with_label(h, y)).chunk(2, dim=1)  # (B, latent_dim) each
        return mu, logvar

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim) → Bernoulli logits (B, 1, 28, 28) of p_θ(x | z)."""
        h = rearrange(self.from_latent(self._with_label(z, y)), "b (c h w) -> b c h w", h=7, w=7)  # (B, c2, 7, 7)
        return self.decoder(h)

    @torch.no_grad()
    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim) → the decoder's mean image (B, 1, 28, 28) in [-1, 1].

        For generating and looking, so without gradients; training uses ``decode_logits``.
        """
        return torch.sigmoid(self.decode_logits(z, y)) * 2 - 1  # pixel probability in [0, 1] → [-1, 1]

    def forward(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, 1, 28, 28) → (logits (B, 1, 28, 28), μ, log σ²): encode, draw one z, decode."""
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode_logits(z, y), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n new digits (n, 1, 28, 28) in [-1, 1]: z ~ N(0, I), then one pass of the decoder.

        A conditional VAE needs the labels ``y`` (n,) of the digits to draw.

        Lesson: notebooks/11_generative_models.ipynb
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        device = next(self.parameters()).device
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=device)  # z ~ p(z) = N(0, I)
        return self.decode(z, y)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's mean for the encoder's mean code: x (B, 1, 28, 28) → x̂ (B, 1, 28, 28) in [-1, 1]."""
        check_images(x, "x", shape=IMAGE_SHAPE, value_limit=1 + 1e-4)
        return self.decode(self.encode(x, y)[0], y)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + σ·ε with ε ~ N(0, I): a draw from N(μ, σ²) that gradients can flow through to μ and σ.

    Lesson: notebooks/11_generative_models.ipynb
    """
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)  # ε ~ N(0, I)
    return mu + (0.5 * logvar).exp() * eps  # σ = exp(½ log σ²)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row, in nats: ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1). (B, D) → (B,).

    Kingma & Welling 2014, Appendix B.

    Lesson: notebooks/11_generative_models.ipynb
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)


def elbo_terms(
    model: VAE, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The two terms of −ELBO for each image of x (B, 1, 28, 28) in [-1, 1], in nats: (recon (B,), kl (B,)).

    recon = −log p_θ(x | z) for one draw z ~ q_φ(z | x) (Bernoulli on pixels rescaled to [0, 1]);
    kl = KL(q_φ(z | x) ‖ N(0, I)) in closed form. −ELBO = recon + kl. Labels y (B,) for a conditional VAE.

    Lesson: notebooks/11_generative_models.ipynb
    """
    logits, mu, logvar = model(x, y, generator=generator)
    target = (x + 1) / 2  # pixels from [-1, 1] to [0, 1], the Bernoulli's range
    recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=(1, 2, 3))  # (B,)
    return recon, gaussian_kl(mu, logvar)


@dataclass
class VAEResult:
    """What ``train_vae`` returns: the trained model (eval mode) and its loss history.

    Lesson: notebooks/11_generative_models.ipynb
    """

    model: VAE  # the trained VAE, in eval mode
    losses: list[float]  # −ELBO (β-weighted) per image, in nats, at every step
    reconstruction: list[float]  # the reconstruction term −log p(x | z) at every step
    kl: list[float]  # the KL term at every step
    seconds: float  # wall time of the training loop
    config: VAEConfig = field(repr=False)


def train_vae(
    images: Tensor,
    config: VAEConfig | None = None,
    labels: Tensor | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> VAEResult:
    """Train a fresh VAE on ``images`` (N, 1, 28, 28) in [-1, 1] by minimising −ELBO with Adam.

    ``labels`` (N,) are needed exactly when ``config.num_classes`` is set (a conditional VAE).
    Seeded by ``config.seed`` (weights, data order, every ε) and repeatable; torch's global
    random state is left as it was. Runs on the device of ``images``.
    ``callback({"step", "loss", "model"})`` runs every ``log_every`` steps, e.g. to draw samples.

    Lesson: notebooks/11_generative_models.ipynb
    """
    config = config or VAEConfig()
    if not isinstance(config, VAEConfig):
        raise ValueError(f"config must be a VAEConfig, got {type(config).__name__}")
    check_images(images, "images", shape=IMAGE_SHAPE, value_limit=1 + 1e-4)
    if config.num_classes is None and labels is not None:
        raise ValueError("labels were given but config.num_classes is None: set VAEConfig(num_classes=10) "
                         "for a class-conditional VAE, or leave the labels out")
    if config.num_classes is not None:
        if labels is None:
            raise ValueError(f"config.num_classes={config.num_classes}: a conditional VAE needs labels (N,)")
        if not isinstance(labels, Tensor) or labels.shape != (len(images),) or labels.is_floating_point():
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be an integer tensor of shape ({len(images)},), got {shape}")
        if labels.min() < 0 or labels.max() >= config.num_classes:
            raise ValueError(f"labels must lie in [0, {config.num_classes - 1}], "
                             f"got values in [{labels.min().item()}, {labels.max().item()}]")
    if len(images) < config.batch_size:
        raise ValueError(f"the data set has {len(images)} images, fewer than one batch ({config.batch_size})")
    device = images.device
    with torch.random.fork_rng(devices=[]):  # fresh weights from the seed, without touching the global state
        torch.manual_seed(config.seed)
        model = VAE(config).to(device)
    gen = torch.Generator(device=device).manual_seed(config.seed)  # data order and ε
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="training the VAE", unit="step", dynamic_ncols=True)
    losses, recons, kls = [], [], []
    order, pos = torch.randperm(len(images), generator=gen, device=device), 0
    model.train()
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        if pos + config.batch_size > len(images):  # a new epoch: reshuffle
            order, pos = torch.randperm(len(images), generator=gen, device=device), 0
        idx = order[pos:pos + config.batch_size]
        x = images[idx]  # (B, 1, 28, 28)
        y = labels[idx].to(device) if labels is not None else None  # (B,) or None
        pos += config.batch_size
        recon, kl = elbo_terms(model, x, y, generator=gen)  # (B,), (B,)
        loss = (recon + config.beta * kl).mean()  # −ELBO per image (β = 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        recons.append(recon.mean().item())
        kls.append(kl.mean().item())
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"the VAE's loss became {losses[-1]} at step {step}: try a lower lr "
                               f"(lr={config.lr:g}, e.g. {config.lr / 4:g})")
        if step % config.log_every == 0 or step == config.steps:
            window = losses[-config.log_every:]
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{sum(window) / len(window):.1f}", kl=f"{kls[-1]:.1f}")
            if callback is not None:
                callback({"step": step, "loss": sum(window) / len(window), "model": model})
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    return VAEResult(model=model, losses=losses, reconstruction=recons, kl=kls, seconds=seconds, config=config)
