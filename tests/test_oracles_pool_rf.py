"""Pooling, 1x1 convolution and receptive fields agree with independent oracles.

Pooling is checked against torch.nn.functional (max_pool2d, avg_pool2d, lp_pool2d with p=2, and autograd
for the backward passes) and against a numpy sliding-window oracle; receptive fields against a brute-force
walk down the stack.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from grader.cases import pool_cases
from grader.course import REPO_ROOT, Course
from grader.reference import reference

COURSE = Course.at(REPO_ROOT)
HAVE = set(COURSE.assignments())

# (assignment, forward, backward, torch reduction)
POOLS = [(a, f, b, kind) for a, f, b, kind in [
    ("04_pooling", "max_pool_forward_naive", "max_pool_backward_naive", "max"),
    ("04_pooling", "avg_pool_forward_naive", "avg_pool_backward_naive", "avg"),
    ("04_pooling", "l2_pool_forward_naive", "l2_pool_backward_naive", "l2"),
    ("05_im2col", "max_pool_forward_im2col", "max_pool_backward_im2col", "max"),
] if a in HAVE]
IDS = [f"{a}:{f}" for a, f, _, _ in POOLS]


def _windows(x, p):
    v = sliding_window_view(x, (p["pool_height"], p["pool_width"]), axis=(2, 3))
    return v[:, :, ::p["stride"], ::p["stride"]]


NUMPY_POOL = {"max": lambda v: v.max(axis=(-2, -1)), "avg": lambda v: v.mean(axis=(-2, -1)),
              "l2": lambda v: np.sqrt((v ** 2).sum(axis=(-2, -1)))}


def _torch_pool(torch, kind, x, p):
    F = torch.nn.functional
    k, s = (p["pool_height"], p["pool_width"]), p["stride"]
    if kind == "max":
        return F.max_pool2d(x, k, s)
    if kind == "avg":
        return F.avg_pool2d(x, k, s)
    return F.lp_pool2d(x, 2, k, s)


@pytest.mark.parametrize("assignment, forward, backward, kind", POOLS, ids=IDS)
def test_pool_forward_matches_numpy_windows(assignment, forward, backward, kind):
    fn = getattr(reference(assignment), forward)
    for case in pool_cases(seed=201):
        x, p = case.args
        out, _ = fn(x, dict(p))
        np.testing.assert_allclose(out, NUMPY_POOL[kind](_windows(x, p)), rtol=1e-12, atol=1e-12, err_msg=case.label)


@pytest.mark.parametrize("assignment, forward, backward, kind", POOLS, ids=IDS)
def test_pool_matches_torch(torch, assignment, forward, backward, kind):
    ref = reference(assignment)
    rng = np.random.default_rng(202)
    for case in pool_cases(seed=203):
        x, p = case.args
        out, cache = getattr(ref, forward)(x, dict(p))
        dout = rng.standard_normal(out.shape)
        tx = torch.tensor(x, requires_grad=True)
        t_out = _torch_pool(torch, kind, tx, p)
        t_out.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=case.label)
        dx = getattr(ref, backward)(dout, cache)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=case.label)


def test_global_average_pool_matches_torch(torch):
    ref = reference("04_pooling")
    rng = np.random.default_rng(204)
    x = rng.standard_normal((3, 4, 5, 7))
    out, cache = ref.global_avg_pool_forward(x)
    tx = torch.tensor(x, requires_grad=True)
    t_out = torch.nn.functional.adaptive_avg_pool2d(tx, 1)[:, :, 0, 0]
    dout = rng.standard_normal(out.shape)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ref.global_avg_pool_backward(dout, cache), tx.grad.numpy(), rtol=1e-12)


def test_conv1x1_matches_torch(torch):
    ref = reference("06_1x1_and_dilated")
    rng = np.random.default_rng(205)
    x, w, b = rng.standard_normal((2, 5, 4, 6)), rng.standard_normal((3, 5, 1, 1)), rng.standard_normal(3)
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b)).numpy()
    np.testing.assert_allclose(ref.conv1x1_forward(x, w, b), want, rtol=1e-12, atol=1e-12)


def _brute_force_receptive_field(layers):
    """Walk one top neuron down the stack, collecting the input positions it depends on (1-D)."""
    positions = {0}
    for filter_size, stride, dilation in reversed(layers):
        positions = {p * stride + dilation * k for p in positions for k in range(filter_size)}
    return max(positions) - min(positions) + 1


def test_receptive_field_matches_brute_force():
    ref = reference("06_1x1_and_dilated")
    assert ref.receptive_field([]) == 1
    layer_kinds = [(1, 1, 1), (3, 1, 1), (3, 2, 1), (2, 2, 1), (3, 1, 2), (5, 1, 3), (7, 2, 1), (3, 3, 4)]
    for depth in range(1, 4):
        for layers in itertools.product(layer_kinds, repeat=depth):
            assert ref.receptive_field(list(layers)) == _brute_force_receptive_field(layers), layers


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_ties_go_where_torch_sends_them(torch, stride):
    """The notebook's tie rule (first maximum in row-major order) is the one torch's CPU max_pool2d follows."""
    ref = reference("04_pooling")
    rng = np.random.default_rng(206)
    x = rng.integers(0, 3, size=(2, 2, 7, 7)).astype(float)   # many ties
    p = {"pool_height": 3, "pool_width": 3, "stride": stride}
    out, cache = ref.max_pool_forward_naive(x, dict(p))
    dout = rng.standard_normal(out.shape)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 3, stride).backward(torch.tensor(dout))
    np.testing.assert_allclose(ref.max_pool_backward_naive(dout, cache), tx.grad.numpy(), rtol=1e-12, atol=0)


def test_l2_pool_gradient_at_an_all_zero_window_matches_torch_vector_norm(torch):
    ref = reference("04_pooling")
    rng = np.random.default_rng(207)
    x = rng.standard_normal((1, 1, 4, 4))
    x[0, 0, :2, :2] = 0.0                                       # one all-zero window
    p = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = ref.l2_pool_forward_naive(x, dict(p))
    dout = rng.standard_normal(out.shape)
    tx = torch.tensor(x, requires_grad=True)
    windows = tx.unfold(2, 2, 2).unfold(3, 2, 2)                # (1, 1, 2, 2, 2, 2)
    torch.linalg.vector_norm(windows, dim=(-2, -1)).backward(torch.tensor(dout))
    np.testing.assert_allclose(ref.l2_pool_backward_naive(dout, cache), tx.grad.numpy(), rtol=1e-12, atol=0)
    assert not tx.grad[0, 0, :2, :2].any()
