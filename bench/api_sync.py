"""Latency and throughput of the sync API (``run_binary_sync``), against the engine in-process.

    .venv/bin/python bench/api_sync.py [--requests 500] [--warmup 50] [--clients 8]
        [--duration 10] [--client process|thread] [--workers 0] [--size-kb 2] [--keep]

Starts a real ``flowd serve`` (``tests/daemon.py``: a free loopback port, ``workers`` = the CPU
count unless ``--workers`` says otherwise) whose ``data_root`` holds the example invoice flow
(``examples/invoices``: refiner, UDF, checkpoint), compiled here. The document is one text invoice
from ``bench/gen_invoices.py``, padded with payment-terms lines to ``--size-kb`` (the generator's
invoices are about 1 KB). It times:

- the *baseline*: ``flowd.engine.memory_run.run_documents`` on the same document in this process —
  what a sync request costs without HTTP, JSON, the hop to a worker process and back;
- (a) *latency*: ``--requests`` sequential ``POST /api/v1/flow/run_binary_sync`` from one
  ``requests.Session`` (after ``--warmup`` requests that start the daemon's sync workers);
- (b) *throughput*: ``--clients`` concurrent clients, each with its own session, posting as fast
  as they can for ``--duration`` seconds; requests/s and the latency under that load.

The clients are processes by default (``--client thread``: threads of this process, GIL-bound).
Either way they run on the same machine as the daemon and take CPU from it; the CPU seconds the
clients and the daemon (all its processes) used during (b) are printed, to show how much.
Targets (issue 3, on 2 cores): p50 ≤ 5 ms, ≥ 500 req/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))
from gen_invoices import invoice

from flowd.engine.memory_run import MemoryRunSettings, run_documents
from flowd.flows.binary import load_binary
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
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


def compile_invoices(work: Path) -> Path:
    """The example invoice flow compiled from a fresh copy in ``work``; the binary's path."""
    root = work / "invoices"
    shutil.copytree(
        REPO / "examples" / "invoices", root, ignore=shutil.ignore_patterns("build", "out")
    )
    return compile_project(root, CompileSettings(flow_file="invoice.ibflow")).path


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


def baseline(binary_path: Path, doc: tuple[str, bytes], n: int, warmup: int) -> list[float]:
    """Per-call ms of ``run_documents`` in this process (the binary loaded once, as a worker)."""
    binary = load_binary(binary_path)
    settings = MemoryRunSettings()
    for _ in range(warmup):
        run_documents(binary, [doc], settings)
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        results = run_documents(binary, [doc], settings)
        samples.append((time.perf_counter() - began) * 1000)
    if results[0].status != "COMPLETE":
        sys.exit(f"in-process run did not complete: {results[0]}")
    return samples


def sequential(url: str, headers: dict[str, str], body: bytes, n: int, warmup: int) -> list[float]:
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


def load_client(
    url: str, headers: dict[str, str], body: bytes, duration_s: float, start: Any, out: Any
) -> None:
    """One client of (b): wait for the others, then post for ``duration_s``; put ``(ms samples,
    errors, elapsed s, CPU s)`` on ``out``."""
    samples: list[float] = []
    errors = 0
    with requests.Session() as session:
        session.headers.update(headers)
        session.post(url, data=body, timeout=90)  # its own connection, before the clock starts
        cpu0 = time.thread_time() if isinstance(out, list) else time.process_time()
        start.wait()
        began = time.perf_counter()
        end = began + duration_s
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            try:
                ok = session.post(url, data=body, timeout=90).status_code == 200
            except requests.RequestException:
                ok = False
            samples.append((time.perf_counter() - t0) * 1000)
            errors += not ok
        elapsed = time.perf_counter() - began
        cpu = (time.thread_time() if isinstance(out, list) else time.process_time()) - cpu0
    result = (samples, errors, elapsed, cpu)
    if isinstance(out, list):
        out.append(result)
    else:
        out.put(result)


def session_cpu_s(sid: int) -> float:
    """CPU seconds (user + system) of every live process in session ``sid``: the daemon runs in
    a session of its own (``start_new_session``), its workers with it. Linux ``/proc`` only."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields[0] is the state: session is stat field 6
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def under_load(
    url: str, headers: dict[str, str], body: bytes, clients: int, duration_s: float, kind: str
) -> tuple[list[float], int, float, float]:
    """(b): ``clients`` concurrent clients; (all ms samples, errors, req/s, client CPU s)."""
    results: Any
    if kind == "thread":
        start: Any = threading.Barrier(clients + 1)
        results = []
        workers: list[Any] = [
            threading.Thread(target=load_client, args=(url, headers, body, duration_s, start, results))
            for _ in range(clients)
        ]
    else:
        ctx = multiprocessing.get_context("forkserver")
        start = ctx.Barrier(clients + 1)
        results = ctx.Queue()
        workers = [
            ctx.Process(target=load_client, args=(url, headers, body, duration_s, start, results))
            for _ in range(clients)
        ]
    for w in workers:
        w.start()
    start.wait(timeout=120)
    collected = results if kind == "thread" else []
    if kind != "thread":
        collected = [results.get(timeout=duration_s + 120) for _ in workers]
    for w in workers:
        w.join(timeout=duration_s + 120)
    samples = [s for c in collected for s in c[0]]
    errors = sum(c[1] for c in collected)
    rps = sum(len(c[0]) / c[2] for c in collected)
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

    work = Path(tempfile.mkdtemp(prefix="flowd-bench-"))
    try:
        name, data, expected = document(args.size_kb)
        binary = compile_invoices(work)
        base_ms = baseline(binary, (name, data), args.requests, args.warmup)

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

            cpu0 = session_cpu_s(proc.proc.pid) if proc.proc else 0.0
            load_ms, errors, rps, client_cpu_s = under_load(
                url, headers, body, args.clients, args.duration, args.client
            )
            daemon_cpu_s = (session_cpu_s(proc.proc.pid) if proc.proc else 0.0) - cpu0

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
        print(
            f"(b) {args.clients} concurrent clients ({args.client}es) for {args.duration:g} s:"
            if args.client == "process"
            else f"(b) {args.clients} concurrent clients (threads) for {args.duration:g} s:"
        )
        print(f"  {rps:7.0f} req/s   target >= {TARGET_RPS:g} req/s   {errors} errors")
        if load_ms:
            print(f"  {summary(load_ms)}")
        print(f"  ratio req/s API / in-process calls/s (1 process): {rps / base_rate:.2f}")
        print(
            f"  CPU during (b): clients {client_cpu_s:.1f} s, daemon and its workers "
            f"{daemon_cpu_s:.1f} s, of {(os.cpu_count() or 1) * args.duration:.0f} s on "
            f"{os.cpu_count()} cores (the clients compete with the daemon)"
        )
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
