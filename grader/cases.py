"""Seeded random test cases shared by the hidden tests of every notebook.

Each generator returns a list of :class:`~grader.hidden.Case` whose shapes cover what a hard-coded or
half-general implementation gets wrong: non-square inputs and filters, pad 0, stride > 1, overlapping
windows, N = 1, C = 1, F = 1, odd sizes. Sizes are small enough that a plain nested-loop
implementation finishes a whole list in well under a second (tests/test_cases.py measures the work).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workbook.checks import case_label

from .hidden import Case

__all__ = ["ConvShape", "CONV_SHAPES", "conv_cases", "conv_backward_cases", "conv_input_size", "pool_cases"]


class ConvShape(NamedTuple):
    """One convolution layer's geometry: input (N, C, H_out, W_out) is derived so the filters fit."""

    N: int
    C: int
    F: int
    HH: int
    WW: int
    stride: int
    pad: int
    H_out: int
    W_out: int
    dilation: int = 1


def conv_input_size(out: int, filter_size: int, stride: int, pad: int, dilation: int = 1) -> int:
    """The input size for which ``out`` windows fit exactly: (W - F_eff + 2P) / S + 1 == out."""
    effective = dilation * (filter_size - 1) + 1
    return (out - 1) * stride + effective - 2 * pad


# What each shape is there to catch, in order:
CONV_SHAPES = [
    ConvShape(N=2, C=3, F=4, HH=3, WW=3, stride=1, pad=1, H_out=5, W_out=7),   # 'same' padding, non-square input
    ConvShape(N=1, C=1, F=1, HH=3, WW=3, stride=2, pad=0, H_out=3, W_out=4),   # N=C=F=1, pad 0, stride 2
    ConvShape(N=2, C=2, F=3, HH=3, WW=2, stride=1, pad=0, H_out=4, W_out=5),   # non-square filter, pad 0
    ConvShape(N=1, C=3, F=2, HH=5, WW=3, stride=2, pad=2, H_out=3, W_out=4),   # tall filter, stride 2, pad 2
    ConvShape(N=3, C=2, F=2, HH=1, WW=1, stride=1, pad=0, H_out=3, W_out=5),   # 1x1 filter
    ConvShape(N=1, C=2, F=3, HH=4, WW=4, stride=3, pad=1, H_out=3, W_out=2),   # even filter, stride 3
    ConvShape(N=2, C=1, F=2, HH=3, WW=3, stride=2, pad=1, H_out=3, W_out=2),   # stride < filter: windows overlap
]

DILATED_SHAPES = [
    ConvShape(N=1, C=2, F=2, HH=3, WW=3, stride=1, pad=2, H_out=5, W_out=6, dilation=2),
    ConvShape(N=2, C=1, F=1, HH=3, WW=2, stride=1, pad=0, H_out=3, W_out=4, dilation=3),
    ConvShape(N=1, C=3, F=2, HH=2, WW=3, stride=2, pad=1, H_out=3, W_out=3, dilation=2),
]


def _conv_case(rng: np.random.Generator, s: ConvShape, with_dilation: bool, dtype=np.float64) -> Case:
    H = conv_input_size(s.H_out, s.HH, s.stride, s.pad, s.dilation)
    W = conv_input_size(s.W_out, s.WW, s.stride, s.pad, s.dilation)
    x = rng.standard_normal((s.N, s.C, H, W)).astype(dtype)
    w = rng.standard_normal((s.F, s.C, s.HH, s.WW)).astype(dtype)
    b = rng.standard_normal(s.F).astype(dtype)
    conv_param = {"stride": s.stride, "pad": s.pad}
    if with_dilation:
        conv_param["dilation"] = s.dilation
    return Case(case_label(x=x, w=w, b=b, conv_param=conv_param), (x, w, b, conv_param))


def conv_cases(seed: int, *, dilation: bool = False) -> list[Case]:
    """Cases ``(x, w, b, conv_param)`` for a convolution forward pass.

    With ``dilation=True`` the dilated shapes are added and every ``conv_param`` carries ``'dilation'``.
    """
    rng = np.random.default_rng(seed)
    shapes = CONV_SHAPES + (DILATED_SHAPES if dilation else [])
    return [_conv_case(rng, s, dilation) for s in shapes]


def conv_backward_cases(seed: int, *, dilation: bool = False) -> list[Case]:
    """Cases ``(dout, x, w, b, conv_param)``: a forward case plus a random upstream gradient."""
    rng = np.random.default_rng(seed)
    cases = []
    for s in CONV_SHAPES + (DILATED_SHAPES if dilation else []):
        fwd = _conv_case(rng, s, dilation)
        dout = rng.standard_normal((s.N, s.F, s.H_out, s.W_out))
        x, w, b, conv_param = fwd.args
        cases.append(Case(case_label(dout=dout, x=x, w=w, b=b, conv_param=conv_param), (dout, x, w, b, conv_param)))
    return cases


POOL_SHAPES = [  # (N, C, H_out, W_out, pool_height, pool_width, stride)
    (2, 3, 3, 4, 2, 2, 2),   # the common setting, non-overlapping
    (1, 2, 3, 3, 3, 3, 2),   # overlapping pooling, F=3 S=2
    (2, 1, 4, 3, 3, 3, 1),   # heavily overlapping, F=3 S=1
    (1, 1, 2, 3, 2, 3, 1),   # non-square window
    (3, 2, 2, 2, 1, 1, 1),   # 1x1 window: identity
]


def pool_cases(seed: int) -> list[Case]:
    """Cases ``(x, pool_param)`` for pooling; inputs are continuous random, so maxima are unique."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, Ho, Wo, ph, pw, stride in POOL_SHAPES:
        H, W = (Ho - 1) * stride + ph, (Wo - 1) * stride + pw
        x = rng.standard_normal((N, C, H, W))
        pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
        cases.append(Case(case_label(x=x, pool_param=pool_param), (x, pool_param)))
    return cases
