"""Time the workbook's fast reference layers against PyTorch on the CPU, side by side, in one run.

The layers are the reference solutions of the source notebooks, loaded with ``grader.reference``:
``conv_forward_im2col`` / ``conv_backward_im2col`` and ``max_pool_forward_im2col`` /
``max_pool_backward_im2col`` from ``05_im2col``, and ``conv_forward_dilated`` / ``conv_backward_dilated``
from ``06_1x1_and_dilated`` when that notebook exists. Each is first checked against
``torch.nn.functional`` (``assert_allclose`` with float32 or float64 tolerances), then timed against it.

Both libraries get 2 threads: numpy's BLAS through threadpoolctl when it is installed (otherwise through
the ``*_NUM_THREADS`` variables, set before numpy is imported), torch through ``torch.set_num_threads``.
Times are the best of ``--repeat`` runs after one warm-up run. "peak MB" is the largest amount of memory
that numpy allocated during one call of our layer beyond its inputs, measured by tracemalloc (numpy reports
its array allocations to it); torch's allocations are not visible to tracemalloc and are not shown.

    make bench                                   # or: .venv/bin/python bench/conv_speed.py
    .venv/bin/python bench/conv_speed.py --quick # the first layer only

This is a benchmark, not a test: it exits 0 whether or not the targets are met, unless ``--strict`` is given
(a layer that disagrees with torch stops it with an AssertionError; a dilated layer that fails is reported and
makes the exit status 1).
It needs torch (the pinned CPU build, torch==2.13.0); ``make bench`` installs it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

THREADS = 2
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = str(THREADS)   # before numpy and torch are imported; threadpoolctl also caps below

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (x shape, w shape, pad): stride 1, 'same' padding.
LAYERS = [
    ((16, 64, 56, 56), (64, 64, 3, 3), 1),     # a ResNet-style 3x3 layer: the layer the targets are set on
    ((50, 3, 32, 32), (32, 3, 7, 7), 3),       # a first layer on a CIFAR-10 batch: few channels, large filter
    ((1, 64, 224, 224), (64, 64, 3, 3), 1),    # one large image (VGG conv1_2)
]
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
DILATION = 2
# Targets, on the first layer in float32 (our time / torch's time).
TARGETS = {"conv forward": 3.0, "conv backward": 3.0, "max pool forward": 1.0}
AIMS = {"conv forward": 2.0, "conv backward": 2.0}
TOLERANCES = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _limit_numpy_threads():
    """Cap numpy's BLAS at THREADS threads; return (controller or None, a description of the BLAS)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None, f"threadpoolctl not installed: BLAS threads set by environment variables to {THREADS}"
    limiter = threadpool_limits(limits=THREADS)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    text = "; ".join(f"{i.get('internal_api')} {i.get('version')} core {i.get('architecture', '?')}, "
                     f"{i.get('num_threads')} threads" for i in blas) or "no BLAS found by threadpoolctl"
    return limiter, text


def _best_ms(fn, repeat: int) -> float:
    time.sleep(0.2)                         # let the other library's worker threads stop spinning
    fn()                                    # warm-up: first-touch allocations, BLAS buffers, caches
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def _close(name, ours, theirs, dtype):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.dtype == dtype, f"{name}: our result has dtype {ours.dtype}, expected {np.dtype(dtype)}"
    scale = max(1.0, float(np.abs(theirs).max()))
    tol = TOLERANCES[dtype]
    np.testing.assert_allclose(ours, theirs, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=name)


class Table:
    HEADER = f"{'op':<22} {'x shape':<20} {'dtype':<8} {'ours ms':>9} {'torch ms':>9} {'ratio':>7} {'peak MB':>8}"

    def __init__(self):
        self.rows = []
        self.problems = []
        print(self.HEADER)
        print("-" * len(self.HEADER))

    def add(self, op, shape, dtype, ours, theirs, peak):
        self.rows.append((op, shape, np.dtype(dtype).name, ours, theirs))
        print(f"{op:<22} {str(shape):<20} {np.dtype(dtype).name:<8} {ours:9.2f} {theirs:9.2f} {ours / theirs:6.2f}x "
              f"{peak:8.1f}", flush=True)

    def ratio(self, op, shape, dtype):
        for row in self.rows:
            if row[0] == op and row[1] == shape and row[2] == np.dtype(dtype).name:
                return row[3] / row[4]
        return None


def bench_layer(table, ref, dilated, torch, x_shape, w_shape, pad, dtype, repeat):
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))

    # Convolution
    conv_param = {"stride": 1, "pad": pad}
    out, cache = ref.conv_forward_im2col(x, w, b, conv_param)
    out_t = F.conv2d(xt, wt, bt, padding=pad)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_t = torch.tensor(dout)
    grads_t = torch.autograd.grad(out_t, (xt, wt, bt), dout_t, retain_graph=True)
    _close("conv forward", out, out_t, dtype)
    for name, ours, theirs in zip(("dx", "dw", "db"), ref.conv_backward_im2col(dout, cache), grads_t):
        _close(f"conv backward {name}", ours, theirs, dtype)
    with torch.no_grad():
        torch_fwd = _best_ms(lambda: F.conv2d(xt, wt, bt, padding=pad), repeat)
    table.add("conv forward", x_shape, dtype, _best_ms(lambda: ref.conv_forward_im2col(x, w, b, conv_param), repeat),
              torch_fwd, _peak_mb(lambda: ref.conv_forward_im2col(x, w, b, conv_param)))
    table.add("conv backward", x_shape, dtype, _best_ms(lambda: ref.conv_backward_im2col(dout, cache), repeat),
              _best_ms(lambda: torch.autograd.grad(out_t, (xt, wt, bt), dout_t, retain_graph=True), repeat),
              _peak_mb(lambda: ref.conv_backward_im2col(dout, cache)))
    out_t = grads_t = None      # free torch's graph before the next layer

    # Max pooling, 2x2 at stride 2
    pooled, pool_cache = ref.max_pool_forward_im2col(x, POOL)
    pooled_t = F.max_pool2d(xt, 2, 2)
    dpool = rng.standard_normal(pooled.shape).astype(dtype)
    dpool_t = torch.tensor(dpool)
    _close("max pool forward", pooled, pooled_t, dtype)
    _close("max pool backward", ref.max_pool_backward_im2col(dpool, pool_cache),
           torch.autograd.grad(pooled_t, xt, dpool_t, retain_graph=True)[0], dtype)
    with torch.no_grad():
        torch_pool = _best_ms(lambda: F.max_pool2d(xt, 2, 2), repeat)
    table.add("max pool forward", x_shape, dtype, _best_ms(lambda: ref.max_pool_forward_im2col(x, POOL), repeat),
              torch_pool, _peak_mb(lambda: ref.max_pool_forward_im2col(x, POOL)))
    table.add("max pool backward", x_shape, dtype,
              _best_ms(lambda: ref.max_pool_backward_im2col(dpool, pool_cache), repeat),
              _best_ms(lambda: torch.autograd.grad(pooled_t, xt, dpool_t, retain_graph=True), repeat),
              _peak_mb(lambda: ref.max_pool_backward_im2col(dpool, pool_cache)))
    pooled_t = None

    # Dilated convolution (PyTorch convention: dilation 1 is an ordinary filter)
    if dilated is None:
        return
    try:
        bench_dilated(table, dilated, torch, x, w, b, xt, wt, bt, rng, x_shape, dtype, repeat)
    except Exception as err:   # another notebook's reference: report it, and time the rest
        table.problems.append(f"dilated({DILATION}) on x {x_shape} {np.dtype(dtype).name}: {type(err).__name__}: {err}")
        print(f"dilated({DILATION}) on x {x_shape} {np.dtype(dtype).name}: not timed, {type(err).__name__}: {err}")


def bench_dilated(table, dilated, torch, x, w, b, xt, wt, bt, rng, x_shape, dtype, repeat):
    F = torch.nn.functional
    dil_pad = DILATION * (w.shape[2] - 1) // 2          # keeps the size: the dilation itself for 3x3 filters
    dil_param = {"stride": 1, "pad": dil_pad, "dilation": DILATION}
    out, cache = dilated.conv_forward_dilated(x, w, b, dil_param)
    out_t = F.conv2d(xt, wt, bt, padding=dil_pad, dilation=DILATION)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_t = torch.tensor(dout)
    _close("dilated conv forward", out, out_t, dtype)
    for name, ours, theirs in zip(("dx", "dw", "db"), dilated.conv_backward_dilated(dout, cache),
                                  torch.autograd.grad(out_t, (xt, wt, bt), dout_t, retain_graph=True)):
        _close(f"dilated conv backward {name}", ours, theirs, dtype)
    with torch.no_grad():
        torch_fwd = _best_ms(lambda: F.conv2d(xt, wt, bt, padding=dil_pad, dilation=DILATION), repeat)
    table.add(f"dilated({DILATION}) forward", x_shape, dtype,
              _best_ms(lambda: dilated.conv_forward_dilated(x, w, b, dil_param), repeat), torch_fwd,
              _peak_mb(lambda: dilated.conv_forward_dilated(x, w, b, dil_param)))
    table.add(f"dilated({DILATION}) backward", x_shape, dtype,
              _best_ms(lambda: dilated.conv_backward_dilated(dout, cache), repeat),
              _best_ms(lambda: torch.autograd.grad(out_t, (xt, wt, bt), dout_t, retain_graph=True), repeat),
              _peak_mb(lambda: dilated.conv_backward_dilated(dout, cache)))


def load_references():
    from grader.course import Course
    from grader.reference import reference

    course = Course.at(REPO)
    ref = reference("05_im2col", course)
    dilated, note = None, None
    candidates = [a for a in course.assignments() if a.startswith("06_")]
    if not candidates:
        note = "dilated convolution: not available yet (no 06_* assignment in solutions/)"
    else:
        try:
            dilated = reference(candidates[0], course)
            if not all(hasattr(dilated, f) for f in ("conv_forward_dilated", "conv_backward_dilated")):
                note = (f"dilated convolution: not available yet ({candidates[0]} defines no "
                        f"conv_forward_dilated / conv_backward_dilated)")
                dilated = None
        except Exception as err:   # a notebook in progress must not stop the rest of the benchmark
            note = f"dilated convolution: not available yet ({candidates[0]} did not load: {err})"
            dilated = None
    return ref, dilated, note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement, best kept (default 5)")
    parser.add_argument("--quick", action="store_true", help="only the first layer (the one the targets are on)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("bench/conv_speed.py needs torch, the CPU build of torch==2.13.0 (make bench installs it)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(THREADS)
    # After torch is imported, so that the cap reaches its OpenMP runtime as well: capped only through the
    # environment, numpy's 2-thread BLAS ran several times slower once torch had run a parallel region.
    limiter, blas = _limit_numpy_threads()

    print(f"numpy {np.__version__} ({blas}); torch {torch.__version__} ({torch.get_num_threads()} threads)")
    for variable in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if variable in os.environ:
            print(f"note: {variable}={os.environ[variable]} is set; it can select a slower OpenBLAS kernel "
                  f"(make bench unsets it)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    print(f"load average {load:.2f} on {cores} cores" + (
        ": other processes are busy, and 2-thread timings suffer from it; ratios are more reliable than "
        "times, and a quiet machine gives the fairest numbers" if load >= 0.5 * cores else ""))
    ref, dilated, note = load_references()
    if note:
        print(note)
    print("times: best of", args.repeat, "after a warm-up; ratio = ours / torch; peak MB: tracemalloc, numpy "
          "allocations during one call of ours")
    print()

    started = time.perf_counter()
    table = Table()
    for x_shape, w_shape, pad in LAYERS[:1] if args.quick else LAYERS:
        for dtype in (np.float32, np.float64):
            bench_layer(table, ref, dilated, torch, x_shape, w_shape, pad, dtype, args.repeat)
    print(f"\n{time.perf_counter() - started:.0f} s in all")

    missed = []
    first = LAYERS[0][0]
    print(f"\ntargets on x {first}, float32 (ours / torch):")
    for op, target in TARGETS.items():
        ratio = table.ratio(op, first, np.float32)
        verdict = "met" if ratio <= target else "MISSED"
        aim = f", aim <= {AIMS[op]:g}x" if op in AIMS else ""
        print(f"  {op:<18} {ratio:5.2f}x  (target <= {target:g}x{aim}): {verdict}")
        if ratio > target:
            missed.append(op)
    for problem in table.problems:
        print(f"problem: {problem}")
    del limiter
    return 1 if table.problems or (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
