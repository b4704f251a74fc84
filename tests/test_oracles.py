"""The reference implementations (the source notebooks' solution cells) agree with independent oracles.

scipy.signal.correlate/convolve always; torch.nn.functional when torch is installed (CI installs it, and
there its absence is a failure).
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.cases import conv_backward_cases, conv_cases
from grader.course import REPO_ROOT, Course
from grader.reference import reference
from oracles import scipy_conv_backward, scipy_conv_forward, torch_conv

COURSE = Course.at(REPO_ROOT)
HAVE = set(COURSE.assignments())

# (assignment, forward name, backward name, dilation supported); the cache of every layer is (x, w, b, conv_param)
CONV_IMPLEMENTATIONS = [
    ("02_conv_forward", "conv_forward_naive", None, False),
    ("03_conv_backward", None, "conv_backward_naive", False),
    ("05_im2col", "conv_forward_im2col", "conv_backward_im2col", False),
    ("06_1x1_and_dilated", "conv_forward_dilated", "conv_backward_dilated", True),
]
PRESENT = CONV_IMPLEMENTATIONS
IDS = [f"{a}:{f or b}" for a, f, b, _ in PRESENT]


def _param(case_args):
    p = case_args[-1]
    return p["stride"], p["pad"], p.get("dilation", 1)


FORWARDS = [c for c in PRESENT if c[1]]


@pytest.mark.parametrize("assignment, forward, backward, dilated", FORWARDS,
                         ids=[f"{a}:{f}" for a, f, _, _ in FORWARDS])
def test_forward_matches_scipy(assignment, forward, backward, dilated):
    fn = getattr(reference(assignment), forward)
    for case in conv_cases(seed=101, dilation=dilated):
        x, w, b, conv_param = case.args
        out, _ = fn(x, w, b, dict(conv_param))
        np.testing.assert_allclose(out, scipy_conv_forward(x, w, b, *_param(case.args)), rtol=1e-10, atol=1e-10,
                                   err_msg=case.label)


@pytest.mark.parametrize("assignment, forward, backward, dilated", [c for c in PRESENT if c[2]],
                         ids=[f"{a}:{b}" for a, _, b, _ in PRESENT if b])
def test_backward_matches_scipy(assignment, forward, backward, dilated):
    ref = reference(assignment)
    for case in conv_backward_cases(seed=102, dilation=dilated):
        dout, x, w, b, conv_param = case.args
        got = getattr(ref, backward)(dout, (x, w, b, dict(conv_param)))
        want = scipy_conv_backward(dout, x, w, *_param(case.args))
        for name, g, e in zip(("dx", "dw", "db"), got, want):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, err_msg=f"{name} for {case.label}")


@pytest.mark.parametrize("assignment, forward, backward, dilated", PRESENT, ids=IDS)
def test_matches_torch(torch, assignment, forward, backward, dilated):
    ref = reference(assignment)
    for case in conv_backward_cases(seed=103, dilation=dilated):
        dout, x, w, b, conv_param = case.args
        t_out, t_dx, t_dw, t_db = torch_conv(torch, x, w, b, dout if backward else None, *_param(case.args))
        if forward:
            out, _ = getattr(ref, forward)(x, w, b, dict(conv_param))
            np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-10, err_msg=case.label)
        if backward:
            grads = getattr(ref, backward)(dout, (x, w, b, dict(conv_param)))
            for name, g, e in zip(("dx", "dw", "db"), grads, (t_dx, t_dw, t_db)):
                np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, err_msg=f"{name} for {case.label}")


def test_oracles_agree_with_each_other(torch):
    """The scipy oracle itself is checked against torch, dilation and stride included."""
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 11, 9)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    for stride, pad, dilation in [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 2)]:
        out = scipy_conv_forward(x, w, b, stride, pad, dilation)
        dout = rng.standard_normal(out.shape)
        t_out, t_dx, t_dw, t_db = torch_conv(torch, x, w, b, dout, stride, pad, dilation)
        np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-10)
        for g, e in zip(scipy_conv_backward(dout, x, w, stride, pad, dilation), (t_dx, t_dw, t_db)):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_fast_conv_in_many_bands_matches_torch(torch, dtype, rtol):
    """The fast im2col conv builds its columns in bands of output rows; force many bands and compare. With enough
    channels (C * WW >= 64) it builds the columns of one filter row and shifts them for the others; with more filters
    than channels its data gradient goes through col2im, otherwise through the transposed convolution."""
    ref = reference("05_im2col")
    forward = ref.mutant("conv_forward_im2col", "(1 << 20)", "75")
    backward = ref.mutant("conv_backward_im2col", "(384 << 10)", "75")
    rng = np.random.default_rng(104)
    for x_shape, w_shape in [((2, 3, 13, 11), (4, 3, 3, 3)), ((2, 22, 9, 9), (5, 22, 3, 3)),
                             ((2, 22, 9, 9), (30, 22, 3, 3)), ((2, 13, 9, 9), (6, 13, 5, 5))]:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        for stride, pad in [(1, 1), (2, 1)]:
            if (x_shape[2] + 2 * pad - w_shape[2]) % stride:
                continue
            out, cache = forward(x, w, b, {"stride": stride, "pad": pad})
            assert out.dtype == dtype
            dout = rng.standard_normal(out.shape).astype(dtype)
            t_out, t_dx, t_dw, t_db = torch_conv(torch, x, w, b, dout, stride, pad)
            np.testing.assert_allclose(out, t_out, rtol=rtol, atol=rtol)
            for g, e in zip(backward(dout, cache), (t_dx, t_dw, t_db)):
                assert g.dtype == dtype
                np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * 10)
