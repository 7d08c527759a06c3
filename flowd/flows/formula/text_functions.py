"""Text functions: echo concat upper lower trim clean replace substring split join len contains
startswith endswith.

The null rule: a function given ``null`` where it needs text returns ``null`` (so a label that
was not found yields an empty field, not an error). The predicates ``contains``, ``startswith``
and ``endswith`` answer ``false`` instead, so they can be used directly in conditions.
Numbers and booleans given where text is needed are written out (``12.5``, ``true``).
"""

from __future__ import annotations

import re
from typing import Any

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_int, as_text, equal, type_name

_BLANK_RUN = re.compile(r"\s+")


def echo(value: Any) -> Any:
    return value


def concat(*values: Any) -> str:
    return "".join(as_text(v, "concat") for v in values if v is not None)


def upper(text: Any) -> str | None:
    return None if text is None else as_text(text, "upper").upper()


def lower(text: Any) -> str | None:
    return None if text is None else as_text(text, "lower").lower()


def trim(text: Any) -> str | None:
    return None if text is None else as_text(text, "trim").strip()


def clean(text: Any) -> str | None:
    if text is None:
        return None
    return _BLANK_RUN.sub(" ", as_text(text, "clean")).strip()


def replace(text: Any, old: Any, new: Any) -> str | None:
    if text is None:
        return None
    old_text = "" if old is None else as_text(old, "replace")
    if not old_text:
        return as_text(text, "replace")
    new_text = "" if new is None else as_text(new, "replace")
    return as_text(text, "replace").replace(old_text, new_text)


def substring(text: Any, start: Any, end: Any = None) -> str | None:
    if text is None:
        return None
    begin = as_int(start, "substring")
    stop = None if end is None else as_int(end, "substring")
    return as_text(text, "substring")[begin:stop]


def split(text: Any, separator: Any = None) -> list[str] | None:
    if text is None:
        return None
    value = as_text(text, "split")
    if separator is None:
        return value.split()
    sep = as_text(separator, "split")
    if not sep:
        raise FormulaRuntimeError("split: the separator is empty")
    return value.split(sep)


def join(items: Any, separator: Any = "") -> str | None:
    if items is None:
        return None
    if not isinstance(items, list | tuple):
        raise FormulaRuntimeError(f"join needs a list, got {type_name(items)}")
    sep = "" if separator is None else as_text(separator, "join")
    return sep.join(as_text(item, "join") for item in items if item is not None)


def length(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise FormulaRuntimeError(f"len needs text or a list, got {type_name(value)}")


def contains(haystack: Any, needle: Any) -> bool:
    if haystack is None or needle is None:
        return False
    if isinstance(haystack, list | tuple):
        return any(equal(item, needle) for item in haystack)
    return as_text(needle, "contains") in as_text(haystack, "contains")


def startswith(text: Any, prefix: Any) -> bool:
    if text is None or prefix is None:
        return False
    return as_text(text, "startswith").startswith(as_text(prefix, "startswith"))


def endswith(text: Any, suffix: Any) -> bool:
    if text is None or suffix is None:
        return False
    return as_text(text, "endswith").endswith(as_text(suffix, "endswith"))


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("echo(value)", echo),
    fn("concat(value...)", concat),
    fn("upper(text)", upper),
    fn("lower(text)", lower),
    fn("trim(text)", trim),
    fn("clean(text)", clean),
    fn("replace(text, old, new)", replace),
    fn("substring(text, start, end?)", substring),
    fn("split(text, separator?)", split),
    fn("join(list, separator?)", join),
    fn("len(value)", length),
    fn("contains(text_or_list, part)", contains),
    fn("startswith(text, prefix)", startswith),
    fn("endswith(text, suffix)", endswith),
)
