"""The box a student's kernel runs in while it is graded.

A submission is untrusted code. While it is graded, its kernel process

* has no network (its own network namespace: only a loopback of its own);
* sees only its own working copy (read-write), a private ``/tmp`` and the Python environment it needs
  (the interpreter prefixes, the venv with its site-packages, the ``workbook`` helper package, ``/usr`` and
  the system libraries), all read-only; not ``solutions/``, the gradebook, the source tree or other
  submissions;
* runs as an unprivileged user of its own when the grader runs as root, so that ``RLIMIT_NPROC`` (which the
  kernel does not enforce for root) really bounds its processes, and no other sandbox shares that count;
* has resource limits on address space, CPU time, processes, open files and file size (no core dumps);
* lives in its own PID namespace, so that killing it kills every process it started.

That is mode ``"bwrap"``, built on bubblewrap (``apt-get install bubblewrap``). Where bubblewrap is missing or
cannot create namespaces, mode ``"rlimits"`` is the DEGRADED fallback: a separate process with the same
rlimits (and the uid drop where the interpreter is readable by that uid), but with the grader's view of the
file system and network. Mode ``"none"`` runs the kernel as a plain subprocess (self-study).

The kernel side (``kernel.py``) turns a :class:`SandboxSpec` into a jupyter_client kernel manager; this
module holds the policy: which paths are visible, which limits apply, which user runs the code, and how a
process tree is killed.

bubblewrap is run as real root *without* a user namespace (``--unshare-all`` would add one, and a user
namespace maps the sandbox user back to host root, for whom ``RLIMIT_NPROC`` is not enforced). It keeps only
CAP_SETUID/CAP_SETGID for the small launcher (:data:`LAUNCHER`), which switches to the sandbox user, sets the
rlimits and execs the kernel; ``setuid`` clears those capabilities and bubblewrap has set ``no_new_privs``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import functools
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("auto", "bwrap", "rlimits", "none")

#: Environment variables that cross into the kernel (glob patterns). Everything else is dropped: the
#: grader's environment can hold tokens, and grading signals such as NBGRADER_EXECUTION must not leak.
DEFAULT_ENV_PASSTHROUGH = (
    "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "PYTHONHASHSEED", "MPLBACKEND", "JPY_SESSION_NAME",
)

#: Leased sandbox uids: one per running kernel, so RLIMIT_NPROC (counted per uid) is per kernel.
UID_BASE = 2_000_000_000
UID_SLOTS = 4096

#: Files under /etc that the kernel may read (fonts for matplotlib, the dynamic linker's cache, time zone).
ETC_READONLY = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "mime.types")


class SandboxError(RuntimeError):
    """The requested sandbox cannot be provided (bubblewrap missing or not permitted, bad spec)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of the kernel process and everything it starts.

    address_space: bytes of virtual memory per process (RLIMIT_AS); a bigger allocation raises MemoryError.
    cpu_seconds: CPU seconds per process (RLIMIT_CPU, soft = hard: the process is killed when it runs out).
    processes: processes and threads of the sandbox user (RLIMIT_NPROC). Only meaningful when the kernel
        runs as a user of its own (see SandboxSpec.uid); the kernel itself needs about 10 threads.
    open_files: open file descriptors per process (RLIMIT_NOFILE).
    file_size: largest file the kernel may write, in bytes (RLIMIT_FSIZE); a bigger write fails with EFBIG.
    output_bytes_per_cell: output a cell may send back; enforced by the client side, carried here as config.
    tmpfs_size: size of the private /tmp in bwrap mode, bytes (tmpfs is RAM and not covered by RLIMIT_AS).
    """
    address_space: int = 4 << 30
    cpu_seconds: int = 600
    processes: int = 64
    open_files: int = 256
    file_size: int = 64 << 20
    output_bytes_per_cell: int = 1 << 20
    tmpfs_size: int = 256 << 20

    def rlimits(self) -> dict[str, int]:
        """The rlimits the launcher sets (names of the `resource` module), soft = hard."""
        return {
            "RLIMIT_AS": self.address_space,
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_FSIZE": self.file_size,
            "RLIMIT_CORE": 0,
        }


@dataclass(frozen=True)
class SandboxSpec:
    """Where and how one kernel runs.

    workdir: the submission's own working copy, the kernel's cwd and its only writable place besides /tmp.
        When the kernel runs as another user, the grader hands the tree to that user (chown) at start.
    limits: resource limits.
    mode: "auto" (bwrap if usable, else the degraded "rlimits"), "bwrap" (fail if unusable), "rlimits", "none".
    uid, gid: the user the kernel runs as when the grader is root. None leases a fresh uid per kernel from
        UID_BASE.. (so parallel kernels do not share an RLIMIT_NPROC count); give one to pin it.
    env_passthrough: glob patterns of the grader's environment variables that reach the kernel (when the
        caller gives start_kernel an explicit `env=`, that env is used as given instead).
    extra_ro_paths: more host paths to show read-only at the same place (e.g. a data directory).
    """
    workdir: Path
    limits: Limits = Limits()
    mode: str = "auto"
    uid: int | None = None
    gid: int | None = None
    env_passthrough: tuple[str, ...] = DEFAULT_ENV_PASSTHROUGH
    extra_ro_paths: tuple[Path, ...] = field(default=())

    def __post_init__(self):
        if self.mode not in MODES:
            raise SandboxError(f"sandbox mode {self.mode!r} is not one of {', '.join(MODES)}")
        object.__setattr__(self, "workdir", Path(self.workdir).resolve())


# --------------------------------------------------------------------------------------------------------
# Which sandbox is available
# --------------------------------------------------------------------------------------------------------

def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def _bwrap_probe(bwrap: str) -> str | None:
    """None if bubblewrap can build our kind of sandbox here, else the reason it cannot."""
    cmd = [bwrap, *_NAMESPACE_ARGS, "--die-with-parent", *_system_args(), "--proc", "/proc", "--dev", "/dev",
           "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        return f"{bwrap} cannot create the namespaces it needs here: {done.stderr.strip() or done.returncode}"
    return None


@functools.lru_cache(maxsize=None)
def _bwrap_version(bwrap: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return "bubblewrap"


def resolve_mode(mode: str = "auto") -> tuple[str, str | None]:
    """(mode actually used, why bwrap is not used or None). Raises SandboxError for an impossible request."""
    if mode not in MODES:
        raise SandboxError(f"sandbox mode {mode!r} is not one of {', '.join(MODES)}")
    if mode in ("rlimits", "none"):
        return mode, None
    bwrap = bwrap_path()
    if bwrap is None:
        reason = "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`"
    elif os.geteuid() != 0:
        # Unprivileged bwrap needs a user namespace, which counts RLIMIT_NPROC against the grader's own
        # uid and cannot give the kernel a user of its own.
        reason = "bubblewrap needs the grader to run as root here (to give the kernel a user of its own)"
    else:
        reason = _bwrap_probe(bwrap)
    if reason is None:
        return "bwrap", None
    if mode == "bwrap":
        raise SandboxError(f"sandbox mode 'bwrap' requested but unavailable: {reason}")
    return "rlimits", reason


def sandbox_status(mode: str = "auto") -> tuple[str, str]:
    """("bwrap" | "rlimits" | "none", human message). "rlimits" means DEGRADED and the message says so loudly.

    Raises SandboxError when mode="bwrap" is requested and bubblewrap cannot be used.
    """
    used, reason = resolve_mode(mode)
    limits = "limits on memory, CPU time, processes, open files and file size"
    if used == "bwrap":
        return used, (f"sandbox: {_bwrap_version(bwrap_path())}; student kernels run without network, see only "
                      f"their own working copy and the Python environment (read-only), run as an unprivileged "
                      f"user of their own, with {limits}")
    if used == "none":
        return used, ("NO SANDBOX: student kernels run as ordinary processes of the grader's user, with full "
                      "access to its files and the network (fine for checking your own work, never for grading "
                      "others')")
    drop = _uid_drop_blocker() if os.geteuid() == 0 else "the grader does not run as root"
    if drop is None:
        who = f"as an unprivileged user of their own, with {limits}"
    else:
        who = (f"as the grader's own user ({drop}), with limits on memory, CPU time, open files and file size "
               f"but none on the number of processes")
    because = f" because {reason}" if reason else " because it was requested"
    return used, (f"DEGRADED SANDBOX{because}. Student kernels run as separate processes {who}; "
                  f"they CAN read every file the grader's user can read (solutions, gradebook, other "
                  f"submissions) and CAN reach the network. Do not grade untrusted submissions this way.")


# --------------------------------------------------------------------------------------------------------
# What the kernel sees
# --------------------------------------------------------------------------------------------------------

_NAMESPACE_ARGS = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try")


def python_roots() -> list[Path]:
    """Host directories that make up the running Python environment (interpreter prefixes, venv)."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    roots: list[Path] = []
    for c in candidates:
        for p in {Path(c), Path(c).resolve()}:
            if p.is_dir() and p not in roots:
                roots.append(p)
    return _outermost(roots)


def student_package_dirs() -> list[Path]:
    """Directories of the student helper package `workbook` (an editable install points into the repo; only
    the package directory itself is shown, never the repository around it)."""
    spec = importlib.util.find_spec("workbook")
    if spec is None or not spec.submodule_search_locations:
        return []
    dirs = []
    for loc in spec.submodule_search_locations:
        for p in {Path(loc), Path(loc).resolve()}:
            if p.is_dir() and p not in dirs:
                dirs.append(p)
    return dirs


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths inside another listed path."""
    return [p for p in paths if not any(q != p and p.is_relative_to(q) for q in paths)]


def _system_args() -> list[str]:
    """/usr read-only and the top-level /bin, /lib* entries as they are on the host (symlinks on merged-/usr)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def _dirs_for(path: Path, made: set[Path]) -> list[str]:
    """bwrap creates missing parents of a mount point with mode 0700 (unusable by the sandbox user): create
    them first, world-traversable."""
    args = []
    for parent in reversed(path.parents):
        if parent == Path("/") or parent in made:
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def bwrap_args(spec: SandboxSpec, *, rw_paths: list[Path], keep_setid_caps: bool) -> list[str]:
    """The bubblewrap command line (up to and including "--") for a kernel described by `spec`.

    rw_paths: host directories to bind read-write at the same path besides the workdir (the IPC directory).
    keep_setid_caps: keep CAP_SETUID/CAP_SETGID for the launcher's switch to the sandbox user.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxError("bubblewrap (bwrap) is not installed")
    args = [bwrap, *_NAMESPACE_ARGS, "--die-with-parent", "--new-session", "--hostname", "sandbox",
            *_system_args(),
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(spec.limits.tmpfs_size), "--tmpfs", "/tmp"]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_READONLY:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[Path] = {Path("/tmp"), Path("/usr"), Path("/etc"), Path("/proc"), Path("/dev")}
    system = [Path("/usr"), *(Path("/") / n for n in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"))]
    ro = [p for p in _outermost(python_roots() + student_package_dirs() + [Path(p) for p in spec.extra_ro_paths])
          if not any(p.is_relative_to(s) for s in system)]
    for path in ro:
        args += [*_dirs_for(path, made), "--ro-bind", str(path), str(path)]
    for path in [spec.workdir, *rw_paths]:
        args += [*_dirs_for(path, made), "--bind", str(path), str(path)]
    # Not --chdir workdir: bwrap would enter it as capability-less root, before the launcher becomes its owner
    # (the launcher enters it then).
    args += ["--chdir", "/", "--cap-drop", "ALL"]
    if keep_setid_caps:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [*args, "--"]


def kernel_env(spec: SandboxSpec, env: dict[str, str], *, home: str, explicit: bool = False) -> dict[str, str]:
    """The kernel's environment: the sandbox's PATH, HOME and Python settings, plus

    * explicit=False (`env` is the grader's ambient environment): only the variables matching
      spec.env_passthrough, so that tokens and grading signals (NBGRADER_EXECUTION) stay outside;
    * explicit=True (the caller passed `env=` to start_kernel and chose every variable): all of `env`.
    """
    bin_dirs = [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
    result = {"PATH": ":".join(dict.fromkeys(bin_dirs)), "HOME": home,
              "MPLCONFIGDIR": f"{home}/.config/matplotlib", "PYTHONNOUSERSITE": "1",
              "PYTHONDONTWRITEBYTECODE": "1"}
    if explicit:
        result.update(env)
    else:
        result.update({k: v for k, v in env.items()
                       if any(fnmatch.fnmatchcase(k, pat) for pat in spec.env_passthrough)})
    return result


# --------------------------------------------------------------------------------------------------------
# Who runs the kernel
# --------------------------------------------------------------------------------------------------------

def _traversable_by_others(path: Path) -> bool:
    """Can an arbitrary unprivileged user reach `path` (x on every parent, r on the path)?"""
    try:
        for parent in reversed(path.parents):
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _uid_drop_blocker() -> str | None:
    """Without bubblewrap the kernel sees the host file system: it can only run as another user if that user
    can read the Python environment. None if it can, else why not."""
    for root in python_roots() + student_package_dirs():
        if not _traversable_by_others(root):
            return f"{root} is not readable by other users"
    return None


class UidLease:
    """A uid of its own for one kernel, held through an flock in a root-only directory until released."""

    def __init__(self, base: int = UID_BASE, slots: int = UID_SLOTS):
        lock_dir = Path(tempfile.gettempdir()) / "workbook-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(lock_dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise SandboxError(f"{lock_dir} must be a directory owned by uid {os.geteuid()} with mode 0700")
        start = (os.getpid() * 7919 + time.monotonic_ns()) % slots
        for i in range(slots):
            uid = base + (start + i) % slots
            fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise SandboxError(f"all {slots} sandbox uids from {base} are in use")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand the working copy to the sandbox user (symlinks themselves, never their targets)."""
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


# --------------------------------------------------------------------------------------------------------
# The launcher: last step before the kernel, inside the sandbox
# --------------------------------------------------------------------------------------------------------

#: Run as `python -I -S -c LAUNCHER CONFIG_JSON KERNEL_ARGV...`: drops to the sandbox user, enters the workdir,
#: sets the rlimits,
#: sets no_new_privs, overrides environment variables, then execs the kernel. Uses only builtin modules.
LAUNCHER = r"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
if cfg["uid"] is not None:
    os.setgroups([])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("sandbox launcher: could not leave root")
if cfg["cwd"] is not None:
    os.chdir(cfg["cwd"])
for name, value in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
except Exception:
    pass
os.environ.update(cfg["set_env"])
os.execv(sys.argv[2], sys.argv[2:])
"""


def launcher_argv(kernel_cmd: list[str], *, uid: int | None, gid: int | None, limits: Limits | None,
                  cwd: Path | None = None, set_env: dict[str, str] | None = None) -> list[str]:
    """The launcher command that runs `kernel_cmd` as `uid`/`gid` (None: as we are) under `limits`.

    Without a uid of its own the kernel gets no RLIMIT_NPROC: the count would include every process of the
    grader's user (the kernel could not even start its threads), and for root it is not enforced at all.
    """
    rlimits = limits.rlimits() if limits else {}
    if uid is None:
        rlimits.pop("RLIMIT_NPROC", None)
    cfg = {"uid": uid, "gid": gid, "rlimits": rlimits, "set_env": set_env or {},
           "cwd": str(cwd) if cwd else None}
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(cfg), *kernel_cmd]


# --------------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of a live process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[2])


def children_of(pids: set[int]) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st and st[0] in pids:
                found.add(int(entry))
    return found


def descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = children_of(frontier) - seen
        seen |= frontier
    return seen


def pid_namespace(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/pid")
    return None


def in_namespace_pid(pid: int) -> int | None:
    """The pid of host process `pid` as seen inside its innermost PID namespace."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    return None


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_tree(root_pid: int, *, rounds: int = 20) -> None:
    """SIGKILL `root_pid`, its process group and all its descendants, repeatedly, until none is left (a
    process that forks while we scan is caught in the next round). The root's own children are killed first
    so that, for bwrap, the PID namespace's init dies and the kernel removes everything inside it."""
    for _ in range(rounds):
        tree = descendants(root_pid)
        for pid in sorted(tree):
            _signal(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root_pid, signal.SIGKILL)
        _signal(root_pid, signal.SIGKILL)
        if not tree:
            return
        time.sleep(0.02)


def wait_gone(pids: set[int], timeout: float) -> bool:
    """Wait until none of `pids` exists (zombies count as gone). True if they all went in time."""
    deadline = time.monotonic() + timeout
    while True:
        alive = set()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state not in (b"Z", b"X"):
                    alive.add(pid)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ESRCH):
                    alive.add(pid)
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
        pids = alive


def pids_of_uid(uid: int) -> set[int]:
    """Live (non-zombie) processes whose real uid is `uid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in ("Z", "X"):
                found.add(int(entry))
    return found


def kill_uid(uid: int, *, rounds: int = 20) -> None:
    """SIGKILL every process of `uid`, repeatedly until none is left. Only for a uid leased to one kernel."""
    if uid == 0 or uid == os.geteuid():
        raise SandboxError(f"refusing to kill every process of uid {uid}")
    for _ in range(rounds):
        pids = pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.02)
