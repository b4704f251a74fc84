"""A small course built by code for the trusted-grading tests: one notebook with a function returning
``(out, cache)``, a backward pass that takes the cache back, and an independent function whose test gives
partial credit. Built fresh in a temporary directory, released with ``grader release``."""
from __future__ import annotations

from pathlib import Path

import nbformat

from grader.course import REPO_ROOT, Course
from grader.release import release
from toycourse import graded_cell, nbgrader_meta, solution_cell

ASSIGNMENT = "01_relu"
NOTEBOOK = "relu.ipynb"

TRUSTED_CONFIG = """
from grader.trusted import configure
configure(c)
c.TrustedExecute.timeout = {timeout}
c.TrustedExecute.call_timeout = {timeout}
c.TrustedExecute.notebook_timeout = 300
c.TrustedExecute.sandbox = {sandbox!r}
c.ImportAudit.default_allowed = ["numpy", "math"]
"""
STOCK_CONFIG = """
# Stock nbgrader: undo the course's trusted configuration (nbgrader's own defaults).
from nbgrader.converters import Autograde as _Autograde
from nbgrader.preprocessors import OverwriteCells as _OverwriteCells
c.Autograde.autograde_preprocessors = _Autograde.class_traits()["autograde_preprocessors"].default()
c.OverwriteCells.add_missing_cells = _OverwriteCells.class_traits()["add_missing_cells"].default()
c.Execute.timeout = {timeout}
c.ExecutePreprocessor.timeout = {timeout}
"""




def relu_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# ReLU\n**Points: 6**"),
        nbformat.v4.new_code_cell("import numpy as np\nfrom workbook.checks import check_array, check_equal",
                                  metadata=nbgrader_meta(solution=False, grade=False, locked=True, grade_id="setup")),
        solution_cell("relu_forward",
                  'def relu_forward(x):\n    """out = max(0, x); cache = x."""\n    ### BEGIN SOLUTION\n'
                  '    out = np.maximum(x, 0)\n    cache = x\n    ### END SOLUTION\n    return out, cache'),
        graded_cell("test_relu_forward", 2,
              "out, _ = relu_forward(np.array([[-1.0, 2.0]]))\n"
              "check_array('out', out, np.array([[0.0, 2.0]]))\n"
              "### BEGIN HIDDEN TESTS\n"
              "from grader.hidden import reference, check_function, Case\n"
              "ref = reference('01_relu')\n"
              "rng = np.random.default_rng(0)\n"
              "cases = [Case(f'x: {s}', (rng.standard_normal(s),)) for s in [(2, 3), (1, 4, 5)]]\n"
              "check_function('relu_forward', relu_forward, ref.relu_forward, cases, outputs=('out', None),\n"
              "               rtol=1e-12, atol=0, mistakes={'the sign is flipped': lambda x: ref.relu_forward(-x)})\n"
              "### END HIDDEN TESTS"),
        solution_cell("relu_backward",
                  'def relu_backward(dout, cache):\n    """dx = dout where x > 0."""\n    ### BEGIN SOLUTION\n'
                  '    dx = dout * (cache > 0)\n    ### END SOLUTION\n    return dx'),
        graded_cell("test_relu_backward", 3,
              "x = np.array([-1.0, 3.0, 0.5])\n"
              "_, cache = relu_forward(x)\n"
              "check_array('dx', relu_backward(np.ones(3), cache), np.array([0.0, 1.0, 1.0]))\n"
              "### BEGIN HIDDEN TESTS\n"
              "rng = np.random.default_rng(1)\n"
              "x, dout = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))\n"
              "_, cache = relu_forward(x)\n"
              "check_array('dx', relu_backward(dout, cache), dout * (x > 0), rtol=1e-12, atol=0)\n"
              "### END HIDDEN TESTS"),
        solution_cell("count_positive",
                  'def count_positive(x):\n    """The number of entries of x above 0, an int."""\n'
                  '    ### BEGIN SOLUTION\n    return int(np.sum(x > 0))\n    ### END SOLUTION'),
        graded_cell("test_count_positive", 1,
              "check_equal('count', count_positive(np.array([1.0, -2.0, 3.0])), 2)\n"
              "### BEGIN HIDDEN TESTS\n"
              "rng = np.random.default_rng(2)\n"
              "cases = [rng.standard_normal(n) for n in (3, 10, 50, 200)]\n"
              "passed = sum(count_positive(c) == int((c > 0).sum()) for c in cases)\n"
              "passed / len(cases)\n"
              "### END HIDDEN TESTS"),
        nbformat.v4.new_markdown_cell("## Summary\nDone."),
    ]
    return nb


def make_course(root: Path, *, trusted: bool = True, timeout: int = 20, sandbox: str = "auto") -> Course:
    """A released course at ``root``; its nbgrader config grades through the trusted path or stock nbgrader."""
    root.mkdir(parents=True)
    config = (REPO_ROOT / "nbgrader_config.py").read_text()
    config += (TRUSTED_CONFIG if trusted else STOCK_CONFIG).format(timeout=timeout, sandbox=sandbox)
    (root / "nbgrader_config.py").write_text(config)
    (root / "solutions" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(relu_notebook(), str(root / "solutions" / ASSIGNMENT / NOTEBOOK))
    course = Course(root)
    release(course)
    return course
