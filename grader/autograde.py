"""``grader autograde`` and ``grader feedback``: a whole class through the grading core.

One run:

1. records each assignment in the gradebook when its source changed (:func:`grader.gradebook.record_assignment`);
2. finds the submissions (``submitted/<student>/<assignment>/<notebook>.ipynb``) and leaves out those already
   graded from the same bytes against the same source (unless ``force``): a run that was killed resumes;
   the rest are handed out longest expected first (:mod:`grader.schedule`);
3. reads each submission once (bytes hashed; the file is never modified), runs nbgrader's sanitizing steps on it
   here, and hands a task — ids and bytes, plain data — to the workers;
4. the workers (warm processes of this machine, or a Dask cluster with ``scheduler``) grade with
   :class:`grader.core.Grader` and send back plain data;
5. this process, the one writer, records each result as it arrives (:class:`grader.gradebook.Writer`).

A submission that cannot be graded gets one line naming the student, the file and the reason, and 0 for each
graded cell; the others go on at full speed.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import nbformat

from .core import Grader, GradingResult, SubmissionProblem, read_submission, sha256
from .course import Course, CourseError
from .schedule import Schedule
from .trusted.session import BLAS_THREAD_VARIABLES


class NoSubmissions(CourseError):
    """The run found nothing to grade."""


# -- what there is to grade -------------------------------------------------------------------------------------------
@dataclass
class Submission:
    student: str
    assignment: str
    notebook: str                 # the expected file name
    path: Path | None = None      # None when the file is missing
    problem: str = ""             # known before reading (missing or misnamed file)

    @property
    def where(self) -> str:
        return f"submitted/{self.student}/{self.assignment}/{self.notebook}"


def find_submissions(course: Course, assignments: Iterable[str] | None = None,
                     students: Iterable[str] | None = None) -> list[Submission]:
    """Every submitted notebook of the given assignments (default all) by students matching any of the globs."""
    patterns = list(students or [])
    found = []
    for assignment in assignments or course.assignments():
        expected = [p.name for p in course.source_notebooks(assignment)]
        if not course.submitted.is_dir():
            continue
        for folder in sorted(course.submitted.glob(f"*/{assignment}")):
            student = folder.parent.name
            if not folder.is_dir() or (patterns and not any(fnmatch.fnmatchcase(student, p) for p in patterns)):
                continue
            present = sorted(p.name for p in folder.glob("*.ipynb"))
            for name in expected:
                sub = Submission(student, assignment, name)
                if (folder / name).is_file():
                    sub.path = folder / name
                else:
                    others = [p for p in present if p not in expected]
                    sub.problem = (f"no {name} in the folder; it holds {', '.join(others)} (wrong file name? the "
                                   f"notebook must be called {name})" if others else
                                   f"no {name} in the folder (it holds no notebook)")
                found.append(sub)
    return found


# -- the outcome of a run ---------------------------------------------------------------------------------------------
@dataclass
class RunReport:
    results: list[GradingResult] = field(default_factory=list)
    skipped: list[Submission] = field(default_factory=list)   # already graded from the same bytes
    recorded: list[str] = field(default_factory=list)         # assignments (re)recorded in the gradebook
    seconds: float = 0.0
    workers: int = 1
    where: str = "this machine"

    @property
    def failures(self) -> list[GradingResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        n = len(self.results)
        lines = []
        if n:
            per = self.seconds / n
            lines.append(f"graded {n} notebook(s) in {self.seconds:.1f} s with {self.workers} worker(s) on "
                         f"{self.where}: {per:.2f} s per notebook, {60 / per if per else 0:.1f} per minute")
        else:
            lines.append("nothing needed grading")
        if self.skipped:
            lines.append(f"{len(self.skipped)} notebook(s) already graded from the same bytes were left as they "
                         f"are (--force grades them again)")
        if self.failures:
            lines.append(f"{len(self.failures)} notebook(s) could not be graded (recorded as 0); every other "
                         f"submission was graded")
        return "\n".join(lines)


def result_line(result: GradingResult) -> str:
    where = f"submitted/{result.student}/{result.assignment}/{result.notebook}"
    if not result.ok:
        return f"FAILED {where}: {result.problem}"
    line = f"graded {where}: {result.score:g}/{result.max_score:g} ({result.seconds:.1f} s)"
    return line + "".join(f"\n  {note}" for note in result.notes())


# -- backends: where the tasks are graded ------------------------------------------------------------------------------
@dataclass
class Task:
    """One notebook to grade: ids and bytes, nothing else (what a worker on another machine receives)."""

    student: str
    assignment: str
    notebook: str
    data: bytes                   # the notebook after nbgrader's sanitizing steps
    submission_sha256: str        # of the bytes as submitted
    prefetch: bool = True         # launch the next kernel ahead (false for a worker's last task)

    def as_dict(self) -> dict:
        return dict(vars(self))


_WORKER: Grader | None = None


def _pool_init(root: str, database: str | None, sandbox: tuple[str, str], assignments: list[str],
               blas_threads: int) -> None:
    global _WORKER
    os.environ.setdefault("MPLBACKEND", "Agg")
    _WORKER = Grader(Course(Path(root), database), status=sandbox, blas_threads=blas_threads)
    for assignment in assignments:
        _WORKER.warm_up(assignment)
    import atexit
    from multiprocessing import util

    util.Finalize(None, _WORKER.close, exitpriority=10)  # multiprocessing workers skip atexit
    atexit.register(_WORKER.close)


def grade_task(task: dict, grader: Grader | None = None) -> dict:
    """Grade one task in a worker; return the result as plain data."""
    grader = grader or _WORKER
    assert grader is not None, "grade_task needs a Grader (worker not initialised)"
    try:
        result = grader.grade(task["assignment"], task["student"], task["data"], notebook=task["notebook"],
                              submission_sha256=task["submission_sha256"], prefetch=task["prefetch"])
    except Exception as err:  # a fault of the grader itself on this notebook: it fails, by name; the class goes on
        import traceback

        where = traceback.extract_tb(err.__traceback__)[-1]
        result = GradingResult(task["assignment"], task["notebook"], task["student"], task["submission_sha256"])
        result.problem = (f"the grader failed on this notebook ({type(err).__name__}: {err}, at "
                          f"{Path(where.filename).name}:{where.lineno}); please report it")
    return result.to_dict()


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables (for the worker processes started meanwhile), then put the old ones back."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update({k: v for k, v in values.items() if k not in os.environ or not os.environ[k]})
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _ready() -> bool:
    return _WORKER is not None


class LocalBackend:
    """Warm worker processes on this machine (``workers`` of them), or this process itself for one worker.

    :meth:`start` brings the workers up (each loads the course and the references and is ready to launch a
    kernel) while this process records the assignments and reads the submissions.
    """

    def __init__(self, course: Course, sandbox: tuple[str, str], workers: int, assignments: list[str]):
        self.workers = workers
        self.course, self.sandbox, self.assignments = course, sandbox, assignments
        self.where = "this machine"
        self.pool: ProcessPoolExecutor | None = None
        self.grader: Grader | None = None

    def start(self) -> None:
        if self.workers == 1:
            self.grader = Grader(self.course, status=self.sandbox)
            if self.assignments:
                self.grader.prelaunch(self.assignments[0])
            return
        import multiprocessing

        # Workers and their kernels share the cores: each gets its share of BLAS threads, not all of them.
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")  # never fork a process holding kernels' sockets and threads
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_pool_init,
                                        initargs=(str(self.course.root), self.course.database, self.sandbox,
                                                  self.assignments, threads))
        with _environment({name: str(threads) for name in BLAS_THREAD_VARIABLES}):
            for _ in range(self.workers):
                self.pool.submit(_ready)   # start every worker now (they inherit the environment at start)

    def close(self) -> None:
        if self.grader is not None:
            self.grader.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: Iterator[Task]) -> Iterator[dict]:
        if self.grader is not None:
            for task in tasks:
                yield grade_task(task.as_dict(), self.grader)
            return
        pending: set[Future] = set()
        exhausted = False
        while pending or not exhausted:
            # one task queued beyond those running: a worker that finishes finds its next at hand, and each is
            # chosen as late as possible (the schedule uses the results that came in meanwhile)
            while not exhausted and len(pending) < self.workers + 1:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                else:
                    pending.add(self.pool.submit(grade_task, task.as_dict()))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


# -- the run ---------------------------------------------------------------------------------------------------------
def _tasks(schedule: "Schedule[Submission]", prepare: Callable[[Submission], Task | GradingResult],
           workers: int, failed: list[GradingResult]) -> Iterator[Task]:
    """The tasks in the schedule's order, prepared as the backend asks for them (so the order can use the
    results that came in meanwhile); submissions that cannot be graded go to ``failed`` instead."""
    while (sub := schedule.next()) is not None:
        prepared = prepare(sub)
        if isinstance(prepared, GradingResult):
            failed.append(prepared)
            continue
        prepared.prefetch = schedule.remaining >= workers   # this worker will get another
        yield prepared


def autograde(course: Course, assignments: list[str] | None = None, students: list[str] | None = None, *,
              workers: int | None = None, scheduler: str | None = None, force: bool = False,
              sandbox: str | None = None, log: Callable[[str], None] = print, progress=None) -> RunReport:
    """Grade every submission (of the given assignments, by students matching the given globs) not yet graded.

    ``workers``: local worker processes (default: one per core); ``scheduler``: a Dask scheduler address, which
    sends the same tasks to that cluster instead. ``progress``: an object with ``start(total)``,
    ``advance(result)`` and ``stop()`` (see :mod:`grader.progress`); ``log`` gets one line per result otherwise.
    """
    from .gradebook import GradingState, Sanitizer, Writer, course_config, record_assignment
    from .trusted.sandbox import SandboxError, sandbox_status

    started = time.monotonic()
    chosen = [course.check_assignment(a) for a in (assignments or course.assignments())]
    config = course_config(course)
    if sandbox:
        config.TrustedExecute.sandbox = sandbox
    try:
        status = sandbox_status(config.TrustedExecute.get("sandbox", "auto"))
    except SandboxError as err:
        raise CourseError(str(err)) from None
    subs = find_submissions(course, chosen, students)
    if not subs:
        who = f" by a student matching {', '.join(students)}" if students else ""
        raise NoSubmissions(f"no submissions of {', '.join(chosen)}{who} in {course.submitted}: nothing to grade "
                            f"(submissions go in submitted/<student>/<assignment>/<notebook>.ipynb)")
    report = RunReport()
    state = GradingState(course.db_url)
    backend = None
    try:
        grader_for_reading = Grader(course, config, status=status)
        source_sha = {(s.assignment, s.notebook): grader_for_reading.source(s.assignment, s.notebook)[1] for s in subs}
        todo: list[Submission] = []
        data: dict[tuple[str, str, str], bytes] = {}
        for sub in subs:
            digest = "missing"
            if sub.path is not None:
                raw = sub.path.read_bytes()
                digest = sha256(raw)
                data[(sub.student, sub.assignment, sub.notebook)] = raw
            if not force and state.graded(sub.student, sub.assignment, sub.notebook) == \
                    (digest, source_sha[(sub.assignment, sub.notebook)]):
                report.skipped.append(sub)
                data.pop((sub.student, sub.assignment, sub.notebook), None)
            else:
                todo.append(sub)
        todo_assignments = sorted({s.assignment for s in todo})
        if scheduler:
            from .distributed import DaskBackend
            backend = DaskBackend(course, scheduler, todo_assignments, sandbox)
        else:
            backend = LocalBackend(course, status, min(workers or os.cpu_count() or 1, max(1, len(todo))),
                                   todo_assignments)
        report.workers, report.where = backend.workers, backend.where
        if todo:
            backend.start()   # workers warm up while this process records the assignments
        for assignment in todo_assignments:
            if record_assignment(course, assignment, state):
                report.recorded.append(assignment)

        sanitize = Sanitizer(course, config)

        def prepare(sub: Submission) -> Task | GradingResult:
            key = (sub.student, sub.assignment, sub.notebook)
            raw = data.pop(key, None)
            result = GradingResult(sub.assignment, sub.notebook, sub.student, sha256(raw) if raw is not None else
                                   "missing", source_sha[(sub.assignment, sub.notebook)])
            if raw is None:
                result.problem = sub.problem
                return result
            try:
                nb = read_submission(raw, sub.assignment, course, grader_for_reading.limits,
                                     grader_for_reading.source_ids())
                nb = sanitize(nb, sub.assignment, sub.notebook, sub.student)
            except SubmissionProblem as err:
                result.problem = str(err)
                return result
            return Task(sub.student, sub.assignment, sub.notebook, nbformat.writes(nb).encode("utf-8"),
                        result.submission_sha256)

        writer = Writer(course, config, state)
        failed: list[GradingResult] = []
        schedule = Schedule(todo, state.times())

        def record(result: GradingResult) -> None:
            writer.record(result)
            if result.ok:
                schedule.finished(result.student, result.assignment, result.notebook, result.seconds)
            else:
                schedule.failed(result.assignment, result.notebook)
            report.results.append(result)
            if progress is not None:
                progress.advance(result)
            else:
                log(result_line(result))

        if progress is not None:
            progress.start(len(todo))
        try:
            for raw_result in backend.run(_tasks(schedule, prepare, backend.workers, failed)):
                while failed:
                    record(failed.pop(0))
                record(GradingResult.from_dict(raw_result))
            while failed:
                record(failed.pop(0))
        finally:
            if progress is not None:
                progress.stop()
    finally:
        if backend is not None:
            backend.close()
        state.close()
    report.seconds = time.monotonic() - started
    return report


# -- feedback ----------------------------------------------------------------------------------------------------------
def feedback(course: Course, assignments: list[str] | None = None, students: list[str] | None = None,
             log=print) -> list[Path]:
    """Feedback HTML for every autograded submission (of the given assignments / students); the files written.

    nbgrader's ``generate_feedback`` runs in this process, with :class:`grader.feedback.TrustedVerdicts` and
    nbgrader's ``ClearHiddenTests`` among its steps: the page shows the core's verdict for each test and never
    the hidden tests' source, nor a traceback line quoting it.
    """
    from .feedback import generate_feedback

    return generate_feedback(course, assignments, students, log=log)

