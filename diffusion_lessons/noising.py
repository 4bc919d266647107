"""The forward process: corrupting data with Gaussian noise, one small step at a time.

Lesson: notebooks/01_markov_noising.ipynb

Formulas follow Ho et al. 2020 (DDPM), with 0-based steps: ``t = 0`` is the paper's
step 1, and "x at index -1" is the clean data x_0.

- one Markov step, eq. (2):   q(x_t | x_{t-1}) = N(√(1-β_t) x_{t-1}, β_t I)
- the closed form, eq. (4):   q(x_t | x_0)     = N(√ᾱ_t x_0, (1-ᾱ_t) I)
- the posterior, eq. (6-7):   q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I)

Every function takes ``t`` as a Python int (the same step for the whole batch) or a
LongTensor of shape (B,) (one step per example; dim 0 of x is always the batch).
Device and dtype follow x, which must be floating point: an integer image (uint8 in
[0, 255]) would round every coefficient √ᾱ_t < 1 down to 0 and lose the signal, so it is
refused; scale it to [-1, 1] first (``diffusion_lessons.data.to_unit_range``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .schedules import NoiseSchedule

__all__ = ["as_timesteps", "check_noise", "extract", "markov_chain", "markov_step", "q_posterior", "q_sample"]


def as_timesteps(t: int | Tensor, x: Tensor, s: NoiseSchedule, name: str = "t") -> Tensor:
    """Validate ``t`` against x and the schedule; return a LongTensor (B,) on x's device.

    Every function of the forward and reverse process takes its ``t`` through this.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if not isinstance(s, NoiseSchedule):
        raise ValueError(f"s must be a NoiseSchedule, got {type(s).__name__}")
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension (dim 0), got a 0-d tensor")
    batch = x.shape[0]
    if isinstance(t, bool):
        raise ValueError(f"{name} must be an int or a LongTensor of shape ({batch},), got a bool")
    if isinstance(t, int):
        lo = hi = t
        t = torch.full((batch,), t, dtype=torch.long, device=x.device)
    elif isinstance(t, Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer steps, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"{name} must be an int or have shape ({batch},) to match x's batch, "
                f"got shape {tuple(t.shape)}"
            )
        t = t.to(x.device, torch.long)
        if batch == 0 or t.device.type != "cpu":
            # The range check reads values back to the host: on a GPU that would stall every
            # training step, so it is done for CPU tensors only (a GPU index error still stops it).
            return t
        lo, hi = int(t.min()), int(t.max())
    else:
        raise ValueError(f"{name} must be an int or a LongTensor, got {type(t).__name__}")
    if lo < 0 or hi > s.T - 1:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} must be in [0, {s.T - 1}], got {bad}")
    return t


def _check_data(x: Tensor, name: str) -> None:
    """Refuse a data tensor that is not real floating point (after ``as_timesteps`` checked it is a tensor).

    An integer x would make ``extract`` cast √ᾱ_t to that integer dtype, i.e. to 0: the signal
    would silently vanish. bool and complex x are as meaningless here.
    """
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (e.g. images scaled to [-1, 1] with "
            f"diffusion_lessons.data.to_unit_range), got dtype {x.dtype}"
        )


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def check_noise(noise: Tensor | None, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """The given noise, checked against x (shape, dtype, device), or fresh N(0, I) noise drawn like x.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    _check_generator(generator)
    if noise is None:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if not isinstance(noise, Tensor):
        raise ValueError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    if noise.shape != x.shape:
        raise ValueError(f"noise must have the same shape as x {tuple(x.shape)}, got {tuple(noise.shape)}")
    if noise.dtype != x.dtype:  # else the result would silently take the other dtype (or lose the noise)
        raise ValueError(f"noise must have the same dtype as x ({x.dtype}), got {noise.dtype}")
    if noise.device != x.device:
        raise ValueError(f"noise must be on the same device as x ({x.device}), got {noise.device}")
    return noise


def extract(coeffs: Tensor, t: Tensor, shape: torch.Size | tuple[int, ...], like: Tensor) -> Tensor:
    """``coeffs[t]`` reshaped to (B, 1, 1, ...) so it broadcasts over an x of ``shape``,
    on the device and in the dtype of ``like``.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    out = coeffs.to(like.device)[t].to(like.dtype)  # (B,)
    return out.reshape(shape[0], *([1] * (len(shape) - 1)))  # (B, 1, ..., 1)


def markov_step(
    x_prev: Tensor,
    t: int | Tensor,
    s: NoiseSchedule,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One step of the chain: x_t = √(1-β_t) · x_{t-1} + √β_t · ε   (DDPM eq. 2).

    x_prev (B, ...) is the state before step ``t``; noise ε ~ N(0, I) has x_prev's
    shape (drawn from ``generator`` when not given). Returns x_t, shaped like x_prev.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    t = as_timesteps(t, x_prev, s)
    _check_data(x_prev, "x_prev")
    noise = check_noise(noise, x_prev, generator)
    beta_t = extract(s.betas, t, x_prev.shape, x_prev)  # β_t, (B, 1, ...)
    return (1.0 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


def q_sample(
    x0: Tensor,
    t: int | Tensor,
    s: NoiseSchedule,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Jump straight to step t: x_t = √ᾱ_t · x_0 + √(1-ᾱ_t) · ε   (DDPM eq. 4).

    x0 (B, ...) is clean data; noise ε ~ N(0, I) has x0's shape. Returns x_t.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    t = as_timesteps(t, x0, s)
    _check_data(x0, "x0")
    noise = check_noise(noise, x0, generator)
    alpha_bar_t = extract(s.alpha_bars, t, x0.shape, x0)  # ᾱ_t, (B, 1, ...)
    return alpha_bar_t.sqrt() * x0 + (1.0 - alpha_bar_t).sqrt() * noise


def q_posterior(x0: Tensor, x_t: Tensor, t: int | Tensor, s: NoiseSchedule) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0)   (DDPM eq. 6-7).

    μ̃_t = √ᾱ_{t-1} β_t / (1-ᾱ_t) · x_0 + √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t) · x_t
    β̃_t = (1-ᾱ_{t-1}) / (1-ᾱ_t) · β_t
    with ᾱ_{t-1} = 1 at t = 0 (the step before the first is the clean data).
    Returns (mean shaped like x_t, variance shaped (B, 1, ...)). The coefficients are
    precomputed in float64 by ``NoiseSchedule``.

    Lesson: notebooks/05_sampling.ipynb
    """
    for name, value in (("x0", x0), ("x_t", x_t)):
        if not isinstance(value, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}")
    t = as_timesteps(t, x_t, s)
    _check_data(x0, "x0")
    _check_data(x_t, "x_t")
    if x0.device != x_t.device:
        raise ValueError(f"x0 must be on the same device as x_t ({x_t.device}), got {x0.device}")
    coef_x0 = extract(s.posterior_coef_x0, t, x_t.shape, x_t)  # √ᾱ_{t-1} β_t / (1-ᾱ_t)
    coef_xt = extract(s.posterior_coef_xt, t, x_t.shape, x_t)  # √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t)
    mean = coef_x0 * x0 + coef_xt * x_t  # μ̃_t, eq. (7)
    variance = extract(s.posterior_variance, t, x_t.shape, x_t)  # β̃_t, eq. (7)
    return mean, variance


def markov_chain(
    x0: Tensor,
    s: NoiseSchedule,
    t_end: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Run ``markov_step`` for t = 0, 1, ..., t_end and return x at index ``t_end``.

    ``t_end`` defaults to the last step, T-1. ``callback({"t": t, "x_t": x_t})`` is
    called after every step, e.g. to record a trajectory for a plot.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    t_end = s.T - 1 if t_end is None else t_end
    as_timesteps(t_end, x0, s, name="t_end")
    if isinstance(t_end, Tensor) and t_end.ndim != 0:  # one chain, one end: every example stops at the same step
        raise ValueError(f"t_end must be an int (one step for the whole batch), got shape {tuple(t_end.shape)}")
    _check_data(x0, "x0")
    _check_generator(generator)
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be a function of one dict, or None, got {type(callback).__name__}")
    x = x0
    for t in range(t_end + 1):
        x = markov_step(x, t, s, generator=generator)
        if callback is not None:
            callback({"t": t, "x_t": x})
    return x
