"""Trusted autograding: student code in a sandboxed kernel, test cells judged in the grader's own process.

* :func:`grade_notebook` — one submitted notebook → :class:`GradingResult` (self-contained, no shared state);
* :func:`configure` / :func:`autograde_flags` — the same path inside ``nbgrader autograde``
  (:class:`~grader.trusted.preprocessor.TrustedExecute` in place of nbgrader's ``Execute``);
* :mod:`.wire` (what may cross, and how), :mod:`.session` (the kernel), :mod:`.namespace` (a test cell's
  names), :mod:`.engine` (one notebook), :mod:`.audit` (imports), :mod:`.sandbox` / :mod:`.kernel` (the box).

The names are imported lazily, so ``grader.trusted.sandbox`` does not pull in nbgrader.
"""
__all__ = ["AUTOGRADE_PREPROCESSORS", "CellResult", "GradingResult", "autograde_flags", "configure",
           "grade_notebook", "load_course_config"]


def __getattr__(name):
    if name in __all__:
        from . import grading
        return getattr(grading, name)
    raise AttributeError(f"module 'grader.trusted' has no attribute {name!r}")
