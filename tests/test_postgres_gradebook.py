"""A shared course keeps its gradebook in PostgreSQL: autograde and export work against a real server.

The test starts its own PostgreSQL server (initdb in a temporary directory, loopback only) and stops it.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from grader.autograde import autograde
from grader.course import Course
from grader.scores import read_scores
from toycourse import ASSIGNMENT, submit


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    found = found or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed, but CI must run this test (.ci/run installs postgresql)")
        pytest.skip("PostgreSQL server binaries not installed")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1; yields a URL to an empty database."""
    # Its own directory outside pytest's (root-only) tmp tree, so the server's user can reach it.
    base = Path(tempfile.mkdtemp(prefix="workbook-pg-"))
    data, sock = base / "pgdata", base / "pgsock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
        for path in (base, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", user.pw_name, "--"]
    port = _free_port()
    subprocess.run(as_user + [_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "grader"], check=True,
                   capture_output=True)
    log = base / "pg.log"
    subprocess.run(as_user + [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                              f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="grader", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE course")
        yield f"postgresql://grader@127.0.0.1:{port}/course"
    finally:
        subprocess.run(as_user + [_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_autograde_and_export_with_a_postgresql_gradebook(toy_course, postgres, tmp_path):
    course = Course(toy_course.root, database=postgres)
    course.db_path.unlink()  # written when the toy course was released; must not come back
    from grader import cells

    nb = cells.read(course.release / ASSIGNMENT / "toy.ipynb")
    for cell in nb.cells:
        if cells.grade_id(cell) == "offset":
            cell.source = "def offset(x):\n    return x + 1"
    submit(course, "dana", nb)
    report = autograde(course, log=lambda *_: None)
    assert [r.ok for r in report.results] == [True]
    assert not course.db_path.exists(), "the SQLite gradebook must not be used when a database URL is given"
    table = read_scores(course)
    assert table.students == ["dana"]
    assert table.total("dana") == (1, 3)

    import psycopg

    with psycopg.connect(postgres) as conn:
        assert conn.execute("SELECT count(*) FROM grade").fetchone()[0] == 2  # two graded cells, in PostgreSQL


@pytest.mark.slow
def test_the_sample_class_exports_the_same_from_sqlite_and_postgresql(postgres, tmp_path):
    """A subset of the sample class (the first assignment, every sample student, plus one unreadable
    submission) graded into SQLite and into PostgreSQL: the exports are equal, row for row."""
    from grader import sample_class
    from toycourse import copy_of_course

    exports = {}
    for name, url in (("sqlite", None), ("postgresql", postgres)):
        course = copy_of_course(tmp_path / name, database=url)
        first = course.assignments()[0]
        sample_class.build(course, [first])
        [notebook] = course.source_notebooks(first)
        broken = course.submitted / "broken" / first / notebook.name
        broken.parent.mkdir(parents=True)
        broken.write_text("{ not a notebook")
        report = autograde(course, [first], log=lambda *_: None)
        assert [r.student for r in report.failures] == ["broken"]
        table = read_scores(course)
        exports[name] = (table.rows(), table.canvas_rows(), table.problems, table.render())
        assert (url is None) == course.db_path.exists()
    assert exports["sqlite"] == exports["postgresql"]
    rows = exports["sqlite"][0]
    assert [r[0] for r in rows[1:]] == sorted(list(sample_class.STUDENTS) + ["broken"]) + ["max"]
