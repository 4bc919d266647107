"""The guided-noise checker (lesson 06) accepts right answers and names each planted mistake.

The buggy functions are written the way a learner would write them, independently of the
checker's own list of mistakes.
"""

import pytest
import torch
from torch import nn

from diffusion_lessons import exercises as ex
from diffusion_lessons.sampling import guided_eps


def good_guided_eps(eps_cond, eps_uncond, w):
    return eps_uncond + w * (eps_cond - eps_uncond)


def good_as_mixture(eps_cond, eps_uncond, w):
    """The same thing written as a weighted mix: (1-w)·ε_uncond + w·ε_cond."""
    return (1 - w) * eps_uncond + w * eps_cond


def in_place(eps_cond, eps_uncond, w):
    """The right value, but it overwrites its input: the sampler still needs ε_cond, so this is a mistake."""
    eps_cond -= eps_uncond
    eps_cond *= w
    eps_cond += eps_uncond
    return eps_cond


def good_with_torch_lerp(eps_cond, eps_uncond, w):
    return torch.lerp(eps_uncond, eps_cond, w)


GUIDED_BUGS = {
    "swapped": lambda c, u, w: c + w * (u - c),
    "one_plus_w": lambda c, u, w: (1 + w) * c - w * u,
    "difference_not_taken": lambda c, u, w: u + w * c,
    "scaled_cond_only": lambda c, u, w: c * w,
    "base_missing": lambda c, u, w: w * c - w * u,
    "sign_flipped": lambda c, u, w: u - w * (c - u),
}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, None])
@pytest.mark.parametrize("fn", [ex._guided, good_guided_eps, good_as_mixture, good_with_torch_lerp],
                         ids=lambda f: f.__name__)
def test_right_answers_pass(fn, seed):
    result = ex.check_guided_eps(fn, seed=seed)
    assert result.passed and bool(result), result
    assert repr(result).startswith("✅")


@pytest.mark.parametrize("seed", [0, 1, None])
def test_an_answer_that_overwrites_its_input_is_named(seed):
    result = ex.check_guided_eps(in_place, seed=seed)
    assert not result and result.mistake == "changed_input" and "`eps_cond`" in result.message, result


@pytest.mark.parametrize("seed", [0, 1, 2, 3, None])
@pytest.mark.parametrize("name", sorted(GUIDED_BUGS))
def test_each_mistake_is_diagnosed(name, seed):
    result = ex.check_guided_eps(GUIDED_BUGS[name], seed=seed)
    assert not result and result.status == "failed"
    assert result.mistake == name, result
    assert repr(result).startswith("❌")


def test_every_claimed_mistake_has_a_test():
    assert {m.name for m in ex._GUIDED_MISTAKES} == set(GUIDED_BUGS)


def test_not_implemented_broken_and_unknown_answers():
    def not_yet(eps_cond, eps_uncond, w):
        raise NotImplementedError()

    result = ex.check_guided_eps(not_yet)
    assert result.status == "not implemented" and "not implemented yet" in result.message
    assert repr(result).startswith("⏳")

    result = ex.check_guided_eps(lambda c, u, w: c @ torch.zeros(3, 3))
    assert result.status == "error" and "raised" in result.message

    result = ex.check_guided_eps(lambda c, u, w: None)
    assert result.status == "failed" and "returned None" in result.message

    result = ex.check_guided_eps(lambda c, u, w: u + w * (c - u).mean(0))
    assert result.status == "failed" and result.mistake is None and "differs" in result.message

    result = ex.check_guided_eps(lambda c, u, w: (u + w * (c - u)).flatten(1))
    assert result.status == "failed" and "shape" in result.message

    with pytest.raises(ValueError, match="pass your function itself"):
        ex.check_guided_eps(good_guided_eps(torch.ones(2), torch.zeros(2), 3.0))


def test_w_one_and_w_zero_are_checked():
    """Right at large w but wrong at the edges (w=1 must be ε_cond, w=0 ε_uncond) fails."""
    def wrong_at_one(c, u, w):
        return c * 1.001 if w == 1.0 else u + w * (c - u)

    def wrong_at_zero(c, u, w):
        return c if w == 0.0 else u + w * (c - u)

    assert not ex.check_guided_eps(wrong_at_one)
    assert not ex.check_guided_eps(wrong_at_zero)


def test_checker_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ex.check_guided_eps(good_guided_eps)
    torch.testing.assert_close(torch.rand(3), expected)


class TwoAnswers(nn.Module):
    """A stand-in model: ε_cond[i] for a real label, ε_uncond[i] for the "no label" class (row i mod B)."""

    null_label = 10

    def __init__(self, cond, uncond):
        super().__init__()
        self.cond, self.uncond = cond, uncond

    def forward(self, x, t, y):
        rows = torch.arange(len(x)) % len(self.cond)  # guided_eps stacks [x, x]: rows i and B+i are image i
        is_null = (y == self.null_label).reshape(-1, 1, 1, 1)
        return torch.where(is_null, self.uncond[rows], self.cond[rows])


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.5])
def test_the_checker_teaches_what_the_sampler_does(w):
    """The exercise's formula is exactly the one sampling.guided_eps uses."""
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
    x, t, y = torch.zeros(4, 1, 5, 5), torch.zeros(4, dtype=torch.long), torch.arange(4)
    torch.testing.assert_close(guided_eps(TwoAnswers(cond, uncond), x, t, y, w), ex._guided(cond, uncond, w))
