"""Grading throughput: stock ``nbgrader autograde`` against ``grader autograde`` on the same class, in one run.

    .venv/bin/python bench/grading_throughput.py            # the whole workbook, 24 students (216 notebooks)
    .venv/bin/python bench/grading_throughput.py --quick    # one assignment, 4 students: a smoke run

The class is generated from solutions/ by grader.sample_class's machinery: per assignment a complete, a
partly done, a buggy (the classic mistake), a CS231n-style and an untouched submission, repeated to ``--students``
in all, ``--slow`` of them students whose solutions are correct but slow (every solution function computes its
answer four times, like a naive implementation that redoes work). Each mode grades a fresh copy of the class:

  (a) stock nbgrader: ``nbgrader autograde`` with nbgrader's own Execute preprocessor, serially
      (the assignment is recorded with ``nbgrader generate_assignment`` first, not timed);
  (b) ``grader autograde --workers 1``;  (c) ``--workers 2``;
  (d) ``grader autograde --scheduler`` on a 2-worker Dask LocalCluster (cluster start-up not timed).

Times are wall times of the commands, start-up included. "student s" is the time the submissions' code spent
in their kernels (the core records it per notebook); "overhead/nb" is a worker's time per notebook minus that
(steady state: the first kernel of each worker is not launched ahead). For (a) nbgrader does not measure student
time; its overhead uses (b)'s student time for the same notebooks. Then ``grader check`` of one notebook.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader import cells, sample_class  # noqa: E402
from grader.course import Course  # noqa: E402

STOCK_CONFIG = """
# Stock nbgrader for the benchmark: nbgrader's own autograde steps (Execute in the student's kernel).
from nbgrader.converters import Autograde as _Autograde
from nbgrader.preprocessors import OverwriteCells as _OverwriteCells
c.Autograde.autograde_preprocessors = _Autograde.class_traits()["autograde_preprocessors"].default()
c.OverwriteCells.add_missing_cells = _OverwriteCells.class_traits()["add_missing_cells"].default()
"""

SLOWDOWN = """

_slow_calls = globals().setdefault("_slow_calls", [0])


def __redo(f):
    def slow(*args, **kwargs):
        if _slow_calls[0]:          # called from a slow function: that one already does its work four times
            return f(*args, **kwargs)
        _slow_calls[0] += 1
        try:
            for _ in range(3):
                f(*args, **kwargs)
            return f(*args, **kwargs)
        finally:
            _slow_calls[0] -= 1
    slow.__name__, slow.__doc__ = f.__name__, f.__doc__
    return slow
"""


def slow_notebook(course: Course, assignment: str, notebook: str) -> nbformat.NotebookNode:
    """The complete solution, with every solution function doing its work four times."""
    nb = sample_class.filled_notebook(course, assignment, notebook)
    for cell in nb.cells:
        if cells.is_solution(cell) and cell.cell_type == "code":
            names = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
            if names:
                cell.source += SLOWDOWN + "".join(f"{n} = __redo({n})\n" for n in names)
    return nb


def build_class(course: Course, assignments: list[str], students: int, slow: int) -> int:
    """``students`` in all: ``slow`` slow ones, the others the sample class's kinds in turn (complete, CS231n
    style, partial, buggy, untouched), each kind's second and later students copies of its first."""
    sample_class.build(course, assignments)
    kinds = list(sample_class.STUDENTS)
    for i in range(len(kinds), students - slow):
        kind = kinds[i % len(kinds)]
        shutil.copytree(course.submitted / kind, course.submitted / f"{kind}-{i // len(kinds) + 1}")
    for extra in kinds[students - slow:]:
        shutil.rmtree(course.submitted / extra)
    count = sum(1 for _ in course.submitted.glob("*/*/*.ipynb"))
    for i in range(slow):
        for assignment in assignments:
            for path in course.source_notebooks(assignment):
                target = course.submitted / f"sample-slow-{i + 1}" / assignment / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(slow_notebook(course, assignment, path.name), str(target))
                count += 1
    return count


def fresh_copy(template: Path, where: Path) -> Course:
    shutil.copytree(template, where, ignore=shutil.ignore_patterns("gradebook.db", "autograded", "feedback"))
    return Course(where)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e.setdefault("MPLBACKEND", "Agg")
    return e


def run(cmd: list[str], cwd: Path, extra_env: dict | None = None) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def stock(course: Course, assignments: list[str]) -> float:
    with open(course.root / "nbgrader_config.py", "a", encoding="utf-8") as fh:
        fh.write(STOCK_CONFIG)
    nbgrader = [sys.executable, "-m", "nbgrader"]
    extra = {"WORKBOOK_COURSE_ROOT": str(course.root)}
    with tempfile.TemporaryDirectory() as tmp:
        for a in assignments:
            run(nbgrader + ["generate_assignment", a, "--force", f"--CourseDirectory.release_directory={tmp}"],
                course.root, extra)
    return sum(run(nbgrader + ["autograde", a, "--create", "--force"], course.root, extra) for a in assignments)


def grader_run(course: Course, *flags: str) -> tuple[float, list[dict]]:
    seconds = run([sys.executable, "-m", "grader", "autograde", *flags], course.root)
    import sqlalchemy as sa

    from grader.gradebook import RESULTS, GradingState

    state = GradingState(course.db_url)
    with state.engine.connect() as conn:
        results = [json.loads(r) for r in conn.execute(sa.select(RESULTS.c.result)).scalars()]
    state.close()
    bad = [r for r in results if r["problem"]]
    if bad:
        sys.exit(f"{len(bad)} notebook(s) could not be graded: {bad[0]['problem']}")
    return seconds, results


def check_time(course: Course, assignment: str) -> tuple[float, float]:
    [source] = course.source_notebooks(assignment)
    notebook = course.submitted / "sample-complete" / assignment / source.name
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grader", "check", str(notebook)], cwd=course.root, env=env(),
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    line = [text for text in proc.stdout.splitlines() if "checked in" in text][-1]
    student = float(line.split("(")[1].split(" s")[0])
    return wall, student


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one assignment, four students: a smoke run")
    parser.add_argument("--students", type=int, default=24, help="students in the class (default 24)")
    parser.add_argument("--slow", type=int, default=3,
                        help="how many of them have slow naive solutions (default 3)")
    parser.add_argument("--skip-stock", action="store_true", help="leave out (a), the slowest mode")
    args = parser.parse_args()

    repo = Course(REPO)
    assignments = repo.assignments()[:1] if args.quick else repo.assignments()
    slow = 0 if args.quick else min(args.slow, args.students)
    students = 4 if args.quick else args.students
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        shutil.copy2(REPO / "nbgrader_config.py", template)
        for step in ("solutions", "notebooks"):
            shutil.copytree(REPO / step, template / step)
        n = build_class(Course(template), assignments, students, slow)
        print(f"class: {n} notebooks: {students} students ({slow} of them slow) x {len(assignments)} assignment(s), "
              f"on {os.cpu_count()} cores")

        rows: dict[str, dict] = {}
        if not args.skip_stock:
            print("(a) stock nbgrader autograde, serially ...", flush=True)
            rows["a"] = {"label": "(a) stock nbgrader, serial", "wall": stock(fresh_copy(template, Path(tmp) / "a"),
                                                                              assignments)}
        for key, label, flags in (("b", "(b) grader --workers 1", ["--workers", "1"]),
                                  ("c", "(c) grader --workers 2", ["--workers", "2"])):
            print(f"{label} ...", flush=True)
            wall, results = grader_run(fresh_copy(template, Path(tmp) / key), *flags)
            rows[key] = {"label": label, "wall": wall, "results": results, "workers": int(flags[1])}
        print("(d) grader --scheduler (Dask LocalCluster, 2 workers) ...", flush=True)
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            wall, results = grader_run(fresh_copy(template, Path(tmp) / "d"), "--scheduler", cluster.scheduler_address)
        rows["d"] = {"label": "(d) grader on Dask, 2 workers", "wall": wall, "results": results, "workers": 2}
        check_wall, check_student = check_time(Course(template), assignments[0])

    student_b = sum(r["report"]["student_seconds"] for r in rows["b"]["results"])
    print()
    header = f"{'mode':32s} {'wall s':>8s} {'s/nb':>6s} {'nb/min':>7s} {'vs (a)':>7s} {'vs (b)':>7s} " \
             f"{'student s':>9s} {'overhead/nb':>11s}"
    print(header)
    print("-" * len(header))
    for key, row in rows.items():
        wall = row["wall"]
        if "results" in row:
            results = row["results"]
            student = sum(r["report"]["student_seconds"] for r in results)
            # a worker's own time per notebook minus the student code's, from the second notebook of a worker on
            steady = sorted(results, key=lambda r: r["report"]["startup_seconds"])[:-row["workers"]] or results
            overhead = sum(r["seconds"] - r["report"]["student_seconds"] for r in steady) / len(steady)
            over = f"{overhead:11.2f}"
        else:
            student, over = student_b, f"{(wall - student_b) / n:10.2f}*"
        vs_a = f"{rows['a']['wall'] / wall:6.2f}x" if "a" in rows else "    n/a"
        vs_b = f"{rows['b']['wall'] / wall:6.2f}x"
        print(f"{row['label']:32s} {wall:8.1f} {wall / n:6.2f} {60 * n / wall:7.1f} {vs_a} {vs_b} {student:9.1f} "
              f"{over}")
    if "a" in rows:
        print("* (a): wall time per notebook minus (b)'s student time (nbgrader does not measure it)")
    print(f"\ngrader check of one notebook ({assignments[0]}): {check_wall:.2f} s wall, {check_student:.2f} s in the "
          f"student's kernel, {check_wall - check_student:.2f} s overhead")
    b, c = rows["b"]["wall"], rows["c"]["wall"]
    b_faster = 'yes' if 'a' in rows and b < rows['a']['wall'] else 'no' if 'a' in rows else 'n/a'
    print(f"targets: (b) faster than (a): {b_faster}; "
          f"(c) >= 1.7x (b): {b / c:.2f}x; grader check <= 3 s + student time: "
          f"{'yes' if check_wall - check_student <= 3 else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
