"""What a run hands to its steps: the frozen :class:`RunContext` and the UDF-facing context.

``RunContext`` crosses process boundaries (it is pickled to workers), so it holds only plain values.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from flowd.engine.schema import SchemaChange

MB = 1024 * 1024


@dataclass(frozen=True)
class RunContext:
    """Everything about one run that steps may need.

    ``output_root`` is ``None`` for in-memory runs (the sync API): nothing is written to disk.
    ``step_timeout_s`` is already resolved (``None`` = no limit).
    """

    job_id: str
    run_id: str
    output_root: Path | None
    input_dir: Path | None = None
    runtime_config: Mapping[str, Any] = field(default_factory=dict)  # a plain dict: it pickles
    schema_change: SchemaChange | None = None
    log_to_timeline: bool = False
    step_timeout_s: float | None = 300.0
    # A file whose existence asks a running task to stop after its current step and give itself
    # back (the daemon's pause; SPEC §6). None: never asked (flowd run, sync runs).
    yield_flag: str | None = None
    max_file_bytes: int = 50 * MB

    @property
    def log_prefix(self) -> str:
        value = self.runtime_config.get("log_prefix", "")
        return value if isinstance(value, str) else str(value)


class Timeline:
    """Appends step and UDF log lines to ``logs/timeline.jsonl`` when ``log_to_timeline`` is on.

    Several worker processes append to the same file: each line is written with one ``write`` on an
    ``O_APPEND`` descriptor, which the kernel keeps whole for lines this small.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.enabled = ctx.log_to_timeline and ctx.output_root is not None
        self.prefix = ctx.log_prefix
        self._path = ctx.output_root / "logs" / "timeline.jsonl" if ctx.output_root else None
        self._fd: int | None = None

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled or self._path is None:
            return
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        entry = {"ts": round(time.time(), 6), "event": event, **fields}
        if self.prefix:
            entry["log_prefix"] = self.prefix
        line = self.prefix + json.dumps(entry, default=str, ensure_ascii=False) + "\n"
        os.write(self._fd, line.encode("utf-8", "replace"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class UdfLogger:
    """The ``context.logger`` of a UDF: lines go to the run's log and, if enabled, its timeline."""

    def __init__(self, timeline: Timeline, file: str, step: str, ctx: RunContext) -> None:
        self._timeline = timeline
        self._file = file
        self._step = step
        # Bound here, not through contextvars: worker processes may not inherit the parent's.
        bound: dict[str, Any] = {"job_id": ctx.job_id, "run_id": ctx.run_id}
        if ctx.log_prefix:
            bound["log_prefix"] = ctx.log_prefix
        self._log = structlog.get_logger("flowd.udf").bind(**bound)

    _RESERVED = frozenset({"event", "level", "file", "step", "msg", "ts", "log_prefix"})

    def _emit(self, level: str, msg: str, kw: dict[str, Any]) -> None:
        # The UDF's own keys never overwrite ours: a clash gets a ``udf_`` prefix.
        extra = {(f"udf_{k}" if k in self._RESERVED else k): v for k, v in kw.items()}
        fields = {"file": self._file, "step": self._step, "msg": msg, **extra}
        self._timeline.write("udf_log", level=level, **fields)
        getattr(self._log, level)("udf_log", **fields)

    def debug(self, msg: str, **kw: Any) -> None:
        self._emit("debug", msg, kw)

    def info(self, msg: str, **kw: Any) -> None:
        self._emit("info", msg, kw)

    def warning(self, msg: str, **kw: Any) -> None:
        self._emit("warning", msg, kw)

    def error(self, msg: str, **kw: Any) -> None:
        self._emit("error", msg, kw)


@dataclass(frozen=True)
class UdfContext:
    """The ``context`` argument of a UDF (SPEC §2.1)."""

    job_id: str
    run_id: str
    root_output_folder: str | None
    step_folder: str | None
    config: Mapping[str, Any]
    input_filepath: str | None
    logger: UdfLogger
