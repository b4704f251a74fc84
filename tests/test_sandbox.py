"""The sandboxed kernel (grader/trusted/sandbox.py, grader/trusted/kernel.py), tested with real kernels.

Each test starts real kernels in the sandbox and runs hostile code in them. The bubblewrap tests need
`bwrap` (.ci/run installs it) and a grader running as root (CI does); they are skipped with a reason
otherwise. Limits are kept small so that a test that breaks cannot hurt the machine: a fork bomb is capped
at a few dozen processes, files at a few MB.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grader.trusted import sandbox as sb
from grader.trusted.kernel import AsyncSandboxedKernelManager, SandboxedKernelManager
from grader.trusted.sandbox import Limits, SandboxError, SandboxSpec

REPO = Path(__file__).resolve().parents[1]

needs_bwrap = pytest.mark.skipif(
    sb.bwrap_path() is None or os.geteuid() != 0,
    reason="bubblewrap not installed (apt-get install bubblewrap) or the tests do not run as root",
)

#: Distinct from the defaults, so that a limit that is not applied (the default left in place) is noticed.
SMALL = Limits(address_space=3 << 30, cpu_seconds=120, processes=48, open_files=200, file_size=8 << 20,
               tmpfs_size=32 << 20)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

def make_course(root: Path) -> dict[str, Path]:
    """A course directory beside the repo's: solutions, a gradebook, two students' working copies."""
    (root / "solutions" / "ps1").mkdir(parents=True)
    (root / "solutions" / "ps1" / "conv.ipynb").write_text("{}")
    (root / "gradebook.db").write_text("not a real database")
    alice = root / "submitted" / "alice" / "ps1"
    bob = root / "submitted" / "bob" / "ps1"
    for d in (alice, bob):
        d.mkdir(parents=True)
    (alice / "conv.ipynb").write_text("{}")
    (bob / "answers.txt").write_text("bob's work")
    return {"root": root, "alice": alice, "bob": bob}


class Kernel:
    """A started SandboxedKernelManager with a blocking client, and helpers to run code in it."""

    def __init__(self, workdir: Path, limits: Limits = SMALL, mode: str = "bwrap", env: dict | None = None):
        self.km = SandboxedKernelManager(sandbox_spec=SandboxSpec(workdir=workdir, limits=limits, mode=mode))
        t0 = time.perf_counter()
        self.km.start_kernel(**({"env": env} if env is not None else {}))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except RuntimeError:
            self.close()
            raise
        self.startup = time.perf_counter() - t0

    def run(self, code: str, timeout: float = 30) -> tuple[str, str, str]:
        """(status, stdout, error name) of one execution."""
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
        content = reply["content"]
        return content["status"], "".join(out), content.get("ename", "")

    def value(self, expr: str):
        """The JSON value of `expr` evaluated in the kernel."""
        status, out, ename = self.run(f"import json as _j; print(_j.dumps({expr}))")
        assert status == "ok", ename
        return json.loads(out.strip().splitlines()[-1])

    def start_cell(self, code: str, timeout: float = 30) -> str:
        """Execute `code` without waiting for it to finish, but until it has printed "started"."""
        msg_id = self.kc.execute("print('started', flush=True)\n" + textwrap.dedent(code))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                    and "started" in msg["content"]["text"]):
                return msg_id
        raise TimeoutError("the cell did not start")

    def wait_dead(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.km.is_alive():
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def kernel(course):
    """One sandboxed kernel for the tests that leave it alive."""
    k = Kernel(course["alice"])
    yield k
    k.close()


@pytest.fixture
def fresh(tmp_path):
    """A sandboxed kernel of its own, for tests that kill it."""
    kernels = []

    def start(limits: Limits = SMALL, mode: str = "bwrap") -> Kernel:
        workdir = tmp_path / f"work{len(kernels)}"
        workdir.mkdir()
        kernels.append(Kernel(workdir, limits, mode))
        return kernels[-1]

    yield start
    for k in kernels:
        k.km.kill_hard()
        k.close()


# ---------------------------------------------------------------------------------------------------------
# status and configuration
# ---------------------------------------------------------------------------------------------------------

def test_status_names_the_mode_and_degraded_says_so():
    mode, message = sb.sandbox_status("rlimits")
    assert mode == "rlimits" and "DEGRADED" in message and "network" in message
    mode, message = sb.sandbox_status("none")
    assert mode == "none" and "NO SANDBOX" in message
    with pytest.raises(SandboxError):
        sb.sandbox_status("docker")


@needs_bwrap
def test_auto_uses_bubblewrap_when_available():
    mode, message = sb.sandbox_status("auto")
    assert mode == "bwrap", message
    assert "DEGRADED" not in message


def test_explicit_bwrap_without_bubblewrap_fails_loudly(monkeypatch):
    monkeypatch.setattr(sb, "bwrap_path", lambda: None)
    with pytest.raises(SandboxError, match="bubblewrap"):
        sb.sandbox_status("bwrap")
    assert sb.sandbox_status("auto")[0] == "rlimits"
    assert "apt-get install bubblewrap" in sb.sandbox_status("auto")[1]


def test_environment_is_filtered_unless_given_explicitly():
    spec = SandboxSpec(workdir=Path("/"))
    ambient = {"NBGRADER_EXECUTION": "autograde", "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/root"}
    env = sb.kernel_env(spec, ambient, home="/tmp")
    assert "NBGRADER_EXECUTION" not in env and "AWS_SECRET_ACCESS_KEY" not in env and "PYTHONPATH" not in env
    assert env["LANG"] == "C.UTF-8" and env["LC_ALL"] == "C" and env["HOME"] == "/tmp"
    chosen = sb.kernel_env(spec, {"NBGRADER_EXECUTION": "autograde", "HOME": "/work"}, home="/tmp", explicit=True)
    assert chosen["NBGRADER_EXECUTION"] == "autograde" and chosen["HOME"] == "/work" and "PATH" in chosen


# ---------------------------------------------------------------------------------------------------------
# what the kernel can see and do (one shared kernel)
# ---------------------------------------------------------------------------------------------------------

@needs_bwrap
def test_kernel_reports_full_sandbox(kernel):
    assert kernel.km.sandbox_mode == "bwrap" and not kernel.km.degraded
    assert kernel.km.transport == "ipc"


@needs_bwrap
def test_no_network(kernel):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):   # the port is reachable from the host
            pass
        server.accept()[0].close()
        status, out, ename = kernel.run(f"""
            import socket, urllib.request
            for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
                            lambda: urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=2),
                            lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)):
                try:
                    attempt()
                    print("CONNECTED")
                except OSError as exc:
                    print("blocked", type(exc).__name__)
        """)
        assert status == "ok", ename
        assert "CONNECTED" not in out and out.count("blocked") == 3, out
        with pytest.raises(BlockingIOError):      # nothing reached the host's listener
            server.accept()
    finally:
        server.close()


@needs_bwrap
def test_sees_only_its_working_copy_and_the_environment(kernel, course):
    seen = kernel.value(f"""{{p: __import__('os').path.exists(p) for p in {[
        str(REPO / 'solutions'), str(REPO / 'grader'), str(REPO / 'gradebook.db'), str(REPO / 'pyproject.toml'),
        str(course['root'] / 'solutions'), str(course['root'] / 'gradebook.db'), str(course['bob']),
        str(course['bob'] / 'answers.txt'), '/root/.ssh', '/home', '/etc/passwd', '/etc/shadow',
    ]!r}}}""")
    assert not any(seen.values()), {p: v for p, v in seen.items() if v}
    assert kernel.value("sorted(__import__('os').listdir('.'))") == ["conv.ipynb"]
    # what it does see, it can read as its unprivileged user (bwrap's own mount points would be mode 0700)
    readable = [p for p in ("/etc/ld.so.cache", "/etc/fonts/fonts.conf") if os.path.exists(p)]
    assert kernel.value(f"[__import__('os').access(p, __import__('os').R_OK) for p in {readable!r}]") \
        == [True] * len(readable)
    assert kernel.value("__import__('os').getcwd()") == str(course["alice"])
    # the student helper package and the scientific stack import; the grader package does not
    assert kernel.value("__import__('workbook').__name__") == "workbook"
    assert kernel.value("__import__('numpy').ones(3).sum()") == 3.0
    status, _, ename = kernel.run("import grader")
    assert (status, ename) == ("error", "ModuleNotFoundError")


@needs_bwrap
def test_writes_only_in_workdir_and_tmp(kernel, course):
    targets = [str(course["alice"].parent / "escape.txt"), str(course["bob"] / "answers.txt"),
               str(REPO / "workbook" / "x.py"), sb.sys.prefix + "/x", "/usr/x", "/etc/x", "/x"]
    status, out, ename = kernel.run(f"""
        import json
        result = {{}}
        for target in {targets!r}:
            try:
                with open(target, "w") as f:
                    f.write("x")
                result[target] = "WRITTEN"
            except OSError as exc:
                result[target] = exc.errno
        with open("answer.txt", "w") as f:
            f.write("mine")
        with open("/tmp/scratch", "w") as f:
            f.write("scratch")
        print(json.dumps(result))
    """)
    assert status == "ok", ename
    result = json.loads(out.strip().splitlines()[-1])
    assert "WRITTEN" not in result.values(), result
    assert (course["alice"] / "answer.txt").read_text() == "mine"
    assert (course["bob"] / "answers.txt").read_text() == "bob's work"
    assert not (course["alice"].parent / "escape.txt").exists()


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop applies when the grader runs as root")
def test_runs_as_unprivileged_user_of_its_own(kernel):
    uid, euid, gid, groups = kernel.value("[__import__('os').getuid(), __import__('os').geteuid(), "
                                          "__import__('os').getgid(), __import__('os').getgroups()]")
    assert uid == euid == kernel.km.sandbox_uid and uid not in (0, os.getuid())
    assert gid != 0 and groups == []
    caps = kernel.value("[l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm'))]")
    assert caps == ["0000000000000000", "0000000000000000"]
    assert kernel.value("open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0]") == "1"


@needs_bwrap
def test_rlimits_are_as_configured(kernel):
    got = kernel.value("{n: __import__('resource').getrlimit(getattr(__import__('resource'), n)) for n in "
                       "['RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE']}")
    assert got == {"RLIMIT_AS": [SMALL.address_space] * 2, "RLIMIT_CPU": [SMALL.cpu_seconds] * 2,
                   "RLIMIT_NPROC": [SMALL.processes] * 2, "RLIMIT_NOFILE": [SMALL.open_files] * 2,
                   "RLIMIT_FSIZE": [SMALL.file_size] * 2, "RLIMIT_CORE": [0, 0]}
    # the private /tmp is a tmpfs of the configured size
    assert kernel.value("__import__('os').statvfs('/tmp').f_blocks * __import__('os').statvfs('/tmp').f_frsize") \
        == SMALL.tmpfs_size


@needs_bwrap
def test_allocating_50_gb_raises_memory_error_and_kernel_survives(kernel):
    status, _, ename = kernel.run("import numpy as np\nx = np.ones(50 * 10**9, dtype=np.uint8)")
    assert (status, ename) == ("error", "MemoryError")
    status, _, ename = kernel.run("y = bytearray(50 * 10**9)")
    assert (status, ename) == ("error", "MemoryError")
    # just over the limit, and never touched: only RLIMIT_AS stops this (the host would map it)
    status, _, ename = kernel.run(f"z = np.empty({SMALL.address_space}, dtype=np.uint8)")
    assert (status, ename) == ("error", "MemoryError")
    assert kernel.value("6 * 7") == 42 and kernel.km.is_alive()


@needs_bwrap
def test_writing_a_1_gb_file_stops_at_the_file_size_limit(kernel, course):
    status, out, ename = kernel.run("""
        import errno
        written, err = 0, None
        try:
            with open("big.bin", "wb") as f:
                chunk = b"\\0" * (1 << 20)
                for _ in range(1024):          # 1 GB
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as exc:
            err = exc.errno
        print(written, err)
    """)
    assert status == "ok", ename
    written, err = out.split()
    assert int(err) == errno.EFBIG and int(written) <= SMALL.file_size
    assert (course["alice"] / "big.bin").stat().st_size == SMALL.file_size
    (course["alice"] / "big.bin").unlink()
    assert kernel.km.is_alive()


# ---------------------------------------------------------------------------------------------------------
# hostile code that ends or must end the kernel (a kernel each)
# ---------------------------------------------------------------------------------------------------------

@needs_bwrap
def test_kill_hard_stops_a_loop_that_ignores_sigint(fresh):
    k = fresh()
    k.start_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")
    k.km.interrupt_kernel()
    time.sleep(1.0)
    assert k.km.is_alive()                      # SIGINT did nothing
    uid = k.km.sandbox_uid
    t0 = time.perf_counter()
    k.km.kill_hard()
    assert k.wait_dead(3.0)
    assert time.perf_counter() - t0 < 3.0
    assert not sb.pids_of_uid(uid)


@needs_bwrap
def test_interrupt_reaches_the_kernel_inside_the_sandbox(fresh):
    k = fresh()
    msg_id = k.start_cell("import time\ntime.sleep(60)")
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=20)
    while reply["parent_header"].get("msg_id") != msg_id:   # spare kernel_info replies from wait_for_ready
        reply = k.kc.get_shell_msg(timeout=20)
    assert reply["content"].get("ename") == "KeyboardInterrupt", reply["content"]
    for _ in range(20):   # ipykernel aborts requests that arrive while it handles the error: ask again
        status, out, _ = k.run("print(1 + 1)")
        if status != "aborted":
            break
        time.sleep(0.1)
    assert (status, out) == ("ok", "2\n")


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC is only enforced for a non-root uid")
def test_fork_bomb_is_contained_and_killed(fresh):
    limits = Limits(address_space=1 << 30, cpu_seconds=60, processes=24, open_files=200, file_size=1 << 20)
    k = fresh(limits)
    uid = k.km.sandbox_uid
    status, out, ename = k.run("""
        import os, time
        children, err = [], None
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError as exc:
                err = exc.errno
                break
            if pid == 0:
                time.sleep(120)
                os._exit(0)
            children.append(pid)
        for pid in children:                   # give the slots back before the next cell
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        print(len(children), err)
    """)
    assert status == "ok", ename
    n, err = out.split()
    assert int(err) == errno.EAGAIN and int(n) < limits.processes
    # now a real bomb: every process forks forever; it stays bounded, and kill_hard removes all of it
    k.start_cell("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    time.sleep(1.0)
    assert 0 < len(sb.pids_of_uid(uid)) <= limits.processes
    k.km.kill_hard()
    assert k.wait_dead(5.0)
    assert not sb.pids_of_uid(uid)


@needs_bwrap
@pytest.mark.parametrize("code, how", [
    ("import os\nos._exit(0)", "exit"),
    ("import ctypes\nctypes.string_at(0)", "segfault"),
])
def test_kernel_death_is_reported(fresh, code, how):
    k = fresh()
    k.kc.execute(code)
    assert k.wait_dead(10.0), f"manager still thinks the kernel is alive after {how}"
    rc = k.km.provisioner.process.returncode if k.km.provisioner.process else None
    if how == "segfault":
        assert rc not in (0, None)


# ---------------------------------------------------------------------------------------------------------
# clients, lifecycle, degraded mode
# ---------------------------------------------------------------------------------------------------------

@needs_bwrap
@pytest.mark.parametrize("manager", [SandboxedKernelManager, AsyncSandboxedKernelManager])
def test_nbclient_runs_a_notebook_in_the_sandbox(tmp_path, manager, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)      # the kernel's inline backend, as for a student
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, numpy as np\nprint(os.getcwd(), np.arange(3).sum())"),
        nbformat.v4.new_code_cell(f"print(os.path.exists({str(REPO / 'solutions')!r}))"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    km = manager(sandbox_spec=SandboxSpec(workdir=tmp_path, limits=SMALL))
    NotebookClient(nb, km=km, timeout=60, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[0].outputs[0]["text"] == f"{tmp_path} 3\n"
    assert nb.cells[1].outputs[0]["text"] == "False\n"
    assert [o["output_type"] for o in nb.cells[2].outputs] == ["display_data"]   # a figure, and no warnings
    assert "image/png" in nb.cells[2].outputs[0]["data"]
    assert km.sandbox_mode == "bwrap"


@needs_bwrap
def test_explicit_env_reaches_the_kernel_and_shutdown_releases_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "ambient")
    k = Kernel(tmp_path, env={"NBGRADER_EXECUTION": "autograde", "LANG": "C.UTF-8"})
    env = k.value("dict(__import__('os').environ)")
    assert env["NBGRADER_EXECUTION"] == "autograde" and "GRADER_SECRET" not in env
    ipc_dir, uid = k.km.provisioner.ipc_dir, k.km.sandbox_uid
    assert ipc_dir.is_dir() and str(ipc_dir) in k.km.connection_file
    k.close()
    assert not ipc_dir.exists()
    assert not sb.pids_of_uid(uid)


@needs_bwrap
def test_workdir_is_required(tmp_path):
    with pytest.raises(SandboxError, match="does not exist"):
        SandboxedKernelManager(sandbox_spec=SandboxSpec(workdir=tmp_path / "missing")).start_kernel()


def test_degraded_mode_works_and_reports_itself(fresh, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    k = fresh(mode="rlimits")
    assert k.km.sandbox_mode == "rlimits" and k.km.degraded
    assert "DEGRADED" in k.km.sandbox_message
    got = k.value("{n: __import__('resource').getrlimit(getattr(__import__('resource'), n)) for n in "
                  "['RLIMIT_AS', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE']}")
    assert got == {"RLIMIT_AS": [SMALL.address_space] * 2, "RLIMIT_NOFILE": [SMALL.open_files] * 2,
                   "RLIMIT_FSIZE": [SMALL.file_size] * 2}
    status, _, ename = k.run("import numpy as np\nx = np.ones(50 * 10**9, dtype=np.uint8)")
    assert (status, ename) == ("error", "MemoryError")
    assert "NBGRADER_EXECUTION" not in k.value("sorted(__import__('os').environ)")
    # the kill works without namespaces too
    k.start_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")
    k.km.kill_hard()
    assert k.wait_dead(3.0)
