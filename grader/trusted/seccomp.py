"""The seccomp filter of a student's kernel: system calls that grading never needs and attacks do.

The filter is built with libseccomp (through ``pyseccomp``, ctypes only) and exported as classic BPF bytes.
bubblewrap installs it with ``--seccomp FD`` just before it executes the launcher; in the degraded rlimits
mode the launcher installs the same bytes itself (``prctl(PR_SET_SECCOMP)``) after ``no_new_privs``.

Everything is allowed except what is listed in :data:`DENIED` (the choice follows Flatpak's and isolate's
filters): each denied call fails with ``EPERM``, never kills, so a probing submission gets an ordinary
``PermissionError``. ``clone3`` fails with ``ENOSYS`` instead, as in Flatpak and Docker: its flags live in
memory a filter cannot read, and ``ENOSYS`` makes the C library fall back to ``clone``, whose flags are
checked (no new namespaces). System calls of another ABI than the native one (32-bit ``int 0x80`` and x32
on x86-64) fail with ``EPERM`` as well.
"""
from __future__ import annotations

import errno
import functools
import tempfile

#: Denied outright, with why (the names are libseccomp's; a name this machine's libseccomp does not know is
#: skipped).
DENIED: dict[str, str] = {
    # the kernel keyring: shared state outside every namespace (isolate, Flatpak, Docker)
    "keyctl": "kernel keyring", "add_key": "kernel keyring", "request_key": "kernel keyring",
    # new namespaces and mounts: the box must stay the box (Flatpak)
    "unshare": "new namespaces", "setns": "joining namespaces", "mount": "mounting", "umount2": "unmounting",
    "pivot_root": "changing the root", "chroot": "changing the root",
    "fsopen": "new mount API", "fsconfig": "new mount API", "fsmount": "new mount API", "fspick": "new mount API",
    "open_tree": "new mount API", "move_mount": "new mount API", "mount_setattr": "new mount API",
    # looking into or steering other processes, profiling (Flatpak, Docker)
    "ptrace": "tracing processes", "process_vm_readv": "reading another process",
    "process_vm_writev": "writing another process", "kcmp": "comparing kernel objects of processes",
    "perf_event_open": "performance counters (side channels)", "bpf": "eBPF programs",
    "userfaultfd": "user fault handling (exploit primitive)",
    "io_uring_setup": "io_uring (bypasses this filter)", "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring",
    # administration a sandbox never does
    "kexec_load": "kexec", "kexec_file_load": "kexec", "init_module": "kernel modules",
    "finit_module": "kernel modules", "delete_module": "kernel modules", "reboot": "reboot",
    "swapon": "swap", "swapoff": "swap", "syslog": "kernel log", "acct": "process accounting",
    "quotactl": "quotas", "uselib": "obsolete loader", "lookup_dcookie": "profiling",
    "open_by_handle_at": "file handles (escape primitive)", "name_to_handle_at": "file handles",
    "move_pages": "NUMA placement of other processes", "migrate_pages": "NUMA placement of other processes",
}

#: ``clone`` flags that create namespaces (CLONE_NEWNS … CLONE_NEWTIME): clone with any of them is denied.
CLONE_NAMESPACE_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x02000000,
                         "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
                         "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000}

#: ioctls on a terminal that inject input into it or read it (TIOCSTI, TIOCLINUX)
TTY_IOCTLS = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}

#: Socket families the kernel may open: local sockets, IP on its own loopback, netlink (the C library's
#: interface queries). Every other family (AF_VSOCK, AF_PACKET, AF_BLUETOOTH, AF_ALG, …) is denied.
ALLOWED_SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) cannot build a filter here."""


def _library():
    try:
        import pyseccomp
    except (ImportError, OSError) as err:   # the binding loads libseccomp.so.2 when imported
        raise SeccompUnavailable(f"libseccomp is not usable ({err}); install it with `apt-get install "
                                 f"libseccomp2` (pyseccomp comes with the workbook)") from None
    return pyseccomp


@functools.lru_cache(maxsize=1)
def filter_bytes() -> bytes:
    """The filter as classic BPF, ready for ``bwrap --seccomp FD`` or ``prctl(PR_SET_SECCOMP)``."""
    sc = _library()
    eperm = sc.ERRNO(errno.EPERM)
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.ACT_BADARCH, eperm)
        for name in DENIED:
            try:
                f.add_rule(eperm, name)
            except (OSError, ValueError, RuntimeError):   # not a system call on this architecture
                continue
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for flag in CLONE_NAMESPACE_FLAGS.values():
            f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        for request in TTY_IOCTLS.values():
            f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
        allowed = set(ALLOWED_SOCKET_FAMILIES.values())
        top = max(allowed)
        for call in ("socket", "socketpair"):
            for family in range(top):
                if family not in allowed:
                    f.add_rule(eperm, call, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, family))
            f.add_rule(eperm, call, sc.Arg(0, sc.GT, top))
        with tempfile.TemporaryFile() as out:
            f.export_bpf(out)
            out.seek(0)
            return out.read()
    except (OSError, ValueError, RuntimeError, AttributeError) as err:
        raise SeccompUnavailable(f"libseccomp could not build the filter: {err}") from None


def unavailable_reason() -> str | None:
    """None when the filter can be built here, else why not."""
    try:
        filter_bytes()
    except SeccompUnavailable as err:
        return str(err)
    return None
