"""The transformer denoiser (dit.py) and its text encoder (text.py): shapes, properties, training, round trips."""

import pytest
import torch
from einops import rearrange

import diffusion_lessons as dl
from diffusion_lessons.dit import DiT, DiTBlock, DiTConfig, modulate, patchify, position_embedding, unpatchify
from diffusion_lessons.pretrained import export_pretrained, pretrained
from diffusion_lessons.sampling import ddim_sample
from diffusion_lessons.text import PAD, UNKNOWN, TextEncoder, build_vocabulary, split_words, tokenize
from diffusion_lessons.training import diffusion_loss, load_checkpoint

SMALL = dict(image_size=8, in_channels=3, patch_size=2, hidden_size=32, depth=2, heads=4)
WORDS = ("red", "apple", "cat", "face", "green", "heart")


@pytest.mark.parametrize("p", [1, 2, 4])
def test_patchify_round_trips_and_each_token_is_one_patch(p, gen):
    x = torch.randn(2, 3, 8, 8, generator=gen)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (8 // p) ** 2, p * p * 3)
    assert torch.equal(unpatchify(tokens, p, 3), x)
    # token k = the patch at row k // (8/p), column k % (8/p), its pixels (row, column, channel)
    k = (8 // p) + 1  # row 1, column 1
    patch = x[:, :, p:2 * p, p:2 * p]  # (2, 3, p, p)
    assert torch.equal(tokens[:, k], rearrange(patch, "b c h w -> b (h w c)"))


def test_modulate_is_identity_at_zero_and_per_sample(gen):
    x = torch.randn(3, 5, 4, generator=gen)
    zero = torch.zeros(3, 4)
    assert torch.equal(modulate(x, zero, zero), x)
    shift, scale = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    out = modulate(x, shift, scale)
    for b in range(3):  # the same shift and scale for every token of sample b
        assert torch.allclose(out[b], x[b] * (1 + scale[b]) + shift[b])


def test_position_embedding_gives_every_patch_its_own_code():
    pos = position_embedding(4, 16)
    assert pos.shape == (16, 16)
    assert torch.cdist(pos, pos).add(torch.eye(16) * 1e3).min() > 0.1  # all distinct


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_is_shaped_like_the_input_and_zero_at_init(dtype, gen):
    model = DiT(DiTConfig(**SMALL, num_classes=3)).to(dtype)
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=dtype)
    out = model(x, torch.tensor([0, 10, 500, 999]), torch.tensor([0, 1, 2, 3]))
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero and a zero final layer: ε̂ = 0, loss starts at 1


def test_blocks_start_as_the_identity(gen):
    block = DiTBlock(16, 4, 4.0)
    x, c = torch.randn(2, 5, 16, generator=gen), torch.randn(2, 16, generator=gen)
    assert torch.equal(block(x, c), x)


def test_time_labels_and_captions_change_the_output_after_training_begins(gen):
    for kwargs, y in ((dict(num_classes=3), torch.tensor([0, 1])), (dict(words=WORDS), None)):
        model = DiT(DiTConfig(**SMALL, **kwargs))
        for p in model.parameters():  # move every weight off zero, as training does
            p.data.add_(torch.randn(p.shape, generator=gen) * 0.05)
        if y is None:
            y = model.tokenize(["red apple", "green heart"])
        x = torch.randn(2, 3, 8, 8, generator=gen)
        base = model(x, torch.tensor([5, 5]), y)
        assert not torch.allclose(base, model(x, torch.tensor([600, 600]), y))
        assert not torch.allclose(base, model(x, torch.tensor([5, 5]), y.flip(0)))
        assert not torch.allclose(base, model(x, torch.tensor([5, 5])))  # no y: "no label" / the empty caption


def test_no_caption_is_the_all_padding_caption(gen):
    model = DiT(DiTConfig(**SMALL, words=WORDS))
    for p in model.parameters():
        p.data.add_(torch.randn(p.shape, generator=gen) * 0.05)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    empty = torch.full((2, model.config.caption_length), model.null_label)
    assert model.null_label == PAD
    assert torch.allclose(model(x, 7), model(x, 7, empty))
    assert torch.allclose(model(x, 7), model(x, 7, model.tokenize(["", ""])))


def test_tokenizer_words_unknowns_padding_and_cut():
    assert split_words("Smiling face with heart-eyes!") == ["smiling", "face", "with", "heart", "eyes"]
    words = build_vocabulary(["red apple", "red heart", "cat face"])
    assert words[0] == "red"  # most frequent first
    ids = tokenize(["red apple", "purple apple", "red red red red"], words, length=3)
    assert ids.shape == (3, 3) and ids.dtype == torch.long
    assert ids[0].tolist() == [2, words.index("apple") + 2, PAD]
    assert ids[1, 0] == UNKNOWN
    assert ids[2].tolist() == [2, 2, 2]  # cut at length
    model = DiT(DiTConfig(**SMALL, words=words))
    assert model.unknown_words("a purple apple") == ["a", "purple"]


def test_text_encoder_ignores_padding(gen):
    enc = TextEncoder(10, 6, 16, depth=2)
    a = torch.tensor([[3, 4, 0, 0, 0, 0]])
    b = torch.tensor([[3, 4, 0, 0, 0, 0]])
    assert torch.allclose(enc(a), enc(b))
    with torch.no_grad():  # changing the padding's embedding cannot change a caption's vector
        enc.embed.weight[0] += 5.0
    assert torch.allclose(enc(a), enc(b), atol=1e-6)
    assert enc(torch.zeros(2, 6, dtype=torch.long)).isfinite().all()  # the empty caption has its start token


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch_size=3), "multiple of patch_size"),
    (dict(hidden_size=30), "divisible by heads"),
    (dict(depth=0), "depth must be a positive integer"),
    (dict(num_classes=0), "num_classes"),
    (dict(words=("red", "Apple")), "lower-case words"),
    (dict(words="red"), "tuple of lower-case words"),
    (dict(words=("red",), num_classes=3), "not both"),
    (dict(mlp_ratio=-1), "mlp_ratio"),
])
def test_bad_configs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiTConfig(**{**SMALL, **kwargs})


def test_bad_forward_inputs_are_named(gen):
    labels = DiT(DiTConfig(**SMALL, num_classes=3))
    text = DiT(DiTConfig(**SMALL, words=WORDS))
    plain = DiT(DiTConfig(**SMALL))
    x = torch.randn(2, 3, 8, 8, generator=gen)
    cases = [
        (plain, (torch.randn(2, 3, 16, 16), 0), "shape \\(B, 3, 8, 8\\)"),
        (plain, (x.double(), 0), "dtype torch.float32"),
        (plain, (x, 0, torch.tensor([0, 1])), "unconditional"),
        (labels, (x, 0, torch.tensor([0, 3 + 1])), "labels in \\[0, 3\\]"),
        (labels, (x, 0, torch.tensor([0.0, 1.0])), "LongTensor"),
        (labels, (x, 0, torch.tensor([[0, 1]])), "shape \\(2,\\)"),
        (text, (x, 0, torch.tensor([1, 2])), "shape \\(2, 8\\)"),
        (text, (x, 0, torch.full((2, 8), 99)), "token ids in \\[0, 7\\]"),
        (plain, (x, torch.tensor([1, 2, 3])), "t must have shape"),
    ]
    for model, args, message in cases:
        with pytest.raises(ValueError, match=message):
            model(*args)
    with pytest.raises(ValueError, match="takes no captions"):
        labels.tokenize("red apple")


def test_training_with_captions_lowers_the_loss_and_drops_whole_captions(gen):
    images = torch.rand(64, 3, 8, 8, generator=gen) * 2 - 1
    images[:32, 0] = 1.0  # "red" images have a full red channel
    captions = ["red apple"] * 32 + ["green heart"] * 32
    model = DiT(DiTConfig(**SMALL, words=build_vocabulary(captions)))
    seen = []
    real_forward = model.forward

    def spy(x, t, y=None):
        seen.append(y.clone())
        return real_forward(x, t, y)

    model.forward = spy
    config = dl.TrainConfig(steps=150, batch_size=32, lr=2e-3, warmup_steps=10, device="cpu", p_uncond=0.3,
                            log_every=50)
    result = dl.train(model, images, config, labels=model.tokenize(captions), progress=False)
    first, last = sum(result.losses[:15]) / 15, sum(result.losses[-15:]) / 15
    assert last < 0.8 * first
    y = torch.cat(seen)
    dropped = (y == PAD).all(dim=1)
    assert 0.2 < dropped.float().mean() < 0.4  # p_uncond = 0.3 of the captions, each dropped whole
    partly = ((y == PAD).any(dim=1) & ~dropped & (y[:, :2] == PAD).any(dim=1))
    assert not partly.any()  # never half a caption


def test_train_names_token_ids_of_the_wrong_shape(gen):
    model = DiT(DiTConfig(**SMALL, words=WORDS))
    with pytest.raises(ValueError, match="labels must have shape \\(8, 8\\), token ids"):
        dl.train(model, torch.zeros(8, 3, 8, 8), dl.TrainConfig(steps=1, batch_size=8, device="cpu"),
                 labels=torch.zeros(8, dtype=torch.long), progress=False)


def test_diffusion_loss_and_samplers_take_a_dit_unchanged(gen):
    model = DiT(DiTConfig(**SMALL, words=WORDS))
    s = dl.TrainConfig(T=50).noise_schedule()
    x0 = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1
    y = model.tokenize(["red apple", "cat face", "", "green heart"])
    assert diffusion_loss(model, x0, s, y=y).isfinite()
    x = ddim_sample(model, torch.randn(4, 3, 8, 8, generator=gen), s, steps=5, y=y, guidance=3.0)
    assert x.shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="shape \\(4, 8\\), the token ids"):
        ddim_sample(model, torch.randn(4, 3, 8, 8), s, steps=5, y=torch.zeros(4, dtype=torch.long))


def test_guidance_with_the_exact_null_caption_matches_two_calls(gen):
    """The samplers' guidance builds the null caption with full_like(y, null_label): the empty caption."""
    from diffusion_lessons.sampling import guided_eps

    model = DiT(DiTConfig(**SMALL, words=WORDS))
    for p in model.parameters():
        p.data.add_(torch.randn(p.shape, generator=gen) * 0.05)
    x, t = torch.randn(2, 3, 8, 8, generator=gen), torch.tensor([10, 10])
    y = model.tokenize(["red apple", "cat face"])
    want = model(x, t) + 2.5 * (model(x, t, y) - model(x, t))
    assert torch.allclose(guided_eps(model, x, t, y, 2.5), want, atol=1e-5)


def test_checkpoint_and_export_round_trip_a_text_dit(tmp_path, gen):
    words = build_vocabulary(["red apple", "cat face"])
    model = DiT(DiTConfig(**SMALL, words=words))
    images = torch.rand(16, 3, 8, 8, generator=gen) * 2 - 1
    y = model.tokenize(["red apple", "cat face"] * 8)
    config = dl.TrainConfig(steps=3, batch_size=8, device="cpu", T=50)
    result = dl.train(model, images, config, labels=y, out_dir=tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt.model_config["model"] == "DiT" and tuple(ckpt.model_config["words"]) == words
    path = export_pretrained(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.pt", {"command": "test"})
    p = pretrained(path)
    assert isinstance(p.model, DiT) and p.model.config == model.config
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.no_grad():
        assert torch.allclose(p.model(x, 3, y[:2]), result.ema(x, 3, y[:2]))
