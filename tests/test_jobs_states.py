"""The job and task transition tables, checked pair by pair against the SPEC's written intent."""

from __future__ import annotations

import itertools
import re

import pytest

from flowd.errors import JobStateError
from flowd.jobs.states import (
    JOB_ACTIONS,
    JOB_ACTIVE,
    JOB_ENDED,
    JOB_FINAL,
    JOB_TRANSITIONS,
    TASK_ACTIVE,
    TASK_CLAIMABLE,
    TASK_ENDED,
    TASK_FINAL,
    TASK_TRANSITIONS,
    JobState,
    TaskState,
    allowed,
    check_action,
    check_transition,
    rollup,
)

J = JobState
T = TaskState

# Written out independently of the module: a change to the table must be made here too, on purpose.
JOB_ALLOWED = {
    (J.QUEUED, J.RUNNING),
    (J.QUEUED, J.PAUSED),
    (J.QUEUED, J.CANCELLED),
    (J.QUEUED, J.COMPLETE),
    (J.QUEUED, J.FAILED),
    (J.QUEUED, J.STOPPED_AT_CHECKPOINT),
    (J.RUNNING, J.PAUSED),
    (J.RUNNING, J.CANCELLED),
    (J.RUNNING, J.COMPLETE),
    (J.RUNNING, J.FAILED),
    (J.RUNNING, J.STOPPED_AT_CHECKPOINT),
    (J.PAUSED, J.QUEUED),
    (J.PAUSED, J.RUNNING),
    (J.PAUSED, J.CANCELLED),
    (J.PAUSED, J.COMPLETE),
    (J.PAUSED, J.FAILED),
    (J.PAUSED, J.STOPPED_AT_CHECKPOINT),
    (J.STOPPED_AT_CHECKPOINT, J.QUEUED),
    (J.STOPPED_AT_CHECKPOINT, J.CANCELLED),
    (J.FAILED, J.QUEUED),
    (J.CANCELLED, J.QUEUED),
}

TASK_ALLOWED = {
    (T.QUEUED, T.RUNNING),
    (T.QUEUED, T.FAILED),
    (T.QUEUED, T.CANCELLED),
    (T.RUNNING, T.DONE),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.RETRY_WAIT),
    (T.RUNNING, T.QUEUED),
    (T.RUNNING, T.WAITING),
    (T.RUNNING, T.CHECKPOINT),
    (T.RUNNING, T.CANCELLED),
    (T.RETRY_WAIT, T.RUNNING),
    (T.RETRY_WAIT, T.QUEUED),
    (T.RETRY_WAIT, T.CANCELLED),
    (T.WAITING, T.QUEUED),
    (T.WAITING, T.FAILED),
    (T.WAITING, T.CANCELLED),
    (T.CHECKPOINT, T.QUEUED),
    (T.CHECKPOINT, T.CANCELLED),
    (T.FAILED, T.QUEUED),
    (T.CANCELLED, T.QUEUED),
}


def test_tables_cover_every_state() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert {(a, b) for a, nexts in JOB_TRANSITIONS.items() for b in nexts} == JOB_ALLOWED
    assert {(a, b) for a, nexts in TASK_TRANSITIONS.items() for b in nexts} == TASK_ALLOWED


@pytest.mark.parametrize(("a", "b"), list(itertools.product(JobState, JobState)))
def test_every_job_state_pair(a: JobState, b: JobState) -> None:
    if (a, b) in JOB_ALLOWED:
        check_transition("job", a, b, job_id="j1")
        return
    with pytest.raises(JobStateError) as caught:
        check_transition("job", a, b, job_id="j1")
    err = caught.value
    assert (err.job_id, err.from_state, err.to_state, err.task_id) == ("j1", a, b, None)
    message = str(err)
    assert message.startswith(f"job j1: cannot go from {a} to {b}: ")
    if not JOB_TRANSITIONS[a]:
        assert message.endswith(f"{a} is final")
    elif a == b:
        assert message.endswith(f"it is {a} already")
    else:  # says what is allowed instead
        assert message.endswith(f"only {', '.join(sorted(JOB_TRANSITIONS[a]))} are allowed")


@pytest.mark.parametrize(("a", "b"), list(itertools.product(TaskState, TaskState)))
def test_every_task_state_pair(a: TaskState, b: TaskState) -> None:
    if (a, b) in TASK_ALLOWED:
        check_transition("task", a, b, job_id="j1", task_id=7)
        return
    with pytest.raises(JobStateError, match=f"^task 7 of job j1: cannot go from {a} to {b}: "):
        check_transition("task", a, b, job_id="j1", task_id=7)


def test_kinds_are_not_mixed() -> None:
    with pytest.raises(TypeError):
        check_transition("job", T.QUEUED, T.RUNNING)
    with pytest.raises(TypeError):
        check_transition("task", J.QUEUED, J.RUNNING)


def test_named_sets() -> None:
    assert {J.COMPLETE} == JOB_FINAL
    assert {T.DONE} == TASK_FINAL
    assert {J.QUEUED, J.RUNNING} == JOB_ACTIVE
    assert {J.STOPPED_AT_CHECKPOINT, J.COMPLETE, J.FAILED, J.CANCELLED} == JOB_ENDED
    assert {T.QUEUED, T.RETRY_WAIT} == TASK_CLAIMABLE
    assert {T.QUEUED, T.RUNNING, T.RETRY_WAIT} == TASK_ACTIVE
    assert {T.DONE, T.FAILED, T.CANCELLED} == TASK_ENDED
    # Nothing ended moves by itself: leaving an ended state is always a user's retry.
    for state in JOB_ENDED:
        assert JOB_TRANSITIONS[state] <= {J.QUEUED, J.CANCELLED}
    assert allowed("job", J.FAILED) == {J.QUEUED}
    assert allowed("task", T.DONE) == frozenset()


def test_actions_only_make_moves_the_tables_allow() -> None:
    for action in JOB_ACTIONS.values():
        for source in action.sources:
            assert action.target in JOB_TRANSITIONS[source], (action.name, source)
        if action.task_target is not None:
            for source_task in action.task_sources:
                assert action.task_target in TASK_TRANSITIONS[source_task]
    assert J.QUEUED in JOB_TRANSITIONS[J.PAUSED]  # resume of a job that never started


@pytest.mark.parametrize(
    ("action", "state", "ok"),
    [
        ("pause", J.QUEUED, True),
        ("pause", J.RUNNING, True),
        ("pause", J.PAUSED, False),
        ("pause", J.COMPLETE, False),
        ("resume", J.PAUSED, True),
        ("resume", J.RUNNING, False),
        ("cancel", J.PAUSED, True),
        ("cancel", J.STOPPED_AT_CHECKPOINT, True),
        ("cancel", J.COMPLETE, False),
        ("cancel", J.CANCELLED, False),
        ("retry", J.FAILED, True),
        ("retry", J.CANCELLED, True),
        ("retry", J.COMPLETE, False),
        ("retry", J.RUNNING, False),
        ("retry", J.STOPPED_AT_CHECKPOINT, False),
        ("retry_checkpoint_failure", J.STOPPED_AT_CHECKPOINT, True),
        ("retry_checkpoint_failure", J.FAILED, False),
    ],
)
def test_actions(action: str, state: JobState, ok: bool) -> None:
    if ok:
        check_action(JOB_ACTIONS[action], state, job_id="j1")
    else:
        asked = JOB_ACTIONS[action].asked
        with pytest.raises(JobStateError, match=re.escape(f"{asked} applies only to a job that")):
            check_action(JOB_ACTIONS[action], state, job_id="j1")


def test_retry_of_a_stopped_job_names_the_retry_type() -> None:
    with pytest.raises(JobStateError, match='retry_type "checkpoint_failure"'):
        check_action(JOB_ACTIONS["retry"], J.STOPPED_AT_CHECKPOINT, job_id="j1")


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, None),  # no tasks yet: only the scheduler knows the input is empty
        ({T.DONE: 3}, J.COMPLETE),
        ({T.DONE: 3, T.QUEUED: 1}, None),
        ({T.DONE: 3, T.RUNNING: 1}, None),
        ({T.DONE: 3, T.RETRY_WAIT: 1}, None),
        ({T.DONE: 3, T.FAILED: 1}, J.FAILED),
        ({T.DONE: 3, T.CANCELLED: 1}, J.CANCELLED),
        ({T.FAILED: 1, T.CANCELLED: 1}, J.FAILED),
        ({T.DONE: 3, T.CHECKPOINT: 1}, J.STOPPED_AT_CHECKPOINT),
        ({T.FAILED: 3, T.CHECKPOINT: 1}, J.STOPPED_AT_CHECKPOINT),  # the stop wins, as in a run
        ({T.CHECKPOINT: 1, T.WAITING: 2}, J.STOPPED_AT_CHECKPOINT),
        ({T.CHECKPOINT: 1, T.RUNNING: 1}, None),
        ({T.DONE: 1, T.WAITING: 2}, None),  # a barrier for the scheduler to open
        ({T.DONE: 0, T.QUEUED: 0}, None),
    ],
)
def test_rollup(counts: dict[TaskState, int], expected: JobState | None) -> None:
    assert rollup(counts) == expected
