"""Small file-system helpers shared by every layer: atomic writes.

Every file flowd produces is written to a temporary name in the same folder and renamed into place,
so a crash or a concurrent reader never sees half a file (SPEC §5.1).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)  # temporary names stay unique per process


def write_atomic(path: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and ``rename``.

    ``fsync`` also flushes the data to disk first: use it for files whose loss after a power cut
    matters (binaries, final results); per-step outputs skip it because a lost one is simply
    recomputed on resume.
    """
    path = os.fspath(path)
    # Unique per thread too: the daemon's API and finalizer threads write the same batch file of
    # a shared output folder, and one thread's rename took the other's temporary file away.
    tmp = f"{path}.tmp-{_pid}-{threading.get_ident()}"
    fd = os.open(tmp, _FLAGS, 0o644)
    try:
        written = os.write(fd, data)
        if written < len(data):  # short writes happen only for huge buffers or full disks
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


_TEMPORARY = re.compile(r"\.tmp-(\d+)-\d+$")
"""The name :func:`write_atomic` gives a file being written: ``<name>.tmp-<pid>-<thread>``."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(root: Path | str, *, recursive: bool = True) -> int:
    """Remove the temporary files under ``root`` whose writer process is gone; return how many.

    A process killed in the middle of :func:`write_atomic` (``kill -9`` of the daemon, a worker
    killed at its step timeout or when its job was cancelled) leaves its temporary file behind,
    next to the results a reader lists. Those of living processes (a retry already writing) stay.
    """
    removed = 0
    walk = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for folder, _, files in walk:
        for name in files:
            found = _TEMPORARY.search(name)
            if found is None or _alive(int(found.group(1))):
                continue
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            removed += 1
    return removed


def display_name(name: str) -> str:
    """``name`` made printable: bytes that were not UTF-8 in a file name (kept by Python as lone
    surrogates) become U+FFFD, so the name can go into JSON, CSV and logs."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
