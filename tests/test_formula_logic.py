"""Logic, list and context functions."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula


def ev(source: str, config: dict[str, Any] | None = None, **fields: Any) -> Any:
    scope = Scope(fields=fields, runtime_config=config or {})
    return compile_formula(source, list(fields)).evaluate(scope)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("if(1 > 0, 'a', 'b')", "a"),
        ("if(null, 'a', 'b')", "b"),
        ("if(false, 'a')", None),
        ("coalesce(null, 'x')", "x"),
        ("coalesce('', '  ', [], 0)", 0),
        ("coalesce(null)", None),
        ("coalesce('a', to_number('n/a'))", "a"),
        ("default(null, 'd')", "d"),
        ("default(' ', 'd')", "d"),
        ("default([], 'd')", "d"),
        ("default('v', to_number('n/a'))", "v"),
        ("default(false, 'd')", False),
        ("is_empty(null)", True),
        ("is_empty('')", True),
        ("is_empty(' \t\n')", True),
        ("is_empty([])", True),
        ("is_empty('x')", False),
        ("is_empty(0)", False),
        ("is_empty(false)", False),
        ("is_number(1)", True),
        ("is_number(1.5)", True),
        ("is_number('$ 1,234.50')", True),
        ("is_number('12 of 13')", False),
        ("is_number('x')", False),
        ("is_number(null)", False),
        ("is_number(true)", False),
        ("is_number([1])", False),
        ("is_date('2025-03-14')", True),
        ("is_date('14 maart 2025')", True),
        ("is_date('31.02.2025')", False),
        ("is_date(null)", False),
        ("is_date(20250314)", False),
        ("list_get([10, 20, 30], 0)", 10),
        ("list_get([10, 20, 30], -1)", 30),
        ("list_get([10, 20, 30], 3)", None),
        ("list_get([10, 20, 30], -4, 'none')", "none"),
        ("list_get([10], 0.0)", 10),
        ("list_get(null, 0)", None),
        ("list_get(null, 0, 'd')", "d"),
        ("first([1, 2])", 1),
        ("first([])", None),
        ("first(null)", None),
        ("last([1, 2])", 2),
        ("last([])", None),
        ("last(null)", None),
    ],
)
def test_logic_and_list_functions(source: str, value: Any) -> None:
    result = ev(source)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("if(true, 1 / 0, 2)", "division by zero"),
        ("coalesce(null, 1 / 0)", "division by zero"),
        ("default(null, 1 / 0)", "division by zero"),
        ("list_get('abc', 0)", "list_get needs a list, got text"),
        ("list_get([1], 'a')", "list_get needs a whole number"),
        ("first('abc')", "first needs a list, got text"),
        ("last(1)", "last needs a list, got number"),
        ("runtime([1])", "runtime needs text, got list"),
    ],
)
def test_logic_and_list_errors(source: str, fragment: str) -> None:
    with pytest.raises(FormulaRuntimeError) as caught:
        ev(source)
    assert fragment in caught.value.message


def test_runtime_reads_the_runtime_config() -> None:
    config = {"currency": "EUR", "limit": 100, "nested": {"a": 1}, "none": None}
    assert ev("runtime('currency')", config) == "EUR"
    assert ev("runtime('limit') * 2", config) == 200
    assert ev("runtime('nested')", config) == {"a": 1}
    assert ev("runtime('none', 'd')", config) is None  # present, so not the default
    assert ev("runtime('missing')", config) is None
    assert ev("runtime('missing', 'd')", config) == "d"
    assert ev("runtime(null, 'd')", config) == "d"
    assert ev("runtime('missing', 'd')") == "d"


def test_runtime_is_read_per_evaluation_not_at_compile_time() -> None:
    formula = compile_formula("runtime('k')")
    assert formula.evaluate(Scope(runtime_config={"k": 1})) == 1
    assert formula.evaluate(Scope(runtime_config={"k": 2})) == 2
