"""The client side of the daemon (SPEC §9): the real ``flowd submit / sync / jobs / serve`` commands
run as subprocesses against a real ``flowd serve``, and :class:`flowd.client.FlowdClient` used
directly.

Jobs that must stay running while a test pauses, cancels or retries them run a UDF that waits for a
"gate" file the test creates: the job's state is then the test's choice, not a race.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from flowd.client import ApiError, FlowdClient
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from tests.conftest import EXAMPLES, FLOWD, flow, wait_for
from tests.daemon import DaemonProcess

INVOICES = EXAMPLES / "samples" / "invoices"
GATE_UDF = (
    "import os\n"
    "import time\n\n"
    "def wait(record, context):\n"
    "    while not os.path.exists(context.config['gate']):\n"
    "        time.sleep(0.02)\n"
    "    return record\n"
)


def flowd_all(
    *commands: Sequence[str | Path], timeout_s: float = 90
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``flowd`` commands side by side (each start costs a second of imports) and wait for all."""
    procs = [
        subprocess.Popen(
            [*FLOWD, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def flowd(*args: str | Path, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return flowd_all(args, timeout_s=timeout_s)[0]


def invoice_number(path: Path) -> str:
    found = re.search(r"Invoice No:\s*(\S+)", path.read_text())
    assert found is not None
    return found[1]


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with ``code`` and one clear ``flowd: error:`` line (no traceback)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flowd: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, invoice_binary: Path
) -> Iterator[DaemonProcess]:
    """A daemon whose data_root holds the invoice binary, ``in/`` (two text invoices), ``bad/``
    (a broken PDF) and ``gate.ibflowbin`` (waits for ``runtime_config.gate`` to exist)."""
    root = tmp_path_factory.mktemp("remote")
    project = root / "gate-project"
    project.mkdir()
    (project / "gate.ibflow").write_text(
        json.dumps(
            flow(
                {
                    "step": "apply_udf",
                    "settings": {"script": "gate.py", "function": "wait", "fields": []},
                }
            )
        )
    )
    (project / "gate.py").write_text(GATE_UDF)
    gate = compile_project(project, CompileSettings(flow_file="gate.ibflow")).path

    proc = DaemonProcess(root / "d")
    shutil.copy(invoice_binary, proc.data / "invoice.ibflowbin")
    shutil.copy(gate, proc.data / "gate.ibflowbin")
    (proc.data / "in").mkdir()
    for name in ("inv-000001.txt", "inv-000002.txt"):
        shutil.copy(INVOICES / name, proc.data / "in")
    (proc.data / "bad").mkdir()
    (proc.data / "bad" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF at all")
    with proc:
        yield proc


@pytest.fixture
def gate(served: DaemonProcess, tmp_path: Path) -> Iterator[Path]:
    """The gate file of one test's gated jobs; opened at the end so no job blocks a worker."""
    path = tmp_path / "gate-open"
    yield path
    path.touch()


def job_state(client: FlowdClient, job_id: str) -> str:
    return str(client.status(job_id)["cur_status"]["status"])


# -- submit -----------------------------------------------------------------------------------
def test_submit_wait_prints_the_output_folder_last(served: DaemonProcess) -> None:
    result = flowd(
        "submit",
        served.data / "invoice.ibflowbin",
        served.data / "in",
        "--wait",
        "--output-has-run-id",
        "--tag",
        "cli-submit",
        "--config",
        served.config,
    )
    assert result.returncode == 0, result.stderr
    output = Path(result.stdout.strip().splitlines()[-1])
    assert output.is_dir() and output.parent == served.data / "out"  # a run-id folder in out/
    assert "COMPLETE (2 files, 0 failed)" in result.stderr
    with served.client() as client:
        (job,) = client.jobs(tag="cli-submit")["jobs"]
        assert job["output_folder"] == str(output) and job["status"] == "COMPLETE"


def test_a_failing_job_exits_1_and_a_refused_one_2(served: DaemonProcess, tmp_path: Path) -> None:
    outside = tmp_path / "outside"  # not in data_root: the daemon refuses it
    outside.mkdir()
    binary = served.data / "invoice.ibflowbin"
    failed, refused = flowd_all(
        ("submit", binary, served.data / "bad", "--wait", "--config", served.config),
        ("submit", binary, outside, "--config", served.config),
    )
    assert failed.returncode == 1, failed.stderr
    assert "FAILED" in failed.stderr and "broken.pdf" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert Path(failed.stdout.strip().splitlines()[-1]) == served.data / "out"
    assert_one_line_error(refused, 2, "input_dir")


# -- sync -------------------------------------------------------------------------------------
def test_sync_prints_records_as_json_and_as_csv(served: DaemonProcess) -> None:
    binary = served.data / "invoice.ibflowbin"
    files = [INVOICES / "inv-000001.txt", INVOICES / "inv-000002.txt"]
    as_json, as_csv, broken = flowd_all(
        ("sync", binary, *files, "--config", served.config),
        ("sync", binary, *files, "--format", "csv", "--config", served.config),
        ("sync", binary, served.data / "bad" / "broken.pdf", "--config", served.config),
    )
    expected = [invoice_number(f) for f in files]
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert [r["file_name"] for r in records] == ["inv-000001.txt", "inv-000002.txt"]
    numbers = [{f["key"]: f["value"] for f in r["results"]}["invoice_number"] for r in records]
    assert numbers == expected

    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["invoice_number"] for row in rows] == expected

    assert broken.returncode == 1
    assert "broken.pdf" in broken.stderr and "Traceback" not in broken.stderr
    assert json.loads(broken.stdout) == []


# -- jobs -------------------------------------------------------------------------------------
def test_jobs_list_and_status(served: DaemonProcess) -> None:
    job_id = "cli-listed-" + "x" * 39  # 50 characters, the longest a job id may be
    with served.client() as client:
        client.run_async("invoice.ibflowbin", "in", job_id=job_id, settings={"tags": ["listed"]})
        client.wait(job_id, poll_s=0.05, timeout_s=60)
    listed, table, status, unknown = flowd_all(
        ("jobs", "list", "--tag", "listed", "--json", "--config", served.config),
        ("jobs", "list", "--status", "COMPLETE", "--config", served.config),
        ("jobs", "status", job_id, "--config", served.config),
        ("jobs", "status", "no-such-job", "--config", served.config),
    )
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)["jobs"]
    assert (job["job_id"], job["status"], job["tags"]) == (job_id, "COMPLETE", ["listed"])

    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if "cli-listed" in line]
    assert job_id in row and "COMPLETE" in row  # whole, though piped: the id is what others take

    assert status.returncode == 0, status.stderr
    answer = json.loads(status.stdout)
    assert answer["state"] == "DONE" and answer["cur_status"]["status"] == "COMPLETE"
    assert answer["results"][0]["status"] == "OK"

    assert_one_line_error(unknown, 2, "404", "no-such-job")


def test_jobs_pause_resume_cancel_retry(served: DaemonProcess, gate: Path) -> None:
    client = served.client()
    submitted = flowd(
        "submit", served.data / "gate.ibflowbin", served.data / "in", "--job-id", "cli-gated",
        "--runtime-config", json.dumps({"gate": str(gate)}), "--config", served.config,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == "cli-gated\n"  # without --wait: the job id alone
    wait_for(lambda: job_state(client, "cli-gated") == "RUNNING", 30, "the gated job to run")

    def command(action: str) -> str:
        result = flowd("jobs", action, "cli-gated", "--config", served.config)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert command("pause") == "job cli-gated: PAUSED"
    assert job_state(client, "cli-gated") == "PAUSED"
    assert command("resume") in ("job cli-gated: RUNNING", "job cli-gated: QUEUED")
    assert command("cancel") == "job cli-gated: CANCELLED"
    assert command("retry") in ("job cli-gated: RUNNING", "job cli-gated: QUEUED")
    gate.touch()
    final = client.wait("cli-gated", poll_s=0.05, timeout_s=60)
    assert final["cur_status"]["status"] == "COMPLETE"
    assert final["cur_status"]["run_summary"]["numFiles"] == 2
    client.close()

    conflicts = flowd_all(
        ("jobs", "pause", "cli-gated", "--config", served.config),
        ("jobs", "retry", "--checkpoint-failure", "cli-gated", "--config", served.config),
    )
    for conflict in conflicts:
        assert_one_line_error(conflict, 2, "409", "cli-gated", "COMPLETE")


# -- no daemon, a taken port ------------------------------------------------------------------
def test_a_daemon_that_is_not_running_cannot_be_reached(tmp_path: Path) -> None:
    def config(name: str, port: int, daemon_json: dict[str, Any] | None = None) -> Path:
        state = tmp_path / name / "state"
        state.mkdir(parents=True)
        (state / "api-token").write_text("some-token\n")
        if daemon_json is not None:
            (state / "daemon.json").write_text(json.dumps(daemon_json))
        path = tmp_path / name / "flowd.toml"
        path.write_text(f'state_dir = "state"\ndata_root = "."\n[api]\nport = {port}\n')
        return path

    port, stale = free_port(), free_port()
    never = config("never-started", port)
    # A daemon killed with -9 leaves its daemon.json, pointing at a port nobody listens on now.
    killed = config("killed", port, {"pid": 1, "url": f"http://127.0.0.1:{stale}"})
    never_result, killed_result = flowd_all(
        ("jobs", "list", "--config", never),
        ("submit", "b.ibflowbin", "in", "--config", killed),
    )
    assert_one_line_error(never_result, 1, "cannot reach", f"127.0.0.1:{port}", "flowd serve")
    assert_one_line_error(killed_result, 1, "cannot reach", f"127.0.0.1:{stale}")


def test_serve_on_a_taken_port_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "flowd.toml"
        config.write_text(
            f'state_dir = "state"\ndata_root = "."\n[api]\nport = {port}\n[log]\nformat = "json"\n'
        )
        result = flowd("serve", "--config", config, timeout_s=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "cannot listen" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


# -- the Python client ------------------------------------------------------------------------
def test_the_client_class(served: DaemonProcess, gate: Path) -> None:
    client = FlowdClient.from_config(served.config)
    assert client.url == served.url and client.healthz()

    data = client.run_async(
        "invoice.ibflowbin",
        "in",
        job_id="client-run",
        output_dir="out/client",
        settings={"output_has_run_id": False, "tags": ["client"]},
    )
    assert data == {"job_id": "client-run", "output_folder": str(served.data / "out" / "client")}
    seen: list[str] = []
    status = client.wait("client-run", poll_s=0.05, timeout_s=60, on_status=lambda s: seen.append(
        s["cur_status"]["status"]
    ))  # fmt: skip
    assert status["state"] == "DONE" and seen[-1] == "COMPLETE"
    assert status["cur_status"]["run_summary"]["numFiles"] == 2  # cur_status parsed for us
    assert status["results"] == [{"status": "OK", "output_folder": data["output_folder"]}]

    answer = client.run_sync("invoice.ibflowbin", [INVOICES / "inv-000003.txt"])
    (record,) = answer["records"]
    number = invoice_number(INVOICES / "inv-000003.txt")
    assert {f["key"]: f["value"] for f in record["results"]}["invoice_number"] == number
    assert (
        number
        in client.run_sync("invoice.ibflowbin", [INVOICES / "inv-000003.txt"], result_format="csv")[
            "csv"
        ]
    )

    assert [j["job_id"] for j in client.jobs(tag="client")["jobs"]] == ["client-run"]
    pipeline_id = client.create_pipeline("monthly")
    assert {"pipeline_id": pipeline_id, "name": "monthly"}.items() <= next(
        p for p in client.pipelines() if p["pipeline_id"] == pipeline_id
    ).items()
    assert client.set_pipelines("client-run", [pipeline_id])["pipeline_ids"] == [pipeline_id]
    assert [j["job_id"] for j in client.jobs(pipeline_id=pipeline_id)["jobs"]] == ["client-run"]

    gated = client.run_async(
        "gate.ibflowbin", "in", settings={"runtime_config": {"gate": str(gate)}}
    )
    assert client.command("pause", gated["job_id"])["state"] == "PAUSED"
    assert client.command("cancel", gated["job_id"])["state"] == "CANCELLED"  # a paused job
    assert client.command("retry", gated["job_id"])["state"] in ("QUEUED", "RUNNING")
    gate.touch()
    assert client.wait(gated["job_id"], poll_s=0.05, timeout_s=60)["cur_status"]["status"] == (
        "COMPLETE"
    )

    errors: list[tuple[Callable[[], Any], int, str]] = [
        (lambda: client.command("pause", "client-run"), 409, "COMPLETE"),
        (lambda: client.status("nobody"), 404, "nobody"),
        (lambda: client.run_async("invoice.ibflowbin", "../outside"), 403, "input_dir"),
        (lambda: client.run_async("invoice.ibflowbin", "in", job_id="client-run"), 409, "taken"),
        (lambda: FlowdClient(served.url, "wrong-token").jobs(), 401, ""),
    ]
    for call, code, word in errors:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status == code, caught.value.message
        assert caught.value.message.startswith(f"HTTP {code}: ") and word in caught.value.message
    with pytest.raises(ValueError):
        client.command("explode", "client-run")
    client.close()

    with pytest.raises(ApiError) as unreachable:
        FlowdClient(f"http://127.0.0.1:{free_port()}", "t", timeout_s=5).jobs()
    assert unreachable.value.status == 0 and "cannot reach" in unreachable.value.message


def test_a_new_job_into_a_reused_output_folder_runs_every_step(served: DaemonProcess) -> None:
    """A job writing where an earlier job wrote (no run id, no delete_out_dir) must not take the
    earlier job's step outputs for its own resume points: a changed file gives its new values."""
    inbox = served.data / "reuse"
    inbox.mkdir()
    original = (INVOICES / "inv-000001.txt").read_text()
    (inbox / "a.txt").write_text(original)
    numbers = []
    with served.client() as client:
        for text in (
            original,
            original.replace(invoice_number(INVOICES / "inv-000001.txt"), "NEW-7"),
        ):
            (inbox / "a.txt").write_text(text)
            job = client.run_async("invoice.ibflowbin", "reuse", output_dir="out/reuse")
            client.wait(job["job_id"], poll_s=0.05, timeout_s=60)
            results = json.loads((served.data / "out" / "reuse" / "results.json").read_text())
            numbers.append(results[0]["invoice_number"])
    assert numbers == [invoice_number(INVOICES / "inv-000001.txt"), "NEW-7"]
