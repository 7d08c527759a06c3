"""CPU and memory of an idle daemon with three watched inboxes and nothing to do.

    .venv/bin/python bench/idle.py [--seconds 30] [--settle-s 5] [--workers 0] [--no-baseline]
        [--dir D] [--keep]

Starts a real ``flowd serve`` (``tests/daemon.py``; ``workers`` = the CPU count unless
``--workers`` says otherwise) with three ``[[watches]]`` tables — three empty inboxes, each with
the example invoice flow (``examples/invoices``) — waits ``--settle-s`` after the watches have
started, then reads ``/proc/PID/stat`` (utime + stime) at the start and the end of ``--seconds``:

- the daemon process's CPU % (of one core) over that time, and separately its descendants' (the
  forkserver and the workers forked from it; a process that exited meanwhile is not counted);
- the daemon's RSS (``VmRSS``) at the end and each descendant's;
- how often the daemon's threads woke up (context switches of ``/proc/PID/task/*/status``).

Targets of issue 4: CPU ≤ 0.5 %, RSS ≤ 80 MB (the daemon process). Baseline (unless
``--no-baseline``): the same daemon, measured the same way, with no watches at all — what the
inboxes add to an idle daemon.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.daemon
sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, work_folder
from inboxes import TICK_S, Tree, comm, machine, mb, snapshot, wait_for_watch, watch_toml

from tests.daemon import DaemonProcess

TARGET_CPU_PCT = 0.5
TARGET_RSS_MB = 80.0
WATCHES = 3


def measure(
    root: Path, binary: Path, watches: int, workers: int, settle_s: float, seconds: float
) -> tuple[Tree, Tree, float, dict[int, str]]:
    """Start a daemon with ``watches`` inboxes, let it settle, and snapshot it before and after
    ``seconds``; (before, after, elapsed s, its descendants' command lines)."""
    inboxes = [root / f"inbox-{i}" for i in range(1, watches + 1)]
    toml = "".join(
        watch_toml(f"idle-{i}", inbox, binary, root / f"out-{i}")
        for i, inbox in enumerate(inboxes, 1)
    )
    proc = DaemonProcess(root / "daemon", workers=workers, extra_toml=toml)
    with proc:
        assert proc.proc is not None
        pid = proc.proc.pid
        for inbox in inboxes:
            wait_for_watch(inbox)
        time.sleep(settle_s)
        before = snapshot(pid)
        began = time.perf_counter()
        time.sleep(seconds)
        after = snapshot(pid)
        elapsed = time.perf_counter() - began
        names = {k: comm(k) for k in after.children_rss_kb}
    return before, after, elapsed, names


def report(label: str, before: Tree, after: Tree, elapsed: float, names: dict[int, str]) -> None:
    daemon_pct = (after.daemon_cpu_s - before.daemon_cpu_s) / elapsed * 100
    kids_pct = (after.children_cpu_s - before.children_cpu_s) / elapsed * 100
    wakeups = (after.daemon_switches - before.daemon_switches) / elapsed
    print(f"{label}:")
    print(
        f"  daemon process: CPU {daemon_pct:5.2f} %   target <= {TARGET_CPU_PCT:g} %;"
        f" RSS {mb(after.daemon_rss_kb)}   target <= {TARGET_RSS_MB:g} MB;"
        f" {wakeups:.0f} thread wake-ups/s"
    )
    kids = after.children_rss_kb
    print(
        f"  its {len(kids)} descendants: CPU {kids_pct:5.2f} % together; RSS "
        f"{mb(sum(kids.values()))} together"
    )
    for k, rss in sorted(kids.items()):
        print(f"    pid {k}: RSS {mb(rss)}  {names.get(k, '?')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long CPU is measured")
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait before measuring")
    parser.add_argument("--workers", type=int, default=0, help="the daemon's; 0 = CPU count")
    parser.add_argument("--no-baseline", action="store_true", help="skip the no-watch daemon")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--dir", help="where to make the work folder (default: the temp dir)")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with work_folder("flowd-bench-", args.dir, args.keep) as work:
        binary = Path(compile_example(work))
        runs = [(f"{WATCHES} watches, idle", WATCHES)]
        if not args.no_baseline:
            runs.append(("baseline: the same daemon with no watches", 0))
        measured = [
            (label, *measure(work / f"w{n}", binary, n, workers, args.settle_s, args.seconds))
            for label, n in runs
        ]
        print(machine())
        print(
            f"daemon: {workers} workers; settled {args.settle_s:g} s after the watches started, "
            f"then measured for {args.seconds:g} s (one after the other); CPU % of one core, "
            f"in steps of {TICK_S / args.seconds * 100:.3f} % (one clock tick)"
        )
        for label, before, after, elapsed, names in measured:
            report(label, before, after, elapsed, names)


if __name__ == "__main__":
    main()
