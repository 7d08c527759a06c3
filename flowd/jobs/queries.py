"""What the job store hands out and takes in — frozen rows — and the SQL that reads them.

Rows are plain frozen values, safe to pass between threads and to the API layer; they are
snapshots, never live views of the database. Times are Unix seconds (``float``) from the store's
clock. The ``read_*`` functions read one row (or a job's labels, or its task counts) inside a
transaction the caller holds. The SQL of a page of jobs is in :mod:`flowd.jobs.listing`, that of a
claim in :mod:`flowd.jobs.scheduling`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from flowd.engine.pipeline import Task
from flowd.errors import JobNotFoundError, TaskNotFoundError
from flowd.jobs.states import TASK_ENDED, AttemptOutcome, JobState, TaskState


class JobType(StrEnum):
    FLOW = "flow"  # a binary run over an input folder
    COMPILE = "compile"  # a project compiled into a binary


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class NewTask:
    """A task to add to a job: one input file in one flow (``flow`` ``None`` outside Flows
    binaries). With ``error`` the file failed before it could run (rejected by the input scan):
    the task is created ``FAILED`` with that message."""

    file: str
    flow: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, task: Task) -> NewTask:
        return cls(task.file, task.flow)


@dataclass(frozen=True)
class NewJob:
    """A job to create. ``job_id`` ``None`` gets a uuid4. ``settings`` holds the run settings as
    submitted (JSON-able); tags, pipelines and priority have their own fields because they are
    searched and scheduled on."""

    job_id: str | None = None
    type: JobType = JobType.FLOW
    priority: int = 0
    binary_path: str | None = None
    input_dir: str | None = None
    output_folder: str | None = None
    run_id: str | None = None
    settings: Mapping[str, Any] = field(default_factory=_empty)
    tags: Sequence[str] = ()
    pipeline_ids: Sequence[str] = ()
    tasks: Sequence[NewTask] = ()


@dataclass(frozen=True)
class JobRow:
    job_id: str
    type: JobType
    state: JobState
    priority: int
    binary_path: str | None
    input_dir: str | None
    output_folder: str | None
    run_id: str | None
    settings: Mapping[str, Any]  # read-only view of the stored JSON (treat nested values so too)
    tags: tuple[str, ...]
    pipeline_ids: tuple[str, ...]
    error: str | None  # why the job could not run (or compile errors), if so
    result: Any  # JSON: a compile job's binary path or problems; None until set
    created_at: float
    started_at: float | None  # when its first task was claimed
    finished_at: float | None  # when it last ended; None while not ended
    updated_at: float
    ends: int = 0  # how many times it has ended (a retry can end it again)
    finalized: int = 0  # the end whose results and notifications have been written

    @property
    def round(self) -> int:
        """Which end of the job this is: 0 for the first, one more per retry that ended it."""
        return max(0, self.ends - 1)


@dataclass(frozen=True)
class TaskRow:
    task_id: int
    job_id: str
    ordinal: int  # order within the job: tasks of one job run in this order
    file: str
    flow: str | None
    state: TaskState
    position: int  # index of the next step to run (the resume point)
    route: str | None  # the flow a Metaflow task was routed to
    attempts: int  # attempts that count against max_attempts
    not_before: float  # not claimed before this time (retry backoff)
    error: str | None  # the last failure; cleared when the task is DONE
    records: int
    runtime_errors: int
    result: Any  # JSON summary from the scheduler
    updated_at: float

    @property
    def task(self) -> Task:
        """The engine's task this row stands for."""
        return Task(self.file, self.flow)

    @property
    def key(self) -> str:
        return self.task.key


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: int
    task_id: int
    worker: str
    position: int  # the step it started at
    started_at: float
    ended_at: float | None
    outcome: AttemptOutcome | None  # None while it runs
    error: str | None


@dataclass(frozen=True)
class EventRow:
    """One state change. ``task_id`` ``None``: the job's own state; ``from_state`` ``None``: the
    job or task was created in ``to_state``."""

    event_id: int
    job_id: str
    task_id: int | None
    at: float
    who: str
    from_state: str | None
    to_state: str
    why: str


@dataclass(frozen=True)
class PipelineRow:
    pipeline_id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class JobCursor:
    """Where a page of ``list_jobs`` ended: pass it back as ``after`` for the next page, which
    costs the same however deep it is (an ``offset`` costs one index step per skipped row)."""

    created_at: float
    job_id: str


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[JobRow, ...]
    next_cursor: JobCursor | None  # None: this is the last page

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(frozen=True)
class JobCounts:
    """A job's tasks by state, and their records (for ``curProgress`` and ``run_summary``)."""

    by_state: Mapping[TaskState, int]
    records: int
    runtime_errors: int

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    def __getitem__(self, state: TaskState) -> int:
        return self.by_state.get(state, 0)

    @property
    def ended(self) -> int:
        return sum(self[s] for s in TASK_ENDED)

    @property
    def progress(self) -> float:
        """Share of tasks that ended, 0–1 (``curProgress``); 0 for a job with no tasks yet."""
        return self.ended / self.total if self.total else 0.0


@dataclass(frozen=True)
class Claim:
    """A task a worker now holds: it is ``RUNNING`` and ``attempt_id`` is its open attempt.
    ``first``: no earlier attempt of the task exists, so step outputs already in its output folder
    are a previous job's, not resume points of this one."""

    task: TaskRow
    attempt_id: int
    first: bool = False


@dataclass(frozen=True)
class Cancelled:
    """A cancelled job, and the tasks that were running (their workers are to be stopped)."""

    job: JobRow
    stopped: tuple[int, ...]


# -- values in and out of SQLite ------------------------------------------------------------


def file_in(name: str) -> str | bytes:
    """A task's file name as stored: TEXT, or the raw bytes (a BLOB) when the name is not UTF-8
    (an undecodable name arrives with surrogate escapes, which SQLite cannot store as TEXT; the
    real bytes are kept so the file is found again)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def file_out(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def json_in(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def json_out(text: str | None) -> Any:
    return None if text is None else json.loads(text)


JOB_COLUMNS = (
    "j.job_id, j.type, j.state, j.priority, j.binary_path, j.input_dir, j.output_folder, "
    "j.run_id, j.settings, j.error, j.result, j.created_at, j.started_at, j.finished_at, "
    "j.updated_at, j.ends, j.finalized"
)


def job_row(row: Mapping[str, Any], tags: Sequence[str], pipeline_ids: Sequence[str]) -> JobRow:
    return JobRow(
        job_id=row["job_id"],
        type=JobType(row["type"]),
        state=JobState(row["state"]),
        priority=row["priority"],
        binary_path=row["binary_path"],
        input_dir=row["input_dir"],
        output_folder=row["output_folder"],
        run_id=row["run_id"],
        settings=MappingProxyType(json.loads(row["settings"])),
        tags=tuple(tags),
        pipeline_ids=tuple(pipeline_ids),
        error=row["error"],
        result=json_out(row["result"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        ends=row["ends"],
        finalized=row["finalized"],
    )


def task_row(row: Mapping[str, Any]) -> TaskRow:
    return TaskRow(
        task_id=row["task_id"],
        job_id=row["job_id"],
        ordinal=row["ordinal"],
        file=file_out(row["file"]),
        flow=row["flow"],
        state=TaskState(row["state"]),
        position=row["position"],
        route=row["route"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        error=row["error"],
        records=row["records"],
        runtime_errors=row["runtime_errors"],
        result=json_out(row["result"]),
        updated_at=row["updated_at"],
    )


def attempt_row(row: Mapping[str, Any]) -> AttemptRow:
    outcome = row["outcome"]
    return AttemptRow(
        attempt_id=row["attempt_id"],
        task_id=row["task_id"],
        worker=row["worker"],
        position=row["position"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        outcome=None if outcome is None else AttemptOutcome(outcome),
        error=row["error"],
    )


def event_row(row: Mapping[str, Any]) -> EventRow:
    return EventRow(
        event_id=row["event_id"],
        job_id=row["job_id"],
        task_id=row["task_id"],
        at=row["at"],
        who=row["who"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        why=row["why"],
    )


# -- reading inside a transaction ------------------------------------------------------------


def read_job(conn: sqlite3.Connection, job_id: str) -> JobRow:
    """The job with its tags and pipelines; :class:`~flowd.errors.JobNotFoundError` if none."""
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs AS j WHERE job_id = ?", (job_id,))
    found = row.fetchone()
    if found is None:
        raise JobNotFoundError(job_id)
    tags, pipelines = read_labels(conn, [job_id])
    return job_row(found, tags.get(job_id, ()), pipelines.get(job_id, ()))


def read_labels(
    conn: sqlite3.Connection, job_ids: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The tags and the pipeline ids of the given jobs, by job id, each in its stored order."""
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


def read_task(conn: sqlite3.Connection, task_id: int) -> TaskRow:
    """The task; :class:`~flowd.errors.TaskNotFoundError` if there is none."""
    row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    if row is None:
        raise TaskNotFoundError(task_id)
    return task_row(row)


def read_counts(conn: sqlite3.Connection, job_id: str) -> JobCounts:
    """A job's tasks by state and their records, counted from ``tasks`` (never stored)."""
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
