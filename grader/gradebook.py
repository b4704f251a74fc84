"""Recording in nbgrader's gradebook, in this process, through nbgrader's own code.

* :func:`record_assignment` puts the assignment's notebooks and graded cells (hidden tests included) into the
  gradebook with nbgrader's ``generate_assignment`` (``NbGraderAPI``, in-process, into a scratch release
  folder), and only when the source notebooks changed since they were last recorded;
* :class:`Sanitizer` runs nbgrader's sanitizing preprocessors (``Autograde.sanitize_preprocessors``:
  ``ClearOutput``, ``DeduplicateIds``, ``OverwriteKernelspec``, ``OverwriteCells``, ``CheckCellMetadata``) on a
  submission before it is graded; nbgrader's refusal (a locked cell's checksum, corrupted metadata) becomes a
  :class:`~grader.core.SubmissionProblem`;
* :class:`Writer` is the one writer of a grading run: it creates the student and the submission as
  ``nbgrader autograde`` does (timestamp from ``timestamp.txt``), runs the rest of nbgrader's autograde steps
  (``SaveAutoGrades``, ``AssignLatePenalties``, ...) on the graded notebook, writes it to
  ``autograded/<student>/<assignment>/`` for formgrader, and records 0 for a notebook that could not be graded
  (as nbgrader does for a missing notebook);
* :class:`GradingState` is the grader's own small table beside nbgrader's, in the same database: per submitted
  notebook the sha256 of the bytes graded, of the source they were graded against, and the core's result as
  plain data. A run grades only what is missing or changed; ``grader feedback`` reads the core's verdicts here.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import nbformat
import sqlalchemy as sa
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from .core import GradingResult, SubmissionProblem, load_course_config, sha256
from .course import COURSE_ID, Course, CourseError

# nbgrader runs `alembic heads` when it creates a gradebook: this interpreter's bin must be on PATH, also when
# `grader` is run as .venv/bin/grader without an activated environment.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

# nbgrader's steps log what they change (a restored checksum, ...) at WARNING; the grader reports per submission.
QUIET = logging.getLogger("grader.nbgrader-steps")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

EXECUTE_STEPS = ("grader.trusted.preprocessor.TrustedExecute", "nbgrader.preprocessors.execute.Execute",
                 "nbgrader.preprocessors.Execute")

# -- the grader's own records ---------------------------------------------------------------------------------------
_meta = sa.MetaData()
SOURCES = sa.Table(
    "workbook_source", _meta,
    sa.Column("assignment", sa.String(128), primary_key=True),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)
RESULTS = sa.Table(
    "workbook_result", _meta,
    sa.Column("student", sa.String(128), primary_key=True),
    sa.Column("assignment", sa.String(128), primary_key=True),
    sa.Column("notebook", sa.String(128), primary_key=True),
    sa.Column("submission_sha256", sa.String(64), nullable=False),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("problem", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # GradingResult.to_dict(with_notebook=False), JSON
    sa.Column("graded_at", sa.DateTime, nullable=False),
)


def ensure_gradebook(engine: sa.engine.Engine) -> None:
    """Create nbgrader's gradebook in an empty database, as nbgrader's ``Gradebook`` does on first use.

    nbgrader's tables and its alembic stamp, so ``nbgrader db upgrade`` knows the schema. nbgrader asks for the
    stamp by running ``alembic heads`` in a subprocess (seconds); alembic's own Python API reads the same head
    from nbgrader's migration scripts here.
    """
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from nbgrader.dbutil import ALEMBIC_DIR

    tables = set(sa.inspect(engine).get_table_names())
    if "alembic_version" in tables:
        return
    if tables - set(_meta.tables):
        return  # someone else's tables: leave the database to nbgrader
    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    Base.metadata.create_all(bind=engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})


class GradingState:
    """What the grader graded, keyed by submission and by the sha256 of its bytes (table ``workbook_result``)."""

    def __init__(self, db_url: str):
        self.engine = sa.create_engine(db_url, future=True)
        ensure_gradebook(self.engine)   # nbgrader's schema first: our table must not make it look initialised
        _meta.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def source_sha(self, assignment: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(SOURCES.c.source_sha256).where(SOURCES.c.assignment == assignment)).scalar()

    def set_source_sha(self, assignment: str, digest: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(SOURCES.delete().where(SOURCES.c.assignment == assignment))
            conn.execute(SOURCES.insert().values(assignment=assignment, source_sha256=digest, recorded_at=_now()))

    def graded(self, student: str, assignment: str, notebook: str) -> tuple[str, str] | None:
        """(submission sha256, source sha256) of the last recorded grading, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(RESULTS.c.submission_sha256, RESULTS.c.source_sha256).where(
                RESULTS.c.student == student, RESULTS.c.assignment == assignment,
                RESULTS.c.notebook == notebook)).first()
        return (row[0], row[1]) if row else None

    def record(self, result: GradingResult) -> None:
        key = dict(student=result.student, assignment=result.assignment, notebook=result.notebook)
        with self.engine.begin() as conn:
            conn.execute(RESULTS.delete().where(*(RESULTS.c[k] == v for k, v in key.items())))
            conn.execute(RESULTS.insert().values(
                **key, submission_sha256=result.submission_sha256, source_sha256=result.source_sha256,
                ok=result.ok, problem=result.problem, result=json.dumps(result.to_dict(with_notebook=False)),
                graded_at=_now()))

    def result(self, student: str, assignment: str, notebook: str) -> GradingResult | None:
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(RESULTS.c.result).where(
                RESULTS.c.student == student, RESULTS.c.assignment == assignment,
                RESULTS.c.notebook == notebook)).scalar()
        return GradingResult.from_dict(json.loads(text)) if text else None

    def times(self) -> dict[tuple[str, str, str], float]:
        """Seconds each notebook graded so far took, by (student, assignment, notebook) (those graded fine)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(RESULTS.c.student, RESULTS.c.assignment, RESULTS.c.notebook,
                                          RESULTS.c.result).where(RESULTS.c.ok.is_(True))).all()
        return {(s, a, n): float(json.loads(text).get("seconds", 0.0)) for s, a, n, text in rows}

    def problems(self) -> list[tuple[str, str, str, str]]:
        """(student, assignment, notebook, problem) of every notebook recorded as not gradable."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(RESULTS.c.student, RESULTS.c.assignment, RESULTS.c.notebook,
                                          RESULTS.c.problem).where(RESULTS.c.ok.is_(False))
                                .order_by(RESULTS.c.assignment, RESULTS.c.student)).all()
        return [tuple(r) for r in rows]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# -- configuration ----------------------------------------------------------------------------------------------------
def course_config(course: Course, **overrides) -> Config:
    """The course's nbgrader configuration with the root and the gradebook URL this run uses."""
    config = load_course_config(course)
    config.CourseDirectory.root = str(course.root)
    config.CourseDirectory.db_url = course.db_url
    config.CourseDirectory.course_id = COURSE_ID
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _steps(config: Config, section: str, trait: str) -> list:
    from nbgrader.converters import Autograde

    names = config[section].get(trait) if trait in config[section] else \
        Autograde.class_traits()[trait].default()
    return [import_item(n) if isinstance(n, str) else n for n in names]


def source_digest(course: Course, assignment: str) -> str:
    """sha256 over the assignment's source notebooks and files (what the gradebook's records derive from)."""
    folder = course.source / assignment
    parts = []
    for path in sorted(course.source_notebooks(assignment)) + course.extra_files(assignment):
        parts.append(f"{path.relative_to(folder)}\0{sha256(path.read_bytes())}")
    return sha256("\n".join(parts).encode())


def record_assignment(course: Course, assignment: str, state: GradingState, *, force: bool = False) -> bool:
    """Record ``assignment``'s source in the gradebook if it changed since last recorded; True if it was recorded.

    nbgrader's own ``generate_assignment`` does the recording (in this process), into a scratch release folder so
    ``notebooks/`` is not touched.
    """
    ensure_gradebook(state.engine)
    digest = source_digest(course, assignment)
    if not force and state.source_sha(assignment) == digest and _has_assignment(course, assignment):
        return False
    with tempfile.TemporaryDirectory(prefix="record-") as tmp:
        config = course_config(course, **{"CourseDirectory.release_directory": tmp})
        outcome = nbgrader_api(config).generate_assignment(assignment, force=True, create=True)
    if not outcome["success"]:
        detail = (outcome.get("error") or outcome.get("log") or "").strip().splitlines()[-12:]
        raise CourseError(f"could not record {assignment} in the gradebook ({course.db_url}) with nbgrader's "
                          f"generate_assignment:\n  " + "\n  ".join(detail))
    state.set_source_sha(assignment, digest)
    return True


def nbgrader_api(config: Config):
    """nbgrader's in-process API for this course (its exchange, unused here, complains about its folder: muted)."""
    from nbgrader.apps import NbGraderAPI

    logging.disable(logging.CRITICAL)
    try:
        return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    finally:
        logging.disable(logging.NOTSET)


def _has_assignment(course: Course, assignment: str) -> bool:
    with Gradebook(course.db_url, course_id=COURSE_ID) as gb:
        try:
            record = gb.find_assignment(assignment)
        except MissingEntry:
            return False
        return {n.name for n in record.notebooks} == {p.stem for p in course.source_notebooks(assignment)}


# -- before grading: nbgrader's sanitizing steps ------------------------------------------------------------------
class Sanitizer:
    """nbgrader's sanitizing preprocessors of ``nbgrader autograde``, run here on one submitted notebook."""

    def __init__(self, course: Course, config: Config):
        self.course, self.config = course, config
        self.steps = [cls(config=config, log=QUIET) for cls in _steps(config, "Autograde", "sanitize_preprocessors")]

    def __call__(self, nb: nbformat.NotebookNode, assignment: str, notebook: str, student: str):
        resources = _resources(self.course, assignment, notebook, student)
        try:
            for step in self.steps:
                nb, resources = step(nb, resources)
        except Exception as err:  # nbgrader raises RuntimeError / ValidationError / ValueError for what it refuses
            raise SubmissionProblem(f"nbgrader refused the notebook in its {type(step).__name__} step "
                                    f"({type(err).__name__}: {str(err).strip()[:300]}); a locked or graded cell, or "
                                    f"its metadata, was changed: start again from the released notebook") from None
        return nb


def _resources(course: Course, assignment: str, notebook: str, student: str, path: Path | None = None) -> dict:
    return {"nbgrader": {"db_url": course.db_url, "assignment": assignment, "notebook": Path(notebook).stem,
                         "student": student},
            "metadata": {"path": str(path or course.root)}}


# -- after grading: the one writer ------------------------------------------------------------------------------------
class Writer:
    """Records results in the gradebook through nbgrader's API and steps; the only writer of a run."""

    def __init__(self, course: Course, config: Config, state: GradingState):
        self.course, self.config, self.state = course, config, state
        self.coursedir = CourseDirectory(config=config)
        self.steps = [cls(config=config, log=QUIET) for cls in _steps(config, "Autograde", "autograde_preprocessors")
                      if f"{cls.__module__}.{cls.__name__}" not in EXECUTE_STEPS and cls.__name__ != "Execute"]

    def timestamp(self, student: str, assignment: str):
        folder = self.course.submitted / student / assignment
        try:
            return self.coursedir.get_existing_timestamp(str(folder))
        except Exception as err:  # nbgrader's fail() exits; report the file instead
            raise CourseError(f"{folder / 'timestamp.txt'}: not a timestamp nbgrader can read ({err})") from None

    def record(self, result: GradingResult) -> None:
        student, assignment, stem = result.student, result.assignment, Path(result.notebook).stem
        timestamp = self.timestamp(student, assignment)
        with Gradebook(self.course.db_url, course_id=COURSE_ID) as gb, warnings.catch_warnings():
            # nbgrader's add_submission triggers SQLAlchemy autoflush warnings (harmless; nbgrader autograde too)
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            gb.update_or_create_student(student)
            if timestamp:
                gb.update_or_create_submission(assignment, student, timestamp=timestamp)
            else:
                gb.update_or_create_submission(assignment, student)
        target = self.course.autograded / student / assignment
        if result.ok and result.graded is not None:
            target.mkdir(parents=True, exist_ok=True)
            nb, resources = result.graded, _resources(self.course, assignment, result.notebook, student, target)
            for step in self.steps:
                nb, resources = step(nb, resources)
            self._copy_alongside(student, assignment, target)
            nbformat.write(nb, str(target / result.notebook))
        else:
            with Gradebook(self.course.db_url, course_id=COURSE_ID) as gb:
                submitted = gb.find_submission_notebook(stem, assignment, student)
                for grade in submitted.grades:  # what nbgrader records for a notebook it cannot grade
                    grade.auto_score = 0
                    grade.needs_manual_grade = False
                gb.db.commit()
            (target / result.notebook).unlink(missing_ok=True)
        self.state.record(result)

    def _copy_alongside(self, student: str, assignment: str, target: Path) -> None:
        """timestamp.txt and the assignment's own files, as nbgrader autograde puts them beside the notebook."""
        stamp = self.course.submitted / student / assignment / "timestamp.txt"
        if stamp.is_file():
            shutil.copy2(stamp, target / "timestamp.txt")
        for path in self.course.extra_files(assignment):
            dest = target / path.relative_to(self.course.source / assignment)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
