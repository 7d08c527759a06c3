"""The job system (SPEC §6): durable jobs and tasks, their states, and the retry policy.

- :mod:`flowd.jobs.states` — job and task states, the transition tables, the roll-up rule;
- :mod:`flowd.jobs.store` — :class:`JobStore`, the SQLite job store (schema documented there),
  put together from :mod:`~flowd.jobs.transitions` (the one place states change),
  :mod:`~flowd.jobs.commands`, :mod:`~flowd.jobs.scheduling`, :mod:`~flowd.jobs.listing`,
  :mod:`~flowd.jobs.pipelines` and :mod:`~flowd.jobs.database`;
- :mod:`flowd.jobs.queries` — the frozen rows it returns and takes;
- :mod:`flowd.jobs.schema` — connection set-up and schema migrations;
- :mod:`flowd.jobs.backoff` — when a failed task runs again.

Layers: ``jobs`` builds on ``engine`` and ``flows``; the daemon, the API and the CLI build on it.
"""

from flowd.jobs.backoff import RetryPolicy, backoff_s, is_transient
from flowd.jobs.queries import (
    AttemptRow,
    Cancelled,
    Claim,
    EventRow,
    JobCounts,
    JobCursor,
    JobPage,
    JobRow,
    JobType,
    NewJob,
    NewTask,
    PipelineRow,
    TaskRow,
)
from flowd.jobs.states import AttemptOutcome, JobState, TaskState, check_transition, rollup
from flowd.jobs.store import JobStore

__all__ = [
    "AttemptOutcome",
    "AttemptRow",
    "Cancelled",
    "Claim",
    "EventRow",
    "JobCounts",
    "JobCursor",
    "JobPage",
    "JobRow",
    "JobState",
    "JobStore",
    "JobType",
    "NewJob",
    "NewTask",
    "PipelineRow",
    "RetryPolicy",
    "TaskRow",
    "TaskState",
    "backoff_s",
    "check_transition",
    "is_transient",
    "rollup",
]
