"""Grading a class: parallel = serial = Dask, resuming a killed run, bad submissions, feedback, the course directory.

Real nbgrader (its gradebook, preprocessors and feedback), real sandboxed kernels, real worker processes, a real
Dask LocalCluster, a real `grader` subprocess killed with SIGKILL. The class is the toy course's (two graded
cells), so the machinery is what costs time, not the notebooks.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grader import cells
from grader.autograde import NoSubmissions, autograde
from grader.course import Course
from grader.gradebook import GradingState
from grader.scores import read_scores
from toycourse import ASSIGNMENT, graded_cell, make_toy_course, solution_cell, student_version, submit

pytestmark = pytest.mark.slow

GOOD = "    return np.asarray(x, dtype=float) * k"
CLASS = {  # student -> (scale body, extra code in the offset cell)
    "alice": (GOOD, ""),
    "bea-slow": (GOOD, "import time\ntime.sleep(4)\n"),
    "carol": ("    raise NotImplementedError()", ""),
    "dave": ("    return np.asarray(x, dtype=float) * 2.0", ""),   # right on the visible case only
    "erin": ("    return np.asarray(x, dtype=float) * abs(k)", ""),
    "frank": (GOOD, "import os\nos._exit(3)\n"),                      # kills its kernel: restart, offset fails
}


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def class_course(tmp_path_factory) -> Course:
    """The toy course with the class above submitted and nothing graded: copy it before grading."""
    course = make_toy_course(tmp_path_factory.mktemp("class") / "toy")
    for student, (body, prefix) in CLASS.items():
        submit(course, student, student_version(course, body, prefix))
    (course.root / "gradebook.db").unlink(missing_ok=True)
    return course


def copy_of(course: Course, where: Path) -> Course:
    shutil.copytree(course.root, where)
    return Course(where)


def verdicts(course: Course) -> dict:
    """(student, notebook) -> [(grade id, score, max, message)], from the grader's records."""
    state = GradingState(course.db_url)
    try:
        found = {}
        for student in CLASS:
            result = state.result(student, ASSIGNMENT, "toy.ipynb")
            found[student] = None if result is None else \
                [(c.grade_id, c.score, c.max_score, c.message) for c in result.cells] + [result.problem]
        return found
    finally:
        state.close()


def export(course: Course) -> list[list[str]]:
    return read_scores(course).rows()


@pytest.fixture(scope="module")
def serial(class_course, tmp_path_factory) -> Course:
    course = copy_of(class_course, tmp_path_factory.mktemp("serial") / "toy")
    before = tree_hashes(course.submitted)
    report = autograde(course, workers=1, log=lambda *_: None)
    assert tree_hashes(course.submitted) == before, "submissions must never be modified"
    assert len(report.results) == len(CLASS) and not report.failures
    return course


def test_serial_run_grades_the_class(serial):
    table = read_scores(serial)
    assert {s: table.total(s)[0] for s in CLASS} == {"alice": 3, "bea-slow": 3, "carol": 1, "dave": 1, "erin": 1,
                                                     "frank": 2}
    frank = verdicts(serial)["frank"]
    assert frank[1][0] == "test_offset" and frank[1][1] == 0 and "was stopped before it could define it" in frank[1][3]
    # nbgrader's records are complete: formgrader finds the autograded notebook of every submission
    for student in CLASS:
        assert (serial.autograded / student / ASSIGNMENT / "toy.ipynb").is_file()


def test_parallel_workers_give_the_serial_results(class_course, serial, tmp_path):
    course = copy_of(class_course, tmp_path / "toy")
    report = autograde(course, workers=2, log=lambda *_: None)
    assert report.workers == 2 and len(report.results) == len(CLASS)
    assert export(course) == export(serial)
    assert verdicts(course) == verdicts(serial)


def test_a_dask_cluster_gives_the_local_results(class_course, serial, tmp_path):
    from distributed import LocalCluster

    course = copy_of(class_course, tmp_path / "toy")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = autograde(course, scheduler=cluster.scheduler_address, log=lambda *_: None)
    assert "Dask" in report.where and report.workers == 2
    assert export(course) == export(serial)
    assert verdicts(course) == verdicts(serial)


def _graded_count(course: Course) -> int:
    import sqlalchemy as sa

    from grader.gradebook import RESULTS

    engine = sa.create_engine(course.db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(RESULTS)).scalar()
    except sa.exc.OperationalError:  # the table is not there yet
        return 0
    finally:
        engine.dispose()


def _grader(course: Course, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *(("--course", str(course.root)) if course else ()), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_a_killed_run_resumes_where_it_stopped(class_course, serial, tmp_path):
    course = copy_of(class_course, tmp_path / "toy")
    before = tree_hashes(course.submitted)
    proc = subprocess.Popen([sys.executable, "-m", "grader", "--course", str(course.root), "autograde",
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while _graded_count(course) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)   # while bea-slow sleeps in its kernel
    proc.wait()
    with pytest.raises(ProcessLookupError):   # nothing of the killed run may go on (kernels die with it)
        for _ in range(100):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
    done = _graded_count(course)
    assert 0 < done < len(CLASS), f"the kill came too late or too early to test resuming ({done} graded)"

    again = _grader(course, "autograde", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert f"graded {len(CLASS) - done} notebook(s)" in again.stdout, again.stdout
    assert f"{done} notebook(s) already graded" in again.stdout
    assert export(course) == export(serial)
    assert verdicts(course) == verdicts(serial)

    third = _grader(course, "autograde")
    assert third.returncode == 0 and "nothing needed grading" in third.stdout, third.stdout
    assert tree_hashes(course.submitted) == before, "submissions must never be modified"

    # New bytes for one submission: that one (and only that one) is graded again.
    submit(course, "carol", student_version(course, GOOD))
    fourth = _grader(course, "autograde")
    assert fourth.returncode == 0 and "graded 1 notebook(s)" in fourth.stdout, fourth.stdout
    assert read_scores(course).total("carol") == (3, 3)
    forced = _grader(course, "autograde", "--student", "a*", "--force")
    assert forced.returncode == 0 and "graded 1 notebook(s)" in forced.stdout, forced.stdout


# -- submissions that cannot be graded ----------------------------------------------------------------------------
def _other_assignment(course: Course) -> nbformat.NotebookNode:
    """A second assignment in the course, so that its notebook can be handed in for the toy one."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [solution_cell("double",
                              "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
                graded_cell("test_double", 1, "assert double(2) == 4")]
    (course.source / "01_other").mkdir()
    nbformat.write(nb, str(course.source / "01_other" / "other.ipynb"))
    return nb


BAD = {
    "bad-json": "the file is not valid JSON",
    "bad-not-notebook": "JSON but not a Jupyter notebook",
    "bad-name": "wrong file name? the notebook must be called toy.ipynb",
    "bad-missing": "no toy.ipynb in the folder (it holds no notebook)",
    "bad-other-assignment": "this is assignment 01_other's notebook, not 00_toy's",
    "bad-encoding": "not UTF-8",
    "bad-huge": "more than the limit of 20.0 MB",
    "bad-many-cells": "10,000 cells, more than the limit of 2,000",
    "bad-tampered": "nbgrader refused the notebook",
}


def test_each_bad_submission_gets_one_clear_line_and_zero(tmp_path):
    course = make_toy_course(tmp_path / "toy")
    other = _other_assignment(course)
    submit(course, "good", student_version(course, GOOD))
    submit(course, "bad-json", "{ this is not a notebook")
    submit(course, "bad-not-notebook", json.dumps(["a", "list"]))
    misnamed = course.submitted / "bad-name" / ASSIGNMENT
    misnamed.mkdir(parents=True)
    nbformat.write(student_version(course, GOOD), str(misnamed / "Toy (1).ipynb"))
    (course.submitted / "bad-missing" / ASSIGNMENT).mkdir(parents=True)
    (course.submitted / "bad-missing" / ASSIGNMENT / "notes.txt").write_text("forgot it")
    submit(course, "bad-other-assignment", other)
    path = submit(course, "bad-encoding", student_version(course, GOOD))
    path.write_bytes(path.read_bytes().replace(b"return x + 1", "return x + 1  # \u00e9".encode("latin-1")))
    huge = student_version(course, GOOD)
    huge.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * (100 << 20))]
    submit(course, "bad-huge", huge)
    many = student_version(course, GOOD)
    many.cells += [nbformat.v4.new_markdown_cell(f"cell {i}") for i in range(10_000 - len(many.cells))]
    submit(course, "bad-many-cells", many)
    tampered = student_version(course, GOOD)
    test = next(c for c in tampered.cells if cells.grade_id(c) == "test_offset")
    test.metadata.nbgrader.update(grade=False, solution=True)   # a locked test cell's metadata flipped
    submit(course, "bad-tampered", tampered)
    before = tree_hashes(course.submitted)

    lines: list[str] = []
    report = autograde(course, [ASSIGNMENT], workers=2, log=lines.append)
    assert tree_hashes(course.submitted) == before, "submissions must never be modified"
    by_student = {r.student: r for r in report.results}
    assert set(by_student) == set(BAD) | {"good"}
    assert by_student["good"].ok and by_student["good"].score == 3
    table = read_scores(course)
    for student, reason in BAD.items():
        result = by_student[student]
        assert not result.ok and reason in result.problem, (student, result.problem)
        [line] = [text for text in lines if f"submitted/{student}/" in text]
        assert line.startswith(f"FAILED submitted/{student}/{ASSIGNMENT}/toy.ipynb: ") and reason in line
        assert "\n" not in line and "Traceback" not in line
        assert table.total(student) == (0, 3), student   # recorded as 0, so the export shows 0, not blank
    assert {p[0] for p in table.problems} == set(BAD)
    assert "could not be graded (recorded as 0)" in table.render()


def test_no_submissions_says_so_and_fails(toy_course, tmp_path):
    with pytest.raises(NoSubmissions, match="no submissions of 00_toy"):
        autograde(toy_course, log=lambda *_: None)
    proc = _grader(toy_course, "autograde")
    assert proc.returncode == 1 and "nothing to grade" in proc.stderr


def test_the_course_is_found_from_the_working_directory(serial, tmp_path):
    inside = serial.submitted / "alice" / ASSIGNMENT
    proc = _grader(None, "export", "-o", str(tmp_path / "out.csv"), cwd=inside)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("alice,2,1,3,3")
    proc = _grader(None, "autograde", cwd=inside)
    assert proc.returncode == 0 and "nothing needed grading" in proc.stdout, proc.stdout + proc.stderr
    nowhere = tmp_path / "elsewhere"
    nowhere.mkdir()
    proc = _grader(None, "autograde", cwd=nowhere)
    assert proc.returncode == 2 and "no course here" in proc.stderr and "--course" in proc.stderr


def test_feedback_shows_the_verdict_and_never_the_hidden_tests(serial):
    from grader.autograde import feedback

    # The instructor's autograded notebook holds the hidden tests and the trusted traceback into them ...
    graded = cells.read(serial.autograded / "dave" / ASSIGNMENT / "toy.ipynb")
    [test] = [c for c in graded.cells if cells.grade_id(c) == "test_scale"]
    [error] = [o for o in test.outputs if o.output_type == "error"]
    assert "check_function(" in test.source and any("<test cell test_scale>" in line for line in error.traceback)
    # ... the student's feedback has neither the hidden region nor a traceback quoting it.
    [page] = feedback(serial, students=["dave"], log=lambda *_: None)
    html = page.read_text()
    assert "x: (4,), k=-3" in html and "CheckFailure" in html
    for secret in ("check_function", "ref = reference", "BEGIN HIDDEN TESTS", "mistakes=", "&lt;test cell"):
        assert secret not in html, secret
    assert "check_array" in html   # the visible test is still shown


def test_exports_per_question_and_for_canvas(serial, tmp_path):
    from nbgrader.api import Gradebook

    from grader.course import COURSE_ID

    with Gradebook(serial.db_url, course_id=COURSE_ID) as gb:
        gb.update_or_create_student("alice", first_name="Alice", last_name="Doe, Jr.", lms_user_id="901")
    out = tmp_path / "scores.csv"
    proc = _grader(serial, "export", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    import csv

    rows = list(csv.reader(out.open()))
    assert rows[0] == ["student", "00_toy/test_scale", "00_toy/test_offset", "00_toy/total", "total"]
    assert ["dave", "0", "1", "1", "1"] in rows
    canvas = tmp_path / "canvas.csv"
    proc = _grader(serial, "export", "--format", "canvas", "--canvas-id", "00_toy=4711", "-o", str(canvas))
    assert proc.returncode == 0, proc.stderr
    text = canvas.read_text()
    rows = list(csv.reader(canvas.open()))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "00_toy (4711)"]
    assert rows[1] == ["Points Possible", "", "", "", "", "3"]
    assert ["Doe, Jr., Alice", "901", "alice", "alice", "", "3"] in rows
    assert '"Doe, Jr., Alice"' in text   # quoted by the csv module, so the comma stays in the name


def test_late_submissions_are_reported(class_course, tmp_path):
    from nbgrader.api import Gradebook

    from grader.course import COURSE_ID

    course = copy_of(class_course, tmp_path / "toy")
    for student in CLASS:
        if student != "alice":
            shutil.rmtree(course.submitted / student)
    (course.submitted / "alice" / ASSIGNMENT / "timestamp.txt").write_text("2026-03-02 12:00:00.000000 UTC")
    autograde(course, workers=1, log=lambda *_: None)
    with Gradebook(course.db_url, course_id=COURSE_ID) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate="2026-03-01 12:00:00 UTC")
    table = read_scores(course)
    [late] = table.late
    assert (late.student, late.assignment, late.seconds_late) == ("alice", ASSIGNMENT, 86400.0)
    assert "24.0 h late" in table.render()
    assert (course.autograded / "alice" / ASSIGNMENT / "timestamp.txt").is_file()
