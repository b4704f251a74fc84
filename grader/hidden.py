"""Building blocks of hidden tests: compare a student's function with the reference on many cases.

A hidden test in a source notebook looks like::

    ### BEGIN HIDDEN TESTS
    from grader.hidden import reference, check_function
    from grader.cases import conv_cases
    ref = reference("02_conv_forward")
    check_function("conv_forward_naive", conv_forward_naive, ref.conv_forward_naive,
                   conv_cases(seed=2), outputs=("out", None), rtol=1e-7, atol=1e-9,
                   mistakes={"the kernel is flipped (that is convolution, not cross-correlation)":
                                 lambda x, w, b, p: ref.conv_forward_naive(x, w[:, :, ::-1, ::-1], b, p)})
    ### END HIDDEN TESTS

Every case runs on fresh copies of its inputs; every output is checked for type, dtype kind, shape and
finiteness before its values (``workbook.checks.check_array``), and when a wrong output equals what a
known mistake produces, the message names the mistake.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from workbook.checks import CheckFailure, check_array, describe, student_line

from .reference import reference  # re-exported for hidden tests

__all__ = ["Case", "reference", "check_function", "check_cache", "check_raises_on", "check_dtype", "isolate",
           "stand_in",
           "call_student",
           "CheckFailure"]


@dataclass
class Case:
    """One set of arguments for the function under test, with a label a student can read."""

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def fresh(self) -> tuple[tuple, dict]:
        return copy.deepcopy(self.args), copy.deepcopy(self.kwargs)


def call_student(name: str, fn: Callable, case: Case) -> Any:
    """Call a student's function on a case; turn any exception into a readable failure."""
    args, kwargs = case.fresh()
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailure(f"{name} is not implemented yet (it raised NotImplementedError) for {case.label}") from None
    except Exception as err:
        where = student_line(err)
        raise CheckFailure(f"{name} raised {type(err).__name__}: {err} for {case.label}"
                           + (f"\n  ({where})" if where else "")) from err


def _select(name: str, result: Any, outputs: str | Sequence[str | None], case: Case) -> dict[str, Any]:
    """Map a function's return value to the named outputs that are compared (None = not compared)."""
    if isinstance(outputs, str):
        return {outputs: result}
    if not isinstance(result, tuple) or len(result) != len(outputs):
        shown = [o or "..." for o in outputs]
        raise CheckFailure(f"{name} should return a tuple ({', '.join(shown)}) of {len(outputs)} values for "
                           f"{case.label}, got {type(result).__name__}"
                           + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return {label: value for label, value in zip(outputs, result) if label is not None}


def _matches(got: Mapping[str, Any], candidate: Mapping[str, Any], rtol: float, atol: float) -> bool:
    for key, value in got.items():
        other = np.asarray(candidate[key])
        if not isinstance(value, np.ndarray) or value.shape != other.shape or value.dtype.kind not in "fiub":
            return False
        if not np.allclose(value.astype(np.float64), other.astype(np.float64), rtol=rtol, atol=atol):
            return False
    return True


def check_function(name: str, student: Callable, reference_fn: Callable, cases: Sequence[Case], *,
                   outputs: str | Sequence[str | None], rtol: float, atol: float,
                   mistakes: Mapping[str, Callable] | None = None) -> None:
    """Check ``student`` against ``reference_fn`` on every case; raise on the first failure.

    ``outputs`` names what the function returns: a single name for one return value, or a sequence with
    one entry per tuple element (``None`` for an element that is not compared, such as a cache).
    ``mistakes`` maps a description of a known mistake to a function with the reference's signature that
    makes that mistake; a wrong answer equal to one of them is reported by name.

    Returns None: a value as a graded cell's last expression would count as nbgrader partial credit.
    """
    for case in cases:
        got = _select(name, call_student(name, student, case), outputs, case)
        args, kwargs = case.fresh()
        expected = _select(name, reference_fn(*args, **kwargs), outputs, case)
        for label, value in got.items():
            try:
                check_array(f"{name}: {label}", value, expected[label], rtol=rtol, atol=atol, case=case.label,
                            quiet=True)
            except CheckFailure as failure:
                diagnosis = _diagnose(got, mistakes or {}, case, outputs, rtol, atol)
                if diagnosis:
                    raise CheckFailure(f"{failure}\n  This is exactly what you get when {diagnosis}.") from None
                raise
    print(f"✓ {name} matches the reference on {len(cases)} hidden cases")


def _diagnose(got, mistakes, case, outputs, rtol, atol) -> str | None:
    for description, make_mistake in mistakes.items():
        args, kwargs = case.fresh()
        try:
            candidate = _select("mistake", make_mistake(*args, **kwargs), outputs, case)
        except Exception:  # a mistake that cannot run on this case simply does not match
            continue
        if _matches(got, candidate, rtol, atol):
            return description
    return None


def isolate(student: Callable, **replacements: Callable) -> None:
    """Grade ``student`` on its own: from here on, run it with its calls of earlier exercises' functions answered by
    the reference (``isolate(depth_slice, neuron_output=ref.neuron_output)``), so a mistake in an earlier exercise
    is not charged again here.

    Put it in a hidden region at the top of the test cell, so the visible checks of the cell run isolated too. It
    works in the trusted grader, where ``student`` is a proxy of the student's function; in the student's own
    kernel (nbval, stock nbgrader) it leaves the function as it is.
    """
    from .trusted.namespace import StudentFunction

    if isinstance(student, StudentFunction):
        student.substitute(replacements)


def stand_in(student: Callable, trusted: Callable) -> None:
    """In the rest of this test cell, calls of ``student`` run ``trusted`` (the reference) instead.

    For a test whose *visible* checks use an earlier exercise's function (an adjoint test calls ``im2col``): the
    grader then checks this exercise on its own. Put it in a hidden region at the top of the test cell. In the
    student's own kernel (nbval, stock nbgrader) it leaves the function as it is.
    """
    from .trusted.namespace import StudentFunction

    if isinstance(student, StudentFunction):
        student.stand_in(trusted)


def check_raises_on(name: str, student: Callable, cases: Sequence[Case], exception: type[BaseException] = ValueError,
                    *, match: str | None = None) -> None:
    """Check that ``student`` raises ``exception`` on every case (inputs that break the contract)."""
    for case in cases:
        args, kwargs = case.fresh()
        try:
            result = student(*args, **kwargs)
        except exception as err:
            if match is not None and match.lower() not in str(err).lower():
                raise CheckFailure(f"{name} raised {type(err).__name__} for {case.label}, as it should, but its "
                                   f"message {str(err)!r} does not mention {match!r}") from None
            continue
        except NotImplementedError:
            raise CheckFailure(f"{name} is not implemented yet (it raised NotImplementedError)") from None
        except Exception as err:
            where = student_line(err)
            raise CheckFailure(f"{name} should raise {exception.__name__} for {case.label}, but it raised "
                               f"{type(err).__name__}: {err}" + (f"\n  ({where})" if where else "")) from None
        raise CheckFailure(f"{name} should raise {exception.__name__} for {case.label}, but it returned "
                           f"{describe(result)}")
    print(f"✓ {name} raises {exception.__name__} on {len(cases)} hidden cases that do not fit")


def check_cache(name: str, student: Callable, cases: Sequence[Case], *, expected: Callable, position: int = 1) -> None:
    """Check the cache a forward pass returns (element ``position`` of its result) against ``expected(*args)``.

    ``expected`` returns the cache the contract describes, as a tuple of arrays, numbers, dicts and tuples; each
    element is compared exactly (arrays with check_array, the rest with ==).
    """
    for case in cases:
        result = call_student(name, student, case)
        if not isinstance(result, tuple) or len(result) <= position:
            raise CheckFailure(f"{name} should return a tuple whose element {position} is the cache, for {case.label}; "
                               f"got {describe(result)}")
        got = result[position]
        args, kwargs = case.fresh()
        want = expected(*args, **kwargs)
        _compare_structure(f"{name}: cache", got, want, case.label)
    print(f"✓ {name}'s cache holds what the contract says on {len(cases)} hidden cases")


def _compare_structure(label: str, got: Any, want: Any, case: str) -> None:
    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            shown = "(" + ", ".join(describe(w) for w in want) + ")"
            raise CheckFailure(f"{label} for {case}: expected a tuple of {len(want)}, {shown}; got {describe(got)}")
        for index, (g, w) in enumerate(zip(got, want)):
            _compare_structure(f"{label}[{index}]", g, w, case)
    elif isinstance(want, np.ndarray):
        check_array(label, got, want, rtol=0, atol=0, case=case, quiet=True)
    elif got != want or type(got) is not type(want) and not (isinstance(want, int) and isinstance(got, int)):
        raise CheckFailure(f"{label} for {case}: expected {want!r}, got {describe(got)}")


def _cast_floats(value: Any, dtype) -> Any:
    """``value`` with every floating-point array in it (tuples and lists included) cast to ``dtype``."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    return value


def check_dtype(name: str, student: Callable, cases: Sequence[Case], *, output: int | None = 0,
                dtype=np.float32) -> None:
    """Check that ``student`` keeps ``dtype``: every case's inputs are cast to it, and the output must have it.

    ``output`` picks the element of a tuple result (None: the result itself).
    """
    for case in cases:
        args, kwargs = case.fresh()
        cast = _cast_floats(args, dtype)
        labelled = Case(case.label + f", inputs {np.dtype(dtype).name}", cast, kwargs)
        result = call_student(name, student, labelled)
        value = result if output is None else (result[output] if isinstance(result, tuple) and len(result) > output
                                                else None)
        if not isinstance(value, np.ndarray) or value.dtype != dtype:
            raise CheckFailure(f"{name} should return {np.dtype(dtype).name} for {labelled.label}, got "
                               f"{describe(value)}" + ("\n  Allocate the output with dtype=x.dtype (np.zeros(shape) "
                                                       "is float64)." if isinstance(value, np.ndarray) else ""))
    print(f"✓ {name} keeps {np.dtype(dtype).name} on {len(cases)} hidden cases")

def failing_case(failure: BaseException, cases: Sequence[Case]) -> Case | None:
    """The case that a failure message of :func:`check_function` names ("... for <label>..."), or None."""
    text = str(failure)
    named = [case for case in cases if f"for {case.label}" in text]
    return max(named, key=lambda case: len(case.label)) if named else None


def blame_dependency(failure: CheckFailure, cases: Sequence[Case], differs: Callable[[Case], bool],
                     note: str) -> CheckFailure:
    """The failure to raise when a function that builds on an earlier exercise fails.

    ``differs(case)`` says whether the student's earlier function disagrees with the reference on the inputs of
    ``case``. When it does on the failing case, the output was computed from wrong numbers: a named mistake
    (which assumes the earlier function right) is dropped from the message, and ``note`` says where to look.
    Otherwise the failure is returned unchanged. The score is the same either way: only the message differs.
    """
    case = failing_case(failure, cases)
    try:
        blamed = case is not None and differs(case)
    except Exception:  # the earlier function crashes on these inputs: that is a difference too
        blamed = True
    if not blamed:
        return failure
    head = str(failure).split("\n  This is exactly what you get when")[0]
    return CheckFailure(f"{head}\n  {note}")


__all__ += ["failing_case", "blame_dependency"]


def numbers_as_arrays(fn: Callable) -> Callable:
    """``fn`` with the plain numbers of its result returned as 0-d arrays, for :func:`check_function`.

    A loss function returns ``(loss, dscores)`` with ``loss`` a float; ``check_function`` compares arrays. This
    wrapper turns a number (and only a number: ``None`` or a string stays as it is, so the message about it
    stays precise) into ``np.asarray(number)``, in a tuple result or as the whole result.
    """
    def as_array(value: Any) -> Any:
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            return np.asarray(value)
        return value

    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        if isinstance(result, tuple):
            return tuple(as_array(v) for v in result)
        return as_array(result)

    wrapped.__name__ = getattr(fn, "__name__", "wrapped")
    return wrapped


__all__ += ["numbers_as_arrays"]
