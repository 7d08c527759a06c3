"""Run a binary on a few documents entirely in memory (what the sync API needs, SPEC §7).

Nothing touches the disk: documents come in as bytes, step outputs live in a
:class:`~flowd.engine.store.MemoryStore`, and the results come back as values. Barriers behave as in
a folder run (a checkpoint that fails stops its records with ``STOPPED_AT_CHECKPOINT``; a reduce UDF
sees every document of the call).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowd.engine.context import MB, RunContext
from flowd.engine.driver import drive
from flowd.engine.executor import InlineExecutor
from flowd.engine.inputs import make_tasks
from flowd.engine.output import FileResult, file_result
from flowd.engine.pipeline import TaskRunner
from flowd.engine.settings import check_runtime_config, new_run_id
from flowd.engine.store import MemoryStore
from flowd.errors import DocumentError, FlowdError, RunSettingsError
from flowd.flows.binary import CompiledBinary
from flowd.flows.specs import ProjectSpec


@dataclass(frozen=True)
class MemoryRunSettings:
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    step_timeout_s: float | None = 60.0
    max_file_mb: float = 50.0
    job_id: str | None = None


def run_documents(
    binary: CompiledBinary | ProjectSpec,
    documents: Sequence[tuple[str, bytes]],
    settings: MemoryRunSettings = MemoryRunSettings(),
) -> tuple[FileResult, ...]:
    """Run ``binary`` (or the project loaded from one, UDFs included) on ``documents`` (``(file
    name, bytes)`` pairs, names unique) in this process, in memory; results in the order of
    ``documents`` (and of flows, for ``Flows``)."""
    project = binary.project if isinstance(binary, CompiledBinary) else binary
    names = [name for name, _ in documents]
    if len(set(names)) != len(names):
        raise RunSettingsError("file names must be unique within one call")
    bad = [n for n in names if not n or n.startswith("/") or ".." in n.split("/")]
    if bad:
        raise RunSettingsError(f"file name {bad[0]!r} is not a plain relative name")
    schema = check_runtime_config(settings.runtime_config, project)
    contents = dict(documents)
    limit = int(settings.max_file_mb * MB)

    def read(name: str) -> bytes:
        data = contents[name]
        if len(data) > limit:
            raise DocumentError(
                name,
                f"file is {len(data) / MB:.1f} MB, larger than the limit of {settings.max_file_mb:g} MB",
            )
        return data

    ctx = RunContext(
        job_id=settings.job_id or str(uuid.uuid4()),
        run_id=new_run_id(),
        output_root=None,
        runtime_config=dict(settings.runtime_config),
        schema_change=schema,
        step_timeout_s=settings.step_timeout_s,
        max_file_bytes=limit,
    )
    tasks, rejected = make_tasks(project, names)
    runner = TaskRunner(project, ctx, MemoryStore(), read)
    latest = drive(tasks, InlineExecutor(runner), fresh=True)
    flows_type = project.binary_type.value == "Flows"
    results = [file_result(t, latest.get(t.key), flows_type) for t in tasks]
    results += [
        FileResult(r.file, "FAILED", error=f"{r.file}: {r.reason}", flow=r.flow) for r in rejected
    ]
    order = {name: i for i, name in enumerate(names)}
    return tuple(sorted(results, key=lambda r: order.get(r.file_name, len(order))))


@dataclass(frozen=True)
class InMemory:
    """A whole in-memory run as one call for a worker process (the daemon's sync API): the
    worker's runner supplies the project (UDFs loaded once per worker), nothing touches disk."""

    documents: tuple[tuple[str, bytes], ...]
    settings: MemoryRunSettings

    def run(self, runner: TaskRunner) -> tuple[FileResult, ...]:
        try:
            return run_documents(runner.project, self.documents, self.settings)
        except FlowdError as exc:  # a bad request the caller did not catch: every file fails
            return self.failed(exc.message, False)

    def failed(self, message: str, transient: bool) -> tuple[FileResult, ...]:
        return tuple(
            FileResult(name, "FAILED", error=f"{name}: {message}") for name, _ in self.documents
        )


@dataclass(frozen=True)
class MemoryRunnerFactory:
    """Builds a worker's runner for :class:`InMemory` calls from a binary's bytes (picklable)."""

    binary_data: bytes
    binary_name: str

    def __call__(self) -> TaskRunner:
        project = CompiledBinary.from_bytes(self.binary_data, self.binary_name).project
        ctx = RunContext(job_id="sync", run_id="", output_root=None)

        def no_input(name: str) -> bytes:
            raise DocumentError(name, "no document given")

        return TaskRunner(project, ctx, MemoryStore(), no_input)
