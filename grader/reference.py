"""The reference implementation is the solution cells of the source notebooks; this module loads it.

``reference("02_conv_forward")`` executes the non-test code cells of ``solutions/02_conv_forward/*.ipynb``
(solution cells included, test cells skipped) in a fresh namespace and returns that namespace, so hidden
tests compare a student's function with the very code the instructor wrote in the notebook. Nothing else
in the project holds a second copy of the reference.

Rules for source-notebook code that the loader relies on (docs/AUTHORING.md has the full list):

* IPython-only lines (``%matplotlib inline``, ``!pip ...``) are skipped; everything else is plain Python.
* Figures drawn while loading are neither shown nor kept (``plt.show`` is a no-op then); ``display`` is a no-op.
* A cell tagged ``skip-reference`` (a timing demo, a long experiment) is not executed.
"""
from __future__ import annotations

import ast
import contextlib
import io
import textwrap
import types
from functools import lru_cache
from pathlib import Path
from typing import Callable

from . import cells
from .course import Course, CourseError

SKIP_TAG = "skip-reference"


class ReferenceError_(CourseError):
    """The reference could not be loaded; the message names the notebook and cell."""


class Reference(types.SimpleNamespace):
    """Names defined by a source notebook's non-test cells, plus helpers to derive known mistakes."""

    def __init__(self, assignment: str, notebook: Path, namespace: dict, sources: dict[str, str]):
        public = {k: v for k, v in namespace.items() if not k.startswith("_")}
        super().__init__(**public)
        object.__setattr__(self, "_assignment", assignment)
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_namespace", namespace)
        object.__setattr__(self, "_sources", sources)

    def source_of(self, function: str) -> str:
        """The source text of a function defined in the notebook."""
        try:
            return self._sources[function]
        except KeyError:
            raise ReferenceError_(f"{self._notebook}: no function {function!r} is defined in its code cells") from None

    def mutant(self, function: str, old: str, new: str, *more: tuple[str, str]) -> Callable:
        """A copy of reference ``function`` with the text ``old`` replaced by ``new`` in its body, and each
        further ``(old, new)`` pair of ``more`` after it.

        Used to describe known mistakes (``+=`` written as ``=``), to build the demo class's buggy
        student, and in tests to shrink a reference's pieces. Raises if an ``old`` does not occur, so a
        mutation can never silently stop applying when the solution is edited.
        """
        src = self.source_of(function)
        for before, after in [(old, new), *more]:
            if before not in src:
                raise ReferenceError_(f"{self._notebook}: cannot derive a mistake from {function}: the text "
                                      f"{before!r} does not occur in its source")
            src = src.replace(before, after)
        namespace = dict(self._namespace)
        exec(compile(src, f"<mutant of {function}>", "exec"), namespace)
        return namespace[function]


def python_lines(source: str) -> str:
    """Cell source without IPython-only lines (magics and shell escapes)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _function_sources(tree: ast.Module, source: str) -> dict[str, str]:
    lines = source.splitlines()
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            found[node.name] = textwrap.dedent("\n".join(lines[start:node.end_lineno])) + "\n"
    return found


@contextlib.contextmanager
def _quiet_figures():
    """Figures drawn while loading are never shown and are closed after; the backend is left alone.

    The loader also runs inside a kernel (a hidden test in nbval or stock nbgrader): switching that
    kernel's backend would stop the notebook's own later figures from displaying.
    """
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    show = plt.show
    plt.show = lambda *args, **kwargs: None
    try:
        yield
    finally:
        plt.show = show
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _load(assignment: str, notebook: Path) -> Reference:
    nb = cells.read(notebook)
    namespace: dict = {"__name__": f"reference_{assignment}", "display": lambda *a, **k: None}
    sources: dict[str, str] = {}
    with _quiet_figures():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or cells.is_test(cell) or SKIP_TAG in cell.metadata.get("tags", []):
                continue
            source = python_lines(cell.source)
            try:
                tree = ast.parse(source, filename=f"{notebook} cell {index}")
                sources.update(_function_sources(tree, source))
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(tree, f"{notebook} cell {index}", "exec"), namespace)
            except Exception as err:
                raise ReferenceError_(f"{notebook}: code cell {index} ({cells.grade_id(cell) or 'no grade id'}) "
                                      f"failed while loading the reference: {type(err).__name__}: {err}") from err
    return Reference(assignment, notebook, namespace, sources)


@lru_cache(maxsize=None)
def _cached(assignment: str, notebook: str, mtime_ns: int) -> Reference:
    return _load(assignment, Path(notebook))


def reference(assignment: str, course: Course | None = None) -> Reference:
    """The reference namespace of an assignment (its one source notebook), cached per process."""
    course = course or Course.at()
    notebooks = course.source_notebooks(assignment)
    if len(notebooks) != 1:
        raise ReferenceError_(f"{course.source / assignment}: expected exactly one source notebook, "
                              f"found {len(notebooks)}")
    path = notebooks[0]
    return _cached(assignment, str(path), path.stat().st_mtime_ns)
