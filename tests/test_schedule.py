"""The order a run hands out its submissions (grader.schedule): longest expected first, each exactly once.

The class below is driven through the real Schedule by a small event simulation: workers take the next item
when they finish one, the clock is simulated, and the durations are the ones the schedule cannot see.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest

from grader.schedule import Schedule


@dataclass(frozen=True)
class Sub:
    student: str
    assignment: str
    notebook: str = "nb.ipynb"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(items, seconds, workers=2, history=None):
    """(makespan, start time of each item) when ``workers`` take items from a Schedule as they come free."""
    clock = Clock()
    schedule = Schedule(items, history, clock=clock)
    free = [(0.0, w) for w in range(workers)]
    running: list[tuple[float, Sub]] = []
    starts: dict[Sub, float] = {}
    while schedule.remaining:
        clock.now, worker = heapq.heappop(free)
        for end, item in sorted(r for r in running if r[0] <= clock.now):
            schedule.finished(item.student, item.assignment, item.notebook, seconds[item])
            running.remove((end, item))
        item = schedule.next()
        starts[item] = clock.now
        running.append((clock.now + seconds[item], item))
        heapq.heappush(free, (clock.now + seconds[item], worker))
    return max(end for end, _ in running) if running else max(f[0] for f in free), starts


def a_class(students=6, assignments=9, slow_student="s4", slow_assignment="a9", slow=160.0):
    """Every notebook 2-4 s, the last assignment 17 s, and one student's last assignment ``slow`` s."""
    names = [f"s{i}" for i in range(1, students + 1)]
    items = [Sub(s, f"a{j}") for j in range(1, assignments + 1) for s in names]     # folder order
    seconds = {}
    for item in items:
        j = int(item.assignment[1:])
        seconds[item] = 17.0 if item.assignment == slow_assignment else 2.0 + (j % 3)
        if item.student == slow_student:
            seconds[item] *= 1.4
    seconds[Sub(slow_student, slow_assignment)] = slow
    return items, seconds


def test_every_item_is_handed_out_exactly_once():
    items, seconds = a_class()
    _, starts = simulate(items, seconds, workers=3)
    assert sorted(starts, key=items.index) == items


def test_a_long_notebook_at_the_end_of_the_folder_order_starts_early():
    items, seconds = a_class()
    total = sum(seconds.values())
    fifo = simulate_fifo(items, seconds)
    makespan, starts = simulate(items, seconds)
    # in folder order the 160 s notebook starts near the end and runs alone: the run takes far more than half
    assert fifo > 0.6 * total
    # longest first: it starts once the last assignment's first notebook has run a while, long before the end
    assert starts[Sub("s4", "a9")] < 45
    assert makespan < 1.15 * max(total / 2, 160)
    assert makespan < 0.8 * fifo


def simulate_fifo(items, seconds, workers=2):
    free = [0.0] * workers
    for item in items:
        free.sort()
        free[0] += seconds[item]
    return max(free)


def test_each_assignment_is_probed_first_by_different_students():
    items, seconds = a_class()
    schedule = Schedule(items, clock=Clock())
    first = [schedule.next() for _ in range(9)]
    assert [i.assignment for i in first] == [f"a{j}" for j in range(1, 10)]
    assert len({i.student for i in first}) == 6          # the six students in turn


def test_with_history_the_longest_goes_first():
    items, seconds = a_class()
    history = {(i.student, i.assignment, i.notebook): seconds[i] for i in items}
    schedule = Schedule(items, history, clock=Clock())
    assert schedule.next() == Sub("s4", "a9")
    makespan, _ = simulate(items, seconds, history=history)
    assert makespan == pytest.approx(max(sum(seconds.values()) / 2, 160), rel=0.05)


def test_a_student_slow_so_far_goes_first_within_an_assignment():
    items = [Sub("fast", "a3"), Sub("slow", "a3")]
    schedule = Schedule(items, {("other", "a3", "nb.ipynb"): 2.0}, clock=Clock())
    for student, assignment, seconds in (("fast", "a1", 1.0), ("slow", "a1", 3.0),
                                         ("fast", "a2", 2.0), ("slow", "a2", 6.0)):
        schedule.finished(student, assignment, "nb.ipynb", seconds)
    # a1 typically takes 2 s and a2 4 s: "slow" took 1.5 times as long, "fast" half as long
    assert schedule.factor("slow") == pytest.approx(1.5) and schedule.factor("fast") == pytest.approx(0.5)
    assert schedule.expected(Sub("slow", "a3")) == pytest.approx(3.0)
    assert schedule.next() == Sub("slow", "a3")
    assert schedule.next() == Sub("fast", "a3")
    assert schedule.next() is None


def test_an_assignment_still_running_counts_as_long_as_it_has_run():
    items = [Sub(s, a) for a in ("a1", "a2") for s in ("x", "y")]
    clock = Clock()
    schedule = Schedule(items, clock=clock)
    probe1, probe2 = schedule.next(), schedule.next()
    assert {probe1.assignment, probe2.assignment} == {"a1", "a2"}
    schedule.finished(probe1.student, probe1.assignment, probe1.notebook, 2.0)   # a1 took 2 s
    clock.now = 10.0                                                            # a2 has been running 10 s
    assert schedule.next().assignment == "a2"


def test_a_notebook_that_could_not_be_graded_does_not_make_its_assignment_look_long():
    items = [Sub(s, a) for a in ("a1", "a2") for s in ("x", "y")]
    clock = Clock()
    schedule = Schedule(items, clock=clock)
    first, second = schedule.next(), schedule.next()          # the probes of a1 and a2
    schedule.failed(first.assignment, first.notebook)          # a1's probe was not a notebook
    schedule.finished(second.student, second.assignment, second.notebook, 5.0)
    clock.now = 100.0
    # a1 is tried again as a first notebook (a probe), not taken for a notebook that has run for 100 s
    assert schedule.next().assignment == "a1"
    assert schedule.typical(("a1", "nb.ipynb")) == 0.0         # its first start is now, not the failed one's

