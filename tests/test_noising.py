import pytest
import torch
from scipy.stats import ks_2samp

from diffusion_lessons import NoiseSchedule, markov_chain, markov_step, q_posterior, q_sample, toy_2d
from diffusion_lessons.noising import extract

LIN = NoiseSchedule.linear()


def test_q_sample_formula_and_shapes(gen):
    x0 = torch.randn(4, 1, 5, 5, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    x_t = q_sample(x0, t, LIN, noise)
    assert x_t.shape == x0.shape
    for i, ti in enumerate(t.tolist()):
        a = LIN.alpha_bars[ti]
        torch.testing.assert_close(x_t[i], a.sqrt() * x0[i] + (1 - a).sqrt() * noise[i])
    torch.testing.assert_close(q_sample(x0, 7, LIN, noise), q_sample(x0, torch.full((4,), 7), LIN, noise))


def test_markov_step_formula_and_noise_free_shrink(gen):
    x = torch.randn(3, 2, generator=gen)
    torch.testing.assert_close(markov_step(x, 5, LIN, torch.zeros_like(x)), (1 - LIN.betas[5]).sqrt() * x)


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine, NoiseSchedule.sigmoid])
def test_unit_variance_data_stays_unit_variance(make, gen):
    s = make(T=200)
    x0 = torch.randn(200_000, generator=gen).unsqueeze(1)  # (N, 1), variance 1
    for t in (0, 50, 199):
        var = q_sample(x0, t, s, generator=gen).var().item()
        assert var == pytest.approx(1.0, abs=0.02), (t, var)  # sd of the estimate ~0.003
    x = x0[:50_000]
    chain_vars = []
    markov_chain(x, s, generator=gen, callback=lambda d: chain_vars.append(d["x_t"].var().item()))
    assert len(chain_vars) == s.T
    assert max(abs(v - 1) for v in chain_vars) < 0.04


def _chain_and_closed_form(x0: torch.Tensor, t: int, gen: torch.Generator, shrink: bool = True):
    if shrink:
        chain = markov_chain(x0, LIN, t_end=t, generator=gen)
    else:  # a broken chain for a negative control: the signal is never shrunk
        chain = x0
        for k in range(t + 1):
            chain = chain + LIN.betas[k].sqrt() * torch.randn(x0.shape, generator=gen)
    return chain, q_sample(x0, t, LIN, generator=gen)


def test_chain_and_closed_form_agree_in_distribution(gen):
    """T chain steps from fixed points and one q_sample jump: same means, variances, and KS."""
    points = torch.tensor([[-1.0, 0.3, 0.9]])  # three coordinates, three different x0
    x0 = points.expand(20_000, 3).contiguous()  # (N, 3): many copies of the same x0
    t = 299
    chain, direct = _chain_and_closed_form(x0, t, gen)
    a = LIN.alpha_bars[t]
    torch.testing.assert_close(chain.mean(0), a.sqrt() * points[0], atol=0.03, rtol=0)  # se ~0.007
    torch.testing.assert_close(chain.var(0), (1 - a).expand(3), atol=0.04, rtol=0)
    for j in range(3):
        assert ks_2samp(chain[:, j].numpy(), direct[:, j].numpy()).pvalue > 1e-3


def test_chain_and_closed_form_agree_on_a_data_set(gen):
    x0 = toy_2d("moons", n=20_000, seed=0)
    chain, direct = _chain_and_closed_form(x0, 99, gen)
    for j in range(2):
        assert ks_2samp(chain[:, j].numpy(), direct[:, j].numpy()).pvalue > 1e-3


def test_the_agreement_test_catches_a_broken_chain(gen):
    """Negative control: the same comparison rejects a chain without the √(1-β) shrink."""
    x0 = toy_2d("moons", n=20_000, seed=0)
    broken, direct = _chain_and_closed_form(x0, 299, gen, shrink=False)
    assert ks_2samp(broken[:, 0].numpy(), direct[:, 0].numpy()).pvalue < 1e-6


def test_posterior_matches_a_regression_on_simulated_pairs(gen):
    """Bayes by simulation: x_{t-1} ~ q(x_{t-1}|x0), x_t = one step; regress x_{t-1} on x_t."""
    s = NoiseSchedule.linear(T=50, beta_end=0.2)
    t, x0_value, n = 20, 0.7, 400_000
    x0 = torch.full((n, 1), x0_value)
    x_prev = q_sample(x0, t - 1, s, generator=gen)
    x_t = markov_step(x_prev, t, s, generator=gen)
    cov = torch.cov(torch.stack([x_t[:, 0], x_prev[:, 0]]))
    slope = cov[0, 1] / cov[0, 0]
    resid_var = cov[1, 1] - slope * cov[0, 1]
    probe = torch.tensor([[-1.0], [0.0], [1.5]])
    mean, var = q_posterior(x0[:3], probe, t, s)
    regression = x_prev.mean() + slope * (probe - x_t.mean())
    torch.testing.assert_close(mean, regression, atol=0.01, rtol=0)
    assert var.flatten()[0].item() == pytest.approx(resid_var.item(), rel=0.02)


def test_posterior_at_the_first_step_is_the_clean_data(gen):
    x0, x_t = torch.randn(2, 4, 3, generator=gen)
    mean, var = q_posterior(x0, x_t, 0, LIN)
    torch.testing.assert_close(mean, x0)
    assert (var == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_dtype_follows_input(dtype, gen):
    x = torch.randn(3, 2, generator=gen).to(dtype)
    assert q_sample(x, 3, LIN).dtype == dtype
    assert markov_step(x, 3, LIN).dtype == dtype
    assert markov_step(x, 3, LIN, torch.zeros_like(x)).dtype == dtype
    assert q_posterior(x, x, 3, LIN)[0].dtype == dtype


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_follows_input():  # pragma: no cover - runs on the lent GPU
    x = torch.randn(3, 2, device="cuda")
    assert q_sample(x, torch.tensor([1, 2, 3], device="cuda"), LIN).device == x.device
    assert markov_step(x, 3, LIN).device == x.device


def test_device_follows_input_meta():
    """On the meta device nothing is computed, but every tensor must land on x's device."""
    x = torch.empty(3, 2, device="meta")
    assert q_sample(x, 3, LIN, torch.empty(3, 2, device="meta")).device.type == "meta"


def test_extract_broadcasts():
    out = extract(LIN.alpha_bars, torch.tensor([0, 999]), (2, 3, 4, 4), torch.zeros(1, dtype=torch.float64))
    assert out.shape == (2, 1, 1, 1) and out.dtype == torch.float64


@pytest.mark.parametrize("t, message", [
    (1000, r"t must be in \[0, 999\], got 1000"),
    (-1, r"t must be in \[0, 999\], got -1"),
    (torch.tensor([0, 1000, 3]), r"t must be in \[0, 999\], got 1000"),
    (torch.tensor([1, 2]), r"t must be an int or have shape \(3,\) to match x's batch, got shape \(2,\)"),
    (torch.tensor([1.0, 2.0, 3.0]), "t must hold integer steps"),
    (2.0, "t must be an int or a LongTensor"),
    (True, "t must be an int"),
])
def test_bad_t(t, message):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=message):
        q_sample(x, t, LIN)
    with pytest.raises(ValueError, match=message):
        markov_step(x, t, LIN)


def test_bad_noise_schedule_and_x():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"noise must have the same shape as x \(3, 2\), got \(3, 3\)"):
        q_sample(x, 0, LIN, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="noise must have the same shape"):
        markov_step(x, 0, LIN, torch.zeros(2))
    with pytest.raises(ValueError, match="s must be a NoiseSchedule"):
        q_sample(x, 0, "linear")
    with pytest.raises(ValueError, match=r"x must be a torch\.Tensor"):
        q_sample([1.0, 2.0], 0, LIN)
    with pytest.raises(ValueError, match=r"t_end must be in \[0, 999\]"):
        markov_chain(x, LIN, t_end=1000)
    with pytest.raises(ValueError, match="x0 and x_t must have the same shape"):
        q_posterior(x, torch.zeros(3, 3), 0, LIN)
