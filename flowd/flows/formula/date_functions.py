"""Date functions: to_date format_date.

Dates are values of type text in ISO form, ``YYYY-MM-DD``: that is what ``to_date`` returns and
what compares correctly with ``<`` and ``==``. How text is read is described in
:mod:`flowd.flows.formula.date_parsing`; an explicit ``format`` uses Python's ``strptime``
directives (``%d.%m.%Y``), with English month names for ``%B``/``%b``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.date_parsing import read_date
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_text, type_name


def parse_date(value: Any, layout: Any, where: str) -> date:
    """``value`` (text, not null) as a date, found in the text or read with ``layout``."""
    if not isinstance(value, str):
        raise FormulaRuntimeError(f"{where} needs text, got {type_name(value)}")
    if layout is not None:
        pattern = as_text(layout, where)
        try:
            return datetime.strptime(value.strip(), pattern).date()
        except ValueError:
            raise FormulaRuntimeError(
                f"{where}: {value!r} does not match the format {pattern!r}"
            ) from None
    found = read_date(value)
    if found is None:
        raise FormulaRuntimeError(f"{where}: cannot read a date from {value!r}")
    return found


def to_date(value: Any, layout: Any = None) -> str | None:
    return None if value is None else parse_date(value, layout, "to_date").isoformat()


def format_date(value: Any, layout: Any) -> str | None:
    """``value`` (any text ``to_date`` reads) written with ``strftime`` directives."""
    if value is None:
        return None
    return parse_date(value, None, "format_date").strftime(as_text(layout, "format_date"))


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("to_date(text, format?)", to_date),
    fn("format_date(date, format)", format_date),
)
