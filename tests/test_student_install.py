"""The student bundle installed into a fresh venv, as its README says, and opened in JupyterLab.

nbgrader's student side (assignment list, course list, Validate) is there; its instructor side (formgrader, create
assignment) is disabled the supported way: the student wheel installs a ``labconfig/page_config.d`` file and a
``jupyter_server_config.d`` file into the environment, which ``jupyter labextension list`` and ``jupyter server
extension list`` report. Every released notebook's cells that do not depend on an exercise run in the server's
kernels, in the notebook's own folder.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from grader import cells
from lab import ServerKernel, independent_cells, private_jupyter_env

pytestmark = pytest.mark.slow


def _jupyter(python, *args, home):
    env = private_jupyter_env(home)
    env["PATH"] = f"{python.parent}:{env['PATH']}"    # `jupyter X` runs the venv's jupyter-X
    proc = subprocess.run([str(python.parent / "jupyter"), *args], capture_output=True, text=True, timeout=300,
                          env=env)
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def test_the_bundle_installs_the_student_package_and_no_grader(student_env):
    folder, python = student_env
    proc = subprocess.run([str(python), "-c", "import workbook, nbgrader, numpy, matplotlib\n"
                           "from workbook.datasets import load_digits\n"
                           "print(load_digits()[0].shape)\n"
                           "import importlib.util; print(importlib.util.find_spec('grader'))"],
                          capture_output=True, text=True, timeout=300, cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(1797,", "8,", "8)", "None"]


def test_nbgraders_instructor_side_is_disabled_and_the_student_side_is_not(student_env, tmp_path):
    _, python = student_env
    labext = _jupyter(python, "labextension", "list", home=tmp_path)
    disabled = labext.split("Disabled extensions:", 1)[1].split()
    assert sorted(disabled) == ["@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader"], labext
    assert re.search(r"@jupyter/nbgrader v[\d.]+ enabled", labext), labext
    server = _jupyter(python, "server", "extension", "list", home=tmp_path)
    assert re.search(r"nbgrader.server_extensions.formgrader disabled", server), server
    for ext in ("validate_assignment", "assignment_list", "course_list"):
        assert re.search(rf"nbgrader.server_extensions.{ext} enabled", server), server


def test_the_students_jupyterlab_serves_the_student_side_only(student_lab):
    status, html = student_lab.request("GET", "/lab")
    assert status == 200
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  html, re.S).group(1))
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= set(config["disabledExtensions"])
    assert not {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment"} & \
        set(config["disabledExtensions"])
    assert student_lab.request("GET", "/formgrader")[0] == 404
    status, answer = student_lab.request("GET", "/nbgrader_version?version=0.9.6")
    assert status == 200 and answer["success"], answer
    status, listing = student_lab.request("GET", "/api/contents/notebooks")
    assert status == 200
    assert sorted(item["name"] for item in listing["content"])[:2] == ["01_conv_geometry", "02_conv_forward"]


def test_every_released_notebooks_independent_cells_run_in_the_students_jupyterlab(student_env, student_lab):
    folder, _ = student_env
    ran = 0
    for path in sorted((folder / "notebooks").glob("*/*.ipynb")):
        nb = cells.read(path)
        kernel = ServerKernel(student_lab, path.relative_to(folder).as_posix())
        try:
            for index in independent_cells(nb):
                result = kernel.execute(nb.cells[index].source)
                assert result["status"] == "ok", f"{path.name} cell {index}: {result['error']}"
                ran += 1
        finally:
            kernel.close()
    assert ran >= 60, ran
