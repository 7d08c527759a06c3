"""Structured logging, configured once at the edge (SPEC §8 "Logs").

Events are stable snake_case names with key-value context. Output is JSON lines (for journald and
log shippers) or a readable console format on a terminal. A run's ``log_prefix`` (from its
``runtime_config``) is bound as context and prepended to every line of that run, and kept as its own
field in JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def _prefixing(renderer: Any) -> Any:
    def render(logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        prefix = event_dict.get("log_prefix") or ""
        if prefix and not isinstance(renderer, structlog.processors.JSONRenderer):
            event_dict = {k: v for k, v in event_dict.items() if k != "log_prefix"}
        return f"{prefix}{renderer(logger, name, event_dict)}"

    return render


def configure(fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging through it) for this process."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _prefixing(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # WriteLogger writes each line with its newline in one write(): with PrintLogger (print)
        # an unbuffered stderr gets two, and lines of worker processes sharing it interleave.
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _prefixing(renderer),
            ],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
