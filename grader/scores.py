"""Scores per question, read from nbgrader's gradebook: a table on screen, a CSV file, a Canvas gradebook CSV.

A *question* is a graded cell, named ``<assignment>/<grade_id>``. The table has a row per student and a
column per question, then a total per notebook (for an assignment of several notebooks), per assignment and
overall. A notebook that could not be graded is recorded as 0 by the grader (as nbgrader records a missing
notebook), so it shows 0; an assignment a student never submitted shows blank. Late submissions are read from
nbgrader's records (the submission's ``timestamp.txt`` against the assignment's due date).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from . import cells
from .course import COURSE_ID, Course


@dataclass(frozen=True)
class Question:
    assignment: str
    notebook: str
    grade_id: str
    max_score: float

    @property
    def label(self) -> str:
        return f"{self.assignment}/{self.grade_id}"


@dataclass(frozen=True)
class Late:
    student: str
    assignment: str
    submitted: str      # nbgrader's timestamp, UTC
    duedate: str
    seconds_late: float
    penalty: float

    def describe(self) -> str:
        hours = self.seconds_late / 3600
        return (f"{self.student} / {self.assignment}: submitted {self.submitted}, due {self.duedate}, "
                f"{hours:.1f} h late (penalty {self.penalty:g})")


@dataclass
class Student:
    id: str
    first_name: str = ""
    last_name: str = ""
    lms_user_id: str = ""

    @property
    def display_name(self) -> str:
        if self.last_name or self.first_name:
            return ", ".join(n for n in (self.last_name, self.first_name) if n)
        return self.id


@dataclass
class ScoreTable:
    questions: list[Question]
    students: list[str]
    scores: dict[tuple[str, str], float | None]  # (student, question label) -> score; None = not submitted
    late: list[Late] = field(default_factory=list)
    people: dict[str, Student] = field(default_factory=dict)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # (student, assignment, notebook, why)

    def score(self, student: str, question: Question) -> float | None:
        return self.scores.get((student, question.label))

    def assignment_total(self, student: str, assignment: str) -> tuple[float, float]:
        qs = [q for q in self.questions if q.assignment == assignment]
        return sum(self.score(student, q) or 0.0 for q in qs), sum(q.max_score for q in qs)

    def total(self, student: str) -> tuple[float, float]:
        return (sum(self.score(student, q) or 0.0 for q in self.questions), sum(q.max_score for q in self.questions))

    @property
    def assignments(self) -> list[str]:
        return list(dict.fromkeys(q.assignment for q in self.questions))

    def notebooks(self, assignment: str) -> list[str]:
        return list(dict.fromkeys(q.notebook for q in self.questions if q.assignment == assignment))

    def notebook_total(self, student: str, assignment: str, notebook: str) -> tuple[float, float]:
        qs = [q for q in self.questions if q.assignment == assignment and q.notebook == notebook]
        return sum(self.score(student, q) or 0.0 for q in qs), sum(q.max_score for q in qs)

    def submitted(self, student: str, assignment: str) -> bool:
        return any(self.score(student, q) is not None for q in self.questions if q.assignment == assignment)

    def _total_columns(self) -> list[tuple[str, str, str | None]]:
        """(header, assignment, notebook or None) for each total column before the overall total."""
        columns = []
        for a in self.assignments:
            notebooks = self.notebooks(a)
            if len(notebooks) > 1:
                columns += [(f"{a}/{n}/total", a, n) for n in notebooks]
            columns.append((f"{a}/total", a, None))
        return columns

    def rows(self) -> list[list[str]]:
        totals = self._total_columns()
        header = ["student"] + [q.label for q in self.questions] + [h for h, _, _ in totals] + ["total"]
        rows = [header]

        def total(student, a, n):
            if student and not self.submitted(student, a):
                return ""
            return _fmt((self.notebook_total(student, a, n) if n else self.assignment_total(student, a))[0 if student
                                                                                                         else 1])

        for student in self.students:
            row = [student]
            row += ["" if self.score(student, q) is None else _fmt(self.score(student, q)) for q in self.questions]
            row += [total(student, a, n) for _, a, n in totals]
            row.append(_fmt(self.total(student)[0]))
            rows.append(row)
        rows.append(["max"] + [_fmt(q.max_score) for q in self.questions] + [total("", a, n) for _, a, n in totals]
                    + [_fmt(self.total("")[1])])
        return rows

    def to_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(self.rows())

    def canvas_rows(self, canvas_ids: dict[str, str] | None = None) -> list[list[str]]:
        """Canvas's gradebook import format: one column per assignment, a "Points Possible" row first.

        Columns: Student, ID (Canvas's user id, nbgrader's ``lms_user_id``), SIS User ID and SIS Login ID (the
        nbgrader student id), Section, then each assignment titled ``name (canvas id)`` when its Canvas id is
        given (the column then updates that assignment), else ``name`` (Canvas creates the assignment).
        """
        ids = canvas_ids or {}
        titles = [f"{a} ({ids[a]})" if a in ids else a for a in self.assignments]
        rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] + titles,
                ["Points Possible", "", "", "", ""] + [_fmt(self.assignment_total("", a)[1]) for a in self.assignments]]
        for student in self.students:
            person = self.people.get(student, Student(student))
            rows.append([person.display_name, person.lms_user_id, student, student, ""]
                        + [_fmt(self.assignment_total(student, a)[0]) if self.submitted(student, a) else ""
                           for a in self.assignments])
        return rows

    def to_canvas_csv(self, path: Path, canvas_ids: dict[str, str] | None = None) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(self.canvas_rows(canvas_ids))

    def render(self) -> str:
        """One block per assignment (student × question), then the totals."""
        out = io.StringIO()
        for assignment in self.assignments:
            qs = [q for q in self.questions if q.assignment == assignment]
            header = ["student"] + [q.grade_id for q in qs] + ["total"]
            body = []
            for student in self.students:
                cells = ["—" if self.score(student, q) is None else _fmt(self.score(student, q)) for q in qs]
                got, best = self.assignment_total(student, assignment)
                body.append([student] + cells + [f"{_fmt(got)}/{_fmt(best)}"])
            out.write(f"\n{assignment}\n")
            out.write(_grid([header] + body))
        header = ["student"] + self.assignments + ["total"]
        body = [[s] + [_fmt(self.assignment_total(s, a)[0]) for a in self.assignments]
                + [f"{_fmt(self.total(s)[0])}/{_fmt(self.total(s)[1])}"] for s in self.students]
        out.write("\nall assignments\n")
        out.write(_grid([header] + body))
        if self.late:
            out.write("\nlate submissions (nbgrader's timestamps and due dates)\n")
            out.write("".join(f"  {late.describe()}\n" for late in self.late))
        if self.problems:
            out.write("\nnotebooks that could not be graded (recorded as 0)\n")
            out.write("".join(f"  submitted/{s}/{a}/{n}: {why}\n" for s, a, n, why in self.problems))
        return out.getvalue()


def _fmt(value: float) -> str:
    return f"{value:g}"


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def read_scores(course: Course, assignments: list[str] | None = None, students: list[str] | None = None,
                db_url: str | None = None) -> ScoreTable:
    """Scores of every graded cell of every (or the given) assignment for every (or the given) student."""
    questions: list[Question] = []
    scores: dict[tuple[str, str], float | None] = {}
    with Gradebook(db_url or course.db_url, course_id=COURSE_ID) as gb:
        wanted = assignments or [a.name for a in gb.assignments]
        known_students = sorted(s.id for s in gb.students)
        for assignment in sorted(wanted):
            try:
                record = gb.find_assignment(assignment)
            except MissingEntry:
                continue
            for notebook in sorted(record.notebooks, key=lambda n: n.name):
                order = _source_order(course, assignment, notebook.name)
                for cell in sorted(notebook.grade_cells, key=lambda c: order.get(c.name, len(order))):
                    q = Question(assignment, notebook.name, cell.name, float(cell.max_score))
                    questions.append(q)
                    for student in students or known_students:
                        try:
                            grade = gb.find_grade(cell.name, notebook.name, assignment, student)
                            scores[(student, q.label)] = None if grade.score is None else float(grade.score)
                        except MissingEntry:
                            scores[(student, q.label)] = None
        who = students or [s for s in known_students if any(scores.get((s, q.label)) is not None for q in questions)]
        late = []
        for assignment in sorted(wanted):
            for student in who:
                try:
                    sub = gb.find_submission(assignment, student)
                except MissingEntry:
                    continue
                if sub.timestamp is not None and sub.duedate is not None and sub.total_seconds_late > 0:
                    late.append(Late(student, assignment, str(sub.timestamp), str(sub.duedate),
                                     float(sub.total_seconds_late), float(sub.late_submission_penalty or 0)))
        people = {}
        for record in gb.students:
            people[record.id] = Student(record.id, record.first_name or "", record.last_name or "",
                                        record.lms_user_id or "")
    from .gradebook import GradingState

    state = GradingState(db_url or course.db_url)
    try:
        problems = [p for p in state.problems() if p[0] in who and p[1] in wanted]
    finally:
        state.close()
    return ScoreTable(questions, list(who), scores, late, people, problems)


def _source_order(course: Course, assignment: str, notebook: str) -> dict[str, int]:
    """Position of each graded cell in the source notebook (the gradebook keeps no order)."""
    path = course.source / assignment / f"{notebook}.ipynb"
    if not path.is_file():
        return {}
    graded = [cells.grade_id(c) for c in cells.read(path).cells if cells.is_grade(c)]
    return {grade_id: i for i, grade_id in enumerate(graded)}
