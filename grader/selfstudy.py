"""Self-study: a learner's notebooks, wherever they keep them, graded through the one grading core.

* :func:`identify` tells which assignment (and which of its notebooks) a notebook is from its *contents* — the
  grade ids of its cells — and only then from its folder's or file's name, so ``~/ml/week2/my_conv.ipynb`` is
  recognised as well as ``notebooks/02_conv_forward/conv_forward.ipynb``;
* :func:`exercises` reads an assignment's exercises from the source notebook: each solution cell with the test
  cells that grade it, the heading and anchor that introduce it (``#ex-conv-forward``) and the hint blocks
  below it (``If you're stuck``);
* :func:`check_paths` grades each notebook with one warm :class:`grader.core.Grader` — the same core as
  ``grader autograde`` — and :func:`progress` reports the state of the whole workbook from a learner's folder.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import cells
from .core import CellResult, Grader
from .course import Course, CourseError

SELF = "self"
_ANCHOR = re.compile(r'<a\s+(?:id|name)="([^"]+)"')
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.S)
_POINTS = re.compile(r"\s*\((?:\d+(?:\.\d+)?)\s+points?\)\s*$")


# -- what an assignment asks ------------------------------------------------------------------------------------------
@dataclass
class Exercise:
    """One exercise: the solution cell ``grade_id``, the test cells that grade it, where to read about it."""

    grade_id: str
    title: str                 # "Exercise 2: the forward pass"
    anchor: str                # "ex-conv-forward" (the notebook's own link target), "" if it has none
    tests: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)   # the summaries of its collapsed hint blocks


def exercises(nb) -> list[Exercise]:
    """The exercises of a (source or released) notebook, in order."""
    found: list[Exercise] = []
    anchor, title = "", ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = cell.source
            # Hint blocks above the cell's first heading belong to the exercise before (a cell may hold an
            # exercise's hints and then the next section's heading).
            first = _HEADING.search(text)
            summaries = [s.strip() for s in _SUMMARY.findall(text[:first.start()] if first else text)]
            if summaries and found:
                found[-1].hints += summaries
            pairs = _headings(text)
            chosen = ([p for p in pairs if p[1].startswith("Exercise")] or [p for p in pairs if p[0]] or
                      ([] if title else pairs))
            if chosen:
                anchor, title = chosen[-1]
            continue
        if cells.is_solution(cell):
            gid = cells.grade_id(cell) or f"cell {len(found) + 1}"
            found.append(Exercise(gid, title or gid, anchor))
            anchor, title = "", ""
        elif cells.is_test(cell):
            gid = cells.grade_id(cell)
            if not found:   # a test before any exercise: an exercise of its own
                found.append(Exercise(gid, title or gid, anchor))
            found[-1].tests.append(gid)
    return found


def _headings(text: str) -> list[tuple[str, str]]:
    """(anchor, heading) of each heading of a markdown cell; the anchor is the one just above it, if any."""
    pairs, pending = [], ""
    for line in text.splitlines():
        anchors = _ANCHOR.findall(line)
        if anchors:
            pending = anchors[-1]
        heading = _HEADING.match(line)
        if heading:
            pairs.append((pending, _POINTS.sub("", heading.group(1)).strip()))
            pending = ""
    return pairs


# -- which notebook is this -------------------------------------------------------------------------------------------
def notebook_paths(paths: Iterable[Path]) -> list[Path]:
    """The notebooks named, and those inside the folders named (checkpoints and hidden folders left out)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb")
                            if not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
                            and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise CourseError(f"{path}: no such file or folder")
    return found


class Catalogue:
    """The course's notebooks by the grade ids they hold, to recognise a learner's notebook by its contents."""

    def __init__(self, course: Course):
        self.course = course
        self.ids: dict[tuple[str, str], set[str]] = {}
        self._exercises: dict[tuple[str, str], list[Exercise]] = {}
        for assignment in course.assignments():
            for path in course.source_notebooks(assignment):
                self.ids[(assignment, path.name)] = {cells.grade_id(c) for c in cells.read(path).cells
                                                     if cells.grade_id(c)}

    def exercises(self, assignment: str, notebook: str) -> list[Exercise]:
        key = (assignment, notebook)
        if key not in self._exercises:
            self._exercises[key] = exercises(cells.read(self.course.source / assignment / notebook))
        return self._exercises[key]

    def identify(self, path: Path, assignment: str | None = None) -> tuple[str, str]:
        """(assignment, notebook name) of the learner's notebook at ``path``; CourseError when it cannot tell."""
        path = Path(path)
        known = sorted({a for a, _ in self.ids})
        if assignment is not None:
            if assignment not in known:
                raise CourseError(f"no assignment {assignment!r} (known: {', '.join(known)})")
            candidates = [key for key in self.ids if key[0] == assignment]
        else:
            candidates = list(self.ids)
        present = _grade_ids(path)
        overlap = {key: len(present & self.ids[key]) for key in candidates}
        best = max(overlap.values(), default=0)
        if best:
            chosen = [key for key, n in overlap.items() if n == best]
            if len(chosen) == 1:
                return chosen[0]
            candidates = chosen
        # No graded cell to go by (not a notebook, or every cell's metadata lost): the names decide.
        for key in candidates:
            if key[0] == path.parent.name and (key[1] == path.name or
                                               sum(k[0] == key[0] for k in candidates) == 1):
                return key
        named = [key for key in candidates if key[1] == path.name]
        if len(named) == 1:
            return named[0]
        if assignment is not None and len(candidates) == 1:
            return candidates[0]
        raise CourseError(f"{path}: cannot tell which assignment this notebook is: none of its cells carries a "
                          f"grade id of the workbook and neither its folder ({path.parent.name!r}) nor its name is "
                          f"an assignment's (known: {', '.join(known)}); pass --assignment")


def _grade_ids(path: Path) -> set[str]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return {cells.grade_id(c) for c in raw.get("cells", []) if isinstance(c, dict) and cells.grade_id(c)}
    except (OSError, ValueError, AttributeError):
        return set()


# -- one notebook's verdict -------------------------------------------------------------------------------------------
@dataclass
class ExerciseResult:
    exercise: Exercise
    questions: list[CellResult]

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions)

    @property
    def done(self) -> bool:
        return bool(self.questions) and all(q.passed for q in self.questions)

    @property
    def started(self) -> bool:
        return any(not q.message.startswith("NotImplementedError") for q in self.questions)


@dataclass
class CheckResult:
    notebook: Path
    assignment: str
    notebook_name: str = ""
    questions: list[CellResult] = field(default_factory=list)
    exercises: list[Exercise] = field(default_factory=list)
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    sandbox: str = ""
    student_seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions)

    @property
    def complete(self) -> bool:
        return not self.problem and bool(self.questions) and all(q.passed for q in self.questions)

    def by_exercise(self) -> list[ExerciseResult]:
        by_id = {q.grade_id: q for q in self.questions}
        grouped, seen = [], set()
        for exercise in self.exercises:
            found = [by_id[t] for t in exercise.tests if t in by_id]
            seen.update(q.grade_id for q in found)
            grouped.append(ExerciseResult(exercise, found))
        rest = [q for q in self.questions if q.grade_id not in seen]
        if rest:
            grouped.append(ExerciseResult(Exercise("", "other graded cells", ""), rest))
        return grouped

    def next_exercise(self) -> ExerciseResult | None:
        return next((e for e in self.by_exercise() if not e.done), None)

    def where(self, exercise: Exercise) -> str:
        name = self.notebook.name
        return f"{name}#{exercise.anchor}" if exercise.anchor else name

    def render(self, sandbox: bool = True) -> str:
        if self.problem:
            return f"{self.notebook}: could not be graded\n  {self.problem}"
        lines = [f"{self.notebook} ({self.assignment})"]
        groups = self.by_exercise()
        title_width = max([len(g.exercise.title) for g in groups] + [10])
        id_width = max(len(q.grade_id) for q in self.questions)
        for group in groups:
            mark = "✓" if group.done else "✗"
            lines.append(f"  {mark} {group.exercise.title.ljust(title_width)}  {group.score:g}/{group.max_score:g}")
            if group.done:
                continue
            for q in group.questions:
                mark = "✓" if q.passed else "✗"
                lines.append(f"      {mark} {q.grade_id.ljust(id_width)}  {q.score:g}/{q.max_score:g}")
                if q.message and not q.passed:
                    lines += ["          " + line for line in _explain(q.message).splitlines()]
            if group.exercise.grade_id:
                hints = " and ".join(f'"{h}"' for h in group.exercise.hints) or "the text above it"
                lines.append(f"      read: {self.where(group.exercise)}, then the hints {hints} below its tests")
        lines.append(f"  score: {self.score:g}/{self.max_score:g}")
        lines += [f"  note: {note}" for note in self.notes]
        if self.sandbox and sandbox:
            lines.append(f"  ({self.sandbox})")
        return "\n".join(lines)


def _explain(message: str) -> str:
    if message.strip() in ("NotImplementedError:", "NotImplementedError"):
        return "NotImplementedError: not done yet (the exercise still raises NotImplementedError())"
    return message


def grade_one(grader: Grader, catalogue: Catalogue, path: Path, assignment: str | None = None) -> CheckResult:
    """Grade the learner's notebook at ``path`` through the warm ``grader`` (the file is only read)."""
    path = Path(path)
    assignment, name = catalogue.identify(path, assignment)
    data = path.read_bytes()
    grader.prelaunch(assignment)    # the kernel boots while the reference loads
    grader.warm_up(assignment)
    graded = grader.grade(assignment, SELF, data, notebook=name)
    result = CheckResult(path, assignment, name, problem=graded.problem,
                         notes=graded.report.restored + graded.notes(),
                         sandbox=graded.report.sandbox_message if graded.ok else "",
                         student_seconds=graded.report.student_seconds)
    result.questions = list(graded.cells)
    result.exercises = catalogue.exercises(assignment, name)
    return result


def check_paths(paths: Iterable[Path], course: Course, assignment: str | None = None,
                on_result: Callable[[CheckResult], None] | None = None, **options) -> list[CheckResult]:
    """Grade every notebook in ``paths`` (files or folders), one after the other, with one warm grader."""
    notebooks = notebook_paths(paths)
    if not notebooks:
        raise CourseError(f"no notebook in {', '.join(map(str, paths))}")
    catalogue = Catalogue(course)
    results = []
    with Grader(course, **options) as grader:
        for path in notebooks:
            result = grade_one(grader, catalogue, path, assignment)
            results.append(result)
            if on_result:
                on_result(result)
    return results


# -- the whole workbook ---------------------------------------------------------------------------------------------
@dataclass
class NotebookProgress:
    assignment: str
    notebook_name: str
    max_points: float
    exercises: list[Exercise]
    result: CheckResult | None = None      # None: the learner has no notebook of this assignment
    others: list[Path] = field(default_factory=list)   # further copies found and not graded

    @property
    def points(self) -> float:
        return self.result.score if self.result and not self.result.problem else 0.0

    @property
    def done(self) -> int:
        return sum(e.done for e in self.result.by_exercise() if e.exercise.grade_id) if self.result else 0

    def next_step(self) -> str:
        if self.result is None:
            first = self.exercises[0] if self.exercises else None
            start = f": {first.title}" if first else ""
            return f"start {self.assignment}/{self.notebook_name}{start}"
        if self.result.problem:
            return f"could not be graded: {self.result.problem}"
        following = self.result.next_exercise()
        if following is None:
            return "done"
        return f"{following.exercise.title} ({self.result.where(following.exercise)})"


@dataclass
class Progress:
    folder: Path
    notebooks: list[NotebookProgress]

    @property
    def points(self) -> float:
        return sum(n.points for n in self.notebooks)

    @property
    def max_points(self) -> float:
        return sum(n.max_points for n in self.notebooks)

    def render(self) -> str:
        rows = [("notebook", "points", "exercises", "next")]
        for n in self.notebooks:
            points = f"{n.points:g}/{n.max_points:g}" if n.result else f"-/{n.max_points:g}"
            count = f"{n.done}/{len(n.exercises)}" if n.result else "not found"
            rows.append((n.assignment, points, count, n.next_step()))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{self.folder}: the workbook's state"]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
        lines.append(f"  total: {self.points:g}/{self.max_points:g} points, "
                     f"{sum(n.done for n in self.notebooks)}/{sum(len(n.exercises) for n in self.notebooks)} "
                     f"exercises done")
        following = next((n for n in self.notebooks if n.next_step() != "done"), None)
        if following is not None:
            lines.append(f"  next: {following.assignment}: {following.next_step()}")
        for n in self.notebooks:
            for other in n.others:
                lines.append(f"  note: {other} is another copy of {n.assignment}; graded the newest, "
                             f"{n.result.notebook if n.result else '?'}")
        return "\n".join(lines)


def progress(folder: Path, course: Course, on_result: Callable[[CheckResult], None] | None = None,
             **options) -> Progress:
    """The learner's state across the workbook, from the notebooks in ``folder`` (any layout)."""
    folder = Path(folder)
    catalogue = Catalogue(course)
    found: dict[tuple[str, str], list[Path]] = {}
    for path in notebook_paths([folder]):
        try:
            key = catalogue.identify(path)
        except CourseError:
            continue    # a notebook of the learner's own, not one of the workbook's
        found.setdefault(key, []).append(path)
    report = Progress(folder, [])
    with Grader(course, **options) as grader:
        for key in sorted(catalogue.ids):
            assignment, name = key
            source = cells.read(course.source / assignment / name)
            entry = NotebookProgress(assignment, name, cells.total_points(source), catalogue.exercises(*key))
            copies = sorted(found.get(key, []), key=lambda p: p.stat().st_mtime, reverse=True)
            if copies:
                entry.result = grade_one(grader, catalogue, copies[0], assignment)
                entry.others = copies[1:]
                if on_result:
                    on_result(entry.result)
            report.notebooks.append(entry)
    return report
