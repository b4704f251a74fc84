"""09_train_convnet, the capstone: the numbers issue #9 promises, computed with the reference, and the notebook
graded as a whole through the trusted grader.

* The digits the workbook ships are scikit-learn's, pixel for pixel.
* With the reference solution and fixed seeds: the untrained network's loss is ln 10, it overfits 50 examples,
  it reaches 97% on the held-out test digits in under 60 s of training, and the same network trained as a
  regression on the digit's value does clearly worse.
* A complete submission gets full marks, the release as handed out gets 0, and the classic bug (the softmax
  gradient not divided by the batch size) costs the softmax exercise and the accuracy test, nothing else.
  (The CS231n-style student of grader/sample_cs231n.py is graded by tests/test_course_points.py.)
"""
from __future__ import annotations

import os
import time

import nbformat
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.reference import reference
from grader.sample_class import CLASSIC_BUGS, filled_notebook
from workbook.checks import CheckFailure
from workbook.datasets import load_digits

ASSIGNMENT = "09_train_convnet"
COURSE = Course.at(REPO_ROOT)
[SOURCE] = COURSE.source_notebooks(ASSIGNMENT)


@pytest.fixture(scope="module")
def ref():
    return reference(ASSIGNMENT)


@pytest.fixture(scope="module")
def classifier(ref):
    """The classifier of the notebook's training section: init seed 0, shuffling seed 1, SETUP; and its time."""
    with threadpool_limits(limits=1):
        started = time.perf_counter()
        params, history = ref.train(ref.classification_loss, ref.init_convnet(seed=0), ref.X_train, ref.y_train,
                                    update_rule=ref.sgd_momentum, seed=1, progress=False, **ref.SETUP)
        return params, history, time.perf_counter() - started


def test_shipped_digits_are_scikit_learns():
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("scikit-learn is a dev dependency: CI must compare the shipped digits with it")
        pytest.skip("scikit-learn not installed (pip install -e '.[dev]')")
    images, labels = load_digits()
    theirs = sklearn_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.dtype == theirs.images.dtype and labels.dtype == theirs.target.dtype
    assert np.array_equal(images, theirs.images) and np.array_equal(labels, theirs.target)


def test_the_split_is_fixed_and_disjoint(ref):
    assert (len(ref.y_train), len(ref.y_val), len(ref.y_test)) == (1257, 180, 360)
    assert len(set(ref.train_idx) | set(ref.val_idx) | set(ref.test_idx)) == 1797
    assert ref.X_train.shape == (1257, 1, 8, 8) and 0 <= ref.X_train.min() and ref.X_train.max() == 1


def test_initial_loss_is_ln_10(ref):
    loss, grads = ref.classification_loss(ref.init_convnet(seed=0), ref.X_train, ref.y_train)
    assert abs(loss - np.log(10)) < 0.02
    assert sorted(grads) == sorted(ref.init_convnet(seed=0))


def test_it_overfits_50_examples(ref):
    X, y = ref.X_train[:50], ref.y_train[:50]
    with threadpool_limits(limits=1):
        params, history = ref.train(ref.classification_loss, ref.init_convnet(seed=0), X, y,
                                    update_rule=ref.sgd_momentum, optim_config={'learning_rate': 0.02, 'momentum': 0.9},
                                    batch_size=10, num_epochs=30, seed=0, progress=False)
    assert ref.accuracy(params, X, y) == 1.0
    assert history['loss'][-1] < 0.01


def test_it_reaches_97_percent_on_held_out_digits_in_under_60_s(ref, classifier):
    params, history, seconds = classifier
    assert ref.accuracy(params, ref.X_test, ref.y_test) >= 0.97
    assert seconds < 60
    assert len(history['loss']) == ref.SETUP['num_epochs'] * int(np.ceil(1257 / ref.SETUP['batch_size']))


def test_the_graded_seeds_reach_97_percent_too(ref):
    """test_train_digits trains with init seed 2 and shuffling seed 3; the reference must pass it with a margin."""
    with threadpool_limits(limits=1):
        params, _ = ref.train(ref.classification_loss, ref.init_convnet(seed=2), ref.X_train, ref.y_train,
                              update_rule=ref.sgd_momentum, seed=3, progress=False, **ref.SETUP)
    assert ref.accuracy(params, ref.X_test, ref.y_test) >= 0.98


def test_regression_on_the_value_is_worse_than_classification(ref, classifier):
    """The notes' advice, measured: same body, init, optimizer and budget; one output and the L2 loss."""
    params, _, _ = classifier
    with threadpool_limits(limits=1):
        reg, _ = ref.train(ref.regression_loss, ref.init_convnet(num_outputs=1, seed=0), ref.X_train,
                           ref.value_targets(ref.y_train), update_rule=ref.sgd_momentum, seed=1, progress=False,
                           **ref.SETUP)
    regression = ref.regression_accuracy(reg, ref.X_test, ref.y_test)
    classification = ref.accuracy(params, ref.X_test, ref.y_test)
    assert regression < 0.85 <= 0.97 <= classification
    assert classification - regression > 0.2


# -- the named mistakes of the softmax, without a kernel ----------------------------------------------------------

def hidden_part(grade_id: str) -> str:
    [cell] = [c for c in cells.read(SOURCE).cells if cells.grade_id(c) == grade_id]
    lines, inside = [], False
    for line in cell.source.splitlines():
        if line.strip() == cells.BEGIN_HIDDEN:
            inside = True
        elif line.strip() == cells.END_HIDDEN:
            inside = False
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def naive_softmax(scores, y):
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    N = len(y)
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    return float(-np.mean(np.log(probs[np.arange(N), y]))), dscores / N


def batch_max_softmax(scores, y):
    return naive_softmax(scores - scores.max(), y)


@pytest.mark.parametrize("softmax", [naive_softmax, batch_max_softmax], ids=["no shift", "one maximum per batch"])
def test_softmax_without_each_rows_maximum_is_named_and_charged_once(softmax):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        exec(hidden_part("test_softmax_loss"), {"np": np, "softmax_loss": softmax})   # small scores: correct
        with pytest.raises(CheckFailure, match="without first subtracting each row's own maximum"):
            exec(hidden_part("test_softmax_loss_stability"), {"np": np, "softmax_loss": softmax})


def test_the_missing_mean_is_named_by_the_loss_test_only(ref):
    def no_mean(scores, y):
        loss, dscores = ref.softmax_loss(scores, y)
        return loss, dscores * len(y)

    with pytest.raises(CheckFailure, match="the mean over the batch is forgotten in the gradient"):
        exec(hidden_part("test_softmax_loss"), {"np": np, "softmax_loss": no_mean})
    exec(hidden_part("test_softmax_loss_stability"), {"np": np, "softmax_loss": no_mean})


# -- graded through the trusted grader ---------------------------------------------------------------------------

def grade(path):
    """Grade one submission of 09 through the trusted path; grade_id -> (score, max), and the cells' messages.

    The one place this module calls the grading core (being refactored elsewhere): adapt it here if its API moves.
    """
    from grader.trusted import grade_notebook

    result = grade_notebook(path, ASSIGNMENT, COURSE, sandbox="none")
    assert not result.problem, result.problem
    return {c.grade_id: (c.score, c.max_score) for c in result.cells}, {c.grade_id: c.message for c in result.cells}


def _submit(tmp_path, nb) -> str:
    path = tmp_path / ASSIGNMENT / SOURCE.name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_a_complete_submission_gets_full_marks(tmp_path):
    scores, messages = grade(_submit(tmp_path, filled_notebook(COURSE, ASSIGNMENT, SOURCE.name)))
    total = cells.total_points(cells.read(SOURCE))
    assert sum(s for s, _ in scores.values()) == sum(m for _, m in scores.values()) == total == 23, messages


@pytest.mark.slow
def test_the_release_as_handed_out_gets_zero(tmp_path):
    scores, _ = grade(_submit(tmp_path, cells.read(COURSE.release / ASSIGNMENT / SOURCE.name)))
    assert sum(m for _, m in scores.values()) == 23
    assert sum(s for s, _ in scores.values()) == 0


@pytest.mark.slow
def test_the_classic_bug_costs_the_softmax_and_the_trained_accuracy_only(tmp_path):
    bug = CLASSIC_BUGS[ASSIGNMENT]
    scores, messages = grade(_submit(tmp_path, filled_notebook(COURSE, ASSIGNMENT, SOURCE.name, bug=bug)))
    lost = {gid for gid, (score, best) in scores.items() if score < best}
    # The stability cell compares softmax_loss with itself, so the missing mean is charged once; the accuracy test
    # trains the assembled network and depends on every exercise by design.
    assert lost == {"test_softmax_loss", "test_train_digits"}, lost
    assert "the mean over the batch is forgotten in the gradient" in messages["test_softmax_loss"]
