"""Drop-to-result latency of a watched inbox: one small text invoice renamed in, until its result.

    .venv/bin/python bench/drop_latency.py [--drops 200] [--warmup 5] [--workers 0]
        [--poll-ms 2] [--gap-ms 0] [--stage outside|inside] [--dir D] [--keep]

Starts a real ``flowd serve`` (``tests/daemon.py``; ``workers`` = the CPU count unless
``--workers`` says otherwise) with one ``[[watches]]`` table: the example invoice flow
(``examples/invoices``, compiled by ``flowd compile``), ``batch_window_s = 0`` and the default
``settle_s`` (2.0 — a file renamed into the inbox is taken at once, without settling). Then, one
drop after the other, ``--drops`` times (after ``--warmup`` drops that are not counted):

1. a text invoice from ``bench/gen_invoices.py`` (about 1 KB, a new one each time) is written to a
   staging folder beside the inbox, on the same file system — not timed (``--stage inside``:
   to a hidden ``.NAME.part`` in the inbox instead, which the watch ignores, so that the rename
   is one within the watched folder);
2. the clock starts and the file is renamed into the inbox;
3. the output folder is polled every ``--poll-ms`` with ``os.scandir`` for a new run folder whose
   ``batch.ibflowresults`` says the run ended (``COMPLETE``, ``FAILED``, …): the *latency*;
4. polling goes on until the file is in ``.flowd/done/<run_id>/`` (the watch moves it there after
   the run's results are written), and only then comes the next drop (after ``--gap-ms``, 0 by
   default).

Printed: p50/p90/p99/max of the latency (targets of issue 4: p50 ≤ 100 ms, p99 ≤ 300 ms), of the
time until the file is archived, and — from the daemon's JSON log — how much of the latency passed
before the watch took the file (``watch_taken``). Baseline: ``run_documents``
(``flowd.engine.memory_run``) on the same documents in this process, per call — what the flow
itself costs, without the watcher, the job store, the workers and the output files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from flowd.engine.memory_run import MemoryRunSettings, run_documents
from flowd.flows.binary import load_binary
from flowd.logging import configure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.daemon
sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, work_folder
from gen_invoices import invoice
from inboxes import ENDED, machine, summary, wait_for_watch, watch_toml

from tests.daemon import DaemonProcess

TARGET_P50_MS = 100.0
TARGET_P99_MS = 300.0
DROP_TIMEOUT_S = 60.0


def documents(n: int) -> list[tuple[str, bytes, dict[str, object]]]:
    """``n`` generated text invoices: (file name, bytes, expected fields)."""
    rng = random.Random(11)
    out = []
    for i in range(1, n + 1):
        text, expected = invoice(rng, i)
        out.append((f"drop-{i:06d}.txt", text.encode(), expected))
    return out


def baseline(
    binary_path: Path, docs: list[tuple[str, bytes]], warmup: int, log: Path
) -> list[float]:
    """ms per ``run_documents`` call with one document, in this process, logging as the daemon's
    workers do (JSON at info, to a file: the example's UDF logs every document)."""
    binary = load_binary(binary_path)
    settings = MemoryRunSettings()
    samples = []
    with log.open("w", encoding="utf-8") as fh:
        configure("json", "info", stream=fh)
        for doc in docs[:warmup]:
            run_documents(binary, [doc], settings)
        for doc in docs[warmup:]:
            began = time.perf_counter()
            results = run_documents(binary, [doc], settings)
            samples.append((time.perf_counter() - began) * 1000)
            if results[0].status != "COMPLETE":
                sys.exit(f"in-process run of {doc[0]} did not complete: {results[0]}")
        configure("auto", "warning")
    return samples


def ended_run(out: Path, seen: set[str]) -> tuple[str, dict[str, object]] | None:
    """A run folder of ``out`` not in ``seen`` whose batch file says it ended, with that file."""
    with os.scandir(out) as entries:
        for entry in entries:
            if entry.name in seen:
                continue
            try:
                with open(os.path.join(entry.path, "batch.ibflowresults"), "rb") as fh:
                    batch = json.loads(fh.read())
            except (OSError, ValueError):
                continue  # not written yet (or not a run folder)
            if batch.get("status") in ENDED:
                return entry.name, batch
    return None


def drop(
    name: str, data: bytes, staging: Path, inbox: Path, out: Path, seen: set[str], poll_s: float
) -> tuple[str, dict[str, object], float, float, float]:
    """One timed drop: (run id, its batch file, wall clock of the rename, ms to the ended batch
    file, ms until the file is in ``.flowd/done/<run_id>/``). ``staging`` is the folder the file
    is written to first; when it is the inbox itself, the file is written under a hidden name."""
    source = staging / (name if staging != inbox else f".{name}.part")
    source.write_bytes(data)
    wall = time.time()
    began = time.perf_counter()
    os.rename(source, inbox / name)
    deadline = began + DROP_TIMEOUT_S
    while (found := ended_run(out, seen)) is None:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: no ended run in {out} after {DROP_TIMEOUT_S:g} s")
        time.sleep(poll_s)
    result_ms = (time.perf_counter() - began) * 1000
    run_id, batch = found
    seen.add(run_id)
    archived = inbox / ".flowd" / "done" / run_id / name
    while not archived.exists():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: not in {archived.parent} after {DROP_TIMEOUT_S:g} s")
        time.sleep(poll_s)
    return run_id, batch, wall, result_ms, (time.perf_counter() - began) * 1000


def taken_ms(proc: DaemonProcess, dropped_at: dict[str, float]) -> list[float]:
    """ms from each rename (wall clock) to the daemon's ``watch_taken`` line of that run."""
    out = []
    for event in proc.log_events():
        run_id = event.get("run_id")
        if event.get("event") == "watch_taken" and run_id in dropped_at:
            at = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
            out.append((at.timestamp() - dropped_at[run_id]) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=200, help="timed drops")
    parser.add_argument("--warmup", type=int, default=5, help="drops before, not counted")
    parser.add_argument("--workers", type=int, default=0, help="the daemon's; 0 = CPU count")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="output folder poll interval")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="pause between drops")
    parser.add_argument(
        "--stage",
        choices=("outside", "inside"),
        default="outside",
        help="where each file is written before the rename: a folder beside the inbox, or a "
        "hidden name inside the inbox (a rename within the watched folder)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--dir", help="where to make the work folder (default: the temp dir)")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    poll_s = args.poll_ms / 1000

    with work_folder("flowd-bench-", args.dir, args.keep) as work:
        binary = Path(compile_example(work))
        docs = documents(args.warmup + args.drops)
        base_ms = baseline(binary, [(n, d) for n, d, _ in docs], args.warmup, work / "engine.log")

        inbox, out = work / "inbox", work / "out"
        staging = work / "staging" if args.stage == "outside" else inbox
        staging.mkdir(parents=True)
        out.mkdir()
        watch = watch_toml("latency", inbox, binary, out, batch_window_s=0)
        proc = DaemonProcess(work / "daemon", workers=workers, extra_toml=watch)
        seen: set[str] = set()
        latency_ms: list[float] = []
        archived_ms: list[float] = []
        dropped_at: dict[str, float] = {}
        not_complete: list[str] = []
        wrong = 0
        with proc:
            wait_for_watch(inbox)
            for i, (name, data, expected) in enumerate(docs):
                try:
                    run_id, batch, wall, result, done = drop(
                        name, data, staging, inbox, out, seen, poll_s
                    )
                except TimeoutError as exc:
                    sys.exit(f"{exc}\ndaemon log:\n{proc.log_tail()}")
                if batch["status"] != "COMPLETE":
                    not_complete.append(f"{name}: {batch['status']}")
                rows = json.loads((out / run_id / "results.json").read_text(encoding="utf-8"))
                if len(rows) != 1 or rows[0]["file_name"] != name:
                    sys.exit(
                        f"{name}: run {run_id} has results for {[r['file_name'] for r in rows]}"
                    )
                wrong += any(rows[0].get(k) != v for k, v in expected.items())
                time.sleep(args.gap_ms / 1000)
                if i >= args.warmup:
                    latency_ms.append(result)
                    archived_ms.append(done)
                    dropped_at[run_id] = wall
            take_ms = taken_ms(proc, dropped_at)

        print(machine())
        size = statistics.fmean(len(d) for _, d, _ in docs)
        print(
            f"documents: {args.drops} text invoices (~{size:.0f} bytes) dropped one at a time "
            f"({args.gap_ms:g} ms apart) after {args.warmup} warm-up drops; daemon: {workers} "
            f"workers; poll every {args.poll_ms:g} ms; work folder in {work.parent}"
        )
        where = "beside the inbox" if args.stage == "outside" else "in the inbox (hidden name)"
        print(f"each file written {where}, then renamed to its name in the inbox")
        print(
            f"runs not COMPLETE: {len(not_complete)}"
            + (f" ({', '.join(not_complete[:5])})" if not_complete else "")
            + f"; results with a wrong field: {wrong}"
        )
        print(f"baseline, run_documents in-process, 1 document per call ({len(base_ms)} calls):")
        print(f"  {summary(base_ms)}")
        print("rename into the inbox -> batch.ibflowresults says the run ended:")
        print(f"  {summary(latency_ms)}")
        print(f"  targets: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms")
        p50, base_p50 = statistics.median(latency_ms), statistics.median(base_ms)
        print(f"  ratio p50 drop / in-process: {p50 / base_p50:.0f}")
        if take_ms:
            print(f"  of which rename -> watch_taken (daemon log): {summary(take_ms)}")
        print("rename into the inbox -> file in .flowd/done/<run_id>/:")
        print(f"  {summary(archived_ms)}")


if __name__ == "__main__":
    main()
