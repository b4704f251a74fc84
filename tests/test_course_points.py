"""Points per aspect, through the real trusted grader (sandboxed kernel where bubblewrap is available).

* Correct layers written in the plain CS231n style (assert instead of ValueError, sizes rounded down, float64
  outputs) keep at least 80% of each layer's points.
* A mistake in one exercise costs that exercise only: a later function that calls the broken one is graded with
  the reference in its place (grader.hidden.isolate / stand_in), and a backward pass never needs the student's
  forward pass.
* A submission whose own code uses a given layer that is the notebook's exercise scores 0.
"""
from __future__ import annotations

import nbformat
import pytest

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.sample_class import Bug, filled_notebook
from grader.sample_cs231n import CS231N_STYLE
from grader.trusted import grade_notebook

COURSE = Course.at(REPO_ROOT)


def grade(tmp_path, assignment: str, nb: nbformat.NotebookNode) -> dict[str, tuple[float, float]]:
    """grade_id -> (score, max) for one submission, graded through the trusted path."""
    [source] = COURSE.source_notebooks(assignment)
    path = tmp_path / assignment / source.name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    result = grade_notebook(path, assignment, COURSE)
    assert not result.problem, result.problem
    return {c.grade_id: (c.score, c.max_score) for c in result.cells}


def layer_points(scores: dict[str, tuple[float, float]], function: str) -> tuple[float, float]:
    """(score, max) of every test cell of one function: test_<function> and test_<function>_<aspect>."""
    mine = [v for gid, v in scores.items() if gid == f"test_{function}" or gid.startswith(f"test_{function}_")]
    assert mine, f"no test cell grades {function}"
    return sum(s for s, _ in mine), sum(m for _, m in mine)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(CS231N_STYLE))
def test_cs231n_style_layers_keep_at_least_80_percent(tmp_path, assignment):
    [source] = COURSE.source_notebooks(assignment)
    nb = filled_notebook(COURSE, assignment, source.name, bodies=CS231N_STYLE[assignment])
    scores = grade(tmp_path, assignment, nb)
    for function in CS231N_STYLE[assignment]:
        got, best = layer_points(scores, function)
        assert got >= 0.8 * best, f"{assignment}: the CS231n-style {function} keeps {got}/{best}: {scores}"
    # the side rules they break are really graded: not every cell is full
    if assignment in ("02_conv_forward", "04_pooling"):
        assert sum(s for s, _ in scores.values()) < sum(m for _, m in scores.values())


ONE_MISTAKE = [  # (assignment, the broken exercise, its text substitution, the cells that may lose points)
    ("01_conv_geometry", Bug("neuron_output", "row * stride:row * stride + HH", "row:row + HH", "stride ignored"),
     {"test_neuron_output"}),
    ("01_conv_geometry", Bug("conv_output_size", "span = in_size - effective + 2 * pad", "span = in_size - effective",
                             "padding ignored"), {"test_conv_output_size", "test_conv_output_size_errors"}),
    ("05_im2col", Bug("im2col", "x_pad[:, :, rows, columns].transpose(1, 0, 2, 3)",
                      "x_pad[:, :, rows, columns].transpose(1, 0, 2, 3)[::-1]", "channels reversed"),
     {"test_im2col"}),
    ("05_im2col", Bug("col2im", "] += cols6", "] = cols6", "= for +="), {"test_col2im"}),
    ("04_pooling", Bug("l2_pool_forward_naive", "out = np.sqrt(sum_of_squares)", "out = sum_of_squares",
                       "no square root"), {"test_l2_pool_forward_naive"}),
    ("08_vgg_memory", Bug("layer_table", "biases = F if layer.get('bias', True) else 0", "biases = 0",
                          "conv biases left out"), {"test_layer_table", "test_layer_table_blocks"}),
]


@pytest.mark.slow
@pytest.mark.parametrize("assignment, bug, allowed", ONE_MISTAKE, ids=[f"{a}:{b.grade_id}" for a, b, _ in ONE_MISTAKE])
def test_a_mistake_costs_only_its_own_exercise(tmp_path, assignment, bug, allowed):
    [source] = COURSE.source_notebooks(assignment)
    scores = grade(tmp_path, assignment, filled_notebook(COURSE, assignment, source.name, bug=bug))
    lost = {gid for gid, (score, best) in scores.items() if score < best}
    assert lost, f"the mistake in {bug.grade_id} was not noticed at all"
    assert lost <= allowed, f"a mistake in {bug.grade_id} also cost {sorted(lost - allowed)}"


@pytest.mark.slow
def test_a_given_layer_used_where_it_is_the_exercise_scores_zero(tmp_path):
    """02's conv_forward_naive delegating to the given conv_forward: correct numbers, but the notebook scores 0."""
    assignment = "02_conv_forward"
    [source] = COURSE.source_notebooks(assignment)
    body = "    from workbook.layers import conv_forward\n    return conv_forward(x, w, b, conv_param)\n"
    nb = filled_notebook(COURSE, assignment, source.name, bodies={"conv_forward_naive": body})
    [path] = [tmp_path / assignment / source.name]
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    result = grade_notebook(path, assignment, COURSE)
    assert result.score == 0 and result.max_score == cells.total_points(cells.read(source))
    assert any(f.how == "given layer" for f in result.report.findings)
    assert "asks you to write" in result.report.notice_markdown()
