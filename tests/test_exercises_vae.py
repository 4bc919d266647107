"""The lesson-11 checker, gaussian_kl: right answers in the forms learners write them pass, each known mistake
fails with its name on seeds 0..99, and the grader judges it.

Lesson: notebooks/11_generative_models.ipynb (the checker, ``diffusion_lessons.exercises``).

The functions are written the way a learner writes them, independently of the checker's own list of
mistakes: mu and logvar (B, D), the encoder's μ and log σ², in; KL(N(μ, diag σ²) ‖ N(0, I)) per row,
½ Σ_j (μ_j² + σ_j² − log σ_j² − 1), shape (B,), out.
"""

from __future__ import annotations

import inspect
import pathlib
import sys
import time

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from diffusion_lessons import exercises as ex
from diffusion_lessons.vae import gaussian_kl

FORM_SEEDS = [0, 1, 2, 3, None]  # None: a fresh seed from the OS, as in a lesson


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a busy machine


# ===================================================================== right answers
def kl_lesson(mu, logvar):
    """The lesson's solution, as the brief writes it."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)


def kl_torch_exp_last_dim(mu, logvar):
    return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1).sum(-1)


def kl_kingma_form(mu, logvar):
    """Kingma & Welling's Appendix B, as their code writes it: −½ Σ (1 + log σ² − μ² − σ²)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_distributions(mu, logvar):
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(q, p).sum(-1)


def kl_distributions_independent(mu, logvar):
    """One D-dimensional diagonal Gaussian: Independent sums the D dimensions itself."""
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return kl_divergence(q, p)


def kl_multivariate_normal(mu, logvar):
    q = MultivariateNormal(mu, scale_tril=torch.diag_embed((0.5 * logvar).exp()))
    p = MultivariateNormal(torch.zeros_like(mu), scale_tril=torch.eye(mu.shape[1], dtype=mu.dtype))
    return kl_divergence(q, p)


def kl_sigma_first(mu, logvar):
    sigma = torch.exp(0.5 * logvar)  # the standard deviation, as the reparameterisation uses it
    var = sigma**2
    return 0.5 * torch.sum(mu**2 + var - torch.log(var) - 1, dim=1)


def kl_numpy(mu, logvar):
    m, lv = mu.numpy(), logvar.numpy()
    return 0.5 * np.sum(m**2 + np.exp(lv) - lv - 1, axis=1)  # a numpy array


def kl_einsum(mu, logvar):
    return 0.5 * torch.einsum("bd->b", mu * mu + logvar.exp() - logvar - 1)


def kl_loop_over_rows(mu, logvar):
    rows = []
    for m, lv in zip(mu, logvar, strict=True):  # one example at a time
        rows.append(0.5 * (m @ m + lv.exp().sum() - lv.sum() - len(m)))
    return torch.stack(rows)


def kl_float64(mu, logvar):
    mu, logvar = mu.double(), logvar.double()
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(1)


def kl_per_dimension_then_sum(mu, logvar):
    """The D one-dimensional KLs first, (B, D), then their sum."""
    per_dim = 0.5 * (mu.square() + logvar.exp() - logvar - 1)
    return per_dim.sum(dim=-1)


KL_FORMS = [gaussian_kl, kl_lesson, kl_torch_exp_last_dim, kl_kingma_form, kl_distributions,
            kl_distributions_independent, kl_multivariate_normal, kl_sigma_first, kl_numpy, kl_einsum,
            kl_loop_over_rows, kl_float64, kl_per_dimension_then_sum]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", KL_FORMS, ids=lambda f: f.__name__)
def test_right_answers_pass(fn, seed):
    result = ex.check_gaussian_kl(fn, seed=seed)
    assert result.passed and bool(result), result
    assert repr(result).startswith("✅")


@pytest.mark.parametrize("fn", [kl_distributions, kl_numpy, kl_loop_over_rows, kl_sigma_first],
                         ids=lambda f: f.__name__)
def test_right_answers_pass_on_every_seed(fn):
    wrong = [seed for seed in range(100) if not ex.check_gaussian_kl(fn, seed=seed)]
    assert not wrong, wrong


def test_the_reference_is_the_packages_and_torch_distributions():
    for case in ex.make_cases("gaussian_kl", seed=0):
        mu, logvar = case
        expected = ex.EXERCISES["gaussian_kl"].reference(*case)
        assert torch.equal(expected, gaussian_kl(mu.double(), logvar.double()))
        q = Normal(mu.double(), (0.5 * logvar.double()).exp())
        torch.testing.assert_close(expected, kl_divergence(q, Normal(0.0, 1.0)).sum(-1))


def test_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("gaussian_kl", seed=0)
    main = cases[:1] + cases[3:]  # the two probes follow the first case
    shapes = [tuple(mu.shape) for mu, _ in main]
    assert any(B == 1 for B, _ in shapes) and any(D == 1 for _, D in shapes) and any(D == 16 for _, D in shapes)
    assert {mu.dtype for mu, _ in main} == {torch.float32, torch.float64}
    for mu, logvar in cases:
        B, D = mu.shape
        assert logvar.shape == mu.shape and logvar.dtype == mu.dtype and B != D and D != 2
    logvar = torch.cat([lv.flatten().double() for _, lv in main])
    assert logvar.min() >= -3 and logvar.max() <= 2 and logvar.min() < -2 and logvar.max() > 1  # σ² far from 1
    (mu, logvar), (mu_probe, _), (_, logvar_probe) = cases[:3]  # each probe redraws one argument of the first
    assert torch.equal(cases[1][1], logvar) and not torch.equal(mu_probe, mu)
    assert torch.equal(cases[2][0], mu) and not torch.equal(logvar_probe, logvar)


def test_the_reversed_kl_mistake_is_torch_distributions_kl_the_other_way():
    """The formula of the `reversed_kl` mistake, ½ Σ ((1 + μ²)/σ² + log σ² − 1), is KL(N(0, I) ‖ q) indeed."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 5, generator=g, dtype=torch.float64)
    logvar = -3 + 5 * torch.rand(6, 5, generator=g, dtype=torch.float64)
    q = Normal(mu, (0.5 * logvar).exp())
    reversed_kl = kl_divergence(Normal(torch.zeros_like(mu), torch.ones_like(mu)), q).sum(-1)
    torch.testing.assert_close(ex._reversed_kl(mu, logvar), reversed_kl)
    assert (reversed_kl - gaussian_kl(mu, logvar)).abs().min() > 1e-3  # not symmetric


# ===================================================================== wrong answers
def kl_half_missing(mu, logvar):
    return (mu**2 + logvar.exp() - logvar - 1).sum(dim=1)


def kl_logvar_as_log_sigma(mu, logvar):
    sigma = torch.exp(logvar)  # read as log σ
    return 0.5 * (mu**2 + sigma**2 - torch.log(sigma**2) - 1).sum(1)


def kl_mean_over_dims(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).mean(dim=1)


def kl_kingma_with_mean(mu, logvar):
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def kl_mean_and_no_half(mu, logvar):
    return torch.mean(mu**2 + logvar.exp() - logvar - 1, dim=1)


def kl_log_plus(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() + logvar - 1).sum(1)


def kl_kingma_sign_slip(mu, logvar):
    return -0.5 * torch.sum(1 - logvar - mu**2 - logvar.exp(), dim=1)  # 1 - log σ² where 1 + log σ² belongs


def kl_no_minus_one(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar).sum(dim=1)


def kl_no_mu_squared(mu, logvar):
    return 0.5 * torch.sum(logvar.exp() - logvar - 1, dim=1)


def kl_reversed_distributions(mu, logvar):
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return kl_divergence(p, q).sum(-1)  # KL(p ‖ q): the arguments the other way round


def kl_std_for_var(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return 0.5 * (mu**2 + std - logvar - 1).sum(1)


def kl_std_everywhere(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return 0.5 * (mu**2 + std - torch.log(std) - 1).sum(1)


def kl_exp_in_place(mu, logvar):
    var = logvar.exp_()  # the caller's logvar is now σ²
    return 0.5 * (mu**2 + var - torch.log(var) - 1).sum(1)


def kl_square_mu_in_place(mu, logvar):
    mu.pow_(2)
    return 0.5 * (mu + logvar.exp() - logvar - 1).sum(1)


def kl_summed_over_everything(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum()


def kl_batch_mean(mu, logvar):
    return (0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(1)).mean()  # the loss's mean, one step too early


def kl_squeezed(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(1, keepdim=True).squeeze()  # () when B = 1


def kl_not_summed(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1)


def kl_keepdim(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(dim=1, keepdim=True)


def kl_sum_over_batch(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(dim=0)


def kl_log_of_logvar(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - torch.log(logvar) - 1).sum(1)  # logvar read as σ² in the log


def kl_no_variance_terms(mu, logvar):
    return 0.5 * (mu**2).sum(1)


KL_WRONG = [
    (kl_half_missing, "half_missing"),
    (kl_logvar_as_log_sigma, "logvar_as_log_sigma"),
    (kl_mean_over_dims, "mean_not_sum"),
    (kl_kingma_with_mean, "mean_not_sum"),
    (kl_mean_and_no_half, "mean_not_sum"),
    (kl_log_plus, "log_sign_flipped"),
    (kl_kingma_sign_slip, "log_sign_flipped"),
    (kl_no_minus_one, "minus_one_missing"),
    (kl_no_mu_squared, "mu_squared_missing"),
    (kl_reversed_distributions, "reversed_kl"),
    (kl_std_for_var, "sigma_for_variance"),
    (kl_std_everywhere, "sigma_for_variance"),
    (kl_exp_in_place, "changed_input"),
    (kl_square_mu_in_place, "changed_input"),
    (kl_summed_over_everything, "not_per_row"),
    (kl_batch_mean, "not_per_row"),
    (kl_squeezed, "not_per_row"),
    (kl_not_summed, "not_summed"),
    (kl_keepdim, "kept_dim"),
    (kl_sum_over_batch, "summed_over_batch"),
    (kl_log_of_logvar, "not_finite"),
    (kl_no_variance_terms, "ignores_arguments"),
]


@pytest.mark.parametrize("fn, mistake", KL_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_each_mistake_is_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_gaussian_kl, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_every_claimed_mistake_has_a_test():
    shapes = {"not_per_row", "not_summed", "kept_dim", "summed_over_batch"}
    assert {m.name for m in ex._GAUSSIAN_KL_MISTAKES} | shapes | {"changed_input", "not_finite", "ignores_arguments"} \
        == {name for _, name in KL_WRONG}


def test_the_wrong_answers_really_are_wrong():
    """Each wrong answer differs from the reference (or changes its input, or has another shape) on a batch of 7
    or of one (B = 1): no row tests a right answer by mistake."""
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(B, 5, generator=g), -3 + 5 * torch.rand(B, 5, generator=g)) for B in (7, 1)]
    for fn, _ in KL_WRONG:
        wrong = False
        for mu, logvar in batches:
            m, lv = mu.clone(), logvar.clone()
            got, right = torch.as_tensor(fn(m, lv)), gaussian_kl(mu, logvar)
            changed = not (torch.equal(m, mu) and torch.equal(lv, logvar))
            wrong |= changed or got.shape != right.shape or not torch.allclose(got, right, rtol=1e-3)
        assert wrong, fn.__name__


def test_the_messages_say_what_to_do():
    result = ex.check_gaussian_kl(kl_summed_over_everything, seed=0)
    assert "shape (B,) = (8,)" in result.message and "per row" in result.message, result
    result = ex.check_gaussian_kl(kl_squeezed, seed=0)
    assert "shape (B,) = (1,)" in result.message and ".squeeze()" in result.message, result
    result = ex.check_gaussian_kl(kl_exp_in_place, seed=0)
    assert "`logvar`" in result.message and "`mu`" not in result.message, result
    result = ex.check_gaussian_kl(kl_logvar_as_log_sigma, seed=0)
    assert "σ² = exp(logvar)" in result.message, result
    result = ex.check_gaussian_kl(kl_no_variance_terms, seed=0)
    assert "`logvar` changes" in result.message, result
    result = ex.check_gaussian_kl(lambda mu, logvar: kl_lesson(mu, logvar) * 1.01, seed=0)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message, result


def test_not_implemented_broken_and_unknown_answers():
    def not_yet(mu, logvar):
        raise NotImplementedError()

    result = ex.check_gaussian_kl(not_yet)
    assert result.status == "not implemented" and "not implemented yet" in result.message
    assert repr(result).startswith("⏳")

    result = ex.check_gaussian_kl(lambda mu, logvar: None)
    assert result.status == "failed" and "returned None" in result.message

    with pytest.raises(ValueError, match="pass your function itself"):
        ex.check_gaussian_kl(kl_lesson(torch.zeros(2, 3), torch.zeros(2, 3)))


def kl_raises_in_numpy(mu, logvar):
    return np.sum(mu.numpy() ** 2 + np.exp(logvar.numpy()[:1].T), axis=1)  # the learner's failing line


def test_an_exception_is_reported_with_the_learners_own_line():
    failing_line = next(line.split("#")[0].strip() for line in inspect.getsource(kl_raises_in_numpy).splitlines()
                        if "the learner's failing line" in line)
    result = ex.check_gaussian_kl(kl_raises_in_numpy, seed=0)
    assert result.status == "error" and failing_line in result.message, result
    assert pathlib.Path(inspect.getfile(ex)).name not in result.message, result


def test_an_endless_loop_is_stopped_and_named(monkeypatch):
    def never_returns(mu, logvar):
        give_up = time.monotonic() + 30  # so that a checker without a time limit fails instead of hanging
        while time.monotonic() < give_up:
            time.sleep(0.001)

    monkeypatch.setattr(ex, "TIME_LIMIT", 2.0)
    assert ex.check_gaussian_kl(kl_lesson, seed=0).passed
    start = time.monotonic()
    result = ex.check_gaussian_kl(never_returns, seed=0)
    assert result.status == "timeout" and "took longer" in result.message, result
    assert time.monotonic() - start < 12


def test_checker_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ex.check_gaussian_kl(kl_lesson)
    torch.testing.assert_close(torch.rand(3), expected)


# ====================================================================== through the grader
SOLUTION = '''
import torch
from diffusion_lessons import exercises


def my_gaussian_kl(mu, logvar):
    ### BEGIN SOLUTION
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=1)   # ½ Σ_j (μ² + σ² − log σ² − 1), (B,)
    ### END SOLUTION
'''
CHECKS = "exercises.check_gaussian_kl(my_gaussian_kl)"
WRONG = '''
import torch
import diffusion_lessons.exercises as ex
import diffusion_lessons.vae as vae

vae.gaussian_kl = lambda mu, logvar: (mu ** 2).sum(1)  # the reference, rewritten in the kernel
ex.gaussian_kl = vae.gaussian_kl


def my_gaussian_kl(mu, logvar):  # the reference as this kernel now has it: still wrong
    return vae.gaussian_kl(mu, logvar)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the grader's process handling needs Linux")
def test_the_grader_judges_the_exercise(grade_two_submissions):
    right, wrong = grade_two_submissions("11_generative_models", ["gaussian_kl"], SOLUTION, CHECKS, WRONG)
    assert [(r.exercise.name, r.status) for r in right.results] == [("gaussian_kl", "passed")], right
    assert right.cell_errors == () and right.score == 1
    assert wrong.score == 0 and wrong.cell_errors == (), wrong
    (result,) = wrong.results
    assert result.status == "failed" and result.exercise.name == "gaussian_kl", result
