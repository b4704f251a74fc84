"""Grading one submission as a self-contained step, and the nbgrader configuration of the trusted path.

:func:`grade_notebook` takes a submitted notebook, its assignment and the course, and returns a
:class:`GradingResult` — per-test scores and messages, the import audit, the sandbox status — without touching
the gradebook or any shared state: parallel workers (and later a Dask cluster) can call it side by side, with
one writer recording the results. It serves ``grader check`` as well.

:func:`configure` puts the same machinery into ``nbgrader autograde``: call it from ``nbgrader_config.py``::

    from grader.trusted import configure
    configure(c)                       # c.TrustedExecute.* and c.ImportAudit.* settings still apply
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import determine_grade
from traitlets.config import Config, PyFileConfigLoader
from traitlets.config.loader import ConfigFileNotFound

from .. import cells
from ..course import Course, CourseError
from .audit import ImportAudit
from .engine import GradingError, NotebookReport
from .preprocessor import TrustedExecute, grade_in_place

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


@dataclass
class CellResult:
    grade_id: str
    score: float
    max_score: float
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class GradingResult:
    """The trusted verdict on one submitted notebook."""

    notebook: Path
    assignment: str
    cells: list[CellResult] = field(default_factory=list)
    report: NotebookReport = field(default_factory=NotebookReport)
    graded: nbformat.NotebookNode | None = None
    problem: str = ""

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells)

    def by_id(self) -> dict[str, CellResult]:
        return {c.grade_id: c for c in self.cells}

    def as_dict(self) -> dict:
        return {"notebook": str(self.notebook), "assignment": self.assignment, "score": self.score,
                "max_score": self.max_score, "problem": self.problem,
                "cells": [vars(c) for c in self.cells], "report": self.report.as_dict()}


def load_course_config(course: Course) -> Config:
    """The course's ``nbgrader_config.py`` as a traitlets Config (for TrustedExecute and ImportAudit settings)."""
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
    except ConfigFileNotFound:
        return Config()


def grade_notebook(submission: str | Path, assignment: str, course: Course | None = None, *,
                   config: Config | None = None, workdir: Path | None = None, **options) -> GradingResult:
    """Grade one submitted notebook through the trusted path; the submission itself is only read.

    The notebook is copied into a fresh working copy (``workdir``, default a temporary directory removed
    afterwards) together with the assignment's non-notebook files from ``solutions/``, exactly what the
    student's kernel may see. ``config`` (default: the course's ``nbgrader_config.py``) supplies
    ``TrustedExecute`` and ``ImportAudit`` settings; keyword ``options`` override ``TrustedExecute`` traits
    (``sandbox="none"`` for self-study without bubblewrap, ``timeout=30``, …).
    """
    course = course or Course.at()
    submission = Path(submission).resolve()
    source_path = course.source / assignment / submission.name
    if not source_path.is_file():
        raise CourseError(f"{submission.name} is not a notebook of assignment {assignment} "
                          f"(no {source_path.relative_to(course.root)})")
    config = Config(config) if config is not None else load_course_config(course)
    for key, value in options.items():
        config.TrustedExecute[key] = value
    executor = TrustedExecute(config=config)
    audit = ImportAudit(config=config)

    owned = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="grade-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        _working_copy(submission, course.source / assignment, work)
        nb = nbformat.read(str(work / submission.name), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        result = GradingResult(submission, assignment)
        try:
            result.report = grade_in_place(nb, cells.read(source_path), assignment, course.root, work,
                                           executor.options(), audit,
                                           require_full_sandbox=executor.require_full_sandbox)
        except GradingError as err:
            result.problem = str(err)
            return result
        result.graded = nb
        for cell in nb.cells:
            if cells.is_test(cell):
                score, max_score = determine_grade(cell)
                result.cells.append(CellResult(cells.grade_id(cell), float(score or 0), float(max_score),
                                               cells.error_message(cell)))
        return result
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def _working_copy(submission: Path, source_dir: Path, work: Path) -> None:
    """The submission's notebook, then the assignment's own files from the source (as nbgrader autograde does)."""
    shutil.copy2(submission, work / submission.name)
    for path in source_dir.rglob("*"):
        rel = path.relative_to(source_dir)
        if path.suffix == ".ipynb" or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.is_dir():
            (work / rel).mkdir(parents=True, exist_ok=True)
        else:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, work / rel)
