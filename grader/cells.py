"""What kind of nbgrader cell a notebook cell is, read from its metadata."""
from __future__ import annotations

from typing import Any, Iterator

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"


def nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_grade(cell: Any) -> bool:
    """A graded cell: a test cell (code) or a manually graded answer."""
    return bool(nbgrader_meta(cell).get("grade"))


def is_solution(cell: Any) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: Any) -> bool:
    """An autograder test cell: graded code that is not itself the student's answer."""
    return cell.get("cell_type") == "code" and is_grade(cell) and not is_solution(cell)


def grade_id(cell: Any) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def points(cell: Any) -> float:
    return float(nbgrader_meta(cell).get("points", 0) or 0) if is_grade(cell) else 0.0


def total_points(nb: nbformat.NotebookNode) -> float:
    return sum(points(c) for c in nb.cells)


def test_cells(nb: nbformat.NotebookNode) -> Iterator[Any]:
    return (c for c in nb.cells if is_test(c))


def error_message(cell: Any) -> str:
    """``"ename: evalue"`` of the first error a code cell's outputs hold, or "" when it raised nothing."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}".strip()
    return ""


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)
