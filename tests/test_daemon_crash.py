"""Crash safety of a real ``flowd serve`` (SPEC §6): ``kill -9`` at several moments of a batch, and
between a job's end and its follow-up; after each restart the job goes on where it was, and in the
end every input file has exactly one result, no task is left running, the step outputs are whole.

Kill moments are chosen by polling the daemon's job store (another process may read it), never
by sleeping."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.jobs.states import AttemptOutcome, JobState, TaskState
from flowd.jobs.store import JobStore
from tests.conftest import REFINER, flow, refiner_step, text_invoice, wait_for
from tests.daemon import DaemonProcess

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")
FILES = 300
STEPS = ("s1_process_files", "s2_apply_refiner", "s3_apply_udf")

# Slows every file a little (runtime_config "sleep_s"); holds "held.txt" until the file named by
# runtime_config "gate" exists (60 s at most).
UDF = """\
import os
import time


def f(record, context):
    cfg = context.config
    if cfg.get("gate") and record["file_name"] == "held.txt":
        deadline = time.monotonic() + 60
        while not os.path.exists(cfg["gate"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(cfg.get("sleep_s", 0))
    return record
"""


@pytest.fixture
def proc(tmp_path: Path, make_project: Callable[..., Path]) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path / "d", workers=2)
    root = make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "u.py": UDF,
        }
    )
    compile_project(root, SINGLE, daemon.data / "slow.ibflowbin")
    with daemon:
        yield daemon


def submit(proc: DaemonProcess, docs: dict[str, str], **settings: Any) -> tuple[str, Path]:
    inbox = proc.data / "in"
    inbox.mkdir()
    for name, text in docs.items():
        (inbox / name).write_text(text)
    r = proc.post(
        "/api/v1/flow/run_binary_async",
        {"binary_path": "slow.ibflowbin", "input_dir": "in", "settings": settings},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return data["job_id"], Path(data["output_folder"])


def api_status(proc: DaemonProcess, job_id: str) -> dict[str, Any]:
    r = proc.get("/api/v1/jobs/status", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def count(store: JobStore, job_id: str, state: TaskState) -> int:
    return store.job_counts(job_id).by_state.get(state, 0)


def test_kill9_mid_batch_again_and_again_loses_and_repeats_nothing(
    proc: DaemonProcess, tmp_path: Path
) -> None:
    names = [f"inv{i:03}.txt" for i in range(FILES)]
    docs = {name: text_invoice(f"N-{i:03}", f"{i}.50") for i, name in enumerate(names)}
    job_id, out = submit(proc, docs, runtime_config={"sleep_s": 0.01})
    store = JobStore(proc.state / "jobs.sqlite3")
    try:
        kills = []
        for share in (0.0, 0.25, 0.5, 0.75):
            floor = int(FILES * share)

            def progressed(floor: int = floor) -> bool:
                running = count(store, job_id, TaskState.RUNNING)
                return running > 0 and count(store, job_id, TaskState.DONE) >= floor

            wait_for(progressed, 60, f"{floor} files done and more running")
            proc.kill9()
            kills.append(
                (count(store, job_id, TaskState.DONE), count(store, job_id, TaskState.RUNNING))
            )
            assert store.get_job(job_id).state is JobState.RUNNING
            proc.start()
        wait_for(lambda: api_status(proc, job_id)["state"] == "DONE", 90, "the job to end")
        status = api_status(proc, job_id)
        assert json.loads(status["cur_status"])["status"] == "COMPLETE", status
        done_at_kill = [d for d, _ in kills]
        assert done_at_kill == sorted(set(done_at_kill)), f"kills not at distinct moments: {kills}"
        assert all(running > 0 for _, running in kills), kills

        # The store: every task done once, nothing running; the kills cut attempts short.
        tasks = store.tasks(job_id)
        assert len(tasks) == FILES and {t.state for t in tasks} == {TaskState.DONE}
        assert count(store, job_id, TaskState.RUNNING) == 0
        lost = 0
        for t in tasks:
            done = [e for e in store.events(job_id, t.task_id) if e.to_state == TaskState.DONE]
            assert len(done) == 1, (t.file, done)
            outcomes = [a.outcome for a in store.attempts(t.task_id)]
            assert outcomes[-1] is AttemptOutcome.DONE and None not in outcomes, outcomes
            lost += outcomes.count(AttemptOutcome.LOST)
        assert lost >= len(kills), "the kills never interrupted a running task"
    finally:
        store.close()

    # The output folder: one result per input file, whole step outputs, nothing half-written.
    rows = json.loads((out / "results.json").read_text())
    assert Counter(r["file_name"] for r in rows) == Counter(names)
    for r in rows:
        i = int(r["file_name"][3:6])
        assert (r["invoice_number"], r["total"]) == (f"N-{i:03}", i + 0.5), r
    for step in STEPS:
        folder = out / step
        found = sorted(p.name for p in folder.iterdir())
        suffix = ".ibdoc" if step == STEPS[0] else ".ibmsg"
        assert found == sorted(n + suffix for n in names), step
        for p in folder.iterdir():
            json.loads(p.read_text())
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    batch = json.loads((out / "batch.ibflowresults").read_text())
    assert batch["status"] == "COMPLETE" and batch["run_summary"]["numFiles"] == FILES
    assert batch["run_summary"]["numCompleteFiles"] == FILES


def test_kill9_between_a_jobs_end_and_its_follow_up(proc: DaemonProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    docs = {"a.txt": text_invoice("A-1", "1.00"), "held.txt": text_invoice("H-1", "2.00")}
    job_id, out = submit(proc, docs, runtime_config={"gate": str(gate)})
    store = JobStore(proc.state / "jobs.sqlite3")
    try:
        wait_for(lambda: count(store, job_id, TaskState.DONE) == 1, 30, "a.txt to finish")
        # Hold the follow-up back: it reads batch.ibflowresults before it can record that it is
        # done, and reading a FIFO blocks until someone writes to it - nobody will.
        batch = out / "batch.ibflowresults"
        batch.unlink()
        os.mkfifo(batch)
        gate.touch()
        wait_for(lambda: store.get_job(job_id).state is JobState.COMPLETE, 30, "the job to end")
        assert proc.proc is not None
        dead = proc.proc.pid
        proc.kill9()
        job = store.get_job(job_id)
        assert job.finalized < job.ends, "the kill came after the follow-up"
        # What the dead daemon left: take it all away, as if it had died a moment earlier -
        # in the middle of writing results.json (its temporary file stays behind).
        batch.unlink()
        (out / "results.json").unlink(missing_ok=True)
        (out / "results.csv").unlink(missing_ok=True)
        (out / f"results.json.tmp-{dead}-1").write_text('[{"file_name": "a.t')
        proc.start()
        wait_for(
            lambda: store.get_job(job_id).finalized == store.get_job(job_id).ends,
            30,
            "the follow-up after the restart",
        )
    finally:
        store.close()
    rows = json.loads((out / "results.json").read_text())
    assert sorted((r["file_name"], r["invoice_number"]) for r in rows) == [
        ("a.txt", "A-1"),
        ("held.txt", "H-1"),
    ]
    assert (out / "results.csv").read_text().count("\n") == 3
    assert not list(out.glob("*.tmp-*")), "the dead daemon's temporary file was left behind"
    final = json.loads(batch.read_text())
    assert final["status"] == "COMPLETE" and final["run_summary"]["numCompleteFiles"] == 2
    status = api_status(proc, job_id)
    assert status["state"] == "DONE" and status["results"][0]["status"] == "OK"
