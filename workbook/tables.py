"""Layer tables: the rows that describe an architecture layer by layer, checked and printed.

Notebook 08 has you write ``layer_table(arch, input_shape)``, which returns one dict per layer (plus a first
row for the input) with the keys of :data:`ROW_KEYS`. This module only reads such rows: it checks them
against expected columns with messages that name the row and the column, turns them into an integer array
(how the grader compares them), and prints them. It computes nothing about an architecture itself.

    >>> check_table("layer_table", rows, {"shape": [(1, 32, 32), (6, 28, 28)], "weights": [0, 150]},
    ...             case="LeNet-5, first two rows")
    ✓ layer_table matches for LeNet-5, first two rows (2 rows; shape, weights)
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from .checks import CheckFailure

__all__ = ["ROW_KEYS", "COUNT_KEYS", "table_array", "check_table", "print_table", "format_bytes"]

#: The keys of every row of a layer table.
ROW_KEYS = ("name", "type", "shape", "activations", "weights", "biases", "mult_adds", "rf")
#: The keys whose values are single counts (ints).
COUNT_KEYS = ("activations", "weights", "biases", "mult_adds")
#: Column order of :func:`table_array`.
ARRAY_COLUMNS = ("C", "H", "W", "activations", "weights", "biases", "mult_adds", "rf_h", "rf_w")


def _where(case: str | None) -> str:
    return f" for {case}" if case else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _ints(value: Any, count: int) -> tuple | None:
    """``value`` as a tuple of ``count`` Python ints, or None when it is not one."""
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != count:
        return None
    if not all(_is_int(v) for v in value):
        return None
    return tuple(int(v) for v in value)


def _label(rows: Sequence, index: int) -> str:
    row = rows[index]
    name = row.get("name") if isinstance(row, Mapping) else None
    return f"row {index}" + (f" ({name})" if isinstance(name, str) else "")


def _validate(name: str, rows: Any, case: str | None) -> list:
    """The rows as a list of dicts with well-formed values; CheckFailure with a plain sentence otherwise."""
    if rows is None:
        raise CheckFailure(f"{name}{_where(case)}: returned None; it should return a list of rows "
                           f"(is a `return` missing?)")
    if not isinstance(rows, (list, tuple)):
        raise CheckFailure(f"{name}{_where(case)}: should return a list of rows (dicts), got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise CheckFailure(f"{name}{_where(case)}: row {index} should be a dict, got {type(row).__name__}")
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise CheckFailure(f"{name}{_where(case)}: {_label(rows, index)} has no key "
                               f"{', '.join(repr(k) for k in missing)} (every row has {', '.join(ROW_KEYS)})")
        if _ints(row["shape"], 3) is None:
            raise CheckFailure(f"{name}{_where(case)}: {_label(rows, index)}: 'shape' should be 3 ints (C, H, W), "
                               f"got {row['shape']!r}")
        if _ints(row["rf"], 2) is None:
            raise CheckFailure(f"{name}{_where(case)}: {_label(rows, index)}: 'rf' should be 2 ints (height, width), "
                               f"got {row['rf']!r}")
        for key in COUNT_KEYS:
            if not _is_int(row[key]):
                raise CheckFailure(f"{name}{_where(case)}: {_label(rows, index)}: {key!r} should be an int (a count), "
                                   f"got {type(row[key]).__name__} {row[key]!r}")
    return list(rows)


def table_array(rows: Any, *, name: str = "layer_table", case: str | None = None) -> np.ndarray:
    """The numbers of a layer table as an int64 array of shape (rows, 9).

    Columns: C, H, W of the output shape, activations, weights, biases, mult_adds, and the receptive
    field's height and width. Raises :class:`CheckFailure` when ``rows`` is not a list of well-formed rows.
    """
    rows = _validate(name, rows, case)
    data = [list(_ints(r["shape"], 3)) + [int(r[k]) for k in COUNT_KEYS] + list(_ints(r["rf"], 2)) for r in rows]
    return np.array(data, dtype=np.int64).reshape(len(rows), len(ARRAY_COLUMNS))


def _column(rows: list, key: str) -> list:
    if key == "shape":
        return [_ints(r["shape"], 3) for r in rows]
    if key == "rf":
        return [_ints(r["rf"], 2) for r in rows]
    if key in COUNT_KEYS:
        return [int(r[key]) for r in rows]
    return [r[key] for r in rows]


def check_table(name: str, rows: Any, expected: Mapping[str, Sequence], *, case: str | None = None,
                hint: str | None = None, quiet: bool = False) -> None:
    """Check a layer table against expected columns: ``{"shape": [...], "weights": [...], ...}``.

    Each expected column has one entry per row (so the number of rows is checked too); columns not given
    are not compared. Shapes and receptive fields compare as tuples of ints, counts as ints. On failure the
    message names the first row and column that differ.
    """
    rows = _validate(name, rows, case)
    lengths = {len(column) for column in expected.values()}
    extra = f"\n  Hint: {hint}" if hint else ""
    for length in lengths:
        if len(rows) != length:
            raise CheckFailure(f"{name}{_where(case)}: expected {length} rows (the input and one per top-level "
                               f"layer), got {len(rows)}{extra}")
    for key, column in expected.items():
        got = _column(rows, key)
        for index, (g, e) in enumerate(zip(got, column)):
            e = tuple(e) if isinstance(e, (list, tuple)) else e
            if g != e:
                raise CheckFailure(f"{name}{_where(case)}: {_label(rows, index)}: {key} expected {e!r}, "
                                   f"got {g!r}{extra}")
    if not quiet:
        print(f"✓ {name} matches{_where(case)} ({len(rows)} rows; {', '.join(expected)})")


def _fmt(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    if _is_int(value):
        return f"{int(value):,}"
    return str(value)


def print_table(rows: Sequence[Mapping], keys: Sequence[str] = ("name", "shape", "activations", "weights", "biases",
                                                                   "mult_adds", "rf"), *, total: bool = True) -> None:
    """Print rows as an aligned text table (shapes as CxHxW), with a line of column totals for the counts."""
    table = [[_fmt(row.get(key, "")) for key in keys] for row in rows]
    header = list(keys)
    if total:
        table.append(["total" if i == 0 else _fmt(sum(int(r[k]) for r in rows)) if k in COUNT_KEYS else ""
                      for i, k in enumerate(keys)])
    widths = [max(len(line[i]) for line in table + [header]) for i in range(len(keys))]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for n, line in enumerate(table):
        if total and n == len(table) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    print("\n".join(lines))


def format_bytes(n: int | float) -> str:
    """A byte count in binary units (1 KiB = 1024 bytes): ``format_bytes(77070336) == '73.5 MiB'``."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table_difference(got: Sequence[Mapping], expected: Sequence[Mapping]) -> str | None:
    """Where two well-formed layer tables first differ, as a sentence ("row 3 (C3): biases expected 16, got 0"),
    or None when they agree."""
    if len(got) != len(expected):
        return f"the table has {len(got)} rows; expected {len(expected)} (the input, then one per top-level layer)"
    for index, (g, e) in enumerate(zip(got, expected)):
        for key in ("shape",) + COUNT_KEYS + ("rf",):
            gv, ev = _column([g], key)[0], _column([e], key)[0]
            if gv != ev:
                return f"{_label(expected, index)}: {key} expected {ev!r}, got {gv!r}"
    return None


__all__ += ["table_difference"]
