"""The given layers of the student package (workbook.layers) against PyTorch, forward and backward.

They are what later notebooks build and train networks with, so they are held to the oracle in both float64 and
float32, on the shapes the exercises care about (non-square, pad 0, stride > 1, overlapping windows, dilation), and
they keep the dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

from workbook import layers

CONV_SHAPES = [  # (N, C, H, W, F, HH, WW, stride, pad, dilation)
    (2, 3, 7, 9, 4, 3, 3, 1, 1, 1),
    (1, 2, 9, 8, 3, 3, 2, 2, 0, 1),
    (2, 3, 9, 9, 2, 3, 3, 1, 2, 2),
    (3, 1, 12, 13, 2, 5, 4, 1, 1, 1),
    (2, 4, 5, 6, 3, 1, 1, 1, 0, 1),
    (1, 2, 11, 11, 2, 3, 3, 2, 1, 3),
    (2, 70, 6, 7, 3, 3, 3, 1, 1, 1),      # enough channels for one stack per filter row
    (1, 3, 5, 5, 2, 3, 3, 1, 3, 1),       # more padding than the filter: dx crops dout
    (2, 5, 10, 10, 2, 3, 3, 3, 2, 2),     # stride 3 and dilation 2
    (2, 66, 7, 8, 2, 3, 2, 1, 3, 2),      # many channels, non-square filter, dilation 2
    (2, 3, 12, 11, 5, 7, 5, 1, 2, 1),     # few channels, tall filters: blocks of output rows; 10 rows, not whole blocks
    (3, 3, 17, 15, 4, 5, 5, 1, 4, 2),     # blocks of output rows, dilation 2: residues of 9 and 8 rows
    (2, 4, 9, 10, 3, 5, 5, 1, 5, 1),      # blocks forward and backward, pad beyond the filter
    (2, 20, 9, 10, 3, 5, 5, 1, 5, 1),     # one stack per filter row; dx a correlation in blocks, of dout cropped
]
POOL_SHAPES = [  # (N, C, H, W, pool_height, pool_width, stride)
    (2, 3, 8, 8, 2, 2, 2), (1, 2, 7, 7, 3, 3, 2), (2, 1, 6, 5, 3, 3, 1), (1, 1, 4, 6, 2, 3, 1), (2, 2, 6, 6, 3, 3, 3),
    (2, 2, 7, 7, 2, 2, 5),   # windows apart: pixels in no window get no gradient
]
TOLERANCE = {np.float64: 1e-10, np.float32: 2e-5}


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x{}x{}x{}x{} w{}x{}x{} s{} p{} d{}".format(*s))
def test_conv_matches_torch(torch, shape, dtype):
    N, C, H, W, F, HH, WW, stride, pad, dilation = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(N, C, H, W), (F, C, HH, WW), (F,)])
    param = {"stride": stride, "pad": pad, "dilation": dilation}
    out, cache = layers.conv_forward(x, w, b, param)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ot = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad, dilation=dilation)
    dout = rng.standard_normal(tuple(ot.shape)).astype(dtype)
    ot.backward(torch.tensor(dout))
    grads = layers.conv_backward(dout, cache)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    for name, ours, theirs in zip(("out", "dx", "dw", "db"), (out, *grads), (ot, xt.grad, wt.grad, bt.grad)):
        assert ours.shape == tuple(theirs.shape), name
        assert _rel(ours, theirs.detach().numpy()) < TOLERANCE[dtype], name


def test_conv_in_many_bands_matches_one_band(monkeypatch):
    """The layers copy the windows of one band of output rows at a time: force one-row bands."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 13, 11)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    param = {"stride": 2, "pad": 1}
    out, cache = layers.conv_forward(x, w, b, param)
    dout = rng.standard_normal(out.shape)
    grads = layers.conv_backward(dout, cache)
    monkeypatch.setattr(layers, "BAND_VALUES", 1)
    out1, cache1 = layers.conv_forward(x, w, b, param)
    np.testing.assert_allclose(out1, out, rtol=1e-12, atol=1e-12)
    for g1, g in zip(layers.conv_backward(dout, cache1), grads):
        np.testing.assert_allclose(g1, g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("settings", [{"BAND_VALUES": 1}, {"BAND_VALUES": 375}, {"MIN_TERMS": 1},
                                      {"MIN_TERMS": 10 ** 6}, {"MIN_TERMS": 1, "BAND_VALUES": 1},
                                      {"BLOCK_ROWS": 1}, {"BLOCK_ROWS": 3, "BLOCK_BYTES": 1},
                                      {"BLOCK_MIN_SIZE": 10 ** 6}],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x{}x{}x{}x{} w{}x{}x{} s{} p{} d{}".format(*s))
def test_conv_gives_the_same_numbers_however_the_work_is_cut(monkeypatch, shape, settings):
    """Bands of one row, a stack per filter row or one for all of them, blocks of 1 or 3 output rows per product or
    none: the same sums in another order."""
    N, C, H, W, F, HH, WW, stride, pad, dilation = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b = (rng.standard_normal(s) for s in [(N, C, H, W), (F, C, HH, WW), (F,)])
    param = {"stride": stride, "pad": pad, "dilation": dilation}
    out, cache = layers.conv_forward(x, w, b, param)
    dout = rng.standard_normal(out.shape)
    grads = layers.conv_backward(dout, cache)
    for name, value in settings.items():
        monkeypatch.setattr(layers, name, value)
    out1, cache1 = layers.conv_forward(x, w, b, param)
    np.testing.assert_allclose(out1, out, rtol=1e-12, atol=1e-12)
    for g1, g in zip(layers.conv_backward(dout, cache1), grads):
        np.testing.assert_allclose(g1, g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 1 << 20])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=lambda s: "x{}x{}x{}x{} {}x{} s{}".format(*s))
def test_pooling_matches_torch(torch, monkeypatch, shape, dtype, chunk):
    monkeypatch.setattr(layers, "POOL_CHUNK_BYTES", chunk)     # one depth slice at a time, or many
    N, C, H, W, ph, pw, stride = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    for ours_forward, ours_backward, theirs in [
            (layers.max_pool_forward, layers.max_pool_backward, torch.nn.functional.max_pool2d),
            (layers.avg_pool_forward, layers.avg_pool_backward, torch.nn.functional.avg_pool2d)]:
        out, cache = ours_forward(x, param)
        xt = torch.tensor(x, requires_grad=True)
        ot = theirs(xt, (ph, pw), stride)
        dout = rng.standard_normal(tuple(ot.shape)).astype(dtype)
        ot.backward(torch.tensor(dout))
        dx = ours_backward(dout, cache)
        assert out.dtype == dtype and dx.dtype == dtype
        assert _rel(out, ot.detach().numpy()) < TOLERANCE[dtype]
        assert _rel(dx, xt.grad.numpy()) < TOLERANCE[dtype]


def test_max_pool_ties_go_to_the_first_maximum_as_in_torch(torch):
    x = np.random.default_rng(5).integers(0, 2, size=(2, 3, 6, 6)).astype(float)     # many ties
    param = {"pool_height": 3, "pool_width": 3, "stride": 1}
    out, cache = layers.max_pool_forward(x, param)
    dout = np.random.default_rng(6).standard_normal(out.shape)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 3, 1).backward(torch.tensor(dout))
    np.testing.assert_allclose(layers.max_pool_backward(dout, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 512, 1 << 10, 1 << 20])
@pytest.mark.parametrize("shape", POOL_SHAPES + [(3, 3, 8, 8, 2, 2, 2), (1, 2, 34, 34, 17, 17, 17),
                                                 (1, 1, 2, 65540, 2, 2, 2)],
                         ids=lambda s: "x{}x{}x{}x{} {}x{} s{}".format(*s))
def test_max_pool_switches_are_the_first_maximum_of_each_window_where_most_windows_tie(monkeypatch, shape, chunk):
    """The switches, positions in x.ravel(), against np.argmax (which returns the first maximum) over every window,
    in row-major order within the window. A 17x17 window has offsets beyond 255, and a row of 65540 pixels positions
    beyond 65535 within a window, so neither is computed in small integers. The pieces of the batch: one depth slice,
    two channels of an image, two of three images, or all. Without torch."""
    monkeypatch.setattr(layers, "POOL_CHUNK_BYTES", chunk)
    N, C, H, W, ph, pw, stride = shape
    x = np.random.default_rng(sum(shape)).integers(0, 3, size=(N, C, H, W)).astype(np.float32)
    out, (_, _, switches) = layers.max_pool_forward(x, {"pool_height": ph, "pool_width": pw, "stride": stride})
    windows = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::stride, ::stride]
    windows = windows.reshape(*out.shape, ph * pw)
    np.testing.assert_array_equal(out, windows.max(axis=-1))
    u, v = np.divmod(windows.argmax(axis=-1), pw)
    n, c, i, j = np.indices(out.shape)
    assert switches.dtype == np.intp
    np.testing.assert_array_equal(switches, ((n * C + c) * H + i * stride + u) * W + j * stride + v)
    np.testing.assert_array_equal(x.ravel()[switches], out)


def test_global_pool_relu_and_affine_match_torch(torch):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 2))
    out, cache = layers.global_avg_pool_forward(x)
    dout = rng.standard_normal(out.shape)
    xt = torch.tensor(x, requires_grad=True)
    xt.mean(dim=(2, 3)).backward(torch.tensor(dout))
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)))
    np.testing.assert_allclose(layers.global_avg_pool_backward(dout, cache), xt.grad.numpy(), rtol=1e-12)

    out, cache = layers.relu_forward(x)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(dout := rng.standard_normal(x.shape)))
    np.testing.assert_allclose(out, np.maximum(x, 0))
    np.testing.assert_allclose(layers.relu_backward(dout, cache), xt.grad.numpy())

    w, b = rng.standard_normal((40, 7)), rng.standard_normal(7)
    out, cache = layers.affine_forward(x, w, b)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ot = xt.reshape(3, -1) @ wt + bt
    ot.backward(torch.tensor(dout := rng.standard_normal((3, 7))))
    for ours, theirs in zip((out, *layers.affine_backward(dout, cache)), (ot, xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call", [
    lambda: layers.conv_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), np.zeros(1), {"stride": 3, "pad": 1}),
    lambda: layers.conv_forward(np.zeros((1, 1, 2, 6)), np.zeros((1, 1, 3, 3)), np.zeros(1), {"stride": 1, "pad": 0}),
    lambda: layers.max_pool_forward(np.zeros((1, 1, 5, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2}),
    lambda: layers.avg_pool_forward(np.zeros((1, 1, 4, 7)), {"pool_height": 2, "pool_width": 2, "stride": 2}),
])
def test_windows_that_do_not_fit_raise_with_the_computed_size(call):
    with pytest.raises(ValueError, match=r"= \d+\.\d+ positions, not a whole number|larger than the input"):
        call()


def _owns_its_memory(a: np.ndarray) -> bool:
    """A C-contiguous array whose buffer is exactly its own size (not a view into a larger one)."""
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    return a.flags.c_contiguous and base.nbytes == a.nbytes


@pytest.mark.parametrize("shape", CONV_SHAPES + [(2, 3, 16, 16, 4, 7, 7, 1, 3, 1), (2, 8, 14, 14, 4, 3, 3, 1, 1, 1)],
                         ids=lambda s: "x{}x{}x{}x{} w{}x{}x{} s{} p{} d{}".format(*s))
def test_every_result_is_a_compact_array_of_its_own_size(shape):
    """What a layer returns costs what its shape says: 08_vgg_memory measures a forward pass against that count, and
    a view that kept a larger buffer alive (as when the products ran over the padded width) would hold more."""
    N, C, H, W, F, HH, WW, stride, pad, dilation = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((F, C, HH, WW)).astype(np.float32)
    out, cache = layers.conv_forward(x, w, np.zeros(F, np.float32),
                                     {"stride": stride, "pad": pad, "dilation": dilation})
    results = {"out": out} | dict(zip(("dx", "dw", "db"), layers.conv_backward(np.ones_like(out), cache)))
    for pool in (layers.max_pool_forward, layers.avg_pool_forward):
        pooled, pool_cache = pool(x, {"pool_height": 2, "pool_width": 2, "stride": 2 if H % 2 == W % 2 == 0 else 1})
        backward = layers.max_pool_backward if pool is layers.max_pool_forward else layers.avg_pool_backward
        results[pool.__name__] = pooled
        results[backward.__name__] = backward(np.ones_like(pooled), pool_cache)
    for name, value in results.items():
        assert _owns_its_memory(value), f"{name} of {shape}: shape {value.shape}, a view of a larger buffer"
