"""The zero-install site (``make lite``) in a real browser: JupyterLite served on localhost, driven by Playwright
in Debian's headless Chromium, with every request that does not go to localhost refused and recorded.

1. The site's file browser lists the workbook's nine assignments and the README that says how to get a verdict.
2. A learner opens 02_conv_forward/conv_forward.ipynb, types a correct zero_pad and conv_forward_naive, runs all
   cells: the Pyodide kernel starts from the site's own files (numpy, matplotlib and the student package
   included), the visible test cells show ✓ and the figures draw. Not one request leaves localhost.
"""
from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from grader import cells, lite
from grader.course import REPO_ROOT, Course
from grader.sample_class import student_code

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "02_conv_forward/conv_forward.ipynb"
TIMEOUT = 120_000         # ms: for the page; a loaded machine is slow, never wrong
KERNEL_TIMEOUT = 600_000  # ms: Pyodide compiles numpy's and matplotlib's wasm on a loaded 2-core machine


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def lite_site(tmp_path_factory):
    """The site as ``make lite`` builds it, served on a free localhost port; yields (base URL, site folder)."""
    work = tmp_path_factory.mktemp("lite")
    site = lite.build(Course.at(REPO_ROOT), work / "site", work / "work")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(chromium):
    """A page whose requests to anywhere but localhost are refused; ``page.outside`` lists them."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    outside: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.outside = outside
    yield page
    context.close()


def _solutions() -> dict[str, str]:
    source = cells.read(REPO_ROOT / "solutions" / "02_conv_forward" / "conv_forward.ipynb")
    return {cells.grade_id(c): student_code(c.source) for c in source.cells if cells.is_solution(c)}


def test_the_site_holds_the_pyodide_distribution_and_the_student_package(lite_site):
    _, site = lite_site
    config = json.loads((site / "jupyter-lite.json").read_text())["jupyter-config-data"]
    kernel = config["litePluginSettings"]["@jupyterlite/pyodide-kernel-extension:kernel"]
    assert kernel["pyodideUrl"] == "./static/pyodide/pyodide.js"          # the site's own, not a CDN
    assert kernel["disablePyPIFallback"] is True
    assert "convnet-workbook-student" in kernel["loadPyodideOptions"]["packages"]
    lock = json.loads((site / "static/pyodide/pyodide-lock.json").read_text())
    for name in ("numpy", "matplotlib", "convnet-workbook-student", "ipython", "micropip", "tqdm"):
        assert (site / "static/pyodide" / lock["packages"][name]["file_name"]).is_file(), name
    assert "cdn.jsdelivr" not in (site / "jupyter-lite.json").read_text()
    readme = (site / "files" / lite.SITE_README).read_text()
    assert "grader check" in readme
    released = sorted(p.relative_to(REPO_ROOT / "notebooks").as_posix()
                      for p in (REPO_ROOT / "notebooks").glob("*/*.ipynb"))
    assert sorted(p.relative_to(site / "files").as_posix() for p in (site / "files").glob("*/*.ipynb")) == released
    # Only the Pyodide kernel's extension: none of nbgrader's (they need a server the site does not have).
    assert [e["name"] for e in config["federated_extensions"]] == ["@jupyterlite/pyodide-kernel-extension"]


def test_the_site_lists_the_workbook_and_says_how_to_get_a_verdict(lite_site, page, tmp_path):
    base, site = lite_site
    page.goto(f"{base}/lab/index.html")
    listing = page.locator(".jp-DirListing-content")
    listing.get_by_text("02_conv_forward", exact=True).wait_for()
    names = listing.locator(".jp-DirListing-itemText").all_inner_texts()
    assignments = sorted(p.name for p in (REPO_ROOT / "notebooks").iterdir() if p.is_dir())
    assert sorted(n for n in names if n != lite.SITE_README) == assignments
    assert lite.SITE_README in names
    page.goto(f"{base}/lab/index.html?path={lite.SITE_README}")
    page.locator(".jp-MainAreaWidget .cm-content", has_text="grader check").first.wait_for()
    page.screenshot(path=str(tmp_path / "lite-readme.png"))
    assert page.outside == []


def test_a_learner_solves_conv_forward_in_the_browser_and_the_visible_checks_pass(lite_site, page, tmp_path):
    base, _ = lite_site
    release = cells.read(REPO_ROOT / "notebooks" / NOTEBOOK)
    index = {cells.grade_id(c): i for i, c in enumerate(release.cells) if cells.grade_id(c)}
    tests = [gid for gid, i in index.items() if cells.is_test(release.cells[i])]
    page.goto(f"{base}/lab/index.html?path={NOTEBOOK}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    # The kernel is up (Pyodide loaded, the student package installed) when the status bar says Idle.
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=KERNEL_TIMEOUT)
    notebook_cells = page.locator(".jp-Notebook .jp-Cell")
    for grade_id, code in _solutions().items():
        cell = notebook_cells.nth(index[grade_id])
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(code)
    page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    code_cells = sum(c.cell_type == "code" for c in release.cells)
    page.wait_for_function("""(count) => {
        const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].map(e => e.textContent);
        return !prompts.some(t => t.includes('*')) && prompts.filter(t => /\\d/.test(t)).length >= count;
    }""", arg=code_cells, timeout=KERNEL_TIMEOUT)
    page.screenshot(path=str(tmp_path / "lite-conv-forward.png"), full_page=True)
    errors = page.locator(".jp-Notebook [data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    # matplotlib's one-time notice when it builds a fresh browser profile's font cache is the only stderr allowed.
    assert [e for e in errors if "building the font cache" not in e] == []
    for grade_id in tests:
        output = notebook_cells.nth(index[grade_id]).locator(".jp-OutputArea")
        assert "✓" in output.inner_text(), grade_id
    assert page.locator(".jp-Notebook .jp-OutputArea img").count() >= 2      # the figures drew
    assert page.outside == []
