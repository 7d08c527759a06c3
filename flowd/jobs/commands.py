"""A user's commands on a job — pause, resume, cancel, retry (SPEC §6; the API's endpoints).

Each command is a :class:`~flowd.jobs.states.JobAction` of :mod:`flowd.jobs.states`: the job states
it applies to, the state the job moves to, and which of its tasks move with it. All of that is
applied in one write transaction by :meth:`CommandsMixin._act`, through
:func:`~flowd.jobs.transitions.move_job` and :func:`~flowd.jobs.transitions.move_task`.
"""

from __future__ import annotations

from collections.abc import Callable

from flowd.jobs.database import Database
from flowd.jobs.queries import Cancelled, JobRow, read_job
from flowd.jobs.states import JOB_ACTIONS, JOB_ENDED, JobAction, JobState, TaskState, check_action
from flowd.jobs.transitions import TaskUpdate, move_job, move_task, roll_up


class CommandsMixin:
    """:class:`~flowd.jobs.store.JobStore`'s commands on a job."""

    _db: Database
    _clock: Callable[[], float]

    def pause_job(self, job_id: str, who: str, why: str = "paused") -> JobRow:
        """No new task of the job starts; running ones finish their step (SPEC §6)."""
        return self._act(JOB_ACTIONS["pause"], job_id, who, why).job

    def resume_job(self, job_id: str, who: str, why: str = "resumed") -> JobRow:
        """A paused job goes on: ``RUNNING``, or ``QUEUED`` if no task of it ever started."""
        return self._act(JOB_ACTIONS["resume"], job_id, who, why).job

    def cancel_job(self, job_id: str, who: str, why: str = "cancelled") -> Cancelled:
        """The job ends ``CANCELLED`` and so does every unfinished task, running ones included
        (their attempts close as ``CANCELLED``; a worker's late report then meets a
        :class:`~flowd.errors.JobStateError`). ``stopped`` lists the tasks whose workers the
        scheduler must stop."""
        return self._act(JOB_ACTIONS["cancel"], job_id, who, why)

    def retry_job(
        self, job_id: str, who: str, why: str = "retried", *, checkpoint_failure: bool = False
    ) -> JobRow:
        """Re-run a ``FAILED`` or ``CANCELLED`` job's failed and cancelled tasks, each from the step
        it stopped at, with a fresh attempt budget; with ``checkpoint_failure``, continue a job
        ``STOPPED_AT_CHECKPOINT`` (its tasks at the checkpoint re-validate their records)."""
        action = JOB_ACTIONS["retry_checkpoint_failure" if checkpoint_failure else "retry"]
        return self._act(action, job_id, who, why).job

    def _act(self, action: JobAction, job_id: str, who: str, why: str) -> Cancelled:
        """Check ``action`` against the job's state, move the job, then its tasks in
        ``action.task_sources``, and roll up once at the end — all in one transaction."""
        now = self._clock()
        with self._db.write() as conn:
            job = read_job(conn, job_id)
            check_action(action, job.state, job_id=job_id)
            target = action.target
            if action.name == "resume" and job.started_at is None:
                target = JobState.QUEUED
            move_job(conn, job_id, target, who, why, now, expect=job.state)
            stopped: list[int] = []
            if action.task_target is not None:
                marks = ", ".join("?" * len(action.task_sources))
                rows = conn.execute(
                    f"SELECT task_id, state FROM tasks WHERE job_id = ? AND state IN ({marks}) "
                    "ORDER BY ordinal",
                    (job_id, *action.task_sources),
                ).fetchall()
                fresh = TaskUpdate(attempts=0, not_before=0.0)
                for task_id, state in rows:
                    if state == TaskState.RUNNING:
                        stopped.append(task_id)
                    update = fresh if action.name == "retry" else TaskUpdate()
                    move_task(
                        conn, task_id, action.task_target, who, why, now, update, settle=False
                    )
            if target not in JOB_ENDED:
                roll_up(conn, job_id, who, now)
            return Cancelled(read_job(conn, job_id), tuple(stopped))
