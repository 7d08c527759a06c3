"""The job store: the durable truth about jobs, their tasks, attempts and state changes (SPEC §6).

One SQLite file (``state_dir/jobs.sqlite3`` in the daemon) in WAL mode, read and written by the
daemon's threads and by other processes (the CLI, a second API worker) at once. Every state change
goes through one function per kind — :func:`flowd.jobs.transitions.move_job` and
:func:`flowd.jobs.transitions.move_task` — which checks :mod:`flowd.jobs.states`' table, applies a
conditional ``UPDATE … WHERE id = ? AND state = ?`` inside a ``BEGIN IMMEDIATE`` transaction, and
writes an ``events`` row in that same transaction: the history can never disagree with the state.
A crash is a normal transition: tasks a dead process left ``RUNNING`` are re-queued by the same
function (:meth:`JobStore.recover_after_crash`).

Schema (version 3; ``PRAGMA user_version``; migrations in :mod:`flowd.jobs.schema`)
-----------------------------------------------------------------------------------
Times are Unix seconds (REAL) from the store's clock. JSON columns hold UTF-8 JSON text.

``jobs`` — one row per job (a run of a binary over a folder, or a compile).
    ``job_id`` TEXT PK (1–50 of ``[A-Za-z0-9._-]``; uuid4 when not given; never reused),
    ``type`` (``flow`` | ``compile``), ``state`` (a :class:`~flowd.jobs.states.JobState`),
    ``priority`` 0–9 (higher first), ``binary_path``, ``input_dir``, ``output_folder``, ``run_id``,
    ``settings`` (JSON: the run settings as submitted), ``error`` (why it could not run),
    ``result`` (JSON: a compile job's binary path or problems), ``created_at``, ``started_at``
    (first task claimed), ``finished_at`` (set when it ends, cleared by a retry), ``updated_at``;
    (version 3) ``ends`` (how many times it entered an ended state) and ``finalized`` (up to which
    end its output files and notifications were written: ``finalized < ends`` is the daemon's
    to-do list after a crash, index ``jobs_to_finalize``).
    Indexes: ``(created_at, job_id)``, ``(state, created_at, job_id)``,
    ``(binary_path, created_at, job_id)`` — each lists a filter's jobs newest first with no sort —
    and ``jobs_to_run (priority DESC, created_at, job_id) WHERE state IN (QUEUED, RUNNING)``, the
    scheduler's order over active jobs only. Task counts are not stored on the job: they are
    counted from ``tasks`` when asked, so they can never drift from the tasks.
``job_tags`` — a job's tags, one row each (``job_id``, ``position``, ``tag``, and the job's
    ``created_at`` copied so that ``(tag, created_at, job_id)`` answers a tag search newest first
    from the index alone). Tags are at most 500 characters together; duplicates are dropped.
``pipelines`` — ``pipeline_id`` TEXT PK (uuid4), ``name``, ``created_at``.
``job_pipelines`` — ``(job_id, pipeline_id)`` PK, ``position``, the job's ``created_at``; index
    ``(pipeline_id, created_at, job_id)``.
``tasks`` — one input file's way through a job (a compile job has one task).
    ``task_id`` INTEGER PK, ``job_id`` FK, ``ordinal`` (order within the job; unique per job),
    ``file`` (path relative to the input folder: TEXT, or a BLOB of its raw bytes when the name is
    not UTF-8), ``flow`` (NULL but in Flows binaries), ``state`` (a
    :class:`~flowd.jobs.states.TaskState`), ``position`` (next step to run: the resume point),
    ``route`` (a Metaflow task's routed flow), ``attempts`` (attempts that count against
    ``max_attempts``), ``not_before`` (not claimed earlier: the retry backoff), ``error`` (the last
    failure), ``records``, ``runtime_errors``, ``result`` (JSON summary), ``updated_at``.
    Indexes: ``(job_id, file, ifnull(flow, ''))`` UNIQUE (a file is never queued twice in a job),
    ``(job_id, state)`` (counts, roll-up), ``tasks_running (job_id) WHERE state = RUNNING``
    (crash recovery), and ``tasks_to_claim (job_id, ordinal) WHERE state IN (QUEUED,
    RETRY_WAIT)`` — only claimable tasks, in order.
``attempts`` — one row per claim of a task by a worker: ``attempt_id``, ``task_id`` FK,
    ``worker``, ``position`` (step it started at), ``started_at``, ``ended_at`` and ``outcome`` (an
    :class:`~flowd.jobs.states.AttemptOutcome`; both NULL while it runs), ``error``. A task is
    ``RUNNING`` exactly when one of its attempts is open.
``events`` — every state change of a job (``task_id`` NULL) or task: ``event_id``, ``job_id``,
    ``task_id``, ``at``, ``who`` (``api``, ``scheduler``, a worker's name, ``startup``, …),
    ``from_state`` (NULL on creation), ``to_state``, ``why``. Indexes ``(job_id, event_id)``,
    ``(task_id, event_id)``.
``outbox`` (version 2) — one notification of an ended job, kept until and after it is delivered;
    written only by :mod:`flowd.notify.outbox`. ``message_id`` INTEGER PK, ``job_id`` (no foreign
    key: the record of what was sent outlives the job row), ``round`` (which end of the job: 0,
    then one more per retry that ends it again), ``kind`` (``webhook`` | ``email``), ``target``
    (the URL, or the recipients joined by ``,``), ``payload`` (JSON text: the seed's webhook body,
    sent byte for byte), ``headers`` (JSON: the job's webhook headers), ``state`` (``PENDING`` →
    ``SENT`` | ``FAILED`` | ``NOT_SENT``; the last three are final), ``attempts`` (deliveries
    tried), ``next_attempt_at`` (not tried earlier: the backoff), ``last_error``, ``created_at``,
    ``sent_at`` (when acknowledged). ``UNIQUE (job_id, round, kind, target)``: a job end settled
    twice notifies once. Index ``outbox_due (next_attempt_at, message_id) WHERE state =
    PENDING``: only undelivered messages, soonest first.

The meaning of each state and the transition tables are in :mod:`flowd.jobs.states`.

Concurrency: one connection per :class:`JobStore`; its methods may be called from any thread (a
lock serializes them) and any number of processes may open the same file. Each write is one short
``BEGIN IMMEDIATE`` transaction, which also makes "read, decide, write" (claiming a task) atomic
across processes. A store must not cross a ``fork``: open one per process.

Where the code is
-----------------
:class:`JobStore` is one class put together from parts, each small enough to read in one sitting:

- here — opening and closing the store, creating jobs and tasks (in their first state, with their
  creation events), reading them back, their counts and history;
- :mod:`flowd.jobs.transitions` — THE place states change (:func:`~flowd.jobs.transitions.move_job`,
  :func:`~flowd.jobs.transitions.move_task`, the roll-up), and where events are written;
- :mod:`flowd.jobs.commands` — a user's pause, resume, cancel and retry;
- :mod:`flowd.jobs.scheduling` — claims, attempts' ends, retries, crash recovery, direct moves;
- :mod:`flowd.jobs.listing` — :meth:`~JobStore.list_jobs` and its SQL;
- :mod:`flowd.jobs.pipelines` — pipelines and a job's links to them;
- :mod:`flowd.jobs.database` — the connection, its lock and transactions;
- :mod:`flowd.jobs.queries` — the rows handed out, and reading them; :mod:`flowd.jobs.schema` —
  this schema, written as migrations.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from flowd.engine.settings import check_job_id
from flowd.errors import DuplicateJobError, JobNotFoundError, RunSettingsError
from flowd.jobs import schema
from flowd.jobs.commands import CommandsMixin
from flowd.jobs.database import Database
from flowd.jobs.listing import MAX_PAGE, ListingMixin
from flowd.jobs.pipelines import PipelinesMixin, link_pipelines
from flowd.jobs.queries import (
    AttemptRow,
    EventRow,
    JobCounts,
    JobRow,
    NewJob,
    NewTask,
    TaskRow,
    attempt_row,
    event_row,
    file_in,
    json_in,
    read_counts,
    read_job,
    read_task,
    task_row,
)
from flowd.jobs.scheduling import SchedulingMixin
from flowd.jobs.states import JOB_ENDED, JobState, TaskState
from flowd.jobs.transitions import record_event

__all__ = ["MAX_PAGE", "MAX_TAGS_CHARS", "JobStore", "check_priority", "check_tags"]

MAX_TAGS_CHARS = 500


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags as stored: strings, not empty, at most 500 characters together, first occurrence kept."""
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise RunSettingsError("tags must be a list of strings")
    if any(not t for t in tags):
        raise RunSettingsError("tags must not be empty strings")
    total = sum(len(t) for t in tags)
    if total > MAX_TAGS_CHARS:
        raise RunSettingsError(
            f"tags have {total} characters together; at most {MAX_TAGS_CHARS} are allowed"
        )
    return tuple(dict.fromkeys(tags))


def check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise RunSettingsError(f"priority must be an integer from 0 to 9, not {priority!r}")
    return priority


class JobStore(CommandsMixin, SchedulingMixin, ListingMixin, PipelinesMixin):
    """The job store on one SQLite file (created and migrated on open).

    ``clock`` gives "now" in Unix seconds for every timestamp the store writes and for
    :meth:`claim_next_task`'s backoff check; inject one to test time without waiting.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db = Database(self.path)

    # -- plumbing ------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._db.read() as conn:
            return schema.schema_version(conn)

    # -- jobs ----------------------------------------------------------------------------------
    def create_job(self, new: NewJob, *, who: str = "api", why: str = "submitted") -> JobRow:
        """Create a job (``QUEUED``) with its tags, pipelines and tasks, all in one transaction.

        Raises :class:`~flowd.errors.DuplicateJobError` for a ``job_id`` in use (never an
        overwrite), :class:`~flowd.errors.RunSettingsError` for a bad job id, priority or tags,
        :class:`~flowd.errors.PipelineNotFoundError` for an unknown pipeline id.
        """
        with self._db.write() as conn:
            job_id = self._insert_job(conn, new, who, why)
            return read_job(conn, job_id)

    def create_jobs(
        self, news: Iterable[NewJob], *, who: str = "api", why: str = "submitted"
    ) -> list[str]:
        """Create many jobs in one transaction (all or none); their ids, in order."""
        with self._db.write() as conn:
            return [self._insert_job(conn, new, who, why) for new in news]

    def _insert_job(self, conn: sqlite3.Connection, new: NewJob, who: str, why: str) -> str:
        job_id = check_job_id(new.job_id) if new.job_id is not None else str(uuid.uuid4())
        priority = check_priority(new.priority)
        tags = check_tags(new.tags)
        pipeline_ids = tuple(dict.fromkeys(new.pipeline_ids))
        now = self._clock()
        if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone():
            raise DuplicateJobError(job_id)
        conn.execute(
            "INSERT INTO jobs (job_id, type, state, priority, binary_path, input_dir, "
            "output_folder, run_id, settings, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                str(new.type),
                str(JobState.QUEUED),
                priority,
                new.binary_path,
                new.input_dir,
                new.output_folder,
                new.run_id,
                json_in(dict(new.settings)),
                now,
                now,
            ),
        )
        conn.executemany(
            "INSERT INTO job_tags (job_id, position, tag, created_at) VALUES (?, ?, ?, ?)",
            [(job_id, i, tag, now) for i, tag in enumerate(tags)],
        )
        link_pipelines(conn, job_id, pipeline_ids, now)
        record_event(conn, job_id, None, now, who, None, JobState.QUEUED, why)
        self._insert_tasks(conn, job_id, new.tasks, who, now)
        return job_id

    def get_job(self, job_id: str) -> JobRow:
        """The job; :class:`~flowd.errors.JobNotFoundError` if there is none."""
        with self._db.read() as conn:
            return read_job(conn, job_id)

    # -- tasks ---------------------------------------------------------------------------------
    def add_tasks(
        self, job_id: str, tasks: Iterable[NewTask], who: str = "scheduler"
    ) -> list[TaskRow]:
        """Append tasks to a job (after those it has), in one transaction.

        A task whose file and flow the job already has raises ``ValueError`` and adds nothing: a
        file is never queued twice. So does adding to an ended job.
        """
        with self._db.write() as conn:
            job = read_job(conn, job_id)
            if job.state in JOB_ENDED:
                raise ValueError(f"job {job_id} is {job.state}: an ended job takes no new tasks")
            ids = self._insert_tasks(conn, job_id, tasks, who, self._clock())
            return [read_task(conn, task_id) for task_id in ids]

    def _insert_tasks(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        tasks: Iterable[NewTask],
        who: str,
        now: float,
    ) -> list[int]:
        start = conn.execute(
            "SELECT ifnull(max(ordinal), -1) + 1 FROM tasks WHERE job_id = ?", (job_id,)
        ).fetchone()[0]
        ids: list[int] = []
        for ordinal, new in enumerate(tasks, start):
            state = TaskState.QUEUED if new.error is None else TaskState.FAILED
            try:
                cur = conn.execute(
                    "INSERT INTO tasks (job_id, ordinal, file, flow, state, error, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, ordinal, file_in(new.file), new.flow, str(state), new.error, now),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(
                    f"job {job_id} has a task for {new.file!r} (flow {new.flow}) already"
                ) from exc
            task_id = int(cur.lastrowid or 0)
            why = "added" if new.error is None else new.error
            record_event(conn, job_id, task_id, now, who, None, state, why)
            ids.append(task_id)
        return ids

    def get_task(self, task_id: int) -> TaskRow:
        with self._db.read() as conn:
            return read_task(conn, task_id)

    def tasks(self, job_id: str, state: TaskState | None = None) -> list[TaskRow]:
        """A job's tasks in order (optionally only those in ``state``)."""
        sql = "SELECT * FROM tasks WHERE job_id = ?"
        params: list[Any] = [job_id]
        if state is not None:
            sql += " AND state = ?"
            params.append(str(state))
        with self._db.read() as conn:
            return [task_row(r) for r in conn.execute(sql + " ORDER BY ordinal", params)]

    def attempts(self, task_id: int) -> list[AttemptRow]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM attempts WHERE task_id = ? ORDER BY attempt_id", (task_id,)
            )
            return [attempt_row(r) for r in rows]

    # -- counts and history --------------------------------------------------------------------
    def job_counts(self, job_id: str) -> JobCounts:
        """Tasks by state and their records, for ``curProgress`` and ``run_summary``."""
        with self._db.read() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                raise JobNotFoundError(job_id)
            return read_counts(conn, job_id)

    def had_failed_attempts(self, job_id: str) -> bool:
        """Whether any attempt of the job's tasks ended otherwise than ``DONE`` or at a barrier
        (lost with a dead daemon, killed at a timeout, failed, cancelled)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM attempts AS a JOIN tasks AS t ON t.task_id = a.task_id "
                "WHERE t.job_id = ? AND a.outcome IS NOT NULL "
                "AND a.outcome NOT IN ('DONE', 'BARRIER', 'CHECKPOINT', 'YIELDED') LIMIT 1",
                (job_id,),
            ).fetchone()
            return row is not None

    def gauges(self) -> dict[str, dict[str, int]]:
        """Counts for monitoring: ``jobs`` by state, ``tasks`` claimable (``queued``, due or
        not) and ``running``. Read from indexes only (cheap enough for every metrics scrape)."""
        with self._db.read() as conn:
            jobs = {s: 0 for s in JobState}
            for state, n in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                jobs[JobState(state)] = n
            queued = conn.execute(
                "SELECT count(*) FROM tasks INDEXED BY tasks_to_claim "
                "WHERE state IN ('QUEUED', 'RETRY_WAIT')"
            ).fetchone()[0]
            running = conn.execute(
                "SELECT count(*) FROM tasks INDEXED BY tasks_running WHERE state = 'RUNNING'"
            ).fetchone()[0]
        return {
            "jobs": {str(k): v for k, v in jobs.items()},
            "tasks": {"queued": queued, "running": running},
        }

    def events(self, job_id: str, task_id: int | None = None) -> list[EventRow]:
        """A job's state changes (its own and its tasks'; or one task's), oldest first."""
        with self._db.read() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                raise JobNotFoundError(job_id)
            if task_id is None:
                rows = conn.execute(
                    "SELECT * FROM events WHERE job_id = ? ORDER BY event_id", (job_id,)
                )
            else:
                rows = conn.execute(
                    "SELECT * FROM events WHERE job_id = ? AND task_id = ? ORDER BY event_id",
                    (job_id, task_id),
                )
            return [event_row(r) for r in rows]
