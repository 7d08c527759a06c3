"""The daemon comes up, answers the seed's async example, and a status poll reads results[0]."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import wait_for


def test_async_run_and_status_poll(daemon: Any) -> None:
    r = daemon.post(
        "/api/v1/flow/run_binary_async",
        {"binary_path": "invoice.ibflowbin", "input_dir": "in", "settings": {"output_has_run_id": True}},
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["job_id"]

    def done() -> bool:
        return daemon.get("/api/v1/jobs/status", params={"job_id": job_id}).json()["state"] == "DONE"

    wait_for(done, 60, "the job to end")
    status = daemon.get("/api/v1/jobs/status", params={"job_id": job_id}).json()
    cur = json.loads(status["cur_status"])
    assert cur["status"] == "COMPLETE" and cur["curProgress"] == 1.0
    assert cur["run_summary"]["numFiles"] == 10
    assert status["results"][0]["status"] == "OK"


def test_a_second_daemon_on_the_same_state_dir_is_refused(daemon: Any) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "flowd.cli", "serve", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "another flowd daemon" in result.stderr and str(daemon.proc.pid) in result.stderr
    assert "Traceback" not in result.stderr
    assert daemon.get("/healthz").ok  # the first one is untouched
