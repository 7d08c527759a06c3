"""What the inbox benchmarks share (``drop_latency.py``, ``drop_burst.py``, ``idle.py``).

A ``[[watches]]`` table for ``tests/daemon.py``'s ``DaemonProcess``, waiting until a watch has
started, percentiles, and readings of a process tree from ``/proc`` (Linux only): the daemon
process itself, and its descendants — the forkserver and the workers forked from it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENDED = frozenset({"COMPLETE", "FAILED", "CANCELLED", "STOPPED_AT_CHECKPOINT"})
"""The job states a run's ``batch.ibflowresults`` says once it has ended."""
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def watch_toml(name: str, input_dir: Path, binary: Path, output_dir: Path, **keys: object) -> str:
    """One ``[[watches]]`` table; ``keys`` are further keys (numbers, strings)."""
    lines = [
        "[[watches]]",
        f"name = {json.dumps(name)}",
        f"input_dir = {json.dumps(str(input_dir))}",
        f"binary_path = {json.dumps(str(binary))}",
        f"output_dir = {json.dumps(str(output_dir))}",
        *(f"{k} = {json.dumps(v)}" for k, v in keys.items()),
    ]
    return "\n".join(lines) + "\n"


def wait_for_watch(input_dir: Path, timeout_s: float = 30.0) -> None:
    """Poll until the watch has created its spool (it does so when it starts)."""
    deadline = time.monotonic() + timeout_s
    while not (input_dir / ".flowd" / "done").is_dir():
        if time.monotonic() > deadline:
            sys.exit(f"the watch of {input_dir} did not start within {timeout_s:g} s")
        time.sleep(0.01)


def pct(samples: list[float], q: float) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def summary(samples_ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples_ms):7.2f}  p90 {pct(samples_ms, 90):7.2f}  "
        f"p99 {pct(samples_ms, 99):7.2f}  max {max(samples_ms):7.2f} ms"
    )


def machine() -> str:
    return f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}"


# -- /proc ---------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (the state) on; ``None`` if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid`` (children, grandchildren, …), by their ``ppid``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        found = children.get(todo.pop(), [])
        out += found
        todo += found
    return sorted(out)


def cpu_s(pid: int) -> float:
    """CPU seconds (utime + stime) of ``pid`` so far; 0 if it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) * TICK_S


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` value of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all threads of ``pid``: how often it woke."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as fh:
                for line in fh:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Tree:
    """A snapshot of the daemon and its descendants."""

    daemon_cpu_s: float
    children_cpu_s: float
    daemon_rss_kb: int
    children_rss_kb: dict[int, int]
    daemon_switches: int


def snapshot(pid: int) -> Tree:
    kids = descendants(pid)
    return Tree(
        daemon_cpu_s=cpu_s(pid),
        children_cpu_s=sum(cpu_s(k) for k in kids),
        daemon_rss_kb=status_kb(pid, "VmRSS"),
        children_rss_kb={k: status_kb(k, "VmRSS") for k in kids},
        daemon_switches=context_switches(pid),
    )


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"
