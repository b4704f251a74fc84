"""Grading one notebook: student cells in the sandboxed kernel, grade cells in the trusted grader.

:class:`GradingEngine` walks the notebook once, top to bottom:

* a code cell that is not a test cell (set-up, solution, demo, or a cell the student added) runs in the
  student's kernel, with a time limit that kills the kernel and an output cap;
* a test cell runs here, in the grader, with the *instructor's* code for that cell (taken from the source
  notebook by grade id, never from the submission) in a namespace built by :mod:`grader.trusted.namespace`;
  its outputs — an error output when it fails, so nbgrader scores 0 — are written here, from what the trusted
  side saw;
* when the kernel dies or is killed, the cell that was running fails with the reason, and before the next cell
  the kernel is restarted and the cells that had run are run again (without the one that killed it), so later
  tests that do not depend on the broken code can still be graded. The number of restarts is bounded.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import io
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat
from nbformat import NotebookNode

from .. import cells
from ..leaks import split_regions
from ..reference import python_lines
from . import wire
from .audit import GIVEN_LAYER, Finding, ImportAudit, student_cells
from .kernels import Limits, sandbox_status
from .namespace import free_names, instructor_imports, trusted_globals, unwrap, wrap
from .session import (KernelDied, KernelSession, KernelUnavailable, Options, OutputLimitExceeded,
                      StudentCodeTimeout, error_output)

KERNEL_FAILURES = (KernelDied, StudentCodeTimeout, OutputLimitExceeded)
NOTICE_TAG = "trusted-grader-notice"


class GradingError(Exception):
    """The notebook could not be graded at all (the kernel never started); no score should be recorded."""


@dataclass
class NotebookReport:
    """What the trusted grader did with one notebook, beyond the scores in the cells' outputs."""

    sandbox_mode: str = "none"
    sandbox_message: str = ""
    restarts: int = 0
    events: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    policy: str = "flag"
    seconds: float = 0.0          # the whole notebook, wall time
    student_seconds: float = 0.0  # of which running code in the student's kernel (cells and calls)
    startup_seconds: float = 0.0  # of which waiting for the kernel to start (zero for a warm kernel)
    limits: dict = field(default_factory=dict)      # the sandbox's resource limits (grader.trusted.sandbox.Limits)

    @property
    def degraded(self) -> bool:
        return self.sandbox_mode != "bwrap"

    def notice_markdown(self) -> str:
        lines = ["**Graded by the trusted autograder.** Test cells ran in the grader, not in your kernel; "
                 "your code ran in a separate kernel" + ("" if self.sandbox_mode == "none" else " (sandboxed)") + "."]
        lines.append(f"- Sandbox: `{self.sandbox_mode}` — {self.sandbox_message}")
        for note in self.restored:
            lines.append(f"- {note}")
        for event in self.events:
            lines.append(f"- {event}")
        if self.findings:
            zero = self.policy == "zero" or any(f.how == GIVEN_LAYER for f in self.findings)
            cost = ("every test cell of this notebook scores 0 (the course's import policy)" if zero
                    else "reported to the instructor")
            lines.append(f"- Import audit: modules outside the allowed list ({cost}):")
            lines += [f"    - {f.describe()}" for f in self.findings]
        else:
            lines.append("- Import audit: no module outside the allowed list.")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"sandbox_mode": self.sandbox_mode, "sandbox_message": self.sandbox_message,
                "degraded": self.degraded, "restarts": self.restarts, "events": list(self.events),
                "restored": list(self.restored), "findings": [f.as_dict() for f in self.findings],
                "policy": self.policy, "seconds": round(self.seconds, 3),
                "student_seconds": round(self.student_seconds, 3), "startup_seconds": round(self.startup_seconds, 3),
                "limits": dict(self.limits)}

    @classmethod
    def from_dict(cls, data: dict) -> "NotebookReport":
        return cls(sandbox_mode=data["sandbox_mode"], sandbox_message=data["sandbox_message"],
                   restarts=data["restarts"], events=list(data["events"]), restored=list(data["restored"]),
                   findings=[Finding(**f) for f in data["findings"]], policy=data["policy"],
                   seconds=data["seconds"], student_seconds=data.get("student_seconds", 0.0),
                   startup_seconds=data.get("startup_seconds", 0.0), limits=dict(data.get("limits", {})))


# -- restoring the instructor's cells -------------------------------------------------------------------------------
def restore_grade_cells(nb: NotebookNode, source_nb: NotebookNode) -> list[str]:
    """Make the submission's test cells exactly the source notebook's, matched by grade id; return what changed.

    A modified test cell gets the instructor's code and metadata back; a missing one is put back after the cell
    that precedes it in the source; of duplicated grade ids the last copy is kept (nbgrader's rule) and the
    others become ordinary cells; a cell claiming to be graded under an id the source does not know is demoted
    to an ordinary cell; a solution cell gets its source metadata (points, flags) back.
    """
    notes: list[str] = []
    source_cells = {cells.grade_id(c): c for c in source_nb.cells if cells.grade_id(c)}
    source_tests = [c for c in source_nb.cells if cells.is_test(c) and cells.grade_id(c)]
    test_ids = {cells.grade_id(c) for c in source_tests}

    last_index: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        gid = cells.grade_id(cell)
        if gid:
            last_index[gid] = index
    for index, cell in enumerate(nb.cells):
        meta = cells.nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if not meta:
            continue
        if gid in source_cells and last_index.get(gid) != index:
            notes.append(f"A second cell with grade id `{gid}` was found; only the last one counts.")
            cell.metadata.pop("nbgrader", None)
            continue
        if gid in test_ids:
            src = source_cells[gid]
            if (_visible(cell.get("source", "")) != _visible(src.source) or cell.cell_type != "code"
                    or {k: meta.get(k) for k in _GRADING_KEYS}
                    != {k: src.metadata.nbgrader.get(k) for k in _GRADING_KEYS}):
                notes.append(f"Test cell `{gid}` was changed in the submission; it was graded with the "
                             f"instructor's version.")
            nb.cells[index] = _fresh_test_cell(src)
        elif gid in source_cells:
            src_meta = source_cells[gid].metadata.nbgrader
            if {k: meta.get(k) for k in ("grade", "solution", "points")} != \
                    {k: src_meta.get(k) for k in ("grade", "solution", "points")}:
                notes.append(f"The grading metadata of cell `{gid}` was changed; the instructor's was restored.")
            for key in ("grade", "solution", "locked", "points", "grade_id", "schema_version"):
                if key in src_meta:
                    cell.metadata.nbgrader[key] = copy.deepcopy(src_meta[key])
                else:
                    cell.metadata.nbgrader.pop(key, None)
        elif meta.get("grade") or meta.get("solution") or gid:
            notes.append(f"Cell with unknown grade id `{gid}` is not graded.")
            cell.metadata.pop("nbgrader", None)

    present = {cells.grade_id(c) for c in nb.cells if cells.is_test(c)}
    order = [cells.grade_id(c) for c in source_nb.cells]
    for src in source_tests:
        gid = cells.grade_id(src)
        if gid in present:
            continue
        position = len(nb.cells)
        for previous in reversed(order[: order.index(gid)]):
            where = [i for i, c in enumerate(nb.cells) if previous and cells.grade_id(c) == previous]
            if where:
                position = where[-1] + 1
                break
        nb.cells.insert(position, _fresh_test_cell(src))
        present.add(gid)
        notes.append(f"Test cell `{gid}` was missing from the submission; the instructor's version was put back.")
    return notes


_GRADING_KEYS = ("grade", "solution", "points", "grade_id", "locked")


def _visible(source: str) -> list[str]:
    """The lines of a test cell a student sees (hidden-test regions removed), ignoring blank lines."""
    return [line.rstrip() for line in split_regions(source)[1] if line.strip()]


def _fresh_test_cell(src: NotebookNode) -> NotebookNode:
    cell = nbformat.v4.new_code_cell(src.source, metadata=copy.deepcopy(src.metadata))
    cell.pop("id", None)
    return cell


# -- the engine -----------------------------------------------------------------------------------------------------
class GradingEngine:
    """Grades one notebook in place. One engine per notebook; nothing is shared between submissions."""

    def __init__(self, assignment: str, course_root: Path, options: Options, audit: ImportAudit | None = None,
                 log: Callable[[str], None] = lambda s: None):
        self.assignment = assignment
        self.course_root = Path(course_root)
        self.options = options
        self.audit = audit or ImportAudit()
        self.log = log

    def run(self, nb: NotebookNode, source_nb: NotebookNode, workdir: Path, *, session: KernelSession | None = None,
            sandbox: tuple[str, str] | None = None) -> NotebookReport:
        """Grade ``nb`` in place. ``session``: a kernel already launched in ``workdir`` (a warm worker's);
        ``sandbox``: the (mode, message) the run worked out once, instead of asking again."""
        started = time.monotonic()
        self.deadline = started + self.options.notebook_timeout
        mode, message = sandbox or sandbox_status(self.options.sandbox, self.options.limits)
        report = NotebookReport(sandbox_mode=mode, sandbox_message=message, policy=self.audit.policy)
        report.limits = (self.options.limits or Limits()).as_dict()
        self.report = report
        report.restored = restore_grade_cells(nb, source_nb)
        report.findings = self.audit.static(nb, source_nb, self.assignment)
        self.trusted_base = trusted_globals(instructor_imports(source_nb))
        student_ids = {id(c) for _, c in student_cells(nb, source_nb)}

        self.session = session or KernelSession(Path(workdir), self.options, self.log)
        try:
            self.session.ready()
        except KernelUnavailable as err:
            raise GradingError(str(err)) from err
        report.sandbox_mode = self.session.sandbox_mode
        self.replay: list[str] = []
        self.modules: set[str] | None = None
        count = 0
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                count += 1
                cell.execution_count = count
                cell.outputs = []
                if time.monotonic() > self.deadline:
                    if cells.is_test(cell):
                        cell.outputs = [error_output(
                            "NotebookTimeLimit", f"the notebook's time limit of {self.options.notebook_timeout:g} s "
                                                 f"was reached before this test could run")]
                    continue
                if cells.is_test(cell):
                    self._grade_cell(cell)
                else:
                    self._student_cell(cell, index, watched=id(cell) in student_ids)
        finally:
            self.session.shutdown()
        report.restarts = self.session.restarts
        if self.audit.zeroes(report.findings):
            given = sorted({f.module for f in report.findings if f.how == GIVEN_LAYER})
            listed = ", ".join(sorted({f.module for f in report.findings}))
            reason = (f"the submission's own code uses the given layer(s) {', '.join(given)}, which this notebook "
                      f"asks you to write yourself; the course scores such notebooks 0" if given else
                      f"the submission uses modules outside the allowed list ({listed}); the course scores such "
                      f"notebooks 0")
            for cell in nb.cells:
                if cells.is_test(cell):
                    cell.outputs = [error_output("ImportPolicyViolation", reason)]
        report.seconds = time.monotonic() - started
        report.student_seconds = self.session.student_seconds
        report.startup_seconds = self.session.startup_seconds
        return report

    # -- kernel state ----------------------------------------------------------------------------------------------
    def _remaining(self, limit: float) -> float:
        return max(0.1, min(limit, self.deadline - time.monotonic()))

    def _ensure_kernel(self) -> None:
        """A live kernel in the state the notebook has reached so far (restart and replay if it died)."""
        while not self.session.alive:
            self.session.restart()  # raises KernelUnavailable when out of restarts
            self.modules = None
            replayed = 0
            for code in list(self.replay):
                result = self.session.run(code, self._remaining(self.options.cell_timeout), silent=True)
                if result.fatal:
                    self.replay.remove(code)
                    self.report.events.append("A cell that had run before failed when it was run again after the "
                                              "restart; it is left out from now on.")
                    break
                replayed += 1
            else:
                self.report.events.append(
                    f"The kernel was restarted (restart {self.session.restarts} of at most "
                    f"{self.options.max_restarts}) and the {replayed} code cell(s) before this point were run again, "
                    f"so the tests that follow could still be graded.")

    def _modules(self) -> set[str]:
        try:
            value, _ = self.session.request({"op": "modules"}, self._remaining(self.options.call_timeout))
            return {m for m in value if isinstance(m, str)} if isinstance(value, list) else set()
        except Exception as err:  # an audit snapshot must never decide a grade
            self.log(f"module snapshot failed: {type(err).__name__}: {err}")
            return set()

    def _audit_around(self, where: str, before: set[str] | None) -> None:
        if before is None or not self.session.alive:
            self.modules = None
            return
        after = self._modules()
        self.report.findings += [f for f in self.audit.dynamic(before, after, where, self.assignment)
                                 if f not in self.report.findings]
        self.modules = after

    # -- student cells ---------------------------------------------------------------------------------------------
    def _student_cell(self, cell: NotebookNode, index: int, watched: bool) -> None:
        try:
            self._ensure_kernel()
        except KernelUnavailable as err:
            cell.outputs = [error_output("KernelUnavailable", f"not run: {err}")]
            return
        if watched and self.modules is None:
            self.modules = self._modules()
        before = self.modules if watched else None
        limit = self._remaining(self.options.cell_timeout)
        result = self.session.run(cell.source, limit)
        cell.outputs = result.outputs
        where = f"cell {cells.grade_id(cell) or index}"
        if result.fatal:
            cell.outputs.append(self.session.fatal_output(result, limit))
            self.report.events.append(f"{where}: {cell.outputs[-1].evalue}. Tests that need what this cell defines "
                                      f"score 0.")
            self.modules = None
            return
        self.replay.append(cell.source)
        if watched:
            self._audit_around(where, before)
        else:
            self.modules = None

    # -- test cells ------------------------------------------------------------------------------------------------
    def _grade_cell(self, cell: NotebookNode) -> None:
        gid = cells.grade_id(cell)
        self.cell_deadline = time.monotonic() + self._remaining(self.options.cell_timeout)
        self.cell_failure: Exception | None = None
        self.printed: list[str] = []
        try:
            self._ensure_kernel()
            self.session.install_bridge()
        except KernelUnavailable as err:
            cell.outputs = [error_output("KernelUnavailable", f"this test could not run: {err}")]
            return
        before = self.modules if self.modules is not None else self._modules()
        cell.outputs = self._run_trusted(python_lines(cell.source), gid)
        if self.cell_failure is not None and not any(o.output_type == "error" for o in cell.outputs):
            failure = self.cell_failure
            cell.outputs.append(error_output(type(failure).__name__, str(failure)))
        if self.cell_failure is not None:
            self.report.events.append(f"test `{gid}`: {self.cell_failure}")
        self._audit_around(f"while grading {gid}", before)

    def _call(self, handle: wire.Handle, args: tuple, kwargs: dict, substitutes: dict | None = None) -> Any:
        if self.cell_failure is not None:
            raise type(self.cell_failure)(f"not called: {self.cell_failure}")
        remaining = self.cell_deadline - time.monotonic()
        if remaining <= 0:
            self.cell_failure = StudentCodeTimeout(f"the test's time limit of {self.options.cell_timeout:g} s "
                                                   f"was used up by the student's code")
            raise self.cell_failure
        limit = self.options.max_call_bytes
        request = {"op": "call",
                   "target": wire.encode(handle, limit, self.session.generation),
                   "args": wire.encode(tuple(unwrap(args)), limit, self.session.generation),
                   "kwargs": wire.encode(unwrap(dict(kwargs)), limit, self.session.generation)}
        if substitutes:
            request["substitute"] = sorted(substitutes)
        try:
            value, printed = self.session.request(request, remaining, substitutes=substitutes)
        except KERNEL_FAILURES as err:
            self.cell_failure = err
            raise
        if printed:
            self.printed.append(printed)
        return wrap(value, self._call)

    def _lookup(self, names: list[str]) -> dict[str, Any]:
        value, _ = self.session.request({"op": "lookup", "names": names},
                                        self._remaining(self.options.call_timeout))
        if not isinstance(value, dict):
            raise wire.WireError("the kernel's answer to a name lookup is not a mapping")
        return {name: wrap(v, self._call, name) for name, v in value.items() if name in names}

    def _run_trusted(self, code: str, gid: str | None) -> list[NotebookNode]:
        """Run instructor test code in this process; return the outputs it produced."""
        buffer = io.StringIO()
        outputs: list[NotebookNode] = []
        namespace = dict(self.trusted_base)
        try:
            tree = ast.parse(code, filename=f"<test cell {gid}>")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            names = sorted(free_names(code) - set(namespace))
            if names:
                try:
                    namespace.update(self._lookup(names))
                except KERNEL_FAILURES as err:
                    self.cell_failure = err
                    raise
            with _course_env(self.course_root), contextlib.redirect_stdout(buffer), \
                    contextlib.redirect_stderr(buffer):
                exec(compile(tree, f"<test cell {gid}>", "exec"), namespace)
                value = eval(compile(ast.Expression(last.value), f"<test cell {gid}>", "eval"), namespace) \
                    if last is not None else None
        except Exception as err:
            _append_stream(outputs, buffer.getvalue(), self.printed)
            outputs.append(_trusted_error(err))
            diagnosis = self._diagnosis_after(err, code, gid, namespace) if self.cell_failure is None else None
            if diagnosis:
                outputs[-1].evalue += f"\n  {diagnosis}"
                outputs[-1].traceback[-1] = f"{outputs[-1].ename}: {outputs[-1].evalue}"
            if isinstance(err, NameError) and any("Tests that need" in e for e in self.report.events):
                outputs[-1].evalue += (" (an earlier cell was stopped before it could define it; see the notice at "
                                       "the top of the notebook)")
                outputs[-1].traceback[-1] = f"{outputs[-1].ename}: {outputs[-1].evalue}"
            return outputs
        except SystemExit as err:  # test code never exits the grader
            _append_stream(outputs, buffer.getvalue(), self.printed)
            outputs.append(error_output("SystemExit", str(err)))
            return outputs
        _append_stream(outputs, buffer.getvalue(), self.printed)
        if value is not None:
            outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": repr(value)},
                                                  execution_count=None))
        return outputs


    DIAGNOSIS = "This is exactly what you get when"

    def _diagnosis_after(self, err: BaseException, code: str, gid: str | None, namespace: dict) -> str | None:
        """When a visible check failed, the named-mistake diagnosis of the hidden tests that did not get to run.

        The hidden regions after the failing line run in the same namespace, their output discarded; if one fails
        with a message naming a known mistake, that sentence is returned (the cell scores 0 either way).
        """
        if self.DIAGNOSIS in str(err):
            return None
        regions = _hidden_regions(code)
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == f"<test cell {gid}>"]
        if not regions or not frames:
            return None
        failed_at = frames[0].lineno
        if any(start <= failed_at <= end for start, end in regions):
            return None      # the hidden tests themselves failed: their message is already the verdict
        lines = code.splitlines()
        for start, end in regions:
            if start <= failed_at:
                continue
            hidden = "\n" * (start - 1) + "\n".join(lines[start - 1:end])
            try:
                with _course_env(self.course_root), contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    exec(compile(hidden, f"<test cell {gid}>", "exec"), namespace)
            except Exception as hidden_err:  # any failure here only informs: the verdict is already 0
                text = str(hidden_err)
                if self.DIAGNOSIS in text:
                    return text[text.index(self.DIAGNOSIS):].strip()
                return None
            if self.cell_failure is not None:
                return None
        return None


def _hidden_regions(code: str) -> list[tuple[int, int]]:
    """1-based (first, last) line numbers of the code inside each hidden-test region of a cell."""
    regions, start = [], None
    for number, line in enumerate(code.splitlines(), start=1):
        if line.strip().startswith(cells.BEGIN_HIDDEN):
            start = number + 1
        elif line.strip().startswith(cells.END_HIDDEN) and start is not None:
            regions.append((start, number - 1))
            start = None
    return regions


def _append_stream(outputs: list, text: str, printed: list[str]) -> None:
    if text:
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
    shown = "".join(printed)
    if shown:
        if len(shown) > 4096:
            shown = shown[:4096] + "\n[...]"
        outputs.append(nbformat.v4.new_output(
            "stream", name="stdout", text="\n[printed by your code while the test ran]\n" + shown))


def _trusted_error(err: BaseException) -> NotebookNode:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<test cell")]
    lines = ["Traceback (the test ran in the trusted grader):"]
    lines += [f"  {f.filename}, line {f.lineno}: {f.line or ''}".rstrip() for f in frames]
    lines.append(f"{type(err).__name__}: {err}")
    return nbformat.v4.new_output("error", ename=type(err).__name__, evalue=str(err), traceback=lines)


@contextlib.contextmanager
def _course_env(root: Path):
    """Hidden tests load the reference with ``reference(assignment)``: point it at this course."""
    old = os.environ.get("WORKBOOK_COURSE_ROOT")
    os.environ["WORKBOOK_COURSE_ROOT"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("WORKBOOK_COURSE_ROOT", None)
        else:
            os.environ["WORKBOOK_COURSE_ROOT"] = old


def grade_in_place(nb, source_nb, assignment: str, course_root: Path, workdir: Path, options: Options,
                   audit: ImportAudit, log=lambda s: None, require_full_sandbox: bool = False,
                   session: KernelSession | None = None, sandbox: tuple[str, str] | None = None):
    """Grade ``nb`` (modified in place: outputs, restored test cells, the notice cell); return the report."""
    nb.cells = [c for c in nb.cells if NOTICE_TAG not in c.get("metadata", {}).get("tags", [])]
    engine = GradingEngine(assignment, course_root, options, audit, log=log)
    if require_full_sandbox:
        mode, message = sandbox or sandbox_status(options.sandbox)
        if mode != "bwrap":
            raise GradingError(f"the full sandbox is required but unavailable: {message}")
    report = engine.run(nb, source_nb, workdir, session=session, sandbox=sandbox)
    notice = nbformat.v4.new_markdown_cell(report.notice_markdown(), metadata={"tags": [NOTICE_TAG]})
    notice.pop("id", None)
    nb.cells.insert(0, notice)
    return report
