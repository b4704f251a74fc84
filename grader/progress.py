"""Progress of a grading run: a rich progress bar on a terminal, plain log lines otherwise."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Notebooks per minute."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed * 60:.1f}/min" if speed else "–/min", style="progress.data.speed")


class BarProgress:
    """done / total, failures, rate, time left; each failure is printed above the bar as it happens."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.failures = 0
        self.progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]} failed"), RateColumn(),
                                 TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                 console=self.console)
        self.task = None

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("grading", total=total, failed=0)

    def advance(self, result) -> None:
        from .autograde import result_line

        if not result.ok:
            self.failures += 1
            self.progress.console.print(result_line(result), markup=False, highlight=False)
        self.progress.update(self.task, advance=1, failed=self.failures)

    def stop(self) -> None:
        self.progress.stop()


def for_terminal() -> BarProgress | None:
    """A progress bar when stderr is a terminal, else None (the caller logs one line per notebook)."""
    return BarProgress() if sys.stderr.isatty() else None
