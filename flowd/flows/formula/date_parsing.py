"""Finding a date in the text printed on documents.

``read_date`` looks for the first date in the text (words around it are allowed, so
``Invoice Date: August 3, 2014`` works) written in one of these ways:

* ISO and its cousins, year first: ``2025-03-14``, ``2025/03/14``, ``2025.03.14`` (a time may
  follow);
* numeric, **day first**: ``03.04.2025``, ``28/11/2022``, ``3-4-25``; the two separators must be
  the same. When the day-first reading is impossible but the month-first one is valid
  (``12/25/2024``), the month-first reading is taken. Two-digit years mean 2000–2069 (``00``–``69``)
  or 1970–1999 (``70``–``99``);
* day, month name, year: ``14 March 2025``, ``7. Mai 2014``, ``2 juillet 2015``, ``1er janvier
  2020``, ``3 de marzo de 2025``, ``14-Mar-2025``;
* English month name, day, year: ``March 3, 2025``, ``August 3 , 2014``, ``Aug 3rd 2014``.

Month names are English, German, French, Dutch, Spanish, Italian and Portuguese, full or in their
usual abbreviations, in any case, with or without accents (``août``/``aout``, ``März``/``Marz``).
A candidate that is not a real date (``31.02.2025``) is skipped and the search goes on.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

# One row per month: its number, then its names in English, German, French, Dutch, Spanish,
# Italian and Portuguese (full and abbreviated), lower case and without accents (see ``fold``).
_MONTH_TABLE = """
1  january jan januar janner janvier janv januari enero ene gennaio gen janeiro
2  february feb februar feber fevrier fevr fev februari febrero febbraio fevereiro
3  march mar marz maerz mars maart mrt marzo marco
4  april apr avril avr abril abr aprile
5  may mai mei mayo maggio mag maio
6  june jun juni juin junio giugno giu junho
7  july jul juli juillet juil julio luglio lug julho
8  august aug aout augustus agosto ago
9  september sep sept septembre septiembre setiembre settembre set setembro
10 october oct oktober okt octobre octubre ottobre ott outubro out
11 november nov novembre noviembre novembro
12 december dec dezember dez decembre diciembre dic dicembre dezembro
"""
_ENGLISH_NAMES = """
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
"""


def _month_numbers(table: str) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for row in table.strip().splitlines():
        number, *names = row.split()
        numbers.update(dict.fromkeys(names, int(number)))
    return numbers


MONTH_NUMBERS: dict[str, int] = _month_numbers(_MONTH_TABLE)
_ENGLISH = _ENGLISH_NAMES.split()
_MONTH = "|".join(sorted(MONTH_NUMBERS, key=len, reverse=True))
# Month-first dates are an English habit; limiting them to English names keeps words such as
# Portuguese "out" or Italian "set" from turning "checked out 12 2025" into a date.
_MONTH_EN = "|".join(sorted(_ENGLISH, key=len, reverse=True))
_SEP = r"[\s.,/-]*"
_DATE = re.compile(
    rf"""
    (?<!\d)(?P<iso_y>\d{{4}})(?P<iso_sep>[-/.])(?P<iso_m>\d{{1,2}})(?P=iso_sep)(?P<iso_d>\d{{1,2}})(?!\d)
  | (?<!\d)(?P<num_d>\d{{1,2}})(?P<num_sep>[-/.])(?P<num_m>\d{{1,2}})(?P=num_sep)
        (?P<num_y>\d{{4}}|\d{{2}})(?!\d)
  | (?<!\d)(?P<dm_d>\d{{1,2}})(?:st|nd|rd|th|er)?{_SEP}(?:de\s+|of\s+)?
        (?P<dm_m>{_MONTH})(?![a-z]){_SEP}(?:del?\s+)?(?P<dm_y>\d{{4}})(?!\d)
  | (?<![a-z])(?P<md_m>{_MONTH_EN})(?![a-z]){_SEP}(?P<md_d>\d{{1,2}})(?!\d)(?:st|nd|rd|th)?
        {_SEP}(?P<md_y>\d{{4}})(?!\d)
    """,
    re.VERBOSE,
)


def fold(text: str) -> str:
    """Lower case without accents, so ``März`` and ``Marz`` both read as ``marz``."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 70 else 1900
    return year


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _candidate(found: re.Match[str]) -> date | None:
    """The date a match stands for; each alternative of ``_DATE`` ends with its own group."""
    group = found.group
    kind = found.lastgroup
    if kind == "iso_d":
        return _make(int(group("iso_y")), int(group("iso_m")), int(group("iso_d")))
    if kind == "num_y":
        year, first, second = _year(group("num_y")), int(group("num_d")), int(group("num_m"))
        return _make(year, second, first) or _make(year, first, second)
    if kind == "dm_y":
        return _make(int(group("dm_y")), MONTH_NUMBERS[group("dm_m")], int(group("dm_d")))
    return _make(int(group("md_y")), MONTH_NUMBERS[group("md_m")], int(group("md_d")))


def read_date(text: str) -> date | None:
    """The first real date written in ``text``, or None."""
    folded = fold(text)
    position = 0
    while True:
        found = _DATE.search(folded, position)
        if found is None:
            return None
        value = _candidate(found)
        if value is not None:
            return value
        position = found.start() + 1
