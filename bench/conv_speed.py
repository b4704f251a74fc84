"""Time the workbook's fast layers against PyTorch on the CPU, side by side, in one run.

Two implementations of every layer are timed against ``torch.nn.functional``:

* ``ref``: the reference solutions of the source notebooks, loaded with ``grader.reference`` (what the hidden tests
  compare students with): ``conv_forward_im2col`` / ``conv_backward_im2col`` and ``max_pool_forward_im2col`` /
  ``max_pool_backward_im2col`` from ``05_im2col``, ``conv_forward_dilated`` / ``conv_backward_dilated`` from
  ``06_1x1_and_dilated``;
* ``given``: the given layers of the student package, ``workbook.layers`` (what the later notebooks train with):
  ``conv_forward`` / ``conv_backward`` (with ``'dilation'`` for the dilated rows) and ``max_pool_forward`` /
  ``max_pool_backward``.

Each is first checked against torch (``assert_allclose`` with float32 or float64 tolerances; the test suite holds the
full correctness checks), then timed. Both libraries get 2 threads: numpy's BLAS through threadpoolctl (otherwise
through the ``*_NUM_THREADS`` variables, set before numpy is imported), torch through ``torch.set_num_threads``.

Timing: after a warm-up call of each, torch, ref and given are called ``--repeat`` times each, in three blocks per
library that take turns, with a pause before each block (so that no library's spinning worker threads take a core
from the next); a time is the median of its calls, a ratio is ours / torch. The 1-minute load average is read
before the run and printed. During every row the bench also counts the cores that *other* processes kept busy
(``/proc/stat`` less the bench's own CPU time): a row that met at least ``--load-limit`` busy cores is marked ``*``
and measured again with twice the calls (other processes share the cores and 2-thread timings suffer; ratios less
than times); with ``--wait SECONDS`` it instead waits up to that long for a quiet moment and measures it once more. "MB"
is the peak of the memory numpy allocated during one call beyond its inputs (tracemalloc; torch's allocations are
invisible to it).

The machine's own speed is read at the start and at the end (``machine_speed``: a float32 product of two 1024 x 1024
matrices with the bench's threads, and a copy of 32 MB) and printed with the header and after the table, with a
warning when either moved by more than 15% during the run; ``--json`` keeps both readings and ``--compare`` sets them
beside the earlier run's. These machines are virtual: what the host's other guests take of caches and memory
bandwidth slows a run down without showing in the load average or in the busy cores above; these two readings show
it.

The hand-off (``HandoffProbe``): before every block of calls the bench times one thread copying a band of 1 M
float32 values followed by a 2-thread product that reads it, with 2 threads over 1. On these machines it reads about
0.4-0.65 most of the time and 0.9-1.3 in phases of seconds to minutes in which the host has put the two vCPUs far
apart: a cache line then took 320-760 ns to go from one vCPU to the other and back, against 90-140 ns. Our layers
hand each band from numpy's one thread to the BLAS's two and slow down by 2-3x in those phases (the first layer's conv
forward 27-31 ms against 53-56, the 7x7 layer's 8-10 ms against 27-30), while torch's do not. A row that met a reading
above 0.8 is measured again, up to ``--handoff-retries`` times (default 3), each after waiting up to 10 s for a fast
reading; the first measurement with none is kept, else the one with the fewest, and the row gets a ``~``. Every
reading of the kept measurement is in ``--json``. The limit and the floors are timed the same way.

Memory allocation: before torch is imported the bench tells glibc's malloc to serve every block from its heap and to
keep what is freed for reuse (``mallopt``: ``M_MMAP_MAX`` 0, so no block gets pages of its own from ``mmap``, and
``M_TRIM_THRESHOLD`` 1 GB), for both libraries alike, so that a layer's time is its own work and not the kernel's
page faults. By default glibc maps large blocks afresh and adapts its thresholds to what the process has allocated so
far. On these machines torch's conv backward on the first layer then took fresh pages on every call (6,240 or 12,512
page faults per call in fresh processes, 33-41 ms, against none and 27-28 ms with the blocks reused), and within a run
the count depended on what had been allocated before: the bench read that row's torch time anywhere from 27 to 53 ms
in different runs. Its float64 backward, with blocks larger than any threshold glibc accepts (32 MB), faulted 56,000
times per call. The bench counts the minor page faults of every call (``getrusage``); the table is followed by the
rows whose median call still took more than 100 of them. ``--adaptive-malloc`` keeps glibc's default.

Targets, printed with each row: every float32 row at most 2x torch, conv forward and backward on the first layer at
most 1.5x; float64 rows no worse than the baseline (``bench/baseline.json``, the same bench run on the layers before
they were made faster): the ratio to torch or the layer's own time within 10% of the baseline's, or the time within
10% of the baseline's layers timed in the same run (torch's float64 times alone move by up to 2x between runs); the
peak memory of each layer at most twice the baseline's.
``gemm`` is the limit that explains a convolution row: the matrix products of the layer alone (the shapes an im2col
layer needs, contiguous operands with rows an odd number of cache lines apart, in blocks of 2048 output positions),
over torch's whole layer; ``copy`` the same for pooling, one copy of the input. A convolution row that misses its
target also quotes the floor of any im2col layer of its shape: those products and one write of its columns (C * HH *
WW values per output position, as contiguous copies of 1 M values), which numpy makes on one thread and cannot
overlap with them. The reference max-pool backward has a floor of its own, timed beside its row and quoted where it
misses its target: 05's interface gives it ``(x, pool_param)`` as its cache (torch keeps the maxima's indices), so
it finds every window's maximum again, the work of its own forward pass, which is timed alone.

``--against REVISION`` also loads the layers of a git revision (its tree extracted into a temporary directory: its
``workbook/layers.py`` and its references) and times them in the same blocks of calls as the current ones: the table
after the run gives each row's time now / at the revision. torch's own times move by 10-30%, some rows by 2x, between
idle runs on these machines, and both sides of this ratio meet the same swings, so it is the fairer figure to judge a
change by. With 9 calls it still moves by about 15% either way here; ``--repeat 27`` or more for smaller changes.

The float64 targets are set by the baseline, so without ``--against`` the bench times the baseline's own layers (the
commit its run names, when this repository has it) beside every float64 row, and prints those times after the table.
A float64 row misses its target only when it is slower than the baseline by every measure: its ratio to torch and its
time against the baseline's run, and its time against the baseline's layers in this run. ``--cross-run-only`` leaves
the baseline's layers out (and the run about a minute shorter).

    make bench                                        # or: .venv/bin/python bench/conv_speed.py
    .venv/bin/python bench/conv_speed.py --quick      # a smoke run: the first layer, float32, 3 calls
    .venv/bin/python bench/conv_speed.py --layers 2 --dtypes float32    # the 7x7 first layer alone
    .venv/bin/python bench/conv_speed.py --json run.json --compare bench/baseline.json
    .venv/bin/python bench/conv_speed.py --ops "max pool backward" --against HEAD~2

This is a benchmark, not a test: it exits 0 whether or not the targets are met, unless ``--strict`` is given; a
layer that disagrees with torch is reported and makes the exit status 1. It needs torch (the pinned CPU build,
torch==2.13.0) and threadpoolctl; ``make bench`` installs both.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

try:
    import resource
except ImportError:                                # not a POSIX system: no page-fault counts
    resource = None

THREADS = 2
if __name__ == "__main__":                 # (the test suite imports LAYERS from here and keeps its own settings)
    if "--cpu-time" in sys.argv:
        THREADS = 1
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_variable] = str(THREADS)   # before numpy and torch are imported; threadpoolctl also caps below

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"

# (x shape, w shape, pad): stride 1, 'same' padding.
LAYERS = [
    ((16, 64, 56, 56), (64, 64, 3, 3), 1),     # a ResNet-style 3x3 layer: the layer the tightest targets are set on
    ((50, 3, 32, 32), (32, 3, 7, 7), 3),       # a first layer on a CIFAR-10 batch: few channels, large filter
    ((1, 64, 224, 224), (64, 64, 3, 3), 1),    # one large image (VGG conv1_2)
]
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
DILATION = 2
OPS = ["conv forward", "conv backward", "max pool forward", "max pool backward",
       f"dilated({DILATION}) forward", f"dilated({DILATION}) backward"]
TARGET = 2.0                                   # every float32 row
HEADLINE_TARGET = 1.5                          # conv forward and backward on LAYERS[0], float32
FLOAT64_SLACK = 1.10                           # float64 rows: the baseline's ratio or time, within timing noise
MEMORY_FACTOR = 2.0                            # peak memory: at most twice the baseline's
TOLERANCES = {"float32": dict(rtol=1e-4, atol=1e-4), "float64": dict(rtol=1e-10, atol=1e-10)}
IMPLEMENTATIONS = ("ref", "given")
PAUSE = 0.25                                   # seconds before each block of calls of one library (see _median_ms)
LIMIT_BLOCK = 2048                             # output positions per matrix product of the gemm limit
#: The floor of the reference max-pool backward, as its missed target quotes it (see the module's docstring)
FORWARD_FLOOR = "its cache is (x, pool_param), so it finds the windows' maxima again; its own forward pass alone"
PAGE_FAULT_NOTE = 100                          # page faults per call above which a row is listed after the table
MALLOC_TRIM = 1 << 30                          # without --adaptive-malloc: freed memory kept up to this much


CLOCK = time.perf_counter                      # --cpu-time: time.process_time, with one thread


def _limit_numpy_threads():
    """Cap numpy's BLAS at THREADS threads; return (controller or None, a description of the BLAS)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None, f"threadpoolctl not installed: BLAS threads set by environment variables to {THREADS}"
    limiter = threadpool_limits(limits=THREADS)
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    text = "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')} kernels, "
                     f"{i.get('num_threads')} threads)" for i in blas) or "no BLAS found by threadpoolctl"
    return limiter, text


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


#: The machine's own speed, read at the start and the end of a run (machine_speed): the size of the float32 matrices
#: multiplied, the MB copied, the calls of each whose median is kept, and the change in either reading between the
#: two from which the bench warns.
MACHINE_PRODUCT, MACHINE_COPY_MB, MACHINE_CALLS, MACHINE_DRIFT = 1024, 32, 5, 0.15


def machine_speed(calls: int = MACHINE_CALLS) -> dict:
    """What the machine delivers now, apart from either library's layers: the median of `calls` products of two
    float32 MACHINE_PRODUCT x MACHINE_PRODUCT matrices (numpy's BLAS with the bench's threads), in GFLOP/s, and of
    `calls` copies of MACHINE_COPY_MB MB (one thread), in GB/s read and written; timed as the rows are (_median_ms).

    On a virtual machine the host's other guests can take caches and memory bandwidth, and neither the load average
    nor the busy cores the bench counts (steal time included) show that. On one of these machines, with nothing else
    of its own running, the matrix products of one band of the first layer ran at 79-85 GFLOP/s in one run and at
    124-132 in the next, started right after it, and the first layer's conv forward took 52-54 ms in one run and 35-40
    ms in another a minute later."""
    n = MACHINE_PRODUCT
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    product = np.empty_like(a)
    source = np.ones(MACHINE_COPY_MB << 18, dtype=np.float32)
    target = np.empty_like(source)
    ms = _median_ms({"product": lambda: np.matmul(a, a, out=product), "copy": lambda: np.copyto(target, source)},
                    calls, blocks=1)
    return {"gemm_gflops": 2 * n ** 3 / ms["product"] / 1e6, "copy_gbps": 2 * source.nbytes / ms["copy"] / 1e6}


def describe_speed(speed: dict) -> str:
    return (f"float32 product of {MACHINE_PRODUCT}x{MACHINE_PRODUCT} matrices {speed['gemm_gflops']:.0f} GFLOP/s, "
            f"copy of {MACHINE_COPY_MB} MB {speed['copy_gbps']:.1f} GB/s")


def speed_drift(before: dict, after: dict) -> list[str]:
    """The readings of machine_speed that moved by more than MACHINE_DRIFT from `before` to `after`, as
    'the product rate 41% lower' lines (none when both held)."""
    lines = []
    for key, what in (("gemm_gflops", "the product rate"), ("copy_gbps", "the copy rate")):
        if before.get(key) and after.get(key):
            change = after[key] / before[key] - 1
            if abs(change) > MACHINE_DRIFT:
                lines.append(f"{what} {abs(change):.0%} {'higher' if change > 0 else 'lower'}")
    return lines


#: The hand-off probe (HandoffProbe): HANDOFF_ROUNDS rounds of one thread copying a band of HANDOFF_SHAPE float32
#: values and then a product of HANDOFF_FILTERS rows with it, timed with the bench's threads over one thread (the
#: median of HANDOFF_CALLS calls each); above HANDOFF_LIMIT the hand-off counts as slow. HANDOFF_RETRIES: the times
#: a row that met a slow hand-off is measured again, each time after waiting up to HANDOFF_WAIT seconds for a fast one.
HANDOFF_SHAPE, HANDOFF_FILTERS, HANDOFF_ROUNDS, HANDOFF_CALLS = (192, 5400), 64, 4, 5
HANDOFF_LIMIT, HANDOFF_RETRIES, HANDOFF_WAIT = 0.8, 3, 10.0


class HandoffProbe:
    """How fast data one thread has just written reaches the other thread of a 2-thread product: the time of
    copy-then-product rounds (the pattern of an im2col layer: numpy copies a band of columns on one thread, the BLAS
    multiplies it on two) with the bench's threads over the same with one. Callable; returns that ratio.

    The two vCPUs of these virtual machines sit near each other on the host for a while and far apart for a while
    (phases of seconds to minutes). A C program bouncing one cache line between two threads pinned to the two vCPUs
    took 90-140 ns a round trip in one kind of phase and 320-760 ns in the other, and the phases were the same as
    those of this ratio: about 0.4-0.65 near, 0.9-1.3 far (measured with both in one script, alternating). The
    products alone hardly change (a 1024 x 1024 float32 product 11.5 vs 12.8 ms), nor do copies by one thread, even
    beside a busy second vCPU. Our layers do change: on the first layer 05's conv forward took 27-31 ms near and
    53-56 ms far, the 7x7 layer 8-10 ms near and 27-30 ms far, while torch's, which shares little between its threads,
    stayed at 19-21 ms and 2.5-4.6 ms throughout. A row measured far apart is marked and measured again (see
    measure_steadily); with one thread (--cpu-time) or without threadpoolctl there is no probe."""

    def __init__(self):
        from threadpoolctl import threadpool_limits
        self._limits = threadpool_limits
        rng = np.random.default_rng(2)
        self.source = rng.standard_normal(HANDOFF_SHAPE, dtype=np.float32)
        self.band = np.empty_like(self.source)
        self.filters = rng.standard_normal((HANDOFF_FILTERS, HANDOFF_SHAPE[0]), dtype=np.float32)
        self.out = np.empty((HANDOFF_FILTERS, HANDOFF_SHAPE[1]), dtype=np.float32)

    def rounds(self):
        for _ in range(HANDOFF_ROUNDS):
            np.copyto(self.band, self.source)
            np.matmul(self.filters, self.band, out=self.out)

    def _median(self) -> float:
        self.rounds()
        times = []
        for _ in range(HANDOFF_CALLS):
            start = time.perf_counter()
            self.rounds()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def __call__(self) -> float:
        with self._limits(limits=1):
            alone = self._median()
        return self._median() / alone


def make_handoff_probe():
    """A HandoffProbe, or None where it cannot tell anything: one thread, or no threadpoolctl to time one with."""
    if THREADS < 2:
        return None
    try:
        return HandoffProbe()
    except ImportError:
        return None


def wait_for_handoff(probe, limit: float | None = None, wait: float | None = None) -> float:
    """Probe every half second, up to `wait` seconds (HANDOFF_WAIT), until the hand-off is fast (at most `limit`,
    HANDOFF_LIMIT); the last reading."""
    limit = HANDOFF_LIMIT if limit is None else limit
    deadline = time.monotonic() + (HANDOFF_WAIT if wait is None else wait)
    while True:
        ratio = probe()
        if ratio <= limit or time.monotonic() >= deadline:
            return ratio
        time.sleep(0.5)


WAIT = 0.0                                     # --wait: seconds a row may wait for the other processes to calm down


def _cpu_counters():
    """(seconds of CPU all cores spent busy, seconds of CPU this process used, wall time), from /proc/stat and
    os.times(); None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]                                 # idle and iowait; steal counts as busy
    own = os.times()
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def others_busy(before, after) -> float:
    """Cores that other processes kept busy between two _cpu_counters() samples (the 1-minute load average where
    there are no counters): the contention a measurement met, without the bench's own threads."""
    if before is None or after is None:
        return load_average()
    return max(0.0, (after[0] - before[0] - (after[1] - before[1])) / max(1e-3, after[2] - before[2]))


def wait_for_quiet(limit: float) -> float:
    """Up to WAIT seconds, until other processes keep fewer than `limit` cores busy (sampled over a second);
    return the last sample."""
    deadline = time.monotonic() + WAIT
    while True:
        before = _cpu_counters()
        time.sleep(1.0)
        busy = others_busy(before, _cpu_counters())
        if busy < limit or time.monotonic() >= deadline:
            return busy
        time.sleep(min(9.0, max(0.0, deadline - time.monotonic())))


def steady_malloc() -> str:
    """Tell glibc's malloc to serve every block from its heap (no mmap) and to keep up to MALLOC_TRIM bytes of freed
    memory for reuse; return what was done, for the header."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "malloc: not glibc's, left as it is"
    version.restype = ctypes.c_char_p
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4                        # from glibc's malloc.h
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM)):
        return f"malloc: glibc {version().decode()} refused the settings; left adaptive"
    return (f"malloc: glibc {version().decode()}, every block from the heap and freed memory reused (M_MMAP_MAX 0, "
            f"M_TRIM_THRESHOLD {MALLOC_TRIM >> 20} MB), for both libraries; --adaptive-malloc for glibc's default")


def _minor_faults() -> int:
    """The process's minor page faults so far (0 where the resource module is missing: not a POSIX system)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 1e6


def _median_ms(fns: dict, rounds: int, blocks: int = 3, faults: dict | None = None, probe=None,
               readings: list | None = None) -> dict:
    """Median wall time (ms) of each callable over `rounds` calls, after a warm-up call; with `faults`, also the
    median number of minor page faults of its calls, into faults[name]; with `probe` (a HandoffProbe), its reading
    before every block and after the last, appended to `readings`.

    The calls come in `blocks` blocks per callable, the callables taking turns block by block, with a pause before
    each block: both libraries' worker threads spin for a while after a parallel region (OpenMP's block time,
    OpenBLAS's thread timeout), and a spinning thread of one would take a core from the other.
    """
    names = list(fns)
    per_block = -(-rounds // blocks)
    times = {name: [] for name in names}
    counts = {name: [] for name in names}
    for block in range(blocks + 1):
        for name in names[block % len(names):] + names[:block % len(names)]:
            if probe is not None:
                readings.append(probe())          # before the pause: the probe's own BLAS threads spin for a while
            time.sleep(PAUSE)
            for _ in range(1 if block == 0 else per_block):       # block 0: the warm-up call, not timed
                first_fault = _minor_faults()
                start = CLOCK()
                fns[name]()
                if block:
                    times[name].append(CLOCK() - start)
                    counts[name].append(_minor_faults() - first_fault)
    if probe is not None:
        readings.append(probe())
    if faults is not None:
        faults.update({name: int(np.median(c)) for name, c in counts.items()})
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def measure_steadily(fns: dict, rounds: int, load_limit: float, probe=None, faults: dict | None = None) -> dict:
    """_median_ms of `fns`, measured again where the machine was not steady; returns {"times", "busy" (cores other
    processes kept busy), "readings" (the hand-off probe's during the kept measurement), "slow" (how many of them were
    above HANDOFF_LIMIT), "attempts"}, and fills `faults` as _median_ms does.

    Busy: a measurement during which other processes kept at least `load_limit` cores busy is made again with twice
    the calls (with --wait, after waiting for a quiet moment instead). Hand-off: with a `probe`, a measurement during
    which it read slow at least once is made again, up to HANDOFF_RETRIES times, each after waiting for a fast reading
    (wait_for_handoff); the first with no slow reading is kept, else the one with the fewest (then the lowest peak)."""
    attempts = []
    for handoff_attempt in range(1 + (HANDOFF_RETRIES if probe is not None else 0)):
        if handoff_attempt:
            wait_for_handoff(probe)
        for attempt in range(2 if WAIT > 0 else 1):     # with --wait, once more if others got busy during it
            if WAIT > 0:
                wait_for_quiet(load_limit)
            before = _cpu_counters()
            counts, readings = {}, []
            times = _median_ms(fns, rounds, faults=counts, probe=probe, readings=readings)
            busy = others_busy(before, _cpu_counters())
            if busy >= load_limit and WAIT <= 0:       # a busy machine: more calls make the medians steadier
                readings = []
                times = _median_ms(fns, 2 * rounds, faults=counts, probe=probe, readings=readings)
                busy = max(busy, others_busy(before, _cpu_counters()))
            if busy < load_limit:
                break
        slow = sum(reading > HANDOFF_LIMIT for reading in readings)
        attempts.append({"times": times, "faults": counts, "busy": busy, "readings": readings, "slow": slow})
        if not slow:
            break
    best = min(attempts, key=lambda a: (a["slow"], max(a["readings"], default=0.0)))
    if faults is not None:
        faults.update(best["faults"])
    return {**best, "attempts": len(attempts)}


def _agree(name, ours, theirs, dtype):
    """None if `ours` matches torch's `theirs`, else a description of the disagreement."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours)
    if ours.dtype != np.dtype(dtype):
        return f"{name}: dtype {ours.dtype}, expected {np.dtype(dtype).name}"
    if ours.shape != theirs.shape:
        return f"{name}: shape {ours.shape}, expected {theirs.shape}"
    scale = max(1.0, float(np.abs(theirs).max()))
    tol = TOLERANCES[np.dtype(dtype).name]
    try:
        np.testing.assert_allclose(ours, theirs, rtol=tol["rtol"], atol=tol["atol"] * scale)
    except AssertionError as err:
        return f"{name}: {str(err).strip().splitlines()[-2:]}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# The layers, as (prepare, ours, torch, limit) for one op
# ---------------------------------------------------------------------------------------------------------------

class Layers:
    """The two implementations of each op; `impls[op][name] = (forward-or-backward callable builder)`."""

    def __init__(self, ref05, ref06, given):
        self.ref05, self.ref06, self.given = ref05, ref06, given

    def conv(self, name, dilation):
        """(forward(x, w, b, param) -> (out, cache), backward(dout, cache) -> grads) of one implementation."""
        if name == "given":
            return self.given.conv_forward, self.given.conv_backward
        if dilation == 1:
            return self.ref05.conv_forward_im2col, self.ref05.conv_backward_im2col
        if self.ref06 is None:
            return None
        return self.ref06.conv_forward_dilated, self.ref06.conv_backward_dilated

    def pool(self, name):
        if name == "given":
            return self.given.max_pool_forward, self.given.max_pool_backward
        return self.ref05.max_pool_forward_im2col, self.ref05.max_pool_backward_im2col


def _odd_lines(count: int, dtype) -> int:
    """count rounded up so that rows of that many items are an odd number of 64-byte cache lines apart (rows a
    multiple of 1 kB apart share a few of the cache's sets; the given layers pad theirs the same way)."""
    item = np.dtype(dtype).itemsize
    return (-(-count * item // 64) | 1) * 64 // item


def _gemm_limit(x_shape, w_shape, dtype, backward: bool):
    """The matrix products of an im2col convolution of this shape alone, in blocks of at most LIMIT_BLOCK output
    positions (OpenBLAS is slower on one product over a whole large image): W_row @ X_col forward; dW_row^T =
    X_col dO^T and dX_col = W_row^T @ dO backward. Contiguous operands (rows an odd number of cache lines apart,
    dO^T a contiguous array), nothing else."""
    N, C, H, W = x_shape
    F, _, HH, WW = w_shape
    rng = np.random.default_rng(1)
    K, M = C * HH * WW, H * W
    sizes = [LIMIT_BLOCK] * (M // LIMIT_BLOCK) + ([M % LIMIT_BLOCK] if M % LIMIT_BLOCK else [])   # one image
    block = max(sizes)
    row = _odd_lines(block, dtype)
    w_rows = rng.standard_normal((F, K)).astype(dtype)
    cols = rng.standard_normal((K, row)).astype(dtype)
    grads = rng.standard_normal((F, row)).astype(dtype)
    grads_t = np.ascontiguousarray(grads[:, :block].T)
    out, dw, dcols = np.empty((F, row), dtype), np.empty((K, F), dtype), np.empty((K, row), dtype)
    pieces = [(cols[:, :m], grads[:, :m], grads_t[:m], out[:, :m], dcols[:, :m]) for m in sizes]

    def forward():
        for _ in range(N):
            for c, _g, _gt, o, _d in pieces:
                np.matmul(w_rows, c, out=o)

    def both():
        for _ in range(N):
            for c, g, gt, _o, d in pieces:
                np.matmul(c, gt, out=dw)
                np.matmul(w_rows.T, g, out=d)
    return both if backward else forward


def _copy_limit(x):
    buffer = np.empty_like(x)
    return lambda: np.copyto(buffer, x)


#: The floor of an im2col convolution, as a missed target quotes it (see _columns_floor)
COLUMNS_FLOOR = "its matrix products (gemm) and one write of its columns, on one thread as numpy copies, alone"
COLUMNS_PIECE = 1 << 20                        # values per copy of _columns_floor: a band of 05's forward pass


def _columns_floor(x_shape, w_shape, dtype, limit):
    """The work no im2col layer of this shape can do without: `limit` (its matrix products) and one write of its
    columns, C * HH * WW values per output position ('same' padding: N * H * W positions), as contiguous copies of
    COLUMNS_PIECE values (pieces that stay in the caches, as the bands of the layers do). numpy copies on one
    thread and its copies do not overlap the products, so the two add up."""
    N, C, H, W = x_shape
    _, _, HH, WW = w_shape
    full, rest = divmod(C * HH * WW * N * H * W, COLUMNS_PIECE)
    source = np.ones(COLUMNS_PIECE, dtype)
    target = np.empty_like(source)

    def floor():
        limit()
        for _ in range(full):
            np.copyto(target, source)
        np.copyto(target[:rest], source[:rest])
    return floor


def _implementations(layers, against, pick):
    """{name: pick(layers, name)} for ref and given, and for the revision's layers ``{name}_at`` (with --against)."""
    pairs = {name: pick(layers, name) for name in IMPLEMENTATIONS}
    if against is not None:
        pairs.update({f"{name}_at": pick(against, name) for name in IMPLEMENTATIONS})
    return pairs


def bench_shape(layers, torch, x_shape, w_shape, pad, dtype, rounds, load_limit, ops, problems, on_row, against=None,
                probe=None):
    F = torch.nn.functional
    dtype_name = np.dtype(dtype).name
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))

    def measure(op, calls, torch_call, limit, check, floors=None):
        """One row: check each implementation, then time them with torch. `floors`: {name: (what, callable)}, work
        that implementation `name` cannot do without, timed after the row (``{name}_floor_ms``, its ratio to torch
        and ``what``, which the list of missed targets quotes)."""
        row = {"op": op, "shape": list(x_shape), "w_shape": list(w_shape), "dtype": dtype_name}
        fns = {"torch": torch_call}
        for name, call in calls.items():
            if call is None:
                row[f"{name}_note"] = "not available"
                continue
            try:
                problem = check(name, call)
            except Exception as err:               # a notebook in progress must not stop the benchmark
                problem = f"{type(err).__name__}: {err}"
            if problem:
                problems.append(f"{op} {name} on x {tuple(x_shape)} {dtype_name}: {problem}")
                row[f"{name}_note"] = "disagrees with torch"
                continue
            fns[name] = call
        faults = {}
        got = measure_steadily(fns, rounds, load_limit, probe, faults)
        times, busy = got["times"], got["busy"]
        loaded = busy >= load_limit
        row.update(others_busy=round(busy, 2), load=round(load_average(), 2), loaded=loaded, torch_ms=times["torch"],
                   torch_faults=faults["torch"])
        if probe is not None:
            row.update(handoff=[round(r, 2) for r in got["readings"]], handoff_slow=got["slow"] > 0,
                       attempts=got["attempts"])
        for name in calls:
            if name in fns:
                row[f"{name}_ms"] = times[name]
                row[f"{name}_faults"] = faults[name]
                row[f"{name}_ratio"] = times[name] / times["torch"]
                row[f"{name}_mb"] = _peak_mb(fns[name])
        extra_calls = max(3, rounds // 2)                  # for the limit and the floors, timed after the row

        def alone(fn):
            return measure_steadily({"alone": fn}, extra_calls, load_limit, probe)["times"]["alone"]

        if limit is not None:
            limit_ms = alone(limit)
            row["limit_ms"], row["limit_ratio"] = limit_ms, limit_ms / times["torch"]
        timed = {}                                         # a floor shared by both implementations is timed once
        for name, (what, floor) in (floors or {}).items():
            if name in fns:
                if id(floor) not in timed:
                    timed[id(floor)] = alone(floor)
                floor_ms = timed[id(floor)]
                row.update({f"{name}_floor": what, f"{name}_floor_ms": floor_ms,
                            f"{name}_floor_ratio": floor_ms / times["torch"]})
        on_row(row)

    for dilation in (1, DILATION):
        fwd_op = "conv forward" if dilation == 1 else f"dilated({dilation}) forward"
        bwd_op = "conv backward" if dilation == 1 else f"dilated({dilation}) backward"
        if fwd_op not in ops and bwd_op not in ops:
            continue
        p = pad * dilation                                  # keeps the size (the filters are odd)
        param = {"stride": 1, "pad": p} if dilation == 1 else {"stride": 1, "pad": p, "dilation": dilation}
        out_t = F.conv2d(xt, wt, bt, padding=p, dilation=dilation)
        dout = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
        dout_t = torch.tensor(dout)
        grads_t = torch.autograd.grad(out_t, (xt, wt, bt), dout_t, retain_graph=True)
        pairs = _implementations(layers, against, lambda impl, name, dilation=dilation: impl.conv(name, dilation))
        caches = {}

        def check_forward(name, call, out_t=out_t):
            out, caches[name] = call()
            return _agree(f"{fwd_op} ({name})", out, out_t, dtype)

        def check_backward(name, call, grads_t=grads_t):
            for label, ours, theirs in zip(("dx", "dw", "db"), call(), grads_t):
                problem = _agree(f"{bwd_op} {label} ({name})", ours, theirs, dtype)
                if problem:
                    return problem
            return None

        def torch_forward(p=p, dilation=dilation):
            with torch.no_grad():
                F.conv2d(xt, wt, bt, padding=p, dilation=dilation)

        forwards = {name: (None if pair is None else (lambda f=pair[0]: f(x, w, b, dict(param))))
                    for name, pair in pairs.items()}
        def floors(limit):
            floor = (COLUMNS_FLOOR, _columns_floor(x_shape, w_shape, dtype, limit))
            return {name: floor for name in pairs}

        if fwd_op in ops:
            limit = _gemm_limit(x_shape, w_shape, dtype, False)
            measure(fwd_op, forwards, torch_forward, limit, check_forward, floors(limit))
        for name, pair in pairs.items():           # the caches, also when only the backward pass is timed
            if pair is not None and name not in caches:
                try:
                    caches[name] = pair[0](x, w, b, dict(param))[1]
                except Exception:
                    pass
        backwards = {name: (None if pair is None or name not in caches else
                            (lambda f=pair[1], c=caches[name]: f(dout, c))) for name, pair in pairs.items()}
        if bwd_op in ops:
            limit = _gemm_limit(x_shape, w_shape, dtype, True)
            measure(bwd_op, backwards,
                    lambda out_t=out_t, dout_t=dout_t: torch.autograd.grad(out_t, (xt, wt, bt), dout_t,
                                                                           retain_graph=True),
                    limit, check_backward, floors(limit))
        del out_t, grads_t

    if "max pool forward" in ops or "max pool backward" in ops:
        pooled_t = F.max_pool2d(xt, POOL["pool_height"], POOL["stride"])
        dpool = rng.standard_normal(tuple(pooled_t.shape)).astype(dtype)
        dpool_t = torch.tensor(dpool)
        dx_t = torch.autograd.grad(pooled_t, xt, dpool_t, retain_graph=True)[0]
        pairs = _implementations(layers, against, lambda impl, name: impl.pool(name))
        caches = {name: pair[0](x, dict(POOL))[1] for name, pair in pairs.items()}

        def torch_pool():
            with torch.no_grad():
                F.max_pool2d(xt, POOL["pool_height"], POOL["stride"])

        if "max pool forward" in ops:
            measure("max pool forward", {name: (lambda f=pair[0]: f(x, dict(POOL))) for name, pair in pairs.items()},
                    torch_pool, _copy_limit(x),
                    lambda name, call: _agree(f"max pool forward ({name})", call()[0], pooled_t, dtype))
        if "max pool backward" in ops:
            measure("max pool backward",
                    {name: (lambda f=pair[1], c=caches[name]: f(dpool, c)) for name, pair in pairs.items()},
                    lambda: torch.autograd.grad(pooled_t, xt, dpool_t, retain_graph=True), _copy_limit(x),
                    lambda name, call: _agree(f"max pool backward ({name})", call(), dx_t, dtype),
                    floors={"ref": (FORWARD_FLOOR, lambda f=pairs["ref"][0]: f(x, dict(POOL)))})
        del pooled_t


# ---------------------------------------------------------------------------------------------------------------
# Targets and the table
# ---------------------------------------------------------------------------------------------------------------

def _key(row) -> str:
    return f"{row['op']}|{tuple(row['shape'])}|{row['dtype']}"


def target_of(row, baseline: dict, name: str) -> tuple[float | None, str]:
    """(the ratio this row of implementation `name` must stay under, how it is set)."""
    if row["dtype"] == "float32":
        if row["op"] in ("conv forward", "conv backward") and tuple(row["shape"]) == LAYERS[0][0]:
            return HEADLINE_TARGET, f"{HEADLINE_TARGET:g}x"
        return TARGET, f"{TARGET:g}x"
    before = baseline.get(_key(row), {}).get(f"{name}_ratio")
    if before is None:
        return None, "-"
    return before * FLOAT64_SLACK, f"<={before:.2f}x"


def _beside_baseline(row, name: str) -> bool:
    """Whether the baseline's own layers of implementation `name` were timed beside this row's in the same run."""
    return bool(row.get("beside_baseline")) and f"{name}_at_ms" in row


def verdicts(row, baseline: dict) -> dict:
    """Per implementation: time target met, memory target met (None where no target applies)."""
    result = {}
    for name in IMPLEMENTATIONS:
        if f"{name}_ratio" not in row:
            continue
        target, _ = target_of(row, baseline, name)
        before = baseline.get(_key(row), {})
        before_ms, before_mb = before.get(f"{name}_ms"), before.get(f"{name}_mb")
        time_ok = None if target is None else row[f"{name}_ratio"] <= target
        if time_ok is False and row["dtype"] != "float32" and before_ms is not None:
            # float64: no worse than the baseline when the ratio to torch or the layer's own time is within
            # FLOAT64_SLACK of the baseline's. torch's own float64 times move by up to 2x between runs here (the
            # (50, 3, 32, 32) forward 12.4 ms in one run, 21-25 ms in others): a ratio alone would judge unchanged
            # code by torch's luck.
            time_ok = row[f"{name}_ms"] <= before_ms * FLOAT64_SLACK
        if time_ok is False and _beside_baseline(row, name):
            # ... or when the baseline's own layers, timed in this run beside these, were no faster (the machine's
            # speed moves between runs, and both sides of this ratio meet the same moment of it)
            time_ok = row[f"{name}_ms"] <= row[f"{name}_at_ms"] * FLOAT64_SLACK
        result[name] = {
            "time": time_ok,
            "memory": None if not before_mb else row[f"{name}_mb"] <= MEMORY_FACTOR * before_mb + 0.1,
        }
    return result


def missed_lines(rows, baseline: dict) -> list[str]:
    """One line per target a row missed; a time missed by an implementation with a measured floor (work it cannot do
    without) says what that floor alone takes."""
    missed = []
    for row in rows:
        for name, marks in verdicts(row, baseline).items():
            for aspect, ok in marks.items():
                if ok is False:
                    was_ms = baseline.get(_key(row), {}).get(f"{name}_ms")
                    also = f", {row[name + '_ms']:.2f} ms vs the baseline's {was_ms:.2f} ms" \
                        if row["dtype"] != "float32" and was_ms else ""
                    if aspect == "time" and _beside_baseline(row, name):
                        also += f", and {row[name + '_at_ms']:.2f} ms for the baseline's layers in this run"
                    value = (f"{row[name + '_ratio']:.2f}x (target {target_of(row, baseline, name)[1]}{also})"
                             if aspect == "time" else
                             f"{row[name + '_mb']:.1f} MB (baseline {baseline[_key(row)][name + '_mb']:.1f} MB)")
                    if aspect == "time" and f"{name}_floor_ratio" in row:
                        value += (f"; {row[name + '_floor']}: {row[name + '_floor_ms']:.2f} ms, "
                                  f"{row[name + '_floor_ratio']:.2f}x")
                    missed.append(f"{row['op']} {tuple(row['shape'])} {row['dtype']} {name}: {aspect} {value}")
    return missed


def float64_hint(rows, baseline: dict, baseline_meta: dict) -> str:
    """When a float64 time was missed: that target compares with times of another run (the baseline's, at its own
    moment of the machine's speed), and --against the baseline's commit times those layers in this run instead."""
    commit = baseline_meta.get("commit")
    if not commit or not any(marks["time"] is False and not _beside_baseline(row, name)
                             for row in rows if row["dtype"] == "float64"
                             for name, marks in verdicts(row, baseline).items()):
        return ""
    return (f"  float64 times are compared with the baseline's run ({commit}, {baseline_meta.get('date', '?')}); "
            f"the machine's speed moves between runs, so for the float64 rows that missed, "
            f"--against {commit} times the baseline's layers in this same run")


COLUMNS = (f"{'op':<20} {'x shape':<18} {'dtype':<7} {'torch ms':>8}  {'ref ms':>8} {'ref':>7} {'given ms':>8} "
           f"{'given':>7} {'target':>7} {'limit':>12} {'ref MB':>15} {'given MB':>15}")


def format_row(row, baseline: dict) -> str:
    before = baseline.get(_key(row), {})
    marks = verdicts(row, baseline)

    def ratio(name):
        if f"{name}_ratio" not in row:
            return f"{'-':>8} {row.get(name + '_note', '-')[:7]:>7}"
        miss = "!" if marks[name]["time"] is False else " "
        return f"{row[name + '_ms']:8.2f} {row[name + '_ratio']:5.2f}x{miss}"

    def memory(name):
        if f"{name}_mb" not in row:
            return f"{'-':>15}"
        was = before.get(f"{name}_mb")
        if not was:
            return f"{row[name + '_mb']:8.1f}{'':>7}"
        miss = "!" if marks[name]["memory"] is False else " "
        return f"{row[name + '_mb']:8.1f} {row[name + '_mb'] / was:4.1f}x{miss}"

    target = target_of(row, baseline, "ref")[1] if row["dtype"] == "float32" else "base" if before else "-"
    kind = "copy" if row["op"].startswith("max pool") else "gemm"
    limit = f"{kind} {row['limit_ratio']:.2f}x" if "limit_ratio" in row else "-"
    star = ("*" if row.get("loaded") else " ") + ("~" if row.get("handoff_slow") else " ")
    shape = str(tuple(row["shape"]))
    return (f"{row['op']:<20} {shape:<18} {row['dtype']:<7} {row['torch_ms']:8.2f}{star}{ratio('ref')} "
            f"{ratio('given')} {target:>7} {limit:>12} {memory('ref')} {memory('given')}")


def _label(row) -> str:
    """A row's op, shape and dtype, in the columns of the table, for the lists after it."""
    return f"  {row['op']:<20} {str(tuple(row['shape'])):<18} {row['dtype']:<7} "


def faults_note(rows) -> list[str]:
    """Lines naming the rows where the median call of torch or of ours took more than PAGE_FAULT_NOTE minor page
    faults (fresh pages from the kernel: their cost is the system's, and it varies)."""
    lines = []
    for row in rows:
        many = [f"{name} {row[name + '_faults']}" for name in ("torch", *IMPLEMENTATIONS)
                if row.get(f"{name}_faults", 0) > PAGE_FAULT_NOTE]
        if many:
            lines.append(_label(row) + ", ".join(many))
    return lines


def against_table(rows, commit: str, title: str | None = None) -> None:
    """Each row's time now and at the --against revision (or the baseline's), measured in the same blocks of
    calls."""
    print(f"\n{title or 'against ' + commit} (its layers timed in the same interleaved blocks as these; time now / "
          f"time at {commit}: torch's swings between runs do not move this ratio):")
    for row in rows:
        parts = [f"{name} {row[name + '_ms']:.2f} / {row[name + '_at_ms']:.2f} ms = "
                 f"{row[name + '_ms'] / row[name + '_at_ms']:.2f}x"
                 for name in IMPLEMENTATIONS if f"{name}_ms" in row and f"{name}_at_ms" in row]
        if parts:
            print(_label(row) + ";  ".join(parts))


def _read_run(path: Path | None) -> dict:
    """A --json file's contents; {} where there is no such file."""
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def _rows(run: dict) -> dict:
    return {_key(row): row for row in run["rows"]} if run else {}


def compare(rows, old_path: Path, speed: dict | None = None) -> None:
    run = _read_run(old_path)
    old = _rows(run)
    print(f"\ncompared with {old_path} (ratios ours / torch; MB peak):")
    was_speed = run.get("meta", {}).get("machine", {}).get("start")
    if speed and was_speed:
        drift = speed_drift(was_speed, speed)
        print(f"  machine then: {describe_speed(was_speed)}; now: {describe_speed(speed)}" + (
            f": WARNING, {' and '.join(drift)} now; compare the ratios, not the times" if drift else ""))
    for row in rows:
        was = old.get(_key(row))
        if not was:
            continue
        parts = []
        for name in IMPLEMENTATIONS:
            if f"{name}_ratio" in row and f"{name}_ratio" in was:
                parts.append(f"{name} {was[name + '_ratio']:.2f}x -> {row[name + '_ratio']:.2f}x, "
                             f"{was[name + '_mb']:.1f} -> {row[name + '_mb']:.1f} MB")
        if parts:
            print(_label(row) + ";  ".join(parts))


def load_layers(repo: Path, given=None):
    """(Layers, notes): the references of 05 and 06 in `repo` and its student package's given layers (or `given`)."""
    from grader.course import Course
    from grader.reference import reference

    if given is None:
        from workbook import layers as given
    course = Course.at(repo)
    notes = []
    ref05 = reference("05_im2col", course)
    ref06 = None
    candidates = [a for a in course.assignments() if a.startswith("06_")]
    if not candidates:
        notes.append("dilated convolution (ref): not available (no 06_* assignment in solutions/)")
    else:
        try:
            ref06 = reference(candidates[0], course)
            if not all(hasattr(ref06, f) for f in ("conv_forward_dilated", "conv_backward_dilated")):
                notes.append(f"dilated convolution (ref): {candidates[0]} defines no conv_*_dilated")
                ref06 = None
        except Exception as err:   # a notebook in progress must not stop the rest of the benchmark
            notes.append(f"dilated convolution (ref): {candidates[0]} did not load: {err}")
    return Layers(ref05, ref06, given), notes


def resolve_revision(repo: Path, revision: str) -> str:
    """The short commit id of git revision `revision` of `repo`; ValueError, naming it, when git does not know it."""
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", f"{revision}^{{commit}}"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        detail = (getattr(err, "stderr", "") or "").strip() or str(err)
        raise ValueError(f"--against {revision}: not a revision of {repo} ({detail})") from None


def load_layers_at(repo: Path, commit: str, into: Path):
    """(Layers, notes) of commit `commit` of `repo`: its tree extracted into `into`, its given layers
    (workbook/layers.py) loaded from there under a module name of their own, its references from its solutions/."""
    import importlib.util
    import io
    import tarfile

    tree = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(into, filter="data")
    spec = importlib.util.spec_from_file_location(f"given_layers_at_{commit}", into / "workbook" / "layers.py")
    given = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(given)
    layers, notes = load_layers(into, given)
    return layers, [f"{note} (at {commit})" for note in notes]


def _commit(repo: Path) -> str:
    try:
        return resolve_revision(repo, "HEAD")
    except ValueError:                             # not a git checkout
        return "?"


def _chosen_layers(parser, args) -> tuple[list, tuple]:
    """The rows of LAYERS and the dtypes that --layers, --dtypes and --quick choose (parser.error on a bad one)."""
    def pick(option, value, table, default, expected):
        if not value:
            return default
        names = [part.strip() for part in value.split(",")]
        if not set(names) <= set(table):
            parser.error(f"{option} {value}: expected {expected}, comma-separated")
        return [table[name] for name in dict.fromkeys(names)]

    layers = {str(number): row for number, row in enumerate(LAYERS, 1)}
    dtypes = {"float32": np.float32, "float64": np.float64}
    return (pick("--layers", args.layers, layers, LAYERS[:1] if args.quick else LAYERS,
                 f"numbers from 1 to {len(LAYERS)}"),
            tuple(pick("--dtypes", args.dtypes, dtypes, [np.float32] if args.quick else [np.float32, np.float64],
                       "float32, float64 or both")))


def main(argv=None) -> int:
    global CLOCK, WAIT, HANDOFF_RETRIES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed calls per layer and row, median kept (default 9)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the first layer, float32, 3 calls")
    parser.add_argument("--ops", help="comma-separated subset of: " + ", ".join(OPS))
    parser.add_argument("--layers", help="comma-separated numbers of the layers to time, in the table's order: "
                        + ", ".join(f"{i} {shape} {w[2]}x{w[3]}" for i, (shape, w, _) in enumerate(LAYERS, 1))
                        + " (default all; --quick: 1)")
    parser.add_argument("--dtypes", help="comma-separated subset of: float32, float64 (default both; --quick: float32)")
    parser.add_argument("--json", type=Path, help="also write every row, with the run's settings, to this file")
    parser.add_argument("--compare", type=Path, help="a --json file of an earlier run to compare the ratios with")
    parser.add_argument("--baseline", type=Path, default=BASELINE,
                        help="the run the float64 and memory targets refer to (default bench/baseline.json)")
    parser.add_argument("--load-limit", type=float, default=0.3,
                        help="cores kept busy by other processes from which a row counts as measured under load "
                             "(default 0.3; the start's 1-minute load average is compared with it too)")
    parser.add_argument("--repo", type=Path, default=HERE.parent,
                        help="the repository whose layers are timed (default: this one)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="before a row (and before repeating one that met a busy machine), wait up to this long "
                             "for other processes to keep fewer than --load-limit cores busy (default 0: do not wait)")
    parser.add_argument("--against", metavar="REVISION",
                        help="also time the layers of this git revision of the repository (its given layers and "
                             "references), in the same process and the same interleaved blocks of calls, and print "
                             "each row's time now / at the revision")
    parser.add_argument("--cross-run-only", action="store_true",
                        help="do not time the baseline's own layers beside the float64 rows; judge those rows by the "
                             "baseline's run alone")
    parser.add_argument("--adaptive-malloc", action="store_true",
                        help="keep glibc's default malloc (by default the bench has every block served from the heap "
                             "and freed memory reused, for both libraries; see the module's docstring)")
    parser.add_argument("--handoff-retries", type=int, default=HANDOFF_RETRIES, metavar="N",
                        help=f"measure a row again up to N times while the hand-off probe reads slow (above "
                             f"{HANDOFF_LIMIT:g}: the two vCPUs far apart on the host; see HandoffProbe), each time "
                             f"after waiting up to {HANDOFF_WAIT:g} s for a fast reading (default {HANDOFF_RETRIES}; "
                             f"0: mark such rows '~' only)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread each, timed by the process's CPU time instead of the wall clock: ratios that "
                             "hold up on a busy machine, though not the 2-thread targets")
    args = parser.parse_args(argv)
    WAIT = args.wait
    HANDOFF_RETRIES = max(0, args.handoff_retries)
    if args.cpu_time:
        CLOCK = time.process_time

    repo = args.repo.resolve()
    against_commit = None
    if args.against:
        try:
            against_commit = resolve_revision(repo, args.against)
        except ValueError as err:
            print(err, file=sys.stderr)
            return 2
    # before torch is imported and the arrays are made, so that all of their blocks come under it
    malloc = ("malloc: glibc's adaptive thresholds (--adaptive-malloc)" if args.adaptive_malloc else steady_malloc())
    sys.path.insert(0, str(repo))
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
    probe = make_handoff_probe()
    layers, notes = load_layers(repo)
    against = None
    if against_commit:
        scratch = tempfile.TemporaryDirectory(prefix="conv-speed-against-")    # removed when the run ends
        against, notes_at = load_layers_at(repo, against_commit, Path(scratch.name))
        notes += notes_at
    baseline_run = _read_run(args.baseline)                  # read once: its rows here, its meta after the table
    baseline = _rows(baseline_run)
    ops = OPS if not args.ops else [op.strip() for op in args.ops.split(",")]
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"unknown ops {unknown}; choose from {OPS}")
    shapes, dtypes = _chosen_layers(parser, args)
    # The float64 targets compare with the baseline: its layers, at the commit its run names, are timed beside the
    # float64 rows in this run as well (unless --against already times some revision beside every row)
    baseline_commit = None
    recorded = baseline_run.get("meta", {}).get("commit") if baseline else None
    if recorded and np.float64 in dtypes:
        try:
            baseline_commit = resolve_revision(repo, recorded)
        except ValueError:
            notes.append(f"baseline: its commit {recorded} is not in {repo}; the float64 rows are compared with the "
                         f"baseline's run alone")
    # the layers timed beside the float64 rows (those of --against, or the baseline's), and their commit
    float64_layers, float64_commit = (against, against_commit) if np.float64 in dtypes else (None, None)
    if against is None and baseline_commit and not args.cross_run_only:
        baseline_scratch = tempfile.TemporaryDirectory(prefix="conv-speed-baseline-")
        float64_layers, notes_then = load_layers_at(repo, baseline_commit, Path(baseline_scratch.name))
        float64_commit = baseline_commit
        notes += notes_then
    rounds = 3 if args.quick else args.repeat

    load = load_average()
    cores = os.cpu_count() or 1
    print(f"numpy {np.__version__}, BLAS: {blas}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"layers of {repo} (commit {_commit(repo)}); baseline: "
          f"{args.baseline if baseline else 'none (float64 and memory targets not checked)'}"
          + (f"; against the layers of commit {against_commit}" if against else
             f"; float64 rows also time the baseline's layers (commit {baseline_commit})" if float64_commit
             else ""))
    for variable in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if variable in os.environ:
            print(f"note: {variable}={os.environ[variable]} is set; it can select a slower OpenBLAS kernel "
                  f"(make bench unsets it)")
    print(malloc)
    speed = machine_speed()
    print(f"machine: {describe_speed(speed)} (median of {MACHINE_CALLS} calls; read again at the end)")
    handoff = {"start": probe()} if probe is not None else {}
    if probe is not None:
        print(f"hand-off: {handoff['start']:.2f} (a band copied by one thread, then multiplied by {THREADS}: its time "
              f"with {THREADS} threads / 1; slow above {HANDOFF_LIMIT:g}, when the host has put the vCPUs far apart). "
              f"Read before every block of calls; a row that met a slow reading is measured again, up to "
              f"{HANDOFF_RETRIES} times, and gets a '~' if none was free of one")
    else:
        print("hand-off: no probe (one thread, or no threadpoolctl); rows are not checked for it")
    print(f"load average {load:.2f} on {cores} cores" + (
        f": WARNING, at or above {args.load_limit:g}: other processes are busy and 2-thread timings suffer from "
        f"it; rows measured under load are measured again with more calls and get a '*'. A quiet machine gives the "
        f"fairest numbers"
        if load >= args.load_limit else ""))
    for note in notes:
        print(note)
    if args.cpu_time:
        print(f"--cpu-time: {THREADS} thread each, CPU time of the process; the targets are set for 2 threads and "
              f"the wall clock")
    print(f"times: median of {rounds} calls in 3 interleaved blocks after a warm-up; ref, given: ours / torch ('!' a "
          f"missed target); limit: the layer's matrix products (gemm) or one copy of the input (copy) alone / torch; "
          f"MB: numpy's peak allocation during one call, and its ratio to the baseline's")
    print()
    print(COLUMNS)
    print("-" * len(COLUMNS))

    rows, problems = [], []

    def on_row(row):
        if row["dtype"] == "float64" and baseline_commit and float64_commit == baseline_commit:
            row["beside_baseline"] = baseline_commit      # the float64 target may then use the same-run times
        rows.append(row)
        print(format_row(row, baseline), flush=True)

    started = time.perf_counter()
    for x_shape, w_shape, pad in shapes:
        for dtype in dtypes:
            bench_shape(layers, torch, x_shape, w_shape, pad, dtype, rounds, args.load_limit, ops, problems, on_row,
                        float64_layers if dtype is np.float64 else against, probe)
    elapsed = time.perf_counter() - started
    end_load = load_average()
    end_speed = machine_speed()
    print(f"\n{elapsed:.0f} s in all; load average {load:.2f} at the start, {end_load:.2f} at the end; "
          f"{sum(r['loaded'] for r in rows)} of {len(rows)} rows measured under load (*)")
    if probe is not None:
        handoff["end"] = probe()
        again = sum(r.get("attempts", 1) > 1 for r in rows)
        print(f"hand-off: {handoff['start']:.2f} at the start, {handoff['end']:.2f} at the end; {again} of "
              f"{len(rows)} rows measured again for a slow reading, "
              f"{sum(bool(r.get('handoff_slow')) for r in rows)} kept one (~)")
    drift = speed_drift(speed, end_speed)
    print(f"machine at the end: {describe_speed(end_speed)}" + (
        f": WARNING, {' and '.join(drift)} than at the start. The machine's speed changed during the run, so rows "
        f"measured at different moments are not comparable by their times; their ratios, and --against's, hold up "
        f"better"
        if drift else ""))

    missed = missed_lines(rows, baseline)
    print(f"targets: every float32 row <= {TARGET:g}x torch, conv forward/backward on x {LAYERS[0][0]} <= "
          f"{HEADLINE_TARGET:g}x; float64 rows <= the baseline's ratio or time, or its layers' time in this run "
          f"(+{FLOAT64_SLACK - 1:.0%}); "
          f"peak memory <= {MEMORY_FACTOR:g}x the baseline's")
    print(f"  {len(missed)} missed" + (":" if missed else ""))
    for line in missed:
        print(f"  - {line}")
    hint = float64_hint(rows, baseline, baseline_run.get("meta", {}))
    if hint:
        print(hint)
    faulting = faults_note(rows)
    if faulting:
        print(f"page faults of the median call, where more than {PAGE_FAULT_NOTE}:")
        for line in faulting:
            print(line)
    else:
        print(f"page faults: no median call of torch or ours took more than {PAGE_FAULT_NOTE}")
    for problem in problems:
        print(f"problem: {problem}")
    if args.compare:
        compare(rows, args.compare, speed)
    if against:
        against_table(rows, against_commit)
    elif float64_commit:
        against_table(rows, baseline_commit, f"float64 rows beside the baseline's layers, commit {baseline_commit}")
    if args.json:
        meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "repo": str(repo),
                "commit": _commit(repo), "against": against_commit,
                "float64_beside": float64_commit, "numpy": np.__version__,
                "torch": torch.__version__, "blas": blas, "malloc": malloc,
                "threads": THREADS, "clock": CLOCK.__name__, "cores": cores, "load_start": load, "load_end": end_load,
                "machine": {"start": speed, "end": end_speed}, "handoff": handoff,
                "handoff_limit": HANDOFF_LIMIT if probe is not None else None, "rounds": rounds,
                "seconds": elapsed}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "missed": missed, "problems": problems},
                                        indent=1) + "\n")
        print(f"wrote {args.json}")
    del limiter
    return 1 if problems or (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
