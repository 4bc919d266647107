"""Lesson 08's maths as properties: scores, Tweedie, the SDEs, Karras σ's, Heun and edm_sample.

Gaussian data x_0 ~ N(0, v I) gives everything in closed form: the score of q(x_t), the exact
ε-predictor E[ε | x_t] = √(1-ᾱ)/(ᾱv + 1-ᾱ) · x_t, the denoiser D(x; σ) = v/(v+σ²) · x and the
probability-flow ODE's solution x(σ) = x(σ_0) · √((v+σ²)/(v+σ_0²)).
"""

import itertools
import math

import pytest
import torch

from diffusion_lessons import continuous as C
from diffusion_lessons import sampling
from diffusion_lessons.schedules import NoiseSchedule
from diffusion_lessons.unet import UNet, UNetConfig

V = 0.25  # data variance of the Gaussian toy


class GaussianEps(torch.nn.Module):
    """The exact ε-predictor for x_0 ~ N(0, V I), on a discrete schedule; counts its calls."""

    def __init__(self, s: NoiseSchedule):
        super().__init__()
        self.alpha_bars = s.alpha_bars.double()
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        a = self.alpha_bars[t.long()].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return (1 - a).sqrt() / (a * V + 1 - a) * x


def gaussian_denoiser(x, sigma):
    return V / (V + sigma**2) * x


def ode_solution(x, sigma_from, sigma_to):
    return x * math.sqrt((V + sigma_to**2) / (V + sigma_from**2))


# ------------------------------------------------------------------------------ karras_sigmas
@pytest.mark.parametrize("steps", [1, 2, 5, 18, 40])
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0])
def test_karras_sigmas_run_from_sigma_max_to_sigma_min_then_zero(steps, rho):
    sig = C.karras_sigmas(steps, 0.002, 80.0, rho)
    assert sig.shape == (steps + 1,) and sig.dtype == torch.float64
    assert sig[0] == 80.0 and sig[-1] == 0
    if steps > 1:
        assert sig[-2] == 0.002
    assert (sig[1:] < sig[:-1]).all()


def test_karras_sigmas_are_evenly_spaced_in_sigma_to_the_one_over_rho():
    sig = C.karras_sigmas(12, 0.01, 50.0, rho=7.0)[:-1]
    gaps = sig ** (1 / 7)
    gaps = gaps[:-1] - gaps[1:]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=1e-9)
    uniform = C.karras_sigmas(12, 0.01, 50.0, rho=1.0)[:-1]
    assert torch.allclose(uniform[:-1] - uniform[1:], (uniform[0] - uniform[1]).expand(11), rtol=1e-9)
    # larger ρ puts more of the steps at low noise: the middle level falls as ρ grows
    middles = [C.karras_sigmas(11, 0.01, 50.0, rho)[5].item() for rho in (1.0, 3.0, 7.0, 12.0)]
    assert middles == sorted(middles, reverse=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": True}, "steps must be a positive integer"),
    ({"steps": 2.0}, "steps must be a positive integer"),
    ({"sigma_min": 80.0}, "sigma_min must be < sigma_max"),
    ({"sigma_min": 100.0}, "sigma_min must be < sigma_max"),
    ({"sigma_min": 0.0}, "sigma_min must be > 0"),
    ({"sigma_max": float("nan")}, "sigma_max must be a finite real number"),
    ({"rho": 0.0}, "rho must be > 0"),
    ({"rho": -7.0}, "rho must be > 0"),
])
def test_karras_sigmas_bad_inputs_are_named(kwargs, message):
    args = {"steps": 10, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        C.karras_sigmas(**args)


# ------------------------------------------------------------------------------ conversions
def test_conversions_round_trip(gen):
    x_t, eps = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64), torch.randn(4, 3, 5, 5, generator=gen,
                                                                                          dtype=torch.float64)
    alpha_bar = torch.rand(4, 1, 1, 1, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    assert torch.allclose(C.score_to_eps(C.eps_to_score(eps, alpha_bar), alpha_bar), eps)
    assert torch.allclose(C.x0_to_eps(C.eps_to_x0(eps, x_t, alpha_bar), x_t, alpha_bar), eps)
    # Tweedie with the score an ε implies is the x̂_0 that ε implies
    x0_hat = C.eps_to_x0(eps, x_t, alpha_bar)
    assert torch.allclose(C.tweedie_x0(C.eps_to_score(eps, alpha_bar), x_t, alpha_bar), x0_hat)
    sigma = C.sigma_from_alpha_bar(alpha_bar)
    assert torch.allclose(C.alpha_bar_from_sigma(sigma), alpha_bar)
    # D(x; σ) = x - σ ε̂ at x = x_t/√ᾱ is the same x̂_0
    assert torch.allclose(x_t / alpha_bar.sqrt() - sigma * eps, C.eps_to_x0(eps, x_t, alpha_bar))


def test_exact_noise_predictor_is_the_exact_score_and_tweedie_is_the_posterior_mean(gen):
    a = 0.3  # ᾱ
    x_t = torch.randn(1000, 2, generator=gen, dtype=torch.float64)
    var_t = a * V + 1 - a  # q(x_t) = N(0, var_t I)
    score = -x_t / var_t
    eps = math.sqrt(1 - a) / var_t * x_t  # E[ε | x_t]
    assert torch.allclose(C.eps_to_score(eps, a), score)
    posterior_mean = math.sqrt(a) * V / var_t * x_t  # E[x_0 | x_t] for Gaussian x_0
    assert torch.allclose(C.tweedie_x0(score, x_t, a), posterior_mean)


def test_conversion_bad_inputs_are_named():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="alpha_bar must be < 1"):
        C.eps_to_score(x, 1.0)  # ᾱ = 1: no noise, no score from ε
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        C.eps_to_x0(x, x, torch.tensor([[0.5], [1.5]]))
    with pytest.raises(ValueError, match="alpha_bar must broadcast"):
        C.eps_to_x0(x, x, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="eps must have the shape of x_t"):
        C.eps_to_x0(torch.zeros(2, 4), x, 0.5)
    with pytest.raises(ValueError, match="eps must be a floating tensor"):
        C.eps_to_score(torch.zeros(2, 3, dtype=torch.long), 0.5)


def test_edm_preconditioning_gives_unit_variance_inputs_and_targets():
    sigma_data = 0.5
    for sigma in (0.002, 0.3, 1.0, 80.0):
        c = C.edm_preconditioning(sigma, sigma_data)
        assert math.isclose(float(c["c_in"] ** 2 * (sigma**2 + sigma_data**2)), 1.0, rel_tol=1e-9)
        # the target F = (x_0 - c_skip x)/c_out of the network has unit variance (EDM appendix B.6)
        target_var = ((1 - c["c_skip"]) ** 2 * sigma_data**2 + c["c_skip"] ** 2 * sigma**2) / c["c_out"] ** 2
        assert math.isclose(float(target_var), 1.0, rel_tol=1e-9)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        C.edm_preconditioning(0.0)


# ---------------------------------------------------------------------------- mixtures
@pytest.mark.parametrize("name", ["blobs", "ring"])
def test_mixture_score_is_the_gradient_of_the_log_density(name, gen):
    mix = C.toy_mixture(name)
    x = (torch.randn(200, 2, generator=gen, dtype=torch.float64) * 1.5).requires_grad_(True)
    (auto,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    assert torch.allclose(mix.score(x.detach()), auto, atol=1e-9, rtol=1e-7)
    # and the log density is torch.distributions' own
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(mix.weights),
                                                torch.distributions.MultivariateNormal(mix.means, mix.covs))
    assert torch.allclose(mix.log_prob(x.detach()), ref.log_prob(x.detach()), atol=1e-10)


def test_mixture_score_stays_finite_far_from_the_data():
    mix = C.toy_mixture("ring")
    far = torch.tensor([[40.0, -30.0], [0.0, 0.0]], dtype=torch.float64)
    assert torch.isfinite(mix.score(far)).all()


def test_noised_mixture_is_the_law_of_the_noised_samples(gen):
    mix, a = C.toy_mixture("blobs"), 0.4
    x0 = mix.sample(200_000, generator=gen).double()
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    noised = mix.noised(a)
    model_mean = (noised.weights[:, None] * noised.means).sum(0)
    centred = noised.means - model_mean
    model_cov = (noised.weights[:, None, None] * (noised.covs + centred[:, :, None] * centred[:, None, :])).sum(0)
    assert torch.allclose(x_t.mean(0), model_mean, atol=0.01)
    assert torch.allclose(torch.cov(x_t.T), model_cov, atol=0.01)


def test_exact_denoiser_is_the_posterior_mean_of_a_single_gaussian():
    mix = C.GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                            V * torch.eye(2, dtype=torch.float64)[None])
    x = torch.tensor([[1.0, -2.0], [0.3, 0.1]], dtype=torch.float64)
    assert torch.allclose(mix.denoise(x, 0.7), gaussian_denoiser(x, 0.7))


def test_mixture_bad_inputs_are_named():
    mix = C.toy_mixture("blobs")
    with pytest.raises(ValueError, match="weights must be positive and sum to 1"):
        C.mixture_score(torch.zeros(3, 2), torch.tensor([0.5, 0.6, 0.1]), mix.means, mix.covs)
    with pytest.raises(ValueError, match="covs must have shape"):
        C.mixture_score(torch.zeros(3, 2), mix.weights, mix.means, mix.covs[:2])
    with pytest.raises(ValueError, match="x must have shape"):
        C.mixture_score(torch.zeros(3), mix.weights, mix.means, mix.covs)
    with pytest.raises(ValueError, match="symmetric positive definite"):
        C.GaussianMixture(mix.weights, mix.means, -mix.covs)
    with pytest.raises(ValueError, match="name must be"):
        C.toy_mixture("swirl")


# ----------------------------------------------------------------- Langevin, the SDE and its ODE
def test_langevin_walks_points_onto_the_data(gen):
    score = lambda x: -x / V
    x = 3.0 + torch.randn(20_000, 2, generator=gen, dtype=torch.float64)  # start far away
    x = C.langevin(score, x, step_size=0.005, steps=1500, generator=gen)
    assert x.mean(0).abs().max() < 0.02
    assert torch.allclose(x.var(0), torch.full((2,), V, dtype=torch.float64), rtol=0.05)  # δ/4 bias ≈ 1%


@pytest.mark.parametrize("method", ["sde", "ode"])
def test_reverse_sde_and_probability_flow_reproduce_the_data_variance(method, gen):
    s = NoiseSchedule.linear(T=1000)
    alpha_bars = s.alpha_bars.double()

    def score(x, t):  # exact: q(x_t) = N(0, (ᾱV + 1 - ᾱ) I)
        a = alpha_bars[t]
        return -x / (a * V + 1 - a)

    x_T = torch.randn(20_000, 2, generator=gen, dtype=torch.float64)
    x0 = C.score_sample(score, x_T, s, method=method, generator=gen)
    assert torch.allclose(x0.var(0), torch.full((2,), V, dtype=torch.float64), rtol=0.05)
    assert x0.mean(0).abs().max() < 0.02
    if method == "ode":  # deterministic: the same x_T, the same x_0
        assert torch.equal(C.score_sample(score, x_T, s, method="ode"), x0)


def test_ddpm_step_is_a_reverse_sde_step_up_to_beta_squared(gen):
    x, score, z = (torch.randn(100, 2, generator=gen, dtype=torch.float64) for _ in range(3))
    gaps = []
    for beta in (0.02, 0.01, 0.005):
        ddpm = (x + beta * score) / math.sqrt(1 - beta) + math.sqrt(beta) * z  # Ho et al. Alg. 2 with σ² = β
        gaps.append((ddpm - C.reverse_sde_step(x, score, beta, z)).abs().max().item())
    assert 3.5 < gaps[0] / gaps[1] < 4.5 and 3.5 < gaps[1] / gaps[2] < 4.5  # O(β²)


def test_sde_step_bad_inputs_are_named():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="beta must be < 1"):
        C.reverse_sde_step(x, x, 1.0, x)
    with pytest.raises(ValueError, match="noise must have the shape of x_t"):
        C.reverse_sde_step(x, x, 0.1, torch.zeros(3))
    with pytest.raises(ValueError, match="method must be 'sde' or 'ode'"):
        C.score_sample(lambda x, t: x, x, NoiseSchedule.linear(T=10), method="euler")


# ----------------------------------------------------------------------------- Heun and EDM
def _solve_error(method, steps, gen_seed=0):
    g = torch.Generator().manual_seed(gen_seed)
    sigmas = C.karras_sigmas(steps, 0.05, 20.0)[:-1]  # stop at σ_min: the order shows before the last jump
    x = 20.0 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    out = C.edm_solve(gaussian_denoiser, x, sigmas, method=method)
    return (out - ode_solution(x, 20.0, 0.05)).abs().max().item()


def test_heun_converges_at_order_two_and_euler_at_order_one():
    heun = [_solve_error("heun", n) for n in (16, 32, 64)]
    euler = [_solve_error("euler", n) for n in (16, 32, 64)]
    for coarse, fine in itertools.pairwise(heun):
        assert 3.3 < coarse / fine < 4.8  # halving the step divides the error by 4
    for coarse, fine in itertools.pairwise(euler):
        assert 1.7 < coarse / fine < 2.4  # ... and Euler's by 2
    assert heun[0] < euler[-1]  # 31 Heun calls beat 64 Euler calls


def test_heun_step_is_the_trapezoid_of_the_two_slopes(gen):
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    sigma, sigma_next = 2.0, 1.2
    d = (x - gaussian_denoiser(x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    d_next = (x_euler - gaussian_denoiser(x_euler, sigma_next)) / sigma_next
    trapezoid = x + (sigma_next - sigma) * (d + d_next) / 2
    assert torch.allclose(C.heun_step(gaussian_denoiser, x, sigma, sigma_next), trapezoid)
    assert torch.allclose(C.euler_step(gaussian_denoiser, x, sigma, sigma_next), x_euler)
    # into σ = 0 Heun is Euler, which lands on D(x; σ)
    assert torch.allclose(C.heun_step(gaussian_denoiser, x, sigma, 0.0), gaussian_denoiser(x, sigma))
    # edm_solve is a loop of these steps
    sigmas = torch.tensor([3.0, 2.0, 1.2, 0.4, 0.0], dtype=torch.float64)
    y = x
    for a, b in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        y = C.heun_step(gaussian_denoiser, y, a, b)
    assert torch.allclose(C.edm_solve(gaussian_denoiser, x, sigmas), y)


def test_edm_solve_bad_inputs_are_named():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="strictly decreasing"):
        C.edm_solve(gaussian_denoiser, x, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="method must be 'euler' or 'heun'"):
        C.edm_solve(gaussian_denoiser, x, torch.tensor([1.0, 0.0]), method="rk4")
    with pytest.raises(ValueError, match="churn must be >= 0"):
        C.edm_solve(gaussian_denoiser, x, torch.tensor([1.0, 0.0]), churn=-1.0)
    with pytest.raises(ValueError, match="the denoiser must return a tensor shaped like x"):
        C.edm_solve(lambda x, s: x[:1], x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        C.heun_step(gaussian_denoiser, x, 0.0, 0.0)


@pytest.fixture(scope="module")
def cosine():
    return NoiseSchedule.cosine(T=1000)


def test_edm_sample_reaches_the_exact_ode_solution(cosine, gen):
    model = GaussianEps(cosine)
    x_T = torch.randn(64, 1, 4, 4, generator=gen, dtype=torch.float64)
    denoiser = sampling.EpsDenoiser(model, cosine)
    sigma_max = denoiser.round_sigma(80.0)
    errors = []
    exact = x_T * math.sqrt(1 + sigma_max**2) * math.sqrt(V / (V + sigma_max**2))  # x(σ_max) carried to σ = 0
    for steps in (10, 20, 40, 80):
        out = sampling.edm_sample(model, x_T, cosine, steps=steps, clip_x0=False)
        errors.append((out - exact).abs().max().item())
    assert all(coarse / fine > 3.5 for coarse, fine in itertools.pairwise(errors))  # second order
    assert errors[-1] < 5e-3
    # deterministic: no generator needed, the same x_T gives the same samples
    assert torch.equal(sampling.edm_sample(model, x_T, cosine, steps=10, clip_x0=False),
                       sampling.edm_sample(model, x_T, cosine, steps=10, clip_x0=False))


@pytest.mark.parametrize("clip_x0", [False, True])
def test_edm_euler_is_ddim_at_the_same_steps(cosine, clip_x0, gen):
    model = GaussianEps(cosine)
    x_T = 3 * torch.randn(16, 1, 4, 4, generator=gen, dtype=torch.float64)  # wide, so the clip bites
    ts = []
    out = sampling.edm_sample(model, x_T, cosine, steps=12, method="euler", clip_x0=clip_x0,
                              sigma_max=1e9, callback=lambda info: ts.append(info["t"]))
    assert ts[0] == cosine.T - 1  # σ_max beyond the schedule rounds to its top step
    x = x_T
    for t, t_prev in zip(ts, [*ts[1:], -1], strict=True):
        a = cosine.alpha_bars[t].double()
        eps = model(x, torch.full((x.shape[0],), t))
        if clip_x0:
            x0_hat = sampling.predict_x0(eps, t, x, cosine).clamp(-1, 1)
            eps = (x - a.sqrt() * x0_hat) / (1 - a).sqrt()
        x = sampling.ddim_step(eps, t, t_prev, x, cosine)
    assert torch.allclose(out, x, atol=1e-9)


def test_edm_sample_counts_its_network_calls_and_calls_back(cosine, gen):
    x_T = torch.randn(3, 1, 4, 4, generator=gen)
    for method, calls in (("heun", 2 * 7 - 1), ("euler", 7)):
        model, seen = GaussianEps(cosine), []
        sampling.edm_sample(model, x_T, cosine, steps=7, method=method, callback=seen.append)
        assert model.calls == calls
        assert [info["i"] for info in seen] == list(range(7))
        assert set(seen[0]) == {"i", "t", "sigma", "x_t", "x0_hat"}
        assert [info["t"] for info in seen] == sorted((info["t"] for info in seen), reverse=True)
        assert seen[-1]["t"] == 0


def test_edm_sample_drops_levels_that_round_onto_the_same_step(cosine, gen):
    model, seen = GaussianEps(cosine), []
    sampling.edm_sample(model, torch.randn(2, 1, 4, 4, generator=gen), cosine, steps=100, callback=seen.append)
    ts = [info["t"] for info in seen]
    assert len(ts) == len(set(ts)) < 100  # 100 Karras levels land on fewer distinct trained steps
    assert model.calls == 2 * len(ts) - 1


def test_churn_adds_seeded_noise(cosine, gen):
    model, x_T = GaussianEps(cosine), torch.randn(8, 1, 4, 4, generator=gen)

    def run(seed):
        return sampling.edm_sample(model, x_T, cosine, steps=10, churn=5.0,
                                   generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_edm_sample_with_a_unet_labels_and_guidance(cosine, gen):
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(), num_classes=10,
                            norm_groups=8)).eval()
    x = sampling.edm_sample(model, torch.randn(4, 1, 8, 8, generator=gen), cosine, steps=3,
                            y=torch.arange(4), guidance=2.0)
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and x.abs().max() <= 1


def test_eps_denoiser_snaps_or_interpolates_the_step(cosine):
    model = GaussianEps(cosine)
    rounded, smooth = sampling.EpsDenoiser(model, cosine), sampling.EpsDenoiser(model, cosine, round_sigma=False)
    sig = C.schedule_sigmas(cosine)
    assert rounded.t_of(float(sig[500])) == 500 and math.isclose(smooth.t_of(float(sig[500])), 500, abs_tol=1e-6)
    between = math.sqrt(float(sig[500] * sig[501]))  # halfway in log σ
    assert math.isclose(smooth.t_of(between), 500.5, abs_tol=1e-6)
    assert rounded.t_of(between) in (500, 501)
    assert rounded.round_sigma(between) in (float(sig[500]), float(sig[501]))


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"method": "rk4"}, "method must be 'euler' or 'heun'"),
    ({"churn": -0.5}, "churn must be >= 0"),
    ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min must be < sigma_max"),
    ({"rho": 0}, "rho must be > 0"),
    ({"guidance": 2.0}, "guidance must be 1.0 without labels y"),
    ({"clip_x0": 1}, "clip_x0 must be True or False"),
])
def test_edm_sample_bad_inputs_are_named(cosine, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.edm_sample(GaussianEps(cosine), torch.zeros(2, 1, 4, 4), cosine, **kwargs)
    with pytest.raises(ValueError, match="x_T must be a floating tensor"):
        sampling.edm_sample(GaussianEps(cosine), torch.zeros(2, 1, 4, 4, dtype=torch.long), cosine)
