"""User regular expressions: compiled once, cached, and always run with a time limit.

Patterns use the third-party ``regex`` module (Python ``re`` syntax, plus possessive quantifiers
and atomic groups) because it can abandon a match after a deadline: a catastrophic pattern such as
``(a+)+$`` on a long line would otherwise pin a worker forever. Every search, findall and sub goes
through this module so that no call can forget the limit.

Literal patterns are compiled by the formula compiler (a bad one is a compile-time error with its
position); computed patterns are compiled on first use and kept in an LRU cache.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import regex

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula.values import as_text

#: Seconds one regular-expression call may run before it fails the field. Read on every call, so
#: a test or an embedding program may lower it.
REGEX_TIMEOUT_S: float = 1.0

_FLAG_BITS: dict[str, int] = {
    "i": regex.IGNORECASE,
    "m": regex.MULTILINE,
    "s": regex.DOTALL,
    "x": regex.VERBOSE,
}

PatternType: type = type(regex.compile(""))


def flag_bits(flags: str) -> int:
    """The ``regex`` flag bits for a flags string such as ``'im'``; unknown letters are an error."""
    bits = 0
    for letter in flags.lower():
        bit = _FLAG_BITS.get(letter)
        if bit is None:
            raise FormulaRuntimeError(
                f"unknown regular-expression flag {letter!r} (use i, m, s or x)"
            )
        bits |= bit
    return bits


@lru_cache(maxsize=512)
def compile_pattern(pattern: str, flags: str = "") -> Any:
    """Compile ``pattern`` with ``flags``; raises FormulaRuntimeError for an invalid pattern."""
    bits = flag_bits(flags)
    try:
        return regex.compile(pattern, bits)
    except regex.error as exc:
        raise FormulaRuntimeError(f"invalid regular expression {pattern!r}: {exc}") from None


def as_pattern(pattern: Any, flags: Any, where: str) -> Any:
    """A compiled pattern from an argument that is either already compiled or text.

    The compiler passes patterns it could compile ahead of time (with their flags baked in) as
    compiled objects, so the hot path only pays for this type check.
    """
    if isinstance(pattern, PatternType):
        return pattern
    flag_text = "" if flags is None else as_text(flags, where)
    return compile_pattern(as_text(pattern, where), flag_text)


def _timed_out(pattern: Any, where: str) -> FormulaRuntimeError:
    return FormulaRuntimeError(
        f"{where}: regular expression {pattern.pattern!r} timed out after {REGEX_TIMEOUT_S:g} s"
    )


def search(pattern: Any, text: str, where: str) -> Any:
    """``pattern.search(text)`` under the time limit."""
    try:
        return pattern.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise _timed_out(pattern, where) from None


def finditer(pattern: Any, text: str, where: str) -> list[Any]:
    """All matches of ``pattern`` in ``text`` under one time limit for the whole scan."""
    try:
        return list(pattern.finditer(text, timeout=REGEX_TIMEOUT_S))
    except TimeoutError:
        raise _timed_out(pattern, where) from None


def sub(pattern: Any, replacement: str, text: str, where: str) -> str:
    """``pattern.sub(replacement, text)`` under the time limit; a bad template fails the call."""
    try:
        result: str = pattern.sub(replacement, text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise _timed_out(pattern, where) from None
    except (regex.error, IndexError) as exc:
        raise FormulaRuntimeError(f"{where}: bad replacement {replacement!r}: {exc}") from None
    return result
