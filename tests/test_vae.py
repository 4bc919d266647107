import dataclasses
import math

import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons.vae import VAE, VAEConfig, elbo_terms, gaussian_kl, reparameterize, train_vae

SMALL = VAEConfig(latent_dim=4, channels=(8, 16), steps=60, batch_size=32, lr=3e-3, log_every=10)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    images, _ = dl.mnist5k(digits=[0, 1], split="train")
    return images[::4]  # 200 zeros and ones, (200, 1, 28, 28)


def test_shapes():
    model = VAE(VAEConfig(latent_dim=5, channels=(8, 16)))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    logits, mu2, _ = model(x)
    assert logits.shape == (3, 1, 28, 28) and torch.equal(mu, mu2)
    out = model.decode(torch.randn(7, 5))
    assert out.shape == (7, 1, 28, 28) and out.min() >= -1 and out.max() <= 1
    assert model.sample(6).shape == (6, 1, 28, 28)
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    recon, kl = elbo_terms(model, x)
    assert recon.shape == kl.shape == (3,) and (recon > 0).all() and (kl >= 0).all()


def test_a_fresh_decoder_says_one_half_everywhere():
    model = VAE(VAEConfig(latent_dim=3, channels=(4, 8)))
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    recon, _ = elbo_terms(model, x)
    torch.testing.assert_close(recon, torch.full((5,), 784 * math.log(2)))
    assert torch.equal(model.decode(torch.randn(2, 3)), torch.zeros(2, 1, 28, 28))  # probability ½ → 0 in [-1, 1]


def test_kl_closed_form_matches_monte_carlo(gen):
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.3]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0, 0.7]], dtype=torch.float64)
    exact = gaussian_kl(mu, logvar)
    assert exact[0].item() == 0.0  # q = p: no divergence
    assert exact[1].item() == pytest.approx(0.5 * (1 + 4))  # equal variances: ½‖μ‖²
    # KL(q ‖ p) = E_q[log q(z) − log p(z)], estimated with draws from q
    n = 200_000
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * torch.randn(3, n, 2, generator=gen, dtype=torch.float64)
    log_q = torch.distributions.Normal(mu[:, None], (0.5 * logvar).exp()[:, None]).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    mc = (log_q - log_p).mean(1)
    se = (log_q - log_p).std(1) / math.sqrt(n)
    assert ((mc - exact).abs() < 4 * se + 1e-9).all(), (mc, exact, se)


def test_reparameterize_draws_from_the_gaussian_and_passes_gradients(gen):
    mu = torch.tensor([[2.0, -1.0]], requires_grad=True)
    logvar = torch.tensor([[math.log(0.25), math.log(4.0)]], requires_grad=True)
    z = reparameterize(mu.expand(100_000, 2), logvar.expand(100_000, 2), generator=gen)
    torch.testing.assert_close(z.mean(0), torch.tensor([2.0, -1.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0]), atol=0.03, rtol=0)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_reconstruction_term_is_the_bernoulli_negative_log_likelihood():
    model = VAE(VAEConfig(latent_dim=2, channels=(4, 8)))
    x = (torch.rand(2, 1, 28, 28) > 0.5).float() * 2 - 1  # binary pixels in {-1, 1}
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    recon, kl = elbo_terms(model, x, generator=gen_a)
    logits, mu, logvar = model(x, generator=gen_b)  # the same draw of z
    p = torch.sigmoid(logits)
    x01 = (x + 1) / 2
    nll = -(x01 * p.log() + (1 - x01) * (1 - p).log()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(recon, nll, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar))


def test_training_lowers_the_loss_clearly(digits):
    result = train_vae(digits, SMALL, progress=False)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-10:]) / 10
    assert len(result.losses) == len(result.kl) == len(result.reconstruction) == SMALL.steps
    assert last < 0.6 * first, (first, last)
    assert not result.model.training
    assert all(math.isfinite(v) for v in result.losses)


def test_training_is_repeatable_and_leaves_global_rng_alone(digits):
    config = dataclasses.replace(SMALL, steps=8)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_vae(digits, config, progress=False)
    after = torch.rand(1)
    b = train_vae(digits, config, progress=False)
    assert torch.equal(before, after)  # the global random state was not consumed
    assert a.losses == b.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(a.model.sample(4, generator=ga), b.model.sample(4, generator=gb))
    c = train_vae(digits, dataclasses.replace(config, seed=1), progress=False)
    assert c.losses != a.losses


def test_callback_is_called_every_log_every_steps(digits):
    seen = []
    train_vae(digits, dataclasses.replace(SMALL, steps=25), progress=False,
              callback=lambda d: seen.append((d["step"], isinstance(d["model"], VAE), math.isfinite(d["loss"]))))
    assert seen == [(10, True, True), (20, True, True), (25, True, True)]


def test_conditional_vae_uses_the_label():
    model = VAE(VAEConfig(latent_dim=4, channels=(4, 8), num_classes=10))
    x, y = torch.rand(3, 1, 28, 28) * 2 - 1, torch.tensor([0, 5, 9])
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (3, 4)
    torch.nn.init.normal_(model.decoder[-1].weight)  # not the all-½ fresh decoder: the label must show
    z = torch.randn(1, 4).expand(2, 4)
    a = model.decode(z, torch.tensor([1, 7]))
    assert a.shape == (2, 1, 28, 28) and not torch.equal(a[0], a[1])  # same code, other label, other image
    assert model.sample(2, y=torch.tensor([3, 3])).shape == (2, 1, 28, 28)
    recon, kl = elbo_terms(model, x, y)
    assert recon.shape == kl.shape == (3,)
    with pytest.raises(ValueError, match="class-conditional"):
        model.sample(2)
    with pytest.raises(ValueError, match=r"labels in \[0, 9\]"):
        model.decode(torch.randn(2, 4), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"integer tensor of shape \(2,\)"):
        model.decode(torch.randn(2, 4), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="unconditional"):
        VAE(VAEConfig(latent_dim=4, channels=(4, 8))).sample(2, y=torch.tensor([1, 2]))


def test_conditional_training_needs_labels(digits):
    labels = torch.arange(len(digits)) % 2
    config = dataclasses.replace(SMALL, steps=3, num_classes=2)
    result = train_vae(digits, config, labels=labels, progress=False)
    assert len(result.losses) == 3 and result.model.config.num_classes == 2
    with pytest.raises(ValueError, match="needs labels"):
        train_vae(digits, config, progress=False)
    with pytest.raises(ValueError, match="num_classes is None"):
        train_vae(digits, SMALL, labels=labels, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        train_vae(digits, config, labels=labels + 1, progress=False)
    with pytest.raises(ValueError, match=r"shape \(200,\)"):
        train_vae(digits, config, labels=labels[:10], progress=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"latent_dim": 0}, "latent_dim must be a positive integer"),
    ({"steps": 1.5}, "steps must be a positive integer"),
    ({"channels": (8,)}, "channels must be two positive integers"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"beta": -1.0}, "beta must be >= 0"),
    ({"num_classes": 1}, "num_classes must be None or an integer >= 2"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAEConfig(**kwargs)


def test_bad_inputs(digits):
    with pytest.raises(ValueError, match=r"shape \(N, 1, 28, 28\)"):
        train_vae(torch.zeros(64, 28, 28), SMALL, progress=False)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        train_vae(digits * 255, SMALL, progress=False)
    with pytest.raises(ValueError, match="floating point"):
        train_vae(torch.zeros(64, 1, 28, 28, dtype=torch.uint8), SMALL, progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_vae(digits[:10], SMALL, progress=False)
    with pytest.raises(ValueError, match="config must be a VAEConfig"):
        train_vae(digits, {"steps": 10}, progress=False)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        VAE(SMALL).sample(0)
