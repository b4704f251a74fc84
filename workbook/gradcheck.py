"""Numerical gradients by centred differences, for checking a backward pass.

For a layer ``f`` with upstream gradient ``dout``, the gradient of the scalar ``sum(f(x) * dout)``
with respect to ``x`` is what a backward pass must return as ``dx``. This module estimates it by
perturbing one element of ``x`` at a time:

    dL/dx[i] ≈ (L(x + h e_i) - L(x - h e_i)) / (2 h)

The error of that estimate is O(h²); with float64 inputs and ``h = 1e-5`` the relative error
against a correct analytic gradient is typically below 1e-8.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .checks import check_array

__all__ = ["numerical_gradient", "numerical_gradient_array", "check_gradient"]


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of a scalar function ``f`` at ``x`` (modified in place during the call, restored after)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = float(f(x))
        x[i] = old - h
        f_minus = float(f(x))
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
        it.iternext()
    return grad


def numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dout: np.ndarray,
                             h: float = 1e-5) -> np.ndarray:
    """Gradient of ``sum(f(x) * dout)`` with respect to ``x``: what ``dx`` of a backward pass must be.

    ``f`` maps an array to an array of ``dout``'s shape (CS231n's ``eval_numerical_gradient_array``).
    """
    dout = np.asarray(dout, dtype=np.float64)
    return numerical_gradient(lambda arr: np.sum(np.asarray(f(arr), dtype=np.float64) * dout), x, h)


def check_gradient(name: str, analytic: np.ndarray, f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                   dout: np.ndarray, *, h: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-7,
                   case: str | None = None, hint: str | None = None) -> float:
    """Compare an analytic gradient with the numerical one; print or raise like :func:`check_array`."""
    numeric = numerical_gradient_array(f, x, dout, h)
    return check_array(name, analytic, numeric, rtol=rtol, atol=atol, case=case, hint=hint)
