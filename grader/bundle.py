"""``grader bundle``: what an instructor hands out — the released notebooks and the student package, nothing else.

The bundle is a folder (``dist/student-bundle/convnet-workbook/``) and the same tree as a zip
(``dist/convnet-workbook-student.zip``)::

    convnet-workbook/
      README.md                 install, open, check, validate, submit
      requirements.txt          pip install -r requirements.txt
      environment.yml           or: conda env create -f environment.yml
      notebooks/<assignment>/<name>.ipynb    the release, as `grader release` wrote it, in the course's layout
      wheels/convnet_workbook_student-<version>-py3-none-any.whl

The student package is the ``workbook`` package (checks, gradient checks, plots, the given layers, the bundled
digits) as a wheel of its own, ``convnet-workbook-student``. It also installs two Jupyter configuration files,
the way nbgrader installs its own: ``etc/jupyter/labconfig/page_config.d/`` disables nbgrader's instructor
plugins in JupyterLab (formgrader, create assignment) and ``etc/jupyter/jupyter_server_config.d/`` disables the
formgrader server extension, so a student's JupyterLab shows nbgrader's student side only (the assignment list,
the course list, Validate).

Nothing of the instructor's goes in: no source notebook, no ``grader`` package, no ``nbgrader_config.py``, no
gradebook; :func:`scan_bundle` proves that no solution or hidden-test line is in any file (``grader bundle``
refuses to write a bundle that leaks). The notebooks keep the course's layout, ``notebooks/<assignment>/``,
because notebooks 03, 05 and 06 read the student's own earlier notebooks next to them
(``workbook.earlier.function_from_notebook("../02_conv_forward/conv_forward.ipynb", ...)``).

The archive and the wheel are byte-for-byte reproducible (sorted entries, fixed timestamps).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import cells
from .course import PACKAGE_ROOT, REPO_ROOT, Course, CourseError
from .leaks import MARKERS, scan_notebook, secret_lines, solution_runs

BUNDLE_NAME = "convnet-workbook"
WHEEL_NAME = "convnet-workbook-student"
ZIP_NAME = "convnet-workbook-student.zip"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)        # the earliest time a zip can hold: the same bytes on every build
# What a student's environment needs: the names of the project's own pins (pyproject.toml), nothing of the grader's.
STUDENT_REQUIREMENTS = ("numpy", "matplotlib", "jupyterlab", "notebook", "nbgrader", "tqdm", "threadpoolctl")
# nbgrader's instructor side, as its documentation names it for `jupyter labextension disable` and
# `jupyter server extension disable`.
INSTRUCTOR_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment")
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",)
# Files of jupyter_server_config.d/ are read in sorted order, the later overriding the earlier: this name sorts
# after nbgrader's own nbgrader.json, which enables every nbgrader server extension.
SERVER_CONFIG_FILE = "nbgrader_student.json"
PAGE_CONFIG_FILE = "convnet-workbook-student.json"
TEXT_SUFFIXES = {".py", ".md", ".txt", ".yml", ".yaml", ".json", ".ipynb", ".cfg", ".toml", ""}


@dataclass
class Bundle:
    folder: Path        # dist/student-bundle/convnet-workbook
    archive: Path       # dist/convnet-workbook-student.zip
    wheel: Path         # inside folder/wheels/
    files: list[str]    # relative paths, sorted


def project_metadata() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, str]:
    pins = {}
    for spec in project_metadata()["dependencies"]:
        name = re.split(r"[<>=!~ \[]", spec, maxsplit=1)[0].lower()
        pins[name] = spec.replace(" ", "")
    return pins


def student_requirements() -> list[str]:
    pins = _pins()
    missing = [name for name in STUDENT_REQUIREMENTS if name not in pins]
    if missing:
        raise CourseError(f"pyproject.toml no longer lists {', '.join(missing)}: the student bundle needs them")
    return [pins[name] for name in STUDENT_REQUIREMENTS]


# -- the student package as a wheel ------------------------------------------------------------------------------------
def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _zip_write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def jupyter_config_files() -> dict[str, bytes]:
    """The two configuration files the student wheel installs under ``{sys.prefix}/etc/jupyter``."""
    page = {"disabledExtensions": {plugin: True for plugin in INSTRUCTOR_PLUGINS}}
    server = {"ServerApp": {"jpserver_extensions": {ext: False for ext in INSTRUCTOR_SERVER_EXTENSIONS}}}
    def dump(value) -> bytes:
        return (json.dumps(value, indent=2) + "\n").encode()

    return {f"etc/jupyter/labconfig/page_config.d/{PAGE_CONFIG_FILE}": dump(page),
            f"etc/jupyter/jupyter_server_config.d/{SERVER_CONFIG_FILE}": dump(server)}


def package_files() -> dict[str, bytes]:
    """The ``workbook`` package's files (modules and bundled data), by their path in site-packages."""
    root = PACKAGE_ROOT.parent / "workbook"
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix in (".py", ".npz"):
            found[rel.as_posix()] = path.read_bytes()
    return found


def build_wheel(out_dir: Path, *, jupyter_config: bool = True) -> Path:
    """``convnet_workbook_student-<version>-py3-none-any.whl`` in ``out_dir`` (a PEP 427 wheel, written here)."""
    project = project_metadata()
    version = project["version"]
    dist = WHEEL_NAME.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    pins = _pins()
    metadata = "\n".join([
        "Metadata-Version: 2.1", f"Name: {WHEEL_NAME}", f"Version: {version}",
        "Summary: The ConvNet Workbook's student package: visible checks, gradient checks, plots, given layers",
        f"Requires-Python: {project['requires-python']}",
        *(f"Requires-Dist: {pins[name]}" for name in ("numpy", "matplotlib")), "", ""])
    files = dict(package_files())
    if jupyter_config:
        files.update({f"{dist}-{version}.data/data/{name}": data for name, data in jupyter_config_files().items()})
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: grader bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/top_level.txt"] = b"workbook\n"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in files:   # dist-info last, as wheels are written
            _zip_write(archive, name, files[name])
    return wheel


# -- the student's files ---------------------------------------------------------------------------------------------
def student_readme(course: Course, wheel_name: str) -> str:
    from .selfstudy import exercises

    rows = []
    for assignment in course.assignments():
        for path in course.release_notebooks(assignment):
            nb = cells.read(path)
            count = len(exercises(nb))
            rows.append(f"| {len(rows) + 1} | `notebooks/{assignment}/{path.name}` | {count} | "
                        f"{cells.total_points(nb):g} |")
    table = "\n".join(["| # | notebook | exercises | points |", "| --- | --- | --- | --- |", *rows])
    return f"""# ConvNet Workbook — student bundle

Notebooks in which you implement the pieces of a convolutional network in numpy, following the Stanford CS231n
notes on [Convolutional Networks](https://cs231n.github.io/convolutional-networks/). Every exercise is followed by
a test cell that tells you what holds (✓) and exactly what does not.

## Install (once)

With Python 3.11 or newer, in this folder:

```bash
python3 -m venv .venv
.venv/bin/pip install -r requirements.txt      # Windows: .venv\\Scripts\\pip install -r requirements.txt
```

or with conda: `conda env create -f environment.yml && conda activate convnet-workbook-student`.

This installs JupyterLab, nbgrader's student tools, numpy, matplotlib and the workbook's own package
(`wheels/{wheel_name}`: the checks, the plotting helpers, the given layers and the digits data set).

## Open

```bash
.venv/bin/jupyter lab notebooks
```

Work through the notebooks in order (each builds on the ones before it):

{table}

Keep the folders as they are: `notebooks/<assignment>/<notebook>.ipynb`. Notebooks 03, 05 and 06 read your own
functions from your earlier notebooks next to them (`../02_conv_forward/conv_forward.ipynb`).

## Work

- Run the set-up cell at the top first, then the cells in order.
- Fill in each exercise where it says `# YOUR CODE HERE` (delete the `raise NotImplementedError()` line).
- Run the test cell below it: ✓ lines for what holds, or a red message that says which case failed, what was
  expected, what came back.
- Stuck? Below every exercise's tests are two collapsed hints: "If you're stuck" (a nudge) and "Still stuck:
  the derivation". The table of contents at the top of each notebook links to every exercise.

## Validate

Click **Validate** in the notebook's toolbar (nbgrader): it runs the whole notebook from a fresh kernel and says
whether every visible test passes. Your instructor's grading runs more cases than the visible tests (non-square
inputs, pad 0, stride > 1, N=1, …), so passing them is necessary, not sufficient.

## Submit

Save the notebook (Ctrl-S) and hand in the `.ipynb` file itself, unchanged in name, the way your instructor asks
(upload it to the course site, or use the **Assignments** tab if your course uses nbgrader's exchange). Do not
edit or delete the test cells: they are put back from the instructor's copy before grading.
"""


def student_environment_yml(wheel_name: str) -> str:
    pins = student_requirements()
    conda = "".join(f"  - {spec}\n" for spec in pins)
    return (f"# conda env create -f environment.yml && conda activate {WHEEL_NAME}\n"
            f"name: {WHEEL_NAME}\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n{conda}"
            f"  - pip\n  - pip:\n      - ./wheels/{wheel_name}\n")


def student_requirements_txt(wheel_name: str) -> str:
    return ("# pip install -r requirements.txt   (from this folder)\n"
            + "".join(f"{spec}\n" for spec in student_requirements()) + f"./wheels/{wheel_name}\n")


def build(course: Course, out_dir: Path | None = None) -> Bundle:
    """Write the bundle (folder and zip) under ``out_dir`` (default: ``dist/`` in the course); refuse a leak."""
    out_dir = Path(out_dir or course.root / "dist")
    folder = out_dir / "student-bundle" / BUNDLE_NAME
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for assignment in course.assignments():
        released = course.release / assignment
        if not course.release_notebooks(assignment):
            raise CourseError(f"{released} holds no notebook: run `grader release` first")
        for path in sorted(released.rglob("*")):
            rel = path.relative_to(released)
            if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                target = folder / "notebooks" / assignment / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    wheel = build_wheel(folder / "wheels")
    (folder / "requirements.txt").write_text(student_requirements_txt(wheel.name))
    (folder / "environment.yml").write_text(student_environment_yml(wheel.name))
    (folder / "README.md").write_text(student_readme(course, wheel.name))
    findings = scan_bundle(course, folder)
    if findings:
        shutil.rmtree(folder)
        raise CourseError("the student bundle would leak; nothing was written:\n  " + "\n  ".join(findings[:20]))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    archive = out_dir / ZIP_NAME
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in files:
            _zip_write(zf, f"{BUNDLE_NAME}/{rel}", (folder / rel).read_bytes())
    return Bundle(folder, archive, wheel, files)


# -- proof that nothing of the instructor's is in it -------------------------------------------------------------------
def _source_secrets(course: Course) -> dict[tuple[str, str], set[str]]:
    return {(a, p.name): secret_lines(cells.read(p)) for a in course.assignments() for p in course.source_notebooks(a)}


def _members(path: Path, data: bytes) -> list[tuple[str, bytes]]:
    """A file, or each member of an archive (zip, wheel) — recursively — as (name, bytes)."""
    if path.suffix in (".zip", ".whl") or data[:4] == b"PK\x03\x04":
        found = []
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                if not name.endswith("/"):
                    found += _members(Path(f"{path}!{name}"), archive.read(name))
        return found
    return [(str(path), data)]


def scan_files(course: Course, files: list[tuple[str, bytes]]) -> list[str]:
    """Leaks in ``files`` ((name, bytes) pairs, archives opened); an empty list means clean.

    * no instructor file: a source notebook, the ``grader`` package, ``nbgrader_config.py``, a gradebook;
    * no solution or hidden-test marker, and no import of the hidden-test machinery, in any text;
    * a released notebook holds no secret line of its own source notebook (the release rule, :mod:`grader.leaks`);
    * no text holds a run of three or more consecutive secret lines of any source notebook. (Single lines such as
      ``N, C, H, W = x.shape`` are shared boilerplate: the given layers and later notebooks use them openly.)
    """
    secrets = _source_secrets(course)
    every_secret = set().union(*secrets.values())
    source_names = {name for _, name in secrets}
    findings = []
    for name, data in files:
        parts = Path(name.replace("!", "/")).parts
        if "grader" in parts or "solutions" in parts or name.endswith(("nbgrader_config.py", ".db", ".sqlite")):
            findings.append(f"{name}: an instructor's file")
            continue
        if Path(name).suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for marker in MARKERS:
            if marker in text:
                findings.append(f"{name}: contains {marker!r}")
        if name.endswith(".ipynb"):
            nb = nbformat.reads(text, as_version=4)
            assignment = parts[-2] if len(parts) >= 2 else ""
            own = (assignment, parts[-1])
            if own in secrets:
                findings += scan_notebook(cells.read(course.source / assignment / parts[-1]), nb, name)
            elif parts[-1] in source_names:
                findings.append(f"{name}: a notebook of the course outside its assignment's folder")
            text = "\n\n".join(cell.source for cell in nb.cells)
        for run in solution_runs(text, every_secret):
            findings.append(f"{name}: {len(run)} consecutive solution or hidden-test lines, from {run[0]!r}")
    return findings


def scan_bundle(course: Course, folder: Path) -> list[str]:
    """:func:`scan_files` over every file under ``folder`` (the wheel opened too)."""
    files = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        files += _members(path.relative_to(folder), path.read_bytes())
    return scan_files(course, files)
