"""The settings of a folder run (SPEC §5.2–5.3), their checks, and what a run reports back.

Checked before anything runs: a bad ``job_id``, ``runtime_config`` or ``modify_output_schema``
is a :class:`~flowd.errors.RunSettingsError` and nothing is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flowd.engine.output import FileResult
from flowd.engine.schema import SchemaChange
from flowd.errors import RunSettingsError
from flowd.flows.binary import CompiledBinary
from flowd.flows.specs import ProjectSpec

JOB_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    STOPPED_AT_CHECKPOINT = "STOPPED_AT_CHECKPOINT"


@dataclass(frozen=True)
class RunSettings:
    """The seed's run settings that a local run uses (SPEC §5.2)."""

    output_dir: Path | None = None
    output_has_run_id: bool = False
    delete_out_dir: bool = False
    log_to_timeline: bool = False
    save_binary_to_output: bool = True
    runtime_config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    step_timeout_s: float | None = 300.0
    max_file_mb: float = 50.0
    job_id: str | None = None
    workers: int = 0  # 0 = one per CPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_has_run_id": self.output_has_run_id,
            "delete_out_dir": self.delete_out_dir,
            "log_to_timeline": self.log_to_timeline,
            "save_binary_to_output": self.save_binary_to_output,
            "runtime_config": dict(self.runtime_config),
            "step_timeout_s": self.step_timeout_s,
            "max_file_mb": self.max_file_mb,
        }


_EXIT_CODES = {RunStatus.COMPLETE: 0, RunStatus.STOPPED_AT_CHECKPOINT: 3}


@dataclass(frozen=True)
class RunOutcome:
    job_id: str
    run_id: str
    output_folder: Path
    status: RunStatus
    can_resume: bool
    files: tuple[FileResult, ...]
    summary: Mapping[str, int]

    @property
    def exit_code(self) -> int:
        """0 COMPLETE, 3 STOPPED_AT_CHECKPOINT, 1 FAILED (the CLI's exit codes)."""
        return _EXIT_CODES.get(self.status, 1)


def new_run_id(now: datetime | None = None) -> str:
    """``2026-11-28T23-59-01Z-3f9a2c``: sortable by time, unique by its random tail."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H-%M-%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    if not job_id or len(job_id) > 50 or not set(job_id) <= JOB_ID_CHARS:
        raise RunSettingsError(
            f"job_id {job_id!r} is invalid: use 1-50 characters of A-Z a-z 0-9 . _ -"
        )
    return job_id


def check_runtime_config(config: Any, binary: CompiledBinary | ProjectSpec) -> SchemaChange | None:
    """Validate ``runtime_config`` now, before anything runs; return its schema change.
    ``binary`` is a compiled binary or the project (plan) loaded from one."""
    if not isinstance(config, Mapping):
        raise RunSettingsError("runtime_config must be a JSON object")
    prefix = config.get("log_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise RunSettingsError("runtime_config.log_prefix must be a string")
    raw = config.get("modify_output_schema")
    if raw is None:
        return None
    plan = binary.plan if isinstance(binary, CompiledBinary) else binary
    return SchemaChange.parse(raw, plan.field_names)
