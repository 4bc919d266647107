"""The lesson-10 checkers, patchify and adaln: right answers in the forms learners write them pass, each
known mistake fails with its name on seeds 0..99, and the grader judges both.

Lesson: notebooks/10_colour_transformers_text.ipynb (the checkers, ``diffusion_lessons.exercises``).

The functions are written the way a learner writes them, independently of the checkers' own lists
of mistakes: images x (B, C, H, W) and a patch side p for patchify; tokens x (B, N, D), shift, scale and
gate (B, D) and a sublayer(h) for the adaLN-Zero residual branch.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from diffusion_lessons import dit
from diffusion_lessons import exercises as ex

FORM_SEEDS = [0, 1, 2, 3, None]  # None: a fresh seed from the OS, as in a lesson


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a busy machine


# ================================================================ patchify: right answers
def patchify_einops(x, p):
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)


def patchify_reshape_permute(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows of patches, row in patch, columns, column in patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def patchify_unfold_reordered(x, p):
    """F.unfold gives (B, C·p·p, N) in (c p1 p2) order: transposed, then each token reordered to (p1 p2 c)."""
    B, C = x.shape[:2]
    tokens = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (B, N, C·p·p)
    N = tokens.shape[1]
    return tokens.reshape(B, N, C, p * p).transpose(2, 3).reshape(B, N, p * p * C)


def patchify_tensor_unfold(x, p):
    B, C = x.shape[:2]
    patches = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
    return patches.permute(0, 2, 3, 4, 5, 1).reshape(B, -1, p * p * C)


def patchify_float64(x, p):
    return patchify_einops(x.double(), p)


def patchify_loops(x, p):
    B, _, H, W = x.shape
    tokens = []
    for i in range(H // p):
        for j in range(W // p):
            patch = x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p]  # (B, C, p, p)
            tokens.append(patch.permute(0, 2, 3, 1).reshape(B, -1))  # (B, p·p·C), channels last
    return torch.stack(tokens, dim=1)


def patchify_channels_last_first(x, p):
    B, C, H, W = x.shape
    x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    return x.reshape(B, H // p, p, W // p, p, C).transpose(2, 3).reshape(B, -1, p * p * C)


def patchify_numpy(x, p):
    B, C, H, W = x.shape
    a = x.numpy().reshape(B, C, H // p, p, W // p, p).transpose(0, 2, 4, 3, 5, 1)
    return np.ascontiguousarray(a).reshape(B, -1, p * p * C)


def patchify_conv(x, p):
    """DiT's patch embedding is a convolution of stride p: with one-hot kernels it copies the patches."""
    C = x.shape[1]
    K = p * p * C
    weight = torch.eye(K, dtype=x.dtype).reshape(K, p, p, C).permute(0, 3, 1, 2)  # out k reads pixel (p1, p2, c)
    return F.conv2d(x, weight, stride=p).flatten(2).transpose(1, 2)  # (B, N, p·p·C)


PATCHIFY_FORMS = [patchify_einops, patchify_reshape_permute, patchify_unfold_reordered, patchify_tensor_unfold,
                  patchify_float64, patchify_loops, patchify_channels_last_first, patchify_numpy, patchify_conv]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", PATCHIFY_FORMS, ids=lambda f: f.__name__)
def test_patchify_right_answers_pass(fn, seed):
    result = ex.check_patchify(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_the_patchify_reference_is_the_packages():
    """The checker's reference is dit.patchify, and unpatchify undoes it on the square cases."""
    for case in ex.make_cases("patchify", seed=0):
        x, p = case
        assert torch.equal(ex.EXERCISES["patchify"].reference(*case), dit.patchify(x.double(), p))
        if x.shape[2] == x.shape[3]:
            assert torch.equal(dit.unpatchify(dit.patchify(x, p), p, x.shape[1]), x)



def test_patchify_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("patchify", seed=0)
    assert {x.shape[1] for x, _ in cases} == {1, 3, 4} and {p for _, p in cases} == {1, 2, 4}
    assert {x.dtype for x, _ in cases} == {torch.float32, torch.float64}
    assert any(x.shape[2] != x.shape[3] for x, _ in cases)  # an image that is not square
    for x, p in cases:
        B, C, H, W = x.shape
        assert H % 4 == 0 and W % 4 == 0 and B not in (C, H, W, p, (H // p) * (W // p), p * p * C)
    x, p = cases[0]
    assert (x.shape[2] // p) * (x.shape[3] // p) == p * p * x.shape[1]  # N = p·p·C: swapped axes fit in shape
    assert x.shape[1] % p == 0  # a channels-last reading runs


# ================================================================ patchify: wrong answers
def patchify_unfold_not_reordered(x, p):
    return F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (c p1 p2) in each token


def patchify_tensor_unfold_channels_first(x, p):
    B, C = x.shape[:2]
    return x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * p * p)


def patchify_pixels_transposed(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 5, 3, 1).reshape(B, -1, p * p * C)


def patchify_patches_column_major(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 3, 5, 1).reshape(B, -1, p * p * C)


def patchify_strided(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, p, H // p, p, W // p).permute(0, 3, 5, 2, 4, 1).reshape(B, -1, p * p * C)


def patchify_plain_reshape(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def patchify_split_but_not_permuted(x, p):
    B, C, H, W = x.shape
    return x.view(B, C, H // p, p, W // p, p).reshape(B, (H // p) * (W // p), -1)


def patchify_channels_last_rows(x, p):
    B, C = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(B, -1, p * p * C)


def patchify_unfold_raw(x, p):
    return F.unfold(x, kernel_size=p, stride=p)  # (B, C·p·p, N)


def patchify_features_first(x, p):
    return rearrange(x, "b c (h p1) (w p2) -> b (p1 p2 c) (h w)", p1=p, p2=p)


def patchify_position_in_patch_as_token(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 3, 5, 2, 4, 1).reshape(B, p * p, -1)


PATCH_SIZE = 4  # a global of the lesson: DiTConfig().patch_size


def patchify_hard_coded_4(x, p):
    return patchify_reshape_permute(x, PATCH_SIZE)


def patchify_hard_coded_2(x, p):
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=2, p2=2)


def patchify_channels_last_input(x, p):
    B, H, W, C = x.shape  # as PIL and numpy store images
    return x.reshape(B, H // p, p, W // p, p, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, p * p * C)


def patchify_in_place(x, p):
    B, C, H, W = x.shape
    x.transpose_(1, 2).transpose_(2, 3)  # the caller's x becomes channels-last
    return x.reshape(B, H // p, p, W // p, p, C).transpose(2, 3).reshape(B, -1, p * p * C)


PATCHIFY_WRONG = [
    (patchify_unfold_not_reordered, "channels_first_in_token"),
    (patchify_tensor_unfold_channels_first, "channels_first_in_token"),
    (patchify_pixels_transposed, "pixels_column_major"),
    (patchify_patches_column_major, "patches_column_major"),
    (patchify_strided, "strided_patches"),
    (patchify_plain_reshape, "reshape_without_permute"),
    (patchify_split_but_not_permuted, "reshape_without_permute"),
    (patchify_channels_last_rows, "rows_not_squares"),
    (patchify_unfold_raw, "tokens_transposed"),
    (patchify_features_first, "tokens_transposed"),
    (patchify_position_in_patch_as_token, "patch_and_position_swapped"),
    (patchify_hard_coded_4, "ignores_p"),
    (patchify_hard_coded_2, "ignores_p"),
    (patchify_channels_last_input, "channels_last"),
    (patchify_in_place, "changed_input"),
]


@pytest.mark.parametrize("fn, mistake", PATCHIFY_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_patchify_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_patchify, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_patchify_messages_say_which_token_went_where():
    assert {m.name for m in ex._PATCHIFY_MISTAKES} | {"changed_input"} == {name for _, name in PATCHIFY_WRONG}
    result = ex.check_patchify(patchify_patches_column_major, seed=0)
    assert "token 1 should be the patch at row 0, column 1 of the patch grid, but it holds the patch at row 1, " \
           "column 0" in result.message, result
    result = ex.check_patchify(patchify_unfold_not_reordered, seed=0)
    assert "token 0 holds the right patch" in result.message and "channel 1" in result.message, result
    result = ex.check_patchify(patchify_in_place, seed=0)
    assert "`x`" in result.message, result
    result = ex.check_patchify(lambda x, p: patchify_einops(x, p) * 1.01, seed=0)
    assert result.status == "failed" and result.mistake is None and "no value of the image" in result.message
    shuffled = lambda x, p: patchify_einops(x, p)[:, torch.arange(x.shape[2] * x.shape[3] // p ** 2).roll(1)]
    result = ex.check_patchify(shuffled, seed=0)  # each token one patch late: a mistake no list holds
    assert result.mistake is None and "token 0 should be the patch at row 0, column 0" in result.message, result
    result = ex.check_patchify(lambda x, p: x, seed=0)
    assert result.status == "failed" and "(B, N, p·p·C)" in result.message, result
    square_only = lambda x, p: patchify_reshape_permute(x, p) if x.shape[2] == x.shape[3] else \
        x.reshape(x.shape[0], x.shape[1], x.shape[2] // p, p, x.shape[2] // p, p)
    result = ex.check_patchify(square_only, seed=0)
    assert result.status == "error" and "not square" in result.message, result


# ================================================================= adaln: right answers
def adaln_functional(x, shift, scale, gate, sublayer):
    h = F.layer_norm(x, (x.shape[-1],), eps=1e-6)
    return x + gate[:, None] * sublayer(h * (1 + scale[:, None]) + shift[:, None])


def adaln_fresh_layernorm(x, shift, scale, gate, sublayer):
    """A fresh nn.LayerNorm: affine weights 1 and bias 0, eps 1e-5."""
    norm = nn.LayerNorm(x.shape[-1])
    return x + gate.unsqueeze(1) * sublayer(norm(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))


def adaln_dit_style(x, shift, scale, gate, sublayer):
    norm = nn.LayerNorm(x.shape[-1], elementwise_affine=False, eps=1e-6)
    return x + gate[:, None] * sublayer(dit.modulate(norm(x), shift, scale))


def adaln_by_hand(x, shift, scale, gate, sublayer):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    h = (x - mean) * torch.rsqrt(var + 1e-5)
    h = h * (1 + scale.view(scale.shape[0], 1, -1)) + shift.view(shift.shape[0], 1, -1)
    return gate.view(gate.shape[0], 1, -1) * sublayer(h) + x


def adaln_float64(x, shift, scale, gate, sublayer):
    x, shift, scale, gate = (v.double() for v in (x, shift, scale, gate))
    return adaln_functional(x, shift, scale, gate, sublayer)


def adaln_einops(x, shift, scale, gate, sublayer):
    shift, scale, gate = (rearrange(v, "b d -> b 1 d") for v in (shift, scale, gate))
    h = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + 1e-6)  # eps on the std
    return x + gate * sublayer(torch.addcmul(shift, h, 1 + scale))


def adaln_expanded(x, shift, scale, gate, sublayer):
    """The vectors expanded to (B, N, D) explicitly; the branch computed first."""
    B, N, D = x.shape
    shift, scale, gate = (v[:, None, :].expand(B, N, D) for v in (shift, scale, gate))
    branch = gate * sublayer(F.layer_norm(x, (D,)) * (scale + 1) + shift)
    return torch.add(x, branch)


ADALN_FORMS = [adaln_functional, adaln_fresh_layernorm, adaln_dit_style, adaln_by_hand, adaln_float64,
               adaln_einops, adaln_expanded]


@pytest.mark.parametrize("seed", FORM_SEEDS)
@pytest.mark.parametrize("fn", ADALN_FORMS, ids=lambda f: f.__name__)
def test_adaln_right_answers_pass(fn, seed):
    result = ex.check_adaln(fn, seed=seed)
    assert result.passed, result
    assert repr(result).startswith("✅")


def test_the_adaln_reference_is_a_dit_block():
    """Two branches of the reference, with the block's attention and MLP as sublayers, are dit.DiTBlock's forward."""
    torch.manual_seed(0)
    block = dit.DiTBlock(16, 4, 2.0).double()
    nn.init.normal_(block.ada[1].weight, std=0.3)  # not adaLN-Zero's zeros: every vector matters
    x, c = torch.randn(3, 5, 16, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)
    shift1, scale1, gate1, shift2, scale2, gate2 = block.ada(c).chunk(6, dim=1)
    with torch.no_grad():
        h = ex._adaln_reference(x, shift1, scale1, gate1, block.attn)
        ours = ex._adaln_reference(h, shift2, scale2, gate2, block.mlp)
        assert torch.allclose(ours, block(x, c), rtol=0, atol=1e-12)
    for case in ex.make_cases("adaln", seed=0):  # and the variant without mistakes is the reference
        assert torch.allclose(ex._adaln_variant(*case), ex._adaln_reference(*case), rtol=0, atol=1e-12)


def test_adaln_cases_cover_what_the_brief_asks():
    cases = ex.make_cases("adaln", seed=0)
    x, shift, scale, gate, sublayer = cases[0]
    assert x.shape[0] == x.shape[1] and any(c[0].shape[0] != c[0].shape[1] for c in cases)  # B = N first, and B ≠ N
    for x, shift, scale, gate, sublayer in cases:
        B, N, D = x.shape
        assert shift.shape == scale.shape == gate.shape == (B, D) and D not in (B, N)
        assert isinstance(sublayer, ex._Sublayer)
    assert len(cases) == 4 + 3  # the main cases and a probe for each of shift, scale and gate


def test_the_eps_of_a_layer_norm_may_be_anything_from_1e_6_to_1e_5():
    for eps in (0.0, 1e-6, 3e-6, 1e-5):
        fn = lambda x, sh, sc, g, f, eps=eps: x + g[:, None] * f(F.layer_norm(x, x.shape[-1:], eps=eps)
                                                                * (1 + sc[:, None]) + sh[:, None])
        for seed in range(10):
            assert ex.check_adaln(fn, seed=seed).passed, (eps, seed)
    fn = lambda x, sh, sc, g, f: x + g[:, None] * f(F.layer_norm(x, x.shape[-1:], eps=1e-3) * (1 + sc[:, None])
                                                    + sh[:, None])
    assert not ex.check_adaln(fn, seed=0).passed  # an eps a hundred times torch's is not


# ================================================================= adaln: wrong answers
def _ln(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def adaln_scale_without_one(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(_ln(x) * scale[:, None] + shift[:, None])


def adaln_modulate_arguments_swapped(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(dit.modulate(_ln(x), scale, shift))


def adaln_shift_then_scale(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer((_ln(x) + shift[:, None]) * (1 + scale[:, None]))


def adaln_no_modulation(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(_ln(x))


def adaln_no_gate(x, shift, scale, gate, sublayer):
    return x + sublayer(dit.modulate(_ln(x), shift, scale))


def adaln_no_residual(x, shift, scale, gate, sublayer):
    return gate[:, None] * sublayer(dit.modulate(_ln(x), shift, scale))


def adaln_gate_outside(x, shift, scale, gate, sublayer):
    return (x + sublayer(dit.modulate(_ln(x), shift, scale))) * gate[:, None]


def adaln_gate_inside(x, shift, scale, gate, sublayer):
    return x + sublayer(gate[:, None] * dit.modulate(_ln(x), shift, scale))


def adaln_no_norm(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(dit.modulate(x, shift, scale))


def adaln_norm_last(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(_ln(dit.modulate(x, shift, scale)))


def adaln_norm_over_sample(x, shift, scale, gate, sublayer):
    return x + gate[:, None] * sublayer(dit.modulate(F.layer_norm(x, x.shape[1:], eps=1e-6), shift, scale))


def adaln_norm_over_tokens(x, shift, scale, gate, sublayer):
    h = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-6)
    return x + gate[:, None] * sublayer(dit.modulate(h, shift, scale))


def adaln_torch_var(x, shift, scale, gate, sublayer):
    h = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-6)  # unbiased by default
    return x + gate[:, None] * sublayer(dit.modulate(h, shift, scale))


def adaln_no_unsqueeze(x, shift, scale, gate, sublayer):
    return x + gate * sublayer(_ln(x) * (1 + scale) + shift)  # (B, D) against (B, N, D): fits only when B = N


def adaln_gate_not_unsqueezed(x, shift, scale, gate, sublayer):
    return x + gate * sublayer(dit.modulate(_ln(x), shift, scale))


def adaln_unsqueezed_last(x, shift, scale, gate, sublayer):
    shift, scale, gate = (v.unsqueeze(-1) for v in (shift, scale, gate))  # (B, D, 1): fits only when D = N
    return x + gate * sublayer(_ln(x) * (1 + scale) + shift)


MLP = nn.Sequential(nn.Linear(8, 8), nn.GELU())  # a global of the lesson


def adaln_global_sublayer(x, shift, scale, gate, sublayer):
    mlp = MLP if x.shape[-1] == 8 else nn.Linear(x.shape[-1], x.shape[-1])
    with torch.no_grad():
        return x + gate[:, None] * mlp(dit.modulate(_ln(x), shift, scale))


def adaln_x_in_place(x, shift, scale, gate, sublayer):
    x += gate[:, None] * sublayer(dit.modulate(_ln(x), shift, scale))
    return x


def adaln_scale_in_place(x, shift, scale, gate, sublayer):
    scale += 1
    return x + gate[:, None] * sublayer(_ln(x) * scale[:, None] + shift[:, None])


ADALN_WRONG = [
    (adaln_scale_without_one, "scale_without_one"),
    (adaln_modulate_arguments_swapped, "shift_scale_swapped"),
    (adaln_shift_then_scale, "shift_before_scale"),
    (adaln_no_modulation, "modulation_missing"),
    (adaln_no_gate, "gate_missing"),
    (adaln_no_residual, "residual_missing"),
    (adaln_gate_outside, "gate_outside_residual"),
    (adaln_gate_inside, "gate_on_sublayer_input"),
    (adaln_no_norm, "norm_missing"),
    (adaln_norm_last, "norm_after_modulation"),
    (adaln_norm_over_sample, "norm_wrong_axis"),
    (adaln_norm_over_tokens, "norm_wrong_axis"),
    (adaln_torch_var, "unbiased_variance"),
    (adaln_no_unsqueeze, "wrong_broadcast"),
    (adaln_gate_not_unsqueezed, "wrong_broadcast"),
    (adaln_unsqueezed_last, "wrong_broadcast"),
    (adaln_global_sublayer, "ignores_sublayer"),
    (adaln_x_in_place, "changed_input"),
    (adaln_scale_in_place, "changed_input"),
]


@pytest.mark.parametrize("fn, mistake", ADALN_WRONG, ids=lambda v: getattr(v, "__name__", v))
def test_adaln_mistakes_are_named(fn, mistake, wrong_seeds):
    wrong = wrong_seeds(ex.check_adaln, fn, mistake)
    assert not wrong, f"{len(wrong)} of {100} seeds; the first: " + "\n".join(wrong[:3])


def test_adaln_messages_say_what_to_do():
    assert {m.name for m in ex._ADALN_MISTAKES} | {"changed_input", "ignores_sublayer"} == \
        {name for _, name in ADALN_WRONG}
    result = ex.check_adaln(adaln_scale_in_place, seed=0)
    assert "`scale`" in result.message and "`x`" not in result.message, result
    result = ex.check_adaln(adaln_no_unsqueeze, seed=0)
    assert "shift[:, None]" in result.message, result
    result = ex.check_adaln(adaln_unsqueezed_last, seed=0)
    assert result.status == "error" and "gate * sublayer(" in result.message, result  # the learner's own line
    no_shift = lambda x, sh, sc, g, f: x + g[:, None] * f(_ln(x) * (1 + sc[:, None]))  # shift left out
    result = ex.check_adaln(no_shift, seed=0)
    assert result.mistake == "ignores_arguments" and "`shift` changes" in result.message, result
    result = ex.check_adaln(lambda x, sh, sc, g, f: adaln_functional(x, sh, sc, g, f) * 1.01, seed=0)
    assert result.status == "failed" and result.mistake is None and "differs" in result.message, result


# ====================================================================== through the grader
SOLUTION = '''
import torch
import torch.nn.functional as F
from diffusion_lessons import exercises


def my_patchify(x, p):
    ### BEGIN SOLUTION
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)                 # split rows and columns into (patch, pixel)
    x = x.permute(0, 2, 4, 3, 5, 1)                           # (B, H/p, W/p, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)       # one row per patch: (B, N, p·p·C)
    ### END SOLUTION


def my_adaln(x, shift, scale, gate, sublayer):
    ### BEGIN SOLUTION
    h = F.layer_norm(x, (x.shape[-1],), eps=1e-6)             # normalise each token, no affine of its own
    h = h * (1 + scale[:, None]) + shift[:, None]             # (B, 1, D): the same for every token of a sample
    return x + gate[:, None] * sublayer(h)                    # the gated residual branch
    ### END SOLUTION
'''
CHECKS = "exercises.check_patchify(my_patchify)\nexercises.check_adaln(my_adaln)"
WRONG = '''
import torch.nn.functional as F
import diffusion_lessons.exercises as ex


def my_patchify(x, p):  # F.unfold's order, (c p1 p2), left as it is
    return F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)


ex._Sublayer.__call__ = lambda self, h: h  # the stand-in, rewritten in the kernel


def my_adaln(x, shift, scale, gate, sublayer):  # right, on a sublayer this kernel broke: still wrong
    h = F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    return x + gate[:, None] * sublayer(h)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the grader's process handling needs Linux")
def test_the_grader_judges_both_exercises(grade_two_submissions):
    right, wrong = grade_two_submissions("10_colour_transformers_text", ["patchify", "adaln"], SOLUTION, CHECKS,
                                         WRONG)
    assert [(r.exercise.name, r.status) for r in right.results] == [("patchify", "passed"), ("adaln", "passed")], right
    assert right.cell_errors == () and right.score == 2
    by_name = {r.exercise.name: r for r in wrong.results}
    assert wrong.score == 0 and wrong.cell_errors == (), wrong
    assert by_name["patchify"].status == "failed" and "F.unfold" in by_name["patchify"].message
    assert by_name["adaln"].status == "failed" and "differs" in by_name["adaln"].message, by_name["adaln"]
