"""The nbgrader preprocessor that replaces ``Execute`` in ``nbgrader autograde``.

Configure it in place of nbgrader's ``Execute`` (see :func:`grader.trusted.autograde_config`)::

    c.Autograde.autograde_preprocessors = [
        "grader.trusted.preprocessor.TrustedExecute",
        "nbgrader.preprocessors.IgnorePattern", "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput", "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties", "nbgrader.preprocessors.CheckCellMetadata"]

It grades the notebook with :class:`~grader.trusted.engine.GradingEngine` (student code in the sandboxed
kernel, test cells in this process), so the outputs that ``SaveAutoGrades`` scores are the trusted side's. It
puts a short markdown notice at the top of the notebook (sandbox, restarts, restored cells, import audit), so
the feedback shows it. The kernel works in a scratch copy of the assignment's files, never in ``autograded/``.

``grader autograde`` does not go through nbgrader's converter: it grades with :mod:`grader.core` (the same
engine) and records through nbgrader's own preprocessors and gradebook API. This class is for instructors who
call ``nbgrader autograde`` directly.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

from .. import cells
from ..course import Course
from .audit import ImportAudit
from .engine import GradingError, grade_in_place
from .places import scrub_before_grading
from .settings import TrustedSettings


class TrustedExecute(NbGraderPreprocessor, TrustedSettings):
    """Run a submission: student cells in a sandboxed kernel, test cells in the trusted grader.

    Its settings are :class:`~grader.trusted.settings.TrustedSettings` (``c.TrustedExecute.*``).
    """

    def course(self) -> Course:
        return Course.at(self.course_root or os.environ.get("WORKBOOK_COURSE_ROOT") or None)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        assignment, notebook = info["assignment"], info["notebook"]
        course = self.course()
        source_path = course.source / assignment / f"{notebook}.ipynb"
        if not source_path.is_file():
            raise GradingError(f"no source notebook {source_path} to take the test cells from")
        build = Path(resources.get("metadata", {}).get("path") or os.getcwd()).resolve()
        # nbgrader copied the submission's files into autograded/ before this step: remove what the submission
        # planted there (records, symlinks to host files, large files), then give the kernel a copy of its own that
        # never follows a symlink.
        scrub_before_grading(build, course, assignment, info.get("student"), log=self.log.warning)
        workdir = Path(tempfile.mkdtemp(prefix="wb-grade-"))  # the kernel's own copy; handed to its user
        try:
            shutil.copytree(build, workdir, symlinks=True, ignore=shutil.ignore_patterns("*.ipynb", ".*"),
                            dirs_exist_ok=True)
            report = grade_in_place(nb, cells.read(source_path), assignment, course.root, workdir, self.options(),
                                    ImportAudit(parent=self), log=self.log.info,
                                    require_full_sandbox=self.require_full_sandbox)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        who = f"{info.get('student', '?')}/{assignment}/{notebook}"
        if report.degraded:
            self.log.warning("%s: %s", who, report.sandbox_message)
        for finding in report.findings:
            self.log.warning("%s: import audit: %s", who, finding.describe())
        for event in report.events:
            self.log.warning("%s: %s", who, event)
        resources["trusted_grading"] = report.as_dict()
        return nb, resources
