"""A flow job's output files when it ends: the same folder a ``flowd run`` leaves (SPEC §5.1).

Each task keeps its file's result (records, or the error) in the job store as it settles; when the
job ends, :func:`write_job_outputs` writes ``results.json``/``results.csv`` from them and rewrites
``batch.ibflowresults`` with the final status, the ``run_summary`` and every file's outcome. It
reads only the store, so it can run again after a crash with the same result (files are replaced
atomically), which is how the daemon makes "a job's end is followed up" survive ``kill -9``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowd.engine.output import (
    FileResult,
    read_batch,
    run_summary,
    write_batch,
    write_run_results,
)
from flowd.engine.run import now_iso
from flowd.errors import BinaryError
from flowd.fsutil import display_name, remove_stale_temporaries
from flowd.jobs.binaries import BinaryCache
from flowd.jobs.queries import JobRow, TaskRow
from flowd.jobs.states import JobState, TaskState
from flowd.jobs.store import JobStore

_UNFINISHED = {
    TaskState.CANCELLED: ("CANCELLED", "cancelled before it finished"),
    TaskState.QUEUED: ("PENDING", "did not run"),
    TaskState.RETRY_WAIT: ("PENDING", "did not run"),
    TaskState.WAITING: ("PENDING", "waited at a barrier of its job"),
    TaskState.RUNNING: ("PENDING", "did not finish"),
}


def task_entry(task: TaskRow) -> dict[str, Any]:
    """A task's file outcome (:data:`~flowd.engine.output.FileEntry`): the one it stored when it
    settled, else one made from its state."""
    stored = task.result
    if (
        isinstance(stored, dict)
        and "status" in stored
        and "file_name" in stored
        and task.state is not TaskState.CANCELLED
    ):
        return stored
    name = display_name(task.file)
    if task.state is TaskState.FAILED:
        result = FileResult(name, "FAILED", error=task.error or f"{name}: failed", flow=task.flow)
    elif task.state is TaskState.DONE:  # stored results lost: report it done with no records
        result = FileResult(name, "COMPLETE", flow=task.flow)
    else:
        status, why = _UNFINISHED.get(task.state, ("PENDING", "did not finish"))
        result = FileResult(name, status, error=f"{name}: {why}", flow=task.flow)
    return result.to_dict()


def job_entries(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    return [task_entry(t) for t in store.tasks(job_id)]


def write_job_outputs(store: JobStore, binaries: BinaryCache, job: JobRow) -> dict[str, int]:
    """Write an ended flow job's result files and final ``batch.ibflowresults``; return its
    ``run_summary``. Nothing is written for a job without an output folder."""
    entries = job_entries(store, job.job_id)
    summary = run_summary(entries)
    if not job.output_folder:
        return summary
    root = Path(job.output_folder)
    flows = _flows_of(binaries, job)
    root.mkdir(parents=True, exist_ok=True)
    # Left by a worker or a daemon killed while writing: only a job that lost or failed
    # attempts can have them in its step folders (a clean run leaves none), so the walk over
    # every step output is done only then; the output folder itself is always swept.
    remove_stale_temporaries(root, recursive=store.had_failed_attempts(job.job_id))
    write_run_results(root, entries, flows)
    try:
        batch: dict[str, Any] = read_batch(root)
    except (OSError, ValueError):
        batch = {}
    batch.update(
        job_id=job.job_id,
        run_id=job.run_id,
        binary_path=job.binary_path,
        input_dir=job.input_dir,
        output_folder=str(root),
        status=str(job.state),
        can_resume=job.state is not JobState.COMPLETE,
        finished_at=now_iso(),
        run_summary=summary,
        files=entries,
    )
    write_batch(root, batch)
    return summary


def _flows_of(binaries: BinaryCache, job: JobRow) -> list[str] | None:
    sha = job.settings.get("binary_sha256")
    if not sha:
        return None
    try:
        plan = binaries.get(str(sha)).plan
    except BinaryError:
        return None
    if plan.binary_type.value != "Flows":
        return None
    return [flow.stem for flow in plan.flows]
