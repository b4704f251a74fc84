"""Courses for the tests: a tiny one built by code (the grader's machinery without the real notebooks), and private
copies of the real one."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from grader.course import REPO_ROOT, Course
from grader.release import release

ASSIGNMENT = "00_toy"


def copy_of_course(root: Path, database: str | None = None) -> Course:
    """A private copy of the real course at ``root`` (config, sources, release), with no course state."""
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    return Course(root, database=database)


def nbgrader_meta(**fields) -> dict:
    return {"nbgrader": dict(schema_version=3, **fields)}


def solution_cell(grade_id: str, source: str):
    return nbformat.v4.new_code_cell(source, metadata=nbgrader_meta(solution=True, grade=False, locked=False,
                                                                    grade_id=grade_id))


def graded_cell(grade_id: str, points: int, source: str):
    return nbformat.v4.new_code_cell(source, metadata=nbgrader_meta(solution=False, grade=True, locked=True,
                                                                    points=points, grade_id=grade_id))


def toy_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Toy\n**Points: 3**"),
        nbformat.v4.new_code_cell("import numpy as np\nfrom workbook.checks import check_array"),
        solution_cell("scale", 'def scale(x, k):\n    """Return k * x."""\n    ### BEGIN SOLUTION\n'
                               '    return np.asarray(x, dtype=float) * k\n    ### END SOLUTION'),
        graded_cell("test_scale", 2,
                  "check_array('scale', scale(np.ones(3), 2.0), np.full(3, 2.0))\n"
                  "### BEGIN HIDDEN TESTS\n"
                  "from grader.hidden import reference, check_function, Case\n"
                  "ref = reference('00_toy')\n"
                  "check_function('scale', scale, ref.scale, [Case('x: (4,), k=-3', (np.arange(4.0), -3.0))],\n"
                  "               outputs='out', rtol=1e-12, atol=0,\n"
                  "               mistakes={'k is ignored': lambda x, k: ref.scale(x, 1.0)})\n"
                  "### END HIDDEN TESTS"),
        solution_cell("offset", 'def offset(x):\n    """Return x + 1."""\n    ### BEGIN SOLUTION\n'
                                '    return x + 1\n    ### END SOLUTION'),
        graded_cell("test_offset", 1, "assert offset(1) == 2"),
    ]
    return nb


def make_toy_course(root: Path) -> Course:
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    (root / "solutions" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(toy_notebook(), str(root / "solutions" / ASSIGNMENT / "toy.ipynb"))
    course = Course(root)
    release(course)
    return course


def submit(course: Course, student: str, nb: nbformat.NotebookNode | str) -> Path:
    path = course.submitted / student / ASSIGNMENT / "toy.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, str):
        path.write_text(nb)
    else:
        nbformat.write(nb, str(path))
    return path


def student_version(course: Course, scale_body: str, offset_prefix: str = "") -> nbformat.NotebookNode:
    """The released toy notebook with ``scale``'s body filled in (and ``offset``, after ``offset_prefix``)."""
    from grader import cells

    nb = cells.read(course.release / ASSIGNMENT / "toy.ipynb")
    for cell in nb.cells:
        if cells.grade_id(cell) == "scale":
            cell.source = f"def scale(x, k):\n{scale_body}"
        if cells.grade_id(cell) == "offset":
            cell.source = f"{offset_prefix}def offset(x):\n    return x + 1"
    return nb
