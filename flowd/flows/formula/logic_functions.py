"""Logic and context functions: if coalesce default is_empty is_number is_date runtime.

``if``, ``coalesce`` and ``default`` are *lazy*: they receive their arguments unevaluated and
evaluate only what they need, so ``if(is_empty(x), null, to_number(x))`` never tries to read a
number from an empty field, and an expensive fallback costs nothing when it is not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowd.flows.formula.date_parsing import read_date
from flowd.flows.formula.number_parsing import read_number
from flowd.flows.formula.scope import Scope
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_text, is_empty
from flowd.flows.formula.values import is_number as _is_numeric

Thunk = Callable[[Scope], Any]


def if_(scope: Scope, condition: Thunk, then: Thunk, otherwise: Thunk | None = None) -> Any:
    if condition(scope):
        return then(scope)
    return None if otherwise is None else otherwise(scope)


def coalesce(scope: Scope, *candidates: Thunk) -> Any:
    """The first argument that is not empty (null, blank text, empty list), else null."""
    for candidate in candidates:
        value = candidate(scope)
        if not is_empty(value):
            return value
    return None


def default(scope: Scope, value: Thunk, fallback: Thunk) -> Any:
    result = value(scope)
    return fallback(scope) if is_empty(result) else result


def is_empty_(value: Any) -> bool:
    return is_empty(value)


def is_number(value: Any) -> bool:
    """True for numbers, and for text that ``to_number`` reads."""
    if isinstance(value, str):
        return read_number(value) is not None
    return _is_numeric(value)


def is_date(value: Any) -> bool:
    """True for text that ``to_date`` reads without a format."""
    return isinstance(value, str) and read_date(value) is not None


def runtime(scope: Scope, key: Any, fallback: Any = None) -> Any:
    """The run's ``runtime_config[key]``, or ``fallback`` when the key is absent."""
    if key is None:
        return fallback
    return scope.runtime_config.get(as_text(key, "runtime"), fallback)


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("if(condition, then, else?)", if_, kind="lazy"),
    fn("coalesce(value...)", coalesce, kind="lazy"),
    fn("default(value, fallback)", default, kind="lazy"),
    fn("is_empty(value)", is_empty_),
    fn("is_number(value)", is_number),
    fn("is_date(value)", is_date),
    fn("runtime(key, default?)", runtime, kind="scoped"),
)
