"""Number functions, and reading numbers from the text printed on documents."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula


def ev(source: str, **fields: Any) -> Any:
    return compile_formula(source, list(fields)).evaluate(Scope(fields=fields))


def fails(source: str, fragment: str = "") -> None:
    with pytest.raises(FormulaRuntimeError) as caught:
        ev(source)
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$1,234.50", 1234.5),
        ("2.469,90 €", 2469.9),
        ("(12.00)", -12.0),
        ("€ 717,97", 717.97),
        ("29.99 € TTC", 29.99),
        ("1.234", 1234),
        ("1,234", 1234),
        ("12.500", 12500),
        ("4.11", 4.11),
        ("56,02", 56.02),
        ("0.125", 0.125),
        ("1234.567", 1234.567),
        ("1.2345", 1.2345),
        ("1.234.567", 1234567),
        ("1,234,567.89", 1234567.89),
        ("1.234.567,89", 1234567.89),
        ("1 234,50", 1234.5),
        ("1\u00a0234,50 €", 1234.5),
        ("1'234.50 CHF", 1234.5),
        ("42", 42),
        ("  42  ", 42),
        ("-12", -12),
        ("−12,5", -12.5),
        ("- € 12", -12),
        ("EUR -12", -12),
        ("12.00-", -12.0),
        ("($ 1,000.00)", -1000.0),
        ("Invoice-Total: 12", 12),
        ("Balance (due): 12.00 (paid)", 12.0),
        ("Total: 12.", 12),
        (",50", 0.5),
        ("19%", 19),
        ("USD1,000", 1000),
    ],
)
def test_to_number_reads_printed_numbers(text: str, value: float) -> None:
    result = ev("to_number(t)", t=text)
    assert result == pytest.approx(value)
    assert isinstance(result, int) == isinstance(value, int)


@pytest.mark.parametrize("text", ["abc", "", "Page 1 of 2", "12/03/2025", "1.2.3,4,5", "€"])
def test_to_number_refuses_text_without_exactly_one_number(text: str) -> None:
    with pytest.raises(FormulaRuntimeError, match="cannot read a number"):
        ev("to_number(t)", t=text)


def test_to_number_passes_numbers_and_null() -> None:
    assert ev("to_number(12.5)") == 12.5
    assert ev("to_number(null)") is None
    fails("to_number(true)", "needs a number, got boolean")
    fails("to_number([1])", "needs a number, got list")


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("to_int('1.234,99')", 1234),
        ("to_int(-2.7)", -2),
        ("to_int(7)", 7),
        ("to_int(null)", None),
        ("round(2.675, 2)", 2.68),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(1.25, 1)", 1.3),
        ("round('12,3456', 2)", 12.35),
        ("round(1234, -2)", 1200),
        ("round(null, 2)", None),
        ("sum([1, 2.5, '3', null])", 6.5),
        ("sum(1, 2)", 3),
        ("sum([])", 0),
        ("sum(null)", 0),
        ("min([3, '1,5', null])", 1.5),
        ("min(4, 2, 8)", 2),
        ("max(4, 2, 8)", 8),
        ("max(['1.000', 999])", 1000),
        ("min([])", None),
        ("max([null])", None),
        ("abs(-3)", 3),
        ("abs('-1,5')", 1.5),
        ("abs(null)", None),
    ],
)
def test_number_functions(source: str, value: Any) -> None:
    result = ev(source)
    assert result == value
    if value is not None:
        assert type(result) is type(value)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("to_int('x')", "to_int: cannot read a number from 'x'"),
        ("round('x')", "round: cannot read a number"),
        ("round(1.5, 'a')", "round needs a whole number"),
        ("sum(['a'])", "sum: cannot read a number"),
        ("sum([[1]])", "sum needs a number, got list"),
        ("min(['a'])", "min: cannot read"),
        ("max(true)", "max needs a number, got boolean"),
        ("abs('x')", "abs: cannot read"),
    ],
)
def test_number_function_errors(source: str, fragment: str) -> None:
    fails(source, fragment)
