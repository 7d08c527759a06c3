"""Job and task states, their one table of allowed transitions each, and the job roll-up rule.

Every state change in the job system is checked here, by :func:`check_transition`, and applied by
one function per kind in :mod:`flowd.jobs.transitions` (a conditional
``UPDATE … WHERE id = ? AND state = ?`` that writes an event row in the same transaction). Nothing
else writes a state.

Job states (SPEC §6)
--------------------
``QUEUED``
    Accepted, waiting for its first task to start (or, with no tasks yet, for the scheduler to scan
    its input and add them). The scheduler may start its tasks.
``RUNNING``
    At least one task has started and the job has not ended. The scheduler may start its tasks.
``PAUSED``
    No new task of the job starts; tasks already running finish their current step and go back to
    ``QUEUED``. ``resume`` returns the job to ``RUNNING`` (or ``QUEUED`` if nothing ever started).
    If the last running task ends the job while it is paused, the job ends (roll-up).
``STOPPED_AT_CHECKPOINT``
    Nothing can go on until a person looks: a task holds a record that failed a checkpoint's
    validation. ``retry`` with ``retry_type = "checkpoint_failure"`` re-queues those tasks, which
    re-validate the (possibly corrected) records. Ended (status ``DONE`` in the job status API).
``COMPLETE``
    Every task ended well. Final: nothing leaves it.
``FAILED``
    The job could not run, or at least one task failed for good (the others' results are still
    written). ``retry`` re-queues the failed and cancelled tasks, each from the step it stopped at.
``CANCELLED``
    Cancelled by a user: every unfinished task was cancelled (running ones stopped). ``retry``
    re-queues the unfinished tasks.

Task states (one input file's way through a job; a compile job has one task)
----------------------------------------------------------------------------
``QUEUED``
    Ready to start at its next step (``position``), once ``not_before`` has passed.
``RUNNING``
    Claimed by a worker; exactly one attempt of it is open.
``RETRY_WAIT``
    Failed transiently; will be claimed again when ``not_before`` (the backoff) has passed. The
    scheduler claims it like a ``QUEUED`` task once it is due, so a lost timer never strands it.
``WAITING``
    Held at a barrier of its job — before a reduce UDF, or at a checkpoint every file must reach —
    and queued again by the scheduler when the barrier opens.
``CHECKPOINT``
    Stopped after a checkpoint with a failed record; waits for a person (``checkpoint_failure``
    retry of its job).
``DONE``
    Ran every step. Final.
``FAILED``
    Failed for good (a permanent error, or transient ones past the attempt limit).
``CANCELLED``
    Its job was cancelled before it ended.

The engine's :class:`flowd.engine.pipeline.TaskState` is a different thing: the outcome of one call
(``DONE``, ``FAILED``, ``CHECKPOINT``, ``REDUCE``), which the scheduler turns into one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, overload

from flowd.errors import JobStateError


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED_AT_CHECKPOINT = "STOPPED_AT_CHECKPOINT"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class TaskState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    WAITING = "WAITING"
    CHECKPOINT = "CHECKPOINT"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class AttemptOutcome(StrEnum):
    """How one attempt (one claim of a task by a worker) ended; ``None`` while it runs."""

    DONE = "DONE"  # the task ran to its end
    FAILED = "FAILED"  # failed for good
    RETRY = "RETRY"  # failed transiently; the task waits for its backoff
    CHECKPOINT = "CHECKPOINT"  # stopped at a checkpoint with a failed record
    BARRIER = "BARRIER"  # reached a barrier of its job (task WAITING)
    YIELDED = "YIELDED"  # gave the task back after a step (its job was paused)
    CANCELLED = "CANCELLED"  # its job was cancelled
    LOST = "LOST"  # the process running it died (found by crash recovery)


_J = JobState
_T = TaskState

JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        _J.QUEUED: frozenset(
            {_J.RUNNING, _J.PAUSED, _J.CANCELLED, _J.COMPLETE, _J.FAILED, _J.STOPPED_AT_CHECKPOINT}
        ),
        _J.RUNNING: frozenset(
            {_J.PAUSED, _J.CANCELLED, _J.COMPLETE, _J.FAILED, _J.STOPPED_AT_CHECKPOINT}
        ),
        _J.PAUSED: frozenset(
            {
                _J.QUEUED,
                _J.RUNNING,
                _J.CANCELLED,
                _J.COMPLETE,
                _J.FAILED,
                _J.STOPPED_AT_CHECKPOINT,
            }
        ),
        _J.STOPPED_AT_CHECKPOINT: frozenset({_J.QUEUED, _J.CANCELLED}),
        _J.COMPLETE: frozenset(),
        _J.FAILED: frozenset({_J.QUEUED}),
        _J.CANCELLED: frozenset({_J.QUEUED}),
    }
)
"""The only job state changes there are. ``QUEUED → COMPLETE/FAILED/STOPPED_AT_CHECKPOINT`` is
the roll-up of a job whose tasks all settled without it being claimed again (an empty input, a
job that could not run, a retry with nothing left to re-run)."""

TASK_TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = MappingProxyType(
    {
        _T.QUEUED: frozenset({_T.RUNNING, _T.FAILED, _T.CANCELLED}),
        _T.RUNNING: frozenset(
            {
                _T.DONE,
                _T.FAILED,
                _T.RETRY_WAIT,
                _T.QUEUED,
                _T.WAITING,
                _T.CHECKPOINT,
                _T.CANCELLED,
            }
        ),
        _T.RETRY_WAIT: frozenset({_T.RUNNING, _T.QUEUED, _T.CANCELLED}),
        _T.WAITING: frozenset({_T.QUEUED, _T.FAILED, _T.CANCELLED}),
        _T.CHECKPOINT: frozenset({_T.QUEUED, _T.CANCELLED}),
        _T.DONE: frozenset(),
        _T.FAILED: frozenset({_T.QUEUED}),
        _T.CANCELLED: frozenset({_T.QUEUED}),
    }
)
"""The only task state changes there are. ``RUNNING → QUEUED`` is a task given back after a step
(its job was paused) or found running after a crash; ``QUEUED → FAILED`` a file failed without
running (its job could not run)."""

JOB_ACTIVE: frozenset[JobState] = frozenset({_J.QUEUED, _J.RUNNING})
"""Jobs whose tasks the scheduler may start."""

JOB_ENDED: frozenset[JobState] = frozenset(
    {_J.STOPPED_AT_CHECKPOINT, _J.COMPLETE, _J.FAILED, _J.CANCELLED}
)
"""Jobs that have ended (``finished_at`` is set, the status API says ``DONE``, notifications go out).
Only ``COMPLETE`` is final; the others can be retried."""

JOB_FINAL: frozenset[JobState] = frozenset(s for s in _J if not JOB_TRANSITIONS[s])

TASK_CLAIMABLE: frozenset[TaskState] = frozenset({_T.QUEUED, _T.RETRY_WAIT})
"""Tasks a worker may claim once their ``not_before`` has passed."""

TASK_ACTIVE: frozenset[TaskState] = frozenset({_T.QUEUED, _T.RUNNING, _T.RETRY_WAIT})
"""Tasks that will make progress without anyone's help (their job permitting)."""

TASK_ENDED: frozenset[TaskState] = frozenset({_T.DONE, _T.FAILED, _T.CANCELLED})
"""Tasks that ended; ``curProgress`` is the share of a job's tasks in these states."""

TASK_FINAL: frozenset[TaskState] = frozenset(s for s in _T if not TASK_TRANSITIONS[s])

StateKind = Literal["job", "task"]


@overload
def allowed(kind: Literal["job"], from_state: JobState) -> frozenset[JobState]: ...
@overload
def allowed(kind: Literal["task"], from_state: TaskState) -> frozenset[TaskState]: ...
def allowed(kind: StateKind, from_state: JobState | TaskState) -> frozenset[JobState | TaskState]:
    """The states a job or task in ``from_state`` may move to."""
    if kind == "job":
        return frozenset(JOB_TRANSITIONS[JobState(from_state)])
    return frozenset(TASK_TRANSITIONS[TaskState(from_state)])


def check_transition(
    kind: StateKind,
    from_state: JobState | TaskState,
    to_state: JobState | TaskState,
    *,
    job_id: str = "?",
    task_id: int | None = None,
) -> None:
    """Raise :class:`~flowd.errors.JobStateError` unless the table allows ``from_state → to_state``.

    The message names what was asked, from which state, and what is allowed instead — it is what a
    client reads in a 409 response. ``job_id``/``task_id`` name the subject in that message.
    """
    nexts: frozenset[str]
    if kind == "job":
        if not (isinstance(from_state, JobState) and isinstance(to_state, JobState)):
            raise TypeError(f"job states expected, got {from_state!r} -> {to_state!r}")
        nexts = frozenset(JOB_TRANSITIONS[from_state])
    else:
        if not (isinstance(from_state, TaskState) and isinstance(to_state, TaskState)):
            raise TypeError(f"task states expected, got {from_state!r} -> {to_state!r}")
        nexts = frozenset(TASK_TRANSITIONS[from_state])
    if to_state in nexts:
        return
    if not nexts:
        why = f"{from_state} is final"
    elif to_state == from_state:
        why = f"it is {from_state} already"
    else:
        why = f"from {from_state} only {', '.join(sorted(nexts))} are allowed"
    raise JobStateError(job_id, str(from_state), str(to_state), why, task_id=task_id)


def rollup(counts: Mapping[TaskState, int]) -> JobState | None:
    """The state a job's tasks put it in, or ``None`` while the job is not settled.

    - a task still ``QUEUED``/``RUNNING``/``RETRY_WAIT`` → ``None`` (work goes on);
    - else any ``CHECKPOINT`` → ``STOPPED_AT_CHECKPOINT`` (a stop at a checkpoint wins over failed
      files, as in a local run: fixing the records and continuing is what the user will do next);
    - else any ``WAITING`` → ``None`` (a barrier the scheduler has to open);
    - else any ``FAILED`` → ``FAILED``; else any ``CANCELLED`` → ``CANCELLED``;
    - else, with every task ``DONE``, ``COMPLETE``.

    A job with **no tasks** is never settled here (``None``): its input may not have been scanned
    yet, so only the scheduler can tell that an empty job is complete.
    """
    present = {state for state, n in counts.items() if n > 0}
    if not present or present & TASK_ACTIVE:
        return None
    if TaskState.CHECKPOINT in present:
        return JobState.STOPPED_AT_CHECKPOINT
    if TaskState.WAITING in present:
        return None
    if TaskState.FAILED in present:
        return JobState.FAILED
    if TaskState.CANCELLED in present:
        return JobState.CANCELLED
    return JobState.COMPLETE


@dataclass(frozen=True)
class JobAction:
    """A user's command on a job (SPEC §6; the API's pause/resume/cancel/retry endpoints).

    ``sources`` are the job states the command applies to (others get a 409); the job moves to
    ``target``, and its tasks in ``task_sources`` move to ``task_target``.
    """

    name: str
    sources: frozenset[JobState]
    target: JobState
    task_sources: frozenset[TaskState] = frozenset()
    task_target: TaskState | None = None
    label: str = ""  # how a user asks for it, for messages; default: the name

    @property
    def asked(self) -> str:
        return self.label or self.name


JOB_ACTIONS: Mapping[str, JobAction] = MappingProxyType(
    {
        a.name: a
        for a in (
            # Running tasks finish their current step and are given back (RUNNING → QUEUED).
            JobAction("pause", frozenset({_J.QUEUED, _J.RUNNING}), _J.PAUSED),
            # To RUNNING, or back to QUEUED when no task of the job ever started.
            JobAction("resume", frozenset({_J.PAUSED}), _J.RUNNING),
            JobAction(
                "cancel",
                frozenset({_J.QUEUED, _J.RUNNING, _J.PAUSED, _J.STOPPED_AT_CHECKPOINT}),
                _J.CANCELLED,
                TASK_CLAIMABLE | {_T.RUNNING, _T.WAITING, _T.CHECKPOINT},
                _T.CANCELLED,
            ),
            # Unfinished tasks (QUEUED, RETRY_WAIT, WAITING) stay as they are and run again too.
            JobAction(
                "retry",
                frozenset({_J.FAILED, _J.CANCELLED}),
                _J.QUEUED,
                frozenset({_T.FAILED, _T.CANCELLED}),
                _T.QUEUED,
            ),
            JobAction(
                "retry_checkpoint_failure",
                frozenset({_J.STOPPED_AT_CHECKPOINT}),
                _J.QUEUED,
                frozenset({_T.CHECKPOINT}),
                _T.QUEUED,
                'retry with retry_type "checkpoint_failure"',
            ),
        )
    }
)
"""Every action's moves are also in the transition tables; this says which of them a user may ask."""


def check_action(action: JobAction, from_state: JobState, *, job_id: str = "?") -> None:
    """Raise :class:`~flowd.errors.JobStateError` unless ``action`` applies to a job in
    ``from_state``, naming the states it does apply to."""
    if from_state in action.sources:
        return
    sources = " or ".join(sorted(action.sources))
    why = f"{action.asked} applies only to a job that is {sources}"
    if action.name == "retry" and from_state is JobState.STOPPED_AT_CHECKPOINT:
        why += '; continue a job STOPPED_AT_CHECKPOINT with retry_type "checkpoint_failure"'
    raise JobStateError(job_id, str(from_state), str(action.target), why)
