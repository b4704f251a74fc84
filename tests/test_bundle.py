"""`grader bundle`: the student hand-out holds the release and the student package, and nothing of the instructor's."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader import cells
from grader.bundle import (BUNDLE_NAME, INSTRUCTOR_PLUGINS, build, build_wheel, scan_bundle, scan_files,
                           student_requirements)
from grader.course import REPO_ROOT, Course
from grader.leaks import secret_lines

COURSE = Course.at(REPO_ROOT)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build(COURSE, tmp_path_factory.mktemp("bundle"))


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bundle_holds_the_release_the_student_package_and_the_students_files_only(bundle):
    tree = _tree(bundle.folder)
    notebooks = {f"notebooks/{a}/{p.name}" for a in COURSE.assignments() for p in COURSE.release_notebooks(a)}
    assert set(tree) == notebooks | {"README.md", "requirements.txt", "environment.yml", f"wheels/{bundle.wheel.name}"}
    for name in notebooks:   # the release byte for byte, in the course's layout (03/05/06 read ../02_.../)
        assert tree[name] == (COURSE.root / name).read_bytes(), name
    with zipfile.ZipFile(bundle.archive) as archive:
        members = {n.removeprefix(f"{BUNDLE_NAME}/"): archive.read(n) for n in archive.namelist()}
    assert members == tree, "the zip and the folder hold different files"


def test_the_wheel_is_the_workbook_package_and_the_student_side_of_nbgrader(bundle):
    with zipfile.ZipFile(bundle.wheel) as wheel:
        names = set(wheel.namelist())
        page = json.loads(wheel.read(next(n for n in names if "labconfig/page_config.d/" in n)))
        server = json.loads(wheel.read(next(n for n in names if "jupyter_server_config.d/" in n)))
    modules = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "workbook").rglob("*.py")}
    assert modules <= names and "workbook/data/digits.npz" in names
    assert not any(n.startswith("grader/") for n in names)
    assert page == {"disabledExtensions": {plugin: True for plugin in INSTRUCTOR_PLUGINS}}
    assert server == {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": False}}}


def test_bundle_is_reproducible(bundle, tmp_path):
    again = build(COURSE, tmp_path)
    assert again.archive.read_bytes() == bundle.archive.read_bytes()
    assert build_wheel(tmp_path / "w").read_bytes() == bundle.wheel.read_bytes()


def test_bundle_leaks_no_solution_and_no_hidden_test(bundle):
    """Every file of the bundle — the archive's and the wheel's members too — against every source's secrets."""
    assert scan_bundle(COURSE, bundle.folder) == []
    with zipfile.ZipFile(bundle.archive) as archive:
        members = [(f"zip!{n}", archive.read(n)) for n in archive.namelist()]
    wheel_members = []
    for name, data in members:
        if name.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                wheel_members += [(f"{name}!{n}", wheel.read(n)) for n in wheel.namelist()]
    assert len(wheel_members) > 10
    assert scan_files(COURSE, members + wheel_members) == []
    # Each secret line of a source notebook appears in the released notebook of the same assignment nowhere.
    for assignment in COURSE.assignments():
        for source in COURSE.source_notebooks(assignment):
            released = (bundle.folder / "notebooks" / assignment / source.name).read_text()
            text = "\n".join(c.source for c in nbformat.reads(released, as_version=4).cells)
            lines = {" ".join(line.split()) for line in text.splitlines()}
            assert not secret_lines(cells.read(source)) & lines, source


def test_the_scan_finds_what_a_leaky_bundle_would_hold(bundle, tmp_path):
    source = cells.read(COURSE.source / "02_conv_forward" / "conv_forward.ipynb")
    solution = next(c.source for c in source.cells if cells.grade_id(c) == "conv_forward_naive")
    hidden = next(c.source for c in source.cells if cells.grade_id(c) == "test_conv_forward_naive")
    leaky = nbformat.reads((bundle.folder / "notebooks/02_conv_forward/conv_forward.ipynb").read_text(), as_version=4)
    for cell in leaky.cells:
        if cells.grade_id(cell) == "conv_forward_naive":
            cell.source = solution.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", "")
    body = solution.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].splitlines()
    files = [
        ("notebooks/02_conv_forward/conv_forward.ipynb", nbformat.writes(leaky).encode()),
        ("wheels/w.whl!workbook/helpers.py", ("def f(x):\n" + "\n".join(body) + "\n").encode()),
        ("README.md", hidden.encode()),
        ("grader/core.py", b"x = 1\n"),
        ("gradebook.db", b""),
    ]
    findings = "\n".join(scan_files(COURSE, files))
    assert "conv_forward.ipynb cell" in findings and "solution or hidden-test line" in findings
    assert "helpers.py: " in findings and "consecutive solution or hidden-test lines" in findings
    assert "README.md: contains '### BEGIN HIDDEN TESTS'" in findings
    assert "grader/core.py: an instructor's file" in findings and "gradebook.db: an instructor's file" in findings


def test_the_students_requirements_are_the_projects_pins(bundle):
    text = (bundle.folder / "requirements.txt").read_text()
    assert [line for line in text.splitlines() if line and not line.startswith("#")] == \
        student_requirements() + [f"./wheels/{bundle.wheel.name}"]
    assert "nbgrader==0.9.6" in text and "grader" not in text.replace("nbgrader", "")
    env = (bundle.folder / "environment.yml").read_text()
    assert f"./wheels/{bundle.wheel.name}" in env and "nbgrader==0.9.6" in env
    readme = (bundle.folder / "README.md").read_text()
    for needed in ("pip install -r requirements.txt", "jupyter lab notebooks", "Validate", "Submit",
                   "If you're stuck", "notebooks/09_train_convnet/train_convnet.ipynb"):
        assert needed in readme, needed


def test_grader_bundle_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "grader", "--course", str(REPO_ROOT), "bundle", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no solution code, no hidden test" in proc.stdout
    assert (tmp_path / "convnet-workbook-student.zip").is_file()
