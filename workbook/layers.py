"""Given layers: fast, documented forward/backward pairs to build networks with.

In the spirit of CS231n's ``layers.py`` and ``fast_layers.py``: once a notebook has had you write a layer,
later notebooks take it from here instead of asking you to paste it again. Each layer is a pair of plain
functions, ``*_forward`` returning ``(out, cache)`` and ``*_backward(dout, cache)`` returning the gradients,
on NCHW arrays. A float32 input gives float32 outputs and gradients.

    >>> from workbook.layers import conv_forward, relu_forward, max_pool_forward
    >>> out, cache = conv_forward(x, w, b, {"stride": 1, "pad": 1})

These are not the exercises' solutions: they are written differently and the grader forbids importing a given
layer in the notebook where that layer is the exercise. The convolutions copy the input for a band of output rows
of a few images at a time (a few MB, which stay in the processor's cache) and multiply the copies with the
filters; at stride 1 with enough channels they copy only the taps of one filter row, and the filter rows after the
first read the same copy shifted by whole rows instead of copies of their own; with few channels and few, tall
filters, one copy and one product serve a block of four output rows, in both passes. The data gradient at
stride 1 is otherwise itself a correlation, of dout with the flipped filters. Max pooling keeps the switches (the
position of each window's maximum) in the cache. The test suite checks every layer against PyTorch, forward and
backward, in float32 and float64.

Every result is an array of its own, exactly its size (never a view into a larger buffer): what a layer's output
costs in memory is its shape times the item size, as 08_vgg_memory counts it.

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

#: Values of input copies that one band of a convolution works on (a few output rows of one image, or a few images):
#: 4 MB in float32, 8 MB in float64. (Timed in alternating calls on the bench's 3x3 layers: float32 bands of 4 MB took
#: 0.90-1.05x the time of 8 MB ones, float64 bands of 4 MB 0.96-1.13x.)
BAND_VALUES = 1 << 20
#: At stride 1 the taps of one filter row are stacked into one matrix product; when a filter row sums fewer
#: terms than this (few channels, as in a first layer on RGB images), the taps of all filter rows are.
MIN_TERMS = 64
#: Few channels at stride 1 (a filter row sums fewer than MIN_TERMS terms, a whole filter at least MIN_TERMS), filters
#: at least BLOCK_MIN_SIZE high and at most BLOCK_MAX_FILTERS of them: each product computes BLOCK_ROWS output rows
#: at once, forward and backward (see _Blocks), on copies of about BLOCK_BYTES at a time.
BLOCK_ROWS, BLOCK_MIN_SIZE, BLOCK_MAX_FILTERS, BLOCK_BYTES = 4, 5, 32, 4 << 20
#: Bytes of each slice of the batch that the max-pooling layers work through at a time.
POOL_CHUNK_BYTES = 1 << 20


def _fit(size: int, window: int, stride: int, pad: int, what: str) -> int:
    """Positions of a window along one axis; ValueError when the windows do not tile the padded input."""
    span = size + 2 * pad - window
    if span < 0:
        raise ValueError(f"{what}: a window of {window} is larger than the input, {size} pixels padded by {pad} "
                         f"({size + 2 * pad} in all)")
    if span % stride:
        raise ValueError(f"{what}: a window of {window} at stride {stride} on {size} pixels padded by {pad} gives "
                         f"({size} + 2*{pad} - {window}) / {stride} + 1 = {span / stride + 1:g} positions, not a whole "
                         f"number")
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


def _valid(start: int, step: int, count: int, size: int) -> tuple[int, int]:
    """The range [lo, hi) of the s in [0, count) with 0 <= start + s * step < size."""
    lo = min(count, max(0, -(start // step)))
    return lo, max(lo, min(count, (size - 1 - start) // step + 1))


# ---------------------------------------------------------------------------------------------------------------
# Convolution (cross-correlation), with stride, zero-padding and dilation
# ---------------------------------------------------------------------------------------------------------------

def _padded(x, pad_h, pad_w, dtype, below=0):
    """x_pad as dtype, with `below` more rows of zeros at the bottom. A negative pad (the data gradient of a layer
    padded by more than its filter) crops instead."""
    H, W = x.shape[2:]
    crop_h, crop_w = max(0, -pad_h), max(0, -pad_w)
    return np.pad(x[:, :, crop_h:H - crop_h, crop_w:W - crop_w].astype(dtype, copy=False),
                  [(0, 0), (0, 0), (pad_h + crop_h, pad_h + crop_h + below), (pad_w + crop_w,) * 2])


class _Bands:
    """The input values a correlation reads, copied for one band of output rows of a few images at a time.

    For ``x_pad``, ``x`` with ``pad_h`` rows and ``pad_w`` columns of zeros on each side (a negative pad crops),
    output ``(i, j)`` reads ``x_pad[n, c, i*S + u*d, j*S + v*d]`` at tap ``(u, v)``. Iterating gives, per band,
    one matrix per group of filter rows, rows ``(c, u, v)`` of the group (the order of ``w[f].ravel()``), columns
    the band's outputs ``(i, j)``, image by image.

    At stride 1, what tap (u, v) reads for a band's outputs, W' values of each of the band's rows, is what tap
    (u - 1, v) reads for the outputs one row lower: copied as consecutive rows of W', the values for filter row
    u + 1 are those for filter row u shifted by d whole rows. So the taps of one filter row are copied once into a
    stack, with the d (HH - 1) rows below the band that the later filter rows read, and every filter row multiplies
    a shifted view of it. When one filter row sums fewer than MIN_TERMS terms (few channels), and at larger strides,
    every tap is copied instead, and one product takes them all. With ``ones_row`` the first matrix has a last row
    of ones, for the biases.
    """

    def __init__(self, x, HH, WW, stride, pad_h, pad_w, dilation, dtype, ones_row=False):
        N, C, H, W = x.shape
        S, d = stride, dilation
        self.H_out = (H + 2 * pad_h - d * (HH - 1) - 1) // S + 1
        self.W_out = (W + 2 * pad_w - d * (WW - 1) - 1) // S + 1
        self.N, self.C, self.HH, self.WW, self.S, self.d = N, C, HH, WW, S, d
        self.x, self.pad_h, self.pad_w = x, pad_h, pad_w
        # Stride 1 with enough terms per filter row: the shifted rows; otherwise every tap copied (few channels, as
        # in a first layer on RGB images: one product per filter row would sum only C * WW terms, and many small
        # products cost more than the copies they save)
        self.shifted = S == 1 and C * WW >= MIN_TERMS
        if self.shifted:
            self.group = 1
            self.extra = (HH - 1) * d                   # rows that the later filter rows read below a band
        else:
            self.group, self.extra = HH, 0
            self.source = _padded(x, pad_h, pad_w, dtype)
        self.K = self.group * WW * C
        self.starts = range(0, HH, self.group)
        item = np.dtype(dtype).itemsize
        row_values = self.K * self.W_out
        # at least twice as many rows as the later filter rows read below the band, so that the copies of
        # those rows cost at most half of the band's own
        self.rows = min(self.H_out, max(1, 2 * self.extra, BAND_VALUES // row_values - self.extra))
        whole = row_values * (self.H_out + self.extra)
        self.images = max(1, min(N, BAND_VALUES // whole)) if self.rows == self.H_out else 1
        self.ones = int(ones_row)
        # The rows of a stack are one operand of the products. Their length is rounded up to an odd number of 64-byte
        # cache lines: rows a multiple of 1 kB apart (24 rows of 224 float32 are 21 kB, 21 x 1 kB) fall on a few of
        # the cache's sets and evict each other while a product reads them (measured: about 15% slower products on
        # a 224-wide layer).
        length = (-(-(self.rows + self.extra) * self.W_out * item // 64) | 1) * 64 // item
        # shifted rows: where a tap reads the padding, the stack keeps the zeros it starts with (otherwise every
        # value is copied in)
        self.stack = (np.zeros if self.shifted else np.empty)((self.images, self.K + self.ones, length), dtype=dtype)
        if ones_row:
            self.stack[:, -1] = 1

    def weights(self, w, b=None, dtype=None):
        """w as one (F, K) matrix per group of filter rows, columns in the stack's order (c, u, v); with b, the
        first one has b as its last column (for the row of ones)."""
        F, g = w.shape[0], self.group
        mats = [np.ascontiguousarray(w[:, :, u0:u0 + g].reshape(F, self.K), dtype=dtype) for u0 in self.starts]
        if b is not None:
            mats[0] = np.concatenate([mats[0], b.reshape(F, 1).astype(dtype, copy=False)], axis=1)
        return mats

    def __iter__(self):
        """(n, k, top, r, matrices): images n .. n+k-1, output rows top .. top+r-1, and per group of filter rows
        a matrix of shape (k, K, r * W'), rows (c, u, v) (K + 1 rows for the first one with ones_row)."""
        S, d, C, WW, width = self.S, self.d, self.C, self.WW, self.W_out
        for n in range(0, self.N, self.images):
            k = min(self.images, self.N - n)
            stack = self.stack[:k]
            for top in range(0, self.H_out, self.rows):
                r = min(self.rows, self.H_out - top)
                if self.shifted:
                    self._fill(stack, n, k, top, r + self.extra)
                else:
                    rows = slice(top * S, (top + r - 1) * S + self.d * (self.HH - 1) + 1)
                    windows = _windows(self.source[n:n + k, :, rows], self.HH, WW, S, d)   # (k, C, r, W', HH, WW)
                    stack[:, :self.K, :r * width].reshape(k, C, self.HH, WW, r, width)[...] = \
                        windows.transpose(0, 1, 4, 5, 2, 3)
                span = r * width
                yield n, k, top, r, [stack[:, :self.K + (self.ones if i == 0 else 0),
                                           u0 * d * width:u0 * d * width + span]
                                     for i, u0 in enumerate(self.starts)]

    def _fill(self, stack, n, k, top, count):
        """Stride 1, one filter row per stack: row (c, v) of the band's stack, as `count` rows of W', is
        x_pad[n, c, top:top + count, v d:v d + W'], copied from x (where it reads the padding, zeros)."""
        H, W, d, width = self.x.shape[2], self.x.shape[3], self.d, self.W_out
        planes = stack[:, :self.K].reshape(k, self.C, self.WW, -1)
        first = top - self.pad_h                                  # the row of x that stack row 0 reads
        lo, hi = _valid(first, 1, count, H)
        for v in range(self.WW):
            left = v * d - self.pad_w                             # the column of x that stack column 0 reads
            ql, qh = _valid(left, 1, width, W)
            plane = planes[:, :, v, :count * width].reshape(k, self.C, count, width)
            plane[:, :, :lo] = 0
            plane[:, :, hi:] = 0
            plane[:, :, lo:hi, ql:qh] = self.x[n:n + k, :, first + lo:first + hi, left + ql:left + qh]


def _blocked(w_shape, stride):
    """Whether a layer with filters of this shape (F, C, HH, WW) at this stride works in blocks of output rows."""
    F, C, HH, WW = w_shape
    return (stride == 1 and C * WW < MIN_TERMS <= C * HH * WW and HH >= BLOCK_MIN_SIZE
            and F <= BLOCK_MAX_FILTERS)


class _Blocks:
    """Stride 1 with few channels and few, tall filters: output rows in blocks of p, one product per block.

    Every tap copied gives one product with F rows, and a first layer's 32 filters or fewer make a product far from
    the BLAS's best. Output rows i + s d (s < p) read the rows i + (s + u) d (u < HH) of x_pad: HH + p - 1 rows, d
    apart. Copied once for a block of p output rows (as rows (c, t, v), t < HH + p - 1, of a stack whose columns
    are the blocks' output columns, image by image), they meet the filters of all p rows in one product of p F
    rows, the filters of output row s shifted by s rows and zero elsewhere (``weights``): (HH + p - 1) / HH times
    the multiplications, in a product that runs much faster, and each input value copied (HH + p - 1) / p times per
    tap column instead of HH times. The filter and data gradients use the same products transposed. With d > 1 the
    output rows of each residue mod d are a problem of their own.

    Iterating gives (rho, n, k, count): the output rows rho, rho + d, ... of images n .. n+k-1, in ``count`` blocks.
    """

    def __init__(self, x_shape, w_shape, pad_h, pad_w, d, dtype, p):
        N, C, H, W = x_shape
        F, _, HH, WW = w_shape
        self.N, self.C, self.F, self.HH, self.WW, self.d, self.p = N, C, F, HH, WW, d, p
        self.H_out, self.W_out = H + 2 * pad_h - d * (HH - 1), W + 2 * pad_w - d * (WW - 1)
        self.R = HH + p - 1
        self.K = C * self.R * WW
        most = -(-self.H_out // d)                              # output rows of residue 0, the residue with most
        self.blocks = -(-most // p)                             # its blocks
        self.rows = d * (self.blocks * p + HH - 1)              # rows of x_pad read, zeros below x_pad included
        per_image = (self.K + 1) * self.blocks * self.W_out * np.dtype(dtype).itemsize
        self.images = max(1, min(N, BLOCK_BYTES // per_image))
        self.dtype = dtype

    def __iter__(self):
        for rho in range(min(self.d, self.H_out)):
            count = -(-len(range(rho, self.H_out, self.d)) // self.p)
            for n in range(0, self.N, self.images):
                yield rho, n, min(self.images, self.N - n), count

    def weights(self, w, b=None):
        """(p F, K) (one more column, b, with b): rows (s, f), columns (c, t, v), w[f, c, t - s, v] or 0."""
        F, C, HH, WW, p = self.F, self.C, self.HH, self.WW, self.p
        blocked = np.zeros((p, F, C, self.R, WW), dtype=self.dtype)
        for s in range(p):
            blocked[s, :, :, s:s + HH] = w
        blocked = blocked.reshape(p * F, self.K)
        if b is None:
            return blocked
        return np.concatenate([blocked, np.tile(b.astype(self.dtype, copy=False), p)[:, None]], axis=1)

    def source(self, x, pad_h, pad_w):
        """x_pad with the zero rows below it that whole blocks read."""
        return _padded(x, pad_h, pad_w, self.dtype, below=self.rows - (x.shape[2] + 2 * pad_h))

    def fill(self, buffer, source, rho, n, k, count, ones=0):
        """The stack of one band, (K + ones, k, count W'), in buffer; with ones, a last row of ones."""
        C, R, WW, d, W_out = self.C, self.R, self.WW, self.d, self.W_out
        stack = buffer[:(self.K + ones) * k * count * W_out].reshape(self.K + ones, k, count * W_out)
        windows = sliding_window_view(source[n:n + k, :, rho::d], (R, (WW - 1) * d + 1), axis=(2, 3))
        stack[:self.K].reshape(C, R, WW, k, count, W_out)[...] = \
            windows[:, :, :count * self.p:self.p, :W_out, :, ::d].transpose(1, 4, 5, 0, 2, 3)
        if ones:
            stack[self.K] = 1
        return stack

    def output_rows(self, a, rho, n, k):
        """Views of a (N, F, H', W') array, for s < p: its rows rho + (b p + s) d of images n .. n+k-1."""
        rows = a[n:n + k, :, rho::self.d]
        return [rows[:, :, s::self.p] for s in range(self.p)]


def _correlate_blocks(x, w, b, pad_h, pad_w, d, dtype):
    """_correlate in blocks of output rows (_Blocks)."""
    blocks = _Blocks(x.shape, w.shape, pad_h, pad_w, d, dtype, BLOCK_ROWS)
    weights, ones = blocks.weights(w, b), int(b is not None)
    source = blocks.source(x, pad_h, pad_w)
    out = np.empty((x.shape[0], w.shape[0], blocks.H_out, blocks.W_out), dtype=dtype)
    size = blocks.images * blocks.blocks * blocks.W_out
    stacks, products = np.empty((blocks.K + ones) * size, dtype=dtype), np.empty(weights.shape[0] * size, dtype=dtype)
    for rho, n, k, count in blocks:
        stack = blocks.fill(stacks, source, rho, n, k, count, ones)
        product = products[:weights.shape[0] * k * count * blocks.W_out].reshape(weights.shape[0], -1)
        np.matmul(weights, stack.reshape(stack.shape[0], -1), out=product)
        product = product.reshape(blocks.p, blocks.F, k, count, blocks.W_out)
        for s, rows in enumerate(blocks.output_rows(out, rho, n, k)):
            rows[...] = product[s, :, :, :rows.shape[2]].transpose(1, 0, 2, 3)
    return out


def _gradients_blocks(x, w, dout, pad, d, dtype):
    """(dx, dw) of a layer that works in blocks of output rows (_Blocks). With dout of a band as a (p F, outputs)
    matrix G: G times the stack's transpose is the gradient of the blocked filters (whose shifted parts add up to
    dw), and the blocked filters' transpose times G the gradient of the stack, added back into dx tap by tap."""
    blocks = _Blocks(x.shape, w.shape, pad, pad, d, dtype, BLOCK_ROWS)
    p, F, C, R, WW, W_out = blocks.p, blocks.F, blocks.C, blocks.R, blocks.WW, blocks.W_out
    weights_t = np.ascontiguousarray(blocks.weights(w).T)                      # (K, p F)
    source = blocks.source(x, pad, pad)
    dx_pad = np.zeros(source.shape, dtype=dtype)
    d_weights = np.zeros((p * F, blocks.K), dtype=dtype)
    size = blocks.images * blocks.blocks * W_out
    stacks, d_stacks = np.empty(blocks.K * size, dtype=dtype), np.empty(blocks.K * size, dtype=dtype)
    grads_buffer = np.empty(p * F * size, dtype=dtype)
    for rho, n, k, count in blocks:
        stack = blocks.fill(stacks, source, rho, n, k, count).reshape(blocks.K, -1)
        grads = grads_buffer[:p * F * k * count * W_out].reshape(p, F, k, count, W_out)
        for s, rows in enumerate(blocks.output_rows(dout, rho, n, k)):
            grads[s, :, :, :rows.shape[2]] = rows.transpose(1, 0, 2, 3)
            grads[s, :, :, rows.shape[2]:] = 0                                # rows past the last output row
        grads = grads.reshape(p * F, -1)
        d_weights += grads @ stack.T
        d_stack = d_stacks[:blocks.K * k * count * W_out].reshape(blocks.K, -1)
        np.matmul(weights_t, grads, out=d_stack)
        d_stack = d_stack.reshape(C, R, WW, k, count, W_out)
        rows = dx_pad[n:n + k, :, rho::d]
        for t in range(R):
            for v in range(WW):
                # tap (t, v) of block b reads row t + b p of the residue: distinct rows, so += adds each share once
                rows[:, :, t:t + p * (count - 1) + 1:p, v * d:v * d + W_out] += d_stack[:, t, v].transpose(1, 0, 2, 3)
    d_weights = d_weights.reshape(p, F, C, R, WW)
    dw = sum(d_weights[s, :, :, s:s + blocks.HH] for s in range(p))
    H, W = x.shape[2:]
    return np.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W]), np.ascontiguousarray(dw)


def _correlate(x, w, b, stride, pad_h, pad_w, dilation, dtype):
    """out[n, f, i, j] = b[f] + sum_{c,u,v} w[f, c, u, v] x_pad[n, c, i*S + u*d, j*S + v*d] (b may be None)."""
    F = w.shape[0]
    if _blocked(w.shape, stride):
        return _correlate_blocks(x, w, b, pad_h, pad_w, dilation, dtype)
    bands = _Bands(x, w.shape[2], w.shape[3], stride, pad_h, pad_w, dilation, dtype, ones_row=b is not None)
    weights = bands.weights(w, b, dtype)
    out = np.empty((x.shape[0], F, bands.H_out, bands.W_out), dtype=dtype)
    partial = np.empty((bands.images, F, bands.rows * bands.W_out), dtype=dtype) if len(weights) > 1 else None
    for n, k, top, r, matrices in bands:
        target = out[n:n + k, :, top:top + r].reshape(k, F, r * bands.W_out)     # the band's outputs (a view)
        np.matmul(weights[0], matrices[0], out=target)
        for weight, matrix in zip(weights[1:], matrices[1:]):
            product = partial[:k, :, :r * bands.W_out]
            np.matmul(weight, matrix, out=product)
            target += product
    return out


def _conv_param(conv_param):
    return conv_param["stride"], conv_param["pad"], conv_param.get("dilation", 1)


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
    stride, pad, dilation = _conv_param(conv_param)
    N, C, H, W = x.shape
    F, C_w, HH, WW = w.shape
    if C_w != C:
        raise ValueError(f"conv_forward: x has {C} channels but the filters have {C_w}")
    _fit(H, dilation * (HH - 1) + 1, stride, pad, "conv_forward (height)")
    _fit(W, dilation * (WW - 1) + 1, stride, pad, "conv_forward (width)")
    dtype = np.result_type(x, w, b)
    if HH == WW == stride == 1 and pad == 0:
        # 1x1 filters: each image's pixels, (C, H * W), times the filter matrix, without a copy
        out = np.matmul(w.reshape(F, C).astype(dtype, copy=False), x.reshape(N, C, H * W).astype(dtype, copy=False))
        out += b.astype(dtype, copy=False)[:, None]
        return out.reshape(N, F, H, W), (x, w, b, conv_param)
    return _correlate(x, w, b, stride, pad, pad, dilation, dtype), (x, w, b, conv_param)


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
    stride, pad, d = _conv_param(conv_param)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out, W_out = dout.shape[2:]
    dtype = np.result_type(x, w, dout)
    db = dout.sum(axis=(0, 2, 3), dtype=dtype)
    if _blocked(w.shape, stride):
        dx, dw = _gradients_blocks(x, w, dout, pad, d, dtype)
        return dx, dw, db
    dw = _filter_gradient(x, dout, w.shape, stride, pad, d, dtype)
    if stride == 1 and C >= F:
        # dx[n, c, h, q] = sum_{f,u,v} w[f, c, u, v] dout[n, f, h + P - ud, q + P - vd]: a correlation of dout,
        # padded by d(HH - 1) - P, with the filters flipped and their two channel axes swapped. (With fewer
        # channels than filters its products would have only C rows; adding the shares back is cheaper then.)
        flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        dx = _correlate(dout, flipped, None, 1, d * (HH - 1) - pad, d * (WW - 1) - pad, d, dtype)
    else:
        dx = _scatter(dout, w, x.shape, stride, pad, d, dtype)
    return dx, dw, db


def _filter_gradient(x, dout, w_shape, stride, pad, d, dtype):
    """dw[f, c, u, v] = sum_{n,i,j} dout[n, f, i, j] x_pad[n, c, iS + ud, jS + vd], band by band."""
    F, C, HH, WW = w_shape
    W_out = dout.shape[3]
    bands = _Bands(x, HH, WW, stride, pad, pad, d, dtype)
    parts = np.zeros((len(bands.starts), bands.K, F), dtype=dtype)
    # dout of a band, transposed and contiguous: (outputs, F) per image. The products read it 20-25% faster than
    # the transposed view of dout itself; the copy costs a few percent of that.
    grads = np.empty((bands.images, bands.rows, W_out, F), dtype=dtype)
    for n, k, top, r, matrices in bands:
        g = grads[:k, :r]
        g[...] = dout[n:n + k, :, top:top + r].transpose(0, 2, 3, 1)
        g = g.reshape(k, r * W_out, F)
        for part, matrix in zip(parts, matrices):
            part += np.matmul(matrix, g).sum(axis=0)                         # (K, F): the long sum inside
    rows = len(bands.starts) * bands.group
    dw = parts.reshape(len(bands.starts), C, bands.group, WW, F).transpose(4, 1, 0, 2, 3).reshape(F, C, rows, WW)
    return np.ascontiguousarray(dw[:, :, :HH])


def _scatter(dout, w, x_shape, stride, pad, d, dtype):
    """dx at any stride: each window's share, dout times the filters, added back tap by tap (as col2im does), for
    a band of output rows of a few images at a time."""
    N, C, H, W = x_shape
    F, _, HH, WW = w.shape
    H_out, W_out = dout.shape[2:]
    w_taps = w.transpose(2, 3, 1, 0).reshape(HH * WW * C, F).astype(dtype, copy=False)     # rows (u, v, c)
    dx_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dtype)
    row_values = HH * WW * C * W_out
    rows = max(1, min(H_out, BAND_VALUES // row_values))
    images = max(1, min(N, BAND_VALUES // (row_values * H_out))) if rows == H_out else 1
    for n in range(0, N, images):
        k = min(images, N - n)
        for first in range(0, H_out, rows):
            count = min(rows, H_out - first)
            grads = dout[n:n + k, :, first:first + count].reshape(k, F, count * W_out).astype(dtype, copy=False)
            shares = np.matmul(w_taps, grads).reshape(k, HH, WW, C, count, W_out)
            for u in range(HH):
                for v in range(WW):
                    # one tap's pixels are distinct within the slice, so += on it adds each share once
                    dx_pad[n:n + k, :, first * stride + u * d:(first + count - 1) * stride + u * d + 1:stride,
                           v * d:(W_out - 1) * stride + v * d + 1:stride] += shares[:, u, v]
    return np.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])


# ---------------------------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------------------------

def _taps(a, ph, pw, stride, H_out, W_out):
    """(u, v, view) for each position (u, v) in the window, in row-major order: view[n, c, i, j] = a[n, c, iS + u,
    jS + v]."""
    for u in range(ph):
        for v in range(pw):
            yield u, v, a[:, :, u:u + stride * (H_out - 1) + 1:stride, v:v + stride * (W_out - 1) + 1:stride]


def _chunks(N: int, C: int, plane_bytes: int):
    """Index pairs (images, channels) that cut an (N, C, ...) array into pieces of about POOL_CHUNK_BYTES of depth
    slices (a piece stays in the processor's cache): a few whole images, or a few channels of one image."""
    per = max(1, POOL_CHUNK_BYTES // max(1, plane_bytes))         # depth slices per piece
    if per >= C:
        images = per // C
        return [(slice(n, n + images), slice(None)) for n in range(0, N, images)]
    return [(slice(n, n + 1), slice(c, c + per)) for n in range(N) for c in range(0, C, per)]


def max_pool_forward(x, pool_param):
    """
    The forward pass of a max-pooling layer (no padding).

    Inputs:
    - x: Input data of shape (N, C, H, W)
    - pool_param: A dictionary with the keys 'pool_height' (PH), 'pool_width' (PW) and 'stride' (S)

    Returns a tuple of:
    - out: Output data of shape (N, C, H', W') and the dtype of x, H' = 1 + (H - PH) / S,
      W' = 1 + (W - PW) / S; out[n, c, i, j] is the maximum of x[n, c, iS:iS + PH, jS:jS + PW]
    - cache: (x.shape, pool_param, switches), switches[n, c, i, j] (np.intp) the position in x.ravel() of the
      window's first maximum in row-major order, so that x.ravel()[switches] == out (the input itself is not
      kept)

    Raises:
    - ValueError if the windows do not tile the input
    """
    ph, pw, stride, H_out, W_out = _pool_geometry(x, pool_param, "max_pool_forward")
    N, C, H, W = x.shape
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    switches = np.empty(out.shape, dtype=np.intp)
    pieces = _chunks(N, C, H * W * x.itemsize)
    # where each window of a piece starts, from the piece's first pixel: its depth slice's start within the piece,
    # then (i S) W + j S within the slice (the largest piece is the first)
    first = out[pieces[0]].shape
    starts = (np.arange(first[0] * first[1], dtype=np.intp).reshape(first[0], first[1], 1, 1) * (H * W)
              + (np.arange(H_out, dtype=np.intp) * (stride * W))[:, None] + np.arange(W_out, dtype=np.intp) * stride)
    # the position u W + v of a window's (u, v) from the window's start, in the smallest integers that hold it
    farthest = (ph - 1) * W + pw - 1
    shift_type = np.uint8 if farthest < 1 << 8 else np.uint16 if farthest < 1 << 16 else np.intp
    for images, channels in pieces:
        part, best = x[images, channels], out[images, channels]
        views = list(_taps(part, ph, pw, stride, H_out, W_out))
        # the maximum over the window's rows first (views of whole rows of x, which numpy compares fastest), then
        # over its columns
        rows = [part[:, :, u:u + stride * (H_out - 1) + 1:stride] for u in range(ph)]
        rows_max = np.maximum(rows[0], rows[-1])                    # one row: the maximum of the row with itself
        for row in rows[1:-1]:
            np.maximum(rows_max, row, out=rows_max)
        columns = [rows_max[..., v:v + stride * (W_out - 1) + 1:stride] for v in range(pw)]
        np.maximum(columns[0], columns[-1], out=best)
        for column in columns[1:-1]:
            np.maximum(best, column, out=best)
        # the first maximum: the offsets from last to first, each one that holds the maximum overwriting. Written
        # shift += held * (u W + v - shift), exact in the shift's integer type (wrapping included): about ten times
        # faster than numpy's masked assignments (np.copyto with where=, np.putmask)
        shift = np.full(best.shape, farthest, dtype=shift_type)
        held, step = np.empty(shift.shape, dtype=bool), np.empty_like(shift)
        for u, v, view in reversed(views[:-1]):
            np.equal(view, best, out=held)
            np.subtract(u * W + v, shift, out=step)
            np.multiply(step, held, out=step)
            shift += step
        # the position in x.ravel(): the window's start within the piece, plus the piece's first pixel
        position = switches[images, channels]
        np.add(starts[:best.shape[0], :best.shape[1]], shift, out=position)
        position += (images.start * C + (channels.start or 0)) * H * W
    return out, (x.shape, pool_param, switches)


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
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    overlap = stride < ph or stride < pw
    dx = np.empty((N, C, H, W), dtype=dout.dtype)
    flat = dx.reshape(-1)
    # one scatter of dout to the switches, a few depth slices at a time (zeroed just before, while in the cache);
    # the positions are into the whole of dx, and a piece's windows lie in the piece's depth slices
    for piece in _chunks(N, C, H * W * dout.itemsize):
        dx[piece] = 0
        where, grads = switches[piece].reshape(-1), dout[piece].reshape(-1)
        if overlap:      # a pixel may be the maximum of several windows: add them all (np.add.at, unbuffered)
            np.add.at(flat, where, grads)
        else:            # no pixel in two windows: each position appears once
            flat[where] = grads
    return dx


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
