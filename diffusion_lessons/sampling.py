"""The reverse process: from pure noise x_T back to data, one denoising step at a time.

Lesson: notebooks/05_sampling.ipynb

Notation (0-based t, as everywhere in the package). One code name per symbol; where two
papers use one letter for two things, the table says which is meant:

================================  ==========  ==========================================================
code                              symbol      meaning
================================  ==========  ==========================================================
``eps``                           ε_θ         the network's noise estimate at (x_t, t)
``x0_hat``                        x̂_0         (x_t - √(1-ᾱ_t) ε) / √ᾱ_t, the clean image it implies
``beta_t``                        β_t         variance of the noise the forward step t adds
``alpha_t``                       α_t         1 - β_t (DDPM's α_t; never DPM-Solver's, see below)
``alpha_bar_t``                   ᾱ_t         ∏ α up to t; x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε
``t_prev``, ``alpha_bar_prev``    ᾱ_prev      the step a sampler jumps to (t_prev < t) and its ᾱ; ᾱ = 1
                                              at ``t_prev = -1``, the clean data
``sqrt_alpha_bar_prev``           √ᾱ_prev     scale of the data in x_prev (Lu et al.'s α, diffusers' alpha_t)
``sqrt_one_minus_alpha_bar_t``    √(1-ᾱ_t)    scale of the noise in x_t (Lu et al.'s σ_t, diffusers' sigma_t)
``sigma_t``                       σ_t         std of the fresh noise z a stochastic step adds: DDPM's
                                              √β̃_t or √β_t (Alg. 2), DDIM's σ_t(η) (eq. 16)
``lambda_t``                      λ_t         log(√ᾱ_t / √(1-ᾱ_t)) = ½ log SNR(t), DPM-Solver's half log-SNR
``h``                             h           λ_prev - λ_t > 0, the length of a step in λ
``r``                             r           h_last / h, the last step's length over this one's
``D``                             D           the data prediction an update moves towards: x̂_0, or the
                                              second-order mix of the last two x̂_0 (DPM-Solver++ Alg. 2)
================================  ==========  ==========================================================

Every sampler has the same shape, ``sampler(model, x_T, s, ..., generator, callback,
y, guidance, clip_x0)``, and calls ``callback({"i", "t", "x_t", "x0_hat"})`` after each step.
Its arguments are checked before the first network call, and the network's output after
each call, so that a wrong input stops with a message naming it instead of broadcasting.

``clip_x0=True`` (the default, as in Ho et al.'s code) clips each predicted x̂_0 to
[-1, 1], the range of all the course's data, before it is used. Early in sampling, at
t near T, ε is hard to predict and the ε-form of the step divides by √α_t (31x for the
clipped last β of 0.999 in the cosine schedule): without the clip, a small error there
can blow a sample up. ``clip_x0=False`` runs the textbook algorithms exactly; use it
whenever the data are not images in [-1, 1]: 2-D toy points, or the latent codes of
latent diffusion (lesson 11), which clipping would distort.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from numbers import Integral, Real

import torch
from torch import Tensor, nn

from .noising import as_timesteps, check_noise, extract, q_posterior
from .schedules import NoiseSchedule

__all__ = [
    "EpsDenoiser",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step",
    "dpm_solver_sample",
    "edm_sample",
    "guided_eps",
    "predict_x0",
]

VARIANCES = ("beta_tilde", "beta")


# ----------------------------------------------------------------- checks at the public boundary
def _check_tensor(x: object, name: str) -> None:
    """x must be a floating tensor with a batch dimension (dim 0)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (e.g. torch.randn(...)), got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a batch dimension (dim 0), got a 0-d tensor")


def _check_eps(eps: object, x_t: Tensor) -> None:
    if not isinstance(eps, Tensor):
        raise ValueError(f"eps must be a torch.Tensor, got {type(eps).__name__}")
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")


def _check_real(value: object, name: str, minimum: float | None = None) -> None:
    """value must be a finite real number (a Python or NumPy scalar, or a 0-d tensor), >= minimum if given."""
    if isinstance(value, Tensor):
        real = value.ndim == 0 and not value.is_complex() and value.dtype != torch.bool
    else:
        real = isinstance(value, Real) and not isinstance(value, bool)
    if not real:
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {float(value)}")
    if minimum is not None and float(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {float(value)}")


def _check_schedule(s: object) -> None:
    if not isinstance(s, NoiseSchedule):
        raise ValueError(f"s must be a NoiseSchedule (e.g. NoiseSchedule.cosine(T=1000)), got {type(s).__name__}")


def _check_generator(generator: object, x: Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
                         "to seed, pass torch.Generator().manual_seed(seed)")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator must be on x's device ({x.device.type}), got a {generator.device.type} generator")


def _check_labels(y: object, x: Tensor, model: object, check_values: bool) -> None:
    """y: None, or integer labels (B,) on x's device, each in [0, null_label] when the model has one.

    The values are read back to the host only when ``check_values`` (once per sampler call;
    every step for CPU labels, where it costs nothing)."""
    if y is None:
        return
    if not isinstance(y, Tensor):
        raise ValueError(f"y must be a LongTensor of class labels, shape ({x.shape[0]},), got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    length = getattr(model, "caption_length", None)  # a text model takes token ids (B, length)
    if length and tuple(y.shape) != (x.shape[0], length):
        raise ValueError(f"y must have shape ({x.shape[0]}, {length}), the token ids of one caption per sample "
                         f"(model.tokenize(captions)), got {tuple(y.shape)}")
    if not length and y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), one label per sample of x, got {tuple(y.shape)}")
    if y.device != x.device:
        raise ValueError(f"y must be on x's device ({x.device}), got {y.device}")
    null = getattr(model, "null_label", None)
    if length:
        return  # the model checks its token ids itself
    if check_values and isinstance(null, int) and y.numel() and (int(y.min()) < 0 or int(y.max()) > null):
        bad = y[(y < 0) | (y > null)][0].item()
        raise ValueError(f"y must hold labels in [0, {null - 1}] (or {null}, the model's null_label), got {bad}")


def _check_sampler_common(model: object, x: object, name: str, generator: object, callback: object, y: object,
                          guidance: object) -> None:
    """The arguments every sampler shares (diffusion's and flow matching's), checked once before the first call;
    ``x`` is the starting noise, called ``name``."""
    if not callable(model):
        raise ValueError(f"model must be callable as model(x_t, t) or model(x_t, t, y), got {type(model).__name__}")
    _check_tensor(x, name)
    if x.numel() and not bool(torch.isfinite(x).all()):  # one read-back per call, not per step
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    _check_generator(generator, x)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable (it gets a dict after each step) or None, "
                         f"got {type(callback).__name__}")
    _check_real(guidance, "guidance")
    _check_labels(y, x, model, check_values=True)


def _check_sampler(model: object, x_T: object, s: object, generator: object, callback: object, y: object,
                   guidance: object, clip_x0: object) -> None:
    """The arguments every diffusion sampler shares, checked once before the first network call."""
    _check_schedule(s)
    _check_sampler_common(model, x_T, "x_T", generator, callback, y, guidance)
    if not isinstance(clip_x0, bool):
        raise ValueError(f"clip_x0 must be True or False, got {clip_x0!r}")


def _eps_from_model(model: nn.Module, x_t: Tensor, *args: Tensor | int, note: str = "") -> Tensor:
    """One network call, its output checked: ε must have x_t's shape, or it would broadcast silently."""
    eps = model(x_t, *args)
    if not isinstance(eps, Tensor) or eps.shape != x_t.shape:
        got = f"shape {tuple(eps.shape)}" if isinstance(eps, Tensor) else f"a {type(eps).__name__}"
        raise ValueError(f"the model's output must have x_t's shape {tuple(x_t.shape)}{note}: one ε per entry of "
                         f"x_t, got {got}")
    return eps


# ----------------------------------------------------------------------------- DDPM
def predict_x0(eps: Tensor, t: int | Tensor, x_t: Tensor, s: NoiseSchedule) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t: invert the forward jump (DDPM eq. 4) with the noise estimate.

    Lesson: notebooks/04_training.ipynb
    """
    t = as_timesteps(t, x_t, s)
    _check_eps(eps, x_t)
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
    clip_x0: bool = False,
) -> Tensor:
    """One step of Ho et al. Algorithm 2: x_{t-1} from x_t and the noise estimate ε.

    x_{t-1} = 1/√α_t · (x_t - β_t/√(1-ᾱ_t) · ε) + σ_t z,   z ~ N(0, I), and z = 0 at t = 0,
    with σ_t² = β̃_t (``variance="beta_tilde"``, the posterior's) or β_t (``"beta"``).
    ``clip_x0=True`` writes the same mean through x̂_0, clipped to [-1, 1]: the posterior
    mean μ̃_t(x_t, x̂_0) of eq. (7), as ``ddpm_sample`` does by default.

    Lesson: notebooks/05_sampling.ipynb
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if not isinstance(clip_x0, bool):
        raise ValueError(f"clip_x0 must be True or False, got {clip_x0!r}")
    _check_tensor(x_t, "x_t")
    _check_eps(eps, x_t)
    t = as_timesteps(t, x_t, s)
    if noise is None:
        _check_generator(generator, x_t)
    noise = check_noise(noise, x_t, generator)  # z
    if clip_x0:  # μ̃_t(x_t, x̂_0), eq. (7), with x̂_0 clipped to the data's range
        mean, _ = q_posterior(predict_x0(eps, t, x_t, s).clamp(-1, 1), x_t, t, s)
    else:  # μ_θ(x_t, t), eq. (11)
        beta_t = extract(s.betas, t, x_t.shape, x_t)  # β_t
        alpha_t = extract(s.alphas, t, x_t.shape, x_t)  # α_t
        alpha_bar_t = extract(s.alpha_bars, t, x_t.shape, x_t)  # ᾱ_t
        mean = (x_t - beta_t / (1 - alpha_bar_t).sqrt() * eps) / alpha_t.sqrt()
    sigma_t = extract(s.posterior_variance if variance == "beta_tilde" else s.betas, t, x_t.shape, x_t).sqrt()
    not_last = (t > 0).to(x_t.dtype).reshape(sigma_t.shape)  # no noise is added at the last step
    return mean + not_last * sigma_t * noise


def guided_eps(model: nn.Module, x_t: Tensor, t: Tensor, y: Tensor | None, guidance: float) -> Tensor:
    """ε_θ(x_t, t, y), with classifier-free guidance when ``guidance != 1`` (Ho & Salimans 2022):

    ε̃ = ε_θ(x_t, t, ∅) + w · (ε_θ(x_t, t, y) - ε_θ(x_t, t, ∅)), with ∅ the model's "no label" class.
    w = 1 is the conditional model, w = 0 the unconditional one, w > 1 pushes towards y.
    x_t (B, ...), t (B,) steps, y (B,) labels or None; returns ε shaped like x_t.

    Lesson: notebooks/06_guidance.ipynb
    """
    if not callable(model):
        raise ValueError(f"model must be callable as model(x_t, t) or model(x_t, t, y), got {type(model).__name__}")
    _check_tensor(x_t, "x_t")
    if isinstance(t, Tensor) and t.ndim != 0 and t.shape != (x_t.shape[0],):
        raise ValueError(f"t must have shape ({x_t.shape[0]},), one step per sample of x_t, got {tuple(t.shape)}")
    _check_real(guidance, "guidance")
    null = getattr(model, "null_label", None)
    if y is None:
        if guidance != 1.0:
            raise ValueError(f"guidance must be 1.0 without labels y, got {guidance}")
        return _eps_from_model(model, x_t, t)
    if null is None:
        raise ValueError("labels y were given but the model is unconditional (it has no null_label)")
    _check_labels(y, x_t, model, check_values=isinstance(y, Tensor) and y.device.type == "cpu")
    if guidance == 1.0:
        return _eps_from_model(model, x_t, t, y)
    if not isinstance(t, Tensor):
        raise ValueError(f"t must be a LongTensor of shape ({x_t.shape[0]},) for guidance, got {type(t).__name__}")
    t = t.expand(x_t.shape[0])  # a 0-d t: the same step for every sample
    both = _eps_from_model(model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]),
                           note=" (x_t twice: with y and with the null label)")
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
    _check_sampler(model, x_T, s, generator, callback, y, guidance, clip_x0)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    x = x_T
    for i, t in enumerate(range(s.T - 1, -1, -1)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        x = ddpm_step(eps, t, x, s, variance=variance, generator=generator, clip_x0=clip_x0)
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x


# ----------------------------------------------------------------------------- DDIM
def _alpha_bar_at(s: NoiseSchedule, t: int, like: Tensor) -> Tensor:
    """ᾱ_t as a 0-d tensor on like's device, with ᾱ_{-1} = 1 (the clean data)."""
    value = s.alpha_bars[t] if t >= 0 else s.alpha_bars.new_ones(())
    return value.to(like.device, like.dtype)


def _as_step(t: object, name: str) -> int:
    """A single step as a Python int (an int, a NumPy integer or a one-element integer tensor)."""
    if isinstance(t, Tensor) and t.numel() == 1 and not (t.is_floating_point() or t.is_complex()) \
            and t.dtype != torch.bool:
        return int(t.item())
    if isinstance(t, bool) or not isinstance(t, Integral):
        got = f"a tensor of shape {tuple(t.shape)}, dtype {t.dtype}" if isinstance(t, Tensor) else repr(t)
        raise ValueError(f"{name} must be a single integer step (the whole batch takes the same step), got {got}")
    return int(t)


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

    x_prev = √ᾱ_prev · x̂_0 + √(1 - ᾱ_prev - σ_t²) · ε + σ_t z,
    σ_t = η · √((1-ᾱ_prev)/(1-ᾱ_t)) · √(1 - ᾱ_t/ᾱ_prev)   (eq. 16).
    η = 0 is deterministic; η = 1 over consecutive steps is exactly DDPM's step with β̃.

    Lesson: notebooks/05_sampling.ipynb
    """
    _check_real(eta, "eta", minimum=0)
    _check_schedule(s)
    t, t_prev = _as_step(t, "t"), _as_step(t_prev, "t_prev")
    if not -1 <= t_prev < t <= s.T - 1:
        raise ValueError(f"need -1 <= t_prev < t <= {s.T - 1}, got t={t}, t_prev={t_prev}")
    _check_tensor(x_t, "x_t")
    _check_eps(eps, x_t)
    if noise is None and eta > 0 and t_prev >= 0:
        _check_generator(generator, x_t)
    alpha_bar_t, alpha_bar_prev = _alpha_bar_at(s, t, x_t), _alpha_bar_at(s, t_prev, x_t)  # ᾱ_t, ᾱ_prev
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps) / alpha_bar_t.sqrt()  # eq. (9)'s "predicted x_0"
    sigma_t = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)).sqrt()  # eq. (16)
    # eq. (12): "predicted x_0", then "the direction pointing to x_t"
    x_prev = alpha_bar_prev.sqrt() * x0_hat + (1 - alpha_bar_prev - sigma_t**2).clamp(min=0).sqrt() * eps
    if eta > 0 and t_prev >= 0:  # then "random noise"
        x_prev = x_prev + sigma_t * check_noise(noise, x_t, generator)
    return x_prev


def ddim_timesteps(s: NoiseSchedule, steps: int) -> list[int]:
    """``steps`` steps evenly spaced from T-1 down to 0, both ends included.

    Starting at t = T-1 means starting from pure noise (Lin et al. 2024 show why starting
    lower is a flaw); ending at t = 0 means the last jump to x_0 crosses almost no noise,
    so it does not blur fine detail. With steps = T this is every step.

    Lesson: notebooks/05_sampling.ipynb
    """
    _check_schedule(s)
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
    _check_sampler(model, x_T, s, generator, callback, y, guidance, clip_x0)
    _check_real(eta, "eta", minimum=0)
    ts = ddim_timesteps(s, steps)
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, [*ts[1:], -1], strict=True)):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        if clip_x0:  # clip x̂_0, then use the ε that the clipped x̂_0 implies
            x0_hat = x0_hat.clamp(-1, 1)
            alpha_bar_t = _alpha_bar_at(s, t, x)
            eps = (x - alpha_bar_t.sqrt() * x0_hat) / (1 - alpha_bar_t).sqrt()
        x = ddim_step(eps, t, t_prev, x, s, eta=eta, generator=generator)
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x


# ------------------------------------------------------------------------ DPM-Solver++
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
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the
    diffusion ODE (η = 0) or, with η > 0, of the diffusion SDE (η = 1: "SDE-DPM-Solver++(2M)",
    k-diffusion's ``sample_dpmpp_2m_sde``, diffusers' ``sde-dpmsolver++``).

    In λ (half the log-SNR) the ODE has an exact linear part, so with the data prediction D
    the step from t to t_prev, h = λ_prev - λ_t > 0, is (in Lu et al.'s symbols α = √ᾱ, σ = √(1-ᾱ))

        x_prev = (σ_prev/σ_t) e^{-ηh} · x_t - α_prev (e^{-(1+η)h} - 1) · D + σ_prev √(1 - e^{-2ηh}) · z,

    z ~ N(0, I); with η = 0 this is the update of Algorithm 2 (first order: DPM-Solver++(1),
    which is DDIM). D = (1 + 1/2r) x̂_0(t) - (1/2r) x̂_0(t_last), r = h_last / h (Algorithm 2),
    and D = x̂_0(t) on the first step and on the step into t = 0 (as diffusers' "lower order
    final"). The last call, at t = 0, returns its x̂_0. η = 0 is deterministic (``generator``
    unused). η = 1 adds, like DDPM, fresh noise at every step, which corrects the errors of an
    imperfect network instead of carrying them along: with the shipped MNIST model it samples
    markedly better at 20 steps (benchmarks/sampling_quality.py).

    Lesson: notebooks/05_sampling.ipynb
    """
    _check_sampler(model, x_T, s, generator, callback, y, guidance, clip_x0)
    _check_real(eta, "eta", minimum=0)
    ts = ddim_timesteps(s, steps)
    x, x0_last, h_last = x_T, None, None
    for i, (t, t_prev) in enumerate(zip(ts, [*ts[1:], -1], strict=True)):
        # 1. the data prediction x_θ(x_t, t) = x̂_0 of Algorithm 2, from the network's ε
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, y, guidance)
        x0_hat = predict_x0(eps, t, x, s)
        if clip_x0:  # the solver works on x̂_0 directly, so clipping it is all it takes
            x0_hat = x0_hat.clamp(-1, 1)
        if t_prev < 0:
            x = x0_hat  # the last call, at t = 0: no update, the data prediction is the sample
        else:
            # 2. the step length in λ = log(√ᾱ/√(1-ᾱ)): h = λ_prev - λ_t
            alpha_bar_t, alpha_bar_prev = _alpha_bar_at(s, t, x), _alpha_bar_at(s, t_prev, x)  # ᾱ_t, ᾱ_prev
            lambda_t = 0.5 * (alpha_bar_t.log() - (1 - alpha_bar_t).log())  # λ_t
            lambda_prev = 0.5 * (alpha_bar_prev.log() - (1 - alpha_bar_prev).log())  # λ_prev
            h = lambda_prev - lambda_t
            # 3. D, Algorithm 2: r = h_last / h, D = (1 + 1/2r) x̂_0(t) - (1/2r) x̂_0(t_last); first order
            #    (DPM-Solver++(1), i.e. DDIM) at the start, and into t = 0: that last interval is long
            #    in λ, where extrapolating x̂_0 would overshoot
            if x0_last is None or t_prev == 0:
                D = x0_hat
            else:
                r = h_last / h
                D = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_last
            # 4. the update: x_prev = (σ_prev/σ_t) e^{-ηh} x_t - α_prev (e^{-(1+η)h} - 1) D [+ σ_prev √(1-e^{-2ηh}) z]
            sqrt_alpha_bar_prev = alpha_bar_prev.sqrt()  # Lu et al.'s α_prev
            sqrt_one_minus_alpha_bar_t = (1 - alpha_bar_t).sqrt()  # Lu et al.'s σ_t
            sqrt_one_minus_alpha_bar_prev = (1 - alpha_bar_prev).sqrt()  # Lu et al.'s σ_prev
            coef_x = (sqrt_one_minus_alpha_bar_prev / sqrt_one_minus_alpha_bar_t) * torch.exp(-eta * h)
            coef_D = sqrt_alpha_bar_prev * torch.expm1(-(1 + eta) * h)  # α_prev (e^{-(1+η)h} - 1) < 0
            x = coef_x * x - coef_D * D
            if eta > 0:  # the SDE's fresh noise, σ_prev √(1 - e^{-2ηh}) z
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = x + sqrt_one_minus_alpha_bar_prev * (-torch.expm1(-2 * eta * h)).sqrt() * z
            x0_last, h_last = x0_hat, h
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x, "x0_hat": x0_hat})
    return x


# ------------------------------------------------------------------------- EDM (lesson 08)
class EpsDenoiser:
    """An ε-model trained on a discrete schedule, seen as EDM's denoiser D(x; σ) (Karras et al. 2022, Table 1):

        D(x; σ) = c_skip x + c_out ε_θ(c_in x, c_noise),  c_skip = 1, c_out = -σ, c_in = 1/√(σ²+1),

    with c_noise the step t whose σ_t is σ: x = x_t/√ᾱ_t, so c_in x = x_t is the input the
    network was trained on, and D = x - σ ε̂ = x̂_0. The network only knows the schedule's T
    levels σ_t: ``round_sigma`` snaps a σ to the nearest one, as EDM does for the discrete
    iDDPM model; with ``round_sigma=False`` t is interpolated in log σ between two steps
    (a fractional t, which the sinusoidal embedding accepts but the network never saw).
    ``clip_x0`` clips D to [-1, 1] like the other samplers. ``calls`` counts denoiser calls.

    Lesson: notebooks/08_continuous_time.ipynb
    """

    def __init__(self, model: nn.Module, s: NoiseSchedule, y: Tensor | None = None, guidance: float = 1.0,
                 clip_x0: bool = False, round_sigma: bool = True):
        from .continuous import schedule_sigmas

        if not callable(model):
            raise ValueError(f"model must be callable as model(x_t, t) or model(x_t, t, y), "
                             f"got {type(model).__name__}")
        _check_schedule(s)
        _check_real(guidance, "guidance")
        for flag, name in ((clip_x0, "clip_x0"), (round_sigma, "round_sigma")):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.model, self.s, self.y, self.guidance = model, s, y, float(guidance)
        self.clip_x0, self.rounding = clip_x0, round_sigma
        self.sigmas = schedule_sigmas(s)  # (T,) σ_t, increasing, float64
        self.log_sigmas = self.sigmas.log().tolist()
        self.calls = 0

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def round_sigma(self, sigma: float) -> float:
        """The trained σ_t nearest to σ (EDM's ``round_sigma``); σ itself when ``round_sigma=False``."""
        if not self.rounding:
            return float(min(max(sigma, self.sigma_min), self.sigma_max))
        return float(self.sigmas[int((self.sigmas - sigma).abs().argmin())])

    def t_of(self, sigma: float) -> float | int:
        """c_noise: the step t with σ_t = σ (rounded to the nearest step, or interpolated in log σ)."""
        if self.rounding:
            return int((self.sigmas - sigma).abs().argmin())
        log_sigma = math.log(min(max(sigma, self.sigma_min), self.sigma_max))
        i = min(max(bisect.bisect_left(self.log_sigmas, log_sigma), 1), self.s.T - 1)  # log σ_{i-1} < log σ <= log σ_i
        lo, hi = self.log_sigmas[i - 1], self.log_sigmas[i]
        return i - 1 + (log_sigma - lo) / (hi - lo)

    def __call__(self, x: Tensor, sigma: float) -> Tensor:
        t = self.t_of(sigma)
        if self.rounding:
            sigma = float(self.sigmas[t])
        x_t = x / math.sqrt(1 + sigma**2)  # c_in x = √ᾱ x: the chain's variable
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long if self.rounding else x.dtype)
        eps = guided_eps(self.model, x_t, tt, self.y, self.guidance)
        self.calls += 1
        denoised = x - sigma * eps  # c_skip x + c_out ε̂
        return denoised.clamp(-1, 1) if self.clip_x0 else denoised


@torch.no_grad()
def edm_sample(
    model: nn.Module,
    x_T: Tensor,
    s: NoiseSchedule,
    steps: int = 18,
    rho: float = 7.0,
    churn: float = 0.0,
    method: str = "heun",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    y: Tensor | None = None,
    guidance: float = 1.0,
    clip_x0: bool = True,
    round_sigma: bool = True,
) -> Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 1, or 2 with ``churn > 0``) for an ε-model trained on ``s``.

    1. the ``steps`` levels ``karras_sigmas(steps, sigma_min, sigma_max, rho)``, each rounded to the
       nearest σ_t the network was trained on (``EpsDenoiser``; a level that rounds onto the one
       before is dropped: a zero-length step would cost network calls for nothing), then 0;
    2. x = x_T · √(1 + σ_max²): x_T ~ N(0, I) is the chain's variable at σ_max, as for the other samplers;
    3. Heun steps (``method="heun"``, 2·steps - 1 network calls) or Euler steps (``"euler"``: DDIM
       with η = 0 at these steps, ``steps`` calls) on dx/dσ = (x - D(x; σ))/σ, down to σ = 0.

    Defaults: ``sigma_min`` the schedule's smallest σ (step 0), ``sigma_max`` 80 as in EDM (or the
    schedule's largest σ if smaller). Above 80 the cosine schedule's last, clipped step jumps from
    σ = 641 to 20291, where x_t is noise either way: steps spent there are wasted.
    ``round_sigma=False`` keeps the Karras levels as they are and gives the network fractional
    steps t(σ) instead (``EpsDenoiser``). ``callback({"i", "t", "sigma", "x_t", "x0_hat"})`` after
    each step, x_t in the chain's scale.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    from .continuous import _real, edm_solve, karras_sigmas

    _check_sampler(model, x_T, s, generator, callback, y, guidance, clip_x0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    denoiser = EpsDenoiser(model, s, y=y, guidance=guidance, clip_x0=clip_x0, round_sigma=round_sigma)
    low = denoiser.sigma_min if sigma_min is None else _real(sigma_min, "sigma_min", 0.0, low_open=True)
    high = min(80.0, denoiser.sigma_max) if sigma_max is None else _real(sigma_max, "sigma_max", 0.0, low_open=True)
    levels = [denoiser.round_sigma(v) for v in karras_sigmas(steps, low, high, rho)[:-1].tolist()]  # checks them
    levels = [v for i, v in enumerate(levels) if i == 0 or v != levels[i - 1]] + [0.0]
    x = x_T * math.sqrt(1 + levels[0] ** 2)  # x = x_t/√ᾱ at σ_max

    def report(info: dict) -> None:
        x_t = info["x"] / math.sqrt(1 + info["sigma_next"] ** 2)
        callback({"i": info["i"], "t": denoiser.t_of(info["sigma_hat"]), "sigma": info["sigma_hat"], "x_t": x_t,
                  "x0_hat": info["denoised"]})

    return edm_solve(denoiser, x, torch.tensor(levels, dtype=torch.float64), method=method, churn=churn,
                     round_sigma=denoiser.round_sigma, generator=generator,
                     callback=None if callback is None else report)
