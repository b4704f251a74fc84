"""A memory and a process limit over a kernel's whole process tree: one control group per kernel.

Resource limits (rlimits) bound one process at a time: eight children of a kernel may each take the
address-space limit. A control group bounds them together. Each kernel gets its own group, created under the
grader's own group, which the launch command joins before bubblewrap starts (so every process of the kernel,
however it forks, is inside):

* cgroup v2 (one unified hierarchy with the ``memory`` and ``pids`` controllers): ``memory.max``,
  ``memory.swap.max = 0``, ``memory.oom.group = 1`` (an OOM kill takes the whole group) and ``pids.max``;
* cgroup v1 (the ``memory`` and ``pids`` hierarchies mounted on their own, as on machines that still boot
  the legacy layout): ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (the same: no swap) and
  ``pids.max``.

v2 is used where its controllers are available; v1 where it is what the machine mounts. Creating groups
needs root (or a delegated v2 subtree); where neither works the rlimits remain and the status says so.
An OOM kill is read back from ``memory.events`` / ``memory.oom_control`` (``oom_kill N``), so a kernel
stopped by the memory limit is reported as such, not as a crash.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PREFIX = "workbook-kernel-"


@dataclass(frozen=True)
class Hierarchy:
    """Where this process may create kernel groups: v2 (one directory) or v1 (a memory and a pids directory)."""

    version: int
    memory: Path
    pids: Path

    def describe(self) -> str:
        return f"cgroup v{self.version}"


def _mounts(mountinfo: str) -> list[tuple[str, str, set[str]]]:
    """(fstype, mount point, super options) of the cgroup file systems in /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((tail[0], fields[4].replace("\\040", " "), set(tail[2].split(","))))
    return found


def _own_groups(proc_cgroup: str) -> dict[str, str]:
    """controller (or "" for v2) -> this process's group path, from /proc/self/cgroup."""
    groups = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in (parts[1].split(",") if parts[1] else [""]):
                groups[controller] = parts[2]
    return groups


def _writable_dir(path: Path) -> bool:
    """Can we create (and remove) a group under `path`?"""
    probe = path / f"{PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


def detect(mountinfo: str | None = None, proc_cgroup: str | None = None) -> tuple[Hierarchy | None, str]:
    """(the hierarchy to use, or None; a sentence saying which, or why none)."""
    try:
        mountinfo = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
        proc_cgroup = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    except OSError as err:
        return None, f"cgroups are not readable here ({err})"
    mounts, own = _mounts(mountinfo), _own_groups(proc_cgroup)
    reasons = []
    for fstype, point, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        base = Path(point) / own[""].lstrip("/")
        try:
            controllers = set((base / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if not {"memory", "pids"} <= controllers:
            reasons.append(f"cgroup v2 at {point} lacks the memory/pids controllers ({' '.join(sorted(controllers))})")
            continue
        parent = _v2_parent(base)
        if parent is None:
            reasons.append(f"cgroup v2 group {base} cannot hold kernel groups (not delegated to this user, or "
                           f"busy with other processes)")
            continue
        return Hierarchy(2, parent, parent), f"cgroup v2 ({parent})"
    v1 = {}
    for controller in ("memory", "pids"):
        for fstype, point, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                v1[controller] = Path(point) / own[controller].lstrip("/")
    if len(v1) == 2:
        if all(_writable_dir(p) for p in v1.values()):
            return Hierarchy(1, v1["memory"], v1["pids"]), f"cgroup v1 ({v1['memory']}, {v1['pids']})"
        reasons.append("the cgroup v1 memory and pids hierarchies are not writable by this user (run the grader "
                       "as root)")
    elif not reasons:
        reasons.append("neither cgroup v2 with the memory and pids controllers nor the v1 memory and pids "
                       "hierarchies are mounted")
    return None, "; ".join(reasons)


def _v2_parent(base: Path) -> Path | None:
    """A v2 group under which kernel groups get the memory and pids controllers, or None.

    A group that holds processes cannot hand controllers to children (the "no internal processes" rule), so
    when ours does, this process moves into a leaf of its own first (as nsjail does) and retries.
    """
    want = "+memory +pids"
    try:
        (base / "cgroup.subtree_control").write_text(want)
        return base if _writable_dir(base) else None
    except OSError:
        pass
    leaf = base / f"{PREFIX}grader-{os.getpid()}"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        (base / "cgroup.subtree_control").write_text(want)
        return base if _writable_dir(base) else None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def hierarchy() -> tuple[Hierarchy | None, str]:
    """detect(), once per process."""
    return detect()


class KernelCgroup:
    """The group (v2) or pair of groups (v1) of one kernel."""

    def __init__(self, where: Hierarchy, memory: int, pids: int):
        self.where = where
        self.memory_limit = memory
        self.pids_limit = pids
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.dirs = [where.memory / name] if where.version == 2 else [where.memory / name, where.pids / name]
        for d in self.dirs:
            d.mkdir()
        try:
            if where.version == 2:
                g = self.dirs[0]
                _write(g / "memory.max", memory)
                _write(g / "memory.swap.max", 0, optional=True)
                _write(g / "memory.oom.group", 1, optional=True)
                _write(g / "pids.max", pids)
            else:
                mem, pid = self.dirs
                _write(mem / "memory.limit_in_bytes", memory)
                _write(mem / "memory.memsw.limit_in_bytes", memory, optional=True)   # no swap on top
                _write(mem / "memory.swappiness", 0, optional=True)
                _write(pid / "pids.max", pids)
        except OSError:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[Path]:
        """The files a process writes its pid to in order to join (all of them, v1 has two)."""
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(x) for x in f.read_text().split()}
        return found

    def oom_kills(self) -> int:
        """How many processes of this kernel the OOM killer has killed because of the memory limit."""
        events = self.dirs[0] / ("memory.events" if self.where.version == 2 else "memory.oom_control")
        with contextlib.suppress(OSError, ValueError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def peak_memory(self) -> int | None:
        name = "memory.peak" if self.where.version == 2 else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int((self.dirs[0] / name).read_text().split()[0])
        return None

    def kill(self, rounds: int = 50) -> bool:
        """SIGKILL every process in the group; True when it is empty."""
        if self.where.version == 2:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        for _ in range(rounds):
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        return not self.pids()

    def remove(self) -> None:
        """Kill what is left and remove the group(s)."""
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:      # the last processes are still exiting
                    time.sleep(0.02)


def _write(path: Path, value: int, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except FileNotFoundError:
        if not optional:
            raise
    except OSError:
        if not optional:
            raise


def sweep(where: Hierarchy) -> int:
    """Remove kernel groups left behind by graders that are gone (killed before they could clean up)."""
    removed = 0
    for parent in {where.memory, where.pids}:
        with contextlib.suppress(OSError):
            for d in parent.iterdir():
                if not d.name.startswith(PREFIX) or not d.is_dir():
                    continue
                owner = d.name[len(PREFIX):].split("-")[0]
                if owner.isdigit() and not _alive(int(owner)):
                    with contextlib.suppress(OSError):
                        for pid in (d / "cgroup.procs").read_text().split():
                            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                                os.kill(int(pid), signal.SIGKILL)
                        time.sleep(0.05)
                        d.rmdir()
                        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
