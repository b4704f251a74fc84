"""The order in which a run hands out its submissions: the longest expected first.

A class takes as long as its busiest worker. Handed out in folder order, a slow notebook that comes last (a
naive training loop in the capstone, graded after everything else) runs alone while the other workers idle; handed
out longest first, it runs while they work through the short ones. This is list scheduling, longest processing
time first (LPT), with times estimated as the run goes:

* a notebook's expected time is its assignment's typical time (the median of the times recorded for that
  notebook, by earlier runs in the gradebook's state and by this run as results arrive) times its student's
  factor (the median, over the student's notebooks graded so far, of their time over the typical time): a
  student slow on what was graded so far goes first within an assignment;
* while no notebook of an assignment has finished, the time its first one has been running so far stands for
  the typical time (it can only be longer);
* a notebook graded before, from other bytes, is expected to take what it took then;
* until each assignment has been seen once, one notebook of each assignment not yet seen goes first, of
  different students in turn, so that both kinds of estimate come in early.

The order changes nothing but the order: every submission is graded exactly once, and what is recorded is the
same as in any other order (a test compares).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Generic, Iterable, TypeVar

S = TypeVar("S")

Key = tuple[str, str]   # (assignment, notebook)


class Schedule(Generic[S]):
    """Hands out ``items`` (submissions: objects with ``student``, ``assignment`` and ``notebook``) longest
    expected first. ``history``: seconds recorded earlier, by (student, assignment, notebook).

    Call :meth:`next` for the next item to start (None when all are handed out), :meth:`finished` with each
    item's (student, assignment, notebook) and seconds as results arrive.
    """

    def __init__(self, items: Iterable[S], history: dict[tuple[str, str, str], float] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.pending: list[S] = list(items)
        self.clock = clock
        self.own: dict[tuple[str, str, str], float] = dict(history or {})   # a submission's earlier time
        self.times: dict[Key, list[float]] = {}
        for (student, assignment, notebook), seconds in self.own.items():
            self.times.setdefault((assignment, notebook), []).append(seconds)
        self.graded: dict[str, list[tuple[Key, float]]] = {}   # student -> this run's (key, seconds)
        self.started: dict[Key, float] = {}                     # first start of a key not yet timed
        self.keys_order = list(dict.fromkeys(_key(item) for item in self.pending))
        self.students_order = sorted({item.student for item in self.pending})
        self.probes = 0
        self._ranks = ({k: n for n, k in enumerate(self.keys_order)},
                       {s: n for n, s in enumerate(self.students_order)})

    @property
    def remaining(self) -> int:
        return len(self.pending)

    def next(self) -> S | None:
        if not self.pending:
            return None
        item = self._probe()
        if item is None:
            # the estimates once per call, each item's a product of two looked-up numbers: a class of thousands of
            # notebooks costs milliseconds per choice
            typical = {key: self.typical(key) for key in {*self.keys_order, *self.times, *self.started}}
            factor = {student: self.factor(student, typical) for student in self.students_order}
            key_rank, student_rank = self._ranks

            def priority(i: S) -> tuple:
                # ties (nothing known yet) in the order given: the course's assignments, then students by name
                return (self.expected(i, typical, factor), -key_rank[_key(i)], -student_rank[i.student])

            item = max(self.pending, key=priority)
        self.pending.remove(item)
        key = _key(item)
        if key not in self.times:
            self.started.setdefault(key, self.clock())
        return item

    def finished(self, student: str, assignment: str, notebook: str, seconds: float) -> None:
        key = (assignment, notebook)
        self.times.setdefault(key, []).append(seconds)
        self.started.pop(key, None)
        self.graded.setdefault(student, []).append((key, seconds))

    def failed(self, assignment: str, notebook: str) -> None:
        """A notebook that could not be graded says nothing about the time its assignment takes: if it was the
        first of its assignment, the next one is tried as the first instead."""
        if (assignment, notebook) not in self.times:
            self.started.pop((assignment, notebook), None)

    # -- estimates ------------------------------------------------------------------------------------------------
    def _probe(self) -> S | None:
        """One item of a key never started nor timed, of the next student in turn; None when every key was seen."""
        for key in self.keys_order:
            if key in self.times or key in self.started:
                continue
            items = [i for i in self.pending if _key(i) == key]
            if not items:
                continue
            turn = self.probes % len(self.students_order)
            self.probes += 1
            rank = {s: (n - turn) % len(self.students_order) for n, s in enumerate(self.students_order)}
            return min(items, key=lambda i: rank[i.student])
        return None

    def typical(self, key: Key) -> float:
        if self.times.get(key):
            return statistics.median(self.times[key])
        if key in self.started:
            return self.clock() - self.started[key]
        return 0.0

    def factor(self, student: str, typical: dict[Key, float] | None = None) -> float:
        """The student's pace: the median over their notebooks graded in this run of time / typical time."""
        ratios = [seconds / t for key, seconds in self.graded.get(student, [])
                  if (t := typical[key] if typical is not None else self.typical(key)) > 0]
        return statistics.median(ratios) if ratios else 1.0

    def expected(self, item: S, typical: dict[Key, float] | None = None,
                 factors: dict[str, float] | None = None) -> float:
        """The item's earlier time, else its typical time times its student's factor (``typical`` and ``factors``:
        those already worked out for this choice)."""
        earlier = self.own.get((item.student, *_key(item)))
        if earlier is not None:
            return earlier
        t = typical[_key(item)] if typical is not None else self.typical(_key(item))
        return t * (factors[item.student] if factors is not None else self.factor(item.student))


def _key(item) -> Key:
    return (item.assignment, item.notebook)
