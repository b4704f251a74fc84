"""``grader release``: regenerate ``notebooks/`` from ``solutions/``, deterministically.

nbgrader's ``generate_assignment`` (run in this process) clears solutions and hidden tests, locks cells and computes
checksums.
The result is then written back in one canonical form (nbformat's JSON, outputs and execution counts
cleared, no volatile metadata), so the same sources always give byte-identical notebooks: the committed
release can be compared with a fresh one (tests/test_release.py) and a stale release fails the suite.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat

from .course import Course
from .leaks import scan_release
from .nbgrader_run import NbgraderError

VOLATILE_NOTEBOOK_METADATA = ("widgets", "toc", "varInspector", "celltoolbar")


def canonical(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with outputs, execution counts and editor state removed."""
    for key in VOLATILE_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def write_canonical(nb: nbformat.NotebookNode, path: Path) -> None:
    text = nbformat.writes(canonical(nb), version=4)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def generate(course: Course, assignment: str, out_dir: Path, *, db: bool) -> list[Path]:
    """Generate the student version of ``assignment`` into ``out_dir/<assignment>``; return its notebooks.

    nbgrader's own ``generate_assignment`` does it, in this process (``NbGraderAPI``); ``db=False`` is its
    ``--no-db``: the gradebook is not touched.
    """
    from .gradebook import course_config, nbgrader_api

    course.check_assignment(assignment)
    config = course_config(course, **{"CourseDirectory.release_directory": str(out_dir)})
    if db:
        from .gradebook import GradingState

        GradingState(course.db_url).close()   # a new gradebook is created without nbgrader's `alembic` subprocess
    else:
        config.SaveCells.enabled = False
        config.GenerateAssignment.no_database = True
    outcome = nbgrader_api(config).generate_assignment(assignment, force=True, create=True)
    if not outcome["success"]:
        tail = "\n".join((outcome.get("error") or outcome.get("log") or "").strip().splitlines()[-25:])
        raise NbgraderError(f"nbgrader's generate_assignment of {assignment} failed in {course.root}:\n{tail}")
    notebooks = sorted((out_dir / assignment).glob("*.ipynb"))
    for path in notebooks:
        write_canonical(nbformat.read(str(path), as_version=4), path)
    return notebooks


def release(course: Course, assignments: list[str] | None = None, *, db: bool = True) -> list[Path]:
    """Regenerate ``notebooks/<assignment>`` for each assignment and scan it for leaks.

    The new release is built in a temporary directory and replaces the old one only when it is complete
    and clean, so a failed release never leaves ``notebooks/`` half written.
    """
    written = []
    for assignment in assignments or course.assignments():
        with tempfile.TemporaryDirectory(prefix="release-") as tmp:
            notebooks = generate(course, assignment, Path(tmp), db=db)
            for path in notebooks:
                findings = scan_release(course.source / assignment / path.name, path)
                if findings:
                    raise SystemExit(f"release of {assignment} refused, it would leak:\n  " + "\n  ".join(findings))
            target = course.release / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(Path(tmp) / assignment, target)
            written += [target / p.name for p in notebooks]
    return written


def stale(course: Course, assignments: list[str] | None = None) -> list[str]:
    """What in ``notebooks/`` differs from a fresh release of ``solutions/``; an empty list means current."""
    problems = []
    for assignment in assignments or course.assignments():
        with tempfile.TemporaryDirectory(prefix="fresh-") as tmp:
            fresh = {p.name: p for p in generate(course, assignment, Path(tmp), db=False)}
            committed = {p.name: p for p in course.release_notebooks(assignment)}
            for name in sorted(fresh.keys() | committed.keys()):
                where = f"{course.release.name}/{assignment}/{name}"
                if name not in committed:
                    problems.append(f"{where} is missing")
                elif name not in fresh:
                    problems.append(f"{where} has no source notebook")
                elif fresh[name].read_bytes() != committed[name].read_bytes():
                    problems.append(f"{where} differs from a fresh release of {course.source.name}/{assignment}/{name}")
    return problems
