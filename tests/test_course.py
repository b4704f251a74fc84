"""The notebooks form one course: each function graded once, given layers where the exercise is not, hints that do
not hand over the answer, one contract for windows that do not fit, points per aspect.

The rules are docs/AUTHORING.md's "The course as a whole".
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict

import numpy as np
import pytest

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.leaks import _norm, secret_lines
from grader.reference import python_lines, reference
from grader.trusted.grading import load_course_config
from grader.trusted.audit import ImportAudit
from workbook import layers

COURSE = Course.at(REPO_ROOT)
SOURCES = {a: COURSE.source_notebooks(a)[0] for a in COURSE.assignments()}

# Every graded function of the course and the one notebook that grades it.
GRADED = {
    "conv_output_size": "01_conv_geometry", "same_padding": "01_conv_geometry",
    "conv_param_count": "01_conv_geometry", "neuron_output": "01_conv_geometry",
    "depth_column": "01_conv_geometry", "depth_slice": "01_conv_geometry",
    "zero_pad": "02_conv_forward", "conv_forward_naive": "02_conv_forward",
    "conv_backward_naive": "03_conv_backward", "conv_backward_dx_via_forward": "03_conv_backward",
    "max_pool_forward_naive": "04_pooling", "max_pool_backward_naive": "04_pooling",
    "avg_pool_forward_naive": "04_pooling", "avg_pool_backward_naive": "04_pooling",
    "l2_pool_forward_naive": "04_pooling", "l2_pool_backward_naive": "04_pooling",
    "global_avg_pool_forward": "04_pooling", "global_avg_pool_backward": "04_pooling",
    "im2col": "05_im2col", "col2im": "05_im2col", "conv_forward_im2col": "05_im2col",
    "conv_backward_im2col": "05_im2col", "max_pool_forward_im2col": "05_im2col",
    "max_pool_backward_im2col": "05_im2col",
    "conv1x1_forward": "06_1x1_and_dilated", "conv_forward_dilated": "06_1x1_and_dilated",
    "conv_backward_dilated": "06_1x1_and_dilated", "receptive_field": "06_1x1_and_dilated",
    "fc_to_conv": "07_fc_to_conv", "conv_as_matrix": "07_fc_to_conv",
    "layer_table": "08_vgg_memory", "training_memory": "08_vgg_memory", "max_batch_size": "08_vgg_memory",
    "softmax_loss": "09_train_convnet", "l2_loss": "09_train_convnet", "convnet_loss": "09_train_convnet",
    "sgd_momentum": "09_train_convnet", "train": "09_train_convnet",
}


def _solution_functions(nb) -> list[str]:
    return [node.name for cell in nb.cells if cells.is_solution(cell) and cell.cell_type == "code"
            for node in ast.parse(python_lines(cell.source)).body if isinstance(node, ast.FunctionDef)]


def _defined_functions(nb) -> list[str]:
    """Top-level functions of every code cell that is not a test cell."""
    names = []
    for cell in nb.cells:
        if cell.cell_type != "code" or cells.is_test(cell):
            continue
        names += [node.name for node in ast.parse(python_lines(cell.source)).body
                  if isinstance(node, ast.FunctionDef)]
    return names


def test_each_graded_function_is_graded_in_exactly_one_notebook():
    where = defaultdict(list)
    for assignment, path in SOURCES.items():
        for name in _solution_functions(cells.read(path)):
            where[name].append(assignment)
    listing = {name: places[0] for name, places in where.items()}
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert twice == {}, f"graded in more than one notebook: {twice}"
    assert listing == GRADED, "the graded functions changed: update GRADED (and the README's table)"


def test_no_function_is_defined_in_two_source_notebooks():
    where = defaultdict(set)
    for assignment, path in SOURCES.items():
        for name in _defined_functions(cells.read(path)):
            where[name].add(assignment)
    twice = {name: sorted(places) for name, places in where.items() if len(places) > 1}
    assert twice == {}, f"defined in more than one source notebook (a second copy that can drift): {twice}"


def test_every_graded_function_has_a_test_cell_that_grades_it():
    for assignment, path in SOURCES.items():
        nb = cells.read(path)
        tests = "\n".join(c.source for c in nb.cells if cells.is_test(c))
        for name in _solution_functions(nb):
            assert re.search(rf"\b{name}\b", tests), f"{assignment}: no test cell calls {name}"


# -- hints ----------------------------------------------------------------------------------------------------------

_HINT = re.compile(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", re.S)
_SPANS = re.compile(r"```(?:python)?\n(.*?)```|`([^`\n]+)`", re.S)


def _hint_code(hint: str) -> list[str]:
    """The code in a hint: every line of a fenced block and every inline code span."""
    found = []
    for block, span in _SPANS.findall(hint):
        found += block.splitlines() if block else [span]
    return [_norm(line) for line in found if line.strip()]


_SHAPES = re.compile(r"^[\w, ]+ = \w+\.shape$")   # N, C, H, W = x.shape: a contract's shapes, not a solution


def _solution_statements(nb) -> set[str]:
    """Lines of the solution regions worth hiding: 10 significant characters or more, `return ` stripped, shape
    unpacking left out."""
    lines = set()
    for line in secret_lines(nb):
        line = line.removeprefix("return ")
        if len(line.replace(" ", "")) >= 10 and not _SHAPES.match(line):
            lines.add(line)
    return lines


@pytest.mark.parametrize("assignment", sorted(SOURCES))
def test_hints_come_in_two_tiers_and_hold_no_solution_line(assignment):
    nb = cells.read(SOURCES[assignment])
    solution = _solution_statements(nb)
    summaries = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for summary, body in _HINT.findall(cell.source):
            summaries.append(summary.strip())
            leaked = [code for code in _hint_code(body) if any(line in code for line in solution)]
            assert not leaked, f"{assignment} cell {index}: the hint {summary!r} holds solution code: {leaked}"
    nudges = summaries.count("If you're stuck")
    derivations = summaries.count("Still stuck: the derivation")
    assert nudges == derivations == len(_solution_functions(nb)), \
        f"{assignment}: {nudges} nudges and {derivations} derivations for {len(_solution_functions(nb))} exercises"


def test_the_hint_scanner_can_fail():
    nb = cells.read(SOURCES["02_conv_forward"])
    solution = _solution_statements(nb)
    leaky = ("<details><summary>If you're stuck</summary>\n\n`out[n, f, i, j] = np.sum(window * w[f]) + b[f]`\n"
             "</details>")
    [(_, body)] = _HINT.findall(leaky)
    assert any(line in code for code in _hint_code(body) for line in solution)


# -- given layers and the import audit ---------------------------------------------------------------------------------

def test_forbidden_given_layers_exist_and_cover_the_exercises():
    audit = ImportAudit(config=load_course_config(COURSE))
    assert audit.forbidden, "nbgrader_config.py lists no forbidden given layers"
    for assignment, names in audit.forbidden.items():
        assert assignment in SOURCES, f"c.ImportAudit.forbidden names an unknown assignment {assignment}"
        for name in names:
            assert name in layers.__all__, f"{assignment}: {name} is not a given layer"
    # Wherever a given layer computes an exercise, that notebook forbids it.
    exercises = {"02_conv_forward": "conv_forward", "03_conv_backward": "conv_backward",
                 "04_pooling": "max_pool_forward", "05_im2col": "conv_forward", "06_1x1_and_dilated": "conv_forward"}
    for assignment, name in exercises.items():
        assert name in audit.forbidden[assignment]


def test_every_notebook_that_uses_a_given_layer_imports_it_in_instructor_code():
    for assignment, path in SOURCES.items():
        nb = cells.read(path)
        for cell in nb.cells:
            if cells.is_solution(cell) and "workbook.layers" in cell.source:
                pytest.fail(f"{assignment}: a solution imports the given layers; the set-up cell should")


# -- one contract for windows that do not fit -----------------------------------------------------------------------

MISFIT = np.zeros((1, 2, 5, 4))
MISFIT_POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}   # (5 - 2) / 2 + 1 = 2.5 along the height


def _pooling_forwards():
    pool, fast = reference("04_pooling"), reference("05_im2col")
    return [("04 max", pool.max_pool_forward_naive), ("04 avg", pool.avg_pool_forward_naive),
            ("04 l2", pool.l2_pool_forward_naive), ("05 max", fast.max_pool_forward_im2col),
            ("given max", layers.max_pool_forward), ("given avg", layers.avg_pool_forward)]


@pytest.mark.parametrize("label, forward", _pooling_forwards(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_pooling_layer_refuses_windows_that_do_not_tile(label, forward):
    with pytest.raises(ValueError, match=r"2\.5"):
        forward(MISFIT, MISFIT_POOL)


def test_every_convolution_refuses_filters_that_do_not_fit():
    x, w, b = np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), np.zeros(1)
    param = {"stride": 3, "pad": 1}                       # (5 + 2 - 3) / 3 + 1 = 2.33
    for fn in (reference("02_conv_forward").conv_forward_naive, reference("05_im2col").conv_forward_im2col,
               reference("06_1x1_and_dilated").conv_forward_dilated, layers.conv_forward):
        with pytest.raises(ValueError):
            fn(x, w, b, param)


# -- points per aspect ------------------------------------------------------------------------------------------------

ASPECTS = ("_errors", "_dtype", "_cache")
# The rule is for layers; for geometry and accounting functions (conv_output_size, training_memory) refusing what
# does not fit is much of the exercise.
LAYER = re.compile(r"forward|backward|im2col|col2im")


@pytest.mark.parametrize("assignment", sorted(SOURCES))
def test_side_rules_are_worth_at_most_a_fifth_of_a_layer(assignment):
    """A correct computation that misses every side rule keeps at least 80% of the layer's points."""
    nb = cells.read(SOURCES[assignment])
    points = {cells.grade_id(c): cells.points(c) for c in nb.cells if cells.is_test(c)}
    for gid, value in points.items():
        if gid.endswith(ASPECTS) or not LAYER.search(gid):
            continue
        side = sum(v for g, v in points.items() if g.startswith(gid + "_") and g.endswith(ASPECTS) and g != gid)
        assert side <= 0.2 * (value + side) + 1e-9, \
            f"{assignment}: {gid}'s side rules are worth {side} of {value + side}"
