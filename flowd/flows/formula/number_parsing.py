"""Reading numbers out of the text printed on documents.

``read_number`` understands what invoices print: currency symbols and codes around the number
(``$1,234.50``, ``€ 717,97``, ``29.99 € TTC``), thousands separators (``,`` ``.`` ``'`` and spaces),
decimal commas (``2.469,90``), and negative amounts written ``-12``, ``12-`` or ``(12.00)``.

How a separator is read:

* with both ``.`` and ``,`` present, the one that comes last is the decimal separator
  (``1,234.50`` → 1234.5, ``2.469,90`` → 2469.9);
* one kind of separator appearing several times is a thousands separator (``1.234.567``);
* a single separator followed by exactly three digits, after one to three digits that do not
  start with ``0``, is a thousands separator (``1.234`` → 1234, ``12,500`` → 12500); otherwise it is
  the decimal separator (``4.11``, ``56,02``, ``0.125``, ``1234.567``);
* spaces (also no-break spaces) and apostrophes group thousands (``1 234,50``, ``1'234.50``).

The text may hold words around the number but only one number: ``Page 1 of 2`` is refused rather
than read as 1. Whole numbers come back as ``int``, numbers with a decimal part as ``float``.
"""

from __future__ import annotations

import re

# A number: digits with separators; a blank only groups when exactly three digits follow it.
_NUMBER = re.compile(r"[.,]?\d(?:[\d.,'’]|[ \u00a0\u202f](?=\d{3}(?!\d)))*")
_DIGIT = re.compile(r"\d")
_GROUPING = str.maketrans("", "", "'’ \u00a0\u202f")
_MINUS = "-−–"  # hyphen-minus, minus sign, en dash
_MAX_DIGITS = 60


def read_number(text: str) -> int | float | None:
    """The one number written in ``text``, or None when there is none or more than one."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    digits = found.group().rstrip(".,'’ \u00a0\u202f")
    before, after = text[: found.start()], text[found.start() + len(digits) :]
    if _DIGIT.search(after) or len(digits) > _MAX_DIGITS:
        return None
    value = _separated(digits.translate(_GROUPING))
    if value is None:
        return None
    return -value if _is_negative(before, after) else value


def _separated(digits: str) -> int | float | None:
    dot, comma = digits.rfind("."), digits.rfind(",")
    if dot >= 0 and comma >= 0:
        decimal, grouping = (".", ",") if dot > comma else (",", ".")
        whole, _, fraction = digits.rpartition(decimal)
        if decimal in whole:
            return None
        return _build(whole.replace(grouping, ""), fraction)
    if dot < 0 and comma < 0:
        return int(digits)
    separator = "." if dot >= 0 else ","
    parts = digits.split(separator)
    if len(parts) > 2:
        return _build("".join(parts), "")
    whole, fraction = parts
    if len(fraction) == 3 and 1 <= len(whole) <= 3 and not whole.startswith("0"):
        return int(whole + fraction)
    return _build(whole, fraction)


def _build(whole: str, fraction: str) -> int | float | None:
    if not whole and not fraction:
        return None
    if not fraction:
        return int(whole)
    return float(f"{whole or '0'}.{fraction}")


def _is_negative(before: str, after: str) -> bool:
    """``-12``, ``- € 12``, ``EUR -12``, ``12-`` and ``(12.00)`` are negative."""
    head = before.rstrip()
    while head and not head[-1].isalnum() and head[-1] not in _MINUS + "()":
        head = head[:-1].rstrip()  # skip currency symbols between the sign and the digits
    if head.endswith(tuple(_MINUS)):
        return True
    if after[:1] in tuple(_MINUS):
        return True
    opened = before.rfind("(")
    closed = after.find(")")
    return (
        opened > before.rfind(")")
        and closed >= 0
        and (after.find("(") < 0 or after.find("(") > closed)
    )
