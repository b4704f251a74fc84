"""The grading core: one submitted notebook in, one typed :class:`GradingResult` out.

:func:`grade_submission` is the one way a notebook is graded — by ``grader check``, by ``grader autograde``'s
workers (local processes or a Dask cluster) and by ``grader demo``:

1. :func:`read_submission` turns the submitted bytes into a notebook or says, in one sentence, why it cannot
   be graded (:class:`SubmissionProblem`: too large, not UTF-8, not JSON, not a notebook, too many cells,
   another assignment's notebook);
2. an optional ``sanitize`` step runs first where a gradebook is at hand (``grader autograde`` passes nbgrader's
   own sanitizing preprocessors, see :mod:`grader.gradebook`);
3. :func:`grader.trusted.engine.grade_in_place` grades it: student code in a sandboxed kernel, test cells here,
   in the grader's process;
4. the scores are nbgrader's rule (``nbgrader.utils.determine_grade``) applied to the outputs the trusted side
   wrote. Nothing is read back from a file the student's kernel could write.

A :class:`Grader` is a warm worker: it reads the course's configuration, works out the sandbox status and loads
each assignment's reference once, and launches the next submission's kernel while the current one is graded.
It never touches the gradebook; results are plain data (:meth:`GradingResult.to_dict`) that one writer records.

This module imports neither nbgrader's applications nor its gradebook, so ``grader check`` starts quickly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat
from traitlets import Integer
from traitlets.config import Config, LoggingConfigurable, PyFileConfigLoader
from traitlets.config.loader import ConfigFileNotFound

from . import cells
from .course import Course, CourseError
from .trusted.audit import ImportAudit
from .trusted.engine import GradingError, NotebookReport, grade_in_place
from .trusted.session import KernelSession, Options
from .trusted.settings import trusted_settings


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- results --------------------------------------------------------------------------------------------------------
@dataclass
class CellResult:
    """The verdict on one graded cell."""

    grade_id: str
    score: float
    max_score: float
    message: str = ""

    @property
    def verdict(self) -> str:
        """"pass" (full marks), "partial" or "fail"."""
        if self.score >= self.max_score:
            return "pass"
        return "partial" if self.score > 0 else "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return {"grade_id": self.grade_id, "score": self.score, "max_score": self.max_score,
                "verdict": self.verdict, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict) -> "CellResult":
        return cls(str(data["grade_id"]), float(data["score"]), float(data["max_score"]), str(data["message"]))


@dataclass
class GradingResult:
    """The trusted verdict on one submitted notebook.

    ``problem`` is non-empty when the notebook could not be graded at all (the reason, in one sentence); its
    cells then hold nothing and the writer records 0 for every graded cell. ``report`` carries the sandbox
    status, restarts, restored cells, import-audit findings and timings; ``graded`` the notebook as graded
    (test cells restored and run by the grader), which the writer puts in ``autograded/``.
    """

    assignment: str
    notebook: str                     # file name, e.g. conv_forward.ipynb
    student: str = ""
    submission_sha256: str = ""       # of the bytes as submitted
    source_sha256: str = ""           # of the source notebook it was graded against
    cells: list[CellResult] = field(default_factory=list)
    report: NotebookReport = field(default_factory=NotebookReport)
    graded: nbformat.NotebookNode | None = None
    problem: str = ""
    seconds: float = 0.0              # wall time in the worker, reading and bookkeeping included

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells)

    def by_id(self) -> dict[str, CellResult]:
        return {c.grade_id: c for c in self.cells}

    def verdicts(self) -> dict[str, tuple[float, float]]:
        return {c.grade_id: (c.score, c.max_score) for c in self.cells}

    def notes(self) -> list[str]:
        """What the instructor should know beyond the scores (the sandbox status is said once per run instead)."""
        notes = []
        if self.report.restarts:
            notes.append(f"the kernel was restarted {self.report.restarts} time(s): "
                         + "; ".join(self.report.events)[:300])
        imports = sorted({f.module for f in self.report.findings if f.how != "loaded at run time"})
        if imports:
            notes.append(f"import audit ({self.report.policy}): imports outside the allowed list: "
                         + ", ".join(imports))
        return notes

    def to_dict(self, with_notebook: bool = True) -> dict:
        """Plain data (JSON-compatible) — what crosses from a worker to the writer."""
        return {"assignment": self.assignment, "notebook": self.notebook, "student": self.student,
                "submission_sha256": self.submission_sha256, "source_sha256": self.source_sha256,
                "cells": [c.to_dict() for c in self.cells], "report": self.report.as_dict(),
                "graded": nbformat.writes(self.graded) if (with_notebook and self.graded is not None) else None,
                "problem": self.problem, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict) -> "GradingResult":
        graded = data.get("graded")
        return cls(assignment=data["assignment"], notebook=data["notebook"], student=data["student"],
                   submission_sha256=data["submission_sha256"], source_sha256=data["source_sha256"],
                   cells=[CellResult.from_dict(c) for c in data["cells"]],
                   report=NotebookReport.from_dict(data["report"]),
                   graded=nbformat.reads(graded, as_version=4) if graded else None,
                   problem=data["problem"], seconds=float(data.get("seconds", 0.0)))


# -- reading a submission -------------------------------------------------------------------------------------------
class SubmissionProblem(Exception):
    """A submission that cannot be graded; the message says why in one sentence a student can act on."""


class SubmissionLimits(LoggingConfigurable):
    """What a submitted notebook may be before the grader refuses to read it (``c.SubmissionLimits.*``)."""

    max_bytes = Integer(20 << 20, help="Largest notebook file read, in bytes (outputs included).").tag(config=True)
    max_cells = Integer(2000, help="Most cells a notebook may have.").tag(config=True)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.0f} KB"


def read_submission(data: bytes, assignment: str, course: Course, limits: SubmissionLimits | None = None,
                    source_ids: dict[str, set[str]] | None = None) -> nbformat.NotebookNode:
    """The submitted bytes as a notebook of ``assignment``, or :class:`SubmissionProblem` saying why not.

    ``source_ids``: assignment -> grade ids of its source notebook(s), to recognise another assignment's notebook.
    """
    limits = limits or SubmissionLimits()
    if len(data) > limits.max_bytes:
        raise SubmissionProblem(f"the file is {_size(len(data))}, more than the limit of {_size(limits.max_bytes)} "
                                f"(clear the notebook's outputs and submit again)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SubmissionProblem(f"the file is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
                                f"a notebook is JSON in UTF-8") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SubmissionProblem(f"the file is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                                f"was it saved by Jupyter?") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or "nbformat" not in raw:
        raise SubmissionProblem("the file is JSON but not a Jupyter notebook (no 'cells' list and 'nbformat' version)")
    if len(raw["cells"]) > limits.max_cells:
        raise SubmissionProblem(f"the notebook has {len(raw['cells']):,} cells, more than the limit of "
                                f"{limits.max_cells:,}")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several kinds (ValidationError, KeyError, ...) for a broken file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SubmissionProblem(f"the file is not a valid Jupyter notebook ({first[:200]})") from None
    if source_ids:
        own = source_ids.get(assignment, set())
        present = {cells.grade_id(c) for c in nb.cells if cells.grade_id(c)}
        if own and present and not present & own:
            other = [a for a, ids in source_ids.items() if a != assignment and present & ids]
            what = f"assignment {other[0]}'s notebook" if other else "a notebook of another assignment"
            raise SubmissionProblem(f"this is {what}, not {assignment}'s: none of its graded cells belongs to "
                                    f"{assignment}")
    return nb


# -- the course as a worker sees it ---------------------------------------------------------------------------------
def load_course_config(course: Course) -> Config:
    """The course's ``nbgrader_config.py`` as a traitlets Config."""
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(course.root)).load_config()
    except ConfigFileNotFound:
        return Config()


def source_notebook(course: Course, assignment: str, notebook: str) -> Path:
    path = course.source / assignment / notebook
    if not path.is_file():
        known = ", ".join(p.name for p in course.source_notebooks(assignment)) or "none"
        raise CourseError(f"{notebook} is not a notebook of assignment {assignment} (its notebooks: {known})")
    return path


class Grader:
    """A warm grading worker for one course: configuration, sandbox status and references loaded once.

    ``grade(...)`` grades one notebook after another; with ``prefetch`` it launches the kernel of the next
    submission before grading the current one, so that kernel boots while this one is graded. Call
    :meth:`close` (or use it as a context manager) to stop a kernel launched ahead and not used.
    """

    def __init__(self, course: Course, config: Config | None = None, *, status: tuple[str, str] | None = None,
                 blas_threads: int = 0, log: Callable[[str], None] = lambda s: None, **options):
        from .trusted.sandbox import SandboxError, sandbox_status

        self.course = Course(Path(course.root).resolve(), course.database)
        self.config = Config(config) if config is not None else load_course_config(self.course)
        self.settings = trusted_settings(self.config, **options)
        self.options: Options = self.settings.options()
        self.audit = ImportAudit(config=self.config)
        self.limits = SubmissionLimits(config=self.config)
        try:
            self.sandbox = status or sandbox_status(self.options.sandbox)
        except SandboxError as err:
            raise CourseError(str(err)) from None
        # Kernels use the mode worked out once (bwrap, rlimits or none), not "auto" asked again per kernel.
        self.options = dataclasses.replace(self.options, sandbox=self.sandbox[0], blas_threads=blas_threads)
        self.log = log
        self._sources: dict[tuple[str, str], tuple[nbformat.NotebookNode, str]] = {}
        self._source_ids: dict[str, set[str]] | None = None
        self._spare: tuple[str, KernelSession] | None = None  # (assignment, launched kernel) for the next one
        self._workdir_files: dict[str, tuple] = {}                # per assignment, see _files

    # -- what stays loaded ----------------------------------------------------------------------------------------
    def source(self, assignment: str, notebook: str) -> tuple[nbformat.NotebookNode, str]:
        """(source notebook, sha256 of its file), read once per worker (again if the file changed)."""
        path = source_notebook(self.course, assignment, notebook)
        key = (assignment, notebook)
        data = path.read_bytes()
        digest = sha256(data)
        if key not in self._sources or self._sources[key][1] != digest:
            self._sources[key] = (nbformat.reads(data.decode("utf-8"), as_version=4), digest)
        return self._sources[key]

    def source_ids(self) -> dict[str, set[str]]:
        if self._source_ids is None:
            self._source_ids = {a: {cells.grade_id(c) for p in self.course.source_notebooks(a)
                                    for c in cells.read(p).cells if cells.grade_id(c)}
                                for a in self.course.assignments()}
        return self._source_ids

    def warm_up(self, assignment: str) -> None:
        """Load the assignment's reference now (hidden tests use it), so the first submission does not pay."""
        import nbgrader.utils  # noqa: F401  (scoring needs it; importing it now overlaps a kernel booting)

        from .reference import reference
        from .trusted.engine import _course_env

        with _course_env(self.course.root):
            reference(assignment, self.course)

    # -- kernels --------------------------------------------------------------------------------------------------
    def _launch(self, assignment: str) -> KernelSession:
        workdir = Path(tempfile.mkdtemp(prefix="wb-grade-"))  # the kernel's own copy; the sandbox hands it over
        for path in self.course.extra_files(assignment):
            target = workdir / path.relative_to(self.course.source / assignment)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        session = KernelSession(workdir, self.options, self.log)
        session.launch()
        return session

    def prelaunch(self, assignment: str) -> None:
        """Launch the kernel for the next submission of ``assignment`` now; it boots while the caller works."""
        if self._spare is None:
            self._spare = (assignment, self._launch(assignment))

    def _files(self, assignment: str) -> tuple:
        """What a kernel's workdir holds for ``assignment``: kernels launched with the same serve either."""
        if assignment not in self._workdir_files:
            folder = self.course.source / assignment
            self._workdir_files[assignment] = tuple((str(p.relative_to(folder)), sha256(p.read_bytes()))
                                                    for p in self.course.extra_files(assignment))
        return self._workdir_files[assignment]

    def _kernel_for(self, assignment: str) -> KernelSession:
        if self._spare is not None:
            spare_assignment, session = self._spare
            self._spare = None
            if spare_assignment == assignment or self._files(spare_assignment) == self._files(assignment):
                return session
            _dispose(session)
        return self._launch(assignment)

    def close(self) -> None:
        if self._spare is not None:
            _dispose(self._spare[1])
            self._spare = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- grading --------------------------------------------------------------------------------------------------
    def grade(self, assignment: str, student: str, data: bytes, *, notebook: str | None = None,
              submission_sha256: str | None = None, prefetch: bool = False,
              sanitize: Callable[[nbformat.NotebookNode], nbformat.NotebookNode] | None = None) -> GradingResult:
        """Grade one submitted notebook (its bytes). Never raises for a bad submission: ``result.problem`` says why."""
        started = time.monotonic()
        if notebook is None:
            names = [p.name for p in self.course.source_notebooks(assignment)]
            if len(names) != 1:
                raise CourseError(f"assignment {assignment} has {len(names)} notebooks; say which one this is")
            notebook = names[0]
        source_nb, source_sha = self.source(assignment, notebook)
        result = GradingResult(assignment, notebook, student, submission_sha256 or sha256(data), source_sha)
        try:
            nb = read_submission(data, assignment, self.course, self.limits, self.source_ids())
            if sanitize is not None:
                nb = sanitize(nb)
        except SubmissionProblem as err:
            result.problem = str(err)
            result.seconds = time.monotonic() - started
            return result
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        try:
            session = self._kernel_for(assignment)
        except Exception as err:  # the sandbox or jupyter_client could not start a kernel: say so for this notebook
            result.problem = (f"could not be graded: the grading kernel could not be started "
                              f"({type(err).__name__}: {err})")
            result.seconds = time.monotonic() - started
            return result
        if prefetch:
            try:
                self._spare = (assignment, self._launch(assignment))
            except Exception as err:  # the next notebook will try again and report it
                self.log(f"launching the next kernel ahead failed: {type(err).__name__}: {err}")
        try:
            result.report = grade_in_place(nb, source_nb, assignment, self.course.root, session.workdir, self.options,
                                           self.audit, log=self.log,
                                           require_full_sandbox=self.settings.require_full_sandbox,
                                           session=session, sandbox=self.sandbox)
        except GradingError as err:
            result.problem = f"could not be graded: {err}"
            return result
        finally:
            _dispose(session)
            result.seconds = time.monotonic() - started
        result.graded = nb
        result.cells = score_cells(nb)
        return result


def score_cells(nb: nbformat.NotebookNode) -> list[CellResult]:
    """nbgrader's own scoring rule applied to the outputs the trusted grader wrote into the test cells."""
    from nbgrader.utils import determine_grade  # nbgrader's rule, imported when first needed

    found = []
    for cell in nb.cells:
        if cells.is_test(cell):
            score, max_score = determine_grade(cell)
            found.append(CellResult(cells.grade_id(cell), float(score or 0), float(max_score),
                                    cells.error_message(cell)))
    return found


def _dispose(session: KernelSession) -> None:
    session.shutdown()
    shutil.rmtree(session.workdir, ignore_errors=True)


def grade_submission(course: Course, assignment: str, student: str, data: bytes, *, notebook: str | None = None,
                     grader: Grader | None = None, **options) -> GradingResult:
    """Grade one submitted notebook's bytes in this process; see the module docstring.

    ``grader``: a warm :class:`Grader` to reuse (a worker's); without one a fresh one is made for this call.
    Keyword ``options`` override ``c.TrustedExecute`` settings (``sandbox="none"``, ``timeout=30``, ...).
    """
    if grader is not None:
        return grader.grade(assignment, student, data, notebook=notebook)
    with Grader(course, **options) as fresh:
        return fresh.grade(assignment, student, data, notebook=notebook)

