"""Flow matching as properties (lesson 09).

Gaussian data x₁ ~ N(0, V I) with noise x₀ ~ N(0, I) has everything in closed form on the straight path
x_t = (1 - t)·x₀ + t·x₁: Var x_t = s_t² = (1 - t)² + t²V, the marginal velocity
E[x₁ - x₀ | x_t] = (tV - (1 - t))/s_t² · x_t, and the ODE's solution x(t) = x(0)·s_t.
"""

import itertools
import math

import pytest
import torch

import diffusion_lessons as dl
from diffusion_lessons import flow

V = 0.25


class ExactVelocity(torch.nn.Module):
    """The marginal velocity of Gaussian data, called as the network is: model(x_t, 1000·t); counts calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, t_scaled, y=None):
        self.calls += 1
        t = (t_scaled / flow.MODEL_TIME_SCALE).double().reshape(-1, *([1] * (x.ndim - 1)))
        return ((t * V - (1 - t)) / ((1 - t) ** 2 + t**2 * V) * x).to(x.dtype)


class Spy(torch.nn.Module):
    """Records what it is called with and answers a fixed tensor."""

    def __init__(self, answer):
        super().__init__()
        self.answer, self.seen = answer, []

    def forward(self, x, t, y=None):
        self.seen.append((x.clone(), t.clone(), y))
        return self.answer


def test_the_path_runs_from_noise_to_data(gen):
    x0, x1 = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    assert torch.equal(flow.interpolate(x0, x1, 0.0), x0)
    assert torch.equal(flow.interpolate(x0, x1, 1.0), x1)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.allclose(flow.interpolate(x0, x1, t), (1 - t[:, None]) * x0 + t[:, None] * x1)


def test_loss_feeds_the_path_and_targets_the_velocity(gen):
    x1, x0 = torch.randn(5, 1, 4, 4, generator=gen), torch.randn(5, 1, 4, 4, generator=gen)
    t = torch.rand(5, generator=gen)
    answer = torch.randn(5, 1, 4, 4, generator=gen)
    spy = Spy(answer)
    y = torch.arange(5)
    loss = flow.flow_matching_loss(spy, x1, noise=x0, t=t, y=y)
    x_seen, t_seen, y_seen = spy.seen[0]
    assert torch.allclose(x_seen, (1 - t.reshape(-1, 1, 1, 1)) * x0 + t.reshape(-1, 1, 1, 1) * x1)
    assert torch.allclose(t_seen, t * flow.MODEL_TIME_SCALE)  # each sample its own t, scaled for the embedding
    assert torch.equal(y_seen, y)
    assert torch.isclose(loss, ((answer - (x1 - x0)) ** 2).mean())
    # drawn t: one per sample, in [0, 1]
    spy = Spy(answer)
    flow.flow_matching_loss(spy, x1, generator=gen)
    drawn = spy.seen[0][1] / flow.MODEL_TIME_SCALE
    assert drawn.shape == (5,) and (drawn >= 0).all() and (drawn <= 1).all() and drawn.unique().numel() == 5


def test_the_loss_of_the_exact_velocity_is_minimal(gen):
    """Regressing on x₁ - x₀ is minimised by the marginal velocity: a scaled version does worse."""
    x1 = math.sqrt(V) * torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
    x0 = torch.randn(x1.shape, generator=gen, dtype=torch.float64)
    t = torch.rand(x1.shape[0], generator=gen, dtype=torch.float64) * 0.98 + 0.01
    exact = ExactVelocity()

    def scaled(c):
        return lambda x, ts, y=None: c * exact(x, ts)

    losses = [flow.flow_matching_loss(scaled(c), x1, noise=x0, t=t).item() for c in (0.9, 1.0, 1.1)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_samplers_converge_to_the_exact_endpoint_at_their_order(method, order, gen):
    x0 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    exact_end = math.sqrt(V) * x0  # x(1) = x(0)·s_1, s_1 = √V
    errors = [(flow.flow_sample(ExactVelocity(), x0, steps=n, method=method) - exact_end).abs().max().item()
              for n in (16, 32, 64)]
    for coarse, fine in itertools.pairwise(errors):
        assert 2**order * 0.8 < coarse / fine < 2 ** (order + 2)  # at least the order (midpoint does better here)
    assert errors[-1] < 0.05 * 10 ** (1 - order)  # Euler: 0.03 at 64 steps; second order: far less


def test_second_order_beats_euler_at_equal_calls(gen):
    x0 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    exact_end = math.sqrt(V) * x0
    euler = (flow.flow_sample(ExactVelocity(), x0, steps=32, method="euler") - exact_end).abs().max()
    for method in ("midpoint", "heun"):
        model = ExactVelocity()
        second = (flow.flow_sample(model, x0, steps=16, method=method) - exact_end).abs().max()
        assert model.calls == 32 and second < euler / 4


def test_sampler_is_deterministic_and_calls_back(gen):
    x0 = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    seen = []
    a = flow.flow_sample(ExactVelocity(), x0, steps=5, callback=seen.append)
    assert torch.equal(a, flow.flow_sample(ExactVelocity(), x0, steps=5))
    assert [info["i"] for info in seen] == list(range(5))
    assert [round(info["t"], 6) for info in seen] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert set(seen[0]) == {"i", "t", "x_t", "x1_hat"} and torch.equal(seen[-1]["x_t"], a)


def test_conversions_round_trip_and_match_the_gaussian_score(gen):
    x_t = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(6, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    v = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(flow.x1_to_velocity(flow.velocity_to_x1(v, x_t, t), x_t, t), v)
    # x_t = (1-t)·x̂₀ + t·x̂₁ with x̂₀ = velocity_to_eps, x̂₁ = velocity_to_x1
    tt = t[:, None]
    assert torch.allclose((1 - tt) * flow.velocity_to_eps(v, x_t, t) + tt * flow.velocity_to_x1(v, x_t, t), x_t)
    exact_v = ExactVelocity()(x_t, t * flow.MODEL_TIME_SCALE)
    var_t = (1 - tt) ** 2 + tt**2 * V
    assert torch.allclose(flow.velocity_to_score(exact_v, x_t, t), -x_t / var_t)
    assert flow.to_noise_time(0.25) == 0.75 and torch.allclose(flow.to_noise_time(flow.to_noise_time(t)), t)


def test_guidance_mixes_the_two_velocities(gen):
    class Conditional(torch.nn.Module):
        null_label = 3

        def forward(self, x, t, y):
            return x * 0 + y.to(x.dtype)[:, None]  # the velocity is the label itself

    x = torch.randn(4, 2, generator=gen)
    y = torch.tensor([0, 1, 2, 1])
    v = flow.guided_velocity(Conditional(), x, torch.full((4,), 0.5), y, guidance=2.0)
    assert torch.allclose(v, (3 + 2.0 * (y - 3)).float()[:, None].expand(4, 2))


@pytest.mark.parametrize("call, message", [
    (lambda x: flow.interpolate(x, x, 1.5), r"t must lie in \[0, 1\]"),
    (lambda x: flow.interpolate(x, x, torch.tensor([0.1, 0.2])), "one time per sample"),
    (lambda x: flow.interpolate(x, x[:2], 0.5), "x0 must have the shape of x1"),
    (lambda x: flow.flow_matching_loss(ExactVelocity(), x, t=torch.full((4,), -0.1)), r"t must lie in \[0, 1\]"),
    (lambda x: flow.flow_matching_loss(ExactVelocity(), x, noise=x[:, :1]), "noise must have the shape of x1"),
    (lambda x: flow.flow_matching_loss(ExactVelocity(), x, t=torch.zeros(4, dtype=torch.long)), "float tensor"),
    (lambda x: flow.flow_sample(ExactVelocity(), x, steps=0), "steps must be a positive integer"),
    (lambda x: flow.flow_sample(ExactVelocity(), x, method="rk4"), "method must be one of"),
    (lambda x: flow.flow_sample(ExactVelocity(), x.long()), "x0 must be a floating tensor"),
    (lambda x: flow.flow_sample(ExactVelocity(), x, guidance=2.0), "guidance must be 1.0 without labels y"),
    (lambda x: flow.to_noise_time(1.5), r"t must be a time in \[0, 1\]"),
    (lambda x: flow.x1_to_velocity(x, x, 1.0), "t must be < 1"),
])
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(4, 2))


def test_mixture_velocity_is_the_regression_of_x1_minus_x0(gen):
    """The exact marginal velocity against a Monte-Carlo regression: the average x₁ - x₀ of pairs whose x_t
    lands near a point; and for a single Gaussian it is the closed form of the module docstring."""
    from diffusion_lessons.continuous import GaussianMixture, toy_mixture

    mix, t = toy_mixture("blobs"), 0.6
    x1 = mix.sample(2_000_000, generator=gen).double()
    x0 = torch.randn(x1.shape, generator=gen, dtype=torch.float64)
    x_t = (1 - t) * x0 + t * x1
    point = torch.tensor([[0.1, -0.1]], dtype=torch.float64)
    near = (x_t - point).norm(dim=1) < 0.03
    assert near.sum() > 500
    mc = (x1 - x0)[near].mean(0)
    assert torch.allclose(flow.mixture_velocity(point, t, mix)[0], mc, atol=0.1)
    single = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                             V * torch.eye(2, dtype=torch.float64)[None])
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(flow.mixture_velocity(x, t, single), ExactVelocity()(x, torch.full((5,), t * 1000.0)))
    with pytest.raises(ValueError, match=r"t must be a number in \[0, 1\)"):
        flow.mixture_velocity(x, 1.0, single)


def test_straightness_is_one_for_a_line_and_less_for_a_detour():
    line = torch.linspace(0, 1, 11)[:, None, None] * torch.tensor([[3.0, 4.0]])  # (11, 1, 2)
    assert torch.allclose(flow.straightness(line), torch.ones(1))
    detour = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]])
    assert torch.allclose(flow.straightness(detour), torch.tensor([2 / (2 * math.sqrt(2))]))


# ----------------------------------------------------------------------- one train loop for both
def test_train_with_the_flow_objective_learns_a_toy(gen):
    data = dl.toy_2d("gaussian_mixture", n=2000, seed=0)
    config = dl.TrainConfig(objective="flow", steps=400, batch_size=256, lr=3e-3, warmup_steps=20, ema_decay=0.95,
                            log_every=50)
    torch.manual_seed(0)
    result = dl.train(dl.MLPDenoiser(), data, config, progress=False)
    assert sum(result.losses[-50:]) / 50 < 0.8 * sum(result.losses[:20]) / 20
    x1 = flow.flow_sample(result.ema, torch.randn(2000, 2, generator=gen), steps=20, method="heun")
    assert torch.allclose(x1.var(0), data.var(0), rtol=0.25)


def test_reflow_pairs_train_on_the_given_noise(gen):
    """With noise pairs, every step's noise comes from the pairs: a model that sees x_t recovers it exactly."""
    data = torch.randn(64, 2, generator=gen)
    pairs = torch.randn(64, 2, generator=gen)
    seen = []

    class Recorder(dl.MLPDenoiser):
        def forward(self, x, t, y=None):
            seen.append((x.detach().clone(), (t / flow.MODEL_TIME_SCALE).detach().clone()))
            return super().forward(x, t)

    config = dl.TrainConfig(objective="flow", steps=3, batch_size=16, warmup_steps=0, log_every=1)
    dl.train(Recorder(), data, config, progress=False, noise=pairs)
    for x_t, t in seen:
        t = t[:, None]
        # each x_t must be (1 - t)·pair + t·datum for one index i of the data set
        candidates = (1 - t[:, None]) * pairs[None] + t[:, None] * data[None]  # (B, 64, 2)
        assert (candidates - x_t[:, None]).abs().amax(-1).min(1).values.max() < 1e-5


@pytest.mark.parametrize("kwargs, message", [
    ({"objective": "velocity"}, "objective must be one of"),
    ({"objective": "flow", "prediction": "v"}, "prediction='v' is for the diffusion objective"),
])
def test_train_config_objective_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dl.TrainConfig(**kwargs)


def test_noise_pairs_are_checked(gen):
    data = torch.randn(32, 2, generator=gen)
    with pytest.raises(ValueError, match="noise pairs are for objective='flow'"):
        dl.train(dl.MLPDenoiser(), data, dl.TrainConfig(steps=1, batch_size=16), progress=False,
                 noise=torch.randn(32, 2))
    with pytest.raises(ValueError, match="noise must have the data's shape"):
        dl.train(dl.MLPDenoiser(), data, dl.TrainConfig(objective="flow", steps=1, batch_size=16), progress=False,
                 noise=torch.randn(31, 2))
