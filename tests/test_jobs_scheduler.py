"""The scheduler in-process: a real SQLite store in a temporary folder, the local executor's worker
processes, no HTTP (SPEC §6: priority order, step timeouts, transient and permanent failures,
pause). Waits poll the store with a deadline; a test never sleeps to wait for work."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.jobs.backoff import RetryPolicy
from flowd.jobs.binaries import BinaryCache
from flowd.jobs.executors import LocalExecutor
from flowd.jobs.finalize import write_job_outputs
from flowd.jobs.scheduler import Scheduler
from flowd.jobs.states import JOB_ENDED, AttemptOutcome, JobState, TaskState
from flowd.jobs.store import JobStore
from flowd.jobs.submit import FlowRun, submit_flow_run
from tests.conftest import REFINER, flow, refiner_step, text_invoice, wait_for

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")

# A UDF the tests steer through runtime_config: it notes each file it starts in ``log`` and holds
# the files named in ``hold`` until the file ``gate`` exists (with a deadline of its own, so a
# broken test cannot leave a worker spinning forever).
STEER = """\
import os
import time


def f(record, context):
    cfg = context.config
    name = record["file_name"]
    if cfg.get("log"):
        with open(cfg["log"], "a") as fh:
            fh.write(name + "\\n")
    if name in cfg.get("hold", []):
        deadline = time.monotonic() + 60
        while not os.path.exists(cfg["gate"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return record
"""

STUCK = {
    "loops": "def f(record, context):\n    while True:\n        pass\n",
    "sleeps": "import time\ndef f(record, context):\n    time.sleep(10**6)\n",
    "blocks_signals": (
        "import signal\n"
        "def f(record, context):\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n"
        "    while True:\n"
        "        pass\n"
    ),
}


def udf_binary(make_project: Callable[..., Path], udf: str, refine: bool = True) -> Path:
    steps = [refiner_step()] if refine else []
    steps.append({"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}})
    root = make_project(
        {"invoice.ibflow": flow(*steps), "modules/invoice.ibrefiner": REFINER, "u.py": udf}
    )
    return compile_project(root, SINGLE).path


class Harness:
    """A store, a binary cache, a local executor and a scheduler on one state folder, running."""

    def __init__(
        self,
        state: Path,
        *,
        workers: int,
        max_attempts: int,
        default_step_timeout_s: float,
        pause_flags: Path | None = None,
    ) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(state / "jobs.sqlite3")
        self.binaries = BinaryCache(state / "binaries")
        self.executor = LocalExecutor(workers, start_method="forkserver")
        self.default_step_timeout_s = default_step_timeout_s
        self.scheduler = Scheduler(
            self.store,
            self.executor,
            self.binaries,
            policy=RetryPolicy(max_attempts=max_attempts, base_s=0.5, jitter=0.0),
            udfs_allowed=lambda root: True,
            idle_s=0.2,
            pause_flags=pause_flags,
        )
        self.scheduler.start()

    def submit(self, binary: Path, input_dir: Path, **kw: Any) -> str:
        run = FlowRun(binary_path=binary, input_dir=input_dir, **kw)
        job = submit_flow_run(
            self.store, self.binaries, run, default_step_timeout_s=self.default_step_timeout_s
        )
        self.scheduler.wake()
        return job.job_id

    def state(self, job_id: str) -> JobState:
        return self.store.get_job(job_id).state

    def wait_ended(self, job_id: str, timeout_s: float = 60) -> JobState:
        wait_for(lambda: self.state(job_id) in JOB_ENDED, timeout_s, f"job {job_id} to end")
        return self.state(job_id)

    def task(self, job_id: str, file: str) -> Any:
        return next(t for t in self.store.tasks(job_id) if t.file == file)

    def claims(self, job_ids: list[str]) -> list[str]:
        """``job/file`` of every claim of these jobs' tasks, in the order the store made them."""
        found: list[tuple[int, str]] = []
        for job_id in job_ids:
            files = {t.task_id: t.file for t in self.store.tasks(job_id)}
            found += [
                (e.event_id, f"{job_id}/{files[e.task_id]}")
                for e in self.store.events(job_id)
                if e.task_id is not None and e.to_state == TaskState.RUNNING
            ]
        return [name for _, name in sorted(found)]

    def close(self) -> None:
        self.scheduler.stop(grace_s=0)
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        workers: int = 1,
        max_attempts: int = 3,
        default_step_timeout_s: float = 30.0,
        pause_flags: Path | None = None,
    ) -> Harness:
        h = Harness(
            tmp_path / "state",
            workers=workers,
            max_attempts=max_attempts,
            default_step_timeout_s=default_step_timeout_s,
            pause_flags=pause_flags,
        )
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def folder(root: Path, docs: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in docs.items():
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_priority_then_age_decides_what_runs_next(
    harness: Callable[..., Harness], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    h = harness(workers=1)
    binary = udf_binary(make_project, STEER)
    log, gate = tmp_path / "started.log", tmp_path / "gate"
    config = {"log": str(log), "hold": ["hold.txt"], "gate": str(gate)}
    jobs: dict[str, str] = {}

    def submit(name: str, priority: int) -> None:
        docs = folder(tmp_path / "in" / name, {f"{name}.txt": text_invoice(name, "1.00")})
        jobs[name] = h.submit(
            binary,
            docs,
            output_dir=tmp_path / "out" / name,
            priority=priority,
            runtime_config=config,
        )

    submit("hold", 0)  # holds the only worker until the gate opens
    wait_for(lambda: lines(log) == ["hold.txt"], 30, "the first job to hold the worker")
    submit("low1", 0)
    submit("mid", 5)
    submit("low2", 0)
    submit("high1", 9)
    submit("high2", 9)
    gate.touch()
    for job_id in jobs.values():
        assert h.wait_ended(job_id) is JobState.COMPLETE
    expected = ["hold", "high1", "high2", "mid", "low1", "low2"]
    ids = {job_id: name for name, job_id in jobs.items()}
    claimed = [ids[c.split("/")[0]] for c in h.claims(list(jobs.values()))]
    assert claimed == expected, "the store claimed tasks out of priority/age order"
    assert lines(log) == [f"{n}.txt" for n in expected], "the worker ran them out of order"


@pytest.mark.parametrize("kind", sorted(STUCK))
def test_a_step_that_never_returns_is_stopped_retried_then_failed(
    harness: Callable[..., Harness],
    make_project: Callable[..., Path],
    tmp_path: Path,
    kind: str,
) -> None:
    h = harness(workers=1, max_attempts=2, default_step_timeout_s=0.3)
    udf = STUCK[kind].replace(
        "def f(record, context):\n",
        "def f(record, context):\n    if 'stuck' not in record['file_name']:\n        return record\n",
    )
    binary = udf_binary(make_project, udf, refine=False)
    docs = folder(
        tmp_path / "in",
        {
            "ok1.txt": text_invoice("1", "1"),
            "stuck.txt": text_invoice("S", "1"),
            "ok2.txt": text_invoice("2", "2"),
        },
    )
    pids = set(h.executor.pids())
    job_id = h.submit(binary, docs, step_timeout=0)  # 0: the configured default, 0.3 s
    assert h.wait_ended(job_id, 60) is JobState.FAILED
    stuck = h.task(job_id, "stuck.txt")
    assert stuck.state is TaskState.FAILED
    assert stuck.error is not None and "stuck.txt" in stuck.error and "timed out" in stuck.error
    attempts = h.store.attempts(stuck.task_id)
    assert [a.outcome for a in attempts] == [AttemptOutcome.RETRY, AttemptOutcome.FAILED]
    first, second = attempts
    assert first.ended_at is not None and second.ended_at is not None
    assert second.started_at - first.ended_at >= 0.45, "the retry did not wait for its backoff"
    for a in attempts:  # stopped at its limit, not left running for long
        assert 0.25 <= a.ended_at - a.started_at < 15, a  # type: ignore[operator]
    if kind == "blocks_signals":  # the alarm cannot reach it: the worker was killed, replaced
        assert "0.3 s" not in stuck.error and "worker killed" in stuck.error
        assert not pids & set(h.executor.pids()), "the stuck worker was not replaced"
    else:
        assert "after 0.3 s" in stuck.error
    for name in ("ok1.txt", "ok2.txt"):
        task = h.task(job_id, name)
        assert task.state is TaskState.DONE and task.attempts >= 1, task
    write_job_outputs(h.store, h.binaries, h.store.get_job(job_id))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(r["file_name"] for r in results) == ["ok1.txt", "ok2.txt"]


def test_a_corrupt_pdf_fails_at_once_without_retry(
    harness: Callable[..., Harness], simple_project: Path, tmp_path: Path
) -> None:
    h = harness(workers=1, max_attempts=3)
    binary = compile_project(simple_project, SINGLE).path
    docs = folder(
        tmp_path / "in",
        {"corrupt.pdf": b"%PDF-1.7\n" + os.urandom(2000), "good.txt": text_invoice("G", "2")},
    )
    job_id = h.submit(binary, docs)
    assert h.wait_ended(job_id) is JobState.FAILED
    bad = h.task(job_id, "corrupt.pdf")
    assert bad.state is TaskState.FAILED and bad.attempts == 1
    assert [a.outcome for a in h.store.attempts(bad.task_id)] == [AttemptOutcome.FAILED]
    assert bad.error is not None and "corrupt.pdf" in bad.error and "PDF" in bad.error
    assert not [
        e for e in h.store.events(job_id, bad.task_id) if e.to_state == TaskState.RETRY_WAIT
    ]
    assert h.task(job_id, "good.txt").state is TaskState.DONE


def test_pause_while_a_step_runs_starts_nothing_new_until_resumed(
    harness: Callable[..., Harness], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    h = harness(workers=1)
    binary = udf_binary(make_project, STEER)
    log, gate = tmp_path / "started.log", tmp_path / "gate"
    docs = folder(tmp_path / "in", {f"{c}.txt": text_invoice(c, "1") for c in "abcd"})
    config = {"log": str(log), "hold": ["a.txt"], "gate": str(gate)}
    job_id = h.submit(binary, docs, runtime_config=config)
    wait_for(lambda: lines(log) == ["a.txt"], 30, "a.txt to start")
    assert h.store.pause_job(job_id, "test").state is JobState.PAUSED
    gate.touch()  # a.txt's step finishes while its job is paused
    wait_for(lambda: h.task(job_id, "a.txt").state is not TaskState.RUNNING, 30, "a.txt to settle")
    # Give the scheduler turns to misbehave in: nothing of the paused job may start.
    turns = h.scheduler.turns
    wait_for(lambda: h.scheduler.turns >= turns + 3, 30, "three scheduler turns")
    assert h.state(job_id) is JobState.PAUSED
    assert lines(log) == ["a.txt"], "a task of a paused job started"
    for name in ("b.txt", "c.txt", "d.txt"):
        task = h.task(job_id, name)
        assert task.state is TaskState.QUEUED and not h.store.attempts(task.task_id), task
    h.store.resume_job(job_id, "test")
    h.scheduler.check_jobs([job_id])
    assert h.wait_ended(job_id) is JobState.COMPLETE
    assert sorted(lines(log)) == ["a.txt", "b.txt", "c.txt", "d.txt"]


SECOND = """\
def f(record, context):
    with open(context.config["log2"], "a") as fh:
        fh.write(record["file_name"] + "\\n")
    return record
"""


def test_a_paused_task_stops_after_its_current_step_and_resumes_at_the_next(
    harness: Callable[..., Harness], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    flags = tmp_path / "paused"
    flags.mkdir()
    h = harness(workers=1, pause_flags=flags)
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}},
                {"step": "apply_udf", "settings": {"script": "v.py", "function": "f"}},
            ),
            "u.py": STEER,
            "v.py": SECOND,
        }
    )
    binary = compile_project(root, SINGLE).path
    log, log2, gate = tmp_path / "started.log", tmp_path / "second.log", tmp_path / "gate"
    docs = folder(tmp_path / "in", {"a.txt": text_invoice("a", "1")})
    config = {"log": str(log), "log2": str(log2), "hold": ["a.txt"], "gate": str(gate)}
    job_id = h.submit(binary, docs, runtime_config=config)
    wait_for(lambda: lines(log) == ["a.txt"], 30, "a.txt's first UDF step to start")
    assert h.store.pause_job(job_id, "test").state is JobState.PAUSED
    (flags / f"{job_id}.paused").touch()  # what the daemon's pause does besides the store
    gate.touch()  # the running step finishes; the next one must not start
    wait_for(lambda: h.task(job_id, "a.txt").state is TaskState.QUEUED, 30, "a.txt given back")
    task = h.task(job_id, "a.txt")
    assert task.position == 2  # process_files and the first UDF: done
    assert not log2.exists(), "the step after the pause ran"
    events = [e for e in h.store.events(job_id, task.task_id) if e.to_state == "QUEUED"]
    assert "paused" in events[-1].why
    (flags / f"{job_id}.paused").unlink()
    h.store.resume_job(job_id, "test")
    h.scheduler.check_jobs([job_id])
    assert h.wait_ended(job_id) is JobState.COMPLETE
    assert lines(log) == ["a.txt"], "the finished step ran again"
    assert lines(log2) == ["a.txt"]
