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
from typing import Any, Callable, Iterable, Sequence

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
    "check_call",
    "student_line",
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
                case: str | None = None, hint: str | None = None, quiet: bool = False,
                mistakes: dict[str, Any] | None = None) -> None:
    """Check that ``got`` is an array like ``expected`` and equal to it within tolerance.

    In order: ``got`` is a ``numpy.ndarray``; its dtype kind is numeric and matches ``expected``'s
    (a float result must be float); its shape matches; it is finite wherever ``expected`` is;
    ``|got - expected| <= atol + rtol * |expected|`` everywhere. On failure the message names the
    first offending element with both values and the largest relative error.

    ``mistakes`` maps a known mistake ("the kernel is flipped") to the values that mistake gives (literals the
    test states, never computed from the student's code): when ``got`` matches one of them, the message names it.

    Returns None on purpose: a check that is the last line of a graded cell must not produce a value,
    because nbgrader would read a numeric cell result as partial credit.
    """
    expected = np.asarray(expected)
    if got is None:
        raise _fail(name, case, "expected a numpy array, got None: the function returned nothing (is a `return` "
                                "missing, or does it return only inside an `if`?)", hint)
    if not isinstance(got, np.ndarray):
        raise _fail(name, case, f"expected a numpy array, got {type(got).__name__} ({describe(got)})", hint)
    if got.dtype.kind == "O" and got.size and all(v is None for v in got.flat):
        raise _fail(name, case, "expected a numpy array of numbers, got an array of None: the function returned "
                                "nothing where numbers were expected (is a `return` missing?)", hint)
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
        problem = (f"{n_bad} of {close.size} values differ; first at index {idx}: expected {exp_f[idx]:.6g}, "
                   f"got {got_f[idx]:.6g} (max relative error {err:.1e}; tolerance rtol={rtol:g}, atol={atol:g})")
        for mistake, mistaken in (mistakes or {}).items():
            mistaken = np.asarray(mistaken, dtype=np.float64)
            if mistaken.shape == got_f.shape and np.allclose(got_f, mistaken, rtol=rtol, atol=atol):
                problem += f". This is exactly what you get when {mistake}"
                break
        raise _fail(name, case, problem, hint)
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
    if got is None and expected is not None:
        raise _fail(name, case, f"expected {type(expected).__name__} {expected!r}, got None: the function returned "
                                f"nothing (is a `return` missing?)", hint)
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
    except NotImplementedError:
        raise _fail(name, case, f"expected {exception.__name__}, but the function is not implemented yet (it raised "
                                f"NotImplementedError)", hint) from None
    except Exception as err:  # a different exception is a wrong answer, reported as such
        where = student_line(err)
        raise _fail(name, case, f"expected {exception.__name__}, but it raised {type(err).__name__}: {err}"
                    + (f" ({where})" if where else ""), hint) from None
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


# -- calling the student's code ---------------------------------------------------------------------------------

def _is_library_file(filename: str) -> bool:
    """Frames of numpy, the standard library or this package are not the student's code."""
    import os
    import sys

    if filename.startswith("<frozen") or filename == __file__:
        return True
    here = os.path.dirname(os.path.abspath(__file__))
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, here)}
    real = os.path.realpath(filename)
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def student_line(err: BaseException) -> str | None:
    """Where in the student's own code ``err`` was raised: ``"line 12: out[n] = ..."``, or None.

    The innermost frame of the traceback that is not numpy, the standard library or this package: in a
    notebook, a line of a cell. Exceptions that come back from the trusted grader's sandboxed kernel carry
    that text in their ``student_line`` attribute instead.
    """
    import linecache
    import traceback

    carried = getattr(err, "student_line", None)
    if isinstance(carried, str) and carried:
        return carried
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not _is_library_file(f.filename)]
    if not frames:
        return None
    frame = frames[-1]
    text = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
    where = f"in {frame.name}, line {frame.lineno}" if frame.name != "<module>" else f"line {frame.lineno}"
    return f"{where}: {text}" if text else where


def _returns_problem(result: Any, returns: Sequence[str]) -> str | None:
    shown = ", ".join(returns)
    if len(returns) == 1:
        return "returned None (is a `return` missing?)" if result is None else None
    if result is None:
        return f"returned None; it should return a tuple ({shown}) (is a `return` missing?)"
    if not isinstance(result, tuple):
        return f"returned a {type(result).__name__}; it should return a tuple ({shown})"
    if len(result) != len(returns):
        return f"returned a tuple of {len(result)} values; it should return {len(returns)}: ({shown})"
    return None


def check_call(fn: Callable, *args, case: str | None = None, returns: Sequence[str] | None = None,
               hint: str | None = None, **kwargs) -> Any:
    """Call the student's ``fn(*args, **kwargs)`` and return what it returns.

    When it raises, the check fails with a message that names the function, the exception, the case and the
    line of the student's code that raised: ``conv_forward_naive raised IndexError: index 6 is out of bounds
    for axis 0 with size 6 for x: (2, 3, 4, 4), stride 2 (in conv_forward_naive, line 31: window = ...)``.
    A stub that still raises ``NotImplementedError`` is reported as not implemented yet. With ``returns``
    (the names of the values it must return, e.g. ``("out", "cache")``), a result of the wrong form (None,
    not a tuple, a tuple of the wrong length) fails the same way instead of failing later in the test.
    ``hint`` is added to the message (say what the arguments are, e.g. the form of a cache).
    """
    name = getattr(fn, "__name__", None) or "the function"

    def failure(problem: str, where: str | None = None) -> CheckFailure:
        return CheckFailure(f"{name} {problem}{_where(case)}" + (f"\n  ({where})" if where else "")
                            + (f"\n  Hint: {hint}" if hint else ""))

    try:
        result = fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{name} is not implemented yet (it raised NotImplementedError): fill in its cell, run "
                           f"it, and run this test again") from None
    except Exception as err:
        raise failure(f"raised {type(err).__name__}: {err}", student_line(err)) from None
    if returns is not None:
        problem = _returns_problem(result, tuple(returns))
        if problem:
            raise failure(problem)
    return result


def _referenced_names(code) -> set[str]:
    """Global and attribute names a code object (and every function nested in it) refers to."""
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _referenced_names(const)
    return names


def check_own_work(fn: Callable, forbidden: Iterable[str], *, quiet: bool = False) -> None:
    """Check that ``fn`` does not use a given layer of :mod:`workbook.layers` that this notebook asks you to write.

    ``forbidden`` are the names of the given layers that are this notebook's exercise (``conv_forward`` in
    ``02_conv_forward``). The autograder enforces the same rule on the whole submission (the course's import
    audit scores a notebook that uses them 0); this check tells you before you submit.
    """
    forbidden = set(forbidden)
    name = getattr(fn, "__name__", "the function")
    if getattr(fn, "__module__", None) == "workbook.layers":
        raise CheckFailure(f"{name} is the workbook's given layer itself; this notebook asks you to write it")
    code = getattr(fn, "__code__", None)
    if code is None:  # not a plain Python function (in the autograder, the import audit checks this)
        return
    used = sorted(_referenced_names(code) & forbidden)
    if used:
        raise CheckFailure(f"{name} uses {', '.join(used)} from workbook.layers, the given layer that this "
                           f"notebook asks you to write yourself; the autograder scores a notebook that uses it 0")
    if not quiet:
        print(f"✓ {name} is your own code (it uses no given layer that is this notebook's exercise)")
