"""Job control through a real ``flowd serve`` over HTTP (SPEC §6, §7): step timeouts with the
configured attempts, pause / resume / cancel / retry and their 409s, a checkpoint stop continued with
``retry_type = "checkpoint_failure"``, a reduce UDF, and compile jobs with the UDF gate.

The test reads the daemon's job store (a real SQLite file other processes may open) to see
attempts and events; waits poll with a deadline."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.flows.binary import load_binary
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.jobs.states import AttemptOutcome, TaskState
from flowd.jobs.store import JobStore
from tests.conftest import REFINER, flow, ranked_project, refiner_step, text_invoice, wait_for
from tests.daemon import DaemonProcess

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")
ENDED = {"COMPLETE", "FAILED", "CANCELLED", "STOPPED_AT_CHECKPOINT"}

# Notes "start <file> <pid>" when it starts a file and "end <file>" when it returns it; files named
# in runtime_config "hold" wait until ``<gates>/<file>`` exists (60 s at most).
STEER = """\
import os
import time


def f(record, context):
    cfg = context.config
    name = record["file_name"]
    with open(cfg["log"], "a") as fh:
        fh.write(f"start {name} {os.getpid()}\\n")
    if name in cfg.get("hold", []):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(cfg["gates"], name)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    with open(cfg["log"], "a") as fh:
        fh.write(f"end {name}\\n")
    return record
"""

VALIDATIONS = {
    "version": 1,
    "rules": [
        {"field": "total", "formula": "is_number(total) and total > 0", "message": "total > 0"},
    ],
}


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(workers: int = 1, top_toml: str = "") -> DaemonProcess:
        proc = DaemonProcess(tmp_path / "d", workers=workers, top_toml=top_toml)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            try:
                proc.stop(30)
            except Exception:
                proc.kill9()


def compile_into(proc: DaemonProcess, root: Path, name: str) -> str:
    """Compile ``root`` locally (the operator's own act) into the daemon's data root."""
    target = proc.data / f"{name}.ibflowbin"
    compile_project(root, SINGLE, target)
    return target.name


def inputs(proc: DaemonProcess, name: str, docs: dict[str, str]) -> str:
    folder = proc.data / name
    folder.mkdir(parents=True)
    for file, text in docs.items():
        (folder / file).write_text(text)
    return name


def submit(proc: DaemonProcess, binary: str, input_dir: str, **settings: Any) -> str:
    r = proc.post(
        "/api/v1/flow/run_binary_async",
        {"binary_path": binary, "input_dir": input_dir, "settings": settings},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["job_id"])


def status(proc: DaemonProcess, job_id: str) -> dict[str, Any]:
    r = proc.get("/api/v1/jobs/status", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    body["cur"] = json.loads(body["cur_status"])
    return body


def job_status(proc: DaemonProcess, job_id: str) -> str:
    return str(status(proc, job_id)["cur"]["status"])


def wait_status(
    proc: DaemonProcess, job_id: str, want: str, timeout_s: float = 60
) -> dict[str, Any]:
    wait_for(lambda: job_status(proc, job_id) == want, timeout_s, f"job {job_id} to be {want}")
    return status(proc, job_id)


def wait_ended(proc: DaemonProcess, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    wait_for(lambda: status(proc, job_id)["state"] == "DONE", timeout_s, f"job {job_id} to end")
    return status(proc, job_id)


def command(proc: DaemonProcess, action: str, job_id: str, **extra: Any) -> Any:
    return proc.post(f"/api/v1/jobs/{action}", {"job_id": job_id, **extra})


def conflict(proc: DaemonProcess, action: str, job_id: str, **extra: Any) -> str:
    r = command(proc, action, job_id, **extra)
    assert r.status_code == 409, (action, r.status_code, r.text)
    body = r.json()
    assert body["status"] == "ERROR" and body["msg"], body
    return str(body["msg"])


def results(output_folder: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((Path(output_folder) / "results.json").read_text())
    return rows


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def steer_project(make_project: Callable[..., Path]) -> Path:
    return make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "u.py": STEER,
        }
    )


def test_a_step_that_never_returns_fails_after_the_configured_attempts(
    start_daemon: Callable[..., DaemonProcess], make_project: Callable[..., Path]
) -> None:
    proc = start_daemon(workers=1, top_toml="max_attempts = 2")
    udf = (
        "def f(record, context):\n"
        "    if 'stuck' in record['file_name']:\n"
        "        while True:\n"
        "            pass\n"
        "    return record\n"
    )
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
            ),
            "u.py": udf,
        }
    )
    binary = compile_into(proc, root, "stuck")
    docs = {"a.txt": text_invoice("A", "1"), "stuck.txt": text_invoice("S", "1")}
    docs["b.txt"] = text_invoice("B", "2")
    job_id = submit(proc, binary, inputs(proc, "in", docs), step_timeout=1)
    body = wait_ended(proc, job_id, 60)
    assert body["cur"]["status"] == "FAILED"
    assert body["cur"]["run_summary"]["numFailedFiles"] == 1
    assert body["cur"]["run_summary"]["numFiles"] == 3
    msg = body["results"][0]["msg"]
    assert "stuck.txt" in msg and "timed out after 1 s" in msg, msg
    with JobStore(proc.state / "jobs.sqlite3") as store:
        tasks = {t.file: t for t in store.tasks(job_id)}
        attempts = store.attempts(tasks["stuck.txt"].task_id)
    assert [a.outcome for a in attempts] == [AttemptOutcome.RETRY, AttemptOutcome.FAILED]
    assert attempts[1].started_at - (attempts[0].ended_at or 0) >= 0.8, "no backoff"
    assert tasks["a.txt"].state is tasks["b.txt"].state is TaskState.DONE
    output = body["results"][0]["output_folder"]
    assert sorted(r["file_name"] for r in results(output)) == ["a.txt", "b.txt"]


def test_pause_resume_cancel_retry_through_the_api(
    start_daemon: Callable[..., DaemonProcess],
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    proc = start_daemon(workers=1)
    binary = compile_into(proc, steer_project(make_project), "steer")
    log, gates = tmp_path / "udf.log", tmp_path / "gates"
    gates.mkdir()
    docs = {f"{c}.txt": text_invoice(c.upper(), "1") for c in "abcd"}
    config = {"log": str(log), "gates": str(gates), "hold": ["a.txt", "c.txt"]}
    job_id = submit(proc, binary, inputs(proc, "in", docs), runtime_config=config)

    def started(name: str) -> bool:
        return any(line.startswith(f"start {name} ") for line in log_lines(log))

    # Pause while a.txt's step runs: nothing else of the job starts, and the state table's
    # refusals are 409s.
    wait_for(lambda: started("a.txt"), 30, "a.txt to start")
    r = command(proc, "pause", job_id)
    assert r.status_code == 200 and r.json()["state"] == "PAUSED", r.text
    assert "PAUSED" in conflict(proc, "pause", job_id)
    assert "CANCELLED or FAILED" in conflict(proc, "retry", job_id)
    conflict(proc, "retry", job_id, retry_type="checkpoint_failure")
    (gates / "a.txt").touch()
    store = JobStore(proc.state / "jobs.sqlite3")
    try:
        tasks = {t.file: t.task_id for t in store.tasks(job_id)}
        wait_for(lambda: store.get_task(tasks["a.txt"]).state is TaskState.DONE, 30, "a.txt")
        before = proc.get("/api/v1/jobs/status", params={"job_id": job_id}).json()
        assert json.loads(before["cur_status"])["status"] == "PAUSED"
        for name in ("b.txt", "c.txt", "d.txt"):
            assert store.get_task(tasks[name]).state is TaskState.QUEUED
            assert not store.attempts(tasks[name]), f"{name} started while its job was paused"
        assert not started("b.txt")

        # Resume: b.txt runs, c.txt holds the worker; pause again, then cancel the paused job.
        r = command(proc, "resume", job_id)
        assert r.status_code == 200 and r.json()["state"] in ("RUNNING", "QUEUED"), r.text
        wait_for(lambda: started("c.txt"), 30, "c.txt to start")
        assert command(proc, "pause", job_id).status_code == 200
        pid = int(next(x for x in log_lines(log) if x.startswith("start c.txt ")).split()[-1])
        r = command(proc, "cancel", job_id)
        assert r.status_code == 200 and r.json()["state"] == "CANCELLED", r.text
        body = wait_ended(proc, job_id)
        assert body["cur"]["status"] == "CANCELLED"
        assert body["results"][0]["status"] == "ERROR"
        wait_for(lambda: not _alive(pid), 30, "the worker running c.txt to be stopped")
        assert "end c.txt" not in log_lines(log)
        assert "CANCELLED" in conflict(proc, "resume", job_id)
        assert "CANCELLED" in conflict(proc, "pause", job_id)
        assert "CANCELLED" in conflict(proc, "cancel", job_id)

        # Retry: only the unfinished tasks run again; a.txt and b.txt keep their one result.
        (gates / "c.txt").touch()
        r = command(proc, "retry", job_id)
        assert r.status_code == 200, r.text
        body = wait_ended(proc, job_id)
        assert body["cur"]["status"] == "COMPLETE", body
        runs = [x.split()[1] for x in log_lines(log) if x.startswith("start ")]
        assert runs.count("a.txt") == runs.count("b.txt") == runs.count("d.txt") == 1, runs
        assert runs.count("c.txt") == 2, runs
        for name in ("a.txt", "b.txt"):
            assert len(store.attempts(tasks[name])) == 1
            done = [e for e in store.events(job_id, tasks[name]) if e.to_state == TaskState.DONE]
            assert len(done) == 1
        outcomes = [a.outcome for a in store.attempts(tasks["c.txt"])]
        assert outcomes == [AttemptOutcome.CANCELLED, AttemptOutcome.DONE]
        rows = results(body["results"][0]["output_folder"])
        assert sorted(r["file_name"] for r in rows) == ["a.txt", "b.txt", "c.txt", "d.txt"]
        assert "from COMPLETE" in conflict(proc, "retry", job_id)
        assert conflict(proc, "cancel", job_id)
    finally:
        store.close()
    r = command(proc, "pause", "no-such-job")
    assert r.status_code == 404 and r.json()["status"] == "ERROR"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_checkpoint_stop_then_retry_after_correcting_the_record(
    start_daemon: Callable[..., DaemonProcess], make_project: Callable[..., Path]
) -> None:
    proc = start_daemon(workers=2)
    root = make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {"step": "apply_checkpoint", "settings": {"validations": "v.ibvalidations"}},
                {"step": "apply_refiner", "settings": {"program": "after.ibrefiner"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "v.ibvalidations": VALIDATIONS,
            "after.ibrefiner": {
                "version": 1,
                "fields": [{"name": "checked", "formula": "total + 1"}],
            },
        }
    )
    binary = compile_into(proc, root, "checked")
    docs = {"good.txt": text_invoice("G-1", "5.00"), "bad.txt": text_invoice("B-1", "-3.00")}
    job_id = submit(proc, binary, inputs(proc, "in", docs))
    body = wait_ended(proc, job_id)
    assert body["cur"]["status"] == "STOPPED_AT_CHECKPOINT"
    assert "checkpoint_failure" in body["results"][0]["msg"]
    out = Path(body["results"][0]["output_folder"])
    assert not (out / "s4_apply_refiner").exists(), "nothing may pass the checkpoint"
    assert "checkpoint_failure" in conflict(proc, "retry", job_id)

    # A reviewer corrects the stored record, then continues the job.
    path = out / "s3_apply_checkpoint" / "bad.txt.ibmsg"
    message = json.loads(path.read_text())
    for f in message["records"][0]["fields"]:
        if f["key"] == "total":
            f["value"] = 3.0
    path.write_text(json.dumps(message))
    r = command(proc, "retry", job_id, retry_type="checkpoint_failure")
    assert r.status_code == 200, r.text
    body = wait_ended(proc, job_id)
    assert body["cur"]["status"] == "COMPLETE", body
    checked = {r["file_name"]: r["checked"] for r in results(str(out))}
    assert checked == {"bad.txt": 4.0, "good.txt": 6.0}
    batch = json.loads((out / "batch.ibflowresults").read_text())
    assert batch["status"] == "COMPLETE" and batch["run_summary"]["numCompleteFiles"] == 2


def test_a_reduce_udf_flow_sees_every_files_records(
    start_daemon: Callable[..., DaemonProcess], make_project: Callable[..., Path]
) -> None:
    proc = start_daemon(workers=2)
    root = ranked_project(make_project, ["rank", "count"])
    binary = compile_into(proc, root, "ranked")
    totals = {"a": 30, "b": 10, "c": 20, "d": 40, "e": 5}
    docs = {f"{n}.txt": text_invoice(n, str(v)) for n, v in totals.items()}
    job_id = submit(proc, binary, inputs(proc, "in", docs))
    body = wait_ended(proc, job_id)
    assert body["cur"]["status"] == "COMPLETE", body
    rows = {r["file_name"]: r for r in results(body["results"][0]["output_folder"])}
    assert {n: rows[f"{n}.txt"]["label"] for n in totals} == {
        "a": "#4",
        "b": "#2",
        "c": "#3",
        "d": "#5",
        "e": "#1",
    }
    assert {r["count"] for r in rows.values()} == {5}


def compile_request(proc: DaemonProcess, root: str, **extra: Any) -> dict[str, Any]:
    r = proc.post(
        "/api/v1/flow_binary/compile",
        {
            "flow_project_root": root,
            "binary_type": "Single Flow",
            "settings": {"flow_file": "invoice.ibflow"},
            **extra,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "OK"
    return wait_ended(proc, r.json()["job_id"])


def test_compile_jobs_build_binaries_report_problems_and_gate_udfs(
    start_daemon: Callable[..., DaemonProcess], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    trusted = tmp_path / "d" / "data" / "trusted"
    proc = start_daemon(workers=1, top_toml=f'udf_roots = ["{trusted}"]')
    plain = {"invoice.ibflow": flow(refiner_step()), "modules/invoice.ibrefiner": REFINER}
    make_project(plain, proc.data / "plain")
    body = compile_request(proc, "plain")
    assert body["cur"]["status"] == "COMPLETE", body
    built = Path(body["results"][0]["binary_path"])
    assert built == proc.data / "plain" / "build" / "bin" / "invoice.ibflowbin"
    assert load_binary(built).plan.binary_type is BinaryType.SINGLE_FLOW
    job_id = submit(
        proc,
        str(built.relative_to(proc.data)),
        inputs(
            proc,
            "in",
            {
                "a.txt": text_invoice("A-7", "7.00"),
            },
        ),
    )
    out = wait_ended(proc, job_id)["results"][0]["output_folder"]
    assert results(out)[0]["invoice_number"] == "A-7"

    broken = dict(plain)
    broken["modules/invoice.ibrefiner"] = {
        "version": 1,
        "fields": [{"name": "total", "formula": "to_number(INPUT_COL"}],
    }
    make_project(broken, proc.data / "broken")
    body = compile_request(proc, "broken")
    assert body["cur"]["status"] == "FAILED"
    result = body["results"][0]
    assert result["status"] == "ERROR"
    located = r"modules/invoice\.ibrefiner:6:38: field 'total': the formula ends too early"
    assert re.search(located, result["msg"]), result
    assert [p for p in result["problems"] if re.search(located, p)], result
    assert not (proc.data / "broken" / "build").exists()

    ran = tmp_path / "udf-imported"  # the script marks that it was imported (run)
    with_udf = {
        "invoice.ibflow": flow(
            {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
        ),
        "u.py": f"open({str(ran)!r}, 'w').close()\ndef f(record, context):\n    return record\n",
    }
    make_project(with_udf, proc.data / "untrusted")
    body = compile_request(proc, "untrusted")
    assert body["cur"]["status"] == "FAILED"
    assert "udf_roots" in body["results"][0]["msg"], body
    assert not ran.exists(), "the gate let the UDF script run"
    assert not (proc.data / "untrusted" / "build").exists()
    make_project(with_udf, trusted)
    body = compile_request(proc, "trusted")
    assert body["cur"]["status"] == "COMPLETE", body["results"]
    assert Path(body["results"][0]["binary_path"]).is_file() and ran.exists()
