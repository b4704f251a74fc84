"""Running a corpus through ``nbgrader autograde`` in one batch, and what to compare before and after."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import nbformat

from grader.course import Course
from grader.nbgrader_run import run_nbgrader
from grader.release import generate

COURSE_STATE = ("autograded", "feedback", "gradebook.db", ".nbgrader.log")


def tree_hashes(root: Path, skip=COURSE_STATE) -> dict[str, str]:
    """sha256 of every file under ``root`` except nbgrader's own outputs."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip or "__pycache__" in rel.parts or not path.is_file():
            continue
        found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def submit_all(course: Course, assignment: str, notebook: str, corpus) -> None:
    for sub in corpus:
        path = course.submitted / sub.name / assignment / notebook
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(sub.nb, str(path))
        for name, content in getattr(sub, "files", {}).items():
            target = path.parent / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, tuple) and content[0] == "symlink":
                target.symlink_to(content[1])
            else:
                target.write_bytes(content)


def host_secret(folder: Path) -> tuple[Path, str]:
    """A root-only file outside the course, with a marker no output of the grader may contain."""
    import secrets

    marker = f"HOST-SECRET-{secrets.token_hex(8)}"
    path = folder / "host-secret.txt"
    path.write_text(marker + "\n")
    path.chmod(0o600)
    return path, marker


def files_containing(root: Path, marker: str) -> list[str]:
    """Files under root (symlinks not followed) whose bytes contain marker."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and marker.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return sorted(found)


def autograde_batch(course: Course, assignment: str, extra: tuple[str, ...] = ()):
    """``nbgrader autograde ASSIGNMENT`` over every submission at once (after recording the assignment)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        generate(course, assignment, Path(tmp), db=True)
    return run_nbgrader(course, "autograde", assignment, "--create", "--force", *extra, check=False)


def scores(course: Course, assignment: str, notebook: str, students) -> dict[str, dict[str, float | None]]:
    """student -> grade id -> score recorded in the gradebook (None: no score)."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(f"sqlite:///{course.db_path}") as gb:
        for student in students:
            try:
                nb = gb.find_submission_notebook(Path(notebook).stem, assignment, student)
            except MissingEntry:
                out[student] = {}
                continue
            out[student] = {g.name: g.score for g in nb.grades}
    return out


class AnswerServer:
    """An HTTP server on 127.0.0.1 that hands out the answers and counts who asked."""

    def __init__(self, answers: str):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = answers.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
