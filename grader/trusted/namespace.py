"""The namespace a grade cell runs in, inside the trusted grader.

Three kinds of names, resolved in this order:

1. names the cell binds itself (assignments, imports, ``def``, loop variables, …) are ordinary locals;
2. names bound by ``import`` statements of the *source* notebook's instructor cells (``np``, ``check_array``)
   are imported here, in the grader — a student who rebinds ``check_array`` or patches ``numpy`` changes only
   their own kernel;
3. every other free name is looked up in the student's kernel: plain data is copied across, callables become
   :class:`StudentFunction` proxies, other objects :class:`~grader.trusted.wire.Handle` s.

Python built-ins are the grader's own.
"""
from __future__ import annotations

import ast
import builtins
from typing import Any, Iterable

from nbformat import NotebookNode

from .. import cells
from ..reference import python_lines
from .wire import Handle

BUILTIN_NAMES = frozenset(dir(builtins))


def free_names(code: str) -> set[str]:
    """Names the code reads but never binds anywhere (a conservative, whole-cell approximation)."""
    tree = ast.parse(code)
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return loaded - bound - BUILTIN_NAMES


def instructor_imports(source_nb: NotebookNode) -> list[ast.stmt]:
    """Top-level import statements of the source notebook's instructor code cells (not solutions, not tests)."""
    found = []
    for cell in source_nb.cells:
        if cell.cell_type != "code" or cells.is_solution(cell) or cells.is_test(cell):
            continue
        try:
            tree = ast.parse(python_lines(cell.source))
        except SyntaxError:
            continue
        found += [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                  and not any(alias.name == "*" for alias in node.names)]
    return found


def trusted_globals(imports: Iterable[ast.stmt]) -> dict[str, Any]:
    """A fresh module namespace holding the instructor's imports, executed in the grader."""
    namespace: dict[str, Any] = {"__name__": "__grade_cell__", "__builtins__": builtins}
    module = ast.Module(body=list(imports), type_ignores=[])
    exec(compile(module, "<instructor imports>", "exec"), namespace)
    return namespace


class StudentFunction:
    """A callable that lives in the student's kernel. Calling it runs it there; only plain data comes back."""

    __slots__ = ("_handle", "_call", "_substitutes", "_stand_in", "__name__", "__qualname__")

    def __init__(self, handle: Handle, call, name: str | None = None):
        self._handle = handle
        self._call = call
        self._substitutes: dict = {}
        self._stand_in = None
        self.__name__ = self.__qualname__ = name or handle.type_name

    def __call__(self, *args, **kwargs):
        if self._stand_in is not None:
            return self._stand_in(*args, **kwargs)
        if self._substitutes:
            return self._call(self._handle, args, kwargs, substitutes=self._substitutes)
        return self._call(self._handle, args, kwargs)

    def stand_in(self, trusted) -> None:
        """From now on, calls in this test cell run ``trusted`` (the reference) in the grader instead."""
        self._stand_in = trusted

    def substitute(self, replacements: dict) -> None:
        """From now on, run with these global names of the student's code bound to trusted functions."""
        self._substitutes = dict(replacements)

    def __repr__(self) -> str:
        return f"<student function {self.__name__} (runs in the student's kernel)>"


def unwrap(value: Any) -> Any:
    """Replace proxies by their handles, recursively, so the value can be sent to the kernel."""
    if isinstance(value, StudentFunction):
        return value._handle
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def wrap(value: Any, call, name: str | None = None) -> Any:
    """Replace callable handles by :class:`StudentFunction` proxies, recursively."""
    if isinstance(value, Handle):
        return StudentFunction(value, call, name) if value.is_callable else value
    if isinstance(value, list):
        return [wrap(v, call) for v in value]
    if isinstance(value, tuple):
        return tuple(wrap(v, call) for v in value)
    if isinstance(value, dict):
        return {k: wrap(v, call) for k, v in value.items()}
    return value
