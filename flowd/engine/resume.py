"""Resume a run from its output folder: after a checkpoint stop, an interruption or a failure.

Everything needed is in the folder's ``batch.ibflowresults``; each file goes on from its last
finished step (the step outputs are the resume points), re-reading a checkpoint's records, which a
reviewer may have corrected in place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowd.engine.driver import ProgressHook
from flowd.engine.inputs import Rejected
from flowd.engine.output import read_batch, write_batch
from flowd.engine.run import (
    ExecutorFactory,
    execute_run,
    now_iso,
    pool_executor,
    run_context,
    task_from_entry,
)
from flowd.engine.settings import RunOutcome, RunSettings, RunStatus, check_runtime_config
from flowd.errors import ResumeError
from flowd.flows.binary import CompiledBinary, load_binary


def resume_run(
    output_folder: Path,
    *,
    workers: int = 0,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressHook | None = None,
    executor_factory: ExecutorFactory = pool_executor,
) -> RunOutcome:
    """Continue a run stopped at a checkpoint (re-reading the checkpoint's possibly corrected
    records), interrupted, or failed: every task goes on from its last finished step."""
    try:
        batch = read_batch(output_folder)
    except FileNotFoundError:
        raise ResumeError(
            f"{output_folder} is not a flowd run folder (no batch.ibflowresults)"
        ) from None
    except ValueError as exc:
        raise ResumeError(f"{output_folder}/batch.ibflowresults is unreadable: {exc}") from None
    if batch.get("status") == RunStatus.COMPLETE:
        raise ResumeError(f"the run in {output_folder} is already COMPLETE; nothing to resume")
    binary = _binary_for(output_folder, batch)
    raw = batch["settings"]
    settings = RunSettings(
        output_has_run_id=bool(raw.get("output_has_run_id")),
        log_to_timeline=bool(raw.get("log_to_timeline")),
        save_binary_to_output=bool(raw.get("save_binary_to_output", True)),
        runtime_config=raw.get("runtime_config") or {},
        step_timeout_s=raw.get("step_timeout_s"),
        max_file_mb=float(raw.get("max_file_mb", 50)),
        workers=workers,
    )
    schema = check_runtime_config(settings.runtime_config, binary)
    ctx = run_context(
        batch["job_id"],
        batch["run_id"],
        output_folder.absolute(),
        Path(batch["input_dir"]),
        settings,
        schema,
    )
    tasks = [task_from_entry(t) for t in batch["tasks"]]
    rejected = [Rejected(r["file"], r["reason"], r.get("flow")) for r in batch.get("rejected", [])]
    batch.update(status=RunStatus.RUNNING, can_resume=True, resumed_at=now_iso())
    write_batch(output_folder, batch)
    return execute_run(
        binary, ctx, workers, tasks, rejected, batch, False, on_start, on_progress, executor_factory
    )


def _binary_for(folder: Path, batch: dict[str, Any]) -> CompiledBinary:
    """The run's own binary: the copy in the output folder if saved, else the original path; it
    must have the content hash the run started with."""
    original = Path(batch["binary_path"])
    for candidate in (folder / original.name, original):
        if candidate.is_file():
            binary = load_binary(candidate)
            if binary.content_sha256 != batch.get("binary_sha256"):
                raise ResumeError(
                    f"{candidate} is not the binary this run started with (it was recompiled); "
                    "start a new run instead"
                )
            return binary
    raise ResumeError(
        f"the run's binary is gone: neither {folder / original.name} nor {original} exists"
    )
