"""The job store: the durable truth about jobs, their tasks, attempts and state changes (SPEC §6).

One SQLite file (``state_dir/jobs.sqlite3`` in the daemon) in WAL mode, read and written by the
daemon's threads and by other processes (the CLI, a second API worker) at once. Every state change
goes through one function per kind — :meth:`JobStore._move_job` and :meth:`JobStore._move_task` —
which checks :mod:`flowd.jobs.states`' table, applies a conditional
``UPDATE … WHERE id = ? AND state = ?`` inside a ``BEGIN IMMEDIATE`` transaction, and writes an
``events`` row in that same transaction: the history can never disagree with the state. A crash is a
normal transition: tasks a dead process left ``RUNNING`` are re-queued by the same function
(:meth:`JobStore.recover_after_crash`).

Schema (version 1; ``PRAGMA user_version``; migrations in :mod:`flowd.jobs.schema`)
-----------------------------------------------------------------------------------
Times are Unix seconds (REAL) from the store's clock. JSON columns hold UTF-8 JSON text.

``jobs`` — one row per job (a run of a binary over a folder, or a compile).
    ``job_id`` TEXT PK (1–50 of ``[A-Za-z0-9._-]``; uuid4 when not given; never reused),
    ``type`` (``flow`` | ``compile``), ``state`` (a :class:`~flowd.jobs.states.JobState`),
    ``priority`` 0–9 (higher first), ``binary_path``, ``input_dir``, ``output_folder``, ``run_id``,
    ``settings`` (JSON: the run settings as submitted), ``error`` (why it could not run),
    ``result`` (JSON: a compile job's binary path or problems), ``created_at``, ``started_at``
    (first task claimed), ``finished_at`` (set when it ends, cleared by a retry), ``updated_at``.
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

The meaning of each state and the transition tables are in :mod:`flowd.jobs.states`.

Concurrency: one connection per :class:`JobStore`; its methods may be called from any thread (a
lock serializes them) and any number of processes may open the same file. Each write is one short
``BEGIN IMMEDIATE`` transaction, which also makes "read, decide, write" (claiming a task) atomic
across processes. A store must not cross a ``fork``: open one per process.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from flowd.engine.settings import check_job_id
from flowd.errors import (
    DuplicateJobError,
    JobNotFoundError,
    JobStateError,
    JobStoreError,
    PipelineNotFoundError,
    RunSettingsError,
    TaskNotFoundError,
)
from flowd.jobs import schema
from flowd.jobs.queries import (
    CLAIM_SQL,
    JOB_COLUMNS,
    AttemptRow,
    Cancelled,
    Claim,
    EventRow,
    JobCounts,
    JobCursor,
    JobFilter,
    JobPage,
    JobRow,
    NewJob,
    NewTask,
    PipelineRow,
    TaskRow,
    attempt_row,
    event_row,
    file_in,
    job_row,
    json_in,
    list_jobs_sql,
    task_row,
)
from flowd.jobs.states import (
    JOB_ACTIONS,
    JOB_ENDED,
    TASK_ACTIVE,
    TASK_ENDED,
    AttemptOutcome,
    JobAction,
    JobState,
    TaskState,
    check_action,
    check_transition,
    rollup,
)

log = structlog.get_logger("flowd.jobs")

MAX_TAGS_CHARS = 500
MAX_PAGE = 1000
_ACTIVE = ", ".join(f"'{s}'" for s in sorted(TASK_ACTIVE))

_OUTCOME_OF: Mapping[TaskState, AttemptOutcome] = {
    TaskState.DONE: AttemptOutcome.DONE,
    TaskState.FAILED: AttemptOutcome.FAILED,
    TaskState.RETRY_WAIT: AttemptOutcome.RETRY,
    TaskState.CHECKPOINT: AttemptOutcome.CHECKPOINT,
    TaskState.WAITING: AttemptOutcome.BARRIER,
    TaskState.QUEUED: AttemptOutcome.YIELDED,
    TaskState.CANCELLED: AttemptOutcome.CANCELLED,
}


@dataclass(frozen=True)
class _TaskUpdate:
    """Columns a task transition sets besides its state; ``None`` leaves a column as it is."""

    position: int | None = None
    route: str | None = None
    attempts: int | None = None
    not_before: float | None = None
    error: str | None = None
    records: int | None = None
    runtime_errors: int | None = None
    result: Any = None


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


class JobStore:
    """The job store on one SQLite file (created and migrated on open).

    ``clock`` gives "now" in Unix seconds for every timestamp the store writes and for
    :meth:`claim_next_task`'s backoff check; inject one to test time without waiting.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn = schema.connect(self.path)

    # -- plumbing ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return schema.schema_version(conn)

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

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A consistent snapshot over several SELECTs (a job and its tags, a page and its tags)."""
        return self._transaction("BEGIN")

    def _event(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        task_id: int | None,
        now: float,
        who: str,
        from_state: str | None,
        to_state: str,
        why: str,
    ) -> None:
        conn.execute(
            "INSERT INTO events (job_id, task_id, at, who, from_state, to_state, why) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, task_id, now, who, from_state, to_state, why),
        )

    # -- jobs ----------------------------------------------------------------------------------
    def create_job(self, new: NewJob, *, who: str = "api", why: str = "submitted") -> JobRow:
        """Create a job (``QUEUED``) with its tags, pipelines and tasks, all in one transaction.

        Raises :class:`~flowd.errors.DuplicateJobError` for a ``job_id`` in use (never an
        overwrite), :class:`~flowd.errors.RunSettingsError` for a bad job id, priority or tags,
        :class:`~flowd.errors.PipelineNotFoundError` for an unknown pipeline id.
        """
        with self._write() as conn:
            job_id = self._insert_job(conn, new, who, why)
            return self._job(conn, job_id)

    def create_jobs(
        self, news: Iterable[NewJob], *, who: str = "api", why: str = "submitted"
    ) -> list[str]:
        """Create many jobs in one transaction (all or none); their ids, in order."""
        with self._write() as conn:
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
        self._link_pipelines(conn, job_id, pipeline_ids, now)
        self._event(conn, job_id, None, now, who, None, JobState.QUEUED, why)
        self._insert_tasks(conn, job_id, new.tasks, who, now)
        return job_id

    def get_job(self, job_id: str) -> JobRow:
        """The job; :class:`~flowd.errors.JobNotFoundError` if there is none."""
        with self._read() as conn:
            return self._job(conn, job_id)

    def _job(self, conn: sqlite3.Connection, job_id: str) -> JobRow:
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs AS j WHERE job_id = ?", (job_id,))
        found = row.fetchone()
        if found is None:
            raise JobNotFoundError(job_id)
        tags, pipelines = self._labels(conn, [job_id])
        return job_row(found, tags.get(job_id, ()), pipelines.get(job_id, ()))

    def _labels(
        self, conn: sqlite3.Connection, job_ids: Sequence[str]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        tags: dict[str, list[str]] = {}
        pipelines: dict[str, list[str]] = {}
        if not job_ids:
            return tags, pipelines
        marks = ", ".join("?" * len(job_ids))
        for job_id, tag in conn.execute(
            f"SELECT job_id, tag FROM job_tags WHERE job_id IN ({marks}) ORDER BY job_id, position",
            job_ids,
        ):
            tags.setdefault(job_id, []).append(tag)
        for job_id, pipeline_id in conn.execute(
            f"SELECT job_id, pipeline_id FROM job_pipelines WHERE job_id IN ({marks}) "
            "ORDER BY job_id, position",
            job_ids,
        ):
            pipelines.setdefault(job_id, []).append(pipeline_id)
        return tags, pipelines

    def list_jobs(
        self,
        *,
        status: JobState | None = None,
        tag: str | None = None,
        pipeline_id: str | None = None,
        binary_path: str | None = None,
        since: float | None = None,
        limit: int = 50,
        offset: int = 0,
        after: JobCursor | None = None,
    ) -> JobPage:
        """One page of jobs matching every filter given, newest first.

        ``since`` keeps jobs created at or after it. Page with ``offset`` or, cheaper for deep
        pages, with ``after`` = the previous page's ``next_cursor``. ``limit`` is 1–1000.
        """
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ValueError(f"limit must be 1-{MAX_PAGE} and offset >= 0")
        f = JobFilter(status, tag, pipeline_id, binary_path, since)
        sql, params = list_jobs_sql(f, limit, offset, after)
        with self._read() as conn:
            rows = conn.execute(sql, params).fetchall()
            page = rows[:limit]
            tags, pipelines = self._labels(conn, [r["job_id"] for r in page])
        jobs = tuple(
            job_row(r, tags.get(r["job_id"], ()), pipelines.get(r["job_id"], ())) for r in page
        )
        more = len(rows) > limit
        cursor = JobCursor(jobs[-1].created_at, jobs[-1].job_id) if more and jobs else None
        return JobPage(jobs, cursor)

    def transition_job(
        self,
        job_id: str,
        to: JobState,
        who: str,
        why: str,
        expect: JobState | None = None,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobRow:
        """Move a job to ``to`` (the scheduler's moves: FAILED "could not run", COMPLETE for an
        empty input, …). With ``expect``, the job must still be in that state — a state read
        earlier that changed meanwhile is a lost race, reported as
        :class:`~flowd.errors.JobStateError` like a move the table does not allow. ``error`` and
        ``result`` (JSON) are stored on the job when given. It moves the job only: a user's
        pause/resume/cancel/retry goes through :meth:`pause_job` … :meth:`retry_job`, which move
        the job's tasks with it."""
        with self._write() as conn:
            self._move_job(conn, job_id, to, who, why, expect=expect, error=error, result=result)
            return self._job(conn, job_id)

    def settle_job(self, job_id: str, who: str = "scheduler") -> JobRow:
        """Apply the roll-up rule (:func:`~flowd.jobs.states.rollup`) now. Task transitions do
        this themselves; call it after adding tasks that were all created settled."""
        with self._write() as conn:
            self._settle(conn, job_id, who, self._clock())
            return self._job(conn, job_id)

    def pause_job(self, job_id: str, who: str, why: str = "paused") -> JobRow:
        """No new task of the job starts; running ones finish their step (SPEC §6)."""
        return self._act(JOB_ACTIONS["pause"], job_id, who, why).job

    def resume_job(self, job_id: str, who: str, why: str = "resumed") -> JobRow:
        """A paused job goes on: ``RUNNING``, or ``QUEUED`` if no task of it ever started."""
        return self._act(JOB_ACTIONS["resume"], job_id, who, why).job

    def cancel_job(self, job_id: str, who: str, why: str = "cancelled") -> Cancelled:
        """The job ends ``CANCELLED`` and so does every unfinished task, running ones included
        (their attempts close as ``CANCELLED``; a worker's late report then meets a
        :class:`~flowd.errors.JobStateError`). ``stopped`` lists the tasks whose workers the
        scheduler must stop."""
        return self._act(JOB_ACTIONS["cancel"], job_id, who, why)

    def retry_job(
        self, job_id: str, who: str, why: str = "retried", *, checkpoint_failure: bool = False
    ) -> JobRow:
        """Re-run a ``FAILED`` or ``CANCELLED`` job's failed and cancelled tasks, each from the step
        it stopped at, with a fresh attempt budget; with ``checkpoint_failure``, continue a job
        ``STOPPED_AT_CHECKPOINT`` (its tasks at the checkpoint re-validate their records)."""
        action = JOB_ACTIONS["retry_checkpoint_failure" if checkpoint_failure else "retry"]
        return self._act(action, job_id, who, why).job

    def _act(self, action: JobAction, job_id: str, who: str, why: str) -> Cancelled:
        now = self._clock()
        with self._write() as conn:
            job = self._job(conn, job_id)
            check_action(action, job.state, job_id=job_id)
            target = action.target
            if action.name == "resume" and job.started_at is None:
                target = JobState.QUEUED
            self._move_job(conn, job_id, target, who, why, expect=job.state, now=now)
            stopped: list[int] = []
            if action.task_target is not None:
                marks = ", ".join("?" * len(action.task_sources))
                rows = conn.execute(
                    f"SELECT task_id, state FROM tasks WHERE job_id = ? AND state IN ({marks}) "
                    "ORDER BY ordinal",
                    (job_id, *action.task_sources),
                ).fetchall()
                fresh = _TaskUpdate(attempts=0, not_before=0.0)
                for task_id, state in rows:
                    if state == TaskState.RUNNING:
                        stopped.append(task_id)
                    update = fresh if action.name == "retry" else _TaskUpdate()
                    self._move_task(
                        conn, task_id, action.task_target, who, why, now, update, settle=False
                    )
            if target not in JOB_ENDED:
                self._settle(conn, job_id, who, now)
            return Cancelled(self._job(conn, job_id), tuple(stopped))

    def _move_job(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        to: JobState,
        who: str,
        why: str,
        *,
        expect: JobState | None = None,
        now: float | None = None,
        error: str | None = None,
        result: Any = None,
    ) -> JobState:
        """THE place a job's state changes: table check, conditional UPDATE, event row."""
        now = self._clock() if now is None else now
        row = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        current = JobState(row["state"])
        if expect is not None and current != expect:
            raise JobStateError(
                job_id, current, to, f"it is {current} now, no longer {expect} (changed meanwhile)"
            )
        check_transition("job", current, to, job_id=job_id)
        sets = ["state = ?", "updated_at = ?"]
        params: list[Any] = [str(to), now]
        if to in JOB_ENDED:
            sets.append("finished_at = ?")
            params.append(now)
        elif current in JOB_ENDED:
            sets.append("finished_at = NULL")
        if to is JobState.RUNNING:
            sets.append("started_at = ifnull(started_at, ?)")
            params.append(now)
        if error is not None:
            sets.append("error = ?")
            params.append(error)
        if result is not None:
            sets.append("result = ?")
            params.append(json_in(result))
        cur = conn.execute(
            f"UPDATE jobs SET {', '.join(sets)} WHERE job_id = ? AND state = ?",
            (*params, job_id, str(current)),
        )
        if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; guards a future refactor
            raise JobStateError(job_id, current, to, "its state changed meanwhile")
        self._event(conn, job_id, None, now, who, current, to, why)
        return current

    def _settle(self, conn: sqlite3.Connection, job_id: str, who: str, now: float) -> None:
        """The roll-up: a job whose tasks have all settled takes the state they put it in."""
        state = JobState(
            conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
        )
        if state in JOB_ENDED:
            return
        active = conn.execute(
            f"SELECT 1 FROM tasks WHERE job_id = ? AND state IN ({_ACTIVE}) LIMIT 1", (job_id,)
        ).fetchone()
        if active:  # the common case, answered from the index without counting every task
            return
        counts = self._counts(conn, job_id)
        target = rollup(counts.by_state)
        if target is None or target == state:
            return
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.by_state.items()) if n)
        self._move_job(conn, job_id, target, who, f"all tasks settled: {summary}", now=now)

    # -- tasks ---------------------------------------------------------------------------------
    def add_tasks(
        self, job_id: str, tasks: Iterable[NewTask], who: str = "scheduler"
    ) -> list[TaskRow]:
        """Append tasks to a job (after those it has), in one transaction.

        A task whose file and flow the job already has raises ``ValueError`` and adds nothing: a
        file is never queued twice. So does adding to an ended job.
        """
        with self._write() as conn:
            job = self._job(conn, job_id)
            if job.state in JOB_ENDED:
                raise ValueError(f"job {job_id} is {job.state}: an ended job takes no new tasks")
            ids = self._insert_tasks(conn, job_id, tasks, who, self._clock())
            return [self._task(conn, task_id) for task_id in ids]

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
            self._event(conn, job_id, task_id, now, who, None, state, why)
            ids.append(task_id)
        return ids

    def get_task(self, task_id: int) -> TaskRow:
        with self._read() as conn:
            return self._task(conn, task_id)

    def _task(self, conn: sqlite3.Connection, task_id: int) -> TaskRow:
        row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFoundError(task_id)
        return task_row(row)

    def tasks(self, job_id: str, state: TaskState | None = None) -> list[TaskRow]:
        """A job's tasks in order (optionally only those in ``state``)."""
        sql = "SELECT * FROM tasks WHERE job_id = ?"
        params: list[Any] = [job_id]
        if state is not None:
            sql += " AND state = ?"
            params.append(str(state))
        with self._read() as conn:
            return [task_row(r) for r in conn.execute(sql + " ORDER BY ordinal", params)]

    def attempts(self, task_id: int) -> list[AttemptRow]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM attempts WHERE task_id = ? ORDER BY attempt_id", (task_id,)
            )
            return [attempt_row(r) for r in rows]

    def transition_task(
        self,
        task_id: int,
        to: TaskState,
        who: str,
        why: str,
        *,
        expect: TaskState | None = None,
        position: int | None = None,
        route: str | None = None,
        not_before: float | None = None,
        error: str | None = None,
        records: int | None = None,
        runtime_errors: int | None = None,
        result: Any = None,
    ) -> TaskRow:
        """Move a task to ``to`` and set the given columns (``None`` leaves one as it is).

        Leaving ``RUNNING`` closes the task's open attempt; entering it opens one for worker
        ``who``. If the task's job is thereby settled, the job takes its rolled-up state in the
        same transaction. Raises :class:`~flowd.errors.JobStateError` for a move the table does
        not allow or a state that is no longer ``expect``.
        """
        update = _TaskUpdate(
            position, route, None, not_before, error, records, runtime_errors, result
        )
        with self._write() as conn:
            self._move_task(conn, task_id, to, who, why, self._clock(), update, expect=expect)
            return self._task(conn, task_id)

    def finish_attempt(
        self,
        task_id: int,
        to: TaskState,
        who: str,
        why: str = "",
        *,
        position: int | None = None,
        route: str | None = None,
        error: str | None = None,
        records: int | None = None,
        runtime_errors: int | None = None,
        result: Any = None,
    ) -> TaskRow:
        """A worker reports how its attempt of a ``RUNNING`` task ended: ``DONE``, ``FAILED``,
        ``CHECKPOINT``, ``WAITING`` (a barrier) or ``QUEUED`` (given back after a step because its
        job was paused). A task no longer ``RUNNING`` (its job was cancelled) raises
        :class:`~flowd.errors.JobStateError`: the late result is to be dropped."""
        return self.transition_task(
            task_id,
            to,
            who,
            why or str(to).lower(),
            expect=TaskState.RUNNING,
            position=position,
            route=route,
            error=error,
            records=records,
            runtime_errors=runtime_errors,
            result=result,
        )

    def schedule_retry(
        self,
        task_id: int,
        not_before: float,
        error: str,
        who: str = "scheduler",
        *,
        position: int | None = None,
    ) -> TaskRow:
        """A ``RUNNING`` task failed transiently: ``RETRY_WAIT`` until ``not_before`` (see
        :class:`~flowd.jobs.backoff.RetryPolicy`), when :meth:`claim_next_task` may take it
        again — no timer needs to survive a restart for that."""
        return self.transition_task(
            task_id,
            TaskState.RETRY_WAIT,
            who,
            f"transient failure: {error}",
            expect=TaskState.RUNNING,
            not_before=not_before,
            error=error,
            position=position,
        )

    def claim_next_task(self, worker: str, now: float | None = None) -> Claim | None:
        """Atomically take the next task to run, or ``None`` if none is due.

        The next task is a ``QUEUED`` or due ``RETRY_WAIT`` one (``not_before <= now``) of a
        ``QUEUED``/``RUNNING`` job (never a paused or ended one): highest job priority first, then
        the oldest job, then task order. It becomes ``RUNNING`` with a new attempt for ``worker``,
        and its job ``RUNNING`` if it was ``QUEUED``. Safe against other threads and processes
        claiming at the same time: each task is claimed once.
        """
        now = self._clock() if now is None else now
        with self._write() as conn:
            row = conn.execute(CLAIM_SQL, (now,)).fetchone()
            if row is None:
                return None
            task_id = row[0]
            self._move_task(
                conn,
                task_id,
                TaskState.RUNNING,
                worker,
                "claimed",
                now,
                _TaskUpdate(),
                settle=False,
            )
            task = self._task(conn, task_id)
            job_state = conn.execute(
                "SELECT state FROM jobs WHERE job_id = ?", (task.job_id,)
            ).fetchone()[0]
            if job_state == JobState.QUEUED:
                self._move_job(
                    conn, task.job_id, JobState.RUNNING, worker, "first task started", now=now
                )
            attempt_id = conn.execute(
                "SELECT attempt_id FROM attempts WHERE task_id = ? AND ended_at IS NULL",
                (task_id,),
            ).fetchone()[0]
            return Claim(task, attempt_id)

    def recover_after_crash(self, who: str = "startup") -> list[TaskRow]:
        """Give back every task left ``RUNNING`` by a process that died: ``RUNNING → QUEUED``
        through the ordinary transition, its attempt closed as ``LOST``, an event "worker lost".

        A lost attempt does not count against ``max_attempts``: the daemon died, not the task
        (``kill -9`` in the middle of a batch must not fail files). The task resumes at its
        first unfinished step. Call it at start-up, while no other process runs tasks on this
        store (the daemon holds its state directory alone).
        """
        now = self._clock()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT task_id, attempts FROM tasks INDEXED BY tasks_running "
                "WHERE state = 'RUNNING' ORDER BY task_id"
            ).fetchall()
            for task_id, attempts in rows:
                self._move_task(
                    conn,
                    task_id,
                    TaskState.QUEUED,
                    who,
                    "worker lost",
                    now,
                    _TaskUpdate(attempts=max(0, attempts - 1)),
                    expect=TaskState.RUNNING,
                    outcome=AttemptOutcome.LOST,
                )
            recovered = [self._task(conn, task_id) for task_id, _ in rows]
        if recovered:
            log.info("tasks_recovered", count=len(recovered), who=who)
        return recovered

    def _move_task(
        self,
        conn: sqlite3.Connection,
        task_id: int,
        to: TaskState,
        who: str,
        why: str,
        now: float,
        update: _TaskUpdate,
        *,
        expect: TaskState | None = None,
        outcome: AttemptOutcome | None = None,
        settle: bool = True,
    ) -> None:
        """THE place a task's state changes: table check, conditional UPDATE, attempt bookkeeping,
        event row, and the job's roll-up."""
        row = conn.execute(
            "SELECT job_id, state, position FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            raise TaskNotFoundError(task_id)
        job_id, current = row["job_id"], TaskState(row["state"])
        if expect is not None and current != expect:
            raise JobStateError(
                job_id,
                current,
                to,
                f"it is {current} now, no longer {expect} (changed meanwhile)",
                task_id=task_id,
            )
        check_transition("task", current, to, job_id=job_id, task_id=task_id)
        sets = ["state = ?", "updated_at = ?"]
        params: list[Any] = [str(to), now]
        columns = {
            "position": update.position,
            "route": update.route,
            "attempts": update.attempts,
            "not_before": update.not_before,
            "error": update.error,
            "records": update.records,
            "runtime_errors": update.runtime_errors,
            "result": json_in(update.result),
        }
        for column, value in columns.items():
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if to is TaskState.RUNNING:
            sets.append("attempts = attempts + 1")
        if to is TaskState.DONE and update.error is None:
            sets.append("error = NULL")
        cur = conn.execute(
            f"UPDATE tasks SET {', '.join(sets)} WHERE task_id = ? AND state = ?",
            (*params, task_id, str(current)),
        )
        if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; guards a future refactor
            raise JobStateError(job_id, current, to, "its state changed meanwhile", task_id=task_id)
        if current is TaskState.RUNNING:
            conn.execute(
                "UPDATE attempts SET ended_at = ?, outcome = ?, error = ? "
                "WHERE task_id = ? AND ended_at IS NULL",
                (now, str(outcome or _OUTCOME_OF[to]), update.error, task_id),
            )
        if to is TaskState.RUNNING:
            position = row["position"] if update.position is None else update.position
            conn.execute(
                "INSERT INTO attempts (task_id, worker, position, started_at) VALUES (?, ?, ?, ?)",
                (task_id, who, position, now),
            )
        self._event(conn, job_id, task_id, now, who, current, to, why)
        if settle and (to in TASK_ENDED or to in (TaskState.CHECKPOINT, TaskState.WAITING)):
            self._settle(conn, job_id, who, now)

    # -- counts and history --------------------------------------------------------------------
    def job_counts(self, job_id: str) -> JobCounts:
        """Tasks by state and their records, for ``curProgress`` and ``run_summary``."""
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                raise JobNotFoundError(job_id)
            return self._counts(conn, job_id)

    def _counts(self, conn: sqlite3.Connection, job_id: str) -> JobCounts:
        by_state: dict[TaskState, int] = {}
        records = errors = 0
        for state, n, recs, errs in conn.execute(
            "SELECT state, count(*), sum(records), sum(runtime_errors) FROM tasks "
            "WHERE job_id = ? GROUP BY state",
            (job_id,),
        ):
            by_state[TaskState(state)] = n
            records += recs
            errors += errs
        return JobCounts(by_state, records, errors)

    def events(self, job_id: str, task_id: int | None = None) -> list[EventRow]:
        """A job's state changes (its own and its tasks'; or one task's), oldest first."""
        with self._read() as conn:
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

    # -- pipelines -----------------------------------------------------------------------------
    def create_pipeline(self, name: str, pipeline_id: str | None = None) -> PipelineRow:
        """A new pipeline (``pipeline_id`` a uuid4 unless given; a taken one is a ``ValueError``)."""
        if not name or not isinstance(name, str):
            raise ValueError("a pipeline needs a name")
        pipeline_id = pipeline_id or str(uuid.uuid4())
        now = self._clock()
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO pipelines (pipeline_id, name, created_at) VALUES (?, ?, ?)",
                    (pipeline_id, name, now),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"pipeline {pipeline_id!r} exists already") from exc
        return PipelineRow(pipeline_id, name, now)

    def list_pipelines(self) -> list[PipelineRow]:
        """Every pipeline, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT pipeline_id, name, created_at FROM pipelines "
                "ORDER BY created_at, pipeline_id"
            )
            return [PipelineRow(*r) for r in rows]

    def set_pipelines(self, job_id: str, pipeline_ids: Sequence[str]) -> JobRow:
        """Replace a job's pipelines (an empty list clears them); every id must exist."""
        with self._write() as conn:
            row = conn.execute("SELECT created_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            conn.execute("DELETE FROM job_pipelines WHERE job_id = ?", (job_id,))
            self._link_pipelines(conn, job_id, tuple(dict.fromkeys(pipeline_ids)), row[0])
            return self._job(conn, job_id)

    def _link_pipelines(
        self, conn: sqlite3.Connection, job_id: str, pipeline_ids: Sequence[str], created_at: float
    ) -> None:
        for position, pipeline_id in enumerate(pipeline_ids):
            known = conn.execute(
                "SELECT 1 FROM pipelines WHERE pipeline_id = ?", (pipeline_id,)
            ).fetchone()
            if known is None:
                raise PipelineNotFoundError(pipeline_id)
            conn.execute(
                "INSERT INTO job_pipelines (job_id, pipeline_id, position, created_at) "
                "VALUES (?, ?, ?, ?)",
                (job_id, pipeline_id, position, created_at),
            )
