"""What an ended job comes to, in words and numbers: its ``run_summary`` and, when it did not
complete, one paragraph saying why. Used by the job status API and by the notifications."""

from __future__ import annotations

from flowd.jobs.queries import JobCounts, JobRow, JobType
from flowd.jobs.states import JobState, TaskState
from flowd.jobs.store import JobStore

FIRST_ERRORS = 3
"""Failed files named in a failed job's message."""


def run_summary(counts: JobCounts) -> dict[str, int]:
    return {
        "numFiles": counts.total,
        "numRecords": counts.records,
        "numRuntimeErrors": counts.runtime_errors,
        "numFailedFiles": counts[TaskState.FAILED],
        "numCompleteFiles": counts[TaskState.DONE],
        "numStoppedAtCheckpoint": counts[TaskState.CHECKPOINT],
    }


def failure_message(store: JobStore, job: JobRow, counts: JobCounts) -> str:
    """What went wrong, in one paragraph: the job's own error, or its failed files."""
    if job.error:
        return job.error
    if job.type is JobType.COMPILE:
        problems = (job.result or {}).get("problems") if isinstance(job.result, dict) else None
        task = store.tasks(job.job_id)
        return (task[0].error if task else None) or "; ".join(problems or ["compile failed"])
    if job.state is JobState.CANCELLED:
        return "the job was cancelled"
    if job.state is JobState.STOPPED_AT_CHECKPOINT:
        return (
            f"{counts[TaskState.CHECKPOINT]} file(s) stopped at a checkpoint for review; fix their "
            'records and retry with retry_type "checkpoint_failure"'
        )
    failed = store.tasks(job.job_id, TaskState.FAILED)
    errors = [t.error or t.file for t in failed[:FIRST_ERRORS]]
    more = f" (and {len(failed) - FIRST_ERRORS} more)" if len(failed) > FIRST_ERRORS else ""
    return f"{len(failed)} of {counts.total} file(s) failed: " + "; ".join(errors) + more
