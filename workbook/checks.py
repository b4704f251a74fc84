"""Checks that tell a student precisely what is wrong.

Every visible test in the notebooks, and every hidden test the grader runs, compares values through
this module, so a student sees the same kind of message in both: which case failed, what was expected,
what came back, and by how much it differs.

    >>> check_array("out", np.zeros((2, 3)), np.zeros((2, 3)), case="x: (2, 3)")
    ✓ out matches for x: (2, 3) (max relative error 0.0e+00)

A failed check raises :class:`CheckFailure` (an ``AssertionError``), so a test cell that fails is a
red cell in JupyterLab and a failed grade cell in nbgrader.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable

import numpy as np

__all__ = [
    "CheckFailure",
    "rel_error",
    "check_array",
    "check_equal",
    "check_raises",
    "check_true",
    "describe",
    "case_label",
]


class CheckFailure(AssertionError):
    """A check did not hold. The message says which case, what was expected and what came back."""


def rel_error(x, y) -> float:
    """Largest elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)`` (the CS231n measure)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def describe(value: Any) -> str:
    """A short description of a value for a message: arrays by shape and dtype, others by repr."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _where(case: str | None) -> str:
    return f" for {case}" if case else ""


def _fail(name: str, case: str | None, problem: str, hint: str | None = None) -> CheckFailure:
    message = f"{name}{_where(case)}: {problem}"
    if hint:
        message += f"\n  Hint: {hint}"
    return CheckFailure(message)


_KIND_NAMES = {"f": "floating point", "i": "integer", "u": "unsigned integer", "b": "boolean",
               "c": "complex", "O": "Python objects", "U": "strings", "S": "bytes", "V": "void", "M": "datetime"}


def check_array(name: str, got: Any, expected: np.ndarray, *, rtol: float = 1e-6, atol: float = 1e-8,
                case: str | None = None, hint: str | None = None, quiet: bool = False) -> None:
    """Check that ``got`` is an array like ``expected`` and equal to it within tolerance.

    In order: ``got`` is a ``numpy.ndarray``; its dtype kind is numeric and matches ``expected``'s
    (a float result must be float); its shape matches; it is finite wherever ``expected`` is;
    ``|got - expected| <= atol + rtol * |expected|`` everywhere. On failure the message names the
    first offending element with both values and the largest relative error.

    Returns None on purpose: a check that is the last line of a graded cell must not produce a value,
    because nbgrader would read a numeric cell result as partial credit.
    """
    expected = np.asarray(expected)
    if not isinstance(got, np.ndarray):
        raise _fail(name, case, f"expected a numpy array, got {type(got).__name__} ({describe(got)})", hint)
    if got.dtype.kind not in "fiub":
        raise _fail(name, case, f"expected a numeric array, got dtype {got.dtype} "
                                f"({_KIND_NAMES.get(got.dtype.kind, got.dtype.kind)})", hint)
    if expected.dtype.kind == "f" and got.dtype.kind != "f":
        raise _fail(name, case, f"expected a floating point array, got dtype {got.dtype}",
                    hint or "did you create the output with an integer dtype, e.g. np.zeros_like of an int array?")
    if got.shape != expected.shape:
        raise _fail(name, case, f"expected shape {expected.shape}, got shape {got.shape}", hint)
    got_f = got.astype(np.float64)
    exp_f = expected.astype(np.float64)
    bad_finite = ~np.isfinite(got_f) & np.isfinite(exp_f)
    if bad_finite.any():
        idx = tuple(int(i) for i in np.argwhere(bad_finite)[0])
        raise _fail(name, case, f"{int(bad_finite.sum())} non-finite value(s); first at index {idx}: "
                                f"expected {exp_f[idx]:.6g}, got {got_f[idx]}", hint)
    err = rel_error(got_f, exp_f)
    close = np.isclose(got_f, exp_f, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        idx = tuple(int(i) for i in np.argwhere(~close)[0])
        n_bad = int((~close).sum())
        raise _fail(
            name, case,
            f"{n_bad} of {close.size} values differ; first at index {idx}: expected {exp_f[idx]:.6g}, "
            f"got {got_f[idx]:.6g} (max relative error {err:.1e}; tolerance rtol={rtol:g}, atol={atol:g})",
            hint)
    if not quiet:
        print(f"✓ {name} matches{_where(case)} (max relative error {err:.1e})")


def _same_kind(got: Any, expected: Any) -> bool:
    """Whether ``got`` has the type ``expected`` calls for (numpy integers count as integers)."""
    if isinstance(expected, (bool, np.bool_)) or isinstance(got, (bool, np.bool_)):
        return isinstance(got, (bool, np.bool_)) and isinstance(expected, (bool, np.bool_))
    if isinstance(expected, numbers.Integral):
        return isinstance(got, numbers.Integral)
    return type(got) is type(expected)


def check_equal(name: str, got: Any, expected: Any, *, case: str | None = None, hint: str | None = None,
                quiet: bool = False) -> None:
    """Check an exact value: an int, a tuple of ints, a string, a bool.

    Types are part of the check: ``55.0`` is not the integer ``55`` (a size is an integer), and a list
    is not a tuple.
    """
    ok = _same_kind(got, expected)
    if not ok:
        raise _fail(name, case, f"expected {type(expected).__name__} {expected!r}, got {type(got).__name__} "
                                f"{describe(got)}", hint)
    if isinstance(expected, (tuple, list)):
        if len(got) != len(expected) or any(not _same_kind(g, e) or g != e for g, e in zip(got, expected)):
            raise _fail(name, case, f"expected {expected!r}, got {got!r}", hint)
    elif got != expected:
        raise _fail(name, case, f"expected {expected!r}, got {got!r}", hint)
    if not quiet:
        print(f"✓ {name}{_where(case)} = {expected!r}")


def check_true(name: str, condition: bool, *, case: str | None = None, problem: str = "the condition does not hold",
               hint: str | None = None, quiet: bool = False) -> None:
    """Check a property that is not a plain comparison (``condition`` must be a real ``True``)."""
    if condition is not True and not (isinstance(condition, np.bool_) and bool(condition)):
        raise _fail(name, case, problem, hint)
    if not quiet:
        print(f"✓ {name}{_where(case)}")


def check_raises(name: str, exception: type[BaseException], fn: Callable, *args, case: str | None = None,
                 match: str | None = None, hint: str | None = None, quiet: bool = False, **kwargs) -> None:
    """Check that ``fn(*args, **kwargs)`` raises ``exception`` (and, with ``match``, that its message says so)."""
    try:
        result = fn(*args, **kwargs)
    except exception as err:
        if match is not None and match.lower() not in str(err).lower():
            raise _fail(name, case, f"raised {type(err).__name__} as it should, but its message {str(err)!r} "
                                    f"does not mention {match!r}", hint) from None
        if not quiet:
            print(f"✓ {name}{_where(case)} raises {exception.__name__}: {err}")
        return
    except Exception as err:  # a different exception is a wrong answer, reported as such
        raise _fail(name, case, f"expected {exception.__name__}, but it raised {type(err).__name__}: {err}",
                    hint) from None
    raise _fail(name, case, f"expected {exception.__name__}, but it returned {describe(result)}", hint)


def case_label(**values: Any) -> str:
    """A label for a test case: arrays by shape, other values by repr.

    >>> case_label(x=np.zeros((2, 3, 5, 5)), stride=2)
    'x: (2, 3, 5, 5), stride=2'
    """
    parts = []
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{key}: {value.shape}")
        else:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)
