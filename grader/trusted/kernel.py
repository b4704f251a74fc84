"""A jupyter_client kernel manager whose kernel runs inside the sandbox of :mod:`grader.trusted.sandbox`.

It is built from jupyter_client's own extension points, not a fork:

* :class:`SandboxProvisioner` is a ``LocalProvisioner`` that prepares the sandbox (a private IPC directory, a
  uid of its own, the working copy handed to that uid), wraps the kernel command in bubblewrap and the
  launcher, filters the environment, routes signals to the kernel inside the sandbox and kills the whole
  sandbox when asked to kill;
* :class:`SandboxedKernelManager` (blocking) and :class:`AsyncSandboxedKernelManager` (for nbclient's async
  path) install that provisioner and switch the transport to IPC: the kernel has a network namespace of its
  own, so it cannot reach the host's loopback, but it can reach unix sockets in a directory bound into the
  sandbox.

Use::

    km = SandboxedKernelManager(sandbox_spec=SandboxSpec(workdir=copy_of_submission))
    km.start_kernel()
    kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
    ...
    km.kill_hard()      # whatever the kernel ignores
    km.shutdown_kernel(now=True)

or ``NotebookClient(nb, km=AsyncSandboxedKernelManager(sandbox_spec=...))``. Prefer the async manager with
nbclient: nbclient drives a blocking manager through jupyter_core's thread runner, and when such a kernel
fails to start, nbclient's clean-up at interpreter exit waits for a runner that exit has already stopped.

An ``env=`` passed to ``start_kernel`` is used as given (it is the caller's deliberate choice); without one,
only the ``SandboxSpec.env_passthrough`` variables of the grader's environment reach the kernel.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import typing as t
import uuid
import weakref
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.provisioning import LocalProvisioner
from jupyter_core.utils import run_sync
from traitlets import HasTraits, Instance

from . import sandbox as sb
from .sandbox import SandboxError, SandboxSpec


class SandboxProvisioner(LocalProvisioner):
    """Launches the kernel inside the sandbox described by `spec` and owns everything the sandbox holds
    (IPC directory, uid lease) until the kernel is shut down for good."""

    spec = Instance(SandboxSpec)

    def __init__(self, **kwargs: t.Any):
        super().__init__(**kwargs)
        self.mode: str | None = None        # "bwrap" | "rlimits" | "none" once prepared
        self.message: str = ""
        self.uid: int | None = None         # the kernel's uid when it differs from ours
        self.gid: int | None = None
        self.ipc_dir: Path | None = None
        self._lease: sb.UidLease | None = None
        self._release: weakref.finalize | None = None

    # ---- preparation -----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Choose the mode, lease a uid, make the IPC directory, hand the working copy to the kernel's user."""
        spec = self.spec
        if not spec.workdir.is_dir():
            raise SandboxError(f"sandbox workdir {spec.workdir} does not exist")
        mode, _ = sb.resolve_mode(spec.mode)
        message = sb.sandbox_status(spec.mode)[1]
        drop = os.geteuid() == 0 and (mode == "bwrap" or (mode == "rlimits" and sb._uid_drop_blocker() is None))
        lease = sb.UidLease() if drop and spec.uid is None else None
        ipc_dir = Path(tempfile.mkdtemp(prefix="wb-kernel-"))
        # Released by cleanup(); also when a caller never shuts the kernel down (garbage collection, exit).
        self._release = weakref.finalize(self, _release, ipc_dir, lease)
        uid = (lease.uid if lease else spec.uid) if drop else None
        gid = (spec.gid if spec.gid is not None else uid) if drop else None
        (ipc_dir / "home").mkdir(mode=0o700)
        if uid is not None:
            os.chown(ipc_dir, uid, gid)
            os.chown(ipc_dir / "home", uid, gid)
            sb.chown_tree(spec.workdir, uid, gid)
        self._lease, self.ipc_dir, self.uid, self.gid = lease, ipc_dir, uid, gid
        self.mode, self.message = mode, message
        if mode != "bwrap":
            self.log.warning("%s", message)

    async def pre_launch(self, **kwargs: t.Any) -> dict[str, t.Any]:
        if self.mode is None:
            self._prepare()
        km = self.parent
        assert self.ipc_dir is not None
        km.transport = "ipc"
        km.connection_file = str(self.ipc_dir / "kernel.json")
        km.ip = str(self.ipc_dir / "kernel-ipc")
        kwargs["cwd"] = str(self.spec.workdir)
        explicit_env = kwargs.get("env") is not None
        kwargs = await super().pre_launch(**kwargs)
        if self.uid is not None:
            os.chown(km.connection_file, self.uid, self.gid)

        cmd = list(kwargs.pop("cmd"))
        home = "/tmp" if self.mode == "bwrap" else str(self.ipc_dir / "home")
        kwargs["env"] = sb.kernel_env(self.spec, kwargs.get("env") or {}, home=home, explicit=explicit_env)
        if self.mode == "bwrap":
            # The kernel's parent inside the PID namespace is bubblewrap's init, not us: with our pid, ipykernel's
            # parent poller would see a changed parent and quit; JPY_PARENT_PID=1 turns the poller off
            # (--die-with-parent does its job).
            cmd = sb.bwrap_args(self.spec, rw_paths=[self.ipc_dir], keep_setid_caps=self.uid is not None) + \
                sb.launcher_argv(cmd, uid=self.uid, gid=self.gid, limits=self.spec.limits,
                                 cwd=self.spec.workdir, set_env={"JPY_PARENT_PID": "1"})
        elif self.mode == "rlimits":
            cmd = sb.launcher_argv(cmd, uid=self.uid, gid=self.gid, limits=self.spec.limits)
        kwargs["cmd"] = cmd
        return kwargs

    # ---- signals -----------------------------------------------------------------------------------------

    def kernel_pid(self) -> int | None:
        """Host pid of the kernel process itself (inside bwrap: the process with pid 2 in the namespace)."""
        if self.process is None:
            return None
        if self.mode != "bwrap":
            return self.process.pid
        for pid in sorted(sb.descendants(self.process.pid)):
            if sb.in_namespace_pid(pid) == 2:
                return pid
        return None

    async def send_signal(self, signum: int) -> None:
        if self.process is None:
            return
        if signum == signal.SIGKILL:
            self.kill_hard()
            return
        if self.mode == "bwrap":
            pid = self.kernel_pid()
            if pid is not None:
                # bubblewrap does not forward signals; the kernel leads its own process group (--new-session).
                try:
                    os.killpg(pid, signum)
                except OSError:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
            return
        await super().send_signal(signum)

    async def kill(self, restart: bool = False) -> None:
        self.kill_hard()

    def kill_hard(self, timeout: float = 5.0) -> bool:
        """SIGKILL the kernel and every process it started; True when they are all gone within `timeout`.

        bwrap: killing the PID namespace's init makes the kernel remove every process in it. Without
        bwrap: the process tree as far as /proc shows it, and, for a uid leased to this kernel alone,
        every process of that uid (which catches daemonized grandchildren too).
        """
        proc = self.process
        if proc is None:
            return True
        tree = sb.descendants(proc.pid) | {proc.pid}
        sb.kill_tree(proc.pid)
        if self._lease is not None:
            sb.kill_uid(self._lease.uid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=timeout)
        return sb.wait_gone(tree, timeout=timeout) and (self._lease is None or not sb.pids_of_uid(self._lease.uid))

    # ---- end of life -------------------------------------------------------------------------------------

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if restart:
            return
        if self._release is not None:
            self._release()
        self._lease = self.ipc_dir = self._release = None
        self.mode = None


def _release(ipc_dir: Path, lease: sb.UidLease | None) -> None:
    """Free what a sandbox held: its processes (by leased uid, so nothing outlives the kernel), the uid, the
    IPC directory."""
    if lease is not None:
        sb.kill_uid(lease.uid)
        lease.release()
    shutil.rmtree(ipc_dir, ignore_errors=True)


class _SandboxMixin(HasTraits):
    """Kernel-manager side: installs the SandboxProvisioner and reports the sandbox's state."""

    sandbox_spec = Instance(SandboxSpec, allow_none=True,
                            help="Where and how the kernel runs; None takes the launch `cwd` as the workdir")

    def __init__(self, *args: t.Any, **kwargs: t.Any):
        super().__init__(*args, **kwargs)
        self.transport = "ipc"

    async def _async_pre_start_kernel(self, **kw: t.Any):
        if not isinstance(self.provisioner, SandboxProvisioner):
            spec = self.sandbox_spec
            if spec is None:
                if not kw.get("cwd"):
                    raise SandboxError("a sandboxed kernel needs sandbox_spec=SandboxSpec(workdir=...) or cwd=")
                spec = self.sandbox_spec = SandboxSpec(workdir=Path(kw["cwd"]))
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = SandboxProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                  parent=self, spec=spec)
        return await super()._async_pre_start_kernel(**kw)

    pre_start_kernel = run_sync(_async_pre_start_kernel)

    @property
    def sandbox_mode(self) -> str:
        """"bwrap", "rlimits" (degraded) or "none": what the running kernel got, or would get if started."""
        if isinstance(self.provisioner, SandboxProvisioner) and self.provisioner.mode:
            return self.provisioner.mode
        return sb.resolve_mode(self.sandbox_spec.mode if self.sandbox_spec else "auto")[0]

    @property
    def degraded(self) -> bool:
        """True unless the kernel is (or would be) in the full bubblewrap sandbox."""
        return self.sandbox_mode != "bwrap"

    @property
    def sandbox_message(self) -> str:
        if isinstance(self.provisioner, SandboxProvisioner) and self.provisioner.mode:
            return self.provisioner.message
        return sb.sandbox_status(self.sandbox_spec.mode if self.sandbox_spec else "auto")[1]

    @property
    def sandbox_uid(self) -> int | None:
        """The uid the kernel runs as, when it is not the grader's own."""
        return self.provisioner.uid if isinstance(self.provisioner, SandboxProvisioner) else None

    def kill_hard(self) -> None:
        """SIGKILL the kernel's whole process tree/namespace, no matter what it ignores. The manager then
        reports the kernel dead (``is_alive()`` is False); call ``shutdown_kernel(now=True)`` to clean up."""
        if isinstance(self.provisioner, SandboxProvisioner):
            self.provisioner.kill_hard()


class SandboxedKernelManager(_SandboxMixin, KernelManager):
    """A KernelManager whose kernel process runs inside the sandbox described by `sandbox_spec` (a traitlet /
    constructor kwarg). Uses IPC (unix socket) transport in a directory bound into the sandbox, because the
    kernel has no network namespace connection to the host loopback. Usable by nbclient
    (NotebookClient(km=...)) and by jupyter_client directly. Exposes `.degraded` (bool) and `.sandbox_mode`."""


class AsyncSandboxedKernelManager(_SandboxMixin, AsyncKernelManager):
    """The asyncio flavour of SandboxedKernelManager (what nbclient creates by default)."""

    pre_start_kernel = _SandboxMixin._async_pre_start_kernel  # type: ignore[assignment]
