"""The ``grader`` command."""
from __future__ import annotations

import argparse
import sys

from .course import Course, CourseError


def _cmd_release(args) -> int:
    course = Course.at(args.course)
    for path in __import__("grader.release", fromlist=["release"]).release(course, args.assignments or None):
        print(f"released {path.relative_to(course.root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__)
    parser.add_argument("--course", help="course root (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="regenerate notebooks/ from solutions/")
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    p.set_defaults(func=_cmd_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as err:
        print(f"grader: {err}", file=sys.stderr)
        return 2
