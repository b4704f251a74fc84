"""The trusted grader's settings (``c.TrustedExecute.*`` in ``nbgrader_config.py``), without nbgrader.

:class:`TrustedSettings` holds the traits; nbgrader's preprocessor
:class:`~grader.trusted.preprocessor.TrustedExecute` inherits them, and the grading core reads the same
``c.TrustedExecute`` section through :func:`trusted_settings` without importing nbgrader (``grader check``
starts faster that way).
"""
from __future__ import annotations

from traitlets import Bool, Dict, Enum, Float, Integer, Unicode
from traitlets.config import Config, LoggingConfigurable

from .sandbox import MODES, Limits
from .session import Options


class TrustedSettings(LoggingConfigurable):
    """Limits and sandbox of the trusted grader."""

    timeout = Float(120, help="Seconds a cell (a student cell, or a test cell's calls into student code) may "
                              "take before the kernel is killed.").tag(config=True)
    call_timeout = Float(60, help="Seconds one call of a student function may take.").tag(config=True)
    notebook_timeout = Float(1800, help="Seconds the whole notebook may take.").tag(config=True)
    startup_timeout = Float(60, help="Seconds the kernel may take to start.").tag(config=True)
    max_call_bytes = Integer(64 << 20, help="Bytes one value crossing from the kernel may take.").tag(config=True)
    max_output_bytes = Integer(1 << 20, help="Output bytes of a cell kept in the notebook.").tag(config=True)
    kill_output_bytes = Integer(16 << 20, help="Output bytes after which the kernel is killed.").tag(config=True)
    max_restarts = Integer(3, help="Kernel restarts per notebook after a crash or kill.").tag(config=True)
    sandbox = Enum(list(MODES), "auto",
                   help="auto: bubblewrap where usable, else the degraded rlimits fallback.").tag(config=True)
    require_full_sandbox = Bool(False, help="Refuse to grade unless the bubblewrap sandbox is in use."
                                ).tag(config=True)
    course_root = Unicode("", help="Course root (default: WORKBOOK_COURSE_ROOT, else the working directory)."
                          ).tag(config=True)
    execution = Unicode("autograde").tag(config=True)
    limits = Dict(help="The sandbox's resource limits (names of grader.trusted.sandbox.Limits: memory, processes, "
                       "address_space, cpu_seconds, open_files, file_size, tmpfs_size); see nbgrader_config.py"
                  ).tag(config=True)

    def options(self) -> Options:
        return Options(cell_timeout=self.timeout, call_timeout=self.call_timeout,
                       notebook_timeout=self.notebook_timeout, startup_timeout=self.startup_timeout,
                       max_call_bytes=self.max_call_bytes, max_output_bytes=self.max_output_bytes,
                       kill_output_bytes=self.kill_output_bytes, max_restarts=self.max_restarts,
                       sandbox=self.sandbox, execution=self.execution, limits=Limits.from_table(self.limits))


def trusted_settings(config: Config, **overrides) -> TrustedSettings:
    """The ``c.TrustedExecute`` section of ``config`` (plus ``overrides``) as :class:`TrustedSettings`."""
    names = set(TrustedSettings.class_trait_names(config=True))
    values = {k: v for k, v in Config(config).TrustedExecute.items() if k in names}
    values.update(overrides)
    unknown = set(values) - names
    if unknown:
        raise TypeError(f"unknown TrustedExecute setting(s): {', '.join(sorted(unknown))}")
    return TrustedSettings(**values)
