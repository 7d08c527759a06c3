"""Per-step time limits inside a worker process.

A step that runs past its limit is interrupted by ``SIGALRM``: the handler raises
:class:`StepAlarm`, a ``BaseException`` so that a UDF's ``except Exception`` cannot swallow it. This
works for Python code (loops, sleeps, I/O); code that blocks inside a C call without returning to
the interpreter is caught by the pool, which kills the worker at a hard deadline (see
:mod:`flowd.engine.pool`). Only the main thread of a process can take signals; elsewhere (a thread
of the API, later) the limit falls back to the pool's hard deadline alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StepAlarm(BaseException):
    """Raised in a step that ran past its limit. Not an error class: it is turned into
    :class:`~flowd.errors.StepTimeoutError` by the pipeline."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise StepAlarm()


_installed = False


@contextmanager
def step_deadline(timeout_s: float | None) -> Iterator[None]:
    """Interrupt the body with :class:`StepAlarm` after ``timeout_s`` seconds (``None`` = never).

    The handler is installed once per process (on first use); each step then costs two
    ``setitimer`` calls.
    """
    global _installed
    if not timeout_s or timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _installed:
        signal.signal(signal.SIGALRM, _on_alarm)
        _installed = True
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
