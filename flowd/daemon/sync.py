"""Sync runs (``run_binary_sync``, SPEC §7) on their own worker processes.

A sync request waits for its answer, so it must not queue behind a batch of 5,000 async tasks: sync
runs get a pool of their own, started at the first request. Each request is one
:class:`~flowd.engine.memory_run.InMemory` call — the whole run, in memory, in a worker process — so
user code never runs in the daemon, and the hard limit is real: a worker silent past it is killed
(and replaced) and every file of the request fails with a timeout.

One thread drives the pool (:class:`~flowd.engine.pool.ProcessWorkers` is single-threaded); request
threads hand it calls through a queue and wait on a :class:`~concurrent.futures.Future`.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future

import structlog

from flowd.engine.memory_run import InMemory, MemoryRunnerFactory
from flowd.engine.output import FileResult
from flowd.engine.pool import ProcessWorkers
from flowd.errors import ServiceUnavailableError
from flowd.flows.binary import CompiledBinary

log = structlog.get_logger("flowd.sync")

SYNC_LIMIT_S = 60.0
"""The seed's maximum processing time of a sync run."""

_Request = tuple[int, str, MemoryRunnerFactory, InMemory, "Future[tuple[FileResult, ...]]"]


class SyncRunner:
    """Runs sync requests on ``workers`` processes (started lazily)."""

    def __init__(
        self,
        workers: int,
        limit_s: float = SYNC_LIMIT_S,
        start_method: str = "forkserver",
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.initializer = initializer
        self.workers = max(1, workers)
        self.limit_s = limit_s
        self.start_method = start_method
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._factories: dict[str, MemoryRunnerFactory] = {}

    def submit(self, binary: CompiledBinary, call: InMemory) -> Future[tuple[FileResult, ...]]:
        """Queue ``call`` on ``binary``; the future gives the file results."""
        with self._lock:
            if self._closed:
                raise ServiceUnavailableError("the daemon is shutting down; try again later")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flowd-sync", daemon=True)
                self._thread.start()
            factory = self._factories.get(binary.content_sha256)
            if factory is None:
                factory = MemoryRunnerFactory(binary.data, binary.name)
                if len(self._factories) > 64:
                    self._factories.clear()
                self._factories[binary.content_sha256] = factory
        future: Future[tuple[FileResult, ...]] = Future()
        self._requests.put((next(self._ids), binary.content_sha256, factory, call, future))
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")
        return future

    def _run(self) -> None:
        pool = ProcessWorkers(self.workers, self.start_method, initializer=self.initializer)
        pending: dict[int, Future[tuple[FileResult, ...]]] = {}
        try:
            while True:
                stop = False
                while True:
                    try:
                        item = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    call_id, key, factory, call, future = item
                    if future.set_running_or_notify_cancel():
                        pending[call_id] = future
                        pool.submit(call_id, key, factory, call, self.limit_s)
                if stop:
                    break
                for call_id, _, result in pool.poll(1.0, wake=self._wake_r):
                    done = pending.pop(call_id, None)
                    if done is not None:
                        done.set_result(result)
                with contextlib.suppress(BlockingIOError, OSError):
                    while self._wake_r.recv(4096):
                        pass
        except Exception as exc:  # never leave a request waiting forever
            log.exception("sync_runner_failed")
            for future in pending.values():
                future.set_exception(ServiceUnavailableError(f"the sync runner failed: {exc}"))
            pending.clear()
        finally:
            for future in pending.values():
                future.set_exception(ServiceUnavailableError("the daemon is shutting down"))
            pool.close(now=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._requests.put(None)
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")
            thread.join(10)
        self._wake_r.close()
        self._wake_w.close()
