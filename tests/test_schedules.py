import math

import pytest
import torch

from diffusion_lessons import NoiseSchedule
from diffusion_lessons.schedules import cosine_alpha_bar, sigmoid_alpha_bar

ALL = [NoiseSchedule.linear, NoiseSchedule.cosine, NoiseSchedule.sigmoid]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("T", [1, 2, 10, 1000, 4000])
def test_shapes_and_ranges(make, T):
    s = make(T=T)
    assert s.T == T
    for name in ("betas", "alphas", "alpha_bars", "snr"):
        value = getattr(s, name)
        assert value.shape == (T,) and value.dtype == torch.get_default_dtype(), name
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert ((s.alpha_bars > 0) & (s.alpha_bars <= 1)).all()


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("T", [10, 1000])
def test_alpha_bars_strictly_decreasing_and_snr_too(make, T):
    s = make(T=T)
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all()
    assert (s.snr[1:] < s.snr[:-1]).all()
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    torch.testing.assert_close(s.alpha_bars, torch.cumprod(s.alphas.double(), 0).float())
    a = torch.cumprod(1 - s.betas.double(), 0)  # in float64: 1 - ᾱ near ᾱ = 1 needs the precision
    torch.testing.assert_close(s.snr, (a / (1 - a)).float(), rtol=1e-4, atol=0)


def test_linear_matches_ho_et_al():
    s = NoiseSchedule.linear()
    assert s.T == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    steps = s.betas[1:] - s.betas[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-3, atol=1e-9)
    assert s.alpha_bars[-1].item() < 1e-4  # ends in (almost) pure noise


@pytest.mark.parametrize("T, offset", [(1000, 0.008), (50, 0.008), (300, 0.05)])
def test_cosine_matches_its_formula(T, offset):
    s = NoiseSchedule.cosine(T=T, s=offset)

    def f(t):
        return math.cos((t / T + offset) / (1 + offset) * math.pi / 2) ** 2

    expected = torch.tensor([f(t + 1) / f(0) for t in range(T)])  # index t is the paper's step t+1
    unclipped = s.betas < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]  # only the last beta (ᾱ -> 0) is clipped
    assert s.betas[-1].item() == pytest.approx(0.999)
    torch.testing.assert_close(s.alpha_bars[unclipped], expected[unclipped], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(cosine_alpha_bar(torch.tensor([0.0, 1.0]), offset), torch.tensor([1.0, f(T) / f(0)]))


def test_sigmoid_matches_its_formula():
    T = 200
    s = NoiseSchedule.sigmoid(T=T)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    expected = sigmoid_alpha_bar(u).float()
    keep = s.betas < 0.999
    torch.testing.assert_close(s.alpha_bars[keep], expected[keep], rtol=1e-5, atol=1e-7)
    assert sigmoid_alpha_bar(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(1.0)


def test_cosine_keeps_signal_longer_than_linear():
    lin, cos = NoiseSchedule.linear(), NoiseSchedule.cosine()
    assert (cos.alpha_bars[100:900] > lin.alpha_bars[100:900]).all()


def test_from_name_and_custom_betas():
    assert NoiseSchedule.from_name("cosine", T=20).name == "cosine"
    torch.testing.assert_close(NoiseSchedule.from_name("linear", T=30).betas, NoiseSchedule.linear(T=30).betas)
    custom = NoiseSchedule(torch.full((5,), 0.1))
    torch.testing.assert_close(custom.alpha_bars, 0.9 ** torch.arange(1, 6, dtype=torch.float32))
    assert "T=5" in repr(custom)


@pytest.mark.parametrize("T", [0, -3, 2.5, True, "10"])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        NoiseSchedule.linear(T=T)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        NoiseSchedule.cosine(T=T)


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.0], [-0.1, 0.5], [0.2, float("nan")]])
def test_betas_outside_open_unit_interval(betas):
    with pytest.raises(ValueError, match=r"betas must all be in \(0, 1\)"):
        NoiseSchedule(torch.tensor(betas))


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="beta_end must be in"):
        NoiseSchedule.linear(beta_end=1.5)
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule(torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="floating point"):
        NoiseSchedule(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="schedule name must be one of"):
        NoiseSchedule.from_name("quadratic")
    with pytest.raises(ValueError, match="start must be smaller"):
        NoiseSchedule.sigmoid(start=3, end=-3)


def test_to_moves_every_table_and_keeps_the_values():
    s = NoiseSchedule.cosine(T=20)
    moved = s.to("meta")
    for name in ("betas", "alphas", "alpha_bars", "snr", "alpha_bars_prev", "posterior_variance"):
        assert getattr(moved, name).device.type == "meta", name
    assert moved.T == 20 and moved.name == "cosine" and moved.device.type == "meta"
    back = s.to("cpu")
    torch.testing.assert_close(back.posterior_coef_xt, s.posterior_coef_xt)
