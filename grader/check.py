"""``grader check PATH``: a learner's notebooks graded exactly as the instructor's autograder grades them.

The same grading core as ``grader autograde`` (:mod:`grader.core`): same hidden tests, same points, the same
trusted engine, in this process, with no gradebook. To be quick it launches the kernel first and loads the
assignment's reference while the kernel boots. The learner's files are only read. Which assignment a notebook
is, and how its verdict is grouped by exercise, is :mod:`grader.selfstudy`'s part.

One difference from ``grader autograde``: with no gradebook there is no nbgrader sanitizing step, so a notebook
whose locked cells were edited is graded with the instructor's cells restored (and says so) instead of being
refused.
"""
from __future__ import annotations

from pathlib import Path

from .core import Grader
from .course import Course, CourseError
from .selfstudy import Catalogue, CheckResult, grade_one

__all__ = ["CheckResult", "check_notebook"]


def check_notebook(notebook: Path, assignment: str | None = None, course: Course | None = None,
                   **options) -> CheckResult:
    """Grade ``notebook`` (its assignment found from its contents, else its folder's name) through the core."""
    course = course or Course.at()
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise CourseError(f"{notebook}: no such file")
    with Grader(course, **options) as grader:
        return grade_one(grader, Catalogue(course), notebook, assignment)
