"""The ``grader`` command: release, autograde, feedback, export, check, demo.

Run from anywhere; it works on the course at ``--course`` (default: this repository).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .course import Course, CourseError
from .trusted.sandbox import MODES


def _course(args) -> Course:
    if getattr(args, "sandbox", None):
        os.environ["WORKBOOK_SANDBOX"] = args.sandbox  # read by nbgrader_config.py in the nbgrader process
    return Course.at(args.course)


def cmd_release(args) -> int:
    from .release import release

    course = _course(args)
    for path in release(course, args.assignments or None):
        print(f"released {path.relative_to(course.root)}")
    return 0


def _announce_sandbox() -> None:
    """Say once, before grading, where student code will run (loudly when the sandbox is degraded)."""
    from .trusted.sandbox import SandboxError, sandbox_status

    try:
        mode, message = sandbox_status(os.environ.get("WORKBOOK_SANDBOX", "auto"))
    except SandboxError as err:
        raise CourseError(str(err)) from None
    print(message if mode == "bwrap" else f"WARNING: {message}", file=sys.stdout if mode == "bwrap" else sys.stderr)


def cmd_autograde(args) -> int:
    from .autograde import autograde

    course = _course(args)
    _announce_sandbox()
    report = autograde(course, args.assignments or None, args.student or None)
    if report.failures:
        print(f"\n{len(report.failures)} submission(s) could not be graded; every other submission was.",
              file=sys.stderr)
        return 1
    return 0


def cmd_feedback(args) -> int:
    from .autograde import feedback

    course = _course(args)
    for path in feedback(course, args.assignments or None, args.student or None):
        print(f"feedback {path.relative_to(course.root)}")
    return 0


def cmd_export(args) -> int:
    from .scores import read_scores

    course = _course(args)
    table = read_scores(course, args.assignments or None, args.student or None, db_url=args.db_url)
    if not table.students:
        print("the gradebook holds no graded submission yet: run `grader autograde` first", file=sys.stderr)
        return 1
    print(table.render())
    out = Path(args.output)
    table.to_csv(out)
    print(f"wrote {out}")
    return 0


def cmd_check(args) -> int:
    from .check import check_notebook

    result = check_notebook(Path(args.notebook), assignment=args.assignment, course=_course(args))
    print(result.render())
    return 0 if result.complete else 1


def cmd_demo(args) -> int:
    from . import sample_class
    from .autograde import autograde, feedback
    from .release import release
    from .scores import read_scores

    course = _course(args)
    print("1/5 releasing notebooks/ from solutions/")
    release(course)
    print("2/5 building the sample class in submitted/:")
    sample_class.build(course)
    for student, what in sample_class.STUDENTS.items():
        print(f"    {student:18s} {what}")
    print("3/5 autograding every submission with nbgrader, through the trusted grader")
    _announce_sandbox()
    report = autograde(course, students=list(sample_class.STUDENTS))
    print("4/5 generating feedback")
    pages = feedback(course, students=list(sample_class.STUDENTS), log=lambda *_: None)
    print(f"    {len(pages)} feedback pages under {course.feedback.relative_to(course.root)}/")
    print("5/5 scores")
    table = read_scores(course, students=list(sample_class.STUDENTS))
    print(table.render())
    out = course.root / "scores.csv"
    table.to_csv(out)
    print(f"wrote {out.relative_to(course.root)}")
    return 1 if report.failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Release, autograde and report the ConvNet Workbook.")
    parser.add_argument("--course", help="course root (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help, assignments=True, students=False):
        p = sub.add_parser(name, help=help, description=help)
        if assignments:
            p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment ids (default: all)")
        if students:
            p.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
        p.set_defaults(func=func)
        return p

    sandbox_help = ("where student code runs: auto (bubblewrap if installed, else rlimits with a warning), bwrap, "
                    "rlimits, none (default: auto, or WORKBOOK_SANDBOX)")
    add("release", cmd_release, "regenerate notebooks/ from solutions/ (deterministic; refuses to leak)")
    p = add("autograde", cmd_autograde, "autograde submitted/<student>/<assignment>/ into autograded/", students=True)
    p.add_argument("--sandbox", choices=list(MODES), help=sandbox_help)
    add("feedback", cmd_feedback, "write feedback HTML for autograded submissions into feedback/", students=True)
    p = add("export", cmd_export, "print the per-question score table and write it as CSV", students=True)
    p.add_argument("--output", "-o", default="scores.csv", help="CSV file to write (default: scores.csv)")
    p.add_argument("--db-url", help="gradebook URL (default: the course's sqlite gradebook.db)")
    p = add("check", cmd_check, "grade one notebook exactly as the instructor's autograder would", assignments=False)
    p.add_argument("notebook", help="path to your notebook, e.g. notebooks/02_conv_forward/conv_forward.ipynb")
    p.add_argument("--assignment", help="assignment id (default: the notebook's folder name)")
    p.add_argument("--sandbox", choices=list(MODES), help=sandbox_help)
    add("demo", cmd_demo, "release, build the sample class, autograde it, write feedback and print the scores",
        assignments=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as err:
        print(f"grader: {err}", file=sys.stderr)
        return 2
