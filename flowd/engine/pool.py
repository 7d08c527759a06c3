"""Worker processes that run calls with hard deadlines: :class:`ProcessWorkers` (any number of
runs, calls submitted and collected continuously — the daemon's pool) and :class:`WorkerPool` (one
run's batch of calls — ``flowd run``'s executor, built on it).

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot kill one stuck worker. Here each
worker has its own pipe; the parent knows which calls each worker holds and when it last heard from
it. A worker silent past the hard deadline (a step stuck in C code that ``SIGALRM`` cannot
interrupt) is killed and replaced; its current call fails as a timeout and its other calls go back
to the queue. A worker that dies (segfault, OOM kill) is handled the same way. Calls are sent in
small chunks, two in flight per worker, so workers never wait for the parent.

Calls belong to *runs*, named by a key: a worker builds a run's :class:`TaskRunner` from the run's
factory the first time it gets one of its calls, and keeps the runners of its last few runs
(:data:`RUNNERS_PER_WORKER`). The parent mirrors each worker's cache exactly (both sides apply the
same least-recently-used rule to the same sequence of messages), so a factory — the binary's bytes —
crosses a pipe once per worker and run, not once per call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, cast

from flowd.engine.executor import Call, EngineCall
from flowd.engine.pipeline import TaskProgress, TaskRunner

RunnerFactory = Callable[[], TaskRunner]


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (even by SIGKILL).

    Without it a worker busy in a long step would outlive a killed ``flowd run``: it holds
    inherited copies of the pipes, so it would not even see EOF.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


_PR_SET_PDEATHSIG = 1


FORKSERVER_PRELOAD = [
    "flowd.engine.pipeline",
    "flowd.engine.run",
    "flowd.engine.memory_run",
    "flowd.engine.digitize",
]

RUNNERS_PER_WORKER = 4
"""Runs whose runners a worker keeps built at once; the least recently used one is dropped."""


def _worker_main(
    conn: Connection,
    parent_pid: int | None,
    capacity: int,
    initializer: Callable[[], None] | None,
) -> None:
    _die_with_parent()  # forked: dies with the run; forkserver: with the server, which follows the run
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before we asked
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Tesseract starts a thread per core by default; with a worker per core that oversubscribes
    # the machine several times over.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    if initializer is not None:
        initializer()
    runners: OrderedDict[str, tuple[TaskRunner | None, str]] = OrderedDict()
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            key, factory, calls = message
            if factory is not None:
                runners[key] = _build(factory)
                if len(runners) > capacity:
                    _, (old, _) = runners.popitem(last=False)
                    if old is not None:
                        old.timeline.close()
            runners.move_to_end(key)
            runner, broken = runners[key]
            for call_id, call in calls:
                result = call.run(runner) if runner is not None else call.failed(broken, False)
                conn.send((call_id, result))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        for runner, _ in runners.values():
            if runner is not None:
                runner.timeline.close()


def _build(factory: RunnerFactory) -> tuple[TaskRunner | None, str]:
    try:
        return factory(), ""
    except Exception as exc:  # e.g. a UDF script that imports a package this machine lacks
        return None, f"cannot load the binary in a worker: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Pending:
    call_id: int
    key: str
    factory: RunnerFactory
    call: EngineCall
    hard_timeout_s: float | None


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    held: deque[_Pending] = field(default_factory=deque)
    last_heard: float = field(default_factory=time.monotonic)
    loaded: OrderedDict[str, None] = field(default_factory=OrderedDict)


Finished = tuple[int, EngineCall, Any]
"""A call's id, the call, and its result (for Advance/Reduce: a progress list)."""


def default_start_method() -> str:
    """``fork`` while this process has one thread (fast, safe), else ``forkserver``."""
    if os.name == "posix" and threading.active_count() == 1:
        return "fork"
    return "forkserver" if os.name == "posix" else "spawn"


class ProcessWorkers:
    """``size`` worker processes running the calls of any number of runs.

    :meth:`submit` queues a call, :meth:`poll` sends queued calls to idle workers and returns the
    calls that finished, :meth:`drop` forgets calls (killing the workers that run them). Not
    thread-safe: one thread drives it. Factories must pickle (they cross a pipe).
    """

    def __init__(
        self,
        size: int,
        start_method: str | None = None,
        runners_per_worker: int = RUNNERS_PER_WORKER,
        initializer: Callable[[], None] | None = None,
        depth: int = 2,
    ) -> None:
        """``initializer`` (picklable) runs first in every worker: e.g. the daemon's logging set-up,
        which a worker started by a fork server does not inherit. ``depth``: calls a worker may
        hold at least (more when the queue is long), so it never waits for the parent between
        calls; a caller that limits what it submits (the daemon's scheduler) sets it to that
        limit per worker."""
        self.depth = max(1, depth)
        self.size = max(1, size)
        self.initializer = initializer
        self.runners_per_worker = max(1, runners_per_worker)
        self._mp: Any = mp.get_context(start_method or default_start_method())
        self._fork = self._mp.get_start_method() == "fork"
        if self._mp.get_start_method() == "forkserver":
            # Workers forked from a server that has the engine imported start in milliseconds.
            self._mp.set_forkserver_preload(FORKSERVER_PRELOAD)
        self._queue: deque[_Pending] = deque()
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.size)]

    @property
    def start_method(self) -> str:
        return str(self._mp.get_start_method())

    @property
    def busy(self) -> int:
        """Calls submitted and not yet finished or dropped."""
        return len(self._queue) + sum(len(w.held) for w in self._workers)

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main,
            args=(
                child,
                os.getpid() if self._fork else None,
                self.runners_per_worker,
                self.initializer,
            ),
            name="flowd-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(
        self,
        call_id: int,
        key: str,
        factory: RunnerFactory,
        call: EngineCall,
        hard_timeout_s: float | None = None,
    ) -> None:
        """Queue ``call`` of run ``key`` (whose runner ``factory`` builds); ``hard_timeout_s``:
        how long its worker may stay silent before it is killed (``None``: forever)."""
        self._queue.append(_Pending(call_id, key, factory, call, hard_timeout_s))

    def _dispatch(self) -> None:
        chunk = max(1, min(32, len(self._queue) // (self.size * 4)))
        for w in self._workers:
            while self._queue and len(w.held) < max(2 * chunk, self.depth):
                first = self._queue.popleft()
                batch = [first]
                while self._queue and len(batch) < chunk and self._queue[0].key == first.key:
                    batch.append(self._queue.popleft())
                if not w.held:
                    w.last_heard = time.monotonic()
                w.held.extend(batch)
                factory = self._mirror_load(w, first)
                try:
                    w.conn.send((first.key, factory, [(p.call_id, p.call) for p in batch]))
                except (BrokenPipeError, OSError):
                    break  # found dead in poll

    def _mirror_load(self, w: _Worker, first: _Pending) -> RunnerFactory | None:
        """The factory to send along, if the worker does not hold the run's runner (mirroring
        the worker's own least-recently-used cache)."""
        if first.key in w.loaded:
            w.loaded.move_to_end(first.key)
            return None
        w.loaded[first.key] = None
        if len(w.loaded) > self.runners_per_worker:
            w.loaded.popitem(last=False)
        return first.factory

    def poll(self, timeout: float, wake: Any = None) -> list[Finished]:
        """Send queued calls to workers with room, wait up to ``timeout`` seconds for results (or
        for ``wake`` — a connection or file descriptor — to become readable), and return every
        call that finished, failed with its worker, or timed out."""
        self._dispatch()
        out: list[Finished] = []
        by_conn = {id(w.conn): w for w in self._workers}
        by_sentinel = {w.process.sentinel: w for w in self._workers}
        waitables: list[Any] = [w.conn for w in self._workers] + list(by_sentinel)
        if wake is not None:
            waitables.append(wake)
        dead: list[tuple[_Worker, str]] = []
        for item in wait(waitables, timeout=timeout):
            if item is wake:
                continue
            if isinstance(item, int) and item in by_sentinel:
                w = by_sentinel[item]
                self._drain(w, out)  # what it sent before it died
                dead.append(
                    (w, f"worker process died (exit code {w.process.exitcode}) while processing it")
                )
                continue
            w = by_conn[id(item)]
            try:
                self._receive(w, out)
            except (EOFError, OSError):
                if w.held:
                    dead.append((w, "worker process died while processing it"))
        now = time.monotonic()
        for w in self._workers:
            limit = w.held[0].hard_timeout_s if w.held else None
            if limit is not None and now - w.last_heard > limit:
                dead.append((w, f"timed out: no step finished within {limit:g} s (worker killed)"))
        for w, message in {id(d[0]): d for d in dead}.values():
            if not w.held:
                self._replace(w)
                continue
            current = w.held.popleft()
            self._requeue(w)
            out.append((current.call_id, current.call, current.call.failed(message, True)))
        self._dispatch()
        return out

    def _requeue(self, w: _Worker) -> None:
        """Put the calls ``w`` holds back at the front of the queue and replace ``w``."""
        self._queue.extendleft(reversed(w.held))
        w.held.clear()
        self._replace(w)

    def drop(self, call_ids: set[int]) -> None:
        """Forget these calls: unsent ones leave the queue; a worker running one is killed and
        replaced (its other calls are queued again). No result is reported for them."""
        self._queue = deque(p for p in self._queue if p.call_id not in call_ids)
        for w in list(self._workers):
            if any(p.call_id in call_ids for p in w.held):
                w.held = deque(p for p in w.held if p.call_id not in call_ids)
                self._requeue(w)

    def _receive(self, w: _Worker, out: list[Finished]) -> None:
        call_id, result = w.conn.recv()
        w.last_heard = time.monotonic()
        while w.held and w.held[0].call_id != call_id:  # cannot happen: calls run in order
            w.held.popleft()
        if w.held:
            done = w.held.popleft()
            out.append((done.call_id, done.call, result))
        if w.held and w.conn.poll():
            self._receive(w, out)

    def _drain(self, w: _Worker, out: list[Finished]) -> None:
        try:
            while w.held and w.conn.poll():
                self._receive(w, out)
        except (EOFError, OSError):
            return

    def _replace(self, w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()
        fresh = self._spawn()
        index = self._workers.index(w)
        self._workers[index] = fresh

    def waitables(self) -> list[int]:
        """File descriptors that become readable when :meth:`poll` has something to collect (the
        workers' pipes and process sentinels): for driving the pool from an event loop."""
        fds = [w.conn.fileno() for w in self._workers]
        return fds + [w.process.sentinel for w in self._workers]

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current calls, or at once (``now``)."""
        self._queue.clear()
        for w in self._workers:
            if now:
                w.process.kill()
                continue
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 5
        for w in self._workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()


class WorkerPool:
    """One run's executor: ``size`` worker processes building their runner with ``factory`` (must
    pickle). ``hard_timeout_s`` = ``None`` disables the kill deadline."""

    KEY = "run"

    def __init__(
        self,
        factory: RunnerFactory,
        size: int,
        hard_timeout_s: float | None,
        start_method: str | None = None,
    ) -> None:
        self.factory = factory
        self.hard_timeout_s = hard_timeout_s
        self._workers = ProcessWorkers(size, start_method)
        self.size = self._workers.size
        self._next_id = 0

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, list[TaskProgress]]]:
        waiting: dict[int, Call] = {}
        for call in calls:
            self._workers.submit(self._next_id, self.KEY, self.factory, call, self.hard_timeout_s)
            waiting[self._next_id] = call
            self._next_id += 1
        while waiting:
            for call_id, _, result in self._workers.poll(0.5):
                yield waiting.pop(call_id), cast(list[TaskProgress], result)

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current calls, or at once (``now``)."""
        self._workers.close(now)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
