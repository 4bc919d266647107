"""The lesson-09 checkers, flow_matching_loss and flow_step: right answers in the forms learners write them
pass, each known mistake fails with its name on seeds 0..99, and the grader judges both.

Lesson: notebooks/09_flow_matching.ipynb (the checkers, ``diffusion_lessons.exercises``).

The functions are written the way a learner writes them, independently of the checkers' own lists
of mistakes: a model(x_t, t), x1, noise (B, ...) and t (B,) in [0, 1) for the loss; a velocity(x, t),
x, Python floats t < t_next in [0, 1] and "euler" or "midpoint" for the step.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from diffusion_lessons import exercises as ex
from diffusion_lessons import flow

FORM_SEEDS = [0, 1, 2, 3, None]  # None: a fresh seed from the OS, as in a lesson


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a busy machine


def _times(t, x1):
    """t (B,) as (B, 1, ..., 1): it broadcasts over x1's other dimensions."""
    return t.view(-1, *[1] * (x1.ndim - 1))


# ======================================================= flow_matching_loss: right answers
def loss_plain(model, x1, noise, t):
    t_ = _times(t, x1)
    x_t = (1 - t_) * noise + t_ * x1
    return F.mse_loss(model(x_t, t), x1 - noise)


def loss_lerp(model, x1, noise, t):
    t_ = t.reshape((-1,) + (1,) * (x1.ndim - 1))
    return ((model(torch.lerp(noise, x1, t_), t=t) - (x1 - noise)) ** 2).mean()


def loss_unsqueeze_loop(model, x1, noise, t):
    """t unsqueezed until it has x1's dimensions; the target computed first, the loss per sample then averaged."""
    target = x1 - noise
    t_ = t
    while t_.ndim < x1.ndim:
        t_ = t_.unsqueeze(-1)
    x_t = noise + t_ * target
    per_sample = ((model(x_t, t) - target) ** 2).flatten(1).mean(dim=1)
    return per_sample.mean()


def loss_float64(model, x1, noise, t):
    x1, noise, t = x1.double(), noise.double(), t.double()
    t_ = _times(t, x1)
    pred = model((1 - t_) * noise + t_ * x1, t)
    return F.mse_loss(pred, x1 - noise)


def loss_velocity_from_path(model, x1, noise, t):
    """The target as (x1 - x_t)/(1 - t): the velocity read off the path (t < 1 here, as torch.rand draws it)."""
    t_ = _times(t, x1)
    x_t = t_ * x1 + (1 - t_) * noise
    return F.mse_loss(model(x_t, t), (x1 - x_t) / (1 - t_))


def loss_with_the_package(model, x1, noise, t):
    """The package's loss calls the model with 1000·t: a wrapper hands the exercise's model t again."""
    return flow.flow_matching_loss(lambda x, s: model(x, s / flow.MODEL_TIME_SCALE), x1, noise, t)


def loss_einsum(model, x1, noise, t):
    """The path written with einsum over the flattened sample; the mean as a sum divided by the count."""
    flat1, flat0 = x1.flatten(1), noise.flatten(1)
    x_t = (torch.einsum("b,bd->bd", 1 - t, flat0) + torch.einsum("b,bd->bd", t, flat1)).view_as(x1)
    diff = model(x_t, t) - (x1 - noise)
    return (diff * diff).sum() / diff.numel()


LOSS_FORMS = [loss_plain, loss_lerp, loss_unsqueeze_loop, loss_float64, loss_velocity_from_path,
              loss_with_the_package, loss_einsum]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", LOSS_FORMS, ids=lambda f: f.__name__)
def test_flow_matching_loss_right_answers_pass(fn, seed):
    result = ex.check_flow_matching_loss(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_flow_loss_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("flow_matching_loss", seed=0)
    assert {c[1].ndim for c in cases} == {2, 4}  # 2-D points and images
    for spy, x1, noise, t in cases:
        assert isinstance(spy, ex._Spy) and spy.answer.shape == x1.shape == noise.shape
        assert t.shape == (x1.shape[0],) and t.is_floating_point() and len(t.unique()) == len(t)
        assert bool(((t >= 0) & (t < 0.98)).all()) and x1.shape[0] not in x1.shape[1:]  # no broadcast by chance
    assert any(bool((c[3] == 0).any()) for c in cases)  # torch.rand draws t = 0: x_t is the noise there


# ======================================================= flow_matching_loss: wrong answers
def loss_velocity_reversed(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), noise - x1)


def loss_rectified_flow_convention(model, x1, noise, t):
    """SD3's and diffusers' convention: t = 1 is noise, velocity noise - x1."""
    t_ = _times(t, x1)
    return F.mse_loss(model(t_ * noise + (1 - t_) * x1, t), noise - x1)


def loss_noise_and_data_swapped(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * x1 + t_ * noise, t), x1 - noise)


def loss_model_without_t(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1), x1 - noise)


def loss_constant_t(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, 0.5), x1 - noise)


def loss_zeros_for_t(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, torch.zeros_like(t)), x1 - noise)


def loss_one_t(model, x1, noise, t):
    """t[0], a number, broadcasts without any reshape: every sample at the first one's time."""
    x_t = (1 - t[0]) * noise + t[0] * x1
    return F.mse_loss(model(x_t, t), x1 - noise)


def loss_item(model, x1, noise, t):
    return loss_plain(model, x1, noise, t).item()


def loss_no_grad(model, x1, noise, t):
    t_ = _times(t, x1)
    with torch.no_grad():
        pred = model((1 - t_) * noise + t_ * x1, t)
    return F.mse_loss(pred, x1 - noise)


def loss_detached(model, x1, noise, t):
    return loss_plain(model, x1, noise, t).detach()


def loss_summed(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), x1 - noise, reduction="sum")


def loss_per_sample_sum(model, x1, noise, t):
    """‖v − u‖² summed over each sample, averaged over the batch: the paper's norm, off by the pixel count."""
    t_ = _times(t, x1)
    return ((model((1 - t_) * noise + t_ * x1, t) - (x1 - noise)) ** 2).flatten(1).sum(1).mean()


def loss_noise_in_place(model, x1, noise, t):
    t_ = _times(t, x1)
    target = x1 - noise
    noise *= 1 - t_  # the caller's noise is scaled too
    return F.mse_loss(model(noise + t_ * x1, t), target)


def loss_x1_in_place(model, x1, noise, t):
    target = x1 - noise
    x_t = x1.mul_(_times(t, x1)).add_((1 - _times(t, x1)) * noise)  # x1 overwritten with x_t
    return F.mse_loss(model(x_t, t), target)


def loss_scaled_t(model, x1, noise, t):
    """The package's habit, 1000·t, where the exercise's model takes t itself."""
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, 1000 * t), x1 - noise)


def loss_image_only_reshape(model, x1, noise, t):
    """t[:, None, None, None]: right for images, (B, 1, B, 2) for 2-D points."""
    t_ = t[:, None, None, None]
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), x1 - noise)


def loss_not_reshaped(model, x1, noise, t):
    return F.mse_loss(model((1 - t) * noise + t * x1, t), x1 - noise)  # (B,) against (B, ...): a RuntimeError


def loss_own_noise(model, x1, noise, t):
    t_ = _times(t, x1)
    noise = torch.randn_like(x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), x1 - noise)


def loss_own_t(model, x1, noise, t):
    t = torch.rand(x1.shape[0])
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), x1 - noise)


def loss_target_data(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), x1)


def loss_target_noise(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), noise)


def loss_reshaped_t_to_model(model, x1, noise, t):
    t_ = _times(t, x1)
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t_), x1 - noise)


LOSS_WRONG = [
    (loss_velocity_reversed, "velocity_reversed"),
    (loss_rectified_flow_convention, "t_convention_swapped"),
    (loss_noise_and_data_swapped, "noise_and_data_swapped"),
    (loss_model_without_t, "t_not_passed"),
    (loss_constant_t, "t_not_passed"),
    (loss_zeros_for_t, "t_not_passed"),
    (loss_one_t, "one_t_for_batch"),
    (loss_item, "not_differentiable"),
    (loss_no_grad, "not_differentiable"),
    (loss_detached, "not_differentiable"),
    (loss_summed, "sum_not_mean"),
    (loss_per_sample_sum, "sum_not_mean"),
    (loss_noise_in_place, "changed_input"),
    (loss_x1_in_place, "changed_input"),
    (loss_scaled_t, "t_scaled"),
    (loss_image_only_reshape, "t_not_broadcast"),
    (loss_not_reshaped, "t_not_broadcast"),
    (loss_own_noise, "own_noise"),
    (loss_own_t, "own_t"),
    (loss_target_data, "target_x1"),
    (loss_target_noise, "target_noise"),
    (loss_reshaped_t_to_model, "t_shape"),
]


@pytest.mark.parametrize("fn, mistake", LOSS_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_flow_matching_loss_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_flow_matching_loss, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_flow_loss_messages_say_what_to_do():
    result = ex.check_flow_matching_loss(loss_noise_in_place, seed=0)
    assert "`noise`" in result.message and "`x1`" not in result.message, result
    result = ex.check_flow_matching_loss(loss_not_reshaped, seed=0)
    assert result.status == "error" and "t.view(-1, *[1] * (x1.ndim - 1))" in result.message, result
    assert "(1 - t) * noise + t * x1" in result.message  # the learner's own line
    result = ex.check_flow_matching_loss(loss_scaled_t, seed=0)
    assert "1000" in result.message and "t itself" in result.message, result
    result = ex.check_flow_matching_loss(loss_summed, seed=0)
    assert "128 times" in result.message, result  # 8·1·4·4 elements in the first case
    result = ex.check_flow_matching_loss(lambda m, x1, n, t: loss_plain(m, x1, n, t) / 2, seed=0)
    assert result.status == "failed" and result.mistake is None and "0.5 times" in result.message, result
    result = ex.check_flow_matching_loss(lambda m, x1, n, t: loss_plain(m, x1, n, t) + loss_plain(m, x1, n, t))
    assert "exactly once" in result.message, result


# =============================================================== flow_step: right answers
def step_plain(velocity, x, t, t_next, method):
    h = t_next - t
    if method == "euler":
        return x + h * velocity(x, t)
    x_mid = x + h / 2 * velocity(x, t)
    return x + h * velocity(x_mid, t + h / 2)


def step_float64(velocity, x, t, t_next, method):
    return step_plain(velocity, x.double(), t, t_next, method)


def step_tensor_times(velocity, x, t, t_next, method):
    """Times as tensors of one time per sample, as a network takes them; h as a 0-d tensor."""
    B = x.shape[0]
    h = torch.tensor(t_next) - torch.tensor(t)
    k1 = velocity(x, torch.full((B,), t))
    if method.lower() == "euler":
        return x + h * k1
    return x + h * velocity(x + 0.5 * h * k1, torch.full((B,), t) + 0.5 * h)


def step_dispatch(velocity, x, t, t_next, method):
    """A dictionary of methods; the midpoint's time as the average (t + t_next)/2, h as -(t - t_next)."""
    h = -(t - t_next)

    def euler():
        return x + h * velocity(x, t)

    def midpoint():
        return x + h * velocity(x + (h / 2) * velocity(x, t), (t + t_next) / 2)

    return {"euler": euler, "midpoint": midpoint}[method]()


def step_calls_in_another_order(velocity, x, t, t_next, method):
    """The first velocity asked twice, the second step written as a sum of pieces."""
    h = t_next - t
    first = velocity(x, t)
    if method != "midpoint":
        return x + h * first
    half_point = x + h * velocity(x, t) / 2
    second = velocity(half_point, t + h / 2)
    return x + h * second + 0 * first


def step_numpy(velocity, x, t, t_next, method):
    h = t_next - t
    xn = x.numpy()
    k1 = velocity(x, t).numpy()
    if method == "euler":
        return xn + h * k1
    return xn + h * velocity(torch.from_numpy(xn + h / 2 * k1), t + h / 2).numpy()


def step_with_the_package(velocity, x, t, t_next, method):
    """The package's step calls its model with 1000·t (B,): a wrapper hands the exercise's velocity t again."""
    return flow.flow_step(lambda z, s: velocity(z, s / flow.MODEL_TIME_SCALE), x, t, t_next, method)


def step_half_step_then_full(velocity, x, t, t_next, method):
    """The midpoint as two moves: half a step with v(x, t), then from x with the slope found there."""
    dt = t_next - t
    if method == "midpoint":
        t_half = t + dt / 2
        x_half = x + velocity(x, t) * (t_half - t)
        return x + velocity(x_half, t_half) * dt
    return x + velocity(x, t) * dt


STEP_FORMS = [step_plain, step_float64, step_tensor_times, step_dispatch,
              step_calls_in_another_order, step_numpy, step_with_the_package, step_half_step_then_full]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", STEP_FORMS, ids=lambda f: f.__name__)
def test_flow_step_right_answers_pass(fn, seed):
    result = ex.check_flow_step(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_the_reference_is_the_packages_flow_step():
    """The checker's float64 reference agrees with flow.flow_step, the lesson's own, on every case."""
    for seed in range(5):
        for case in ex.make_cases("flow_step", seed=seed):
            velocity, x, t, t_next, method = case
            ours = step_with_the_package(velocity, x.double(), t, t_next, method)
            assert torch.allclose(ex._flow_step_reference(torch.float64)(*case), ours, rtol=0, atol=1e-12)


def test_flow_step_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("flow_step", seed=0)
    assert {c[4] for c in cases} == {"euler", "midpoint"}
    assert {tuple(c[1].shape)[1:] for c in cases} >= {(2,), (1, 4, 4)}
    assert all(isinstance(c[2], float) and isinstance(c[3], float) and 0 <= c[2] < c[3] <= 1 for c in cases)
    assert any(c[2] == 0 for c in cases) and any(c[3] == 1 for c in cases)


def test_the_checkers_velocity_tells_euler_midpoint_and_the_mistakes_apart():
    """Nonlinear in x, dependent on t: on every seed each mistaken step is far from the right one in some case."""
    for seed in range(20):
        farthest = dict.fromkeys((m.name for m in ex._FLOW_STEP_MISTAKES), 0.0)  # largest gap / tolerance
        for case in ex.make_cases("flow_step", seed=seed):
            right = ex._flow_step_reference(torch.float64)(*case)
            tolerance = 32 * ex._EPS32 * ex._flow_step_scale(case)
            for m in ex._FLOW_STEP_MISTAKES:
                farthest[m.name] = max(farthest[m.name], (m.fn(*case) - right).abs().max().item() / tolerance)
        assert min(farthest.values()) > 20, (seed, farthest)
    velocity = ex._Velocity(1.0, 1.0, 0.0, 0.5)
    x = torch.randn(8, 2)
    assert torch.allclose(velocity(x, torch.full((8,), 0.3)), velocity(x, 0.3))  # one time per sample, or one


# =============================================================== flow_step: wrong answers
def step_reversed(velocity, x, t, t_next, method):
    h = t - t_next
    if method == "euler":
        return x + h * velocity(x, t)
    return x + h * velocity(x + h / 2 * velocity(x, t), t + h / 2)


def step_midpoint_at_t(velocity, x, t, t_next, method):
    h = t_next - t
    k1 = velocity(x, t)
    return x + h * k1 if method == "euler" else x + h * velocity(x + h / 2 * k1, t)


def step_midpoint_at_x(velocity, x, t, t_next, method):
    h = t_next - t
    return x + h * velocity(x, t) if method == "euler" else x + h * velocity(x, t + h / 2)


def step_midpoint_at_t_next(velocity, x, t, t_next, method):
    h = t_next - t
    k1 = velocity(x, t)
    return x + h * k1 if method == "euler" else x + h * velocity(x + h / 2 * k1, t_next)


def step_always_euler(velocity, x, t, t_next, method):
    return x + (t_next - t) * velocity(x, t)


def step_full_step_point(velocity, x, t, t_next, method):
    h = t_next - t
    k1 = velocity(x, t)
    return x + h * k1 if method == "euler" else x + h * velocity(x + h * k1, t + h / 2)


def step_updates_x_in_place(velocity, x, t, t_next, method):
    h = t_next - t
    k1 = velocity(x, t)
    if method == "midpoint":
        k1 = velocity(x + h / 2 * k1, t + h / 2)
    x += h * k1  # the caller's x is moved too
    return x


def step_never_calls_velocity(velocity, x, t, t_next, method):
    """Straight to a guess: the data at 0, x scaled down as if the flow went there in a straight line."""
    return x * (1 - t_next) / (1 - t)


EXACT_VELOCITY = ex._Velocity(1.0, 1.0, 0.0, 0.5)  # a global of the lesson


def step_global_velocity(velocity, x, t, t_next, method):
    return step_plain(EXACT_VELOCITY, x, t, t_next, method)


def step_always_midpoint(velocity, x, t, t_next, method):
    return step_plain(velocity, x, t, t_next, "midpoint")


def step_heun(velocity, x, t, t_next, method):
    h = t_next - t
    k1 = velocity(x, t)
    return x + h * k1 if method == "euler" else x + h / 2 * (k1 + velocity(x + h * k1, t_next))


STEP_WRONG = [
    (step_reversed, "step_reversed"),
    (step_midpoint_at_t, "midpoint_time_not_advanced"),
    (step_midpoint_at_x, "midpoint_at_x"),
    (step_midpoint_at_t_next, "midpoint_at_t_next"),
    (step_always_euler, "euler_for_midpoint"),
    (step_full_step_point, "full_step_midpoint"),
    (step_updates_x_in_place, "changed_input"),
    (step_never_calls_velocity, "ignores_velocity"),
    (step_global_velocity, "ignores_velocity"),
    (step_always_midpoint, "midpoint_for_euler"),
    (step_heun, "heun_for_midpoint"),
]


@pytest.mark.parametrize("fn, mistake", STEP_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_flow_step_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_flow_step, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_every_named_mistake_has_a_wrong_answer():
    assert {m.name for m in ex._FLOW_STEP_MISTAKES} | {"changed_input", "ignores_velocity"} == \
        {name for _, name in STEP_WRONG}
    result = ex.check_flow_step(step_updates_x_in_place, seed=0)
    assert "`x`" in result.message, result
    result = ex.check_flow_step(lambda v, x, t, tn, m: step_plain(v, x, t, tn, m) * 1.01, seed=0)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message
    result = ex.check_flow_step(lambda v, x, t, tn, m: v(x, t)[:1], seed=0)
    assert result.status == "failed" and "shape" in result.message


# ====================================================================== through the grader
SOLUTION = '''
import torch
import torch.nn.functional as F
from diffusion_lessons.exercises import check_flow_matching_loss, check_flow_step


def my_flow_matching_loss(model, x1, noise, t):
    ### BEGIN SOLUTION
    t_ = t.view(-1, *[1] * (x1.ndim - 1))  # (B, 1, ..., 1): one time per sample, broadcast over the rest
    x_t = (1 - t_) * noise + t_ * x1  # the straight path from noise (t = 0) to data (t = 1)
    return F.mse_loss(model(x_t, t), x1 - noise)  # the velocity of the path is x1 - noise
    ### END SOLUTION


def my_flow_step(velocity, x, t, t_next, method):
    ### BEGIN SOLUTION
    h = t_next - t
    slope = velocity(x, t)
    if method == "euler":
        return x + h * slope
    return x + h * velocity(x + h / 2 * slope, t + h / 2)  # midpoint: the velocity half a step ahead
    ### END SOLUTION
'''
CHECKS = "check_flow_matching_loss(my_flow_matching_loss)\ncheck_flow_step(my_flow_step)"
WRONG = '''
import torch
import torch.nn.functional as F
import diffusion_lessons.exercises as ex
from diffusion_lessons import flow


def my_flow_matching_loss(model, x1, noise, t):  # the target points the wrong way
    t_ = t.view(-1, *[1] * (x1.ndim - 1))
    return F.mse_loss(model((1 - t_) * noise + t_ * x1, t), noise - x1)


ex._Velocity.__call__ = lambda self, x, t: torch.zeros_like(x)  # the stand-in, rewritten in the kernel


def my_flow_step(velocity, x, t, t_next, method):  # right, on a velocity this kernel broke: still wrong
    return flow.flow_step(lambda z, s: velocity(z, s / 1000), x, t, t_next, method)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the grader's process handling needs Linux")
def test_the_grader_judges_both_exercises(grade_two_submissions):
    right, wrong = grade_two_submissions("09_flow_matching", ["flow_matching_loss", "flow_step"], SOLUTION, CHECKS,
                                         WRONG)
    assert [(r.exercise.name, r.status) for r in right.results] == [("flow_matching_loss", "passed"),
                                                                      ("flow_step", "passed")], right
    assert right.cell_errors == () and right.score == 2
    by_name = {r.exercise.name: r for r in wrong.results}
    assert wrong.score == 0 and wrong.cell_errors == (), wrong
    assert by_name["flow_matching_loss"].status == "failed" and "wrong way" in by_name["flow_matching_loss"].message
    assert by_name["flow_step"].status == "failed", by_name["flow_step"]
