"""Your own functions from an earlier notebook, for a later notebook that races or compares against them.

    >>> conv_forward_naive = function_from_notebook("../02_conv_forward/conv_forward.ipynb", "conv_forward_naive")

The earlier notebook is read, not run: only its imports and its function definitions (from every cell that is
not a test cell) are executed, in a fresh namespace, so its demonstrations, figures and timings do not run
again. Nothing is graded through this: it serves demonstrations such as "your loops against your matrix
product", and returns None, with a message saying why, when the notebook or the function is not there.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Callable

__all__ = ["function_from_notebook"]


def _is_test_cell(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return bool(meta.get("grade")) and not meta.get("solution")


def _definitions(source: str) -> ast.Module | None:
    """The imports and function and class definitions of one cell (IPython magics and shell lines dropped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    return ast.Module(body=[node for node in tree.body if isinstance(node, keep)], type_ignores=[])


def function_from_notebook(path: str | Path, name: str, *, quiet: bool = False) -> Callable | None:
    """The function ``name`` as the notebook at ``path`` defines it, or None (with a printed reason)."""
    path = Path(path)

    def unavailable(reason: str) -> None:
        if not quiet:
            print(f"{name} from {path}: {reason}")
        return None

    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return unavailable("the notebook is not there (this needs your earlier notebook next to this one)")
    except (OSError, ValueError) as err:
        return unavailable(f"the notebook could not be read ({err})")
    namespace: dict = {"__name__": f"earlier_{path.stem}"}
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or _is_test_cell(cell):
            continue
        source = cell.get("source", "")
        tree = _definitions("".join(source) if isinstance(source, list) else source)
        if tree is None or not tree.body:
            continue
        try:
            exec(compile(tree, f"{path} cell {index}", "exec"), namespace)
        except Exception as err:  # an import that fails in this environment: report it, keep what was defined
            if not quiet:
                print(f"{path} cell {index}: {type(err).__name__}: {err}")
    function = namespace.get(name)
    if not callable(function):
        return unavailable(f"the notebook defines no function {name}")
    return function
