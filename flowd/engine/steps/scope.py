"""The formula scope of one record: its text, file name, page count, index, fields and config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowd.engine.records import Record
from flowd.flows.formula import Scope


def record_scope(
    rec: Record, runtime_config: Mapping[str, Any], *, with_fields: bool = True
) -> Scope:
    """A fresh :class:`Scope` for ``rec``; ``with_fields`` puts its current fields in it."""
    return Scope(
        text=rec.text,
        filename=rec.file_name,
        page_count=rec.page_count,
        record_index=rec.record_index,
        fields=rec.field_map() if with_fields else {},
        runtime_config=runtime_config,
    )
