"""The student's helper package: checks with precise messages, numerical gradients and plots.

It holds no solution and no hidden test (tests/test_release.py scans it to prove that).
"""
from .checks import CheckFailure, case_label, check_array, check_equal, check_raises, check_true, rel_error
from .gradcheck import check_gradient, numerical_gradient, numerical_gradient_array

__all__ = [
    "CheckFailure", "case_label", "check_array", "check_equal", "check_raises", "check_true", "rel_error",
    "check_gradient", "numerical_gradient", "numerical_gradient_array",
]
