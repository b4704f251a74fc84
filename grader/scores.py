"""Scores per question, read from nbgrader's gradebook, as a table on screen and a CSV file.

A *question* is a graded cell, named ``<assignment>/<grade_id>``. The table has a row per student and a
column per question, then a total per assignment and overall.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
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


@dataclass
class ScoreTable:
    questions: list[Question]
    students: list[str]
    scores: dict[tuple[str, str], float | None]  # (student, question label) -> score; None = not submitted

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

    def rows(self) -> list[list[str]]:
        header = ["student"] + [q.label for q in self.questions] + [f"{a}/total" for a in self.assignments] + ["total"]
        rows = [header]
        for student in self.students:
            row = [student]
            row += ["" if self.score(student, q) is None else _fmt(self.score(student, q)) for q in self.questions]
            row += [_fmt(self.assignment_total(student, a)[0]) for a in self.assignments]
            row.append(_fmt(self.total(student)[0]))
            rows.append(row)
        rows.append(["max"] + [_fmt(q.max_score) for q in self.questions]
                    + [_fmt(self.assignment_total("", a)[1]) for a in self.assignments]
                    + [_fmt(self.total("")[1])])
        return rows

    def to_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(self.rows())

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
                            scores[(student, q.label)] = float(grade.score)
                        except MissingEntry:
                            scores[(student, q.label)] = None
        who = students or [s for s in known_students if any(scores.get((s, q.label)) is not None for q in questions)]
    return ScoreTable(questions, list(who), scores)


def _source_order(course: Course, assignment: str, notebook: str) -> dict[str, int]:
    """Position of each graded cell in the source notebook (the gradebook keeps no order)."""
    path = course.source / assignment / f"{notebook}.ipynb"
    if not path.is_file():
        return {}
    graded = [cells.grade_id(c) for c in cells.read(path).cells if cells.is_grade(c)]
    return {grade_id: i for i, grade_id in enumerate(graded)}
