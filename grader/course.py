"""Where the course lives and what is in it.

A course directory is one holding ``nbgrader_config.py`` (this repository is one). It is found as nbgrader
finds it: ``--course``, else ``WORKBOOK_COURSE_ROOT``, else the working directory or the nearest directory
above it that holds an ``nbgrader_config.py``. Its layout is nbgrader's, with two directories renamed:
``solutions/`` is nbgrader's *source* step and ``notebooks/`` its *release* step.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent

COURSE_ID = "convnet-workbook"  # nbgrader_config.py sets the same (tests/test_packaging.py checks)
SOURCE_DIR = "solutions"
RELEASE_DIR = "notebooks"
SUBMITTED_DIR = "submitted"
AUTOGRADED_DIR = "autograded"
FEEDBACK_DIR = "feedback"


class CourseError(Exception):
    """A problem with the course files that the user must fix; the message says which file and what."""


def find_course_root(start: Path) -> Path:
    """``start`` or the nearest directory above it that holds ``nbgrader_config.py``."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    raise CourseError(f"no course here: neither {start} nor any directory above it holds an nbgrader_config.py "
                      f"(run from inside a course directory, or pass --course DIR)")


@dataclass(frozen=True)
class Course:
    """A course directory: the repository itself, or a copy of it made by a test."""

    root: Path
    database: str | None = None  # gradebook URL; None: WORKBOOK_DB_URL if set, else root/gradebook.db

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> "Course":
        """The course at ``root``; without one, ``WORKBOOK_COURSE_ROOT`` or the one around the working directory."""
        if root is None and os.environ.get("WORKBOOK_COURSE_ROOT"):
            root = os.environ["WORKBOOK_COURSE_ROOT"]
        if root is None:
            return cls(find_course_root(Path.cwd()))
        root = Path(root).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise CourseError(f"{root} is not a course directory: it has no nbgrader_config.py")
        return cls(root)

    @property
    def source(self) -> Path:
        return self.root / SOURCE_DIR

    @property
    def release(self) -> Path:
        return self.root / RELEASE_DIR

    @property
    def submitted(self) -> Path:
        return self.root / SUBMITTED_DIR

    @property
    def autograded(self) -> Path:
        return self.root / AUTOGRADED_DIR

    @property
    def feedback(self) -> Path:
        return self.root / FEEDBACK_DIR

    @property
    def db_path(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def db_url(self) -> str:
        """The gradebook's URL: the one given, else ``WORKBOOK_DB_URL`` when set, else SQLite in the root.

        nbgrader is always started with ``WORKBOOK_DB_URL`` set to this (see nbgrader_config.py), so the
        grader and nbgrader read and write the same gradebook.
        """
        return self.database or os.environ.get("WORKBOOK_DB_URL") or f"sqlite:///{self.db_path}"

    def assignments(self) -> list[str]:
        """Assignment ids, in course order (their ids start with the two-digit position)."""
        if not self.source.is_dir():
            raise CourseError(f"{self.source} does not exist: the course has no source notebooks")
        return sorted(p.name for p in self.source.iterdir() if p.is_dir() and not p.name.startswith("."))

    def check_assignment(self, assignment: str) -> str:
        if assignment not in self.assignments():
            known = ", ".join(self.assignments())
            raise CourseError(f"no assignment {assignment!r} in {self.source} (known: {known})")
        return assignment

    def source_notebooks(self, assignment: str) -> list[Path]:
        self.check_assignment(assignment)
        return sorted((self.source / assignment).glob("*.ipynb"))

    def release_notebooks(self, assignment: str) -> list[Path]:
        return sorted((self.release / assignment).glob("*.ipynb"))

    def extra_files(self, assignment: str) -> list[Path]:
        """The assignment's files beside its source notebook (data a notebook reads), as nbgrader copies them."""
        folder = self.source / assignment
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".ipynb"
                      and not any(part.startswith(".") or part in ("__pycache__", "feedback")
                                  for part in p.relative_to(folder).parts))
