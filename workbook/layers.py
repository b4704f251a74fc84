"""Given layers: fast, documented forward/backward pairs to build networks with.

In the spirit of CS231n's ``layers.py`` and ``fast_layers.py``: once a notebook has had you write a layer,
later notebooks take it from here instead of asking you to paste it again. Each layer is a pair of plain
functions, ``*_forward`` returning ``(out, cache)`` and ``*_backward(dout, cache)`` returning the gradients,
on NCHW arrays. A float32 input gives float32 outputs and gradients.

    >>> from workbook.layers import conv_forward, relu_forward, max_pool_forward
    >>> out, cache = conv_forward(x, w, b, {"stride": 1, "pad": 1})

These are not the exercises' solutions: they are written differently (strided window views of the input
and one matrix product per band of output rows, the max-pooling switches kept in the cache) and the grader
forbids importing a given layer in the notebook where that layer is the exercise. The test suite checks
every layer against PyTorch, forward and backward, in float32 and float64.

Windows that do not fit raise ``ValueError`` with the computed size, in every layer: an output size of
(H + 2P - F_eff) / S + 1 that is not a whole number, or filters larger than the padded input, is an error,
never rounded down.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "conv_forward", "conv_backward",
    "max_pool_forward", "max_pool_backward",
    "avg_pool_forward", "avg_pool_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
    "relu_forward", "relu_backward",
    "affine_forward", "affine_backward",
]

#: Bytes of window copies one matrix product works on at a time (a band of output rows of one image).
BAND_BYTES = 4 << 20


def _fit(size: int, window: int, stride: int, pad: int, what: str) -> int:
    """Positions of a window along one axis; ValueError when the windows do not tile the padded input."""
    span = size + 2 * pad - window
    if span < 0 or span % stride:
        raise ValueError(f"{what}: a window of {window} at stride {stride} on {size} pixels padded by {pad} "
                         f"gives (size + 2*pad - window) / stride + 1 = {span / stride + 1:g}, not a whole "
                         f"number of positions")
    return span // stride + 1


def _pool_geometry(x: np.ndarray, pool_param: dict, what: str) -> tuple[int, int, int, int, int]:
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    H_out = _fit(x.shape[2], ph, stride, 0, f"{what} (height)")
    W_out = _fit(x.shape[3], pw, stride, 0, f"{what} (width)")
    return ph, pw, stride, H_out, W_out


def _windows(x_pad: np.ndarray, kh: int, kw: int, stride: int, dilation: int = 1) -> np.ndarray:
    """A read-only view ``[n, c, i, j, u, v] -> x_pad[n, c, i*S + u*d, j*S + v*d]`` (no copy)."""
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    view = sliding_window_view(x_pad, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::stride, ::stride, ::dilation, ::dilation]


def _band_rows(row_bytes: int) -> int:
    return max(1, BAND_BYTES // max(1, row_bytes))


# ---------------------------------------------------------------------------------------------------------------
# Convolution (cross-correlation), with stride, zero-padding and dilation
# ---------------------------------------------------------------------------------------------------------------

def conv_forward(x, w, b, conv_param):
    """
    The forward pass of a convolutional layer.

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - w: Filter weights of shape (F, C, HH, WW)
    - b: Biases, of shape (F,)
    - conv_param: A dictionary with the following keys:
      - 'stride': S, pixels between neighbouring windows, vertically and horizontally
      - 'pad': P, zeros added on each side of every image
      - 'dilation' (optional, default 1): d, the step between filter taps (PyTorch's convention:
        1 is an ordinary filter; the effective size is d * (HH - 1) + 1)

    Returns a tuple of:
    - out: Output data of shape (N, F, H', W') with H' = 1 + (H + 2P - d(HH - 1) - 1) / S and
      W' likewise; out[n, f, i, j] = b[f] + sum_{c,u,v} w[f, c, u, v] x_pad[n, c, iS + ud, jS + vd]
    - cache: (x, w, b, conv_param)

    Raises:
    - ValueError if the filters do not fit the padded input exactly
    """
    stride, pad, dilation = conv_param["stride"], conv_param["pad"], conv_param.get("dilation", 1)
    N, C, H, W = x.shape
    F, C_w, HH, WW = w.shape
    if C_w != C:
        raise ValueError(f"conv_forward: x has {C} channels but the filters have {C_w}")
    H_out = _fit(H, dilation * (HH - 1) + 1, stride, pad, "conv_forward (height)")
    W_out = _fit(W, dilation * (WW - 1) + 1, stride, pad, "conv_forward (width)")
    dtype = np.result_type(x, w, b)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    filters = w.reshape(F, -1).T.astype(dtype, copy=False)                  # (C*HH*WW, F)
    out = np.empty((N, H_out, W_out, F), dtype=dtype)
    rows = _band_rows(W_out * C * HH * WW * dtype.itemsize)
    for n in range(N):
        windows = _windows(x_pad[n:n + 1], HH, WW, stride, dilation)[0]     # (C, H', W', HH, WW)
        for top in range(0, H_out, rows):
            band = windows[:, top:top + rows].transpose(1, 2, 0, 3, 4)        # (rows, W', C, HH, WW)
            k = band.shape[0]
            np.matmul(band.reshape(k * W_out, -1), filters, out=out[n, top:top + k].reshape(k * W_out, F))
    out += b.astype(dtype, copy=False)
    return out.transpose(0, 3, 1, 2), (x, w, b, conv_param)


def conv_backward(dout, cache):
    """
    The backward pass of a convolutional layer.

    Inputs:
    - dout: Upstream derivatives, of shape (N, F, H', W')
    - cache: (x, w, b, conv_param) as returned by conv_forward

    Returns a tuple of:
    - dx: Gradient with respect to x, of shape (N, C, H, W)
    - dw: Gradient with respect to w, of shape (F, C, HH, WW)
    - db: Gradient with respect to b, of shape (F,)
    """
    x, w, b, conv_param = cache
    stride, pad, dilation = conv_param["stride"], conv_param["pad"], conv_param.get("dilation", 1)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out, W_out = dout.shape[2:]
    dtype = np.result_type(dout, x, w)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    filters = w.reshape(F, -1).astype(dtype, copy=False)                    # (F, C*HH*WW)
    grads = np.ascontiguousarray(dout.transpose(0, 2, 3, 1), dtype=dtype)  # (N, H', W', F)
    dw = np.zeros((F, C * HH * WW), dtype=dtype)
    dx_pad = np.zeros(x_pad.shape, dtype=dtype)
    rows = _band_rows(W_out * C * HH * WW * dtype.itemsize)
    for n in range(N):
        windows = _windows(x_pad[n:n + 1], HH, WW, stride, dilation)[0]
        for top in range(0, H_out, rows):
            band = windows[:, top:top + rows].transpose(1, 2, 0, 3, 4)
            k = band.shape[0]
            g = grads[n, top:top + k].reshape(k * W_out, F)
            dw += g.T @ band.reshape(k * W_out, -1)
            # Each window's share of dx, laid out like the window: (rows, W', C, HH, WW). Adding it back
            # tap by tap touches every pixel of one tap's strided slice once, so += on a slice is exact.
            shares = (g @ filters).reshape(k, W_out, C, HH, WW)
            for u in range(HH):
                top_row = top * stride + u * dilation
                for v in range(WW):
                    left = v * dilation
                    target = dx_pad[n, :, top_row:top_row + stride * (k - 1) + 1:stride,
                                    left:left + stride * (W_out - 1) + 1:stride]
                    target += shares[:, :, :, u, v].transpose(2, 0, 1)
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W] if pad else dx_pad
    db = dout.sum(axis=(0, 2, 3)).astype(dtype, copy=False)
    return np.ascontiguousarray(dx), dw.reshape(w.shape), db


# ---------------------------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------------------------

def max_pool_forward(x, pool_param):
    """
    The forward pass of a max-pooling layer (no padding).

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - pool_param: A dictionary with the keys 'pool_height' (PH), 'pool_width' (PW) and 'stride' (S)

    Returns a tuple of:
    - out: Output data of shape (N, C, H', W') and the dtype of x, H' = 1 + (H - PH) / S,
      W' = 1 + (W - PW) / S; out[n, c, i, j] is the maximum of x[n, c, iS:iS + PH, jS:jS + PW]
    - cache: (x.shape, pool_param, switches), switches[n, c, i, j] the offset u * PW + v of the window's
      first maximum in row-major order (the input itself is not kept)

    Raises:
    - ValueError if the windows do not tile the input
    """
    ph, pw, stride, H_out, W_out = _pool_geometry(x, pool_param, "max_pool_forward")
    N, C = x.shape[:2]
    if (ph, pw) == (stride, stride):
        # Windows that tile the input: a reshape is a view, no window is copied twice.
        blocks = x[:, :, :H_out * ph, :W_out * pw].reshape(N, C, H_out, ph, W_out, pw).transpose(0, 1, 2, 4, 3, 5)
    else:
        blocks = _windows(x, ph, pw, stride)
    flat = blocks.reshape(N, C, H_out, W_out, ph * pw)
    switches = flat.argmax(axis=-1)                                  # the first maximum, row-major
    out = np.take_along_axis(flat, switches[..., None], axis=-1)[..., 0]
    return out, (x.shape, pool_param, switches.astype(np.intp))


def max_pool_backward(dout, cache):
    """
    The backward pass of a max-pooling layer.

    Inputs:
    - dout: Upstream derivatives, of shape (N, C, H', W')
    - cache: (x_shape, pool_param, switches) as returned by max_pool_forward

    Returns:
    - dx: Gradient with respect to x, of shape (N, C, H, W) and the dtype of dout: each dout[n, c, i, j]
      goes to the first maximum of its window, and adds up where overlapping windows share a maximum
    """
    (N, C, H, W), pool_param, switches = cache
    pw, stride = pool_param["pool_width"], pool_param["stride"]
    _, _, H_out, W_out = dout.shape
    u, v = np.divmod(switches, pw)
    rows = np.arange(H_out).reshape(1, 1, H_out, 1) * stride + u
    cols = np.arange(W_out).reshape(1, 1, 1, W_out) * stride + v
    planes = np.arange(N * C).reshape(N, C, 1, 1)
    flat_index = (planes * H + rows) * W + cols
    dx = np.bincount(flat_index.ravel(), weights=dout.ravel(), minlength=N * C * H * W)
    return dx.astype(dout.dtype, copy=False).reshape(N, C, H, W)


def avg_pool_forward(x, pool_param):
    """
    The forward pass of an average-pooling layer (no padding).

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - pool_param: A dictionary with the keys 'pool_height' (PH), 'pool_width' (PW) and 'stride' (S)

    Returns a tuple of:
    - out: Output data of shape (N, C, H', W') and the dtype of x: the mean of each window
    - cache: (x.shape, pool_param)

    Raises:
    - ValueError if the windows do not tile the input
    """
    ph, pw, stride, H_out, W_out = _pool_geometry(x, pool_param, "avg_pool_forward")
    out = _windows(x, ph, pw, stride).mean(axis=(4, 5), dtype=x.dtype if x.dtype.kind == "f" else None)
    return out, (x.shape, pool_param)


def avg_pool_backward(dout, cache):
    """
    The backward pass of an average-pooling layer.

    Inputs:
    - dout: Upstream derivatives, of shape (N, C, H', W')
    - cache: (x_shape, pool_param) as returned by avg_pool_forward

    Returns:
    - dx: Gradient with respect to x, of shape (N, C, H, W): each window spreads dout / (PH * PW) evenly
      over its pixels, and overlapping windows add up
    """
    x_shape, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    _, _, H_out, W_out = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout / (ph * pw)
    for u in range(ph):
        for v in range(pw):
            dx[:, :, u:u + stride * (H_out - 1) + 1:stride, v:v + stride * (W_out - 1) + 1:stride] += share
    return dx


def global_avg_pool_forward(x):
    """
    Global average pooling: the mean of every depth slice.

    Inputs:
    - x: Input data of shape (N, C, H, W)

    Returns a tuple of:
    - out: Output data of shape (N, C) and the dtype of x
    - cache: x.shape
    """
    return x.mean(axis=(2, 3), dtype=x.dtype if x.dtype.kind == "f" else None), x.shape


def global_avg_pool_backward(dout, cache):
    """
    The backward pass of global average pooling.

    Inputs:
    - dout: Upstream derivatives, of shape (N, C)
    - cache: the input's shape (N, C, H, W)

    Returns:
    - dx: Gradient with respect to x, of shape (N, C, H, W): dout[n, c] / (H * W) at every pixel
    """
    N, C, H, W = cache
    return np.repeat(dout / (H * W), H * W, axis=1).reshape(N, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# Elementwise and fully connected
# ---------------------------------------------------------------------------------------------------------------

def relu_forward(x):
    """
    The forward pass of a layer of rectified linear units.

    Inputs:
    - x: Input data, of any shape

    Returns a tuple of:
    - out: max(x, 0), of the shape and dtype of x
    - cache: x
    """
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """
    The backward pass of a ReLU layer.

    Inputs:
    - dout: Upstream derivatives, of any shape
    - cache: x, the input of the forward pass, of the same shape

    Returns:
    - dx: dout where x > 0, else 0 (the subgradient 0 at x == 0)
    """
    return np.where(cache > 0, dout, 0).astype(dout.dtype, copy=False)


def affine_forward(x, w, b):
    """
    The forward pass of a fully connected (affine) layer.

    Inputs:
    - x: Input data of shape (N, d_1, ..., d_k); each example is flattened (C-order) to D = d_1 * ... * d_k
    - w: Weights, of shape (D, M)
    - b: Biases, of shape (M,)

    Returns a tuple of:
    - out: x.reshape(N, D) @ w + b, of shape (N, M)
    - cache: (x, w, b)
    """
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """
    The backward pass of a fully connected (affine) layer.

    Inputs:
    - dout: Upstream derivatives, of shape (N, M)
    - cache: (x, w, b) as returned by affine_forward

    Returns a tuple of:
    - dx: Gradient with respect to x, of shape (N, d_1, ..., d_k)
    - dw: Gradient with respect to w, of shape (D, M)
    - db: Gradient with respect to b, of shape (M,)
    """
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db
