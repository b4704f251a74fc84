"""``grader check NOTEBOOK``: a self-learner's notebook graded exactly as the instructor's autograder would.

The notebook is copied into a scratch course (same config, same source notebook, a fresh gradebook) as
the submission of a student called ``self`` and put through the same ``grader autograde`` path. The
verdict per question comes from that gradebook, and each failed question's message from the autograded
notebook. The student's file is only read.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import cells
from .autograde import autograde
from .course import Course, CourseError
from .scores import read_scores
from .trusted.grading import CellResult

SELF = "self"


@dataclass
class CheckResult:
    notebook: Path
    assignment: str
    questions: list[CellResult] = field(default_factory=list)
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions)

    @property
    def complete(self) -> bool:
        return not self.problem and bool(self.questions) and all(q.passed for q in self.questions)

    def render(self) -> str:
        if self.problem:
            return f"{self.notebook}: could not be graded\n  {self.problem}"
        width = max(len(q.grade_id) for q in self.questions)
        lines = [f"{self.notebook} ({self.assignment})"]
        for q in self.questions:
            mark = "✓" if q.passed else "✗"
            lines.append(f"  {mark} {q.grade_id.ljust(width)}  {q.score:g}/{q.max_score:g}")
            if q.message and not q.passed:
                lines += ["      " + line for line in q.message.splitlines()]
        lines.append(f"  score: {self.score:g}/{self.max_score:g}")
        lines += [f"  note: {note}" for note in self.notes]
        if self.sandbox and not any(self.sandbox in note for note in self.notes):
            lines.append(f"  ({self.sandbox})")
        return "\n".join(lines)


def failure_messages(autograded: Path) -> dict[str, str]:
    """grade_id -> the error a graded cell raised in the autograded notebook."""
    return {cells.grade_id(cell): cells.error_message(cell) for cell in cells.read(autograded).cells
            if cells.is_grade(cell) and cell.cell_type == "code" and cells.error_message(cell)}


def check_notebook(notebook: Path, assignment: str | None = None, course: Course | None = None) -> CheckResult:
    course = course or Course.at()
    notebook = notebook.resolve()
    assignment = assignment or notebook.parent.name
    if assignment not in course.assignments():
        raise CourseError(f"{notebook}: cannot tell which assignment this is (its folder is {notebook.parent.name!r}; "
                          f"known: {', '.join(course.assignments())}); pass --assignment")
    if not notebook.is_file():
        raise CourseError(f"{notebook}: no such file")
    try:
        nbformat.read(str(notebook), as_version=4)
    except Exception as err:
        raise CourseError(f"{notebook}: not a readable notebook ({err})") from None
    [source] = course.source_notebooks(assignment)
    with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
        # A scratch gradebook of its own: a check never writes into the course's (possibly shared) one.
        scratch = Course(Path(tmp), database=f"sqlite:///{Path(tmp) / 'gradebook.db'}")
        shutil.copy2(course.root / "nbgrader_config.py", scratch.root / "nbgrader_config.py")
        shutil.copytree(course.source / assignment, scratch.source / assignment)
        submission = scratch.submitted / SELF / assignment / source.name
        submission.parent.mkdir(parents=True)
        shutil.copyfile(notebook, submission)
        report = autograde(scratch, [assignment], [SELF], log=lambda *_: None)
        result = CheckResult(notebook, assignment)
        [outcome] = report.outcomes
        result.notes = outcome.notes()
        result.sandbox = outcome.summary.get("sandbox_message", "")
        if report.failures:
            result.problem = report.failures[0].problem
            return result
        table = read_scores(scratch, [assignment], [SELF])
        messages = failure_messages(scratch.autograded / SELF / assignment / source.name)
        for q in table.questions:
            result.questions.append(CellResult(q.grade_id, table.score(SELF, q) or 0.0, q.max_score,
                                               messages.get(q.grade_id, "")))
    return result
