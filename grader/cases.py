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

__all__ = ["ConvShape", "CONV_SHAPES", "conv_cases", "conv_misfit_cases", "conv_backward_cases", "conv_input_size",
           "pool_cases", "pool_misfit_cases"]


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


MISFIT_SHAPES = [  # (N, C, H, W, F, HH, WW, stride, pad): the filters do not tile the padded input
    (1, 1, 5, 5, 1, 3, 3, 3, 1),   # (5 + 2 - 3) / 3 + 1 = 2.33 in both directions
    (2, 3, 6, 7, 2, 3, 3, 2, 0),   # the width fits, (7 - 3) / 2 + 1 = 3; the height does not, (6 - 3) / 2 + 1 = 2.5
    (1, 2, 7, 6, 3, 3, 3, 2, 0),   # the height fits, the width does not
    (1, 1, 2, 6, 1, 3, 3, 1, 0),   # the filter is taller than the image
    (2, 1, 4, 4, 1, 5, 2, 1, 0),   # taller than the image, the width fits
]


def conv_misfit_cases(seed: int) -> list[Case]:
    """Cases ``(x, w, b, conv_param)`` whose filters do not fit: a fractional output size, or filters larger
    than the padded input, in one direction or both."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, H, W, F, HH, WW, stride, pad in MISFIT_SHAPES:
        x = rng.standard_normal((N, C, H, W))
        w = rng.standard_normal((F, C, HH, WW))
        b = rng.standard_normal(F)
        conv_param = {"stride": stride, "pad": pad}
        cases.append(Case(case_label(x=x, w=w, b=b, conv_param=conv_param), (x, w, b, conv_param)))
    return cases


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


POOL_MISFIT_SHAPES = [  # (N, C, H, W, pool_height, pool_width, stride): the windows do not tile the input
    (1, 2, 5, 4, 2, 2, 2),   # the height gives (5 - 2)/2 + 1 = 2.5 windows
    (2, 1, 4, 7, 2, 2, 2),   # the width gives 3.5
    (1, 1, 6, 6, 3, 3, 2),   # F=3, S=2 on 6 pixels: 2.5 in both directions
    (1, 1, 4, 2, 3, 3, 1),   # a window wider than the input
]


def pool_misfit_cases(seed: int) -> list[Case]:
    """Cases ``(x, pool_param)`` whose windows do not tile the input (a fraction, or a window too large)."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, H, W, ph, pw, stride in POOL_MISFIT_SHAPES:
        x = rng.standard_normal((N, C, H, W))
        pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
        cases.append(Case(case_label(x=x, pool_param=pool_param), (x, pool_param)))
    return cases


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


# --- 03_conv_backward: the data gradient of a stride-1 layer as a convolution with flipped filters ---------

DX_STRIDE1_SHAPES = [  # stride 1 and pad <= min(HH, WW) - 1, so dout is zero-padded by HH-1-pad, WW-1-pad
    ConvShape(N=1, C=2, F=2, HH=3, WW=3, stride=1, pad=0, H_out=3, W_out=4),   # F == C: un-transposed filters still run
    ConvShape(N=2, C=3, F=4, HH=3, WW=3, stride=1, pad=1, H_out=5, W_out=6),   # 'same' padding, F != C
    ConvShape(N=2, C=1, F=3, HH=5, WW=3, stride=1, pad=1, H_out=4, W_out=5),   # tall: dout padded 3 rows, 1 column
    ConvShape(N=1, C=3, F=2, HH=2, WW=4, stride=1, pad=1, H_out=3, W_out=3),   # even, wide; pad == HH-1: no row pad
    ConvShape(N=3, C=2, F=1, HH=1, WW=1, stride=1, pad=0, H_out=2, W_out=3),   # 1x1 filter, F=1
]


def conv_dx_stride1_cases(seed: int) -> list[Case]:
    """Cases ``(dout, w, pad)`` for the data gradient of a stride-1 convolution computed as a convolution.

    ``dout`` has shape ``(N, F, H', W')`` and ``w`` ``(F, C, HH, WW)``; the layer's input was
    ``(N, C, H' + HH - 1 - 2 pad, W' + WW - 1 - 2 pad)``. Every case has ``pad <= min(HH, WW) - 1``.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for s in DX_STRIDE1_SHAPES:
        dout = rng.standard_normal((s.N, s.F, s.H_out, s.W_out))
        w = rng.standard_normal((s.F, s.C, s.HH, s.WW))
        cases.append(Case(case_label(dout=dout, w=w, pad=s.pad), (dout, w, s.pad)))
    return cases


__all__ += ["DX_STRIDE1_SHAPES", "conv_dx_stride1_cases"]


# --- 01_conv_geometry and 02_conv_forward -------------------------------------------------------------

def _geometry_fits(in_size: int, filter_size: int, stride: int, pad: int, dilation: int) -> bool:
    span = in_size - (dilation * (filter_size - 1) + 1) + 2 * pad
    return span >= 0 and span % stride == 0


def conv_geometry_cases(seed: int, *, fits: bool = True, count: int = 40) -> list[Case]:
    """Cases ``(in_size, filter_size, stride=S, pad=P, dilation=d)`` for a conv output-size function.

    With ``fits=True`` every case has a whole, positive output size (W - F_eff + 2P)/S + 1, where
    F_eff = d(F - 1) + 1; with ``fits=False`` none has: half of them give a fraction (the filters
    do not tile the padded input) and half have filters larger than the padded input. The draws mix
    pad 0 and pad > 0, stride 1 and > 1, dilation 1 and > 1, so leaving out any term of the formula
    changes some answer.
    """
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        filter_size = int(rng.integers(1, 8))
        stride = int(rng.integers(1, 5))
        pad = int(rng.integers(0, 4))
        dilation = int(rng.choice([1, 1, 2, 3]))
        in_size = int(rng.integers(1, 41))
        span = in_size - (dilation * (filter_size - 1) + 1) + 2 * pad
        if fits != _geometry_fits(in_size, filter_size, stride, pad, dilation):
            continue
        if not fits and (span < 0) != (len(cases) % 2 == 1):  # alternate: a fraction, then too big
            continue
        kwargs = {"stride": stride, "pad": pad, "dilation": dilation}
        cases.append(Case(case_label(in_size=in_size, filter_size=filter_size, **kwargs), (in_size, filter_size),
                          kwargs))
    return cases


def same_padding_cases(seed: int, *, odd: bool = True, count: int = 16) -> list[Case]:
    """Cases ``(filter_size, dilation=d)`` whose effective size d(F - 1) + 1 is odd (``odd=True``: a
    'same' padding exists) or even (``odd=False``: it does not). Sizes 1..11, dilations 1..4."""
    rng = np.random.default_rng(seed)
    pool = [(f, d) for f in range(1, 12) for d in range(1, 5) if ((d * (f - 1) + 1) % 2 == 1) == odd]
    chosen = [pool[i] for i in rng.permutation(len(pool))[:count]]
    return [Case(case_label(filter_size=f, dilation=d), (f,), {"dilation": d}) for f, d in chosen]


def conv_param_count_cases(seed: int, *, count: int = 20) -> list[Case]:
    """Cases ``(in_depth, filter_size, num_filters, out_size=..., shared=...)`` for a parameter count.

    Shared and unshared alternate; half of the shared cases leave ``out_size`` out (it is not needed
    with sharing) and half pass it (it must then be ignored).
    """
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        in_depth = int(rng.choice([1, 3, int(rng.integers(2, 513))]))
        filter_size = int(rng.integers(1, 12))
        num_filters = int(rng.integers(1, 257))
        shared = i % 2 == 0
        kwargs = {"shared": shared}
        if not shared or i % 4 == 0:
            kwargs["out_size"] = int(rng.integers(1, 65))
        cases.append(Case(case_label(in_depth=in_depth, filter_size=filter_size, num_filters=num_filters, **kwargs),
                          (in_depth, filter_size, num_filters), kwargs))
    return cases


def _unpadded_conv_inputs(rng: np.random.Generator):
    """(x, w, b, stride, H_out, W_out) for every shape of CONV_SHAPES with its padding taken away."""
    for s in CONV_SHAPES:
        case = _conv_case(rng, s._replace(pad=0), False)
        x, w, b, conv_param = case.args
        yield x, w, b, conv_param["stride"], s.H_out, s.W_out


def neuron_cases(seed: int) -> list[Case]:
    """Cases ``(x, w, b, stride, n, f, row, col)``: one output neuron of an unpadded convolution.

    Two positions per shape of CONV_SHAPES: the last row and column (where an off-by-one in the
    window shows) and a random one.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for x, w, b, stride, H_out, W_out in _unpadded_conv_inputs(rng):
        for row, col in [(H_out - 1, W_out - 1), (int(rng.integers(H_out)), int(rng.integers(W_out)))]:
            n, f = int(rng.integers(x.shape[0])), int(rng.integers(w.shape[0]))
            cases.append(Case(case_label(x=x, w=w, b=b, stride=stride, n=n, f=f, row=row, col=col),
                              (x, w, b, stride, n, f, row, col)))
    return cases


def depth_column_cases(seed: int) -> list[Case]:
    """Cases ``(x, w, b, stride, n, row, col)``: a depth column (all filters at one position)."""
    rng = np.random.default_rng(seed)
    cases = []
    for x, w, b, stride, H_out, W_out in _unpadded_conv_inputs(rng):
        n, row, col = int(rng.integers(x.shape[0])), int(rng.integers(H_out)), int(rng.integers(W_out))
        cases.append(Case(case_label(x=x, w=w, b=b, stride=stride, n=n, row=row, col=col),
                          (x, w, b, stride, n, row, col)))
    return cases


def depth_slice_cases(seed: int) -> list[Case]:
    """Cases ``(x, w, b, stride, n, f)``: a depth slice (one filter at every position)."""
    rng = np.random.default_rng(seed)
    cases = []
    for x, w, b, stride, _, _ in _unpadded_conv_inputs(rng):
        n, f = int(rng.integers(x.shape[0])), int(rng.integers(w.shape[0]))
        cases.append(Case(case_label(x=x, w=w, b=b, stride=stride, n=n, f=f), (x, w, b, stride, n, f)))
    return cases


ZERO_PAD_SHAPES = [  # (N, C, H, W, pad)
    (2, 3, 4, 5, 1),   # non-square
    (1, 1, 3, 3, 0),   # pad 0: unchanged
    (1, 2, 2, 6, 2),   # pad wider than the input is tall
    (3, 1, 5, 2, 3),
]


def zero_pad_cases(seed: int) -> list[Case]:
    """Cases ``(x, pad)`` for zero-padding the two spatial axes of an (N, C, H, W) array."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, H, W, pad in ZERO_PAD_SHAPES:
        x = rng.standard_normal((N, C, H, W))
        cases.append(Case(case_label(x=x, pad=pad), (x, pad)))
    return cases


__all__ += ["conv_geometry_cases", "same_padding_cases", "conv_param_count_cases", "neuron_cases",
            "depth_column_cases", "depth_slice_cases", "ZERO_PAD_SHAPES", "zero_pad_cases"]


# --- 05_im2col: the column matrix, its adjoint, and the pooling backward pass ---------------------------

def im2col_cases(seed: int) -> list[Case]:
    """Cases ``(x, filter_h, filter_w, stride, pad)`` for ``im2col``: one per shape of CONV_SHAPES
    (overlapping windows, pad 0, non-square inputs and filters, N = C = 1, 1x1 and even filters)."""
    rng = np.random.default_rng(seed)
    cases = []
    for s in CONV_SHAPES:
        x = rng.standard_normal((s.N, s.C, conv_input_size(s.H_out, s.HH, s.stride, s.pad),
                                 conv_input_size(s.W_out, s.WW, s.stride, s.pad)))
        cases.append(Case(case_label(x=x, filter_h=s.HH, filter_w=s.WW, stride=s.stride, pad=s.pad),
                          (x, s.HH, s.WW, s.stride, s.pad)))
    return cases


def col2im_cases(seed: int) -> list[Case]:
    """Cases ``(cols, x_shape, filter_h, filter_w, stride, pad)`` for ``col2im``: random columns of shape
    (C * HH * WW, N * H_out * W_out) for each shape of CONV_SHAPES; ``x_shape`` is a tuple of ints."""
    rng = np.random.default_rng(seed)
    cases = []
    for s in CONV_SHAPES:
        x_shape = (s.N, s.C, conv_input_size(s.H_out, s.HH, s.stride, s.pad),
                   conv_input_size(s.W_out, s.WW, s.stride, s.pad))
        cols = rng.standard_normal((s.C * s.HH * s.WW, s.N * s.H_out * s.W_out))
        cases.append(Case(case_label(cols=cols, x_shape=x_shape, filter_h=s.HH, filter_w=s.WW, stride=s.stride,
                                     pad=s.pad), (cols, x_shape, s.HH, s.WW, s.stride, s.pad)))
    return cases


def pool_backward_cases(seed: int, *, ties: bool = False) -> list[Case]:
    """Cases ``(dout, x, pool_param)`` for a max-pooling backward pass, one per shape of POOL_SHAPES.

    With ``ties=False`` the inputs are continuous random, so every window has a single maximum. With
    ``ties=True`` they are drawn from {0, 1, 2}, so most windows hold their maximum more than once and the
    gradient must go to the first one in row-major order within the window.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, Ho, Wo, ph, pw, stride in POOL_SHAPES:
        H, W = (Ho - 1) * stride + ph, (Wo - 1) * stride + pw
        x = rng.integers(0, 3, size=(N, C, H, W)).astype(float) if ties else rng.standard_normal((N, C, H, W))
        dout = rng.standard_normal((N, C, Ho, Wo))
        pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
        cases.append(Case(case_label(dout=dout, x=x, pool_param=pool_param), (dout, x, pool_param)))
    return cases


__all__ += ["im2col_cases", "col2im_cases", "pool_backward_cases"]


# --- 04_pooling and 06_1x1_and_dilated: pooling edge cases, global pooling, receptive fields ------------

def _with_dout(rng: np.random.Generator, x: np.ndarray, out_shape: tuple, pool_param: dict) -> Case:
    dout = rng.standard_normal(out_shape)
    return Case(case_label(dout=dout, x=x, pool_param=pool_param), (dout, x, pool_param))


def pool_edge_cases(seed: int, *, backward: bool = False) -> list[Case]:
    """Pooling inputs that separate a correct backward pass from a nearly correct one.

    Cases ``(x, pool_param)``, or ``(dout, x, pool_param)`` with ``backward=True``:

    * overlapping windows (F=3, S=2 and F=3, S=1) with a planted maximum on a pixel that several windows
      share, so a backward pass that writes ``dx[...] = ...`` instead of accumulating with ``+=`` loses
      gradient for certain (with random inputs it only might);
    * a ReLU output (about half zeros) with whole windows of zeros: ties at 0, and the all-zero windows
      at which L2-norm pooling has no derivative;
    * a constant input under overlapping pooling: every window is one big tie.
    """
    rng = np.random.default_rng(seed)
    raw = []
    # F=3, S=2 on 7x7: pixel (2, 2) lies in 4 windows; channel 1 plants its maximum on (4, 4) instead.
    x = rng.standard_normal((1, 2, 7, 7))
    x[0, 0, 2, 2], x[0, 1, 4, 4] = 10.0, 10.0
    raw.append((x, (3, 3, 2)))
    # F=3, S=1 on 5x6: pixel (2, 2) lies in 9 windows.
    x = rng.standard_normal((2, 1, 5, 6))
    x[:, 0, 2, 2] = 10.0
    raw.append((x, (3, 3, 1)))
    # A ReLU output with all-zero windows, non-overlapping and overlapping.
    for ph, pw, stride, H, W in [(2, 2, 2, 6, 8), (3, 3, 2, 7, 9)]:
        x = np.maximum(rng.standard_normal((2, 2, H, W)), 0.0)
        x[:, :, :ph, :pw] = 0.0              # the first window of every map is all zero
        x[0, 1, -ph:, -pw:] = 0.0            # and the last one of one map
        raw.append((x, (ph, pw, stride)))
    # A constant input, overlapping windows: every maximum is tied.
    raw.append((np.full((1, 1, 4, 5), 0.5), (2, 2, 1)))

    cases = []
    for x, (ph, pw, stride) in raw:
        pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
        N, C, H, W = x.shape
        if backward:
            cases.append(_with_dout(rng, x, (N, C, (H - ph) // stride + 1, (W - pw) // stride + 1), pool_param))
        else:
            cases.append(Case(case_label(x=x, pool_param=pool_param), (x, pool_param)))
    return cases


GLOBAL_POOL_SHAPES = [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 7, 2), (1, 4, 3, 3)]  # (N, C, H, W)


def global_pool_cases(seed: int, *, backward: bool = False) -> list[Case]:
    """Cases ``(x,)``, or ``(dout, x)`` with ``backward=True`` (dout of shape (N, C)), for global pooling:
    non-square maps, a 1x1 map, N = 1 and C = 1."""
    rng = np.random.default_rng(seed)
    cases = []
    for shape in GLOBAL_POOL_SHAPES:
        x = rng.standard_normal(shape)
        if backward:
            dout = rng.standard_normal(shape[:2])
            cases.append(Case(case_label(dout=dout, x=x), (dout, x)))
        else:
            cases.append(Case(case_label(x=x), (x,)))
    return cases


RECEPTIVE_FIELD_STACKS = [
    [],                                                 # no layer: a pixel sees itself
    [(3, 1, 1)] * 3,                                    # three 3x3 layers see 7x7
    [(3, 1, 1), (3, 1, 2), (3, 1, 4)],                  # dilations 1, 2, 4 see 15x15
    [(11, 4, 1), (3, 2, 1), (5, 1, 1)],                 # AlexNet conv1, pool1, conv2: strides compound
    [(3, 1, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1)],       # a 3x3 layer after a pool adds 4, not 2
    [(1, 1, 1), (1, 2, 3)],                             # 1x1 filters add nothing, whatever the dilation
]


def receptive_field_cases(seed: int, *, count: int = 12) -> list[Case]:
    """Cases ``(layers,)``: stacks of ``(filter_size, stride, dilation)`` tuples (ints), the fixed ones of
    RECEPTIVE_FIELD_STACKS followed by ``count`` random stacks of 1 to 6 layers mixing strides 1-3,
    dilations 1-4 and filter sizes 1-7, so that dropping any term of the recurrence changes some answer."""
    rng = np.random.default_rng(seed)
    stacks = [list(s) for s in RECEPTIVE_FIELD_STACKS]
    for _ in range(count):
        depth = int(rng.integers(1, 7))
        stacks.append([(int(rng.choice([1, 2, 3, 3, 5, 7])), int(rng.choice([1, 1, 2, 3])),
                        int(rng.choice([1, 1, 2, 4]))) for _ in range(depth)])
    return [Case(case_label(layers=s), (s,)) for s in stacks]


__all__ += ["pool_edge_cases", "GLOBAL_POOL_SHAPES", "global_pool_cases", "RECEPTIVE_FIELD_STACKS",
            "receptive_field_cases"]


# (N, C, F, H, W)
CONV1X1_SHAPES = [(2, 3, 4, 5, 6), (1, 1, 1, 3, 3), (3, 4, 2, 1, 7), (1, 5, 3, 2, 2), (2, 2, 5, 3, 1)]


def conv1x1_cases(seed: int) -> list[Case]:
    """Cases ``(x, w, b)`` for a 1x1 convolution: w of shape (F, C, 1, 1); C = 1, F = 1, F < C and F > C,
    non-square maps and a 1-pixel-wide one."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, C, F, H, W in CONV1X1_SHAPES:
        x = rng.standard_normal((N, C, H, W))
        w = rng.standard_normal((F, C, 1, 1))
        b = rng.standard_normal(F)
        cases.append(Case(case_label(x=x, w=w, b=b), (x, w, b)))
    return cases


__all__ += ["CONV1X1_SHAPES", "conv1x1_cases"]


# --- 07_fc_to_conv and 08_vgg_memory ----------------------------------------------------------------------------
# 07: an FC layer on a (C, H, W) volume as a conv layer, and a conv layer as one matrix; 08: architectures in the
# notebook's format (lists of layer dicts) for layer_table, training_memory and max_batch_size.

FC_VOLUMES = [  # (C, H, W, F): non-square volumes, a 1x1 volume (an FC layer after an FC layer), F = 1, C = 1
    (3, 4, 5, 6),
    (2, 1, 1, 3),
    (1, 3, 2, 4),
    (4, 2, 3, 1),
    (2, 5, 1, 2),
    (5, 3, 3, 7),
]


def fc_to_conv_cases(seed: int, *, dtype=np.float64) -> list[Case]:
    """Cases ``(W_fc, b_fc, in_shape)``: W_fc of shape (C*H*W, F) as affine_forward takes it, in_shape a tuple."""
    rng = np.random.default_rng(seed)
    cases = []
    for C, H, W, F in FC_VOLUMES:
        W_fc = rng.standard_normal((C * H * W, F)).astype(dtype)
        b_fc = rng.standard_normal(F).astype(dtype)
        cases.append(Case(case_label(W_fc=W_fc, b_fc=b_fc, in_shape=(C, H, W)), (W_fc, b_fc, (C, H, W))))
    return cases


def fc_to_conv_bad_cases(seed: int) -> list[Case]:
    """Cases ``(W_fc, b_fc, in_shape)`` that do not describe one layer: W_fc with the wrong number of rows for
    the volume (its transpose, a transposed volume's count off by one), b_fc of the wrong length or shape."""
    rng = np.random.default_rng(seed)
    raw = [
        (rng.standard_normal((60, 6)), rng.standard_normal(6), (3, 4, 4)),      # 60 rows, the volume has 48
        (rng.standard_normal((6, 60)), rng.standard_normal(60), (3, 4, 5)),     # W_fc transposed: (F, D)
        (rng.standard_normal((24, 4)), rng.standard_normal(5), (2, 3, 4)),      # one bias too many
        (rng.standard_normal((24, 4)), rng.standard_normal((4, 1)), (2, 3, 4)), # bias as a column
    ]
    return [Case(case_label(W_fc=w, b_fc=b, in_shape=s), (w, b, s)) for w, b, s in raw]


def conv_as_matrix_cases(seed: int, *, dtype=np.float64) -> list[Case]:
    """Cases ``(w, b, in_shape, conv_param)`` for writing a conv layer as one matrix: one per shape of
    CONV_SHAPES (pad 0 and 2, strides 1 to 3, non-square inputs and filters, 1x1 and even filters)."""
    rng = np.random.default_rng(seed)
    cases = []
    for s in CONV_SHAPES:
        in_shape = (s.C, conv_input_size(s.H_out, s.HH, s.stride, s.pad),
                    conv_input_size(s.W_out, s.WW, s.stride, s.pad))
        w = rng.standard_normal((s.F, s.C, s.HH, s.WW)).astype(dtype)
        b = rng.standard_normal(s.F).astype(dtype)
        conv_param = {"stride": s.stride, "pad": s.pad}
        cases.append(Case(case_label(w=w, b=b, in_shape=in_shape, conv_param=conv_param), (w, b, in_shape, conv_param)))
    return cases


def conv_as_matrix_bad_cases(seed: int) -> list[Case]:
    """Cases ``(w, b, in_shape, conv_param)`` whose filters do not fit: a fractional output size, filters larger
    than the padded input, or filters with another depth than the input."""
    rng = np.random.default_rng(seed)
    raw = [
        ((2, 3, 3, 3), (3, 6, 6), {"stride": 2, "pad": 0}),    # (6 - 3)/2 + 1 = 2.5
        ((1, 1, 5, 5), (1, 3, 4), {"stride": 1, "pad": 0}),    # 5x5 filters on 3x4
        ((2, 2, 3, 3), (3, 5, 5), {"stride": 1, "pad": 1}),    # 2 channels, the input has 3
        ((1, 2, 2, 4), (2, 5, 6), {"stride": 3, "pad": 1}),    # (5 + 2 - 2)/3 + 1 = 2.67 in height only
    ]
    cases = []
    for w_shape, in_shape, conv_param in raw:
        w, b = rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        cases.append(Case(case_label(w=w, b=b, in_shape=in_shape, conv_param=conv_param), (w, b, in_shape, conv_param)))
    return cases


def _window_out(size: int, k: int, stride: int, pad: int, rounding: str) -> float:
    span = size + 2 * pad - k
    if span < 0:
        return 0
    if rounding == "floor":
        return span // stride + 1
    if rounding == "ceil":
        return -(-span // stride) + 1
    return span / stride + 1


def _random_window(rng, H: int, W: int, sizes, strides, pads) -> dict | None:
    """A conv/pool window that fits an H x W input: 'exact' when it tiles, else 'floor' or 'ceil'."""
    for _ in range(50):
        k, stride, pad = int(rng.choice(sizes)), int(rng.choice(strides)), int(rng.choice(pads))
        if pad >= k or H + 2 * pad < k or W + 2 * pad < k:
            continue
        exact = [_window_out(n, k, stride, pad, "exact") for n in (H, W)]
        rounding = "exact" if all(float(v).is_integer() for v in exact) else str(rng.choice(["floor", "ceil"]))
        out = [_window_out(n, k, stride, pad, rounding) for n in (H, W)]
        if rounding == "ceil" and any((o - 1) * stride >= n + pad for o, n in zip(out, (H, W))):
            continue  # a last window that would start in the padding: avoided, as Caffe and PyTorch do
        layer = {"size": k, "stride": stride, "pad": pad}
        if rounding != "exact":
            layer["rounding"] = rounding
        return layer, int(out[0]), int(out[1])
    return None


def _random_block(rng, C: int, H: int, W: int):
    """A concat block (an inception-like module) or an add block (a residual block); returns it and its output."""
    if rng.random() < 0.5:
        branches, depth = [], 0
        for _ in range(int(rng.integers(2, 4))):
            kind = rng.choice(["1x1", "3x3", "5x5", "pool"])
            F = int(rng.integers(1, 5))
            if kind == "pool":
                branch = [{"type": "pool", "size": 3, "stride": 1, "pad": 1, "mode": "max"},
                          {"type": "conv", "filters": F, "size": 1}]
            else:
                k = int(kind[0])
                reduce = [{"type": "conv", "filters": int(rng.integers(1, 4)), "size": 1}, {"type": "relu"}]
                branch = (reduce if k > 1 else []) + [{"type": "conv", "filters": F, "size": k, "pad": k // 2},
                                                      {"type": "relu"}]
            branches.append(branch)
            depth += F
        return {"type": "concat", "branches": branches, "name": "mixed"}, depth, H, W
    F = int(rng.choice([C, C + 2]))
    stride = 2 if (F != C and min(H, W) >= 3 and rng.random() < 0.7) else 1
    rounding = {"rounding": "floor"} if stride == 2 and ((H - 1) % 2 or (W - 1) % 2) else {}
    body = [{"type": "conv", "filters": F, "size": 3, "stride": stride, "pad": 1, "bias": False, **rounding},
            {"type": "bn"}, {"type": "relu"},
            {"type": "conv", "filters": F, "size": 3, "pad": 1, "bias": False}, {"type": "bn"}]
    projection = [{"type": "conv", "filters": F, "size": 1, "stride": stride, "bias": False, **rounding},
                  {"type": "bn"}]
    shortcut = [] if (F == C and stride == 1) else projection
    if rng.random() < 0.5:
        body, shortcut = shortcut, body   # the order of the branches must not matter
    H, W = (H - 1) // stride + 1, (W - 1) // stride + 1
    return {"type": "add", "branches": [body, shortcut], "name": "residual"}, F, H, W


def random_architecture(rng: np.random.Generator, *, blocks: bool) -> tuple[list, tuple]:
    """A random valid architecture in notebook 08's format and its (non-square) input shape.

    3 to 8 layers of conv (strides 1-3, pads 0-2, sizes 1-5, groups, with and without bias, exact or
    rounded), pool (max and avg, F=2,3, overlapping), relu and bn; with ``blocks=True`` one or two concat or
    add blocks among them; a head of fc layers or global average pooling at the end (or none).
    """
    C = int(rng.choice([1, 2, 3, 4]))
    H, W = int(rng.integers(9, 30)), int(rng.integers(9, 30))
    if H == W:
        W += 1
    shape = (C, H, W)
    layers = []
    n_blocks = int(rng.integers(1, 3)) if blocks else 0
    block_at = set(rng.choice(np.arange(1, 6), size=n_blocks, replace=False).tolist()) if n_blocks else set()
    for position in range(int(rng.integers(3, 9))):
        if position in block_at and min(H, W) >= 3:
            block, C, H, W = _random_block(rng, C, H, W)
            layers.append(block)
            continue
        kind = rng.choice(["conv", "conv", "conv", "pool", "relu", "bn"])
        if kind in ("conv", "pool") and min(H, W) >= 2:
            sizes, strides, pads = (([1, 2, 3, 5], [1, 1, 2, 3], [0, 0, 1, 2]) if kind == "conv"
                                    else ([2, 3], [1, 2], [0, 0, 1]))
            found = _random_window(rng, H, W, sizes, strides, pads)
            if found is None:
                continue
            window, H, W = found
            if kind == "conv":
                F = int(rng.integers(1, 7))
                layer = {"type": "conv", "filters": F, **window}
                if C % 2 == 0 and F % 2 == 0 and rng.random() < 0.3:
                    layer["groups"] = 2
                if rng.random() < 0.3:
                    layer["bias"] = False
                C = F
            else:
                layer = {"type": "pool", **window, "mode": str(rng.choice(["max", "avg"]))}
            layers.append(layer)
        elif kind in ("relu", "bn"):
            layers.append({"type": str(kind)})
    head = rng.choice(["fc", "fc2", "gap", "none"])
    if head == "gap":
        layers += [{"type": "gap"}, {"type": "fc", "units": int(rng.integers(2, 6))}]
    elif head in ("fc", "fc2"):
        if head == "fc2":
            layers += [{"type": "fc", "units": int(rng.integers(3, 9)), "name": "hidden"}, {"type": "relu"}]
        layers.append({"type": "fc", "units": int(rng.integers(2, 6)), "name": "scores"})
    for index, layer in enumerate(layers):
        if rng.random() < 0.3 and "name" not in layer:
            layer["name"] = f"{layer['type']}{index}"
    return layers, shape


def architecture_cases(seed: int, *, blocks: bool, count: int = 12, named: dict | None = None) -> list[Case]:
    """Cases ``(arch, input_shape)`` for layer_table: the ``named`` architectures ({label: (arch, shape)}),
    then ``count`` random ones (see :func:`random_architecture`)."""
    import copy

    rng = np.random.default_rng(seed)
    cases = [Case(label, (copy.deepcopy(arch), tuple(shape))) for label, (arch, shape) in (named or {}).items()]
    for _ in range(count):
        arch, shape = random_architecture(rng, blocks=blocks)
        cases.append(Case(f"a random {'architecture with blocks' if blocks else 'stack'} of {len(arch)} layers "
                          f"on {shape}: {_describe(arch)}", (arch, shape)))
    return cases


def _describe(arch: list) -> str:
    parts = []
    for layer in arch:
        kind = layer["type"]
        if kind == "conv":
            parts.append(f"conv{layer['size']}x{layer['size']}/{layer.get('stride', 1)} pad {layer.get('pad', 0)}"
                         + (f" groups {layer['groups']}" if layer.get("groups", 1) != 1 else "")
                         + (" no bias" if layer.get("bias", True) is False else "")
                         + (f" {layer['rounding']}" if "rounding" in layer else ""))
        elif kind == "pool":
            parts.append(f"{layer.get('mode', 'max')}pool{layer['size']}/{layer['stride']}"
                         + (f" pad {layer['pad']}" if layer.get("pad") else "")
                         + (f" {layer['rounding']}" if "rounding" in layer else ""))
        elif kind in ("concat", "add"):
            parts.append(f"{kind}[" + " | ".join(_describe(b) or "identity" for b in layer["branches"]) + "]")
        elif kind == "fc":
            parts.append(f"fc{layer['units']}")
        else:
            parts.append(kind)
    return ", ".join(parts)


def bad_architecture_cases(seed: int) -> list[Case]:
    """Cases ``(arch, input_shape)`` whose sizes do not work out; each must raise ValueError: a fractional
    output size with 'exact' rounding (in height only, in width only, in a pool, inside a block), a window
    larger than the padded input, groups that do not divide the depth, branches that end in different sizes,
    an add of different depths, an unknown layer type."""
    rng = np.random.default_rng(seed)
    def conv(F, k, s=1, p=0, **kw):
        return {"type": "conv", "filters": F, "size": k, "stride": s, "pad": p, **kw}
    raw = [
        ("a 3x3 conv at stride 2 on 6x7 (height 2.5)", [conv(4, 3, 2)], (3, 6, 7)),
        ("a 3x3 conv at stride 2 on 7x6 (width 2.5)", [conv(4, 3, 2)], (3, 7, 6)),
        ("AlexNet's conv1 on 224x224 (54.25)", [conv(96, 11, 4)], (3, 224, 224)),
        ("a 2x2 pool at stride 2 on 7x8", [conv(2, 3, 1, 1), {"type": "pool", "size": 2, "stride": 2}], (1, 7, 8)),
        ("a 5x5 conv on a 3x4 input", [conv(2, 5)], (1, 3, 4)),
        ("an fc layer, then a 3x3 conv on its 1x1 output", [{"type": "fc", "units": 4}, conv(2, 3)], (2, 5, 5)),
        ("2 groups on 3 input channels", [conv(4, 3, 1, 1, groups=2)], (3, 6, 6)),
        ("2 groups for 3 filters", [conv(3, 3, 1, 1, groups=2)], (4, 6, 6)),
        ("concat of branches that end in 5x5 and 3x3",
         [{"type": "concat", "branches": [[conv(2, 1)], [conv(2, 3)]]}], (2, 5, 5)),
        ("add of depths 3 and 2", [{"type": "add", "branches": [[conv(3, 3, 1, 1)], []]}], (2, 5, 5)),
        ("a fractional size inside an add block",
         [{"type": "add", "branches": [[conv(2, 3, 2, 1)], [conv(2, 1, 2)]]}], (2, 6, 6)),
        ("an unknown layer type 'dropout'", [conv(2, 3, 1, 1), {"type": "dropout"}], (1, 4, 4)),
    ]
    rng.shuffle(raw)
    return [Case(label, (arch, shape)) for label, arch, shape in raw]


MEMORY_SETTINGS = [  # (batch, dtype, optimizer)
    (1, "float32", "sgd"), (8, "float32", "momentum"), (3, "float64", "adam"), (64, "float16", "rmsprop"),
    (5, "float32", "adagrad"), (2, "float64", "nesterov"), (16, "float32", "adam"),
]


def memory_cases(seed: int, *, count: int = 7, settings=MEMORY_SETTINGS, named: dict | None = None) -> list[Case]:
    """Cases ``(arch, input_shape, batch, dtype, optimizer)`` for training_memory: random architectures (with
    and without blocks) under every batch size, dtype and optimizer of ``settings``; ``named`` architectures
    ({label: (arch, shape)}) come first, each under the first setting and one other."""
    import copy

    rng = np.random.default_rng(seed)
    cases = []
    for n, (label, (arch, shape)) in enumerate((named or {}).items()):
        for setting in (settings[0], settings[1 + n % (len(settings) - 1)]):
            cases.append(Case(f"{label}, batch {setting[0]}, {setting[1]}, {setting[2]}",
                              (copy.deepcopy(arch), tuple(shape)) + setting))
    for i in range(count):
        arch, shape = random_architecture(rng, blocks=i % 2 == 1)
        setting = settings[i % len(settings)]
        cases.append(Case(f"{_describe(arch)} on {shape}, batch {setting[0]}, {setting[1]}, {setting[2]}",
                          (arch, shape) + setting))
    return cases


def batch_size_cases(seed: int, *, memory_of, named: dict | None = None) -> list[Case]:
    """Cases ``(arch, memory_bytes, input_shape, dtype, optimizer)`` for max_batch_size.

    ``memory_of(arch, input_shape, batch, dtype, optimizer)`` is the reference ``training_memory`` (a dict with
    'activations', 'data' and 'total'); with it each architecture gets the memories at which the answer changes:
    12 GiB; one byte less than k images need, with k so large that leaving the data out of an image's memory
    would fit one more (so that mistake and rounding up give different answers); 0; exactly the parameters;
    exactly 1 and k images, and one byte less than each. ``named`` ({label: (arch, shape)}) come first, then
    random architectures.
    """
    import copy

    rng = np.random.default_rng(seed)
    archs = list((named or {}).items())
    for i in range(4):
        arch, shape = random_architecture(rng, blocks=i % 2 == 1)
        archs.append((f"{_describe(arch)} on {shape}", (arch, shape)))
    cases = []
    for n, (label, (arch, shape)) in enumerate(archs):
        _, dtype, optimizer = MEMORY_SETTINGS[n % len(MEMORY_SETTINGS)]
        one = memory_of(copy.deepcopy(arch), tuple(shape), 1, dtype, optimizer)
        per_image = one["activations"] + one["data"]
        params_only = one["total"] - per_image
        many = int(one["activations"] // one["data"]) + 2
        k = int(rng.integers(2, 50))
        for memory in [12 * 2 ** 30, params_only + many * per_image - 1, 0, params_only, one["total"] - 1,
                       one["total"], params_only + k * per_image - 1, params_only + k * per_image]:
            cases.append(Case(f"{label}, {memory:,} bytes, {dtype}, {optimizer}",
                              (copy.deepcopy(arch), int(memory), tuple(shape), dtype, optimizer)))
    return cases


__all__ += ["FC_VOLUMES", "fc_to_conv_cases", "fc_to_conv_bad_cases", "conv_as_matrix_cases",
            "conv_as_matrix_bad_cases", "random_architecture", "architecture_cases", "bad_architecture_cases",
            "MEMORY_SETTINGS", "memory_cases", "batch_size_cases"]


# --- 09_train_convnet: losses, the ConvNet's loss and gradients, SGD with momentum, the training loop ---------

SOFTMAX_SHAPES = [(5, 10), (1, 3), (4, 2), (7, 5), (3, 10)]   # (N, K): N = 1, K = 2, K = 10


def softmax_cases(seed: int, *, large: bool = False) -> list[Case]:
    """Cases ``(scores, y)`` for a softmax loss: scores of shape (N, K), integer labels of shape (N,).

    With ``large=True`` every row is shifted by a different offset between -1000 and 1000 and spread over
    about 50: ``exp`` of such scores overflows (or underflows to 0 for a whole row), so only an
    implementation that subtracts each row's own maximum stays finite. The row offsets differ, so
    subtracting one maximum for the whole batch fails too.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for N, K in SOFTMAX_SHAPES:
        scores = rng.standard_normal((N, K)) * (20.0 if large else 2.0)
        if large:
            scores += rng.uniform(-1000, 1000, size=(N, 1))
            scores[0] += 1000.0 - scores[0].max()        # one row reaches 1000: exp overflows there for certain
        y = rng.integers(0, K, size=N)
        cases.append(Case(case_label(scores=scores, y=y), (scores, y)))
    return cases


L2_SHAPES = [(6, 1), (1, 3), (4, 2), (5, 4)]   # (N, D): one output per example, N = 1, D > 1


def l2_cases(seed: int) -> list[Case]:
    """Cases ``(pred, target)`` of the same shape (N, D) for an L2 loss; D > 1 in most, so averaging over
    all N * D elements instead of over the N examples shows."""
    rng = np.random.default_rng(seed)
    cases = []
    for N, D in L2_SHAPES:
        pred, target = rng.standard_normal((N, D)) * 3, rng.standard_normal((N, D)) * 3
        cases.append(Case(case_label(pred=pred, target=target), (pred, target)))
    return cases


class ConvNetShape(NamedTuple):
    """The net INPUT -> [CONV -> RELU -> POOL] x 2 -> FC -> RELU -> FC: input (N, C, H, W), F1 and F2
    filters of size fs ('same' padding), a hidden FC layer of D units, K outputs."""

    N: int
    C: int
    H: int
    W: int
    F1: int
    F2: int
    fs: int
    D: int
    K: int


CONVNET_SHAPES = [
    ConvNetShape(N=2, C=1, H=8, W=8, F1=3, F2=4, fs=3, D=5, K=10),    # the digits' geometry, small
    ConvNetShape(N=1, C=2, H=4, W=4, F1=2, F2=3, fs=3, D=4, K=3),     # N = 1, two channels, 1x1 after the pools
    ConvNetShape(N=3, C=1, H=12, W=8, F1=2, F2=2, fs=5, D=3, K=4),    # 5x5 filters (pad 2), non-square input
    ConvNetShape(N=2, C=3, H=8, W=4, F1=4, F2=2, fs=3, D=6, K=1),     # one output, as in a regression
    ConvNetShape(N=2, C=1, H=4, W=8, F1=1, F2=1, fs=1, D=2, K=2),     # 1x1 filters (pad 0), F1 = F2 = 1
]


def convnet_params(rng: np.random.Generator, s: ConvNetShape) -> dict:
    """Random parameters (float64) of the net of shape ``s``, scaled so that about half the units are active."""
    flat = s.F2 * (s.H // 4) * (s.W // 4)
    shapes = {"W1": (s.F1, s.C, s.fs, s.fs), "b1": (s.F1,), "W2": (s.F2, s.F1, s.fs, s.fs), "b2": (s.F2,),
              "W3": (flat, s.D), "b3": (s.D,), "W4": (s.D, s.K), "b4": (s.K,)}
    return {name: rng.standard_normal(shape) * (0.1 if name.startswith("b") else 0.6) for name, shape in shapes.items()}


def convnet_cases(seed: int, *, upstream: bool = False) -> list[Case]:
    """Cases ``(params, X)``, or ``(params, X, g)`` with ``upstream=True`` (``g`` of the scores' shape (N, K),
    a fixed upstream gradient), for the ConvNet of CONVNET_SHAPES."""
    rng = np.random.default_rng(seed)
    cases = []
    for s in CONVNET_SHAPES:
        params = convnet_params(rng, s)
        X = rng.standard_normal((s.N, s.C, s.H, s.W))
        label = case_label(X=X, W1=params["W1"], W2=params["W2"], W3=params["W3"], W4=params["W4"])
        if upstream:
            g = rng.standard_normal((s.N, s.K))
            cases.append(Case(label + f", g: {g.shape}", (params, X, g)))
        else:
            cases.append(Case(label, (params, X)))
    return cases


def momentum_cases(seed: int, *, velocity: bool) -> list[Case]:
    """Cases ``(w, dws, config)``: a parameter, the gradients of 1 to 4 successive steps, and the config of
    the first step. With ``velocity=True`` the config holds a random ``'velocity'`` (the rule must use it);
    with ``velocity=False`` it has none (the rule must start from zero and keep its velocity in the config).
    Some configs leave out the learning rate (default 1e-2); momentum 0 and 0.99 are among them."""
    rng = np.random.default_rng(seed)
    configs = [{"learning_rate": 0.1, "momentum": 0.9},
               {"learning_rate": 0.05, "momentum": 0.5},
               {"momentum": 0.99},
               {"learning_rate": 1e-3, "momentum": 0.0},
               {"learning_rate": 0.2, "momentum": 0.7}]
    shapes = [(4, 5), (3,), (2, 3, 3, 3), (6,), (5, 2)]
    cases = []
    for config, shape, steps in zip(configs, shapes, [3, 2, 4, 2, 3]):
        w = rng.standard_normal(shape)
        dws = [rng.standard_normal(shape) for _ in range(steps)]
        config = dict(config)
        if velocity:
            config["velocity"] = rng.standard_normal(shape)
        cases.append(Case(case_label(w=w, steps=steps, config=sorted(config)), (w, dws, config)))
    return cases


def line_fit_cases(seed: int) -> list[Case]:
    """Cases ``(X, y, batch_size, num_epochs, seed)`` for a training loop on a least-squares line fit:
    23 examples of 3 features, so batches of 5 or 4 end with a smaller batch, 23 is one full batch and
    1 is plain stochastic gradient descent."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((23, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(23)
    settings = [(5, 3, 0), (23, 2, 1), (4, 2, 7), (1, 1, 3), (6, 4, 11)]
    return [Case(f"X: {X.shape}, batch_size={b}, num_epochs={e}, seed={s}", (X, y, b, e, s)) for b, e, s in settings]


__all__ += ["SOFTMAX_SHAPES", "softmax_cases", "L2_SHAPES", "l2_cases", "ConvNetShape", "CONVNET_SHAPES",
            "convnet_params", "convnet_cases", "momentum_cases", "line_fit_cases"]


def l2_misfit_cases(seed: int) -> list[Case]:
    """Cases ``(pred, target)`` whose shapes differ, although ``pred - target`` would broadcast for most:
    (N, 1) against (N,) either way round, N = 1, transposed, and targets with one row for the batch."""
    rng = np.random.default_rng(seed)
    pairs = [((5, 1), (5,)), ((1, 1), (1,)), ((4,), (4, 1)), ((3, 2), (2, 3)), ((2, 1), (1, 1)), ((3, 4), (1, 4))]
    return [Case(f"pred: {p}, target: {t}", (rng.standard_normal(p), rng.standard_normal(t))) for p, t in pairs]


__all__ += ["l2_misfit_cases"]
