"""The ``diffusion-lessons`` command.

    diffusion-lessons lessons                the chapters of book.toml, with objectives and minutes
    diffusion-lessons quiz NAME [--answers]  a lesson's quiz as text (answers hidden by default)
    diffusion-lessons train --dataset mnist5k --steps N --out runs/NAME [--resume | --overwrite]
    diffusion-lessons student OUTDIR         student editions: solutions replaced by stubs, outputs cleared
    diffusion-lessons learner DIR [--refresh CHAPTER ...]   your own copy of the lessons (make lab): stubs,
                                             answers' outputs cleared; a notebook already in DIR is never overwritten
    diffusion-lessons grade SUBMISSION.ipynb ...   run each submission's exercise checkers; a pass/fail table
    diffusion-lessons book [--out DIR]       the course book as a static HTML site (default _build/book)

Every error is one line, ``diffusion-lessons: error: ...``, with exit status 2 (130 after Ctrl-C);
``diffusion-lessons --debug ...`` shows the full traceback instead.

Training on several GPUs (or CPU processes) goes through torchrun:

    torchrun --nproc_per_node=4 -m diffusion_lessons.cli train --dataset mnist5k --steps 20000 --out runs/big
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from .book import Book, format_minutes, load_book
from .quiz import available_quizzes, load_quiz

PROG = "diffusion-lessons"


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see: {self.prog} --help)\n")


def _one_line(e: BaseException) -> str:
    """An exception as one line: its message with the lines folded; the type too where it is not self-explaining."""
    message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if isinstance(e, (ValueError, OSError, ImportError)) and message:
        return message
    return f"{type(e).__name__}{': ' if message else ''}{message} (--debug shows where)"


# ------------------------------------------------------------------ checks at the command line
def _positive_int(flag: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ValueError(f"{flag} must be a positive integer, got {value}")


def _number_in(flag: str, value: float, lo: float, hi: float | None, expected: str) -> None:
    """``value`` finite and in [lo, hi) (hi None: no upper bound); else an error naming ``flag``."""
    if not (math.isfinite(value) and value >= lo and (hi is None or value < hi)):
        raise ValueError(f"{flag} must be {expected}, got {value}")


def _positive_number(flag: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{flag} must be a positive number, got {value}")


def _check_folder_path(flag: str, path: str | Path) -> None:
    """``path`` can be a folder: it is one, or it does not exist yet and no file stands in its way."""
    path = Path(path)
    for p in [path, *path.parents]:
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f" (its parent {p} is a file)"
                raise ValueError(f"{flag} must be a folder, got {'the file ' if p == path else ''}{path}{where}")
            return


def _check_writable_folder(flag: str, path: Path) -> None:
    """Make sure files can be written into the folder ``path``, now, before any long work starts.

    Creates the folder to try, and removes again what it created: a failed check leaves nothing behind.
    """
    _check_folder_path(flag, path)
    created = [p for p in [path, *path.parents] if not p.exists()]  # innermost first
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(f"{flag}: cannot write into {path}: {e.strerror or e}") from e
    finally:
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break


def _check_notebook_file(what: str, path: Path, shown: str | None = None, max_bytes: int | None = None) -> None:
    """``path`` is a file that parses as JSON (what a notebook is); else a one-line error naming ``what`` and it.

    ``shown``: the name to print (default: the path); files over ``max_bytes`` are not parsed here.
    """
    shown = str(path) if shown is None else shown
    if path.is_dir():
        raise ValueError(f"{what} {shown} is a folder, not a notebook file")
    if not path.is_file():
        raise FileNotFoundError(f"no such {what}: {shown}")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        return
    try:
        with open(path, "rb") as f:
            json.load(f)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{what} {shown} is not a notebook (invalid JSON: {_one_line(e)})") from e


def _load_book(manifest: str | None) -> Book:
    """``load_book`` with the --manifest flag named when the file is missing, a folder or not TOML."""
    if manifest is not None:
        path = Path(manifest)
        if path.is_dir():
            raise ValueError(f"--manifest must be a book.toml file, got the folder {path}")
        if not path.is_file():
            raise FileNotFoundError(f"--manifest: no such file: {path}")
    try:
        return load_book(manifest)
    except ValueError as e:
        if type(e).__name__ == "TOMLDecodeError":
            raise ValueError(f"{manifest or 'book.toml'} is not valid TOML: {e}") from e
        raise


def _check_course_notebooks(book: Book) -> None:
    """Every chapter's notebook exists and is JSON, checked before anything is written."""
    for n, chapter in enumerate(book.chapters, 1):
        _check_notebook_file(f"notebook of chapter {n}", book.root / chapter.notebook)
    for n, project in enumerate(book.projects, 1):
        _check_notebook_file(f"notebook of project {n}", book.root / project.notebook)


def _lessons(args: argparse.Namespace) -> int:
    book = _load_book(args.manifest)
    print(f"{book.title}\n")
    for c in book.notebooks:
        if c.project and c == book.projects[0]:
            print("\nProjects\n")
        study = f"{format_minutes(c.study_minutes)} of study, " if c.study_minutes else ""
        print(f"{c.label:>3s}. {c.title}  ({c.notebook}, {study}about {c.minutes:g} min on CPU)")
        for objective in c.objectives:
            print(f"      - {objective}")
    return 0


def _quiz(args: argparse.Namespace) -> int:
    print(load_quiz(args.name).to_markdown(answers=args.answers))
    return 0


def _channel_mults(text: str) -> tuple[int, ...]:
    """``--channel-mults 1,2,2`` as (1, 2, 2): positive integers, one per level."""
    try:
        mults = tuple(int(m) for m in text.split(","))
    except ValueError:
        mults = ()
    if not mults or min(mults) <= 0:
        raise ValueError(f"--channel-mults must be positive integers separated by commas, e.g. 1,2,2; got {text!r}")
    return mults


def _check_device(name: str) -> None:
    """``--device``: auto, cpu, or a CUDA / MPS device that this machine has."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu, or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS (Apple GPU) is not available here; use --device cpu, or auto")


def _check_train_args(args: argparse.Namespace, datasets: list[str]) -> None:
    """Every ``train`` flag checked before any data is loaded, each error naming its flag."""
    from .schedules import NoiseSchedule

    for flag in ("steps", "batch_size", "T", "log_every", "checkpoint_every", "base_channels", "num_res_blocks"):
        _positive_int(f"--{flag.replace('_', '-')}", getattr(args, flag))
    _positive_int("--image-size", args.image_size, allow_none=True)
    _positive_number("--lr", args.lr)
    if args.warmup_steps < 0:
        raise ValueError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0 (0: load data in the main process), got {args.num_workers}")
    _number_in("--ema-decay", args.ema_decay, 0.0, 1.0, "in [0, 1)")
    _number_in("--ema-power", args.ema_power, 0.0, None, "a number >= 0 (0: no EMA warm-up)")
    _number_in("--p-uncond", args.p_uncond, 0.0, 1.0, "in [0, 1)")
    _number_in("--dropout", args.dropout, 0.0, 1.0, "in [0, 1)")
    if not -(2**63) <= args.seed < 2**64:
        raise ValueError(f"--seed must be in [-2**63, 2**64), got {args.seed}")
    _channel_mults(args.channel_mults)
    try:
        NoiseSchedule.from_name(args.schedule, T=2)
    except ValueError as e:
        raise ValueError(f"--schedule: {e}") from e
    _check_device(args.device)
    if args.dataset not in datasets:
        if not Path(args.dataset).exists():
            raise ValueError(f"--dataset must be one of {datasets} or a folder of images, got {args.dataset!r}")
        if not Path(args.dataset).is_dir():
            raise ValueError(f"--dataset must be one of {datasets} or a folder of images, got the file "
                             f"{args.dataset}")
        if args.class_cond:
            raise ValueError("--class-cond needs a labelled data set (mnist5k or sklearn_digits), not a folder")
    if args.split is not None and args.dataset != "mnist5k":
        raise ValueError(f"--split applies to --dataset mnist5k only, got --split {args.split} with "
                         f"--dataset {args.dataset}")


def _check_run_folder(args: argparse.Namespace) -> None:
    """--out: a folder that can be written now; a run already there is continued or replaced only when asked."""
    out = Path(args.out)
    _check_folder_path("--out", out)
    checkpoint = out / "checkpoint.pt"
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: --resume continues the run in --out, "
                         "--overwrite starts a new one over it")
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no run to continue in {out} (no checkpoint.pt there); "
                                "without --resume a new run starts")
    if checkpoint.is_file() and not (args.resume or args.overwrite):
        raise ValueError(f"--out {out} already holds a run ({checkpoint}); --resume continues it, "
                         "--overwrite starts a new run that replaces it")
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone writes (and tries --out)
        return
    _check_writable_folder("--out", out)
    if checkpoint.is_file() and args.overwrite:
        print(f"{PROG}: --overwrite: a new run starts in {out}; its first checkpoint replaces {checkpoint}",
              file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    import torch

    from .data import IMAGE_DATASETS, image_folder
    from .training import TrainConfig, train
    from .unet import UNet, UNetConfig

    _check_train_args(args, sorted(IMAGE_DATASETS))
    _check_run_folder(args)
    split = args.split or "all"
    labels = None
    if args.dataset in IMAGE_DATASETS:
        images, labels = IMAGE_DATASETS[args.dataset](**({"split": split} if args.dataset == "mnist5k" else {}))
        data_id = f"{args.dataset}:{split}"
    else:  # a folder of images (checked above)
        images = image_folder(args.dataset, args.image_size or 64)
        data_id = f"{Path(args.dataset).resolve()}:{args.image_size or 64}"
    if len(images) < args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} is more than the {len(images)} images of --dataset "
                         f"{args.dataset}")
    size = images.shape[-1]
    if args.image_size and args.image_size != size and args.dataset in IMAGE_DATASETS:
        images = torch.nn.functional.interpolate(images, size=args.image_size, mode="bilinear", antialias=True)
        size = args.image_size
    mults = _channel_mults(args.channel_mults)
    if size % 2 ** (len(mults) - 1):
        raise ValueError(f"--channel-mults {args.channel_mults} makes {len(mults)} levels: the images, {size}x{size}, "
                         f"must halve {len(mults) - 1} times (a multiple of {2 ** (len(mults) - 1)}); "
                         "give fewer levels, or another --image-size")
    lowest = size // 2 ** (len(mults) - 1)
    model_config = UNetConfig(
        in_channels=images.shape[1], image_size=size, base_channels=args.base_channels, channel_mults=mults,
        num_res_blocks=args.num_res_blocks,
        attention_resolutions=(lowest,) if lowest > 4 else (lowest * 2,), dropout=args.dropout,
        num_classes=int(labels.max()) + 1 if (args.class_cond and labels is not None) else None,
    )
    if args.class_cond and labels is None:
        raise ValueError("--class-cond needs a labelled data set (mnist5k or sklearn_digits)")
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay, ema_power=args.ema_power, p_uncond=args.p_uncond, prediction=args.prediction,
        objective=args.objective, schedule=args.schedule, T=args.T, seed=args.seed,
        device=args.device, precision=args.precision, compile=args.compile, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, num_workers=args.num_workers,
    )
    torch.manual_seed(config.seed)  # the initial weights
    model = UNet(model_config)
    out = Path(args.out)
    # data_id (recorded in the checkpoint, checked on --resume) is new in train(): pass it where train() takes it
    extra = {"data_id": data_id} if "data_id" in inspect.signature(train).parameters else {}
    result = train(model, images, config, labels=labels if model_config.num_classes else None, out_dir=out,
                   resume=args.resume, progress=not args.no_progress, **extra)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        summary = {"steps": result.steps, "final_loss": sum(result.losses[-50:]) / len(result.losses[-50:]),
                   "images_per_second": result.images_per_second, "dataset": args.dataset, "split": split,
                   "model_config": model_config.to_dict(), "train_config": asdict(config)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"trained {result.steps} steps; final loss {summary['final_loss']:.4f}; "
              f"{result.images_per_second:.0f} images/s; checkpoint: {out / 'checkpoint.pt'}")
    return 0


def _student(args: argparse.Namespace) -> int:
    from .student import write_nbgrader_source, write_student_editions

    write = write_nbgrader_source if args.nbgrader else write_student_editions
    _check_folder_path("OUTDIR", args.outdir)
    book = _load_book(args.manifest)
    _check_course_notebooks(book)
    for path in write(args.outdir, book):
        print(path)
    return 0


def _learner(args: argparse.Namespace) -> int:
    from .student import write_learner_editions

    _check_folder_path("DIR", args.dir)
    book = _load_book(args.manifest)
    _check_course_notebooks(book)
    try:
        copies = write_learner_editions(args.dir, book, refresh=args.refresh or ())
    except OSError as e:  # e.g. DIR is a file, or not writable: one line, like every error here
        raise ValueError(f"cannot write the lessons into {args.dir}: {e}") from e
    for copy in copies:
        if copy.status == "kept":
            print(f"kept      {copy.path}  (your copy, not overwritten; --refresh {copy.path.stem} replaces it)")
        elif copy.status == "refreshed":
            print(f"refreshed {copy.path}  (your previous copy: {copy.replaced})")
        else:
            print(f"wrote     {copy.path}")
    kept = sum(copy.status == "kept" for copy in copies)
    print(f"{len(copies) - kept} written, {kept} of your copies kept, in {args.dir}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from .grading import MEMORY_GIB, SUBMISSION_MAX_BYTES, clean_text, grade_submissions, grades_table, write_csv

    book = _load_book(args.manifest)
    for submission in args.submissions:
        # before any grading starts; a file too large is left to the grader, which reports it in the table
        _check_notebook_file("submission", Path(submission), clean_text(submission), SUBMISSION_MAX_BYTES)
    if args.csv is not None:
        if Path(args.csv).is_dir():
            raise ValueError(f"--csv must be a file name, got the folder {args.csv}")
        _check_folder_path("--csv's folder", Path(args.csv).parent)
    grades = grade_submissions(args.submissions, book, chapter=args.chapter, timeout=args.timeout,
                               memory_gib=MEMORY_GIB if args.memory is None else args.memory, budget=args.budget,
                               on_start=lambda path: print(f"grading {clean_text(path)} ...", file=sys.stderr,
                                                           flush=True))
    for grade in grades:
        for path in grade.tampered:  # loud: on stderr as well as in the table
            print(f"diffusion-lessons: WARNING: submission {clean_text(grade.submission)} modified "
                  f"{clean_text(path)}; restored, and the submission scores 0", file=sys.stderr)
    print(grades_table(grades))
    if args.csv:
        write_csv(grades, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0


def _book(args: argparse.Namespace) -> int:
    from .htmlbook import build_book

    _check_folder_path("--out", args.out)
    book = _load_book(args.manifest)
    _check_course_notebooks(book)
    pages = build_book(args.out, book, execute=args.execute, budget=args.budget)
    print(f"wrote {len(pages)} pages to {args.out}; open {Path(args.out) / 'index.html'}")
    return 0


def _add_teaching_parsers(sub) -> None:
    p = sub.add_parser("student", help="write student editions of every chapter (solutions replaced by stubs)")
    p.add_argument("outdir", help="folder for the student notebooks, e.g. _build/student")
    p.add_argument("--nbgrader", action="store_true",
                   help="instead, write nbgrader's source/ layout (solutions kept, hidden tests added) into OUTDIR")
    p.add_argument("--manifest", default=None, help="path to book.toml (default: found from here)")
    p.set_defaults(run=_student)
    p = sub.add_parser("learner", help="write your own copy of the lessons (stubs; outputs that reveal no answer "
                                       "kept); notebooks already there are never overwritten")
    p.add_argument("dir", help="folder for your copy, e.g. lessons")
    p.add_argument("--refresh", nargs="+", metavar="CHAPTER", default=None,
                   help="replace these chapters' notebooks by fresh ones (e.g. 01_markov_noising); "
                        "your copies move to DIR/.replaced/")
    p.add_argument("--manifest", default=None, help="path to book.toml (default: found from here)")
    p.set_defaults(run=_learner)
    p = sub.add_parser("grade", help="grade submitted notebooks: each exercise's checker, a pass/fail table")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb", help="notebooks handed in by students")
    p.add_argument("--chapter", default=None,
                   help="grade every submission as this chapter of book.toml (default: the chapter named in each "
                        "file name, e.g. alice_01_markov_noising.ipynb)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds for one submission's cells, all together, from its kernel's start (default 600)")
    p.add_argument("--memory", type=float, default=None, metavar="GIB",
                   help="memory cap of one submission's process, in GiB (default 4: every lesson needs under 1.5)")
    p.add_argument("--budget", choices=["smoke", "learner"], default="smoke",
                   help="the lessons' budget in the grading kernel (smoke: short training runs)")
    p.add_argument("--csv", default=None, help="also write one row per exercise to this CSV file")
    p.add_argument("--manifest", default=None, help="path to book.toml (default: found from here)")
    p.set_defaults(run=_grade)
    p = sub.add_parser("book", help="build the course book, a static HTML site")
    p.add_argument("--out", default="_build/book", help="output folder (default: _build/book)")
    p.add_argument("--execute", action="store_true", help="run each notebook first (default: committed outputs)")
    p.add_argument("--budget", choices=["smoke", "learner"], default="learner", help="budget for --execute")
    p.add_argument("--manifest", default=None, help="path to book.toml (default: found from here)")
    p.set_defaults(run=_book)


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a U-Net denoiser (also under torchrun)")
    p.add_argument("--dataset", required=True, help="mnist5k, sklearn_digits, or a folder of images")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt and summary.json go here")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps in total")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run even though --out holds one: its checkpoint.pt and summary.json are "
                        "replaced (without --resume or --overwrite, a run already in --out is an error)")
    p.add_argument("--split", choices=["all", "train", "test"], default=None,
                   help="mnist5k only: all (default), train = the first 400 of each digit, test = the last 100")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this (default: 64 for folders)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step over all processes")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay (its ceiling with --ema-power)")
    p.add_argument("--ema-power", type=float, default=0.0,
                   help="EMA warm-up: decay min(ema-decay, 1 - (1+k)^-power) after k steps, e.g. 0.75; 0: off")
    p.add_argument("--p-uncond", type=float, default=0.1,
                   help="--class-cond: share of labels dropped to 'no label' (classifier-free guidance)")
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--num-res-blocks", type=int, default=2, help="residual blocks per level")
    p.add_argument("--channel-mults", default="1,2,2", help="channels per level, e.g. 1,2,2,2")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--class-cond", action="store_true", help="condition on labels (for guidance)")
    p.add_argument("--prediction", choices=["eps", "v"], default="eps")
    p.add_argument("--objective", choices=["diffusion", "flow"], default="diffusion",
                   help="diffusion (DDPM, on --schedule) or flow (flow matching, lesson 09)")
    p.add_argument("--schedule", default="linear", help="linear, cosine or sigmoid")
    p.add_argument("--T", type=int, default=1000, help="diffusion steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status: 0, 2 for any error (one line on stderr), 130 after Ctrl-C."""
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lessons", help="list the chapters of the course")
    p.add_argument("--manifest", default=None, help="path to book.toml (default: found from here)")
    p.set_defaults(run=_lessons)
    p = sub.add_parser("quiz", help="print a lesson's quiz as text")
    p.add_argument("name", help=f"one of {available_quizzes()}")
    p.add_argument("--answers", action="store_true", help="include hints, answers and explanations")
    p.set_defaults(run=_quiz)
    _add_train_parser(sub)
    _add_teaching_parsers(sub)
    for p in sub.choices.values():  # --debug after the subcommand too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed on one line
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every error: one line, unless --debug asks for the traceback
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
