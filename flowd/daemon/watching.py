"""The daemon's inboxes: one :class:`~flowd.daemon.inbox.Inbox` per ``[[watches]]`` table, their
runs submitted as jobs, and each run's files moved on when its job has ended (SPEC §8).

The job id of a watch's run is its run id, which also names its spool folder
(``input_dir/.flowd/processing/<run_id>/``): after a crash, spool folders and jobs are matched by
name alone. The files of a run are moved on (done, failed, kept) only after the job's end has been
followed up — its results are written — so a file is never archived before its result exists.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from flowd.config import FlowdConfig, WatchConfig
from flowd.daemon.inbox import PROCESSING, RESCAN_S, Inbox, InboxStatus, RunState, spool
from flowd.errors import JobNotFoundError
from flowd.jobs.queries import JobRow
from flowd.jobs.states import JOB_ENDED
from flowd.jobs.store import JobStore
from flowd.jobs.submit import FlowRun

log = structlog.get_logger("flowd.watch")

SubmitRun = Callable[[FlowRun, str], JobRow]


class Watches:
    """All inboxes of one configuration; :meth:`reload` swaps them for another's."""

    def __init__(
        self,
        config: FlowdConfig,
        store: JobStore,
        submit_run: SubmitRun,
        *,
        on_event: Callable[[str], None] | None = None,
        rescan_s: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.submit_run = submit_run
        self.on_event = on_event
        self.rescan_s = rescan_s
        self._inboxes: dict[str, Inbox] = {}
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for watch in self.config.watches:
            self._start(watch)

    def _start(self, watch: WatchConfig) -> None:
        inbox = Inbox(
            watch,
            self._submit,
            self._lookup,
            kept_hashes=self.config.state_dir / "kept" / f"{watch.name}.sha256",
            on_event=self.on_event,
            rescan_s=RESCAN_S if self.rescan_s is None else self.rescan_s,
        )
        try:
            inbox.start()
        except OSError as exc:  # an inbox that cannot be created must not stop the others
            log.error("watch_failed_to_start", watch=watch.name, error=str(exc))
            return
        with self._lock:
            self._inboxes[watch.name] = inbox

    def stop(self) -> None:
        with self._lock:
            inboxes, self._inboxes = list(self._inboxes.values()), {}
        for inbox in inboxes:
            inbox.stop()

    def reload(self, config: FlowdConfig) -> tuple[list[str], list[str]]:
        """Use ``config``'s watches: stop the ones gone or changed, start the new or changed
        ones; running jobs are untouched. Returns the names stopped and started."""
        new = {w.name: w for w in config.watches}
        with self._lock:
            old = dict(self._inboxes)
        stopped = [n for n, i in old.items() if new.get(n) != i.watch]
        for name in stopped:
            old[name].stop()
            with self._lock:
                self._inboxes.pop(name, None)
        self.config = config
        started = [n for n, w in new.items() if n not in old or n in stopped]
        for name in started:
            self._start(new[name])
        return stopped, started

    def status(self) -> list[InboxStatus]:
        with self._lock:
            return [i.status() for i in self._inboxes.values()]

    def inbox(self, name: str) -> Inbox:
        with self._lock:
            return self._inboxes[name]

    # -- runs ------------------------------------------------------------------------------
    def _submit(self, watch: WatchConfig, run_id: str, folder: Path, files: list[str]) -> None:
        s = watch.settings
        run = FlowRun(
            binary_path=self.config.binary_for(watch),
            input_dir=folder,
            output_dir=watch.output_dir,
            job_id=run_id,
            run_id=run_id,
            output_has_run_id=s.output_has_run_id,
            delete_out_dir=s.delete_out_dir,
            log_to_timeline=s.log_to_timeline,
            save_binary_to_output=s.save_binary_to_output,
            runtime_config=dict(s.runtime_config),
            step_timeout=s.step_timeout,
            priority=s.priority,
            tags=tuple(s.tags),
            pipeline_ids=tuple(s.pipeline_ids),
            notification_emails=tuple(s.notification_emails),
            webhook_config=s.webhook_config.model_dump() if s.webhook_config else None,
            files=files,
        )
        self.submit_run(run, f"watch:{watch.name}")

    def _lookup(self, run_id: str) -> RunState:
        try:
            job = self.store.get_job(run_id)
        except JobNotFoundError:
            return RunState(False)
        if job.state not in JOB_ENDED or job.finalized < job.ends:
            return RunState(True)
        return RunState(True, True, self._outcomes(job))

    def _outcomes(self, job: JobRow) -> tuple[tuple[str, str, str | None], ...]:
        return tuple((t.file, str(t.state), t.error) for t in self.store.tasks(job.job_id))

    def followed_up(self, job: JobRow) -> None:
        """A job's end was followed up: if it is a watch's run, move its files on."""
        if job.input_dir is None or job.run_id is None:
            return
        folder = Path(job.input_dir)
        with self._lock:
            inboxes = list(self._inboxes.values())
        for inbox in inboxes:
            if folder.parent == spool(inbox.watch, PROCESSING):
                inbox.finish(folder.name, self._outcomes(job))
                return
