"""Self-study: `grader check` on a learner's notebooks in any layout, `--watch`, and `grader progress`.

Everything grades through the one core (grader.core.Grader): the same hidden tests and points as autograde.
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import nbformat
import pytest

from grader import cells
from grader.course import REPO_ROOT, Course
from grader.sample_class import filled_notebook
from grader.selfstudy import Catalogue, exercises

COURSE = Course.at(REPO_ROOT)
GRADER = [sys.executable, "-m", "grader", "--course", str(REPO_ROOT)]


def _run(*args, cwd=None, timeout=600):
    return subprocess.run([*GRADER, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_exercises_are_read_with_their_tests_anchor_and_hints():
    found = exercises(cells.read(COURSE.source / "02_conv_forward" / "conv_forward.ipynb"))
    assert [(e.grade_id, e.title, e.anchor) for e in found] == [
        ("zero_pad", "Exercise 1: zero-padding", "ex-zero-pad"),
        ("conv_forward_naive", "Exercise 2: the forward pass", "ex-conv-forward")]
    assert found[1].tests == ["test_conv_forward_naive", "test_conv_forward_naive_cache",
                              "test_conv_forward_naive_errors"]
    assert found[1].hints == ["If you're stuck", "Still stuck: the derivation"]


def test_every_exercise_of_the_workbook_has_tests_a_title_and_an_anchor():
    for assignment in COURSE.assignments():
        for path in COURSE.release_notebooks(assignment):
            nb = cells.read(path)
            found = exercises(nb)
            tested = [t for e in found for t in e.tests]
            assert sorted(tested) == sorted(cells.grade_id(c) for c in cells.test_cells(nb)), path
            for exercise in found:
                assert exercise.tests and exercise.anchor and exercise.title.startswith("Exercise"), (path, exercise)
                # Two tiers of hints below its tests, which `grader check` names when the exercise fails.
                assert exercise.hints == ["If you're stuck", "Still stuck: the derivation"], (path, exercise)
                assert f'<a id="{exercise.anchor}"></a>' in "".join(c.source for c in nb.cells)


def test_a_notebook_is_recognised_by_its_contents_in_any_layout(tmp_path):
    catalogue = Catalogue(COURSE)
    anywhere = tmp_path / "week 2" / "my attempt.ipynb"
    anywhere.parent.mkdir()
    shutil.copy2(COURSE.release / "05_im2col" / "im2col.ipynb", anywhere)
    assert catalogue.identify(anywhere) == ("05_im2col", "im2col.ipynb")
    # In a folder named after another assignment, the contents still decide.
    misplaced = tmp_path / "02_conv_forward" / "conv_forward.ipynb"
    misplaced.parent.mkdir()
    shutil.copy2(COURSE.source / "04_pooling" / "pooling.ipynb", misplaced)
    assert catalogue.identify(misplaced) == ("04_pooling", "pooling.ipynb")
    # With its grade ids lost (cells pasted into a new notebook), the folder's name decides.
    stripped = nbformat.read(str(COURSE.release / "03_conv_backward" / "conv_backward.ipynb"), as_version=4)
    for cell in stripped.cells:
        cell.metadata.pop("nbgrader", None)
    target = tmp_path / "03_conv_backward" / "mine.ipynb"
    target.parent.mkdir()
    nbformat.write(stripped, str(target))
    assert catalogue.identify(target) == ("03_conv_backward", "conv_backward.ipynb")


def _score(stdout: str, name: str) -> tuple[float, float]:
    block = stdout.split(name, 1)[1]
    got, best = re.search(r"score: ([\d.]+)/([\d.]+)", block).groups()
    return float(got), float(best)


@pytest.mark.slow
def test_check_gives_zero_partial_and_full_marks_with_messages(tmp_path):
    """The untouched release, a half-done notebook and the source notebook, kept as a learner keeps them."""
    folder = tmp_path / "my-notebooks"
    (folder / "started").mkdir(parents=True)
    (folder / "later").mkdir()
    shutil.copy2(COURSE.release / "02_conv_forward" / "conv_forward.ipynb", folder / "later" / "untouched.ipynb")
    nbformat.write(filled_notebook(COURSE, "02_conv_forward", "conv_forward.ipynb", solved=1),
                   str(folder / "started" / "half.ipynb"))
    shutil.copy2(COURSE.source / "02_conv_forward" / "conv_forward.ipynb", folder / "finished.ipynb")
    before = {p: p.read_bytes() for p in folder.rglob("*.ipynb")}
    proc = _run("check", str(folder), cwd=tmp_path)   # from outside the course: the installed one is used
    out = proc.stdout
    assert proc.returncode == 1, proc.stderr + out    # not everything passes
    assert {p: p.read_bytes() for p in folder.rglob("*.ipynb")} == before, "check must only read the notebooks"
    assert _score(out, "untouched.ipynb") == (0, 10)
    assert _score(out, "half.ipynb") == (2, 10)
    assert _score(out, "finished.ipynb") == (10, 10)
    half = out.split("half.ipynb (02_conv_forward)", 1)[1].split("score:", 1)[0]
    assert "✓ Exercise 1: zero-padding" in half and "✗ Exercise 2: the forward pass" in half
    assert "✗ test_conv_forward_naive " in half and "0/7" in half
    assert "not implemented yet" in half
    assert ('read: half.ipynb#ex-conv-forward, then the hints "If you\'re stuck" and "Still stuck: the derivation" '
            'below its tests') in half
    untouched = out.split("untouched.ipynb (02_conv_forward)", 1)[1].split("score:", 1)[0]
    for test in ("test_zero_pad", "test_conv_forward_naive", "test_conv_forward_naive_cache",
                 "test_conv_forward_naive_errors"):     # every test says why it scored 0
        assert re.search(rf"✗ {test} +0/[\d.]+\n +CheckFailure: .*not implemented yet", untouched), (test, untouched)
    assert "read: untouched.ipynb#ex-zero-pad" in untouched and "read: untouched.ipynb#ex-conv-forward" in untouched
    finished = out.split("finished.ipynb (02_conv_forward)", 1)[1].split("score:", 1)[0]
    assert "✓ Exercise 1: zero-padding" in finished and "✓ Exercise 2: the forward pass" in finished
    assert "✗" not in finished and "read:" not in finished, finished
    assert "3 notebooks: 12/30 points" in out
    assert out.count("sandbox:") == 1, "the sandbox is said once"


@pytest.mark.slow
def test_check_names_the_mistake(tmp_path):
    from grader.sample_class import CLASSIC_BUGS

    path = tmp_path / "flipped.ipynb"
    nbformat.write(filled_notebook(COURSE, "02_conv_forward", "conv_forward.ipynb",
                                   bug=CLASSIC_BUGS["02_conv_forward"]), str(path))
    proc = _run("check", str(path))
    assert proc.returncode == 1
    assert "✓ Exercise 1: zero-padding" in proc.stdout
    assert "the kernel is flipped" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_watch_grades_a_notebook_again_when_it_is_saved(tmp_path):
    path = tmp_path / "geometry.ipynb"
    shutil.copy2(COURSE.release / "01_conv_geometry" / "conv_geometry.ipynb", path)
    proc = subprocess.Popen([*GRADER, "check", "--watch", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def wait_for(text: str, timeout: float = 300) -> str:
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
                continue
            seen.append(line)
            if text in line:
                return "".join(seen)
        raise AssertionError(f"{text!r} never came:\n" + "".join(seen))

    try:
        assert "score: 0/12" in wait_for("watching ")
        nbformat.write(filled_notebook(COURSE, "01_conv_geometry", "conv_geometry.ipynb"), str(path))
        wait_for("geometry.ipynb was saved: grading it again")
        assert "score: 12/12" in wait_for("score: ")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


def test_progress_says_what_is_missing_and_what_comes_next(tmp_path):
    """Without grading anything: a folder with no workbook notebook lists every notebook as not found."""
    proc = _run("progress", str(tmp_path), "--sandbox", "none")
    assert proc.returncode == 0, proc.stderr
    assert "01_conv_geometry" in proc.stdout and "not found" in proc.stdout
    assert "next: 01_conv_geometry: start 01_conv_geometry/conv_geometry.ipynb: Exercise 1: the output size" \
        in proc.stdout


def test_the_readmes_self_study_table_lists_every_notebook_in_order_with_its_exercises_and_points():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## For self-learners", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| `([^`/]+)/([^`]+)` \| (\d+) \| ([\d.]+) \| (.+?) \|$", section, re.M)
    expected = []
    for number, assignment in enumerate(COURSE.assignments(), 1):
        for path in COURSE.release_notebooks(assignment):
            nb = cells.read(path)
            expected.append((str(number), assignment, path.name, str(len(exercises(nb))),
                             f"{cells.total_points(nb):g}"))
    assert [row[:5] for row in rows] == expected
    assert all(re.match(r"\d(–\d)?(\.5)? h", row[5]) for row in rows), rows
    for command in ("grader check notebooks/02_conv_forward/conv_forward.ipynb", "grader check notebooks/",
                    "grader check --watch", "grader progress notebooks/", "If you're stuck",
                    "Still stuck: the derivation", "docs/img/notebook-figure.png"):
        assert command in section, command
    for picture in ("docs/img/notebook-figure.png", "docs/img/feedback.png"):
        assert (REPO_ROOT / picture).stat().st_size < 200_000, picture
