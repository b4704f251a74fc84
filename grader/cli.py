"""The ``grader`` command: release, autograde, feedback, export, bundle, check, progress, demo.

It works on the course at ``--course``, else the one around the working directory (the nearest directory,
going up, that holds an ``nbgrader_config.py``, as nbgrader finds it).
"""
from __future__ import annotations

import sys

# jsonschema (via nbformat) builds a grammar for IRI checking at import when rfc3987_syntax is installed (about
# 0.7 s); nbformat never checks IRIs. Leaving it out keeps `grader check` quick.
sys.modules.setdefault("rfc3987_syntax", None)

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from .course import Course, CourseError  # noqa: E402

from .trusted.sandbox import MODES  # noqa: E402

SANDBOX_CHOICES = list(MODES)


def _course(args) -> Course:
    return Course.at(args.course)


def cmd_release(args) -> int:
    from .release import release

    course = _course(args)
    for path in release(course, args.assignments or None):
        print(f"released {path.relative_to(course.root)}")
    return 0


def _announce_sandbox(course: Course, requested: str | None) -> None:
    """Say once, before grading, where student code will run (loudly when the sandbox is degraded)."""
    from .core import load_course_config
    from .trusted.sandbox import SandboxError, sandbox_status

    mode = requested or load_course_config(course).TrustedExecute.get("sandbox", "auto")
    try:
        used, message = sandbox_status(mode)
    except SandboxError as err:
        raise CourseError(str(err)) from None
    print(message if used == "bwrap" else f"WARNING: {message}", file=sys.stdout if used == "bwrap" else sys.stderr)


def _run_autograde(course: Course, args, students=None) -> "object":
    from .autograde import autograde
    from .progress import for_terminal

    _announce_sandbox(course, args.sandbox)
    report = autograde(course, args.assignments or None, students, workers=args.workers, scheduler=args.scheduler,
                       force=args.force, sandbox=args.sandbox, progress=for_terminal())
    print(report.summary())
    return report


def cmd_autograde(args) -> int:
    from .autograde import NoSubmissions

    course = _course(args)
    try:
        report = _run_autograde(course, args, args.student or None)
    except NoSubmissions as err:
        print(f"grader: {err}", file=sys.stderr)
        return 1
    return 1 if report.failures else 0


def cmd_feedback(args) -> int:
    from .autograde import feedback

    course = _course(args)
    for path in feedback(course, args.assignments or None, args.student or None):
        print(f"feedback {path.relative_to(course.root)}")
    return 0


def _canvas_ids(pairs: list[str] | None) -> dict[str, str]:
    ids = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise CourseError(f"--canvas-id {pair!r}: expected ASSIGNMENT=CANVAS_ID, e.g. 02_conv_forward=12345")
        ids[name] = value
    return ids


def cmd_export(args) -> int:
    from .scores import read_scores

    course = _course(args)
    table = read_scores(course, args.assignments or None, args.student or None, db_url=args.db_url)
    if not table.students:
        print("the gradebook holds no graded submission yet: run `grader autograde` first", file=sys.stderr)
        return 1
    print(table.render())
    out = Path(args.output or ("canvas.csv" if args.format == "canvas" else "scores.csv"))
    if args.format == "canvas":
        table.to_canvas_csv(out, _canvas_ids(args.canvas_id))
    else:
        table.to_csv(out)
    print(f"wrote {out}")
    return 0


def _learner_course(args) -> Course:
    """The course for a learner's command: --course, else the one around the working directory, else the one this
    grader was installed from (a learner checks ~/my-notebooks from anywhere)."""
    from .course import REPO_ROOT

    try:
        return _course(args)
    except CourseError:
        if args.course is None and (REPO_ROOT / "nbgrader_config.py").is_file():
            return Course(REPO_ROOT)
        raise


def cmd_check(args) -> int:
    from .selfstudy import check_paths

    course = _learner_course(args)
    options = {"sandbox": args.sandbox} if args.sandbox else {}
    paths = [Path(p) for p in args.paths]

    def show(result) -> None:
        print(result.render(sandbox=not show.said_sandbox))
        show.said_sandbox = show.said_sandbox or bool(result.sandbox)
        print(f"  checked in {time.monotonic() - show.started:.1f} s "
              f"({result.student_seconds:.1f} s of it in your code's kernel)", flush=True)
        show.started = time.monotonic()

    show.started, show.said_sandbox = time.monotonic(), False
    results = check_paths(paths, course, args.assignment, on_result=show, **options)
    if len(results) > 1:
        got, best = sum(r.score for r in results), sum(r.max_score for r in results)
        print(f"{len(results)} notebooks: {got:g}/{best:g} points")
    if args.watch:
        from .watch import watch_and_check

        return watch_and_check(paths, course, args.assignment, show, **options)
    return 0 if all(r.complete for r in results) else 1


def cmd_progress(args) -> int:
    from .selfstudy import progress

    course = _learner_course(args)
    options = {"sandbox": args.sandbox} if args.sandbox else {}
    folder = Path(args.folder)
    if not folder.is_dir():
        raise CourseError(f"{folder}: not a folder (give the folder that holds your notebooks)")
    print(f"grading the notebooks in {folder} ...", flush=True)
    report = progress(folder, course, on_result=lambda r: print(f"  {r.assignment}: {r.score:g}/{r.max_score:g}",
                                                                  flush=True), **options)
    print(report.render())
    return 0


def cmd_bundle(args) -> int:
    from .bundle import build

    course = _course(args)
    started = time.monotonic()
    bundle = build(course, Path(args.output) if args.output else None)

    def where(path: Path) -> Path:
        return path.relative_to(course.root) if path.is_relative_to(course.root) else path

    print(f"wrote {where(bundle.folder)}/ ({len(bundle.files)} files) and {where(bundle.archive)} "
          f"({bundle.archive.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
    print("  no solution code, no hidden test, no grader, no gradebook (every file scanned)")
    return 0


def cmd_demo(args) -> int:
    from . import sample_class
    from .autograde import feedback
    from .release import release
    from .scores import read_scores

    course = _course(args)
    started = time.monotonic()
    print("1/5 releasing notebooks/ from solutions/")
    release(course)
    print("2/5 building the sample class in submitted/:")
    sample_class.build(course)
    for student, what in sample_class.STUDENTS.items():
        print(f"    {student:18s} {what}")
    print("3/5 autograding every submission through the trusted grader")
    args.assignments, args.force = None, False
    report = _run_autograde(course, args, list(sample_class.STUDENTS))
    print("4/5 generating feedback")
    pages = feedback(course, students=list(sample_class.STUDENTS), log=lambda *_: None)
    print(f"    {len(pages)} feedback pages under {course.feedback.relative_to(course.root)}/")
    print("5/5 scores")
    table = read_scores(course, students=list(sample_class.STUDENTS))
    print(table.render())
    out = course.root / "scores.csv"
    table.to_csv(out)
    print(f"wrote {out.relative_to(course.root)}")
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    return 1 if report.failures else 0


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Release, autograde and report the ConvNet Workbook.")
    parser.add_argument("--course", help="course directory (default: the nearest directory, from here up, that "
                                         "holds an nbgrader_config.py)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help, assignments=True, students=False):
        p = sub.add_parser(name, help=help, description=help)
        if assignments:
            p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment ids (default: all)")
        if students:
            p.add_argument("--student", action="append", metavar="GLOB",
                           help="only students whose id matches this glob, e.g. 'alice' or 'sec2-*' (repeatable)")
        p.set_defaults(func=func)
        return p

    sandbox_help = ("where student code runs: auto (bubblewrap if installed, else rlimits with a warning), bwrap, "
                    "rlimits, none (default: c.TrustedExecute.sandbox in nbgrader_config.py, i.e. WORKBOOK_SANDBOX "
                    "or auto)")

    def grading_options(p):
        p.add_argument("--workers", type=_workers, help=f"grading worker processes on this machine (default: one "
                                                        f"per core, {os.cpu_count()} here)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on a Dask distributed cluster instead, e.g. tcp://10.0.0.5:8786")
        p.add_argument("--sandbox", choices=SANDBOX_CHOICES, help=sandbox_help)

    add("release", cmd_release, "regenerate notebooks/ from solutions/ (deterministic; refuses to leak)")
    p = add("autograde", cmd_autograde, "grade submitted/<student>/<assignment>/ into the gradebook and autograded/",
            students=True)
    grading_options(p)
    p.add_argument("--force", action="store_true", help="grade again what was already graded from the same bytes")
    add("feedback", cmd_feedback, "write feedback HTML for autograded submissions into feedback/", students=True)
    p = add("export", cmd_export, "print the per-question score table and write it as CSV", students=True)
    p.add_argument("--format", choices=["csv", "canvas"], default="csv",
                   help="csv: one column per graded cell, totals per notebook and overall (default); "
                        "canvas: Canvas's gradebook import CSV, one column per assignment")
    p.add_argument("--output", "-o", help="file to write (default: scores.csv, or canvas.csv with --format canvas)")
    p.add_argument("--canvas-id", action="append", metavar="ASSIGNMENT=ID",
                   help="the Canvas id of an assignment's column (repeatable); without one Canvas creates the "
                        "assignment on import")
    p.add_argument("--db-url", help="gradebook URL (default: the course's: WORKBOOK_DB_URL, else gradebook.db)")
    p = add("check", cmd_check, "grade your notebooks exactly as the instructor's autograder would: per exercise "
                                "the points, what failed and what to read", assignments=False)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a notebook, or a folder of your notebooks (any layout), e.g. "
                        "notebooks/02_conv_forward/conv_forward.ipynb or notebooks/")
    p.add_argument("--assignment", help="assignment id (default: told from the notebook's cells, else its folder)")
    p.add_argument("--sandbox", choices=SANDBOX_CHOICES, help=sandbox_help)
    p.add_argument("--watch", action="store_true",
                   help="after the first verdict, grade a notebook again each time it is saved (Ctrl-C stops)")
    p = add("progress", cmd_progress, "your state across the whole workbook: per notebook the points, the "
                                      "exercises done and the next one", assignments=False)
    p.add_argument("folder", help="the folder that holds your notebooks (any layout), e.g. notebooks/")
    p.add_argument("--sandbox", choices=SANDBOX_CHOICES, help=sandbox_help)
    p = add("bundle", cmd_bundle, "build what a student gets: the released notebooks, the student package as a wheel, "
                                  "requirements and a README, as a folder and a zip (no solutions, no grader)",
            assignments=False)
    p.add_argument("--output", "-o", metavar="DIR", help="where to write it (default: dist/ in the course)")
    p = add("demo", cmd_demo, "release, build the sample class, autograde it, write feedback and print the scores",
            assignments=False)
    grading_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as err:
        print(f"grader: {err}", file=sys.stderr)
        return 2
