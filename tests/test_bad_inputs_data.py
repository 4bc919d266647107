"""Bad inputs to the forward process, the data loaders and the denoisers (issue 11).

Every case asserts the exception type (ValueError: the CLI turns it into one line, never a
traceback) and that the message names the argument. The image tests write real files with
Pillow: a 16-bit PNG (mode "I;16"), 32-bit TIFFs, and a PNG over a lowered decompression-bomb
limit.
"""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lessons import data
from diffusion_lessons.noising import markov_chain, markov_step, q_posterior, q_sample
from diffusion_lessons.schedules import NoiseSchedule
from diffusion_lessons.unet import (
    MLPDenoiser,
    UNet,
    UNetConfig,
    count_parameters,
    parameter_table,
    shape_trace,
    sinusoidal_embedding,
)

S = NoiseSchedule.linear(T=1000)
X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
E = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
U8 = ((X.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)  # the same images as uint8 in [0, 255]
P = torch.randn(5, 2)
FLOAT = "must be a floating-point tensor"

# ----------------------------------------------------------------------------- noising
NOISING = [
    ("q_sample uint8 x0", lambda: q_sample(U8, 500, S, E), rf"x0 {FLOAT}.*uint8"),
    ("q_sample uint8 x0, noise drawn", lambda: q_sample(U8, 500, S), rf"x0 {FLOAT}.*uint8"),
    ("q_sample int64 x0", lambda: q_sample(U8.long(), 10, S, E), rf"x0 {FLOAT}.*int64"),
    ("q_sample bool x0", lambda: q_sample(X > 0, 10, S, E), rf"x0 {FLOAT}.*bool"),
    ("q_sample complex x0", lambda: q_sample(X.to(torch.complex64), 10, S, E.to(torch.complex64)),
     rf"x0 {FLOAT}.*complex64"),
    ("q_sample float64 noise", lambda: q_sample(X, 10, S, E.double()),
     r"noise must have the same dtype as x \(torch.float32\), got torch.float64"),
    ("q_sample float32 noise, float64 x0", lambda: q_sample(X.double(), 10, S, E),
     r"noise must have the same dtype as x \(torch.float64\), got torch.float32"),
    ("q_sample int noise", lambda: q_sample(X, 10, S, E.long()), "noise must have the same dtype"),
    ("q_sample generator a seed", lambda: q_sample(X, 10, S, generator=0), "generator must be a torch.Generator"),
    ("markov_step uint8 x_prev", lambda: markov_step(U8, 3, S, E), rf"x_prev {FLOAT}.*uint8"),
    ("markov_step int x_prev, noise drawn", lambda: markov_step(U8.long(), 3, S), rf"x_prev {FLOAT}"),
    ("markov_step half noise", lambda: markov_step(X, 3, S, E.half()), r"noise must have the same dtype.*float16"),
    ("q_posterior uint8 x0", lambda: q_posterior(U8, X, 5, S), rf"x0 {FLOAT}.*uint8"),
    ("q_posterior uint8 x_t", lambda: q_posterior(X, U8, 5, S), rf"x_t {FLOAT}.*uint8"),
    ("q_posterior bool x_t", lambda: q_posterior(X, X > 0, 5, S), rf"x_t {FLOAT}.*bool"),
    ("q_posterior x0 a list", lambda: q_posterior(P.tolist(), P, 5, S), r"x0 must be a torch\.Tensor, got list"),
    ("q_posterior x_t a list", lambda: q_posterior(P, P.tolist(), 5, S), r"x_t must be a torch\.Tensor, got list"),
    ("markov_chain uint8 x0", lambda: markov_chain(U8, S, t_end=3), rf"x0 {FLOAT}.*uint8"),
    ("markov_chain callback", lambda: markov_chain(P, S, t_end=2, callback=1), "callback must be a function"),
    ("markov_chain t_end a vector", lambda: markov_chain(P, S, t_end=torch.arange(5)), r"t_end must be an int.*\(5,\)"),
    ("markov_chain generator a seed", lambda: markov_chain(P, S, t_end=2, generator=0),
     "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in NOISING], ids=[c[0] for c in NOISING])
def test_noising_refuses(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_integer_images_would_have_lost_the_signal():
    """Why integer x is refused: in the image's own dtype √ᾱ_t rounds to 0, so x_t would be noise alone."""
    alpha_bar = S.alpha_bars[500]
    assert 0 < alpha_bar < 1 and alpha_bar.sqrt().to(torch.uint8) == 0


def test_valid_dtypes_still_work_and_keep_their_dtype():
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x, e = X.to(dtype), E.to(dtype)
        assert q_sample(x, 10, S, e).dtype == dtype and markov_step(x, 10, S, e).dtype == dtype
        assert q_posterior(x, x, 10, S)[0].dtype == dtype
    # x0 and x_t of two float dtypes stay allowed (the sampler may hand a float64 x̂0 with a float32 x_t)
    assert q_posterior(X.double(), X, 10, S)[0].dtype == torch.float64


def test_checks_do_not_read_values_of_device_tensors():
    """On a GPU, reading a value stalls the pipeline; "meta" tensors have no values, so any read would raise."""
    x, e, t = (torch.zeros(3, 2, device="meta"), torch.zeros(3, 2, device="meta"),
               torch.tensor([1, 2, 3], device="meta"))
    assert q_sample(x, t, S, e).shape == (3, 2) and q_posterior(x, e, t, S)[0].shape == (3, 2)
    with pytest.raises(ValueError, match="noise must be on the same device as x"):
        q_sample(x, t, S, torch.zeros(3, 2))


# ------------------------------------------------------------------------------- data
DATA = [
    ("toy n=1", lambda: data.toy_2d("moons", n=1), r"n must be a positive integer of at least 2.*got 1"),
    ("toy n=1 mixture", lambda: data.toy_2d("gaussian_mixture", n=1), "n must be a positive integer of at least 2"),
    ("toy n=2.5", lambda: data.toy_2d("moons", n=2.5), "n must be a positive integer"),
    ("toy n=True", lambda: data.toy_2d("moons", n=True), "n must be a positive integer"),
    ("toy noise=nan", lambda: data.toy_2d("gaussian_mixture", noise=math.nan), r"noise must be >= 0 and finite.*nan"),
    ("toy noise=inf", lambda: data.toy_2d("swiss_roll", noise=math.inf), r"noise must be >= 0 and finite.*inf"),
    ("toy noise=-0.1", lambda: data.toy_2d("moons", noise=-0.1), "noise must be >= 0"),
    ("toy noise a string", lambda: data.toy_2d("moons", noise="0.1"), "noise must be >= 0 and finite"),
    ("toy noise=None", lambda: data.toy_2d("moons", noise=None), "noise must be >= 0 and finite"),
    ("toy noise=True", lambda: data.toy_2d("moons", noise=True), "noise must be >= 0 and finite"),
    ("toy seed=-1", lambda: data.toy_2d("moons", seed=-1), r"seed must be a non-negative integer.*-1"),
    ("toy seed=1.5", lambda: data.toy_2d("moons", seed=1.5), "seed must be a non-negative integer"),
    ("toy name a list", lambda: data.toy_2d(["moons"]), "name must be one of"),
    ("mnist5k digits=3", lambda: data.mnist5k(digits=3), r"digits must be a non-empty list.*got 3"),
    ("mnist5k split=None", lambda: data.mnist5k(split=None), "split must be one of"),
    ("mnist5k split a list", lambda: data.mnist5k(split=["train"]), "split must be one of"),
    ("digits digits=5", lambda: data.sklearn_digits(digits=5), "digits must be a non-empty list"),
    ("digits digits='3'", lambda: data.sklearn_digits(digits="3"), "digits must be a non-empty list"),
    ("digits digits=[3.0]", lambda: data.sklearn_digits(digits=[3.0]), "digits must be a non-empty list"),
    ("load name a list", lambda: data.load_dataset(["moons"]), "dataset name must be one of"),
    ("load moons, digits=", lambda: data.load_dataset("moons", digits=[1]),
     r"load_dataset\('moons'\) takes the keyword arguments \['n', 'noise', 'seed'\], got \['digits'\]"),
    ("load mnist5k, n=", lambda: data.load_dataset("mnist5k", n=10), r"takes the keyword arguments .*got \['n'\]"),
    ("unit lo == hi", lambda: data.to_unit_range(np.arange(3), 1.0, 1.0), "hi must be greater than lo"),
    ("unit hi < lo", lambda: data.to_unit_range(np.arange(3), 255.0, 0.0), "hi must be greater than lo"),
    ("unit hi = nan", lambda: data.to_unit_range(np.arange(3), 0.0, math.nan), "hi must be a finite real number"),
    ("unit lo a string", lambda: data.to_unit_range(np.arange(3), "0", 1.0), "lo must be a finite real number"),
    ("unit x strings", lambda: data.to_unit_range(["a", "b"], 0.0, 1.0), "x must hold real numbers"),
    ("folder path=None", lambda: data.image_folder(None), r"path must be a folder of images \(a str or"),
    ("folder path=3", lambda: data.image_folder(3), "path must be a folder of images"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in DATA], ids=[c[0] for c in DATA])
def test_data_refuses(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_valid_data_arguments_of_other_integer_types_are_accepted():
    torch.testing.assert_close(data.toy_2d("moons", n=np.int64(50), seed=np.int64(3)),
                               data.toy_2d("moons", n=50, seed=3), rtol=0, atol=0)
    _, y = data.sklearn_digits(digits=np.array([0, 9]))
    assert set(y.tolist()) == {0, 9}
    torch.testing.assert_close(data.to_unit_range(np.arange(3), torch.tensor(0.0), np.float64(2.0)),
                               torch.tensor([-1.0, 0.0, 1.0]))


def test_gaussian_mixture_warns_that_noise_zero_is_replaced():
    with pytest.warns(UserWarning, match="noise=0 .* uses noise=0.05 instead"):
        zero = data.toy_2d("gaussian_mixture", n=200, noise=0.0, seed=1)
    torch.testing.assert_close(zero, data.toy_2d("gaussian_mixture", n=200, noise=0.05, seed=1), rtol=0, atol=0)


def _ramp16() -> np.ndarray:
    return (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472: every 16-bit decade


def test_image_folder_scales_a_16_bit_png_by_65535(tmp_path):
    ramp = _ramp16()
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode == "I;16"  # a real 16-bit PNG, as Pillow writes it
    x = data.image_folder(tmp_path, image_size=32)  # same size: no resampling
    assert x.shape == (1, 3, 32, 32)
    want = torch.as_tensor(ramp / 65535 * 2 - 1, dtype=torch.float32)
    for channel in x[0]:  # grey becomes RGB: three equal channels
        torch.testing.assert_close(channel, want, rtol=0, atol=1e-5)


def test_16_bit_and_8_bit_versions_of_a_picture_agree(tmp_path):
    """The 16-bit image, read right, is its 8-bit version within two 8-bit steps (one for cutting
    16 bits to 8, one for rounding the 8-bit resize); read as 8-bit it was saturated (off by up to 2)."""
    ramp = _ramp16()
    (tmp_path / "16").mkdir(), (tmp_path / "8").mkdir()
    Image.fromarray(ramp).save(tmp_path / "16" / "a.png")
    Image.fromarray((ramp >> 8).astype(np.uint8)).save(tmp_path / "8" / "a.png")
    for size in (32, 12):
        x16, x8 = data.image_folder(tmp_path / "16", size), data.image_folder(tmp_path / "8", size)
        assert (x16 - x8).abs().max() <= 2 * (2 / 255)
        assert x16.min() >= -1 and x16.max() <= 1


def test_a_dark_16_bit_image_stays_dark(tmp_path):
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint16)).save(tmp_path / "dark.png")
    x = data.image_folder(tmp_path, image_size=8)
    torch.testing.assert_close(x, torch.full_like(x, 200 / 65535 * 2 - 1))


def test_8_bit_images_are_unchanged_next_to_a_16_bit_one(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    (tmp_path / "alone").mkdir(), (tmp_path / "mixed").mkdir()
    Image.fromarray(rgb).save(tmp_path / "alone" / "a.png")
    Image.fromarray(rgb).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(_ramp16()).save(tmp_path / "mixed" / "b16.png")
    alone, mixed = data.image_folder(tmp_path / "alone", 8), data.image_folder(tmp_path / "mixed", 8)
    assert torch.equal(mixed[0], alone[0])


@pytest.mark.parametrize("mode, dtype", [("F", np.float32), ("I", np.int32)])
def test_image_folder_refuses_32_bit_images_by_name(tmp_path, mode, dtype):
    Image.fromarray(np.linspace(0, 1000, 256).astype(dtype).reshape(16, 16)).save(tmp_path / "deep.tiff")
    assert Image.open(tmp_path / "deep.tiff").mode == mode
    with pytest.raises(ValueError, match=rf"could not be read as images: deep\.tiff \(32-bit .*mode '{mode}'"):
        data.image_folder(tmp_path)


@pytest.mark.parametrize("limit", [1000, 3000])  # 64x64 = 4096 pixels: over 2x the limit (Error), or 1x (Warning)
def test_image_folder_refuses_a_decompression_bomb_by_name(tmp_path, monkeypatch, limit):
    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    Image.new("L", (8, 8)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ValueError, match=r"big\.png is too large to decode safely \(a possible decompression bomb\)"):
        data.image_folder(tmp_path, image_size=8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert data.image_folder(tmp_path, image_size=8).shape == (2, 3, 8, 8)


def test_image_folder_names_empty_folders_and_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match=r"path must be a folder of images, but no images .* \(it is empty\)"):
        data.image_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"no images .* \(1 other files skipped\)"):
        data.image_folder(tmp_path)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "sub" / "bad.png").write_bytes(b"garbage")
    good = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(good).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:300])  # truncated
    with pytest.raises(ValueError, match=r"2 of 3 files in .* could not be read as images: .*cut\.png .*sub/bad\.png"):
        data.image_folder(tmp_path)


# ------------------------------------------------------------------------------- U-Net
def _config(**changes):
    base = dict(base_channels=16, channel_mults=(1, 2), attention_resolutions=(), dropout=0.0)
    return UNetConfig(**{**base, **changes})


CONFIGS = [
    ({"base_channels": 0}, r"base_channels must be a positive integer, got 0"),
    ({"base_channels": -8}, "base_channels must be a positive integer"),
    ({"base_channels": 16.0}, r"base_channels must be a positive integer, got 16\.0"),
    ({"base_channels": True}, "base_channels must be a positive integer, got True"),
    ({"base_channels": 9, "norm_groups": 3}, r"base_channels must be even.*got 9"),
    ({"base_channels": 12, "channel_mults": (2, 4)}, r"norm_groups \(8\) must divide .*got 12 at the stem"),
    ({"base_channels": 12, "channel_mults": (1, 2, 3)},
     r"norm_groups \(8\) .*got 12 at the stem \(base_channels\), 12 at level 0, 36 at level 2$"),
    ({"norm_groups": 0}, "norm_groups must be a positive integer, got 0"),
    ({"norm_groups": -8}, "norm_groups must be a positive integer"),
    ({"norm_groups": True}, "norm_groups must be a positive integer, got True"),
    ({"num_res_blocks": -1}, "num_res_blocks must be a positive integer"),
    ({"num_res_blocks": 0}, "num_res_blocks must be a positive integer"),
    ({"num_res_blocks": 1.5}, "num_res_blocks must be a positive integer"),
    ({"channel_mults": 2}, "channel_mults must be a tuple of positive integers, got 2"),
    ({"channel_mults": ()}, "channel_mults must name at least one level"),
    ({"channel_mults": (1, 0)}, r"channel_mults must be a tuple of positive integers, got \(1, 0\)"),
    ({"channel_mults": (1, -2)}, "channel_mults must be a tuple of positive integers"),
    ({"channel_mults": (1, 2.5)}, "channel_mults must be a tuple of positive integers"),
    ({"channel_mults": "12"}, "channel_mults must be a tuple of positive integers"),
    ({"num_classes": 0}, "num_classes must be None or >= 1"),
    ({"num_classes": 2.5}, r"num_classes must be None or >= 1.*2\.5"),
    ({"num_classes": True}, "num_classes must be None or >= 1.*True"),
    ({"num_classes": "10"}, "num_classes must be None or >= 1"),
    ({"attention_resolutions": (8,)}, r"attention_resolutions must be feature-map sizes of this U-Net, \(28, 14\)"),
    ({"attention_resolutions": 7}, "attention_resolutions must be a tuple of positive integers, got 7"),
    ({"attention_resolutions": (0,)}, "attention_resolutions must be a tuple of positive integers"),
    ({"attention_heads": 0}, "attention_heads must be a positive integer"),
    ({"attention_heads": 3}, r"attention_heads \(3\) must divide .*got 32 at the middle"),
    ({"attention_heads": 32, "attention_resolutions": (28,), "channel_mults": (1, 4)},
     r"attention_heads \(32\) .*got 16 at level 0"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ({"dropout": math.nan}, r"dropout must be in \[0, 1\), got nan"),
    ({"dropout": "0.1"}, r"dropout must be in \[0, 1\), got '0\.1'"),
    ({"dropout": True}, r"dropout must be in \[0, 1\), got True"),
    ({"image_size": 28.0}, r"image_size must be a positive integer, got 28\.0"),
    ({"image_size": -28}, "image_size must be a positive integer"),
    ({"image_size": 30, "channel_mults": (1, 2, 2)}, "image_size must be halvable 2 times"),
    ({"in_channels": True}, "in_channels must be 1 or 3, got True"),
    ({"in_channels": 3.0}, "in_channels must be 1 or 3"),
    ({"in_channels": 2}, "in_channels must be 1 or 3"),
]


@pytest.mark.parametrize("changes, message", CONFIGS, ids=[str(c[0]) for c in CONFIGS])
def test_unet_config_refuses(changes, message):
    with pytest.raises(ValueError, match=message):
        _config(**changes)


def test_unet_config_accepts_lists_and_numpy_ints_as_saved_configs_hold_them():
    config = UNetConfig(channel_mults=[1, 2, 4], attention_resolutions=[7], base_channels=np.int64(16),
                        num_res_blocks=1, num_classes=np.int64(10))
    assert config.channel_mults == (1, 2, 4) and config.attention_resolutions == (7,)
    assert type(config.base_channels) is int and type(config.num_classes) is int  # JSON-serialisable again
    assert UNetConfig(num_classes=1).num_classes == 1  # one class + "no label": allowed (guidance is then moot)


COND = UNet(_config(num_classes=10)).eval()
PLAIN = UNet(_config()).eval()
MLP = MLPDenoiser().eval()
XI, TI = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])

FORWARD = [
    ("x uint8", lambda: COND(XI.to(torch.uint8), TI), r"x must have dtype torch.float32, the dtype of the U-Net"),
    ("x float64", lambda: COND(XI.double(), TI), r"x must have dtype torch.float32.*got torch.float64"),
    ("x a list", lambda: COND(XI.tolist(), TI), r"x must be a torch\.Tensor of shape \(B, 1, H, W\), got list"),
    ("x 3 channels", lambda: COND(torch.randn(2, 3, 28, 28), TI), r"x must have shape \(B, 1, H, W\)"),
    ("x not square", lambda: COND(torch.randn(2, 1, 28, 16), TI), "x must be square"),
    ("t=True", lambda: COND(XI, True), r"t must be an int or a tensor of shape \(2,\), got bool"),
    ("t a list", lambda: COND(XI, [1, 2]), "t must be an int or a tensor.*got list"),
    ("t a float", lambda: COND(XI, 3.5), "t must be an int or a tensor.*got float"),
    ("t shape (1,)", lambda: COND(XI, torch.tensor([1])), r"t must have shape \(2,\), got \(1,\)"),
    ("t shape ()", lambda: COND(XI, torch.tensor(1)), r"t must have shape \(2,\), got \(\)"),
    ("t bool", lambda: COND(XI, torch.tensor([True, False])), "t must hold steps.*torch.bool"),
    ("t complex", lambda: COND(XI, torch.tensor([1, 2], dtype=torch.complex64)), "t must hold steps.*complex64"),
    ("y float", lambda: COND(XI, TI, torch.tensor([1.0, 2.0])), r"y must hold integer labels.*float32"),
    ("y bool", lambda: COND(XI, TI, torch.tensor([True, False])), r"y must hold integer labels.*bool"),
    ("y a list", lambda: COND(XI, TI, [1, 2]), "y must be a LongTensor of labels.*got list"),
    ("y = 11", lambda: COND(XI, TI, torch.tensor([1, 11])), r"y must hold labels in \[0, 9\].*got 11"),
    ("y = -1", lambda: COND(XI, TI, torch.tensor([-1, 1])), r"y must hold labels in \[0, 9\].*got -1"),
    ("y shape (1,)", lambda: COND(XI, TI, torch.tensor([1])), r"y must have shape \(2,\)"),
    ("y, unconditional", lambda: PLAIN(XI, TI, torch.tensor([1, 2])),
     r"y was given but the model is unconditional \(num_classes=None\).*UNetConfig\(num_classes=...\)"),
    ("config a dict", lambda: UNet({"base_channels": 16}), "config must be a UNetConfig"),
    ("mlp x (B, 3)", lambda: MLP(torch.randn(5, 3), 3), r"x must be a tensor of shape \(B, 2\), got shape \(5, 3\)"),
    ("mlp x 1-d", lambda: MLP(torch.randn(5), 3), r"x must be a tensor of shape \(B, 2\)"),
    ("mlp x int", lambda: MLP(torch.ones(5, 2, dtype=torch.long), 3), "x must have dtype torch.float32.*int64"),
    ("mlp x float64", lambda: MLP(P.double(), 3), "x must have dtype torch.float32.*MLPDenoiser.*float64"),
    ("mlp t (1,)", lambda: MLP(P, torch.tensor([3])), r"t must have shape \(5,\), got \(1,\)"),
    ("mlp t (3,)", lambda: MLP(P, torch.arange(3)), r"t must have shape \(5,\)"),
    ("mlp t=True", lambda: MLP(P, True), "t must be an int or a tensor.*got bool"),
    ("mlp y", lambda: MLP(P, 3, torch.zeros(5, dtype=torch.long)), "y was given but MLPDenoiser is unconditional"),
    ("mlp depth=-1", lambda: MLPDenoiser(depth=-1), "depth must be an integer >= 0"),
    ("mlp emb_dim=63", lambda: MLPDenoiser(emb_dim=63), "emb_dim must be even"),
    ("mlp hidden=0", lambda: MLPDenoiser(hidden=0), "hidden must be a positive integer"),
    ("mlp dim=2.0", lambda: MLPDenoiser(dim=2.0), "dim must be a positive integer"),
    ("embedding t 0-d", lambda: sinusoidal_embedding(torch.tensor(3), 8), r"t must be a 1-d tensor.*\(\)"),
    ("embedding t (B, 1)", lambda: sinusoidal_embedding(torch.arange(4)[:, None], 8), r"t must be a 1-d.*\(4, 1\)"),
    ("embedding dim=0", lambda: sinusoidal_embedding(torch.arange(4), 0), "dim must be even"),
    ("embedding dim=8.0", lambda: sinusoidal_embedding(torch.arange(4), 8.0), "dim must be even"),
    ("embedding max_period=0", lambda: sinusoidal_embedding(torch.arange(4), 8, 0), "max_period must be"),
    ("shape_trace an MLP", lambda: shape_trace(MLP, P, TI), "model must be a UNet, got MLPDenoiser"),
    ("parameter_table an MLP", lambda: parameter_table(MLP), "model must be a UNet"),
    ("count_parameters a string", lambda: count_parameters("unet"), "module must be a torch.nn.Module"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in FORWARD], ids=[c[0] for c in FORWARD])
def test_denoisers_refuse(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_valid_forward_inputs_still_work():
    out = COND(XI, TI, torch.tensor([0, 10], dtype=torch.int32))  # int32 labels; 10 is "no label"
    assert out.shape == XI.shape
    int16 = torch.tensor([3, 4], dtype=torch.int16)  # nn.Embedding takes int32/int64 only: converted
    torch.testing.assert_close(COND(XI, TI, int16), COND(XI, TI, int16.long()), rtol=0, atol=0)
    assert PLAIN(XI, TI.float() + 0.5).shape == XI.shape  # continuous t is allowed: the embedding is continuous
    assert MLP(P, 3).shape == (5, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast the dtypes may differ: autocast casts
        assert PLAIN(XI.bfloat16(), TI).shape == XI.shape
    assert UNet(_config()).double()(XI.double(), TI).dtype == torch.float64


def test_forward_checks_do_not_read_values_of_device_tensors():
    """Labels are range-checked on the CPU only; elsewhere a read would stall (and on "meta" it would raise)."""
    model = UNet(_config(num_classes=10)).to("meta")
    x, t = torch.zeros(2, 1, 28, 28, device="meta"), torch.tensor([1, 2], device="meta")
    assert model(x, t, torch.tensor([1, 12], device="meta")).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="t must be on x's device"):
        model(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="y must be on x's device"):
        model(x, t, torch.tensor([1, 2]))
