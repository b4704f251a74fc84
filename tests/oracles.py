"""Independent oracles for convolution: scipy.signal (always) and torch.nn.functional (when installed)."""
from __future__ import annotations

import numpy as np
from scipy import signal


def dilate_kernel(w: np.ndarray, d: int) -> np.ndarray:
    """Insert d-1 zeros between kernel taps: a dilated filter as an ordinary one."""
    F, C, HH, WW = w.shape
    out = np.zeros((F, C, d * (HH - 1) + 1, d * (WW - 1) + 1), dtype=w.dtype)
    out[:, :, ::d, ::d] = w
    return out


def scipy_conv_forward(x, w, b, stride, pad, dilation=1):
    wd = dilate_kernel(w, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    N, F = x.shape[0], w.shape[0]
    maps = [[sum(signal.correlate(xp[n, c], wd[f, c], mode="valid") for c in range(x.shape[1]))[::stride, ::stride]
             + b[f] for f in range(F)] for n in range(N)]
    return np.array(maps)


def scipy_conv_backward(dout, x, w, stride, pad, dilation=1):
    wd = dilate_kernel(w, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    N, C, Hp, Wp = xp.shape
    F, _, KH, KW = wd.shape
    full_h, full_w = Hp - KH + 1, Wp - KW + 1
    up = np.zeros((N, F, full_h, full_w))
    up[:, :, ::stride, ::stride] = dout
    dxp = np.array([[sum(signal.convolve(up[n, f], wd[f, c], mode="full") for f in range(F)) for c in range(C)]
                    for n in range(N)])
    dx = dxp[:, :, pad:Hp - pad, pad:Wp - pad]
    dwd = np.array([[sum(signal.correlate(xp[n, c], up[n, f], mode="valid") for n in range(N)) for c in range(C)]
                    for f in range(F)])
    dw = dwd[:, :, ::dilation, ::dilation]
    db = dout.sum(axis=(0, 2, 3))
    return dx, dw, db


def torch_conv(torch, x, w, b, dout, stride, pad, dilation=1):
    """(out, dx, dw, db) from torch.nn.functional.conv2d and autograd."""
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad, dilation=dilation)
    if dout is None:
        return out.detach().numpy(), None, None, None
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()
