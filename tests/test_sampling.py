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

    out = ddpm_sample(Exact(), torch.randn(20_000, 1, generator=gen), S, generator=gen)
    assert out.mean().item() == pytest.approx(mu, abs=0.01)
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
