"""The places the grader writes and reads, kept free of anything a submission planted.

The kernel never writes to the host (it works in a private scratch copy, see :mod:`grader.trusted.sandbox`).
What remains is nbgrader itself: ``nbgrader autograde`` copies every non-notebook file of
``submitted/<student>/<assignment>/`` into ``autograded/`` (following symlinks), and ``nbgrader
generate_feedback`` copies every non-notebook file of ``autograded/`` into ``feedback/``. A submission could
thus plant a grading record (``*.grading.json``, which the grading summary reads), a symlink to a host file
(whose content the grader, as root, would copy into the student's feedback) or a large file.

:func:`scrub_autograded` runs before a notebook is graded and leaves in the autograded folder only what the
grader puts there: the instructor's companion files of the assignment (which nbgrader copied from the
source), the assignment's notebooks and the grader's own records. Nothing in it follows a symlink.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
from pathlib import Path

RECORD_SUFFIX = ".grading.json"


def _is_ignored(rel: Path, ignore: list[str]) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in ignore)


def companion_files(source_dir: Path, ignore: list[str] | tuple[str, ...] = ()) -> set[Path]:
    """Relative paths of the assignment's own non-notebook files (what nbgrader copies from the source)."""
    found: set[Path] = set()
    if not source_dir.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(source_dir):
        for name in files:
            rel = (Path(dirpath) / name).relative_to(source_dir)
            if not name.endswith(".ipynb") and not _is_ignored(rel, list(ignore)):
                found.add(rel)
    return found


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def scrub_autograded(folder: Path, source_dir: Path, notebooks: list[str], *, submitted: Path | None = None,
                     ignore: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Remove from `folder` (``autograded/<student>/<assignment>``) everything the grader did not put there.

    Kept: regular files that are companion files of `source_dir`, the notebooks named in `notebooks`
    (``name.ipynb``) and their records (``name.grading.json``) unless the submission itself holds a file of
    that name (a planted record). Removed, without following any symlink: everything else, symlinks first.
    Returns the relative paths removed (for the log).
    """
    folder = Path(folder)
    keep = {Path(p) for p in companion_files(source_dir, ignore)}
    stems = [Path(n).stem for n in notebooks]
    planted = set()
    if submitted is not None and submitted.is_dir():
        planted = {Path(p).relative_to(submitted) for p in _walk(submitted)}
    for stem in stems:
        for name in (f"{stem}.ipynb", f"{stem}{RECORD_SUFFIX}"):
            if not (name.endswith(RECORD_SUFFIX) and Path(name) in planted):
                keep.add(Path(name))
    removed = []
    for path in sorted(_walk(folder), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(folder)
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            if not any(k.parts[:len(rel.parts)] == rel.parts for k in keep):
                _remove(path)
                removed.append(str(rel) + "/")
            continue
        if rel in keep and stat.S_ISREG(st.st_mode):
            continue
        _remove(path)
        removed.append(str(rel))
    return sorted(removed)


def _walk(root: Path) -> list[Path]:
    """Every path under `root`, not descending into symlinked folders."""
    found = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            found.append(Path(dirpath) / name)
    return found


def scrub_before_grading(workdir: Path, course, assignment: str, student: str | None, log=lambda s: None) -> None:
    """:func:`scrub_autograded` for the folder nbgrader autograde grades in, when it is one
    (``autograded/<student>/<assignment>``); any other folder is left alone."""
    workdir = Path(workdir).resolve()
    if not student or workdir != (course.autograded / student / assignment).resolve():
        return
    notebooks = [p.name for p in course.source_notebooks(assignment)]
    removed = scrub_autograded(workdir, course.source / assignment, notebooks,
                               submitted=course.submitted / student / assignment)
    if removed:
        log(f"{student}/{assignment}: removed what the submission planted beside the notebook: "
            + ", ".join(removed[:20]) + (" ..." if len(removed) > 20 else ""))
