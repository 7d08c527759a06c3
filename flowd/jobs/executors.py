"""Where the scheduler's work runs: the executor interface of the job system, and the local one.

The scheduler (:mod:`flowd.jobs.scheduler`) decides *what* runs — which task, in which order, and
what its outcome means for the job; an executor decides only *where*. It takes :class:`Work` — one
engine call (:class:`~flowd.engine.executor.Advance` or :class:`~flowd.engine.executor.Reduce`) of
one job, with what is needed to build that job's :class:`~flowd.engine.pipeline.TaskRunner` — and
hands back each call's progress list. The local executor runs them on worker processes of this
machine (:class:`~flowd.engine.pool.ProcessWorkers`); a Dask executor (SPEC §10) implements the
same protocol and ships the binary and document bytes to a cluster instead.

Executors are driven by one thread (the scheduler's) and need not be thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flowd.engine.executor import Call
from flowd.engine.pipeline import TaskProgress, TaskRunner
from flowd.engine.pool import ProcessWorkers

IN_FLIGHT_PER_WORKER = 16
"""The most calls the local executor holds per worker process: enough that a worker never waits for
the scheduler between short calls, few enough that a paused or cancelled job has little already
handed out."""
PREFETCH_WINDOW_S = 0.1
"""How much work (by recent call times) a worker may hold beyond the call it runs. A call handed out
is claimed in the store and runs whatever is submitted later, so a deep prefetch of slow calls
would let a priority-9 job wait behind priority-0 tasks claimed earlier, and let tasks of a job
paused meanwhile start: slow calls (or calls of unknown length) are handed out one per worker."""


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to run one job's calls: ``factory`` builds the job's runner (it must
    pickle); ``hard_timeout_s`` is how long a worker may stay silent on one of its calls before it
    is killed (``None``: no limit)."""

    key: str
    factory: Callable[[], TaskRunner]
    hard_timeout_s: float | None


@dataclass(frozen=True)
class Work:
    work_id: int
    run: RunSpec
    call: Call


@dataclass(frozen=True)
class Done:
    work_id: int
    progress: tuple[TaskProgress, ...]


class TaskExecutor(Protocol):
    """Runs :class:`Work`; results come back through :meth:`poll`, in any order."""

    @property
    def capacity(self) -> int:
        """How many units of work it wants in hand at once (running and queued)."""
        ...

    @property
    def busy(self) -> int:
        """Units submitted and not yet returned by :meth:`poll` or dropped."""
        ...

    def submit(self, work: Work) -> None: ...

    def poll(self, timeout: float, wake: Any = None) -> list[Done]:
        """Wait up to ``timeout`` s (less if ``wake`` — a connection — becomes readable) and
        return the work that finished. A unit whose worker died or timed out comes back as failed
        progress marked transient, never silently lost."""
        ...

    def drop(self, work_ids: set[int]) -> None:
        """Forget these units (their job was cancelled): stop them if they run; no result."""
        ...

    def close(self, now: bool = False) -> None: ...


class LocalExecutor:
    """Work on ``workers`` processes of this machine (see :class:`ProcessWorkers`)."""

    def __init__(
        self,
        workers: int,
        start_method: str | None = None,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self._pool = ProcessWorkers(
            workers, start_method, initializer=initializer, depth=IN_FLIGHT_PER_WORKER
        )
        self._call_s: float | None = None  # moving average of recent call times; None: unknown

    @property
    def capacity(self) -> int:
        """One call per worker while calls are slow or of unknown length, up to
        :data:`IN_FLIGHT_PER_WORKER` when they are short (see :data:`PREFETCH_WINDOW_S`)."""
        if not self._call_s:
            return self._pool.size
        depth = 1 + int(PREFETCH_WINDOW_S / self._call_s)
        return self._pool.size * min(IN_FLIGHT_PER_WORKER, depth)

    @property
    def busy(self) -> int:
        return self._pool.busy

    @property
    def size(self) -> int:
        return self._pool.size

    def pids(self) -> list[int]:
        return self._pool.pids()

    def submit(self, work: Work) -> None:
        self._pool.submit(
            work.work_id, work.run.key, work.run.factory, work.call, work.run.hard_timeout_s
        )

    def poll(self, timeout: float, wake: Any = None) -> list[Done]:
        done = [
            Done(call_id, tuple(result)) for call_id, _, result in self._pool.poll(timeout, wake)
        ]
        for d in done:
            for p in d.progress:
                if p.elapsed_s > 0:  # 0: failed with its worker, no time measured
                    last = self._call_s
                    self._call_s = p.elapsed_s if last is None else 0.8 * last + 0.2 * p.elapsed_s
        return done

    def drop(self, work_ids: set[int]) -> None:
        self._pool.drop(work_ids)

    def close(self, now: bool = False) -> None:
        self._pool.close(now)
