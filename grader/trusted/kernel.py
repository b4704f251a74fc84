"""The student's kernel: a jupyter_client kernel manager whose kernel runs in the sandbox of
:mod:`grader.trusted.sandbox`, and the one place that decides its environment.

It is built from jupyter_client's own extension points, not a fork:

* :class:`SandboxProvisioner` is a ``LocalProvisioner`` that prepares the sandbox (:func:`sandbox.prepare`: a
  private IPC folder, a uid of its own, a cgroup, the seccomp filter), has the backend wrap the kernel command,
  sets the environment, routes signals to the kernel inside the sandbox and kills the whole sandbox when asked;
* :class:`SandboxedKernelManager` (blocking) and :class:`AsyncSandboxedKernelManager` (for nbclient's async
  path) install that provisioner and switch the transport to IPC: the kernel has a network namespace of its
  own, so it cannot reach the host's loopback, but it can reach unix sockets in a folder bound into the
  sandbox.

Everything that starts a kernel for grading goes through :func:`make_kernel_manager`::

    km = make_kernel_manager(submission_dir, "auto", limits, status=probe("auto"))
    km.start_kernel(env=kernel_env(submission_dir, "autograde"))
    kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=60)
    ...
    km.memory_exceeded()   # True once the cgroup's OOM killer struck
    km.kill_hard()         # whatever the kernel ignores
    km.shutdown_kernel(now=True)

The kernel works in a private scratch copy of ``submission_dir`` and never writes to it.

An ``env=`` passed to ``start_kernel`` is used as given (it is the caller's deliberate choice); without one,
only the ``SandboxSpec.env_passthrough`` variables of the grader's environment reach the kernel. Either way
the sandbox's own variables (PATH, HOME, caches in the private home) come last.
"""
from __future__ import annotations

import contextlib
import os
import signal
import typing as t
import uuid
import weakref
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.provisioning import LocalProvisioner
from jupyter_core.utils import run_sync
from traitlets import HasTraits, Instance

from . import sandbox as sb
from .sandbox import Limits, SandboxError, SandboxSpec, SandboxStatus, sandbox_status  # noqa: F401

KERNEL_NAME = "python3"
_WARNED: set[SandboxStatus] = set()


def kernel_env(workdir: Path | None = None, execution: str = "", *, ambient: dict[str, str] | None = None,
               passthrough: tuple[str, ...] = sb.DEFAULT_ENV_PASSTHROUGH) -> dict[str, str]:
    """The environment of a grading kernel: the passthrough variables of the grader's environment (no tokens,
    no PYTHONPATH), a headless matplotlib and, for nbgrader's sake, ``NBGRADER_EXECUTION``. The sandbox adds
    PATH, HOME and the cache folders itself, inside the kernel's private home. `workdir` is accepted for the
    callers' convenience; nothing in the environment points into it."""
    env = sb._passthrough(dict(os.environ) if ambient is None else ambient, passthrough)
    env.update({"MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if execution:
        # nbgrader sets this during autograding and notebooks may rely on it; an attack that branches on it
        # gains nothing because the verdict is not the kernel's.
        env["NBGRADER_EXECUTION"] = execution
    return env


class SandboxProvisioner(LocalProvisioner):
    """Launches the kernel inside the sandbox described by `spec` and owns everything the sandbox holds
    (:class:`sandbox.KernelPlan`) until the kernel is shut down for good."""

    spec = Instance(SandboxSpec)

    def __init__(self, **kwargs: t.Any):
        super().__init__(**kwargs)
        self.plan: sb.KernelPlan | None = None
        self._release: weakref.finalize | None = None

    # ---- state ---------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str | None:
        return self.plan.status.mode if self.plan else None

    @property
    def message(self) -> str:
        return self.plan.status.message(self.spec.limits) if self.plan else ""

    @property
    def uid(self) -> int | None:
        return self.plan.uid if self.plan else None

    @property
    def ipc_dir(self) -> Path | None:
        return self.plan.ipc_dir if self.plan else None

    # ---- preparation ---------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        plan = sb.prepare(self.spec)
        # Released by cleanup(); also when a caller never shuts the kernel down (garbage collection, exit).
        self._release = weakref.finalize(self, plan.release)
        self.plan = plan
        for note in plan.notes:
            self.log.warning("%s", note)
        if plan.status.mode != "bwrap" and plan.status not in _WARNED:
            _WARNED.add(plan.status)         # said once per process, loudly, not once per kernel
            self.log.warning("%s", self.message)

    async def pre_launch(self, **kwargs: t.Any) -> dict[str, t.Any]:
        if self.plan is None:
            self._prepare()
        plan, km = self.plan, self.parent
        assert plan is not None
        km.transport = "ipc"
        km.connection_file = str(plan.ipc_dir / "kernel.json")
        km.ip = str(plan.ipc_dir / "kernel-ipc")
        kwargs["cwd"] = "/"
        explicit_env = kwargs.get("env") is not None
        kwargs = await super().pre_launch(**kwargs)
        if plan.uid is not None:
            os.chown(km.connection_file, plan.uid, plan.gid)
        given = kwargs.get("env") or {}
        env = dict(given) if explicit_env else sb._passthrough(given, self.spec.env_passthrough)
        env.update(sb.sandbox_env(plan))
        kwargs["env"] = env
        kwargs["cmd"] = sb.backend(plan.status).wrap(list(kwargs.pop("cmd")), plan, {})
        return kwargs

    # ---- signals ---------------------------------------------------------------------------------------------
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

        bwrap: killing the PID namespace's init makes the kernel remove every process in it. Every backend
        also kills what its cgroup holds and, for a uid leased to this kernel alone, every process of that uid.
        """
        proc, plan = self.process, self.plan
        if proc is None or plan is None:
            return True
        tree = sb.descendants(proc.pid) | {proc.pid}
        sb.backend(plan.status).kill(plan, proc.pid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=timeout)
        gone = sb.wait_gone(tree, timeout=timeout)
        if plan.lease is not None:
            gone = gone and not sb.pids_of_uid(plan.lease.uid)
        if plan.cgroup is not None:
            gone = gone and not plan.cgroup.pids()
        return gone

    def memory_exceeded(self) -> bool:
        """Has the memory limit (the kernel's cgroup) stopped a process of this kernel?"""
        return bool(self.plan and self.plan.cgroup and self.plan.cgroup.oom_kills() > 0)

    # ---- end of life -------------------------------------------------------------------------------------
    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if restart:
            return
        if self._release is not None:
            self._release()
        self._release = self.plan = None


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

    def _status(self) -> SandboxStatus:
        return self.sandbox_spec.resolved_status() if self.sandbox_spec else sb.probe("auto")

    @property
    def sandbox_mode(self) -> str:
        """"bwrap", "rlimits" (degraded) or "none": what the running kernel got, or would get if started."""
        if isinstance(self.provisioner, SandboxProvisioner) and self.provisioner.mode:
            return self.provisioner.mode
        return self._status().mode

    @property
    def degraded(self) -> bool:
        """True unless the kernel is (or would be) in the full bubblewrap sandbox."""
        return self.sandbox_mode != "bwrap"

    @property
    def sandbox_message(self) -> str:
        limits = self.sandbox_spec.limits if self.sandbox_spec else Limits()
        return self._status().message(limits)

    @property
    def sandbox_uid(self) -> int | None:
        """The uid the kernel runs as, when it is not the grader's own."""
        return self.provisioner.uid if isinstance(self.provisioner, SandboxProvisioner) else None

    def memory_exceeded(self) -> bool:
        return isinstance(self.provisioner, SandboxProvisioner) and self.provisioner.memory_exceeded()

    def kill_hard(self) -> None:
        """SIGKILL the kernel's whole process tree/namespace/cgroup, no matter what it ignores. The manager
        then reports the kernel dead (``is_alive()`` is False); call ``shutdown_kernel(now=True)`` to clean up."""
        if isinstance(self.provisioner, SandboxProvisioner):
            self.provisioner.kill_hard()


class SandboxedKernelManager(_SandboxMixin, KernelManager):
    """A KernelManager whose kernel process runs inside the sandbox described by `sandbox_spec` (a traitlet /
    constructor kwarg). Uses IPC (unix socket) transport in a folder bound into the sandbox, because the
    kernel has no network namespace connection to the host loopback. Usable by nbclient
    (NotebookClient(km=...)) and by jupyter_client directly. Exposes `.degraded` (bool) and `.sandbox_mode`."""


class AsyncSandboxedKernelManager(_SandboxMixin, AsyncKernelManager):
    """The asyncio flavour of SandboxedKernelManager (what nbclient creates by default)."""

    pre_start_kernel = _SandboxMixin._async_pre_start_kernel  # type: ignore[assignment]


def make_kernel_manager(workdir: Path, mode: str = "auto", limits: Limits | None = None,
                        status: SandboxStatus | None = None) -> SandboxedKernelManager:
    """A kernel manager for one submission's kernel: a scratch copy of ``workdir`` in the sandbox of ``mode``
    (or of the already probed ``status``), under ``limits``.

    The returned manager has ``sandbox_mode`` ("bwrap", "rlimits" or "none"), ``kill_hard()`` and
    ``memory_exceeded()``.
    """
    spec = SandboxSpec(workdir=Path(workdir), limits=limits or Limits(), mode=mode, status=status)
    return SandboxedKernelManager(kernel_name=KERNEL_NAME, sandbox_spec=spec)
