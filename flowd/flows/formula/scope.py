"""What a formula can see while it runs: the record's text, its context and earlier fields.

A :class:`Scope` is built once per record by the caller and handed to every formula of that record;
it is deliberately a plain mutable object (the refiner adds each field's value to ``fields`` as it
goes) so that evaluating a field costs no dictionary building.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The names every formula may read, besides the earlier fields passed to ``compile_formula``.
BUILTIN_NAMES: frozenset[str] = frozenset({"INPUT_COL", "FILENAME", "PAGE_COUNT", "RECORD_INDEX"})


@dataclass(slots=True)
class Scope:
    """The values one record offers its formulas.

    ``text`` is ``INPUT_COL``, ``filename`` is ``FILENAME``, ``page_count`` is ``PAGE_COUNT``
    and ``record_index`` is ``RECORD_INDEX``; ``fields`` holds the earlier fields by name (a
    missing name reads as ``null``); ``runtime_config`` is what ``runtime(key, default)`` reads.
    """

    text: str = ""
    filename: str = ""
    page_count: int = 0
    record_index: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
