"""The reverse process: from pure noise x_T back to data, one denoising step at a time.

Lesson: notebooks/05_sampling.ipynb

Notation (0-based t, as everywhere in the package):

==================  =========  =================================================
code                paper      meaning
==================  =========  =================================================
``eps``             ε_θ        the network's noise estimate at (x_t, t)
``x0_hat``          x̂_0        (x_t - √(1-ᾱ_t) ε) / √ᾱ_t, the clean image it implies
``sigma``           σ_t        standard deviation of the noise added back at step t
==================  =========  =================================================

Every sampler has the same shape, ``sampler(model, x_T, s, ..., generator, callback,
y, guidance)``, and calls ``callback({"i", "t", "x_t", "x0_hat"})`` after each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .noising import _as_timesteps, _check_noise, extract
from .schedules import NoiseSchedule

__all__ = ["ddpm_sample", "ddpm_step", "guided_eps", "predict_x0"]

VARIANCES = ("beta_tilde", "beta")


def predict_x0(eps: Tensor, t: int | Tensor, x_t: Tensor, s: NoiseSchedule) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t: invert the forward jump (DDPM eq. 4) with the noise estimate."""
    t = _as_timesteps(t, x_t, s)
    alpha_bar_t = extract(s.alpha_bars, t, x_t.shape, x_t)  # ᾱ_t
    return (x_t - (1 - alpha_bar_t).sqrt() * eps) / alpha_bar_t.sqrt()


def ddpm_step(
    eps: Tensor,
    t: int | Tensor,
    x_t: Tensor,
    s: NoiseSchedule,
    noise: Tensor | None = None,
    variance: str = "beta_tilde",
    generator: torch.Generator | None = None,
) -> Tensor:
    """One step of Ho et al. Algorithm 2: x_{t-1} from x_t and the noise estimate ε.

    x_{t-1} = 1/√α_t · (x_t - β_t/√(1-ᾱ_t) · ε) + σ_t z,   z ~ N(0, I), and z = 0 at t = 0,
    with σ_t² = β̃_t (``variance="beta_tilde"``, the posterior's) or β_t (``"beta"``).

    Lesson: notebooks/05_sampling.ipynb
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    t = _as_timesteps(t, x_t, s)
    noise = _check_noise(noise, x_t, generator)
    beta_t = extract(s.betas, t, x_t.shape, x_t)  # β_t
    alpha_t = extract(s.alphas, t, x_t.shape, x_t)  # α_t
    alpha_bar_t = extract(s.alpha_bars, t, x_t.shape, x_t)  # ᾱ_t
    mean = (x_t - beta_t / (1 - alpha_bar_t).sqrt() * eps) / alpha_t.sqrt()  # μ_θ(x_t, t), eq. (11)
    var = extract(s.posterior_variance if variance == "beta_tilde" else s.betas, t, x_t.shape, x_t)
    not_last = (t > 0).to(x_t.dtype).reshape(var.shape)  # no noise is added at the last step
    return mean + not_last * var.sqrt() * noise


def guided_eps(model: nn.Module, x_t: Tensor, t: Tensor, y: Tensor | None, guidance: float) -> Tensor:
    """ε_θ(x_t, t, y), with classifier-free guidance when ``guidance != 1`` (Ho & Salimans 2022):

    ε̃ = ε_θ(x_t, t, ∅) + w · (ε_θ(x_t, t, y) - ε_θ(x_t, t, ∅)), with ∅ the model's "no label" class.
    w = 1 is the conditional model, w = 0 the unconditional one, w > 1 pushes towards y.
    """
    null = getattr(model, "null_label", None)
    if y is None:
        if guidance != 1.0:
            raise ValueError(f"guidance must be 1.0 without labels y, got {guidance}")
        return model(x_t, t)
    if null is None:
        raise ValueError("labels y were given but the model is unconditional (it has no null_label)")
    if guidance == 1.0:
        return model(x_t, t, y)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]))
    cond, uncond = both.chunk(2)  # one batched call for both estimates
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    x_T: Tensor,
    s: NoiseSchedule,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    y: Tensor | None = None,
    guidance: float = 1.0,
    variance: str = "beta_tilde",
) -> Tensor:
    """Ancestral sampling (Ho et al. Algorithm 2): T network calls, from x_T ~ N(0, I) to x_0.

    ``callback({"i": i, "t": t, "x_t": x_{t-1}, "x0_hat": x̂_0})`` after each step i.

    Lesson: notebooks/05_sampling.ipynb
    """
    x = x_T
    for i, t in enumerate(range(s.T - 1, -1, -1)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        x = ddpm_step(eps, t, x, s, variance=variance, generator=generator)
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x
