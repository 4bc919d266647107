"""The DDPM-step checker (lesson 05) accepts right answers and names each mistake it claims to know.

The buggy steps below are written the way a learner would write them (indexing the
schedule directly), independently of the checker's own list of mistakes.
"""

import pytest
import torch

from diffusion_lessons import exercises as ex
from diffusion_lessons.sampling import ddpm_step, predict_x0


# ------------------------------------------------------------- right answers
def good_ddpm_step(eps, t, x_t, s, noise):
    beta, alpha, alpha_bar = s.betas[t], s.alphas[t], s.alpha_bars[t]
    mean = (x_t - beta / torch.sqrt(1 - alpha_bar) * eps) / torch.sqrt(alpha)
    if t == 0:
        return mean
    return mean + torch.sqrt(s.posterior_variance[t]) * noise


def good_beta_tilde_by_hand(eps, t, x_t, s, noise):
    mean = (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()
    if t > 0:
        beta_tilde = (1 - s.alpha_bars[t - 1]) / (1 - s.alpha_bars[t]) * s.betas[t]
        mean = mean + beta_tilde.sqrt() * noise
    return mean


def good_no_guard(eps, t, x_t, s, noise):
    """Without the `if t > 0`: still right, since β̃_0 = 0 exactly."""
    mean = (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()
    return mean + s.posterior_variance[t].sqrt() * noise


def good_through_x0(eps, t, x_t, s, noise):
    """The same step written through x̂_0 and the posterior mean μ̃(x̂_0, x_t), DDPM eq. (7)."""
    x0_hat = predict_x0(eps, t, x_t, s)
    mean = s.posterior_coef_x0[t] * x0_hat + s.posterior_coef_xt[t] * x_t
    return mean + (s.posterior_variance[t].sqrt() * noise if t > 0 else 0)


GOOD = [lambda e, t, x, s, z: ddpm_step(e, t, x, s, noise=z), good_ddpm_step, good_beta_tilde_by_hand,
        good_no_guard, good_through_x0]


# ------------------------------------------------------------------ mistakes
def _mean(eps, t, x_t, s):
    return (x_t - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps) / s.alphas[t].sqrt()


def _sigma(t, s):
    return s.posterior_variance[t].sqrt() if t > 0 else 0.0


def off_by_one(shift):
    def step(eps, t, x_t, s, noise):
        i = t + shift
        mean = (x_t - s.betas[i] / (1 - s.alpha_bars[i]).sqrt() * eps) / s.alphas[i].sqrt()
        return mean + (s.posterior_variance[i].sqrt() * noise if t > 0 else 0)

    return step


def wrapped_beta_tilde(eps, t, x_t, s, noise):
    """β̃ by hand and no `if t > 0`: at t = 0, alpha_bars[t - 1] is alpha_bars[-1], the last entry."""
    beta_tilde = (1 - s.alpha_bars[t - 1]) / (1 - s.alpha_bars[t]) * s.betas[t]
    return _mean(eps, t, x_t, s) + beta_tilde.sqrt() * noise


def half_noise_at_the_end(eps, t, x_t, s, noise):
    return _mean(eps, t, x_t, s) + (_sigma(t, s) if t > 0 else 0.5) * noise


BUGS = {
    "no_sqrt_on_alpha": lambda e, t, x, s, z: (x - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * e) / s.alphas[t]
    + _sigma(t, s) * z,
    "alpha_bar_for_alpha": lambda e, t, x, s, z: (x - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * e)
    / s.alpha_bars[t].sqrt() + _sigma(t, s) * z,
    "eps_added": lambda e, t, x, s, z: (x + s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * e) / s.alphas[t].sqrt()
    + _sigma(t, s) * z,
    "noise_subtracted": lambda e, t, x, s, z: _mean(e, t, x, s) - _sigma(t, s) * z,
    "eps_coef_no_sqrt": lambda e, t, x, s, z: (x - s.betas[t] / (1 - s.alpha_bars[t]) * e) / s.alphas[t].sqrt()
    + _sigma(t, s) * z,
    "one_minus_alpha_bar_for_beta": lambda e, t, x, s, z: (x - (1 - s.alpha_bars[t]) / (1 - s.alpha_bars[t]).sqrt()
                                                           * e) / s.alphas[t].sqrt() + _sigma(t, s) * z,
    "beta_for_beta_tilde": lambda e, t, x, s, z: _mean(e, t, x, s) + (s.betas[t].sqrt() if t > 0 else 0) * z,
    "variance_not_sqrt": lambda e, t, x, s, z: _mean(e, t, x, s) + (s.posterior_variance[t] if t > 0 else 0) * z,
    "no_noise": lambda e, t, x, s, z: _mean(e, t, x, s),
    "t_off_by_one_low": off_by_one(-1),
    "t_off_by_one_high": off_by_one(+1),
    "noise_at_last_step": wrapped_beta_tilde,
}


@pytest.mark.parametrize("seed", [0, 1, 2, None])
@pytest.mark.parametrize("fn", GOOD, ids=["package", "learner", "beta_tilde_by_hand", "no_guard", "through_x0"])
def test_right_answers_pass(fn, seed):
    result = ex.check_ddpm_step(fn, seed=seed)
    assert result.passed and bool(result), result
    assert repr(result).startswith("✅") and "t = 0" in result.message


@pytest.mark.parametrize("seed", [0, 1, 2, None])
@pytest.mark.parametrize("name", sorted(BUGS))
def test_each_mistake_is_diagnosed(name, seed):
    result = ex.check_ddpm_step(BUGS[name], seed=seed)
    assert not result.passed and result.status == "failed"
    assert result.mistake == name, result


def test_every_claimed_mistake_has_a_test():
    assert {m.name for m in ex._DDPM_STEP_MISTAKES} | {"noise_at_last_step"} == set(BUGS)


@pytest.mark.parametrize("seed", [0, 1, None])
def test_any_noise_at_the_last_step_is_named(seed):
    result = ex.check_ddpm_step(half_noise_at_the_end, seed=seed)
    assert result.mistake == "noise_at_last_step" and "0.5·z" in result.message, result


def test_unimplemented_broken_and_unknown_answers():
    def not_yet(eps, t, x_t, s, noise):
        raise NotImplementedError()

    result = ex.check_ddpm_step(not_yet)
    assert result.status == "not implemented" and "not implemented yet" in result.message
    assert repr(result).startswith("⏳")

    result = ex.check_ddpm_step(lambda e, t, x, s, z: x @ torch.zeros(7, 7))
    assert result.status == "error" and "raised" in result.message

    result = ex.check_ddpm_step(lambda e, t, x, s, z: None)
    assert result.status == "failed" and "returned None" in result.message

    result = ex.check_ddpm_step(lambda e, t, x, s, z: 1.01 * ddpm_step(e, t, x, s, noise=z) + 0.3)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message

    result = ex.check_ddpm_step(lambda e, t, x, s, z: ddpm_step(e, t, x, s, noise=z)[:1])
    assert result.status == "failed" and "shape" in result.message

    result = ex.check_ddpm_step(lambda e, t, x, s, z: ddpm_step(e, t, x, s, noise=z) + (0.2 if t == 0 else 0.0))
    assert result.status == "failed" and result.mistake is None  # wrong at t = 0, but not by a multiple of z


def test_checker_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ex.check_ddpm_step(good_ddpm_step)
    torch.testing.assert_close(torch.rand(3), expected)
