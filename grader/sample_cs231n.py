"""Correct solutions in the plain style of public CS231n assignment-2 code, for the sample class's
``sample-cs231n`` student.

They compute the right numbers, as most students' solutions do, but follow the CS231n habits rather than this
workbook's side rules: filters that do not fit are caught with ``assert`` (an ``AssertionError``, not the
contract's ``ValueError``), pooling output sizes are rounded down with ``//`` instead of refused, and outputs are
allocated with ``np.zeros(shape)``, so float32 inputs give float64 outputs. Points per aspect mean that such a
student loses only those side rules' points (tests/test_course_points.py holds every layer to at least 80%).

Each entry is the body of one solution cell's function, indented as in the cell; the rest of the notebook is
solved with the source notebook's own solutions.
"""
from __future__ import annotations

CS231N_STYLE: dict[str, dict[str, str]] = {
    "02_conv_forward": {
        "conv_forward_naive": """\
    stride, pad = conv_param['stride'], conv_param['pad']
    N, C, H, W = x.shape
    F, C, HH, WW = w.shape
    assert (H + 2 * pad - HH) % stride == 0, 'height does not work'
    assert (W + 2 * pad - WW) % stride == 0, 'width does not work'
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), 'constant')
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    h0, w0 = i * stride, j * stride
                    out[n, f, i, j] = np.sum(x_padded[n, :, h0:h0 + HH, w0:w0 + WW] * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache
""",
    },
    "03_conv_backward": {
        "conv_backward_naive": """\
    x, w, b, conv_param = cache
    stride, pad = conv_param['stride'], conv_param['pad']
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), 'constant')
    dx_padded = np.zeros_like(x_padded)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            db[f] += np.sum(dout[n, f])
            for i in range(H_out):
                for j in range(W_out):
                    h0, w0 = i * stride, j * stride
                    dw[f] += x_padded[n, :, h0:h0 + HH, w0:w0 + WW] * dout[n, f, i, j]
                    dx_padded[n, :, h0:h0 + HH, w0:w0 + WW] += w[f] * dout[n, f, i, j]
    dx = dx_padded[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db
""",
    },
    "04_pooling": {
        "max_pool_forward_naive": """\
    N, C, H, W = x.shape
    PH, PW, S = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    H_out = 1 + (H - PH) // S
    W_out = 1 + (W - PW) // S
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * S:i * S + PH, j * S:j * S + PW])
    cache = (x, pool_param)
    return out, cache
""",
        "max_pool_backward_naive": """\
    x, pool_param = cache
    N, C, H, W = x.shape
    PH, PW, S = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    _, _, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * S:i * S + PH, j * S:j * S + PW]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * S + a, j * S + b] += dout[n, c, i, j]
    return dx
""",
    },
}
