"""Prometheus metrics of the daemon (``GET /metrics``, SPEC §7).

Counters and histograms are updated as things happen (tasks finishing, sync requests, watcher
events); the gauges — jobs by status, queue depth, running tasks, notifications by state — are read
from the job store when scraped, so they can never drift from the truth. Each daemon has its own
registry (tests run several in one process).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flowd.engine.pipeline import TaskProgress
from flowd.jobs.store import JobStore
from flowd.notify.outbox import Outbox

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class _StoreCollector(Collector):
    def __init__(self, store: JobStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def collect(self) -> Iterator[Any]:
        gauges = self.store.gauges()
        jobs = GaugeMetricFamily("flowd_jobs", "Jobs in the store by status.", labels=["status"])
        for status, n in sorted(gauges["jobs"].items()):
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "flowd_queue_depth",
            "Tasks waiting to run (queued or waiting for a retry).",
            value=gauges["tasks"]["queued"],
        )
        yield GaugeMetricFamily(
            "flowd_tasks_running", "Tasks claimed by a worker.", value=gauges["tasks"]["running"]
        )
        notes = GaugeMetricFamily(
            "flowd_notifications",
            "Webhook and e-mail deliveries by state.",
            labels=["kind", "state"],
        )
        for (kind, state), n in sorted(self.outbox.counts().items()):
            notes.add_metric([kind, state], n)
        yield notes


class Metrics:
    """The daemon's registry and the instruments other parts update."""

    def __init__(self, store: JobStore, outbox: Outbox) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store, outbox))
        self.tasks_finished = Counter(
            "flowd_tasks_finished",
            "Task calls finished by the workers, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.task_seconds = Histogram(
            "flowd_task_seconds",
            "Time a worker spent on one task call (its steps up to its end or next barrier).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "flowd_step_seconds",
            "Time one step took on one file, by step kind.",
            ["step"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "flowd_sync_request_seconds",
            "Time to answer a run_binary_sync request.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.watcher_events = Counter(
            "flowd_watcher_events",
            "File system events seen by the inbox watchers, by kind.",
            ["kind"],
            registry=self.registry,
        )

    def observe_task(self, job_id: str, progress: TaskProgress) -> None:
        self.tasks_finished.labels(str(progress.state)).inc()
        self.task_seconds.observe(progress.elapsed_s)
        for kind, seconds in progress.step_s:
            self.step_seconds.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
