"""Each classic mistake of the sample class is caught by the hidden tests, which name it.

For every assignment's classic bug (grader.sample_class.CLASSIC_BUGS), the source notebook's code is run
with the bug applied, and then only the *hidden* part of each graded cell: it must fail, and the message
must say which known mistake the output matches. This keeps the diagnosis honest as notebooks change.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.reference import python_lines
from grader.sample_class import CLASSIC_BUGS, student_code
from workbook.checks import CheckFailure

COURSE = Course.at(REPO_ROOT)


def _hidden_part(source: str) -> str:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(cells.BEGIN_HIDDEN):
            inside = True
        elif line.strip().startswith(cells.END_HIDDEN):
            inside = False
        elif inside:
            lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("assignment", sorted(CLASSIC_BUGS))
def test_hidden_tests_name_the_classic_bug(assignment):
    import matplotlib

    matplotlib.use("Agg")
    bug = CLASSIC_BUGS[assignment]
    [path] = COURSE.source_notebooks(assignment)
    nb = cells.read(path)
    namespace: dict = {"display": lambda *a, **k: None}
    failures = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            if cell.cell_type != "code" or "skip-reference" in cell.metadata.get("tags", []):
                continue
            source = python_lines(cell.source)
            if cells.is_solution(cell):
                source = student_code(source)
                if cells.grade_id(cell) == bug.grade_id:
                    assert bug.old in source, f"{path}: {bug.old!r} no longer occurs in {bug.grade_id}"
                    source = source.replace(bug.old, bug.new)
            if cells.is_test(cell):
                try:
                    exec(_hidden_part(source), namespace)
                except CheckFailure as failure:
                    failures[cells.grade_id(cell)] = str(failure)
                continue
            exec(source, namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
    assert failures, f"{assignment}: no hidden test fails with the classic bug {bug.description!r}"
    named = [m for m in failures.values() if "This is exactly what you get when" in m]
    assert named, f"{assignment}: the hidden tests fail but name no known mistake:\n" + "\n".join(failures.values())
