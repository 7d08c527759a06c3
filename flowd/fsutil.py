"""Small file-system helpers shared by every layer: atomic writes.

Every file flowd produces is written to a temporary name in the same folder and renamed into place,
so a crash or a concurrent reader never sees half a file (SPEC §5.1).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and ``rename``.

    ``fsync`` also flushes the data to disk first: use it for files whose loss after a power cut
    matters (binaries, final results); per-step outputs skip it because a lost one is simply
    recomputed on resume.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def display_name(name: str) -> str:
    """``name`` made printable: bytes that were not UTF-8 in a file name (kept by Python as lone
    surrogates) become U+FFFD, so the name can go into JSON, CSV and logs."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
