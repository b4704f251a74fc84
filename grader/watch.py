"""``grader check --watch``: grade a learner's notebook again each time it is saved.

The folders are watched with ``watchfiles`` (inotify on Linux, FSEvents on macOS, polling where neither works). A
save is graded once: Jupyter writes a notebook through a temporary file and a rename, and its checkpoints go to
``.ipynb_checkpoints/`` (ignored); events within watchfiles' debounce window arrive together, and a notebook whose
bytes did not change since it was last graded is not graded again. Every quiet second the notebooks are compared with
what was graded too, so a save that came before the watch was armed is not missed.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Iterable

from .core import Grader
from .course import Course, CourseError
from .selfstudy import Catalogue, CheckResult, grade_one, notebook_paths


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _wanted(path: str) -> bool:
    parts = Path(path).parts
    return path.endswith(".ipynb") and not any(part.startswith(".") for part in parts[-3:])


def watch_and_check(paths: Iterable[Path], course: Course, assignment: str | None,
                    show: Callable[[CheckResult], None], *, stop_event=None, **options) -> int:
    """Watch ``paths`` (notebooks or folders) and grade each notebook again when it is saved; 0 on Ctrl-C."""
    from watchfiles import Change, watch

    paths = [Path(p).resolve() for p in paths]
    files = {p for p in paths if p.is_file()}
    folders = [p for p in paths if p.is_dir()]
    graded = {p.resolve(): _digest(p) for p in notebook_paths(paths)}
    watched = sorted({*folders, *(p.parent for p in files)})
    catalogue = Catalogue(course)

    def ours(path: Path) -> bool:
        return path in files or any(path.is_relative_to(folder) for folder in folders)

    print(f"watching {', '.join(map(str, watched))} — save a notebook to grade it again (Ctrl-C stops)", flush=True)
    with Grader(course, **options) as grader:
        try:
            # A quiet second (no event) also compares every notebook with what was graded: a save made between the
            # first grading and the moment the watch was armed has no event, and is graded then.
            for changes in watch(*watched, watch_filter=lambda change, path: _wanted(path), stop_event=stop_event,
                                 yield_on_timeout=True, rust_timeout=1000):
                if changes:
                    candidates = {Path(p).resolve() for change, p in changes if change != Change.deleted}
                else:
                    candidates = {p.resolve() for p in notebook_paths(p for p in paths if p.exists())}
                for path in sorted(candidates):
                    digest = _digest(path)
                    if not ours(path) or digest is None or graded.get(path) == digest:
                        continue
                    graded[path] = digest
                    print(f"[{time.strftime('%H:%M:%S')}] {path.name} was saved: grading it again", flush=True)
                    try:
                        show(grade_one(grader, catalogue, path, assignment))
                    except CourseError as err:
                        print(f"grader: {err}", flush=True)
        except KeyboardInterrupt:
            print("stopped watching")
    return 0
