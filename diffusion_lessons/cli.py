"""The ``diffusion-lessons`` command.

    diffusion-lessons lessons              the chapters of book.toml, with objectives and minutes
    diffusion-lessons quiz NAME [--answers]  a lesson's quiz as text (answers hidden by default)
"""

from __future__ import annotations

import argparse
import sys

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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"diffusion-lessons: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
