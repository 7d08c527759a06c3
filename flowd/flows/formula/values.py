"""The value model of formulas: type names, text conversion, truthiness, emptiness and operators.

Formula values are plain Python: ``str``, ``int``, ``float``, ``bool``, ``None`` (``null``),
``list`` and ``dict``. ``bool`` is *not* a number here (Python says ``True == 1``; a formula user
does not), so ``true + 1`` is a type error and ``true == 1`` is false. Every operator checks its
operand types and raises :class:`FormulaRuntimeError` with a message naming both types, never
a Python ``TypeError`` the user would not understand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowd.errors import FormulaRuntimeError


def type_name(value: Any) -> str:
    """The formula-language name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def is_number(value: Any) -> bool:
    """True for ints and floats, false for booleans (which Python counts as ints)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_text(value: Any, where: str) -> str:
    """``value`` as text for a function that needs text (``null`` is handled by the caller).

    Numbers are written as Python writes them (``12``, ``12.5``), booleans as ``true``/``false``;
    lists and dicts are refused because there is no one obvious way to write them.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise FormulaRuntimeError(f"{where} needs text, got {type_name(value)}")


def as_int(value: Any, where: str) -> int:
    """``value`` as an index or count: an int, or a float without a fraction."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormulaRuntimeError(f"{where} needs a whole number, got {type_name(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise FormulaRuntimeError(f"{where} needs a whole number, got {value}")
        return int(value)
    return value


def truthy(value: Any) -> bool:
    """Truthiness for ``and``/``or``/``not``/``if``: null, false, 0, '' and [] are false."""
    return bool(value)


def is_empty(value: Any) -> bool:
    """True for null, '' and blank text, and for empty lists and dicts."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict):
        return not value
    return False


# --- operators ---------------------------------------------------------------------------------


def add(left: Any, right: Any) -> Any:
    """``+``: numbers add, texts join (a number joined to text is written out), lists chain."""
    if is_number(left) and is_number(right):
        return left + right
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, str) and is_number(right):
        return left + str(right)
    if is_number(left) and isinstance(right, str):
        return str(left) + right
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    hint = " (concat() treats null as '')" if left is None or right is None else ""
    raise FormulaRuntimeError(f"cannot add {type_name(left)} and {type_name(right)}{hint}")


def _numbers(op: str, left: Any, right: Any) -> None:
    if not (is_number(left) and is_number(right)):
        raise FormulaRuntimeError(
            f"'{op}' needs two numbers, got {type_name(left)} and {type_name(right)}"
        )


def subtract(left: Any, right: Any) -> Any:
    """``-`` on two numbers."""
    _numbers("-", left, right)
    return left - right


def multiply(left: Any, right: Any) -> Any:
    """``*`` on two numbers (never text repetition: that would make evaluation unbounded)."""
    _numbers("*", left, right)
    return left * right


def divide(left: Any, right: Any) -> Any:
    """``/`` on two numbers, always true division; dividing by zero is a runtime error."""
    _numbers("/", left, right)
    if right == 0:
        raise FormulaRuntimeError("division by zero")
    return left / right


def negate(value: Any) -> Any:
    """Unary ``-`` on a number."""
    if not is_number(value):
        raise FormulaRuntimeError(f"'-' needs a number, got {type_name(value)}")
    return -value


def equal(left: Any, right: Any) -> bool:
    """``==``: equal values of the same kind (``1 == 1.0`` is true, ``true == 1`` is false)."""
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def not_equal(left: Any, right: Any) -> bool:
    """``!=`` and ``<>``."""
    return not equal(left, right)


def _orderable(op: str, left: Any, right: Any) -> None:
    if is_number(left) and is_number(right):
        return
    if isinstance(left, str) and isinstance(right, str):
        return
    hint = (
        " (use to_number() to read a number from text)"
        if (isinstance(left, str) or isinstance(right, str))
        else ""
    )
    raise FormulaRuntimeError(
        f"cannot compare {type_name(left)} with {type_name(right)} using '{op}'{hint}"
    )


def less(left: Any, right: Any) -> bool:
    _orderable("<", left, right)
    return bool(left < right)


def less_equal(left: Any, right: Any) -> bool:
    _orderable("<=", left, right)
    return bool(left <= right)


def greater(left: Any, right: Any) -> bool:
    _orderable(">", left, right)
    return bool(left > right)


def greater_equal(left: Any, right: Any) -> bool:
    _orderable(">=", left, right)
    return bool(left >= right)


BINARY_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "==": equal,
    "!=": not_equal,
    "<>": not_equal,
    "<": less,
    "<=": less_equal,
    ">": greater,
    ">=": greater_equal,
}
