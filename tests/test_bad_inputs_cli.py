"""Bad inputs to the ``diffusion-lessons`` command: one line on stderr, exit status 2, never a traceback.

Each case asserts the exit status, that stderr is exactly one line starting with
``diffusion-lessons: error:``, and that the line names the flag or argument at fault.
"""

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import diffusion_lessons.cli as cli
import diffusion_lessons.training as training
from diffusion_lessons.cli import main

# a U-Net small enough that 2 steps on 8x8 digits take about a second
TINY = ["--steps", "2", "--batch-size", "8", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
        "--no-progress", "--device", "cpu", "--T", "50"]


def _train(tmp: Path, *extra: str, out: Path | str | None = None) -> list[str]:
    return ["train", "--dataset", "sklearn_digits", "--out", str(out or tmp / "run"), *TINY, *extra]


def _error_line(capsys, argv: list[str]) -> str:
    """Run ``main(argv)``; check the error contract and return the one line of stderr."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffusion-lessons: error: "), err
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with the wrong things in the wrong places."""
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder.ipynb").mkdir()
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "ok.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (tmp_path / "bad.toml").write_text("[book\n")
    (tmp_path / "images").mkdir()
    return tmp_path


BAD_TRAIN = [  # (extra flags, what the error line must say)
    (["--device", "gpu0"], r"--device must be auto, cpu, cuda, cuda:N or mps, got 'gpu0'"),
    (["--device", "cuda:x"], r"--device must be .* got 'cuda:x'"),
    (["--device", "meta"], r"--device must be .* got 'meta'"),
    (["--channel-mults", "1,x"], r"--channel-mults must be positive integers .* got '1,x'"),
    (["--channel-mults", ""], r"--channel-mults must be positive integers"),
    (["--channel-mults", "0,1"], r"--channel-mults must be positive integers .* got '0,1'"),
    (["--channel-mults", "1,2,2,2,2"], r"--channel-mults 1,2,2,2,2 makes 5 levels: the images, 8x8, must halve 4 "
                                       r"times \(a multiple of 16\)"),  # 8x8 digits: too many levels
    (["--steps", "0"], r"--steps must be a positive integer, got 0"),
    (["--steps", "-1"], r"--steps must be a positive integer, got -1"),
    (["--steps", "2.5"], r"argument --steps: invalid int value: '2.5'"),
    (["--batch-size", "0"], r"--batch-size must be a positive integer"),
    (["--batch-size", "5000"], r"--batch-size 5000 is more than the 1797 images of --dataset sklearn_digits"),
    (["--lr", "0"], r"--lr must be a positive number"),
    (["--lr", "-1"], r"--lr must be a positive number"),
    (["--lr", "nan"], r"--lr must be a positive number, got nan"),
    (["--lr", "inf"], r"--lr must be a positive number, got inf"),
    (["--image-size", "0"], r"--image-size must be a positive integer, got 0"),
    (["--image-size", "-4"], r"--image-size must be a positive integer, got -4"),
    (["--T", "0"], r"--T must be a positive integer"),
    (["--log-every", "0"], r"--log-every must be a positive integer"),
    (["--checkpoint-every", "0"], r"--checkpoint-every must be a positive integer"),
    (["--base-channels", "0"], r"--base-channels must be a positive integer"),
    (["--num-res-blocks", "-1"], r"--num-res-blocks must be a positive integer"),
    (["--warmup-steps", "-1"], r"--warmup-steps must be >= 0"),
    (["--num-workers", "-1"], r"--num-workers must be >= 0"),
    (["--ema-decay", "1"], r"--ema-decay must be in \[0, 1\)"),
    (["--ema-power", "-0.5"], r"--ema-power must be a number >= 0 \(0: no EMA warm-up\), got -0.5"),
    (["--ema-power", "inf"], r"--ema-power must be a number >= 0 .*got inf"),
    (["--ema-power", "nan"], r"--ema-power must be a number >= 0 .*got nan"),
    (["--p-uncond", "1"], r"--p-uncond must be in \[0, 1\)"),
    (["--dropout", "1"], r"--dropout must be in \[0, 1\)"),
    (["--dropout", "nan"], r"--dropout must be in \[0, 1\), got nan"),
    (["--seed", str(2**64)], r"--seed must be in"),
    (["--schedule", "nope"], r"--schedule: schedule name must be one of .* got 'nope'"),
    (["--split", "train"], r"--split applies to --dataset mnist5k only"),
    (["--prediction", "x0"], r"argument --prediction: invalid choice"),
]


@pytest.mark.parametrize("extra, match", BAD_TRAIN, ids=[" ".join(e) or "empty" for e, _ in BAD_TRAIN])
def test_bad_train_flags_name_the_flag(capsys, tmp_path, extra, match):
    line = _error_line(capsys, _train(tmp_path, *extra))
    assert re.search(match, line), line
    assert not (tmp_path / "run").exists()  # refused before any run folder is made


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_says_so(capsys, tmp_path, device):
    line = _error_line(capsys, _train(tmp_path, "--device", device))
    assert f"--device {device}: no CUDA GPU is available here" in line


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_apple_gpu_says_so(capsys, tmp_path):
    assert "--device mps: MPS (Apple GPU) is not available" in _error_line(capsys, _train(tmp_path, "--device", "mps"))


def test_a_cuda_index_past_the_last_gpu_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "--device cuda:2: this machine has 2 CUDA GPU(s), cuda:0 to cuda:1" in _error_line(
        capsys, _train(tmp_path, "--device", "cuda:2"))


def test_bad_datasets_name_the_flag(capsys, files):
    for dataset, match in [("nope", r"--dataset must be one of .* got 'nope'"),
                           (str(files / "file.txt"), r"--dataset must be .* got the file .*file\.txt")]:
        line = _error_line(capsys, ["train", "--dataset", dataset, "--out", str(files / "run"), *TINY])
        assert re.search(match, line), line
    line = _error_line(capsys, ["train", "--dataset", str(files / "images"), "--class-cond", "--out",
                                str(files / "run"), *TINY])
    assert "--class-cond needs a labelled data set" in line


@pytest.mark.parametrize("where, match", [
    ("file.txt", r"--out must be a folder, got the file .*file\.txt$"),
    ("file.txt/run", r"--out must be a folder, got .*file\.txt/run \(its parent .*file\.txt is a file\)"),
])
def test_out_that_cannot_be_a_folder_is_refused_before_training(capsys, files, where, match):
    line = _error_line(capsys, _train(files, out=files / where))
    assert re.search(match, line), line


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys (Linux), where nobody may create a folder")
def test_out_not_writable_is_refused_before_training(capsys, tmp_path):
    line = _error_line(capsys, _train(tmp_path, out="/sys/diffusion_lessons_test_run"))
    assert line.startswith("diffusion-lessons: error: --out: cannot write into /sys/diffusion_lessons_test_run")


def test_a_refused_run_leaves_no_folder_behind(capsys, tmp_path):
    out = tmp_path / "a" / "b"  # the --out check creates it to try writing, then removes it again
    assert "makes 5 levels" in _error_line(capsys, _train(tmp_path, "--channel-mults", "1,2,2,2,2",
                                                                      out=out))
    assert not (tmp_path / "a").exists()


def test_an_existing_run_is_never_overwritten_by_accident(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(_train(tmp_path, out=out)) == 0
    capsys.readouterr()
    first = (out / "checkpoint.pt").read_bytes()
    # starting again in the same folder: refused, the run untouched
    line = _error_line(capsys, _train(tmp_path, "--seed", "1", out=out))
    assert "already holds a run" in line and "--resume continues it" in line and "--overwrite" in line
    assert (out / "checkpoint.pt").read_bytes() == first
    # --resume and --overwrite together: refused
    assert "--resume and --overwrite exclude each other" in _error_line(
        capsys, _train(tmp_path, "--resume", "--overwrite", out=out))
    assert (out / "checkpoint.pt").read_bytes() == first
    # --overwrite: says what it does, then a new run (another seed) replaces the old one
    assert main(_train(tmp_path, "--seed", "1", "--overwrite", out=out)) == 0
    assert "--overwrite: a new run starts in" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() != first
    # --resume continues it
    assert main(_train(tmp_path, "--seed", "1", "--resume", "--steps", "4", out=out)) == 0
    assert training.load_checkpoint(out / "checkpoint.pt").step == 4


def test_resume_without_a_checkpoint_is_an_error(capsys, tmp_path):
    line = _error_line(capsys, _train(tmp_path, "--resume", out=tmp_path / "fresh"))
    assert "--resume: no run to continue in" in line
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("takes_data_id", [True, False])
def test_train_gets_data_id_where_it_takes_one(capsys, tmp_path, monkeypatch, takes_data_id):
    seen = {}

    def fake_train(model, data, config, labels=None, out_dir=None, resume=False, progress=True, data_id=None):
        seen.update(data_id=data_id)
        raise RuntimeError("stop here")

    def fake_train_old(model, data, config, labels=None, out_dir=None, resume=False, progress=True):
        seen.update(called=True)
        raise RuntimeError("stop here")

    monkeypatch.setattr(training, "train", fake_train if takes_data_id else fake_train_old)
    line = _error_line(capsys, _train(tmp_path))
    assert "RuntimeError: stop here" in line  # an unexpected exception: its type named, still one line
    assert seen == ({"data_id": "sklearn_digits:all"} if takes_data_id else {"called": True})


def test_teaching_commands_refuse_a_file_where_a_folder_belongs(capsys, files):
    for argv, match in [(["student", str(files / "file.txt")], r"OUTDIR must be a folder, got the file"),
                        (["student", str(files / "file.txt" / "sub")], r"OUTDIR must be a folder, .*is a file"),
                        (["learner", str(files / "file.txt")], r"DIR must be a folder, got the file"),
                        (["book", "--out", str(files / "file.txt")], r"--out must be a folder, got the file")]:
        assert re.search(match, _error_line(capsys, argv))


@pytest.fixture
def broken_course(tmp_path: Path, root: Path) -> Path:
    """A copy of book.toml whose first chapter's notebook is not JSON (the other notebooks: links)."""
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    shutil.copy(root / "book.toml", course / "book.toml")
    for notebook in (root / "notebooks").glob("*.ipynb"):
        (course / "notebooks" / notebook.name).symlink_to(notebook)
    first = course / "notebooks" / "01_markov_noising.ipynb"
    first.unlink()
    first.write_text('{"cells": [')
    return course / "book.toml"


@pytest.mark.parametrize("command", [["student", "OUT"], ["student", "OUT", "--nbgrader"], ["learner", "OUT"],
                                     ["book", "--out", "OUT"]])
def test_a_broken_course_notebook_is_named_before_anything_is_written(capsys, tmp_path, broken_course, command):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a for a in command]
    line = _error_line(capsys, [*argv, "--manifest", str(broken_course)])
    assert re.search(r"notebook of chapter 1 .*01_markov_noising\.ipynb is not a notebook \(invalid JSON", line)
    assert not out.exists()


def test_grade_names_a_bad_submission(capsys, files):
    for argv, match in [([str(files / "folder.ipynb")], r"submission .*folder\.ipynb is a folder, not a notebook"),
                        ([str(files / "broken.ipynb")], r"submission .*broken\.ipynb is not a notebook \(invalid JSON"),
                        ([str(files / "nope.ipynb")], r"no such submission: .*nope\.ipynb"),
                        ([str(files / "ok.ipynb"), "--csv", str(files / "images")], r"--csv must be a file name"),
                        ([str(files / "ok.ipynb"), "--csv", str(files / "file.txt" / "g.csv")],
                         r"--csv's folder must be a folder"),
                        ([str(files / "ok.ipynb"), "--timeout", "0"], r"timeout must be a positive number"),
                        ([str(files / "ok.ipynb"), "--memory", "-1"], r"memory_gib must be a positive number"),
                        ([str(files / "ok.ipynb"), "--timeout", "soon"], r"argument --timeout: invalid float")]:
        line = _error_line(capsys, ["grade", *argv])
        assert re.search(match, line), line


def test_a_bad_manifest_is_named(capsys, files):
    for manifest, match in [(files / "nope.toml", r"--manifest: no such file: .*nope\.toml"),
                            (files, r"--manifest must be a book\.toml file, got the folder"),
                            (files / "bad.toml", r"bad\.toml is not valid TOML: Expected ']'")]:
        assert re.search(match, _error_line(capsys, ["lessons", "--manifest", str(manifest)]))


def test_usage_errors_are_one_line_too(capsys):
    assert "the following arguments are required: command" in _error_line(capsys, [])
    assert "invalid choice: 'nope'" in _error_line(capsys, ["nope"])
    assert "unrecognized arguments: --nope" in _error_line(capsys, ["lessons", "--nope"])
    assert main(["--help"]) == 0 and "--debug" in capsys.readouterr().out


def test_any_exception_is_one_line_with_multi_line_messages_folded(capsys, monkeypatch):
    def fail(args):
        raise RuntimeError("first line\n  second line\n")

    monkeypatch.setattr(cli, "_lessons", fail)
    line = _error_line(capsys, ["lessons"])
    assert line == "diffusion-lessons: error: RuntimeError: first line second line (--debug shows where)"


@pytest.mark.parametrize("argv", [["--debug", "lessons"], ["lessons", "--debug"]])
def test_debug_shows_the_traceback(capsys, monkeypatch, argv):
    def fail(args):
        raise KeyError("missing")

    monkeypatch.setattr(cli, "_lessons", fail)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "KeyError: 'missing'" in err


def test_ctrl_c_exits_130_with_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_lessons", interrupted)
    assert main(["lessons"]) == 130
    assert capsys.readouterr().err == "diffusion-lessons: interrupted\n"


def test_console_script_never_shows_a_traceback(tmp_path):
    script = Path(sys.executable).parent / "diffusion-lessons"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "diffusion_lessons.cli"]
    out = subprocess.run([*command, "train", "--dataset", "sklearn_digits", "--out", str(tmp_path / "run"),
                          "--device", "gpu0"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == ["diffusion-lessons: error: --device must be auto, cpu, cuda, cuda:N or mps, "
                                       "got 'gpu0'"]


@pytest.mark.skipif("data_id" not in inspect.signature(training.train).parameters, reason="train() takes no data_id")
def test_resume_on_other_data_is_refused(capsys, tmp_path):
    from PIL import Image

    for folder in ("a", "b"):  # two folders of the same size: only data_id tells them apart
        (tmp_path / folder).mkdir()
        for i in range(8):
            Image.new("RGB", (8, 8), (30 * i, 10, 200 if folder == "a" else 0)).save(tmp_path / folder / f"{i}.png")
    run = ["--image-size", "8", "--out", str(tmp_path / "run"), *TINY]
    assert main(["train", "--dataset", str(tmp_path / "a"), *run]) == 0
    capsys.readouterr()
    line = _error_line(capsys, ["train", "--dataset", str(tmp_path / "b"), *run, "--resume", "--steps", "3"])
    assert "the checkpoint was trained on" in line and str((tmp_path / "b").resolve()) in line
