"""Continuous time: the score, the SDEs behind the chain, the probability-flow ODE and EDM's σ view.

Lesson: notebooks/08_continuous_time.ipynb

Two ways of writing the same noisy data, one code name per symbol:

================  ===========  ================================================================
code              symbol       meaning
================  ===========  ================================================================
``x_t``           x_t          the chain's variable (variance preserving, VP):
                               x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε (lessons 01-06)
``x``             x            EDM's variable (Karras et al. 2022): x = x_0 + σ n, so x = x_t/√ᾱ_t
``sigma``         σ            the noise level of x: σ = √((1-ᾱ)/ᾱ), ᾱ = 1/(1+σ²)
``score``         ∇ log p      the score of the noisy data's density, at x_t (VP) or at x (σ view)
``eps``           ε̂            a noise estimate; at x_t, score = -ε̂/√(1-ᾱ) (Tweedie, below)
``denoised``      D(x; σ)      EDM's denoiser, the estimate of E[x_0 | x]: D = x - σ ε̂ = x̂_0
``beta``          β_t          one step of the chain: β(t)·dt of the VP SDE
================  ===========  ================================================================

- **Tweedie's formula**: E[x_0 | x_t] = (x_t + (1-ᾱ_t) ∇log p_t(x_t)) / √ᾱ_t. With the
  network's ε̂ ≈ E[ε | x_t], x̂_0 = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t, so ∇log p_t ≈ -ε̂/√(1-ᾱ_t):
  a trained ε-model *is* a score model (denoising score matching, Vincent 2011).
- **The VP SDE** (Song et al. 2021): dx = -½β(t) x dt + √β(t) dW. Lesson 01's step
  x_t = √(1-β_t) x_{t-1} + √β_t ε is its Euler–Maruyama step, since √(1-β) = 1 - β/2 + O(β²).
- **The reverse SDE** (Anderson 1982): dx = [-½β x - β ∇log p_t(x)] dt + √β dW̄, run from
  t = T to 0; the **probability-flow ODE** dx = [-½β x - ½β ∇log p_t(x)] dt has the same
  marginals p_t and no noise. In the σ view the ODE is dx/dσ = (x - D(x; σ))/σ = ε̂
  (EDM eq. 3 with σ(t) = t): DDIM with η = 0 is exactly its Euler step.
- **EDM's sampler** (Karras et al. 2022, Algorithms 1 and 2): Heun's method on that ODE at
  the noise levels ``karras_sigmas``, optionally with "churn" (fresh noise added back).

Everything here is pure maths on tensors: the denoiser is any callable ``D(x, sigma)``;
``sampling.edm_sample`` turns the course's ε-networks into one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from numbers import Real

import torch
from torch import Tensor

from .schedules import NoiseSchedule

__all__ = [
    "GaussianMixture",
    "alpha_bar_from_sigma",
    "edm_preconditioning",
    "edm_solve",
    "eps_to_score",
    "eps_to_x0",
    "euler_step",
    "heun_step",
    "karras_sigmas",
    "langevin",
    "mixture_score",
    "probability_flow_step",
    "reverse_sde_step",
    "schedule_sigmas",
    "score_sample",
    "score_to_eps",
    "sigma_from_alpha_bar",
    "toy_mixture",
    "tweedie_x0",
    "x0_to_eps",
]

Denoiser = Callable[[Tensor, float], Tensor]  # D(x, σ) -> x̂_0, shaped like x


# ----------------------------------------------------------------- checks at the public boundary
def _check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _real(value: object, name: str, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (Python, NumPy or a one-element tensor) in [low, high] (or open ends), as a float."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v:g}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {v:g}")
    return v


def _check_level(value: object, name: str, like: Tensor, low: float, high: float, high_open: bool = False) -> Tensor:
    """ᾱ (in (0, 1]) or σ (>= 0): a number or a tensor that broadcasts against ``like``, as a tensor of like's dtype."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor or a number, got dtype {value.dtype}")
        try:
            torch.broadcast_shapes(value.shape, like.shape)
        except RuntimeError:
            raise ValueError(f"{name} must broadcast against shape {tuple(like.shape)} (e.g. shape (B, 1, 1, 1)), "
                             f"got {tuple(value.shape)}") from None
        bad = ~torch.isfinite(value) | (value <= low) | (value > high) | ((value == high) & high_open)
        if bool(bad.any()):
            raise ValueError(f"{name} must lie in ({low:g}, {high:g}{')' if high_open else ']'}, "
                             f"got {value[bad].flatten()[0].item():g}")
        return value.to(like.device, like.dtype)
    _real(value, name, low, high, low_open=True, high_open=high_open)
    return torch.as_tensor(float(value), dtype=like.dtype, device=like.device)


def _check_same_shape(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} must have the shape of {b_name} {tuple(b.shape)}, got {tuple(a.shape)}")


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_callback(callback: object) -> None:
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable (it gets a dict after each step) or None, "
                         f"got {type(callback).__name__}")


# ------------------------------------------------------------------------------ the σ view
def sigma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """σ = √((1-ᾱ)/ᾱ): the noise level of x = x_t/√ᾱ = x_0 + σ n (EDM's variable).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    alpha_bar = _check_tensor(alpha_bar, "alpha_bar")
    if bool(((alpha_bar <= 0) | (alpha_bar > 1) | ~torch.isfinite(alpha_bar)).any()):
        raise ValueError("alpha_bar must lie in (0, 1]")
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def alpha_bar_from_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1/(1+σ²), the inverse of ``sigma_from_alpha_bar``.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    sigma = _check_tensor(sigma, "sigma")
    if bool(((sigma < 0) | ~torch.isfinite(sigma)).any()):
        raise ValueError("sigma must be finite and >= 0")
    return 1 / (1 + sigma**2)


def schedule_sigmas(s: NoiseSchedule) -> Tensor:
    """The T noise levels σ_t of a discrete schedule, (T,) float64 on the CPU, increasing with t.

    These are the only σ a network trained on ``s`` has seen.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if not isinstance(s, NoiseSchedule):
        raise ValueError(f"s must be a NoiseSchedule (e.g. NoiseSchedule.cosine(T=1000)), got {type(s).__name__}")
    return sigma_from_alpha_bar(s.alpha_bars.detach().to("cpu", torch.float64))


# ------------------------------------------------------------------- ε, score, x̂_0 (VP, at x_t)
def eps_to_score(eps: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """∇log p_t(x_t) ≈ -ε̂/√(1-ᾱ_t): the score a noise estimate implies (ᾱ in (0, 1), broadcastable).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    eps = _check_tensor(eps, "eps")
    alpha_bar = _check_level(alpha_bar, "alpha_bar", eps, 0.0, 1.0, high_open=True)
    return -eps / (1 - alpha_bar).sqrt()


def score_to_eps(score: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """ε̂ = -√(1-ᾱ_t) · score, the inverse of ``eps_to_score``.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    score = _check_tensor(score, "score")
    alpha_bar = _check_level(alpha_bar, "alpha_bar", score, 0.0, 1.0, high_open=True)
    return -(1 - alpha_bar).sqrt() * score


def eps_to_x0(eps: Tensor, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """x̂_0 = (x_t - √(1-ᾱ) ε̂)/√ᾱ (DDPM eq. 4 inverted); in the σ view this is D(x; σ).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    eps, x_t = _check_tensor(eps, "eps"), _check_tensor(x_t, "x_t")
    _check_same_shape(eps, x_t, "eps", "x_t")
    alpha_bar = _check_level(alpha_bar, "alpha_bar", x_t, 0.0, 1.0)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def x0_to_eps(x0: Tensor, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """ε̂ = (x_t - √ᾱ x̂_0)/√(1-ᾱ), the inverse of ``eps_to_x0``.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    x0, x_t = _check_tensor(x0, "x0"), _check_tensor(x_t, "x_t")
    _check_same_shape(x0, x_t, "x0", "x_t")
    alpha_bar = _check_level(alpha_bar, "alpha_bar", x_t, 0.0, 1.0, high_open=True)
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def tweedie_x0(score: Tensor, x_t: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """Tweedie's formula: E[x_0 | x_t] = (x_t + (1-ᾱ) ∇log p_t(x_t)) / √ᾱ, from the score of the noisy data.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    score, x_t = _check_tensor(score, "score"), _check_tensor(x_t, "x_t")
    _check_same_shape(score, x_t, "score", "x_t")
    alpha_bar = _check_level(alpha_bar, "alpha_bar", x_t, 0.0, 1.0)
    return (x_t + (1 - alpha_bar) * score) / alpha_bar.sqrt()


def edm_preconditioning(sigma: Tensor | float, sigma_data: float = 0.5) -> dict[str, Tensor]:
    """EDM's preconditioning (Karras et al. 2022, Table 1): D(x; σ) = c_skip x + c_out F(c_in x; c_noise).

    c_skip = σ_data²/(σ²+σ_data²), c_out = σ σ_data/√(σ²+σ_data²), c_in = 1/√(σ²+σ_data²),
    c_noise = ¼ ln σ: the network F sees inputs and targets of unit variance at every σ.
    (An ε-model written the same way has c_skip = 1, c_out = -σ, c_in = 1/√(σ²+1),
    c_noise = its step t(σ): ``sampling.EpsDenoiser``.)

    Lesson: notebooks/08_continuous_time.ipynb
    """
    sigma_data = _real(sigma_data, "sigma_data", 0.0, low_open=True)
    if not isinstance(sigma, Tensor):
        sigma = torch.tensor(_real(sigma, "sigma", 0.0, low_open=True), dtype=torch.float64)
    elif not sigma.is_floating_point() or bool((~torch.isfinite(sigma) | (sigma <= 0)).any()):
        raise ValueError("sigma must be a floating tensor of finite values > 0")
    total = sigma**2 + sigma_data**2
    return {"c_skip": sigma_data**2 / total, "c_out": sigma * sigma_data / total.sqrt(),
            "c_in": 1 / total.sqrt(), "c_noise": sigma.log() / 4}


# ----------------------------------------------------------------------- Gaussian mixtures
def _mixture_log_terms(x: Tensor, weights: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    """log(π_k N(x; μ_k, Σ_k)) (N, K) and Σ_k^{-1}(x - μ_k) (N, K, d)."""
    diff = x[:, None, :] - means[None]  # (N, K, d)
    chol = torch.linalg.cholesky(covs)  # (K, d, d), Σ_k = L L^T
    # Σ^{-1} (x - μ) through two triangular solves: (N, K, d)
    solved = torch.cholesky_solve(diff.permute(1, 2, 0), chol).permute(2, 0, 1)
    mahalanobis = (diff * solved).sum(-1)  # (N, K): (x-μ)^T Σ^{-1} (x-μ)
    log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
    d = x.shape[1]
    log_terms = weights.log()[None] - 0.5 * (mahalanobis + log_det[None] + d * math.log(2 * math.pi))
    return log_terms, solved


def _check_mixture(x: Tensor, weights: Tensor, means: Tensor, covs: Tensor) -> None:
    for value, name in ((x, "x"), (weights, "weights"), (means, "means"), (covs, "covs")):
        _check_tensor(value, name)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    if means.ndim != 2 or means.shape[1] != x.shape[1]:
        raise ValueError(f"means must have shape (K, {x.shape[1]}), one mean per component, got {tuple(means.shape)}")
    k, d = means.shape
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), one per component, got {tuple(weights.shape)}")
    if bool((weights <= 0).any()) or abs(float(weights.sum()) - 1) > 1e-4:
        raise ValueError(f"weights must be positive and sum to 1, got sum {float(weights.sum()):g}")
    if covs.shape != (k, d, d):
        raise ValueError(f"covs must have shape ({k}, {d}, {d}), one covariance per component, got {tuple(covs.shape)}")


def mixture_score(x: Tensor, weights: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """∇ₓ log p(x) of a Gaussian mixture p = Σ_k π_k N(μ_k, Σ_k), exactly:

        ∇ log p(x) = Σ_k r_k(x) · Σ_k^{-1} (μ_k - x),   r_k(x) = π_k N(x; μ_k, Σ_k) / p(x),

    each component's score weighted by its responsibility r_k (softmax of the log terms, so no
    underflow far from the data). x (N, d), weights (K,), means (K, d), covs (K, d, d) → (N, d).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    _check_mixture(x, weights, means, covs)
    log_terms, solved = _mixture_log_terms(x, weights.to(x.dtype), means.to(x.dtype), covs.to(x.dtype))
    r = log_terms.softmax(dim=1)  # (N, K) responsibilities
    return -(r[..., None] * solved).sum(1)  # (N, d)


@dataclass(frozen=True)
class GaussianMixture:
    """p(x) = Σ_k π_k N(x; μ_k, Σ_k): a 2-D toy whose density, score and noised versions are exact.

    Noising keeps it a mixture: q(x_t) has means √ᾱ μ_k and covariances ᾱ Σ_k + (1-ᾱ) I (VP);
    x = x_0 + σ n has means μ_k and covariances Σ_k + σ² I (VE / σ view).

    Lesson: notebooks/08_continuous_time.ipynb
    """

    weights: Tensor  # (K,) mixing weights π_k, positive, summing to 1
    means: Tensor  # (K, d) component means μ_k
    covs: Tensor  # (K, d, d) component covariances Σ_k, symmetric positive definite

    def __post_init__(self) -> None:
        _check_mixture(self.means[:1], self.weights, self.means, self.covs)
        try:
            torch.linalg.cholesky(self.covs)
        except RuntimeError:
            raise ValueError("covs must be symmetric positive definite") from None

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n points (n, d) float32: a component k ~ π, then μ_k + L_k z."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        _check_generator(generator)
        k = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)  # (n,)
        z = torch.randn(n, self.dim, 1, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs.double())  # (K, d, d)
        return (self.means.double()[k] + (chol[k] @ z).squeeze(-1)).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x), (N,)."""
        _check_mixture(_check_tensor(x, "x"), self.weights, self.means, self.covs)
        log_terms, _ = _mixture_log_terms(x, self.weights.to(x.dtype), self.means.to(x.dtype), self.covs.to(x.dtype))
        return log_terms.logsumexp(dim=1)

    def score(self, x: Tensor) -> Tensor:
        """∇ₓ log p(x), (N, d): ``mixture_score``."""
        return mixture_score(x, self.weights, self.means, self.covs)

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The mixture q(x_t) = ∫ N(x_t; √ᾱ x_0, (1-ᾱ) I) p(x_0) dx_0 (VP)."""
        a = _real(alpha_bar, "alpha_bar", 0.0, 1.0, low_open=True)
        eye = torch.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, math.sqrt(a) * self.means, a * self.covs + (1 - a) * eye)

    def at_sigma(self, sigma: float) -> GaussianMixture:
        """The mixture of x = x_0 + σ n (the σ view): covariances Σ_k + σ² I."""
        sigma = _real(sigma, "sigma", 0.0)
        eye = torch.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, self.means, self.covs + sigma**2 * eye)

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        """The exact denoiser D(x; σ) = E[x_0 | x] = x + σ² ∇log p_σ(x) (Tweedie in the σ view)."""
        sigma = _real(sigma, "sigma", 0.0)
        return x + sigma**2 * self.at_sigma(sigma).score(x)


def toy_mixture(name: str = "blobs") -> GaussianMixture:
    """A 2-D Gaussian mixture for lesson 08, in float64, inside about [-1, 1]².

    "blobs": three elongated components with unequal weights (full covariances);
    "ring": eight round components on a circle of radius 0.8 (well separated modes).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if name == "blobs":
        weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
        means = torch.tensor([[-0.5, -0.3], [0.55, -0.4], [0.1, 0.6]], dtype=torch.float64)
        covs = torch.tensor([[[0.04, 0.025], [0.025, 0.03]],
                             [[0.015, -0.01], [-0.01, 0.03]],
                             [[0.05, 0.0], [0.0, 0.006]]], dtype=torch.float64)
        return GaussianMixture(weights, means, covs)
    if name == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = 0.8 * torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2)
        covs = 0.004 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2).clone()
        return GaussianMixture(torch.full((8,), 1 / 8, dtype=torch.float64), means, covs)
    raise ValueError(f"name must be 'blobs' or 'ring', got {name!r}")


# ------------------------------------------------------------------------------ Langevin
@torch.no_grad()
def langevin(score: Callable[[Tensor], Tensor], x: Tensor, step_size: float, steps: int,
             generator: torch.Generator | None = None, callback: Callable[[dict], None] | None = None) -> Tensor:
    """Unadjusted Langevin dynamics: x ← x + (δ/2) ∇log p(x) + √δ z, ``steps`` times (δ = ``step_size``).

    For small δ and many steps the points are distributed as p, whatever they started from;
    but to cross between separated modes they must climb against the score.
    ``callback({"i", "x"})`` after each step.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if not callable(score):
        raise ValueError(f"score must be callable as score(x), got {type(score).__name__}")
    _check_tensor(x, "x")
    delta = _real(step_size, "step_size", 0.0, low_open=True)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    _check_generator(generator)
    _check_callback(callback)
    for i in range(steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + 0.5 * delta * score(x) + math.sqrt(delta) * z
        if callback is not None:
            callback({"i": i, "x": x})
    return x


# ------------------------------------------------------- the VP SDE, reversed, and its ODE
def reverse_sde_step(x_t: Tensor, score: Tensor, beta: float, noise: Tensor) -> Tensor:
    """One Euler–Maruyama step of the reverse VP SDE, from t to t-1 (time runs backwards, dt = -1 step):

        x_{t-1} = x_t + β_t (½ x_t + ∇log p_t(x_t)) + √β_t z.

    DDPM's step 1/√α_t (x_t + β_t ∇log p_t) + √β_t z agrees with it up to O(β²).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    x_t, score, noise = _check_tensor(x_t, "x_t"), _check_tensor(score, "score"), _check_tensor(noise, "noise")
    _check_same_shape(score, x_t, "score", "x_t")
    _check_same_shape(noise, x_t, "noise", "x_t")
    beta = _real(beta, "beta", 0.0, 1.0, high_open=True)
    return x_t + beta * (0.5 * x_t + score) + math.sqrt(beta) * noise


def probability_flow_step(x_t: Tensor, score: Tensor, beta: float) -> Tensor:
    """One Euler step of the probability-flow ODE, from t to t-1: x_{t-1} = x_t + ½ β_t (x_t + ∇log p_t(x_t)).

    Half the score term of the reverse SDE and no noise: the same marginals p_t, one path per x_T.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    x_t, score = _check_tensor(x_t, "x_t"), _check_tensor(score, "score")
    _check_same_shape(score, x_t, "score", "x_t")
    beta = _real(beta, "beta", 0.0, 1.0, high_open=True)
    return x_t + 0.5 * beta * (x_t + score)


@torch.no_grad()
def score_sample(score: Callable[[Tensor, int], Tensor], x_T: Tensor, s: NoiseSchedule, method: str = "sde",
                 generator: torch.Generator | None = None, callback: Callable[[dict], None] | None = None) -> Tensor:
    """Run the reverse VP SDE (``method="sde"``) or the probability-flow ODE (``"ode"``) with a score
    function ``score(x_t, t)`` (t an int step of ``s``), from x_T ~ N(0, I) down through every step of s.

    Each step is ``reverse_sde_step`` or ``probability_flow_step`` with β_t as β(t)dt: close to the
    continuous equations when every β_t is small (the linear schedule; not the cosine's last steps).
    ``callback({"i", "t", "x_t"})`` after each step.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if not callable(score):
        raise ValueError(f"score must be callable as score(x_t, t), got {type(score).__name__}")
    _check_tensor(x_T, "x_T")
    if not isinstance(s, NoiseSchedule):
        raise ValueError(f"s must be a NoiseSchedule, got {type(s).__name__}")
    if method not in ("sde", "ode"):
        raise ValueError(f"method must be 'sde' or 'ode', got {method!r}")
    _check_generator(generator)
    _check_callback(callback)
    betas = s.betas.tolist()
    x = x_T
    for i, t in enumerate(range(s.T - 1, -1, -1)):
        sc = score(x, t)
        if not isinstance(sc, Tensor) or sc.shape != x.shape:
            raise ValueError(f"score(x_t, t) must return a tensor shaped like x_t {tuple(x.shape)}")
        if method == "ode":
            x = probability_flow_step(x, sc, betas[t])
        else:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = reverse_sde_step(x, sc, betas[t], z * (t > 0))  # no noise into x_0, as in DDPM
        if callback is not None:
            callback({"i": i, "t": t, "x_t": x})
    return x


# --------------------------------------------------------------------------------- EDM
def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM eq. (5): ``steps`` noise levels from σ_max down to σ_min, then a final 0 (k-diffusion's convention):

        σ_i = (σ_max^{1/ρ} + i/(N-1) · (σ_min^{1/ρ} - σ_max^{1/ρ}))^ρ,  i = 0..N-1,   σ_N = 0.

    Evenly spaced in σ^{1/ρ}: with ρ = 7 the steps shorten near σ_min, where the ODE's
    trajectories bend most and a step's truncation error is largest; ρ = 1 is evenly spaced in σ.
    Returns (steps + 1,) float64 on the CPU; steps = 1 gives [σ_max, 0].

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    sigma_min = _real(sigma_min, "sigma_min", 0.0, low_open=True)
    sigma_max = _real(sigma_max, "sigma_max", 0.0, low_open=True)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min:g}, sigma_max={sigma_max:g}")
    rho = _real(rho, "rho", 0.0, low_open=True)
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)  # i/(N-1)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min  # exact ends, whatever the rounding of the power
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _slope(denoiser: Denoiser, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """d = (x - D(x; σ))/σ, the ODE's dx/dσ (EDM Alg. 1, lines 4 and 7), and D itself."""
    denoised = denoiser(x, sigma)
    if not isinstance(denoised, Tensor) or denoised.shape != x.shape:
        got = f"shape {tuple(denoised.shape)}" if isinstance(denoised, Tensor) else type(denoised).__name__
        raise ValueError(f"the denoiser must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return (x - denoised) / sigma, denoised


def _check_step(denoiser: object, x: object, sigma: object, sigma_next: object) -> tuple[float, float]:
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {type(denoiser).__name__}")
    _check_tensor(x, "x")
    sigma = _real(sigma, "sigma", 0.0, low_open=True)
    sigma_next = _real(sigma_next, "sigma_next", 0.0)
    return sigma, sigma_next


def euler_step(denoiser: Denoiser, x: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """One Euler step of dx/dσ = (x - D(x; σ))/σ from σ to σ_next: x + (σ_next - σ) d.

    With an ε-model (D = x - σ ε̂) this is x + (σ_next - σ) ε̂: DDIM's η = 0 step, in x = x_t/√ᾱ.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    sigma, sigma_next = _check_step(denoiser, x, sigma, sigma_next)
    d, _ = _slope(denoiser, x, sigma)
    return x + (sigma_next - sigma) * d


def heun_step(denoiser: Denoiser, x: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """One step of Heun's method (EDM Algorithm 1, lines 4-8) from σ to σ_next:

        d = (x - D(x; σ))/σ,  x' = x + (σ_next - σ) d              (an Euler step)
        d' = (x' - D(x'; σ_next))/σ_next                           (the slope where it lands)
        x_next = x + (σ_next - σ) · (d + d')/2                     (the trapezoid rule)

    Into σ_next = 0 the second slope is undefined and the step stays Euler (line 6), which
    lands exactly on D(x; σ). Two network calls, one for that last step.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    sigma, sigma_next = _check_step(denoiser, x, sigma, sigma_next)
    d, _ = _slope(denoiser, x, sigma)
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    d_next, _ = _slope(denoiser, x_euler, sigma_next)
    return x + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)


@torch.no_grad()
def edm_solve(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    method: str = "heun",
    churn: float = 0.0,
    round_sigma: Callable[[float], float] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 2; Algorithm 1 when ``churn = 0``) on any denoiser D(x, σ).

    x (B, ...) at noise level ``sigmas[0]`` (x = x_0 + σ_0 n), ``sigmas`` decreasing to 0 (e.g.
    ``karras_sigmas``); for each step i of N = len(sigmas) - 1:

    1. churn: γ = min(churn/N, √2 - 1), σ̂ = σ_i (1 + γ), x̂ = x + √(σ̂² - σ_i²) z, z ~ N(0, I)
       (raise the noise a little with fresh noise: it corrects errors the steps before made);
    2. an Euler (``method="euler"``) or Heun (``"heun"``) step from σ̂ to σ_{i+1}.

    ``round_sigma`` maps σ̂ to a level the network knows (``sampling.EpsDenoiser.round_sigma``).
    Network calls: N for Euler, 2N - 1 for Heun. ``callback({"i", "sigma", "sigma_hat",
    "sigma_next", "x", "denoised"})`` after each step (x at σ_{i+1}, D at σ̂).

    Lesson: notebooks/08_continuous_time.ipynb
    """
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {type(denoiser).__name__}")
    _check_tensor(x, "x")
    _check_tensor(sigmas, "sigmas")
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-d tensor of at least 2 noise levels, got shape {tuple(sigmas.shape)}")
    levels = sigmas.detach().cpu().double().tolist()
    if not all(math.isfinite(v) for v in levels) or levels[-1] < 0 or any(b >= a for a, b in pairwise(levels)):
        raise ValueError("sigmas must be finite, strictly decreasing and >= 0 (e.g. karras_sigmas(...))")
    if levels[0] <= 0:
        raise ValueError(f"sigmas[0] must be > 0, got {levels[0]:g}")
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    churn = _real(churn, "churn", 0.0)
    if round_sigma is not None and not callable(round_sigma):
        raise ValueError(f"round_sigma must be callable or None, got {type(round_sigma).__name__}")
    _check_generator(generator)
    _check_callback(callback)
    steps = len(levels) - 1
    gamma = min(churn / steps, math.sqrt(2) - 1)  # Alg. 2, line 5 (S_tmin = 0, S_tmax = ∞, S_noise = 1)
    for i, (sigma, sigma_next) in enumerate(pairwise(levels)):
        sigma_hat = sigma * (1 + gamma)
        if round_sigma is not None:
            sigma_hat = max(round_sigma(sigma_hat), sigma)
        if sigma_hat > sigma:  # line 6: x̂ = x + √(σ̂² - σ²) z
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * z
        d, denoised = _slope(denoiser, x, sigma_hat)  # lines 7-8: d = (x̂ - D(x̂; σ̂))/σ̂, an Euler step
        x_next = x + (sigma_next - sigma_hat) * d
        if method == "heun" and sigma_next > 0:  # lines 9-11: the slope at σ_{i+1}, then the trapezoid rule
            d_next, _ = _slope(denoiser, x_next, sigma_next)
            x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)
        x = x_next
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_hat": sigma_hat, "sigma_next": sigma_next, "x": x,
                      "denoised": denoised})
    return x
