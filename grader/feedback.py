"""``grader feedback``: nbgrader's feedback pages, showing the core's verdicts and never a hidden test.

nbgrader's ``generate_feedback`` runs in this process (``NbGraderAPI``) with two more steps in its pipeline:

* nbgrader's own ``ClearHiddenTests``: the restored test cells lose their ``### BEGIN HIDDEN TESTS`` regions;
* :class:`TrustedVerdicts`: each test cell's error output shows the grading core's message for that test (what
  failed, on which case) in place of a traceback — a traceback of a hidden test would quote its source lines;
* :class:`WrapOutputs`: outputs wrap at the page's width, so a verdict's last words (the mistake it names) are on
  screen rather than past the right edge of a box the student must scroll sideways.
"""
from __future__ import annotations

from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor

from . import cells
from .course import Course, CourseError

FEEDBACK_STEPS = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "grader.feedback.TrustedVerdicts",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "grader.feedback.WrapOutputs",
]


class TrustedVerdicts(NbGraderPreprocessor):
    """Replace the tracebacks of test cells with the core's verdict message (no source line is shown)."""

    def preprocess(self, nb, resources):
        from .gradebook import GradingState

        info = resources["nbgrader"]
        state = GradingState(info["db_url"])
        try:
            result = state.result(info["student"], info["assignment"], f"{info['notebook']}.ipynb")
        finally:
            state.close()
        verdicts = result.by_id() if result is not None else {}
        for cell in nb.cells:
            if not cells.is_test(cell):
                continue
            verdict = verdicts.get(cells.grade_id(cell))
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = verdict.message if verdict is not None and verdict.message else \
                        f"{output.get('ename')}: {output.get('evalue')}"
                    output["traceback"] = message.splitlines()
        return nb, resources


class WrapOutputs(NbGraderPreprocessor):
    """One more style sheet in the page's header (after nbconvert's): cell outputs wrap instead of scrolling."""

    CSS = ".output_area pre { white-space: pre-wrap; overflow-wrap: anywhere; }"

    def preprocess(self, nb, resources):
        resources.setdefault("inlining", {}).setdefault("css", []).append(self.CSS)
        return nb, resources


def generate_feedback(course: Course, assignments: list[str] | None = None, students: list[str] | None = None,
                      log=print) -> list[Path]:
    from .gradebook import course_config, nbgrader_api

    config = course_config(course)
    config.GenerateFeedback.preprocessors = list(FEEDBACK_STEPS)
    config.ClearHiddenTests.enforce_metadata = False
    api = nbgrader_api(config)
    written: list[Path] = []
    for assignment in assignments or course.assignments():
        graded = sorted(p.parent.name for p in course.autograded.glob(f"*/{assignment}") if p.is_dir()
                        and any(p.glob("*.ipynb")))
        for student in students or graded:
            if student not in graded:
                log(f"no autograded submission of {assignment} for {student}: run `grader autograde` first")
                continue
            outcome = api.generate_feedback(assignment, student, force=True)
            if not outcome["success"]:
                detail = (outcome.get("error") or outcome.get("log") or "").strip().splitlines()[-8:]
                raise CourseError(f"nbgrader could not write feedback for {student}/{assignment}:\n  "
                                  + "\n  ".join(detail))
            written += sorted((course.feedback / student / assignment).glob("*.html"))
    return written
