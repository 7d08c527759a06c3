"""Line numbers for config keys, found again in the TOML text.

``tomllib`` returns plain dicts with no positions, yet ``file:line`` is what lets an editor jump to
a mistake. This module scans the text once for table headers (``[api]``, ``[[watches]]``,
``[watches.settings]``) and ``key =`` lines and maps each *location* — the same tuples pydantic
reports, with array-table indexes — to the line where it is written.

It is a best effort by design: keys written inside inline tables or multi-line arrays map to the
line of the enclosing key, and anything not found maps to the nearest enclosing table header or to
nothing. A wrong line is worse than none, so only what the scan saw is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flowd.config.values import Loc

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


@dataclass
class KeyLines:
    """Where each table and key of one TOML text starts (1-based line numbers)."""

    lines: dict[Loc, int] = field(default_factory=dict)

    @classmethod
    def scan(cls, text: str) -> KeyLines:
        found = cls()
        counts: dict[tuple[str, ...], int] = {}  # array tables seen so far, by plain name path
        table: Loc = ()
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            # A key-looking line inside a ''' or """ string is text, not a key.
            opens_or_closes = (line.count('"""') + line.count("'''")) % 2 == 1
            if in_multiline:
                in_multiline = not opens_or_closes
                continue
            in_multiline = opens_or_closes  # this line opens one; its own key still counts
            header = _HEADER.match(line)
            if header:
                names = _parts(header.group(2))
                if header.group(1) == "[[":
                    counts[tuple(names)] = counts.get(tuple(names), 0) + 1
                table = found._indexed(names, counts)
                found.lines.setdefault(table, number)
                if header.group(1) == "[[":
                    found.lines.setdefault(table[:-1], number)  # the array itself: its first table
                continue
            key = _KEY.match(line)
            if key:
                found.lines.setdefault((*table, *_parts(key.group(1))), number)
        return found

    @staticmethod
    def _indexed(names: list[str], counts: dict[tuple[str, ...], int]) -> Loc:
        out: list[str | int] = []
        for i, name in enumerate(names):
            out.append(name)
            seen = counts.get(tuple(names[: i + 1]))
            if seen:
                out.append(seen - 1)
        return tuple(out)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, else of its nearest enclosing key or table; ``None`` if unseen."""
        for end in range(len(loc), 0, -1):
            number = self.lines.get(tuple(loc[:end]))
            if number is not None:
                return number
        return None
