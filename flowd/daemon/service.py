"""The daemon's core, without HTTP: the job store, the scheduler and its workers, the follow-up of
ended jobs, notifications and timers (SPEC §6–§8). The API (:mod:`flowd.api`) and ``flowd serve``
are thin layers over a :class:`Service`.

Threads, and what each owns:

- the **scheduler** thread (:class:`~flowd.jobs.scheduler.Scheduler`) — claims, runs, reports;
- the **finalizer** thread — follows up each job end: writes its output files, stores its
  notifications in the outbox, marks the end as followed up. Driven by the store's
  ``finalized < ends`` list, so an end a crash interrupted is followed up at the next start;
- **APScheduler** (timers only, SPEC §8): delivering due notifications, waking the scheduler when a
  retry's backoff ends, a periodic sweep of the finalizer's list;
- the **sync** workers (:class:`~flowd.daemon.sync.SyncRunner`), started at the first sync request
  and driven from the API's event loop.

The store is the only truth; every thread can be rebuilt from it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from flowd.config import Executor, FlowdConfig
from flowd.daemon.metrics import Metrics
from flowd.daemon.projects import ProjectBuilder, ProjectStatus
from flowd.daemon.sync import SyncRunner
from flowd.daemon.watching import Watches
from flowd.engine.memory_run import InMemory, MemoryRunSettings
from flowd.engine.output import FileResult
from flowd.errors import ConfigError, RunSettingsError, ServiceUnavailableError
from flowd.flows.binary import CompiledBinary
from flowd.jobs.backoff import RetryPolicy
from flowd.jobs.binaries import BinaryCache
from flowd.jobs.compiling import trusted_roots
from flowd.jobs.executors import LocalExecutor
from flowd.jobs.finalize import write_job_outputs
from flowd.jobs.queries import JobRow, JobType
from flowd.jobs.scheduler import Scheduler, pause_flag
from flowd.jobs.states import JOB_ENDED, JobState
from flowd.jobs.store import JobStore
from flowd.jobs.submit import CompileRun, FlowRun, submit_compile, submit_flow_run
from flowd.jobs.summary import failure_message
from flowd.logging import configure
from flowd.notify.dispatcher import Dispatcher
from flowd.notify.outbox import Outbox

log = structlog.get_logger("flowd.daemon")

STORE_FILE = "jobs.sqlite3"
NOTIFY_EVERY_S = 0.5
"""How often due notifications are looked for (one indexed query when there are none)."""
SWEEP_EVERY_S = 5.0
"""How often the finalizer looks for job ends nobody told it about (a safety net)."""
OUTPUT_ATTEMPTS = 12
"""Sweeps (one a minute in all) that try to write an ended job's output files before its end is
followed up without them."""


def worker_count(config: FlowdConfig) -> int:
    """``workers``, or the CPU count for 0."""
    return config.workers or os.cpu_count() or 1


class Service:
    """Everything ``flowd serve`` runs besides the HTTP server. :meth:`start`, then use, then
    :meth:`stop`. Methods called by API requests are thread-safe."""

    def __init__(self, config: FlowdConfig) -> None:
        if config.executor is Executor.DASK:
            raise ConfigError(
                "executor",
                ['executor = "dask" is not available in this version of flowd; use "local"'],
            )
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(config.state_dir / STORE_FILE)
        self.outbox = Outbox(self.store)
        self.binaries = BinaryCache(config.state_dir / "binaries")
        self.pause_flags = config.state_dir / "paused"
        self.metrics = Metrics(self.store, self.outbox)
        self.dispatcher = Dispatcher.from_config(self.outbox, config.webhooks, config.smtp)
        self.workers = worker_count(config)
        self.worker_setup = functools.partial(
            configure, config.log.format.value, config.log.level.value
        )
        self.sync = SyncRunner(self.workers, initializer=self.worker_setup)
        self.projects = ProjectBuilder(config.projects)
        self.watches = Watches(
            config,
            self.store,
            self.submit_run,
            on_event=lambda kind: self.metrics.watcher_events.labels(kind).inc(),
        )
        self.started_at = time.time()
        self._executor: LocalExecutor | None = None
        self._scheduler: Scheduler | None = None
        self._timers = BackgroundScheduler(timezone=UTC)
        self._finalize_now = threading.Event()
        self._stopping = threading.Event()
        self._finalizer: threading.Thread | None = None
        self._output_failures: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        recovered = self.store.recover_after_crash("startup")
        self._sync_pause_flags()
        self._executor = LocalExecutor(
            self.workers, start_method="forkserver", initializer=self.worker_setup
        )
        trusted = [p.root for p in self.config.projects] + list(self.config.udf_roots)
        self._scheduler = Scheduler(
            self.store,
            self._executor,
            self.binaries,
            policy=RetryPolicy(max_attempts=self.config.max_attempts),
            udfs_allowed=trusted_roots(trusted),
            on_settled=self._finalize_now.set,
            on_retry=self._wake_at,
            observe=self.metrics.observe_task,
            pause_flags=self.pause_flags,
        )
        self._scheduler.start()
        self._finalizer = threading.Thread(
            target=self._finalize_loop, name="flowd-finalizer", daemon=True
        )
        # Job ends a crash left without follow-up (results, notifications) are done now, not
        # at the first periodic sweep.
        self._finalize_now.set()
        self._finalizer.start()
        self._timers.add_job(
            self._deliver,
            "interval",
            seconds=NOTIFY_EVERY_S,
            id="notify",
            max_instances=1,
            coalesce=True,
        )
        self._timers.add_job(
            self._finalize_now.set,
            "interval",
            seconds=SWEEP_EVERY_S,
            id="sweep",
            max_instances=1,
            coalesce=True,
        )
        self._timers.start()
        self.projects.start()  # compiles stale projects first: the inboxes' runs need binaries
        self.watches.start()
        log.info(
            "daemon_started",
            state_dir=str(self.config.state_dir),
            workers=self.workers,
            recovered_tasks=len(recovered),
        )

    def stop(self, grace_s: float = 30.0) -> None:
        """Drain: stop taking work, let running tasks finish (up to ``grace_s``), follow up the
        jobs that ended, close everything."""
        self._stopping.set()
        self.watches.stop()  # no new runs; files already taken are in the spool
        self.projects.stop()
        if self._scheduler is not None:
            self._scheduler.stop(grace_s)
        self.sync.close()
        if self._timers.running:
            self._timers.shutdown(wait=True)
        self._finalize_now.set()
        if self._finalizer is not None:
            self._finalizer.join(30)
        self.dispatcher.close()
        self.outbox.close()
        self.store.close()
        log.info("daemon_stopped")

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise ServiceUnavailableError("the daemon is not started")
        return self._scheduler

    # -- timers ----------------------------------------------------------------------------
    def _wake_at(self, at: float) -> None:
        """Wake the scheduler when a retry's backoff ends (it would notice within its idle
        time anyway: the store holds ``not_before``, a lost timer strands nothing)."""
        if self._timers.running and not self._stopping.is_set():
            self._timers.add_job(
                self.scheduler.wake,
                "date",
                run_date=datetime.fromtimestamp(at + 0.01, UTC),
                misfire_grace_time=None,
            )

    def _deliver(self) -> None:
        try:
            self.dispatcher.run_due()
        except Exception:  # the next tick tries again; the outbox keeps every message
            log.exception("notify_failed")

    def deliver_soon(self) -> None:
        if self._timers.running:
            self._timers.modify_job("notify", next_run_time=datetime.now(UTC))

    # -- following up job ends -------------------------------------------------------------
    def _finalize_loop(self) -> None:
        while True:
            self._finalize_now.wait(SWEEP_EVERY_S)
            self._finalize_now.clear()
            try:
                if self.finalize_ended() and not self._stopping.is_set():
                    self.deliver_soon()
            except Exception:
                log.exception("finalize_failed")
            if self._stopping.is_set() and (self._scheduler is None or not self._scheduler_alive()):
                self.finalize_ended()
                return

    def healthy(self) -> str | None:
        """``None`` when the daemon's own threads are alive, else what is wrong (the systemd
        watchdog stops being fed, so systemd restarts a daemon that is stuck)."""
        if self._scheduler is None or not self._scheduler_alive():
            return "the scheduler thread is not running"
        if self._finalizer is None or not self._finalizer.is_alive():
            return "the finalizer thread is not running"
        return None

    def summary(self) -> str:
        """One line for systemd's STATUS=: queue, running tasks, watches."""
        gauges = self.store.gauges()
        watches = self.watches.status()
        return (
            f"{gauges['tasks']['queued']} tasks queued, {gauges['tasks']['running']} running; "
            f"{len(watches)} watches, {sum(w.runs_started for w in watches)} runs started"
        )

    def _scheduler_alive(self) -> bool:
        thread = self._scheduler._thread if self._scheduler is not None else None
        return thread is not None and thread.is_alive()

    def finalize_ended(self) -> int:
        """Follow up every job end not followed up yet; return how many were. A job whose
        output files cannot be written now (a full disk) is left for the next sweep."""
        count = 0
        later: set[str] = set()
        while True:
            jobs = [
                j for j in self.store.jobs_to_finalize(100 + len(later)) if j.job_id not in later
            ]
            if not jobs:
                return count
            for job in jobs:
                if self._follow_up(job):
                    count += 1
                else:
                    later.add(job.job_id)

    def _follow_up(self, job: JobRow) -> bool:
        """Write the job's outputs, store its notifications, mark the end followed up. ``False``
        when the outputs could not be written and it should be tried again later: after
        :data:`OUTPUT_ATTEMPTS` tries the end is followed up anyway, the notification saying
        that the results could not be written (a job never stays pending for ever)."""
        context = {"job_id": job.job_id}
        if job.run_id:
            context["run_id"] = job.run_id
        prefix = (job.settings.get("runtime_config") or {}).get("log_prefix")
        if isinstance(prefix, str) and prefix:
            context["log_prefix"] = prefix
        with structlog.contextvars.bound_contextvars(**context):
            summary: dict[str, int] = {}
            msg = None
            if job.type is JobType.FLOW:
                try:
                    summary = write_job_outputs(self.store, self.binaries, job)
                except OSError as exc:
                    tries = self._output_failures.get(job.job_id, 0) + 1
                    self._output_failures[job.job_id] = tries
                    log.error(
                        "job_outputs_failed",
                        output=job.output_folder,
                        error=str(exc),
                        attempt=tries,
                        gives_up=tries >= OUTPUT_ATTEMPTS,
                    )
                    if tries < OUTPUT_ATTEMPTS:
                        return False
                    msg = f"the results could not be written to {job.output_folder}: {exc}"
            self._output_failures.pop(job.job_id, None)
            if job.state is not JobState.COMPLETE:
                why = failure_message(self.store, job, self.store.job_counts(job.job_id))
                msg = f"{why}; {msg}" if msg else why
            self.outbox.enqueue_job(job, round=job.round, msg=msg)
            if not self.store.mark_finalized(job.job_id, job.ends):
                return True  # it ended again meanwhile: the next pass follows that end up
            log.info("job_ended", status=str(job.state), type=str(job.type), **summary)
            self.watches.followed_up(job)  # a watch's run: its files move on now
            return True

    RELOADABLE = frozenset({"watches", "projects"})
    """Keys a reload (SIGHUP) applies; the others need a restart."""

    def reload(self, config: FlowdConfig) -> dict[str, list[str]]:
        """Apply ``config``'s watches and projects without a restart (running jobs untouched);
        other changed keys are reported, not applied (they need a restart)."""
        ignored = sorted(
            key
            for key in type(config).model_fields
            if key not in self.RELOADABLE and getattr(config, key) != getattr(self.config, key)
        )
        merged = self.config.model_copy(
            update={"watches": config.watches, "projects": config.projects}
        )
        self.config = merged
        self._reload_projects(merged)
        stopped, started = self.watches.reload(merged)
        result = {"watches_stopped": stopped, "watches_started": started, "needs_restart": ignored}
        log.info("config_reloaded", **result)
        return result

    def _reload_projects(self, config: FlowdConfig) -> None:
        """A builder for the new ``[[projects]]`` if they changed (unchanged projects are not
        rewritten by the start-up compile of the new builder)."""
        if config.projects == self.projects.configs:
            return
        old, self.projects = self.projects, ProjectBuilder(config.projects)
        old.stop()
        self.projects.start()

    def status(self) -> dict[str, Any]:
        """What ``flowd status`` shows: the daemon, its queue, its watches and projects."""
        gauges = self.store.gauges()
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "state_dir": str(self.config.state_dir),
            "workers": self.workers,
            "jobs": gauges["jobs"],
            "queue_depth": gauges["tasks"]["queued"],
            "tasks_running": gauges["tasks"]["running"],
            "watches": [dataclasses.asdict(s) for s in self.watches.status()],
            "projects": [dataclasses.asdict(s) for s in self.project_status()],
        }

    def project_status(self) -> list[ProjectStatus]:
        return self.projects.status()

    # -- requests --------------------------------------------------------------------------
    def submit_run(self, run: FlowRun, who: str = "api") -> JobRow:
        job = submit_flow_run(
            self.store,
            self.binaries,
            run,
            default_step_timeout_s=self.config.default_step_timeout_s,
            who=who,
        )
        self._after_submit(job)
        return job

    def submit_compile(self, request: CompileRun, who: str = "api") -> JobRow:
        job = submit_compile(self.store, request, who=who)
        self._after_submit(job)
        return job

    def _after_submit(self, job: JobRow) -> None:
        if self._stopping.is_set():
            return
        if job.state in JOB_ENDED:
            self._finalize_now.set()
        self.scheduler.wake()

    # -- pause flags ------------------------------------------------------------------------
    def _set_pause_flag(self, job_id: str, paused: bool) -> None:
        flag = pause_flag(self.pause_flags, job_id)
        if paused:
            self.pause_flags.mkdir(parents=True, exist_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def _sync_pause_flags(self) -> None:
        """Make the flags agree with the store (a crash may have come between the two)."""
        paused = {j.job_id for j in self.store.list_jobs(status=JobState.PAUSED, limit=1000).jobs}
        if self.pause_flags.is_dir():
            for flag in self.pause_flags.glob("*.paused"):
                if flag.name.removesuffix(".paused") not in paused:
                    flag.unlink(missing_ok=True)
        for job_id in paused:
            self._set_pause_flag(job_id, True)

    # -- commands ----------------------------------------------------------------------------
    def pause(self, job_id: str, who: str = "api") -> JobRow:
        """No new task of the job starts; running ones stop after their current step (they
        see the job's pause flag between steps) and go back to the queue."""
        job = self.store.pause_job(job_id, who)
        self._set_pause_flag(job_id, True)
        return job

    def resume(self, job_id: str, who: str = "api") -> JobRow:
        job = self.store.resume_job(job_id, who)
        self._set_pause_flag(job_id, False)
        self.scheduler.check_jobs([job_id])
        return job

    def cancel(self, job_id: str, who: str = "api") -> JobRow:
        cancelled = self.store.cancel_job(job_id, who)
        self._set_pause_flag(job_id, False)
        self.scheduler.cancelled(job_id, cancelled.stopped)
        self._finalize_now.set()
        return cancelled.job

    def retry(self, job_id: str, *, checkpoint_failure: bool = False, who: str = "api") -> JobRow:
        job = self.store.retry_job(job_id, who, checkpoint_failure=checkpoint_failure)
        self.scheduler.check_jobs([job_id])
        if job.state in JOB_ENDED:  # nothing was left to re-run: it ended again at once
            self._finalize_now.set()
        return job

    async def run_sync(
        self,
        binary: CompiledBinary,
        documents: Sequence[tuple[str, bytes]],
        settings: MemoryRunSettings,
    ) -> tuple[FileResult, ...]:
        """Run ``documents`` in memory on a sync worker (killed at the sync limit: the files then
        fail with a timeout). Call it on the API's event loop."""
        if self._stopping.is_set():
            raise ServiceUnavailableError("the daemon is shutting down; try again later")
        names = [name for name, _ in documents]
        if len(set(names)) != len(names):
            raise RunSettingsError("file names must be unique within one call")
        started = time.perf_counter()
        results = await self.sync.run(binary, InMemory(tuple(documents), settings))
        self.metrics.sync_seconds.observe(time.perf_counter() - started)
        return results
