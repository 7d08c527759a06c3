"""Files/s and memory of a watched inbox when thousands of files are dropped into it at once.

    .venv/bin/python bench/drop_burst.py [--files 10000] [--max-batch 500] [--batch-window-s 1.0]
        [--workers 0] [--poll-s 0.02] [--no-baseline] [--dir D] [--keep]

Generates ``--files`` text invoices (``bench/gen_invoices.py``) into a staging folder beside the
inbox (same file system), starts a real ``flowd serve`` (``tests/daemon.py``; ``workers`` = the
CPU count unless ``--workers`` says otherwise) with one ``[[watches]]`` table running the example
invoice flow (``examples/invoices``), and then renames (``os.rename``) every file into the inbox as
fast as it can. The clock runs from the first rename until every file has its result: the output
folder (``output_dir/<run_id>/``) is polled every ``--poll-s`` for runs whose
``batch.ibflowresults`` says they ended, and their ``results.json`` rows are counted. The time
until every file is in ``.flowd/done/*/`` (moved there once its run's results are written) is
printed too.

Checked afterwards: each file has exactly one row over all ``results.json`` with the fields the
generator expects, and nothing is left in the inbox, in ``processing/`` or in ``failed/``.
Printed: files/s (target of issue 4: ≥ 1,000), runs and their sizes, and memory — the daemon
process's peak RSS (``VmHWM`` of ``/proc/PID/status``; target ≤ 250 MB) and, separately, its
descendants' (the forkserver and the workers forked from it), each one's peak and the peak of
their sum as sampled every 0.25 s.

Baseline (unless ``--no-baseline``): ``flowd run`` (a real subprocess, end to end) over the same
staging folder with as many workers, before the daemon starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.daemon
sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, run, work_folder
from gen_invoices import generate
from inboxes import ENDED, comm, descendants, machine, mb, status_kb, wait_for_watch, watch_toml

from tests.daemon import DaemonProcess

TARGET_FILES_S = 1000.0
TARGET_RSS_MB = 250.0
TIMEOUT_S = 3600.0
SAMPLE_S = 0.25


class Progress:
    """What the output folder says so far: ended runs, their file outcomes and rows."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.ended: dict[str, dict[str, Any]] = {}  # run id -> its final batch file
        self.rows: list[dict[str, Any]] = []
        self.outcomes: Counter[str] = Counter()  # file name -> runs that reported it

    def poll(self) -> None:
        with os.scandir(self.out) as entries:
            for entry in entries:
                if entry.name in self.ended:
                    continue
                try:
                    with open(os.path.join(entry.path, "batch.ibflowresults"), "rb") as fh:
                        batch = json.loads(fh.read())
                except (OSError, ValueError):
                    continue
                if batch.get("status") not in ENDED:
                    continue
                # results.json is written before the batch file says the run ended.
                try:
                    with open(os.path.join(entry.path, "results.json"), "rb") as fh:
                        self.rows += json.loads(fh.read())
                except (OSError, ValueError):
                    continue  # looked at again at the next poll
                self.ended[entry.name] = batch
                self.outcomes.update(f["file_name"] for f in batch["files"])

    def covered(self, names: set[str]) -> bool:
        return len(self.outcomes.keys() & names) == len(names)


def archived(inbox: Path) -> int:
    done = inbox / ".flowd" / "done"
    return sum(len(os.listdir(d)) for d in os.scandir(done) if d.is_dir())


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:7.0f} files/s ({seconds:.2f} s)"


def baseline(binary: str, staging: Path, out: Path, workers: int) -> float:
    began = time.perf_counter()
    ran = run(binary, staging, out, workers)
    took = time.perf_counter() - began
    if ran.returncode != 0:
        sys.exit(f"flowd run exited {ran.returncode}:\n{ran.stderr[-2000:]}")
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if len(rows) != sum(1 for p in staging.iterdir() if p.suffix == ".txt"):
        sys.exit(f"flowd run: {len(rows)} rows in {out / 'results.json'}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--max-batch", type=int, default=500, help="the watch's max_batch")
    parser.add_argument("--batch-window-s", type=float, default=1.0, help="the watch's")
    parser.add_argument("--workers", type=int, default=0, help="the daemon's; 0 = CPU count")
    parser.add_argument("--poll-s", type=float, default=0.02, help="output folder poll interval")
    parser.add_argument("--no-baseline", action="store_true", help="skip the flowd run baseline")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--dir",
        help="where to make the work folder (default: the temp dir); "
        "/dev/shm measures the CPU, not the disk",
    )
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with work_folder("flowd-bench-", args.dir, args.keep) as work:
        binary = compile_example(work)
        staging, inbox, out = work / "staging", work / "inbox", work / "out"
        expected = generate(staging, args.files)
        names = sorted(expected)
        base_s = (
            None if args.no_baseline else baseline(binary, staging, work / "flowd-run", workers)
        )

        out.mkdir()
        watch = watch_toml(
            "burst",
            inbox,
            Path(binary),
            out,
            max_batch=args.max_batch,
            batch_window_s=args.batch_window_s,
        )
        proc = DaemonProcess(work / "daemon", workers=workers, extra_toml=watch)
        progress = Progress(out)
        with proc:
            assert proc.proc is not None
            pid = proc.proc.pid
            wait_for_watch(inbox)
            before_kb = status_kb(pid, "VmRSS")
            kids_before = {k: status_kb(k, "VmRSS") for k in descendants(pid)}

            began = time.perf_counter()
            for name in names:
                os.rename(staging / name, inbox / name)
            renamed_s = time.perf_counter() - began

            deadline = began + TIMEOUT_S
            kids_peak_sum = 0
            kids_hwm: dict[int, int] = {}
            next_sample = 0.0
            wanted = set(names)
            results_s = None
            while True:
                now = time.perf_counter()
                if now >= next_sample:
                    next_sample = now + SAMPLE_S
                    kids = descendants(pid)
                    kids_peak_sum = max(kids_peak_sum, sum(status_kb(k, "VmRSS") for k in kids))
                    for k in kids:
                        kids_hwm[k] = max(kids_hwm.get(k, 0), status_kb(k, "VmHWM"))
                if results_s is None:
                    progress.poll()
                    if progress.covered(wanted):
                        results_s = time.perf_counter() - began
                if results_s is not None and archived(inbox) >= len(names):
                    done_s = time.perf_counter() - began
                    break
                if now > deadline:
                    sys.exit(
                        f"not done after {TIMEOUT_S:g} s: {len(progress.outcomes)} files with "
                        f"an outcome, {archived(inbox)} archived\n{proc.log_tail()}"
                    )
                time.sleep(args.poll_s)
            daemon_hwm_kb = status_kb(pid, "VmHWM")
            daemon_rss_kb = status_kb(pid, "VmRSS")
            kids_now = descendants(pid)
            for k in kids_now:
                kids_hwm[k] = max(kids_hwm.get(k, 0), status_kb(k, "VmHWM"))
            kid_names = {k: comm(k) for k in kids_hwm}

        per_file = Counter(r["file_name"] for r in progress.rows)
        twice = sorted(n for n, c in per_file.items() if c > 1)
        missing = sorted(wanted - per_file.keys())
        extra = sorted(per_file.keys() - wanted)
        wrong = sum(
            1
            for r in progress.rows
            if r["file_name"] in expected
            and any(r.get(k) != v for k, v in expected[r["file_name"]].items())
        )
        statuses = Counter(b["status"] for b in progress.ended.values())
        sizes = sorted(len(b["files"]) for b in progress.ended.values())
        left = {
            "inbox": sum(1 for e in os.scandir(inbox) if e.is_file()),
            "processing": sum(1 for _ in (inbox / ".flowd" / "processing").rglob("*")),
            "failed": sum(1 for _ in (inbox / ".flowd" / "failed").rglob("*")),
        }

        n = len(names)
        print(machine())
        print(
            f"documents: {n} text invoices (~1 KB) in {work.parent}; daemon: {workers} workers; "
            f"watch: max_batch {args.max_batch}, batch_window_s {args.batch_window_s:g}"
        )
        print(
            f"check: rows {len(progress.rows)} for {n} files; files with more than one row "
            f"{len(twice)}, with none {len(missing)}, unknown {len(extra)}; rows with a wrong "
            f"field {wrong}; left in inbox/processing/failed: {left['inbox']}/"
            f"{left['processing']}/{left['failed']}"
        )
        if twice or missing:
            print(f"  e.g. twice: {twice[:5]}, none: {missing[:5]}")
        print(
            f"runs: {len(sizes)} ({', '.join(f'{s} {c}' for s, c in statuses.items())}); files "
            f"per run min {sizes[0] if sizes else 0}, max {sizes[-1] if sizes else 0}"
        )
        if base_s is not None:
            print(f"{'baseline, flowd run on the same files':<44} {rate(n, base_s)}")
        print(f"renaming all {n} files into the inbox took {renamed_s:.2f} s")
        print(
            f"{'first rename -> every file has its result':<44} {rate(n, results_s)}"
            f"   target >= {TARGET_FILES_S:g} files/s"
        )
        print(f"{'first rename -> every file in .flowd/done/':<44} {rate(n, done_s)}")
        if base_s is not None:
            print(f"ratio daemon (to results) / flowd run: {base_s / results_s:.2f}")
        print(
            f"daemon process: peak RSS (VmHWM) {mb(daemon_hwm_kb)}   target <= "
            f"{TARGET_RSS_MB:g} MB; RSS before the drop {mb(before_kb)}, after {mb(daemon_rss_kb)}"
        )
        print(
            f"its descendants ({len(kids_hwm)}, not counted above): peak of their summed RSS "
            f"{mb(kids_peak_sum)} (sampled every {SAMPLE_S:g} s; before the drop "
            f"{mb(sum(kids_before.values()))})"
        )
        for k, hwm in sorted(kids_hwm.items()):
            alive = "" if k in kids_now else " (exited)"
            print(f"  pid {k}: peak RSS {mb(hwm)}{alive}  {kid_names[k]}")


if __name__ == "__main__":
    main()
