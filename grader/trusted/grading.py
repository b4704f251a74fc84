"""Grading one notebook through the trusted path, and the nbgrader configuration of that path.

:func:`grade_notebook` grades a notebook file with the grading core (:mod:`grader.core`), the same function
``grader check`` and ``grader autograde`` use; it touches neither the gradebook nor any shared state.

:func:`configure` puts the same engine into ``nbgrader autograde``: call it from ``nbgrader_config.py``::

    from grader.trusted import configure
    configure(c)                       # c.TrustedExecute.* and c.ImportAudit.* settings still apply
"""
from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from ..core import CellResult, GradingResult, Grader, load_course_config  # noqa: F401  (re-exported)
from ..course import Course

AUTOGRADE_PREPROCESSORS = [
    "grader.trusted.preprocessor.TrustedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]


def configure(c: Config) -> Config:
    """Make ``nbgrader autograde`` grade through the trusted path (``TrustedExecute`` in place of ``Execute``)."""
    c.Autograde.autograde_preprocessors = list(AUTOGRADE_PREPROCESSORS)
    c.OverwriteCells.add_missing_cells = True
    return c


def autograde_flags() -> list[str]:
    """The same as :func:`configure`, as command-line flags for ``nbgrader autograde``."""
    return ["--OverwriteCells.add_missing_cells=True"] + \
        [f"--Autograde.autograde_preprocessors={name}" for name in AUTOGRADE_PREPROCESSORS]


def grade_notebook(submission: str | Path, assignment: str, course: Course | None = None, *,
                   config: Config | None = None, student: str = "self", **options) -> GradingResult:
    """Grade one notebook file through the trusted path; the file itself is only read.

    ``config`` (default: the course's ``nbgrader_config.py``) supplies ``TrustedExecute``, ``ImportAudit`` and
    ``SubmissionLimits`` settings; keyword ``options`` override ``TrustedExecute`` traits (``sandbox="none"``
    for self-study without bubblewrap, ``timeout=30``, …).
    """
    course = course or Course.at()
    submission = Path(submission)
    with Grader(course, config, **options) as grader:
        return grader.grade(assignment, student, submission.read_bytes(), notebook=submission.name)
