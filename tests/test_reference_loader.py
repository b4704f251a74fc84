"""The reference is loaded from the source notebook's own code cells, and only from there."""
from __future__ import annotations

import nbformat
import pytest

from grader.course import Course
from grader.reference import ReferenceError_, reference
from toycourse import graded_cell, solution_cell


def _course(tmp_path, cells) -> Course:
    root = tmp_path / "c"
    (root / "solutions" / "00_x").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("c = get_config()\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nbformat.write(nb, str(root / "solutions" / "00_x" / "x.ipynb"))
    return Course(root)


def test_loads_solution_and_plain_cells_but_not_tests(tmp_path):
    skipped = nbformat.v4.new_code_cell("raise RuntimeError('slow demo')")
    skipped.metadata["tags"] = ["skip-reference"]
    course = _course(tmp_path, [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\nSCALE = 3"),
        solution_cell("f", "def f(x):\n    ### BEGIN SOLUTION\n    acc = 0\n    acc += SCALE * x\n    return acc\n"
                           "    ### END SOLUTION"),
        graded_cell("t", 1, "raise AssertionError('test cells are never run by the loader')"),
        skipped,
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\nprint('hi')"),
    ])
    ref = reference("00_x", course)
    assert ref.f(2) == 6 and ref.SCALE == 3
    assert "acc += SCALE * x" in ref.source_of("f")
    wrong = ref.mutant("f", "acc += SCALE * x", "acc = SCALE * x + 1")
    assert wrong(2) == 7 and ref.f(2) == 6
    # further (old, new) pairs apply after the first, to its result
    assert ref.mutant("f", "acc = 0", "acc = 10", ("SCALE * x", "x"), ("10", "20"))(2) == 22 and ref.f(2) == 6


def test_mutant_refuses_text_that_is_not_in_the_solution(tmp_path):
    course = _course(tmp_path, [solution_cell("f", "def f(x):\n    return x\n")])
    ref = reference("00_x", course)
    with pytest.raises(ReferenceError_, match=r"'x \+= 1' does not occur"):
        ref.mutant("f", "x += 1", "x = 1")
    with pytest.raises(ReferenceError_, match=r"'x \* 2' does not occur"):
        ref.mutant("f", "return x", "return x + 1", ("x * 2", "x"))
    with pytest.raises(ReferenceError_, match="no function 'g'"):
        ref.mutant("g", "a", "b")


def test_a_failing_cell_is_named(tmp_path):
    course = _course(tmp_path, [nbformat.v4.new_code_cell("x = 1"), solution_cell("f", "1 / 0")])
    with pytest.raises(ReferenceError_, match=r"x.ipynb: code cell 1 \(f\) failed .*ZeroDivisionError"):
        reference("00_x", course)


def test_the_cache_follows_edits(tmp_path):
    course = _course(tmp_path, [nbformat.v4.new_code_cell("V = 1")])
    assert reference("00_x", course).V == 1
    path = course.source / "00_x" / "x.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].source = "V = 2"
    nbformat.write(nb, str(path))
    import os
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert reference("00_x", course).V == 2


def test_loading_leaves_the_callers_figures_and_backend_alone(tmp_path):
    """Hidden tests load the reference inside a notebook's kernel; its own figures must keep working."""
    import matplotlib
    import matplotlib.pyplot as plt

    course = _course(tmp_path, [nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nfig = plt.figure()\nplt.plot([1, 2])\nplt.show()")])
    backend = matplotlib.get_backend()
    mine = plt.figure()
    open_before = plt.get_fignums()
    reference("00_x", course)
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == open_before and mine.number in open_before
    plt.close(mine)
