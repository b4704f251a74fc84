"""Where the student's kernel comes from: the sandboxed kernel manager.

Everything that starts a kernel for grading goes through :func:`make_kernel_manager`, so the choice of
sandbox is made in one place. The sandbox itself lives in ``grader.trusted.sandbox`` and
``grader.trusted.kernel``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .kernel import SandboxedKernelManager
from .sandbox import Limits, SandboxSpec, sandbox_status  # noqa: F401  (sandbox_status: re-exported)

KERNEL_NAME = "python3"


def kernel_env(workdir: Path, execution: str) -> dict[str, str]:
    """The environment of the student's kernel: only what Python needs, no secrets of the grader's."""
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.setdefault("PATH", str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin")
    env.update({
        "HOME": str(workdir),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(workdir / ".matplotlib"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # nbgrader sets this during autograding and notebooks may rely on it; an attack that branches on it
        # gains nothing because the verdict is not the kernel's.
        "NBGRADER_EXECUTION": execution,
    })
    return env


def make_kernel_manager(workdir: Path, mode: str = "auto", limits=None) -> SandboxedKernelManager:
    """A kernel manager for one submission's kernel, confined to ``workdir`` by the sandbox in ``mode``.

    The returned manager has ``sandbox_mode`` ("bwrap", "rlimits" or "none") and ``kill_hard()``.
    """
    spec = SandboxSpec(workdir=Path(workdir), limits=limits or Limits(), mode=mode)
    return SandboxedKernelManager(kernel_name=KERNEL_NAME, sandbox_spec=spec)
