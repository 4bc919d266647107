"""The ``diffusion-lessons`` command.

    diffusion-lessons lessons                the chapters of book.toml, with objectives and minutes
    diffusion-lessons quiz NAME [--answers]  a lesson's quiz as text (answers hidden by default)
    diffusion-lessons train --dataset mnist5k --steps N --out runs/NAME [--resume]
    diffusion-lessons student OUTDIR         student editions: solutions replaced by stubs, outputs cleared
    diffusion-lessons learner DIR [--refresh CHAPTER ...]   your own copy of the lessons (make lab): stubs,
                                             answers' outputs cleared; a notebook already in DIR is never overwritten
    diffusion-lessons grade SUBMISSION.ipynb ...   run each submission's exercise checkers; a pass/fail table
    diffusion-lessons book [--out DIR]       the course book as a static HTML site (default _build/book)

Training on several GPUs (or CPU processes) goes through torchrun:

    torchrun --nproc_per_node=4 -m diffusion_lessons.cli train --dataset mnist5k --steps 20000 --out runs/big
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from .book import load_book
from .quiz import available_quizzes, load_quiz


def _lessons(args: argparse.Namespace) -> int:
    book = load_book(args.manifest)
    print(f"{book.title}\n")
    for n, c in enumerate(book.chapters, 1):
        print(f"{n:2d}. {c.title}  ({c.notebook}, about {c.minutes:g} min on CPU)")
        for objective in c.objectives:
            print(f"      - {objective}")
    return 0


def _quiz(args: argparse.Namespace) -> int:
    print(load_quiz(args.name).to_markdown(answers=args.answers))
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from .data import IMAGE_DATASETS, image_folder
    from .training import TrainConfig, train
    from .unet import UNet, UNetConfig

    labels = None
    if args.dataset in IMAGE_DATASETS:
        images, labels = IMAGE_DATASETS[args.dataset](**({"split": args.split} if args.dataset == "mnist5k" else {}))
    elif Path(args.dataset).is_dir():
        images = image_folder(args.dataset, args.image_size or 64)
    else:
        raise ValueError(f"--dataset must be one of {sorted(IMAGE_DATASETS)} or a folder of images, "
                         f"got {args.dataset!r}")
    size = images.shape[-1]
    if args.image_size and args.image_size != size and args.dataset in IMAGE_DATASETS:
        images = torch.nn.functional.interpolate(images, size=args.image_size, mode="bilinear", antialias=True)
        size = args.image_size
    mults = tuple(int(m) for m in args.channel_mults.split(","))
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
        ema_decay=args.ema_decay, prediction=args.prediction, schedule=args.schedule, T=args.T, seed=args.seed,
        device=args.device, precision=args.precision, compile=args.compile, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, num_workers=args.num_workers,
    )
    torch.manual_seed(config.seed)  # the initial weights
    model = UNet(model_config)
    out = Path(args.out)
    result = train(model, images, config, labels=labels if model_config.num_classes else None, out_dir=out,
                   resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        summary = {"steps": result.steps, "final_loss": sum(result.losses[-50:]) / len(result.losses[-50:]),
                   "images_per_second": result.images_per_second, "dataset": args.dataset, "split": args.split,
                   "model_config": model_config.to_dict(), "train_config": asdict(config)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"trained {result.steps} steps; final loss {summary['final_loss']:.4f}; "
              f"{result.images_per_second:.0f} images/s; checkpoint: {out / 'checkpoint.pt'}")
    return 0


def _student(args: argparse.Namespace) -> int:
    from .student import write_nbgrader_source, write_student_editions

    write = write_nbgrader_source if args.nbgrader else write_student_editions
    for path in write(args.outdir, load_book(args.manifest)):
        print(path)
    return 0


def _learner(args: argparse.Namespace) -> int:
    from .student import write_learner_editions

    try:
        copies = write_learner_editions(args.dir, load_book(args.manifest), refresh=args.refresh or ())
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
    from .grading import MEMORY_GIB, clean_text, grade_submissions, grades_table, write_csv

    book = load_book(args.manifest)
    for submission in args.submissions:
        if not Path(submission).is_file():
            raise FileNotFoundError(f"no such submission: {clean_text(submission)}")
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

    pages = build_book(args.out, load_book(args.manifest), execute=args.execute, budget=args.budget)
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
    p.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="mnist5k only: train = the first 400 of each digit, test = the last 100")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this (default: 64 for folders)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step over all processes")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--num-res-blocks", type=int, default=2, help="residual blocks per level")
    p.add_argument("--channel-mults", default="1,2,2", help="channels per level, e.g. 1,2,2,2")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--class-cond", action="store_true", help="condition on labels (for guidance)")
    p.add_argument("--prediction", choices=["eps", "v"], default="eps")
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
    parser = argparse.ArgumentParser(prog="diffusion-lessons", description=__doc__.split("\n")[0])
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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"diffusion-lessons: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
