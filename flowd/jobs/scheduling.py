"""What the scheduler and its workers do to tasks and jobs: claim the next task, report how an
attempt ended, schedule a retry, give back the tasks of a crashed process, and move a job or task
directly (SPEC §6).

Each is one write transaction that decides a move and makes it through
:func:`~flowd.jobs.transitions.move_task` / :func:`~flowd.jobs.transitions.move_job`, which also
settle the job (the roll-up) when its tasks have. A crash is a normal transition: recovery is the
ordinary ``RUNNING → QUEUED`` move, and a retry waits in the store (``not_before``), not in a timer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from flowd.errors import JobStateError
from flowd.jobs.database import Database
from flowd.jobs.queries import (
    JOB_COLUMNS,
    Claim,
    JobRow,
    TaskRow,
    job_row,
    read_job,
    read_labels,
    read_task,
    task_row,
)
from flowd.jobs.states import AttemptOutcome, JobState, TaskState
from flowd.jobs.transitions import TaskMove, TaskUpdate, move_job, move_task, move_tasks, roll_up

log = structlog.get_logger("flowd.jobs")

CLAIM_SQL = """
SELECT (
    SELECT t.task_id FROM tasks AS t INDEXED BY tasks_to_claim
    WHERE t.job_id = j.job_id AND t.state IN ('QUEUED', 'RETRY_WAIT') AND t.not_before <= ?1
    ORDER BY t.ordinal
    LIMIT 1
) AS task_id
FROM jobs AS j INDEXED BY jobs_to_run
WHERE j.state IN ('QUEUED', 'RUNNING') AND task_id IS NOT NULL
ORDER BY j.priority DESC, j.created_at, j.job_id
LIMIT 1
"""
"""The next task to run: highest job priority, then oldest job, then task order.

Active jobs are walked in ``jobs_to_run`` order (only ``QUEUED``/``RUNNING`` jobs are in that
partial index); for each, the first due task in ``tasks_to_claim`` order (only claimable tasks
are in it). The first job with a due task answers — no sort, and no scan of paused or ended jobs
or of finished tasks, however large the store grows. (A join of the two instead makes SQLite sort
every claimable task of the first job on each claim.)"""


def _first_attempt(conn: sqlite3.Connection, task_id: int, attempt_id: int) -> bool:
    """Whether ``attempt_id`` is the task's first attempt (one ``attempts_by_task`` probe)."""
    earlier = conn.execute(
        "SELECT 1 FROM attempts WHERE task_id = ? AND attempt_id < ? LIMIT 1", (task_id, attempt_id)
    ).fetchone()
    return earlier is None


@dataclass(frozen=True)
class Report:
    """One task move the scheduler reports in a batch (:meth:`SchedulingMixin.report`):
    ``task_id`` moves to ``to`` if it is still ``expect``, setting ``update``'s columns."""

    task_id: int
    to: TaskState
    why: str
    expect: TaskState | None = TaskState.RUNNING
    update: TaskUpdate = field(default_factory=TaskUpdate)


NEXT_JOB_SQL = """
SELECT j.job_id, j.state FROM jobs AS j INDEXED BY jobs_to_run
WHERE j.state IN ('QUEUED', 'RUNNING') AND EXISTS (
    SELECT 1 FROM tasks AS t INDEXED BY tasks_to_claim
    WHERE t.job_id = j.job_id AND t.state IN ('QUEUED', 'RETRY_WAIT') AND t.not_before <= ?1
)
ORDER BY j.priority DESC, j.created_at, j.job_id
LIMIT 1
"""
"""The job whose tasks run next (:data:`CLAIM_SQL`'s order), for claiming many at once."""


class SchedulingMixin:
    """:class:`~flowd.jobs.store.JobStore`'s moves for the scheduler and its workers."""

    _db: Database
    _clock: Callable[[], float]

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
        with self._db.write() as conn:
            now = self._clock()
            move_job(conn, job_id, to, who, why, now, expect=expect, error=error, result=result)
            return read_job(conn, job_id)

    def settle_job(self, job_id: str, who: str = "scheduler") -> JobRow:
        """Apply the roll-up rule (:func:`~flowd.jobs.states.rollup`) now. Task transitions do
        this themselves; call it after adding tasks that were all created settled."""
        with self._db.write() as conn:
            roll_up(conn, job_id, who, self._clock())
            return read_job(conn, job_id)

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
        update = TaskUpdate(
            position, route, None, not_before, error, records, runtime_errors, result
        )
        with self._db.write() as conn:
            move_task(conn, task_id, to, who, why, self._clock(), update, expect=expect)
            return read_task(conn, task_id)

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
        with self._db.write() as conn:
            row = conn.execute(CLAIM_SQL, (now,)).fetchone()
            if row is None:
                return None
            task_id = row[0]
            move_task(
                conn,
                task_id,
                TaskState.RUNNING,
                worker,
                "claimed",
                now,
                TaskUpdate(),
                settle=False,
            )
            task = read_task(conn, task_id)
            job_state = conn.execute(
                "SELECT state FROM jobs WHERE job_id = ?", (task.job_id,)
            ).fetchone()[0]
            if job_state == JobState.QUEUED:
                move_job(conn, task.job_id, JobState.RUNNING, worker, "first task started", now)
            attempt_id = conn.execute(
                "SELECT attempt_id FROM attempts WHERE task_id = ? AND ended_at IS NULL",
                (task_id,),
            ).fetchone()[0]
            return Claim(task, attempt_id, _first_attempt(conn, task_id, attempt_id))

    def claim_tasks(self, worker: str, limit: int, now: float | None = None) -> list[Claim]:
        """Up to ``limit`` claims (:meth:`claim_next_task`'s order and rules) in one transaction:
        what a scheduler with room for several tasks takes at once. Active jobs are walked in
        scheduling order and each gives its due tasks in task order, so the batch is exactly what
        ``limit`` single claims would take — in a few statements instead of ten per task."""
        now = self._clock() if now is None else now
        if limit <= 0:
            return []
        with self._db.write() as conn:
            ids: list[int] = []
            while len(ids) < limit:
                # The next job with a due task (the walk over active jobs happens in SQL); its
                # due tasks in order, claimed at once, so the next round skips what it took.
                job = conn.execute(NEXT_JOB_SQL, (now,)).fetchone()
                if job is None:
                    break
                job_id, job_state = job
                rows = conn.execute(
                    "SELECT task_id FROM tasks INDEXED BY tasks_to_claim WHERE job_id = ? "
                    "AND state IN ('QUEUED', 'RETRY_WAIT') AND not_before <= ? "
                    "ORDER BY ordinal LIMIT ?",
                    (job_id, now, limit - len(ids)),
                ).fetchall()
                taken = [r[0] for r in rows]
                refused = move_tasks(
                    conn,
                    [TaskMove(task_id, TaskState.RUNNING, "claimed") for task_id in taken],
                    worker,
                    now,
                    settle=False,
                )
                if refused:  # cannot happen: the rows were claimable inside this transaction
                    raise refused[0][1]
                if job_state == JobState.QUEUED:
                    move_job(conn, job_id, JobState.RUNNING, worker, "first task started", now)
                ids += taken
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            tasks = {
                r["task_id"]: task_row(r)
                for r in conn.execute(f"SELECT * FROM tasks WHERE task_id IN ({marks})", ids)
            }
            open_attempt: dict[int, int] = {}
            first_attempt: dict[int, int] = {}
            for task_id, attempt_id, ended in conn.execute(
                f"SELECT task_id, attempt_id, ended_at FROM attempts WHERE task_id IN ({marks})",
                ids,
            ):
                if ended is None:
                    open_attempt[task_id] = attempt_id
                first_attempt[task_id] = min(first_attempt.get(task_id, attempt_id), attempt_id)
            return [
                Claim(tasks[i], open_attempt[i], first_attempt[i] == open_attempt[i]) for i in ids
            ]

    def report(self, reports: Sequence[Report], who: str) -> list[tuple[Report, JobStateError]]:
        """Apply many task moves in one transaction (each rolls its job up). A move whose task
        is no longer in ``expect`` — its job was cancelled meanwhile — is skipped, not applied,
        and returned with its error: a late result is dropped, never written over a decision."""
        if not reports:
            return []
        moves = [TaskMove(r.task_id, r.to, r.why, r.update, r.expect) for r in reports]
        by_move = {id(m): r for m, r in zip(moves, reports, strict=True)}
        with self._db.write() as conn:
            refused = move_tasks(conn, moves, who, self._clock())
        return [(by_move[id(m)], exc) for m, exc in refused]

    def jobs_to_finalize(self, limit: int = 100) -> list[JobRow]:
        """Ended jobs whose latest end has not been followed up (results written, notifications
        stored): ``finalized < ends``. After a crash these are exactly the ends to redo."""
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs AS j INDEXED BY jobs_to_finalize "
                "WHERE finalized < ends ORDER BY updated_at, job_id LIMIT ?",
                (limit,),
            ).fetchall()
            tags, pipelines = read_labels(conn, [r["job_id"] for r in rows])
            return [
                job_row(r, tags.get(r["job_id"], ()), pipelines.get(r["job_id"], ())) for r in rows
            ]

    def mark_finalized(self, job_id: str, ends: int) -> bool:
        """Record that end number ``ends`` of the job has been followed up; ``False`` if the job
        has ended again meanwhile (or is gone) and needs following up once more."""
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET finalized = ? WHERE job_id = ? AND ends = ? AND finalized < ?",
                (ends, job_id, ends, ends),
            )
            return cur.rowcount == 1

    def barrier(self, job_id: str) -> str:
        """Where the job stands towards a barrier: ``"none"`` (no task ``WAITING``),
        ``"blocked"`` (some wait, but others are still active or stopped at a checkpoint) or
        ``"ready"`` (every task settled, some waiting: the moment the scheduler opens it). At most
        three indexed look-ups (``tasks_by_job_state``), however many tasks the job has."""
        with self._db.read() as conn:

            def some(states: str) -> bool:
                sql = f"SELECT 1 FROM tasks WHERE job_id = ? AND state IN ({states}) LIMIT 1"
                return conn.execute(sql, (job_id,)).fetchone() is not None

            if not some("'WAITING'"):
                return "none"
            if some("'QUEUED', 'RUNNING', 'RETRY_WAIT'") or some("'CHECKPOINT'"):
                return "blocked"
            return "ready"

    def active_job_ids(self) -> list[str]:
        """Jobs whose tasks may still run (``QUEUED``/``RUNNING``), in scheduling order."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT job_id FROM jobs INDEXED BY jobs_to_run WHERE state IN ('QUEUED', 'RUNNING') "
                "ORDER BY priority DESC, created_at, job_id"
            ).fetchall()
            return [r[0] for r in rows]

    def recover_after_crash(self, who: str = "startup") -> list[TaskRow]:
        """Give back every task left ``RUNNING`` by a process that died: ``RUNNING → QUEUED``
        through the ordinary transition, its attempt closed as ``LOST``, an event "worker lost".

        A lost attempt does not count against ``max_attempts``: the daemon died, not the task
        (``kill -9`` in the middle of a batch must not fail files). The task resumes at its
        first unfinished step. Call it at start-up, while no other process runs tasks on this
        store (the daemon holds its state directory alone).
        """
        now = self._clock()
        with self._db.write() as conn:
            rows = conn.execute(
                "SELECT task_id, attempts FROM tasks INDEXED BY tasks_running "
                "WHERE state = 'RUNNING' ORDER BY task_id"
            ).fetchall()
            for task_id, attempts in rows:
                move_task(
                    conn,
                    task_id,
                    TaskState.QUEUED,
                    who,
                    "worker lost",
                    now,
                    TaskUpdate(attempts=max(0, attempts - 1)),
                    expect=TaskState.RUNNING,
                    outcome=AttemptOutcome.LOST,
                )
            recovered = [read_task(conn, task_id) for task_id, _ in rows]
        if recovered:
            log.info("tasks_recovered", count=len(recovered), who=who)
        return recovered
