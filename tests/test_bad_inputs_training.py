"""Bad inputs to training.py: each one fails loudly (or warns), with a message that names the argument.

The cases are tables: ``CONFIG_CASES`` (TrainConfig fields), ``LOSS_CASES`` (diffusion_loss),
``TRAIN_CASES`` (train); then the checkpoint files (bit rot, truncated, empty, foreign, stale
temporary files), the loss history across a resume, and data_id.
"""

import dataclasses
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import diffusion_lessons as dl
from diffusion_lessons.training import (
    Checkpoint,
    TrainConfig,
    diffusion_loss,
    load_checkpoint,
    save_checkpoint,
    train,
)
from diffusion_lessons.unet import MLPDenoiser, UNet, UNetConfig

S = dl.NoiseSchedule.linear(T=100)
SMALL = {"steps": 1, "batch_size": 4, "log_every": 1, "T": 100}  # a one-step run: the checks come first


class Scaled(torch.nn.Module):
    """A tiny denoiser w·x; ``num_classes`` makes it class-conditional (it then has a null_label)."""

    def __init__(self, num_classes=None, out_shape=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.null_label = num_classes
        self.out_shape = out_shape

    def forward(self, x, t, y=None):
        out = self.w * x
        return out if self.out_shape is None else out.mean() * torch.ones(self.out_shape)  # broadcasts against x


class Items(Dataset):
    """A Dataset that yields whatever ``item(i)`` returns."""

    def __init__(self, item, n=8):
        self.item, self.n = item, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.item(i)


def _points(n=8):
    return dl.toy_2d("moons", n=n, seed=0)


# ----------------------------------------------------------------------------- TrainConfig
CONFIG_CASES = [
    ({"steps": 1.5}, "steps must be a positive integer"),
    ({"steps": True}, "steps must be a positive integer"),
    ({"batch_size": "64"}, "batch_size must be a positive integer"),
    ({"T": 0}, "T must be a positive integer"),
    ({"log_every": 2.0}, "log_every must be a positive integer"),
    ({"checkpoint_every": -5}, "checkpoint_every must be a positive integer"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
    ({"warmup_steps": 10.5}, "warmup_steps must be an integer >= 0"),
    ({"warmup_steps": False}, "warmup_steps must be an integer >= 0"),
    ({"num_workers": -1}, "num_workers must be an integer >= 0"),
    ({"num_workers": 2.0}, "num_workers must be an integer >= 0"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"seed": 2**64}, "seed must be an integer"),
    ({"lr": float("inf")}, "lr must be a finite number"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"lr": "1e-3"}, "lr must be a finite number"),
    ({"lr": -1e-3}, "lr must be > 0"),
    ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
    ({"grad_clip": float("nan")}, "grad_clip must be a finite number"),
    ({"grad_clip": None}, "grad_clip must be a finite number"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ({"weight_decay": float("inf")}, "weight_decay must be a finite number"),
    ({"ema_decay": True}, "ema_decay must be a finite number"),
    ({"p_uncond": 1.0}, r"p_uncond must be in \[0, 1\)"),
    ({"p_uncond": float("nan")}, "p_uncond must be a finite number"),
    ({"channels_last": "False"}, "channels_last must be True or False"),
    ({"channels_last": 1}, "channels_last must be True or False"),
    ({"compile": "yes"}, "compile must be True or False"),
    ({"device": "gpu"}, "device must be 'auto' or a torch device"),
    ({"device": 0}, "device must be a string"),
    ({"prediction": None}, "prediction must be a string"),
    ({"schedule": 3}, "schedule must be a string"),
    ({"precision": "fp16"}, "precision must be"),
]


@pytest.mark.parametrize("kwargs, message", CONFIG_CASES, ids=[repr(k) for k, _ in CONFIG_CASES])
def test_bad_train_config_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_valid_configs_still_construct_and_numpy_floats_become_plain_floats():
    assert TrainConfig(lr=1, grad_clip=0, weight_decay=0, warmup_steps=0, seed=0, channels_last=False).lr == 1
    config = TrainConfig(lr=np.float64(1e-3))
    assert type(config.lr) is float and config.lr == 1e-3  # a plain float: a checkpoint of it loads weights_only
    assert TrainConfig(device="cpu").device == "cpu" and TrainConfig(device="cuda:1").device == "cuda:1"


# ----------------------------------------------------------------------------- diffusion_loss
def _loss(model=None, x0=None, s=S, **kwargs):
    return lambda: diffusion_loss(model if model is not None else Scaled(), _points() if x0 is None else x0, s,
                                  **kwargs)


LOSS_CASES = [
    ("int x0", _loss(x0=torch.randint(0, 255, (8, 2))), ValueError, r"x0 must be a floating-point tensor.*int64"),
    ("uint8 images", _loss(x0=torch.zeros(8, 1, 4, 4, dtype=torch.uint8)), ValueError, "x0 must be a floating"),
    ("complex x0", _loss(x0=torch.zeros(8, 2, dtype=torch.complex64)), ValueError, "x0 must be a floating"),
    ("bool x0", _loss(x0=torch.zeros(8, 2, dtype=torch.bool)), ValueError, "x0 must be a floating"),
    ("numpy x0", _loss(x0=np.zeros((8, 2), dtype=np.float32)), ValueError, "x0 must be a torch.Tensor"),
    ("1-D x0", _loss(x0=torch.zeros(8)), ValueError, r"x0 must have shape \(B, ...\)"),
    ("empty x0", _loss(x0=torch.zeros(0, 2)), ValueError, "x0 must hold at least one example"),
    ("s not a schedule", _loss(s="linear"), ValueError, "s must be a NoiseSchedule"),
    ("int noise", _loss(noise=torch.zeros(8, 2, dtype=torch.long)), ValueError, "noise must be a floating"),
    ("noise of another shape", _loss(noise=torch.zeros(8, 3)), ValueError, "noise must have the same shape"),
    ("t out of range", _loss(t=torch.full((8,), 100)), ValueError, r"t must be in \[0, 99\], got 100"),
    ("float t", _loss(t=torch.zeros(8)), ValueError, "t must hold integer steps"),
    ("generator of another kind", _loss(generator=np.random.default_rng(0)), ValueError, "generator must be"),
    ("float labels", _loss(Scaled(10), y=torch.zeros(8)), ValueError, "y must hold integer class labels"),
    ("labels of another shape", _loss(Scaled(10), y=torch.zeros(3, dtype=torch.long)), ValueError,
     r"y must have shape \(8,\)"),
    ("label beyond the classes", _loss(Scaled(10), y=torch.full((8,), 11)), ValueError,
     r"y must hold labels in \[0, 9\] \(or 10 for no label\).*got 11"),
    ("negative label", _loss(Scaled(10), y=torch.full((8,), -1)), ValueError, "y must hold labels in.*got -1"),
    ("labels for an unconditional model", _loss(Scaled(None), y=torch.zeros(8, dtype=torch.long)), ValueError,
     r"y \(class labels\) were given but the model is unconditional"),
    ("output of another shape", _loss(Scaled(out_shape=(8, 1))), ValueError,
     r"the model's output must have x_t's shape \(8, 2\), got \(8, 1\)"),
    ("output a scalar", _loss(Scaled(out_shape=())), ValueError, r"output must have x_t's shape \(8, 2\), got \(\)"),
    ("prediction x0", _loss(prediction="x0"), ValueError, "prediction must be one of"),
    ("data in [0, 255]", _loss(x0=_points() * 127.5 + 127.5), UserWarning,
     r"x0 lies in \[.*\], far outside \[-1, 1\]: the course scales data to \[-1, 1\]"),
]


def _fails_loudly(call, kind: type, message: str) -> None:
    """``call()`` raises ``kind`` (or warns, for a Warning) with a message matching ``message``."""
    if issubclass(kind, Warning):
        with pytest.warns(kind, match=message):
            call()
    else:
        with pytest.raises(kind, match=message):
            call()


@pytest.mark.parametrize("name, call, kind, message", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_bad_loss_input_fails_loudly_naming_the_argument(name, call, kind, message):
    _fails_loudly(call, kind, message)


def test_valid_loss_inputs_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diffusion_loss(Scaled(10), _points(), S, y=torch.tensor([0, 1, 2, 3, 9, 10, 10, 5]))  # 10: "no label"
        diffusion_loss(Scaled(), _points() * 5, S)  # data within ±10 (e.g. VAE latents) does not warn
        diffusion_loss(Scaled(), _points().double(), S)


# ----------------------------------------------------------------------------- train
def _train(model=None, data=None, config=None, **kwargs):
    config = TrainConfig(**SMALL) if config is None else config
    return lambda: train(Scaled() if model is None else model, _points() if data is None else data, config,
                         progress=False, **kwargs)


CUDA_MISSING = "CUDA is not available here"
TRAIN_CASES = [
    ("int data", _train(data=torch.randint(0, 255, (8, 2))), ValueError,
     r"data must be a floating-point tensor, got dtype torch.int64 \(scale images to \[-1, 1\]"),
    ("uint8 images", _train(data=torch.zeros(8, 1, 4, 4, dtype=torch.uint8)), ValueError, "data must be a floating"),
    ("complex data", _train(data=torch.zeros(8, 2, dtype=torch.complex64)), ValueError, "data must be a floating"),
    ("numpy data", _train(data=np.zeros((8, 2), dtype=np.float32)), ValueError,
     r"data must be a torch.Tensor \(N, ...\) or a torch Dataset, got ndarray \(use torch.from_numpy\)"),
    ("a list of points", _train(data=[[0.0, 0.0]] * 8), ValueError, "data must be a torch.Tensor"),
    ("1-D data", _train(data=torch.zeros(8)), ValueError, r"data must have shape \(B, ...\)"),
    ("float labels", _train(Scaled(10), labels=torch.zeros(8)), ValueError, "labels must hold integer class labels"),
    ("label 10 of 10 classes", _train(Scaled(10), labels=torch.full((8,), 10)), ValueError,
     r"labels must hold labels in \[0, 9\] \(the model's num_classes=10\), got 10"),
    ("negative labels", _train(Scaled(10), labels=torch.full((8,), -3)), ValueError, "labels must hold.*got -3"),
    ("numpy labels", _train(Scaled(10), labels=np.zeros(8, dtype=np.int64)), ValueError,
     "labels must be a torch.Tensor"),
    ("labels for MLPDenoiser", _train(MLPDenoiser(hidden=8, depth=1), labels=torch.zeros(8, dtype=torch.long)),
     ValueError, "labels.*were given but the model is unconditional"),
    ("labels for an unconditional UNet", lambda: _train(UNet(UNetConfig(
        image_size=4, base_channels=8, channel_mults=(1,), attention_resolutions=())), torch.zeros(8, 1, 4, 4),
        labels=torch.zeros(8, dtype=torch.long))(), ValueError,
     r"labels \(class labels\) were given but the model is unconditional \(num_classes=None\)"),
    ("conditional model without labels", _train(Scaled(10)), UserWarning,
     r"class-conditional \(num_classes=10\) but no labels were given"),
    ("data in [0, 255]", _train(MLPDenoiser(hidden=8, depth=1), data=_points() * 127.5 + 127.5), UserWarning,
     r"data lies in \[.*\], far outside \[-1, 1\]"),
    ("a model output of another shape", _train(Scaled(out_shape=(4, 1))), ValueError,
     r"the model's output must have x_t's shape \(4, 2\), got \(4, 1\)"),
    ("model not a Module", _train(model=lambda x, t: x), ValueError, "model must be a torch.nn.Module"),
    ("config a dict", _train(config={"steps": 1}), ValueError, "config must be a TrainConfig"),
    ("resume a string", _train(resume="yes"), ValueError, "resume must be True or False"),
    ("progress None", lambda: train(Scaled(), _points(), TrainConfig(**SMALL), progress=None), ValueError,
     "progress must be True or False"),
    ("callback not callable", _train(callback="print"), ValueError, "callback must be a function"),
    ("data_id a number", _train(data_id=5), ValueError, "data_id must be a string"),
    ("out_dir a number", _train(out_dir=5), ValueError, r"out_dir must be a path"),
    ("a Dataset of bare tensors", _train(data=Items(lambda i: torch.zeros(2))), ValueError,
     r"the Dataset must yield tuples \(x,\) or \(x, y\)"),
    ("a Dataset of int images", _train(data=Items(lambda i: (torch.zeros(2, dtype=torch.long),))), ValueError,
     "the Dataset's x must be a floating-point tensor"),
    ("a Dataset of float labels", _train(Scaled(10), data=Items(lambda i: (torch.zeros(2), 1.0))), ValueError,
     "the Dataset's labels y must hold integer class labels"),
    ("a Dataset with labels for an unconditional model", _train(data=Items(lambda i: (torch.zeros(2), 1))),
     ValueError, "the Dataset's labels y .*unconditional"),
    ("a Dataset without labels for a conditional model", _train(Scaled(10), data=Items(lambda i: (torch.zeros(2),))),
     UserWarning, "class-conditional .* no labels were given"),
]
if not torch.cuda.is_available():
    TRAIN_CASES.append(("device cuda without CUDA", _train(config=TrainConfig(**SMALL, device="cuda")), ValueError,
                        "device is 'cuda' but CUDA is not available here"))


@pytest.mark.parametrize("name, call, kind, message", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_input_fails_loudly_naming_the_argument(name, call, kind, message):
    _fails_loudly(call, kind, message)


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir must be a folder"):
        _train(out_dir=tmp_path / "file")()


# ----------------------------------------------------------------------------- checkpoint files
@pytest.fixture
def saved(tmp_path):
    """A real checkpoint of a two-step run, and its bytes."""
    torch.manual_seed(0)
    train(MLPDenoiser(hidden=32, depth=1), _points(64), TrainConfig(steps=2, batch_size=16, log_every=1),
          out_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    return path, path.read_bytes()


def _assert_one_line(error, path):
    message = str(error.value)
    assert "\n" not in message and "weights_only" not in message and str(path) in message, message


def test_bit_rot_is_detected(saved):
    path, data = saved
    middle = len(data) // 2
    path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:])
    with pytest.raises(ValueError, match="corrupt") as error:
        load_checkpoint(path)
    _assert_one_line(error, path)


def test_every_stored_value_is_covered_by_the_checksum(saved, tmp_path):
    path, _ = saved
    ckpt = load_checkpoint(path)
    ckpt.losses[0] += 1e-6  # one loss changed by a rounding error's worth, then the file rewritten with the old sum
    raw = torch.load(path, weights_only=True)
    changed = dataclasses.asdict(ckpt) | {"sha256": raw["sha256"]}
    torch.save(changed, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"corrupt: its contents do not match the sha256"):
        load_checkpoint(tmp_path / "edited.pt")


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) // 2], "corrupt: torch.load could not read it"),
    (lambda data: data[:100], "corrupt: torch.load could not read it"),
    (lambda data: b"", "corrupt: the file is empty"),
    (lambda data: b"not a checkpoint at all", "corrupt: torch.load could not read it"),
])
def test_truncated_and_empty_files_say_corrupt_in_one_line(saved, damage, message):
    path, data = saved
    path.write_bytes(damage(data))
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(path)
    _assert_one_line(error, path)


class Foreign:  # a pickled object of a class: torch's weights-only loader refuses it
    pass


@pytest.mark.parametrize("content, message", [
    ({"a": 1}, r"not a diffusion-lessons checkpoint \(missing"),
    ([1, 2, 3], r"not a diffusion-lessons checkpoint \(it holds a list\)"),
    ({"weights": torch.zeros(3)}, "not a diffusion-lessons checkpoint"),
    (Foreign(), "not a diffusion-lessons checkpoint .*objects other than tensors"),
])
def test_foreign_files_are_named_as_such(tmp_path, content, message):
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(path)
    _assert_one_line(error, path)
    path.write_bytes(pickle.dumps(content))  # a plain pickle, not a torch zip file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on the pickle protocol
        with pytest.raises(ValueError, match=r"corrupt|not a diffusion-lessons checkpoint"):
            load_checkpoint(path)


def test_an_old_checkpoint_without_a_checksum_loads_with_a_warning(saved, tmp_path):
    path, _ = saved
    raw = torch.load(path, weights_only=True)
    del raw["sha256"], raw["data_id"]  # as written before checksums and data_id existed
    torch.save(raw, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="has no checksum"):
        old = load_checkpoint(tmp_path / "old.pt")
    assert old.step == 2 and old.data_id is None and old.losses == load_checkpoint(path).losses


def test_a_valid_checkpoint_round_trips_without_warning(saved, tmp_path):
    path, _ = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt = load_checkpoint(path)
        save_checkpoint(tmp_path / "again.pt", ckpt)
        again = load_checkpoint(tmp_path / "again.pt")
    assert isinstance(again, Checkpoint) and again.losses == ckpt.losses and again.step == ckpt.step


def test_stale_temporary_files_are_removed_at_the_start(saved):
    path, _ = saved
    stale = [path.parent / ".checkpoint.pt.abc123.tmp", path.parent / ".checkpoint.pt.x.tmp"]
    keep = path.parent / "notes.tmp"  # not one of ours
    for p in [*stale, keep]:
        p.write_bytes(b"half a checkpoint")
    train(MLPDenoiser(hidden=32, depth=1), _points(64), TrainConfig(steps=3, batch_size=16, log_every=1),
          out_dir=path.parent, resume=True, progress=False)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert load_checkpoint(path).step == 3


# ----------------------------------------------------------------------------- resume: history and data_id
class Killed(Exception):
    pass


def test_a_resumed_run_keeps_the_whole_loss_history(tmp_path):
    """120 steps in one go vs killed after step 100 (last checkpoint at 60, 10 losses not yet logged), resumed."""
    data = _points(256)
    config = TrainConfig(steps=120, batch_size=32, log_every=50, checkpoint_every=60, T=100, lr=1e-3)
    torch.manual_seed(0)
    whole = train(MLPDenoiser(hidden=32, depth=1), data, config, out_dir=tmp_path / "a", progress=False)

    def kill(info):
        if info["step"] == 100:
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(MLPDenoiser(hidden=32, depth=1), data, config, out_dir=tmp_path / "b", progress=False, callback=kill)
    assert load_checkpoint(tmp_path / "b/checkpoint.pt").losses == whole.losses[:60]  # 50 logged + 10 pending
    torch.manual_seed(1)  # everything must come from the checkpoint
    resumed = train(MLPDenoiser(hidden=32, depth=1), data, config, out_dir=tmp_path / "b", resume=True,
                    progress=False)
    assert len(resumed.losses) == 120 and resumed.losses == whole.losses
    assert load_checkpoint(tmp_path / "b/checkpoint.pt").losses == whole.losses


def test_resume_on_other_data_is_refused_naming_both(tmp_path):
    def run(steps, data_id, resume=False):
        torch.manual_seed(0)
        return train(MLPDenoiser(hidden=32, depth=1), _points(64), TrainConfig(steps=steps, batch_size=16),
                     out_dir=tmp_path, resume=resume, progress=False, data_id=data_id)

    run(1, "mnist5k:train")
    assert load_checkpoint(tmp_path / "checkpoint.pt").data_id == "mnist5k:train"
    with pytest.raises(ValueError, match="the checkpoint was trained on mnist5k:train, this run uses mnist5k:all"):
        run(2, "mnist5k:all", resume=True)
    assert run(2, None, resume=True).steps == 2  # unknown on one side: nothing to compare
    assert load_checkpoint(tmp_path / "checkpoint.pt").data_id == "mnist5k:train"  # kept from the checkpoint
    assert run(3, "mnist5k:train", resume=True).steps == 3
