"""Response shapes: the Instabase-style job status (SPEC §7) and job summaries for the list.

``cur_status`` is a JSON *string* (clients of the seed ``json.loads`` it), holding ``status`` (the
job's flowd status), ``curProgress`` (share of its tasks that ended, 0–1), ``finish_timestamp``
(Unix seconds, ``null`` while it runs) and ``run_summary``. ``state`` is ``PENDING`` until the job
has ended (``STOPPED_AT_CHECKPOINT`` counts as ended: it waits for a person, not for flowd), then
``DONE`` — once its output files are written —, and ``results`` appears: one entry, ``{"status": "OK", "output_folder": …}`` for a
complete flow job (``binary_path`` for a compile job), ``{"status": "ERROR", "msg": …}`` otherwise
(with the output folder too when there is one).
"""

from __future__ import annotations

import json
from typing import Any

from flowd.jobs.queries import JobCounts, JobRow, JobType
from flowd.jobs.states import JOB_ENDED, JobState
from flowd.jobs.store import JobStore
from flowd.jobs.summary import failure_message, run_summary


def job_status(store: JobStore, job: JobRow) -> dict[str, Any]:
    """The ``GET /api/v1/jobs/status`` body for ``job``."""
    counts = store.job_counts(job.job_id)
    # DONE only once the end has been followed up (results.json written, notifications stored): a
    # client that polls until DONE and then reads the output folder must find the results there.
    ended = job.state in JOB_ENDED and job.finalized >= job.ends
    cur = {
        "status": str(job.state),
        "curProgress": round(counts.progress, 4)
        if not (ended and job.state is JobState.COMPLETE)
        else 1.0,
        "finish_timestamp": job.finished_at,
        "run_summary": run_summary(counts),
    }
    body: dict[str, Any] = {
        "status": "OK",
        "msg": "",
        "state": "DONE" if ended else "PENDING",
        "job_id": job.job_id,
        "type": str(job.type),
        "cur_status": json.dumps(cur),
    }
    if ended:
        body["results"] = [_result(store, job, counts)]
    return body


def _result(store: JobStore, job: JobRow, counts: JobCounts) -> dict[str, Any]:
    if job.state is JobState.COMPLETE:
        if job.type is JobType.COMPILE:
            tasks = store.tasks(job.job_id)
            result = tasks[0].result if tasks and isinstance(tasks[0].result, dict) else {}
            return {"status": "OK", "binary_path": result.get("binary_path", job.binary_path)}
        return {"status": "OK", "output_folder": job.output_folder}
    out: dict[str, Any] = {"status": "ERROR", "msg": failure_message(store, job, counts)}
    if job.type is JobType.FLOW and job.output_folder:
        out["output_folder"] = job.output_folder
    if job.type is JobType.COMPILE:
        tasks = store.tasks(job.job_id)
        if tasks and isinstance(tasks[0].result, dict) and "problems" in tasks[0].result:
            out["problems"] = tasks[0].result["problems"]
    return out


def job_summary(job: JobRow) -> dict[str, Any]:
    """A job as the list shows it (no per-task reads: a page stays one query)."""
    return {
        "job_id": job.job_id,
        "type": str(job.type),
        "status": str(job.state),
        "priority": job.priority,
        "binary_path": job.binary_path,
        "input_dir": job.input_dir,
        "output_folder": job.output_folder,
        "tags": list(job.tags),
        "pipeline_ids": list(job.pipeline_ids),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
