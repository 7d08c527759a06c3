"""Date functions: finding dates in many languages and layouts, formatting them."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula


def ev(source: str, **fields: Any) -> Any:
    return compile_formula(source, list(fields)).evaluate(Scope(fields=fields))


def to_date(text: str) -> Any:
    return ev("to_date(t)", t=text)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-03-14", "2025-03-14"),
        ("2025/3/4", "2025-03-04"),
        ("2025.03.14", "2025-03-14"),
        ("2025-03-14T10:00:00Z", "2025-03-14"),
        ("14 March 2025", "2025-03-14"),
        ("14 Mar 2025", "2025-03-14"),
        ("14-Mar-2025", "2025-03-14"),
        ("March 3, 2025", "2025-03-03"),
        ("August 3 , 2014", "2014-08-03"),
        ("Aug 3rd 2014", "2014-08-03"),
        ("Sept. 21, 2020", "2020-09-21"),
        ("03.04.2025", "2025-04-03"),
        ("28/11/2022", "2022-11-28"),
        ("3-4-25", "2025-04-03"),
        ("01.02.99", "1999-02-01"),
        ("12/25/2024", "2024-12-25"),
        ("7. Mai 2014", "2014-05-07"),
        ("3. März 2021", "2021-03-03"),
        ("3. Marz 2021", "2021-03-03"),
        ("1. Dezember 2020", "2020-12-01"),
        ("12. Okt. 2019", "2019-10-12"),
        ("2 juillet 2015", "2015-07-02"),
        ("02 Juillet 2015", "2015-07-02"),
        ("15 août 2020", "2020-08-15"),
        ("15 aout 2020", "2020-08-15"),
        ("1er janvier 2020", "2020-01-01"),
        ("5 décembre 2020", "2020-12-05"),
        ("5 déc. 2020", "2020-12-05"),
        ("10 février 2021", "2021-02-10"),
        ("14 maart 2025", "2025-03-14"),
        ("19 april 2014", "2014-04-19"),
        ("1 mei 2020", "2020-05-01"),
        ("4 mrt 2021", "2021-03-04"),
        ("3 de marzo de 2025", "2025-03-03"),
        ("9 diciembre 2022", "2022-12-09"),
        ("21 settembre 2019", "2019-09-21"),
        ("2 gennaio 2018", "2018-01-02"),
        ("7 de março de 2023", "2023-03-07"),
        ("7 de marco de 2023", "2023-03-07"),
        ("30 de outubro de 2023", "2023-10-30"),
        ("Invoice Date: August 3, 2014", "2014-08-03"),
        ("Datum: 03.04.2025  Kunde 4711", "2025-04-03"),
        ("Due 31.02.2025, issued 01.02.2025", "2025-02-01"),  # the impossible one is skipped
        ("Page 1 of 2, 14 March 2025", "2025-03-14"),
    ],
)
def test_to_date_reads_dates(text: str, iso: str) -> None:
    assert to_date(text) == iso


@pytest.mark.parametrize(
    "text",
    ["", "no date", "31.02.2025", "13/13/2025", "March 2025", "checked out 12 2025", "1.2-2025"],
)
def test_to_date_refuses_text_without_a_date(text: str) -> None:
    with pytest.raises(FormulaRuntimeError, match="cannot read a date"):
        to_date(text)


def test_to_date_with_an_explicit_format() -> None:
    assert ev("to_date('14/03/25', '%d/%m/%y')") == "2025-03-14"
    assert ev("to_date(' 20250314 ', '%Y%m%d')") == "2025-03-14"
    assert ev("to_date('Mar 14 2025', '%b %d %Y')") == "2025-03-14"
    with pytest.raises(FormulaRuntimeError, match="does not match the format"):
        ev("to_date('2025-03-14', '%d.%m.%Y')")


def test_to_date_null_and_wrong_types() -> None:
    assert ev("to_date(null)") is None
    assert ev("to_date(null, '%Y')") is None
    with pytest.raises(FormulaRuntimeError, match="to_date needs text, got number"):
        ev("to_date(20250314)")


def test_format_date() -> None:
    assert ev("format_date('2025-03-14', '%d.%m.%Y')") == "14.03.2025"
    assert ev("format_date('7. Mai 2014', '%Y/%m/%d')") == "2014/05/07"
    assert ev("format_date('2025-03-14', '%B %d, %Y')") == "March 14, 2025"
    assert ev("format_date(null, '%Y')") is None
    with pytest.raises(FormulaRuntimeError, match="cannot read a date"):
        ev("format_date('soon', '%Y')")
    with pytest.raises(FormulaRuntimeError, match="needs text, got list"):
        ev("format_date('2025-03-14', [1])")


def test_dates_compare_as_iso_text() -> None:
    assert ev("to_date('14 March 2025') < to_date('1 April 2025')") is True
