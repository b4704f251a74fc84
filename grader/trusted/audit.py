"""Import audit: which modules a submission's own code uses, against the assignment's allowed list.

A naive-convolution notebook is meant to be solved with numpy loops, so ``scipy.signal.correlate`` or
``torch.nn.functional.conv2d`` in a solution is worth the instructor's attention. The audit is configured per
assignment in ``nbgrader_config.py``::

    c.ImportAudit.default_allowed = ["numpy", "math"]
    c.ImportAudit.allowed = {"06_fast_conv": ["numpy", "math", "numpy.lib.stride_tricks"]}
    c.ImportAudit.policy = "flag"      # or "zero": every test cell of the notebook scores 0
    c.ImportAudit.forbidden = {"03_conv_backward": ["conv_backward"]}   # given layers that are the exercise

A name in ``forbidden`` is a given layer of the student package (``workbook.layers``) that the assignment asks
the student to write: using it in the student's own code (importing it, or calling it where the notebook's set-up
imported it) scores the notebook 0 under ``forbidden_policy`` (default "zero"), whatever ``policy`` says.

Two checks:

* **static** — the AST of every cell the student wrote (solution cells, and any cell whose code is not the
  instructor's): ``import`` / ``from … import`` anywhere (function bodies included), ``__import__("…")`` and
  ``importlib.import_module("…")``; a computed module name is reported as such;
* **dynamic** — third-party top-level packages that appear in the kernel's ``sys.modules`` while the student's
  cells or the student's functions run (standard-library modules are left to the static check, because numpy
  and IPython load them lazily on their own).
"""
from __future__ import annotations

import ast
import sys
from dataclasses import asdict, dataclass

from traitlets import Dict, Enum, List, Unicode
from traitlets.config import LoggingConfigurable

from .. import cells
from ..reference import python_lines


@dataclass(frozen=True)
class Finding:
    """One import outside the allowed list."""

    module: str
    where: str   # "cell conv_forward_naive" / "cell 7" / "while grading test_conv_forward"
    how: str     # "import statement", "__import__ call", "importlib.import_module", "computed name",
    #              "loaded at run time", "given layer"
    line: int = 0

    def describe(self) -> str:
        at = f", line {self.line}" if self.line else ""
        if self.how == GIVEN_LAYER:
            return f"{self.module}: a given layer that this assignment asks you to write ({self.where}{at})"
        return f"{self.module} ({self.how}, {self.where}{at})"

    def as_dict(self) -> dict:
        return asdict(self)


class ImportAudit(LoggingConfigurable):
    """The allowed modules per assignment and what a finding costs."""

    default_allowed = List(Unicode(), ["numpy", "math"],
                           help="Modules a solution may import when its assignment has no entry in `allowed`."
                           ).tag(config=True)
    allowed = Dict(help="Assignment id -> list of allowed modules (a module allows its submodules).").tag(config=True)
    policy = Enum(["flag", "zero"], "flag",
                  help="flag: report findings only; zero: every test cell of an offending notebook scores 0."
                  ).tag(config=True)
    forbidden = Dict(help="Assignment id -> names of given layers (workbook.layers) that are that assignment's "
                          "exercise and may not be used by the student's code.").tag(config=True)
    forbidden_policy = Enum(["flag", "zero"], "zero",
                            help="What using a forbidden given layer costs (default: the notebook scores 0)."
                            ).tag(config=True)

    GIVEN_MODULE = "workbook.layers"

    def forbidden_for(self, assignment: str) -> set[str]:
        return set(self.forbidden.get(assignment, ()))

    def zeroes(self, findings: list["Finding"]) -> bool:
        """Whether these findings set the notebook's score to 0."""
        if any(f.how == GIVEN_LAYER for f in findings):
            return self.forbidden_policy == "zero" or self.policy == "zero"
        return bool(findings) and self.policy == "zero"

    def allowed_for(self, assignment: str) -> list[str]:
        return list(self.allowed.get(assignment, self.default_allowed))

    @staticmethod
    def is_allowed(module: str, allowed: list[str]) -> bool:
        return any(module == a or module.startswith(a + ".") for a in allowed)

    def static(self, nb, source_nb, assignment: str) -> list[Finding]:
        allowed = self.allowed_for(assignment) + [self.GIVEN_MODULE.split(".")[0]]
        found = [f for f in static_imports(nb, source_nb) if not self.is_allowed(f.module, allowed)]
        forbidden = self.forbidden_for(assignment)
        if forbidden:
            found += given_layer_uses(nb, source_nb, forbidden, self.GIVEN_MODULE)
        return found

    def dynamic(self, before: set[str], after: set[str], where: str, assignment: str) -> list[Finding]:
        allowed = self.allowed_for(assignment)
        new = sorted(m for m in after - before
                     if m not in sys.stdlib_module_names and not m.startswith("_") and not self.is_allowed(m, allowed))
        return [Finding(m, where, "loaded at run time") for m in new]


GIVEN_LAYER = "given layer"


def given_layer_uses(nb, source_nb, forbidden: set[str], module: str) -> list[Finding]:
    """Uses of the forbidden given layers in the student's cells: imports of them (or of their whole module) and
    reads of their names that the student's own code does not define."""
    student = list(student_cells(nb, source_nb))
    bound: set[str] = set()
    trees = []
    for where, cell in student:
        try:
            tree = ast.parse(python_lines(cell.source))
        except SyntaxError:
            continue
        trees.append((where, tree))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
    found = []
    for where, tree in trees:
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.ImportFrom) and node.module in (module, module.rsplit(".", 1)[0]):
                names = {a.name for a in node.names}
                if node.module == module:
                    hits = sorted(names & forbidden) or (["*"] if "*" in names else [])
                else:  # from workbook import layers
                    hits = [module] if module.rsplit(".", 1)[1] in names else []
                found += [Finding(f"{module}.{h}" if h != module else module, where, GIVEN_LAYER, line)
                          for h in hits]
            elif isinstance(node, ast.Import) and any(a.name == module for a in node.names):
                found.append(Finding(module, where, GIVEN_LAYER, line))
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in forbidden \
                    and node.id not in bound:
                found.append(Finding(f"{module}.{node.id}", where, GIVEN_LAYER, line))
            elif isinstance(node, ast.Attribute) and node.attr in forbidden and node.attr not in bound:
                found.append(Finding(f"{module}.{node.attr}", where, GIVEN_LAYER, line))
    return found


def _instructor_sources(source_nb) -> set[str]:
    return {cell.source.strip() for cell in source_nb.cells
            if cell.cell_type == "code" and not cells.is_solution(cell)}


def student_cells(nb, source_nb):
    """(label, cell) for each code cell the student wrote: solution cells and any code not the instructor's."""
    instructor = _instructor_sources(source_nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cells.is_test(cell):
            continue
        if cells.is_solution(cell) or cell.source.strip() not in instructor:
            yield f"cell {cells.grade_id(cell) or index}", cell


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    return ""


def static_imports(nb, source_nb) -> list[Finding]:
    """Every module the student's cells import, however it is spelled."""
    found = []
    for where, cell in student_cells(nb, source_nb):
        try:
            tree = ast.parse(python_lines(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Finding(a.name, where, "import statement", node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append(Finding(node.module, where, "import statement", node.lineno))
            elif isinstance(node, ast.Call):
                func = _dotted(node.func)
                if func in ("__import__", "importlib.import_module", "import_module", "builtins.__import__"):
                    how = "__import__ call" if func.endswith("__import__") else "importlib.import_module"
                    arg = node.args[0] if node.args else None
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.append(Finding(arg.value, where, how, node.lineno))
                    else:
                        found.append(Finding("<computed name>", where, f"{how} with a computed name", node.lineno))
    return found
