"""Stock ``nbgrader autograde`` on the same hostile corpus: which attacks it misses.

This keeps the comparison with the trusted path honest as both evolve: if a future nbgrader closes a hole,
or the corpus stops exercising one, this test fails and the record below must be updated.
Attacks that would hang stock nbgrader or harm the machine (an infinite loop ignoring SIGINT, a fork bomb,
50 GB, 1 GB of output, 4 GiB over 8 processes, a thread bomb) are not run here: stock nbgrader has no limits to
stop them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial.batch import (AnswerServer, autograde_batch, files_containing, host_secret, scores,  # noqa: E402
                               submit_all, tree_hashes)
from adversarial.builder import SHM_NAME, build_corpus, honest_answers  # noqa: E402
from adversarial.course import ASSIGNMENT, NOTEBOOK, make_course  # noqa: E402
from grader import cells  # noqa: E402

# What stock nbgrader 0.9.6 does with each attack. Full marks: the attack works completely. monkeypatch
# earns every point except the test that compares with `==` outside the patched helpers (partial credit).
STOCK_FULL_MARKS = {"input_transformer", "ast_transformer", "liar_objects", "kernelspec", "snoop", "network",
                    "grading_env", "seccomp_calls", "shm_b_reader"}
STOCK_FOOLED = STOCK_FULL_MARKS | {"monkeypatch"}
STOCK_ZERO = {"tampered_cells"}
STOCK_WHOLE_NOTEBOOK_LOST = {"os_exit", "segfault"}   # the dead kernel costs independent tests too


@pytest.mark.slow
def test_stock_nbgrader_misses_these_attacks(tmp_path):
    course = make_course(tmp_path / "course", trusted=False, timeout=20)
    source = cells.read(course.source / ASSIGNMENT / NOTEBOOK)
    release = cells.read(course.release / ASSIGNMENT / NOTEBOOK)
    secret, marker = host_secret(tmp_path)
    leftovers = [Path("/dev/shm", SHM_NAME), Path("/tmp", SHM_NAME)]
    with AnswerServer(honest_answers(source)) as server:
        corpus = [s for s in build_corpus(release, source, port=server.port, secret=str(secret))
                  if not s.dangerous]
        submit_all(course, ASSIGNMENT, NOTEBOOK, corpus)
        before = tree_hashes(course.root)
        try:
            autograde_batch(course, ASSIGNMENT)
            shared = [p for p in leftovers if p.exists()]
        finally:
            for path in leftovers:           # what the writer left on the host for the next kernel
                path.unlink(missing_ok=True)
        hits = list(server.hits)
    changed = set(before.items()) ^ set(tree_hashes(course.root).items())

    got = scores(course, ASSIGNMENT, NOTEBOOK, [s.name for s in corpus])
    points = {cells.grade_id(c): cells.points(c) for c in cells.test_cells(source)}
    full = {s.name for s in corpus if s.targets and got[s.name] == points}    # attacks (the writer is honest)
    zero = {s.name for s in corpus if got[s.name] and not any(got[s.name].values())}
    print("stock nbgrader:", {s.name: got[s.name] for s in corpus})
    assert got["honest"] == points
    fooled = {s.name for s in corpus if s.name != "honest" and any(got[s.name].get(g) for g in s.targets)}
    assert full == STOCK_FULL_MARKS
    assert fooled == STOCK_FOOLED
    assert STOCK_ZERO | STOCK_WHOLE_NOTEBOOK_LOST <= zero
    assert hits and set(hits) == {"/answers"}, "stock nbgrader lets the kernel reach the network"
    assert any(name.startswith("PWNED_BY_SNOOP") for name, _ in changed), "stock nbgrader lets it write the course"
    assert shared, "stock nbgrader lets one kernel leave files in the host's /dev/shm and /tmp for the next"
    assert files_containing(course.autograded, marker), "stock nbgrader copies a planted symlink's target"
    assert (course.autograded / "planted_files" / ASSIGNMENT / "big.bin").exists()
