"""A pool of worker processes that run calls with hard deadlines.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot kill one stuck worker. Here each
worker has its own pipe; the parent knows which calls each worker holds and when it last heard from
it. A worker silent past the hard deadline (a step stuck in C code that ``SIGALRM`` cannot
interrupt) is killed and replaced; its current call fails as a timeout and its other calls go back
to the queue. A worker that dies (segfault, OOM kill) is handled the same way. Calls are sent in
small chunks, two in flight per worker, so workers never wait for the parent.
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
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from flowd.engine.executor import Advance, Call, execute
from flowd.engine.pipeline import TaskProgress, TaskRunner, TaskState
from flowd.fsutil import display_name

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


def _worker_main(conn: Connection, factory: RunnerFactory, parent_pid: int | None) -> None:
    _die_with_parent()  # forked: dies with the run; forkserver: with the server, which follows the run
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before we asked
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    # Tesseract starts a thread per core by default; with a worker per core that oversubscribes
    # the machine several times over.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        runner: TaskRunner | None = factory()
        broken = ""
    except Exception as exc:  # e.g. a UDF script that imports a package this machine lacks
        runner, broken = None, f"cannot load the binary in a worker: {type(exc).__name__}: {exc}"
    try:
        while True:
            chunk = conn.recv()
            if chunk is None:
                break
            for call_id, call in chunk:
                result = (
                    execute(runner, call) if runner is not None else _failures(call, broken, False)
                )
                conn.send((call_id, result))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        if runner is not None:
            runner.timeline.close()


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    held: deque[tuple[int, Call]] = field(default_factory=deque)
    last_heard: float = field(default_factory=time.monotonic)


def _failures(call: Call, message: str, transient: bool) -> list[TaskProgress]:
    tasks = [call.task] if isinstance(call, Advance) else list(call.tasks)
    return [
        TaskProgress(
            t, TaskState.FAILED, error=f"{display_name(t.file)}: {message}", transient=transient
        )
        for t in tasks
    ]


def default_start_method() -> str:
    """``fork`` while this process has one thread (fast, safe), else ``forkserver``."""
    if os.name == "posix" and threading.active_count() == 1:
        return "fork"
    return "forkserver" if os.name == "posix" else "spawn"


class WorkerPool:
    """``size`` worker processes, each building its runner with ``factory`` (must pickle for
    non-fork start methods). ``hard_timeout_s`` = ``None`` disables the kill deadline."""

    def __init__(
        self,
        factory: RunnerFactory,
        size: int,
        hard_timeout_s: float | None,
        start_method: str | None = None,
    ) -> None:
        self.factory = factory
        self.size = max(1, size)
        self.hard_timeout_s = hard_timeout_s
        self._mp: Any = mp.get_context(start_method or default_start_method())
        self._fork = self._mp.get_start_method() == "fork"
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.size)]
        self._next_id = 0

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_main,
            args=(child, self.factory, os.getpid() if self._fork else None),
            name="flowd-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, list[TaskProgress]]]:
        queue: deque[tuple[int, Call]] = deque()
        for call in calls:
            queue.append((self._next_id, call))
            self._next_id += 1
        chunk = max(1, min(32, len(calls) // (self.size * 4)))
        while queue or any(w.held for w in self._workers):
            for w in self._workers:
                while queue and len(w.held) < 2 * chunk:
                    batch = [queue.popleft() for _ in range(min(chunk, len(queue)))]
                    if not w.held:
                        w.last_heard = time.monotonic()
                    w.held.extend(batch)
                    try:
                        w.conn.send(batch)
                    except (BrokenPipeError, OSError):
                        break  # found dead below
            by_conn = {id(w.conn): w for w in self._workers}
            by_sentinel = {w.process.sentinel: w for w in self._workers}
            ready = wait([w.conn for w in self._workers] + list(by_sentinel), timeout=0.5)
            dead: list[tuple[_Worker, str, bool]] = []
            for item in ready:
                if isinstance(item, int):
                    w = by_sentinel[item]
                    # Drain what it sent before it died.
                    yield from self._drain(w)
                    code = w.process.exitcode
                    dead.append(
                        (w, f"worker process died (exit code {code}) while processing it", True)
                    )
                    continue
                w = by_conn[id(item)]
                try:
                    yield from self._receive(w)
                except (EOFError, OSError):
                    if w.held:
                        dead.append((w, "worker process died while processing it", True))
            now = time.monotonic()
            if self.hard_timeout_s is not None:
                for w in self._workers:
                    if w.held and now - w.last_heard > self.hard_timeout_s:
                        dead.append(
                            (
                                w,
                                f"timed out: no step finished within {self.hard_timeout_s:g} s "
                                "(worker killed)",
                                True,
                            )
                        )
            for w, message, transient in {id(d[0]): d for d in dead}.values():
                if not w.held:
                    self._replace(w)
                    continue
                _, current = w.held.popleft()
                queue.extendleft(reversed(w.held))
                w.held.clear()
                self._replace(w)
                yield current, _failures(current, message, transient)

    def _receive(self, w: _Worker) -> Iterator[tuple[Call, list[TaskProgress]]]:
        call_id, result = w.conn.recv()
        w.last_heard = time.monotonic()
        while w.held and w.held[0][0] != call_id:  # cannot happen: calls run in order
            w.held.popleft()
        _, call = w.held.popleft()
        yield call, result
        while w.held and w.conn.poll():
            yield from self._receive(w)

    def _drain(self, w: _Worker) -> Iterator[tuple[Call, list[TaskProgress]]]:
        try:
            while w.held and w.conn.poll():
                yield from self._receive(w)
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

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current calls, or at once (``now``)."""
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

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
