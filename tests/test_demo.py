"""`grader demo` end to end on a copy of the course: the sample class gets the grades it should.

Real nbgrader, real kernels, a real SQLite gradebook (the session's ``graded_sample_class``, graded once).
The instructor's own source notebooks are handed in too, as the submission of a student called
``instructor-source``: they must get full marks.
"""
from __future__ import annotations

import csv

import pytest

from grader.sample_class import CLASSIC_BUGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(graded_sample_class):
    course, stdout = graded_sample_class
    rows = list(csv.reader((course.root / "scores.csv").open()))
    return course, stdout, rows


def test_demo_says_the_sandbox_once_and_how_long_it_took(demo):
    from grader.sample_class import STUDENTS

    course, stdout, _ = demo
    status = [line for line in stdout.splitlines() if line.startswith(("sandbox:", "DEGRADED", "NO SANDBOX"))]
    assert len(status) == 1, status
    assert "DEGRADED" not in stdout.replace(status[0], "")
    assert f"graded {len(STUDENTS) * len(course.assignments())} notebook(s) in" in stdout
    assert "per minute" in stdout and "demo finished in" in stdout


def _totals(rows):
    header = rows[0]
    return {row[0]: dict(zip(header[1:], map(float, row[1:]))) for row in rows[1:]}


def test_demo_prints_the_table_and_writes_the_csv(demo):
    course, stdout, rows = demo
    assert "all assignments" in stdout and "wrote scores.csv" in stdout
    students = [r[0] for r in rows[1:]]
    assert students == ["sample-complete", "sample-cs231n", "sample-partial", "sample-buggy", "sample-untouched",
                        "max"]


def test_complete_student_gets_full_marks_and_untouched_release_zero(demo):
    course, _, rows = demo
    t = _totals(rows)
    for assignment in course.assignments():
        key = f"{assignment}/total"
        assert t["sample-complete"][key] == t["max"][key] > 0, assignment
        assert t["sample-untouched"][key] == 0, assignment


def test_the_cs231n_style_student_keeps_at_least_80_percent_everywhere(demo):
    _, _, rows = demo
    t = _totals(rows)
    assert 0.8 * t["max"]["total"] <= t["sample-cs231n"]["total"] < t["max"]["total"]


def test_partial_and_buggy_students_land_in_between(demo):
    _, _, rows = demo
    t = _totals(rows)
    for student in ("sample-partial", "sample-buggy"):
        assert 0 < t[student]["total"] < t["max"]["total"], student
    for assignment in CLASSIC_BUGS:
        assert t["sample-buggy"][f"{assignment}/total"] < t["max"][f"{assignment}/total"], assignment


def test_buggy_students_feedback_says_what_failed(demo):
    """The feedback page shows the check's own message (which case, expected vs got), not a bare assert.

    That the hidden tests also *name* each classic bug is tests/test_mistakes.py's job.
    """
    course, _, _ = demo
    assert CLASSIC_BUGS, "the sample class needs at least one classic bug"
    for assignment in CLASSIC_BUGS:
        [page] = (course.feedback / "sample-buggy" / assignment).glob("*.html")
        html = page.read_text()
        assert "CheckFailure" in html, f"{page}: no check failure shown"
        assert "expected" in html and "got" in html, f"{page}: the failure does not say what was expected"


def test_feedback_pages_exist_for_every_submission(demo):
    course, _, _ = demo
    for student in ("sample-complete", "sample-partial", "sample-buggy", "sample-untouched"):
        for assignment in course.assignments():
            assert list((course.feedback / student / assignment).glob("*.html")), (student, assignment)


def test_source_notebooks_graded_as_submissions_get_full_marks(demo):
    course, _, _ = demo
    from grader.scores import read_scores

    table = read_scores(course, students=["instructor-source"])
    for assignment in course.assignments():
        got, best = table.assignment_total("instructor-source", assignment)
        assert got == best > 0, assignment
