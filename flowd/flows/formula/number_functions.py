"""Number functions: to_number to_int round sum min max abs.

Wherever a number is needed, text is accepted and read as ``to_number`` reads it, so
``round(scan_right(INPUT_COL, 'Total'), 2)`` works without an explicit conversion. Null gives
null (``sum`` skips nulls; ``min``/``max`` skip them and give null when nothing is left). Text
that holds no number is a runtime error: the field becomes ``ERROR`` with the reason.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.number_parsing import read_number
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_int, is_number, type_name


def number(value: Any, where: str) -> int | float:
    """``value`` as a number (not null): numbers pass, text is read, anything else fails."""
    if is_number(value):
        result: int | float = value
        return result
    if isinstance(value, str):
        parsed = read_number(value)
        if parsed is None:
            raise FormulaRuntimeError(f"{where}: cannot read a number from {value!r}")
        return parsed
    raise FormulaRuntimeError(f"{where} needs a number, got {type_name(value)}")


def to_number(value: Any) -> int | float | None:
    return None if value is None else number(value, "to_number")


def to_int(value: Any) -> int | None:
    """The whole part of a number (the fraction is dropped, toward zero)."""
    return None if value is None else int(number(value, "to_int"))


def round_(value: Any, digits: Any = 0) -> int | float | None:
    """Half away from zero on the decimal value as written (``round(2.675, 2)`` is 2.68)."""
    if value is None:
        return None
    places = as_int(digits, "round")
    exact = Decimal(str(number(value, "round")))
    rounded = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(rounded) if places <= 0 else float(rounded)


def _items(values: tuple[Any, ...], where: str) -> list[int | float]:
    """The numbers of a single list argument or of several arguments, nulls left out."""
    items: Any = values
    if len(values) == 1 and isinstance(values[0], list | tuple):
        items = values[0]
    return [number(item, where) for item in items if item is not None]


def sum_(*values: Any) -> int | float:
    return sum(_items(values, "sum"))


def min_(*values: Any) -> int | float | None:
    items = _items(values, "min")
    return min(items) if items else None


def max_(*values: Any) -> int | float | None:
    items = _items(values, "max")
    return max(items) if items else None


def abs_(value: Any) -> int | float | None:
    return None if value is None else abs(number(value, "abs"))


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("to_number(value)", to_number),
    fn("to_int(value)", to_int),
    fn("round(value, digits?)", round_),
    fn("sum(list_or_values...)", sum_),
    fn("min(list_or_values...)", min_),
    fn("max(list_or_values...)", max_),
    fn("abs(value)", abs_),
)
