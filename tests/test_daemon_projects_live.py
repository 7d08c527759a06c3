"""A real daemon recompiles a watched project when it changes: the next run uses the new binary,
and a broken edit keeps the old one in service (SPEC §8, Projects)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, wait_for

from tests.daemon import DaemonProcess

REFINER = "modules/invoice.ibrefiner"
SAMPLE = (EXAMPLES / "samples" / "invoices" / "inv-000002.txt").read_text()
TOTAL = 4639.76  # the sample's total (examples/samples/expected.json)


def project_state(proc: DaemonProcess) -> dict[str, Any]:
    status = proc.get("/api/v1/daemon/status").json()
    return next(p for p in status["projects"] if p["name"] == "inv")


def result_of(out: Path, name: str) -> dict[str, Any] | None:
    for results in out.glob("*/results.json"):
        for row in json.loads(results.read_text()):
            if row["file_name"] == name:
                return dict(row)
    return None


def test_an_edited_project_is_used_by_the_next_run_and_a_broken_edit_keeps_the_old_binary(
    tmp_path: Path,
) -> None:
    project = tmp_path / "d" / "data" / "inv"
    shutil.copytree(EXAMPLES / "invoices", project, ignore=shutil.ignore_patterns("build"))
    watch = """
[[projects]]
name = "inv"
root = "data/inv"
flow_file = "invoice.ibflow"

[[watches]]
name = "inbox"
input_dir = "data/inbox"
project = "inv"
output_dir = "data/out"
settle_s = 0.3
batch_window_s = 0.1
"""
    with DaemonProcess(tmp_path / "d", workers=1, extra_toml=watch) as proc:
        inbox, out = proc.data / "inbox", proc.data / "out"
        wait_for(lambda: project_state(proc)["state"] == "ok", 60, "the start-up compile")
        first_sha = project_state(proc)["content_sha256"]
        (inbox / "a.txt").write_text(SAMPLE)
        wait_for(lambda: result_of(out, "a.txt") is not None, 60, "a.txt's result")
        assert "total_doubled" not in result_of(out, "a.txt")  # type: ignore[operator]

        refiner = json.loads((project / REFINER).read_text())
        refiner["fields"].append({"name": "total_doubled", "type": "FLOAT", "formula": "total * 2"})
        (project / REFINER).write_text(json.dumps(refiner, indent=2))
        wait_for(
            lambda: project_state(proc)["content_sha256"] not in (None, first_sha),
            60,
            "the recompile",
        )
        (inbox / "b.txt").write_text(SAMPLE)
        wait_for(lambda: result_of(out, "b.txt") is not None, 60, "b.txt's result")
        assert result_of(out, "b.txt")["total_doubled"] == TOTAL * 2  # type: ignore[index]

        good_sha = project_state(proc)["content_sha256"]
        binary = Path(project_state(proc)["binary_path"])
        good_bytes = binary.read_bytes()
        (project / REFINER).write_text('{"version": 1, "fields": [')  # broken JSON
        wait_for(lambda: project_state(proc)["state"] == "failed", 60, "the failed compile")
        state = project_state(proc)
        assert any(REFINER in p for p in state["problems"]), state
        assert state["content_sha256"] == good_sha and binary.read_bytes() == good_bytes
        (inbox / "c.txt").write_text(SAMPLE)
        wait_for(lambda: result_of(out, "c.txt") is not None, 60, "c.txt's result")
        assert result_of(out, "c.txt")["total_doubled"] == TOTAL * 2  # type: ignore[index]


def test_sighup_adds_a_project_and_its_watch(tmp_path: Path) -> None:
    import signal

    project = tmp_path / "d" / "data" / "inv"
    shutil.copytree(EXAMPLES / "invoices", project, ignore=shutil.ignore_patterns("build"))
    with DaemonProcess(tmp_path / "d", workers=1) as proc:
        assert proc.get("/api/v1/daemon/status").json()["projects"] == []
        with proc.config.open("a", encoding="utf-8") as fh:
            fh.write(
                '\n[[projects]]\nname = "inv"\nroot = "data/inv"\nflow_file = "invoice.ibflow"\n'
                '\n[[watches]]\nname = "inbox"\ninput_dir = "data/inbox"\nproject = "inv"\n'
                'output_dir = "data/out"\nsettle_s = 0.3\nbatch_window_s = 0.1\n'
            )
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (
                [p["state"] for p in proc.get("/api/v1/daemon/status").json()["projects"]] == ["ok"]
            ),
            60,
            "the new project to compile",
        )
        assert (project / "build" / "bin" / "invoice.ibflowbin").is_file()
        wait_for(lambda: (proc.data / "inbox" / ".flowd").is_dir(), 30, "the new watch")
        (proc.data / "inbox" / "a.txt").write_text(SAMPLE)
        wait_for(lambda: result_of(proc.data / "out", "a.txt") is not None, 60, "a.txt's result")
        assert result_of(proc.data / "out", "a.txt")["total"] == TOTAL  # type: ignore[index]
