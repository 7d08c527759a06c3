"""The job store's SQL: opening a connection the one right way, the schema, and its migrations.

The schema is described, table by table, at the top of :mod:`flowd.jobs.store`. Here it is written
down as migrations: ``MIGRATIONS[n - 1]`` turns a version ``n - 1`` file into version ``n``, and
``PRAGMA user_version`` holds the version a file is at. On open, the missing migrations run in
order, inside one ``BEGIN IMMEDIATE`` transaction (so two processes opening an old file at once
migrate it once, and a crash mid-migration leaves the old version intact). A file at a version
newer than this flowd knows is refused rather than misread.

To change the schema, append one function — ``_v2_…(conn)`` — to ``MIGRATIONS``; never edit a
migration that has shipped: files in the field were made by it.

States are not ``CHECK``-constrained in SQL: :mod:`flowd.jobs.states` is the one place that decides
them, and a new state must not need a table rebuild (SQLite cannot alter a ``CHECK``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import structlog

from flowd.errors import JobStoreError

log = structlog.get_logger("flowd.jobs")

BUSY_TIMEOUT_S = 30.0
"""How long a statement waits for another connection's write lock before failing. Writers hold it
for one short transaction, so a long wait means something is wrong, not busy."""

_V1: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        job_id        TEXT PRIMARY KEY CHECK (length(job_id) BETWEEN 1 AND 50),
        type          TEXT NOT NULL,
        state         TEXT NOT NULL,
        priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
        binary_path   TEXT,
        input_dir     TEXT,
        output_folder TEXT,
        run_id        TEXT,
        settings      TEXT NOT NULL DEFAULT '{}',
        error         TEXT,
        result        TEXT,
        created_at    REAL NOT NULL,
        started_at    REAL,
        finished_at   REAL,
        updated_at    REAL NOT NULL
    )
    """,
    "CREATE INDEX jobs_by_created ON jobs (created_at, job_id)",
    "CREATE INDEX jobs_by_state ON jobs (state, created_at, job_id)",
    "CREATE INDEX jobs_by_binary ON jobs (binary_path, created_at, job_id)",
    """
    CREATE INDEX jobs_to_run ON jobs (priority DESC, created_at, job_id)
        WHERE state IN ('QUEUED', 'RUNNING')
    """,
    """
    CREATE TABLE job_tags (
        job_id     TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        tag        TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (job_id, position)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX job_tags_by_tag ON job_tags (tag, created_at, job_id)",
    """
    CREATE TABLE pipelines (
        pipeline_id TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    "CREATE INDEX pipelines_by_created ON pipelines (created_at, pipeline_id)",
    """
    CREATE TABLE job_pipelines (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        pipeline_id TEXT NOT NULL REFERENCES pipelines (pipeline_id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (job_id, pipeline_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE INDEX job_pipelines_by_pipeline ON job_pipelines (pipeline_id, created_at, job_id)
    """,
    """
    CREATE TABLE tasks (
        task_id        INTEGER PRIMARY KEY,
        job_id         TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        ordinal        INTEGER NOT NULL,
        file           TEXT NOT NULL,
        flow           TEXT,
        state          TEXT NOT NULL,
        position       INTEGER NOT NULL DEFAULT 0,
        route          TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        not_before     REAL NOT NULL DEFAULT 0,
        error          TEXT,
        records        INTEGER NOT NULL DEFAULT 0,
        runtime_errors INTEGER NOT NULL DEFAULT 0,
        result         TEXT,
        updated_at     REAL NOT NULL,
        UNIQUE (job_id, ordinal)
    )
    """,
    "CREATE UNIQUE INDEX tasks_by_key ON tasks (job_id, file, ifnull(flow, ''))",
    "CREATE INDEX tasks_by_job_state ON tasks (job_id, state)",
    "CREATE INDEX tasks_running ON tasks (job_id) WHERE state = 'RUNNING'",
    """
    CREATE INDEX tasks_to_claim ON tasks (job_id, ordinal)
        WHERE state IN ('QUEUED', 'RETRY_WAIT')
    """,
    """
    CREATE TABLE attempts (
        attempt_id INTEGER PRIMARY KEY,
        task_id    INTEGER NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        worker     TEXT NOT NULL,
        position   INTEGER NOT NULL,
        started_at REAL NOT NULL,
        ended_at   REAL,
        outcome    TEXT,
        error      TEXT
    )
    """,
    "CREATE INDEX attempts_by_task ON attempts (task_id, attempt_id)",
    """
    CREATE TABLE events (
        event_id   INTEGER PRIMARY KEY,
        job_id     TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        task_id    INTEGER REFERENCES tasks (task_id) ON DELETE CASCADE,
        at         REAL NOT NULL,
        who        TEXT NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        why        TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX events_by_job ON events (job_id, event_id)",
    "CREATE INDEX events_by_task ON events (task_id, event_id)",
)


def _v1_initial(conn: sqlite3.Connection) -> None:
    """Version 1: jobs, tags, pipelines, tasks, attempts, events."""
    for statement in _V1:
        conn.execute(statement)


_V2: tuple[str, ...] = (
    # No foreign key to jobs: the outbox is the record of what was promised and sent, kept
    # whatever happens to the job row; and a notification never blocks a job's deletion.
    """
    CREATE TABLE outbox (
        message_id      INTEGER PRIMARY KEY,
        job_id          TEXT NOT NULL,
        round           INTEGER NOT NULL DEFAULT 0,
        kind            TEXT NOT NULL,
        target          TEXT NOT NULL,
        payload         TEXT NOT NULL,
        headers         TEXT NOT NULL DEFAULT '{}',
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        created_at      REAL NOT NULL,
        sent_at         REAL,
        UNIQUE (job_id, round, kind, target)
    )
    """,
    "CREATE INDEX outbox_due ON outbox (next_attempt_at, message_id) WHERE state = 'PENDING'",
)


def _v2_outbox(conn: sqlite3.Connection) -> None:
    """Version 2: the notification outbox (webhooks and e-mails of ended jobs)."""
    for statement in _V2:
        conn.execute(statement)


_V3: tuple[str, ...] = (
    "ALTER TABLE jobs ADD COLUMN ends INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN finalized INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX jobs_to_finalize ON jobs (updated_at, job_id) WHERE finalized < ends",
)


def _v3_job_ends(conn: sqlite3.Connection) -> None:
    """Version 3: how often a job has ended, and up to which end its results and notifications
    were written (so a crash between a job's end and its follow-up is redone at start-up)."""
    for statement in _V3:
        conn.execute(statement)


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_v1_initial, _v2_outbox, _v3_job_ends)
"""``MIGRATIONS[n - 1]`` brings a file from version ``n - 1`` to ``n``. Append, never edit."""


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` (created if missing) as a job store: WAL, ``synchronous=NORMAL``, foreign keys.

    WAL lets the CLI and the API read while the scheduler writes; ``synchronous=NORMAL`` in WAL
    keeps every committed transaction across a process crash (``kill -9``) and loses at most the
    last ones on power loss, never consistency. Autocommit mode (``isolation_level=None``): the
    store opens its transactions explicitly, writes with ``BEGIN IMMEDIATE`` — a deferred one that
    reads first and writes later can fail at once with "database is locked" when another process
    wrote in between, without waiting. ``check_same_thread=False``: the store serializes its
    threads itself.
    """
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise JobStoreError(str(path), f"cannot open the job store: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _refuse_newer(conn, path)  # before WAL: a newer flowd's file is left as it was
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JobStoreError(str(path), f"cannot use WAL mode (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JobStoreError(str(path), f"not a usable job store: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(conn: sqlite3.Connection, path: Path) -> None:
    found, latest = schema_version(conn), len(MIGRATIONS)
    if found > latest:
        raise JobStoreError(
            str(path),
            f"the job store is at schema version {found}; this flowd knows up to {latest} "
            "— upgrade flowd",
        )


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the file to the newest version; return the version it was at.

    Raises :class:`~flowd.errors.JobStoreError` for a newer version, or for a version-0 file that
    already holds tables (some other SQLite database, not to be written into).
    """
    latest = len(MIGRATIONS)
    found = schema_version(conn)
    if found == latest:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        _refuse_newer(conn, path)  # another process may have migrated while we waited
        found = schema_version(conn)
        if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise JobStoreError(str(path), "not a flowd job store (it holds other tables)")
        for number in range(found + 1, latest + 1):
            MIGRATIONS[number - 1](conn)
            log.info("job_store_migrated", path=str(path), version=number)
        conn.execute(f"PRAGMA user_version = {latest}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
