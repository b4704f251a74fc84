"""Running nbgrader's own command-line apps against a course directory.

nbgrader is run as a child process (``python -m nbgrader``) from the course root so it reads the
course's ``nbgrader_config.py``. The virtual environment's ``bin`` is put on PATH because nbgrader
shells out to ``alembic`` when it creates a gradebook.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .course import Course, CourseError


class NbgraderError(CourseError):
    """nbgrader exited with an error; the message carries its own last lines."""


def nbgrader_env(course: Course) -> dict[str, str]:
    """The environment for nbgrader and the kernels it starts.

    ``WORKBOOK_COURSE_ROOT`` tells hidden tests (``grader.reference``) which course's source notebooks hold
    the reference, so a scratch course or a test's copy grades against its own sources.
    """
    env = dict(os.environ)
    env["WORKBOOK_COURSE_ROOT"] = str(course.root)
    env["WORKBOOK_DB_URL"] = course.db_url
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def run_nbgrader(course: Course, *args: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader *args`` in the course root and return the finished process."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=course.root, env=nbgrader_env(course), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not quiet:
        sys.stdout.write(proc.stdout)
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise NbgraderError(f"`nbgrader {' '.join(args)}` failed in {course.root} (exit {proc.returncode}):\n{tail}")
    return proc
