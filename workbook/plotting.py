"""Figures for the notebooks: numbered grids, the CS231n convolution demo, 1-D arrangements, images.

These helpers only draw. Every number they show is computed by the caller and passed in, so a figure
never hides a computation the student is asked to write (and this module holds no solution).

    >>> fig, ax = plt.subplots()
    >>> draw_grid(ax, np.arange(6).reshape(2, 3), windows=[Window(0, 0, 2, 2)])
    >>> plt.show()

Every function works on a headless backend (Agg): it creates its figure with ``plt.subplots`` and
returns it; the notebook calls ``plt.show()``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, Rectangle

__all__ = ["COLORS", "Window", "draw_grid", "show_conv_demo", "show_spatial_arrangement", "show_images", "show_windows"]

# One palette for every figure: a window and the neuron it feeds share a colour.
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
PAD_FACE = "#e6e6e6"      # zero-padding cells
CELL_FACE = "#ffffff"
TEXT_PAD = "#8c8c8c"


class Window(NamedTuple):
    """A rectangle of cells on a grid: top-left cell ``(row, col)``, ``height`` x ``width`` cells."""

    row: int
    col: int
    height: int
    width: int
    color: str = COLORS[0]
    label: str | None = None


def _format(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return fmt.format(value)


def draw_grid(ax, values, *, title: str | None = None, fmt: str = "{:g}", border: int = 0,
              windows: Sequence[Window] = (), colors=None, fontsize: float | None = None,
              origin: tuple[int, int] = (0, 0), shade_windows: bool = False) -> None:
    """Draw a 2-D array as a table of cells with their numbers written in, on ``ax``.

    Inputs:
    - ax: a matplotlib Axes
    - values: array of shape (H, W); NaN cells are drawn empty
    - title: text above the grid
    - fmt: format of each number (integers are written without a decimal point)
    - border: the outer ``border`` rings of cells are zero-padding and are drawn grey
    - windows: rectangles drawn over the grid (e.g. a receptive field), in cell coordinates
    - colors: optional array of shape (H, W) of face colours (overrides the white/grey faces)
    - fontsize: size of the numbers (default: chosen from the grid size)
    - origin: (x, y) position of the grid's top-left corner in the Axes, in cells (to place several
      grids on one Axes)
    - shade_windows: also fill each window with a light tint of its colour, and inset the frames of
      successive windows a little, so that overlapping windows stay distinguishable
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"draw_grid draws a 2-D array, got shape {values.shape}")
    H, W = values.shape
    x0, y0 = origin
    if fontsize is None:
        fontsize = 11 if max(H, W) <= 7 else 8 if max(H, W) <= 12 else 6
    for i in range(H):
        for j in range(W):
            padding = border > 0 and (i < border or j < border or i >= H - border or j >= W - border)
            face = colors[i][j] if colors is not None else PAD_FACE if padding else CELL_FACE
            ax.add_patch(Rectangle((x0 + j, y0 + i), 1, 1, facecolor=face, edgecolor="#b0b0b0", linewidth=0.8))
            ax.text(x0 + j + 0.5, y0 + i + 0.5, _format(values[i, j], fmt), ha="center", va="center",
                    fontsize=fontsize, color=TEXT_PAD if padding else "black")
    for index, win in enumerate(windows):
        inset = 0.07 * (index % 4) if shade_windows else 0.0
        if shade_windows:
            ax.add_patch(Rectangle((x0 + win.col, y0 + win.row), win.width, win.height, facecolor=win.color,
                                   alpha=0.12, edgecolor="none"))
        ax.add_patch(Rectangle((x0 + win.col + inset, y0 + win.row + inset), win.width - 2 * inset,
                               win.height - 2 * inset, fill=False, edgecolor=win.color, linewidth=2.5))
        if win.label:
            ax.text(x0 + win.col + 0.05, y0 + win.row - 0.1, win.label, color=win.color, fontsize=9,
                    ha="left", va="bottom")
    if title:
        ax.text(x0 + W / 2, y0 - 0.35, title, ha="center", va="bottom", fontsize=10)
    ax.set_xlim(min(ax.get_xlim()[0], x0 - 0.2), max(ax.get_xlim()[1], x0 + W + 0.2))
    top = y0 - 1.3 if title else y0 - 0.6
    low, high = sorted(ax.get_ylim())
    ax.set_ylim(max(high, y0 + H + 0.2), min(low, top))  # y grows downwards, like array rows
    ax.set_aspect("equal")
    ax.axis("off")


def show_conv_demo(x, w, b, out, conv_param, *, n: int = 0, f: int = 0, row: int = 0, col: int = 0,
                   title: str | None = None):
    """The CS231n convolution demo as a static figure: input, filters, biases and output, with numbers.

    Column 1 shows the zero-padded input ``x[n, c]`` one channel per row; then one column per filter
    ``w[k, c]`` with its bias; the last column shows the output slices ``out[n, k]``. The receptive
    field of ``out[n, f, row, col]`` is framed in every input channel, as are filter ``f`` and the
    output element itself.

    Inputs:
    - x: input of shape (N, C, H, W) (unpadded; the padding is drawn grey)
    - w: filters of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - out: the output of shape (N, F, H', W'), computed by the caller
    - conv_param: dictionary with 'stride' and 'pad'
    - n, f, row, col: the output element whose receptive field is highlighted

    Returns the matplotlib Figure.
    """
    x, w, b, out = (np.asarray(a) for a in (x, w, b, out))
    stride = conv_param["stride"]
    pad = conv_param["pad"]
    _, C, H, W = x.shape
    K, HH, WW = w.shape[0], w.shape[2], w.shape[3]   # K filters of HH x WW
    padded_h, padded_w = H + 2 * pad, W + 2 * pad
    rows = max(C, K)
    tallest = max(padded_h, HH, out.shape[2])
    widths = [padded_w] + [WW] * K + [out.shape[3]]
    cell = 0.36  # inches
    fig, axes = plt.subplots(rows, K + 2, figsize=(cell * (sum(widths) + 2.4 * (K + 2)),
                                                   cell * (tallest + 2.6) * rows + 0.5),
                             gridspec_kw={"width_ratios": [padded_w + 0.4] + [WW + 0.4] * K + [out.shape[3] + 0.4]},
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    color = COLORS[1]
    top, left = row * stride, col * stride
    for c in range(C):
        shown = np.zeros((padded_h, padded_w))
        shown[pad:pad + H, pad:pad + W] = x[n, c]
        draw_grid(axes[c, 0], shown, border=pad, title=f"x[{n}, {c}] (padded)",
                  windows=[Window(top, left, HH, WW, color)])
    for k in range(K):
        for c in range(C):
            draw_grid(axes[c, 1 + k], w[k, c], title=f"w[{k}, {c}]",
                      windows=[Window(0, 0, HH, WW, color)] if k == f else ())
        axes[C - 1, 1 + k].text(WW / 2, HH + 0.6, f"b[{k}] = {_format(b[k], '{:g}')}", ha="center", va="top",
                                fontsize=10, color=color if k == f else "black")
    for k in range(K):
        draw_grid(axes[k, K + 1], out[n, k], title=f"out[{n}, {k}]",
                  windows=[Window(row, col, 1, 1, color)] if k == f else ())
    # The same scale on every panel, so a cell is as big in a filter as in the input.
    for ax_row in axes:
        for ax, width in zip(ax_row, widths):
            ax.set_xlim(-0.2, width + 0.2)
            ax.set_ylim(tallest + 1.0, -1.3)
    fig.suptitle(title or f"stride {stride}, pad {pad}: out[{n}, {f}, {row}, {col}] sums the framed "
                          f"window of every input channel times w[{f}], plus b[{f}]", fontsize=11)
    fig.tight_layout()
    return fig


def show_windows(shape: tuple[int, int], windows: Sequence[Window], *, title: str | None = None,
                 values=None, fmt: str = "{:g}", xlabel: str | None = None, ylabel: str | None = None):
    """A grid of ``shape`` = (rows, columns) cells with receptive windows drawn on it, tinted so that
    overlaps show; numbers from ``values`` (same shape) if given. ``xlabel`` / ``ylabel`` name the
    column and row axes.

    Returns the matplotlib Figure.
    """
    H, W = shape
    fig, ax = plt.subplots(figsize=(0.4 * W + 1.4, 0.4 * H + 1.3))
    grid = np.full((H, W), np.nan) if values is None else np.asarray(values, dtype=float)
    draw_grid(ax, grid, windows=windows, fmt=fmt, shade_windows=True)
    if xlabel:
        ax.annotate("", xy=(W, H + 0.7), xytext=(0, H + 0.7), arrowprops={"arrowstyle": "->"})
        ax.text(W / 2, H + 0.9, xlabel, ha="center", va="top", fontsize=9)
    if ylabel:
        ax.annotate("", xy=(-0.6, H), xytext=(-0.6, 0), arrowprops={"arrowstyle": "->"})
        ax.text(-0.9, H / 2, ylabel, ha="right", va="center", rotation=90, fontsize=9)
    ax.set_xlim(-1.6 if ylabel else -0.2, W + 0.2)
    ax.set_ylim(H + (2.0 if xlabel else 0.2), -0.9)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def show_spatial_arrangement(inputs, weights, bias, pad: int, outputs: dict[int, Sequence[float]]):
    """The notes' 1-D spatial arrangement figure: a row of inputs, neurons at each stride, their outputs.

    Inputs:
    - inputs: the (unpadded) 1-D input, length W
    - weights: the neuron's weights, length F (shared by every neuron)
    - bias: the neuron's bias
    - pad: zero-padding on each side
    - outputs: {stride: output values} for each stride to draw, computed by the caller; neuron ``i``
      at stride ``S`` sees padded inputs ``S*i .. S*i + F - 1``

    Returns the matplotlib Figure, one panel per stride.
    """
    inputs = np.asarray(inputs, dtype=float)
    F = len(weights)
    padded = np.concatenate([np.zeros(pad), inputs, np.zeros(pad)])
    fig, axes = plt.subplots(1, len(outputs), figsize=(4.6 * len(outputs) + 1.2, 3.6), squeeze=False)
    for ax, (stride, values) in zip(axes[0], outputs.items()):
        draw_grid(ax, padded[np.newaxis, :], border=0,
                  colors=[[PAD_FACE if (j < pad or j >= len(padded) - pad) else CELL_FACE
                           for j in range(len(padded))]])
        for i, value in enumerate(values):
            color = COLORS[i % len(COLORS)]
            cx, cy = stride * i + F / 2, -2.2
            for k in range(F):
                ax.plot([cx, stride * i + k + 0.5], [cy + 0.45, 0.0], color=color, linewidth=1.2, alpha=0.8)
                if i == 0:
                    ax.text((cx + stride * i + k + 0.5) / 2 - 0.25, (cy + 0.45) / 2, _format(weights[k], "{:g}"),
                            color=color, fontsize=8, ha="center", va="center")
            ax.add_patch(Circle((cx, cy), 0.45, facecolor="white", edgecolor=color, linewidth=2))
            ax.text(cx, cy, _format(value, "{:g}"), ha="center", va="center", fontsize=10, color=color)
        ax.text(len(padded) / 2, -3.4, f"S = {stride}: {len(values)} neurons", ha="center", fontsize=11)
        ax.text(len(padded) / 2, 1.6, f"input, zero-padded by P = {pad}", ha="center", fontsize=9, color=TEXT_PAD)
        ax.set_ylim(2.0, -3.9)
        ax.set_xlim(-0.3, len(padded) + 0.3)
    shown_weights = ", ".join(_format(v, "{:g}") for v in weights)
    fig.suptitle(f"one neuron, weights [{shown_weights}], bias {_format(bias, '{:g}')}, "
                 f"slid along the input", fontsize=11)
    fig.tight_layout()
    return fig


def show_images(images: Sequence, titles: Sequence[str] | None = None, *, cmap="gray", symmetric=False,
                size: float = 3.2, suptitle: str | None = None):
    """Images side by side, each with its title.

    Inputs:
    - images: arrays of shape (H, W) (drawn with ``cmap``) or (H, W, 3) (RGB, values in [0, 1])
    - titles: one title per image
    - cmap: a colormap name, or one per image
    - symmetric: a bool, or one per image: centre the colour scale on 0 (for signed responses
      such as edge filters, drawn with a diverging colormap; the scale ends at the 99.5th
      percentile of the magnitudes, so a few extreme values do not wash out the rest)
    - size: height of each panel in inches

    Returns the matplotlib Figure.
    """
    count = len(images)
    cmaps = [cmap] * count if isinstance(cmap, str) else list(cmap)
    sym = [symmetric] * count if isinstance(symmetric, bool) else list(symmetric)
    aspect = max(np.asarray(im).shape[1] / np.asarray(im).shape[0] for im in images)
    fig, axes = plt.subplots(1, count, figsize=(size * aspect * count + 0.3, size + 0.5), squeeze=False)
    for k, (ax, image) in enumerate(zip(axes[0], images)):
        image = np.asarray(image)
        if image.ndim == 3:
            ax.imshow(np.clip(image, 0, 1))
        elif sym[k]:
            # Centre the scale on 0; a few extreme values should not wash out the rest.
            limit = float(np.percentile(np.abs(image), 99.5)) or float(np.max(np.abs(image))) or 1.0
            ax.imshow(image, cmap=cmaps[k] if cmaps[k] != "gray" else "RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(image, cmap=cmaps[k])
        if titles:
            ax.set_title(titles[k], fontsize=10)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return fig
