"""notebooks/ is exactly what `grader release` makes of solutions/, and it leaks nothing."""
from __future__ import annotations

import nbformat
import pytest

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.leaks import scan_release, secret_lines, solution_runs
from grader.release import stale

COURSE = Course.at(REPO_ROOT)
ASSIGNMENTS = COURSE.assignments()


def test_there_are_assignments():
    assert ASSIGNMENTS[:3] == ["01_conv_geometry", "02_conv_forward", "03_conv_backward"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_release_is_current(assignment):
    problems = stale(COURSE, [assignment])
    assert problems == [], "notebooks/ is stale; run `make release` and commit:\n" + "\n".join(problems)


def test_staleness_check_catches_an_edited_source(course_copy):
    assignment = course_copy.assignments()[0]
    [path] = course_copy.source_notebooks(assignment)
    nb = cells.read(path)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, str(path))
    assert stale(course_copy, [assignment]) == [
        f"notebooks/{assignment}/{path.name} differs from a fresh release of solutions/{assignment}/{path.name}"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_leaks_no_solution_and_no_hidden_test(assignment):
    for source in COURSE.source_notebooks(assignment):
        release = COURSE.release / assignment / source.name
        assert release.is_file(), f"{release} is missing"
        assert scan_release(source, release) == []
        assert secret_lines(cells.read(source)), f"{source}: has no solution code at all?"


def test_student_package_holds_no_solution_or_hidden_test():
    secrets = set()
    for assignment in ASSIGNMENTS:
        for source in COURSE.source_notebooks(assignment):
            secrets |= secret_lines(cells.read(source))
    for path in sorted((REPO_ROOT / "workbook").rglob("*.py")):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path
        assert "import grader" not in text and "from grader" not in text, f"{path}: must not depend on the grader"
        assert solution_runs(text, secrets) == [], f"{path}: holds solution code"


def test_solution_runs_finds_copied_solution_code_but_not_boilerplate():
    secrets = {"N, C, H, W = x.shape", "out = np.zeros((N, F, H_out, W_out))",
               "out[n, f, i, j] = np.sum(window * w[f])"}
    assert solution_runs("def f(x):\n    N, C, H, W = x.shape\n    return N\n", secrets) == []
    copied = ("    N, C, H, W = x.shape\n\n    out = np.zeros((N, F, H_out, W_out))\n"
              "    out[n, f, i, j] = np.sum(window * w[f])\n")
    assert solution_runs(copied, secrets) == [sorted(secrets, key=copied.index)]
