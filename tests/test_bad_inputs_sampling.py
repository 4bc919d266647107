"""Bad inputs to the samplers stop with an error that names the argument (issue 11).

Each row: a call with one wrong argument, the exception type, and a pattern the message must
match; the pattern names the argument and, where it helps, what was expected.
"""

import numpy as np
import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons.sampling import (
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    dpm_solver_sample,
    guided_eps,
    predict_x0,
)

S = dl.NoiseSchedule.linear(T=20)
X = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))  # a batch of 2 points
Y = torch.tensor([0, 1])
T2 = torch.tensor([5, 5])


def zero(x, t, y=None):
    return torch.zeros_like(x)


class Counted(torch.nn.Module):
    """A conditional stand-in (3 classes, null label 3) predicting ε = 0 and counting its calls."""

    null_label = 3

    def __init__(self, out=None):
        super().__init__()
        self.calls, self.out = 0, out

    def forward(self, x, t, y=None):
        self.calls += 1
        return torch.zeros_like(x) if self.out is None else self.out(x)


def broadcasting(out):
    return Counted(out)


SAMPLERS = {"ddpm": (ddpm_sample, {}), "ddim": (ddim_sample, {"steps": 5}), "dpm": (dpm_solver_sample, {"steps": 5})}

# (case, bad keyword arguments on top of model=Counted(), x_T=X, s=S, exception, pattern)
SAMPLER_CASES = [
    ("model output (B, 1)", {"model": broadcasting(lambda x: torch.zeros(x.shape[0], 1))},
     ValueError, r"model's output must have x_t's shape \(2, 2\).*got shape \(2, 1\)"),
    ("model output (1, C)", {"model": broadcasting(lambda x: torch.zeros(1, x.shape[1]))},
     ValueError, r"model's output must have x_t's shape \(2, 2\).*got shape \(1, 2\)"),
    ("model returns a tuple", {"model": broadcasting(lambda x: (torch.zeros_like(x),))},
     ValueError, r"model's output must have x_t's shape.*got a tuple"),
    ("model output broadcasts under guidance", {"model": broadcasting(lambda x: torch.zeros(x.shape[0], 1)),
                                                "y": Y, "guidance": 3.0},
     ValueError, r"model's output must have x_t's shape \(4, 2\) \(x_t twice.*got shape \(4, 1\)"),
    ("model not callable", {"model": 3}, ValueError, r"model must be callable"),
    ("x_T integer", {"x_T": torch.ones(2, 2, dtype=torch.long)}, ValueError, r"x_T must be a floating tensor"),
    ("x_T a list", {"x_T": [[0.0, 1.0]]}, ValueError, r"x_T must be a torch\.Tensor, got list"),
    ("x_T 0-d", {"x_T": torch.tensor(1.0)}, ValueError, r"x_T must have a batch dimension"),
    ("x_T NaN", {"x_T": torch.full((2, 2), float("nan"))}, ValueError, r"x_T must be finite"),
    ("x_T inf", {"x_T": torch.full((2, 2), float("inf"))}, ValueError, r"x_T must be finite"),
    ("s not a schedule", {"s": S.betas}, ValueError, r"s must be a NoiseSchedule.*got Tensor"),
    ("guidance nan", {"y": Y, "guidance": float("nan")}, ValueError, r"guidance must be finite, got nan"),
    ("guidance inf", {"y": Y, "guidance": float("inf")}, ValueError, r"guidance must be finite, got inf"),
    ("guidance a string", {"y": Y, "guidance": "3"}, ValueError, r"guidance must be a real number, got '3'"),
    ("guidance without y", {"guidance": 3.0}, ValueError, r"guidance must be 1\.0 without labels y"),
    ("y too long, guided", {"y": torch.tensor([0, 1, 2]), "guidance": 3.0}, ValueError,
     r"y must have shape \(2,\).*got \(3,\)"),
    ("y too long, w = 1", {"y": torch.tensor([0, 1, 2])}, ValueError, r"y must have shape \(2,\).*got \(3,\)"),
    ("y float labels", {"y": torch.tensor([0.0, 1.0]), "guidance": 2.0}, ValueError, r"y must hold integer"),
    ("y a list", {"y": [0, 1], "guidance": 2.0}, ValueError, r"y must be a LongTensor.*got list"),
    ("y label above null", {"y": torch.tensor([0, 7]), "guidance": 2.0}, ValueError,
     r"y must hold labels in \[0, 2\].*got 7"),
    ("y label negative", {"y": torch.tensor([-1, 0])}, ValueError, r"y must hold labels in \[0, 2\].*got -1"),
    ("y on another device", {"y": torch.zeros(2, dtype=torch.long, device="meta"), "guidance": 2.0}, ValueError,
     r"y must be on x's device \(cpu\), got meta"),
    ("y to an unconditional model", {"model": zero, "y": Y}, ValueError,
     r"labels y were given but the model is unconditional"),
    ("generator an int", {"generator": 0}, ValueError, r"generator must be a torch\.Generator or None, got int"),
    ("callback a string", {"callback": "print"}, ValueError, r"callback must be callable"),
    ("clip_x0 'False'", {"clip_x0": "False"}, ValueError, r"clip_x0 must be True or False, got 'False'"),
    ("clip_x0 None", {"clip_x0": None}, ValueError, r"clip_x0 must be True or False, got None"),
]
STEPPED_CASES = [  # ddim_sample and dpm_solver_sample only
    ("eta nan", {"eta": float("nan")}, ValueError, r"eta must be finite, got nan"),
    ("eta inf", {"eta": float("inf")}, ValueError, r"eta must be finite, got inf"),
    ("eta negative", {"eta": -0.5}, ValueError, r"eta must be >= 0, got -0\.5"),
    ("eta a string", {"eta": "0.5"}, ValueError, r"eta must be a real number"),
    ("eta a (2,) tensor", {"eta": torch.tensor([0.5, 0.5])}, ValueError, r"eta must be a real number"),
    ("steps 0", {"steps": 0}, ValueError, r"steps must be an integer in \[1, 20\].*got 0"),
    ("steps T + 1", {"steps": 21}, ValueError, r"steps must be an integer in \[1, 20\].*got 21"),
    ("steps 2.5", {"steps": 2.5}, ValueError, r"steps must be an integer in \[1, 20\].*got 2\.5"),
    ("steps True", {"steps": True}, ValueError, r"steps must be an integer.*got True"),
]
ROWS = [pytest.param(name, case, kw, exc, pattern, id=f"{name}-{case}")
        for name in SAMPLERS for case, kw, exc, pattern in SAMPLER_CASES]
ROWS += [pytest.param(name, case, kw, exc, pattern, id=f"{name}-{case}")
         for name in ("ddim", "dpm") for case, kw, exc, pattern in STEPPED_CASES]
ROWS += [pytest.param("ddpm", f"variance 'small', clip_x0={c}", {"variance": "small", "clip_x0": c}, ValueError,
                      r"variance must be one of \('beta_tilde', 'beta'\), got 'small'", id=f"ddpm-variance-clip{c}")
         for c in (True, False)]


@pytest.mark.parametrize("name, case, kw, exc, pattern", ROWS)
def test_a_bad_sampler_argument_is_named(name, case, kw, exc, pattern):
    sampler, defaults = SAMPLERS[name]
    args = {"model": Counted(), "x_T": X, "s": S, **defaults, **kw}
    with pytest.raises(exc, match=pattern):
        sampler(**args)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("kw", [{"clip_x0": "no"}, {"guidance": float("nan"), "y": Y}, {"y": torch.tensor([0, 9])},
                                {"callback": 1}, {"generator": 1}, {"x_T": X.long()}],
                         ids=["clip_x0", "guidance", "y", "callback", "generator", "x_T"])
def test_arguments_are_checked_before_the_first_network_call(name, kw):
    sampler, defaults = SAMPLERS[name]
    model = Counted()
    with pytest.raises(ValueError):
        sampler(model, **{"x_T": X, "s": S, **defaults, **kw})
    assert model.calls == 0


def test_ddpm_variance_is_checked_whatever_clip_x0_is():
    """It was silently ignored with clip_x0=True (the default)."""
    model = Counted()
    for clip in (True, False):
        with pytest.raises(ValueError, match=r"variance must be one of"):
            ddpm_sample(model, X, S, variance="beta_tilda", clip_x0=clip)
    assert model.calls == 0


def test_a_wrong_y_is_reported_with_the_callers_batch_not_the_doubled_one():
    """Guidance stacks [x, x] into one call of 2B; the message must speak of the caller's B."""
    model = dl.UNet(dl.UNetConfig(base_channels=8, channel_mults=(1,), attention_resolutions=(), num_classes=3,
                                  dropout=0.0)).eval()
    x = torch.randn(2, 1, 8, 8)
    for call in (lambda: ddim_sample(model, x, S, steps=3, y=torch.tensor([0, 1, 2]), guidance=3.0),
                 lambda: guided_eps(model, x, T2, torch.tensor([0, 1, 2]), 3.0)):
        with pytest.raises(ValueError, match=r"y must have shape \(2,\)") as info:
            call()
        assert "(4,)" not in str(info.value) and "(6,)" not in str(info.value)


# ------------------------------------------------------------------- the steps and guided_eps
STEP_CASES = [
    ("predict_x0 eps (1, 2)", lambda: predict_x0(X[:1], 3, X, S), r"eps must have.*\(2, 2\), got \(1, 2"),
    ("predict_x0 eps (2, 1)", lambda: predict_x0(X[:, :1], 3, X, S), r"eps must have.*\(2, 2\), got \(2, 1"),
    ("predict_x0 eps a list", lambda: predict_x0([0.0], 3, X, S), r"eps must be a torch\.Tensor, got list"),
    ("ddpm_step eps (1, 2)", lambda: ddpm_step(X[:1], 3, X, S), r"eps must have the shape of x_t"),
    ("ddpm_step eps a list", lambda: ddpm_step([0.0], 3, X, S), r"eps must be a torch\.Tensor, got list"),
    ("ddpm_step x_t integer", lambda: ddpm_step(X.long(), 3, X.long(), S), r"x_t must be a floating tensor"),
    ("ddpm_step t = T", lambda: ddpm_step(X, 20, X, S), r"t must be in \[0, 19\], got 20"),
    ("ddpm_step generator an int", lambda: ddpm_step(X, 3, X, S, generator=1), r"generator must be a torch\.Generator"),
    ("ddpm_step variance None", lambda: ddpm_step(X, 3, X, S, variance=None), r"variance must be one of"),
    ("ddpm_step clip_x0 'yes'", lambda: ddpm_step(X, 3, X, S, clip_x0="yes"), r"clip_x0 must be True or False"),
    ("ddim_step eta nan", lambda: ddim_step(X, 5, 3, X, S, eta=float("nan")), r"eta must be finite"),
    ("ddim_step eta -1", lambda: ddim_step(X, 5, 3, X, S, eta=-1.0), r"eta must be >= 0"),
    ("ddim_step t a (B,) tensor", lambda: ddim_step(X, T2, 3, X, S), r"t must be a single integer step.*shape \(2,\)"),
    ("ddim_step t 5.0", lambda: ddim_step(X, 5.0, 3, X, S), r"t must be a single integer step.*got 5\.0"),
    ("ddim_step t_prev True", lambda: ddim_step(X, 5, True, X, S), r"t_prev must be a single integer step"),
    ("ddim_step t_prev = t", lambda: ddim_step(X, 5, 5, X, S), r"need -1 <= t_prev < t <= 19, got t=5, t_prev=5"),
    ("ddim_step t = T", lambda: ddim_step(X, 20, 3, X, S), r"need -1 <= t_prev < t <= 19, got t=20"),
    ("ddim_step eps (1, 2)", lambda: ddim_step(X[:1], 5, 3, X, S), r"eps must have the shape of x_t"),
    ("ddim_step x_t a list", lambda: ddim_step([1.0], 5, 3, [1.0], S), r"x_t must be a torch\.Tensor, got list"),
    ("ddim_step s a tensor", lambda: ddim_step(X, 5, 3, X, S.betas), r"s must be a NoiseSchedule"),
    ("ddim_step noise (1, 2)", lambda: ddim_step(X, 5, 3, X, S, eta=1.0, noise=X[:1]), r"noise must have the same"),
    ("ddim_step generator a str", lambda: ddim_step(X, 5, 3, X, S, eta=1.0, generator="g"), r"generator must be"),
    ("ddim_timesteps s a tensor", lambda: ddim_timesteps(S.betas, 5), r"s must be a NoiseSchedule"),
    ("ddim_timesteps steps -1", lambda: ddim_timesteps(S, -1), r"steps must be an integer in \[1, 20\]"),
    ("guided_eps y (3,) for B = 2", lambda: guided_eps(Counted(), X, T2, torch.tensor([0, 1, 2]), 3.0),
     r"y must have shape \(2,\)"),
    ("guided_eps t (3,) for B = 2", lambda: guided_eps(Counted(), X, torch.tensor([5, 5, 5]), Y, 3.0),
     r"t must have shape \(2,\)"),
    ("guided_eps t an int, guided", lambda: guided_eps(Counted(), X, 5, Y, 3.0), r"t must be a LongTensor"),
    ("guided_eps guidance nan", lambda: guided_eps(Counted(), X, T2, Y, float("nan")), r"guidance must be finite"),
    ("guided_eps guidance None", lambda: guided_eps(Counted(), X, T2, Y, None), r"guidance must be a real number"),
    ("guided_eps x_t a list", lambda: guided_eps(zero, [1.0], T2, None, 1.0), r"x_t must be a torch\.Tensor"),
    ("guided_eps model None", lambda: guided_eps(None, X, T2, None, 1.0), r"model must be callable"),
    ("guided_eps output (2, 1), w = 1", lambda: guided_eps(lambda x, t: x[:, :1], X, T2, None, 1.0),
     r"model's output must have x_t's shape \(2, 2\).*got shape \(2, 1\)"),
]


@pytest.mark.parametrize("case, call, pattern", STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_a_bad_step_argument_is_named(case, call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------- valid inputs still pass, unchanged
def test_unusual_but_valid_forms_are_accepted_and_give_the_same_result(gen):
    """NumPy scalars and 0-d tensors for eta and guidance, a 0-d integer tensor for t: same numbers as plain ones."""
    s = dl.NoiseSchedule.cosine(T=30)
    x, eps, z = (torch.randn(4, 2, generator=gen) for _ in range(3))
    ref = ddim_step(eps, 9, 4, x, s, eta=0.5, noise=z)
    for t, t_prev, eta in ((np.int64(9), np.int64(4), np.float64(0.5)), (torch.tensor(9), torch.tensor(4), 0.5)):
        assert torch.equal(ddim_step(eps, t, t_prev, x, s, eta=eta, noise=z), ref)
    model = Counted(lambda x: x.sin())
    t4 = torch.full((4,), 7)
    ref = guided_eps(model, x, t4, torch.tensor([0, 1, 2, 3]), 2.0)  # 3 is the null label: allowed
    assert torch.equal(guided_eps(model, x, torch.tensor(7), torch.tensor([0, 1, 2, 3]), np.float32(2.0)), ref)
    a = dpm_solver_sample(model, x, s, steps=4, eta=torch.tensor(1.0), generator=torch.Generator().manual_seed(0))
    b = dpm_solver_sample(model, x, s, steps=4, eta=1, generator=torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.isfinite(a).all() and torch.allclose(a, b)


def test_the_ddpm_sampler_takes_ddpm_step_with_clip_x0(gen):
    """One DDPM step in the module: ddpm_sample is ddpm_step in a loop, clipped or not, bit for bit."""
    s = dl.NoiseSchedule.cosine(T=15)
    model = Counted(lambda x: 0.8 * x)  # predicts too little noise: x̂_0 leaves [-1, 1] early on
    x_T = 3 * torch.randn(8, 2, generator=gen)
    for clip in (True, False):
        for variance in ("beta_tilde", "beta"):
            g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
            out = ddpm_sample(model, x_T, s, generator=g1, variance=variance, clip_x0=clip)
            x = x_T
            for t in range(s.T - 1, -1, -1):
                x = ddpm_step(model(x, t), t, x, s, variance=variance, generator=g2, clip_x0=clip)
            assert torch.equal(out, x), (clip, variance)


def test_ddpm_step_with_clip_x0_is_the_posterior_mean_at_the_clipped_x0(gen):
    x_t, eps, z = (torch.randn(6, 3, generator=gen) for _ in range(3))
    x_t = 2 * x_t
    t = torch.tensor([0, 1, 5, 9, 13, 19])
    x0_hat = predict_x0(eps, t, x_t, S)
    assert (x0_hat.abs() > 1).any()  # the clip matters here
    mean, var = dl.q_posterior(x0_hat.clamp(-1, 1), x_t, t, S)
    expected = mean + (t > 0).reshape(-1, 1) * var.sqrt() * z
    torch.testing.assert_close(ddpm_step(eps, t, x_t, S, noise=z, clip_x0=True), expected)
