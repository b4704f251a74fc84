"""Kept for the modules that import from here: the kernel manager and its environment live in
:mod:`grader.trusted.kernel` (one module, one ``kernel_env``)."""
from .kernel import KERNEL_NAME, SandboxedKernelManager, kernel_env, make_kernel_manager  # noqa: F401
from .sandbox import Limits, SandboxSpec, SandboxStatus, probe, sandbox_status  # noqa: F401
