"""Job listing with 100,000 jobs in the store: latency of filtered pages (issue 3; target p50 ≤ 20 ms).

Fills a temporary job store with 100,000 jobs — a realistic mix of tags, states, binaries,
priorities and creation times spread over 90 days — then times ``JobStore.list_jobs`` pages of 50
for each filter, at offset 0 and at a deep offset, and through a keyset cursor, and prints p50/p99.

    .venv/bin/python bench/job_list.py [--jobs 100000] [--queries 200] [--deep 2000]

The jobs are created through the store (``create_jobs``, one transaction) with an injected clock,
so times, tags and indexes are exactly what the daemon would write. Their final states are then
set with one SQL ``UPDATE`` per state: walking 100,000 jobs through ``transition_job`` one by one
would only slow the set-up down, and this benchmark measures reading.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowd.jobs import JobCursor, JobState, JobStore, NewJob

DAY_S = 86_400.0
STATES = [  # share of jobs in each state, roughly what a busy installation holds
    (JobState.COMPLETE, 0.80),
    (JobState.FAILED, 0.07),
    (JobState.CANCELLED, 0.02),
    (JobState.STOPPED_AT_CHECKPOINT, 0.03),
    (JobState.QUEUED, 0.05),
    (JobState.RUNNING, 0.02),
    (JobState.PAUSED, 0.01),
]
ORGS = [f"org={name}" for name in ("acme", "globex", "initech", "umbrella", "hooli", "stark")] + [
    f"org=client{n:02}" for n in range(24)
]
KINDS = ["invoices", "receipts", "contracts", "claims", "payslips"]
BINARIES = [f"projects/{k}/build/bin/{k}-v{v}.ibflowbin" for k in KINDS for v in range(1, 6)]


class StepClock:
    """Creation times: 100,000 jobs spread over 90 days, each a little after the one before."""

    def __init__(self, start: float, span_s: float, count: int, rng: random.Random) -> None:
        self.now = start
        self.mean_step_s = span_s / count
        self.rng = rng

    def __call__(self) -> float:
        self.now += self.rng.expovariate(1.0 / self.mean_step_s)
        return self.now


def new_jobs(count: int, start: float, rng: random.Random) -> list[NewJob]:
    jobs = []
    for n in range(count):
        kind = rng.choice(KINDS)
        day = time.strftime("%Y-%m-%d", time.gmtime(start + n / count * 90 * DAY_S))
        tags = [rng.choice(ORGS), kind, f"batch-{day}"]
        tags.append("inbox" if rng.random() < 0.6 else "api")
        if rng.random() < 0.02:
            tags.append("reprocess")
        jobs.append(
            NewJob(
                priority=5 if "inbox" in tags else rng.choice((0, 0, 0, 3, 9)),
                binary_path=rng.choice([b for b in BINARIES if f"/{kind}/" in b]),
                input_dir=f"inbox/{kind}/.flowd/processing/r{n}",
                output_folder=f"out/{kind}/r{n}",
                run_id=f"r{n}",
                settings={"output_has_run_id": True, "runtime_config": {"log_prefix": "x "}},
                tags=tags,
            )
        )
    return jobs


def fill(path: Path, count: int, rng: random.Random) -> tuple[float, float]:
    start = time.time() - 90 * DAY_S
    clock = StepClock(start, 90 * DAY_S, count, rng)
    with JobStore(path, clock=clock) as store:
        began = time.perf_counter()
        store.create_jobs(new_jobs(count, start, rng), who="bench", why="bench")
        made_s = time.perf_counter() - began
    states = rng.choices([s for s, _ in STATES], [w for _, w in STATES], k=count)
    with JobStore(path) as store:
        conn = store._db._conn  # the bench's shortcut: see the module docstring
        conn.execute("BEGIN IMMEDIATE")
        job_ids = [r[0] for r in conn.execute("SELECT job_id FROM jobs ORDER BY created_at")]
        conn.executemany(
            "UPDATE jobs SET state = ?, finished_at = created_at + 60 WHERE job_id = ?",
            [(str(s), j) for s, j in zip(states, job_ids, strict=True)],
        )
        conn.execute("COMMIT")
    return made_s, start


def timed(call: Callable[[], Any], n: int) -> tuple[list[float], float]:
    samples, rows = [], 0
    for _ in range(n):
        began = time.perf_counter()
        page = call()
        samples.append((time.perf_counter() - began) * 1000)
        rows += len(page.jobs)
    return samples, rows / n


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--deep", type=int, default=2_000, help="the deep offset")
    args = parser.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.sqlite3"
        made_s, start = fill(path, args.jobs, rng)
        size_mb = path.stat().st_size / 1e6
        print(f"{args.jobs} jobs created in {made_s:.1f} s; store {size_mb:.0f} MB")
        tags = ORGS + KINDS + ["inbox", "api", "reprocess"]
        filters: dict[str, Callable[[], dict[str, Any]]] = {
            "none": lambda: {},
            "status": lambda: {"status": rng.choice(list(JobState))},
            "tag": lambda: {"tag": rng.choice(tags)},
            "binary_path": lambda: {"binary_path": rng.choice(BINARIES)},
            "since": lambda: {"since": start + rng.uniform(0, 89) * DAY_S},
            "status+tag": lambda: {"status": JobState.FAILED, "tag": rng.choice(ORGS)},
        }
        print(f"{'filter':<12} {'page':<14} {'p50 ms':>8} {'p99 ms':>8} {'rows/page':>10}")
        with JobStore(path) as store:
            for name, make in filters.items():
                for label, offset in (("offset 0", 0), (f"offset {args.deep}", args.deep)):

                    def query(
                        make: Callable[[], dict[str, Any]] = make, offset: int = offset
                    ) -> Any:
                        return store.list_jobs(**make(), limit=50, offset=offset)

                    samples, rows = timed(query, args.queries)
                    p50, p99 = statistics.median(samples), pct(samples, 99)
                    print(f"{name:<12} {label:<14} {p50:>8.2f} {p99:>8.2f} {rows:>10.1f}")

            # The same deep pages by keyset cursor: what a client paging on gets.
            def cursor_page() -> Any:
                kwargs = filters["tag"]()
                deep = store.list_jobs(**kwargs, limit=1, offset=args.deep)
                after = deep.jobs[0] if deep.jobs else None
                cursor = JobCursor(after.created_at, after.job_id) if after else None
                began = time.perf_counter()
                page = store.list_jobs(**kwargs, limit=50, after=cursor)
                cursor_ms.append((time.perf_counter() - began) * 1000)
                return page

            cursor_ms: list[float] = []
            timed(cursor_page, args.queries)
            print(
                f"{'tag':<12} {'cursor, deep':<14} {statistics.median(cursor_ms):>8.2f} "
                f"{pct(cursor_ms, 99):>8.2f}"
            )


if __name__ == "__main__":
    main()
