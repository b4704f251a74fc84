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
the feedback shows it, and writes the same as ``<notebook>.grading.json`` beside the autograded notebook for the
grading summary.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Dict, Enum, Float, Integer, Unicode

from .. import cells
from ..course import Course, CourseError
from .audit import ImportAudit
from .engine import GradingEngine, GradingError
from .places import scrub_before_grading
from .sandbox import MODES, Limits
from .session import Options

NOTICE_TAG = "trusted-grader-notice"
SUMMARY_SUFFIX = ".grading.json"


class TrustedExecute(NbGraderPreprocessor):
    """Run a submission: student cells in a sandboxed kernel, test cells in the trusted grader."""

    timeout = Float(120, help="Seconds a cell (a student cell, or a test cell's calls into student code) may "
                              "take before the kernel is killed.").tag(config=True)
    call_timeout = Float(60, help="Seconds one call of a student function may take.").tag(config=True)
    notebook_timeout = Float(1800, help="Seconds the whole notebook may take.").tag(config=True)
    startup_timeout = Float(60, help="Seconds the kernel may take to start.").tag(config=True)
    max_call_bytes = Integer(64 << 20, help="Bytes one value crossing from the kernel may take.").tag(config=True)
    max_output_bytes = Integer(1 << 20, help="Output bytes of a cell kept in the notebook.").tag(config=True)
    kill_output_bytes = Integer(16 << 20, help="Output bytes after which the kernel is killed.").tag(config=True)
    max_restarts = Integer(3, help="Kernel restarts per notebook after a crash or kill.").tag(config=True)
    sandbox = Enum(list(MODES), "auto",
                   help="auto: bubblewrap where usable, else the degraded rlimits fallback.").tag(config=True)
    require_full_sandbox = Bool(False, help="Refuse to grade unless the bubblewrap sandbox is in use."
                                ).tag(config=True)
    course_root = Unicode("", help="Course root (default: WORKBOOK_COURSE_ROOT, else the working directory)."
                          ).tag(config=True)
    execution = Unicode("autograde").tag(config=True)
    limits = Dict(help="The sandbox's resource limits (names of grader.trusted.sandbox.Limits: memory, processes, "
                       "address_space, cpu_seconds, open_files, file_size, tmpfs_size); see nbgrader_config.py"
                  ).tag(config=True)

    def options(self) -> Options:
        return Options(cell_timeout=self.timeout, call_timeout=self.call_timeout,
                       notebook_timeout=self.notebook_timeout, startup_timeout=self.startup_timeout,
                       max_call_bytes=self.max_call_bytes, max_output_bytes=self.max_output_bytes,
                       kill_output_bytes=self.kill_output_bytes, max_restarts=self.max_restarts,
                       sandbox=self.sandbox, execution=self.execution, limits=Limits.from_table(self.limits))

    def course(self) -> Course:
        if self.course_root:
            return Course.at(self.course_root)
        try:
            return Course.at(os.environ.get("WORKBOOK_COURSE_ROOT") or os.getcwd())
        except CourseError:
            return Course.at()

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        assignment, notebook = info["assignment"], info["notebook"]
        course = self.course()
        source_path = course.source / assignment / f"{notebook}.ipynb"
        if not source_path.is_file():
            raise GradingError(f"no source notebook {source_path} to take the test cells from")
        workdir = Path(resources.get("metadata", {}).get("path") or os.getcwd()).resolve()
        scrub_before_grading(workdir, course, assignment, info.get("student"), log=self.log.warning)
        report = grade_in_place(nb, cells.read(source_path), assignment, course.root, workdir, self.options(),
                                ImportAudit(parent=self), log=self.log.info,
                                require_full_sandbox=self.require_full_sandbox)
        who = f"{info.get('student', '?')}/{assignment}/{notebook}"
        if report.degraded:
            self.log.warning("%s: %s", who, report.sandbox_message)
        for finding in report.findings:
            self.log.warning("%s: import audit: %s", who, finding.describe())
        for event in report.events:
            self.log.warning("%s: %s", who, event)
        resources["trusted_grading"] = report.as_dict()
        resources.setdefault("outputs", {})[notebook + SUMMARY_SUFFIX] = \
            json.dumps(report.as_dict(), indent=1).encode("utf-8")
        return nb, resources


def grade_in_place(nb, source_nb, assignment: str, course_root: Path, workdir: Path, options: Options,
                   audit: ImportAudit, log=lambda s: None, require_full_sandbox: bool = False):
    """Grade ``nb`` (modified in place: outputs, restored test cells, the notice cell); return the report."""
    nb.cells = [c for c in nb.cells if NOTICE_TAG not in c.get("metadata", {}).get("tags", [])]
    engine = GradingEngine(assignment, course_root, options, audit, log=log)
    if require_full_sandbox:
        from .kernels import sandbox_status
        mode, message = sandbox_status(options.sandbox)
        if mode != "bwrap":
            raise GradingError(f"the full sandbox is required but unavailable: {message}")
    report = engine.run(nb, source_nb, workdir)
    notice = nbformat.v4.new_markdown_cell(report.notice_markdown(), metadata={"tags": [NOTICE_TAG]})
    notice.pop("id", None)
    nb.cells.insert(0, notice)
    return report
