"""The binaries jobs run, kept by content hash (``state_dir/binaries/<sha256>.ibflowbin``).

A job is submitted with a binary path, but the file at that path can change under it: a project is
recompiled, a user copies a new build over the old one. A job must finish — and resume after a
crash — with the binary it started with, so on submission its verified bytes are copied here, named
by their content hash, and the job records the hash. Identical binaries are stored once.

Loaded binaries are also kept in memory (a few, least recently used first out), so the sync API and
the scheduler do not re-read and re-verify a zip for every request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from flowd.errors import BinaryError
from flowd.flows.binary import CompiledBinary, load_binary
from flowd.fsutil import write_atomic

MEMORY_SLOTS = 16
"""Binaries kept loaded in memory at once."""


class BinaryCache:
    """Content-addressed binaries under ``folder``; safe to use from several threads."""

    def __init__(self, folder: Path, memory_slots: int = MEMORY_SLOTS) -> None:
        self.folder = Path(folder)
        self._slots = max(1, memory_slots)
        self._loaded: OrderedDict[str, CompiledBinary] = OrderedDict()
        self._by_file: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def path_of(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.ibflowbin"

    def load(self, path: Path) -> CompiledBinary:
        """The binary at ``path``, verified (:class:`~flowd.errors.BinaryError` if it is not a
        valid binary). A file unchanged since its last load (same size and mtime) is served from
        memory without reading it again."""
        try:
            st = path.stat()
        except OSError as exc:
            raise BinaryError(str(path), f"cannot read it: {exc.strerror or exc}") from None
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            sha = self._by_file.get(key)
            if sha is not None and sha in self._loaded:
                self._loaded.move_to_end(sha)
                return self._loaded[sha]
        binary = load_binary(path)
        with self._lock:
            self._by_file[key] = binary.content_sha256
            self._remember(binary)
        return binary

    def keep(self, binary: CompiledBinary) -> str:
        """Store ``binary``'s bytes under its content hash (once) and return the hash."""
        target = self.path_of(binary.content_sha256)
        if not target.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(target, binary.data, fsync=True)
        with self._lock:
            self._remember(binary)
        return binary.content_sha256

    def get(self, sha256: str) -> CompiledBinary:
        """The stored binary with this content hash (:class:`~flowd.errors.BinaryError` if it is
        missing or no longer matches its name)."""
        with self._lock:
            found = self._loaded.get(sha256)
            if found is not None:
                self._loaded.move_to_end(sha256)
                return found
        path = self.path_of(sha256)
        if not path.is_file():
            raise BinaryError(str(path), "the job's binary is missing from the state directory")
        binary = load_binary(path)
        if binary.content_sha256 != sha256:
            raise BinaryError(str(path), "its content does not match the hash it is stored under")
        with self._lock:
            self._remember(binary)
        return binary

    def _remember(self, binary: CompiledBinary) -> None:
        self._loaded[binary.content_sha256] = binary
        self._loaded.move_to_end(binary.content_sha256)
        while len(self._loaded) > self._slots:
            self._loaded.popitem(last=False)
        if len(self._by_file) > 64 * self._slots:  # paths of binaries long gone
            self._by_file.clear()
