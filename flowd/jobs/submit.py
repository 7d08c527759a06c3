"""Turning a request into a job: a flow run over a folder, or a compile (SPEC §6, §7).

Everything that can be wrong with a request is found here, before the job exists — a binary that
does not load, a missing input folder, a bad ``runtime_config``, a taken ``job_id`` — and raised as
a :class:`~flowd.errors.FlowdError` naming the thing and the cause. Files that cannot run (a folder
entry that is not a regular file, a name a binary type refuses) do not refuse the job: they become
tasks created ``FAILED`` with the reason, so the job reports them like any failed file.

A submitted flow job has: its binary's verified bytes in the :class:`BinaryCache` (the job records
the content hash, so a recompile of the original never changes a running job), its output folder
created (with the binary copy when ``save_binary_to_output``), one task per input file, and a first
``batch.ibflowresults`` saying ``RUNNING``. Callers resolve and confine the paths first (the API
does, see :mod:`flowd.api.paths`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flowd.engine.inputs import make_tasks, scan
from flowd.engine.output import write_batch
from flowd.engine.run import empty_output_folder, now_iso, output_base
from flowd.engine.settings import (
    RunSettings,
    RunStatus,
    check_job_id,
    check_runtime_config,
    new_run_id,
)
from flowd.errors import (
    DuplicateJobError,
    JobNotFoundError,
    PathNotFoundError,
    RunSettingsError,
)
from flowd.flows.compiler import output_path
from flowd.flows.project import CompileSettings
from flowd.fsutil import display_name, write_atomic
from flowd.jobs.binaries import BinaryCache
from flowd.jobs.queries import JobRow, JobType, NewJob, NewTask
from flowd.jobs.states import JobState
from flowd.jobs.store import JobStore, check_priority, check_tags

COMPILE_TASK = "compile"
"""The file name of a compile job's one task."""


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class FlowRun:
    """A request to run a binary over a folder: the seed's ``run_binary_async`` arguments, with
    paths already resolved. ``step_timeout`` has the seed's meaning (0 = the daemon's default,
    -1 = none). ``files`` limits the run to these files of ``input_dir`` (relative paths; the
    daemon's watches use it); ``None`` scans the whole folder."""

    binary_path: Path
    input_dir: Path
    output_dir: Path | None = None
    job_id: str | None = None
    output_has_run_id: bool = False
    delete_out_dir: bool = False
    log_to_timeline: bool = False
    save_binary_to_output: bool = True
    runtime_config: Mapping[str, Any] = field(default_factory=_empty)
    step_timeout: int = 0
    priority: int = 0
    tags: Sequence[str] = ()
    pipeline_ids: Sequence[str] = ()
    notification_emails: Sequence[str] = ()
    webhook_config: Mapping[str, Any] | None = None
    max_file_mb: float = 50.0
    files: Sequence[str] | None = None
    run_id: str | None = None  # default: a new one (the daemon's watches name their spool by it)


def step_timeout_s(step_timeout: int, default_s: float) -> float | None:
    """The seed's ``step_timeout`` as seconds: 0 → ``default_s``, -1 → no limit."""
    if isinstance(step_timeout, bool) or not isinstance(step_timeout, int):
        raise RunSettingsError(f"step_timeout must be an integer, not {step_timeout!r}")
    if step_timeout == 0:
        return default_s
    if step_timeout == -1:
        return None
    if step_timeout < 0:
        raise RunSettingsError(
            f"step_timeout {step_timeout} is invalid: use seconds > 0, 0 (default) or -1 (none)"
        )
    return float(step_timeout)


def submit_flow_run(
    store: JobStore,
    binaries: BinaryCache,
    run: FlowRun,
    *,
    default_step_timeout_s: float,
    who: str = "api",
) -> JobRow:
    """Check ``run``, lay out its output folder and create its job (``QUEUED``, or already ended
    when no file can run). Raises a :class:`~flowd.errors.FlowdError` subclass for a bad request;
    nothing is created then. The notification settings are the caller's to check (the
    API checks them with :mod:`flowd.notify.messages`; the job system stores them as given)."""
    binary = binaries.load(run.binary_path)
    if not run.input_dir.is_dir():
        raise PathNotFoundError(
            "input_dir", str(run.input_dir), "does not exist or is not a folder"
        )
    check_runtime_config(run.runtime_config, binary)
    timeout = step_timeout_s(run.step_timeout, default_step_timeout_s)
    check_priority(run.priority)
    check_tags(run.tags)
    job_id = check_job_id(run.job_id) if run.job_id else str(uuid.uuid4())
    try:
        store.get_job(job_id)
        raise DuplicateJobError(job_id)
    except JobNotFoundError:
        pass
    settings = RunSettings(
        output_dir=run.output_dir,
        output_has_run_id=run.output_has_run_id,
        delete_out_dir=run.delete_out_dir,
        log_to_timeline=run.log_to_timeline,
        save_binary_to_output=run.save_binary_to_output,
        runtime_config=dict(run.runtime_config),
        step_timeout_s=timeout,
        max_file_mb=run.max_file_mb,
        job_id=job_id,
    )
    run_id = run.run_id or new_run_id()
    base = output_base(run.input_dir, settings)
    root = base / run_id if run.output_has_run_id else base
    if run.files is None:
        files, rejected = scan(run.input_dir, skip=base)
    else:
        files, rejected = list(run.files), []
    tasks, bad = make_tasks(binary.plan, files)
    rejected += bad
    sha = binaries.keep(binary)
    try:
        if run.delete_out_dir and not run.output_has_run_id and base.exists():
            empty_output_folder(base, run.input_dir, run.binary_path)
        root.mkdir(parents=True, exist_ok=True)
        if run.save_binary_to_output:
            write_atomic(root / run.binary_path.name, binary.data)
    except OSError as exc:
        raise RunSettingsError(
            f"cannot prepare the output folder {root}: {exc.strerror or exc}"
        ) from None
    stored = {
        **settings.to_dict(),
        "step_timeout": run.step_timeout,
        "binary_sha256": sha,
        "binary_name": run.binary_path.name,
        "output_dir": str(run.output_dir) if run.output_dir is not None else None,
        "notification_emails": list(run.notification_emails),
        "webhook_config": dict(run.webhook_config) if run.webhook_config is not None else None,
    }
    new_tasks = [NewTask(t.file, t.flow) for t in tasks] + [
        NewTask(r.file, r.flow, error=f"{display_name(r.file)}: {r.reason}") for r in rejected
    ]
    store.create_job(
        NewJob(
            job_id=job_id,
            type=JobType.FLOW,
            priority=run.priority,
            binary_path=str(run.binary_path),
            input_dir=str(run.input_dir),
            output_folder=str(root),
            run_id=run_id,
            settings=stored,
            tags=tuple(run.tags),
            pipeline_ids=tuple(run.pipeline_ids),
            tasks=new_tasks,
        ),
        who=who,
    )
    write_batch(
        root,
        {
            "job_id": job_id,
            "run_id": run_id,
            "binary_path": str(run.binary_path),
            "binary_sha256": sha,
            "input_dir": str(run.input_dir),
            "output_folder": str(root),
            "status": RunStatus.RUNNING,
            "can_resume": True,
            "started_at": now_iso(),
            "settings": settings.to_dict(),
            "files_queued": len(new_tasks),
        },
    )
    if not new_tasks:
        return store.transition_job(
            job_id, JobState.COMPLETE, who, "the input folder has no files", expect=JobState.QUEUED
        )
    return store.settle_job(job_id, who)


@dataclass(frozen=True)
class CompileRun:
    """A request to compile a project (the seed's ``compile`` arguments, paths resolved)."""

    project_root: Path
    settings: CompileSettings
    predefined_binary_path: Path | None = None
    job_id: str | None = None


def submit_compile(store: JobStore, request: CompileRun, *, who: str = "api") -> JobRow:
    """Create a compile job (one task); the scheduler compiles it (:mod:`flowd.jobs.compiling`)."""
    if not request.project_root.is_dir():
        raise PathNotFoundError(
            "flow_project_root", str(request.project_root), "does not exist or is not a folder"
        )
    target = output_path(request.project_root, request.settings, request.predefined_binary_path)
    settings = {
        "flow_project_root": str(request.project_root),
        "compile_settings": request.settings.to_dict(),
        "predefined_binary_path": (
            str(request.predefined_binary_path) if request.predefined_binary_path else None
        ),
    }
    return store.create_job(
        NewJob(
            job_id=check_job_id(request.job_id) if request.job_id else None,
            type=JobType.COMPILE,
            binary_path=str(target),
            input_dir=str(request.project_root),
            settings=settings,
            tasks=[NewTask(COMPILE_TASK)],
        ),
        who=who,
    )


def relative_files(input_dir: Path, paths: Sequence[Path]) -> list[str]:
    """``paths`` (inside ``input_dir``) as the relative names :class:`FlowRun` ``files`` takes."""
    out = []
    for path in paths:
        rel = os.path.relpath(path, input_dir)
        if rel.startswith(".."):
            raise RunSettingsError(f"{path} is not inside the input folder {input_dir}")
        out.append(rel.replace(os.sep, "/"))
    return out
