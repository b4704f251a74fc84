"""The student's checks say precisely what is wrong, and the numerical gradient is right."""
from __future__ import annotations

import numpy as np
import pytest

from workbook import CheckFailure, check_array, check_equal, check_gradient, check_raises, numerical_gradient_array


def test_check_array_passes_and_prints(capsys):
    assert check_array("out", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12]), case="tiny") is None
    assert "✓ out matches for tiny" in capsys.readouterr().out


@pytest.mark.parametrize("got, expected, needle", [
    ([1.0, 2.0], np.array([1.0, 2.0]), "expected a numpy array, got list"),
    (np.array([1, 2]), np.array([1.0, 2.0]), "expected a floating point array, got dtype int64"),
    (np.array([1.0, 2.0], dtype=object), np.array([1.0, 2.0]), "expected a numeric array, got dtype object"),
    (np.zeros((2, 3)), np.zeros((3, 2)), "expected shape (3, 2), got shape (2, 3)"),
    (np.array([1.0, np.nan]), np.array([1.0, 2.0]), "1 non-finite value(s); first at index (1,)"),
    (np.array([1.0, 2.5]), np.array([1.0, 2.0]), "1 of 2 values differ; first at index (1,): expected 2, got 2.5"),
])
def test_check_array_names_the_problem(got, expected, needle):
    with pytest.raises(CheckFailure) as info:
        check_array("out", got, expected, case="case A")
    assert needle in str(info.value)
    assert str(info.value).startswith("out for case A: ")


def test_check_array_tolerance_is_explicit():
    check_array("out", np.array([1.0 + 1e-7]), np.array([1.0]), rtol=1e-6, quiet=True)
    with pytest.raises(CheckFailure, match=r"rtol=1e-08"):
        check_array("out", np.array([1.0 + 1e-7]), np.array([1.0]), rtol=1e-8, atol=0)


def test_check_equal_is_type_strict():
    check_equal("size", 55, 55, quiet=True)
    check_equal("size", np.int64(55), 55, quiet=True)
    with pytest.raises(CheckFailure, match="expected int 55, got float"):
        check_equal("size", 55.0, 55)
    with pytest.raises(CheckFailure, match="expected bool True, got int 1"):
        check_equal("flag", 1, True)
    with pytest.raises(CheckFailure, match=r"expected \(55, 55\), got \(55, 54\)"):
        check_equal("shape", (55, 54), (55, 55))


def test_check_raises():
    def bad(x):
        raise ValueError("filters do not fit: 4.5 is not an integer")

    check_raises("fit", ValueError, bad, 1, match="4.5", quiet=True)
    with pytest.raises(CheckFailure, match="does not mention 'stride'"):
        check_raises("fit", ValueError, bad, 1, match="stride")
    with pytest.raises(CheckFailure, match="but it returned 3"):
        check_raises("fit", ValueError, lambda: 3)
    with pytest.raises(CheckFailure, match="but it raised TypeError"):
        check_raises("fit", ValueError, lambda: int(None))


def test_numerical_gradient_of_a_known_function():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    a = rng.standard_normal((4, 2))
    dout = rng.standard_normal((3, 2))
    numeric = numerical_gradient_array(lambda v: np.tanh(v @ a), x, dout)
    analytic = ((1 - np.tanh(x @ a) ** 2) * dout) @ a.T
    assert np.allclose(numeric, analytic, rtol=1e-6, atol=1e-9)


def test_check_gradient_catches_a_wrong_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5)
    dout = rng.standard_normal(5)
    check_gradient("dx", 2 * x * dout, lambda v: v ** 2, x, dout)
    with pytest.raises(CheckFailure, match="dx"):
        check_gradient("dx", x * dout, lambda v: v ** 2, x, dout)


# -- calling student code --------------------------------------------------------------------------------------------
def _crashes(x):
    window = x[10]          # the student's line that raises
    return window


def test_check_call_names_the_function_the_case_and_the_students_line():
    from workbook.checks import check_call

    with pytest.raises(CheckFailure) as info:
        check_call(_crashes, np.zeros(6), case="x: (6,)")
    message = str(info.value)
    assert message.startswith("_crashes raised IndexError: index 10 is out of bounds")
    assert "for x: (6,)" in message and "in _crashes, line" in message and "window = x[10]" in message


@pytest.mark.parametrize("result, needle", [
    (None, "returned None; it should return a tuple (out, cache) (is a `return` missing?)"),
    (np.zeros(2), "returned a ndarray; it should return a tuple (out, cache)"),
    ((np.zeros(2),), "returned a tuple of 1 values; it should return 2: (out, cache)"),
])
def test_check_call_says_what_came_back_when_the_form_is_wrong(result, needle):
    from workbook.checks import check_call

    def student(x):
        return result

    student.__name__ = "conv_forward_naive"
    with pytest.raises(CheckFailure) as info:
        check_call(student, np.zeros(2), returns=("out", "cache"), case="a case")
    assert needle in str(info.value)


def test_check_call_reports_a_stub_as_not_implemented():
    from workbook.checks import check_call

    def stub(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailure, match="stub is not implemented yet"):
        check_call(stub, 1)


def test_every_check_says_none_came_back():
    from workbook.checks import check_equal

    with pytest.raises(CheckFailure, match="got None: the function returned nothing"):
        check_array("out", None, np.zeros(3))
    with pytest.raises(CheckFailure, match="got None: the function returned nothing"):
        check_equal("size", None, 55)
    with pytest.raises(CheckFailure, match="array of None"):
        check_array("out", np.array([None, None]), np.zeros(2))


def test_check_own_work_catches_a_given_layer():
    from workbook.checks import check_own_work
    from workbook.layers import conv_forward

    def honest(x, w, b, p):
        return x

    def delegating(x, w, b, p):
        def inner():
            return conv_forward(x, w, b, p)
        return inner()

    check_own_work(honest, forbidden=["conv_forward"], quiet=True)
    with pytest.raises(CheckFailure, match="uses conv_forward from workbook.layers"):
        check_own_work(delegating, forbidden=["conv_forward"])
    with pytest.raises(CheckFailure, match="is the workbook's given layer itself"):
        check_own_work(conv_forward, forbidden=["conv_forward"])


def test_function_from_notebook_runs_only_definitions(tmp_path, capsys):
    import nbformat

    from workbook.earlier import function_from_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
                nbformat.v4.new_code_cell("def double(x):\n    return 2 * np.asarray(x)\nraise RuntimeError('demo')"),
                nbformat.v4.new_code_cell("assert False, 'a test cell'", metadata={"nbgrader": {"grade": True}})]
    path = tmp_path / "earlier.ipynb"
    nbformat.write(nb, str(path))
    assert function_from_notebook(path, "double")(3) == 6
    assert function_from_notebook(path, "triple") is None
    assert function_from_notebook(tmp_path / "missing.ipynb", "double") is None
    printed = capsys.readouterr().out
    assert "defines no function triple" in printed and "is not there" in printed


def test_check_array_names_a_known_mistake_when_the_values_are_that_mistakes():
    from workbook.checks import CheckFailure, check_array

    expected = np.array([1.0, 2.0, 3.0])
    mistakes = {"the kernel is flipped": [3.0, 2.0, 1.0], "the bias is left out": [0.0, 1.0, 2.0]}
    with pytest.raises(CheckFailure, match=r"expected 1, got 3 .*This is exactly what you get when the kernel is "
                                           r"flipped"):
        check_array("out", np.array([3.0, 2.0, 1.0]), expected, mistakes=mistakes)
    with pytest.raises(CheckFailure) as failure:
        check_array("out", np.array([9.0, 2.0, 3.0]), expected, mistakes=mistakes)
    assert "exactly what you get" not in str(failure.value)
