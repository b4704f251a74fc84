"""``grader autograde`` and ``grader feedback``: nbgrader's steps over a class.

A submission that nbgrader cannot grade (a broken notebook, a kernel that never starts) is reported by
name and costs no other student anything: see :func:`autograde`. Submissions are read, never modified:
nbgrader works on a copy in ``autograded/``.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .course import Course
from .nbgrader_run import run_nbgrader
from .release import generate


@dataclass
class Outcome:
    """What happened to one submission of one assignment."""

    student: str
    assignment: str
    ok: bool
    problem: str = ""
    summary: dict = field(default_factory=dict)  # the trusted grader's record: sandbox, restarts, import audit

    def notes(self) -> list[str]:
        """What the instructor should know about this submission beyond its score."""
        notes = []
        if self.summary.get("degraded"):
            message = self.summary.get("sandbox_message", "")
            notes.append(message if message.startswith("DEGRADED") else f"DEGRADED SANDBOX: {message}")
        if self.summary.get("restarts"):
            notes.append(f"the kernel was restarted {self.summary['restarts']} time(s): "
                         + "; ".join(str(e) for e in self.summary.get("events", []))[:300])
        imports = sorted({f["module"] for f in self.summary.get("findings", [])
                          if f.get("how") != "loaded at run time"})
        if imports:
            notes.append(f"import audit ({self.summary.get('policy', 'flag')}): imports outside the allowed list: "
                         + ", ".join(imports))
        return notes


@dataclass
class RunReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def record_assignment(course: Course, assignment: str) -> None:
    """Record the assignment's notebooks and graded cells (hidden tests included) in the gradebook.

    nbgrader autograde restores every test cell from the gradebook, so the gradebook must hold the current
    source; generating into a scratch directory records it without touching ``notebooks/``.
    """
    with tempfile.TemporaryDirectory(prefix="record-") as tmp:
        generate(course, assignment, Path(tmp), db=True)


def submissions(course: Course, assignment: str) -> list[str]:
    """Students who have a submission directory for ``assignment``, sorted."""
    if not course.submitted.is_dir():
        return []
    return sorted(p.parent.name for p in course.submitted.glob(f"*/{assignment}") if p.is_dir())


def problem_with_submission(course: Course, student: str, assignment: str) -> str | None:
    """A clear reason why a submission cannot be graded, or None when it looks gradable."""
    folder = course.submitted / student / assignment
    expected = [p.name for p in course.source_notebooks(assignment)]
    for name in expected:
        path = folder / name
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.ipynb"))
            return (f"{path}: missing (the assignment's notebook is {name}; the folder holds "
                    f"{', '.join(present) or 'no notebook'})")
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"{path}: not a readable notebook ({err})"
    return None


def grading_summary(course: Course, student: str, assignment: str) -> dict:
    """The trusted grader's records for a submission's notebooks (``*.grading.json``), merged."""
    merged: dict = {}
    for path in sorted((course.autograded / student / assignment).glob("*.grading.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for key, value in record.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key in merged:
                merged[key] += value
            elif isinstance(value, bool):
                merged[key] = merged.get(key, False) or value
            else:
                merged.setdefault(key, value)
    return merged


def _grade_one(course: Course, assignment: str, student: str) -> str | None:
    proc = run_nbgrader(course, "autograde", assignment, "--student", student, "--create", "--force", check=False)
    if proc.returncode == 0:
        return None
    tail = "\n    ".join(proc.stdout.strip().splitlines()[-8:])
    return f"nbgrader could not grade submitted/{student}/{assignment}:\n    {tail}"


def autograde(course: Course, assignments: list[str] | None = None, students: list[str] | None = None,
              log=print) -> RunReport:
    """Autograde every submission (or the given students') of every assignment (or the given ones).

    A whole class is graded by one nbgrader run per assignment (unreadable submissions excluded up front).
    If that run reports any failure, every submission of the batch is graded again on its own, so each
    problem is attributed to its submission and no other submission is left ungraded.
    """
    report = RunReport()
    for assignment in assignments or course.assignments():
        record_assignment(course, assignment)
        everyone = submissions(course, assignment)
        chosen = students or everyone
        problems = {s: problem_with_submission(course, s, assignment) for s in chosen}
        gradable = [s for s in chosen if problems[s] is None]
        batch_ok = False
        if len(gradable) > 1 and set(chosen) == set(everyone):
            excluded = ",".join(s for s in chosen if problems[s] is not None)
            proc = run_nbgrader(course, "autograde", assignment, "--create", "--force",
                                f"--CourseDirectory.student_id_exclude={excluded}", check=False)
            batch_ok = proc.returncode == 0
        if not batch_ok:
            for student in gradable:
                problems[student] = _grade_one(course, assignment, student)
        for student in chosen:
            outcome = Outcome(student, assignment, problems[student] is None, problems[student] or "",
                              grading_summary(course, student, assignment))
            report.outcomes.append(outcome)
            log(f"{'graded ' if outcome.ok else 'FAILED '} {assignment} / {student}"
                + ("" if outcome.ok else f"\n  {outcome.problem}")
                + "".join(f"\n  {note}" for note in outcome.notes()))
    return report


def feedback(course: Course, assignments: list[str] | None = None, students: list[str] | None = None,
             log=print) -> list[Path]:
    """Generate feedback HTML for autograded submissions; return the files written."""
    written: list[Path] = []
    for assignment in assignments or course.assignments():
        graded = sorted(p.parent.name for p in course.autograded.glob(f"*/{assignment}") if p.is_dir())
        for student in students or graded:
            if student not in graded:
                log(f"no autograded submission of {assignment} for {student}: run `grader autograde` first")
                continue
            run_nbgrader(course, "generate_feedback", assignment, "--student", student, "--force")
            written += sorted((course.feedback / student / assignment).glob("*.html"))
    return written
