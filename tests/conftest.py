"""Shared fixtures: copies of the course to grade in, a tiny synthetic course, the torch oracle."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from grader.course import REPO_ROOT, Course

sys.path.insert(0, str(Path(__file__).parent))

# nbgrader shells out to alembic, and kernels must be this interpreter's: put its bin first on PATH.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def course_copy(tmp_path) -> Course:
    """A private copy of the real course (config, sources, release), with no course state."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks")
    return Course(root)


@pytest.fixture
def toy_course(tmp_path) -> Course:
    """A one-assignment course built by code: fast enough to test the grader's machinery in seconds."""
    from toycourse import make_toy_course

    return make_toy_course(tmp_path / "toy")


@pytest.fixture(scope="session")
def torch():
    """PyTorch as an oracle. Optional on a laptop; in CI (CI=true) its absence is a failure, not a skip."""
    try:
        import torch as _torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("torch is not installed, but CI must run the torch comparisons "
                        "(.ci/run installs torch==2.13.0)")
        pytest.skip("torch not installed (make bench or .ci/run installs torch==2.13.0)")
    _torch.set_num_threads(2)
    return _torch
