"""The ``flowd`` command line: exact commands, exit codes, last lines, one-line errors (SPEC §9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import FLOWD, REFINER, flow, refiner_step, text_invoice, wait_for, write_json


def flowd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWD, *args], capture_output=True, text=True, timeout=300)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_compile_run_inspect(simple_project: Path, tmp_path: Path) -> None:
    compiled = flowd("compile", str(simple_project))
    assert compiled.returncode == 0, compiled.stderr
    binary = Path(compiled.stdout.strip().splitlines()[-1])
    assert binary == simple_project / "build" / "bin" / "invoice.ibflowbin"
    inspected = flowd("inspect", str(binary))
    manifest = json.loads(inspected.stdout)
    assert manifest["binary_type"] == "Single Flow" and manifest["contains_udfs"] is False
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(text_invoice("C-1", "3.50"))
    ran = flowd(
        "run",
        str(binary),
        str(inbox),
        "--output-has-run-id",
        "--runtime-config",
        '{"log_prefix": "org=cli "}',
        "--job-id",
        "cli-job.1",
        "--log-to-timeline",
    )
    assert ran.returncode == 0, ran.stderr
    out = Path(ran.stdout.strip().splitlines()[-1])
    assert out.parent == tmp_path / "out"
    batch = json.loads((out / "batch.ibflowresults").read_text())
    assert batch["job_id"] == "cli-job.1" and batch["status"] == "COMPLETE"
    assert (out / "logs" / "timeline.jsonl").read_text().startswith("org=cli ")


def test_compile_errors_exit_1_with_located_lines(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_json(root / "invoice.ibflow", flow(refiner_step("r.ibrefiner")))
    write_json(
        root / "r.ibrefiner",
        {"version": 1, "fields": [{"name": "a", "formula": "upper(", "typo": 1}]},
    )
    result = flowd("compile", str(root))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("r.ibrefiner:") for line in lines), lines
    no_traceback(result)


def test_compile_needs_flow_file_when_ambiguous(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_json(root / "a.ibflow", flow())
    write_json(root / "b.ibflow", flow())
    result = flowd("compile", str(root))
    assert result.returncode == 1 and "--flow-file" in result.stderr
    result = flowd(
        "compile", str(root), "--flow-file", "b.ibflow", "--output", str(tmp_path / "x.ibflowbin")
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("x.ibflowbin")


def test_run_exit_codes(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_json(
        root / "invoice.ibflow",
        flow(
            refiner_step(),
            {"step": "apply_checkpoint", "settings": {"validations": "v.ibvalidations"}},
        ),
    )
    write_json(root / "modules" / "invoice.ibrefiner", REFINER)
    write_json(
        root / "v.ibvalidations",
        {
            "version": 1,
            "rules": [{"field": "total", "formula": "total > 0", "message": "no total"}],
        },
    )
    binary = flowd("compile", str(root)).stdout.strip()
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text(text_invoice("E-1", "0.00"))
    stopped = flowd("run", binary, str(inbox))
    assert stopped.returncode == 3, stopped.stderr
    out = stopped.stdout.strip().splitlines()[-1]
    msg = Path(out) / "s3_apply_checkpoint" / "a.txt.ibmsg"
    data = json.loads(msg.read_text())
    data["records"][0]["fields"][-1]["value"] = 1.5
    msg.write_text(json.dumps(data))
    resumed = flowd("run", "--resume", out)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == out
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.txt").write_text(text_invoice("E-2", "5.00"))
    (mixed / "empty.txt").write_bytes(b"")
    failed = flowd("run", binary, str(mixed))
    assert failed.returncode == 1, failed.stderr
    assert "empty.txt: empty file" in failed.stderr
    no_traceback(failed)


def test_usage_errors_exit_2_without_traceback(simple_project: Path, tmp_path: Path) -> None:
    binary = flowd("compile", str(simple_project)).stdout.strip()
    inbox = tmp_path / "in"
    inbox.mkdir()
    cases = [
        ("run", binary),
        ("run", str(tmp_path / "missing.ibflowbin"), str(inbox)),
        ("run", binary, str(tmp_path / "nope")),
        ("run", binary, str(inbox), "--runtime-config", "{bad"),
        ("run", binary, str(inbox), "--job-id", "x" * 51),
        ("run", binary, str(inbox), "--step-timeout", "-5"),
        ("run", "--resume", str(tmp_path)),
        ("inspect", str(tmp_path / "missing.ibflowbin")),
    ]
    for args in cases:
        result = flowd(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        no_traceback(result)
        assert result.stderr.strip(), args


def test_init_writes_a_working_project(tmp_path: Path) -> None:
    target = tmp_path / "new"
    created = flowd("init", str(target))
    assert created.returncode == 0, created.stderr
    compiled = flowd("compile", str(target))
    assert compiled.returncode == 0, compiled.stderr
    ran = flowd(
        "run", compiled.stdout.strip(), str(target / "samples"), "--output-dir", str(tmp_path / "o")
    )
    assert ran.returncode == 0, ran.stderr
    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    assert rows and all(r["status"] == "OK" for r in rows)
    again = flowd("init", str(target))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_log_prefix_on_every_line_of_the_run(tmp_path: Path) -> None:
    root = tmp_path / "p"
    udf = "def f(record, context):\n    context.logger.info('hello', n=1)\n    return record\n"
    write_json(
        root / "invoice.ibflow",
        flow({"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}),
    )
    (root / "u.py").write_text(udf)
    binary = flowd("compile", str(root)).stdout.strip()
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.txt").write_text("text")
    (inbox / "b.txt").write_bytes(b"")
    result = subprocess.run(
        [
            *FLOWD,
            "--log-format",
            "json",
            "--log-level",
            "info",
            "run",
            binary,
            str(inbox),
            "--runtime-config",
            '{"log_prefix": "org=Piston "}',
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1  # b.txt is empty
    lines = [line for line in result.stderr.splitlines() if line.startswith(("org=", "{"))]
    events = [json.loads(line.removeprefix("org=Piston ")) for line in lines]
    assert {"run_started", "udf_log", "file_failed", "run_finished"} <= {e["event"] for e in events}
    assert all(line.startswith("org=Piston {") for line in lines), lines
    assert all(e["log_prefix"] == "org=Piston " and e["job_id"] for e in events)


def test_progress_bar_on_a_terminal(simple_project: Path, tmp_path: Path) -> None:
    import os
    import pty

    binary = flowd("compile", str(simple_project)).stdout.strip()
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"{i}.txt").write_text(text_invoice(f"P-{i}", "1.00"))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*FLOWD, "run", binary, str(inbox)], stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    assert b"files" in seen and b"/3" in seen, seen[-500:]  # the bar: "files ━━━ 2/3 0:00:01"
    assert stdout.strip().splitlines()[-1] == str(tmp_path / "out")


def test_ctrl_c_keeps_finished_steps_and_resume_completes(tmp_path: Path) -> None:
    import signal

    root = tmp_path / "p"
    udf = "import time\ndef f(record, context):\n    time.sleep(0.3)\n    return record\n"
    write_json(
        root / "invoice.ibflow",
        flow(
            refiner_step(), {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
        ),
    )
    write_json(root / "modules" / "invoice.ibrefiner", REFINER)
    (root / "u.py").write_text(udf)
    binary = flowd("compile", str(root)).stdout.strip()
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(20):
        (inbox / f"{i:02d}.txt").write_text(text_invoice(f"I-{i}", f"{i + 1}.00"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*FLOWD, "run", binary, str(inbox), "--workers", "2"], stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: any(out.glob("s3_apply_udf/*.ibmsg")), what="a finished UDF step")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"flowd run --resume {out}" in stderr
    no_traceback(subprocess.CompletedProcess([], 0, "", stderr))
    assert json.loads((out / "batch.ibflowresults").read_text())["status"] == "RUNNING"
    resumed = flowd("run", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["file_name"] for r in rows) == [f"{i:02d}.txt" for i in range(20)]
    assert not list(out.rglob("*.tmp-*"))


def test_config_check(tmp_path: Path) -> None:
    from conftest import REPO

    ok = flowd("config", "check", "--config", str(REPO / "config" / "flowd.toml"))
    assert ok.returncode == 0, ok.stderr
    assert "ok (2 projects" in ok.stdout
    bad = tmp_path / "flowd.toml"
    bad.write_text("workers = -1\n[api]\nprot = 1\n")
    result = flowd("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert "[api].prot: unknown key" in result.stderr and "workers" in result.stderr
    no_traceback(result)
