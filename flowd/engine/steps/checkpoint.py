"""``apply_checkpoint``: validate records; failing ones stop for review (SPEC §2.5).

Validating twice gives the same answer for the same fields, so a resume simply re-validates the
checkpoint's stored records — which a person may have corrected in place — and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowd.engine.records import Record, RecordStatus
from flowd.engine.steps.scope import record_scope
from flowd.errors import FormulaRuntimeError
from flowd.flows.specs import CheckpointSpec


def failures(spec: CheckpointSpec, rec: Record, runtime_config: Mapping[str, Any]) -> list[str]:
    scope = record_scope(rec, runtime_config)
    out: list[str] = []
    for rule in spec.rules:
        try:
            ok = bool(rule.formula.evaluate(scope))
        except FormulaRuntimeError as exc:
            ok = False
            out.append(f"{rule.field}: {rule.message} ({exc.message})")
            continue
        if not ok:
            out.append(f"{rule.field}: {rule.message}")
    return out


def validate(
    spec: CheckpointSpec, records: list[Record], runtime_config: Mapping[str, Any]
) -> list[Record]:
    """Each OK or waiting record re-checked: ``OK`` when it passes, else ``STOPPED_AT_CHECKPOINT``."""
    out: list[Record] = []
    for rec in records:
        if rec.status not in (RecordStatus.OK, RecordStatus.STOPPED_AT_CHECKPOINT):
            out.append(rec)
            continue
        problems = failures(spec, rec, runtime_config)
        status = RecordStatus.STOPPED_AT_CHECKPOINT if problems else RecordStatus.OK
        out.append(rec.evolve(status=status, messages=tuple(problems)))
    return out


def waiting(records: list[Record]) -> bool:
    return any(r.status is RecordStatus.STOPPED_AT_CHECKPOINT for r in records)
