"""Every exercise checker against answers written the many ways learners write them.

Lessons: notebooks/01_markov_noising.ipynb to notebooks/06_guidance.ipynb (the exercises' checkers,
``diffusion_lessons.exercises``).

Three tables, each row one test that runs its checker on seeds 0..99 and reports every seed
that went wrong, with the checker's message:

1. ``FORMS``: right answers in unusual but reasonable forms (einops, einsum, float64, numpy in
   between or returned, ``.half()`` / ``.double()`` results, ``** 0.5``, ``float(...)``, the
   posterior mean through x̂_0, ...). Each must pass on every seed.
2. ``WRONG``: wrong answers that an audit found passing or badly diagnosed: in-place changes to
   the inputs, noise drawn inside instead of the given one, a global schedule instead of the
   argument, a NaN result, a loss that cannot be back-propagated or draws t from the wrong range,
   the paper's 1-based ``if t > 1`` guard, DDPM's ``half - 1`` embedding. Each must fail on every
   seed with the named ``mistake``.
3. Errors in the learner's own code: an exception is reported with the learner's line (never
   one of exercises.py), and an endless loop ends with a message that it took too long.

The functions are written the way a learner writes them, independently of the checkers' own
lists of mistakes. ``t`` is a 0-based Python int (a LongTensor (B,) for the embedding).
"""

from __future__ import annotations

import inspect
import math
import pathlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

import diffusion_lessons as dl
from diffusion_lessons import exercises as ex
from diffusion_lessons.sampling import ddpm_step
from diffusion_lessons.schedules import NoiseSchedule
from diffusion_lessons.training import diffusion_loss

SEEDS = range(100)  # every row runs on seeds 0..99: a form that passes "usually" is still a bug report


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Learners draw t and ε from the global RNG: seed it, so a failing row fails the same way again."""
    torch.manual_seed(0)
    np.random.seed(0)


def _per_sample(t: int, x: Tensor) -> Tensor:
    """The int step t repeated once per example: a LongTensor (B,), as a learner makes it for batching."""
    return torch.full((x.shape[0],), t)


def _column(values: Tensor, x: Tensor) -> Tensor:
    """(B,) values viewed as (B, 1, ..., 1), so they broadcast over an x of any number of dims."""
    return values.view(-1, *[1] * (x.ndim - 1))


# =============================================================== markov_step (lesson 01)
# x_t = √(1-β_t)·x_{t-1} + √β_t·ε
def markov_item_math_sqrt(x_prev, t, s, noise):
    """The lesson's own solution: β_t as a Python float, square roots from math."""
    beta_t = s.betas[t].item()
    return math.sqrt(1 - beta_t) * x_prev + math.sqrt(beta_t) * noise


def markov_float64(x_prev, t, s, noise):
    beta_t = s.betas[t].double()
    return (1 - beta_t).sqrt() * x_prev.double() + beta_t.sqrt() * noise.double()  # a float64 result


def markov_power_half(x_prev, t, s, noise):
    return (1 - s.betas[t]) ** 0.5 * x_prev + s.betas[t] ** 0.5 * noise


def markov_from_alphas(x_prev, t, s, noise):
    return s.alphas[t].sqrt() * x_prev + (1 - s.alphas[t]).sqrt() * noise  # α_t = 1 - β_t


def markov_float_of_tensor(x_prev, t, s, noise):
    beta_t = float(s.betas[t])
    return (1 - beta_t) ** 0.5 * x_prev + beta_t**0.5 * noise


def markov_numpy(x_prev, t, s, noise):
    """Through numpy, and a numpy array returned."""
    beta_t = s.betas.numpy()[t]
    return np.sqrt(1 - beta_t) * x_prev.numpy() + np.sqrt(beta_t) * noise.numpy()


def markov_half_result(x_prev, t, s, noise):
    return (torch.sqrt(1 - s.betas[t]) * x_prev + torch.sqrt(s.betas[t]) * noise).half()


def markov_double_result(x_prev, t, s, noise):
    return (torch.sqrt(1 - s.betas[t]) * x_prev + torch.sqrt(s.betas[t]) * noise).double()


def markov_einsum_per_sample(x_prev, t, s, noise):
    beta_t = s.betas[_per_sample(t, x_prev)]  # (B,)
    signal = torch.einsum("b,b...->b...", (1 - beta_t).sqrt(), x_prev)
    return signal + torch.einsum("b,b...->b...", beta_t.sqrt(), noise)


def markov_view_broadcast(x_prev, t, s, noise):
    beta_t = s.betas[_per_sample(t, x_prev)].view(-1, *[1] * (x_prev.ndim - 1))  # (B, 1, ..., 1)
    return torch.sqrt(1 - beta_t) * x_prev + torch.sqrt(beta_t) * noise


def markov_einops_flatten(x_prev, t, s, noise):
    x = rearrange(x_prev, "b ... -> b (...)")  # (B, D)
    e = rearrange(noise, "b ... -> b (...)")  # (B, D)
    beta_t = repeat(s.betas[t], " -> b 1", b=x.shape[0])  # (B, 1)
    return ((1 - beta_t).sqrt() * x + beta_t.sqrt() * e).reshape(x_prev.shape)


def markov_torch_where(x_prev, t, s, noise):
    """A learner guarding against β = 0 with torch.where (never taken here: the result is the same)."""
    beta_t = s.betas[t]
    noise_part = torch.where(beta_t > 0, beta_t.sqrt() * noise, torch.zeros_like(noise))
    return (1 - beta_t).sqrt() * x_prev + noise_part


# ================================================================== q_sample (lesson 01)
# x_t = √ᾱ_t·x_0 + √(1-ᾱ_t)·ε
def q_item_math_sqrt(x0, t, s, noise):
    """The lesson's own solution."""
    alpha_bar_t = s.alpha_bars[t].item()
    return math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * noise


def q_float64(x0, t, s, noise):
    a = s.alpha_bars.double()[t]
    return a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double()


def q_power_half(x0, t, s, noise):
    return s.alpha_bars[t] ** 0.5 * x0 + (1 - s.alpha_bars[t]) ** 0.5 * noise


def q_float_of_tensor(x0, t, s, noise):
    a = float(s.alpha_bars[t])
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise


def q_numpy(x0, t, s, noise):
    a = s.alpha_bars[t].numpy()  # a 0-d array
    return np.sqrt(a) * x0.numpy() + np.sqrt(1 - a) * noise.numpy()


def q_half_result(x0, t, s, noise):
    a = s.alpha_bars[t]
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).half()


def q_float32_then_double(x0, t, s, noise):
    """Computed in float32, handed back as float64: float32's precision in a float64 tensor."""
    a = s.alpha_bars[t]
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).double()


def q_einsum_per_sample(x0, t, s, noise):
    a = s.alpha_bars[_per_sample(t, x0)]  # (B,)
    return torch.einsum("b,b...->b...", a.sqrt(), x0) + torch.einsum("b,b...->b...", (1 - a).sqrt(), noise)


def q_view_broadcast(x0, t, s, noise):
    a = s.alpha_bars[torch.full((x0.shape[0],), t)].view(-1, *[1] * (x0.ndim - 1))  # (B, 1, ..., 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def q_einops(x0, t, s, noise):
    a = repeat(s.alpha_bars[t], " -> b 1", b=x0.shape[0])  # (B, 1)
    flat = a.sqrt() * rearrange(x0, "b ... -> b (...)") + (1 - a).sqrt() * rearrange(noise, "b ... -> b (...)")
    return flat.view_as(x0)


def q_cumprod_by_hand(x0, t, s, noise):
    """ᾱ_t = α_0·α_1·…·α_t from the betas, not read from the table."""
    alpha_bar_t = torch.prod(1 - s.betas[: t + 1])
    return torch.sqrt(alpha_bar_t) * x0 + torch.sqrt(1 - alpha_bar_t) * noise


def q_package_with_tensor_t(x0, t, s, noise):
    return dl.q_sample(x0, _per_sample(t, x0), s, noise)


# ============================================================ cosine schedule (lesson 02)
# f(u) = cos²(π/2 · (u + s)/(1 + s)), ᾱ = f/f(0), β_t = 1 - ᾱ_t/ᾱ_{t-1}, clipped at 0.999
def cosine_numpy_minimum(T, s=0.008):
    u = np.linspace(0, 1, T + 1)
    f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999)  # a numpy array


def cosine_numpy_clip_from_numpy(T, s=0.008):
    t = np.arange(T + 1)
    f = np.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.from_numpy(np.clip(1 - f[1:] / f[:-1], 0, 0.999))


def cosine_float32_arange_clip(T, s=0.008):
    t = torch.arange(T + 1, dtype=torch.float32)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return torch.clip(1 - alpha_bar[1:] / alpha_bar[:-1], max=0.999)


def cosine_float32_then_double(T, s=0.008):
    t = torch.arange(T + 1, dtype=torch.float32)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], 0.0, 0.999).double()


def cosine_list_comprehension(T, s=0.008):
    """Plain Python floats, then torch.tensor (float32)."""
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    return torch.tensor([min(1 - f[t] / f[t - 1], 0.999) for t in range(1, T + 1)])


def cosine_torch_where(T, s=0.008):
    u = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - f[1:] / f[:-1]
    return torch.where(betas > 0.999, torch.tensor(0.999, dtype=torch.float64), betas)


def cosine_torch_minimum(T, s=0.008):
    u = torch.linspace(0, 1, T + 1)  # float32
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return torch.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], torch.tensor(0.999))


def cosine_scalar_f0(T, s=0.008):
    """f(0) from math, as a Python float."""
    u = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def cosine_log_space(T, s=0.008):
    """Ratios as differences of logs: 1 - exp(log ᾱ_t - log ᾱ_{t-1})."""
    u = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    log_f = 2 * torch.log(torch.cos((u + s) / (1 + s) * math.pi / 2))
    return (1 - torch.exp(torch.diff(log_f))).clamp(max=0.999)


# ======================================================= sinusoidal embedding (lesson 03)
# sin(t·ω_i) for i < dim/2, then cos(t·ω_i), ω_i = 10000^(-i/(dim/2))
def emb_power_float32(t, dim):
    half = dim // 2
    freqs = 10000 ** (-torch.arange(half, dtype=torch.float32) / half)
    angles = t[:, None].float() * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def emb_transformer_form(t, dim):
    """Vaswani et al.: 1 / 10000^(2i/d)."""
    i = torch.arange(dim // 2)
    freqs = 1 / 10000 ** (2 * i / dim)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def emb_float64(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    angles = t.double()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def emb_outer(t, dim):
    freqs = torch.exp(-math.log(10000) * torch.arange(0, dim, 2) / dim)  # 2i/d with i = 0, 1, ...
    angles = torch.outer(t.float(), freqs)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def emb_einsum(t, dim):
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half) / half)
    angles = torch.einsum("b,f->bf", t.float(), freqs)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def emb_einops(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    angles = rearrange(t.float(), "b -> b 1") * repeat(freqs, "f -> b f", b=len(t))  # (B, dim/2)
    return rearrange(torch.stack([angles.sin(), angles.cos()]), "k b f -> b (k f)")  # sines, then cosines


def emb_numpy(t, dim):
    half = dim // 2
    freqs = np.exp(-np.log(10000) * np.arange(half) / half)
    angles = np.outer(t.numpy(), freqs)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # a float64 numpy array


def emb_half_result(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    angles = t[:, None] * freqs[None, :]  # long × float32 promotes to float32
    return torch.cat([angles.sin(), angles.cos()], dim=1).half()


def emb_float_half(t, dim):
    """half = dim / 2 as a float."""
    half = dim / 2
    freqs = 10000.0 ** (-torch.arange(half) / half)
    return torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)


# ============================================================= diffusion loss (lesson 04)
def loss_squared_mean(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    pred = model(dl.q_sample(x0, t, s, noise), t)
    return ((pred - noise) ** 2).mean()


def loss_randint_high_only(model, x0, s):
    t = torch.randint(s.T, (len(x0),))  # randint(high, size)
    noise = torch.randn(x0.shape)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


def loss_randint_like(model, x0, s):
    t = torch.randint_like(torch.zeros(x0.shape[0], dtype=torch.long), s.T)
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


def loss_view(model, x0, s):
    B = x0.shape[0]
    t = torch.randint(0, s.T, size=(B,), device=x0.device)
    noise = torch.randn_like(x0)
    a = s.alpha_bars[t].view(B, 1, 1, 1)  # (B, 1, 1, 1) for image batches
    return F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)


def loss_none_indexing(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    a = s.alpha_bars[t][:, None, None, None]
    x_t = torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise
    return torch.nn.MSELoss()(model(x_t, t), noise)


def loss_einops(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    a = rearrange(s.alpha_bars[t], "b -> b 1 1 1")
    return F.mse_loss(model(a**0.5 * x0 + (1 - a) ** 0.5 * noise, t=t), noise)


def loss_gather_reshape(model, x0, s):
    """ᾱ by gather and reshaped to x0's number of dims, the package's way."""
    t = torch.randint(0, len(s.betas), (x0.shape[0],))
    noise = torch.randn_like(x0)
    a = s.alpha_bars.gather(0, t).reshape(-1, *[1] * (x0.ndim - 1))
    return (model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t) - noise).pow(2).mean()


def loss_package_diffusion_loss(model, x0, s):
    return diffusion_loss(model, x0, s)


def loss_float64_inside(model, x0, s):
    x0 = x0.double()
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)  # float64
    a = s.alpha_bars.double()[t].reshape(-1, *[1] * (x0.ndim - 1))
    return F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)


# ================================================================== ddpm_step (lesson 05)
# x_{t-1} = 1/√α_t · (x_t - β_t/√(1-ᾱ_t)·ε̂) + σ_t·z,  σ_t² = β̃_t,  no noise at t = 0
def _mu(eps, t, x_t, s):
    return (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()


def ddpm_posterior_mean_via_x0(eps, t, x_t, s, noise):
    """DDPM eq. (7): μ̃ = coef_x0·x̂_0 + coef_xt·x_t, with x̂_0 = (x_t - √(1-ᾱ_t)·ε̂)/√ᾱ_t by hand."""
    x0_hat = (x_t - (1 - s.alpha_bars[t]).sqrt() * eps) / s.alpha_bars[t].sqrt()
    mean = s.posterior_coef_x0[t] * x0_hat + s.posterior_coef_xt[t] * x_t
    if t > 0:
        mean = mean + s.posterior_variance[t].sqrt() * noise
    return mean


def ddpm_no_guard(eps, t, x_t, s, noise):
    """No `if`: β̃_0 = 0 exactly, so the last step adds nothing."""
    return _mu(eps, t, x_t, s) + s.posterior_variance[t].sqrt() * noise


def ddpm_guard_not_equal(eps, t, x_t, s, noise):
    mean = _mu(eps, t, x_t, s)
    return mean + s.posterior_variance[t].sqrt() * noise if t != 0 else mean


def ddpm_guard_truthy(eps, t, x_t, s, noise):
    z = noise if t else torch.zeros_like(noise)
    return _mu(eps, t, x_t, s) + s.posterior_variance[t] ** 0.5 * z


def ddpm_float64(eps, t, x_t, s, noise):
    beta, alpha, alpha_bar = (v.double()[t] for v in (s.betas, s.alphas, s.alpha_bars))
    mean = (x_t.double() - beta / (1 - alpha_bar).sqrt() * eps.double()) / alpha.sqrt()
    sigma = s.posterior_variance.double()[t].sqrt() if t > 0 else 0.0
    return mean + sigma * noise.double()


def ddpm_item_math_sqrt(eps, t, x_t, s, noise):
    beta, alpha_bar = s.betas[t].item(), s.alpha_bars[t].item()
    sigma = math.sqrt(s.posterior_variance[t].item()) if t > 0 else 0.0
    return (x_t - beta / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(1 - beta) + sigma * noise


def ddpm_numpy(eps, t, x_t, s, noise):
    beta, alpha, alpha_bar, var = (v.numpy()[t] for v in (s.betas, s.alphas, s.alpha_bars, s.posterior_variance))
    mean = (x_t.numpy() - beta / np.sqrt(1 - alpha_bar) * eps.numpy()) / np.sqrt(alpha)
    return mean + (np.sqrt(var) * noise.numpy() if t > 0 else 0)  # a numpy array


def ddpm_half_result(eps, t, x_t, s, noise):
    return ddpm_no_guard(eps, t, x_t, s, noise).half()


def ddpm_torch_where(eps, t, x_t, s, noise):
    sigma = torch.where(torch.tensor(t > 0), s.posterior_variance[t].sqrt(), torch.tensor(0.0))
    return _mu(eps, t, x_t, s) + sigma * noise


def ddpm_beta_tilde_from_prev(eps, t, x_t, s, noise):
    """β̃_t by hand from ᾱ_{t-1} (``alpha_bars_prev``, 1 at t = 0): zero at the last step, no `if`."""
    beta_tilde = (1 - s.alpha_bars_prev[t]) / (1 - s.alpha_bars[t]) * s.betas[t]
    return _mu(eps, t, x_t, s) + torch.sqrt(beta_tilde) * noise


def ddpm_view_broadcast(eps, t, x_t, s, noise):
    tt = _per_sample(t, x_t)
    beta, alpha, alpha_bar = (_column(v[tt], x_t) for v in (s.betas, s.alphas, s.alpha_bars))
    mean = (x_t - beta / (1 - alpha_bar).sqrt() * eps) / alpha.sqrt()
    return mean + (t > 0) * _column(s.posterior_variance[tt], x_t).sqrt() * noise


def ddpm_einsum(eps, t, x_t, s, noise):
    tt = _per_sample(t, x_t)
    scale = 1 / s.alphas[tt].sqrt()  # (B,)
    mean = torch.einsum("b,b...->b...", scale, x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps)
    return mean + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)


# ================================================================= guided_eps (lesson 06)
# ε̃ = ε_uncond + w·(ε_cond − ε_uncond)
def guided_mixture(eps_cond, eps_uncond, w):
    return (1 - w) * eps_uncond + w * eps_cond


def guided_lerp(eps_cond, eps_uncond, w):
    return torch.lerp(eps_uncond, eps_cond, w)


def guided_numpy(eps_cond, eps_uncond, w):
    c, u = eps_cond.numpy(), eps_uncond.numpy()
    return u + w * (c - u)  # a numpy array


def guided_float64(eps_cond, eps_uncond, w):
    return eps_uncond.double() + w * (eps_cond.double() - eps_uncond.double())


def guided_half_result(eps_cond, eps_uncond, w):
    return (eps_uncond + w * (eps_cond - eps_uncond)).half()


def guided_torch_add_alpha(eps_cond, eps_uncond, w):
    return torch.add(eps_uncond, eps_cond - eps_uncond, alpha=w)


def guided_einsum_weights(eps_cond, eps_uncond, w):
    weights = torch.tensor([1 - w, w])  # on (ε_uncond, ε_cond)
    return torch.einsum("k,k...->...", weights, torch.stack([eps_uncond, eps_cond]))


@dataclass(frozen=True)
class Row:
    """One answer for one checker; ``mistakes`` is empty for a right answer."""

    check: Callable[..., ex.CheckResult]
    fn: Callable[..., object]
    mistakes: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.fn.__name__


FORMS = [
    Row(ex.check_markov_step, fn) for fn in (
        markov_item_math_sqrt, markov_float64, markov_power_half, markov_from_alphas, markov_float_of_tensor,
        markov_numpy, markov_half_result, markov_double_result, markov_einsum_per_sample, markov_view_broadcast,
        markov_einops_flatten, markov_torch_where)
] + [
    Row(ex.check_q_sample, fn) for fn in (
        q_item_math_sqrt, q_float64, q_power_half, q_float_of_tensor, q_numpy, q_half_result, q_float32_then_double,
        q_einsum_per_sample, q_view_broadcast, q_einops, q_cumprod_by_hand, q_package_with_tensor_t)
] + [
    Row(ex.check_cosine_schedule, fn) for fn in (
        cosine_numpy_minimum, cosine_numpy_clip_from_numpy, cosine_float32_arange_clip, cosine_float32_then_double,
        cosine_list_comprehension, cosine_torch_where, cosine_torch_minimum, cosine_scalar_f0, cosine_log_space)
] + [
    Row(ex.check_sinusoidal_embedding, fn) for fn in (
        emb_power_float32, emb_transformer_form, emb_float64, emb_outer, emb_einsum, emb_einops, emb_numpy,
        emb_half_result, emb_float_half)
] + [
    Row(ex.check_diffusion_loss, fn) for fn in (
        loss_squared_mean, loss_randint_high_only, loss_randint_like, loss_view, loss_none_indexing, loss_einops,
        loss_gather_reshape, loss_package_diffusion_loss, loss_float64_inside)
] + [
    Row(ex.check_ddpm_step, fn) for fn in (
        ddpm_posterior_mean_via_x0, ddpm_no_guard, ddpm_guard_not_equal, ddpm_guard_truthy, ddpm_float64,
        ddpm_item_math_sqrt, ddpm_numpy, ddpm_half_result, ddpm_torch_where, ddpm_beta_tilde_from_prev,
        ddpm_view_broadcast, ddpm_einsum)
] + [
    Row(ex.check_guided_eps, fn) for fn in (
        guided_mixture, guided_lerp, guided_numpy, guided_float64, guided_half_result, guided_torch_add_alpha,
        guided_einsum_weights)
]


def _run(row: Row) -> list[str]:
    """What went wrong on seeds 0..99: one line per seed, with the checker's status, mistake and message."""
    wrong = []
    for seed in SEEDS:
        try:
            result = row.check(row.fn, seed=seed)
        except Exception as e:  # the checker itself crashed: report it like any other wrong seed
            wrong.append(f"seed {seed}: the checker raised {type(e).__name__}: {e}")
            continue
        expected = "passed" if not row.mistakes else f"failed with mistake in {sorted(row.mistakes)}"
        if (result.passed and not row.mistakes) or (not result.passed and result.mistake in row.mistakes):
            continue
        wrong.append(f"seed {seed}: expected {expected}, got {result.status!r} (mistake={result.mistake!r}): "
                     f"{result.message}")
    return wrong


def _report(row: Row, wrong: list[str]) -> str:
    return (f"{row.check.__name__}({row.id}) went wrong on {len(wrong)} of {len(SEEDS)} seeds; the first:\n"
            + "\n".join(wrong[:5]))


@pytest.mark.parametrize("row", FORMS, ids=lambda r: r.id)
def test_a_right_answer_in_any_reasonable_form_passes(row):
    wrong = _run(row)
    assert not wrong, _report(row, wrong)


def test_each_checker_has_its_forms():
    """At least 8 forms per checker (guided_eps, a one-liner, has fewer ways to be written)."""
    counts = {check.__name__: sum(r.check is check for r in FORMS) for check in {r.check for r in FORMS}}
    assert len(counts) == 7, counts
    assert all(n >= (5 if name == "check_guided_eps" else 8) for name, n in counts.items()), counts


# ========================================================================= wrong answers
# A schedule defined outside the function, as the lessons define `s` / `sched` in a cell above.
GLOBAL_LINEAR = NoiseSchedule.linear()
GLOBAL_COSINE = NoiseSchedule.cosine()


# ---- the function changes one of its inputs in place: right value, but the caller's tensor is gone
def markov_scales_x_prev_in_place(x_prev, t, s, noise):
    beta_t = s.betas[t].item()
    return x_prev.mul_(math.sqrt(1 - beta_t)).add_(math.sqrt(beta_t) * noise)


def markov_scales_noise_in_place(x_prev, t, s, noise):
    noise *= s.betas[t].sqrt()
    return s.alphas[t].sqrt() * x_prev + noise


def q_scales_noise_in_place(x0, t, s, noise):
    noise.mul_((1 - s.alpha_bars[t]).sqrt())
    return s.alpha_bars[t].sqrt() * x0 + noise


def q_scales_x0_in_place(x0, t, s, noise):
    x0 *= s.alpha_bars[t].sqrt()
    return x0 + (1 - s.alpha_bars[t]).sqrt() * noise


def ddpm_updates_x_t_in_place(eps, t, x_t, s, noise):
    x_t -= s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps
    x_t /= s.alphas[t].sqrt()
    if t > 0:
        x_t += s.posterior_variance[t].sqrt() * noise
    return x_t


def guided_subtracts_in_place(eps_cond, eps_uncond, w):
    return eps_cond.sub_(eps_uncond).mul_(w).add_(eps_uncond)


# ---- the given noise is ignored and fresh noise drawn: two calls on the same inputs differ
def markov_draws_own_noise(x_prev, t, s, noise):
    return s.alphas[t].sqrt() * x_prev + s.betas[t].sqrt() * torch.randn_like(x_prev)


def q_draws_own_noise(x0, t, s, noise):
    return s.alpha_bars[t].sqrt() * x0 + (1 - s.alpha_bars[t]).sqrt() * torch.randn_like(x0)


def ddpm_draws_own_noise(eps, t, x_t, s, noise):
    z = torch.randn_like(x_t) if t > 0 else 0
    return _mu(eps, t, x_t, s) + s.posterior_variance[t].sqrt() * z


# ---- a global schedule instead of the argument `s`
def markov_uses_global_schedule(x_prev, t, s, noise):
    return GLOBAL_LINEAR.alphas[t].sqrt() * x_prev + GLOBAL_LINEAR.betas[t].sqrt() * noise


def q_uses_global_schedule(x0, t, s, noise):
    a = GLOBAL_COSINE.alpha_bars[t]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddpm_uses_global_schedule(eps, t, x_t, s, noise):
    return _mu(eps, t, x_t, GLOBAL_LINEAR) + (GLOBAL_LINEAR.posterior_variance[t].sqrt() * noise if t > 0 else 0)


def loss_uses_global_schedule(model, x0, s):
    t = torch.randint(0, GLOBAL_COSINE.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, GLOBAL_COSINE, noise), t), noise)


# ---- NaN in the result: a square root of a negative number (1 - ᾱ written ᾱ - 1)
def markov_sqrt_of_negative(x_prev, t, s, noise):
    return (1 - s.betas[t]).sqrt() * x_prev + (s.betas[t] - 1).sqrt() * noise


def q_sqrt_of_negative(x0, t, s, noise):
    return s.alpha_bars[t].sqrt() * x0 + (s.alpha_bars[t] - 1).sqrt() * noise


def ddpm_sqrt_of_negative(eps, t, x_t, s, noise):
    mean = (x_t - s.betas[t] / (s.alpha_bars[t] - 1).sqrt() * eps) / s.alphas[t].sqrt()
    return mean + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)


def loss_sqrt_of_negative(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    a = s.alpha_bars[t].reshape(-1, 1, 1, 1)
    return F.mse_loss(model(a.sqrt() * x0 + (a - 1).sqrt() * noise, t), noise)


# ---- the loss cannot be back-propagated
def _right_loss(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


def loss_returns_item(model, x0, s):
    return _right_loss(model, x0, s).item()


def loss_returns_float(model, x0, s):
    return float(_right_loss(model, x0, s))


def loss_under_no_grad(model, x0, s):
    with torch.no_grad():
        return _right_loss(model, x0, s)


def loss_detached(model, x0, s):
    return _right_loss(model, x0, s).detach()


# ---- t from the wrong range
def loss_t_below_batch_size(model, x0, s):
    B = x0.shape[0]
    t = torch.randint(0, B, (B,))  # the batch size where the number of steps belongs
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


def loss_t_one_based(model, x0, s):
    """The paper's t ~ Uniform({1, ..., T}), indexing ᾱ at t - 1: the model is told steps 1..T."""
    t = torch.randint(1, s.T + 1, (x0.shape[0],))
    noise = torch.randn_like(x0)
    a = s.alpha_bars[t - 1].reshape(-1, *[1] * (x0.ndim - 1))
    return F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)


def loss_t_hard_coded_1000(model, x0, s):
    t = torch.randint(0, 1000, (x0.shape[0],))  # the lesson's T, hard-coded
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


# ---- the target is a standard normal, but not the noise that made x_t
def loss_noise_drawn_twice(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    x_t = dl.q_sample(x0, t, s, torch.randn_like(x0))
    return F.mse_loss(model(x_t, t), torch.randn_like(x0))


# ---- the paper's 1-based guard on this course's 0-based t: no noise at t = 1 either
def ddpm_one_based_guard(eps, t, x_t, s, noise):
    mean = _mu(eps, t, x_t, s)
    if t > 1:
        return mean + s.posterior_variance[t].sqrt() * noise
    return mean


# ---- the original DDPM code's embedding: the exponent divided by half - 1
def emb_half_minus_one(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / (half - 1))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _wrong(check: Callable[..., ex.CheckResult], fn: Callable[..., object], *mistakes: str) -> Row:
    return Row(check, fn, frozenset(mistakes))


WRONG = [
    _wrong(ex.check_markov_step, markov_scales_x_prev_in_place, "changed_input"),
    _wrong(ex.check_markov_step, markov_scales_noise_in_place, "changed_input"),
    _wrong(ex.check_q_sample, q_scales_noise_in_place, "changed_input"),
    _wrong(ex.check_q_sample, q_scales_x0_in_place, "changed_input"),
    _wrong(ex.check_ddpm_step, ddpm_updates_x_t_in_place, "changed_input"),
    _wrong(ex.check_guided_eps, guided_subtracts_in_place, "changed_input"),
    _wrong(ex.check_markov_step, markov_draws_own_noise, "own_noise"),
    _wrong(ex.check_q_sample, q_draws_own_noise, "own_noise"),
    _wrong(ex.check_ddpm_step, ddpm_draws_own_noise, "own_noise"),
    _wrong(ex.check_markov_step, markov_uses_global_schedule, "ignores_schedule"),
    _wrong(ex.check_q_sample, q_uses_global_schedule, "ignores_schedule"),
    _wrong(ex.check_ddpm_step, ddpm_uses_global_schedule, "ignores_schedule"),
    # A global T = 1000 schedule in the loss is also a wrong t range whenever the checker's s.T is not 1000:
    # both names are a right diagnosis, and which symptom the checker meets first is its own choice.
    _wrong(ex.check_diffusion_loss, loss_uses_global_schedule, "ignores_schedule", "t_range"),
    _wrong(ex.check_markov_step, markov_sqrt_of_negative, "not_finite"),
    _wrong(ex.check_q_sample, q_sqrt_of_negative, "not_finite"),
    _wrong(ex.check_ddpm_step, ddpm_sqrt_of_negative, "not_finite"),
    _wrong(ex.check_diffusion_loss, loss_sqrt_of_negative, "not_finite"),
    _wrong(ex.check_diffusion_loss, loss_returns_item, "not_differentiable"),
    _wrong(ex.check_diffusion_loss, loss_returns_float, "not_differentiable"),
    _wrong(ex.check_diffusion_loss, loss_under_no_grad, "not_differentiable"),
    _wrong(ex.check_diffusion_loss, loss_detached, "not_differentiable"),
    _wrong(ex.check_diffusion_loss, loss_t_below_batch_size, "t_range"),
    _wrong(ex.check_diffusion_loss, loss_t_one_based, "t_range"),
    # A hard-coded 1000 is a wrong range for any s.T other than 1000 ("t_range"), and it is the number of
    # steps of a schedule other than the argument ("ignores_schedule"): both are a right diagnosis.
    _wrong(ex.check_diffusion_loss, loss_t_hard_coded_1000, "t_range", "ignores_schedule"),
    _wrong(ex.check_diffusion_loss, loss_noise_drawn_twice, "target_noise_mismatch"),
    _wrong(ex.check_ddpm_step, ddpm_one_based_guard, "one_based_guard"),
    _wrong(ex.check_sinusoidal_embedding, emb_half_minus_one, "half_minus_one"),
]


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # float(loss), on purpose
@pytest.mark.parametrize("row", WRONG, ids=lambda r: r.id)
def test_a_wrong_answer_fails_with_its_mistake_named(row):
    wrong = _run(row)
    assert not wrong, _report(row, wrong)


def test_every_new_mistake_has_a_row():
    """The diagnoses this file was written for, each exercised by at least one wrong answer."""
    named = set().union(*(r.mistakes for r in WRONG))
    assert {"changed_input", "own_noise", "ignores_schedule", "not_finite", "not_differentiable", "t_range",
            "target_noise_mismatch", "one_based_guard", "half_minus_one"} <= named


def test_the_wrong_answers_really_are_wrong():
    """Each wrong row differs from the package's reference on the checkers' kind of inputs (a bad row is no test)."""
    g = torch.Generator().manual_seed(0)
    s = NoiseSchedule(0.05 + 0.3 * torch.rand(20, generator=g, dtype=torch.float64), name="random")
    x, e, z = (torch.randn(8, 1, 4, 4, generator=g) for _ in range(3))
    for t in (1, 5):
        for fn in (markov_scales_x_prev_in_place, markov_scales_noise_in_place):
            x_in, e_in = x.clone(), e.clone()
            fn(x_in, t, s, e_in)
            assert not (torch.equal(x_in, x) and torch.equal(e_in, e)), fn.__name__
        for fn in (markov_uses_global_schedule, markov_sqrt_of_negative):
            assert not torch.allclose(fn(x, t, s, e), dl.markov_step(x, t, s, e)), fn.__name__
        for fn in (q_uses_global_schedule, q_sqrt_of_negative):
            assert not torch.allclose(fn(x, t, s, e), dl.q_sample(x, t, s, e)), fn.__name__
        for fn in (ddpm_uses_global_schedule, ddpm_sqrt_of_negative):
            assert not torch.allclose(fn(e, t, x, s, z), ddpm_step(e, t, x, s, noise=z)), fn.__name__
    assert not torch.allclose(ddpm_one_based_guard(e, 1, x, s, z), ddpm_step(e, 1, x, s, noise=z))
    steps = torch.arange(10)
    assert not torch.allclose(emb_half_minus_one(steps, 16), emb_float64(steps, 16).float())
    for fn in (markov_draws_own_noise, q_draws_own_noise):
        assert not torch.equal(fn(x, 3, s, e), fn(x, 3, s, e)), fn.__name__
    assert not torch.equal(ddpm_draws_own_noise(e, 3, x, s, z), ddpm_draws_own_noise(e, 3, x, s, z))
    model = _Scale()
    for fn in (loss_returns_item, loss_under_no_grad, loss_detached):
        loss = torch.as_tensor(fn(model, x, NoiseSchedule.linear()))
        assert not loss.requires_grad, fn.__name__
    assert _right_loss(model, x, NoiseSchedule.linear()).requires_grad


class _Scale(torch.nn.Module):
    """The smallest ε_θ(x_t, t) with a parameter, so that a right loss can be back-propagated."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.weight * x


# ======================================================== errors in the learner's own code
def markov_raises_in_package(x_prev, t, s, noise):
    return dl.markov_step(x_prev, t + 10_000, s, noise)  # the learner's failing line


def q_raises_in_package(x0, t, s, noise):
    return dl.q_sample(x0, -10_000 - t, s, noise)  # the learner's failing line


def cosine_raises_in_package(T, s=0.008):
    return dl.schedules.cosine_betas(T, s=-1.0 - s)  # the learner's failing line


def emb_raises_in_numpy(t, dim):
    return np.stack([np.sin(t.numpy()), np.cos(t.numpy()[:1])], axis=1)  # the learner's failing line


def loss_raises_in_package(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    return dl.q_sample(x0, t + 10 * s.T, s, torch.randn_like(x0))  # the learner's failing line


def ddpm_raises_in_package(eps, t, x_t, s, noise):
    return ddpm_step(eps, t, x_t, s, noise=noise, variance="beta_tilda")  # the learner's failing line


def guided_raises_in_numpy(eps_cond, eps_uncond, w):
    return np.stack([eps_cond.numpy(), eps_uncond.numpy()[:1]]).sum(0)  # the learner's failing line


RAISES = [
    (ex.check_markov_step, markov_raises_in_package),
    (ex.check_q_sample, q_raises_in_package),
    (ex.check_cosine_schedule, cosine_raises_in_package),
    (ex.check_sinusoidal_embedding, emb_raises_in_numpy),
    (ex.check_diffusion_loss, loss_raises_in_package),
    (ex.check_ddpm_step, ddpm_raises_in_package),
    (ex.check_guided_eps, guided_raises_in_numpy),
]
EXERCISES_PY = pathlib.Path(inspect.getfile(ex))


def _code_lines_of_exercises_py() -> list[str]:
    """exercises.py's lines of code (no comments, docstrings or string pieces), long enough not to match by chance."""
    lines = (line.strip() for line in EXERCISES_PY.read_text().splitlines())
    return [line for line in lines if len(line) >= 16 and not line.startswith(("#", '"', "f\"", "'"))]


@pytest.mark.parametrize("check, fn", RAISES, ids=lambda v: getattr(v, "__name__", ""))
def test_an_exception_is_reported_with_the_learners_own_line(check, fn):
    """The error is raised deep inside a library (the package, numpy); the message points at the learner's call."""
    failing_line = next(line.split("#")[0].strip() for line in inspect.getsource(fn).splitlines()
                        if "the learner's failing line" in line)
    result = check(fn, seed=0)
    assert result.status == "error", result
    assert failing_line in result.message, f"the learner's line `{failing_line}` is not in: {result.message}"
    leaked = [line for line in _code_lines_of_exercises_py() if line in result.message]
    assert not leaked, f"lines of exercises.py in the message: {leaked}"
    assert EXERCISES_PY.name not in result.message, result.message


_SAFETY_S = 30.0  # the "endless" loops below give up after this long, so that no checker can hang the test suite


def q_sample_never_returns(x0, t, s, noise):
    """`while t > 0:` with t never decremented. It gives up (returning None) after _SAFETY_S, so that a checker
    without a time limit fails this test instead of hanging it; it sleeps a millisecond a turn, so that a loop
    a checker abandons in a thread does not hold one of the machine's few cores."""
    give_up = time.monotonic() + _SAFETY_S
    while t > 0 and time.monotonic() < give_up:
        time.sleep(0.001)
    return None


def loss_never_returns(model, x0, s):
    """The same endless loop in the loss exercise, whose checker has its own code path."""
    return q_sample_never_returns(x0, 1, s, x0)


def _time_limit(check: Callable[..., ex.CheckResult]) -> tuple[str, str] | None:
    """How the checkers' time limit is set: ("keyword", name) of the checker, ("constant", name) of
    exercises.py, or None when the checkers have no time limit."""
    params = inspect.signature(check).parameters
    for name in params:
        if re.fullmatch(r"(time_?limit|timeout|max_seconds)(_s)?", name):
            return "keyword", name
    for name, value in vars(ex).items():
        if name.isupper() and re.search(r"TIME_?LIMIT|TIMEOUT|SECONDS", name) and isinstance(value, int | float):
            return "constant", name
    return None


@pytest.mark.parametrize("check, fn, right", [(ex.check_q_sample, q_sample_never_returns, q_item_math_sqrt),
                                              (ex.check_diffusion_loss, loss_never_returns, loss_squared_mean)],
                         ids=["q_sample", "diffusion_loss"])
def test_an_endless_loop_is_stopped_and_named(check, fn, right, monkeypatch):
    knob = _time_limit(check)
    if knob is None:
        pytest.skip("exercises.py has no time limit yet (no checker keyword such as `timeout=` and no module "
                    "constant such as TIME_LIMIT_S): an endless loop in a learner's function hangs the lesson")
    limit = 2.0  # seconds: far above a right answer's few milliseconds, far below _SAFETY_S
    kind, name = knob
    kwargs = {name: limit} if kind == "keyword" else {}
    if kind == "constant":
        monkeypatch.setattr(ex, name, limit)
    assert check(right, seed=0, **kwargs).passed, "the small time limit must not fail a right answer"
    start = time.monotonic()
    result = check(fn, seed=0, **kwargs)
    elapsed = time.monotonic() - start
    # "error" or "failed" as the brief for this file asked; "timeout" is the status exercises.py gives it now
    assert result.status in ("error", "failed", "timeout"), result
    assert re.search(r"too long|took longer|time limit|timed? ?out", result.message, re.IGNORECASE), result.message
    assert elapsed < limit + 10, f"the checker took {elapsed:.1f} s with a {limit} s limit"
