"""Sync runs (``run_binary_sync``, SPEC §7) on worker processes of their own, driven from the
API's event loop.

A sync request waits for its answer, so it must not queue behind a batch of 5,000 async tasks: sync
runs get a pool of their own, started at the first request. Each request is one
:class:`~flowd.engine.memory_run.InMemory` call — the whole run, in memory, in a worker process — so
user code never runs in the daemon, and the hard limit is real: a worker silent past it is killed
(and replaced) and every file of the request fails with a timeout.

The pool (:class:`~flowd.engine.pool.ProcessWorkers`) is driven by the event loop itself: the
workers' pipes are registered as readers, so an answer is handed to its request the moment it
arrives, with no thread in between (a thread hop costs a GIL hand-over on every request, which
dominated the latency). A timer checks the hard limit once a second.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import structlog

from flowd.engine.memory_run import InMemory, MemoryRunnerFactory
from flowd.engine.output import FileResult
from flowd.engine.pool import ProcessWorkers
from flowd.errors import ServiceUnavailableError
from flowd.flows.binary import CompiledBinary

log = structlog.get_logger("flowd.sync")

SYNC_LIMIT_S = 60.0
"""The seed's maximum processing time of a sync run."""
TICK_S = 1.0
"""How often the hard limit is checked while requests are pending."""


class SyncRunner:
    """Runs sync requests on ``workers`` processes, started at the first request. Use it from one
    event loop only (the API's)."""

    def __init__(
        self,
        workers: int,
        limit_s: float = SYNC_LIMIT_S,
        start_method: str = "forkserver",
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.workers = max(1, workers)
        self.limit_s = limit_s
        self.start_method = start_method
        self.initializer = initializer
        self._ids = itertools.count(1)
        self._pool: ProcessWorkers | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[tuple[FileResult, ...]]] = {}
        self._watched: set[int] = set()
        self._factories: dict[str, MemoryRunnerFactory] = {}
        self._tick: asyncio.TimerHandle | None = None
        self._closed = False

    async def run(self, binary: CompiledBinary, call: InMemory) -> tuple[FileResult, ...]:
        """Run ``call`` on ``binary`` in a sync worker and return its file results."""
        if self._closed:
            raise ServiceUnavailableError("the daemon is shutting down; try again later")
        loop = asyncio.get_running_loop()
        pool = self._start(loop)
        factory = self._factories.get(binary.content_sha256)
        if factory is None:
            if len(self._factories) > 64:
                self._factories.clear()
            factory = MemoryRunnerFactory(binary.data, binary.name)
            self._factories[binary.content_sha256] = factory
        call_id = next(self._ids)
        future: asyncio.Future[tuple[FileResult, ...]] = loop.create_future()
        self._pending[call_id] = future
        pool.submit(call_id, binary.content_sha256, factory, call, self.limit_s)
        self._pump()
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    def _start(self, loop: asyncio.AbstractEventLoop) -> ProcessWorkers:
        if self._pool is None:
            self._loop = loop
            self._pool = ProcessWorkers(
                self.workers, self.start_method, initializer=self.initializer
            )
            log.info("sync_workers_started", workers=self.workers)
        return self._pool

    def _pump(self) -> None:
        """Send queued calls, hand out finished answers, and watch the current workers' pipes."""
        pool, loop = self._pool, self._loop
        if pool is None or loop is None:
            return
        try:
            finished = pool.poll(0.0)
        except Exception as exc:  # never leave a request waiting forever
            log.exception("sync_pool_failed")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ServiceUnavailableError(f"the sync workers failed: {exc}"))
            return
        for call_id, _, result in finished:
            waiting = self._pending.get(call_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(result)
        fds = set(pool.waitables())
        for fd in self._watched - fds:
            loop.remove_reader(fd)
        for fd in fds - self._watched:
            loop.add_reader(fd, self._pump)
        self._watched = fds
        if pool.busy and self._tick is None:
            self._tick = loop.call_later(TICK_S, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        self._pump()

    def close(self) -> None:
        """Stop the workers; pending requests fail with 503."""
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._watched:
                self._loop.remove_reader(fd)
        self._watched = set()
        if self._tick is not None:
            self._tick.cancel()
        for future in self._pending.values():
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(ServiceUnavailableError("the daemon is shutting down"))
        if self._pool is not None:
            self._pool.close(now=True)
