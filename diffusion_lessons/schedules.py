"""Noise schedules: how much noise the forward process adds at each step.

Lesson: notebooks/02_noise_schedules.ipynb

Notation (0-based: index ``t`` here is the paper's step ``t + 1``):

=================  ==========  ===========================================
code               paper       meaning
=================  ==========  ===========================================
``betas[t]``       β_t         variance of the noise added at step t
``alphas[t]``      α_t         1 - β_t, the share of variance kept
``alpha_bars[t]``  ᾱ_t         ∏_{s<=t} α_s, signal variance left after t
``snr[t]``         SNR(t)      ᾱ_t / (1 - ᾱ_t), signal-to-noise ratio
``alpha_bars_prev``  ᾱ_{t-1}   ᾱ one step earlier; 1 before the first step
``posterior_variance``  β̃_t    (1-ᾱ_{t-1}) / (1-ᾱ_t) · β_t, DDPM eq. (7)
``posterior_coef_x0``   √ᾱ_{t-1} β_t / (1-ᾱ_t), μ̃_t's weight on x_0, eq. (7)
``posterior_coef_xt``   √α_t (1-ᾱ_{t-1}) / (1-ᾱ_t), μ̃_t's weight on x_t, eq. (7)
=================  ==========  ===========================================

Each schedule is a pure function returning the betas; ``NoiseSchedule`` derives the
rest once, so every lesson and sampler reads the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "SCHEDULES",
    "NoiseSchedule",
    "betas_from_alpha_bar",
    "cosine_alpha_bar",
    "cosine_betas",
    "linear_betas",
    "sigmoid_alpha_bar",
    "sigmoid_betas",
]


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"T must be a positive integer (the number of steps), got {T!r}")


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_t rising linearly from ``beta_start`` to ``beta_end`` (Ho et al. 2020, Sec. 4).

    Returns a float64 tensor of shape (T,).

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    _check_T(T)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def betas_from_alpha_bar(
    alpha_bar: Callable[[Tensor], Tensor], T: int, max_beta: float = 0.999
) -> Tensor:
    """Turn a continuous ᾱ(u), u in [0, 1], into T betas (Nichol & Dhariwal 2021, eq. 17).

    β_t = 1 - ᾱ(t/T) / ᾱ((t-1)/T), clipped at ``max_beta`` so the last step,
    where ᾱ reaches 0, does not divide the signal by zero.

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    _check_T(T)
    u = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)  # (T+1,) from u=0 to u=1
    a = alpha_bar(u)
    betas = 1.0 - a[1:] / a[:-1]  # (T,)
    return betas.clamp(min=1e-12, max=max_beta)


def cosine_alpha_bar(u: Tensor, s: float = 0.008) -> Tensor:
    """ᾱ(u) = f(u) / f(0) with f(u) = cos²(π/2 · (u + s) / (1 + s))  (Nichol & Dhariwal eq. 17).

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    f_u = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f_0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f_u / f_0


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule: ᾱ falls like cos², keeping signal longer than linear betas.

    ``s`` is a small offset so that β_1 is not vanishingly small. float64, shape (T,).

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    return betas_from_alpha_bar(lambda u: cosine_alpha_bar(u, s), T, max_beta)


def sigmoid_alpha_bar(u: Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    """ᾱ(u) from a sigmoid between ``start`` and ``end``, rescaled to 1 at u=0 and 0 at u=1.

    Jabri et al. 2022 (RIN), Chen 2023 "On the importance of noise scheduling".

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)


def sigmoid_betas(
    T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> Tensor:
    """The sigmoid schedule: flat at both ends, steep in the middle. float64, shape (T,).

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    if not start < end:
        raise ValueError(f"start must be smaller than end, got start={start}, end={end}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return betas_from_alpha_bar(lambda u: sigmoid_alpha_bar(u, start, end, tau), T, max_beta)


SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
}


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """β_1..β_T and everything derived from them, as 1-D tensors of length T.

    Index 0 is the paper's step 1. Tensors are stored in the default float dtype on
    the CPU; functions that use them move the entries they need to their inputs'
    device and dtype.

    Lesson: notebooks/02_noise_schedules.ipynb
    """

    betas: Tensor  # β_t, shape (T,), each in (0, 1)
    name: str = "custom"  # which schedule made these betas, for plots and printing
    alphas: Tensor = field(init=False, repr=False)  # α_t = 1 - β_t
    alpha_bars: Tensor = field(init=False, repr=False)  # ᾱ_t = ∏_{s<=t} α_s
    snr: Tensor = field(init=False, repr=False)  # ᾱ_t / (1 - ᾱ_t)
    alpha_bars_prev: Tensor = field(init=False, repr=False)  # ᾱ_{t-1}, with ᾱ_{-1} = 1 (clean data)
    posterior_variance: Tensor = field(init=False, repr=False)  # β̃_t of q(x_{t-1} | x_t, x_0)
    posterior_coef_x0: Tensor = field(init=False, repr=False)  # weight of x_0 in μ̃_t
    posterior_coef_xt: Tensor = field(init=False, repr=False)  # weight of x_t in μ̃_t

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas)
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not betas.is_floating_point():
            raise ValueError(f"betas must be floating point, got {betas.dtype}")
        betas64 = betas.detach().to("cpu", torch.float64)
        if not ((betas64 > 0) & (betas64 < 1)).all():
            bad = betas64[(betas64 <= 0) | (betas64 >= 1) | betas64.isnan()]
            raise ValueError(f"betas must all be in (0, 1), got values such as {bad[0].item():.4g}")
        # Everything derived in float64 (ᾱ is a product of T terms; 1-ᾱ near ᾱ=1 needs the
        # precision), then stored in the default dtype.
        alpha_bars = torch.cumprod(1.0 - betas64, dim=0)
        alpha_bars_prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        derived = {
            "betas": betas64,
            "alphas": 1.0 - betas64,
            "alpha_bars": alpha_bars,
            "snr": alpha_bars / (1.0 - alpha_bars),
            "alpha_bars_prev": alpha_bars_prev,
            "posterior_variance": (1.0 - alpha_bars_prev) / (1.0 - alpha_bars) * betas64,
            "posterior_coef_x0": alpha_bars_prev.sqrt() * betas64 / (1.0 - alpha_bars),
            "posterior_coef_xt": (1.0 - betas64).sqrt() * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value.to(torch.get_default_dtype()))

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with every tensor on ``device`` (e.g. once, before a GPU training loop,
        so no step copies the tables from the host)."""
        moved = object.__new__(NoiseSchedule)
        for f in self.__dataclass_fields__:
            value = getattr(self, f)
            object.__setattr__(moved, f, value.to(device) if isinstance(value, Tensor) else value)
        return moved

    @property
    def device(self) -> torch.device:
        return self.betas.device

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.shape[0]

    @property
    def log_snr(self) -> Tensor:
        """log(ᾱ_t / (1 - ᾱ_t)), the natural axis to compare schedules on."""
        return self.snr.log()

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule({self.name}, T={self.T}, beta_1={self.betas[0].item():.3g}, "
            f"beta_T={self.betas[-1].item():.3g}, alpha_bar_T={self.alpha_bars[-1].item():.3g})"
        )

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """Ho et al. 2020: β rises linearly from 1e-4 to 0.02 over T=1000 steps."""
        return cls(linear_betas(T, beta_start, beta_end), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal 2021: ᾱ follows cos², betas clipped at 0.999."""
        return cls(cosine_betas(T, s, max_beta), name="cosine")

    @classmethod
    def sigmoid(
        cls, T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
    ) -> NoiseSchedule:
        """Jabri et al. 2022: ᾱ follows a (rescaled) sigmoid; betas clipped at 0.999."""
        return cls(sigmoid_betas(T, start, end, tau, max_beta), name="sigmoid")

    @classmethod
    def from_name(cls, name: str, T: int = 1000, **kwargs: float) -> NoiseSchedule:
        """``NoiseSchedule.from_name("cosine", T=500)``; names are the keys of ``SCHEDULES``."""
        if name not in SCHEDULES:
            raise ValueError(f"schedule name must be one of {sorted(SCHEDULES)}, got {name!r}")
        return cls(SCHEDULES[name](T, **kwargs), name=name)
