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
y, guidance, clip_x0)``, and calls ``callback({"i", "t", "x_t", "x0_hat"})`` after each step.

``clip_x0=True`` (the default, as in Ho et al.'s code) clips each predicted x̂_0 to
[-1, 1], the range of all the course's data, before it is used. Early in sampling, at
t near T, ε is hard to predict and the ε-form of the step divides by √α_t (31x for the
clipped last β of 0.999 in the cosine schedule): without the clip, a small error there
can blow a sample up. ``clip_x0=False`` runs the textbook algorithms exactly; use it
whenever the data are not images in [-1, 1]: 2-D toy points, or the latent codes of
latent diffusion (lesson 07), which clipping would distort.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .noising import _as_timesteps, _check_noise, extract, q_posterior
from .schedules import NoiseSchedule

__all__ = [
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step",
    "dpm_solver_sample",
    "guided_eps",
    "predict_x0",
]

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
    clip_x0: bool = True,
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
        if clip_x0:  # the same step written through x̂_0: μ̃(x̂_0, x_t) of the posterior, eq. (7)
            x0_hat = x0_hat.clamp(-1, 1)
            mean, var = q_posterior(x0_hat, x, t, s)
            if variance == "beta":
                var = extract(s.betas, torch.full_like(tt, t), x.shape, x)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + (var.sqrt() * noise if t > 0 else 0)
        else:
            x = ddpm_step(eps, t, x, s, variance=variance, generator=generator)
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x


def _alpha_bar_at(s: NoiseSchedule, t: int, like: Tensor) -> Tensor:
    """ᾱ_t as a 0-d tensor on like's device, with ᾱ_{-1} = 1 (the clean data)."""
    value = s.alpha_bars[t] if t >= 0 else s.alpha_bars.new_ones(())
    return value.to(like.device, like.dtype)


def ddim_step(
    eps: Tensor,
    t: int,
    t_prev: int,
    x_t: Tensor,
    s: NoiseSchedule,
    eta: float = 0.0,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One DDIM step from step t to step t_prev < t (Song et al. 2021, eq. 12); t_prev = -1 means "to x_0".

    x_{t_prev} = √ᾱ_prev · x̂_0 + √(1 - ᾱ_prev - σ²) · ε + σ z,
    σ = η · √((1-ᾱ_prev)/(1-ᾱ_t)) · √(1 - ᾱ_t/ᾱ_prev)   (eq. 16).
    η = 0 is deterministic; η = 1 over consecutive steps is exactly DDPM's step with β̃.

    Lesson: notebooks/05_sampling.ipynb
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if not -1 <= t_prev < t <= s.T - 1:
        raise ValueError(f"need -1 <= t_prev < t <= {s.T - 1}, got t={t}, t_prev={t_prev}")
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    a_t, a_prev = _alpha_bar_at(s, t, x_t), _alpha_bar_at(s, t_prev, x_t)  # ᾱ_t, ᾱ_prev
    x0_hat = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()  # eq. (9)'s "predicted x_0"
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()  # σ_t(η), eq. (16)
    x_prev = a_prev.sqrt() * x0_hat + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps  # the direction to x_t
    if eta > 0 and t_prev >= 0:
        x_prev = x_prev + sigma * _check_noise(noise, x_t, generator)
    return x_prev


def ddim_timesteps(s: NoiseSchedule, steps: int) -> list[int]:
    """``steps`` steps evenly spaced from T-1 down to 0, both ends included.

    Starting at t = T-1 means starting from pure noise (Lin et al. 2024 show why starting
    lower is a flaw); ending at t = 0 means the last jump to x_0 crosses almost no noise,
    so it does not blur fine detail. With steps = T this is every step.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= s.T:
        raise ValueError(f"steps must be an integer in [1, {s.T}] (the schedule's T), got {steps!r}")
    if steps == 1:
        return [s.T - 1]
    return torch.linspace(s.T - 1, 0, steps, dtype=torch.float64).round().long().tolist()


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    x_T: Tensor,
    s: NoiseSchedule,
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    y: Tensor | None = None,
    guidance: float = 1.0,
    clip_x0: bool = True,
) -> Tensor:
    """DDIM (Song et al. 2021): ``steps`` network calls instead of T; η=0 is deterministic.

    Lesson: notebooks/05_sampling.ipynb
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = ddim_timesteps(s, steps)
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, [*ts[1:], -1], strict=True)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        if clip_x0:  # clip x̂_0, then use the ε that the clipped x̂_0 implies
            x0_hat = x0_hat.clamp(-1, 1)
            a_t = _alpha_bar_at(s, t, x)
            eps = (x - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
        x = ddim_step(eps, t, t_prev, x, s, eta=eta, generator=generator)
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x


@torch.no_grad()
def dpm_solver_sample(
    model: nn.Module,
    x_T: Tensor,
    s: NoiseSchedule,
    steps: int = 20,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    y: Tensor | None = None,
    guidance: float = 1.0,
    clip_x0: bool = True,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver of the diffusion ODE (η = 0)
    or, with η > 0, of the diffusion SDE (η = 1: "SDE-DPM-Solver++(2M)", diffusers' sde-dpmsolver++).

    In λ = log(√ᾱ/√(1-ᾱ)) (half the log-SNR) the ODE has an exact linear part; with the
    data prediction D ≈ x̂_0 the step from t to t_prev, h = λ_prev - λ_t > 0, is

        x_prev = (σ_prev/σ_t) e^{-ηh} · x_t + α_prev (1 - e^{-(1+η)h}) · D + σ_prev √(1 - e^{-2ηh}) · z,

    α = √ᾱ, σ = √(1-ᾱ), z ~ N(0, I), with D = (1 + 1/2r) x̂_0(t) - (1/2r) x̂_0(t_last),
    r = h_last / h (Algorithm 2), and D = x̂_0(t) on the first step and on the step into
    t = 0 (as diffusers' "lower order final"). The last call, at t = 0, returns its x̂_0.
    η = 0 is deterministic (``generator`` unused). η = 1 adds, like DDPM, fresh noise at
    every step, which corrects the errors of an imperfect network instead of carrying them
    along: with the shipped MNIST model it samples markedly better at 20 steps
    (benchmarks/sampling_quality.py).

    Lesson: notebooks/05_sampling.ipynb
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = ddim_timesteps(s, steps)
    x, x0_last, h_last = x_T, None, None
    for i, (t, t_prev) in enumerate(zip(ts, [*ts[1:], -1], strict=True)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        if clip_x0:  # the solver works on x̂_0 directly, so clipping it is all it takes
            x0_hat = x0_hat.clamp(-1, 1)
        if t_prev < 0:
            x = x0_hat  # the final step lands on the data prediction
        else:
            a_t, a_prev = _alpha_bar_at(s, t, x), _alpha_bar_at(s, t_prev, x)
            alpha_prev, sigma_t, sigma_prev = a_prev.sqrt(), (1 - a_t).sqrt(), (1 - a_prev).sqrt()
            lam_t = 0.5 * (a_t.log() - (1 - a_t).log())  # λ_t
            lam_prev = 0.5 * (a_prev.log() - (1 - a_prev).log())
            h = lam_prev - lam_t
            if x0_last is None or t_prev == 0:
                # first order (DPM-Solver++(1), which is DDIM) at the start, and into t = 0: that
                # last interval is long in λ, where extrapolating x̂_0 would overshoot
                d = x0_hat
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_last
            x = (sigma_prev / sigma_t) * torch.exp(-eta * h) * x - alpha_prev * torch.expm1(-(1 + eta) * h) * d
            if eta > 0:
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = x + sigma_prev * (-torch.expm1(-2 * eta * h)).sqrt() * z
            x0_last, h_last = x0_hat, h
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x
