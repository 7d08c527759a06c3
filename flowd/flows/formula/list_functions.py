"""List functions: list_get first last.

Indexes start at 0; negative indexes count from the end (``-1`` is the last item). Asking past
the end is not an error: ``list_get`` gives its default, ``first``/``last`` give null.
"""

from __future__ import annotations

from typing import Any

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_int, type_name


def _sequence(value: Any, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise FormulaRuntimeError(f"{where} needs a list, got {type_name(value)}")
    return value


def list_get(items: Any, index: Any, fallback: Any = None) -> Any:
    if items is None:
        return fallback
    sequence = _sequence(items, "list_get")
    position = as_int(index, "list_get")
    if -len(sequence) <= position < len(sequence):
        return sequence[position]
    return fallback


def first(items: Any) -> Any:
    if items is None:
        return None
    sequence = _sequence(items, "first")
    return sequence[0] if sequence else None


def last(items: Any) -> Any:
    if items is None:
        return None
    sequence = _sequence(items, "last")
    return sequence[-1] if sequence else None


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("list_get(list, index, default?)", list_get),
    fn("first(list)", first),
    fn("last(list)", last),
)
