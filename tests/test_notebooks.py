"""Every source notebook has the structure the course promises, and its claims are computed.

The notebooks are executed once per session (nbclient, a real kernel); `make test` also runs them under
nbval. Structure rules: docs/AUTHORING.md.
"""
from __future__ import annotations

import ast
import re

import pytest
from nbclient import NotebookClient

from grader import cells
from grader.claims import unbacked_numbers
from grader.course import REPO_ROOT, Course

COURSE = Course.at(REPO_ROOT)
SOURCES = [p for a in COURSE.assignments() for p in COURSE.source_notebooks(a)]
IDS = [p.parent.name for p in SOURCES]
_executed: dict = {}


def executed(path):
    if path not in _executed:
        nb = cells.read(path)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        _executed[path] = nb
    return _executed[path]


def markdown(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_points_stated_at_the_top_equal_the_graded_cells(path):
    nb = cells.read(path)
    stated = re.findall(r"\*\*Points: (\d+(?:\.\d+)?)\*\*", nb.cells[0].source)
    assert stated, f"{path}: the first cell must state the total as **Points: N**"
    assert float(stated[0]) == cells.total_points(nb) > 0


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_table_of_contents_links_resolve(path):
    nb = cells.read(path)
    text = "\n".join(markdown(nb))
    links = set(re.findall(r"\]\(#([\w-]+)\)", nb.cells[0].source))
    anchors = set(re.findall(r"<a (?:id|name)=[\"']([\w-]+)[\"']", text))
    assert len(links) >= 2, f"{path}: the first cell needs a table of contents with an anchor per exercise"
    assert links <= anchors, f"{path}: links without anchors: {sorted(links - anchors)}"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_glossary_in_english_and_chinese(path):
    tables = [m for m in markdown(cells.read(path)) if "|" in m and re.search(r"[\u4e00-\u9fff]", m)]
    assert tables, f"{path}: needs a glossary table with English and 中文 terms"
    assert len(re.findall(r"^\|.*[\u4e00-\u9fff].*\|", tables[0], re.M)) >= 4


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_exercises_have_contract_tests_and_hints(path):
    nb = cells.read(path)
    ids = [cells.grade_id(c) for c in nb.cells if cells.nbgrader_meta(c).get("grade_id")]
    assert len(ids) == len(set(ids)), f"{path}: duplicate grade ids"
    for index, cell in enumerate(nb.cells):
        if cells.is_solution(cell) and cell.cell_type == "code":
            assert cells.BEGIN_SOLUTION in cell.source and cells.END_SOLUTION in cell.source, \
                f"{path} cell {index}: a solution cell without solution markers would be released whole"
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    assert ast.get_docstring(node), f"{path} cell {index}: {node.name} has no docstring"
        if cells.is_test(cell):
            assert cells.points(cell) > 0, f"{path} cell {index}: a test cell without points"
            previous = nb.cells[index - 1]
            assert cells.is_solution(previous) or cells.is_test(previous), \
                f"{path} cell {index}: a test cell must come right after the solution it grades"
    tested = sum(1 for i, c in enumerate(nb.cells[:-1]) if cells.is_solution(c) and cells.is_test(nb.cells[i + 1]))
    hints = sum(1 for m in markdown(nb) if "<details>" in m and "stuck" in m.lower())
    assert hints >= tested, f"{path}: {tested} exercises but only {hints} 'If you're stuck' hints"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_summary_and_cs231n_link(path):
    text = "\n".join(markdown(cells.read(path)))
    assert re.search(r"^#+ .*Summary", text, re.M), f"{path}: needs a Summary section"
    assert "cs231n" in text.lower()


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_every_stated_number_is_computed(path):
    missing = unbacked_numbers(executed(path))
    assert missing == [], f"{path}: numbers stated in prose that no code computes: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_has_a_figure(path):
    nb = executed(path)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path}: no figure was drawn"


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_no_graded_cell_returns_a_number(path):
    """nbgrader reads a graded cell's numeric result as partial credit: a full solution must not lose points."""
    nb = executed(path)
    for index, cell in enumerate(nb.cells):
        if cells.is_test(cell):
            results = [o for o in cell.outputs if o.output_type == "execute_result"]
            assert not results, f"{path} cell {index}: a graded cell must not end in an expression"
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{path} cell {index}: fails on the reference solution: {errors[0].evalue}"
