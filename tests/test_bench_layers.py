"""Every layer that `make bench` times is correct on the bench's own shapes, in float32 and float64, against PyTorch.

Both implementations the bench times: the reference solutions of 05_im2col and 06_1x1_and_dilated (what the hidden
tests compare students with) and the given layers of workbook.layers (what the later notebooks train with). The
bench checks them too before timing, loosely; these are the tests. Also here: the references' band and slice
sizes, forced small, give the same numbers (they only change how the work is cut up).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from grader.cases import conv_backward_cases, pool_backward_cases
from grader.course import REPO_ROOT
from grader.reference import reference
from oracles import torch_conv
from workbook import layers

_spec = importlib.util.spec_from_file_location("conv_speed", REPO_ROOT / "bench" / "conv_speed.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

IDS = [f"x{'x'.join(map(str, x))}-w{'x'.join(map(str, w))}" for x, w, _ in bench.LAYERS]
# Relative to the largest magnitude of the oracle's result
TOLERANCE = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(autouse=True)
def _bench_settings(monkeypatch):
    """bench.main() sets the module's CLOCK, WAIT and HANDOFF_RETRIES from its options: restored after each test, so
    that one test's options do not carry over into the next."""
    for name in ("CLOCK", "WAIT", "HANDOFF_RETRIES"):
        monkeypatch.setattr(bench, name, getattr(bench, name))


def _data(x_shape, w_shape, dtype):
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return rng, x, w, b


def _check(name, ours, theirs, dtype):
    ours = np.asarray(ours)
    assert ours.dtype == dtype, f"{name}: dtype {ours.dtype}"
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape}, torch {theirs.shape}"
    error = float(np.max(np.abs(ours.astype(np.float64) - theirs))) / max(1.0, float(np.max(np.abs(theirs))))
    assert error < TOLERANCE[dtype], f"{name}: relative error {error:.2e}"


def _implementations(dilation):
    """name -> (forward, backward) of the conv layers the bench times at this dilation."""
    if dilation == 1:
        ref = reference("05_im2col")
        pair = (ref.conv_forward_im2col, ref.conv_backward_im2col)
    else:
        ref = reference("06_1x1_and_dilated")
        pair = (ref.conv_forward_dilated, ref.conv_backward_dilated)
    return {"reference": pair, "given": (layers.conv_forward, layers.conv_backward)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dilation", [1, bench.DILATION])
@pytest.mark.parametrize("layer", bench.LAYERS, ids=IDS)
def test_conv_layers_of_the_bench_match_torch(torch, layer, dilation, dtype):
    x_shape, w_shape, pad = layer
    rng, x, w, b = _data(x_shape, w_shape, dtype)
    param = {"stride": 1, "pad": pad * dilation, "dilation": dilation}
    dout = rng.standard_normal((x_shape[0], w_shape[0], *x_shape[2:])).astype(dtype)     # 'same' padding
    out_t, dx_t, dw_t, db_t = torch_conv(torch, x, w, b, dout, 1, pad * dilation, dilation)
    for name, (forward, backward) in _implementations(dilation).items():
        conv_param = dict(param) if dilation > 1 or name == "given" else {"stride": 1, "pad": pad}
        out, cache = forward(x, w, b, conv_param)
        _check(f"{name} forward", out, out_t, dtype)
        for label, grad, expected in zip(("dx", "dw", "db"), backward(dout, cache), (dx_t, dw_t, db_t)):
            _check(f"{name} backward {label}", grad, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", bench.LAYERS, ids=IDS)
def test_pool_layers_of_the_bench_match_torch(torch, layer, dtype):
    x_shape = layer[0]
    rng, x, _, _ = _data(x_shape, (1, 1, 1, 1), dtype)
    p = bench.POOL
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.max_pool2d(xt, (p["pool_height"], p["pool_width"]), p["stride"])
    dout = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
    out_t.backward(torch.tensor(dout))
    ref = reference("05_im2col")
    for name, forward, backward in [("reference", ref.max_pool_forward_im2col, ref.max_pool_backward_im2col),
                                    ("given", layers.max_pool_forward, layers.max_pool_backward)]:
        out, cache = forward(x, dict(p))
        _check(f"{name} forward", out, out_t.detach().numpy(), dtype)
        _check(f"{name} backward", backward(dout, cache), xt.grad.numpy(), dtype)


def _shifted_cases(seed):
    """Layers whose filter rows sum at least 64 terms (C * WW >= 64), where 06 copies the taps of one filter row and
    shifts them for the others: with fewer and with more filters than channels (dx by the transposed convolution,
    or tap by tap), dilated, padded beyond the filter, at stride 2."""
    rng = np.random.default_rng(seed)
    for x_shape, w_shape, conv_param in [((2, 22, 9, 9), (5, 22, 3, 3), {"stride": 1, "pad": 2, "dilation": 2}),
                                         ((2, 22, 9, 9), (30, 22, 3, 3), {"stride": 1, "pad": 1, "dilation": 1}),
                                         ((1, 33, 7, 8), (4, 33, 2, 2), {"stride": 1, "pad": 3, "dilation": 1}),
                                         ((2, 22, 9, 9), (5, 22, 3, 3), {"stride": 2, "pad": 1, "dilation": 1})]:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[0])
        N, _, H, W = x_shape
        d, P, S = conv_param["dilation"], conv_param["pad"], conv_param["stride"]
        H_out = (H + 2 * P - d * (w_shape[2] - 1) - 1) // S + 1
        W_out = (W + 2 * P - d * (w_shape[3] - 1) - 1) // S + 1
        dout = rng.standard_normal((N, w_shape[0], H_out, W_out))
        yield f"x{x_shape} w{w_shape} {conv_param}", (dout, x, w, b, conv_param)


def test_where_06_shifts_one_filter_rows_copy_its_layers_match_torch_in_one_row_bands(torch):
    """Where 06 copies the taps of one filter row and shifts them for the others, its layers match torch, in its own
    bands and in one-row bands (one image each)."""
    ref = reference("06_1x1_and_dilated")
    forward = ref.mutant("conv_forward_dilated", "(1 << 20)", "1")
    backward = ref.mutant("conv_backward_dilated", "(1 << 20)", "1")
    for label, (dout, x, w, b, conv_param) in _shifted_cases(107):
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=conv_param["stride"], padding=conv_param["pad"],
                                           dilation=conv_param["dilation"])
        out_t.backward(torch.tensor(dout))
        for name, layer in [("banded", (forward, backward)), ("reference", (ref.conv_forward_dilated,
                                                                         ref.conv_backward_dilated))]:
            out, cache = layer[0](x, w, b, dict(conv_param))
            np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=f"{name} {label}")
            for got, want in zip(layer[1](dout, cache), (xt.grad, wt.grad, bt.grad)):
                np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10, err_msg=f"{name} {label}")


def test_the_dilated_references_in_many_bands_give_the_same_numbers():
    """06's tap loops work in bands of about 1 M values; one-row bands (and one image each) give the same result."""
    ref = reference("06_1x1_and_dilated")
    forward = ref.mutant("conv_forward_dilated", "(1 << 20)", "1")
    backward = ref.mutant("conv_backward_dilated", "(1 << 20)", "1")
    cases = [case.args for case in conv_backward_cases(seed=105, dilation=True)]
    for dout, x, w, b, conv_param in cases + [args for _, args in _shifted_cases(108)]:
        np.testing.assert_allclose(forward(x, w, b, dict(conv_param))[0],
                                   ref.conv_forward_dilated(x, w, b, dict(conv_param))[0], rtol=1e-12, atol=1e-12)
        for got, want in zip(backward(dout, (x, w, b, dict(conv_param))),
                             ref.conv_backward_dilated(dout, (x, w, b, dict(conv_param)))):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=str(conv_param))


#: The size of the pieces each of 05's pooling functions works through (in bytes, as its source writes it)
POOL_PIECES = {"max_pool_forward_im2col": "(1 << 20)", "max_pool_backward_im2col": "(256 << 10)"}


def _one_plane_slices(ref05, function: str):
    """05's pooling `function` in slices of one depth plane, with no input pooled whole."""
    return ref05.mutant(function, POOL_PIECES[function], "1", ("1 << 18", "0"))


@pytest.mark.parametrize("ties", [False, True])
def test_the_pooling_backward_reference_in_small_slices_gives_the_same_numbers(ties):
    """05's max_pool_backward_im2col works through slices of the batch (an input of at most 256 K values in one);
    one-plane slices give the same result."""
    ref = reference("05_im2col")
    backward = _one_plane_slices(ref, "max_pool_backward_im2col")
    for case in pool_backward_cases(seed=106, ties=ties):
        dout, x, p = case.args
        np.testing.assert_array_equal(backward(dout, (x, dict(p))), ref.max_pool_backward_im2col(dout, (x, dict(p))),
                                      err_msg=case.label)


# (N, C, H_out, W_out, pool_height, pool_width, stride): windows that do not overlap, which 05 pools through strided
# views: tiling the input, 3x3, leaving gaps between them (stride > window), one row or one column high, 1x1
DISJOINT_POOLS = [(2, 3, 3, 4, 2, 2, 2), (2, 1, 2, 3, 3, 3, 3), (2, 2, 3, 3, 2, 2, 3), (1, 2, 4, 3, 1, 2, 2),
                  (1, 2, 3, 4, 2, 1, 2), (1, 1, 3, 3, 1, 1, 2), (3, 2, 2, 2, 1, 1, 1)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_disjoint_pooling_references_agree_with_the_naive_loops_on_ties_in_any_slices(dtype):
    """05's strided-view pooling (the last window offset takes the gradient no earlier offset held the maximum for)
    gives exactly 04's naive result where most windows hold their maximum more than once, in its own way (inputs
    this small whole: the forward pass's maxima in place over the window offsets) and in one-plane slices (the
    forward pass's rows' maxima first)."""
    ref05, ref04 = reference("05_im2col"), reference("04_pooling")
    forwards = [ref05.max_pool_forward_im2col, _one_plane_slices(ref05, "max_pool_forward_im2col")]
    backwards = [ref05.max_pool_backward_im2col, _one_plane_slices(ref05, "max_pool_backward_im2col")]
    rng = np.random.default_rng(109)
    for N, C, Ho, Wo, ph, pw, stride in DISJOINT_POOLS:
        x = rng.integers(0, 3, size=(N, C, (Ho - 1) * stride + ph, (Wo - 1) * stride + pw)).astype(dtype)
        dout = rng.standard_normal((N, C, Ho, Wo)).astype(dtype)
        p = {"pool_height": ph, "pool_width": pw, "stride": stride}
        out, cache = ref04.max_pool_forward_naive(x, dict(p))
        dx = ref04.max_pool_backward_naive(dout, cache)
        for forward, backward in zip(forwards, backwards):
            got, _ = forward(x, dict(p))
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, out, err_msg=str(p))
            got = backward(dout, (x, dict(p)))
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, dx, err_msg=str(p))


def test_the_bench_judges_float64_rows_by_their_ratio_or_their_own_time_and_float32_rows_by_the_ratio():
    """torch's float64 times move by up to 2x between runs, so a float64 row is no worse than the baseline when
    either its ratio to torch or its own time is within 10% of the baseline's; float32 rows have fixed ratios."""
    shape = list(bench.LAYERS[1][0])
    key = {"op": "conv backward", "shape": shape}
    baseline = {bench._key({**key, "dtype": "float64"}): {"given_ratio": 1.74, "given_ms": 43.6, "given_mb": 9.0}}

    def verdict(dtype, ratio, ms):
        row = {**key, "dtype": dtype, "given_ratio": ratio, "given_ms": ms, "given_mb": 9.0}
        return bench.verdicts(row, baseline)["given"]["time"]

    assert verdict("float64", 1.80, 40.0)           # torch was faster this run; the layer itself was not slower
    assert verdict("float64", 1.70, 60.0)           # the machine was slower; the ratio held
    assert not verdict("float64", 2.21, 48.5)       # slower on both counts
    assert verdict("float32", 1.99, 100.0) and not verdict("float32", 2.01, 1.0)


def test_a_float64_row_beside_the_baselines_layers_misses_only_when_slower_by_every_measure():
    """Timed beside the baseline's own layers in the same run, a float64 row that looks slower than the baseline's
    run (the machine slower, torch luckier) still meets its target when it took no longer than those layers; slower
    than them as well, it misses, and the line says by how much."""
    key = {"op": "conv forward", "shape": [1, 64, 224, 224], "dtype": "float64"}
    baseline = {bench._key(key): {"ref_ratio": 0.58, "ref_ms": 55.27, "ref_mb": 11.1}}
    slow = {**key, "ref_ratio": 0.77, "ref_ms": 80.07, "ref_mb": 11.1}         # worse than the baseline's run
    assert bench.verdicts(slow, baseline)["ref"]["time"] is False
    beside = {**slow, "beside_baseline": "4c65470", "ref_at_ms": 96.5}
    assert bench.verdicts(beside, baseline)["ref"]["time"] is True
    assert bench.missed_lines([beside], baseline) == []
    assert bench.float64_hint([beside], baseline, {"commit": "4c65470"}) == ""
    regressed = {**beside, "ref_at_ms": 61.0}
    assert bench.verdicts(regressed, baseline)["ref"]["time"] is False
    assert bench.missed_lines([regressed], baseline) == [
        "conv forward (1, 64, 224, 224) float64 ref: time 0.77x (target <=0.58x, 80.07 ms vs the baseline's 55.27 ms, "
        "and 61.00 ms for the baseline's layers in this run)"]
    assert bench.float64_hint([regressed], baseline, {"commit": "4c65470"}) == ""
    # times of some other revision (--against) do not stand in for the baseline's
    other = {**slow, "ref_at_ms": 96.5}
    assert bench.verdicts(other, baseline)["ref"]["time"] is False
    assert "--against 4c65470" in bench.float64_hint([other], baseline, {"commit": "4c65470"})


def test_a_missed_time_with_a_measured_floor_says_what_the_floor_alone_takes():
    """The reference max-pool backward's miss names the floor it cannot go under (its own forward pass); a row
    without a floor, or a target met, says nothing of it."""
    row = {"op": "max pool backward", "shape": [16, 64, 56, 56], "dtype": "float32", "ref_ratio": 5.03,
           "ref_ms": 6.9, "ref_mb": 13.3, "ref_floor": bench.FORWARD_FLOOR, "ref_floor_ms": 3.02,
           "ref_floor_ratio": 2.2, "given_ratio": 2.6, "given_ms": 3.6, "given_mb": 13.0}
    ref_line, given_line = bench.missed_lines([row], {})
    assert ref_line == (f"max pool backward (16, 64, 56, 56) float32 ref: time 5.03x (target 2x); "
                        f"{bench.FORWARD_FLOOR}: 3.02 ms, 2.20x")
    assert given_line == "max pool backward (16, 64, 56, 56) float32 given: time 2.60x (target 2x)"
    assert bench.missed_lines([{**row, "ref_ratio": 1.9, "given_ratio": 1.5}], {}) == []


def test_a_missed_float64_time_points_to_the_baselines_commit_for_a_same_run_comparison():
    meta = {"commit": "4c65470", "date": "2026-12-01T15:27:08"}
    key = {"op": "conv forward", "shape": [1, 64, 224, 224]}
    baseline = {bench._key({**key, "dtype": dtype}): {"ref_ratio": 0.58, "ref_ms": 55.27, "ref_mb": 11.1}
                for dtype in ("float32", "float64")}
    slow64 = {**key, "dtype": "float64", "ref_ratio": 0.98, "ref_ms": 72.04, "ref_mb": 11.1}
    hint = bench.float64_hint([slow64], baseline, meta)
    assert "--against 4c65470" in hint and "2026-12-01T15:27:08" in hint
    slow32 = {**key, "dtype": "float32", "ref_ratio": 2.5, "ref_ms": 50.0, "ref_mb": 11.1}
    assert bench.float64_hint([slow32], baseline, meta) == ""
    big64 = {**key, "dtype": "float64", "ref_ratio": 0.5, "ref_ms": 50.0, "ref_mb": 40.0}
    assert bench.missed_lines([big64], baseline) == ["conv forward (1, 64, 224, 224) float64 ref: memory 40.0 MB "
                                                     "(baseline 11.1 MB)"]
    assert bench.float64_hint([big64], baseline, meta) == ""
    assert bench.float64_hint([slow64], baseline, {}) == ""


def _git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=bench test", "-c", "user.email=bench@example.org", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_against_a_revision_times_that_revisions_layers_beside_the_current_ones(torch, tmp_path, capsys):
    """--against REV loads REV's own given layers and references: a clone whose last commit doubles the given
    max-pool gradient is caught by the bench's check against torch at that commit and not at the one before, and
    every row gets the revision's times beside the current ones. The probe is read but no row measured again
    (--handoff-retries 0): the retries are tested on their own below, and in a slow spell they made this test take
    five minutes."""
    clone = tmp_path / "clone"
    # one commit is enough (HEAD~1 below is the cloned commit itself), so a shallow checkout of the project will do
    _git("clone", "--quiet", "--depth", "1", f"file://{REPO_ROOT}", str(clone), cwd=tmp_path)
    path = clone / "workbook" / "layers.py"
    source = path.read_text()
    planted = source.replace('''    (N, C, H, W), pool_param, switches = cache
''', '''    (N, C, H, W), pool_param, switches = cache
    dout = 2 * dout
''', 1)
    assert planted != source
    path.write_text(planted)
    _git("commit", "--quiet", "-am", "a wrong max-pool gradient", cwd=clone)
    out = tmp_path / "run.json"

    def run(revision):
        # --adaptive-malloc: the test process keeps glibc's default (the bench's own setting is tested below)
        status = bench.main(["--repo", str(clone), "--quick", "--ops", "max pool backward", "--baseline",
                             str(tmp_path / "none.json"), "--against", revision, "--json", str(out),
                             "--adaptive-malloc", "--handoff-retries", "0"])
        return status, json.loads(out.read_text()), capsys.readouterr().out

    status, report, text = run("HEAD")
    assert status == 1
    assert [p for p in report["problems"] if "max pool backward (given_at)" in p], report["problems"]
    assert not [p for p in report["problems"] if "(given)" in p or "(ref" in p], report["problems"]

    status, report, text = run("HEAD~1")
    assert status == 0 and report["problems"] == []
    assert report["meta"]["against"] == _git("rev-parse", "--short", "HEAD~1", cwd=clone).strip()
    (row,) = report["rows"]
    assert all(row[f"{name}_ms"] > 0 and row[f"{name}_at_ms"] > 0 for name in ("ref", "given"))
    assert all(isinstance(row[f"{name}_faults"], int) for name in ("torch", "ref", "given", "given_at"))
    # the reference's floor: its own forward pass, on the same x
    assert row["ref_floor"] == bench.FORWARD_FLOOR and row["ref_floor_ms"] > 0
    assert row["ref_floor_ratio"] == pytest.approx(row["ref_floor_ms"] / row["torch_ms"])
    assert "given_floor_ms" not in row
    assert report["meta"]["malloc"] == "malloc: glibc's adaptive thresholds (--adaptive-malloc)"
    # the hand-off probe read before each of the 4 blocks of the 5 callables (torch, ref, given and both at HEAD~1),
    # and once after; the run, at both ends
    assert len(row["handoff"]) == 4 * 5 + 1 and all(r > 0 for r in row["handoff"]) and row["attempts"] == 1
    assert row["handoff_slow"] == any(r > bench.HANDOFF_LIMIT for r in row["handoff"])
    assert set(report["meta"]["handoff"]) == {"start", "end"} and report["meta"]["handoff_limit"] == bench.HANDOFF_LIMIT
    machine = report["meta"]["machine"]
    assert all(machine[when]["gemm_gflops"] > 1 and machine[when]["copy_gbps"] > 0.1 for when in ("start", "end"))
    assert f"machine: {bench.describe_speed(machine['start'])}" in text
    assert f"machine at the end: {bench.describe_speed(machine['end'])}" in text
    table = text.split(f"\nagainst {report['meta']['against']} (")[1].splitlines()[1]
    assert table.split()[:3] == ["max", "pool", "backward"]
    assert f"given {row['given_ms']:.2f} / {row['given_at_ms']:.2f} ms" in table


def test_the_float64_rows_time_the_baselines_layers_at_its_commit_beside_their_own(torch, tmp_path, capsys,
                                                                                   monkeypatch):
    """Without --against, the float64 rows also time the layers of the commit the baseline's run names, and are judged
    by them too: a given max-pool backward made slower than the baseline's misses its float64 targets, and the
    reference beside it is judged by its time against the baseline's layers (the baseline's run, as written here, was
    far faster than any). No row is measured again after a slow hand-off (--handoff-retries 0): with the planted
    50 ms in every call, the retries made this test take thirteen minutes in one slow spell."""
    clone = tmp_path / "clone"
    _git("clone", "--quiet", "--depth", "1", f"file://{REPO_ROOT}", str(clone), cwd=tmp_path)
    base = _git("rev-parse", "--short", "HEAD", cwd=clone).strip()
    fast = layers.max_pool_backward

    def slower(dout, cache):
        time.sleep(0.05)
        return fast(dout, cache)

    monkeypatch.setattr(layers, "max_pool_backward", slower)       # the layers timed now, not the baseline's
    monkeypatch.setattr(bench, "PAUSE", 0.0)
    op = "max pool backward"
    rows = [{"op": op, "shape": list(x_shape), "dtype": dtype, "ref_ratio": 0.01, "ref_ms": 0.001, "ref_mb": 1000.0,
             "given_ratio": 0.01, "given_ms": 0.001, "given_mb": 1000.0}
            for x_shape, _, _ in bench.LAYERS for dtype in ("float32", "float64")]
    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(json.dumps({"meta": {"commit": base, "date": "2026-12-01T15:27:08"}, "rows": rows}))
    baseline = bench._rows(json.loads(baseline_path.read_text()))
    out = tmp_path / "run.json"
    args = ["--repo", str(clone), "--ops", op, "--repeat", "3", "--baseline", str(baseline_path), "--json", str(out),
            "--adaptive-malloc", "--handoff-retries", "0"]
    status = bench.main(args)
    report, text = json.loads(out.read_text()), capsys.readouterr().out
    assert status == 0 and report["problems"] == []
    assert report["meta"]["float64_beside"] == base and report["meta"]["against"] is None
    assert f"float64 rows also time the baseline's layers (commit {base})" in text
    float32 = [row for row in report["rows"] if row["dtype"] == "float32"]
    float64 = [row for row in report["rows"] if row["dtype"] == "float64"]
    assert len(float32) == len(float64) == 3
    assert not any("given_at_ms" in row or "beside_baseline" in row for row in float32)
    for row in float64:
        assert row["beside_baseline"] == base
        assert row["given_ms"] > 50 > row["given_at_ms"]                      # the planted 50 ms, and not before
        marks = bench.verdicts(row, baseline)
        assert marks["given"]["time"] is False
        assert marks["ref"]["time"] is (row["ref_ms"] <= row["ref_at_ms"] * bench.FLOAT64_SLACK)
    missed = [line for line in report["missed"] if " float64 given: time" in line]
    assert len(missed) == 3 and all("for the baseline's layers in this run" in line for line in missed)
    assert f"--against {base}" not in text                  # no hint to do what the run has done
    section = text.split(f"\nfloat64 rows beside the baseline's layers, commit {base} (")[1].splitlines()[1:4]
    assert [line.split()[:3] for line in section] == [["max", "pool", "backward"]] * 3
    assert all("float64" in line and "given" in line for line in section)

    # --cross-run-only: the baseline's run alone
    status = bench.main([*args, "--cross-run-only"])
    report = json.loads(out.read_text())
    capsys.readouterr()
    assert report["meta"]["float64_beside"] is None
    assert not any("given_at_ms" in row or "beside_baseline" in row for row in report["rows"])
    assert len([line for line in report["missed"] if " float64 given: time" in line]) == 3


def test_layers_and_dtypes_choose_the_rows(torch, tmp_path, capsys):
    """--layers and --dtypes time only the rows they name (the 7x7 first layer in float32 here), and a layer or a
    dtype the bench does not have is refused with the option named."""
    out = tmp_path / "run.json"
    status = bench.main(["--layers", "2", "--dtypes", "float32", "--repeat", "3", "--ops", "max pool forward",
                         "--baseline", str(tmp_path / "none.json"), "--json", str(out), "--adaptive-malloc",
                         "--handoff-retries", "0"])
    report = json.loads(out.read_text())
    capsys.readouterr()
    assert status == 0 and report["problems"] == []
    assert [(row["op"], tuple(row["shape"]), row["dtype"]) for row in report["rows"]] == [
        ("max pool forward", bench.LAYERS[1][0], "float32")]
    for option, value, said in [("--layers", "4", "--layers 4: expected numbers from 1 to 3"),
                                ("--layers", "two", "--layers two: expected numbers"),
                                ("--dtypes", "float16", "--dtypes float16: expected float32, float64")]:
        with pytest.raises(SystemExit) as exit_:
            bench.main([option, value])
        assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_against_an_unknown_revision_names_it(tmp_path, capsys):
    status = bench.main(["--quick", "--ops", "max pool backward", "--against", "no-such-revision",
                         "--adaptive-malloc"])
    captured = capsys.readouterr()
    assert status == 2
    assert "--against no-such-revision: not a revision of" in captured.err


def test_the_bench_counts_the_page_faults_of_each_call(monkeypatch):
    """Each call's minor page faults, the median per callable: a call that maps 8 MB of fresh memory and writes to
    every page of it takes a fault per page; one that only adds into arrays it already has takes none."""
    import mmap

    monkeypatch.setattr(bench, "PAUSE", 0.0)
    pages = (8 << 20) // mmap.PAGESIZE
    a, b = np.ones(1000), np.ones(1000)

    def fresh():
        with mmap.mmap(-1, pages * mmap.PAGESIZE) as memory:
            for page in range(pages):
                memory[page * mmap.PAGESIZE] = 1

    faults = {}
    times = bench._median_ms({"fresh": fresh, "reused": lambda: np.add(a, b, out=a)}, 3, faults=faults)
    assert set(times) == set(faults) == {"fresh", "reused"}
    assert pages <= faults["fresh"] <= pages + 64, faults
    assert faults["reused"] <= 2, faults


_MALLOC_PROBE = """
import importlib.util, json, resource, sys
import numpy as np
spec = importlib.util.spec_from_file_location("conv_speed", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
said = bench.steady_malloc() if sys.argv[2] == "steady" else ""
if sys.argv[3] == "torch":
    import torch
    torch.set_num_threads(2)
    x, w, b = (torch.randn(*shape, requires_grad=True) for shape in ((16, 64, 56, 56), (64, 64, 3, 3), (64,)))
    out = torch.nn.functional.conv2d(x, w, b, padding=1)
    dout = torch.randn_like(out)
    call = lambda: torch.autograd.grad(out, (x, w, b), dout, retain_graph=True)
else:
    call = lambda: np.ones(48 << 17)          # 48 MB, more than glibc's largest mmap threshold (32 MB)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"said": said, "faults": faults}))
"""


#: glibc's mmap threshold held at its starting 128 kB (setting it also stops it adapting)
_PINNED_MMAP = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}


def _malloc_probe(mode, work, env=None):
    result = subprocess.run([sys.executable, "-c", _MALLOC_PROBE, str(REPO_ROOT / "bench" / "conv_speed.py"), mode,
                             work], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_bench_has_malloc_reuse_freed_blocks_that_glibc_would_map_afresh_each_time():
    """A 48 MB array allocated again and again: glibc maps a block that large afresh each time (page faults on every
    call); after the bench's steady_malloc() the heap serves it and reuses it, with no fault after the first call."""
    default = _malloc_probe("default", "numpy")
    steady = _malloc_probe("steady", "numpy")
    assert min(default["faults"][1:]) > 100, default
    assert steady["said"].startswith("malloc: glibc") and "M_MMAP_MAX 0" in steady["said"], steady
    assert steady["faults"][0] > 100 and max(steady["faults"][1:]) <= 8, steady


def test_with_the_bench_malloc_torchs_conv_backward_stops_taking_fresh_pages_on_every_call(torch):
    """The case that made torch's times move between runs: its conv backward on the bench's first layer took
    thousands of page faults per call under glibc's default, and none after the first two calls with the bench's
    setting. glibc's default is adaptive (its mmap threshold starts at 128 kB and rises to the size of a mapped block
    once one is freed), and what the later calls take then differs from process to process: of 6 processes in one
    trial, 3 took 12,512 faults in every call and 3 none after the first; of 5 in one CI run, 1 none after the first,
    the others 0-6,272 in some later calls but not all. So the control holds the threshold where glibc starts it
    (MALLOC_MMAP_THRESHOLD_ set, which also stops it adapting): every block of torch's above 128 kB is then mapped
    afresh and returned on every call (about 15,800 faults in each, in 3 of 3 processes), the cost that the bench's
    setting removes, with that threshold set as well as without."""
    mapped = _malloc_probe("default", "torch", env=_PINNED_MMAP)
    assert min(mapped["faults"][2:]) > 1000, mapped
    steady = _malloc_probe("steady", "torch", env=_PINNED_MMAP)
    assert max(steady["faults"][2:]) <= 100, steady
    steady = _malloc_probe("steady", "torch")
    assert max(steady["faults"][2:]) <= 100, steady


def test_the_bench_reads_the_machines_speed_and_names_the_readings_that_moved():
    speed = bench.machine_speed(calls=3)
    assert set(speed) == {"gemm_gflops", "copy_gbps"}
    assert speed["gemm_gflops"] > 1 and speed["copy_gbps"] > 0.1       # a real product and a real copy were timed
    assert bench.describe_speed(speed).startswith(f"float32 product of 1024x1024 matrices {speed['gemm_gflops']:.0f}")
    before = {"gemm_gflops": 160.0, "copy_gbps": 30.0}
    assert bench.speed_drift(before, {"gemm_gflops": 150.0, "copy_gbps": 33.0}) == []        # within 15%
    assert bench.speed_drift(before, {"gemm_gflops": 80.0, "copy_gbps": 30.0}) == ["the product rate 50% lower"]
    assert bench.speed_drift(before, {"gemm_gflops": 200.0, "copy_gbps": 12.0}) == [
        "the product rate 25% higher", "the copy rate 60% lower"]


def test_compare_sets_the_machines_speed_then_beside_its_speed_now(tmp_path, capsys):
    row = {"op": "max pool backward", "shape": [1, 2, 4, 4], "dtype": "float32", "w_shape": [1],
           "ref_ratio": 1.0, "ref_mb": 1.0, "given_ratio": 1.5, "given_mb": 2.0}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"meta": {"machine": {"start": {"gemm_gflops": 300.0, "copy_gbps": 30.0}}},
                                   "rows": [{**row, "given_ratio": 1.2}]}))
    bench.compare([row], earlier, {"gemm_gflops": 150.0, "copy_gbps": 29.0})
    text = capsys.readouterr().out
    assert "machine then: float32 product of 1024x1024 matrices 300 GFLOP/s" in text
    assert "now: float32 product of 1024x1024 matrices 150 GFLOP/s" in text
    assert "WARNING, the product rate 50% lower now" in text
    assert "given 1.20x -> 1.50x" in text
    bench.compare([row], earlier, {"gemm_gflops": 290.0, "copy_gbps": 31.0})
    assert "WARNING" not in capsys.readouterr().out


class _ScriptedProbe:
    """A stand-in for bench.HandoffProbe that reads the given values in turn (the last one ever after)."""

    def __init__(self, readings):
        self.readings, self.calls = list(readings), 0

    def __call__(self):
        self.calls += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_the_handoff_probe_times_real_copies_and_products_with_two_threads_over_one():
    probe = bench.HandoffProbe()
    ratio = probe()
    assert 0.05 < ratio < 20, ratio
    # what it timed is a real product of the copied band
    np.testing.assert_allclose(probe.out, probe.filters @ probe.source, rtol=1e-4, atol=1e-3)
    assert probe.band.shape == bench.HANDOFF_SHAPE and np.array_equal(probe.band, probe.source)
    with pytest.MonkeyPatch.context() as patch:          # with one thread the probe cannot tell anything
        patch.setattr(bench, "THREADS", 1)
        assert bench.make_handoff_probe() is None
    assert isinstance(bench.make_handoff_probe(), bench.HandoffProbe)


def test_a_row_that_met_a_slow_handoff_is_measured_again_and_the_first_clean_measurement_is_kept(monkeypatch):
    """With 2 callables, one measurement reads the probe 4 * 2 + 1 = 9 times: a slow reading among the first nine
    makes a second measurement, which reads only fast ones and is kept; the wait between them probes until a fast
    reading."""
    monkeypatch.setattr(bench, "PAUSE", 0.0)
    calls = {"a": 0, "b": 0}
    fns = {name: (lambda name=name: calls.__setitem__(name, calls[name] + 1)) for name in calls}
    probe = _ScriptedProbe([0.5, 0.5, 1.2] + [0.5] * 6 + [1.1, 0.4] + [0.5] * 9)
    got = bench.measure_steadily(fns, 3, load_limit=99.0, probe=probe)
    assert got["attempts"] == 2 and got["slow"] == 0
    assert got["readings"] == [0.5] * 9
    assert probe.calls == 9 + 2 + 9                      # the first measurement, the wait (1.1 then 0.4), the second
    assert calls == {"a": 2 * (1 + 3), "b": 2 * (1 + 3)}     # a warm-up and 3 timed calls, twice
    assert set(got["times"]) == {"a", "b"} and all(t >= 0 for t in got["times"].values())


def test_a_handoff_that_stays_slow_is_measured_handoff_retries_more_times_and_keeps_the_fewest_slow_readings(
        monkeypatch):
    monkeypatch.setattr(bench, "PAUSE", 0.0)
    monkeypatch.setattr(bench, "HANDOFF_WAIT", 0.0)       # the waits give up at once
    monkeypatch.setattr(bench, "HANDOFF_RETRIES", 2)
    # one callable: 4 + 1 = 5 readings a measurement, and one for each wait before the second and third
    first, wait1, second, wait2, third = [0.9] * 5, [0.9], [0.5, 0.5, 0.95, 0.5, 0.5], [0.9], [0.9, 0.5, 0.9, 0.9, 0.5]
    probe = _ScriptedProbe(first + wait1 + second + wait2 + third + [0.9])
    got = bench.measure_steadily({"f": lambda: None}, 3, load_limit=99.0, probe=probe)
    assert got["attempts"] == 3 and got["slow"] == 1 and got["readings"] == second
    # no probe: one measurement, nothing read
    got = bench.measure_steadily({"f": lambda: None}, 3, load_limit=99.0)
    assert got["attempts"] == 1 and got["readings"] == [] and got["slow"] == 0


def test_waiting_for_the_handoff_stops_at_a_fast_reading_or_at_the_deadline(monkeypatch):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    probe = _ScriptedProbe([1.0, 0.9, 0.6, 0.5])
    assert bench.wait_for_handoff(probe, limit=0.8, wait=60.0) == 0.6 and probe.calls == 3
    probe = _ScriptedProbe([1.0])
    assert bench.wait_for_handoff(probe, limit=0.8, wait=0.0) == 1.0 and probe.calls == 1


def test_the_columns_floor_is_the_limit_and_one_write_of_every_value_of_the_columns(monkeypatch):
    """On (2, 3, 5, 5) with 4 x 3 x 3 filters the columns hold 3 * 9 * 2 * 25 = 1350 values: in pieces of 512, two
    whole copies and one of 326, after one call of the products' limit."""
    monkeypatch.setattr(bench, "COLUMNS_PIECE", 512)
    written, limits = [], []
    real_copyto = np.copyto

    def counting(target, source):
        written.append(target.size)
        real_copyto(target, source)

    floor = bench._columns_floor((2, 3, 5, 5), (4, 3, 3, 3), np.float32, lambda: limits.append(1))
    monkeypatch.setattr(bench.np, "copyto", counting)
    floor()
    assert limits == [1] and written == [512, 512, 326] and sum(written) == 3 * 9 * 2 * 25


def test_the_table_marks_a_row_kept_with_a_slow_handoff_and_a_conv_miss_quotes_the_columns_floor():
    row = {"op": "conv forward", "shape": [50, 3, 32, 32], "dtype": "float32", "torch_ms": 2.8, "ref_ratio": 3.4,
           "ref_ms": 9.5, "ref_mb": 11.1, "loaded": False, "handoff_slow": True, "ref_floor": bench.COLUMNS_FLOOR,
           "ref_floor_ms": 7.0, "ref_floor_ratio": 2.5}
    line = bench.format_row(row, {})
    assert "2.80 ~" in line and "3.40x!" in line
    assert " ~" not in bench.format_row({**row, "handoff_slow": False}, {})
    assert "2.80*~" in bench.format_row({**row, "loaded": True}, {})
    (missed,) = bench.missed_lines([row], {})
    assert missed.endswith(f"time 3.40x (target 2x); {bench.COLUMNS_FLOOR}: 7.00 ms, 2.50x")
