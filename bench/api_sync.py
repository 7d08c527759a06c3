"""Latency and throughput of the sync API (``run_binary_sync``), against the engine in-process.

    .venv/bin/python bench/api_sync.py [--requests 500] [--warmup 50] [--clients 8]
        [--duration 10] [--client process|thread] [--workers 0] [--size-kb 2] [--keep]

Starts a real ``flowd serve`` (``tests/daemon.py``: a free loopback port, ``workers`` = the CPU
count unless ``--workers`` says otherwise) whose ``data_root`` holds the example invoice flow
(``examples/invoices``: refiner, UDF, checkpoint, compiled by ``flowd compile``). The document is
one text invoice from ``bench/gen_invoices.py``, padded with payment-terms lines to ``--size-kb``
(the generator's invoices are about 1 KB); its extracted fields are checked once. It times:

- the *baseline*: ``flowd.engine.memory_run.run_documents`` on the same document in this process —
  what a sync request costs without HTTP, JSON, the hop to a worker process and back;
- (a) *latency*: ``--requests`` sequential ``POST /api/v1/flow/run_binary_sync`` from one
  ``requests.Session`` (after ``--warmup`` requests that start the daemon's sync workers);
- (b) *throughput*: ``--clients`` concurrent clients, each with its own session, posting as fast
  as they can for ``--duration`` seconds; requests/s and the latency under that load.

``GET /healthz`` is timed beside (a): the HTTP round trip alone. The clients of (b) are processes
by default (``--client thread``: threads of this process, GIL-bound). Either way they run on the
same machine as the daemon and take CPU from it: the CPU time per request of the daemon process,
of its workers and of the clients during (b) is printed, to show where the cores went.
Targets (issue 3, on 2 cores): p50 ≤ 5 ms, ≥ 500 req/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import queue
import random
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from flowd.engine.memory_run import MemoryRunSettings, run_documents
from flowd.flows.binary import load_binary
from flowd.logging import configure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.daemon
sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, work_folder
from gen_invoices import invoice

from tests.daemon import DaemonProcess

ENDPOINT = "/api/v1/flow/run_binary_sync"
TARGET_P50_MS = 5.0
TARGET_RPS = 500.0
TERMS = [
    "Payment terms: 30 days net, by bank transfer to the account below.",
    "Bank: Example Bank AG, IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.",
    "Late payments incur interest of 1% per month from the due day on.",
    "Goods remain our property until paid in full. Returns within 14 days only.",
    "Questions about this bill: accounts@example.com, +49 30 1234567.",
]


def document(size_kb: float) -> tuple[str, bytes, dict[str, object]]:
    """The longest of 50 generated invoices, padded with payment terms to ``size_kb``."""
    rng = random.Random(7)
    text, expected = max((invoice(rng, i) for i in range(1, 51)), key=lambda te: len(te[0]))
    lines = [text.rstrip("\n")]
    n = 0
    while len("\n".join(lines).encode()) < size_kb * 1024:
        lines.append(TERMS[n % len(TERMS)])
        n += 1
    return "inv-sync.txt", ("\n".join(lines) + "\n").encode(), expected


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def summary(samples_ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples_ms):7.2f}  p90 {pct(samples_ms, 90):7.2f}  "
        f"p99 {pct(samples_ms, 99):7.2f}  max {max(samples_ms):7.2f} ms"
    )


def fields_of(answer: dict[str, Any]) -> dict[str, object]:
    return {f["key"]: f["value"] for f in answer["records"][0]["results"]}


def check_answer(response: requests.Response) -> dict[str, Any]:
    if response.status_code != 200:
        sys.exit(f"{ENDPOINT} answered {response.status_code}: {response.text[:2000]}")
    answer: dict[str, Any] = response.json()
    if answer.get("status") != "OK" or answer["files"][0]["status"] != "COMPLETE":
        sys.exit(f"{ENDPOINT} did not complete the document: {json.dumps(answer)[:2000]}")
    return answer


def baseline(
    binary_path: Path, doc: tuple[str, bytes], n: int, warmup: int, log_path: Path
) -> list[float]:
    """Per-call ms of ``run_documents`` in this process (the binary loaded once, as a worker).
    It logs as the daemon's workers do — JSON at info, to a file — since the example's UDF logs
    every document."""
    binary = load_binary(binary_path)
    settings = MemoryRunSettings()
    samples = []
    with log_path.open("w", encoding="utf-8") as log:
        configure("json", "info", stream=log)
        for _ in range(warmup):
            run_documents(binary, [doc], settings)
        for _ in range(n):
            began = time.perf_counter()
            results = run_documents(binary, [doc], settings)
            samples.append((time.perf_counter() - began) * 1000)
        configure("auto", "warning")
    if results[0].status != "COMPLETE":
        sys.exit(f"in-process run did not complete: {results[0]}")
    return samples


def sequential(url: str, headers: dict[str, str], body: bytes, n: int, warmup: int) -> list[float]:
    """(a): ms per ``POST`` of ``body`` to ``url``, one after the other on one connection."""
    samples = []
    with requests.Session() as session:
        session.headers.update(headers)
        for _ in range(warmup):
            check_answer(session.post(url, data=body, timeout=90))
        for _ in range(n):
            began = time.perf_counter()
            response = session.post(url, data=body, timeout=90)
            samples.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                check_answer(response)
    return samples


def http_floor(url: str, n: int) -> list[float]:
    """ms per ``GET /healthz`` on one connection: the HTTP round trip alone, no flow run."""
    samples = []
    with requests.Session() as session:
        session.get(url, timeout=30).raise_for_status()
        for _ in range(n):
            began = time.perf_counter()
            session.get(url, timeout=30)
            samples.append((time.perf_counter() - began) * 1000)
    return samples


def load_client(
    url: str,
    headers: dict[str, str],
    body: bytes,
    duration_s: float,
    cpu_clock: Callable[[], float],
    start: Any,
    out: Any,
) -> None:
    """One client of (b): wait for the others, then post for ``duration_s``; put ``(ms samples,
    errors, elapsed s, CPU s)`` on ``out``."""
    samples: list[float] = []
    errors = 0
    with requests.Session() as session:
        session.headers.update(headers)
        session.post(url, data=body, timeout=90)  # its own connection, before the clock starts
        cpu0 = cpu_clock()
        start.wait()
        began = time.perf_counter()
        end = began + duration_s
        while (t0 := time.perf_counter()) < end:
            try:
                ok = session.post(url, data=body, timeout=90).status_code == 200
            except requests.RequestException:
                ok = False
            samples.append((time.perf_counter() - t0) * 1000)
            errors += not ok
        elapsed = time.perf_counter() - began
        out.put((samples, errors, elapsed, cpu_clock() - cpu0))


def daemon_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the daemon process ``pid`` and of the other live processes
    of its session — its workers: the daemon runs in a session of its own (``start_new_session``).
    Linux ``/proc`` only; a worker that exited meanwhile is not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) != pid:  # stat field 6, the session (fields[0] is field 3, the state)
            continue
        used = int(fields[11]) + int(fields[12])  # utime, stime
        if int(entry.name) == pid:
            main += used
        else:
            others += used
    return main / tick, others / tick


def under_load(
    url: str, headers: dict[str, str], body: bytes, clients: int, duration_s: float, kind: str
) -> tuple[list[float], int, float, float]:
    """(b): ``clients`` concurrent clients; (all ms samples, errors, req/s, client CPU s)."""
    start: Any
    out: Any
    workers: Sequence[threading.Thread | multiprocessing.process.BaseProcess]
    if kind == "thread":
        start, out = threading.Barrier(clients + 1), queue.SimpleQueue()
        args = (url, headers, body, duration_s, time.thread_time, start, out)
        workers = [threading.Thread(target=load_client, args=args) for _ in range(clients)]
    else:
        ctx = multiprocessing.get_context("forkserver")
        start, out = ctx.Barrier(clients + 1), ctx.Queue()
        args = (url, headers, body, duration_s, time.process_time, start, out)
        workers = [ctx.Process(target=load_client, args=args) for _ in range(clients)]
    for w in workers:
        w.start()
    start.wait(timeout=120)
    collected = [out.get(timeout=duration_s + 120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    samples = [s for c in collected for s in c[0]]
    errors = sum(c[1] for c in collected)
    rps = sum((len(c[0]) - c[1]) / c[2] for c in collected)  # answered with 200 only
    return samples, errors, rps, sum(c[3] for c in collected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="sequential requests, timed")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in (b)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of (b)")
    parser.add_argument("--client", choices=("process", "thread"), default="process")
    parser.add_argument("--workers", type=int, default=0, help="the daemon's; 0 = CPU count")
    parser.add_argument("--size-kb", type=float, default=2.0, help="the document's size")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with work_folder("flowd-bench-", None, args.keep) as work:
        name, data, expected = document(args.size_kb)
        binary = Path(compile_example(work))
        base_ms = baseline(binary, (name, data), args.requests, args.warmup, work / "engine.log")

        proc = DaemonProcess(work / "daemon", workers=workers)
        shutil.copy(binary, proc.data / "invoice.ibflowbin")
        body = json.dumps(
            {
                "binary_path": "invoice.ibflowbin",
                "files": [{"file_name": name, "file_content": base64.b64encode(data).decode()}],
            }
        ).encode()
        with proc:
            url = proc.url + ENDPOINT
            headers = {**proc.headers, "Content-Type": "application/json"}
            answer = check_answer(requests.post(url, data=body, headers=headers, timeout=90))
            got = fields_of(answer)
            wrong = [k for k, v in expected.items() if got.get(k) != v]
            seq_ms = sequential(url, headers, body, args.requests, args.warmup)
            health_ms = http_floor(proc.url + "/healthz", args.requests)

            assert proc.proc is not None
            main0, workers0 = daemon_cpu_s(proc.proc.pid)
            load_ms, errors, rps, client_cpu_s = under_load(
                url, headers, body, args.clients, args.duration, args.client
            )
            main1, workers1 = daemon_cpu_s(proc.proc.pid)

        base_p50 = statistics.median(base_ms)
        base_rate = 1000 / statistics.fmean(base_ms)
        seq_p50 = statistics.median(seq_ms)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        print(
            f"document: {len(data)} bytes of text, example invoice flow; daemon: {workers} workers"
            f"; fields {'all as expected' if not wrong else 'WRONG: ' + ', '.join(wrong)}"
        )
        print(f"baseline, run_documents in-process ({args.requests} calls):")
        print(f"  {summary(base_ms)}   ({base_rate:.0f} calls/s in 1 process)")
        print(f"(a) sequential {ENDPOINT} ({args.requests} after {args.warmup} warm-up):")
        print(f"  {summary(seq_ms)}   target p50 <= {TARGET_P50_MS:g} ms")
        print(f"  ratio p50 API / in-process: {seq_p50 / base_p50:.2f}")
        print(f"  for reference, GET /healthz: {summary(health_ms)}")
        kind = "processes" if args.client == "process" else "threads of 1 process"
        print(f"(b) {args.clients} concurrent clients ({kind}) for {args.duration:g} s:")
        print(f"  {rps:7.0f} req/s   target >= {TARGET_RPS:g} req/s   {errors} errors")
        if load_ms:
            print(f"  {summary(load_ms)}")
        print(f"  ratio req/s API / in-process calls/s (1 process): {rps / base_rate:.2f}")
        per_request = 1000 / max(1, len(load_ms))
        print(
            f"  CPU during (b), ms per request: daemon process {(main1 - main0) * per_request:.2f}"
            f", its workers {(workers1 - workers0) * per_request:.2f}"
            f", clients {client_cpu_s * per_request:.2f} (the clients compete with the daemon)"
        )
        print(
            f"  CPU seconds during (b): {main1 - main0 + workers1 - workers0 + client_cpu_s:.1f}"
            f" of {(os.cpu_count() or 1) * args.duration:.0f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
