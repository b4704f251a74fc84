"""``grader autograde --scheduler ADDRESS``: the same tasks on a Dask distributed cluster.

The run's process stays the one writer; the cluster only grades. What goes to a worker: the course bundle (the
course's ``nbgrader_config.py`` and the source folders of the assignments graded — scattered once to every
worker, so a worker needs the project installed but not the course directory) and, per task, the submission's
ids and bytes. What comes back: :meth:`grader.core.GradingResult.to_dict`, plain data.

Each worker process keeps one warm :class:`grader.core.Grader` per course bundle (the reference loaded once, the
next kernel launched ahead). Run workers with one thread each (``dask worker ADDRESS --nthreads 1
--nworkers N``): a grader process grades one notebook at a time, so extra threads only wait.
"""
from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .core import Grader, sha256
from .course import Course


@dataclass(frozen=True)
class CourseBundle:
    """The files a worker needs to grade a course's assignments, keyed by their digest."""

    files: tuple[tuple[str, bytes], ...]   # (path relative to the course root, content)
    digest: str

    @classmethod
    def of(cls, course: Course, assignments: list[str]) -> "CourseBundle":
        paths = [course.root / "nbgrader_config.py"]
        for assignment in assignments:
            paths += course.source_notebooks(assignment) + course.extra_files(assignment)
        files = tuple((str(p.relative_to(course.root)), p.read_bytes()) for p in paths)
        digest = sha256(b"".join(name.encode() + b"\0" + sha256(data).encode() for name, data in files))
        return cls(files, digest)

    def materialize(self) -> Course:
        root = Path(tempfile.gettempdir()) / f"grader-course-{self.digest[:16]}"
        if not (root / ".complete").is_file():
            for name, data in self.files:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
            (root / ".complete").write_text(self.digest)
        return Course(root)


_GRADERS: dict[str, Grader] = {}
_LOCK = threading.Lock()   # one notebook at a time per process: test cells redirect this process's stdout


def dask_grade(bundle: CourseBundle, task: dict, sandbox: str | None = None) -> dict:
    """Runs on a Dask worker: grade one task with this process's warm grader for the bundle.

    ``sandbox``: the mode the run asked for (``--sandbox``); the worker works out what it means on its machine.
    """
    from .autograde import grade_task

    with _LOCK:
        key = f"{bundle.digest}/{sandbox}"
        grader = _GRADERS.get(key)
        if grader is None:
            options = {"sandbox": sandbox} if sandbox else {}
            # Kernels of a cluster's workers run side by side: one BLAS thread each.
            grader = _GRADERS[key] = Grader(bundle.materialize(), blas_threads=1, **options)
        return grade_task(task, grader)


def dask_close() -> int:
    """Runs on every Dask worker at the end of a run: stop the kernels launched ahead."""
    with _LOCK:
        for grader in _GRADERS.values():
            grader.close()
        return len(_GRADERS)


class DaskBackend:
    def __init__(self, course: Course, scheduler: str, assignments: list[str], sandbox: str | None = None):
        from distributed import Client

        self.sandbox = sandbox
        self.client = Client(scheduler, timeout="30s")
        self.bundle = CourseBundle.of(course, assignments)
        info = self.client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))
        self.where = f"the Dask cluster at {scheduler} ({len(info['workers'])} worker(s))"

    def start(self) -> None:
        [self.bundle_future] = self.client.scatter([self.bundle], broadcast=True)

    def run(self, tasks: Iterator) -> Iterator[dict]:
        """Keep two tasks per worker thread in the cluster, each taken from ``tasks`` only when there is room (so
        the run's schedule decides as late as possible); results as they complete."""
        from distributed import as_completed

        def submit(task) -> object:
            return self.client.submit(dask_grade, self.bundle_future, task.as_dict(), self.sandbox, pure=False,
                                      key=f"grade-{task.student}-{task.assignment}-{task.notebook}-"
                                          f"{task.submission_sha256[:12]}")

        first = [submit(task) for _, task in zip(range(2 * self.workers), tasks)]
        if not first:
            return
        running = as_completed(first)
        for future in running:
            task = next(tasks, None)
            if task is not None:
                running.add(submit(task))
            yield future.result()

    def close(self) -> None:
        try:
            if getattr(self, "bundle_future", None) is not None:
                self.client.run(dask_close)
        finally:
            self.client.close()
