import math

import pytest
import torch

from diffusion_lessons.unet import MLPDenoiser, UNet, UNetConfig, count_parameters, sinusoidal_embedding

MNIST = UNetConfig()  # the lesson's model
SMALL = UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(14,), dropout=0.0)
CIFAR = UNetConfig(in_channels=3, image_size=32, base_channels=128, channel_mults=(1, 2, 2, 2),
                   attention_resolutions=(16,), attention_heads=1, norm_groups=32)  # Ho et al.'s CIFAR-10 model
RGB_SMALL = UNetConfig(in_channels=3, image_size=32, base_channels=16, channel_mults=(1, 2, 2),
                       attention_resolutions=(8,), num_classes=5)


@pytest.mark.parametrize("config", [MNIST, SMALL, RGB_SMALL], ids=["mnist", "small", "rgb32-cond"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_is_shaped_like_the_input(config, dtype):
    model = UNet(config).to(dtype)
    x = torch.randn(3, config.in_channels, config.image_size, config.image_size, dtype=dtype)
    t = torch.tensor([0, 500, 999])
    out = model(x, t)
    assert out.shape == x.shape and out.dtype == dtype
    if config.num_classes:
        assert model(x, t, torch.tensor([0, 4, model.null_label])).shape == x.shape


def test_cifar_config_matches_ho_et_al_size():
    assert count_parameters(UNet(CIFAR)) == pytest.approx(35.7e6, rel=0.01)


def test_initial_output_is_zero_so_the_loss_starts_at_one():
    model = UNet(SMALL)
    assert model(torch.randn(2, 1, 28, 28), torch.tensor([3, 4])).abs().max().item() == 0.0


def test_time_changes_the_output_and_labels_do_too():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(), num_classes=3,
                            dropout=0.0))
    for p in model.parameters():  # leave the zero initialisation so the output depends on everything
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 1, 28, 28).expand(2, -1, -1, -1)
    out = model(x, torch.tensor([10, 900]))
    assert not torch.allclose(out[0], out[1])
    out = model(x, torch.tensor([10, 10]), torch.tensor([0, 2]))
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(model(x[:1], torch.tensor([10])), model(x[:1], torch.tensor([10]),
                                                                        torch.tensor([model.null_label])))


def test_skip_connections_carry_fine_detail():
    """Gradients reach the input pixel by pixel through the skips: the output at a pixel depends most on
    the input near it, which a bottleneck alone (7x7 here) could not give."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 2), attention_resolutions=(), dropout=0.0))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 1, 28, 28, requires_grad=True)
    model(x, torch.tensor([100]))[0, 0, 5, 5].backward()
    g = x.grad[0, 0].abs()
    assert g[3:8, 3:8].mean() > 3 * g[15:, 15:].mean()


def test_sinusoidal_embedding_properties():
    t = torch.arange(0, 1000)
    e = sinusoidal_embedding(t, 64)
    assert e.shape == (1000, 64) and e.abs().max() <= 1.0
    torch.testing.assert_close(e.norm(dim=1), torch.full((1000,), math.sqrt(32)))  # sin² + cos² per frequency
    # the inner product depends only on the distance between steps
    torch.testing.assert_close(e[10] @ e[30], e[500] @ e[520], rtol=1e-4, atol=1e-4)
    # nearby steps are more alike than distant ones
    assert e[100] @ e[101] > e[100] @ e[200]
    assert len(torch.unique(e, dim=0)) == 1000
    with pytest.raises(ValueError, match="dim must be even"):
        sinusoidal_embedding(t, 7)


def test_mlp_denoiser_shapes():
    model = MLPDenoiser()
    assert model(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
    assert model(torch.randn(5, 2), 3).shape == (5, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"in_channels": 2}, "in_channels must be 1 or 3"),
    ({"image_size": 30, "channel_mults": (1, 2, 2)}, "image_size must be halvable 2 times"),
    ({"base_channels": 12, "norm_groups": 8}, "norm_groups"),
    ({"num_classes": 0}, "num_classes must be None or >= 1"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)


def test_bad_forward_inputs():
    model = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(), num_classes=10))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\), got \(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28), t)
    with pytest.raises(ValueError, match="x must be square with a size divisible by 2"):
        model(torch.randn(2, 1, 27, 27), t)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(x, torch.tensor([1]))
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 9\] \(or 10 for no label\), got 11"):
        model(x, t, torch.tensor([3, 11]))
    with pytest.raises(ValueError, match=r"y must hold labels"):
        model(x, t, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="the model is unconditional"):
        UNet(SMALL)(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="attention_heads"):
        UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention_resolutions=(14,), attention_heads=3))


def test_attention_is_softmax_attention_over_pixels_per_head():
    """The einops layouts and SDPA compute softmax(QKᵀ/√d)V per head, written out by hand here."""
    from diffusion_lessons.unet import Attention

    torch.manual_seed(0)
    attn = Attention(32, heads=4, groups=8)
    torch.nn.init.normal_(attn.proj.weight)  # zero-initialised: make the block do something
    x = torch.randn(2, 32, 5, 6)
    qkv = attn.qkv(attn.norm(x)).flatten(2)  # (B, 3C, HW), channels ordered (three, heads, d)
    q, k, v = qkv.reshape(2, 3, 4, 8, 30).unbind(1)  # each (B, heads, d, HW)
    weights = torch.softmax(q.transpose(-1, -2) @ k / 8**0.5, dim=-1)  # (B, heads, HW, HW)
    out = (v @ weights.transpose(-1, -2)).reshape(2, 32, 5, 6)  # (B, C, H, W)
    torch.testing.assert_close(attn(x), x + attn.proj(out), rtol=1e-4, atol=1e-5)


def test_count_parameters_counts_frozen_models_unless_asked_for_trainable_only():
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=()))
    total = sum(p.numel() for p in model.parameters())
    model.requires_grad_(False)
    assert count_parameters(model) == total > 0
    assert count_parameters(model, trainable_only=True) == 0
    next(model.parameters()).requires_grad_(True)  # one tensor thawed
    assert 0 < count_parameters(model, trainable_only=True) < total
