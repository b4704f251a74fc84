"""What a student and an instructor see, in JupyterLab in a real browser (Playwright driving Debian's Chromium).

1. A student opens notebooks/02_conv_forward/conv_forward.ipynb in the bundle's JupyterLab, types a correct
   zero_pad and conv_forward_naive, runs all cells: the visible test cells show ✓ and the figures draw. With a
   flipped kernel the test cell's failure names the mistake.
2. The student clicks Validate and sees nbgrader's verdict.
3. The instructor opens formgrader (the sample class's 02 autograded) and sees the class with its scores; a
   feedback page shows the verdict and no hidden-test source.
4. Every step leaves a screenshot under the test's tmp_path. With WORKBOOK_SCREENSHOTS=DIR (``make screenshots``)
   the README's two (a notebook with its figure, a feedback page) are written to DIR too.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from grader import cells
from grader.course import REPO_ROOT
from grader.sample_class import CLASSIC_BUGS, student_code

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "notebooks/02_conv_forward/conv_forward.ipynb"
TIMEOUT = 300_000    # ms: a loaded machine is slow, never wrong
FLIPPED = "This is exactly what you get when the kernel is flipped"


def _solutions() -> dict[str, str]:
    source = cells.read(REPO_ROOT / "solutions" / "02_conv_forward" / "conv_forward.ipynb")
    return {cells.grade_id(c): student_code(c.source) for c in source.cells if cells.is_solution(c)}


def _index(grade_id: str) -> int:
    release = cells.read(REPO_ROOT / NOTEBOOK)
    return next(i for i, c in enumerate(release.cells) if cells.grade_id(c) == grade_id)


def screenshot(target, path: Path, readme_name: str | None = None, **options) -> None:
    """A PNG of ``target`` (a page or a locator) at ``path``; also in WORKBOOK_SCREENSHOTS as ``readme_name``."""
    target.screenshot(path=str(path), **options)
    folder = os.environ.get("WORKBOOK_SCREENSHOTS")
    if folder and readme_name:
        from PIL import Image

        out = Path(folder) / readme_name
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").quantize(colors=128).save(out, optimize=True)   # small enough to commit


# `page` comes first in every test's arguments: where Chromium is absent the test skips before a venv or a course
# is built for it.
@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    yield page
    context.close()


def _open_notebook(page, server, path: str):
    page.goto(server.lab_url(path))
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_function("() => document.body.innerText.includes('| Idle')")
    return page.locator(".jp-Notebook .jp-Cell")


def _type_into(page, cell, code: str) -> None:
    """Click into the cell's editor, select what is there and type ``code`` over it."""
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)


def _wait_until_run(page, count: int) -> None:
    """Until no cell is queued or running and at least ``count`` cells have an execution count."""
    page.wait_for_function("""(count) => {
        const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].map(e => e.textContent);
        return !prompts.some(t => t.includes('*')) && prompts.filter(t => /\\d/.test(t)).length >= count;
    }""", arg=count)


def test_a_student_solves_conv_forward_sees_the_checks_pass_and_a_flipped_kernel_named(page, student_lab, tmp_path):
    solution = _solutions()
    cell = _open_notebook(page, student_lab, NOTEBOOK)
    screenshot(page, tmp_path / "1-opened.png")
    for gid in ("zero_pad", "conv_forward_naive"):
        _type_into(page, cell.nth(_index(gid)), solution[gid])
    page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    release = cells.read(REPO_ROOT / NOTEBOOK)
    code_cells = sum(c.cell_type == "code" for c in release.cells)
    _wait_until_run(page, code_cells)
    for gid in ("test_zero_pad", "test_conv_forward_naive", "test_conv_forward_naive_cache",
                "test_conv_forward_naive_errors"):
        output = cell.nth(_index(gid)).locator(".jp-OutputArea")
        text = output.inner_text()
        assert "✓" in text and "Traceback" not in text and "CheckFailure" not in text, (gid, text)
        assert output.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, gid
    # Every cell ran without an error, and the photograph's edges were drawn by the student's own layer.
    assert page.locator(".jp-Notebook [data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert page.locator(".jp-Notebook .jp-OutputArea img").count() >= 2
    edges = cell.filter(has_text="sobel = np.array").first
    edges.scroll_into_view_if_needed()
    assert edges.locator(".jp-OutputArea img").count() >= 1
    screenshot(edges, tmp_path / "2-figure.png", "notebook-figure.png")
    screenshot(page, tmp_path / "3-checks-pass.png")

    # 2. Validate: nbgrader runs the saved notebook from a fresh kernel and reports.
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
    page.locator(".jp-Toolbar").get_by_text("Validate", exact=True).click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_text(re.compile("Success|passes all the tests|failed", re.I)).first.wait_for()
    verdict = dialog.inner_text()
    screenshot(page, tmp_path / "4-validate.png")
    assert "Success! Your notebook passes all the tests." in verdict, verdict
    dialog.locator("button").last.click()

    # 1b. The same exercise with the kernel flipped: the visible check names the mistake.
    bug = CLASSIC_BUGS["02_conv_forward"]
    forward = cell.nth(_index("conv_forward_naive"))
    _type_into(page, forward, solution["conv_forward_naive"].replace(bug.old, bug.new))
    page.keyboard.press("Shift+Enter")       # define it
    page.keyboard.press("Shift+Enter")       # run its test cell
    test = cell.nth(_index("test_conv_forward_naive"))
    test.locator(".jp-OutputArea", has_text=FLIPPED).wait_for()
    text = test.locator(".jp-OutputArea").inner_text()
    assert "CheckFailure" in text and "out for the notes' demo" in text and "expected 1, got 2" in text, text
    failure = test.locator(".jp-OutputArea")      # the output only: an element taller than the window shoots badly
    failure.scroll_into_view_if_needed()
    screenshot(failure, tmp_path / "5-flipped-kernel.png")


def test_the_student_sees_no_instructor_tools(page, student_lab, tmp_path):
    _open_notebook(page, student_lab, NOTEBOOK)
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    items = page.locator("#jp-mainmenu-nbgrader .lm-Menu-itemLabel").all_inner_texts()
    screenshot(page, tmp_path / "student-nbgrader-menu.png")
    assert "Assignment List" in items and "Course List" in items, items
    assert not any("Formgrader" in item or "Create" in item for item in items), items
    page.keyboard.press("Escape")
    assert page.locator(".jp-Toolbar").get_by_text("Validate", exact=True).count() == 1
    assert page.get_by_text("Create Assignment").count() == 0


def test_the_instructor_sees_the_class_in_formgrader_and_a_feedback_page_shows_the_verdict(
        page, graded_02, instructor_lab, tmp_path):
    page.goto(instructor_lab.lab_url())
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator("#jp-mainmenu-nbgrader .lm-Menu-itemLabel", has_text="Formgrader").first.click()
    formgrader = page.frame_locator("iframe").first
    formgrader.get_by_text("Manage Students").first.click()
    formgrader.get_by_text("sample-untouched").wait_for()
    rows = {}
    for row in formgrader.locator("tbody tr").all():
        values = row.locator("td").all_inner_texts()
        rows[values[1].strip()] = values[3].strip()
    screenshot(page, tmp_path / "6-formgrader.png")
    assert rows == {"sample-buggy": "3 / 10", "sample-complete": "10 / 10", "sample-cs231n": "9.5 / 10",
                    "sample-partial": "2 / 10", "sample-untouched": "0 / 10"}, rows

    # The buggy student's feedback page, as the student opens it.
    [feedback] = (graded_02.feedback / "sample-buggy" / "02_conv_forward").glob("*.html")
    page.goto(feedback.as_uri())
    body = page.locator("body").inner_text()
    screenshot(page, tmp_path / "7-feedback.png")
    assert FLIPPED in body and "CheckFailure" in body
    # The verdict wraps at the page's width: the mistake it names is on screen, not past a box's right edge.
    verdict = page.locator(".output_error pre", has_text=FLIPPED).first
    verdict.scroll_into_view_if_needed()
    assert verdict.evaluate("e => e.scrollWidth <= e.clientWidth"), "the verdict runs past the edge of its box"
    # The README's picture: the end of the test cell, its verdict, the next test's score.
    page.evaluate("e => window.scrollBy(0, e.getBoundingClientRect().top - 420)", verdict.element_handle())
    screenshot(page, tmp_path / "7-feedback-verdict.png", "feedback.png",
               clip={"x": 60, "y": 0, "width": 1160, "height": 620})
    assert re.search(r"Score: 3(\.0)? / 10", body), body[:500]
    source = cells.read(REPO_ROOT / "solutions" / "02_conv_forward" / "conv_forward.ipynb")
    hidden = [line.strip() for c in source.cells if cells.is_test(c)
              for line in c.source.split("### BEGIN HIDDEN TESTS", 1)[-1].split("### END HIDDEN TESTS")[0]
              .splitlines() if "### BEGIN HIDDEN TESTS" in c.source and len(line.strip()) > 12]
    assert hidden
    for line in hidden + ["BEGIN HIDDEN TESTS", "grader.hidden", "check_function("]:
        assert line not in body, f"the feedback page shows hidden-test source: {line!r}"
