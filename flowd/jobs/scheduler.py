"""The scheduler: the loop that runs the job store's tasks on an executor (SPEC §6).

One thread owns it. Each turn it

1. applies what other threads asked for (a cancelled job's running work is dropped — its worker
   killed —, jobs to look at again after a resume or retry);
2. claims as many tasks as the executor has room for, in the store's order (highest priority,
   then oldest job, then task order; paused and ended jobs are never claimed), and submits each as
   an engine call; a compile job's task goes to a compile thread instead;
3. waits for finished work (or to be woken) and reports every outcome in one transaction:
   ``DONE``; ``FAILED`` — or ``RETRY_WAIT`` with a backoff when the failure is transient and
   attempts remain (:class:`~flowd.jobs.backoff.RetryPolicy`); ``CHECKPOINT`` for a record that
   failed a checkpoint; ``WAITING`` at a barrier; ``QUEUED`` again for a task that stopped after
   a step because its job was paused (the pause flag, :func:`pause_flag`, which workers check
   between steps);
4. opens barriers: when a job's tasks have all settled or wait at a checkpoint that every record
   passed, the waiting ones are re-queued to go past it; tasks waiting before a reduce UDF get the
   reduce run over all of them, then go on.

The store is the only truth: everything here can be rebuilt from it, which is what happens after
a restart (tasks left ``RUNNING`` by a dead daemon are re-queued by
:meth:`~flowd.jobs.store.JobStore.recover_after_crash` before the scheduler starts, barriers are
re-examined, a lost reduce is run again). A task's steps write their outputs as they finish, so a
re-run task continues from its first unfinished step.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import queue
import socket
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from flowd.engine.executor import Advance, Call, Reduce
from flowd.engine.output import file_result
from flowd.engine.pipeline import TaskProgress
from flowd.engine.pipeline import TaskState as Step
from flowd.engine.run import FolderRunnerFactory, hard_timeout, run_context
from flowd.engine.settings import RunSettings, check_runtime_config
from flowd.errors import FlowdError
from flowd.fsutil import display_name
from flowd.jobs.backoff import RetryPolicy
from flowd.jobs.binaries import BinaryCache
from flowd.jobs.compiling import CompileOutcome, run_compile
from flowd.jobs.executors import Done, RunSpec, TaskExecutor, Work
from flowd.jobs.queries import Claim, JobRow, JobType, TaskRow
from flowd.jobs.scheduling import Report
from flowd.jobs.states import JOB_ACTIVE, TaskState
from flowd.jobs.store import JobStore
from flowd.jobs.transitions import TaskUpdate

log = structlog.get_logger("flowd.scheduler")

CHECKPOINT_BARRIER = "checkpoint"
REDUCE_BARRIER = "reduce"
BATCH_WAIT_S = 0.002
"""How long a busy scheduler lets outcomes gather before reporting them."""
RUNTIMES_KEPT = 64
"""Jobs whose run set-up (binary, context) the scheduler keeps ready."""


@dataclass(frozen=True)
class _Runtime:
    job: JobRow
    spec: RunSpec | None  # None: a compile job
    flows_type: bool
    error: str | None = None  # why the job cannot run (its binary is gone, …)


@dataclass(frozen=True)
class _InFlight:
    job_id: str
    tasks: tuple[TaskRow, ...]
    call: Call
    flows_type: bool


ProgressObserver = Callable[[str, TaskProgress], None]


def _noop() -> None:
    return None


class Scheduler:
    """Runs the store's tasks on ``executor``; see the module docstring for the loop.

    ``on_settled`` is called (on the scheduler thread) after outcomes were written — a job may
    have ended; ``on_retry(at)`` when a task will be due again at Unix time ``at`` (a timer can
    wake the scheduler then; without one it notices within ``idle_s``); ``observe(job_id,
    progress)`` for metrics. ``udfs_allowed`` gates compile jobs (:mod:`flowd.jobs.compiling`).
    """

    def __init__(
        self,
        store: JobStore,
        executor: TaskExecutor,
        binaries: BinaryCache,
        *,
        policy: RetryPolicy,
        udfs_allowed: Callable[[Path], bool],
        name: str = "scheduler",
        on_settled: Callable[[], None] = _noop,
        on_retry: Callable[[float], None] | None = None,
        observe: ProgressObserver | None = None,
        idle_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        pause_flags: Path | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.binaries = binaries
        self.policy = policy
        self.udfs_allowed = udfs_allowed
        self.name = name
        self.on_settled = on_settled
        self.on_retry = on_retry
        self.observe = observe
        self.idle_s = idle_s
        self._clock = clock
        self.pause_flags = pause_flags
        self._ids = itertools.count(1)
        self._inflight: dict[int, _InFlight] = {}
        self._task_work: dict[int, int] = {}
        self._reducing: dict[str, set[int]] = defaultdict(set)
        self._barred: set[str] = set()  # jobs with tasks WAITING at a barrier
        self._runtimes: OrderedDict[str, _Runtime] = OrderedDict()
        self._compiles: ThreadPoolExecutor | None = None
        self._compiling: dict[int, TaskRow] = {}
        self._compiled: queue.SimpleQueue[tuple[TaskRow, CompileOutcome]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._cancels: list[tuple[str, tuple[int, ...]]] = []
        self._checks: set[str] = set()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._grace_until = 0.0
        self.turns = 0

    # -- other threads ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop on its own thread, after re-examining every active job's barriers."""
        self._checks.update(self.store.active_job_ids())
        self._compiles = ThreadPoolExecutor(1, thread_name_prefix="flowd-compile")
        self._thread = threading.Thread(target=self._run, name="flowd-scheduler", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Make the loop take a turn now (new work, a resumed job, a timer)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def check_jobs(self, job_ids: Iterable[str]) -> None:
        """Look at these jobs again (after a resume or retry: a barrier may be open now)."""
        with self._lock:
            self._checks.update(job_ids)
        self.wake()

    def cancelled(self, job_id: str, task_ids: Iterable[int]) -> None:
        """The store cancelled ``job_id``; stop its running work (``task_ids`` from
        :meth:`~flowd.jobs.store.JobStore.cancel_job`) and any reduce it has running."""
        with self._lock:
            self._cancels.append((job_id, tuple(task_ids)))
        self.wake()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop claiming; let running work finish for up to ``grace_s`` seconds, then stop the
        workers. Tasks still running go back to ``QUEUED`` in the store (they continue from
        their first unfinished step at the next start)."""
        self._grace_until = time.monotonic() + grace_s
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(grace_s + 30)
        if self._compiles is not None:
            self._compiles.shutdown(wait=True, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()

    @property
    def busy(self) -> int:
        return self.executor.busy + len(self._compiling)

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        log.info("scheduler_started", capacity=self.executor.capacity)
        try:
            while True:
                try:
                    if not self._turn():
                        break
                except Exception:  # a bug or a broken store must not stop scheduling for good
                    log.exception("scheduler_error")
                    self._stopping.wait(1.0)
        finally:
            self._shutdown()
            self._stopped.set()

    def _turn(self) -> bool:
        self.turns += 1
        self._apply_requests()
        stopping = self._stopping.is_set()
        if stopping and (self.busy == 0 or time.monotonic() >= self._grace_until):
            return False
        free = self.executor.capacity - self.executor.busy
        claims = [] if stopping or free <= 0 else self.store.claim_tasks(self.name, free)
        for claim in claims:
            self._dispatch(claim)
        full = bool(claims) and len(claims) == free
        done = self.executor.poll(0.0 if full else self.idle_s, wake=self._wake_r)
        if done and self.executor.busy >= self.executor.capacity // 2 >= 2:
            # Deep queues: the workers hold more calls, so let outcomes gather for a moment and
            # report them in one transaction (a turn costs about as much for one as for twenty).
            self._stopping.wait(BATCH_WAIT_S)
            done += self.executor.poll(0.0)
        self._drain_wake()
        reports: list[Report] = []
        touched: set[str] = set()
        for finished in done:
            reports += self._outcome(finished, touched)
        while True:
            try:
                task, outcome = self._compiled.get_nowait()
            except queue.Empty:
                break
            self._compiling.pop(task.task_id, None)
            reports.append(self._compile_report(task, outcome))
        if reports:
            self._report(reports)
            self.on_settled()
        with self._lock:
            checks, self._checks = self._checks, set()
        for job_id in (touched & self._barred) | checks:
            self._open_barriers(job_id)
        return True

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _apply_requests(self) -> None:
        with self._lock:
            cancels, self._cancels = self._cancels, []
        drop: set[int] = set()
        for job_id, task_ids in cancels:
            for task_id in task_ids:
                work_id = self._task_work.pop(task_id, None)
                if work_id is not None:
                    drop.add(work_id)
            drop |= self._reducing.pop(job_id, set())
            self._runtimes.pop(job_id, None)
        if drop:
            self.executor.drop(drop)
            for work_id in drop:
                self._inflight.pop(work_id, None)
            log.info("work_dropped", count=len(drop))

    # -- claims ----------------------------------------------------------------------------
    def _runtime(self, job_id: str) -> _Runtime:
        found = self._runtimes.get(job_id)
        if found is not None:
            self._runtimes.move_to_end(job_id)
            return found
        job = self.store.get_job(job_id)
        runtime = self._build_runtime(job)
        self._runtimes[job_id] = runtime
        while len(self._runtimes) > RUNTIMES_KEPT:
            self._runtimes.popitem(last=False)
        return runtime

    def _build_runtime(self, job: JobRow) -> _Runtime:
        if job.type is JobType.COMPILE:
            return _Runtime(job, None, False)
        s = job.settings
        try:
            binary = self.binaries.get(str(s["binary_sha256"]))
            settings = RunSettings(
                output_has_run_id=bool(s.get("output_has_run_id")),
                log_to_timeline=bool(s.get("log_to_timeline")),
                save_binary_to_output=bool(s.get("save_binary_to_output", True)),
                runtime_config=dict(s.get("runtime_config") or {}),
                step_timeout_s=s.get("step_timeout_s"),
                max_file_mb=float(s.get("max_file_mb", 50)),
            )
            schema = check_runtime_config(settings.runtime_config, binary)
            assert job.output_folder is not None and job.input_dir is not None
            assert job.run_id is not None
            input_dir = Path(job.input_dir)
            flag = pause_flag(self.pause_flags, job.job_id) if self.pause_flags else None
            ctx = run_context(
                job.job_id,
                job.run_id,
                Path(job.output_folder),
                input_dir,
                settings,
                schema,
                str(flag) if flag else None,
            )
            factory = FolderRunnerFactory(binary.data, binary.name, ctx, input_dir)
            spec = RunSpec(job.job_id, factory, hard_timeout(binary, ctx.step_timeout_s))
            return _Runtime(job, spec, binary.plan.binary_type.value == "Flows")
        except (FlowdError, KeyError, ValueError) as exc:
            message = exc.message if isinstance(exc, FlowdError) else f"bad job settings: {exc}"
            return _Runtime(job, None, False, error=f"the job cannot run: {message}")

    def _dispatch(self, claim: Claim) -> None:
        task = claim.task
        runtime = self._runtime(task.job_id)
        if runtime.job.type is JobType.COMPILE:
            assert self._compiles is not None
            self._compiling[task.task_id] = task
            future = self._compiles.submit(run_compile, runtime.job, self.udfs_allowed)
            future.add_done_callback(functools.partial(self._compile_finished, task))
            return
        if runtime.spec is None:
            self._report(
                [
                    Report(
                        task.task_id,
                        TaskState.FAILED,
                        runtime.error or "cannot run",
                        update=TaskUpdate(error=runtime.error),
                    )
                ]
            )
            self.on_settled()
            return
        release = isinstance(task.result, dict) and bool(task.result.get("release"))
        # A task's first attempt starts fresh: an output folder reused by a new job (no run id,
        # no delete_out_dir) holds the previous job's step outputs, which must not be resumed.
        call = Advance(task.task, fresh=claim.first and not release, release=release)
        work_id = next(self._ids)
        self._inflight[work_id] = _InFlight(task.job_id, (task,), call, runtime.flows_type)
        self._task_work[task.task_id] = work_id
        self.executor.submit(Work(work_id, runtime.spec, call))

    def _compile_finished(self, task: TaskRow, future: Future[CompileOutcome]) -> None:
        try:
            outcome = future.result()
        except BaseException as exc:  # a bug in the compiler: the job fails, the daemon lives
            message = f"internal error while compiling: {type(exc).__name__}: {exc}"
            outcome = CompileOutcome(False, {"problems": [message]}, message)
        self._compiled.put((task, outcome))
        self.wake()

    def _compile_report(self, task: TaskRow, outcome: CompileOutcome) -> Report:
        if outcome.ok:
            return Report(
                task.task_id, TaskState.DONE, "compiled", update=TaskUpdate(result=outcome.result)
            )
        return Report(
            task.task_id,
            TaskState.FAILED,
            "compile failed",
            update=TaskUpdate(error=outcome.error, result=outcome.result),
        )

    # -- outcomes --------------------------------------------------------------------------
    def _outcome(self, done: Done, touched: set[str]) -> list[Report]:
        flight = self._inflight.pop(done.work_id, None)
        if flight is None:  # dropped (its job was cancelled) after it finished
            return []
        touched.add(flight.job_id)
        if isinstance(flight.call, Reduce):
            self._reducing[flight.job_id].discard(done.work_id)
            return self._reduce_reports(flight, done.progress)
        task = flight.tasks[0]
        self._task_work.pop(task.task_id, None)
        progress = done.progress[0]
        if self.observe is not None:
            self.observe(flight.job_id, progress)
        report = self._task_report(task, progress, flight.flows_type)
        if report.to is TaskState.WAITING:
            self._barred.add(flight.job_id)  # only such jobs need _open_barriers
        return [report]

    def _task_report(self, task: TaskRow, p: TaskProgress, flows_type: bool) -> Report:
        result = file_result(task.task, p, flows_type).to_dict()
        if p.state is Step.DONE:
            errors = sum(1 for r in p.records for f in r.fields if f.error_msg is not None)
            update = TaskUpdate(
                position=p.position,
                route=p.route,
                records=len(p.records),
                runtime_errors=errors,
                result=result,
            )
            return Report(task.task_id, TaskState.DONE, "done", update=update)
        if p.state is Step.FAILED:
            error = p.error or f"{display_name(task.file)}: failed"
            retry_at = self.policy.retry_at(task.attempts, p.transient, self._clock())
            if retry_at is not None:
                if self.on_retry is not None:
                    self.on_retry(retry_at)
                update = TaskUpdate(not_before=retry_at, error=error)
                return Report(
                    task.task_id, TaskState.RETRY_WAIT, f"transient failure: {error}", update=update
                )
            why = "failed" if not p.transient else f"failed after {task.attempts} attempts"
            return Report(
                task.task_id, TaskState.FAILED, why, update=TaskUpdate(error=error, result=result)
            )
        if p.state is Step.YIELDED:
            update = TaskUpdate(position=p.position, route=p.route)
            why = "given back after a step: its job is paused"
            return Report(task.task_id, TaskState.QUEUED, why, update=update)
        if p.state is Step.CHECKPOINT and p.checkpoint_failed:
            update = TaskUpdate(
                position=p.position, route=p.route, records=len(p.records), result=result
            )
            return Report(
                task.task_id, TaskState.CHECKPOINT, "a record failed a checkpoint", update=update
            )
        barrier = CHECKPOINT_BARRIER if p.state is Step.CHECKPOINT else REDUCE_BARRIER
        update = TaskUpdate(position=p.position, route=p.route, result={"barrier": barrier})
        return Report(task.task_id, TaskState.WAITING, f"at a {barrier} barrier", update=update)

    def _reduce_reports(
        self, flight: _InFlight, failures: tuple[TaskProgress, ...]
    ) -> list[Report]:
        if not failures:  # the reduce wrote every task's share: they go on past it
            return [
                Report(
                    t.task_id,
                    TaskState.QUEUED,
                    "reduce done",
                    expect=TaskState.WAITING,
                    update=TaskUpdate(result={}),
                )
                for t in flight.tasks
            ]
        by_key = {p.task.key: p for p in failures}
        reports = []
        for t in flight.tasks:
            p = by_key.get(t.key)
            error = (p.error if p else None) or f"{display_name(t.file)}: the reduce UDF failed"
            result = file_result(t.task, p, flight.flows_type).to_dict() if p else None
            reports.append(
                Report(
                    t.task_id,
                    TaskState.FAILED,
                    "reduce failed",
                    expect=TaskState.WAITING,
                    update=TaskUpdate(error=error, result=result),
                )
            )
        return reports

    def _report(self, reports: list[Report]) -> None:
        refused = self.store.report(reports, self.name)
        for report, exc in refused:
            log.info("late_result_dropped", task_id=report.task_id, why=exc.message)

    # -- barriers --------------------------------------------------------------------------
    def _open_barriers(self, job_id: str) -> None:
        """Open the job's barrier if every task has reached it (see the module docstring)."""
        if self._reducing.get(job_id):
            return
        where = self.store.barrier(job_id)
        if where == "none":
            self._barred.discard(job_id)
            return
        self._barred.add(job_id)
        if where == "blocked":
            return
        try:
            job = self.store.get_job(job_id)
        except FlowdError:
            return
        if job.state not in JOB_ACTIVE:
            return
        waiting = self.store.tasks(job_id, TaskState.WAITING)
        if not waiting:
            return
        held = [t for t in waiting if _barrier(t) == CHECKPOINT_BARRIER]
        if held:
            release = TaskUpdate(result={"barrier": CHECKPOINT_BARRIER, "release": True})
            self._report(
                [
                    Report(
                        t.task_id,
                        TaskState.QUEUED,
                        "checkpoint passed by every record",
                        expect=TaskState.WAITING,
                        update=release,
                    )
                    for t in held
                ]
            )
            log.info("barrier_opened", job_id=job_id, barrier=CHECKPOINT_BARRIER, tasks=len(held))
            self.wake()
            return
        runtime = self._runtime(job_id)
        if runtime.spec is None:
            return
        groups: dict[tuple[str | None, str | None, int], list[TaskRow]] = defaultdict(list)
        for t in waiting:
            groups[(t.flow, t.route, t.position)].append(t)
        for (_flow, route, position), tasks in sorted(
            groups.items(), key=lambda kv: (kv[0][2], str(kv[0][0]), str(kv[0][1]))
        ):
            call = Reduce(tuple(t.task for t in tasks), position, route)
            work_id = next(self._ids)
            self._inflight[work_id] = _InFlight(job_id, tuple(tasks), call, runtime.flows_type)
            self._reducing[job_id].add(work_id)
            self.executor.submit(Work(work_id, runtime.spec, call))
        log.info("barrier_opened", job_id=job_id, barrier=REDUCE_BARRIER, tasks=len(waiting))

    # -- stopping --------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Give the tasks still running back to the store and stop the workers."""
        running = [f.tasks[0] for f in self._inflight.values() if isinstance(f.call, Advance)]
        self.executor.close(now=bool(self._inflight))
        if running:
            with contextlib.suppress(Exception):
                self._report(
                    [Report(t.task_id, TaskState.QUEUED, "daemon stopping") for t in running]
                )
            log.info("tasks_given_back", count=len(running))
        self._inflight.clear()
        log.info("scheduler_stopped")


def pause_flag(folder: Path, job_id: str) -> Path:
    """The file whose existence asks the job's running tasks to stop after their current step
    (``<job_id>.paused``: job ids are file-name safe, and the suffix keeps ``.``/``..`` harmless)."""
    return folder / f"{job_id}.paused"


def _barrier(task: TaskRow) -> Any:
    return task.result.get("barrier") if isinstance(task.result, dict) else None
