"""``grader check NOTEBOOK``: a self-learner's notebook graded exactly as the instructor's autograder grades it.

The same grading core as ``grader autograde`` (:mod:`grader.core`): same hidden tests, same points, the same
trusted engine, in this process, with no gradebook. To be quick it launches the kernel first and loads the
assignment's reference while the kernel boots. The student's file is only read.

One difference from ``grader autograde``: with no gradebook there is no nbgrader sanitizing step, so a notebook
whose locked cells were edited is graded with the instructor's cells restored (and says so) instead of being
refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .core import CellResult, Grader
from .course import Course, CourseError

SELF = "self"


@dataclass
class CheckResult:
    notebook: Path
    assignment: str
    questions: list[CellResult] = field(default_factory=list)
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""
    student_seconds: float = 0.0

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
        if self.sandbox:
            lines.append(f"  ({self.sandbox})")
        return "\n".join(lines)


def check_notebook(notebook: Path, assignment: str | None = None, course: Course | None = None,
                   **options) -> CheckResult:
    """Grade ``notebook`` as a submission of ``assignment`` (default: its folder's name) through the core."""
    course = course or Course.at()
    notebook = Path(notebook).resolve()
    assignment = assignment or notebook.parent.name
    if assignment not in course.assignments():
        raise CourseError(f"{notebook}: cannot tell which assignment this is (its folder is {notebook.parent.name!r}; "
                          f"known: {', '.join(course.assignments())}); pass --assignment")
    if not notebook.is_file():
        raise CourseError(f"{notebook}: no such file")
    sources = course.source_notebooks(assignment)
    names = [p.name for p in sources]
    name = notebook.name if notebook.name in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise CourseError(f"{notebook}: {assignment} has the notebooks {', '.join(names)}; name yours after one")
    data = notebook.read_bytes()
    with Grader(course, **options) as grader:
        grader.prelaunch(assignment)   # the kernel boots while the reference loads
        grader.warm_up(assignment)
        graded = grader.grade(assignment, SELF, data, notebook=name)
    result = CheckResult(notebook, assignment, problem=graded.problem, notes=graded.notes(),
                         sandbox=graded.report.sandbox_message if graded.ok else "",
                         student_seconds=graded.report.student_seconds)
    result.notes = graded.report.restored + result.notes
    result.questions = list(graded.cells)
    return result
