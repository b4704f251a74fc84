"""The bundled sample class: submissions generated from ``solutions/`` by code, never edited by hand.

Five students, each submitting every assignment:

* ``sample-complete`` — every exercise solved with the source notebook's own solution code;
* ``sample-cs231n`` — every exercise solved, the layers in the plain style of public CS231n code
  (:mod:`grader.sample_cs231n`): correct numbers, but ``assert`` instead of ``ValueError`` and float64 outputs;
* ``sample-partial`` — the first half of each notebook's exercises solved, the rest as released;
* ``sample-buggy`` — every exercise solved, but with the classic mistake listed in :data:`CLASSIC_BUGS`
  for that assignment (a flipped kernel, ``=`` instead of ``+=``, ...);
* ``sample-untouched`` — the release exactly as handed out.

A student's notebook is the *released* notebook with solution cells filled in, so it carries exactly what
a real submission carries (locked cells, checksums, cleared hidden tests).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import cells
from .course import Course, CourseError
from .sample_cs231n import CS231N_STYLE


@dataclass(frozen=True)
class Bug:
    """A classic mistake, written as a text substitution in one solution cell."""

    grade_id: str
    old: str
    new: str
    description: str


# One classic mistake per assignment, as a student would make it. tests/test_mistakes.py proves that the
# hidden tests name each of them.
CLASSIC_BUGS: dict[str, Bug] = {
    "01_conv_geometry": Bug("conv_output_size", "span = in_size - effective + 2 * pad", "span = in_size - effective",
                            "the padding is left out of the output size"),
    "02_conv_forward": Bug("conv_forward_naive", "np.sum(window * w[f])", "np.sum(window * w[f, :, ::-1, ::-1])",
                           "the kernel is flipped (convolution instead of cross-correlation)"),
    "03_conv_backward": Bug("conv_backward_naive", "dx_pad[n, :, top:top + HH, left:left + WW] += g * w[f]",
                            "dx_pad[n, :, top:top + HH, left:left + WW] = g * w[f]",
                            "dx is assigned with = instead of accumulated with +="),
    "05_im2col": Bug("col2im", "x_pad[:, :, rows, columns] += cols6", "x_pad[:, :, rows, columns] = cols6",
                     "col2im overwrites instead of adding where windows overlap"),
    "04_pooling": Bug("max_pool_backward_naive", "dx[tap] += np.where(switch, dout, 0)",
                      "dx[tap] = np.where(switch, dout, 0)",
                      "the max-pool gradient is assigned with = instead of accumulated with +="),
    "06_1x1_and_dilated": Bug("receptive_field", "size += dilation * (filter_size - 1) * jump",
                              "size += dilation * (filter_size - 1)",
                              "the receptive field ignores the stride of earlier layers"),
    "07_fc_to_conv": Bug("fc_to_conv", "w_conv = W_fc.T.reshape(F, C, H, W)",
                         "w_conv = W_fc.T.reshape(F, H, W, C).transpose(0, 3, 1, 2)",
                         "the FC weights are read H-major, as if the volume had been flattened (H, W, C)"),
    "08_vgg_memory": Bug("layer_table", "biases = F if layer.get('bias', True) else 0", "biases = 0",
                         "the biases of the conv layers are left out of the parameter count"),
    "09_train_convnet": Bug("softmax_loss", "dscores /= N", "",
                            "the softmax gradient is not divided by the batch size"),
}

STUDENTS = {
    "sample-complete": "every exercise solved",
    "sample-cs231n": "every exercise solved, the layers in plain CS231n style (assert, //, float64)",
    "sample-partial": "the first half of the exercises solved",
    "sample-buggy": "every exercise solved, with one classic mistake",
    "sample-untouched": "the release as handed out",
}


def student_code(solution_source: str) -> str:
    """A solution cell as a student would submit it: the solution markers removed, the code kept."""
    keep = [line for line in solution_source.splitlines()
            if line.strip() not in (cells.BEGIN_SOLUTION, cells.END_SOLUTION)]
    return "\n".join(keep)


def restyled(solution_source: str, body: str) -> str:
    """A solution cell with the code between its solution markers replaced by ``body`` (markers removed)."""
    lines = solution_source.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == cells.BEGIN_SOLUTION)
    end = next(i for i, line in enumerate(lines) if line.strip() == cells.END_SOLUTION)
    return "\n".join(lines[:begin] + body.rstrip("\n").splitlines() + lines[end + 1:])


def filled_notebook(course: Course, assignment: str, notebook: str, solved: int | None = None,
                    bug: Bug | None = None, bodies: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The released notebook with its first ``solved`` solution cells (all when None) filled in.

    ``bodies`` replaces the solution of the named cells by other code (the CS231n-style student)."""
    source = cells.read(course.source / assignment / notebook)
    release = cells.read(course.release / assignment / notebook)
    answers = {cells.grade_id(c): c.source for c in source.cells if cells.is_solution(c)}
    order = [cells.grade_id(c) for c in release.cells if cells.is_solution(c)]
    chosen = set(order if solved is None else order[:solved])
    for cell in release.cells:
        gid = cells.grade_id(cell)
        if cells.is_solution(cell) and gid in chosen:
            code = restyled(answers[gid], bodies[gid]) if bodies and gid in bodies else student_code(answers[gid])
            if bug is not None and bug.grade_id == gid:
                if bug.old not in code:
                    raise CourseError(f"{course.source / assignment / notebook}: the classic bug "
                                      f"{bug.description!r} cannot be applied: {bug.old!r} is not in cell {gid}")
                code = code.replace(bug.old, bug.new)
            cell.source = code
    return release


def build(course: Course, assignments: list[str] | None = None) -> dict[str, list[Path]]:
    """Write the sample class into ``submitted/`` (replacing earlier sample submissions only)."""
    written: dict[str, list[Path]] = {s: [] for s in STUDENTS}
    for student in STUDENTS:
        for step in (course.submitted, course.autograded, course.feedback):
            if (step / student).exists():
                shutil.rmtree(step / student)
    for assignment in assignments or course.assignments():
        for path in course.source_notebooks(assignment):
            n_solutions = sum(cells.is_solution(c) for c in cells.read(path).cells)
            versions = {
                "sample-complete": filled_notebook(course, assignment, path.name),
                "sample-cs231n": filled_notebook(course, assignment, path.name, bodies=CS231N_STYLE.get(assignment)),
                "sample-partial": filled_notebook(course, assignment, path.name, solved=math.ceil(n_solutions / 2)),
                "sample-buggy": filled_notebook(course, assignment, path.name, bug=CLASSIC_BUGS.get(assignment)),
                "sample-untouched": cells.read(course.release / assignment / path.name),
            }
            for student, nb in versions.items():
                target = course.submitted / student / assignment / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, str(target))
                written[student].append(target)
    return written
