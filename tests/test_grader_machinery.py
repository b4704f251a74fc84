"""The grader's own machinery on a tiny course built by code: release, check, autograde, export, leaks.

Real nbgrader, real kernels, a real SQLite gradebook.
"""
from __future__ import annotations

import csv
import hashlib
import subprocess
import sys

import nbformat

from grader import cells
from grader.autograde import autograde
from grader.check import check_notebook
from grader.leaks import scan_notebook, scan_release
from grader.release import generate
from grader.scores import read_scores
from toycourse import ASSIGNMENT, student_version, submit


def _tree_hashes(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_release_is_deterministic_and_clean(toy_course, tmp_path):
    first = generate(toy_course, ASSIGNMENT, tmp_path / "a", db=False)[0]
    second = generate(toy_course, ASSIGNMENT, tmp_path / "b", db=False)[0]
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == (toy_course.release / ASSIGNMENT / "toy.ipynb").read_bytes()
    text = first.read_text()
    assert "return np.asarray(x, dtype=float) * k" not in text
    assert "reference('00_toy')" not in text and "raise NotImplementedError()" in text
    assert scan_release(toy_course.source / ASSIGNMENT / "toy.ipynb", first) == []


def test_leak_scanner_finds_solution_lines_markers_and_hidden_tests(toy_course):
    source = cells.read(toy_course.source / ASSIGNMENT / "toy.ipynb")
    clean = cells.read(toy_course.release / ASSIGNMENT / "toy.ipynb")
    assert scan_notebook(source, clean, "toy") == []

    leaky = cells.read(toy_course.release / ASSIGNMENT / "toy.ipynb")
    leaky.cells[2].source += "\n    return np.asarray(x, dtype=float) * k"
    assert any("solution or hidden-test line" in f for f in scan_notebook(source, leaky, "toy"))

    leaky = cells.read(toy_course.release / ASSIGNMENT / "toy.ipynb")
    leaky.cells[3].source += "\nref = reference('00_toy')"
    assert any("hidden-test line" in f for f in scan_notebook(source, leaky, "toy"))

    leaky = cells.read(toy_course.release / ASSIGNMENT / "toy.ipynb")
    leaky.cells[1].source += "\n### BEGIN SOLUTION"
    assert any("'### BEGIN SOLUTION'" in f for f in scan_notebook(source, leaky, "toy"))


def test_check_gives_full_marks_to_the_source_and_zero_to_the_release(toy_course):
    full = check_notebook(toy_course.source / ASSIGNMENT / "toy.ipynb", course=toy_course)
    assert (full.score, full.max_score, full.complete) == (3, 3, True)
    empty = check_notebook(toy_course.release / ASSIGNMENT / "toy.ipynb", course=toy_course)
    assert (empty.score, empty.max_score, empty.complete) == (0, 3, False)
    assert "NotImplementedError" in empty.render()


def test_check_names_a_known_mistake_and_scores_each_question(toy_course, tmp_path):
    path = tmp_path / "mine.ipynb"
    # Right on the visible case (k=2 with ones... no: scale ignores k and returns 2x), wrong on the hidden one.
    nbformat.write(student_version(toy_course, "    return np.asarray(x, dtype=float) * 2.0"), str(path))
    before = path.read_bytes()
    result = check_notebook(path, assignment=ASSIGNMENT, course=toy_course)
    assert path.read_bytes() == before, "grader check must never modify the student's notebook"
    by_id = {q.grade_id: q for q in result.questions}
    assert by_id["test_scale"].score == 0 and by_id["test_offset"].score == 1
    assert "x: (4,), k=-3" in by_id["test_scale"].message


def test_known_mistake_is_named(toy_course, tmp_path):
    path = tmp_path / "mine.ipynb"
    nbformat.write(student_version(toy_course, "    return np.asarray(x, dtype=float) * 1.0"), str(path))
    result = check_notebook(path, assignment=ASSIGNMENT, course=toy_course)
    message = {q.grade_id: q.message for q in result.questions}["test_scale"]
    # The visible check fails first here (k=2 expected 2.0), so it reports the visible case precisely.
    assert "expected 2, got 1" in message


def test_hidden_mistake_message(toy_course, tmp_path):
    path = tmp_path / "mine.ipynb"
    nbformat.write(student_version(toy_course, "    return np.asarray(x, dtype=float) * abs(k)"), str(path))
    result = check_notebook(path, assignment=ASSIGNMENT, course=toy_course)
    message = {q.grade_id: q.message for q in result.questions}["test_scale"]
    assert "x: (4,), k=-3" in message and "max relative error" in message


def test_one_broken_submission_costs_no_one_else_and_nothing_is_modified(toy_course):
    good = student_version(toy_course, "    return np.asarray(x, dtype=float) * k")
    submit(toy_course, "alice", good)
    submit(toy_course, "bob", "{ this is not a notebook")
    submit(toy_course, "carol", student_version(toy_course, "    raise NotImplementedError()"))
    before = _tree_hashes(toy_course.submitted)
    report = autograde(toy_course, log=lambda *_: None)
    assert _tree_hashes(toy_course.submitted) == before, "submissions must never be modified"
    outcome = {r.student: r for r in report.results}
    assert outcome["alice"].ok and outcome["carol"].ok
    assert not outcome["bob"].ok
    assert "not valid JSON" in outcome["bob"].problem
    table = read_scores(toy_course)
    assert table.total("alice") == (3, 3)
    assert table.total("carol") == (1, 3)
    # What could not be graded is recorded as 0 (as nbgrader records a missing notebook), and listed.
    assert table.total("bob") == (0, 3)
    assert [p[:3] for p in table.problems] == [("bob", ASSIGNMENT, "toy.ipynb")]


def test_export_cli_writes_the_per_question_csv(toy_course, tmp_path):
    submit(toy_course, "alice", student_version(toy_course, "    return np.asarray(x, dtype=float) * k"))
    autograde(toy_course, log=lambda *_: None)
    out = tmp_path / "grades.csv"
    proc = subprocess.run([sys.executable, "-m", "grader", "--course", str(toy_course.root), "export", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["student", "00_toy/test_scale", "00_toy/test_offset", "00_toy/total", "total"]
    assert rows[1] == ["alice", "2", "1", "3", "3"]
    assert rows[-1] == ["max", "2", "1", "3", "3"]
    assert "alice" in proc.stdout and "3/3" in proc.stdout


def test_unknown_assignment_is_a_clear_error(toy_course):
    proc = subprocess.run([sys.executable, "-m", "grader", "--course", str(toy_course.root), "release", "99_nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no assignment '99_nope'" in proc.stderr and "00_toy" in proc.stderr
