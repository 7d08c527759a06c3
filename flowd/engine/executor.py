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
from typing import Any, Protocol

from flowd.engine.pipeline import Task, TaskProgress, TaskRunner, TaskState
from flowd.fsutil import display_name


class EngineCall(Protocol):
    """Anything a worker process can run against its :class:`TaskRunner`: ``run`` gives the
    result, ``failed`` the result to report instead when the worker died or timed out on it."""

    def run(self, runner: TaskRunner) -> Any: ...

    def failed(self, message: str, transient: bool) -> Any: ...


def _failures(tasks: tuple[Task, ...], message: str, transient: bool) -> list[TaskProgress]:
    return [
        TaskProgress(
            t, TaskState.FAILED, error=f"{display_name(t.file)}: {message}", transient=transient
        )
        for t in tasks
    ]


@dataclass(frozen=True)
class Advance:
    """Move one task to its end or its next barrier; the result is a one-item progress list."""

    task: Task
    fresh: bool
    release: bool = False

    def run(self, runner: TaskRunner) -> list[TaskProgress]:
        return [runner.advance(self.task, fresh=self.fresh, release=self.release)]

    def failed(self, message: str, transient: bool) -> list[TaskProgress]:
        return _failures((self.task,), message, transient)


@dataclass(frozen=True)
class Reduce:
    """Run the reduce UDF at ``position`` over ``tasks``; the result lists failures ([] = done)."""

    tasks: tuple[Task, ...]
    position: int
    route: str | None = None

    def run(self, runner: TaskRunner) -> list[TaskProgress]:
        return runner.reduce(list(self.tasks), self.position, self.route)

    def failed(self, message: str, transient: bool) -> list[TaskProgress]:
        return _failures(self.tasks, message, transient)


Call = Advance | Reduce


def execute(runner: TaskRunner, call: Call) -> list[TaskProgress]:
    """Run one call on ``runner``: the progress of an Advance, or the failures of a Reduce."""
    return call.run(runner)


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
