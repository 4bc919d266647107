"""Flow matching (Lipman et al. 2023) and rectified flow (Liu et al. 2023): learn a velocity field that carries
noise to data along straight lines, and sample by integrating it.

Lesson: notebooks/09_flow_matching.ipynb

The convention (Lipman et al. 2023, MIT 6.S184, Meta's flow_matching library): time t runs from 0 (noise) to
1 (data). One code name per symbol:

==============  ==========  ====================================================================
code            symbol      meaning
==============  ==========  ====================================================================
``x0``          x₀          noise, N(0, I)
``x1``          x₁          data
``t``           t           time in [0, 1]: a float tensor (B,), or a number for the whole batch
``x_t``         x_t         the point of the path at t: (1 - t)·x₀ + t·x₁
``velocity``    u, v_θ      the target x₁ - x₀ (constant along each straight path), or the
                            network's estimate v_θ(x_t, t) of its average E[x₁ - x₀ | x_t]
==============  ==========  ====================================================================

Rectified-flow image models (Stable Diffusion 3, FLUX) and diffusers run time the other way, with
t = 1 the noise: ``to_noise_time`` converts. The network sees ``MODEL_TIME_SCALE · t``: the U-Net's
sinusoidal time embedding was built for steps 0..999, and rectified-flow codes feed 1000·t the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .continuous import GaussianMixture

__all__ = [
    "METHODS",
    "MODEL_TIME_SCALE",
    "flow_matching_loss",
    "flow_sample",
    "flow_step",
    "guided_velocity",
    "interpolate",
    "mixture_velocity",
    "straightness",
    "to_noise_time",
    "velocity_to_eps",
    "velocity_to_score",
    "velocity_to_x1",
    "x1_to_velocity",
]

MODEL_TIME_SCALE = 1000.0  # the network is called as model(x_t, 1000·t): the range its time embedding expects
METHODS = ("euler", "midpoint", "heun")


# ----------------------------------------------------------------- checks at the public boundary
def _check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a batch dimension (dim 0), got a 0-d tensor")
    return x


def _check_like(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} must have the shape of {b_name} {tuple(b.shape)}, got {tuple(a.shape)}")


def _as_time(t: object, like: Tensor, name: str = "t") -> Tensor:
    """t as a float tensor (B, 1, ..., 1) that broadcasts over ``like`` (B, ...); every value in [0, 1]."""
    batch = like.shape[0]
    if isinstance(t, Tensor):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of times in [0, 1], got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"{name} must be a number or a tensor of shape ({batch},), one time per sample, "
                             f"got {tuple(t.shape)}")
    elif isinstance(t, Real) and not isinstance(t, bool):
        t = torch.full((batch,), float(t), dtype=like.dtype, device=like.device)
    else:
        raise ValueError(f"{name} must be a number or a float tensor of shape ({batch},), got {type(t).__name__}")
    if t.device.type == "cpu" and bool(((t < 0) | (t > 1) | ~torch.isfinite(t)).any()):
        bad = t[(t < 0) | (t > 1) | ~torch.isfinite(t)][0].item()
        raise ValueError(f"{name} must lie in [0, 1] (0 = noise, 1 = data), got {bad:g}")
    return t.to(like.device, like.dtype).reshape(batch, *([1] * (like.ndim - 1)))


# ------------------------------------------------------------------------------ the path
def interpolate(x0: Tensor, x1: Tensor, t: Tensor | float) -> Tensor:
    """x_t = (1 - t)·x₀ + t·x₁: the straight path from noise x₀ (t = 0) to data x₁ (t = 1).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    x0, x1 = _check_tensor(x0, "x0"), _check_tensor(x1, "x1")
    _check_like(x0, x1, "x0", "x1")
    t = _as_time(t, x1)
    return (1 - t) * x0 + t * x1


def to_noise_time(t: Tensor | float) -> Tensor | float:
    """t ↦ 1 - t: from this course's convention (t = 1 is data) to rectified-flow models' (t = 1 is noise),
    and back (the map is its own inverse). Their velocity is the negative of ours: x₀ - x₁.

    Lesson: notebooks/09_flow_matching.ipynb
    """
    if isinstance(t, Tensor):
        if not t.is_floating_point():
            raise ValueError(f"t must be a float tensor of times in [0, 1], got dtype {t.dtype}")
        return 1 - t
    if isinstance(t, bool) or not isinstance(t, Real) or not 0 <= float(t) <= 1:
        raise ValueError(f"t must be a time in [0, 1], got {t!r}")
    return 1 - float(t)


# --------------------------------------------------------------------------- conversions
def velocity_to_x1(velocity: Tensor, x_t: Tensor, t: Tensor | float) -> Tensor:
    """x̂₁ = x_t + (1 - t)·v: follow the velocity to t = 1 (the data the network expects at the end).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    velocity, x_t = _check_tensor(velocity, "velocity"), _check_tensor(x_t, "x_t")
    _check_like(velocity, x_t, "velocity", "x_t")
    return x_t + (1 - _as_time(t, x_t)) * velocity


def x1_to_velocity(x1: Tensor, x_t: Tensor, t: Tensor | float) -> Tensor:
    """v = (x̂₁ - x_t)/(1 - t), the inverse of ``velocity_to_x1`` (t < 1).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    x1, x_t = _check_tensor(x1, "x1"), _check_tensor(x_t, "x_t")
    _check_like(x1, x_t, "x1", "x_t")
    t = _as_time(t, x_t)
    if bool((t >= 1).any()):
        raise ValueError("t must be < 1: at t = 1 every velocity gives the same x̂₁")
    return (x1 - x_t) / (1 - t)


def velocity_to_eps(velocity: Tensor, x_t: Tensor, t: Tensor | float) -> Tensor:
    """x̂₀ = x_t - t·v: the noise the velocity implies, the ε of diffusion (x_t = t·x₁ + (1 - t)·ε).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    velocity, x_t = _check_tensor(velocity, "velocity"), _check_tensor(x_t, "x_t")
    _check_like(velocity, x_t, "velocity", "x_t")
    return x_t - _as_time(t, x_t) * velocity


def velocity_to_score(velocity: Tensor, x_t: Tensor, t: Tensor | float) -> Tensor:
    """∇ log p_t(x_t) = -E[x₀ | x_t]/(1 - t) = -(x_t - t·v)/(1 - t) for Gaussian noise x₀ (t < 1):
    Tweedie's formula of lesson 08 on the path x_t = t·x₁ + (1 - t)·x₀.

    Lesson: notebooks/09_flow_matching.ipynb
    """
    t_ = _as_time(t, _check_tensor(x_t, "x_t"))
    if bool((t_ >= 1).any()):
        raise ValueError("t must be < 1: at t = 1 there is no noise and no score from the velocity")
    return -velocity_to_eps(velocity, x_t, t) / (1 - t_)


def mixture_velocity(x_t: Tensor, t: float, mixture: GaussianMixture) -> Tensor:
    """The exact marginal velocity E[x₁ - x₀ | x_t] for data from a Gaussian mixture Σ_k π_k N(μ_k, Σ_k).

    Given the component k, z = x₁ - x₀ and x_t are jointly Gaussian: x_t ~ N(t μ_k, C_k) with
    C_k = (1-t)² I + t² Σ_k, and Cov(z, x_t) = t Σ_k - (1-t) I, so
    E[z | x_t, k] = μ_k + (t Σ_k - (1-t) I) C_k⁻¹ (x_t - t μ_k); the marginal velocity weighs these by the
    responsibilities r_k(x_t) of the mixture of x_t. x_t (N, d), t a number in [0, 1) → (N, d).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    from .continuous import GaussianMixture

    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"mixture must be a continuous.GaussianMixture, got {type(mixture).__name__}")
    x_t = _check_tensor(x_t, "x_t")
    if isinstance(t, bool) or not isinstance(t, Real) or not 0 <= float(t) < 1:
        raise ValueError(f"t must be a number in [0, 1), got {t!r}")
    t = float(t)
    eye = torch.eye(mixture.dim, dtype=torch.float64)
    covs_t = (1 - t) ** 2 * eye + t**2 * mixture.covs.double()  # C_k (K, d, d)
    noised = GaussianMixture(mixture.weights.double(), t * mixture.means.double(), covs_t)
    x = x_t.double()
    log_terms = torch.stack([torch.distributions.MultivariateNormal(m, c).log_prob(x) for m, c in
                             zip(noised.means, noised.covs, strict=True)], dim=1) + noised.weights.log()
    r = log_terms.softmax(dim=1)  # (N, K) responsibilities
    gain = t * mixture.covs.double() - (1 - t) * eye  # Cov(z, x_t | k), (K, d, d)
    solved = torch.linalg.solve(covs_t[None], (x[:, None] - noised.means[None]).unsqueeze(-1))  # (N, K, d, 1)
    per_k = mixture.means.double()[None] + (gain[None] @ solved).squeeze(-1)  # (N, K, d)
    return (r[..., None] * per_k).sum(1).to(x_t.dtype)


# ------------------------------------------------------------------------------ the loss
def flow_matching_loss(
    model: Callable[..., Tensor],
    x1: Tensor,
    noise: Tensor | None = None,
    t: Tensor | None = None,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The conditional flow-matching loss (Lipman et al. 2023, eq. 23 with σ_min = 0; rectified flow):

        ‖v_θ(x_t, t) - (x₁ - x₀)‖²,   x_t = (1 - t)·x₀ + t·x₁,   x₀ ~ N(0, I),   t ~ U[0, 1],

    averaged over the batch x1 (B, ...) of data. ``noise`` is x₀ (drawn when None), ``t`` (B,) one time per
    sample (drawn uniformly when None), ``y`` labels for a conditional model. Regressing on the
    *conditional* target x₁ - x₀ learns the *marginal* velocity E[x₁ - x₀ | x_t]: the two losses differ
    by a constant (Lipman et al., Theorem 2).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    if not callable(model):
        raise ValueError(f"model must be callable as model(x_t, t) or model(x_t, t, y), got {type(model).__name__}")
    x1 = _check_tensor(x1, "x1")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if noise is None:
        noise = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
    _check_like(_check_tensor(noise, "noise"), x1, "noise", "x1")
    if t is None:
        t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype, device=x1.device)
    elif not isinstance(t, Tensor) or t.ndim != 1:
        raise ValueError(f"t must be a float tensor of shape ({x1.shape[0]},), one time per sample, "
                         f"got {tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    return _flow_matching_loss(model, x1, noise, _as_time(t, x1).flatten(), y)


def _flow_matching_loss(model: Callable[..., Tensor], x1: Tensor, noise: Tensor, t: Tensor,
                        y: Tensor | None) -> Tensor:
    """``flow_matching_loss`` without the checks: ``train`` checks its data once, not every step. t (B,)."""
    t_ = t.reshape(-1, *([1] * (x1.ndim - 1)))
    x_t = (1 - t_) * noise + t_ * x1  # the straight path
    scaled = t * MODEL_TIME_SCALE
    pred = model(x_t, scaled) if y is None else model(x_t, scaled, y)
    if not isinstance(pred, Tensor) or pred.shape != x_t.shape:
        got = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ValueError(f"the model's output must have x_t's shape {tuple(x_t.shape)}, got {got}")
    return F.mse_loss(pred.float(), (x1 - noise).float())  # target u = x₁ - x₀


# ---------------------------------------------------------------------------- sampling
def guided_velocity(model: Callable[..., Tensor], x_t: Tensor, t: Tensor, y: Tensor | None,
                    guidance: float = 1.0) -> Tensor:
    """v_θ(x_t, t, y), with classifier-free guidance when ``guidance != 1``: v_∅ + w·(v_y - v_∅), exactly as
    lesson 06 guides ε (the velocity is an affine function of ε at fixed x_t and t). t is (B,) in [0, 1].

    Lesson: notebooks/09_flow_matching.ipynb
    """
    from .sampling import guided_eps  # the same guidance rule and checks, with the network's time 1000·t

    return guided_eps(model, x_t, t * MODEL_TIME_SCALE, y, guidance)


def flow_step(model: Callable[..., Tensor], x: Tensor, t: float, t_next: float, method: str = "euler",
              y: Tensor | None = None, guidance: float = 1.0) -> Tensor:
    """One step of dx/dt = v_θ(x, t) from t to t_next > t:

    - ``"euler"``: x + h·v(x, t), one call;
    - ``"midpoint"``: x + h·v(x + ½h·v(x, t), t + ½h), two calls;
    - ``"heun"``: x + ½h·(v(x, t) + v(x + h·v(x, t), t + h)), two calls.

    Lesson: notebooks/09_flow_matching.ipynb
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def v(z: Tensor, time: float) -> Tensor:
        return guided_velocity(model, z, torch.full((z.shape[0],), time, device=z.device, dtype=z.dtype), y, guidance)

    h = t_next - t
    slope = v(x, t)
    if method == "euler":
        return x + h * slope
    if method == "midpoint":
        return x + h * v(x + 0.5 * h * slope, t + 0.5 * h)
    return x + 0.5 * h * (slope + v(x + h * slope, t_next))


@torch.no_grad()
def flow_sample(
    model: nn.Module,
    x0: Tensor,
    steps: int = 20,
    method: str = "euler",
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    y: Tensor | None = None,
    guidance: float = 1.0,
) -> Tensor:
    """Integrate dx/dt = v_θ(x, t) from t = 0 (noise x0 ~ N(0, I)) to t = 1 in ``steps`` equal steps; return x(1).

    ``method`` is "euler" (``steps`` network calls), "midpoint" or "heun" (2·``steps``); with
    ``guidance != 1`` each call is two (conditional and unconditional, batched). The samplers'
    common signature: ``generator`` is accepted for it and unused (the ODE draws nothing after x0);
    ``callback({"i", "t", "x_t", "x1_hat"})`` after each step, x_t at the step's end and x̂₁ from its start.

    Lesson: notebooks/09_flow_matching.ipynb
    """
    from .sampling import _check_sampler_common

    _check_sampler_common(model, x0, "x0", generator, callback, y, guidance)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    times = torch.linspace(0, 1, steps + 1, dtype=torch.float64).tolist()
    x = x0
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        x_start = x
        x = flow_step(model, x, t, t_next, method, y, guidance)
        if callback is not None:
            # x̂₁ from the start of the step: the straight-line guess x_t + (1 - t)·v, with v the step's own slope
            x1_hat = x_start + (1 - t) * (x - x_start) / (t_next - t)
            callback({"i": i, "t": t_next, "x_t": x, "x1_hat": x1_hat})
    return x


def straightness(path: Tensor) -> Tensor:
    """How straight recorded paths are: |x(1) - x(0)| / Σ|x(t_{k+1}) - x(t_k)|, per sample, in (0, 1].

    ``path`` (S, B, ...) holds S states of B samples. 1 means a straight line, which one Euler step
    integrates exactly; rectified flow's reflow pushes paths towards it (Liu et al. 2023).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    path = _check_tensor(path, "path")
    if path.ndim < 2 or path.shape[0] < 2:
        raise ValueError(f"path must have shape (S, B, ...) with S >= 2 states, got {tuple(path.shape)}")
    flat = path.flatten(start_dim=2)  # (S, B, D)
    chord = (flat[-1] - flat[0]).norm(dim=-1)  # (B,)
    arc = (flat[1:] - flat[:-1]).norm(dim=-1).sum(0)  # (B,)
    return chord / arc.clamp(min=torch.finfo(flat.dtype).tiny)

