"""The trusted grading path: what may cross from the kernel, the test cell's namespace, restoring test cells,
the import audit, and whole notebooks graded by :func:`grader.trusted.grade_notebook`."""
from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader import cells  # noqa: E402
from grader.course import Course  # noqa: E402
from grader.trusted import wire  # noqa: E402
from grader.trusted.audit import ImportAudit, static_imports  # noqa: E402
from grader.trusted.engine import restore_grade_cells  # noqa: E402
from grader.trusted.namespace import free_names  # noqa: E402

LIMIT = 1 << 20


def _roundtrip(value):
    return wire.decode(wire.encode(value, LIMIT, 1), LIMIT, 1)


def _npy(array, allow_pickle=False) -> list:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return ["a", base64.b64encode(buffer.getvalue()).decode()]


# -- wire ------------------------------------------------------------------------------------------------------------
def test_plain_data_crosses_unchanged():
    value = {"x": np.arange(6.0).reshape(2, 3), "p": {"stride": 2, "pad": 1}, "t": (1, 2.5, None, True, "s"),
             "l": [np.float32(1.5), np.int64(3), 1 + 2j], 7: np.zeros((0, 3), dtype=np.uint8)}
    back = _roundtrip(value)
    np.testing.assert_array_equal(back["x"], value["x"])
    assert back["p"] == {"stride": 2, "pad": 1} and back["t"] == (1, 2.5, None, True, "s")
    assert type(back["t"]) is tuple and type(back["l"]) is list and back[7].shape == (0, 3)
    assert type(back["l"][0]) is np.float32 and back["l"][1] == 3 and back["l"][2] == 1 + 2j


def test_arrays_arrive_as_fresh_plain_native_arrays():
    class Sub(np.ndarray):
        def __eq__(self, other):
            return True
    sub = np.arange(3.0).view(Sub)
    back = _roundtrip(sub)
    assert type(back) is np.ndarray and back.flags.writeable and back.flags.owndata
    big_endian = wire.decode(_npy(np.arange(3, dtype=">f8")), LIMIT, 1)
    assert big_endian.dtype == np.float64 and big_endian.dtype.isnative


@pytest.mark.parametrize("evil", [
    _npy(np.array([object()], dtype=object), allow_pickle=True),          # pickle inside .npy
    _npy(np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])),                  # structured (void)
    _npy(np.array(["a"])),                                               # strings as an array
    ["a", "not base64 !"],
    ["x", 1],                                                            # unknown tag
    ["i", "1" * 100],                                                    # absurd integer
    ["d", [[["l", []], ["n"]]]],                                          # unhashable key
    ["h", "1", "f", True],                                               # malformed handle
])
def test_anything_else_is_refused(evil):
    with pytest.raises(wire.WireError):
        wire.decode(evil, LIMIT, 1)


def test_size_depth_and_stale_handles_are_refused():
    with pytest.raises(wire.WireError, match="larger"):
        wire.decode(_npy(np.zeros(LIMIT)), LIMIT, 1)
    deep = ["n"]
    for _ in range(100):
        deep = ["l", [deep]]
    with pytest.raises(wire.WireError, match="deep"):
        wire.decode(deep, LIMIT, 1)
    with pytest.raises(wire.WireError, match="restarted"):
        wire.encode(wire.Handle(1, "tuple", False, generation=1), LIMIT, generation=2)
    with pytest.raises(wire.WireError, match="cannot be passed"):
        wire.encode(lambda: 0, LIMIT, 1)
    with pytest.raises(wire.WireError):
        wire.parse_reply("x" * (2 * LIMIT), LIMIT)


def test_student_exceptions_are_rebuilt_by_name_only():
    assert type(wire.rebuild_exception("NotImplementedError", "")) is NotImplementedError
    assert type(wire.rebuild_exception("ValueError", "bad stride")) is ValueError
    assert type(wire.rebuild_exception("SystemExit", "0")) is wire.StudentException   # not an Exception
    assert type(wire.rebuild_exception("CheckFailure", "x")) is wire.StudentException
    assert len(str(wire.rebuild_exception("ValueError", "y" * 10**6))) <= wire.MAX_MESSAGE_CHARS


# -- namespace, restoring, audit ---------------------------------------------------------------------------------
def test_free_names_are_what_the_cell_reads_but_never_binds():
    code = ("from grader.hidden import reference\nref = reference('a')\nout, cache = conv(x, w)\n"
            "f = lambda q: ref.g(q, stride)\nfor i in range(3):\n    check(i, [k for k in y])\n")
    assert free_names(code) == {"conv", "x", "w", "stride", "check", "y"}


def _relu_notebooks():
    from adversarial.course import relu_notebook
    source = relu_notebook()
    for cell in source.cells:
        cell.pop("id", None)
    return source, nbformat.from_dict(nbformat.from_dict(source))


def test_restore_puts_back_the_instructors_test_cells():
    source, nb = _relu_notebooks()
    tests = [i for i, c in enumerate(nb.cells) if cells.is_test(c)]
    nb.cells[tests[0]].source = "pass"
    nb.cells[tests[0]].metadata.nbgrader["points"] = 100
    nb.cells[tests[1]].metadata.nbgrader["grade"] = False
    duplicate = nbformat.from_dict(dict(nb.cells[tests[0]]))
    del nb.cells[tests[2]]
    nb.cells.insert(1, duplicate)
    nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade": True, "points": 9,
                                                                           "grade_id": "bonus"}}))
    notes = restore_grade_cells(nb, source)
    restored = [(cells.grade_id(c), c.source, cells.points(c)) for c in nb.cells if cells.is_test(c)]
    expected = [(cells.grade_id(c), c.source, cells.points(c)) for c in source.cells if cells.is_test(c)]
    assert restored == expected
    assert len(notes) == 5, notes


def test_static_audit_finds_imports_however_spelled():
    source, nb = _relu_notebooks()
    cell = next(c for c in nb.cells if cells.grade_id(c) == "relu_backward")
    cell.source = ("import numpy as np\nfrom scipy.signal import correlate\n"
                   "def f():\n    import torch.nn.functional as F\n    m = __import__('cv2')\n"
                   "    import importlib\n    return importlib.import_module('sk' + 'learn')\n") + cell.source
    nb.cells.append(nbformat.v4.new_code_cell("import jax"))           # a cell the student added
    found = {(f.module, f.how) for f in static_imports(nb, source)}
    assert {("scipy.signal", "import statement"), ("torch.nn.functional", "import statement"),
            ("cv2", "__import__ call"), ("jax", "import statement"),
            ("<computed name>", "importlib.import_module with a computed name")} <= found
    flagged = {f.module for f in ImportAudit().static(nb, source, "01_relu")}
    assert "numpy" not in flagged and "scipy.signal" in flagged and "importlib" in flagged
    assert ImportAudit(allowed={"01_relu": ["numpy", "scipy"]}).static(nb, source, "01_relu")[0].module != \
        "scipy.signal"


# -- whole notebooks ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def relu_course(tmp_path_factory) -> Course:
    from adversarial.course import make_course
    return make_course(tmp_path_factory.mktemp("trusted") / "course", trusted=True, timeout=20)


@pytest.mark.slow
def test_source_gets_full_marks_and_release_zero(relu_course):
    from adversarial.course import ASSIGNMENT, NOTEBOOK
    from grader.trusted import grade_notebook

    source = grade_notebook(relu_course.source / ASSIGNMENT / NOTEBOOK, ASSIGNMENT, relu_course)
    release = grade_notebook(relu_course.release / ASSIGNMENT / NOTEBOOK, ASSIGNMENT, relu_course)
    assert source.score == source.max_score == 6 and not source.problem
    assert release.score == 0 and release.max_score == 6
    assert all("NotImplementedError" in c.message for c in release.cells)
    assert not source.report.findings and not source.report.restarts


@pytest.mark.slow
@pytest.mark.parametrize("policy, expected", [("flag", 6.0), ("zero", 0.0)])
def test_import_policy_flags_or_zeroes(relu_course, tmp_path, policy, expected):
    """A solution that imports scipy inside its function: found statically and at run time."""
    from adversarial.builder import fill
    from adversarial.course import ASSIGNMENT, NOTEBOOK
    from grader.trusted import grade_notebook, load_course_config

    nb = fill(cells.read(relu_course.release / ASSIGNMENT / NOTEBOOK),
              cells.read(relu_course.source / ASSIGNMENT / NOTEBOOK), "honest")
    cell = next(c for c in nb.cells if cells.grade_id(c) == "count_positive")
    cell.source = cell.source.replace('"""\n', '"""\n    m = __import__("scipy")\n', 1)
    path = tmp_path / NOTEBOOK
    nbformat.write(nb, str(path))
    config = load_course_config(relu_course)
    config.ImportAudit.policy = policy
    result = grade_notebook(path, ASSIGNMENT, relu_course, config=config)
    assert result.score == expected
    assert {(f.module, f.how) for f in result.report.findings} >= {("scipy", "__import__ call"),
                                                                    ("scipy", "loaded at run time")}
    assert "Import audit" in result.graded.cells[0].source and "scipy" in result.graded.cells[0].source


# Every real source notebook getting full marks and its untouched release 0 through the core is tested on the
# session's graded sample class (tests/test_demo.py: instructor-source and sample-untouched), graded once.
