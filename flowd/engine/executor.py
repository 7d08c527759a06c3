"""Executors: how a run's calls reach a :class:`~flowd.engine.pipeline.TaskRunner`.

A *call* is either :class:`Advance` (move one task to its end or next barrier) or :class:`Reduce`
(run a reduce UDF over a group of tasks). An :class:`Executor` takes a batch of calls and yields each
call's progress list as it finishes, in any order. :class:`InlineExecutor` runs calls in the calling
process (the sync API, tests); :class:`flowd.engine.pool.WorkerPool` runs them on worker processes
with hard timeouts; the job system and a Dask executor implement the same interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from flowd.engine.pipeline import Task, TaskProgress, TaskRunner


@dataclass(frozen=True)
class Advance:
    task: Task
    fresh: bool
    release: bool = False


@dataclass(frozen=True)
class Reduce:
    tasks: tuple[Task, ...]
    position: int
    route: str | None = None


Call = Advance | Reduce


def execute(runner: TaskRunner, call: Call) -> list[TaskProgress]:
    """Run one call on ``runner``: the progress of an Advance, or the failures of a Reduce."""
    if isinstance(call, Advance):
        return [runner.advance(call.task, fresh=call.fresh, release=call.release)]
    return runner.reduce(list(call.tasks), call.position, call.route)


class Executor(Protocol):
    def run(self, calls: list[Call]) -> Iterator[tuple[Call, list[TaskProgress]]]:
        """Execute ``calls``; yield ``(call, progress)`` as each finishes."""
        ...

    def close(self, now: bool = False) -> None:
        """Release the executor; ``now`` stops running work at once instead of letting it finish."""
        ...


class InlineExecutor:
    """Runs calls one after another in this process."""

    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, list[TaskProgress]]]:
        for call in calls:
            yield call, execute(self.runner, call)

    def close(self, now: bool = False) -> None:
        self.runner.timeline.close()
