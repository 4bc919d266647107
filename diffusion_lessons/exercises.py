"""Checkers for the lessons' exercises: they compare a learner's function with the
tested reference on fresh random inputs and, when it is wrong, name the likely mistake.

Lesson: notebooks/01_markov_noising.ipynb (first use)

How a checker works, in three steps that can run in two processes:

1. ``make_cases(name, seed)`` draws the inputs: a list of argument tuples. Besides the
   main cases come *probes*: a case repeated (does the function draw its own noise?),
   the same case with other noise, and with another schedule (does it use a global
   schedule instead of its argument?).
2. ``run_cases(name, fn, cases)`` calls the learner's function on copies of each case,
   under a time limit, and records plain data: the result, the exception with the
   learner's own line, which inputs were changed in place.
3. ``judge(name, cases, runs)`` compares the results with the reference, computed in
   float64, within a tolerance scaled to the values and to the result's dtype. If they
   differ it tries the probes, then each *known mistake* (a small variant of the
   reference, e.g. β where √β belongs); the message explains the first that matches.

``check_q_sample(fn)`` and its siblings do all three in the learner's notebook. The
grader (``grading.py``) does step 2 in the submission's process and steps 1 and 3 in its
own, so a submission can neither see the expected answers nor change the verdict:
``encode``/``decode`` turn cases and runs into plain tensors and numbers for the trip.
"""

from __future__ import annotations

import copy
import math
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .continuous import heun_step, mixture_score
from .dit import modulate, patchify
from .noising import markov_step, q_sample
from .schedules import NoiseSchedule, cosine_betas
from .vae import gaussian_kl

__all__ = [
    "EXERCISES",
    "TIME_LIMIT",
    "CheckResult",
    "check_adaln",
    "check_cosine_schedule",
    "check_ddpm_step",
    "check_diffusion_loss",
    "check_flow_matching_loss",
    "check_flow_step",
    "check_gaussian_kl",
    "check_guided_eps",
    "check_heun_step",
    "check_markov_step",
    "check_mixture_score",
    "check_patchify",
    "check_q_sample",
    "check_sinusoidal_embedding",
    "decode",
    "encode",
    "judge",
    "make_cases",
    "run_cases",
]

TIME_LIMIT = 30.0  # seconds a checked function may take for all its cases together
_ICONS = {"passed": "✅", "failed": "❌", "not implemented": "⏳", "error": "💥", "timeout": "⏱️"}
_NOT_IMPLEMENTED = ("not implemented yet: replace the `raise NotImplementedError()` line with your code, then run "
                    "this cell again.")


@dataclass(frozen=True)
class CheckResult:
    """What a checker found. Truthy when the exercise passed.

    Lesson: notebooks/01_markov_noising.ipynb
    """

    exercise: str  # the exercise's name, e.g. "markov_step"
    status: str  # "passed", "failed", "not implemented", "error" or "timeout"
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


# ------------------------------------------------------------------ plain data for the trip between processes
class _Spy:
    """In a case, stands for the model handed to a loss: ``run_cases`` replaces it by a ``_SpyModel``."""

    def __init__(self, answer: Tensor):
        self.answer = answer  # what the model answers, whatever it is asked


@dataclass(frozen=True)
class _Denoiser:
    """In a case, stands for the denoiser D(x; σ) handed to a sampler step: ``run_cases`` replaces it by
    a ``_DenoiserModel``, which answers the same and counts its calls.

        D(x; σ) = (x + σ²·a·tanh(b·x + c)) / (1 + σ²)

    the posterior mean's shape: x itself at σ = 0, a smooth nonlinear guess a·tanh(b·x + c) at large σ.
    Nonlinear in x and dependent on σ, so Euler, Heun and each mistaken step give different answers.
    """

    a: float
    b: float
    c: float

    def __call__(self, x: Tensor, sigma: object) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"the denoiser takes x as a float tensor, got {type(x).__name__}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if s.ndim == 1 and s.numel() == x.shape[0] > 1 and x.ndim > 1:  # one σ per example, as EDM's networks take
            s = s.reshape(-1, *[1] * (x.ndim - 1))
        guess = self.a * torch.tanh(self.b * x + self.c)
        return (x + s * s * guess) / (1 + s * s)


class _DenoiserModel(_Denoiser):
    """The denoiser the learner's function gets: D(x; σ) as ``_Denoiser``, counting its calls."""

    def __init__(self, a: float, b: float, c: float):
        super().__init__(a, b, c)
        object.__setattr__(self, "calls", 0)

    def __call__(self, x: Tensor, sigma: object) -> Tensor:
        object.__setattr__(self, "calls", self.calls + 1)
        return super().__call__(x, sigma)


def encode(obj: object) -> object:
    """Cases or runs as plain data: tensors, numbers, strings, None, lists and dicts only.

    ``torch.save`` writes it and ``torch.load(..., weights_only=True)`` reads it back without
    running any code; ``decode(encode(x))`` gives ``x`` back (tuples as tuples).

    Lesson: notebooks/11_generative_models.ipynb
    """
    if isinstance(obj, NoiseSchedule):
        return {"__schedule__": obj.betas.double().clone(), "name": obj.name}
    if isinstance(obj, _Spy):
        return {"__spy__": obj.answer.clone()}
    if isinstance(obj, _Denoiser):
        return {"__denoiser__": [obj.a, obj.b, obj.c]}
    if isinstance(obj, _Velocity):
        return {"__velocity__": [obj.a, obj.b, obj.c, obj.d]}
    if isinstance(obj, _Sublayer):
        return {"__sublayer__": [obj.a, obj.b, obj.c, obj.d]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(o) for o in obj]}
    if isinstance(obj, list):
        return [encode(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (Tensor, bool, int, float, str)):
        return obj
    raise ValueError(f"cannot encode a {type(obj).__name__}")


def decode(obj: object) -> object:
    """The inverse of ``encode``.

    Lesson: notebooks/11_generative_models.ipynb
    """
    if isinstance(obj, dict):
        if "__schedule__" in obj:
            return NoiseSchedule(obj["__schedule__"], name=str(obj.get("name", "random")))
        if "__spy__" in obj:
            return _Spy(obj["__spy__"])
        if "__denoiser__" in obj:
            return _Denoiser(*(float(v) for v in obj["__denoiser__"]))
        if "__velocity__" in obj:
            return _Velocity(*(float(v) for v in obj["__velocity__"]))
        if "__sublayer__" in obj:
            return _Sublayer(*(float(v) for v in obj["__sublayer__"]))
        if "__tuple__" in obj:
            return tuple(decode(o) for o in obj["__tuple__"])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(o) for o in obj]
    return obj


# ------------------------------------------------------------------ running the learner's function
class CheckTimeout(BaseException):
    """Raised inside a checked function that ran past its time limit (a BaseException, so that a
    learner's ``except Exception`` cannot swallow it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the code inside after ``seconds`` (Unix, main thread; elsewhere no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise CheckTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # an enclosing timer's remaining time, if any
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # re-arm the enclosing timer (e.g. the grader's) with what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


_OWN_FILES = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(torch.__file__) + os.sep)


def _learner_line(error: BaseException) -> str:
    """`ZeroDivisionError: division by zero, at line 3: `return x / 0``: the learner's frame, not ours."""
    frames = traceback.extract_tb(error.__traceback__)[1:]  # [0] is run_cases' own call of fn
    theirs = [f for f in frames if not f.filename.startswith(_OWN_FILES) and "site-packages" not in f.filename]
    where = (theirs or frames or [None])[-1]
    text = f"{type(error).__name__}: {error}".strip()
    if where is None:
        return text
    return f"{text}, at line {where.lineno}" + (f": `{where.line.strip()}`" if where.line else "")


def _as_tensor(value: object) -> Tensor | None:
    """A result as a detached CPU tensor (numpy arrays and numbers accepted), else None."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = torch.as_tensor(value)
    except Exception:
        return None
    return out.clone() if out.dtype != torch.bool else None


class _SpyModel(torch.nn.Module):
    """Stands in for ε_θ: records what it is called with and answers a fixed random tensor."""

    def __init__(self, answer: Tensor):
        super().__init__()
        self.answer = answer.clone().requires_grad_(True)  # a leaf: its .grad is ∂loss/∂ε_θ
        self.calls: list[dict] = []

    def forward(self, x: Tensor, t: object = None, y: object = None) -> Tensor:
        self.calls.append({"x": _as_tensor(x), "t": _as_tensor(t) if isinstance(t, Tensor) else None,
                           "t_type": type(t).__name__})
        answer = self.answer.to(x.dtype) if isinstance(x, Tensor) and x.is_floating_point() else self.answer
        return answer.clone() if answer is self.answer else answer  # a new tensor, as a network's output: under
        # torch.no_grad() it carries no gradient (the leaf itself would, and a no_grad loss would pass)


def _fresh(arg: object) -> object:
    """A private copy of one argument, so the learner's function cannot change the case itself."""
    if isinstance(arg, Tensor):
        return arg.clone()
    if isinstance(arg, NoiseSchedule):
        return copy.deepcopy(arg)
    if isinstance(arg, _Spy):
        return _SpyModel(arg.answer)
    if isinstance(arg, _Denoiser):
        return _DenoiserModel(arg.a, arg.b, arg.c)
    if isinstance(arg, _Velocity):
        return _VelocityModel(arg.a, arg.b, arg.c, arg.d)
    if isinstance(arg, _Sublayer):
        return _SublayerModel(arg.a, arg.b, arg.c, arg.d)
    return arg


def _changed(before: tuple, after: tuple) -> list[int]:
    """Positions of the arguments whose values the call changed in place."""
    changed = []
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if isinstance(a, Tensor):
            same = a.shape == b.shape and torch.equal(a, b)
        elif isinstance(a, NoiseSchedule):
            same = all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("betas", "alphas", "alpha_bars"))
        else:
            continue
        if not same:
            changed.append(i)
    return changed


def run_cases(name: str, fn: Callable, cases: Sequence[tuple], seconds: float | None = None) -> list[dict]:
    """Call ``fn`` on a copy of each case; return what happened, as plain data (one dict per case).

    Each dict has ``status`` ("ok", "not implemented", "error" or "timeout"), ``error`` (the
    exception, with the learner's own line), ``result`` (a tensor, or None), ``returned`` (the
    type name of what fn returned) and ``changed`` (positions of arguments changed in place).
    For the loss, also ``calls`` (what the model was called with), ``requires_grad`` and
    ``grad`` (∂loss/∂ε_θ after ``loss.backward()``); for a step handed a denoiser or a velocity
    field, and a residual branch handed a sublayer, ``calls`` (how many times it was called). Runs
    stop at the first exception or at the time limit (``seconds``, all cases together; default
    ``TIME_LIMIT``).

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    runs: list[dict] = []
    with torch.random.fork_rng(devices=[]):  # the learner's draws do not move the lesson's seeded RNG
        try:
            with _time_limit(TIME_LIMIT if seconds is None else seconds):
                for case in cases:
                    run = {"status": "ok", "error": "", "result": None, "returned": "", "changed": []}
                    runs.append(run)
                    args = tuple(_fresh(a) for a in case)
                    try:
                        value = fn(*args)
                        if isinstance(value, Tensor) and value.requires_grad and value.numel() == 1:
                            value.backward()  # the loss must train the model: does a gradient reach it?
                    except NotImplementedError:
                        run["status"] = "not implemented"
                        break
                    except Exception as e:  # a learner's bug: report it, don't crash the lesson
                        run["status"], run["error"] = "error", _learner_line(e)
                        break
                    run["returned"] = type(value).__name__
                    run["result"] = _as_tensor(value)
                    run["changed"] = _changed(case, args)
                    spies = [a for a in args if isinstance(a, _SpyModel)]
                    if spies:
                        run["calls"] = spies[0].calls
                        run["requires_grad"] = bool(isinstance(value, Tensor) and value.requires_grad)
                        grad = spies[0].answer.grad
                        run["grad"] = None if grad is None else grad.detach().clone()
                    denoisers = [a for a in args if isinstance(a, _DenoiserModel)]
                    if denoisers:
                        run["calls"] = denoisers[0].calls  # how often fn asked the denoiser
                    velocities = [a for a in args if isinstance(a, _VelocityModel)]
                    if velocities:
                        run["calls"] = velocities[0].calls  # how often fn asked the velocity field
                    sublayers = [a for a in args if isinstance(a, _SublayerModel)]
                    if sublayers:
                        run["calls"] = sublayers[0].calls  # how often fn called the sublayer
        except CheckTimeout:
            runs[-1]["status"] = "timeout"
    return runs


# ------------------------------------------------------------------ judging the runs
def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps if dtype.is_floating_point else 0.0


_EPS32 = torch.finfo(torch.float32).eps


def _tolerance(target: Tensor, got_dtype: torch.dtype, scale: float, sensitivity: Tensor | float) -> Tensor:
    """How far a right answer may be from ``target`` (float64), element by element.

    - ``32·ε₃₂·(scale + |target|)``: a float32 computation, with ``scale`` the size of the
      intermediate values (e.g. the angles t·ω of the embedding, up to 1000);
    - ``8·sensitivity``: where the answer is ill-conditioned, the reference's own float32 error
      (|float64 reference − float32 reference|), e.g. the last betas of the cosine schedule;
    - ``2·ε(dtype)·|target|``: the result rounded to its own dtype (float16, bfloat16) at the end.
    """
    return 32 * _EPS32 * (scale + target.abs()) + 8 * sensitivity + 2 * _eps(got_dtype) * target.abs()


def _close(got: Tensor, target: Tensor, scale: float, sensitivity: Tensor | float = 0.0) -> bool:
    if got.shape != target.shape:
        return False
    diff = (got.double() - target.double()).abs()
    return bool((diff <= _tolerance(target.double(), got.dtype, scale, sensitivity)).all())


def _describe(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(f"tensor{tuple(a.shape)}")
        elif isinstance(a, NoiseSchedule):
            parts.append(f"a {a.name} schedule with T={a.T}")
        elif isinstance(a, _Spy):
            parts.append("model")
        elif isinstance(a, _Denoiser):
            parts.append("denoiser")
        elif isinstance(a, _Velocity):
            parts.append("velocity")
        elif isinstance(a, _Sublayer):
            parts.append("sublayer")
        else:
            parts.append(repr(a))
    return "(" + ", ".join(parts) + ")"


def _run_problem(exercise: str, run: object, n_cases: int) -> CheckResult | None:
    """The verdict for a run that did not return normally; None if it did."""
    if not isinstance(run, dict) or run.get("status") not in ("ok", "not implemented", "error", "timeout"):
        return CheckResult(exercise, "failed", "the function's results could not be read back.")
    if run["status"] == "not implemented":
        return CheckResult(exercise, "not implemented", _NOT_IMPLEMENTED)
    if run["status"] == "timeout":
        return CheckResult(exercise, "timeout", f"your function took longer than {TIME_LIMIT:g} s for {n_cases} "
                           "small inputs: is there a loop that never ends?")
    if run["status"] == "error":
        return CheckResult(exercise, "error", f"your function raised {str(run.get('error'))[:500]}.")
    return None


def _result_of(exercise: str, run: dict, expected: Tensor, args: tuple) -> CheckResult | Tensor:
    """The run's result tensor, or the verdict on what is wrong with its type or shape."""
    got = run.get("result")
    if not isinstance(got, Tensor):
        returned = str(run.get("returned", ""))[:40]
        if returned in ("", "NoneType"):
            return CheckResult(exercise, "failed", "your function returned None: did you forget `return`?")
        return CheckResult(exercise, "failed", f"expected a tensor, got {returned}.")
    if not (got.is_floating_point() or got.dtype in (torch.int32, torch.int64)):
        return CheckResult(exercise, "failed", f"expected a float tensor, got dtype {got.dtype}.")
    if got.shape != expected.shape:
        return CheckResult(exercise, "failed", f"expected a result of shape {tuple(expected.shape)}, "
                           f"got {tuple(got.shape)} for inputs {_describe(args)}.", "wrong_shape")
    if not torch.isfinite(got.double()).all() and torch.isfinite(expected).all():
        return CheckResult(exercise, "failed", "your result contains NaN or inf: a square root of a negative "
                           "number (e.g. √(ᾱ-1) for √(1-ᾱ)) or a division by zero?", "not_finite")
    return got


_ARG_NAMES = {"markov_step": ("x_prev", "t", "s", "noise"), "q_sample": ("x0", "t", "s", "noise"),
              "ddpm_step": ("eps", "t", "x_t", "s", "noise"), "guided_eps": ("eps_cond", "eps_uncond", "w"),
              "sinusoidal_embedding": ("t", "dim"), "cosine_schedule": ("T", "s"),
              "diffusion_loss": ("model", "x0", "s"), "mixture_score": ("x", "weights", "means", "covs"),
              "heun_step": ("denoiser", "x", "sigma", "sigma_next"),
              "flow_matching_loss": ("model", "x1", "noise", "t"),
              "flow_step": ("velocity", "x", "t", "t_next", "method"), "patchify": ("x", "p"),
              "adaln": ("x", "shift", "scale", "gate", "sublayer"), "gaussian_kl": ("mu", "logvar")}


@dataclass(frozen=True)
class _Exercise:
    """One exercise: its inputs, its float64 reference, and what its mistakes look like."""

    name: str
    make: Callable[[torch.Generator], list[tuple]]  # the main cases (a probe is built from the first)
    reference: Callable[..., Tensor] | None = None  # float64, on a case's arguments
    reference32: Callable[..., Tensor] | None = None  # the same in float32: how ill-conditioned each value is
    sensitivity: Callable[..., Tensor] | None = None  # or that float32 error bound worked out by hand
    scale: Callable[[tuple], float] = lambda case: 1.0  # the size of the intermediate values, for the tolerance
    mistakes: Sequence[Mistake] = ()
    probes: tuple[str, ...] = ()  # "repeat", "noise", "schedule", or an argument to redraw: extra cases
    redraw: Callable[[str, tuple, torch.Generator], object] | None = None  # a new value for the argument named
    probes_first: bool = False  # the probes right after the first case, not after all: they run even if a later
    # case raises (run_cases stops at the first exception), e.g. a global mixture of another dimension
    passed: str = ""  # the message on success; {n} is the number of cases
    diagnose: Callable[[tuple, Tensor, Tensor], CheckResult | None] | None = None  # a special diagnosis, first
    judge: Callable[[list[tuple], list], CheckResult] | None = None  # a judge of its own, instead of the above


def _probe_cases(ex: _Exercise, first: tuple, g: torch.Generator) -> list[tuple]:
    out = []
    names = _ARG_NAMES[ex.name]
    for probe in ex.probes:
        case = list(first)
        if probe == "noise":
            i = names.index("noise")
            case[i] = torch.randn(first[i].shape, generator=g)
        elif probe == "schedule":  # small betas, where the main cases' are large: ᾱ_t differs a lot
            i = names.index("s")
            case[i] = _random_schedule(g, first[i].T, 0.001, 0.02)
        elif probe in names and ex.redraw is not None:  # does the function read this argument at all?
            case[names.index(probe)] = ex.redraw(probe, first, g)
        out.append(tuple(case))
    return out


def make_cases(name: str, seed: int | None = None) -> list[tuple]:
    """The inputs a checker hands the learner's function: the main cases, then the probes.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    ex = EXERCISES[name]
    g = _generator(seed)
    main = ex.make(g)
    probes = _probe_cases(ex, main[0], g)
    return main[:1] + probes + main[1:] if ex.probes_first else main + probes


def _reference(ex: _Exercise, case: tuple) -> tuple[Tensor, Tensor | float]:
    expected = ex.reference(*case).double()
    if ex.sensitivity is not None:
        return expected, ex.sensitivity(*case)
    if ex.reference32 is None:
        return expected, 0.0
    return expected, (expected - ex.reference32(*case).double()).abs()


def _judge_values(ex: _Exercise, cases: list[tuple], runs: list) -> CheckResult:
    n_main = len(cases) - len(ex.probes)
    results: list[Tensor] = []
    for k, (case, run) in enumerate(zip(cases, runs, strict=False)):
        problem = _run_problem(ex.name, run, len(cases))
        if problem is not None:
            return problem
        expected, sensitivity = _reference(ex, case)
        got = _result_of(ex.name, run, expected, case)
        if isinstance(got, CheckResult):
            return got
        changed = run.get("changed") or []
        if changed:
            names = _ARG_NAMES[ex.name]
            which = ", ".join(f"`{names[i]}`" for i in changed if isinstance(i, int) and 0 <= i < len(names))
            return CheckResult(ex.name, "failed", f"your function changed its input {which} in place (e.g. "
                               "`x *= ...`, `x += ...` or `x.mul_(...)`). The caller still needs its tensors: "
                               "compute the result into a new tensor (`y = x * ...`).", "changed_input")
        results.append(got)
        scale = ex.scale(case)
        if _close(got, expected, scale, sensitivity):
            continue
        found = _diagnose(ex, cases, runs, k, got, expected, scale, sensitivity, n_main)
        if found is not None:
            return found
        err = (got.double() - expected).abs().max().item()
        return CheckResult(ex.name, "failed", f"your result differs from the reference by up to {err:.3g} for "
                           f"inputs {_describe(case)}, and it matches none of the mistakes this checker knows. "
                           "Compare your code with the formula term by term.")
    if len(runs) != len(cases):
        return CheckResult(ex.name, "failed", "the function's results could not be read back.")
    return CheckResult(ex.name, "passed", ex.passed.format(n=n_main) if ex.passed else
                       f"correct on {n_main} random tests.")


def _probe_result(ex: _Exercise, cases: list[tuple], runs: list, probe: str) -> tuple[tuple, Tensor] | None:
    """The probe's case and the learner's result on it, if it ran and returned a tensor."""
    if probe not in ex.probes:
        return None
    k = (1 if ex.probes_first else len(cases) - len(ex.probes)) + ex.probes.index(probe)
    run = runs[k] if k < len(runs) else None
    if not isinstance(run, dict) or run.get("status") != "ok" or not isinstance(run.get("result"), Tensor):
        return None
    return cases[k], run["result"]


def _diagnose(ex: _Exercise, cases: list[tuple], runs: list, k: int, got: Tensor, expected: Tensor, scale: float,
              sensitivity: Tensor | float, n_main: int) -> CheckResult | None:
    """Why result ``k`` is wrong: the repeat and schedule probes, a special diagnosis, the known mistakes,
    then the probes that redraw an argument and the noise probe (a step that adds no noise at all, or a
    score that leaves out the weights, is better named by its mistake)."""
    first = runs[0].get("result") if isinstance(runs[0], dict) else None
    if k == 0 and isinstance(first, Tensor):
        repeat = _probe_result(ex, cases, runs, "repeat")
        if repeat is not None and not _close(repeat[1], first.double(), scale):
            return CheckResult(ex.name, "failed", "called twice with the same inputs, your function gave two "
                               "different results: it draws its own random numbers (e.g. `torch.randn_like`). "
                               "Use the `noise` argument you are given, so the result is exactly the one asked "
                               "for.", "own_noise")
        other = _probe_result(ex, cases, runs, "schedule")
        if other is not None and _close(other[1], first.double(), scale) \
                and not _close(_reference(ex, other[0])[0], expected, scale):
            return CheckResult(ex.name, "failed", "your result is the same for two different schedules: your "
                               "function ignores its argument `s` and uses another schedule, probably a global "
                               "one from the lesson (`s = dl.NoiseSchedule.linear()`). Read β, α and ᾱ from "
                               "the `s` it is given.", "ignores_schedule")
    special = ex.diagnose(cases[k], got, expected) if ex.diagnose is not None else None
    if special is not None:
        return special
    for m in ex.mistakes:
        wrong = _try(m.fn, cases[k])
        if wrong is not None and _close(got, wrong.double(), scale, sensitivity):
            return CheckResult(ex.name, "failed", m.message, m.name)
    ignored = _ignored_arguments(ex, cases, runs, expected, scale) if k == 0 and isinstance(first, Tensor) else []
    if ignored:
        probed = [p for p in ex.probes if p in _ARG_NAMES[ex.name]]
        return CheckResult(ex.name, "failed", _IGNORED_ARGUMENTS.format(
            names=_listed(ignored, "or"), verb="changes" if len(ignored) == 1 else "change",
            all=_listed(probed, "and")), "ignores_arguments")
    other = _probe_result(ex, cases, runs, "noise") if k == 0 and isinstance(first, Tensor) else None
    if other is not None and _close(other[1], first.double(), scale) \
            and not _close(_reference(ex, other[0])[0], expected, scale):
        return CheckResult(ex.name, "failed", "your result does not change when the `noise` argument does: your "
                           "function ignores it (it draws or makes its own noise). Use the `noise` you are given.",
                           "own_noise")
    return None


_IGNORED_ARGUMENTS = ("your result is the same when {names} {verb}: your function uses values of its own (a "
                      "global from the lesson?) instead of its arguments. Compute with the {all} it is given.")


def _listed(names: Sequence[str], word: str) -> str:
    """`a`, `b` and `c` (or `a`, `b` or `c`)."""
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {word} " + quoted[-1]


def _ignored_arguments(ex: _Exercise, cases: list[tuple], runs: list, expected: Tensor, scale: float) -> list[str]:
    """The redrawn arguments whose probe gave the first case's result again, though the reference changed."""
    first = runs[0]["result"].double()
    found = []
    for probe in ex.probes:
        other = _probe_result(ex, cases, runs, probe) if probe in _ARG_NAMES[ex.name] else None
        if other is not None and _close(other[1], first, scale) \
                and not _close(_reference(ex, other[0])[0], expected, scale):
            found.append(probe)
    return found


def _try(fn: Callable[..., Tensor], args: tuple) -> Tensor | None:
    try:
        return torch.as_tensor(fn(*args))
    except Exception:  # a mistake that cannot be evaluated on these inputs matches nothing
        return None


def judge(name: str, cases: list[tuple], runs: object) -> CheckResult:
    """The verdict on ``runs`` (from ``run_cases``) for ``cases`` (from ``make_cases``).

    Pure and defensive: runs that come from another process may be malformed or forged; they
    fail, and never make the checker raise.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    if not isinstance(runs, list) or not runs or len(runs) > len(cases):
        return CheckResult(name, "failed", "the function's results could not be read back.")
    ex = EXERCISES[name]
    try:
        if ex.judge is not None:
            return ex.judge(list(cases), runs)
        return _judge_values(ex, list(cases), runs)
    except Exception as e:  # a forged run of an unexpected shape: a failure, never a crash
        return CheckResult(name, "failed", f"the function's results could not be read back ({type(e).__name__}).")


def _check(name: str, fn: Callable, seed: int | None) -> CheckResult:
    if not callable(fn):
        raise ValueError(f"pass your function itself to the checker, got {type(fn).__name__}")
    cases = make_cases(name, seed)
    return judge(name, cases, run_cases(name, fn, cases))


def _generator(seed: int | None) -> torch.Generator:
    """Fresh random inputs each call, from the OS, so a check never disturbs the lesson's seeded RNG."""
    return torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)


def _random_schedule(g: torch.Generator, T: int, low: float = 0.05, high: float = 0.55) -> NoiseSchedule:
    """Large, uneven betas, so that every mistake changes the answer visibly."""
    betas = low + (high - low) * torch.rand(T, generator=g, dtype=torch.float64)
    return NoiseSchedule(betas.float().double(), name="random")  # float32 values: encode/decode is exact


def _coef(values: Tensor, t: int) -> float:
    return values[t].item()


def _size(*tensors: Tensor) -> float:
    return max(t.abs().max().item() for t in tensors)


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


def _noising_cases(g: torch.Generator) -> list[tuple]:
    """(x, t, s, noise) tuples: x of a random shape, t an int in [1, T-2]."""
    out = []
    for shape in [(16, 2), (4, 1, 5, 5), (8, 3, 4, 4), (32, 2)]:
        T = int(torch.randint(10, 40, (), generator=g))
        s = _random_schedule(g, T)
        t = int(torch.randint(1, T - 1, (), generator=g))
        out.append((torch.randn(shape, generator=g), t, s, torch.randn(shape, generator=g)))
    return out


def _noising_scale(case: tuple) -> float:
    return _size(case[0], case[3])


def check_markov_step(fn: Callable[[Tensor, int, NoiseSchedule, Tensor], Tensor],
                      seed: int | None = None) -> CheckResult:
    """Check ``fn(x_prev, t, s, noise) -> x_t``, one step of q(x_t | x_{t-1}), t an int.

    Lesson: notebooks/01_markov_noising.ipynb
    """
    return _check("markov_step", fn, seed)


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
    return _check("q_sample", fn, seed)


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


def _cosine_sensitivity(T: int, s: float) -> Tensor:
    """How far a float32 computation of the cosine betas may stray, element by element.

    β_t = 1 - f(t)/f(t-1) with f = cos²θ: an error δ in the angle θ changes log f by 2·tanθ·δ, and
    θ carries a few float32 roundings, δ ≈ ε₃₂·θ. Near t = T, θ → π/2 and tanθ grows like T, so the
    last unclipped betas are the least exact; a clipped β (0.999) is exact.
    """
    theta = (torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * (math.pi / 2)
    g = 2 * _EPS32 * (1 + theta * theta.tan().abs())  # relative float32 error of f(t)
    betas = cosine_betas(T, s)
    return torch.where(betas >= 0.999, 0.0, (1 - betas) * (g[1:] + g[:-1]))


def _cosine_cases(g: torch.Generator) -> list[tuple]:
    Ts = [1000, int(torch.randint(5, 60, (), generator=g)), int(torch.randint(100, 2000, (), generator=g))]
    offsets = [0.008, 0.008, 0.02 + 0.1 * torch.rand((), generator=g).item()]
    return list(zip(Ts, offsets, strict=True))


def check_cosine_schedule(fn: Callable[[int, float], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(T, s) -> betas`` of shape (T,), the cosine schedule clipped at 0.999.

    Lesson: notebooks/02_noise_schedules.ipynb
    """
    return _check("cosine_schedule", fn, seed)


# ------------------------------------------------------ sinusoidal embedding
def _embedding(t: Tensor, dim: int, period: float = 10_000.0, denom: str = "half", sign: float = -1.0,
               order: str = "sin_cos", use_t: bool = True) -> Tensor:
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(sign * math.log(period) * i / {"half": half, "dim": dim, "half-1": half - 1}[denom])
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
    Mistake("half_minus_one", lambda t, d: _embedding(t, d, denom="half-1"),
            "the exponent is divided by dim/2 - 1, as in the original DDPM code (a difference of no "
            "consequence in a network); this course divides by dim/2, the number of frequencies: "
            "ω_i = 10000^(-i/(dim/2)), as in the Transformer paper's 2i/d."),
    Mistake("t_not_multiplied", lambda t, d: _embedding(t, d, use_t=False),
            "the angles do not depend on t: multiply each frequency by the step, angle = t · ω_i."),
    Mistake("period_1000", lambda t, d: _embedding(t, d, period=1000.0),
            "the longest period is 10000, not 1000: ω_i = 10000^(-i/(dim/2))."),
]


def _embedding_cases(g: torch.Generator) -> list[tuple]:
    return [(torch.randint(0, 1000, (8,), generator=g), dim) for dim in (16, 32, 128)]


def check_sinusoidal_embedding(fn: Callable[[Tensor, int], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(t, dim) -> (B, dim)``: sines then cosines of t · ω_i, ω_i = 10000^(-i/(dim/2)).

    Lesson: notebooks/03_unet.ipynb
    """
    return _check("sinusoidal_embedding", fn, seed)


# ------------------------------------------------------------ diffusion loss
def _loss_result(status: str, message: str, mistake: str | None = None) -> CheckResult:
    return CheckResult("diffusion_loss", status, message, mistake)


def _loss_cases(g: torch.Generator) -> list[tuple]:
    """(model, x0, s): DDPM's schedule with a batch of 64 (a t drawn from [0, B) shows), then a schedule of
    only T = 10 steps with a batch of 256 (every step drawn, so t from [1, T] or a fixed 1000 shows, every run)."""
    from .schedules import linear_betas

    out = []
    for T, B, size in [(1000, 64, 8), (10, 256, 4)]:
        betas = linear_betas(1000) if T == 1000 else linear_betas(T, 0.02, 0.5)
        s = NoiseSchedule(betas.float().double(), name="linear")
        x0 = torch.rand(B, 1, size, size, generator=g) * 2 - 1  # (B, 1, size, size) images in [-1, 1]
        out.append((_Spy(torch.randn(x0.shape, generator=g)), x0, s))
    return out


def _t_range_problem(t: Tensor, s: NoiseSchedule, batch: int) -> str | None:
    """What is wrong with the range the steps t were drawn from, or None."""
    lo, hi = int(t.min()), int(t.max())
    if lo < 0:
        return f"t must be in [0, {s.T - 1}], got {lo}: use `torch.randint(0, s.T, (B,))`."
    if hi == s.T:
        return (f"t reaches T = {s.T}: steps are 0-based, from 0 to T-1. `torch.randint(0, s.T, (B,))` already "
                "leaves out its upper end; do not add 1.")
    if (hi > s.T and hi < batch) or (batch < s.T and hi < batch):
        return (f"every t is below {batch}, the batch size: t looks drawn from [0, B). Draw it from all the "
                f"steps: `torch.randint(0, s.T, (B,))`, here with s.T = {s.T}.")
    if hi > s.T:
        return (f"t reaches {hi}, but this schedule has only T = {s.T} steps: draw t with `s.T`, not a fixed "
                "number like 1000 (the checker hands your function schedules of other lengths).")
    if batch > 20 * s.T and len(t.unique()) < s.T:
        missing = sorted(set(range(s.T)) - set(t.tolist()))
        return (f"with {batch} images and T = {s.T} steps, t never took the values {missing[:5]}: draw it from "
                "every step, 0 to T-1, with `torch.randint(0, s.T, (B,))`.")
    return None


def _loss_run_problem(run: dict, result: Callable[..., CheckResult]) -> CheckResult | None:
    """What is wrong with what a loss function returned and how often it called the model (both loss checkers),
    or None; ``result`` makes the exercise's CheckResult."""
    loss = run.get("result")
    returned = str(run.get("returned", ""))[:40]
    if returned in ("float", "int", "ndarray", "float64", "float32"):
        return result("failed", f"your function returned a {returned}, not a tensor that remembers how it "
                      "was computed: `loss.item()` (or numpy) cuts the loss off from the model, and "
                      "`loss.backward()` cannot train it. Return the tensor itself.", "not_differentiable")
    if not isinstance(loss, Tensor):
        if returned in ("", "NoneType"):
            return result("failed", "your function returned None: did you forget `return`?")
        return result("failed", f"expected the loss as a tensor, got {returned}.")
    if loss.numel() != 1:
        return result("failed", f"the loss must be one number (a mean over the batch), got shape "
                      f"{tuple(loss.shape)}: use `F.mse_loss` or `.mean()`.")
    calls = run.get("calls")
    if not isinstance(calls, list) or len(calls) != 1:
        return result("failed", f"call the model exactly once, got {len(calls or [])} calls.")
    return None


def _loss_verdict(case: tuple, run: dict) -> CheckResult | None:
    """What is wrong with one run of the learner's loss, or None if it is right."""
    spy, x0, s = case
    problem = _loss_run_problem(run, _loss_result)
    if problem is not None:
        return problem
    loss, calls = run["result"], run["calls"]
    call = calls[0]
    x_in, t, t_type = call.get("x"), call.get("t"), str(call.get("t_type", ""))[:40]
    if t_type == "NoneType":
        return _loss_result("failed", "the model never saw t: call `model(x_t, t)`. Without the step, the "
                            "network cannot know how much noise to remove.", "t_not_passed")
    B = x0.shape[0]
    if not isinstance(t, Tensor) or t.shape != (B,) or t.is_floating_point() or t.dtype == torch.bool:
        shape = tuple(t.shape) if isinstance(t, Tensor) else ""
        return _loss_result("failed", f"t must be a LongTensor of shape ({B},), one step per image, got "
                            f"{t_type} {shape}.", "t_shape")
    problem = _t_range_problem(t, s, B)
    if problem is not None:
        return _loss_result("failed", problem, "t_range")
    if (t == t[0]).all():
        return _loss_result("failed", "every image got the same t. Draw one step per image, "
                            "`torch.randint(0, s.T, (B,))`, so each batch trains all noise levels.", "constant_t")
    if not isinstance(x_in, Tensor) or x_in.shape != x0.shape:
        return _loss_result("failed", f"the model input must be shaped like x0 {tuple(x0.shape)}, got "
                            f"{tuple(getattr(x_in, 'shape', ()))}.")
    if torch.allclose(x_in.double(), x0.double()):
        return _loss_result("failed", "the model was fed the clean image x0. Feed it the noised x_t = "
                            "q_sample(x0, t, s, noise): the network learns to find the noise in x_t.", "clean_input")
    if not torch.isfinite(loss.double()).all() or not torch.isfinite(x_in.double()).all():
        return _loss_result("failed", "your loss (or the x_t you fed the model) contains NaN or inf: a square root "
                            "of a negative number (e.g. √(ᾱ-1) for √(1-ᾱ)) or a division by zero?", "not_finite")
    if not run.get("requires_grad"):
        return _loss_result("failed", "your loss carries no gradient, so training could not change the model: "
                            "was it computed under `torch.no_grad()`, or `.detach()`ed? Return the loss as "
                            "computed from `model(x_t, t)`.", "not_differentiable")
    grad = run.get("grad")
    if not isinstance(grad, Tensor) or grad.shape != x0.shape:
        return _loss_result("failed", "no gradient reaches the model's output: the loss must be computed from "
                            "`model(x_t, t)` itself.", "not_differentiable")
    return _loss_targets(x0, s, spy.answer.double(), x_in.double(), t, float(loss.double()), grad.double())


def _loss_targets(x0: Tensor, s: NoiseSchedule, pred: Tensor, x_in: Tensor, t: Tensor, loss: float,
                  grad: Tensor) -> CheckResult | None:
    """Which noise made x_in, and which target the loss compares the model's output with."""
    def implied_noise(signal: Tensor, noise_scale: Tensor) -> Tensor:
        # solve x_in = signal·x0 + noise_scale·ε for ε
        shape = (-1,) + (1,) * (x0.ndim - 1)
        return (x_in - signal.reshape(shape) * x0.double()) / noise_scale.reshape(shape)

    def standard_normal(e: Tensor) -> bool:
        return bool(e.mean().abs() < 0.1 and (e.std() - 1).abs() < 0.1)

    a, alphas = s.alpha_bars.double(), s.alphas.double()
    hypotheses = [  # (name, ε that fn must have drawn if this is what it did, message or None if right)
        ("right", implied_noise(a[t].sqrt(), (1 - a[t]).sqrt()), None),
        ("reversed_t", implied_noise(a[s.T - 1 - t].sqrt(), (1 - a[s.T - 1 - t]).sqrt()),
         "the noise level runs the wrong way: x_t was made with ᾱ[T-1-t], so a small t gets almost pure "
         "noise and a large t almost none, while the model is told t. Use `s.alpha_bars[t]`."),
        ("noise_and_data_swapped", implied_noise((1 - a[t]).sqrt(), a[t].sqrt()),
         "noise and image are swapped in x_t: it must be √ᾱ_t·x0 + √(1-ᾱ_t)·ε (check the order of "
         "the arguments of q_sample: `q_sample(x0, t, s, noise)`)."),
        ("alpha_for_alpha_bar", implied_noise(alphas[t].sqrt(), (1 - alphas[t]).sqrt()),
         "x_t was made with α_t (one step) instead of ᾱ_t: use `dl.q_sample`, which jumps to step t."),
    ]
    for other in (NoiseSchedule.linear(), NoiseSchedule.cosine()):  # the lessons' global schedules
        if other.T > int(t.max()) and not torch.allclose(other.alpha_bars[:s.T], s.alpha_bars):
            b = other.alpha_bars.double()
            hypotheses.append(("ignores_schedule", implied_noise(b[t].sqrt(), (1 - b[t]).sqrt()),
                               f"x_t was made with another schedule than the argument `s` (the {other.name} "
                               f"schedule with T = {other.T}, probably a global one from the lesson): read ᾱ from "
                               "the `s` your function is given."))
    n = pred.numel()
    for name, eps, message in hypotheses:
        if not torch.isfinite(eps).all() or not standard_normal(eps):
            continue  # fn did not draw a standard normal under this hypothesis
        # A target matches when the loss is the mean squared error to it *and* its gradient is that
        # error's, 2·(ε_θ − target)/n: the value alone can match a wrong target by chance.
        target = pred - grad * n / 2  # the target of a mean squared error, read off its gradient
        targets = {"eps": eps, "x0": x0.double(), "x_t": x_in}
        matches = [k for k, v in targets.items()
                   if math.isclose(F.mse_loss(pred, v).item(), loss, rel_tol=1e-3, abs_tol=1e-6)
                   and torch.allclose(target, v, rtol=1e-3, atol=1e-3)]
        if name == "right" and matches == ["eps"]:
            return None
        if message is not None:
            return _loss_result("failed", message, name)
        if "x0" in matches:
            return _loss_result("failed", "the target is the clean image x0. In the ε-objective the network "
                                "predicts the *noise* ε that was added: compare its output with `noise`.",
                                "target_x0")
        if "x_t" in matches:
            return _loss_result("failed", "the target is x_t, the network's own input. Compare its output with "
                                "the noise ε that made x_t.", "target_x_t")
        if standard_normal(target) and math.isclose(F.mse_loss(pred, target).item(), loss, rel_tol=1e-3):
            return _loss_result("failed", "the target is a fresh standard normal, not the noise that made x_t: "
                                "draw ε once, make x_t with it, and compare the model's output with that same ε "
                                "(`noise = torch.randn_like(x0)` before both).", "target_noise_mismatch")
        return _loss_result("failed", "x_t is made right, but the loss is not the mean squared error between "
                            "the model's output and the noise: use `F.mse_loss(model(x_t, t), noise)`.")
    return _loss_result("failed", "the model's input is not x0 noised with a standard normal ε at the steps t "
                        "it was given. Make it with `dl.q_sample(x0, t, s, noise)`, noise = torch.randn_like(x0).")


def _judge_loss(cases: list[tuple], runs: list) -> CheckResult:
    for case, run in zip(cases, runs, strict=False):
        problem = _run_problem("diffusion_loss", run, len(cases))
        if problem is not None and problem.status == "error" and f"must be in [0, {case[2].T - 1}]" in problem.message:
            return _loss_result("error", problem.message + f" This schedule has T = {case[2].T} steps: draw t with "
                                "`torch.randint(0, s.T, (B,))`, not a fixed 1000 (the checker hands your function "
                                "schedules of other lengths).", "t_range")
        if problem is not None:
            return problem
        verdict = _loss_verdict(case, run)
        if verdict is not None:
            return verdict
    if len(runs) != len(cases):
        return _loss_result("failed", "the function's results could not be read back.")
    return _loss_result("passed", "correct: random t per image, x_t from q_sample, and the noise as target.")


def check_diffusion_loss(fn: Callable[[torch.nn.Module, Tensor, NoiseSchedule], Tensor],
                         seed: int | None = None) -> CheckResult:
    """Check ``fn(model, x0, s) -> loss``, the DDPM objective with its own random t and ε.

    The checker hands ``fn`` a stand-in model that records its inputs and answers a fixed
    tensor. From what the model saw, it works out which noise ``fn`` drew; from the loss and
    its gradient, which target ``fn`` used. A second schedule of only 10 steps, with a batch
    of 256, shows a t drawn from the wrong range in every run.

    Lesson: notebooks/04_training.ipynb
    """
    return _check("diffusion_loss", fn, seed)


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


_ONE_BASED_GUARD = (
    "at t = 1 your step adds no noise: that is the paper's `if t > 1` guard, written for its 1-based steps "
    "(the paper's t = 1 is the last step). Here steps are 0-based: the last step is t = 0, and t = 1 still "
    "adds σ_1·z. Use `if t > 0` (or no guard at all: β̃_0 = 0)."
)


def _ddpm_step_cases(g: torch.Generator) -> list[tuple]:
    """(eps, t, x_t, s, noise) tuples: two with t in [2, T-2], then t = 1 and t = 0 (the last step)."""
    out = []
    for n, shape in enumerate([(16, 2), (4, 1, 5, 5), (8, 3, 4, 4), (6, 1, 4, 4)]):
        T = int(torch.randint(10, 30, (), generator=g))
        s = _random_schedule(g, T, 0.02, 0.30)
        t = [int(torch.randint(2, T - 1, (), generator=g)), int(torch.randint(2, T - 1, (), generator=g)), 1, 0][n]
        x, eps, noise = (torch.randn(shape, generator=g) for _ in range(3))
        out.append((eps, t, x, s, noise))
    return out


def _ddpm_reference(dtype: torch.dtype) -> Callable[..., Tensor]:
    from .sampling import ddpm_step

    def reference(eps: Tensor, t: int, x: Tensor, s: NoiseSchedule, z: Tensor) -> Tensor:
        return ddpm_step(eps.to(dtype), t, x.to(dtype), s, noise=z.to(dtype))

    return reference


def _ddpm_last_steps(case: tuple, got: Tensor, expected: Tensor) -> CheckResult | None:
    """Right but for a multiple of the noise z: noise at the last step, or the 1-based `t > 1` guard."""
    _, t, _, s, z = case
    if t > 1:
        return None
    diff, z = (got.double() - expected).flatten(), z.double().flatten()
    c = (diff @ z / (z @ z)).item()
    if abs(c) < 1e-4 or not torch.allclose(diff, c * z, rtol=1e-4, atol=1e-5):
        return None
    if t == 0:
        return CheckResult("ddpm_step", "failed", _NOISE_AT_LAST_STEP.format(c=c), "noise_at_last_step")
    if math.isclose(-c, math.sqrt(_coef(s.posterior_variance, 1)), rel_tol=1e-3):
        return CheckResult("ddpm_step", "failed", _ONE_BASED_GUARD, "one_based_guard")
    return None


def check_ddpm_step(fn: Callable[[Tensor, int, Tensor, NoiseSchedule, Tensor], Tensor],
                    seed: int | None = None) -> CheckResult:
    """Check ``fn(eps, t, x_t, s, noise) -> x_{t-1}``, one step of Ho et al.'s Algorithm 2, t an int:

    x_{t-1} = 1/√α_t · (x_t - β_t/√(1-ᾱ_t) · ε) + σ_t·z, σ_t² = β̃_t, and no noise at t = 0
    (``sampling.ddpm_step`` with its default variance). Tested at t = 1 and t = 0 too.
    Lesson: notebooks/05_sampling.ipynb
    """
    return _check("ddpm_step", fn, seed)


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


def _guided_cases(g: torch.Generator) -> list[tuple]:
    ws = [round(1.5 + 6.5 * torch.rand((), generator=g).item(), 2),  # strong guidance, in [1.5, 8]
          round(0.1 + 0.3 * torch.rand((), generator=g).item(), 2), 1.0, 0.0]  # weak; plain conditional; none
    shapes = [(4, 1, 6, 6), (8, 1, 5, 5), (2, 3, 4, 4), (3, 1, 7, 7)]
    return [(torch.randn(shape, generator=g), torch.randn(shape, generator=g), w)
            for shape, w in zip(shapes, ws, strict=True)]


def check_guided_eps(fn: Callable[[Tensor, Tensor, float], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(eps_cond, eps_uncond, w) -> ε̃ = ε_uncond + w·(ε_cond − ε_uncond)``, w a float.

    w = 1 gives the conditional estimate, w = 0 the unconditional one (this course's
    convention; Ho & Salimans 2022 write (1+w)·ε_cond − w·ε_uncond, so their w is ours − 1).
    Tested at a large w, a w in (0, 1), and at w = 1 and w = 0.

    Lesson: notebooks/06_guidance.ipynb
    """
    return _check("guided_eps", fn, seed)


# ------------------------------------------------------------ mixture score (lesson 08)
def _mixture_score_variant(x: Tensor, weights: Tensor, means: Tensor, covs: Tensor, *, sign: float = 1.0,
                           resp: str = "soft", precision: str = "inverse", divide: bool = True) -> Tensor:
    """Σ_k r_k(x)·Σ_k^{-1}(μ_k - x) in float64, with one piece swapped for a mistaken one (the default is right)."""
    x, weights, means, covs = (a.double() for a in (x, weights, means, covs))
    d = x.shape[1]
    diff = means[None] - x[:, None]  # (N, K, d): μ_k - x
    inverse = torch.linalg.inv(covs)  # (K, d, d): Σ_k^{-1}
    mahalanobis = torch.einsum("nki,kij,nkj->nk", diff, inverse, diff)  # (N, K): (x-μ_k)ᵀ Σ_k^{-1} (x-μ_k)
    log_weights = weights.log() if resp != "uniform" else torch.full_like(weights, -math.log(len(weights)))
    log_det = torch.logdet(covs) if resp != "no_det" else torch.zeros_like(weights)  # log det Σ_k
    log_terms = log_weights - 0.5 * (mahalanobis + log_det + d * math.log(2 * math.pi))  # log π_k N_k
    r = {"soft": log_terms.softmax(dim=1), "uniform": log_terms.softmax(dim=1), "none": torch.ones_like(log_terms),
         "no_det": log_terms.softmax(dim=1),
         "hard": F.one_hot(log_terms.argmax(dim=1), len(weights)).double()}[resp]  # (N, K)
    if not divide:
        r = log_terms.exp()  # π_k N(x; μ_k, Σ_k): ∇p(x), not ∇p(x)/p(x)
    matrix = {"inverse": inverse, "covariance": covs,
              "diagonal": torch.diag_embed(1 / covs.diagonal(dim1=-2, dim2=-1))}[precision]  # (K, d, d)
    scores = torch.einsum("kij,nkj->nki", matrix, diff)  # (N, K, d)
    return sign * (r[..., None] * scores).sum(dim=1)  # (N, d)


_MIXTURE_MISTAKES = [
    Mistake("sign_reversed", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, sign=-1.0),
            "the sign is reversed: each component's score is Σ_k^{-1}(μ_k - x), pointing from x *towards* the "
            "mean, where the density grows. The gradient of -½(x-μ)ᵀΣ^{-1}(x-μ) is -Σ^{-1}(x-μ)."),
    Mistake("no_responsibilities", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, resp="none"),
            "you added up the components' scores Σ_k^{-1}(μ_k - x) as they are. Each must be weighted by its "
            "responsibility r_k(x) = π_k N(x; μ_k, Σ_k) / p(x), the share of p(x) that component k makes at x: "
            "far from a component, its pull fades. (With one component r = 1, which is why K = 1 was right.)"),
    Mistake("weights_left_out", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, resp="uniform"),
            "the responsibilities leave out the mixing weights: r_k(x) = π_k N(x; μ_k, Σ_k) / Σ_j π_j N(x; μ_j, Σ_j). "
            "Without π_k a rare component pulls as hard as a common one."),
    Mistake("determinant_left_out", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, resp="no_det"),
            "the responsibilities leave out each component's normaliser 1/√det(2πΣ_k): N(x; μ_k, Σ_k) = "
            "exp(-½(x-μ_k)ᵀΣ_k^{-1}(x-μ_k)) / √det(2πΣ_k). The 2π cancels between components, det Σ_k does "
            "not: a narrow component is denser near its mean. (`torch.distributions.MultivariateNormal(...)"
            ".log_prob` includes it.)"),
    Mistake("covariance_not_inverted", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, precision="covariance"),
            "each component's score is Σ_k(μ_k - x): the covariance where its *inverse* belongs. The score of "
            "N(μ, Σ) is Σ^{-1}(μ - x) (`torch.linalg.solve(covs[k], means[k] - x)`): a wide component pulls "
            "gently, a narrow one hard."),
    Mistake("diagonal_inverted", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, precision="diagonal"),
            "you inverted only the diagonal of Σ_k (1/σ_ii element by element). Σ_k is a full covariance: "
            "invert the matrix, `torch.linalg.inv(covs[k])`, or better solve with it, "
            "`torch.linalg.solve(covs[k], means[k] - x)`."),
    Mistake("gradient_of_p", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, divide=False),
            "you returned ∇p(x) = Σ_k π_k N(x; μ_k, Σ_k)·Σ_k^{-1}(μ_k - x), the gradient of the density. The "
            "score is the gradient of its *log*, ∇p(x)/p(x): divide by p(x), which turns the weights π_k N_k "
            "into responsibilities that sum to 1."),
    Mistake("hard_assignment", lambda x, w, m, c: _mixture_score_variant(x, w, m, c, resp="hard"),
            "you took the score of the single most likely component at each x. Between components several "
            "share p(x): weight every component's score by its responsibility r_k(x) and add them up "
            "(a softmax of log π_k N_k over k, not an argmax)."),
]


def _random_covs(g: torch.Generator, k: int, d: int) -> Tensor:
    """k full covariances (k, d, d), float32: standard deviations spread over [0.3, 1] along random axes, so the
    condition number is at most 11, each redrawn until some correlation is at least 0.3 (for d > 1): far from
    diagonal, so inverting only the diagonal is far from right."""
    edges = torch.linspace(0.3, 1.0, d + 1, dtype=torch.float64)
    out = []
    for _ in range(k):
        for _ in range(100):  # about one draw in three is kept
            q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))  # a random rotation
            std = edges[:-1] + (edges[1:] - edges[:-1]) * torch.rand(d, generator=g, dtype=torch.float64)
            cov = q @ torch.diag(std**2) @ q.T
            cov = (cov + cov.T) / 2
            corr = cov / torch.outer(cov.diagonal().sqrt(), cov.diagonal().sqrt())
            if d == 1 or (corr - torch.eye(d, dtype=torch.float64)).abs().max() >= 0.3:
                break
        out.append(cov)
    return torch.stack(out).float()


def _random_weights(g: torch.Generator, k: int) -> Tensor:
    w = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)  # unequal, none below about a sixth of another
    return (w / w.sum()).float()


_MIXTURE_REACH = 3.5  # points lie up to this many standard deviations from the component they are drawn from


def _mixture_case(g: torch.Generator, k: int, d: int, n: int = 32) -> tuple:
    """(x, weights, means, covs): k components in d dimensions, means in [-1.5, 1.5]^d (they overlap), and n
    points each drawn near a component, at 0 to 3.5 of its standard deviations (x = μ_k + L_k·u, |u| <= 3.5).

    Why 3.5: there p(x) >= π_k N(x; μ_k, Σ_k) >= π_k e^{-6.2}/√((2π)^d det Σ_k), far above float32's smallest
    number, so a right answer written as exp-then-normalise in float32 needs no log-sum-exp; it is also where
    the lesson's samples and arrows live. (Beyond about 13 standard deviations from every component, e^{-m/2}
    underflows to 0 in float32 and that form divides 0 by 0.)
    """
    weights = _random_weights(g, k)
    means = ((torch.rand(k, d, generator=g, dtype=torch.float64) * 2 - 1) * 1.5).float()
    covs = _random_covs(g, k, d)
    comp = torch.multinomial(weights.double(), n, replacement=True, generator=g)  # (n,) a component per point
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True) * _MIXTURE_REACH * torch.rand(n, 1, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(covs.double())  # (k, d, d)
    x = means.double()[comp] + (chol[comp] @ u[..., None]).squeeze(-1)  # (n, d)
    return x.float(), weights, means, covs


def _mixture_cases(g: torch.Generator) -> list[tuple]:
    """Three components in 2-D first (the probes redraw its arguments), then a single Gaussian (K = 1), two in
    1-D, four in 3-D, and two to four more in 2-D."""
    shapes = [(3, 2), (1, 2), (2, 1), (4, 3), (int(torch.randint(2, 5, (), generator=g)), 2)]
    return [_mixture_case(g, k, d) for k, d in shapes]


def _mixture_redraw(name: str, first: tuple, g: torch.Generator) -> Tensor:
    """A new value for one argument of the first case, of the same shape (a probe: is it read at all?)."""
    k, d = first[2].shape  # means (K, d)
    if name == "weights":
        return _random_weights(g, k)
    if name == "means":
        return ((torch.rand(k, d, generator=g, dtype=torch.float64) * 2 - 1) * 1.5).float()
    return _random_covs(g, k, d)


def _mixture_scale(case: tuple) -> float:
    """The size of the intermediate values, for the tolerance: at each point, Σ_k r_k·κ(Σ_k)·|Σ_k^{-1}(μ_k - x)|,
    the largest over the points. A float32 inverse or solve errs by about κ(Σ_k)·ε relative (κ, the condition
    number, is at most 11 here), and each component adds its score weighted by its responsibility r_k.
    (Measured on 200 seeds: float32 forms, from exp-then-normalise to torch.distributions, stay below a
    tenth of the tolerance this gives, before its term for the reference's own float32 error.)"""
    x, weights, means, covs = (a.double() for a in case)
    diff = means[None] - x[:, None]  # (N, K, d): μ_k - x
    scores = torch.einsum("kij,nkj->nki", torch.linalg.inv(covs), diff)  # (N, K, d)
    mahalanobis = (diff * scores).sum(-1)  # (N, K)
    r = (weights.log() - 0.5 * (mahalanobis + torch.logdet(covs))).softmax(dim=1)  # (N, K) responsibilities
    condition = torch.linalg.cond(covs)  # (K,)
    return float((r * condition * scores.abs().amax(-1)).sum(1).max())


def check_mixture_score(fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(x, weights, means, covs) -> ∇ₓ log p(x)`` of the Gaussian mixture p = Σ_k π_k N(μ_k, Σ_k):

        Σ_k r_k(x)·Σ_k^{-1}(μ_k - x),   r_k(x) = π_k N(x; μ_k, Σ_k) / p(x),

    x (N, d), weights (K,), means (K, d), covs (K, d, d) full covariances → (N, d). Tested on random
    mixtures with unequal weights, a single Gaussian (K = 1) and d = 1, 2 and 3, at points up to 3.5
    standard deviations from their component.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    return _check("mixture_score", fn, seed)


# ------------------------------------------------------------ Heun step (lesson 08)
def _heun_variant(denoiser: _Denoiser, x: Tensor, sigma: float, sigma_next: float, *, second: str = "at_next",
                  slope: str = "right", sign: float = 1.0, average: str = "both", into_zero: str = "euler") -> Tensor:
    """EDM's Algorithm 1 step in float64 with one piece swapped for a mistaken one (the default is right)."""
    x = x.double()

    def slope_at(y: Tensor, s: float) -> Tensor:
        denoised = denoiser(y, s)
        return denoised if slope == "denoised" else (y - denoised) / s  # d = (x - D(x; σ))/σ

    h = sign * (sigma_next - sigma)  # the step in σ, negative: σ decreases
    d = slope_at(x, sigma)
    x_euler = x + h * d
    if sigma_next == 0:
        return x_euler if into_zero == "euler" else x + h * d / 2  # "half": averaged with a zero second slope
    if second == "none":
        return x_euler
    y, s = {"at_next": (x_euler, sigma_next), "at_x": (x, sigma_next), "at_sigma": (x_euler, sigma)}[second]
    d_next = slope_at(y, s)
    return x + h * (d + d_next) / 2 if average == "both" else x + h * d_next


_HEUN_MISTAKES = [
    Mistake("euler_only", lambda D, x, s, sn: _heun_variant(D, x, s, sn, second="none"),
            "you returned the Euler step x' = x + (σ_next − σ)·d. Heun's method corrects it: evaluate the slope "
            "again where the Euler step lands, d' = (x' − D(x'; σ_next))/σ_next, and step from x with the "
            "average of the two, x + (σ_next − σ)·(d + d')/2."),
    Mistake("slope_at_x", lambda D, x, s, sn: _heun_variant(D, x, s, sn, second="at_x"),
            "the second slope is evaluated at the starting point x. It belongs where the Euler step lands: "
            "d' = (x' − D(x'; σ_next))/σ_next with x' = x + (σ_next − σ)·d."),
    Mistake("slope_at_sigma", lambda D, x, s, sn: _heun_variant(D, x, s, sn, second="at_sigma"),
            "the second slope is evaluated at the old noise level σ. The Euler point x' sits at σ_next: "
            "d' = (x' − D(x'; σ_next))/σ_next, the denoiser told σ_next and divided by σ_next."),
    Mistake("sign_reversed", lambda D, x, s, sn: _heun_variant(D, x, s, sn, sign=-1.0),
            "the step goes the wrong way: the step in σ is σ_next − σ, negative when sampling (σ decreases). "
            "You used σ − σ_next, which adds noise instead of removing it."),
    Mistake("new_slope_only", lambda D, x, s, sn: _heun_variant(D, x, s, sn, average="new"),
            "you stepped with the second slope d' alone. Heun's method steps with the *average* of the "
            "slopes at both ends, x + (σ_next − σ)·(d + d')/2: the trapezoid rule."),
    Mistake("denoised_as_slope", lambda D, x, s, sn: _heun_variant(D, x, s, sn, slope="denoised"),
            "you used the denoiser's output D(x; σ) as the slope. The denoiser guesses the clean data x̂_0; "
            "the ODE's slope is dx/dσ = (x − D(x; σ))/σ, the noise direction (ε̂ for an ε-model)."),
    Mistake("correction_into_zero", lambda D, x, s, sn: _heun_variant(D, x, s, sn, into_zero="half"),
            "into σ_next = 0 your step averages d with a second slope of 0 (a guard such as "
            "max(σ_next, 1e-8)?). Heun's correction needs σ_next > 0: into σ = 0 take the Euler step "
            "x + (σ_next − σ)·d, which lands exactly on D(x; σ) (EDM's Algorithm 1, line 6)."),
]
_INTO_ZERO = ("Into σ = 0 take the Euler step: Heun's correction needs σ_next > 0. Its second slope "
              "(x' − D(x'; 0))/0 is 0/0; EDM's Algorithm 1 skips it on the last step "
              "(`if sigma_next == 0: return x_euler`), and the Euler step lands exactly on D(x; σ).")
_NO_DENOISER_CALL = ("your function never called the `denoiser` it was given. The slope d = (x − D(x; σ))/σ "
                     "needs its answer: call `denoiser(x, sigma)` (and `denoiser(x_euler, sigma_next)`), not a "
                     "model of your own or a global one from the lesson.")


def _heun_cases(g: torch.Generator) -> list[tuple]:
    """(denoiser, x, sigma, sigma_next): a large σ (20 to 80, EDM's σ_max), a middle one, a small one (0.02 to
    0.2), each stepping to 30-80% of itself, then a step into σ_next = 0; x = x0 + σ·n, shapes (B, 2) and
    (B, 1, 4, 4)."""
    out = []
    plan = [((16, 2), 20.0, 80.0), ((4, 1, 4, 4), 0.5, 5.0), ((8, 2), 0.02, 0.2), ((3, 1, 4, 4), 0.2, 2.0)]
    for n, (shape, low, high) in enumerate(plan):
        u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
        denoiser = _Denoiser(a=round(0.5 + u[0], 4), b=round(0.5 + 1.5 * u[1], 4), c=round(u[2] - 0.5, 4))
        sigma = round(low * (high / low) ** u[3], 6)  # log-uniform in [low, high]
        sigma_next = 0.0 if n == len(plan) - 1 else round(sigma * (0.3 + 0.5 * u[4]), 6)
        x0 = torch.rand(shape, generator=g) * 2 - 1
        out.append((denoiser, (x0 + sigma * torch.randn(shape, generator=g)).float(), sigma, sigma_next))
    return out


def _heun_reference(dtype: torch.dtype) -> Callable[..., Tensor]:
    def reference(denoiser: _Denoiser, x: Tensor, sigma: float, sigma_next: float) -> Tensor:
        return heun_step(denoiser, x.to(dtype), sigma, sigma_next)

    return reference


def _heun_scale(case: tuple) -> float:
    """The size of the intermediate values, x, D(x; σ) and the Euler point x': a float32 step errs by a few of
    their roundings. (Measured on 300 seeds: float32 forms stay below 1/400 of the tolerance this gives.)"""
    denoiser, x, sigma, sigma_next = case
    x = x.double()
    denoised = denoiser(x, sigma)
    x_euler = x + (sigma_next - sigma) * (x - denoised) / sigma
    return _size(x, denoised, x_euler)


def _judge_heun(cases: list[tuple], runs: list) -> CheckResult:
    """The step into σ_next = 0 first (a NaN there is its own mistake), then whether the denoiser was called at
    all, then the values as for any exercise."""
    for case, run in zip(cases, runs, strict=False):
        if not isinstance(run, dict) or case[3] != 0:
            continue
        if run.get("status") == "error" and "ZeroDivisionError" in str(run.get("error")):
            return CheckResult("heun_step", "error", f"your function raised {str(run.get('error'))[:500]}. "
                               + _INTO_ZERO, "divides_by_zero")
        got = run.get("result")
        if run.get("status") == "ok" and isinstance(got, Tensor) and got.is_floating_point() \
                and not bool(torch.isfinite(got.double()).all()):
            return CheckResult("heun_step", "failed", "your step into σ_next = 0 gives NaN or inf. " + _INTO_ZERO,
                               "divides_by_zero")
    for run in runs:
        if isinstance(run, dict) and run.get("status") == "ok" and isinstance(run.get("result"), Tensor) \
                and isinstance(run.get("calls"), int) and run["calls"] == 0:
            return CheckResult("heun_step", "failed", _NO_DENOISER_CALL, "ignores_denoiser")
    return _judge_values(EXERCISES["heun_step"], cases, runs)


def check_heun_step(fn: Callable[[Callable[[Tensor, float], Tensor], Tensor, float, float], Tensor],
                    seed: int | None = None) -> CheckResult:
    """Check ``fn(denoiser, x, sigma, sigma_next) -> x_next``, one step of Heun's method (EDM Algorithm 1):

        d = (x − D(x; σ))/σ,  x' = x + (σ_next − σ)·d,  d' = (x' − D(x'; σ_next))/σ_next,
        x_next = x + (σ_next − σ)·(d + d')/2,  and just x' when σ_next = 0.

    The checker hands ``fn`` a denoiser of its own, nonlinear in x and dependent on σ, which counts
    its calls; σ and σ_next are Python floats. Tested from σ up to 80 down to the last step into 0.

    Lesson: notebooks/08_continuous_time.ipynb
    """
    return _check("heun_step", fn, seed)


# ------------------------------------------------------ flow-matching loss (lesson 09)
def _flow_loss_result(status: str, message: str, mistake: str | None = None) -> CheckResult:
    return CheckResult("flow_matching_loss", status, message, mistake)


def _flow_loss_cases(g: torch.Generator) -> list[tuple]:
    """(model, x1, noise, t): images (8, 1, 4, 4), 2-D points (16, 2) with t = 0 among the times (torch.rand
    draws it), and images (5, 1, 6, 6). No batch size equals a trailing dimension, so a t of shape (B,) that is
    not reshaped never broadcasts by chance. t is uniform in [0, 0.98), one time per sample, all different:
    close to t = 1 a right answer that reads the velocity off the path, (x1 − x_t)/(1 − t), loses its digits
    in float32."""
    out = []
    for n, shape in enumerate([(8, 1, 4, 4), (16, 2), (5, 1, 6, 6)]):
        x1 = torch.rand(shape, generator=g) * 2 - 1  # data in [-1, 1], as the lessons' images and points
        noise = torch.randn(shape, generator=g)
        t = torch.rand(shape[0], generator=g) * 0.98
        if n == 1:
            t[int(torch.randint(1, shape[0], (), generator=g))] = 0.0  # the path's start: x_t is the noise
        out.append((_Spy(torch.randn(shape, generator=g)), x1, noise, t))
    return out


_FLOW_T_BROADCAST = ("t has shape (B,), one time per sample: reshape it so that it broadcasts over the other "
                     "dimensions of x1, whatever they are (the checker hands your function images (B, 1, H, W) "
                     "and 2-D points (B, 2)): `t_ = t.view(-1, *[1] * (x1.ndim - 1))`, then "
                     "`x_t = (1 - t_) * noise + t_ * x1`. The model itself still gets t of shape (B,).")


def _flow_time_fit(x_in: Tensor, x1: Tensor, noise: Tensor) -> tuple[Tensor, float]:
    """The time s (B,) of each sample that best explains x_in = (1 - s)·noise + s·x1, and the largest residual."""
    d = (x1 - noise).flatten(1)
    s = ((x_in - noise).flatten(1) * d).sum(1) / (d * d).sum(1)
    fitted = noise.flatten(1) + s[:, None] * d
    return s, float((x_in.flatten(1) - fitted).abs().max())


def _flow_model_input(x1: Tensor, noise: Tensor, t: Tensor, x_in: Tensor) -> CheckResult | str | None:
    """What is wrong with the x_t the model was fed: None if it is (1 - t)·noise + t·x1, "swapped" if it is
    t·noise + (1 - t)·x1 (named once the target is known), else the verdict. All float64."""
    size = max(1.0, _size(x1, noise))

    def near(a: Tensor) -> bool:
        return bool(((x_in - a).abs() <= 1e-4 * size).all())

    t_ = t.reshape(-1, *[1] * (x1.ndim - 1))
    if near((1 - t_) * noise + t_ * x1):
        return None
    if near(t_ * noise + (1 - t_) * x1):
        return "swapped"
    if near((1 - t[0]) * noise + t[0] * x1):
        return _flow_loss_result("failed", "every sample of x_t was made with the same time t[0]. Each sample has "
                                 "its own time: reshape t (B,) to broadcast over the image, "
                                 "`t_ = t.view(-1, *[1] * (x1.ndim - 1))`, and use t_ for all of them.",
                                 "one_t_for_batch")
    if near(x1):
        return _flow_loss_result("failed", "the model was fed the data x1 itself. Feed it the point of the path at "
                                 "time t, `x_t = (1 - t) * noise + t * x1` (t reshaped to broadcast).",
                                 "clean_input")
    s, residual = _flow_time_fit(x_in, x1, noise)
    if residual <= 1e-4 * size and float((s - t).abs().max()) > 1e-3 and float(s.max() - s.min()) > 1e-3:
        return _flow_loss_result("failed", "x_t lies on the straight path from noise to x1, but at times other than "
                                 "the t your function is given: it draws its own t (e.g. `torch.rand`). Use the "
                                 "`t` argument, so the result is exactly the one asked for.", "own_t")
    keep = t < 0.999  # solve x_in = (1 - t)·ε + t·x1 for ε where 1 - t is not tiny
    if bool(keep.sum() >= 2):
        implied = (x_in[keep] - t_[keep] * x1[keep]) / (1 - t_[keep])
        if float(implied.mean().abs()) < 0.3 and float((implied.std() - 1).abs()) < 0.3 \
                and not bool(((implied - noise[keep]).abs() <= 1e-3 * size).all()):
            return _flow_loss_result("failed", "x_t was made with noise of your function's own (e.g. "
                                     "`torch.randn_like(x1)`), not the `noise` it is given. Use the argument, so the "
                                     "result is exactly the one asked for.", "own_noise")
    return _flow_loss_result("failed", "the model's input is not the point of the straight path "
                             "x_t = (1 - t)·noise + t·x1 at the times t your function is given: at t = 0 it is the "
                             "noise, at t = 1 the data.")


def _flow_model_time(t: Tensor, call: dict) -> CheckResult | None:
    """What is wrong with the t the model was told, or None if it is the t of the case."""
    t_in, t_type = call.get("t"), str(call.get("t_type", ""))[:40]
    not_passed = ("the model was not told the times t of x_t: call `model(x_t, t)` with the `t` your function is "
                  "given, shape (B,). Without it the network cannot know where on the path x_t lies.")
    if not isinstance(t_in, Tensor):
        return _flow_loss_result("failed", not_passed + f" (It got {t_type.replace('NoneType', 'nothing')}.)",
                                 "t_not_passed")
    if not t_in.is_floating_point():
        return _flow_loss_result("failed", f"the model got t of dtype {t_in.dtype}: times in [0, 1] are floats. "
                                 "Pass the `t` you are given as it is.", "t_not_passed")
    t_in, t = t_in.double(), t.double()
    if t_in.numel() == t.numel() and t_in.shape != t.shape and torch.allclose(t_in.flatten(), t, atol=1e-6):
        return _flow_loss_result("failed", f"the model got t of shape {tuple(t_in.shape)}: pass it as given, shape "
                                 f"({t.numel()},), one time per sample (the reshaped t_ is for the interpolation "
                                 "only).", "t_shape")
    if t_in.shape == t.shape and torch.allclose(t_in, 1000 * t, rtol=1e-5, atol=1e-3):
        return _flow_loss_result("failed", "the model got 1000·t. In this exercise pass t itself, in [0, 1]: the "
                                 "package's `flow_matching_loss` scales by 1000 inside, for the U-Net's time "
                                 "embedding, but the model here expects t as it is.", "t_scaled")
    if t_in.shape == t.shape and torch.allclose(t_in, t, atol=1e-6):
        return None
    return _flow_loss_result("failed", not_passed, "t_not_passed")


def _flow_loss_targets(x1: Tensor, noise: Tensor, pred: Tensor, loss: float, grad: Tensor,
                       swapped: bool) -> CheckResult | None:
    """Which target, and which scale, the loss used: read off its value and its gradient ∂loss/∂v_θ."""
    n, batch = pred.numel(), pred.shape[0]
    targets = {"right": x1 - noise, "velocity_reversed": noise - x1, "target_x1": x1, "target_noise": noise}
    found = None
    for name, u in targets.items():
        diff = pred - u
        c = loss / max(float((diff * diff).mean()), 1e-12)  # if loss = c · mean((v_θ − u)²), then
        implied = pred - grad * n / (2 * c) if c > 0 else None  # ∂loss/∂v_θ = 2c·(v_θ − u)/n gives u back
        if implied is not None and float((implied - u).abs().max()) <= 1e-3 * max(1.0, _size(u)):
            found = name, c
            break
    if found is None:
        return _flow_loss_result("failed", "x_t is made right, but the loss is not the mean squared error between "
                                 "the model's output and the velocity x1 - noise: use "
                                 "`F.mse_loss(model(x_t, t), x1 - noise)`.")
    name, c = found
    if swapped:
        if name == "velocity_reversed":
            return _flow_loss_result("failed", "you used the other time convention, that of rectified-flow codes "
                                     "(Stable Diffusion 3, FLUX, diffusers): t = 1 is noise there, x_t = t·noise + "
                                     "(1 - t)·x1 and the velocity noise - x1. In this course t = 0 is noise and "
                                     "t = 1 data: x_t = (1 - t)·noise + t·x1, target x1 - noise.",
                                     "t_convention_swapped")
        return _flow_loss_result("failed", "noise and data are swapped in x_t: you made t·noise + (1 - t)·x1, which is "
                                 "the data at t = 0. The path starts at the noise: x_t = (1 - t)·noise + t·x1.",
                                 "noise_and_data_swapped")
    if name == "velocity_reversed":
        return _flow_loss_result("failed", "the target velocity points the wrong way: you used noise - x1. Along "
                                 "x_t = (1 - t)·noise + t·x1 the velocity is dx_t/dt = x1 - noise, from noise "
                                 "towards data.", "velocity_reversed")
    if name == "target_x1":
        return _flow_loss_result("failed", "the target is the data x1. The network predicts the velocity of the "
                                 "path, dx_t/dt = x1 - noise: compare its output with `x1 - noise`.", "target_x1")
    if name == "target_noise":
        return _flow_loss_result("failed", "the target is the noise, as in lesson 04's ε-objective. Here the network "
                                 "predicts the velocity dx_t/dt = x1 - noise: compare its output with "
                                 "`x1 - noise`.", "target_noise")
    if math.isclose(c, 1.0, rel_tol=1e-3):
        return None
    if math.isclose(c, n, rel_tol=1e-3) or math.isclose(c, n / batch, rel_tol=1e-3):
        what = "all the elements" if math.isclose(c, n, rel_tol=1e-3) else "each sample's elements"
        return _flow_loss_result("failed", f"your loss is a sum over {what}, {c:.0f} times the mean squared error: "
                                 "its size (and the learning rate it needs) would change with the image size and "
                                 "the batch. Take the mean: `F.mse_loss(pred, x1 - noise)` or "
                                 "`((pred - (x1 - noise)) ** 2).mean()`.", "sum_not_mean")
    return _flow_loss_result("failed", f"your loss is {c:.3g} times the mean squared error between the model's "
                             "output and x1 - noise: use `F.mse_loss(model(x_t, t), x1 - noise)`.")


def _flow_loss_verdict(case: tuple, run: dict) -> CheckResult | None:
    """What is wrong with one run of the learner's flow-matching loss, or None if it is right."""
    spy, x1, noise, t = case
    changed = [i for i in run.get("changed") or [] if isinstance(i, int) and 1 <= i <= 3]
    if changed:
        which = _listed([("x1", "noise", "t")[i - 1] for i in changed], "and")
        return _flow_loss_result("failed", f"your function changed its input {which} in place (e.g. `x1 *= ...` or "
                                 "`noise.mul_(...)`). The caller still needs its tensors: compute new ones "
                                 "(`x_t = (1 - t_) * noise + t_ * x1`).", "changed_input")
    problem = _loss_run_problem(run, _flow_loss_result)
    if problem is not None:
        return problem
    loss, calls = run["result"], run["calls"]
    x_in = calls[0].get("x")
    if not isinstance(x_in, Tensor) or x_in.shape != x1.shape:
        got = tuple(x_in.shape) if isinstance(x_in, Tensor) else str(calls[0].get("x"))[:40]
        return _flow_loss_result("failed", f"the model was fed an x_t of shape {got}, not x1's shape "
                                 f"{tuple(x1.shape)}. " + _FLOW_T_BROADCAST, "t_not_broadcast")
    if not torch.isfinite(loss.double()).all() or not torch.isfinite(x_in.double()).all():
        return _flow_loss_result("failed", "your loss (or the x_t you fed the model) contains NaN or inf: a division "
                                 "by t or by 1 - t (t = 0 happens: `torch.rand` draws it)?", "not_finite")
    x1, noise, t = x1.double(), noise.double(), t.double()
    problem = _flow_model_input(x1, noise, t, x_in.double())
    if isinstance(problem, CheckResult):
        return problem
    swapped = problem == "swapped"
    if not swapped:
        problem = _flow_model_time(t, calls[0])
        if problem is not None:
            return problem
    if not run.get("requires_grad"):
        return _flow_loss_result("failed", "your loss carries no gradient, so training could not change the model: "
                                 "was it computed under `torch.no_grad()`, or `.detach()`ed? Return the loss as "
                                 "computed from `model(x_t, t)`.", "not_differentiable")
    grad = run.get("grad")
    if not isinstance(grad, Tensor) or grad.shape != x1.shape:
        return _flow_loss_result("failed", "no gradient reaches the model's output: the loss must be computed from "
                                 "`model(x_t, t)` itself.", "not_differentiable")
    return _flow_loss_targets(x1, noise, spy.answer.double(), float(loss.double()), grad.double(), swapped)


def _judge_flow_loss(cases: list[tuple], runs: list) -> CheckResult:
    for case, run in zip(cases, runs, strict=False):
        problem = _run_problem("flow_matching_loss", run, len(cases))
        if problem is not None and problem.status == "error" and "must match the size of tensor" in problem.message:
            return _flow_loss_result("error", problem.message + " " + _FLOW_T_BROADCAST, "t_not_broadcast")
        if problem is not None:
            return problem
        verdict = _flow_loss_verdict(case, run)
        if verdict is not None:
            return verdict
    if len(runs) != len(cases):
        return _flow_loss_result("failed", "the function's results could not be read back.")
    return _flow_loss_result("passed", f"correct on {len(cases)} random batches: x_t on the straight path at each "
                             "sample's own t, the model told t, and the velocity x1 - noise as the target of a mean "
                             "squared error.")


def check_flow_matching_loss(fn: Callable[[torch.nn.Module, Tensor, Tensor, Tensor], Tensor],
                             seed: int | None = None) -> CheckResult:
    """Check ``fn(model, x1, noise, t) -> loss``, the conditional flow-matching loss for given noise and times:

        x_t = (1 - t)·noise + t·x1,   loss = mean ‖model(x_t, t) − (x1 − noise)‖²,

    x1 and noise (B, ...), t (B,) in [0, 1), one time per sample, reshaped to broadcast over the other
    dimensions. To keep the exercise simple the model is called with t itself; the package's
    ``flow_matching_loss`` calls it with 1000·t, the range the U-Net's time embedding expects.

    The checker hands ``fn`` a stand-in model that records what it is called with and answers a fixed
    tensor; from what the model saw, and from the loss and its gradient, it works out which path,
    times and target ``fn`` used. Inputs are images (B, 1, H, W) and 2-D points (B, 2).

    Lesson: notebooks/09_flow_matching.ipynb
    """
    return _check("flow_matching_loss", fn, seed)


# ------------------------------------------------------------- flow ODE step (lesson 09)
@dataclass(frozen=True)
class _Velocity:
    """In a case, stands for the velocity field v(x, t) handed to a flow step: ``run_cases`` replaces it by a
    ``_VelocityModel``, which answers the same and counts its calls.

        v(x, t) = a·tanh(b·x + c) + t·(d − x)

    a smooth nonlinear push early on, and a pull towards d that grows with t, as the marginal velocity
    of data near d does. Nonlinear in x and dependent on t, so Euler, midpoint and each mistaken step
    give different answers. t may be a number, a 0-d tensor or one time per sample (B,).
    """

    a: float
    b: float
    c: float
    d: float

    def __call__(self, x: Tensor, t: object) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"the velocity takes x as a float tensor, got {type(x).__name__}")
        s = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if s.ndim == 1 and s.numel() == x.shape[0] > 1 and x.ndim > 1:  # one time per sample, as networks take it
            s = s.reshape(-1, *[1] * (x.ndim - 1))
        return self.a * torch.tanh(self.b * x + self.c) + s * (self.d - x)


class _VelocityModel(_Velocity):
    """The velocity the learner's function gets: v(x, t) as ``_Velocity``, counting its calls."""

    def __init__(self, a: float, b: float, c: float, d: float):
        super().__init__(a, b, c, d)
        object.__setattr__(self, "calls", 0)

    def __call__(self, x: Tensor, t: object) -> Tensor:
        object.__setattr__(self, "calls", self.calls + 1)
        return super().__call__(x, t)


def _flow_step_variant(velocity: _Velocity, x: Tensor, t: float, t_next: float, method: str, *, sign: float = 1.0,
                       as_method: str | None = None, point: str = "half", time: str = "half") -> Tensor:
    """One Euler or midpoint step in float64, with one piece swapped for a mistaken one (the default is right)."""
    x = x.double()
    h = sign * (t_next - t)
    slope = velocity(x, t)
    method = as_method or method
    if method == "euler":
        return x + h * slope
    if method == "heun":
        return x + h / 2 * (slope + velocity(x + h * slope, t + h))
    y = {"half": x + h / 2 * slope, "x": x, "full": x + h * slope}[point]
    s = {"half": t + h / 2, "t": t, "next": t + h}[time]
    return x + h * velocity(y, s)


def _flow_step_mistake(**kwargs: object) -> Callable[..., Tensor]:
    return lambda v, x, t, tn, m: _flow_step_variant(v, x, t, tn, m, **kwargs)


_MIDPOINT = "x + h·v(x + ½h·v(x, t), t + ½h), with h = t_next − t"
_FLOW_STEP_MISTAKES = [
    Mistake("step_reversed", _flow_step_mistake(sign=-1.0),
            "the step goes the wrong way: h = t_next − t, positive, since time runs from noise (t = 0) to data "
            "(t = 1). You used t − t_next, which walks back towards the noise."),
    Mistake("euler_for_midpoint", lambda v, x, t, tn, m: _flow_step_variant(v, x, t, tn, "euler"),
            "for method=\"midpoint\" you returned the Euler step x + h·v(x, t). The midpoint method looks half a "
            f"step ahead and steps with the velocity found there: {_MIDPOINT}."),
    Mistake("midpoint_for_euler", lambda v, x, t, tn, m: _flow_step_variant(v, x, t, tn, "midpoint"),
            "for method=\"euler\" you took a midpoint step: read the `method` argument. Euler is one call, "
            "x + h·v(x, t), with h = t_next − t."),
    Mistake("midpoint_time_not_advanced", _flow_step_mistake(time="t"),
            "the midpoint velocity is evaluated at time t. The half-step point sits at t + ½h: "
            f"{_MIDPOINT}."),
    Mistake("midpoint_at_t_next", _flow_step_mistake(time="next"),
            "the midpoint velocity is evaluated at time t_next. The half-step point sits halfway, at t + ½h: "
            f"{_MIDPOINT}."),
    Mistake("midpoint_at_x", _flow_step_mistake(point="x"),
            "the second velocity is evaluated at the starting point x. The midpoint method evaluates it at the "
            f"half-step point x + ½h·v(x, t): {_MIDPOINT}."),
    Mistake("full_step_midpoint", _flow_step_mistake(point="full"),
            "the second velocity is evaluated at x + h·v(x, t), a full Euler step ahead, with the time of half "
            f"a step. Go half a step: {_MIDPOINT}."),
    Mistake("heun_for_midpoint", _flow_step_mistake(as_method="heun"),
            "for method=\"midpoint\" you took Heun's step, x + ½h·(v(x, t) + v(x + h·v, t_next)), also second order "
            f"but another method. The midpoint step uses one velocity, found half a step ahead: {_MIDPOINT}."),
]
_NO_VELOCITY_CALL = ("your function never called the `velocity` it was given. The step needs its answers: call "
                     "`velocity(x, t)` (and, for the midpoint, `velocity(x_mid, t + h / 2)`), not a model of your own "
                     "or a global one from the lesson.")


def _flow_step_cases(g: torch.Generator) -> list[tuple]:
    """(velocity, x, t, t_next, method): Euler from t = 0, midpoint in the middle, Euler in the middle, a short
    midpoint step and the last midpoint step into t = 1; steps of 0.02 to 0.5, the few-step sampling range;
    x = (1 − t)·noise + t·data, shapes (B, 2) and (B, 1, 4, 4)."""
    out = []
    plan = [((16, 2), "euler", "start", 0.1, 0.5), ((4, 1, 4, 4), "midpoint", "middle", 0.1, 0.4),
            ((3, 1, 4, 4), "euler", "middle", 0.05, 0.3), ((8, 2), "midpoint", "middle", 0.02, 0.06),
            ((16, 2), "midpoint", "end", 0.1, 0.5)]
    for shape, method, where, low, high in plan:
        u = torch.rand(6, generator=g, dtype=torch.float64).tolist()
        velocity = _Velocity(a=round(0.5 + u[0], 4), b=round(0.5 + 1.5 * u[1], 4), c=round(u[2] - 0.5, 4),
                             d=round(2 * u[3] - 1, 4))
        h = low + (high - low) * u[4]
        t = {"start": 0.0, "middle": round((1 - h) * (0.2 + 0.6 * u[5]), 6), "end": round(1 - h, 6)}[where]
        t_next = 1.0 if where == "end" else round(t + h, 6)
        x = (1 - t) * torch.randn(shape, generator=g) + t * (torch.rand(shape, generator=g) * 2 - 1)
        out.append((velocity, x.float(), t, t_next, method))
    return out


def _flow_step_reference(dtype: torch.dtype) -> Callable[..., Tensor]:
    def reference(velocity: _Velocity, x: Tensor, t: float, t_next: float, method: str) -> Tensor:
        return _flow_step_variant(velocity, x.to(dtype), t, t_next, method).to(dtype)

    return reference


def _flow_step_scale(case: tuple) -> float:
    """The size of the intermediate values, x, v(x, t) and the half-step point: a float32 step errs by a few of
    their roundings."""
    velocity, x, t, t_next, _ = case
    x = x.double()
    slope = velocity(x, t)
    return _size(x, slope, x + (t_next - t) / 2 * slope)


def _judge_flow_step(cases: list[tuple], runs: list) -> CheckResult:
    """Whether the velocity was called at all, then the values as for any exercise."""
    for run in runs:
        if isinstance(run, dict) and run.get("status") == "ok" and isinstance(run.get("result"), Tensor) \
                and isinstance(run.get("calls"), int) and run["calls"] == 0:
            return CheckResult("flow_step", "failed", _NO_VELOCITY_CALL, "ignores_velocity")
    return _judge_values(EXERCISES["flow_step"], cases, runs)


def check_flow_step(fn: Callable[[Callable[[Tensor, float], Tensor], Tensor, float, float, str], Tensor],
                    seed: int | None = None) -> CheckResult:
    """Check ``fn(velocity, x, t, t_next, method) -> x at t_next``, one step of dx/dt = v(x, t) with h = t_next − t:

        "euler":     x + h·v(x, t)
        "midpoint":  x + h·v(x + ½h·v(x, t), t + ½h)

    The checker hands ``fn`` a velocity field of its own, nonlinear in x and dependent on t, which counts
    its calls; t and t_next are Python floats in [0, 1], t_next > t (t = 0 noise, t = 1 data). Tested
    on steps of 0.02 to 0.5, from t = 0 to the last step into t = 1.

    Lesson: notebooks/09_flow_matching.ipynb
    """
    return _check("flow_step", fn, seed)


# ------------------------------------------------------------------ patchify (lesson 10)
_PATCH_LAYOUT = "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"  # DiT's tokens: patches row by row, (row, column, channel)
_PATCH_SHAPE = ("tokens of shape (B, N, p·p·C): N = (H/p)·(W/p) patches, row by row, each holding its p·p pixels "
                "row by row, every pixel's C channels together")


def _patches(x: Tensor, p: int, pattern: str = _PATCH_LAYOUT) -> Tensor:
    """x rearranged by an einops pattern with p1 = p2 = p: DiT's layout, or a mistaken one."""
    return rearrange(x, pattern, p1=p, p2=p)


def _patches_of_size(x: Tensor, p: int, q: int) -> Tensor:
    """DiT's layout with patches of side q instead of p (a hard-coded patch size); only where q is not p."""
    if q == p:
        raise ValueError("the same patch size")
    return _patches(x, q)


_PATCHIFY_MISTAKES = [
    Mistake("channels_first_in_token", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (h w) (c p1 p2)"),
            "each token's values are in (channel, row, column) order, the order `F.unfold` gives: all of the patch's "
            "red values, then its green ones... DiT lays a token out as (row, column, channel): the first pixel's C "
            "channels, then the next pixel's, row by row (`b (h w) (p1 p2 c)`). After "
            "`F.unfold(x, p, stride=p).transpose(1, 2)`, reorder: `.reshape(B, N, C, p * p).transpose(2, 3)"
            ".reshape(B, N, p * p * C)`. (A network learns from either order, but `unpatchify` and DiT's code expect "
            "this one.)"),
    Mistake("pixels_column_major", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (h w) (p2 p1 c)"),
            "inside each token the pixels go column by column: the patch is transposed. They go row by row, "
            "(row, column, channel): `(p1 p2 c)`, with p1 the row inside the patch; with permute, the axis of the "
            "row inside the patch comes before that of the column."),
    Mistake("patches_column_major", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)"),
            "your patches go column by column (down the first column of patches, then the next). DiT's tokens go "
            "row by row, as one reads: token n is the patch at row n // (W/p), column n % (W/p) of the patch grid, "
            "`b (h w) ...`, not `b (w h) ...`; with permute, the axis of the patch rows comes first."),
    Mistake("strided_patches", lambda x, p: _patches(x, p, "b c (p1 h) (p2 w) -> b (h w) (p1 p2 c)"),
            "each token gathers pixels H/p apart, spread over the whole image, instead of a p×p square of "
            "neighbours: the pixel's row is (patch row)·p + (row inside the patch), so split H as `(h p1)`, not "
            "`(p1 h)` (with reshape: (B, C, H/p, p, W/p, p), not (B, C, p, H/p, p, W/p))."),
    Mistake("reshape_without_permute", lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]),
            "you reshaped x straight to (B, N, p·p·C). A reshape keeps the memory order (channel, row, column), so "
            "each token is a run of consecutive values of one channel's rows, not a patch. Split the axes first, "
            "`x.reshape(B, C, H // p, p, W // p, p)`, move them with `.permute(0, 2, 4, 3, 5, 1)` to (B, H/p, W/p, "
            "p, p, C), then `.reshape(B, N, p * p * C)`."),
    Mistake("rows_not_squares", lambda x, p: x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, p * p * x.shape[1]),
            "you moved the channels last and reshaped to (B, N, p·p·C): each token is then p·p consecutive pixels of "
            "one image row, not a p×p square. Split rows and columns into (patch, pixel) before merging: "
            "`.reshape(B, H // p, p, W // p, p, C).permute(0, 1, 3, 2, 4, 5)`, then `.reshape(B, N, p * p * C)`."),
    Mistake("tokens_transposed", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (p1 p2 c) (h w)"),
            "tokens and features are swapped: your result is (B, p·p·C, N), one column per patch. A transformer "
            "wants one row per token, (B, N, p·p·C): `.transpose(1, 2)`."),
    Mistake("tokens_transposed", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (c p1 p2) (h w)"),
            "your result is what `F.unfold` returns, (B, C·p·p, N): one column per patch, its values in (channel, "
            "row, column) order. A transformer wants one row per token: `.transpose(1, 2)` to (B, N, C·p·p), then "
            "reorder each token's values to (row, column, channel): `.reshape(B, N, C, p * p).transpose(2, 3)"
            ".reshape(B, N, p * p * C)`."),
    Mistake("patch_and_position_swapped", lambda x, p: _patches(x, p, "b c (h p1) (w p2) -> b (p1 p2) (h w c)"),
            "your result is (B, p·p, N·C): one row per position *inside* a patch, holding that pixel of every "
            "patch. The roles are the other way round: one token per patch, holding the patch's p·p·C values, "
            "(B, N, p·p·C) = `b (h w) (p1 p2 c)`."),
    Mistake("ignores_p", lambda x, p: _patches_of_size(x, p, 4),
            "your patches are 4×4 whatever `p` is (a patch size of the lesson's model, hard-coded?): cut patches of "
            "side `p`, the argument (the checker tries p = 1, 2 and 4)."),
    Mistake("ignores_p", lambda x, p: _patches_of_size(x, p, 2),
            "your patches are 2×2 whatever `p` is (a hard-coded patch size?): cut patches of side `p`, the argument "
            "(the checker tries p = 1, 2 and 4)."),
    Mistake("channels_last", lambda x, p: _patches(x, p, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)"),
            "your function reads x as channels-last, (B, H, W, C), as PIL and numpy store images. Torch's images are "
            "channels-first, (B, C, H, W): `B, C, H, W = x.shape`, and the patches come from the last two axes."),
]


def _patchify_cases(g: torch.Generator) -> list[tuple]:
    """(x, p): C = 4, 3, 1, 3, 1 and p = 2, 4, 1, 4, 2, two images not square and one float64 batch. The first
    has N = p·p·C = 16, so tokens and features swapped give the right shape, and C divisible by p, so a
    channels-last reading runs. No batch size equals another size of its case."""
    plan = [(3, 4, 8, 8, 2, torch.float32), (2, 3, 8, 12, 4, torch.float32), (5, 1, 4, 4, 1, torch.float32),
            (6, 3, 16, 16, 4, torch.float64), (7, 1, 12, 8, 2, torch.float32)]
    return [(torch.randn(B, C, H, W, generator=g, dtype=dtype), p) for B, C, H, W, p, dtype in plan]


def _pixel(i: int, H: int, W: int) -> tuple[int, int, int]:
    """The (channel, row, column) of element i of one image (C, H, W)."""
    c, rest = divmod(i, H * W)
    return (c, *divmod(rest, W))


def _patch_where(x: Tensor, p: int, got: Tensor) -> str:
    """Which token, and which value in it, went wrong in the first image: a sentence, or "" (no pictures needed)."""
    expected = _patches(x[:1].double(), p)[0]  # (N, p·p·C)
    got = got[0].double()
    if got.shape != expected.shape:
        return ""
    wrong = (got != expected).nonzero()
    if len(wrong) == 0:
        return ""
    n, k = (int(v) for v in wrong[0])
    C, H, W = x.shape[1:]
    cols = W // p
    i, j = divmod(n, cols)
    head = f"In the first image (C, H, W) = ({C}, {H}, {W}) with p = {p}: "
    same = [m for m in range(len(expected)) if torch.equal(got[n].sort().values, expected[m].sort().values)]
    if same and same[0] != n:
        return head + (f"token {n} should be the patch at row {i}, column {j} of the patch grid, but it holds the "
                       f"patch at row {same[0] // cols}, column {same[0] % cols}.")
    flat = x[0].double().flatten()
    source = (flat == got[n, k]).nonzero()
    r, c, ch = k // (p * C), (k // C) % p, k % C
    if same:
        sch, sr, sc = _pixel(int(source[0]), H, W) if len(source) else (0, i * p, j * p)
        return head + (f"token {n} holds the right patch, but its values in another order: its value {k} should be "
                       f"the patch's pixel at row {r}, column {c}, channel {ch}, and it is the one at row "
                       f"{sr - i * p}, column {sc - j * p}, channel {sch}.")
    if not len(source):
        return head + (f"value {k} of token {n} is {got[n, k].item():.4g}, no value of the image: patchify only "
                       "moves the values, it computes none.")
    sch, sr, sc = _pixel(int(source[0]), H, W)
    return head + (f"token {n} should be the patch at row {i}, column {j} of the patch grid (image rows {i * p} to "
                   f"{i * p + p - 1}, columns {j * p} to {j * p + p - 1}), but its value {k} is the image's pixel at "
                   f"row {sr}, column {sc}, channel {sch}; it should be the one at row {i * p + r}, column "
                   f"{j * p + c}, channel {ch}.")


def _judge_patchify(cases: list[tuple], runs: list) -> CheckResult:
    """Results of the wrong shape first (a mistake that moves the axes, or a hard-coded p, is named by its shape and
    values), then the values as for any exercise; a wrong answer also says which token went wrong."""
    ex = EXERCISES["patchify"]
    first_wrong = None  # (case, the learner's result) of the first case judged wrong
    for case, run in zip(cases, runs, strict=False):
        got = run.get("result") if isinstance(run, dict) and run.get("status") == "ok" else None
        if not isinstance(got, Tensor) or not got.is_floating_point() or run.get("changed"):
            break
        expected = _patches(case[0].double(), case[1])
        if got.shape != expected.shape:
            for m in ex.mistakes:
                wrong = _try(m.fn, case)
                if wrong is not None and wrong.shape == got.shape and _close(got, wrong.double(), ex.scale(case)):
                    return CheckResult("patchify", "failed", m.message, m.name)
            first_wrong = case, got
            break
        if not _close(got, expected, ex.scale(case)):
            first_wrong = case, got
            break
    verdict = _judge_values(ex, cases, runs)
    if verdict.status == "error" and len(runs) <= len(cases):
        x, p = cases[len(runs) - 1]
        if x.shape[2] != x.shape[3]:
            return CheckResult("patchify", "error", f"{verdict.message} This image is not square, (H, W) = "
                               f"{tuple(x.shape[2:])}: use H // p patches down and W // p across.", verdict.mistake)
    if verdict.status != "failed" or first_wrong is None or verdict.mistake == "changed_input":
        return verdict
    (x, p), got = first_wrong
    where = _patch_where(x, p, got) if got.ndim == 3 else ""
    if where:
        return CheckResult("patchify", "failed", f"{verdict.message} {where}", verdict.mistake)
    if "shape" in verdict.message:
        return CheckResult("patchify", "failed", f"{verdict.message} patchify returns {_PATCH_SHAPE}.",
                           verdict.mistake)
    return verdict


def check_patchify(fn: Callable[[Tensor, int], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(x, p) -> tokens``: images (B, C, H, W) cut into p×p patches, (B, N, p·p·C), N = (H/p)·(W/p),

        einops.rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)

    the patches row by row, each patch's values in (row, column, channel) order, as ``dit.patchify``.
    Tested with p = 1, 2 and 4, C = 1, 3 and 4, images that are not square and a float64 batch; a wrong
    answer is named, and the message says which token holds what.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    return _check("patchify", fn, seed)


# ------------------------------------------------------------ adaLN-Zero residual branch (lesson 10)
@dataclass(frozen=True)
class _Sublayer:
    """In a case, stands for the sub-layer (attention or MLP) handed to an adaLN-Zero branch: ``run_cases``
    replaces it by a ``_SublayerModel``, which answers the same and counts its calls.

        sublayer(h) = a·tanh(b·h + c·roll(h, 1) + d),   roll along the last axis (the features)

    nonlinear, and mixing each token's features as an MLP does; it keeps any shape, (B, N, D) included.
    """

    a: float
    b: float
    c: float
    d: float

    def __call__(self, h: Tensor) -> Tensor:
        if not isinstance(h, Tensor) or not h.is_floating_point():
            raise TypeError(f"the sublayer takes the tokens as a float tensor, got {type(h).__name__}")
        return self.a * torch.tanh(self.b * h + self.c * h.roll(1, dims=-1) + self.d)


class _SublayerModel(_Sublayer):
    """The sublayer the learner's function gets: as ``_Sublayer``, counting its calls."""

    def __init__(self, a: float, b: float, c: float, d: float):
        super().__init__(a, b, c, d)
        object.__setattr__(self, "calls", 0)

    def __call__(self, h: Tensor) -> Tensor:
        object.__setattr__(self, "calls", self.calls + 1)
        return super().__call__(h)


_LN_EPS = 1e-6  # DiT's LayerNorm(elementwise_affine=False, eps=1e-6); 1e-5, torch's default, passes too


def _norm(x: Tensor, dims: tuple[int, ...] = (-1,), eps: float = _LN_EPS, correction: int = 0) -> Tensor:
    """Layer norm without affine parameters over ``dims``; correction=1 divides the variance by D - 1."""
    mean = x.mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dims, keepdim=True, correction=correction) + eps)


def _adaln_variant(x: Tensor, shift: Tensor, scale: Tensor, gate: Tensor, sublayer: Callable[[Tensor], Tensor], *,
                   eps: float = _LN_EPS, norm: str = "features", one: float = 1.0, swap: bool = False,
                   broadcast: str = "sample", order: str = "scale_shift", gate_at: str = "output",
                   residual: bool = True) -> Tensor:
    """x + gate·sublayer(LN(x)·(1 + scale) + shift) in float64, with one piece swapped for a mistaken one (the
    default is right). ``broadcast``: "tokens" lines all three (B, D) vectors up with the tokens, (1, B, D);
    "modulation" only shift and scale; "gate" only the gate."""
    x, shift, scale, gate = (v.double() for v in (x, shift, scale, gate))
    per_token = {"sample": (), "tokens": ("m", "g"), "modulation": ("m",), "gate": ("g",)}[broadcast]
    sh, sc = (v[None] if "m" in per_token else v[:, None] for v in (shift, scale))  # (B, 1, D), or (1, B, D)
    g = gate[None] if "g" in per_token else gate[:, None]
    if swap:
        sh, sc = sc, sh
    h = {"features": lambda: _norm(x, eps=eps), "tokens": lambda: _norm(x, (1,), eps),
         "sample": lambda: _norm(x, (1, 2), eps), "unbiased": lambda: _norm(x, eps=eps, correction=1),
         "none": lambda: x, "after": lambda: x}[norm]()
    h = {"scale_shift": lambda: h * (one + sc) + sh, "shift_scale": lambda: (h + sh) * (one + sc),
         "none": lambda: h}[order]()
    if norm == "after":
        h = _norm(h, eps=eps)
    if gate_at == "input":
        return x + sublayer(g * h)
    out = sublayer(h)
    if gate_at == "outside":
        return (x + out) * g
    branch = out if gate_at == "none" else g * out
    return x + branch if residual else branch


def _adaln_mistake(**kwargs: object) -> Callable[..., Tensor]:
    return lambda x, sh, sc, g, f: _adaln_variant(x, sh, sc, g, f, **kwargs)


_ADALN_FORMULA = "x + gate·sublayer(LN(x)·(1 + scale) + shift)"
_ADALN_BROADCAST = ("shift, scale and gate are (B, D), one vector per sample: make them (B, 1, D), `shift[:, None]` "
                    "or `shift.unsqueeze(1)`, so each broadcasts over the N tokens of its own sample. Against x "
                    "(B, N, D), a (B, D) tensor lines up with the last two axes, (1, B, D): token n gets sample n's "
                    "vector, which fits only when B = N and is wrong even then.")
_ADALN_SHAPES = ("The shapes do not fit: shift, scale and gate are (B, D), one vector per sample; make them (B, 1, D), "
                 "`shift[:, None]` or `shift.unsqueeze(1)`, so that each broadcasts over the N tokens of its own "
                 "sample in x (B, N, D).")
_ADALN_MISTAKES = [
    Mistake("scale_without_one", _adaln_mistake(one=0.0),
            "the normalised tokens are multiplied by scale where adaLN multiplies by 1 + scale: "
            f"{_ADALN_FORMULA}. With the 1, scale = 0 leaves LN(x) as it is; without it, it wipes the tokens out."),
    Mistake("shift_scale_swapped", _adaln_mistake(swap=True),
            f"shift and scale are swapped: LN(x) is multiplied by 1 + scale, then shift is added: {_ADALN_FORMULA} "
            "(`dl.dit.modulate(h, shift, scale)`)."),
    Mistake("shift_before_scale", _adaln_mistake(order="shift_scale"),
            "you shifted, then scaled: (LN(x) + shift)·(1 + scale). adaLN scales first and shifts after, as a "
            f"LayerNorm's own γ and β do: {_ADALN_FORMULA}."),
    Mistake("modulation_missing", _adaln_mistake(order="none"),
            "the sublayer gets LN(x) without the modulation: scale and shift carry the conditioning (the time and "
            f"the caption) into the block. {_ADALN_FORMULA}."),
    Mistake("gate_missing", _adaln_mistake(gate_at="none"),
            "the sublayer's output is added without the gate: x + gate·sublayer(...). The gate (α) is what "
            "adaLN-Zero sets to zero at the start, so that every block begins as the identity."),
    Mistake("residual_missing", _adaln_mistake(residual=False),
            f"you returned gate·sublayer(...) alone: the residual connection adds it to x, {_ADALN_FORMULA}. "
            "Without x, a block whose gate is 0 (its start) would output zeros instead of passing its input on."),
    Mistake("gate_outside_residual", _adaln_mistake(gate_at="outside"),
            "the gate multiplies x too: (x + sublayer(...))·gate. It scales the sublayer's branch only, "
            f"{_ADALN_FORMULA}, so that with gate = 0 the block passes x through unchanged."),
    Mistake("gate_on_sublayer_input", _adaln_mistake(gate_at="input"),
            "the gate multiplies the sublayer's input; it scales its output, the branch added to x: "
            f"{_ADALN_FORMULA}."),
    Mistake("norm_missing", _adaln_mistake(norm="none"),
            "x is modulated without layer norm first: normalise each token over its D features, with no affine "
            f"parameters of its own (`F.layer_norm(x, (D,), eps=1e-6)`), then {_ADALN_FORMULA}."),
    Mistake("norm_after_modulation", _adaln_mistake(norm="after"),
            "the layer norm comes after the modulation, and undoes part of it. Normalise x first, then scale and "
            f"shift: {_ADALN_FORMULA}."),
    Mistake("norm_wrong_axis", _adaln_mistake(norm="tokens"),
            "your layer norm normalises over the tokens (axis 1). It normalises each token over its own D features, "
            "the last axis: `F.layer_norm(x, (x.shape[-1],), eps=1e-6)`."),
    Mistake("norm_wrong_axis", _adaln_mistake(norm="sample"),
            "your layer norm normalises over all of a sample's tokens and features at once. It normalises each "
            "token over its own D features, the last axis: `F.layer_norm(x, (x.shape[-1],), eps=1e-6)`."),
    Mistake("unbiased_variance", _adaln_mistake(norm="unbiased"),
            "your layer norm divides the variance by D - 1: `x.var(dim=-1)` applies Bessel's correction unless told "
            "not to. Layer norm divides by D: `x.var(dim=-1, keepdim=True, unbiased=False)`, or `F.layer_norm`."),
    Mistake("wrong_broadcast", _adaln_mistake(broadcast="tokens"), _ADALN_BROADCAST),
    Mistake("wrong_broadcast", _adaln_mistake(broadcast="modulation"), _ADALN_BROADCAST),
    Mistake("wrong_broadcast", _adaln_mistake(broadcast="gate"), _ADALN_BROADCAST),
]
_NO_SUBLAYER_CALL = ("your function never called the `sublayer` it was given: call `sublayer(h)` on the modulated "
                     "tokens h = LN(x)·(1 + scale) + shift, not `block.attn`, `block.mlp` or a module of your own.")


def _adaln_cases(g: torch.Generator) -> list[tuple]:
    """(x, shift, scale, gate, sublayer): (B, N, D) = (4, 4, 8) first, B = N, where a (B, D) vector lined up with the
    tokens fits by chance; then (3, 5, 16), (2, 6, 12) and (5, 5, 12). D is never B or N. Each token has its own
    mean (±0.5) and spread (0.5 to 2), so that a layer norm over the wrong axis shows; shift and scale ~ N(0, 0.5²),
    gate ~ N(0, 1)."""
    out = []
    for B, N, D in [(4, 4, 8), (3, 5, 16), (2, 6, 12), (5, 5, 12)]:
        spread = 0.5 + 1.5 * torch.rand(B, N, 1, generator=g)
        x = 0.5 * torch.randn(B, N, 1, generator=g) + spread * torch.randn(B, N, D, generator=g)
        shift, scale = 0.5 * torch.randn(B, D, generator=g), 0.5 * torch.randn(B, D, generator=g)
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        sublayer = _Sublayer(a=round(0.5 + u[0], 4), b=round(0.5 + u[1], 4), c=round(u[2] - 0.5, 4),
                             d=round(0.5 * u[3] - 0.25, 4))
        out.append((x, shift, scale, torch.randn(B, D, generator=g), sublayer))
    return out


def _adaln_redraw(name: str, first: tuple, g: torch.Generator) -> Tensor:
    """A new shift, scale or gate for the first case (a probe: does the function read it at all?)."""
    size = 1.0 if name == "gate" else 0.5
    return size * torch.randn(first[1].shape, generator=g)


def _adaln_reference(x: Tensor, shift: Tensor, scale: Tensor, gate: Tensor, sublayer: Callable) -> Tensor:
    """DiT's branch in float64: x + gate·sublayer(modulate(LN(x), shift, scale)), the (B, D) vectors per sample."""
    x = x.double()
    h = modulate(F.layer_norm(x, x.shape[-1:], eps=_LN_EPS), shift.double(), scale.double())
    return x + gate.double()[:, None] * sublayer(h)


def _adaln_sensitivity(x: Tensor, shift: Tensor, scale: Tensor, gate: Tensor, sublayer: Callable) -> Tensor:
    """What a right answer may differ by beyond float32 roundings: a layer norm's eps anywhere from 1e-6 (DiT's)
    to 1e-5 (torch's default), plus the reference's own float32 error."""
    right = _adaln_variant(x, shift, scale, gate, sublayer)
    other_eps = _adaln_variant(x, shift, scale, gate, sublayer, eps=1e-5)
    in_float32 = _adaln_variant(x.float(), shift.float(), scale.float(), gate.float(), sublayer)  # float64 inside
    x32 = x.float()
    h32 = modulate(F.layer_norm(x32, x32.shape[-1:], eps=_LN_EPS), shift.float(), scale.float())
    float32 = x32 + gate.float()[:, None] * sublayer(h32)
    return (right - other_eps).abs() + (in_float32 - float32.double()).abs()


def _adaln_scale(case: tuple) -> float:
    """The size of the intermediate values: x, the modulated tokens and the gated branch."""
    x, shift, scale, gate, sublayer = case
    x = x.double()
    h = modulate(_norm(x), shift.double(), scale.double())
    return _size(x, h, gate.double()[:, None] * sublayer(h))


def _judge_adaln(cases: list[tuple], runs: list) -> CheckResult:
    """Whether the sublayer was called at all, then the values as for any exercise; an error of shapes that do not
    fit (B ≠ N) says how to broadcast the (B, D) vectors."""
    for run in runs:
        if isinstance(run, dict) and run.get("status") == "ok" and isinstance(run.get("result"), Tensor) \
                and isinstance(run.get("calls"), int) and run["calls"] == 0:
            return CheckResult("adaln", "failed", _NO_SUBLAYER_CALL, "ignores_sublayer")
    verdict = _judge_values(EXERCISES["adaln"], cases, runs)
    if verdict.status == "error" and "must match the size of tensor" in verdict.message:
        return CheckResult("adaln", "error", f"{verdict.message} {_ADALN_SHAPES}", "wrong_broadcast")
    return verdict


def check_adaln(fn: Callable[[Tensor, Tensor, Tensor, Tensor, Callable[[Tensor], Tensor]], Tensor],
                seed: int | None = None) -> CheckResult:
    """Check ``fn(x, shift, scale, gate, sublayer) -> x_next``, one residual branch of a DiT block (adaLN-Zero):

        x + gate·sublayer(LN(x)·(1 + scale) + shift)

    x (B, N, D) tokens; shift, scale and gate (B, D), one vector per sample, broadcast over its N tokens;
    LN a layer norm over the D features without affine parameters (eps 1e-6 as DiT, or torch's 1e-5).
    The checker hands ``fn`` a sublayer of its own, nonlinear, which counts its calls. Tested with B = N,
    where a vector lined up with the tokens instead of the samples fits by chance, and with B ≠ N.

    Lesson: notebooks/10_colour_transformers_text.ipynb
    """
    return _check("adaln", fn, seed)


# ------------------------------------------------------------ Gaussian KL of a VAE (lesson 11)
_KL_FORMULA = "KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) with σ² = exp(logvar)"


def _kl_variant(mu: Tensor, logvar: Tensor, *, half: float = 0.5, var: str = "exp", log: str = "logvar",
                mu2: bool = True, minus_one: bool = True, reduce: str = "sum") -> Tensor:
    """½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) per row in float64, with one piece swapped for a mistaken one (the default
    is right): ``var`` what stands for σ², ``log`` for log σ², ``reduce`` how the D dimensions are combined."""
    mu, logvar = mu.double(), logvar.double()
    variance = {"exp": logvar.exp(), "exp_twice": (2 * logvar).exp(), "sigma": (0.5 * logvar).exp()}[var]
    log_variance = {"logvar": logvar, "twice": 2 * logvar, "plus": -logvar, "log_sigma": 0.5 * logvar}[log]
    terms = (mu * mu if mu2 else 0.0) + variance - log_variance - (1.0 if minus_one else 0.0)  # (B, D)
    return half * (terms.sum(dim=1) if reduce == "sum" else terms.mean(dim=1))  # (B,)


def _reversed_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(0, I) ‖ N(μ, diag σ²)) = ½ Σ_j ((1 + μ_j²)/σ_j² + log σ_j² − 1), per row in float64: for p = N(0, 1) and
    q = N(μ, σ²), E_p[log p − log q] = −½ + ½·log σ² + E_p[(x − μ)²]/(2σ²) with E_p[(x − μ)²] = 1 + μ²."""
    mu, logvar = mu.double(), logvar.double()
    return 0.5 * ((1 + mu * mu) * (-logvar).exp() + logvar - 1).sum(dim=1)


_GAUSSIAN_KL_MISTAKES = [
    Mistake("half_missing", lambda mu, lv: _kl_variant(mu, lv, half=1.0),
            f"your KL is twice the right one: the ½ in front is missing. {_KL_FORMULA}."),
    Mistake("logvar_as_log_sigma", lambda mu, lv: _kl_variant(mu, lv, var="exp_twice", log="twice"),
            "you read `logvar` as log σ (σ² = exp(2·logvar), log σ² = 2·logvar). The encoder's second output is "
            "log σ², the log of the *variance*: σ² = exp(logvar), and log σ² is `logvar` itself. "
            f"{_KL_FORMULA}."),
    Mistake("mean_not_sum", lambda mu, lv: _kl_variant(mu, lv, reduce="mean"),
            "you averaged over the D latent dimensions. The KL of a diagonal Gaussian is the *sum* of the D "
            "one-dimensional KLs (the dimensions are independent, and the KLs of independent parts add up): "
            f"`.sum(dim=1)`, not `.mean(dim=1)`. {_KL_FORMULA}."),
    Mistake("mean_not_sum", lambda mu, lv: _kl_variant(mu, lv, half=1.0, reduce="mean"),
            "you averaged over the D latent dimensions, and the ½ is missing. The KL of a diagonal Gaussian is ½ "
            "times the *sum* over the D dimensions (the KLs of independent parts add up): `0.5 * (...).sum(dim=1)`. "
            f"{_KL_FORMULA}."),
    Mistake("log_sign_flipped", lambda mu, lv: _kl_variant(mu, lv, log="plus"),
            "the log term has the wrong sign: it is − log σ², so `- logvar`, not `+ logvar`. "
            f"{_KL_FORMULA}. (Each σ² − log σ² − 1 is ≥ 0 and is 0 at σ² = 1: the KL is never negative.)"),
    Mistake("minus_one_missing", lambda mu, lv: _kl_variant(mu, lv, minus_one=False),
            f"the − 1 is missing: {_KL_FORMULA}. Without it, q = N(0, I), the prior itself, would be D/2 nats "
            "away from the prior instead of 0."),
    Mistake("mu_squared_missing", lambda mu, lv: _kl_variant(mu, lv, mu2=False),
            f"the μ² term is missing: {_KL_FORMULA}. μ² is what pulls the means towards the prior's 0; without "
            "it only σ² is compared with 1."),
    Mistake("reversed_kl", _reversed_kl,
            "you computed the KL the other way round, KL(N(0, I) ‖ q) = ½ Σ_j ((1 + μ_j²)/σ_j² + log σ_j² − 1). "
            "KL is not symmetric: the ELBO's term is KL(q ‖ p), from the encoder's q = N(μ, σ²) to the prior "
            f"p = N(0, I) (`kl_divergence(q, p)`, q first). {_KL_FORMULA}."),
    Mistake("sigma_for_variance", lambda mu, lv: _kl_variant(mu, lv, var="sigma"),
            "you used σ = exp(½·logvar), the standard deviation (what the reparameterisation multiplies ε by), "
            f"where the variance σ² = exp(logvar) belongs. {_KL_FORMULA}."),
    Mistake("sigma_for_variance", lambda mu, lv: _kl_variant(mu, lv, var="sigma", log="log_sigma"),
            "you used σ = exp(½·logvar), the standard deviation, where the variance belongs, in both σ² and "
            "log σ²: σ² = exp(logvar) (or `std ** 2`) and log σ² = logvar (or `2 * torch.log(std)`). "
            f"{_KL_FORMULA}."),
]
_KL_NOT_FINITE = ("your result contains NaN or inf: the log of a negative number? `logvar` is already log σ² and is "
                  "negative wherever σ² < 1: σ² = exp(logvar), and log σ² is `logvar` itself, no `torch.log` "
                  f"needed. {_KL_FORMULA}.")


def _gaussian_kl_cases(g: torch.Generator) -> list[tuple]:
    """(mu, logvar), both (B, D): (8, 4) first (the probes redraw its arguments), then one row (B = 1) of D = 16, one
    latent dimension (D = 1), a float64 batch of D = 16 and (12, 3). B is never D, so that a sum over the wrong axis
    has the wrong shape, and D is never 2 (where a mean without the ½ is right). μ ~ N(0, 1) and logvar uniform in
    [-3, 2]: σ² from 0.05 to 7.4, so that a σ² or a log σ² read wrong shows."""
    plan = [(8, 4, torch.float32), (1, 16, torch.float32), (6, 1, torch.float32), (5, 16, torch.float64),
            (12, 3, torch.float32)]
    return [(torch.randn(B, D, generator=g, dtype=dtype), _random_logvar(g, (B, D), dtype)) for B, D, dtype in plan]


def _random_logvar(g: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
    return -3 + 5 * torch.rand(shape, generator=g, dtype=dtype)  # uniform in [-3, 2]


def _gaussian_kl_redraw(name: str, first: tuple, g: torch.Generator) -> Tensor:
    """A new mu or logvar for the first case, of the same shape (a probe: does the function read it at all?)."""
    shape = tuple(first[0].shape)
    return torch.randn(shape, generator=g) if name == "mu" else _random_logvar(g, shape)


def _gaussian_kl_scale(case: tuple) -> float:
    """The size of the intermediate values: each row's Σ_j (μ_j² + σ_j² + |log σ_j²| + 1), the largest over the rows.
    A float32 sum of D terms errs by a few roundings of that size, whatever the sum itself."""
    mu, logvar = case[0].double(), case[1].double()
    return float((mu * mu + logvar.exp() + logvar.abs() + 1).sum(dim=1).max())


def _kl_shape_verdict(case: tuple, got: Tensor, verdict: CheckResult) -> CheckResult:
    """What a result of the wrong shape says about where the sum went."""
    B, D = case[0].shape
    shape, want = tuple(got.shape), f"shape (B,) = ({B},)"
    if shape == (B, D) and D != 1:
        return CheckResult("gaussian_kl", "failed", f"your result has shape {shape}, one value per latent dimension "
                           f"of each row: the KL is one number per row, {want}. Sum the D terms of each row, "
                           f"`.sum(dim=1)`. {_KL_FORMULA}.", "not_summed")
    if shape == (B, 1):
        return CheckResult("gaussian_kl", "failed", f"your result has shape {shape}: the sum over the D latent "
                           f"dimensions kept its axis (`keepdim=True`?). The KL is one number per row, {want}: "
                           "`.sum(dim=1)`.", "kept_dim")
    if shape == (D,):
        return CheckResult("gaussian_kl", "failed", f"your result has shape ({D},), one value per latent dimension: "
                           f"you summed over the batch (dim 0) instead of over the D latent dimensions (dim 1). The "
                           f"KL is one number per row, {want}: `.sum(dim=1)`.", "summed_over_batch")
    if got.numel() == 1:
        squeeze = " (A `.squeeze()` also drops the batch axis when B = 1.)" if B == 1 else ""
        return CheckResult("gaussian_kl", "failed", f"your function returned a single number, shape {shape}, for mu "
                           f"and logvar of shape ({B}, {D}): the KL is wanted per row, one value for each of the B "
                           f"examples, {want}. Sum over the D latent dimensions only, `.sum(dim=1)`, not over the "
                           "whole batch (`.sum()` or `.mean()` with no `dim`): the training loss averages over the "
                           f"batch later.{squeeze}", "not_per_row")
    return CheckResult("gaussian_kl", "failed", f"{verdict.message} The KL is one number per row of mu: {want}.",
                       verdict.mistake)


def _judge_gaussian_kl(cases: list[tuple], runs: list) -> CheckResult:
    """The values as for any exercise; a result of the wrong shape says which axis the sum went over, and a NaN
    names the likely log of a negative number."""
    verdict = _judge_values(EXERCISES["gaussian_kl"], cases, runs)
    if verdict.mistake == "not_finite":
        return CheckResult("gaussian_kl", "failed", _KL_NOT_FINITE, "not_finite")
    if verdict.mistake == "wrong_shape":
        for case, run in zip(cases, runs, strict=False):
            got = run.get("result") if isinstance(run, dict) else None
            if isinstance(got, Tensor) and tuple(got.shape) != (case[0].shape[0],):
                return _kl_shape_verdict(case, got, verdict)
    return verdict


def check_gaussian_kl(fn: Callable[[Tensor, Tensor], Tensor], seed: int | None = None) -> CheckResult:
    """Check ``fn(mu, logvar) -> KL(N(μ, diag σ²) ‖ N(0, I))`` per row, in nats, with σ² = exp(logvar):

        ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1)

    mu and logvar (B, D) → (B,), summed over the D latent dimensions (Kingma & Welling 2014, Appendix B;
    ``vae.gaussian_kl``). Tested with B = 1, D = 1, D = 16 and a float64 batch, logvar spread over
    [-3, 2] so that σ² ≠ 1; a result of the wrong shape is told which axis its sum went over.

    Lesson: notebooks/11_generative_models.ipynb
    """
    return _check("gaussian_kl", fn, seed)


# ------------------------------------------------------------------ the exercises
def _noising(name: str, fn: Callable[..., Tensor], mistakes: Sequence[Mistake]) -> _Exercise:
    return _Exercise(name, _noising_cases,
                     reference=lambda x, t, s, e: fn(x.double(), t, s, e.double()),
                     reference32=lambda x, t, s, e: fn(x.float(), t, s, e.float()),
                     scale=_noising_scale, mistakes=mistakes, probes=("repeat", "noise", "schedule"))


EXERCISES: dict[str, _Exercise] = {
    "markov_step": _noising("markov_step", markov_step, _MARKOV_MISTAKES),
    "q_sample": _noising("q_sample", q_sample, _Q_SAMPLE_MISTAKES),
    "cosine_schedule": _Exercise(
        "cosine_schedule", _cosine_cases, reference=cosine_betas, sensitivity=_cosine_sensitivity,
        scale=lambda case: 1.0, mistakes=_COSINE_MISTAKES),
    "sinusoidal_embedding": _Exercise(
        "sinusoidal_embedding", _embedding_cases, reference=_embedding,
        reference32=lambda t, d: _sinusoidal_embedding32(t, d),
        scale=lambda case: float(case[0].abs().max()), mistakes=_EMBEDDING_MISTAKES),
    "diffusion_loss": _Exercise("diffusion_loss", _loss_cases, judge=_judge_loss),
    "ddpm_step": _Exercise(
        "ddpm_step", _ddpm_step_cases, reference=_ddpm_reference(torch.float64),
        reference32=_ddpm_reference(torch.float32), scale=lambda case: 2 * _size(case[0], case[2], case[4]),
        mistakes=_DDPM_STEP_MISTAKES, probes=("repeat", "noise", "schedule"),
        passed="correct on {n} random tests, the last steps (t = 1 and t = 0) included.",
        diagnose=_ddpm_last_steps),
    "guided_eps": _Exercise(
        "guided_eps", _guided_cases, reference=lambda c, u, w: _guided(c.double(), u.double(), w),
        reference32=lambda c, u, w: _guided(c.float(), u.float(), w),
        scale=lambda case: (1 + abs(case[2])) * _size(case[0], case[1]), mistakes=_GUIDED_MISTAKES),
    "mixture_score": _Exercise(
        "mixture_score", _mixture_cases, reference=lambda x, w, m, c: mixture_score(x.double(), w, m, c),
        reference32=lambda x, w, m, c: mixture_score(x.float(), w, m, c), scale=_mixture_scale,
        mistakes=_MIXTURE_MISTAKES, probes=("weights", "means", "covs"), redraw=_mixture_redraw, probes_first=True,
        passed="correct on {n} random mixtures, a single Gaussian (K = 1) and d = 1 and 3 included."),
    "heun_step": _Exercise(
        "heun_step", _heun_cases, reference=_heun_reference(torch.float64), reference32=_heun_reference(torch.float32),
        scale=_heun_scale, mistakes=_HEUN_MISTAKES, judge=_judge_heun,
        passed="correct on {n} random steps, from σ up to 80 down to the last step into σ = 0."),
    "flow_matching_loss": _Exercise("flow_matching_loss", _flow_loss_cases, judge=_judge_flow_loss),
    "flow_step": _Exercise(
        "flow_step", _flow_step_cases, reference=_flow_step_reference(torch.float64),
        reference32=_flow_step_reference(torch.float32), scale=_flow_step_scale, mistakes=_FLOW_STEP_MISTAKES,
        judge=_judge_flow_step,
        passed="correct on {n} random steps, Euler and midpoint, from t = 0 to the last step into t = 1."),
    "patchify": _Exercise(
        "patchify", _patchify_cases, reference=lambda x, p: patchify(x.double(), p), scale=lambda case: _size(case[0]),
        mistakes=_PATCHIFY_MISTAKES, judge=_judge_patchify,
        passed="correct on {n} random batches: p = 1, 2 and 4, C = 1, 3 and 4, images that are not square and "
               "float64 included."),
    "adaln": _Exercise(
        "adaln", _adaln_cases, reference=_adaln_reference, sensitivity=_adaln_sensitivity, scale=_adaln_scale,
        mistakes=_ADALN_MISTAKES, probes=("shift", "scale", "gate"), redraw=_adaln_redraw, probes_first=True,
        judge=_judge_adaln,
        passed="correct on {n} random batches, B = N included (where a vector lined up with the tokens fits by "
               "chance)."),
    "gaussian_kl": _Exercise(
        "gaussian_kl", _gaussian_kl_cases, reference=lambda mu, lv: gaussian_kl(mu.double(), lv.double()),
        reference32=lambda mu, lv: gaussian_kl(mu.float(), lv.float()), scale=_gaussian_kl_scale,
        mistakes=_GAUSSIAN_KL_MISTAKES, probes=("mu", "logvar"), redraw=_gaussian_kl_redraw, probes_first=True,
        judge=_judge_gaussian_kl,
        passed="correct on {n} random batches: one row (B = 1), one latent dimension (D = 1), D = 16 and float64 "
               "included."),
}


def _sinusoidal_embedding32(t: Tensor, dim: int) -> Tensor:
    from .unet import sinusoidal_embedding

    return sinusoidal_embedding(t, dim)
