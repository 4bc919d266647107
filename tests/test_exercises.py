"""Each checker accepts the reference and diagnoses every mistake it claims to know.

The buggy functions below are written the way a learner would write them (indexing
the schedule directly), independently of the checker's own list of mistakes.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import diffusion_lessons as dl
from diffusion_lessons import exercises as ex
from diffusion_lessons import markov_step, q_sample
from diffusion_lessons.schedules import cosine_betas
from diffusion_lessons.unet import sinusoidal_embedding


# ------------------------------------------------------------- markov_step
def good_markov_step(x_prev, t, s, noise):
    beta = s.betas[t]
    return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * noise


MARKOV_BUGS = {
    "beta_for_sqrt_beta": lambda x, t, s, e: (1 - s.betas[t]) ** 0.5 * x + s.betas[t] * e,
    "signal_not_shrunk": lambda x, t, s, e: x + s.betas[t] ** 0.5 * e,
    "alpha_for_sqrt_alpha": lambda x, t, s, e: s.alphas[t] * x + s.betas[t].sqrt() * e,
    "alpha_bar_for_beta": lambda x, t, s, e: s.alpha_bars[t].sqrt() * x + (1 - s.alpha_bars[t]).sqrt() * e,
    "swapped": lambda x, t, s, e: s.betas[t].sqrt() * x + s.alphas[t].sqrt() * e,
    "t_off_by_one_low": lambda x, t, s, e: s.alphas[t - 1].sqrt() * x + s.betas[t - 1].sqrt() * e,
    "t_off_by_one_high": lambda x, t, s, e: s.alphas[t + 1].sqrt() * x + s.betas[t + 1].sqrt() * e,
    "noise_subtracted": lambda x, t, s, e: s.alphas[t].sqrt() * x - s.betas[t].sqrt() * e,
}


# --------------------------------------------------------------- q_sample
def good_q_sample(x0, t, s, noise):
    a = s.alpha_bars[t]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


Q_BUGS = {
    "alpha_for_alpha_bar": lambda x, t, s, e: s.alphas[t].sqrt() * x + (1 - s.alphas[t]).sqrt() * e,
    "beta_for_one_minus_alpha_bar": lambda x, t, s, e: s.alpha_bars[t].sqrt() * x + s.betas[t].sqrt() * e,
    "no_sqrt_on_signal": lambda x, t, s, e: s.alpha_bars[t] * x + (1 - s.alpha_bars[t]).sqrt() * e,
    "no_sqrt_on_noise": lambda x, t, s, e: s.alpha_bars[t].sqrt() * x + (1 - s.alpha_bars[t]) * e,
    "signal_not_shrunk": lambda x, t, s, e: x + (1 - s.alpha_bars[t]).sqrt() * e,
    "swapped": lambda x, t, s, e: (1 - s.alpha_bars[t]).sqrt() * x + s.alpha_bars[t].sqrt() * e,
    "t_off_by_one_low": lambda x, t, s, e: s.alpha_bars[t - 1].sqrt() * x + (1 - s.alpha_bars[t - 1]).sqrt() * e,
    "t_off_by_one_high": lambda x, t, s, e: s.alpha_bars[t + 1].sqrt() * x + (1 - s.alpha_bars[t + 1]).sqrt() * e,
}


# ------------------------------------------------------------------ cosine
def good_cosine_float32(T, s=0.008):
    """A learner's version in float32 with numpy-style steps: must pass too."""
    t = torch.arange(T + 1, dtype=torch.float32)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return torch.clip(1 - alpha_bar[1:] / alpha_bar[:-1], max=0.999)


def _cos_f(T, s, power=2, angle=math.pi / 2):
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * angle) ** power
    return f / f[0]


COSINE_BUGS = {
    "not_clipped": lambda T, s=0.008: 1 - _cos_f(T, s)[1:] / _cos_f(T, s)[:-1],
    "returned_alpha_bars": lambda T, s=0.008: _cos_f(T, s)[1:],
    "one_minus_alpha_bar": lambda T, s=0.008: torch.clip(1 - _cos_f(T, s)[1:], max=0.999),
    "no_square": lambda T, s=0.008: torch.clip(1 - _cos_f(T, s, 1)[1:] / _cos_f(T, s, 1)[:-1], max=0.999),
    "pi_not_halved": lambda T, s=0.008: torch.clip(
        1 - _cos_f(T, s, angle=math.pi)[1:] / _cos_f(T, s, angle=math.pi)[:-1], max=0.999),
    "offset_ignored": lambda T, s=0.008: torch.clip(1 - _cos_f(T, 0)[1:] / _cos_f(T, 0)[:-1], max=0.999),
}

# ------------------------------------------------------ sinusoidal embedding
def good_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    angles = t[:, None].float() * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def _angles(t, dim, base=10000.0, denom=None, sign=-1):
    half = dim // 2
    freqs = base ** (sign * torch.arange(half, dtype=torch.float64) / (denom or half))
    return t[:, None].double() * freqs[None, :]


EMBEDDING_BUGS = {
    "cos_first": lambda t, d: torch.cat([_angles(t, d).cos(), _angles(t, d).sin()], 1),
    "interleaved": lambda t, d: torch.stack([_angles(t, d).sin(), _angles(t, d).cos()], -1).flatten(1),
    "positive_exponent": lambda t, d: torch.cat([_angles(t, d, sign=1).sin(), _angles(t, d, sign=1).cos()], 1),
    "divided_by_dim": lambda t, d: torch.cat([_angles(t, d, denom=d).sin(), _angles(t, d, denom=d).cos()], 1),
    "t_not_multiplied": lambda t, d: torch.cat([_angles(torch.ones_like(t), d).sin(),
                                                _angles(torch.ones_like(t), d).cos()], 1),
    "period_1000": lambda t, d: torch.cat([_angles(t, d, base=1000.0).sin(), _angles(t, d, base=1000.0).cos()], 1),
    "half_minus_one": lambda t, d: torch.cat([_angles(t, d, denom=d // 2 - 1).sin(),  # the original DDPM code
                                              _angles(t, d, denom=d // 2 - 1).cos()], 1),
}
CASES = [
    (ex.check_markov_step, markov_step, good_markov_step, MARKOV_BUGS, ex._MARKOV_MISTAKES),
    (ex.check_q_sample, q_sample, good_q_sample, Q_BUGS, ex._Q_SAMPLE_MISTAKES),
    (ex.check_cosine_schedule, cosine_betas, good_cosine_float32, COSINE_BUGS, ex._COSINE_MISTAKES),
    (ex.check_sinusoidal_embedding, sinusoidal_embedding, good_embedding, EMBEDDING_BUGS, ex._EMBEDDING_MISTAKES),
]


@pytest.mark.parametrize("seed", [0, 1, 2, None])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0].__name__)
def test_reference_and_a_learner_solution_pass(case, seed):
    check, reference, learner, *_ = case
    for fn in (reference, learner):
        result = check(fn, seed=seed)
        assert result.passed and bool(result), result
        assert repr(result).startswith("✅")


@pytest.mark.parametrize("seed", [0, 1, 2, None])
@pytest.mark.parametrize(
    "check, name, bug",
    [(c[0], name, bug) for c in CASES for name, bug in c[3].items()],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""),
)
def test_each_mistake_is_diagnosed(check, name, bug, seed):
    result = check(bug, seed=seed)
    assert not result.passed and result.status == "failed"
    assert result.mistake == name, result


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0].__name__)
def test_every_claimed_mistake_has_a_test(case):
    *_, bugs, claimed = case
    assert {m.name for m in claimed} == set(bugs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0].__name__)
def test_unimplemented_broken_and_unknown_answers(case):
    check = case[0]

    def not_yet(*args):
        raise NotImplementedError()

    result = check(not_yet)
    assert result.status == "not implemented" and "not implemented yet" in result.message

    def crashes(*args):
        return args[0] @ torch.zeros(7, 7)

    result = check(crashes)
    assert result.status == "error" and "raised" in result.message

    result = check(lambda *args: None)
    assert result.status == "failed" and "returned None" in result.message

    def unknown(*args):
        return 1.01 * case[1](*args) + 0.3

    result = check(unknown)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message


def test_wrong_shape_is_named():
    result = ex.check_cosine_schedule(lambda T, s=0.008: cosine_betas(T + 1, s))
    assert not result and "shape" in result.message
    result = ex.check_q_sample(lambda x, t, s, e: q_sample(x, t, s, e).sum(0))
    assert not result and "shape" in result.message
    assert result.mistake == "wrong_shape"  # a checker of its own reads the id, never the message's wording


def test_checker_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ex.check_q_sample(q_sample)
    torch.testing.assert_close(torch.rand(3), expected)


def test_checker_wants_a_function():
    with pytest.raises(ValueError, match="pass your function itself"):
        ex.check_q_sample(q_sample(torch.zeros(2, 2), 0, ex.NoiseSchedule.linear()))


def test_cosine_tolerance_separates_float32_learners_from_an_unclipped_beta():
    """The tightest call the cosine checker makes, over many random draws of T and s."""
    for seed in range(40):
        assert ex.check_cosine_schedule(good_cosine_float32, seed=seed)
        assert ex.check_cosine_schedule(COSINE_BUGS["not_clipped"], seed=seed).mistake == "not_clipped"



# ------------------------------------------------------------ diffusion loss
def good_loss(model, x0, s):
    t = torch.randint(0, s.T, (x0.shape[0],))
    noise = torch.randn_like(x0)
    return F.mse_loss(model(dl.q_sample(x0, t, s, noise), t), noise)


def _loss_variant(target="noise", t_mode="random", feed="x_t", index=None, swap=False, alpha=False):
    def my_loss(model, x0, s):
        B = x0.shape[0]
        t = torch.randint(0, s.T, (B,)) if t_mode == "random" else torch.full((B,), 500)
        noise = torch.randn_like(x0)
        coeffs = s.alphas if alpha else s.alpha_bars
        a = coeffs[t if index is None else index(t, s)].reshape(-1, 1, 1, 1)
        signal, noisy = (noise, x0) if swap else (x0, noise)
        x_t = a.sqrt() * signal + (1 - a).sqrt() * noisy
        x_in = x0 if feed == "x0" else x_t
        pred = model(x_in) if t_mode == "missing" else model(x_in, t)
        return F.mse_loss(pred, {"noise": noise, "x0": x0, "x_t": x_t}[target])

    return my_loss


LOSS_BUGS = {
    "t_not_passed": _loss_variant(t_mode="missing"),
    "constant_t": _loss_variant(t_mode="constant"),
    "clean_input": _loss_variant(feed="x0"),
    "target_x0": _loss_variant(target="x0"),
    "target_x_t": _loss_variant(target="x_t"),
    "reversed_t": _loss_variant(index=lambda t, s: s.T - 1 - t),
    "noise_and_data_swapped": _loss_variant(swap=True),
    "alpha_for_alpha_bar": _loss_variant(alpha=True),
}


@pytest.mark.parametrize("seed", [0, 1, None])
def test_loss_checker_accepts_correct_losses(seed):
    assert ex.check_diffusion_loss(good_loss, seed=seed)
    assert ex.check_diffusion_loss(_loss_variant(), seed=seed)
    from diffusion_lessons.training import diffusion_loss

    assert ex.check_diffusion_loss(lambda m, x0, s: diffusion_loss(m, x0, s), seed=seed)


@pytest.mark.parametrize("seed", [0, 1, None])
@pytest.mark.parametrize("name", sorted(LOSS_BUGS))
def test_loss_checker_names_each_mistake(name, seed):
    result = ex.check_diffusion_loss(LOSS_BUGS[name], seed=seed)
    assert not result and result.mistake == name, result


def test_loss_checker_other_failures():
    def not_yet(model, x0, s):
        raise NotImplementedError()

    assert ex.check_diffusion_loss(not_yet).status == "not implemented"
    per_pixel = lambda m, x0, s: (m(x0 * 0.5, torch.randint(0, 1000, (64,))) - x0) ** 2
    assert "one number" in ex.check_diffusion_loss(per_pixel).message
    summed = lambda m, x0, s: good_loss(m, x0, s) * 4096
    assert "mean squared error" in ex.check_diffusion_loss(summed).message
    twice = lambda m, x0, s: good_loss(m, x0, s) + good_loss(m, x0, s)
    assert "exactly once" in ex.check_diffusion_loss(twice).message


# ------------------------------------------------ every checker through the same shared cases
CHECKERS = {name: getattr(ex, f"check_{name}") for name in ex.EXERCISES}


def _not_yet(*args):
    raise NotImplementedError()


def _divides_by_zero(*args):
    return 1 / 0  # the learner's own line


SHARED = [  # (a learner's function, the status, words the message must hold)
    (_not_yet, "not implemented", "not implemented yet"),
    (_divides_by_zero, "error", "ZeroDivisionError: division by zero, at line"),
    (lambda *args: None, "failed", "returned None"),
    (lambda *args: "a string", "failed", "str"),
]


@pytest.mark.parametrize("name", sorted(CHECKERS))
@pytest.mark.parametrize("fn, status, words", SHARED, ids=["not_implemented", "raises", "none", "string"])
def test_every_checker_answers_the_shared_cases_alike(name, fn, status, words):
    result = CHECKERS[name](fn, seed=0)
    assert result.status == status and words in result.message, result
    assert "exercises.py" not in result.message  # the learner's line, never the checker's
    assert "return 1 / 0" in result.message or fn is not _divides_by_zero


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_every_checker_judges_the_runs_it_is_handed_and_survives_forged_ones(name):
    cases = ex.make_cases(name, seed=0)
    for case, back in zip(cases, ex.decode(ex.encode(cases)), strict=True):  # the grader's trip between processes
        for a, b in zip(case, back, strict=True):
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b)
            elif isinstance(a, ex.NoiseSchedule):
                assert torch.equal(a.alpha_bars, b.alpha_bars) and a.T == b.T
            elif isinstance(a, ex._Spy):
                assert torch.equal(a.answer, b.answer)
            else:
                assert a == b
    for forged in ([], [None], ["passed"], [{"status": "ok", "result": "x"}] * len(cases), [{}] * len(cases),
                   [{"status": "ok", "result": torch.zeros(1), "changed": ["x"]}] * len(cases)):
        result = ex.judge(name, cases, forged)
        assert not result.passed, (forged, result)
