"""Step outputs: the resume points of a run (SPEC §5.1).

Each step writes its output per task under ``s<N>_<step>/<input path>`` — ``.ibdoc`` for
``process_files``, ``.ibmsg`` for the others — atomically. A task that is interrupted resumes at its
first step without a readable output. :class:`FolderStore` keeps them on disk;
:class:`MemoryStore` keeps them in a dict for in-memory runs (the sync API writes nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from flowd.engine.document import Document
from flowd.engine.records import Record
from flowd.engine.steps.mapping import text_of
from flowd.errors import StepOutputError
from flowd.fsutil import display_name, write_atomic

DOC_SUFFIX = ".ibdoc"
MSG_SUFFIX = ".ibmsg"


class StepStore(Protocol):
    def save_document(self, folder: str, key: str, doc: Document) -> None: ...
    def load_document(self, folder: str, key: str) -> Document | None: ...
    def save_records(self, folder: str, key: str, step: str, records: list[Record]) -> None: ...
    def load_records(self, folder: str, key: str, doc: Document) -> list[Record] | None: ...
    def has_output(self, folder: str, key: str, suffix: str) -> bool: ...
    def folder_path(self, folder: str) -> str | None: ...


def _message(key: str, step: str, records: list[Record]) -> dict[str, Any]:
    return {
        "type": "ibmsg",
        "version": 1,
        "step": step,
        "file_name": display_name(key),
        "records": [r.to_dict() for r in records],
    }


def _records(data: Any, key: str, doc: Document) -> list[Record]:
    return [
        Record.from_dict(
            r, display_name(key), text_of(doc, tuple(r.get("pages", ()))), doc.page_count
        )
        for r in data["records"]
    ]


class FolderStore:
    """Step outputs under a run's output folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[str] = set()

    def _path(self, folder: str, key: str, suffix: str) -> str:
        path = os.path.join(self.root, folder, key + suffix)
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        return path

    def folder_path(self, folder: str) -> str | None:
        return os.path.join(self.root, folder)

    def has_output(self, folder: str, key: str, suffix: str) -> bool:
        return os.path.isfile(os.path.join(self.root, folder, key + suffix))

    def save_document(self, folder: str, key: str, doc: Document) -> None:
        data = json.dumps(doc.to_dict(), ensure_ascii=False, separators=(",", ":"))
        write_atomic(self._path(folder, key, DOC_SUFFIX), data.encode("utf-8", "replace"))

    def load_document(self, folder: str, key: str) -> Document | None:
        path = os.path.join(self.root, folder, key + DOC_SUFFIX)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None  # not written yet: the step runs
        try:
            return Document.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise _unreadable(self.root, path, exc) from None

    def save_records(self, folder: str, key: str, step: str, records: list[Record]) -> None:
        data = json.dumps(_message(key, step, records), ensure_ascii=False, default=str)
        write_atomic(self._path(folder, key, MSG_SUFFIX), data.encode("utf-8", "replace"))

    def load_records(self, folder: str, key: str, doc: Document) -> list[Record] | None:
        path = os.path.join(self.root, folder, key + MSG_SUFFIX)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        try:
            return _records(json.loads(raw), key, doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise _unreadable(self.root, path, exc) from None


def _unreadable(root: Path, path: str, exc: Exception) -> StepOutputError:
    """Step outputs are written atomically, so one that does not parse was edited by hand (a
    reviewer correcting a checkpoint) or damaged: say so instead of silently recomputing it,
    which would throw the correction away."""
    where = os.path.relpath(path, root)
    cause = str(exc) if isinstance(exc, ValueError) else f"missing or wrong key {exc}"
    return StepOutputError(
        f"{display_name(where)} is not a valid step output ({cause}); fix it, or delete it to "
        "recompute that step, then resume"
    )


class MemoryStore:
    """Step outputs in memory, for runs that must not touch the disk."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Document] = {}
        self.messages: dict[tuple[str, str], list[Record]] = {}

    def folder_path(self, folder: str) -> str | None:
        return None

    def has_output(self, folder: str, key: str, suffix: str) -> bool:
        table: dict[tuple[str, str], Any] = self.docs if suffix == DOC_SUFFIX else self.messages
        return (folder, key) in table

    def save_document(self, folder: str, key: str, doc: Document) -> None:
        self.docs[(folder, key)] = doc

    def load_document(self, folder: str, key: str) -> Document | None:
        return self.docs.get((folder, key))

    def save_records(self, folder: str, key: str, step: str, records: list[Record]) -> None:
        self.messages[(folder, key)] = list(records)

    def load_records(self, folder: str, key: str, doc: Document) -> list[Record] | None:
        found = self.messages.get((folder, key))
        return list(found) if found is not None else None
