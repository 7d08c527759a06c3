"""JSON documents that remember where each value was written.

Project files are read with the standard ``json`` module (fast, strict). Only when something in
them is wrong do we need to say *where*: :class:`JsonSource` then parses the text a second time with
a small lark grammar that records positions, and maps a path such as ``("steps", 2, "settings")`` to
its line and column. Keeping the happy path on ``json`` keeps compiles fast; keeping positions in a
real parser (not a regex) keeps them right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from lark import Lark, Token, Tree

from flowd.errors import Problem

_JSON_GRAMMAR = r"""
?value: object | array | string | NUMBER -> number | "true" -> true | "false" -> false
      | "null" -> null
array: "[" [value ("," value)*] "]"
object: "{" [pair ("," pair)*] "}"
pair: string ":" value
string: STRING
STRING: /"(?:[^"\\\x00-\x1f]|\\.)*"/
NUMBER: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
%import common.WS
%ignore WS
"""


@cache
def _parser() -> Lark:
    """Built on first use: positions are needed only when a project file has an error."""
    return Lark(_JSON_GRAMMAR, start="value", parser="lalr", propagate_positions=True, cache=True)


Path = tuple[str | int, ...]


class JsonSyntaxError(Exception):
    """The text is not JSON; carries the 1-based position."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


@dataclass(frozen=True)
class JsonSource:
    """One JSON file: its display name, its text and its parsed value."""

    name: str
    text: str
    data: Any = field(compare=False)

    @classmethod
    def parse(cls, name: str, raw: bytes) -> JsonSource:
        """Decode and parse ``raw``; raise :class:`JsonSyntaxError` with a position on failure."""
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonSyntaxError(
                f"not UTF-8 text ({exc.reason} at byte {exc.start})", 1, 1
            ) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JsonSyntaxError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from exc
        return cls(name, text, data)

    @cached_property
    def _positions(self) -> tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, int]]]:
        values: dict[Path, tuple[int, int]] = {}
        keys: dict[Path, tuple[int, int]] = {}
        _walk(_parser().parse(self.text), (), values, keys)
        return values, keys

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The (line, col) of the value at ``path`` (or of its key when ``key``).

        Components of ``path`` that do not exist in the document (pydantic adds union tags such as
        ``"apply_refiner"``) are skipped; the deepest existing ancestor is used when the path ends
        in something absent (a missing key points at its object).
        """
        values, keys = self._positions
        real = self.real_path(path)
        if key and real in keys:
            return keys[real]
        while real and real not in values:
            real = real[:-1]
        return values.get(real, (1, 1))

    def real_path(self, path: Path) -> Path:
        """``path`` with the components that are not keys or indexes of the data removed."""
        node: Any = self.data
        real: list[str | int] = []
        for i, part in enumerate(path):
            in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if in_dict or in_list:
                node = node[part]  # type: ignore[index]
                real.append(part)
            elif isinstance(node, dict) and isinstance(part, str) and i == len(path) - 1:
                real.append(part)  # an absent last key: the caller may want its parent
            # anything else is a union tag that pydantic added: skip it
        return tuple(real)

    def problem(
        self, path: Path, message: str, *, key: bool = False, offset: tuple[int, int] | None = None
    ) -> Problem:
        """A :class:`Problem` located at ``path``; ``offset`` (line, col inside a string value) refines it."""
        line, col = self.position(path, key=key)
        if offset is not None:
            off_line, off_col = offset
            if off_line > 1:
                line, col = line + off_line - 1, off_col
            else:
                col = col + off_col  # +1 for the opening quote, -1 for 1-based: they cancel
        return Problem(self.name, line, col, message)


def _walk(
    node: Tree[Token] | Token,
    path: Path,
    values: dict[Path, tuple[int, int]],
    keys: dict[Path, tuple[int, int]],
) -> None:
    if isinstance(node, Token):
        values[path] = (node.line or 1, node.column or 1)
        return
    meta = node.meta
    values[path] = (getattr(meta, "line", 1), getattr(meta, "column", 1))
    if node.data == "object":
        for pair in node.children:
            if not isinstance(pair, Tree):
                continue
            key_node, value_node = pair.children
            assert isinstance(key_node, Tree)
            token = key_node.children[0]
            assert isinstance(token, Token)
            name = json.loads(str(token))
            keys[(*path, name)] = (token.line or 1, token.column or 1)
            _walk(value_node, (*path, name), values, keys)
    elif node.data == "array":
        for index, child in enumerate(c for c in node.children if c is not None):
            _walk(child, (*path, index), values, keys)
