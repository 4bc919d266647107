"""The lesson-08 checkers, mixture_score and heun_step: right answers in the forms learners write them
pass, each known mistake fails with its name on seeds 0..99, and the grader judges both.

Lesson: notebooks/08_continuous_time.ipynb (the checkers, ``diffusion_lessons.exercises``).

The functions are written the way a learner writes them, independently of the checkers' own lists
of mistakes: x (N, d), weights (K,), means (K, d), covs (K, d, d) for the score; a denoiser
D(x, sigma), x, and Python floats sigma > sigma_next >= 0 for the Heun step.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from diffusion_lessons import exercises as ex
from diffusion_lessons.continuous import heun_step, mixture_score, toy_mixture

FORM_SEEDS = [0, 1, 2, 3, None]  # None: a fresh seed from the OS, as in a lesson


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: torch's thread pool made these 6x slower


# =========================================================== mixture_score: right answers
def score_naive_float32(x, weights, means, covs):
    """exp then normalise in float32, with an explicit inverse: the formula as the lesson writes it."""
    d = x.shape[1]
    inv = torch.linalg.inv(covs)  # (K, d, d)
    diff = x[:, None, :] - means[None]  # (N, K, d)
    m = torch.einsum("nki,kij,nkj->nk", diff, inv, diff)
    dens = weights * torch.exp(-0.5 * m) / torch.sqrt((2 * math.pi) ** d * torch.linalg.det(covs))
    r = dens / dens.sum(1, keepdim=True)
    return (r[..., None] * -torch.einsum("kij,nkj->nki", inv, diff)).sum(1)


def score_loops(x, weights, means, covs):
    out = torch.zeros_like(x)
    for n in range(len(x)):
        dens, pulls = [], []
        for k in range(len(weights)):
            diff = x[n] - means[k]
            inv = torch.inverse(covs[k])
            dens.append(weights[k] * torch.exp(-0.5 * diff @ inv @ diff) / torch.sqrt(torch.det(2 * math.pi * covs[k])))
            pulls.append(inv @ (means[k] - x[n]))
        total = sum(dens)
        out[n] = sum(p / total * pull for p, pull in zip(dens, pulls, strict=True))
    return out


def score_distributions(x, weights, means, covs):
    """torch.distributions and autograd: ∇ log p without writing the formula."""
    mixture = MixtureSameFamily(Categorical(probs=weights), MultivariateNormal(means, covariance_matrix=covs))
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    return grad


def score_softmax_solve(x, weights, means, covs):
    diff = means[None] - x[:, None]  # (N, K, d)
    pulls = torch.linalg.solve(covs[None].expand(len(x), -1, -1, -1), diff)
    r = torch.softmax(weights.log() + MultivariateNormal(means, covs).log_prob(x[:, None]), dim=1)
    return torch.einsum("nk,nkd->nd", r, pulls)


def score_float64(x, weights, means, covs):
    return score_naive_float32(x.double(), weights.double(), means.double(), covs.double())


def score_numpy(x, weights, means, covs):
    X, W, M, C = (a.numpy() for a in (x, weights, means, covs))
    inv = np.linalg.inv(C)
    diff = M[None] - X[:, None]
    m = np.einsum("nki,kij,nkj->nk", diff, inv, diff)
    dens = W * np.exp(-0.5 * m) / np.sqrt(np.linalg.det(2 * np.pi * C))
    return np.einsum("nk,kij,nkj->ni", dens / dens.sum(1, keepdims=True), inv, diff)  # a numpy array


def score_cholesky_logsumexp(x, weights, means, covs):
    L = torch.linalg.cholesky(covs)  # (K, d, d)
    diff = x[:, None] - means[None]  # (N, K, d)
    z = torch.linalg.solve_triangular(L[None], diff.unsqueeze(-1), upper=False)
    logp = weights.log() - 0.5 * (z**2).sum((-2, -1)) - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    r = torch.exp(logp - torch.logsumexp(logp, dim=1, keepdim=True))
    pulls = -torch.cholesky_solve(diff.permute(1, 2, 0), L).permute(2, 0, 1)  # (N, K, d)
    return (r.unsqueeze(-1) * pulls).sum(1)


MIXTURE_FORMS = [mixture_score, score_naive_float32, score_loops, score_distributions, score_softmax_solve,
                 score_float64, score_numpy, score_cholesky_logsumexp]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", MIXTURE_FORMS, ids=lambda f: f.__name__)
def test_mixture_score_right_answers_pass(fn, seed):
    result = ex.check_mixture_score(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_mixture_cases_cover_what_the_brief_asks():
    cases = ex._mixture_cases(torch.Generator().manual_seed(0))  # the main cases, without the probes
    shapes = [(c[2].shape[0], c[2].shape[1]) for c in cases]  # (K, d)
    assert (1, 2) in shapes and {1, 2, 3} <= {d for _, d in shapes} and max(k for k, _ in shapes) == 4
    for x, weights, means, covs in cases:
        assert len(set(weights.tolist())) == len(weights) and abs(weights.sum().item() - 1) < 1e-6
        if covs.shape[1] > 1:  # full covariances, well away from diagonal
            std = covs.diagonal(dim1=-2, dim2=-1).sqrt()
            corr = covs / (std[:, :, None] * std[:, None, :]) - torch.eye(covs.shape[1])
            assert (corr.abs().amax((1, 2)) >= 0.3 - 1e-6).all()
        m = torch.einsum("nki,kij,nkj->nk", x[:, None] - means, torch.linalg.inv(covs), x[:, None] - means)
        assert m.min(1).values.max() <= 3.5**2 + 1e-3  # every point within 3.5 std of some component


# =========================================================== mixture_score: wrong answers
def _densities_and_pulls(x, weights, means, covs):
    """π_k N(x; μ_k, Σ_k) (N, K) and Σ_k^{-1}(μ_k - x) (N, K, d), as a learner computes them."""
    normal = MultivariateNormal(means, covariance_matrix=covs)
    dens = weights * normal.log_prob(x[:, None]).exp()
    pulls = torch.einsum("kij,nkj->nki", torch.linalg.inv(covs), means[None] - x[:, None])
    return dens, pulls


def score_sign_reversed(x, weights, means, covs):
    dens, _ = _densities_and_pulls(x, weights, means, covs)
    pulls = torch.einsum("kij,nkj->nki", torch.linalg.inv(covs), x[:, None] - means[None])  # x - μ
    return (dens[..., None] * pulls).sum(1) / dens.sum(1, keepdim=True)


def score_no_responsibilities(x, weights, means, covs):
    return sum(torch.linalg.solve(covs[k], (means[k] - x).T).T for k in range(len(weights)))


def score_weights_left_out(x, weights, means, covs):
    dens, pulls = _densities_and_pulls(x, torch.ones_like(weights), means, covs)
    return ((dens / dens.sum(1, keepdim=True))[..., None] * pulls).sum(1)


def score_determinant_left_out(x, weights, means, covs):
    """exp(-½ m) without its normaliser 1/√det(2πΣ_k)."""
    diff = x[:, None] - means[None]  # (N, K, d)
    inv = torch.linalg.inv(covs)
    dens = weights * torch.exp(-0.5 * torch.einsum("nki,kij,nkj->nk", diff, inv, diff))
    pulls = -torch.einsum("kij,nkj->nki", inv, diff)
    return ((dens / dens.sum(1, keepdim=True))[..., None] * pulls).sum(1)


def score_covariance_not_inverted(x, weights, means, covs):
    dens, _ = _densities_and_pulls(x, weights, means, covs)
    pulls = torch.einsum("kij,nkj->nki", covs, means[None] - x[:, None])  # Σ where Σ^{-1} belongs
    return ((dens / dens.sum(1, keepdim=True))[..., None] * pulls).sum(1)


def score_diagonal_inverted(x, weights, means, covs):
    dens, _ = _densities_and_pulls(x, weights, means, covs)
    variances = torch.diagonal(covs, dim1=-2, dim2=-1)  # (K, d)
    pulls = (means[None] - x[:, None]) / variances[None]
    return ((dens / dens.sum(1, keepdim=True))[..., None] * pulls).sum(1)


def score_gradient_of_p(x, weights, means, covs):
    dens, pulls = _densities_and_pulls(x, weights, means, covs)
    return (dens[..., None] * pulls).sum(1)  # not divided by p(x)


def score_hard_assignment(x, weights, means, covs):
    dens, pulls = _densities_and_pulls(x, weights, means, covs)
    best = dens.argmax(1)  # (N,)
    return pulls[torch.arange(len(x)), best]


def score_written_into_x(x, weights, means, covs):
    """The right value, returned in x's own memory: the caller's points are gone."""
    return x.copy_(mixture_score(x.clone(), weights, means, covs))


BLOBS = toy_mixture("blobs")  # the lesson's mixture, a global of the notebook


def score_of_the_global_mixture(x, w, mu, cov):
    """Parameters renamed, so the body reads the lesson's globals: the arguments are ignored."""
    return mixture_score(x, BLOBS.weights, BLOBS.means, BLOBS.covs).float()


def score_unit_covariances(x, weights, means, covs):
    """Every component treated as N(μ_k, I): the covariances are never read."""
    eye = torch.eye(x.shape[1]).expand_as(covs)
    return mixture_score(x, weights, means, eye)


MIXTURE_WRONG = [
    (score_sign_reversed, "sign_reversed"),
    (score_no_responsibilities, "no_responsibilities"),
    (score_weights_left_out, "weights_left_out"),
    (score_determinant_left_out, "determinant_left_out"),
    (score_covariance_not_inverted, "covariance_not_inverted"),
    (score_diagonal_inverted, "diagonal_inverted"),
    (score_gradient_of_p, "gradient_of_p"),
    (score_hard_assignment, "hard_assignment"),
    (score_written_into_x, "changed_input"),
    (score_of_the_global_mixture, "ignores_arguments"),
    (score_unit_covariances, "ignores_arguments"),
]


@pytest.mark.parametrize("fn, mistake", MIXTURE_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_mixture_score_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_mixture_score, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_mixture_messages_name_the_arguments():
    result = ex.check_mixture_score(score_of_the_global_mixture, seed=0)
    assert "when `weights`, `means` or `covs` change:" in result.message, result
    result = ex.check_mixture_score(score_unit_covariances, seed=0)
    assert "`covs` changes" in result.message and "`weights` or" not in result.message, result
    result = ex.check_mixture_score(score_written_into_x, seed=0)
    assert "`x`" in result.message, result


# ================================================================ heun_step: right answers
def heun_plain(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    d2 = (x_e - denoiser(x_e, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d2) / 2


def heun_float64(denoiser, x, sigma, sigma_next):
    return heun_plain(denoiser, x.double(), sigma, sigma_next)


def heun_correction_form(denoiser, x, sigma, sigma_next):
    """The Euler point plus half the change of slope: x' + h/2·(d' - d)."""
    h = sigma_next - sigma
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + h * d
    if sigma_next > 0:
        x_e = x_e + h / 2 * ((x_e - denoiser(x_e, sigma_next)) / sigma_next - d)
    return x_e


def heun_three_calls(denoiser, x, sigma, sigma_next):
    """The first slope asked for again, after the second: any order, any number of calls."""
    x_e = x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma
    if not sigma_next:
        return x_e
    d2 = (x_e - denoiser(x_e, sigma_next)) / sigma_next
    d = (x - denoiser(x, sigma)) / sigma
    return x + (sigma_next - sigma) * (0.5 * d + 0.5 * d2)


def heun_tensor_sigmas(denoiser, x, sigma, sigma_next):
    s = torch.full((x.shape[0],) + (1,) * (x.ndim - 1), sigma)  # (B, 1, ...)
    s_next = torch.tensor(sigma_next)
    d = (x - denoiser(x, s)) / s
    x_e = x + (s_next - s) * d
    if s_next.item() == 0:
        return x_e
    return x + (s_next - s) * (d + (x_e - denoiser(x_e, s_next)) / s_next) / 2


def heun_per_example_sigmas(denoiser, x, sigma, sigma_next):
    """σ of shape (B,), as EDM's networks take it."""
    B = x.shape[0]
    d = (x - denoiser(x, torch.full((B,), sigma))) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    d2 = (x_e - denoiser(x_e, torch.full((B,), sigma_next))) / sigma_next
    return x + (sigma_next - sigma) * (d + d2) / 2


def heun_numpy(denoiser, x, sigma, sigma_next):
    xn = x.numpy()
    d = (xn - denoiser(x, sigma).numpy()) / sigma
    x_e = xn + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    d2 = (x_e - denoiser(torch.from_numpy(x_e), sigma_next).numpy()) / sigma_next
    return xn + (sigma_next - sigma) * (d + d2) / 2


def heun_ratio_form(denoiser, x, sigma, sigma_next):
    """The Euler step as a mix of x and D (σ_next/σ of x), the slopes as x/σ - D/σ."""
    ratio = sigma_next / sigma
    x_e = ratio * x + (1 - ratio) * denoiser(x, sigma)
    if sigma_next == 0:
        return x_e
    d = x / sigma - denoiser(x, sigma) / sigma
    d2 = x_e / sigma_next - denoiser(x_e, sigma_next) / sigma_next
    return x + (sigma_next - sigma) * (d + d2) / 2


def heun_lands_on_denoised(denoiser, x, sigma, sigma_next):
    """Into σ = 0 the Euler step is x - σ·(x - D)/σ = D: returned as it is."""
    denoised = denoiser(x, sigma)
    if sigma_next == 0:
        return denoised
    d = (x - denoised) / sigma
    x_e = x + (sigma_next - sigma) * d
    return x + (sigma_next - sigma) * (d + (x_e - denoiser(x_e, sigma_next)) / sigma_next) / 2


HEUN_FORMS = [heun_step, heun_lands_on_denoised, heun_plain, heun_float64, heun_correction_form, heun_three_calls,
              heun_tensor_sigmas, heun_per_example_sigmas, heun_numpy, heun_ratio_form]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", HEUN_FORMS, ids=lambda f: f.__name__)
def test_heun_step_right_answers_pass(fn, seed):
    result = ex.check_heun_step(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_heun_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("heun_step", seed=0)
    assert {tuple(c[1].shape) for c in cases} >= {(16, 2), (4, 1, 4, 4)}
    assert any(c[3] == 0 for c in cases) and max(c[2] for c in cases) > 20 and min(c[2] for c in cases) < 0.2
    assert all(isinstance(c[2], float) and isinstance(c[3], float) and c[2] > c[3] >= 0 for c in cases)


def test_the_checkers_denoiser_tells_euler_heun_and_the_mistakes_apart():
    """Nonlinear in x, dependent on σ: on every seed each mistaken step is far from Heun's in some case. (At
    small σ a step barely bends, and Euler is close to Heun there: other cases tell them apart.)"""
    euler_into_zero = {"euler_only", "slope_at_x", "slope_at_sigma", "new_slope_only"}  # right into σ = 0
    for seed in range(20):
        farthest = dict.fromkeys((m.name for m in ex._HEUN_MISTAKES), 0.0)  # largest gap / tolerance
        for case in ex.make_cases("heun_step", seed=seed):
            right = heun_step(case[0], case[1].double(), case[2], case[3])  # float64
            tolerance = 32 * ex._EPS32 * ex._heun_scale(case)
            for m in ex._HEUN_MISTAKES:
                gap = (m.fn(*case) - right).abs().max().item()
                if (m.name in euler_into_zero and case[3] == 0) or (m.name == "correction_into_zero" and case[3] > 0):
                    assert gap < 1e-12 * ex._heun_scale(case), m.name  # the same step here (float64)
                farthest[m.name] = max(farthest[m.name], gap / tolerance)
            denoiser, x = case[0], case[1].double()
            assert torch.equal(denoiser(x, 0.0), x)  # D(x; 0) = x: no noise, nothing to remove
        assert min(farthest.values()) > 20, (seed, farthest)


# ================================================================ heun_step: wrong answers
def heun_euler_only(denoiser, x, sigma, sigma_next):
    return x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma


def heun_slope_at_x(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    if sigma_next == 0:
        return x + (sigma_next - sigma) * d
    d2 = (x - denoiser(x, sigma_next)) / sigma_next  # x where the Euler point belongs
    return x + (sigma_next - sigma) * (d + d2) / 2


def heun_slope_at_sigma(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    d2 = (x_e - denoiser(x_e, sigma)) / sigma  # σ where σ_next belongs
    return x + (sigma_next - sigma) * (d + d2) / 2


def heun_sign_reversed(denoiser, x, sigma, sigma_next):
    dt = sigma - sigma_next
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + dt * d
    if sigma_next == 0:
        return x_e
    return x + dt * (d + (x_e - denoiser(x_e, sigma_next)) / sigma_next) / 2


def heun_new_slope_only(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    return x + (sigma_next - sigma) * (x_e - denoiser(x_e, sigma_next)) / sigma_next


def heun_denoised_as_slope(denoiser, x, sigma, sigma_next):
    d = denoiser(x, sigma)
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    return x + (sigma_next - sigma) * (d + denoiser(x_e, sigma_next)) / 2


def heun_clamped_sigma(denoiser, x, sigma, sigma_next):
    """A guard against dividing by zero that keeps the correction: its second slope is 0 into σ = 0."""
    s_next = max(sigma_next, 1e-8)
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    return x + (sigma_next - sigma) * (d + (x_e - denoiser(x_e, s_next)) / s_next) / 2


def heun_no_guard(denoiser, x, sigma, sigma_next):
    """No `if sigma_next == 0`: into σ = 0 the second slope is 0/0."""
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    return x + (sigma_next - sigma) * (d + (x_e - denoiser(x_e, sigma_next)) / sigma_next) / 2


def heun_python_division(denoiser, x, sigma, sigma_next):
    """1/σ_next as a Python float: a ZeroDivisionError into σ = 0."""
    d = (x - denoiser(x, sigma)) * (1 / sigma)
    x_e = x + (sigma_next - sigma) * d
    return x + (sigma_next - sigma) * (d + (x_e - denoiser(x_e, sigma_next)) * (1 / sigma_next)) / 2


def heun_updates_x_in_place(denoiser, x, sigma, sigma_next):
    h = sigma_next - sigma
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x.clone() + h * d
    if sigma_next == 0:
        return x_e
    d2 = (x_e - denoiser(x_e, sigma_next)) / sigma_next
    x += h * (d + d2) / 2  # the caller's x is moved too
    return x


GLOBAL_MIXTURE = toy_mixture("blobs")


def heun_global_denoiser(denoiser, x, sigma, sigma_next):
    """The lesson's exact mixture denoiser, a global, where the argument belongs."""
    return heun_step(lambda y, s: GLOBAL_MIXTURE.denoise(y.double(), s).to(y.dtype), x, sigma, sigma_next)


def heun_no_denoiser(denoiser, x, sigma, sigma_next):
    """A guess that the noise shrinks in proportion: never asks the denoiser."""
    return x * (sigma_next / sigma)


HEUN_WRONG = [
    (heun_euler_only, "euler_only"),
    (heun_slope_at_x, "slope_at_x"),
    (heun_slope_at_sigma, "slope_at_sigma"),
    (heun_sign_reversed, "sign_reversed"),
    (heun_new_slope_only, "new_slope_only"),
    (heun_denoised_as_slope, "denoised_as_slope"),
    (heun_clamped_sigma, "correction_into_zero"),
    (heun_no_guard, "divides_by_zero"),
    (heun_python_division, "divides_by_zero"),
    (heun_updates_x_in_place, "changed_input"),
    (heun_global_denoiser, "ignores_denoiser"),
    (heun_no_denoiser, "ignores_denoiser"),
]


@pytest.mark.parametrize("fn, mistake", HEUN_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_heun_step_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_heun_step, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_every_named_mistake_has_a_wrong_answer():
    assert {m.name for m in ex._MIXTURE_MISTAKES} | {"changed_input", "ignores_arguments"} == \
        {name for _, name in MIXTURE_WRONG}
    assert {m.name for m in ex._HEUN_MISTAKES} | {"divides_by_zero", "changed_input", "ignores_denoiser"} == \
        {name for _, name in HEUN_WRONG}


def test_heun_into_zero_says_take_the_euler_step():
    for fn, status in [(heun_no_guard, "failed"), (heun_python_division, "error")]:
        result = ex.check_heun_step(fn, seed=0)
        assert result.status == status and "Into σ = 0 take the Euler step" in result.message, result
        assert "σ_next > 0" in result.message
    result = ex.check_heun_step(heun_python_division, seed=0)
    assert "ZeroDivisionError" in result.message and "1 / sigma_next" in result.message  # the learner's line


def test_unknown_wrong_answers_fail_without_a_name():
    result = ex.check_heun_step(lambda D, x, s, sn: heun_step(D, x, s, sn) * 1.01, seed=0)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message
    result = ex.check_mixture_score(lambda x, w, m, c: mixture_score(x, w, m, c)[:, :1], seed=0)
    assert result.status == "failed" and "shape" in result.message


# ====================================================================== through the grader
SOLUTION = '''
import torch
from diffusion_lessons.exercises import check_heun_step, check_mixture_score


def my_mixture_score(x, weights, means, covs):
    ### BEGIN SOLUTION
    diff = means[None] - x[:, None]  # (N, K, d): μ_k - x
    pulls = torch.linalg.solve(covs, diff.unsqueeze(-1)).squeeze(-1)  # (N, K, d): Σ_k^{-1}(μ_k - x)
    log_terms = weights.log() - 0.5 * ((diff * pulls).sum(-1) + torch.logdet(covs))  # log π_k N_k + const
    r = log_terms.softmax(dim=1)  # (N, K) responsibilities
    return (r[..., None] * pulls).sum(dim=1)  # (N, d)
    ### END SOLUTION


def my_heun_step(denoiser, x, sigma, sigma_next):
    ### BEGIN SOLUTION
    d = (x - denoiser(x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    d_next = (x_euler - denoiser(x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2
    ### END SOLUTION
'''
CHECKS = "check_mixture_score(my_mixture_score)\ncheck_heun_step(my_heun_step)"
WRONG = '''
import torch
import diffusion_lessons.continuous as continuous
import diffusion_lessons.exercises as ex


def my_mixture_score(x, weights, means, covs):  # π left out of the responsibilities
    return continuous.mixture_score(x, torch.ones_like(weights) / len(weights), means, covs)


ex._Denoiser.__call__ = lambda self, x, sigma: torch.zeros_like(x)  # the stand-in, rewritten in the kernel


def my_heun_step(denoiser, x, sigma, sigma_next):  # right, on a denoiser this kernel broke: still wrong
    return continuous.heun_step(denoiser, x, sigma, sigma_next)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the grader's process handling needs Linux")
def test_the_grader_judges_both_exercises(grade_two_submissions):
    right, wrong = grade_two_submissions("08_continuous_time", ["mixture_score", "heun_step"], SOLUTION, CHECKS, WRONG)
    assert [(r.exercise.name, r.status) for r in right.results] == [("mixture_score", "passed"),
                                                                      ("heun_step", "passed")], right
    assert right.cell_errors == () and right.score == 2
    by_name = {r.exercise.name: r for r in wrong.results}
    assert wrong.score == 0 and wrong.cell_errors == (), wrong
    assert by_name["mixture_score"].status == "failed" and "mixing weights" in by_name["mixture_score"].message
    assert by_name["heun_step"].status == "failed", by_name["heun_step"]
