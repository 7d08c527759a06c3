"""Run one task — one input file's way through a flow — step by step, with resume points.

:class:`TaskRunner` is the engine's unit of work and is what every executor calls: the local pool
of ``flowd run``, later the job system's workers and a Dask cluster. Given a task it finds the
task's resume point in the step store, runs the remaining steps up to the next *barrier* (a reduce
UDF, or a checkpoint that every record must reach before any goes on), writes each step's output as
it finishes, and returns a frozen :class:`TaskProgress`.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from flowd.engine.context import RunContext, Timeline
from flowd.engine.document import Document
from flowd.engine.records import Record, RecordStatus
from flowd.engine.steps.checkpoint import validate, waiting
from flowd.engine.steps.classify import apply_classifier
from flowd.engine.steps.env import StepEnv
from flowd.engine.steps.mapping import document_records, map_records
from flowd.engine.steps.refine import apply_refiner
from flowd.engine.steps.scope import record_scope
from flowd.engine.steps.udf import apply_map_udf, apply_reduce_udf
from flowd.engine.store import MSG_SUFFIX, StepStore
from flowd.engine.timeouts import StepAlarm, step_deadline
from flowd.errors import (
    DocumentError,
    FlowdError,
    MissingDependencyError,
    StepError,
    StepOutputError,
    StepTimeoutError,
)
from flowd.flows.formats import ProcessFilesSettings
from flowd.flows.specs import (
    BinaryType,
    CheckpointSpec,
    ClassifierStepSpec,
    ProjectSpec,
    RefinerSpec,
    StepSpec,
    UdfSpec,
)
from flowd.fsutil import display_name


class TaskState(StrEnum):
    DONE = "DONE"  # every step ran (records may still be FILTERED/UNROUTED)
    FAILED = "FAILED"
    CHECKPOINT = "CHECKPOINT"  # waits after a checkpoint (failed validation, or a barrier)
    REDUCE = "REDUCE"  # waits before a reduce UDF for the job's other records
    YIELDED = "YIELDED"  # stopped after a step because its job was paused; resumes at position


@dataclass(frozen=True)
class Task:
    """One input file in one flow. ``file`` is the path relative to the input folder (also the name
    of its step outputs); ``flow`` the flow's stem, or ``None`` in a Metaflow (routed at run time)."""

    file: str
    flow: str | None

    @property
    def key(self) -> str:
        return f"{self.flow}/{self.file}" if self.flow else self.file


@dataclass(frozen=True)
class TaskProgress:
    task: Task
    state: TaskState
    position: int = 0  # index into the task's plan of the next step to run
    records: tuple[Record, ...] = ()  # final result records (text stripped) when DONE/CHECKPOINT
    error: str | None = None
    transient: bool = False
    checkpoint_failed: bool = False
    route: str | None = None  # the flow a Metaflow task was routed to
    page_count: int = 0
    elapsed_s: float = 0.0
    # The steps this call ran, as (step kind, seconds): the daemon's step latency metrics.
    step_s: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class PlanStep:
    step: StepSpec
    folder: str  # step output folder, relative to the output root


class TaskRunner:
    """Runs tasks of one binary for one run, against one step store."""

    def __init__(
        self,
        project: ProjectSpec,
        ctx: RunContext,
        store: StepStore,
        read_input: Callable[[str], bytes],
        input_path: Callable[[str], str | None] = lambda f: None,
    ) -> None:
        self.project = project
        self.ctx = ctx
        self.store = store
        self.read_input = read_input
        self.input_path = input_path
        self.timeline = Timeline(ctx)
        self.prefixed = project.binary_type is not BinaryType.SINGLE_FLOW
        self._plans: dict[str | None, list[PlanStep]] = {}
        self._step_s: list[tuple[str, float]] = []

    # -- plans -----------------------------------------------------------------------------
    def plan(self, task: Task, route: str | None = None) -> list[PlanStep]:
        """The steps ``task`` goes through (for a Metaflow task, through ``route`` once known)."""
        meta = self.project.metaflow
        name = task.flow if meta is None else route
        if name in self._plans:
            return self._plans[name]
        if meta is None:
            flow = self.project.flow(task.flow) if task.flow else self.project.flows[0]
            prefix = f"{flow.stem}/" if self.prefixed else ""
            plan = [PlanStep(s, prefix + s.folder) for s in flow.steps]
        else:
            plan = [
                PlanStep(StepSpec("process_files", 1, meta.process), "s1_process_files"),
                PlanStep(
                    StepSpec("apply_classifier", 2, ClassifierStepSpec(meta.classifier, ())),
                    "s2_apply_classifier",
                ),
            ]
            if route is not None:
                flow = self.project.flow(route)
                plan += [PlanStep(s, f"{flow.stem}/{s.folder}") for s in flow.steps[1:]]
        self._plans[name] = plan
        return plan

    # -- advancing -------------------------------------------------------------------------
    def advance(self, task: Task, *, fresh: bool, release: bool = False) -> TaskProgress:
        """Run ``task`` from its resume point to its end or its next barrier.

        ``fresh`` skips looking for earlier outputs (a new run); ``release`` lets the task pass a
        checkpoint barrier that every record has reached without failures.
        Failures never escape: they come back as a FAILED progress naming the file and cause.
        """
        started = time.perf_counter()
        try:
            progress = self._advance(task, fresh=fresh, release=release)
        except (StepTimeoutError, MissingDependencyError) as exc:
            # A retry may succeed: the step may be faster next time, the package may get installed.
            progress = TaskProgress(task, TaskState.FAILED, error=exc.message, transient=True)
        except StepOutputError as exc:  # fixed by a person, then resumed
            error = f"{display_name(task.file)}: {exc.message}"
            progress = TaskProgress(task, TaskState.FAILED, error=error, transient=True)
        except (DocumentError, StepError) as exc:
            progress = TaskProgress(task, TaskState.FAILED, error=exc.message)
        except FlowdError as exc:
            progress = TaskProgress(
                task, TaskState.FAILED, error=f"{display_name(task.file)}: {exc}"
            )
        except MemoryError:
            progress = TaskProgress(
                task, TaskState.FAILED, error=f"{display_name(task.file)}: out of memory"
            )
        except Exception as exc:  # a bug of ours must still fail only this one file
            where = traceback.extract_tb(exc.__traceback__)[-1]
            progress = TaskProgress(
                task,
                TaskState.FAILED,
                error=f"{display_name(task.file)}: internal error {type(exc).__name__}: {exc} "
                f"(at {os.path.basename(where.filename)}:{where.lineno})",
            )
        steps, self._step_s = tuple(self._step_s), []
        return replace(progress, elapsed_s=time.perf_counter() - started, step_s=steps)

    def _advance(self, task: Task, *, fresh: bool, release: bool) -> TaskProgress:
        plan = self.plan(task)
        doc: Document | None = None
        records: list[Record] = []
        pos = 0
        route: str | None = None
        if not fresh:
            plan, pos, doc, records, route = self._resume(task)
            if pos > 0 and isinstance(plan[pos - 1].step.payload, CheckpointSpec):
                stop = self._recheck(
                    task, plan[pos - 1], pos, records, doc, release or pos == len(plan)
                )
                if stop is not None:
                    return replace(stop, route=route)
        flag = self.ctx.yield_flag
        ran = 0
        while pos < len(plan):
            entry = plan[pos]
            payload = entry.step.payload
            if isinstance(payload, UdfSpec) and payload.kind == "reduce":
                return TaskProgress(task, TaskState.REDUCE, pos, route=route)
            if ran and flag is not None and os.path.exists(flag):
                return TaskProgress(task, TaskState.YIELDED, pos, route=route)
            ran += 1
            doc, records = self._run_step(task, entry, doc, records)
            pos += 1
            if self.project.metaflow is not None and pos == 2:
                route = (
                    self.project.metaflow.route(records[0].class_label or "") if records else None
                )
                if route is None:
                    records = [r.evolve(status=RecordStatus.UNROUTED) for r in records]
                    self.store.save_records(entry.folder, task.file, entry.step.kind, records)
                    break
                plan = self.plan(task, route)
            if isinstance(payload, CheckpointSpec):
                # A barrier holds passing records only when steps follow; after the last step
                # they are simply done.
                holds = not payload.straight_through and pos < len(plan)
                if waiting(records) or holds:
                    return self._at_checkpoint(task, pos, records, doc, route)
        return TaskProgress(
            task,
            TaskState.DONE,
            pos,
            records=tuple(self.final_records(records, doc)),
            route=route,
            page_count=doc.page_count if doc else 0,
        )

    def _at_checkpoint(
        self, task: Task, pos: int, records: list[Record], doc: Document | None, route: str | None
    ) -> TaskProgress:
        return TaskProgress(
            task,
            TaskState.CHECKPOINT,
            pos,
            records=tuple(self.final_records(records, doc)),
            checkpoint_failed=waiting(records),
            route=route,
            page_count=doc.page_count if doc else 0,
        )

    def _recheck(
        self,
        task: Task,
        entry: PlanStep,
        pos: int,
        records: list[Record],
        doc: Document | None,
        release: bool,
    ) -> TaskProgress | None:
        """Re-validate a checkpoint's stored (possibly corrected) records; a stop or ``None``."""
        assert isinstance(entry.step.payload, CheckpointSpec)
        checked = validate(entry.step.payload, records, self.ctx.runtime_config)
        if checked != records:
            self.store.save_records(entry.folder, task.file, entry.step.kind, checked)
        records[:] = checked
        if waiting(checked) or (not entry.step.payload.straight_through and not release):
            return self._at_checkpoint(task, pos, checked, doc, None)
        return None

    def _resume(
        self, task: Task
    ) -> tuple[list[PlanStep], int, Document | None, list[Record], str | None]:
        """The plan, the position after the last step with an output, its document and records."""
        plan = self.plan(task)
        doc = self.store.load_document(plan[0].folder, task.file)
        if doc is None:
            return plan, 0, None, [], None
        route = None
        if self.project.metaflow is not None:
            classified = self.store.load_records(plan[1].folder, task.file, doc)
            if classified is None:
                return plan, 1, doc, document_records(display_name(task.file), doc), None
            route = (
                self.project.metaflow.route(classified[0].class_label or "") if classified else None
            )
            if route is None:
                return plan, 2, doc, classified, None
            plan = self.plan(task, route)
        for pos in range(len(plan) - 1, 0, -1):
            if self.store.has_output(plan[pos].folder, task.file, MSG_SUFFIX):
                loaded = self.store.load_records(plan[pos].folder, task.file, doc)
                if loaded is not None:
                    return plan, pos + 1, doc, loaded, route
        return plan, 1, doc, document_records(display_name(task.file), doc), route

    def _run_step(
        self, task: Task, entry: PlanStep, doc: Document | None, records: list[Record]
    ) -> tuple[Document | None, list[Record]]:
        step = entry.step
        payload = step.payload
        name = display_name(task.file)
        started = time.perf_counter()
        try:
            with step_deadline(self.ctx.step_timeout_s):
                if isinstance(payload, ProcessFilesSettings):
                    doc = self._digitize(task, payload)
                    self.store.save_document(entry.folder, task.file, doc)
                    records = document_records(name, doc)
                else:
                    assert doc is not None
                    records = self._apply(task, entry, payload, records, doc)
                    self.store.save_records(entry.folder, task.file, step.kind, records)
        except StepAlarm:
            assert self.ctx.step_timeout_s is not None
            raise StepTimeoutError(step.kind, name, self.ctx.step_timeout_s) from None
        took = time.perf_counter() - started
        self._step_s.append((step.kind, took))
        if self.timeline.enabled:
            self.timeline.write(
                "step_done",
                file=name,
                step=entry.folder,
                records=len(records),
                ms=round(took * 1000, 3),
            )
        return doc, records

    def _digitize(self, task: Task, settings: ProcessFilesSettings) -> Document:
        # Imported here, not at the top: the readers (PDFium, Pillow, python-docx) weigh ~26 MB
        # and only processes that digitize need them — workers, not the daemon that schedules.
        from flowd.engine.digitize import DigitizeSettings, digitize

        data = self.read_input(task.file)
        return digitize(
            display_name(task.file),
            data,
            DigitizeSettings(ocr=settings.ocr, languages=tuple(settings.languages)),
        )

    def _apply(
        self, task: Task, entry: PlanStep, payload: object, records: list[Record], doc: Document
    ) -> list[Record]:
        config = self.ctx.runtime_config
        if isinstance(payload, str):
            return map_records(payload, records, doc)
        if isinstance(payload, ClassifierStepSpec):
            return apply_classifier(payload, records, dict(config))
        if isinstance(payload, RefinerSpec):
            return apply_refiner(payload, records, config)
        if isinstance(payload, UdfSpec):
            return apply_map_udf(payload, records, self._env(task, entry, doc))
        assert isinstance(payload, CheckpointSpec)
        return validate(payload, records, config)

    def _env(self, task: Task | None, entry: PlanStep, doc: Document | None) -> StepEnv:
        return StepEnv(
            ctx=self.ctx,
            timeline=self.timeline,
            file_name=display_name(task.file) if task else "(all files)",
            document=doc,
            input_filepath=self.input_path(task.file) if task else None,
            step_folder=self.store.folder_path(entry.folder),
        )

    # -- reduce ----------------------------------------------------------------------------
    def reduce(
        self, tasks: list[Task], position: int, route: str | None = None
    ) -> list[TaskProgress]:
        """Run the reduce UDF at ``position`` over the records of ``tasks`` (all of one flow) and
        store each task's share. Returns a FAILED progress per task if the UDF fails, else []."""
        plan = self.plan(tasks[0], route)
        entry = plan[position]
        assert isinstance(entry.step.payload, UdfSpec)
        docs: dict[str, Document] = {}
        gathered: list[Record] = []
        owner: dict[str, Task] = {}
        for task in tasks:
            _, pos, doc, records, _ = self._resume(task)
            if doc is None or pos != position:
                continue
            docs[task.file] = doc
            owner[display_name(task.file)] = task
            gathered.extend(records)
        try:
            with step_deadline(self.ctx.step_timeout_s):
                out = apply_reduce_udf(entry.step.payload, gathered, self._env(None, entry, None))
        except StepAlarm:
            assert self.ctx.step_timeout_s is not None
            return [
                TaskProgress(
                    t,
                    TaskState.FAILED,
                    error=StepTimeoutError(
                        "apply_udf (reduce)", display_name(t.file), self.ctx.step_timeout_s
                    ).message,
                    transient=True,
                )
                for t in tasks
            ]
        except StepError as exc:  # one reduce over all files: each of them fails with its cause
            return [
                TaskProgress(
                    t,
                    TaskState.FAILED,
                    error=StepError("apply_udf (reduce)", display_name(t.file), exc.cause).message,
                )
                for t in tasks
            ]
        shares: dict[str, list[Record]] = {t.file: [] for t in owner.values()}
        for rec in out:
            found = owner.get(rec.file_name)
            if found is not None:
                shares[found.file].append(rec)
        for file, share in shares.items():
            share.sort(key=lambda r: r.record_index)
            self.store.save_records(entry.folder, file, entry.step.kind, share)
        return []

    # -- results ---------------------------------------------------------------------------
    def final_records(self, records: list[Record], doc: Document | None) -> list[Record]:
        """Records as they appear in the results: hidden fields dropped, the runtime schema
        change applied, text stripped (it is in the ``.ibdoc``)."""
        change = self.ctx.schema_change
        out: list[Record] = []
        for rec in records:
            fields = tuple(f for f in rec.fields if not f.key.startswith("__"))
            if change is not None and fields:  # every record the user will see, whatever its status
                scope = record_scope(rec, self.ctx.runtime_config, with_fields=False)
                fields = change.apply(fields, scope)
            out.append(rec.evolve(fields=fields, text=""))
        return out
