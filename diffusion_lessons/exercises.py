"""Checkers for the lessons' exercises: they compare a learner's function with the
tested reference on fresh random inputs and, when it is wrong, name the likely mistake.

Lesson: notebooks/01_markov_noising.ipynb (first use)

How a checker works: it runs the learner's function and the reference on the same
random inputs (fixed noise, so the answer is exact). If they agree, the exercise
passes. If not, it runs each *known mistake* (a small variant of the reference, e.g.
β where √β belongs) on the same inputs; when the learner's output matches one of
them, the message explains that mistake. A function that still raises
``NotImplementedError`` is reported as "not implemented yet", never as a crash.
"""

from __future__ import annotations

import math
import secrets
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .noising import markov_step, q_sample
from .schedules import NoiseSchedule, cosine_betas

__all__ = [
    "CheckResult",
    "check_cosine_schedule",
    "check_ddpm_step",
    "check_diffusion_loss",
    "check_guided_eps",
    "check_markov_step",
    "check_q_sample",
    "check_sinusoidal_embedding",
]

_ICONS = {"passed": "✅", "failed": "❌", "not implemented": "⏳", "error": "💥"}


@dataclass(frozen=True)
class CheckResult:
    """What a checker found. Truthy when the exercise passed."""

    exercise: str  # the exercise's name, e.g. "markov_step"
    status: str  # "passed", "failed", "not implemented" or "error"
    message: str  # what to do next, in words a learner can act on
    mistake: str | None = None  # the name of the diagnosed mistake, if one matched

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{_ICONS[self.status]} {self.exercise}: {self.message}"


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``fn`` takes the same inputs as the exercise."""

    name: str  # short id, used by tests and in CheckResult.mistake
    fn: Callable[..., Tensor]  # the mistaken computation
    message: str  # the explanation shown when the learner's output matches fn's


def _close(a: Tensor, b: Tensor, rtol: float = 1e-4) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=rtol, atol=1e-5)


def _try(fn: Callable[..., Tensor], args: tuple) -> Tensor | None:
    try:
        return fn(*args)
    except Exception:  # a mistake that cannot be evaluated on these inputs matches nothing
        return None


def _check(
    exercise: str,
    learner: Callable[..., object],
    reference: Callable[..., Tensor],
    mistakes: Sequence[Mistake],
    inputs: Sequence[tuple],
    rtol: float = 1e-4,
) -> CheckResult:
    """Run ``learner`` and ``reference`` on each input tuple and diagnose a difference."""
    if not callable(learner):
        raise ValueError(f"pass your function itself to the checker, got {type(learner).__name__}")
    for args in inputs:
        expected = reference(*args)
        try:
            got = learner(*args)
        except NotImplementedError:
            return CheckResult(exercise, "not implemented", "not implemented yet: replace the "
                               "`raise NotImplementedError()` line with your code, then run this cell again.")
        except Exception as e:  # a learner's bug: report it, don't crash the lesson
            where = traceback.extract_tb(e.__traceback__)[-1]
            line = f"line {where.lineno}: `{where.line}`" if where.line else f"line {where.lineno}"
            return CheckResult(exercise, "error", f"your function raised {type(e).__name__}: {e} "
                               f"({line}). Inputs were {_describe(args)}.")
        if got is None:
            return CheckResult(exercise, "failed", "your function returned None: did you forget `return`?")
        try:
            got = torch.as_tensor(got)
        except Exception:
            return CheckResult(exercise, "failed", f"expected a tensor, got {type(got).__name__}.")
        if got.shape != expected.shape:
            return CheckResult(exercise, "failed", f"expected a result of shape {tuple(expected.shape)}, "
                               f"got {tuple(got.shape)} for inputs {_describe(args)}.")
        if _close(got, expected, rtol):
            continue
        for m in mistakes:
            wrong = _try(m.fn, args)
            if wrong is not None and _close(got, wrong, rtol):
                return CheckResult(exercise, "failed", m.message, mistake=m.name)
        err = (got.double() - expected.double()).abs()
        return CheckResult(exercise, "failed", f"your result differs from the reference by up to "
                           f"{err.max().item():.3g} for inputs {_describe(args)}, and it matches none of the "
                           "mistakes this checker knows. Compare your code with the formula term by term.")
    return CheckResult(exercise, "passed", f"correct on {len(inputs)} random tests.")


def _describe(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(f"tensor{tuple(a.shape)}")
        elif isinstance(a, NoiseSchedule):
            parts.append(f"{a.name} schedule with T={a.T}")
        else:
            parts.append(repr(a))
    return "(" + ", ".join(parts) + ")"


def _generator(seed: int | None) -> torch.Generator:
    """Fresh random inputs each call, from the OS, so a check never disturbs the lesson's seeded RNG."""
    return torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)


def _random_schedule(g: torch.Generator, T: int) -> NoiseSchedule:
    """Large, uneven betas, so that every mistake changes the answer visibly."""
    return NoiseSchedule(0.05 + 0.5 * torch.rand(T, generator=g, dtype=torch.float64), name="random")


def _noising_inputs(seed: int | None, trials: int) -> list[tuple]:
    """(x, t, s, noise) tuples: x of a random shape, t an int in [1, T-2]."""
    g = _generator(seed)
    out = []
    for shape in [(16, 2), (4, 1, 5, 5), (8, 3, 4, 4), (32, 2)][:trials]:
        T = int(torch.randint(10, 40, (), generator=g))
        s = _random_schedule(g, T)
        t = int(torch.randint(1, T - 1, (), generator=g))
        out.append((torch.randn(shape, generator=g), t, s, torch.randn(shape, generator=g)))
    return out


def _coef(values: Tensor, t: int) -> float:
    return values[t].item()


# ---------------------------------------------------------------- markov_step
_MARKOV_MISTAKES = [
    Mistake("beta_for_sqrt_beta",
            lambda x, t, s, e: math.sqrt(1 - _coef(s.betas, t)) * x + _coef(s.betas, t) * e,
            "the noise is scaled by β_t, but β_t is its *variance*: scale ε by its standard "
            "deviation √β_t."),
    Mistake("signal_not_shrunk",
            lambda x, t, s, e: x + math.sqrt(_coef(s.betas, t)) * e,
            "the signal is not shrunk: x_{t-1} needs the factor √(1-β_t). Without it the "
            "variance grows by β_t at every step instead of staying at 1."),
    Mistake("alpha_for_sqrt_alpha",
            lambda x, t, s, e: (1 - _coef(s.betas, t)) * x + math.sqrt(_coef(s.betas, t)) * e,
            "the signal is scaled by 1-β_t; the factor is its square root √(1-β_t), so that "
            "signal and noise variances add up to 1."),
    Mistake("alpha_bar_for_beta",
            lambda x, t, s, e: math.sqrt(_coef(s.alpha_bars, t)) * x
            + math.sqrt(1 - _coef(s.alpha_bars, t)) * e,
            "you used ᾱ_t, the closed-form jump from x_0. One Markov step from x_{t-1} uses "
            "only this step's β_t."),
    Mistake("swapped",
            lambda x, t, s, e: math.sqrt(_coef(s.betas, t)) * x + math.sqrt(1 - _coef(s.betas, t)) * e,
            "signal and noise coefficients are swapped: x_{t-1} gets √(1-β_t), the noise gets √β_t."),
    Mistake("t_off_by_one_low",
            lambda x, t, s, e: markov_step(x, t - 1, s, e),
            "you used β at index t-1. Steps are 0-based here: betas[t] is the β of step t."),
    Mistake("t_off_by_one_high",
            lambda x, t, s, e: markov_step(x, t + 1, s, e),
            "you used β at index t+1. Steps are 0-based here: betas[t] is the β of step t."),
    Mistake("noise_subtracted",
            lambda x, t, s, e: math.sqrt(1 - _coef(s.betas, t)) * x - math.sqrt(_coef(s.betas, t)) * e,
            "the noise is subtracted. -ε has the same distribution as ε, but use +√β_t·ε so your "
            "result matches the noise you were given."),
]


def check_markov_step(fn: Callable[[Tensor, int, NoiseSchedule, Tensor], Tensor],
                      seed: int | None = None) -> CheckResult:
    """Check ``fn(x_prev, t, s, noise) -> x_t``, one step of q(x_t | x_{t-1}), t an int.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    return _check("markov_step", fn, markov_step, _MARKOV_MISTAKES, _noising_inputs(seed, 4))


# ------------------------------------------------------------------- q_sample
_Q_SAMPLE_MISTAKES = [
    Mistake("alpha_for_alpha_bar",
            lambda x, t, s, e: math.sqrt(_coef(s.alphas, t)) * x + math.sqrt(1 - _coef(s.alphas, t)) * e,
            "you used α_t (one step's share of signal) where ᾱ_t belongs: the jump to step t "
            "needs the product ᾱ_t = α_0·α_1·…·α_t (`s.alpha_bars[t]`)."),
    Mistake("beta_for_one_minus_alpha_bar",
            lambda x, t, s, e: math.sqrt(_coef(s.alpha_bars, t)) * x + math.sqrt(_coef(s.betas, t)) * e,
            "the noise is scaled by √β_t, one step's noise. After t steps the noise variance "
            "is 1-ᾱ_t: scale ε by √(1-ᾱ_t)."),
    Mistake("no_sqrt_on_signal",
            lambda x, t, s, e: _coef(s.alpha_bars, t) * x + math.sqrt(1 - _coef(s.alpha_bars, t)) * e,
            "x_0 is scaled by ᾱ_t; the factor is √ᾱ_t (ᾱ_t is the signal's *variance*)."),
    Mistake("no_sqrt_on_noise",
            lambda x, t, s, e: math.sqrt(_coef(s.alpha_bars, t)) * x + (1 - _coef(s.alpha_bars, t)) * e,
            "ε is scaled by 1-ᾱ_t, the noise *variance*; scale it by the standard deviation √(1-ᾱ_t)."),
    Mistake("signal_not_shrunk",
            lambda x, t, s, e: x + math.sqrt(1 - _coef(s.alpha_bars, t)) * e,
            "x_0 is not shrunk: it needs the factor √ᾱ_t. Without it the variance grows to "
            "1 + (1-ᾱ_t) and never becomes pure noise."),
    Mistake("swapped",
            lambda x, t, s, e: math.sqrt(1 - _coef(s.alpha_bars, t)) * x + math.sqrt(_coef(s.alpha_bars, t)) * e,
            "signal and noise coefficients are swapped: x_0 gets √ᾱ_t, the noise gets √(1-ᾱ_t)."),
    Mistake("t_off_by_one_low",
            lambda x, t, s, e: q_sample(x, t - 1, s, e),
            "you used ᾱ at index t-1. Steps are 0-based: alpha_bars[t] already includes step t."),
    Mistake("t_off_by_one_high",
            lambda x, t, s, e: q_sample(x, t + 1, s, e),
            "you used ᾱ at index t+1. Steps are 0-based: alpha_bars[t] already includes step t."),
]


def check_q_sample(fn: Callable[[Tensor, int, NoiseSchedule, Tensor], Tensor],
                   seed: int | None = None) -> CheckResult:
    """Check ``fn(x0, t, s, noise) -> x_t``, the closed form q(x_t | x_0), t an int.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    return _check("q_sample", fn, q_sample, _Q_SAMPLE_MISTAKES, _noising_inputs(seed, 4))


# ------------------------------------------------------------ cosine schedule
def _cosine_alpha_bars_unclipped(T: int, s: float, square: bool = True, half_pi: bool = True) -> Tensor:
    u = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    f = torch.cos((u + s) / (1 + s) * (math.pi / 2 if half_pi else math.pi))
    f = f**2 if square else f
    return f / f[0]


def _betas_of(a: Tensor) -> Tensor:
    return (1 - a[1:] / a[:-1]).clamp(max=0.999)


_COSINE_MISTAKES = [
    Mistake("not_clipped",
            lambda T, s: (1 - (a := _cosine_alpha_bars_unclipped(T, s))[1:] / a[:-1]),
            "the last β is 1 (ᾱ reaches 0 at t=T). Clip the betas at 0.999, as Nichol & Dhariwal "
            "do, so the last step does not erase the signal by dividing by zero: `.clamp(max=0.999)`."),
    Mistake("returned_alpha_bars",
            lambda T, s: _cosine_alpha_bars_unclipped(T, s)[1:],
            "you returned ᾱ_t. The schedule's betas come from ratios: β_t = 1 - ᾱ_t / ᾱ_{t-1}."),
    Mistake("one_minus_alpha_bar",
            lambda T, s: (1 - _cosine_alpha_bars_unclipped(T, s)[1:]).clamp(max=0.999),
            "you returned 1-ᾱ_t, the *total* noise variance after t steps. Each step's β_t "
            "is 1 - ᾱ_t / ᾱ_{t-1}."),
    Mistake("no_square",
            lambda T, s: _betas_of(_cosine_alpha_bars_unclipped(T, s, square=False)),
            "f(t) is cos **squared**: f(t) = cos²(π/2 · (t/T + s)/(1 + s))."),
    Mistake("pi_not_halved",
            lambda T, s: _betas_of(_cosine_alpha_bars_unclipped(T, s, half_pi=False)),
            "the angle runs from 0 to π/2, not to π: f(t) = cos²(**π/2** · (t/T + s)/(1 + s))."),
    Mistake("offset_ignored",
            lambda T, s: _betas_of(_cosine_alpha_bars_unclipped(T, 0.0)),
            "the offset s is missing: (t/T + s)/(1 + s). Without it β_1 is tiny and the first "
            "steps barely add noise."),
]


def check_cosine_schedule(fn: Callable[[int, float], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(T, s) -> betas`` of shape (T,), the cosine schedule clipped at 0.999.

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    g = _generator(seed)
    Ts = [1000, int(torch.randint(5, 60, (), generator=g)), int(torch.randint(100, 2000, (), generator=g))]
    offsets = [0.008, 0.008, 0.02 + 0.1 * torch.rand((), generator=g).item()]
    inputs = list(zip(Ts, offsets, strict=True))
    # rtol 5e-4: a float32 implementation is right too, though its last betas (ᾱ near 0) are less
    # exact; still tight enough to tell an unclipped last β of 1 from 0.999.
    return _check("cosine_schedule", fn, cosine_betas, _COSINE_MISTAKES, inputs, rtol=5e-4)


# ------------------------------------------------------ sinusoidal embedding
def _embedding(t: Tensor, dim: int, period: float = 10_000.0, denom: str = "half", sign: float = -1.0,
               order: str = "sin_cos", use_t: bool = True) -> Tensor:
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(sign * math.log(period) * i / (half if denom == "half" else dim))
    angles = (t.double()[:, None] if use_t else torch.ones(len(t), 1, dtype=torch.float64)) * freqs[None]
    sin, cos = angles.sin(), angles.cos()
    if order == "interleaved":
        return torch.stack([sin, cos], dim=2).reshape(len(t), dim)
    return torch.cat([sin, cos] if order == "sin_cos" else [cos, sin], dim=1)


_EMBEDDING_MISTAKES = [
    Mistake("cos_first", lambda t, d: _embedding(t, d, order="cos_sin"),
            "the halves are in the other order: this course puts the sines first, then the cosines "
            "(`torch.cat([sin, cos], dim=1)`). Either order works in a network, but the checker (and "
            "the package) use sines first."),
    Mistake("interleaved", lambda t, d: _embedding(t, d, order="interleaved"),
            "you interleaved sin and cos (sin, cos, sin, cos, ...), as the Transformer paper writes it. "
            "That works too, but this course concatenates: all the sines, then all the cosines."),
    Mistake("positive_exponent", lambda t, d: _embedding(t, d, sign=1.0),
            "the frequencies grow instead of shrinking: ω_i = 10000^(-i/(dim/2)) has a *minus* sign, so "
            "they run from 1 down to about 1/10000 and the slow ones tell far-apart steps apart."),
    Mistake("divided_by_dim", lambda t, d: _embedding(t, d, denom="dim"),
            "the exponent is divided by dim; divide by dim/2, the number of frequencies, so the lowest "
            "frequency reaches 1/10000 (the paper's 2i/d is the same thing as i/(d/2))."),
    Mistake("t_not_multiplied", lambda t, d: _embedding(t, d, use_t=False),
            "the angles do not depend on t: multiply each frequency by the step, angle = t · ω_i."),
    Mistake("period_1000", lambda t, d: _embedding(t, d, period=1000.0),
            "the longest period is 10000, not 1000: ω_i = 10000^(-i/(dim/2))."),
]


def check_sinusoidal_embedding(fn: Callable[[Tensor, int], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(t, dim) -> (B, dim)``: sines then cosines of t · ω_i, ω_i = 10000^(-i/(dim/2)).

    Lesson: notebooks/03_unet.ipynb
    """
    from .unet import sinusoidal_embedding

    g = _generator(seed)
    inputs = [(torch.randint(0, 1000, (8,), generator=g), dim) for dim in (16, 32, 128)]
    return _check("sinusoidal_embedding", fn, sinusoidal_embedding, _EMBEDDING_MISTAKES, inputs, rtol=1e-3)


# ------------------------------------------------------------ diffusion loss
class _SpyModel(torch.nn.Module):
    """Stands in for ε_θ: records what it is called with and answers a fixed random tensor."""

    def __init__(self, answer: Tensor):
        super().__init__()
        self.answer = answer
        self.calls: list[tuple[Tensor, object]] = []

    def forward(self, x: Tensor, t: object = None, y: object = None) -> Tensor:
        self.calls.append((x.detach().clone(), t))
        return self.answer


def _loss_result(status: str, message: str, mistake: str | None = None) -> CheckResult:
    return CheckResult("diffusion_loss", status, message, mistake)


def check_diffusion_loss(fn: Callable[[torch.nn.Module, Tensor, NoiseSchedule], Tensor],
                         seed: int | None = None) -> CheckResult:
    """Check ``fn(model, x0, s) -> loss``, the DDPM objective with its own random t and ε.

    The checker hands ``fn`` a stand-in model that records its inputs, works out from
    them which noise ``fn`` drew, and so can tell which target and which noise level
    ``fn`` used. Lesson: notebooks/04_training.ipynb
    """
    if not callable(fn):
        raise ValueError(f"pass your function itself to the checker, got {type(fn).__name__}")
    g = _generator(seed)
    s = NoiseSchedule.linear()
    x0 = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1  # (B, 1, 8, 8) images in [-1, 1]
    spy = _SpyModel(torch.randn(x0.shape, generator=g))
    try:
        loss = fn(spy, x0, s)
    except NotImplementedError:
        return _loss_result("not implemented", "not implemented yet: replace the `raise NotImplementedError()` "
                            "line with your code, then run this cell again.")
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        return _loss_result("error", f"your function raised {type(e).__name__}: {e} (line {where.lineno}).")
    if loss is None:
        return _loss_result("failed", "your function returned None: did you forget `return`?")
    loss = torch.as_tensor(loss)
    if loss.numel() != 1:
        return _loss_result("failed", f"the loss must be one number (a mean over the batch), got shape "
                            f"{tuple(loss.shape)}: use `F.mse_loss` or `.mean()`.")
    if len(spy.calls) != 1:
        return _loss_result("failed", f"call the model exactly once, got {len(spy.calls)} calls.")
    x_in, t = spy.calls[0]
    if t is None:
        return _loss_result("failed", "the model never saw t: call `model(x_t, t)`. Without the step, the "
                            "network cannot know how much noise to remove.", "t_not_passed")
    if not isinstance(t, Tensor) or t.shape != (x0.shape[0],) or t.is_floating_point():
        return _loss_result("failed", f"t must be a LongTensor of shape ({x0.shape[0]},), one step per image, "
                            f"got {type(t).__name__} {tuple(getattr(t, 'shape', ()))}.", "t_shape")
    if (t < 0).any() or (t >= s.T).any():
        return _loss_result("failed", f"t must be in [0, {s.T - 1}]: use `torch.randint(0, s.T, (B,))`.")
    if (t == t[0]).all():
        return _loss_result("failed", "every image got the same t. Draw one step per image, "
                            "`torch.randint(0, s.T, (B,))`, so each batch trains all noise levels.", "constant_t")
    if x_in.shape != x0.shape:
        return _loss_result("failed", f"the model input must be shaped like x0 {tuple(x0.shape)}, "
                            f"got {tuple(x_in.shape)}.")
    if torch.allclose(x_in, x0):
        return _loss_result("failed", "the model was fed the clean image x0. Feed it the noised x_t = "
                            "q_sample(x0, t, s, noise): the network learns to find the noise in x_t.", "clean_input")
    pred = spy.answer.double()

    def implied_noise(signal: Tensor, noise_scale: Tensor, data: Tensor) -> Tensor:
        # solve x_in = signal·data + noise_scale·ε for ε
        shape = (-1, 1, 1, 1)
        return (x_in.double() - signal.reshape(shape) * data.double()) / noise_scale.reshape(shape)

    a = s.alpha_bars.double()
    hypotheses = [  # (name, ε that fn must have drawn if this is what it did, message or None if right)
        ("right", implied_noise(a[t].sqrt(), (1 - a[t]).sqrt(), x0), None),
        ("reversed_t", implied_noise(a[s.T - 1 - t].sqrt(), (1 - a[s.T - 1 - t]).sqrt(), x0),
         "the noise level runs the wrong way: x_t was made with ᾱ[T-1-t], so a small t gets almost pure "
         "noise and a large t almost none, while the model is told t. Use `s.alpha_bars[t]`."),
        ("noise_and_data_swapped", implied_noise((1 - a[t]).sqrt(), a[t].sqrt(), x0),
         "noise and image are swapped in x_t: it must be √ᾱ_t·x0 + √(1-ᾱ_t)·ε (check the order of "
         "the arguments of q_sample: `q_sample(x0, t, s, noise)`)."),
        ("alpha_for_alpha_bar", implied_noise(s.alphas.double()[t].sqrt(), (1 - s.alphas.double()[t]).sqrt(), x0),
         "x_t was made with α_t (one step) instead of ᾱ_t: use `dl.q_sample`, which jumps to step t."),
    ]
    for name, eps, message in hypotheses:
        if not (eps.mean().abs() < 0.1 and (eps.std() - 1).abs() < 0.1):
            continue  # fn did not draw a standard normal under this hypothesis
        targets = {"eps": eps, "x0": x0.double(), "x_t": x_in.double()}
        got = {k: F.mse_loss(pred, v).item() for k, v in targets.items()}
        matches = [k for k, v in got.items() if math.isclose(v, loss.item(), rel_tol=1e-3, abs_tol=1e-6)]
        if name == "right" and matches == ["eps"]:
            return _loss_result("passed", "correct: random t per image, x_t from q_sample, and the noise as target.")
        if message is not None:
            return _loss_result("failed", message, name)
        if "x0" in matches:
            return _loss_result("failed", "the target is the clean image x0. In the ε-objective the network "
                                "predicts the *noise* ε that was added: compare its output with `noise`.",
                                "target_x0")
        if "x_t" in matches:
            return _loss_result("failed", "the target is x_t, the network's own input. Compare its output with "
                                "the noise ε that made x_t.", "target_x_t")
        return _loss_result("failed", "x_t is made right, but the loss is not the mean squared error between "
                            "the model's output and the noise: use `F.mse_loss(model(x_t, t), noise)`.")
    return _loss_result("failed", "the model's input is not x0 noised with a standard normal ε at the steps t "
                        "it was given. Make it with `dl.q_sample(x0, t, s, noise)`, noise = torch.randn_like(x0).")


# ------------------------------------------------------------------ ddpm_step
def _ddpm_variant(eps: Tensor, t: int, x: Tensor, s: NoiseSchedule, z: Tensor, *, divide_by: str = "sqrt_alpha",
                  eps_coef: str = "right", eps_sign: float = -1.0, noise_sign: float = 1.0,
                  sigma: str = "sqrt_beta_tilde", guard: bool = True) -> Tensor:
    """Algorithm 2's step with one piece swapped for a mistaken one (the default is the right step)."""
    beta, alpha, alpha_bar = _coef(s.betas, t), _coef(s.alphas, t), _coef(s.alpha_bars, t)
    beta_tilde = _coef(s.posterior_variance, t)
    denom = {"sqrt_alpha": math.sqrt(alpha), "alpha": alpha, "sqrt_alpha_bar": math.sqrt(alpha_bar)}[divide_by]
    coef = {"right": beta / math.sqrt(1 - alpha_bar), "no_sqrt": beta / (1 - alpha_bar),
            "one_minus_alpha_bar": math.sqrt(1 - alpha_bar)}[eps_coef]
    std = {"sqrt_beta_tilde": math.sqrt(beta_tilde), "sqrt_beta": math.sqrt(beta), "beta_tilde": beta_tilde,
           "zero": 0.0}[sigma]
    if guard and t == 0:
        std = 0.0
    return (x + eps_sign * coef * eps) / denom + noise_sign * std * z


def _ddpm_shifted(eps: Tensor, t: int, x: Tensor, s: NoiseSchedule, z: Tensor, shift: int) -> Tensor:
    from .sampling import ddpm_step

    return ddpm_step(eps, t + shift, x, s, noise=z)


_DDPM_STEP_MISTAKES = [
    Mistake("no_sqrt_on_alpha", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, divide_by="alpha"),
            "you divided by α_t; the step divides by its square root √α_t. The forward step shrank the signal "
            "by √(1-β_t) = √α_t, so the reverse step scales it back up by 1/√α_t."),
    Mistake("alpha_bar_for_alpha", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, divide_by="sqrt_alpha_bar"),
            "you divided by √ᾱ_t, the factor that undoes the whole jump from x_0 (x̂_0's formula). One reverse "
            "step undoes one forward step, which shrank the signal by √α_t: divide by √α_t (`s.alphas[t]`)."),
    Mistake("eps_added", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, eps_sign=1.0),
            "the predicted noise is added; the step *removes* it: x_t - β_t/√(1-ᾱ_t)·ε̂, a minus sign."),
    Mistake("noise_subtracted", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, noise_sign=-1.0),
            "the fresh noise z is subtracted. -σ_t·z has the same distribution as +σ_t·z, but write + σ_t·z "
            "so your result matches the noise you were given."),
    Mistake("eps_coef_no_sqrt", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, eps_coef="no_sqrt"),
            "ε̂ is scaled by β_t/(1-ᾱ_t); the coefficient is β_t/√(1-ᾱ_t), with a square root: ε̂ is the "
            "noise of unit variance, and √(1-ᾱ_t)·ε̂ is how much of it x_t holds."),
    Mistake("one_minus_alpha_bar_for_beta",
            lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, eps_coef="one_minus_alpha_bar"),
            "ε̂ is scaled by (1-ᾱ_t)/√(1-ᾱ_t) = √(1-ᾱ_t): you used 1-ᾱ_t where β_t = 1-α_t belongs. Removing "
            "all of √(1-ᾱ_t)·ε̂ would jump to x_0 in one go; one step removes only β_t/√(1-ᾱ_t) of it."),
    Mistake("beta_for_beta_tilde", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, sigma="sqrt_beta"),
            "your noise has σ_t² = β_t. That is Ho et al.'s other choice, and it samples about as well, but this "
            "exercise (and `ddpm_step`'s default) uses the posterior's variance σ_t² = β̃_t = "
            "`s.posterior_variance[t]`."),
    Mistake("variance_not_sqrt", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, sigma="beta_tilde"),
            "z is scaled by β̃_t, a *variance*; scale it by the standard deviation σ_t = √β̃_t."),
    Mistake("no_noise", lambda e, t, x, s, z: _ddpm_variant(e, t, x, s, z, sigma="zero"),
            "no noise is added: for t > 0 the step adds fresh noise σ_t·z (σ_t = √β̃_t). Without it, every "
            "step moves to the average of the images that could have led to x_t, and samples come out "
            "smooth and blurred."),
    Mistake("t_off_by_one_low", lambda e, t, x, s, z: _ddpm_shifted(e, t, x, s, z, -1),
            "you used the coefficients at index t-1. Steps are 0-based here: betas[t], alphas[t], "
            "alpha_bars[t] belong to step t."),
    Mistake("t_off_by_one_high", lambda e, t, x, s, z: _ddpm_shifted(e, t, x, s, z, 1),
            "you used the coefficients at index t+1. Steps are 0-based here: betas[t], alphas[t], "
            "alpha_bars[t] belong to step t."),
]
_NOISE_AT_LAST_STEP = (
    "at the last step (t = 0) your result is the right mean plus {c:.3g}·z: Algorithm 2 adds no noise there "
    "(z = 0 when t = 0), so the last step returns the mean, the model's best guess of the clean image. "
    "(β̃_0 is exactly 0, since ᾱ_{{-1}} = 1; beware that `s.alpha_bars[t - 1]` at t = 0 reads alpha_bars[-1], "
    "the *last* entry. Use `s.posterior_variance[t]`, or add the noise only `if t > 0`.)"
)


def _ddpm_step_inputs(seed: int | None) -> list[tuple]:
    """(eps, t, x_t, s, noise) tuples: three with t in [1, T-2], then one with t = 0 (the last step)."""
    g = _generator(seed)
    out = []
    for shape in [(16, 2), (4, 1, 5, 5), (8, 3, 4, 4), (6, 1, 4, 4)]:
        T = int(torch.randint(10, 30, (), generator=g))
        s = NoiseSchedule(0.02 + 0.28 * torch.rand(T, generator=g, dtype=torch.float64), name="random")
        t = int(torch.randint(1, T - 1, (), generator=g)) if len(out) < 3 else 0
        x, eps, noise = (torch.randn(shape, generator=g) for _ in range(3))
        out.append((eps, t, x, s, noise))
    return out


def check_ddpm_step(fn: Callable[[Tensor, int, Tensor, NoiseSchedule, Tensor], Tensor],
                    seed: int | None = None) -> CheckResult:
    """Check ``fn(eps, t, x_t, s, noise) -> x_{t-1}``, one step of Ho et al.'s Algorithm 2, t an int:

    x_{t-1} = 1/√α_t · (x_t - β_t/√(1-ᾱ_t) · ε) + σ_t·z, σ_t² = β̃_t, and no noise at t = 0
    (``sampling.ddpm_step`` with its default variance). Lesson: notebooks/05_sampling.ipynb
    """
    from .sampling import ddpm_step

    def reference(eps: Tensor, t: int, x: Tensor, s: NoiseSchedule, z: Tensor) -> Tensor:
        return ddpm_step(eps, t, x, s, noise=z)

    inputs = _ddpm_step_inputs(seed)
    result = _check("ddpm_step", fn, reference, _DDPM_STEP_MISTAKES, inputs[:3])
    if not result:
        return result
    last = _check("ddpm_step", fn, reference, _DDPM_STEP_MISTAKES, inputs[3:])
    if last.status == "failed" and last.mistake is None:
        # right for t > 0 but not at t = 0: is the difference a multiple of the noise z?
        eps, t, x, s, z = inputs[3]
        diff = (torch.as_tensor(fn(eps, t, x, s, z)).double() - reference(eps, t, x, s, z).double()).flatten()
        c = (diff @ z.double().flatten() / (z.double().flatten() @ z.double().flatten())).item()
        if abs(c) > 1e-4 and torch.allclose(diff, c * z.double().flatten(), rtol=1e-4, atol=1e-5):
            return CheckResult("ddpm_step", "failed", _NOISE_AT_LAST_STEP.format(c=c), "noise_at_last_step")
    if not last:
        return last
    return CheckResult("ddpm_step", "passed", f"correct on {len(inputs)} random tests, the last step (t = 0) "
                       "included.")


# ------------------------------------------------------------ guided noise estimate
def _guided(eps_cond: Tensor, eps_uncond: Tensor, w: float) -> Tensor:
    """ε̃ = ε_uncond + w·(ε_cond − ε_uncond): the combination ``sampling.guided_eps`` makes."""
    return eps_uncond + w * (eps_cond - eps_uncond)


_GUIDED_MISTAKES = [
    Mistake("swapped", lambda c, u, w: _guided(u, c, w),
            "ε_cond and ε_uncond are swapped: start from the *unconditional* estimate and move towards "
            "the conditional one, ε_uncond + w·(ε_cond − ε_uncond). With w = 1 you must get ε_cond back."),
    Mistake("one_plus_w", lambda c, u, w: _guided(c, u, 1 + w),
            "you used Ho & Salimans' convention, (1+w)·ε_cond − w·ε_uncond, with this course's w. Here w "
            "is the factor on the difference itself: ε_uncond + w·(ε_cond − ε_uncond), so that w = 1 is the "
            "plain conditional model (their w = 0) and w = 0 the unconditional one."),
    Mistake("difference_not_taken", lambda c, u, w: u + w * c,
            "you added w·ε_cond to ε_uncond without subtracting ε_uncond from it. Guidance scales the "
            "*difference* ε_cond − ε_uncond, the direction that the label adds."),
    Mistake("scaled_cond_only", lambda c, u, w: w * c,
            "you scaled ε_cond by w and left ε_uncond out. Scaling a noise estimate only changes its "
            "size, not its direction: guidance moves along ε_cond − ε_uncond, starting from ε_uncond."),
    Mistake("base_missing", lambda c, u, w: w * (c - u),
            "you returned only w·(ε_cond − ε_uncond), the push of the label. Add it to the unconditional "
            "estimate: ε_uncond + w·(ε_cond − ε_uncond)."),
    Mistake("sign_flipped", lambda c, u, w: _guided(c, u, -w),
            "the sign is flipped: ε_uncond − w·(ε_cond − ε_uncond) pushes *away* from the label. "
            "It is ε_uncond **+** w·(ε_cond − ε_uncond)."),
]


def check_guided_eps(fn: Callable[[Tensor, Tensor, float], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(eps_cond, eps_uncond, w) -> ε̃ = ε_uncond + w·(ε_cond − ε_uncond)``, w a float.

    w = 1 gives the conditional estimate, w = 0 the unconditional one (this course's
    convention; Ho & Salimans 2022 write (1+w)·ε_cond − w·ε_uncond, so their w is ours − 1).
    Tested at a large w, a w in (0, 1), and at w = 1 and w = 0.

    Lesson: notebooks/06_guidance.ipynb
    """
    if not callable(fn):
        raise ValueError(f"pass your function itself to the checker, got {type(fn).__name__}")
    g = _generator(seed)
    ws = [round(1.5 + 6.5 * torch.rand((), generator=g).item(), 2),  # strong guidance, in [1.5, 8]
          round(0.1 + 0.3 * torch.rand((), generator=g).item(), 2), 1.0, 0.0]  # weak; plain conditional; none
    shapes = [(4, 1, 6, 6), (8, 1, 5, 5), (2, 3, 4, 4), (3, 1, 7, 7)]
    inputs = [(torch.randn(shape, generator=g), torch.randn(shape, generator=g), w)
              for shape, w in zip(shapes, ws, strict=True)]

    def on_copies(c: Tensor, u: Tensor, w: float) -> Tensor:  # an in-place answer must not change the inputs
        return fn(c.clone(), u.clone(), w)

    return _check("guided_eps", on_copies, _guided, _GUIDED_MISTAKES, inputs)
