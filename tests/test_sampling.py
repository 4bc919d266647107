import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons.sampling import ddpm_sample, ddpm_step, guided_eps, predict_x0

S = dl.NoiseSchedule.linear(T=200)


def test_ddpm_step_mean_is_the_posterior_mean_at_the_predicted_x0(gen):
    x_t, eps = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    t = torch.tensor([1, 5, 50, 100, 150, 199])
    x0_hat = predict_x0(eps, t, x_t, S)
    mean, var = dl.q_posterior(x0_hat, x_t, t, S)
    torch.testing.assert_close(ddpm_step(eps, t, x_t, S, noise=torch.zeros_like(x_t)), mean, rtol=1e-4, atol=1e-5)
    z = torch.randn(6, 3, generator=gen)
    torch.testing.assert_close(ddpm_step(eps, t, x_t, S, noise=z), mean + var.sqrt() * z, rtol=1e-4, atol=1e-5)
    big = ddpm_step(eps, t, x_t, S, noise=z, variance="beta") - mean
    torch.testing.assert_close(big, S.betas[t].sqrt().unsqueeze(1) * z, rtol=1e-4, atol=1e-5)


def test_no_noise_is_added_at_the_last_step(gen):
    x_t, eps = torch.randn(4, 2, generator=gen), torch.randn(4, 2, generator=gen)
    a = ddpm_step(eps, 0, x_t, S, noise=torch.randn(4, 2, generator=gen))
    torch.testing.assert_close(a, ddpm_step(eps, 0, x_t, S, noise=torch.zeros(4, 2)))


def test_sampling_with_the_exact_noise_predictor_recovers_a_gaussian(gen):
    """For data N(μ, σ²) the best ε is known in closed form; DDPM must then produce N(μ, σ²)."""
    mu, sigma = 0.5, 0.3

    class Exact(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = S.alpha_bars[t].unsqueeze(1)
            return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * sigma**2 + 1 - a)

    out = ddpm_sample(Exact(), torch.randn(5000, 1, generator=gen), S, generator=gen, clip_x0=False)
    assert out.mean().item() == pytest.approx(mu, abs=0.02)  # standard error 0.004
    assert out.std().item() == pytest.approx(sigma, rel=0.05)


def test_callback_sees_every_step_in_order(gen):
    seen = []
    model = lambda x, t, y=None: torch.zeros_like(x)
    ddpm_sample(model, torch.randn(2, 2, generator=gen), S, generator=gen, callback=seen.append)
    assert [d["t"] for d in seen] == list(range(199, -1, -1)) and [d["i"] for d in seen] == list(range(200))
    assert seen[0]["x0_hat"].shape == (2, 2)


def test_guidance_one_is_the_conditional_model_and_errors():
    model = dl.UNet(dl.UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(),
                                            num_classes=3, dropout=0.0)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([5, 5]), torch.tensor([0, 2])
    torch.testing.assert_close(guided_eps(model, x, t, y, 1.0), model(x, t, y))
    torch.testing.assert_close(guided_eps(model, x, t, y, 0.0), model(x, t), rtol=1e-4, atol=1e-5)
    w3 = guided_eps(model, x, t, y, 3.0)
    torch.testing.assert_close(w3, model(x, t) + 3 * (model(x, t, y) - model(x, t)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"guidance must be 1\.0 without labels"):
        guided_eps(model, x, t, None, 2.0)
    with pytest.raises(ValueError, match="the model is unconditional"):
        guided_eps(lambda x, t, y=None: x, x, t, y, 2.0)
    with pytest.raises(ValueError, match="variance must be one of"):
        ddpm_step(x, 1, x, S, variance="small")
    with pytest.raises(ValueError, match="eps must have the shape of x_t"):
        ddpm_step(x[:1], 1, x, S)


# ------------------------------------------------------------------- DDIM and DPM-Solver++
from diffusion_lessons.sampling import ddim_sample, ddim_step, ddim_timesteps, dpm_solver_sample  # noqa: E402

RING = torch.stack([torch.cos(torch.arange(8) * torch.pi / 4), torch.sin(torch.arange(8) * torch.pi / 4)], 1) * 0.8
SPREAD = 0.05


class MixtureEps(torch.nn.Module):
    """The exact ε-predictor E[ε | x_t] for data from 8 Gaussians on a ring: a perfectly trained model."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x, t, y=None):
        a = self.s.alpha_bars[t].reshape(-1, 1, 1)  # (B, 1, 1)
        var = a * SPREAD**2 + 1 - a
        diff = x[:, None, :] - a.sqrt() * RING[None]  # (B, 8, 2)
        w = (-(diff**2).sum(-1, keepdim=True) / (2 * var)).softmax(1)
        return ((1 - a).sqrt() * diff / var * w).sum(1)


def _ring_distance(points):
    return torch.cdist(points, RING).min(1).values.median().item()


TRUE_DISTANCE = SPREAD * (2 * torch.log(torch.tensor(2.0))).sqrt().item()  # median of a 2-D Gaussian's radius


def test_ddim_with_eta_one_over_consecutive_steps_is_ddpm(gen):
    x_t, eps, z = (torch.randn(5, 2, generator=gen) for _ in range(3))
    for t in (1, 50, 199):
        torch.testing.assert_close(ddim_step(eps, t, t - 1, x_t, S, eta=1.0, noise=z),
                                   ddpm_step(eps, t, x_t, S, noise=z), rtol=1e-4, atol=1e-5)
    # to x_0, DDIM returns the predicted x_0
    torch.testing.assert_close(ddim_step(eps, 10, -1, x_t, S), predict_x0(eps, 10, x_t, S))


def test_ddim_eta_zero_is_deterministic_and_invertible(gen):
    """Run the ODE backwards (data -> noise) with the same steps, then forwards: back where we started."""
    s = dl.NoiseSchedule.cosine(T=1000)
    model = MixtureEps(s)
    x0 = RING[torch.randint(0, 8, (200,), generator=gen)] + SPREAD * torch.randn(200, 2, generator=gen)
    ts = ddim_timesteps(s, 200)[::-1]  # 0 ... T-1
    x = x0
    for t_prev, t in zip([-1, *ts[:-1]], ts, strict=True):  # invert: the DDIM update with the roles swapped
        eps = model(x, torch.full((200,), max(t_prev, 0)))
        a_prev = s.alpha_bars[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        x0_hat = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        x = s.alpha_bars[t].sqrt() * x0_hat + (1 - s.alpha_bars[t]).sqrt() * eps
    assert x.std().item() == pytest.approx(1.0, abs=0.15)  # the encoding looks like noise
    a = ddim_sample(model, x, s, steps=200, clip_x0=False)
    b = ddim_sample(model, x, s, steps=200, clip_x0=False)
    assert torch.equal(a, b)
    assert (a - x0).norm(dim=1).median().item() < 0.05  # recovered up to discretisation error


@pytest.mark.parametrize("sampler, steps, eta", [(ddim_sample, 50, 0.0), (dpm_solver_sample, 20, 0.0),
                                                (dpm_solver_sample, 20, 1.0)])
def test_samplers_recover_a_known_mixture(sampler, steps, eta, gen):
    s = dl.NoiseSchedule.cosine(T=1000)
    x_T = torch.randn(2000, 2, generator=gen)
    out = sampler(MixtureEps(s), x_T, s, steps=steps, eta=eta, generator=gen, clip_x0=False)
    # samples sit on the modes (the data's median distance to its mode is TRUE_DISTANCE, 0.059);
    # few-step ODE solvers concentrate them somewhat, as tight modes make the ODE stiff
    assert 0.5 * TRUE_DISTANCE < _ring_distance(out) < 1.2 * TRUE_DISTANCE
    modes = torch.cdist(out, RING).argmin(1).bincount(minlength=8)
    assert modes.min() > 2000 / 8 * 0.6  # and every mode is found


def test_ddpm_recovers_the_mixture_too(gen):
    s = dl.NoiseSchedule.cosine(T=200)
    out = ddpm_sample(MixtureEps(s), torch.randn(2000, 2, generator=gen), s, generator=gen, clip_x0=False)
    assert 0.8 * TRUE_DISTANCE < _ring_distance(out) < 1.2 * TRUE_DISTANCE


def test_dpm_solver_converges_faster_than_ddim(gen):
    """On Gaussian data (a smooth ODE, exact ε known) DPM-Solver++(2M) lands nearer the 1000-step solution
    than DDIM with the same number of steps, and its error falls faster as steps double (order 2 vs 1)."""
    s = dl.NoiseSchedule.cosine(T=1000)
    mu, sigma = 0.5, 0.2

    class Exact(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = s.alpha_bars[t].unsqueeze(1)
            return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * sigma**2 + 1 - a)

    x_T = torch.randn(4000, 1, generator=gen)
    exact = ddim_sample(Exact(), x_T, s, steps=1000, clip_x0=False)
    err = {(f.__name__, n): (f(Exact(), x_T, s, steps=n, clip_x0=False) - exact).abs().mean().item()
           for f in (ddim_sample, dpm_solver_sample) for n in (16, 32)}
    assert err["dpm_solver_sample", 16] < err["ddim_sample", 16]
    assert err["dpm_solver_sample", 32] < 0.5 * err["ddim_sample", 32]
    assert err["dpm_solver_sample", 16] / err["dpm_solver_sample", 32] > 3  # ~4 for order 2
    assert err["ddim_sample", 16] / err["ddim_sample", 32] < 2.5  # ~2 for order 1


def test_stochastic_dpm_solver_first_order_steps_are_ddim_eta_one(gen):
    """With 3 steps every DPM-Solver++ step is first order; at η = 1 each is then the DDPM posterior
    step from t to t_prev (DDIM with η = 1), drawing the same noise in the same order.

    In float64: the two write the step differently (expm1 of the log-SNR step vs ratios of ᾱ), and
    in float32 their rounding differs by up to 4e-4 after the first step's 1/√ᾱ amplification, more
    on some CPUs than on others; in float64 they agree to 1e-13."""
    s = dl.NoiseSchedule.cosine(T=1000)
    x_T = torch.randn(500, 2, generator=gen, dtype=torch.float64)
    a, b = (f(MixtureEps(s), x_T, s, steps=3, eta=1.0, generator=torch.Generator().manual_seed(7), clip_x0=False)
            for f in (dpm_solver_sample, ddim_sample))
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    c = dpm_solver_sample(MixtureEps(s), x_T, s, steps=3, eta=1.0, generator=torch.Generator().manual_seed(8))
    assert not torch.allclose(a, c)  # the noise matters: another seed, other samples
    x0 = dpm_solver_sample(MixtureEps(s), x_T, s, steps=3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(x0, dpm_solver_sample(MixtureEps(s), x_T, s, steps=3))  # η = 0 ignores the generator


def test_sampler_errors():
    s = dl.NoiseSchedule.linear(T=50)
    x = torch.randn(2, 2)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 50\]"):
        ddim_sample(MixtureEps(s), x, s, steps=51)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_sample(MixtureEps(s), x, s, steps=10, eta=-0.5)
    with pytest.raises(ValueError, match="need -1 <= t_prev < t"):
        ddim_step(x, 5, 5, x, s)
    with pytest.raises(ValueError, match="steps must be an integer"):
        dpm_solver_sample(MixtureEps(s), x, s, steps=0)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        dpm_solver_sample(MixtureEps(s), x, s, steps=10, eta=-1.0)


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample, dpm_solver_sample])
def test_clipping_x0_changes_nothing_in_range_and_stops_blow_ups(sampler, gen):
    s = dl.NoiseSchedule.cosine(T=100)
    x_T = torch.randn(500, 2, generator=gen)
    kw = {} if sampler is ddpm_sample else {"steps": 20}
    same = [sampler(MixtureEps(s), x_T, s, generator=torch.Generator().manual_seed(0), clip_x0=c, **kw)
            for c in (True, False)]
    torch.testing.assert_close(same[0], same[1], rtol=1e-4, atol=1e-4)  # the ring lies inside [-1, 1]

    def clueless(x, t, y=None):  # predicts no noise at all: x̂_0 = x_t / √ᾱ_t, huge near t = T
        return torch.zeros_like(x)

    wild = sampler(clueless, x_T, s, generator=gen, clip_x0=False, **kw).abs().max()
    tame = sampler(clueless, x_T, s, generator=gen, clip_x0=True, **kw).abs().max()
    assert wild > 10 and tame <= 1.5, (wild, tame)
