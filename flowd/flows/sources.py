"""Where project files are read from: a project folder on disk, or the entries of a binary.

The compiler and the engine load projects through the same :func:`flowd.flows.project.load_project`
code; only the reader differs. That way a binary is validated on load by exactly the rules that
compiled it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class SourceReader(Protocol):
    """Reads project files by project-relative POSIX path."""

    def read(self, relpath: str) -> bytes:
        """The bytes of ``relpath``; ``FileNotFoundError`` when it does not exist."""
        ...

    def list_dir(self, reldir: str) -> list[str]:
        """Sorted project-relative paths of the regular files directly in ``reldir``."""
        ...


class ProjectPathError(ValueError):
    """A path leaves the project root."""


def join_relative(base_file: str, ref: str) -> str:
    """Resolve ``ref`` (relative to the folder of ``base_file``) to a normalized project path.

    Raises :class:`ProjectPathError` when the result leaves the project root (``..`` too far, or
    an absolute path).
    """
    if ref.startswith("/") or ref.startswith("\\") or (len(ref) > 1 and ref[1] == ":"):
        raise ProjectPathError(f"{ref!r} is absolute; paths must be relative to the project")
    joined = posixpath.normpath(
        posixpath.join(posixpath.dirname(base_file), ref.replace("\\", "/"))
    )
    if joined == ".." or joined.startswith("../"):
        raise ProjectPathError(f"{ref!r} leaves the project root")
    return joined


class DirectoryReader:
    """Reads a project folder; refuses paths (or symlinks) that lead outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, relpath: str) -> Path:
        path = (self.root / relpath).resolve()
        if path != self.root and self.root not in path.parents:
            raise ProjectPathError(
                f"{relpath!r} leads outside the project root (through a symlink)"
            )
        return path

    def read(self, relpath: str) -> bytes:
        path = self._path(relpath)
        if path.is_dir():
            raise IsADirectoryError(relpath)
        return path.read_bytes()

    def list_dir(self, reldir: str) -> list[str]:
        path = self._path(reldir)
        if not path.is_dir():
            raise FileNotFoundError(reldir)
        prefix = "" if reldir in ("", ".") else reldir.rstrip("/") + "/"
        return sorted(prefix + p.name for p in path.iterdir() if p.is_file())


class ArchiveReader:
    """Reads project files out of a verified binary's entries (``project/<relpath>``)."""

    PREFIX = "project/"

    def __init__(self, entries: Mapping[str, bytes]) -> None:
        self._entries = entries

    def read(self, relpath: str) -> bytes:
        try:
            return self._entries[self.PREFIX + relpath]
        except KeyError:
            raise FileNotFoundError(relpath) from None

    def list_dir(self, reldir: str) -> list[str]:
        prefix = self.PREFIX + ("" if reldir in ("", ".") else reldir.rstrip("/") + "/")
        return sorted(
            name[len(self.PREFIX) :]
            for name in self._entries
            if name.startswith(prefix) and "/" not in name[len(prefix) :]
        )


class RecordingReader:
    """Wraps a reader and remembers every file read, so the compiler bundles exactly those."""

    def __init__(self, inner: SourceReader) -> None:
        self.inner = inner
        self.files: dict[str, bytes] = {}

    def read(self, relpath: str) -> bytes:
        data = self.inner.read(relpath)
        self.files[relpath] = data
        return data

    def list_dir(self, reldir: str) -> list[str]:
        return self.inner.list_dir(reldir)
