"""Proof that a student release holds no solution code and no hidden test.

A *secret line* is a line of a source notebook that stands only inside a solution region
(``### BEGIN SOLUTION`` … ``### END SOLUTION``) or a hidden-test region, and nowhere else in the source.
A release leaks when it contains a marker, an import of the grader's hidden-test machinery, or any
secret line of 8 or more significant characters (import lines and comments are not secrets).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from . import cells

MARKERS = (cells.BEGIN_SOLUTION, cells.END_SOLUTION, cells.BEGIN_HIDDEN, cells.END_HIDDEN,
           "grader.hidden", "grader.reference", "grader.cases")
MIN_SIGNIFICANT = 8
_REGIONS = [(cells.BEGIN_SOLUTION, cells.END_SOLUTION), (cells.BEGIN_HIDDEN, cells.END_HIDDEN)]


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line.strip())


def split_regions(source: str) -> tuple[list[str], list[str]]:
    """(lines inside solution/hidden regions, lines outside them) of one cell's source."""
    inside, outside = [], []
    depth_end = None
    for line in source.splitlines():
        stripped = line.strip()
        if depth_end is None:
            for begin, end in _REGIONS:
                if stripped.startswith(begin):
                    depth_end = end
                    break
            else:
                outside.append(line)
        elif stripped.startswith(depth_end):
            depth_end = None
        else:
            inside.append(line)
    return inside, outside


def secret_lines(source_nb: nbformat.NotebookNode) -> set[str]:
    inside, outside = set(), set()
    for cell in source_nb.cells:
        ins, outs = split_regions(cell.source)
        if cells.is_solution(cell) and cell.cell_type == "markdown":
            ins, outs = ins or cell.source.splitlines(), []
        inside.update(_norm(line) for line in ins)
        outside.update(_norm(line) for line in outs)
    significant = {line for line in inside if len(line.replace(" ", "")) >= MIN_SIGNIFICANT
                   and not line.startswith(("#", "import ", "from "))}
    return significant - outside


def scan_notebook(source_nb: nbformat.NotebookNode, release_nb: nbformat.NotebookNode, name: str) -> list[str]:
    secrets = secret_lines(source_nb)
    findings = []
    for index, cell in enumerate(release_nb.cells):
        text = cell.source
        for marker in MARKERS:
            if marker in text:
                findings.append(f"{name} cell {index}: contains {marker!r}")
        for line in text.splitlines():
            if _norm(line) in secrets:
                findings.append(f"{name} cell {index}: contains a solution or hidden-test line: {line.strip()!r}")
        for output in cell.get("outputs", []):
            if output:
                findings.append(f"{name} cell {index}: has an output (a release is never executed)")
                break
    return findings


def scan_release(source_path: Path, release_path: Path) -> list[str]:
    """Leaks of ``source_path``'s secrets into ``release_path``; an empty list means clean."""
    return scan_notebook(nbformat.read(str(source_path), as_version=4),
                         nbformat.read(str(release_path), as_version=4), str(release_path))


def solution_runs(text: str, secrets: set[str], min_run: int = 3) -> list[list[str]]:
    """Runs of ``min_run`` or more consecutive secret lines in ``text`` (blank lines ignored).

    Used on the student package, which shares boilerplate lines (``N, C, H, W = x.shape``) with the
    solutions by nature: a single shared line is no leak, a run of solution lines is.
    """
    runs, run = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _norm(line) in secrets:
            run.append(line.strip())
            continue
        if len(run) >= min_run:
            runs.append(run)
        run = []
    if len(run) >= min_run:
        runs.append(run)
    return runs
