"""The grading core and ``nbgrader autograde`` with the trusted preprocessor give the same verdicts.

Instructors may call ``nbgrader autograde`` directly (``TrustedExecute`` in place of nbgrader's ``Execute``,
configured by nbgrader_config.py). On the whole sample class, graded once by the core in the session's
``graded_sample_class`` and once here by nbgrader itself, every graded cell must get the same score and the
same failure message.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from nbgrader.api import Gradebook

from grader import cells
from grader.course import COURSE_ID, Course
from grader.gradebook import GradingState, record_assignment
from grader.nbgrader_run import run_nbgrader
from grader.sample_class import STUDENTS

pytestmark = pytest.mark.slow


def test_core_verdicts_equal_nbgrader_autograde_with_trusted_execute(graded_sample_class, course_copy):
    core, _ = graded_sample_class
    course = course_copy
    root = course.root
    for student in STUDENTS:   # the very bytes the core graded
        shutil.copytree(core.submitted / student, course.submitted / student)
    # Two nbgrader processes side by side (two cores), each with a gradebook of its own for half the assignments.
    assignments = course.assignments()
    halves = [Course(root, database=f"sqlite:///{root / f'gradebook-{i}.db'}") for i in range(2)]
    gradebook_of = {a: halves[i % 2] for i, a in enumerate(assignments)}
    for assignment, half in gradebook_of.items():
        state = GradingState(half.db_url)
        record_assignment(half, assignment, state)
        state.close()

    def autograde_half(half: Course) -> list[tuple[str, int, str]]:
        return [(a, proc.returncode, proc.stdout[-3000:]) for a in assignments if gradebook_of[a] is half
                for proc in [run_nbgrader(half, "autograde", a, "--create", "--force", check=False)]]

    with ThreadPoolExecutor(2) as pool:
        for assignment, returncode, output in [r for rs in pool.map(autograde_half, halves) for r in rs]:
            assert returncode == 0, (assignment, output)

    core_state = GradingState(core.db_url)
    compared = 0
    with Gradebook(core.db_url, course_id=COURSE_ID) as core_gb:
        for assignment in assignments:
            nbgrader_gb = Gradebook(gradebook_of[assignment].db_url, course_id=COURSE_ID)
            for source in course.source_notebooks(assignment):
                for student in STUDENTS:
                    theirs = nbgrader_gb.find_submission_notebook(source.stem, assignment, student)
                    ours = core_gb.find_submission_notebook(source.stem, assignment, student)
                    assert {g.name: g.score for g in theirs.grades} == {g.name: g.score for g in ours.grades}, \
                        (student, assignment)
                    graded = cells.read(course.autograded / student / assignment / source.name)
                    messages = {cells.grade_id(c): cells.error_message(c) for c in cells.test_cells(graded)}
                    result = core_state.result(student, assignment, source.name)
                    assert messages == {c.grade_id: c.message for c in result.cells}, (student, assignment)
                    compared += 1
            nbgrader_gb.close()
    core_state.close()
    assert compared == len(STUDENTS) * len(course.assignments())
