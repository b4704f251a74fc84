"""Shared fixtures: copies of the course to grade in, a tiny synthetic course, the torch oracle."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from grader.course import REPO_ROOT, Course

sys.path.insert(0, str(Path(__file__).parent))

from toycourse import copy_of_course  # noqa: E402

# nbgrader shells out to alembic, and kernels must be this interpreter's: put its bin first on PATH.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def course_copy(tmp_path) -> Course:
    """A private copy of the real course (config, sources, release), with no course state."""
    return copy_of_course(tmp_path / "course")


@pytest.fixture
def toy_course(tmp_path) -> Course:
    """A one-assignment course built by code: fast enough to test the grader's machinery in seconds."""
    from toycourse import make_toy_course

    return make_toy_course(tmp_path / "toy")


def _grade_the_sample_class(folder: Path) -> tuple[Course, str]:
    import subprocess

    root = folder / "course"
    course = copy_of_course(root)
    for assignment in course.assignments():
        for path in course.source_notebooks(assignment):
            target = course.submitted / "instructor-source" / assignment / path.name
            target.parent.mkdir(parents=True)
            shutil.copy2(path, target)
    proc = subprocess.run([sys.executable, "-m", "grader", "--course", str(root), "demo"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    again = subprocess.run([sys.executable, "-m", "grader", "--course", str(root), "autograde"],
                           capture_output=True, text=True, timeout=3600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"graded {len(course.assignments())} notebook(s)" in again.stdout, again.stdout
    return course, proc.stdout


@pytest.fixture(scope="session")
def graded_sample_class(tmp_path_factory):
    """`grader demo` on a copy of the course, run once per test session: (course, demo's stdout).

    Besides the sample class, the instructor's own source notebooks are handed in as the submission of a
    student called ``instructor-source`` (graded by a second `grader autograde`, which leaves the sample
    class alone because it is graded already).

    Under pytest-xdist the processes share one graded class (the tests only read it): the first to need it grades
    it while holding a lock, the others wait for it and read what it wrote.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _grade_the_sample_class(tmp_path_factory.mktemp("demo"))
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent / "graded-sample-class"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stdout = shared / "demo-stdout.txt"
        if not stdout.exists():
            if shared.exists():
                shutil.rmtree(shared)          # an earlier attempt that failed halfway
            shared.mkdir()
            course, text = _grade_the_sample_class(shared)
            stdout.write_text(text)
    return Course(shared / "course"), stdout.read_text()


@pytest.fixture(scope="session")
def torch():
    """PyTorch as an oracle. `make test` installs it (TORCH=0 does not); in CI (CI=true) its absence is a failure, not
    a skip."""
    try:
        import torch as _torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("torch is not installed, but CI must run the torch comparisons "
                        "(make test installs torch==2.13.0 unless TORCH=0)")
        pytest.skip("torch not installed (make test installs torch==2.13.0; TORCH=0 leaves it out)")
    _torch.set_num_threads(2)
    return _torch


# -- the student's side: the bundle installed into a fresh environment, JupyterLab, a real browser ---------------------
CHROMIUM = Path(os.environ.get("WORKBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def student_env(tmp_path_factory):
    """`grader bundle`'s folder, installed as its README says into a fresh venv: (bundle folder, venv's python).

    pip installs from the bundle's requirements.txt (the machine's pip configuration and cache apply)."""
    import subprocess

    from grader.bundle import build

    base = tmp_path_factory.mktemp("student")
    bundle = build(Course(REPO_ROOT), base / "dist")
    folder = base / "convnet-workbook"
    shutil.copytree(bundle.folder, folder)     # where the student unpacked it
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "-r", "requirements.txt"],
                          cwd=folder, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder, venv / "bin" / "python"


@pytest.fixture(scope="session")
def student_lab(student_env, tmp_path_factory):
    """JupyterLab from the student's venv, serving the unpacked bundle (one server for the whole session)."""
    from lab import start_lab

    folder, python = student_env
    server = start_lab(python, folder, tmp_path_factory.mktemp("student-home"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, headless, driven by Playwright. Skipped where Chromium is absent; a failure under CI=true
    (.ci/run installs chromium, fonts-noto-cjk and playwright)."""
    reason = None
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium fonts-noto-cjk)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "playwright is not installed (pip install playwright; never `playwright install`)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def graded_02(tmp_path_factory):
    """A copy of the course with the sample class's 02_conv_forward autograded and its feedback written: what the
    instructor's formgrader and a student's feedback page show (one assignment, to keep the browser tests short)."""
    from grader import sample_class
    from grader.autograde import autograde, feedback

    root = tmp_path_factory.mktemp("instructor") / "course"
    course = copy_of_course(root)
    sample_class.build(course, ["02_conv_forward"])
    report = autograde(course, ["02_conv_forward"], list(sample_class.STUDENTS), log=lambda *_: None)
    assert not report.failures, report.summary()
    feedback(course, ["02_conv_forward"], list(sample_class.STUDENTS), log=lambda *_: None)
    return course


@pytest.fixture(scope="session")
def instructor_lab(graded_02, tmp_path_factory):
    """JupyterLab from the project's own environment (nbgrader's instructor side on), in the graded course."""
    from lab import start_lab

    server = start_lab(Path(sys.executable), graded_02.root, tmp_path_factory.mktemp("instructor-home"))
    yield server
    server.stop()
