"""Run a binary over a folder into an output folder (resuming is in :mod:`flowd.engine.resume`).

This is ``flowd run`` without the terminal: it validates the settings (SPEC §5.2–5.3), lays out the
output folder (§5.1), drives the tasks on an executor, and writes ``batch.ibflowresults``,
``results.json`` and ``results.csv``. Everything a resume needs is in ``batch.ibflowresults``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from flowd.engine.context import MB, RunContext
from flowd.engine.driver import ProgressHook, drive
from flowd.engine.executor import Executor
from flowd.engine.inputs import Rejected, make_tasks, scan
from flowd.engine.output import (
    FileResult,
    file_result,
    run_summary,
    write_batch,
    write_run_results,
)
from flowd.engine.pipeline import Task, TaskProgress, TaskRunner, TaskState
from flowd.engine.pool import WorkerPool
from flowd.engine.schema import SchemaChange
from flowd.engine.settings import (
    RunOutcome,
    RunSettings,
    RunStatus,
    check_job_id,
    check_runtime_config,
    new_run_id,
)
from flowd.engine.store import FolderStore
from flowd.errors import DocumentError, RunInterrupted, RunSettingsError
from flowd.flows.binary import CompiledBinary, load_binary
from flowd.fsutil import display_name, write_atomic

log = structlog.get_logger("flowd.run")


def output_base(input_dir: Path, settings: RunSettings) -> Path:
    """The output folder (without run id): ``--output-dir`` or ``INPUT_DIR/../out``."""
    if settings.output_dir is not None:
        base = settings.output_dir.absolute()
    else:
        base = input_dir.resolve().parent / "out"  # resolved first: "." has no ".." of its own
    if base.resolve() == input_dir.resolve():
        raise RunSettingsError(
            f"output folder {base} is the input folder: results would be read as input next time; "
            "choose another output_dir"
        )
    return base


def _output_root(input_dir: Path, binary_path: Path, settings: RunSettings, run_id: str) -> Path:
    base = output_base(input_dir, settings)
    if settings.output_has_run_id:
        return base / run_id
    if settings.delete_out_dir and base.exists():
        empty_output_folder(base, input_dir, binary_path)
    return base


def empty_output_folder(folder: Path, input_dir: Path, binary_path: Path) -> None:
    real, real_in = folder.resolve(), input_dir.resolve()
    if (
        real == real_in
        or real in real_in.parents
        or real == Path(real.anchor)
        or real == Path.home()
    ):
        raise RunSettingsError(
            f"delete_out_dir refused: {folder} holds the input folder (or is / or home); "
            "choose another output_dir"
        )
    if real in binary_path.resolve().parents:
        raise RunSettingsError(
            f"delete_out_dir refused: {folder} holds the binary {binary_path}; "
            "move the binary or choose another output_dir"
        )
    for child in real.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class InputReader:
    """Reads task input files, enforcing the size limit, never following links out."""

    def __init__(self, input_dir: Path, max_bytes: int) -> None:
        self.input_dir = input_dir
        self.max_bytes = max_bytes

    def path(self, file: str) -> str:
        return os.path.join(self.input_dir, file)

    def __call__(self, file: str) -> bytes:
        path = self.path(file)
        name = display_name(file)
        try:
            size = os.stat(path).st_size
            if size > self.max_bytes:
                raise DocumentError(
                    name,
                    f"file is {size / MB:.1f} MB, larger than the limit of "
                    f"{self.max_bytes / MB:g} MB (max_file_mb)",
                )
            with open(path, "rb") as fh:
                return fh.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise DocumentError(name, "input file disappeared before it was read") from None
        except IsADirectoryError:
            raise DocumentError(name, "is a folder, not a file") from None
        except PermissionError:
            raise DocumentError(name, "permission denied") from None


@dataclass(frozen=True)
class FolderRunnerFactory:
    """Builds a worker's :class:`TaskRunner` (picklable: it crosses to worker processes)."""

    binary_data: bytes
    binary_name: str
    ctx: RunContext
    input_dir: Path

    def __call__(self) -> TaskRunner:
        binary = CompiledBinary.from_bytes(self.binary_data, self.binary_name)
        assert self.ctx.output_root is not None
        reader = InputReader(self.input_dir, self.ctx.max_file_bytes)
        return TaskRunner(
            binary.project, self.ctx, FolderStore(self.ctx.output_root), reader, reader.path
        )


ExecutorFactory = Callable[[FolderRunnerFactory, int, float | None], Executor]


def pool_executor(
    factory: FolderRunnerFactory, workers: int, hard_timeout_s: float | None
) -> Executor:
    """Worker processes, even for one: only a separate process can be killed when a step hangs
    where no signal reaches it, and user code never runs in the process that owns the run."""
    return WorkerPool(factory, workers, hard_timeout_s)


def hard_timeout(binary: CompiledBinary, step_timeout_s: float | None) -> float | None:
    if step_timeout_s is None:
        return None
    longest = max((len(f.steps) for f in binary.plan.flows), default=1) + 2
    return step_timeout_s * longest + 2.0


def start_run(
    binary_path: Path,
    input_dir: Path,
    settings: RunSettings,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: ProgressHook | None = None,
    executor_factory: ExecutorFactory = pool_executor,
) -> RunOutcome:
    """Run ``binary_path`` over ``input_dir``. Raises FlowdError subclasses for bad settings (before
    any output is written); per-file problems become failed files instead."""
    binary = load_binary(binary_path)
    if not input_dir.is_dir():
        raise RunSettingsError(f"input folder {input_dir} does not exist or is not a folder")
    schema = check_runtime_config(settings.runtime_config, binary)
    job_id = check_job_id(settings.job_id) if settings.job_id else str(uuid.uuid4())
    run_id = new_run_id()
    output_root = _output_root(input_dir, binary_path, settings, run_id)
    files, rejected = scan(input_dir, skip=output_base(input_dir, settings))
    tasks, bad = make_tasks(binary.plan, files)
    rejected += bad
    output_root.mkdir(parents=True, exist_ok=True)
    if settings.save_binary_to_output:
        write_atomic(output_root / binary_path.name, binary.data)  # the verified bytes
    ctx = run_context(job_id, run_id, output_root, input_dir, settings, schema)
    batch = {
        "job_id": job_id,
        "run_id": run_id,
        "binary_path": str(binary_path.absolute()),
        "binary_sha256": binary.content_sha256,
        "input_dir": str(input_dir.absolute()),
        "output_folder": str(output_root),
        "status": RunStatus.RUNNING,
        "can_resume": True,
        "started_at": now_iso(),
        "settings": settings.to_dict(),
        "tasks": [_task_entry(t) for t in tasks],
        "rejected": [
            {"file": display_name(r.file), "reason": r.reason, "flow": r.flow} for r in rejected
        ],
    }
    write_batch(output_root, batch)
    return execute_run(
        binary,
        ctx,
        settings.workers,
        tasks,
        rejected,
        batch,
        True,
        on_start,
        on_progress,
        executor_factory,
    )


def _task_entry(task: Task) -> dict[str, Any]:
    """A task as stored for resume. A name that is not UTF-8 keeps its exact bytes in hex."""
    entry: dict[str, Any] = {"file": display_name(task.file), "flow": task.flow}
    if entry["file"] != task.file:
        entry["file_bytes_hex"] = os.fsencode(task.file).hex()
    return entry


def task_from_entry(entry: dict[str, Any]) -> Task:
    raw = entry.get("file_bytes_hex")
    return Task(os.fsdecode(bytes.fromhex(raw)) if raw else entry["file"], entry.get("flow"))


def run_context(
    job_id: str,
    run_id: str,
    output_root: Path,
    input_dir: Path,
    settings: RunSettings,
    schema: SchemaChange | None,
    yield_flag: str | None = None,
) -> RunContext:
    return RunContext(
        yield_flag=yield_flag,
        job_id=job_id,
        run_id=run_id,
        output_root=output_root,
        input_dir=input_dir.absolute(),
        runtime_config=dict(settings.runtime_config),
        schema_change=schema,
        log_to_timeline=settings.log_to_timeline,
        step_timeout_s=settings.step_timeout_s,
        max_file_bytes=int(settings.max_file_mb * MB),
    )


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def execute_run(
    binary: CompiledBinary,
    ctx: RunContext,
    workers: int,
    tasks: list[Task],
    rejected: list[Rejected],
    batch: dict[str, Any],
    fresh: bool,
    on_start: Callable[[int], None] | None,
    on_progress: ProgressHook | None,
    executor_factory: ExecutorFactory,
) -> RunOutcome:
    assert ctx.output_root is not None and ctx.input_dir is not None
    factory = FolderRunnerFactory(binary.data, binary.name, ctx, ctx.input_dir)
    size = workers or os.cpu_count() or 1
    size = max(1, min(size, len(tasks))) if tasks else 1
    context = {"job_id": ctx.job_id, "run_id": ctx.run_id}
    if ctx.log_prefix:
        context["log_prefix"] = ctx.log_prefix
    with structlog.contextvars.bound_contextvars(**context):
        log.info("run_started", binary=binary.name, files=len(tasks), workers=size, fresh=fresh)

        def progress(p: TaskProgress) -> None:
            if p.state is TaskState.FAILED:
                log.warning("file_failed", file=display_name(p.task.file), error=p.error)
            if on_progress is not None:
                on_progress(p)

        executor = executor_factory(factory, size, hard_timeout(binary, ctx.step_timeout_s))
        if on_start is not None:
            on_start(len(tasks))  # after the workers started: no thread exists when they fork
        try:
            latest = drive(tasks, executor, fresh=fresh, on_progress=progress)
        except KeyboardInterrupt:
            executor.close(now=True)
            log.warning("run_interrupted")
            raise RunInterrupted(ctx.output_root) from None
        executor.close()
        outcome = _finish(binary, ctx, tasks, rejected, latest, batch)
        log.info("run_finished", status=outcome.status, **outcome.summary)
    return outcome


def _finish(
    binary: CompiledBinary,
    ctx: RunContext,
    tasks: list[Task],
    rejected: list[Rejected],
    latest: dict[str, TaskProgress],
    batch: dict[str, Any],
) -> RunOutcome:
    assert ctx.output_root is not None
    flows_type = binary.plan.binary_type.value == "Flows"
    results = [file_result(t, latest.get(t.key), flows_type) for t in tasks]
    results += [
        FileResult(
            display_name(r.file), "FAILED", error=f"{display_name(r.file)}: {r.reason}", flow=r.flow
        )
        for r in rejected
    ]
    stopped = any(r.status == "STOPPED_AT_CHECKPOINT" for r in results)
    failed = any(r.status in ("FAILED", "PENDING") for r in results)
    status = (
        RunStatus.STOPPED_AT_CHECKPOINT
        if stopped
        else RunStatus.FAILED
        if failed
        else RunStatus.COMPLETE
    )
    entries = [r.to_dict() for r in results]
    summary = run_summary(entries)
    flows = [flow.stem for flow in binary.plan.flows] if flows_type else None
    write_run_results(ctx.output_root, entries, flows)
    transient = any(p.transient for p in latest.values() if p.state is TaskState.FAILED)
    batch.update(
        status=status,
        can_resume=stopped or transient,
        finished_at=now_iso(),
        run_summary=summary,
        files=entries,
    )
    write_batch(ctx.output_root, batch)
    return RunOutcome(
        ctx.job_id,
        ctx.run_id,
        ctx.output_root,
        status,
        bool(batch["can_resume"]),
        tuple(results),
        summary,
    )
