"""The data channel under fuzzing: whatever the (untrusted) kernel sends, the grader gets plain data or a clean
:class:`~grader.trusted.wire.WireError` ("the submission sent invalid data"), never another exception, a hang,
or memory beyond the stated cap.

Property-based (hypothesis): malformed, truncated, oversized, deeply nested and type-confused JSON, and ``.npy``
payloads with mutated, truncated and lying headers, at :func:`wire.decode`, :func:`wire.parse_reply` and
:func:`wire.parse_callback`.
"""
from __future__ import annotations

import base64
import io
import json
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.trusted import wire

CAP = 1 << 20          # the per-call byte limit used here
GEN = 1
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAGS = ["n", "b", "i", "f", "c", "s", "a", "g", "l", "t", "d", "h", "x", "", "nn", 0, None]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
                      st.sampled_from(TAGS))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=60)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@st.composite
def tagged(draw, depth=0):
    """Trees shaped like the wire format, with wrong types, arities and payloads mixed in."""
    tag = draw(st.sampled_from(TAGS))
    if depth > 4:
        return [tag, draw(json_leaf)]
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return [tag]
    if kind == 1:
        return [tag, draw(json_value)]
    if kind == 2:
        return [tag, draw(st.lists(tagged(depth=depth + 1), max_size=4))]
    if kind == 3:
        return [tag, [[draw(tagged(depth=depth + 1)), draw(tagged(depth=depth + 1))]]]
    if kind == 4:
        return [tag, draw(npy_text())]
    return [tag, draw(json_value), draw(json_value), draw(json_value)]


@st.composite
def npy_bytes(draw):
    """A real .npy payload, then truncated, bit-flipped, or with its header's shape or dtype lied about."""
    dtype = draw(st.sampled_from(["<f8", ">f4", "<i4", "|u1", "<c16", "|b1", "<U3", "|O", "<M8[s]", "|V4"]))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    if dtype in ("|O",):
        raw = _npy(np.zeros(shape, dtype=np.float64))
    else:
        raw = _npy(np.zeros(shape, dtype=np.dtype(dtype)))
    how = draw(st.sampled_from(["keep", "truncate", "flip", "shape", "descr", "garbage"]))
    if how == "truncate":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ (1 << draw(st.integers(0, 7)))]) + raw[i + 1:]
    elif how in ("shape", "descr"):
        header_end = raw.index(b"\n") + 1
        header = raw[10:header_end].decode("latin1")
        if how == "shape":
            lie = draw(st.sampled_from(["(10**12,)", "(1000000000000,)", "(4294967296, 4294967296)", "(-1,)",
                                        "(3, 'x')", "()", "(1 << 62,)", "(2, 3, 4, 5, 6, 7, 8, 9, 10)"]))
            header = header.replace(f"'shape': {shape!r}".replace(",)", ",)"), f"'shape': {lie}")
        else:
            lie = draw(st.sampled_from(["|O", '[("a", "<f8")]', "<f8", "x"]))
            header = header.replace(f"'descr': '{np.dtype(dtype).str}'", f"'descr': {lie!r}")
        body = header.encode("latin1")
        raw = raw[:8] + len(body).to_bytes(2, "little") + body + raw[header_end:]
    elif how == "garbage":
        raw = draw(st.binary(max_size=200))
    return raw


def npy_text():
    return st.one_of(npy_bytes().map(_b64), st.text(max_size=30), st.binary(max_size=40).map(
        lambda b: base64.b64encode(b).decode()[:-1] if b else "="))


def _only_wire_errors(fn, *args):
    """Call fn; any outcome but a value or WireError fails the property."""
    started = time.monotonic()
    try:
        fn(*args)
    except wire.WireError:
        pass
    assert time.monotonic() - started < 10, "the decoder took too long"


@FUZZ
@given(json_value)
def test_decode_of_arbitrary_json_is_a_value_or_a_wire_error(tree):
    _only_wire_errors(wire.decode, tree, CAP, GEN)


@FUZZ
@given(tagged())
def test_decode_of_type_confused_wire_trees_is_a_value_or_a_wire_error(tree):
    _only_wire_errors(wire.decode, tree, CAP, GEN)


@FUZZ
@given(npy_bytes(), st.sampled_from(["a", "g"]))
def test_mutated_npy_payloads_give_plain_arrays_or_a_wire_error(raw, tag):
    try:
        value = wire.decode([tag, _b64(raw)], CAP, GEN)
    except wire.WireError:
        return
    array = np.asarray(value)
    assert type(value) is np.ndarray if tag == "a" else isinstance(value, np.generic)
    assert array.dtype.kind in wire.NUMERIC_KINDS and not array.dtype.hasobject and array.dtype.isnative


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin1")),
                 json_value.map(json.dumps), tagged().map(lambda t: json.dumps(["ok", t])),
                 st.integers(), st.none(), st.lists(st.integers(), max_size=3)),
       st.integers(0, 400))
def test_parse_reply_and_callback_of_anything_truncated_or_not(text, cut):
    for candidate in (text, text[:cut] if isinstance(text, str) else text):
        _only_wire_errors(wire.parse_reply, candidate, CAP)
        _only_wire_errors(wire.parse_callback, candidate, CAP)


@pytest.mark.parametrize("text", [
    "[" * 200_000, "[" * 200_000 + "]" * 200_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
    '["ok", ' + '["l", [' * 5_000 + '["n"]' + "]]" * 5_000 + "]",
    '["ok", ["s", "' + "x" * (CAP + 8192) + '"]]',
    '["callback", "f", ' + '["l", [' * 50 + "]]" * 50 + ", []]",
    '["ok", ["i", "' + "9" * 10_000 + '"]]', '["ok", ["f", "0x1p99999999999"]]', '["ok", NaN]',
    '["ok", ["d", [[["h", 1, "x", true], ["n"]]]]]', '["ok", ["c", [[[]], "0x1p1"]]]',
    '["ok", ["l", ' + json.dumps([["n"]] * (wire.MAX_ITEMS + 10)) + "]]",
])
def test_deeply_nested_oversized_and_confused_replies_are_clean_errors(text):
    started = time.monotonic()
    try:
        reply = wire.parse_reply(text, CAP)
        if len(reply) == 2:
            wire.decode(reply[1], CAP, GEN)
    except wire.WireError as err:
        assert str(err)
    try:
        request = wire.parse_callback(text, CAP)
        wire.decode(request[1], CAP, GEN)
    except wire.WireError:
        pass
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("shape", ["(10**12,)", "(1 << 40,)", "(1 << 28, 8)", "(2000, 2000, 2000)"])
def test_an_npy_header_that_lies_about_its_size_costs_no_memory(shape):
    """A few bytes claiming a huge array are refused before anything of that size is allocated."""
    raw = _npy(np.zeros(3))
    header_end = raw.index(b"\n") + 1
    header = raw[10:header_end].decode("latin1").replace("'shape': (3,)", f"'shape': {shape}")
    body = header.encode("latin1")
    lying = raw[:8] + len(body).to_bytes(2, "little") + body + raw[header_end:]
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError):
            wire.decode(["a", _b64(lying)], CAP, GEN)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP, f"decoding a lying header took {peak} bytes"


def test_a_valid_array_at_the_cap_crosses_and_one_past_it_does_not():
    fits = np.zeros(CAP // 8 // 2, dtype=np.float64)       # base64 grows 4/3: half the cap in raw bytes
    assert wire.decode(["a", _b64(_npy(fits))], CAP, GEN).shape == fits.shape
    with pytest.raises(wire.WireError, match="larger than the limit"):
        wire.decode(["a", _b64(_npy(np.zeros(CAP // 8 + 1)))], CAP, GEN)
