"""Layout functions: scan_right scan_left scan_below lines line_containing.

They read text laid out like ``pdftotext -layout``: a line is a row of the page, and *cells* on a
line are kept apart by runs of two or more spaces (or a tab), while words inside a cell are
separated by single spaces. So in ``Rechnungsnr.   30064443      Kundennr.   47774`` the cells are
``Rechnungsnr.``, ``30064443``, ``Kundennr.`` and ``47774``.

Labels are matched literally (no regex), case-sensitively unless the optional third argument is
``true``; the *first* occurrence of the label in the text decides the line. A missing label, or a
label with nothing where the value should be, gives ``null``, so ``coalesce(scan_right(...),
scan_below(...))`` tries the other place.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_text

# A gap between two cells: two or more blanks, or any tab.
_GAP = re.compile(r"[^\S\n]{2,}|\t")
# A cell: words joined by single blanks (not tabs).
_CELL = re.compile(r"\S+(?:[^\S\n\t]\S+)*")


@lru_cache(maxsize=256)
def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(re.escape(label), re.IGNORECASE)


def _find(text: Any, label: Any, ignore_case: Any, where: str) -> tuple[str, int, int] | None:
    """The text and the (start, end) of the first occurrence of ``label``, or None."""
    if text is None or label is None:
        return None
    haystack = as_text(text, where)
    needle = as_text(label, where)
    if not needle:
        raise FormulaRuntimeError(f"{where}: the label is empty")
    if ignore_case:
        found = _label_pattern(needle).search(haystack)
        return None if found is None else (haystack, found.start(), found.end())
    start = haystack.find(needle)
    return None if start < 0 else (haystack, start, start + len(needle))


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return line_start, len(text) if line_end < 0 else line_end


def scan_right(text: Any, label: Any, ignore_case: Any = False) -> str | None:
    """The first cell right of the label on its line (after blanks and one ':')."""
    found = _find(text, label, ignore_case, "scan_right")
    if found is None:
        return None
    haystack, start, end = found
    _, line_end = _line_bounds(haystack, start, end)
    rest = haystack[end:line_end].lstrip()
    if rest.startswith(":"):
        rest = rest[1:].lstrip()
    gap = _GAP.search(rest)
    cell = (rest if gap is None else rest[: gap.start()]).rstrip()
    return cell or None


def scan_left(text: Any, label: Any, ignore_case: Any = False) -> str | None:
    """The nearest cell left of the label on its line."""
    found = _find(text, label, ignore_case, "scan_left")
    if found is None:
        return None
    haystack, start, end = found
    line_start, _ = _line_bounds(haystack, start, end)
    cell = _GAP.split(haystack[line_start:start].rstrip())[-1].strip()
    return cell or None


def scan_below(text: Any, label: Any, ignore_case: Any = False) -> str | None:
    """The cell under the label: on the next line that has text in the label's columns.

    Columns are counted in characters from the start of the line. A cell is under the label when
    it overlaps the columns the label occupies, so left-aligned, centred and right-aligned
    values all work. Lines with nothing in those columns are skipped.
    """
    found = _find(text, label, ignore_case, "scan_below")
    if found is None:
        return None
    haystack, start, end = found
    line_start, line_end = _line_bounds(haystack, start, end)
    first_col, last_col = start - line_start, end - line_start
    position = line_end + 1
    while position < len(haystack):
        newline = haystack.find("\n", position)
        stop = len(haystack) if newline < 0 else newline
        for cell in _CELL.finditer(haystack, position, stop):
            if cell.start() - position >= last_col:
                break
            if cell.end() - position > first_col:
                return cell.group()
        position = stop + 1
    return None


def lines(text: Any) -> list[str] | None:
    return None if text is None else as_text(text, "lines").splitlines()


def line_containing(text: Any, part: Any, ignore_case: Any = False) -> str | None:
    """The first line that contains ``part``, trimmed of blanks at both ends."""
    found = _find(text, part, ignore_case, "line_containing")
    if found is None:
        return None
    haystack, start, end = found
    line_start, line_end = _line_bounds(haystack, start, end)
    return haystack[line_start:line_end].strip()


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("scan_right(text, label, ignore_case?)", scan_right),
    fn("scan_left(text, label, ignore_case?)", scan_left),
    fn("scan_below(text, label, ignore_case?)", scan_below),
    fn("lines(text)", lines),
    fn("line_containing(text, part, ignore_case?)", line_containing),
)
