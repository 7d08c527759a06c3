"""THE place job and task states change (SPEC §6).

A job or task row is created in its first state, with a creation event, by
:meth:`~flowd.jobs.store.JobStore.create_job` and :meth:`~flowd.jobs.store.JobStore.add_tasks`.
After that, its ``state`` column is written here and nowhere else: :func:`move_job` and
:func:`move_task` check :mod:`flowd.jobs.states`' table, apply a conditional
``UPDATE … WHERE id = ? AND state = ?`` and write the ``events`` row, all inside the caller's
``BEGIN IMMEDIATE`` transaction (:meth:`flowd.jobs.database.Database.write`): the history can never
disagree with the state. A task move also keeps the task's attempts (leaving ``RUNNING`` closes
the open one, entering it opens one) and applies the job roll-up (:func:`roll_up`).

These are plain functions over an open connection; they neither open a transaction nor read the
clock. The store's commands (:mod:`flowd.jobs.commands`) and the scheduler's moves
(:mod:`flowd.jobs.scheduling`) decide *which* move to make and call them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowd.errors import JobNotFoundError, JobStateError, TaskNotFoundError
from flowd.jobs.queries import json_in, read_counts
from flowd.jobs.states import (
    JOB_ENDED,
    TASK_ACTIVE,
    TASK_ENDED,
    AttemptOutcome,
    JobState,
    TaskState,
    check_transition,
    rollup,
)

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
class TaskUpdate:
    """Columns a task transition sets besides its state; ``None`` leaves a column as it is."""

    position: int | None = None
    route: str | None = None
    attempts: int | None = None
    not_before: float | None = None
    error: str | None = None
    records: int | None = None
    runtime_errors: int | None = None
    result: Any = None


def record_event(
    conn: sqlite3.Connection,
    job_id: str,
    task_id: int | None,
    now: float,
    who: str,
    from_state: str | None,
    to_state: str,
    why: str,
) -> None:
    """Write one ``events`` row: a job's change (``task_id`` ``None``) or a task's, or a creation
    (``from_state`` ``None``)."""
    conn.execute(
        "INSERT INTO events (job_id, task_id, at, who, from_state, to_state, why) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, task_id, now, who, from_state, to_state, why),
    )


def move_job(
    conn: sqlite3.Connection,
    job_id: str,
    to: JobState,
    who: str,
    why: str,
    now: float,
    *,
    expect: JobState | None = None,
    error: str | None = None,
    result: Any = None,
) -> JobState:
    """THE place a job's state changes: table check, conditional UPDATE, event row.

    Returns the state the job left. With ``expect``, the job must still be in that state (else
    :class:`~flowd.errors.JobStateError`, as for a move the table does not allow).
    """
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
        sets.append("ends = ends + 1")
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
    record_event(conn, job_id, None, now, who, current, to, why)
    return current


def move_task(
    conn: sqlite3.Connection,
    task_id: int,
    to: TaskState,
    who: str,
    why: str,
    now: float,
    update: TaskUpdate,
    *,
    expect: TaskState | None = None,
    outcome: AttemptOutcome | None = None,
    settle: bool = True,
) -> None:
    """THE place a task's state changes: table check, conditional UPDATE, attempt bookkeeping,
    event row, and the job's roll-up — :func:`move_tasks` for one task, raising instead of
    skipping.

    Leaving ``RUNNING`` closes the open attempt (as ``outcome``, or the one ``to`` implies);
    entering it opens one for worker ``who``. With ``settle`` (the default), a task that ends or
    stops lets its job take its rolled-up state; a caller moving many tasks at once passes
    ``False`` and rolls up once itself. Raises :class:`~flowd.errors.TaskNotFoundError`, or
    :class:`~flowd.errors.JobStateError` for a move the table does not allow or a state that is
    no longer ``expect``.
    """
    move = TaskMove(task_id, to, why, update, expect, outcome)
    refused = move_tasks(conn, [move], who, now, settle=settle)
    if refused:
        raise refused[0][1]


def roll_up(conn: sqlite3.Connection, job_id: str, who: str, now: float) -> None:
    """The roll-up: a job whose tasks have all settled takes the state they put it in
    (:func:`~flowd.jobs.states.rollup`), through :func:`move_job`."""
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
    counts = read_counts(conn, job_id)
    target = rollup(counts.by_state)
    if target is None or target == state:
        return
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.by_state.items()) if n)
    move_job(conn, job_id, target, who, f"all tasks settled: {summary}", now)


@dataclass(frozen=True)
class TaskMove:
    """One move of :func:`move_tasks`: ``task_id`` to ``to`` (if still ``expect``), setting
    ``update``'s columns, closing an open attempt as ``outcome`` (default: what ``to`` implies)."""

    task_id: int
    to: TaskState
    why: str
    update: TaskUpdate = TaskUpdate()
    expect: TaskState | None = None
    outcome: AttemptOutcome | None = None


_CHUNK = 500  # ids per IN (…) list: well under SQLite's variable limit


def move_tasks(
    conn: sqlite3.Connection,
    moves: list[TaskMove],
    who: str,
    now: float,
    *,
    settle: bool = True,
) -> list[tuple[TaskMove, JobStateError]]:
    """:func:`move_task` for many tasks at once, with the same checks, attempt bookkeeping,
    event rows and roll-up — in a handful of statements instead of five per task (the scheduler
    reports hundreds of outcomes a second). A move the table does not allow, or whose task is no
    longer ``expect``, is skipped and returned with its error; nothing of it is written. Each task
    may appear once."""
    if not moves:
        return []
    found: dict[int, tuple[str, TaskState, int]] = {}
    ids = [m.task_id for m in moves]
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT task_id, job_id, state, position FROM tasks WHERE task_id IN ({marks})", chunk
        ):
            found[row[0]] = (row[1], TaskState(row[2]), row[3])
    refused: list[tuple[TaskMove, JobStateError]] = []
    applied: list[tuple[TaskMove, str, TaskState, int]] = []
    for m in moves:
        if m.task_id not in found:
            raise TaskNotFoundError(m.task_id)
        job_id, current, position = found[m.task_id]
        try:
            if m.expect is not None and current != m.expect:
                raise JobStateError(
                    job_id,
                    current,
                    m.to,
                    f"it is {current} now, no longer {m.expect} (changed meanwhile)",
                    task_id=m.task_id,
                )
            check_transition("task", current, m.to, job_id=job_id, task_id=m.task_id)
        except JobStateError as exc:
            refused.append((m, exc))
            continue
        applied.append((m, job_id, current, position))
    # Tasks' columns: one executemany per distinct set of columns written.
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for m, _job_id, current, _pos in applied:
        u = m.update
        columns = {
            "position": u.position,
            "route": u.route,
            "attempts": u.attempts,
            "not_before": u.not_before,
            "error": u.error,
            "records": u.records,
            "runtime_errors": u.runtime_errors,
            "result": json_in(u.result),
        }
        sets = ["state = ?", "updated_at = ?"]
        params: list[Any] = [str(m.to), now]
        for column, value in columns.items():
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if m.to is TaskState.RUNNING:
            sets.append("attempts = attempts + 1")
        if m.to is TaskState.DONE and u.error is None:
            sets.append("error = NULL")
        groups.setdefault(tuple(sets), []).append([*params, m.task_id, str(current)])
    for assignments, rows in groups.items():
        conn.executemany(
            f"UPDATE tasks SET {', '.join(assignments)} WHERE task_id = ? AND state = ?", rows
        )
    conn.executemany(
        "UPDATE attempts SET ended_at = ?, outcome = ?, error = ? "
        "WHERE task_id = ? AND ended_at IS NULL",
        [
            (now, str(m.outcome or _OUTCOME_OF[m.to]), m.update.error, m.task_id)
            for m, _j, current, _p in applied
            if current is TaskState.RUNNING
        ],
    )
    conn.executemany(
        "INSERT INTO attempts (task_id, worker, position, started_at) VALUES (?, ?, ?, ?)",
        [
            (m.task_id, who, pos if m.update.position is None else m.update.position, now)
            for m, _j, _c, pos in applied
            if m.to is TaskState.RUNNING
        ],
    )
    conn.executemany(
        "INSERT INTO events (job_id, task_id, at, who, from_state, to_state, why) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (job_id, m.task_id, now, who, str(cur), str(m.to), m.why)
            for m, job_id, cur, _p in applied
        ],
    )
    if settle:
        settling = {
            job_id
            for m, job_id, _c, _p in applied
            if m.to in TASK_ENDED or m.to in (TaskState.CHECKPOINT, TaskState.WAITING)
        }
        for job_id in sorted(settling):
            roll_up(conn, job_id, who, now)
    return refused
