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
