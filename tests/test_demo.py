"""`grader demo` end to end on a copy of the course: the sample class gets the grades it should.

Real nbgrader, real kernels, a real SQLite gradebook (the session's ``graded_sample_class``, graded once).
The instructor's own source notebooks are handed in too, as the submission of a student called
``instructor-source``: they must get full marks.
"""
from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest

from grader import cells
from grader.sample_class import CLASSIC_BUGS
from grader.selfstudy import exercises

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


def _grader(*args, timeout=1800):
    """The ``grader`` command on the project's own course (the hidden tests and references of this repository)."""
    from grader.course import REPO_ROOT

    return subprocess.run([sys.executable, "-m", "grader", "--course", str(REPO_ROOT), *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("student", ["sample-buggy", "sample-complete"])
def test_progress_on_a_sample_students_folder_matches_the_export(graded_sample_class, student):
    """`grader progress` on a sample student's folder against `grader demo`'s export (scores.csv): per notebook the
    points and the exercises done (every test of the exercise at full marks), and the total. Two students: one with
    a classic bug in every notebook (partial marks, a next step) and one with everything done (no next step); each
    grades the whole workbook again, so the other three would add minutes and no new branch."""
    import csv

    course, _ = graded_sample_class
    with open(course.root / "scores.csv", newline="") as handle:
        export = {row["student"]: row for row in csv.DictReader(handle)}
    mine, best = export[student], export["max"]
    proc = _grader("progress", str(course.submitted / student), timeout=1800)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), int(m.group(4)), int(m.group(5)))
            for m in re.finditer(r"^  (\d\d_\w+)\s+([\d.]+)/([\d.]+)\s+(\d+)/(\d+)\s", proc.stdout, re.M)}
    assert sorted(rows) == course.assignments(), proc.stdout
    for assignment in course.assignments():
        found = [e for path in course.source_notebooks(assignment) for e in exercises(cells.read(path))]
        done = sum(all(float(mine[f"{assignment}/{t}"]) == float(best[f"{assignment}/{t}"]) for t in e.tests)
                   for e in found)
        expected = (float(mine[f"{assignment}/total"]), float(best[f"{assignment}/total"]), done, len(found))
        assert rows[assignment] == expected, (assignment, rows[assignment], expected)
    assert f"total: {float(mine['total']):g}/{float(best['total']):g} points" in proc.stdout, proc.stdout
    everything = all(r[2] == r[3] for r in rows.values())
    assert ("next: " in proc.stdout) != everything, proc.stdout    # a next step unless every exercise is done
    assert everything == (student == "sample-complete"), proc.stdout
