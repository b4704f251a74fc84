"""Grading one exercise on its own when the student's function calls an earlier one (grader.hidden.isolate), and
when a test's own checks call an earlier exercise (grader.hidden.stand_in), through the real sandboxed kernel.

The student's function runs in the kernel with the earlier function's name bound to a stand-in that asks the
grader, over the kernel's stdin channel, for the reference's answer. Whatever the student's code sends that way is
decoded like any other kernel data; nothing it sends can crash the grader or reach a name the test did not choose.
"""
from __future__ import annotations

import shutil

import nbformat
import pytest

from grader.course import REPO_ROOT, Course
from grader.release import release
from grader.trusted import grade_notebook
from toycourse import graded_cell, solution_cell

ASSIGNMENT = "00_iso"

HIDDEN_ISOLATE = ("### BEGIN HIDDEN TESTS\nfrom grader.hidden import isolate, reference\n"
                  "isolate(total, square=reference('00_iso').square)\n### END HIDDEN TESTS\n")
HIDDEN_STAND_IN = ("### BEGIN HIDDEN TESTS\nfrom grader.hidden import reference, stand_in\n"
                   "stand_in(square, reference('00_iso').square)\n### END HIDDEN TESTS\n")


def notebook(square_body: str = "return np.asarray(x, dtype=float) ** 2",
             total_body: str = "return float(np.sum(square(x)))") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Isolation\n**Points: 4**"),
        nbformat.v4.new_code_cell("import numpy as np\nfrom workbook.checks import check_array, check_equal"),
        solution_cell("square", f'def square(x):\n    """x ** 2."""\n    ### BEGIN SOLUTION\n    {square_body}\n'
                                f'    ### END SOLUTION'),
        graded_cell("test_square", 1, "check_array('square', square(np.arange(3.0)), np.array([0.0, 1.0, 4.0]))"),
        solution_cell("total", f'def total(x):\n    """The sum of the squares, using square."""\n'
                               f'    ### BEGIN SOLUTION\n    {total_body}\n    ### END SOLUTION'),
        graded_cell("test_total", 2, HIDDEN_ISOLATE + "check_equal('total', total([1.0, 2.0, 3.0]), 14.0)"),
        graded_cell("test_square_sum", 1, HIDDEN_STAND_IN
                    + "check_equal('sum of square', float(np.sum(square(np.arange(4.0)))), 14.0)"),
    ]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    root = tmp_path_factory.mktemp("iso") / "course"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    (root / "solutions" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(notebook(), str(root / "solutions" / ASSIGNMENT / "iso.ipynb"))
    course = Course(root)
    release(course)
    return course


def grade(course, tmp_path, nb) -> dict[str, float]:
    path = tmp_path / "iso.ipynb"
    nbformat.write(nb, str(path))
    result = grade_notebook(path, ASSIGNMENT, course)
    assert not result.problem, result.problem
    return {c.grade_id: c.score for c in result.cells}, result


def test_the_source_gets_full_marks(course, tmp_path):
    scores, _ = grade(course, tmp_path, notebook())
    assert scores == {"test_square": 1, "test_total": 2, "test_square_sum": 1}


def test_a_wrong_earlier_function_costs_only_its_own_points(course, tmp_path):
    scores, _ = grade(course, tmp_path, notebook(square_body="return np.asarray(x, dtype=float) * 2"))
    assert scores == {"test_square": 0, "test_total": 2, "test_square_sum": 1}


def test_without_isolation_the_same_mistake_costs_twice(course, tmp_path):
    """The control: the same submission, graded with a test cell that does not isolate, loses both."""
    nb = notebook(square_body="return np.asarray(x, dtype=float) * 2")
    source = nbformat.read(str(course.source / ASSIGNMENT / "iso.ipynb"), as_version=4)
    plain = source.cells[5].source.replace(HIDDEN_ISOLATE, "")
    original = source.cells[5].source
    try:
        source.cells[5].source = plain
        nbformat.write(source, str(course.source / ASSIGNMENT / "iso.ipynb"))
        scores, _ = grade(course, tmp_path, nb)
    finally:
        source.cells[5].source = original
        nbformat.write(source, str(course.source / ASSIGNMENT / "iso.ipynb"))
    assert scores["test_total"] == 0


def test_a_wrong_later_function_still_fails(course, tmp_path):
    scores, _ = grade(course, tmp_path, notebook(total_body="return float(np.sum(square(x))) + 1"))
    assert scores == {"test_square": 1, "test_total": 0, "test_square_sum": 1}


@pytest.mark.parametrize("total_body", [
    "return float(np.sum(square(lambda: 0)))",                     # a value that may not cross: a function
    "return float(input('[\"callback\", \"open\", [\"l\", []], [\"d\", []]]') or 0)",   # asks for another name
    "return float(input('not json') or 0)",
    "return float(input('x' * 5_000_000) or 0)",                   # larger than the limit
    "return sum(float(np.sum(square([i]))) for i in range(300))",  # many calls: all answered
])
def test_whatever_comes_over_stdin_cannot_crash_the_grader(course, tmp_path, total_body):
    scores, result = grade(course, tmp_path, notebook(total_body=total_body))
    assert scores["test_square"] == 1 and scores["test_square_sum"] == 1
    if "range(300)" not in total_body:
        assert scores["test_total"] == 0
