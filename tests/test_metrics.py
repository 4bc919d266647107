import itertools

import pytest
import torch

from diffusion_lessons import metrics
from diffusion_lessons.data import mnist5k


@pytest.fixture(scope="module")
def test_digits():
    return mnist5k(split="test")  # (1000, 1, 28, 28), (1000,): never seen by the classifier


def test_shipped_classifier_loads_offline_and_scores_its_card(test_digits):
    data = torch.load(metrics.CLASSIFIER_PATH, map_location="cpu", weights_only=True)
    assert {"model_config", "state_dict", "card"} <= set(data)
    assert metrics.CLASSIFIER_PATH.stat().st_size < 1_000_000  # a few hundred KB
    net = metrics.classifier()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert metrics.classifier() is net  # loaded once
    card = net.card
    for key in ("command", "machine", "wall_time_s", "test_accuracy"):
        assert card[key], key
    images, labels = test_digits
    accuracy = metrics.label_agreement(images, labels)  # a real measurement on the held-out digits
    assert accuracy >= card["test_accuracy"] - 0.003
    assert accuracy >= 0.97


def test_label_agreement_of_shuffled_labels_is_chance(test_digits, gen):
    images, labels = test_digits
    shuffled = labels[torch.randperm(len(labels), generator=gen)][::2]
    assert abs(metrics.label_agreement(images[::2], shuffled) - 0.1) < 0.04


def test_features_and_classify_shapes(test_digits):
    images = test_digits[0]
    f = metrics.features(images[:40], batch_size=16)
    assert f.shape == (40, metrics.classifier().num_features) and f.dtype == torch.float32
    torch.testing.assert_close(f, metrics.features(images[:40]))  # batching does not change features
    pred = metrics.classify(images[:40])
    assert pred.shape == (40,) and pred.dtype == torch.long and 0 <= pred.min() and pred.max() <= 9


def test_reference_images_are_the_test_split(test_digits):
    ref = metrics.reference_images()
    assert ref.shape == (1000, 1, 28, 28)
    torch.testing.assert_close(ref, test_digits[0])


def test_frechet_distance_of_a_set_with_itself_is_zero(test_digits):
    images = test_digits[0][::3]
    assert metrics.frechet_distance(images, images) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_noise(test_digits, gen):
    real = test_digits[0][::3]  # 334 digits, 33 or 34 of each
    eps = torch.randn(real.shape, generator=gen)
    sigmas = [0.0, 0.1, 0.2, 0.4, 0.8]
    fd = [metrics.frechet_distance(real, (real + sigma * eps).clamp(-1, 1)) for sigma in sigmas]
    assert fd[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in itertools.pairwise(fd)), fd


def test_disjoint_real_halves_are_close_compared_with_noise(test_digits, gen):
    images = test_digits[0]
    a, b = images[0::2], images[1::2]  # two disjoint halves, 50 of each digit in each
    noise = torch.rand(a.shape, generator=gen) * 2 - 1
    real_vs_real = metrics.frechet_distance(a, b)
    real_vs_noise = metrics.frechet_distance(a, noise)
    assert 0 < real_vs_real < 0.05 * real_vs_noise, (real_vs_real, real_vs_noise)


def test_frechet_distance_is_symmetric(test_digits):
    a, b = test_digits[0][:250], test_digits[0][250:550]
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)


GOOD = torch.zeros(4, 1, 28, 28) - 1.0


@pytest.mark.parametrize(("images", "message"), [
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), "images must be a float tensor"),
    (torch.zeros(4, 28, 28), r"images must have shape \(N, 1, 28, 28\).*unsqueeze"),
    (torch.zeros(4, 3, 28, 28), "images must have shape"),
    (torch.zeros(4, 1, 32, 32), "images must have shape"),
    (torch.zeros(0, 1, 28, 28), "images is empty"),
    (torch.full((4, 1, 28, 28), 255.0), r"images must lie in \[-1, 1\].*127.5"),
    (torch.full((4, 1, 28, 28), float("nan")), "images has NaN"),
    (GOOD.numpy(), "images must be a torch.Tensor"),
])
def test_bad_images_are_named(images, message):
    with pytest.raises(ValueError, match=message):
        metrics.features(images)
    with pytest.raises(ValueError, match=message):
        metrics.classify(images)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="real must have at least 2 images"):
        metrics.frechet_distance(GOOD[:1], GOOD)
    with pytest.raises(ValueError, match="fake must have shape"):
        metrics.frechet_distance(GOOD, GOOD[:, 0])
    with pytest.raises(ValueError, match=r"fake must lie in \[-1, 1\]"):
        metrics.frechet_distance(GOOD, GOOD + 255)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        metrics.label_agreement(GOOD, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be integers"):
        metrics.label_agreement(GOOD, torch.zeros(4))
    with pytest.raises(ValueError, match=r"labels must be digits in \[0, 9\]"):
        metrics.label_agreement(GOOD, torch.full((4,), 10))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        metrics.features(GOOD, batch_size=0)


def test_warnings_for_few_samples_and_0_1_images(test_digits):
    images = test_digits[0]
    with pytest.warns(UserWarning, match="fake has 20 images, no more than the 32 feature dimensions"):
        metrics.frechet_distance(images[:200], images[200:220])
    with pytest.warns(UserWarning, match=r"images has no value below 0.*\[0, 1\]"):
        metrics.features((images[:8] + 1) / 2)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """Train on 64 digits and test on 32: the training code runs, in a fraction of a second."""
    full = {split: mnist5k(split=split) for split in ("train", "test")}
    monkeypatch.setattr(metrics, "mnist5k", lambda split: tuple(t[::100 if split == "train" else 31]
                                                                  for t in full[split]))


def test_train_classifier_is_repeatable_and_saves_atomically(tiny_mnist, tmp_path):
    state = torch.get_rng_state()
    out = tmp_path / "weights" / "clf.pt"
    net, card = metrics.train_classifier(out, steps=3, batch_size=16, command="test", machine="here")
    torch.testing.assert_close(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert not net.training and card["steps"] == 3 and card["command"] == "test" and card["machine"] == "here"
    assert 0.0 <= card["test_accuracy"] <= 1.0 and card["wall_time_s"] >= 0
    assert [p.name for p in out.parent.iterdir()] == ["clf.pt"]  # no temporary file left behind
    data = torch.load(out, weights_only=True)
    again, _ = metrics.train_classifier(steps=3, batch_size=16)
    for key, value in data["state_dict"].items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)
    other, _ = metrics.train_classifier(steps=3, batch_size=16, seed=1)
    assert not torch.equal(other.head[1].weight, again.head[1].weight)


def test_train_classifier_rejects_bad_settings():
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        metrics.train_classifier(steps=0)
