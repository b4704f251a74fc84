"""Numerical gradients by finite differences, for checking a backward pass.

For a layer ``f`` with upstream gradient ``dout``, the gradient of the scalar ``sum(f(x) * dout)``
with respect to ``x`` is what a backward pass must return as ``dx``. This module estimates it by
perturbing one element of ``x`` at a time with the centred difference

    dL/dx[i] ≈ (L(x + h e_i) - L(x - h e_i)) / (2 h)

Taylor expansion gives ``L(x ± h e_i) = L ± h L' + h² L''/2 ± h³ L'''/6 + ...``: the even terms cancel in
the difference, so the truncation error is ``h² L'''/6 = O(h²)`` (the one-sided forward difference
``(L(x + h e_i) - L(x)) / h`` keeps the ``h L''/2`` term: O(h)). Rounding adds an error of about
``eps |L| / h`` that grows as ``h`` shrinks, so ``h`` is a compromise; with float64 inputs and
``h = 1e-5`` the relative error against a correct analytic gradient is typically below 1e-8. A layer
that is linear in the checked input (a convolution in ``x``, ``w`` or ``b``) has no truncation error at
all, only rounding.

Inputs must be floating point: adding ``h`` to an integer array rounds the perturbation away, and in
float32 the rounding error of ``h = 1e-5`` is about 1e-2, so check gradients in float64.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from .checks import check_array

__all__ = ["numerical_gradient", "numerical_gradient_array", "check_gradient", "SCHEMES"]

#: Finite-difference schemes :func:`numerical_gradient` knows, with the order of their truncation error.
SCHEMES = {"centred": 2, "forward": 1}


def _check_input(x: np.ndarray, h: float, scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown finite-difference scheme {scheme!r}; use one of {sorted(SCHEMES)}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array (it is perturbed in place), got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"x has dtype {x.dtype}: adding h={h:g} to an integer array rounds the perturbation "
                        f"away. Pass a float64 copy, e.g. x.astype(np.float64)")
    if x.dtype.itemsize < 8:
        warnings.warn(f"x has dtype {x.dtype}: with h={h:g} the rounding error of a finite difference is "
                      f"about {np.finfo(x.dtype).eps / h:.0e}; check gradients in float64 "
                      f"(x.astype(np.float64))", RuntimeWarning, stacklevel=3)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5, *,
                       scheme: str = "centred") -> np.ndarray:
    """Gradient of a scalar function ``f`` at ``x`` (modified in place during the call, restored after).

    ``scheme="centred"`` (the default) uses ``(f(x + h e_i) - f(x - h e_i)) / (2h)``, error O(h²);
    ``scheme="forward"`` uses ``(f(x + h e_i) - f(x)) / h``, error O(h), and is there to compare the two.
    Costs two evaluations of ``f`` per element of ``x`` (one per element plus one for ``"forward"``).
    """
    _check_input(x, h, scheme)
    grad = np.zeros_like(x, dtype=np.float64)
    f_x = float(f(x)) if scheme == "forward" else None
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = float(f(x))
        if scheme == "centred":
            x[i] = old - h
            f_minus = float(f(x))
            grad[i] = (f_plus - f_minus) / (2 * h)
        else:
            grad[i] = (f_plus - f_x) / h
        x[i] = old
        it.iternext()
    return grad


def numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout: np.ndarray,
                             h: float = 1e-5, *, scheme: str = "centred") -> np.ndarray:
    """Gradient of ``sum(f(x) * dout)`` with respect to ``x``: what ``dx`` of a backward pass must be.

    ``f`` maps an array to an array of ``dout``'s shape (CS231n's ``eval_numerical_gradient_array``).
    """
    dout = np.asarray(dout, dtype=np.float64)
    return numerical_gradient(lambda arr: np.sum(np.asarray(f(arr), dtype=np.float64) * dout), x, h,
                              scheme=scheme)


def check_gradient(name: str, analytic: np.ndarray, f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                   dout: np.ndarray, *, h: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-7,
                   case: str | None = None, hint: str | None = None) -> None:
    """Compare an analytic gradient with the numerical one; print or raise like :func:`check_array`.

    ``f`` is the forward function of the one input ``x`` being checked (the others held fixed), e.g.
    ``lambda w: conv_forward_naive(x, w, b, conv_param)[0]`` to check ``dw``.
    """
    numeric = numerical_gradient_array(f, x, dout, h)
    check_array(name, analytic, numeric, rtol=rtol, atol=atol, case=case, hint=hint)
