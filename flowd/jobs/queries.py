"""What the job store hands out and takes in — frozen rows — and the SQL that reads them.

Rows are plain frozen values, safe to pass between threads and to the API layer; they are
snapshots, never live views of the database. Times are Unix seconds (``float``) from the store's
clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from flowd.engine.pipeline import Task
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
    """A task a worker now holds: it is ``RUNNING`` and ``attempt_id`` is its open attempt."""

    task: TaskRow
    attempt_id: int


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
    "j.updated_at"
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


# -- SQL --------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class JobFilter:
    status: JobState | None = None
    tag: str | None = None
    pipeline_id: str | None = None
    binary_path: str | None = None
    since: float | None = None  # created at or after (Unix seconds)


def list_jobs_sql(
    f: JobFilter, limit: int, offset: int, after: JobCursor | None
) -> tuple[str, list[Any]]:
    """The SELECT of one page of jobs, newest first (``created_at DESC, job_id DESC``).

    The query is driven by one index that already holds the filter's rows in that order — the
    tag's (``job_tags_by_tag``), the pipeline's, the binary's, the state's, or plain creation
    time — so a page reads about ``offset + limit`` index entries whatever the store's size;
    the other filters are checked on those rows. Fetches ``limit + 1`` rows to tell whether a next
    page exists.
    """
    params: list[Any] = []
    where: list[str] = []
    if f.tag is not None:
        source = "job_tags AS d JOIN jobs AS j ON j.job_id = d.job_id"
        where.append("d.tag = ?")
        params.append(f.tag)
        if f.pipeline_id is not None:
            where.append(
                "EXISTS (SELECT 1 FROM job_pipelines AS p "
                "WHERE p.job_id = j.job_id AND p.pipeline_id = ?)"
            )
            params.append(f.pipeline_id)
    elif f.pipeline_id is not None:
        source = "job_pipelines AS d JOIN jobs AS j ON j.job_id = d.job_id"
        where.append("d.pipeline_id = ?")
        params.append(f.pipeline_id)
    else:
        source = "jobs AS j"
    d = "d" if source != "jobs AS j" else "j"
    if f.binary_path is not None:
        where.append("j.binary_path = ?")
        params.append(f.binary_path)
    if f.status is not None:
        where.append("j.state = ?")
        params.append(str(f.status))
    if f.since is not None:
        where.append(f"{d}.created_at >= ?")
        params.append(f.since)
    if after is not None:
        where.append(f"({d}.created_at, {d}.job_id) < (?, ?)")
        params += [after.created_at, after.job_id]
    sql = f"SELECT {JOB_COLUMNS} FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {d}.created_at DESC, {d}.job_id DESC LIMIT ? OFFSET ?"
    params += [limit + 1, offset]
    return sql, params
