"""Text, regular-expression and layout functions."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula

INVOICE = "\n".join(
    [
        "ACME GmbH                                   RECHNUNG",
        " " * 44 + "Rechnungsnr.   30064443      Kundennr.   47774",
        "Invoice Number:            42183017",
        "Invoice Date: August 3, 2014",
        "Date:",
        "",
        "Description                 Qty      Unit price        Amount",
        "Widget                        2          500,00      1.000,00",
        "Service                       1          234,50        234,50",
        "",
        "Total:                                             1.234,50 EUR",
    ]
)


def ev(source: str, text: str = "", **fields: Any) -> Any:
    return compile_formula(source, list(fields)).evaluate(Scope(text=text, fields=fields))


def fails(source: str, fragment: str = "", text: str = "", **fields: Any) -> None:
    with pytest.raises(FormulaRuntimeError) as caught:
        ev(source, text, **fields)
    assert fragment in caught.value.message


# --- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("echo('x')", "x"),
        ("echo([1, 2])", [1, 2]),
        ("echo(null)", None),
        ("concat('a', 1, true, null, 2.5)", "a1true2.5"),
        ("concat(null)", ""),
        ("upper('straße')", "STRASSE"),
        ("upper(12)", "12"),
        ("lower('ÄB')", "äb"),
        ("trim('\t a b \n')", "a b"),
        ("clean(' a \t\n b  c ')", "a b c"),
        ("replace('a-b-c', '-', '+')", "a+b+c"),
        ("replace('abc', '', 'x')", "abc"),
        ("replace('abc', 'b', null)", "ac"),
        ("substring('abcdef', 2)", "cdef"),
        ("substring('abcdef', 1, 3)", "bc"),
        ("substring('abcdef', -2)", "ef"),
        ("substring('abcdef', 2.0, 4)", "cd"),
        ("split('a,b', ',')", ["a", "b"]),
        ("split(' a  b ')", ["a", "b"]),
        ("join(['a', 1, null, true], '|')", "a|1|true"),
        ("join(['a', 'b'])", "ab"),
        ("len('abc')", 3),
        ("len([])", 0),
        ("contains('Invoice', 'voice')", True),
        ("contains('Invoice', 'VOICE')", False),
        ("contains([1, 2], 2)", True),
        ("contains([1, 2], true)", False),
        ("startswith('Invoice', 'Inv')", True),
        ("startswith('Invoice', 'inv')", False),
        ("endswith('a.PDF', '.PDF')", True),
        ("endswith('a.PDF', '.pdf')", False),
    ],
)
def test_text_functions(source: str, value: Any) -> None:
    assert ev(source) == value


@pytest.mark.parametrize("name", ["upper", "lower", "trim", "clean", "lines", "len"])
def test_text_functions_give_null_for_null(name: str) -> None:
    assert ev(f"{name}(null)") is None


@pytest.mark.parametrize(
    "source",
    [
        "replace(null, 'a', 'b')",
        "substring(null, 1)",
        "split(null, ',')",
        "join(null, ',')",
        "regex_get(null, 'a')",
        "regex_get_all(null, 'a')",
        "regex_replace(null, 'a', 'b')",
        "scan_right(null, 'a')",
        "scan_left(null, 'a')",
        "scan_below(null, 'a')",
        "line_containing(null, 'a')",
        "scan_right('abc', null)",
    ],
)
def test_null_text_gives_null(source: str) -> None:
    assert ev(source) is None


@pytest.mark.parametrize(
    "source",
    [
        "contains(null, 'a')",
        "contains('a', null)",
        "startswith(null, 'a')",
        "endswith(null, 'a')",
        "match(null, 'a')",
    ],
)
def test_predicates_give_false_for_null(source: str) -> None:
    assert ev(source) is False


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("upper([1])", "upper needs text, got list"),
        ("concat('a', [1])", "concat needs text, got list"),
        ("substring('abc', 1.5)", "whole number"),
        ("substring('abc', 'x')", "whole number, got text"),
        ("split('abc', '')", "separator is empty"),
        ("join('abc')", "join needs a list, got text"),
        ("join([[1]], ',')", "join needs text, got list"),
        ("len(1)", "len needs text or a list, got number"),
        ("startswith(['a'], 'a')", "needs text, got list"),
    ],
)
def test_text_function_errors(source: str, fragment: str) -> None:
    fails(source, fragment)


# --- regular expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r"regex_get('Invoice No: AB-12', 'No:\s*([A-Z0-9-]+)')", "AB-12"),
        (r"regex_get('Invoice 42', '\d+')", "42"),
        (r"regex_get('Invoice 42', '(?:Invoice) \d+')", "Invoice 42"),
        (r"regex_get('b', '(a)|(b)')", "b"),
        (r"regex_get('abc', '\d')", None),
        (r"regex_get('TOTAL 5', 'total (\d)', 'i')", "5"),
        (r"regex_get('a\nb', '^b$')", None),
        (r"regex_get('a\nb', '^b$', 'm')", "b"),
        (r"regex_get('a\nb', 'a.b', 's')", "a\nb"),
        (r"regex_get('a1', ' a (\d) ', 'x')", "1"),
        (r"regex_get(12345, '3(\d)')", "4"),
        (r"regex_get_all('a1b2c3', '\d')", ["1", "2", "3"]),
        (r"regex_get_all('x=1 y=2', '(\w)=\d')", ["x", "y"]),
        (r"regex_get_all('abc', '\d')", []),
        (r"regex_get_all('A1 a2', 'a(\d)', 'i')", ["1", "2"]),
        (r"regex_replace('a1b22', '\d+', '#')", "a#b#"),
        (r"regex_replace('John Smith', '(\w+) (\w+)', '\2, \1')", "Smith, John"),
        (r"regex_replace('ABC', 'b', 'x', 'i')", "AxC"),
        (r"regex_replace('abc', 'b', null)", "ac"),
        (r"match('INV-7', '^INV-\d+$')", True),
        (r"match('inv-7', '^INV-\d+$')", False),
        (r"match('inv-7', '^INV-\d+$', 'i')", True),
    ],
)
def test_regex_functions(source: str, value: Any) -> None:
    assert ev(source) == value


def test_computed_patterns_and_flags_work_and_are_cached() -> None:
    assert ev("regex_get('Total 5', p, f)", p="total (\\d)", f="i") == "5"
    assert ev("regex_get('Total 5', p, f)", p="total (\\d)", f="i") == "5"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("regex_replace('abc', 'b', '\\9')", "bad replacement"),
        ("regex_get([1], 'a')", "needs text, got list"),
    ],
)
def test_regex_runtime_errors(source: str, fragment: str) -> None:
    fails(source, fragment)


def test_runtime_flags_are_checked() -> None:
    fails("regex_get('a', 'a', f)", "unknown regular-expression flag", f="z")


# --- layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("scan_right(INPUT_COL, 'Invoice Number')", "42183017"),
        ("scan_right(INPUT_COL, 'Rechnungsnr.')", "30064443"),
        ("scan_right(INPUT_COL, 'Kundennr.')", "47774"),
        ("scan_right(INPUT_COL, 'Invoice Date')", "August 3, 2014"),
        ("scan_right(INPUT_COL, 'Total')", "1.234,50 EUR"),
        ("scan_right(INPUT_COL, 'TOTAL:', true)", "1.234,50 EUR"),
        ("scan_right(INPUT_COL, 'TOTAL:')", None),
        ("scan_right(INPUT_COL, 'Date:')", "August 3, 2014"),  # first occurrence decides
        ("scan_right(INPUT_COL, 'Amount')", None),  # nothing right of it
        ("scan_right(INPUT_COL, 'IBAN')", None),
        ("scan_right('Total:42', 'Total')", "42"),
        ("scan_right('Total : :42', 'Total')", ":42"),  # only one ':' is dropped
        ("scan_right('Total\t42\t43', 'Total')", "42"),
        ("scan_right('Total 42 EUR  x', 'Total')", "42 EUR"),
        ("scan_right('a\r\nTotal:  42\r\nb', 'Total')", "42"),
        ("scan_left(INPUT_COL, 'Kundennr.')", "30064443"),
        ("scan_left(INPUT_COL, 'RECHNUNG')", "ACME GmbH"),
        ("scan_left(INPUT_COL, 'EUR')", "1.234,50"),
        ("scan_left(INPUT_COL, 'Rechnungsnr.')", None),
        ("scan_left(INPUT_COL, 'acme gmbh', true)", None),
        ("scan_left(INPUT_COL, 'IBAN')", None),
        ("scan_below(INPUT_COL, 'Amount')", "1.000,00"),
        ("scan_below(INPUT_COL, 'Qty')", "2"),
        ("scan_below(INPUT_COL, 'Unit price')", "500,00"),
        ("scan_below(INPUT_COL, 'Description')", "Widget"),
        ("scan_below(INPUT_COL, 'description', true)", "Widget"),
        ("scan_below(INPUT_COL, 'Kundennr.')", None),  # nothing under those columns
        ("scan_below(INPUT_COL, 'Total')", None),
        ("scan_below(INPUT_COL, 'IBAN')", None),
        ("scan_below('  Total\\n\\n     \\n1,234.00  x', 'Total')", "1,234.00"),  # right-aligned
        ("scan_below('Name      Due\\nACME      \\nfoo       2025-01-01', 'Due')", "2025-01-01"),
        ("lines('a\r\nb\n')", ["a", "b"]),  # a real CR LF inside the literal
        ("lines('')", []),
        ("line_containing(INPUT_COL, 'Widget')", INVOICE.splitlines()[7]),
        ("line_containing(INPUT_COL, 'kundennr', true)", INVOICE.splitlines()[1].strip()),
        ("line_containing(INPUT_COL, 'kundennr')", None),
    ],
)
def test_layout_functions(source: str, value: Any) -> None:
    assert ev(source, INVOICE) == value


@pytest.mark.parametrize("name", ["scan_right", "scan_left", "scan_below", "line_containing"])
def test_layout_functions_refuse_an_empty_label(name: str) -> None:
    fails(f"{name}(INPUT_COL, '')", "label is empty", INVOICE)


def test_layout_labels_are_literal_not_regex() -> None:
    assert ev("scan_right('a.c  no\\nTotal (EUR)   12', 'Total (EUR)')", "") == "12"
    assert ev("scan_right('abc  no', 'a.c')") is None


def test_layout_function_errors() -> None:
    fails("scan_right([1], 'a')", "needs text, got list")
    fails("lines([1])", "needs text, got list")
