"""`grader demo` end to end on a copy of the course: the sample class gets the grades it should.

Real nbgrader, real kernels, a real SQLite gradebook. The instructor's own source notebooks are handed in
too, as the submission of a student called ``instructor-source``: they must get full marks.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest

from grader.sample_class import CLASSIC_BUGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from grader.course import REPO_ROOT, Course

    root = tmp_path_factory.mktemp("demo") / "course"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    course = Course(root)
    for assignment in course.assignments():
        for path in course.source_notebooks(assignment):
            target = course.submitted / "instructor-source" / assignment / path.name
            target.parent.mkdir(parents=True)
            shutil.copy2(path, target)
    proc = subprocess.run([sys.executable, "-m", "grader", "--course", str(root), "demo"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc2 = subprocess.run([sys.executable, "-m", "grader", "--course", str(root), "autograde",
                            "--student", "instructor-source"], capture_output=True, text=True, timeout=3600)
    assert proc2.returncode == 0, proc2.stdout[-3000:] + proc2.stderr[-3000:]
    rows = list(csv.reader((root / "scores.csv").open()))
    return course, proc.stdout, rows


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
