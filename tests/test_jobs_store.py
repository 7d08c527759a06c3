"""The job store on a real SQLite file: states and events, claiming, concurrency, crashes,
migrations, listing, pipelines."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.errors import (
    DuplicateJobError,
    JobNotFoundError,
    JobStateError,
    JobStoreError,
    PipelineNotFoundError,
    RunSettingsError,
    TaskNotFoundError,
)
from flowd.jobs import (
    JobCursor,
    JobState,
    JobType,
    NewJob,
    NewTask,
    TaskState,
    schema,
)
from flowd.jobs.listing import JobFilter, list_jobs_sql
from flowd.jobs.states import JOB_ENDED, JOB_TRANSITIONS, TASK_TRANSITIONS, AttemptOutcome
from flowd.jobs.store import JobStore

J = JobState
T = TaskState
START = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def store(path: Path, clock: Clock) -> Iterator[JobStore]:
    with JobStore(path, clock=clock) as opened:
        yield opened


def job(store: JobStore, job_id: str, *files: str, **fields: Any) -> str:
    return store.create_job(
        NewJob(job_id=job_id, tasks=[NewTask(f) for f in files], **fields)
    ).job_id


def open_attempts(store: JobStore, task_id: int) -> int:
    return sum(1 for a in store.attempts(task_id) if a.ended_at is None)


# -- creating and reading ---------------------------------------------------------------------


def test_create_and_read_back(store: JobStore, clock: Clock) -> None:
    pipeline = store.create_pipeline("invoices")
    created = store.create_job(
        NewJob(
            job_id="inv-1",
            priority=7,
            binary_path="build/bin/invoice.ibflowbin",
            input_dir="inbox",
            output_folder="out/r1",
            run_id="r1",
            settings={"runtime_config": {"log_prefix": "org=a "}, "step_timeout": 0},
            tags=["inbox", "org=a", "inbox"],
            pipeline_ids=[pipeline.pipeline_id],
            tasks=[NewTask("a.txt"), NewTask("b.pdf", "flow2")],
        ),
        who="api",
        why="run_binary_async",
    )
    assert created == store.get_job("inv-1")
    assert (created.state, created.type, created.priority) == (J.QUEUED, JobType.FLOW, 7)
    assert created.tags == ("inbox", "org=a")  # duplicates dropped, order kept
    assert created.pipeline_ids == (pipeline.pipeline_id,)
    assert created.settings["runtime_config"] == {"log_prefix": "org=a "}
    assert created.created_at == START and created.started_at is None
    assert created.finished_at is None
    tasks = store.tasks("inv-1")
    assert [(t.ordinal, t.file, t.flow, t.state) for t in tasks] == [
        (0, "a.txt", None, T.QUEUED),
        (1, "b.pdf", "flow2", T.QUEUED),
    ]
    assert tasks[1].key == "flow2/b.pdf"
    events = store.events("inv-1")
    assert [(e.task_id, e.from_state, e.to_state, e.who) for e in events] == [
        (None, None, "QUEUED", "api"),
        (tasks[0].task_id, None, "QUEUED", "api"),
        (tasks[1].task_id, None, "QUEUED", "api"),
    ]
    assert events[0].why == "run_binary_async"


def test_generated_job_ids_are_uuid4(store: JobStore) -> None:
    a = store.create_job(NewJob()).job_id
    b = store.create_job(NewJob(type=JobType.COMPILE)).job_id
    assert a != b and len(a) == 36 and a[14] == "4"
    assert store.get_job(b).type is JobType.COMPILE


def test_duplicate_job_id_is_refused_never_overwritten(store: JobStore) -> None:
    job(store, "same", "a.txt", tags=["first"])
    with pytest.raises(DuplicateJobError, match="'same' is already taken") as caught:
        job(store, "same", "b.txt", tags=["second"])
    assert caught.value.job_id == "same"
    kept = store.get_job("same")
    assert kept.tags == ("first",)
    assert [t.file for t in store.tasks("same")] == ["a.txt"]
    # A batch with a duplicate adds nothing at all.
    with pytest.raises(DuplicateJobError):
        store.create_jobs([NewJob(job_id="new-1"), NewJob(job_id="same")])
    with pytest.raises(JobNotFoundError):
        store.get_job("new-1")


@pytest.mark.parametrize("job_id", ["", "a" * 51, "with space", "slash/no", "ünï"])
def test_bad_job_ids(store: JobStore, job_id: str) -> None:
    with pytest.raises(RunSettingsError, match="job_id"):
        store.create_job(NewJob(job_id=job_id))


def test_job_id_limits(store: JobStore) -> None:
    assert store.create_job(NewJob(job_id="A-z_0.9" + "x" * 43)).job_id.endswith("x")


def test_tags_are_at_most_500_characters_together(store: JobStore) -> None:
    ok = store.create_job(NewJob(tags=["a" * 250, "b" * 250]))
    assert sum(map(len, ok.tags)) == 500
    with pytest.raises(RunSettingsError, match="tags have 501 characters together; at most 500"):
        store.create_job(NewJob(tags=["a" * 250, "b" * 251]))
    with pytest.raises(RunSettingsError, match="must not be empty"):
        store.create_job(NewJob(tags=["ok", ""]))
    with pytest.raises(RunSettingsError, match="list of strings"):
        store.create_job(NewJob(tags="inbox"))
    with pytest.raises(RunSettingsError, match="list of strings"):
        store.create_job(NewJob(tags=[3]))  # type: ignore[list-item]


@pytest.mark.parametrize("priority", [-1, 10, True, 2.5])
def test_bad_priority(store: JobStore, priority: Any) -> None:
    with pytest.raises(RunSettingsError, match="priority must be an integer from 0 to 9"):
        store.create_job(NewJob(priority=priority))


def test_unknown_ids(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError, match="job 'nope' not found"):
        store.get_job("nope")
    with pytest.raises(JobNotFoundError):
        store.transition_job("nope", J.RUNNING, "t", "x")
    with pytest.raises(JobNotFoundError):
        store.events("nope")
    with pytest.raises(JobNotFoundError):
        store.job_counts("nope")
    with pytest.raises(TaskNotFoundError):
        store.transition_task(99, T.RUNNING, "t", "x")


def test_non_utf8_file_names_keep_their_bytes(store: JobStore) -> None:
    name = os.fsdecode(b"caf\xe9 invoice.txt")  # Latin-1 on disk: surrogate-escaped here
    job(store, "j", name, "plain.txt")
    stored = store.tasks("j")
    assert stored[0].file == name and os.fsencode(stored[0].file) == b"caf\xe9 invoice.txt"
    with pytest.raises(ValueError, match="already"):
        store.add_tasks("j", [NewTask(name)])


def test_add_tasks_appends_in_order_and_never_twice(store: JobStore) -> None:
    job(store, "j", "a.txt")
    added = store.add_tasks("j", [NewTask("b.txt"), NewTask("c.txt", error="unsupported type")])
    assert [(t.ordinal, t.state) for t in added] == [(1, T.QUEUED), (2, T.FAILED)]
    assert added[1].error == "unsupported type"
    with pytest.raises(ValueError, match=r"a\.txt"):
        store.add_tasks("j", [NewTask("d.txt"), NewTask("a.txt")])
    assert [t.file for t in store.tasks("j")] == ["a.txt", "b.txt", "c.txt"]  # d.txt not added
    store.transition_job("j", J.CANCELLED, "t", "x")
    with pytest.raises(ValueError, match="ended job"):
        store.add_tasks("j", [NewTask("e.txt")])


# -- job transitions, pair by pair ------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), list(itertools.product(JobState, JobState)))
def test_job_transition_pairs(store: JobStore, clock: Clock, a: JobState, b: JobState) -> None:
    job(store, "j")
    if a is not J.QUEUED:
        store.transition_job("j", a, "setup", "to start state")
    before = store.events("j")
    clock.advance(5)
    if b in JOB_TRANSITIONS[a]:
        moved = store.transition_job("j", b, "tester", f"{a}->{b}", expect=a)
        assert moved.state is b and moved.updated_at == clock.now
        assert (moved.finished_at == clock.now) if b in JOB_ENDED else moved.finished_at is None
        if b is J.RUNNING:
            assert moved.started_at is not None
        event = store.events("j")[-1]
        assert (event.task_id, event.from_state, event.to_state) == (None, a, b)
        assert (event.who, event.why, event.at) == ("tester", f"{a}->{b}", clock.now)
    else:
        with pytest.raises(JobStateError, match=f"cannot go from {a} to {b}"):
            store.transition_job("j", b, "tester", "illegal")
        assert store.get_job("j").state is a
        assert store.events("j") == before  # nothing written


def test_lost_race_between_two_processes_views(path: Path, store: JobStore) -> None:
    job(store, "j", "a.txt")
    seen = store.get_job("j").state
    with JobStore(path) as other:  # another process's connection
        other.pause_job("j", "cli")
    with pytest.raises(JobStateError, match="it is PAUSED now, no longer QUEUED"):
        store.transition_job("j", J.RUNNING, "scheduler", "start", expect=seen)
    assert store.get_job("j").state is J.PAUSED
    assert [e.to_state for e in store.events("j") if e.task_id is None] == ["QUEUED", "PAUSED"]


def test_transition_job_stores_error_and_result(store: JobStore) -> None:
    store.create_job(NewJob(job_id="c", type=JobType.COMPILE))
    failed = store.transition_job(
        "c", J.FAILED, "compiler", "compile failed", error="a.ibflow:3:4: bad", result=["p"]
    )
    assert (failed.error, failed.result) == ("a.ibflow:3:4: bad", ["p"])


# -- task transitions, pair by pair ---------------------------------------------------------


def reach(store: JobStore, clock: Clock, task_id: int, state: TaskState) -> None:
    """Bring the job's first task into ``state`` through ordinary moves."""
    if state is T.QUEUED:
        return
    if state is T.CANCELLED:
        store.transition_task(task_id, T.CANCELLED, "setup", "x")
        return
    claim = store.claim_next_task("w-setup")
    assert claim is not None and claim.task.task_id == task_id
    if state is T.RETRY_WAIT:
        store.schedule_retry(task_id, clock.now + 100, "busy")
    elif state is not T.RUNNING:
        store.finish_attempt(task_id, state, "w-setup")


@pytest.mark.parametrize(("a", "b"), list(itertools.product(TaskState, TaskState)))
def test_task_transition_pairs(store: JobStore, clock: Clock, a: TaskState, b: TaskState) -> None:
    job(store, "j", "subject.txt", "keeper.txt")  # the keeper stays QUEUED: no roll-up
    subject = store.tasks("j")[0].task_id
    reach(store, clock, subject, a)
    assert store.get_task(subject).state is a
    before = store.events("j")
    clock.advance(1)
    if b in TASK_TRANSITIONS[a]:
        moved = store.transition_task(subject, b, "tester", f"{a}->{b}", position=2)
        assert (moved.state, moved.position, moved.updated_at) == (b, 2, clock.now)
        event = store.events("j", subject)[-1]
        assert (event.from_state, event.to_state, event.who, event.why) == (
            a,
            b,
            "tester",
            f"{a}->{b}",
        )
        # RUNNING exactly when one attempt is open.
        assert open_attempts(store, subject) == (1 if b is T.RUNNING else 0)
        if a is T.RUNNING:
            assert store.attempts(subject)[-1].ended_at == clock.now
        assert store.get_job("j").state in (J.QUEUED, J.RUNNING)
    else:
        with pytest.raises(JobStateError, match=f"task {subject} of job j: cannot go from {a}"):
            store.transition_task(subject, b, "tester", "illegal")
        assert store.get_task(subject).state is a
        assert store.events("j") == before


def test_late_report_after_cancel_is_refused(store: JobStore) -> None:
    job(store, "j", "a.txt", "b.txt")
    claim = store.claim_next_task("w1")
    assert claim is not None
    cancelled = store.cancel_job("j", "api", "user asked")
    assert cancelled.job.state is J.CANCELLED
    assert cancelled.stopped == (claim.task.task_id,)
    assert {t.state for t in store.tasks("j")} == {T.CANCELLED}
    attempt = store.attempts(claim.task.task_id)[0]
    assert (attempt.outcome, attempt.worker) == (AttemptOutcome.CANCELLED, "w1")
    with pytest.raises(JobStateError, match="it is CANCELLED now, no longer RUNNING"):
        store.finish_attempt(claim.task.task_id, T.DONE, "w1")


# -- claiming ---------------------------------------------------------------------------------


def claim_files(store: JobStore, n: int = 100) -> list[str]:
    files = []
    for _ in range(n):
        claim = store.claim_next_task("w")
        if claim is None:
            break
        files.append(f"{claim.task.job_id}:{claim.task.file}")
    return files


def test_priority_beats_age_and_age_breaks_ties(store: JobStore, clock: Clock) -> None:
    job(store, "old-low", "1", "2", priority=0)
    clock.advance(1)
    job(store, "mid-a", "1", priority=5)
    clock.advance(1)
    job(store, "new-high", "1", "2", priority=9)
    clock.advance(1)
    job(store, "mid-b", "1", priority=5)
    assert claim_files(store) == [
        "new-high:1",
        "new-high:2",
        "mid-a:1",
        "mid-b:1",
        "old-low:1",
        "old-low:2",
    ]


def test_claim_opens_an_attempt_and_starts_the_job(store: JobStore, clock: Clock) -> None:
    job(store, "j", "a.txt")
    clock.advance(3)
    claim = store.claim_next_task("worker-7")
    assert claim is not None
    assert (claim.task.state, claim.task.attempts) == (T.RUNNING, 1)
    attempt = store.attempts(claim.task.task_id)
    assert [(a.attempt_id, a.worker, a.started_at, a.outcome) for a in attempt] == [
        (claim.attempt_id, "worker-7", clock.now, None)
    ]
    started = store.get_job("j")
    assert (started.state, started.started_at) == (J.RUNNING, clock.now)
    assert store.events("j")[-1].why == "first task started"
    assert store.claim_next_task("worker-8") is None


def test_paused_and_ended_jobs_are_skipped(store: JobStore, clock: Clock) -> None:
    job(store, "paused", "a", priority=9)
    job(store, "failed", "a", priority=9)
    job(store, "open", "a", priority=1)
    store.pause_job("paused", "api")
    store.transition_job("failed", J.FAILED, "scheduler", "binary missing")
    assert claim_files(store) == ["open:a"]
    store.resume_job("paused", "api")
    assert claim_files(store) == ["paused:a"]


def test_not_before_is_respected(store: JobStore, clock: Clock) -> None:
    job(store, "j", "a.txt", "b.txt")
    first = store.claim_next_task("w")
    assert first is not None
    store.schedule_retry(first.task.task_id, clock.now + 30, "EBUSY")
    # b.txt is due now; a.txt waits although it comes first.
    assert claim_files(store) == ["j:b.txt"]
    clock.advance(29.9)
    assert store.claim_next_task("w") is None
    clock.advance(0.1)
    again = store.claim_next_task("w")
    assert again is not None and again.task.file == "a.txt"
    assert (again.task.attempts, again.task.error) == (2, "EBUSY")
    outcomes = [a.outcome for a in store.attempts(first.task.task_id)]
    assert outcomes == [AttemptOutcome.RETRY, None]
    # An explicit time wins over the store's clock.
    job(store, "k", "c.txt")
    c = store.claim_next_task("w")
    assert c is not None
    store.schedule_retry(c.task.task_id, clock.now + 10, "busy")
    assert store.claim_next_task("w", now=clock.now + 5) is None
    assert store.claim_next_task("w", now=clock.now + 10) is not None


def _claim_everything(store: JobStore, worker: str, out: list[int]) -> None:
    while (claim := store.claim_next_task(worker)) is not None:
        out.append(claim.task.task_id)
        store.finish_attempt(claim.task.task_id, T.DONE, worker, records=1)


def test_threads_never_claim_the_same_task(path: Path) -> None:
    with JobStore(path) as setup:
        for n in range(4):
            job(setup, f"j{n}", *(f"{i}.txt" for i in range(60)), priority=n % 3)
        expected = sorted(t.task_id for n in range(4) for t in setup.tasks(f"j{n}"))
    shared = JobStore(path)  # four threads on one store object, four on their own
    claimed: list[list[int]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def run(i: int) -> None:
        own = shared if i < 4 else JobStore(path)
        start.wait()
        _claim_everything(own, f"t{i}", claimed[i])
        if own is not shared:
            own.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = sorted(itertools.chain.from_iterable(claimed))
    assert everything == expected  # each exactly once
    assert all(shared.get_job(f"j{n}").state is J.COMPLETE for n in range(4))
    shared.close()


def _process_worker(path: str, worker: str, go: Any, out: Any) -> None:
    with JobStore(Path(path)) as own:
        got: list[int] = []
        go.wait(60)
        _claim_everything(own, worker, got)
        out.put((worker, got))


def test_processes_never_claim_the_same_task(path: Path) -> None:
    with JobStore(path) as setup:
        job(setup, "big", *(f"{i}.txt" for i in range(300)))
        expected = sorted(t.task_id for t in setup.tasks("big"))
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(str(path), f"p{i}", go, out)) for i in range(3)
    ]
    for p in procs:
        p.start()
    go.set()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    everything = sorted(itertools.chain.from_iterable(results.values()))
    assert everything == expected
    with JobStore(path) as check:
        assert check.get_job("big").state is J.COMPLETE
        workers = Counter(a.worker for t in check.tasks("big") for a in check.attempts(t.task_id))
        assert sum(workers.values()) == 300


# -- crashes ----------------------------------------------------------------------------------


def _claim_then_hang(path: str, n: int, ready: Any) -> None:
    own = JobStore(Path(path))
    for _ in range(n):
        own.claim_next_task("doomed")
    ready.set()
    threading.Event().wait(120)  # killed long before


def test_recover_after_crash_requeues_with_an_event(path: Path, clock: Clock) -> None:
    with JobStore(path, clock=clock) as store:
        job(store, "j", "a.txt", "b.txt", "c.txt")
        first = store.claim_next_task("w0")
        assert first is not None  # a.txt reached step 2, then was given back (job paused)
        store.finish_attempt(first.task.task_id, T.QUEUED, "w0", position=2)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    doomed = ctx.Process(target=_claim_then_hang, args=(str(path), 2, ready))
    doomed.start()
    assert ready.wait(60)
    assert doomed.pid is not None
    os.kill(doomed.pid, signal.SIGKILL)  # kill -9 with two tasks RUNNING
    doomed.join(60)
    clock.advance(60)
    with JobStore(path, clock=clock) as store:
        running = store.tasks("j", T.RUNNING)
        assert [t.file for t in running] == ["a.txt", "b.txt"]
        assert [t.attempts for t in running] == [2, 1]
        recovered = store.recover_after_crash()
        assert [(t.file, t.state, t.attempts, t.position) for t in recovered] == [
            ("a.txt", T.QUEUED, 1, 2),  # a lost attempt does not count; the step is kept
            ("b.txt", T.QUEUED, 0, 0),
        ]
        for t in recovered:
            event = store.events("j", t.task_id)[-1]
            assert (event.from_state, event.to_state, event.who, event.why, event.at) == (
                "RUNNING",
                "QUEUED",
                "startup",
                "worker lost",
                clock.now,
            )
            lost = store.attempts(t.task_id)[-1]
            assert (lost.worker, lost.outcome, lost.ended_at) == ("doomed", "LOST", clock.now)
        assert store.get_job("j").state is J.RUNNING  # goes on; nothing stuck
        assert store.recover_after_crash() == []
        again = store.claim_next_task("w1")
        assert again is not None and again.task.file == "a.txt"
        assert store.attempts(again.task.task_id)[-1].position == 2  # resumes at its step


# -- roll-up and user actions -----------------------------------------------------------------


def run_all(store: JobStore, outcome: dict[str, TaskState]) -> None:
    """Claim every due task and end it as ``outcome[file]`` says (DONE by default)."""
    while (claim := store.claim_next_task("w")) is not None:
        to = outcome.get(claim.task.file, T.DONE)
        if to is T.RETRY_WAIT:
            store.schedule_retry(claim.task.task_id, claim.task.updated_at + 10, "busy")
        else:
            store.finish_attempt(
                claim.task.task_id, to, "w", error="bad" if to is T.FAILED else None
            )


def test_all_done_completes(store: JobStore, clock: Clock) -> None:
    job(store, "j", "a", "b")
    clock.advance(2)
    run_all(store, {})
    done = store.get_job("j")
    assert (done.state, done.finished_at) == (J.COMPLETE, clock.now)
    last = store.events("j")[-1]
    assert (last.task_id, last.to_state, last.why) == (
        None,
        "COMPLETE",
        "all tasks settled: 2 DONE",
    )


def test_one_failure_fails_and_a_checkpoint_stops(store: JobStore) -> None:
    job(store, "f", "a", "b")
    run_all(store, {"b": T.FAILED})
    assert store.get_job("f").state is J.FAILED
    job(store, "c", "a", "b", "x")
    run_all(store, {"b": T.FAILED, "x": T.CHECKPOINT})
    assert store.get_job("c").state is J.STOPPED_AT_CHECKPOINT


def test_waiting_tasks_hold_the_job_open(store: JobStore) -> None:
    job(store, "j", "a", "b")
    run_all(store, {"a": T.WAITING, "b": T.WAITING})
    assert store.get_job("j").state is J.RUNNING  # the scheduler opens the barrier
    for t in store.tasks("j"):
        store.transition_task(t.task_id, T.QUEUED, "scheduler", "reduce done", position=3)
    run_all(store, {})
    assert store.get_job("j").state is J.COMPLETE


def test_empty_and_rejected_jobs(store: JobStore) -> None:
    job(store, "empty")
    assert store.settle_job("empty").state is J.QUEUED  # input not scanned yet, as far as we know
    assert store.transition_job("empty", J.COMPLETE, "scheduler", "no input files").finished_at
    store.create_job(NewJob(job_id="rejected", tasks=[NewTask("x.exe", error="unsupported")]))
    assert store.settle_job("rejected").state is J.FAILED


def test_pause_and_resume(store: JobStore) -> None:
    job(store, "j", "a", "b", priority=5)
    job(store, "never", "a")
    assert store.pause_job("never", "api").state is J.PAUSED
    assert store.resume_job("never", "api").state is J.QUEUED  # nothing ever started
    claim = store.claim_next_task("w")
    assert claim is not None and claim.task.job_id == "j"
    assert store.pause_job("j", "api", "lunch").state is J.PAUSED
    with pytest.raises(
        JobStateError, match="pause applies only to a job that is QUEUED or RUNNING"
    ):
        store.pause_job("j", "api")
    # The running task finishes its step and is given back; nothing new starts.
    store.finish_attempt(claim.task.task_id, T.QUEUED, "w", position=1)
    assert claim_files(store) == ["never:a"]
    assert store.resume_job("j", "api").state is J.RUNNING
    assert claim_files(store) == ["j:a", "j:b"]


def test_a_paused_job_ends_when_its_last_task_does(store: JobStore) -> None:
    job(store, "j", "a")
    claim = store.claim_next_task("w")
    assert claim is not None
    store.pause_job("j", "api")
    store.finish_attempt(claim.task.task_id, T.DONE, "w")
    assert store.get_job("j").state is J.COMPLETE


def test_retry_reruns_failed_and_cancelled_tasks_only(store: JobStore, clock: Clock) -> None:
    job(store, "j", "ok", "bad", "flaky")
    run_all(store, {"bad": T.FAILED, "flaky": T.RETRY_WAIT})
    assert store.get_job("j").state is J.RUNNING  # flaky waits for its backoff
    clock.advance(10)
    run_all(store, {"flaky": T.FAILED})
    failed = store.get_job("j")
    assert failed.state is J.FAILED and failed.finished_at is not None
    with pytest.raises(
        JobStateError,
        match='retry_type "checkpoint_failure" applies only to a job that is STOPPED_AT_CHECKPOINT',
    ):
        store.retry_job("j", "api", checkpoint_failure=True)
    retried = store.retry_job("j", "api", "try again")
    assert (retried.state, retried.finished_at) == (J.QUEUED, None)
    by_file = {t.file: t for t in store.tasks("j")}
    assert by_file["ok"].state is T.DONE
    assert [(by_file[f].state, by_file[f].attempts) for f in ("bad", "flaky")] == [
        (T.QUEUED, 0),
        (T.QUEUED, 0),
    ]
    assert claim_files(store) == ["j:bad", "j:flaky"]


def test_retry_of_a_cancelled_job(store: JobStore) -> None:
    job(store, "j", "a", "b")
    run_all(store, {"a": T.DONE, "b": T.WAITING})
    store.cancel_job("j", "api")
    with pytest.raises(JobStateError, match="cancel applies only"):
        store.cancel_job("j", "api")
    store.retry_job("j", "api")
    assert [t.state for t in store.tasks("j")] == [T.DONE, T.QUEUED]


def test_checkpoint_failure_retry(store: JobStore) -> None:
    job(store, "j", "a", "b", "c")
    run_all(store, {"a": T.CHECKPOINT, "b": T.FAILED})
    assert store.get_job("j").state is J.STOPPED_AT_CHECKPOINT
    with pytest.raises(JobStateError, match='retry_type "checkpoint_failure"'):
        store.retry_job("j", "api")
    assert store.retry_job("j", "api", checkpoint_failure=True).state is J.QUEUED
    assert [t.state for t in store.tasks("j")] == [T.QUEUED, T.FAILED, T.DONE]
    run_all(store, {})
    assert store.get_job("j").state is J.FAILED  # b still failed for good


def test_job_counts(store: JobStore) -> None:
    job(store, "j", "a", "b", "c", "d")
    claim = store.claim_next_task("w")
    assert claim is not None
    store.finish_attempt(claim.task.task_id, T.DONE, "w", records=3, runtime_errors=1)
    claim = store.claim_next_task("w")
    assert claim is not None
    store.finish_attempt(claim.task.task_id, T.FAILED, "w", error="corrupt")
    counts = store.job_counts("j")
    assert (counts.total, counts[T.DONE], counts[T.FAILED], counts[T.QUEUED]) == (4, 1, 1, 2)
    assert (counts.records, counts.runtime_errors, counts.progress) == (3, 1, 0.5)
    job(store, "none")
    assert store.job_counts("none").progress == 0.0


# -- durability and migrations ----------------------------------------------------------------


def test_reopening_keeps_everything(path: Path, clock: Clock) -> None:
    with JobStore(path, clock=clock) as store:
        pipeline = store.create_pipeline("p")
        job(store, "j", "a", "b", tags=["t"], pipeline_ids=[pipeline.pipeline_id])
        run_all(store, {"b": T.FAILED})
        snapshot = (store.get_job("j"), store.tasks("j"), store.events("j"), store.list_pipelines())
    with JobStore(path, clock=clock) as store:
        assert store.schema_version == len(schema.MIGRATIONS)
        assert (
            store.get_job("j"),
            store.tasks("j"),
            store.events("j"),
            store.list_pipelines(),
        ) == (snapshot)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_a_version_0_file_is_migrated(path: Path) -> None:
    sqlite3.connect(path).close()  # an empty SQLite file: user_version 0, no tables
    with JobStore(path) as store:
        assert store.schema_version == len(schema.MIGRATIONS)
        job(store, "j", "a")


def test_a_later_migration_runs_once_on_open(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sqlite3.connect(path, isolation_level=None)  # a version-1 file, built by hand
    schema.MIGRATIONS[0](raw)
    raw.execute(
        "INSERT INTO jobs (job_id, type, state, priority, settings, created_at, updated_at) "
        "VALUES ('old', 'flow', 'FAILED', 3, '{}', 1.0, 1.0)"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.close()
    runs: list[int] = []

    def later_migration(conn: sqlite3.Connection) -> None:
        runs.append(1)
        conn.execute("ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT 'from v2'")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, later_migration))
    with JobStore(path) as store:
        assert store.schema_version == len(schema.MIGRATIONS)
        old = store.get_job("old")
        assert (old.state, old.priority) == (J.FAILED, 3)
        store.retry_job("old", "api")
    with JobStore(path) as store:
        assert store.get_job("old").state is J.QUEUED
    assert runs == [1]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT note FROM jobs").fetchone() == ("from v2",)
    raw.close()


def test_a_newer_or_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    raw = sqlite3.connect(newer)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(
        JobStoreError, match=f"schema version 99; this flowd knows up to {len(schema.MIGRATIONS)}"
    ):
        JobStore(newer)
    foreign = tmp_path / "foreign.sqlite3"
    raw = sqlite3.connect(foreign)
    raw.execute("CREATE TABLE photos (id INTEGER)")
    raw.close()
    with pytest.raises(JobStoreError, match="not a flowd job store"):
        JobStore(foreign)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(JobStoreError, match=r"garbage\.sqlite3"):
        JobStore(garbage)


def test_a_store_does_not_cross_fork(store: JobStore) -> None:
    job(store, "j")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            store.get_job("j")
        except JobStoreError:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert store.get_job("j").job_id == "j"  # the parent's store still works


# -- listing ----------------------------------------------------------------------------------


@pytest.fixture
def listed(store: JobStore, clock: Clock) -> JobStore:
    """30 jobs a second apart: j00 oldest; states, tags and binaries in cycles."""
    ends = [J.QUEUED, J.COMPLETE, J.FAILED]
    blue = store.create_pipeline("blue").pipeline_id
    for n in range(30):
        clock.advance(1)
        job(
            store,
            f"j{n:02}",
            tags=["all", f"mod3={n % 3}", *(["five"] if n % 5 == 0 else [])],
            binary_path=f"bin/b{n % 2}.ibflowbin",
            pipeline_ids=[blue] if n % 4 == 0 else [],
        )
        if ends[n % 3] is not J.QUEUED:
            store.transition_job(f"j{n:02}", ends[n % 3], "setup", "x")
    return store


def ids(page: Any) -> list[str]:
    return [j.job_id for j in page.jobs]


def test_list_newest_first_with_pages(listed: JobStore) -> None:
    first = listed.list_jobs(limit=10)
    assert ids(first) == [f"j{n:02}" for n in range(29, 19, -1)]
    assert first.has_more and first.next_cursor == JobCursor(START + 21, "j20")
    by_offset = listed.list_jobs(limit=10, offset=10)
    by_cursor = listed.list_jobs(limit=10, after=first.next_cursor)
    assert ids(by_offset) == ids(by_cursor) == [f"j{n:02}" for n in range(19, 9, -1)]
    last = listed.list_jobs(limit=10, offset=20)
    assert len(last.jobs) == 10 and not last.has_more and last.next_cursor is None
    assert listed.list_jobs(offset=30).jobs == ()
    for limit, offset in ((0, 0), (1001, 0), (10, -1)):
        with pytest.raises(ValueError):
            listed.list_jobs(limit=limit, offset=offset)


def test_list_filters(listed: JobStore) -> None:
    blue = listed.list_pipelines()[0].pipeline_id
    assert ids(listed.list_jobs(status=J.FAILED, limit=3)) == ["j29", "j26", "j23"]
    assert ids(listed.list_jobs(tag="five")) == ["j25", "j20", "j15", "j10", "j05", "j00"]
    assert ids(listed.list_jobs(tag="five", status=J.COMPLETE)) == ["j25", "j10"]
    assert ids(listed.list_jobs(binary_path="bin/b1.ibflowbin", limit=2)) == ["j29", "j27"]
    assert ids(listed.list_jobs(pipeline_id=blue)) == [f"j{n:02}" for n in range(28, -1, -4)]
    assert ids(listed.list_jobs(pipeline_id=blue, tag="five")) == ["j20", "j00"]
    assert ids(listed.list_jobs(since=START + 28)) == ["j29", "j28", "j27"]
    assert ids(listed.list_jobs(tag="mod3=0", since=START + 20)) == ["j27", "j24", "j21"]
    combined = listed.list_jobs(status=J.QUEUED, binary_path="bin/b0.ibflowbin", since=START + 13)
    assert ids(combined) == ["j24", "j18", "j12"]
    assert listed.list_jobs(tag="nope").jobs == ()
    assert ids(listed.list_jobs(tag="all", limit=2, offset=27)) == ["j02", "j01"]
    page = listed.list_jobs(tag="all", limit=5)
    assert ids(listed.list_jobs(tag="all", limit=5, after=page.next_cursor))[0] == "j24"
    assert listed.list_jobs(tag="five").jobs[0].tags == ("all", "mod3=1", "five")


def test_list_breaks_ties_on_job_id(store: JobStore) -> None:
    for name in ("b", "c", "a"):
        job(store, name)  # the clock does not move: same created_at
    assert ids(store.list_jobs()) == ["c", "b", "a"]
    first = store.list_jobs(limit=1)
    assert ids(store.list_jobs(limit=5, after=first.next_cursor)) == ["b", "a"]


@pytest.mark.parametrize(
    "f",
    [
        JobFilter(status=J.FAILED),
        JobFilter(tag="x"),
        JobFilter(pipeline_id="p"),
        JobFilter(binary_path="b"),
        JobFilter(since=5.0),
        JobFilter(status=J.FAILED, since=5.0),
        JobFilter(tag="x", status=J.FAILED, binary_path="b", since=5.0),
        JobFilter(),
    ],
)
def test_list_queries_use_an_index_in_order(store: JobStore, path: Path, f: JobFilter) -> None:
    sql, params = list_jobs_sql(f, 50, 0, JobCursor(10.0, "x"))
    raw = sqlite3.connect(path)
    plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params)]
    raw.close()
    assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort
    if f != JobFilter():
        assert all(step.startswith("SEARCH") for step in plan), plan  # no scan


# -- pipelines --------------------------------------------------------------------------------


def test_pipelines(store: JobStore, clock: Clock) -> None:
    a = store.create_pipeline("nightly")
    clock.advance(1)
    b = store.create_pipeline("adhoc", pipeline_id="p-2")
    assert store.list_pipelines() == [a, b]
    with pytest.raises(ValueError, match="exists already"):
        store.create_pipeline("again", pipeline_id="p-2")
    with pytest.raises(ValueError, match="needs a name"):
        store.create_pipeline("")
    job(store, "j")
    assert store.set_pipelines("j", [b.pipeline_id, a.pipeline_id, b.pipeline_id]).pipeline_ids == (
        "p-2",
        a.pipeline_id,
    )
    assert ids(store.list_jobs(pipeline_id="p-2")) == ["j"]
    assert store.set_pipelines("j", []).pipeline_ids == ()
    assert store.list_jobs(pipeline_id="p-2").jobs == ()
    with pytest.raises(PipelineNotFoundError, match="'nope' not found"):
        store.set_pipelines("j", ["p-2", "nope"])
    assert store.get_job("j").pipeline_ids == ()  # all or nothing
    with pytest.raises(JobNotFoundError):
        store.set_pipelines("ghost", [])
    with pytest.raises(PipelineNotFoundError):
        store.create_job(NewJob(job_id="k", pipeline_ids=["nope"]))
    with pytest.raises(JobNotFoundError):
        store.get_job("k")
