"""The job store's database: one SQLite connection, the lock that shares it, its transactions.

A :class:`~flowd.jobs.store.JobStore` holds one :class:`Database`. Its methods may be called from
any thread — the lock serializes them — and any number of processes may open the same file. Each
write is one short ``BEGIN IMMEDIATE`` transaction, which also makes "read, decide, write"
(claiming a task) atomic across processes; reads take a ``BEGIN`` snapshot so that several SELECTs
(a job and its tags, a page and its tags) see one state. Nothing here knows the tables: the schema
is in :mod:`flowd.jobs.schema`, the statements are with the parts of the store that run them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from flowd.errors import JobStoreError
from flowd.jobs import schema


class Database:
    """One connection to a job store file (created and migrated on open), shared by threads.

    It must not cross a ``fork``: open one per process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn = schema.connect(path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back if it
        raises. It takes the file's write lock up front, so what it reads stays true until it
        commits."""
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A consistent snapshot over several SELECTs (a job and its tags, a page and its tags)."""
        return self._transaction("BEGIN")

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if os.getpid() != self._pid:
                # A connection copied by fork shares locks and file offsets with its parent's.
                raise JobStoreError(str(self.path), "a JobStore cannot cross fork: open one here")
            conn = self._conn
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
