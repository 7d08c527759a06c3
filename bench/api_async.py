"""Docs/s of ``run_binary_async`` through the daemon, against ``flowd run`` on the same input.

    .venv/bin/python bench/api_async.py [--files 5000] [--repeat 1] [--workers 0] [--dir D]
        [--poll-s 0.05] [--keep]

Generates N text invoices (``bench/gen_invoices.py``) into the ``data_root`` of a real
``flowd serve`` (``tests/daemon.py``: a free loopback port, ``workers`` = the CPU count unless
``--workers`` says otherwise), compiles the example invoice flow (``examples/invoices``: refiner,
UDF, checkpoint) and times, ``--repeat`` times each, alternating:

- the *baseline*: ``flowd run BINARY INPUT --output-dir OUT --workers W``, a real subprocess, end
  to end (start-up, every step output, results);
- the *daemon*: ``POST /api/v1/flow/run_binary_async`` for the same input into another output
  folder, then ``GET /api/v1/jobs/status`` every ``--poll-s`` until ``state`` is ``DONE`` — the
  seed's client loop. The clock runs from the request to ``DONE``; the time until the job's
  ``results.json`` is on disk (the daemon writes it after the job ended) is printed too.

The daemon is started (and its workers spawned) before the clock; its start-up is not counted.
Both runs must leave a ``results.json`` with N rows; they are checked against the generator's
expected values. It prints the best docs/s of each and the ratio daemon / ``flowd run`` (target
of issue 3: ≥ 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.daemon
sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, run, work_folder
from gen_invoices import generate

from tests.daemon import DaemonProcess

TARGET_RATIO = 0.8
TIMEOUT_S = 3600.0


def check_rows(out: Path, expected: dict[str, dict[str, object]], what: str) -> int:
    """``out/results.json`` has one row per input file; the number of rows with a wrong field."""
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if len(rows) != len(expected):
        sys.exit(f"{what}: results.json has {len(rows)} rows for {len(expected)} files")
    return sum(1 for r in rows if any(r.get(k) != v for k, v in expected[r["file_name"]].items()))


def flowd_run(binary: str, inbox: Path, out: Path, workers: int) -> float:
    """Seconds of ``flowd run`` end to end."""
    started = time.perf_counter()
    ran = run(binary, inbox, out, workers)
    took = time.perf_counter() - started
    if ran.returncode != 0:
        sys.exit(f"flowd run exited {ran.returncode}:\n{ran.stderr[-2000:]}")
    return took


def results_ready(path: Path, count: int) -> bool:
    try:
        return len(json.loads(path.read_text(encoding="utf-8"))) == count
    except (OSError, ValueError):
        return False


def daemon_run(
    proc: DaemonProcess, session: requests.Session, out_name: str, count: int, poll_s: float
) -> tuple[float, float, bool, dict[str, Any]]:
    """Seconds from the ``run_binary_async`` request to ``DONE``, and to ``results.json`` with
    ``count`` rows; whether that file was there when ``DONE`` was seen; the final
    ``cur_status``."""
    body = {"binary_path": "invoice.ibflowbin", "input_dir": "inbox", "output_dir": out_name}
    started = time.perf_counter()
    answer = session.post(proc.url + "/api/v1/flow/run_binary_async", json=body, timeout=600)
    if answer.status_code != 200:
        sys.exit(f"run_binary_async answered {answer.status_code}: {answer.text[:2000]}")
    job_id = answer.json()["data"]["job_id"]
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        status = session.get(
            proc.url + "/api/v1/jobs/status", params={"job_id": job_id}, timeout=60
        ).json()
        if status.get("state") == "DONE":
            done_s = time.perf_counter() - started
            break
        if time.monotonic() > deadline:
            sys.exit(f"job {job_id} not DONE after {TIMEOUT_S:g} s: {status}")
        time.sleep(poll_s)
    results = proc.data / out_name / "results.json"
    ready_at_done = results_ready(results, count)
    while not results_ready(results, count):
        if time.monotonic() > deadline:
            sys.exit(f"job {job_id}: no results.json with {count} rows in {results.parent}")
        time.sleep(poll_s)
    results_s = time.perf_counter() - started
    return done_s, results_s, ready_at_done, json.loads(status["cur_status"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--workers", type=int, default=0, help="both sides'; 0 = CPU count")
    parser.add_argument("--poll-s", type=float, default=0.05, help="job status poll interval")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--dir",
        help="where to make the work folder (default: the temp dir); "
        "/dev/shm measures the CPU, not the disk",
    )
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    n = args.files

    with work_folder("flowd-bench-", args.dir, args.keep) as work:
        proc = DaemonProcess(work / "daemon", workers=workers)
        inbox = proc.data / "inbox"
        expected = generate(inbox, n)
        binary = compile_example(work)
        shutil.copy(binary, proc.data / "invoice.ibflowbin")

        flowd_s: list[float] = []
        done_s: list[float] = []
        results_s: list[float] = []
        wrong: dict[str, int] = {}
        late = 0
        with proc, requests.Session() as session:
            session.headers.update(proc.headers)
            for i in range(args.repeat):
                out = work / f"flowd-run-{i}"
                flowd_s.append(flowd_run(binary, inbox, out, workers))
                wrong[f"flowd run {i + 1}"] = check_rows(out, expected, "flowd run")

                done, ready, there, cur = daemon_run(proc, session, f"daemon-{i}", n, args.poll_s)
                late += not there
                if cur["status"] != "COMPLETE":
                    sys.exit(f"the daemon's job ended {cur['status']}: {cur['run_summary']}")
                done_s.append(done)
                results_s.append(ready)
                wrong[f"daemon {i + 1}"] = check_rows(proc.data / f"daemon-{i}", expected, "daemon")

        best_flowd, best_done = min(flowd_s), min(done_s)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        print(
            f"documents: {n} text invoices in {work}, {workers} workers on both sides, "
            f"best of {args.repeat}"
        )
        print("rows with a wrong field: " + ", ".join(f"{k}: {v}" for k, v in wrong.items()))
        for label, times in (
            ("flowd run (end to end)", flowd_s),
            ("daemon, request to DONE", done_s),
            ("daemon, request to results.json", results_s),
        ):
            best = min(times)
            runs = " ".join(f"{t:.2f}" for t in times)
            print(f"{label:<34} {n / best:7.0f} docs/s  ({best:.2f} s; runs: {runs} s)")
        print(
            f"{'ratio daemon (to DONE) / flowd run':<34} {best_flowd / best_done:7.2f}"
            f"          target >= {TARGET_RATIO:g}"
        )
        print(
            f"results.json missing when DONE was first seen: {late} of {args.repeat} daemon runs"
            f" (polling every {args.poll_s:g} s)"
        )


if __name__ == "__main__":
    main()
