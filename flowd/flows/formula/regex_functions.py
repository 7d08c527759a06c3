"""Regular-expression functions: regex_get regex_get_all regex_replace match.

Patterns follow Python's ``re`` syntax (run by the ``regex`` module under a time limit, see
:mod:`flowd.flows.formula.patterns`). The optional ``flags`` argument is a string of letters:
``i`` ignore case, ``m`` ``^``/``$`` at every line, ``s`` ``.`` matches newlines, ``x`` verbose.
Null text gives null (``match`` gives false).
"""

from __future__ import annotations

from typing import Any

from flowd.flows.formula import patterns
from flowd.flows.formula.spec import FunctionSpec, fn
from flowd.flows.formula.values import as_text


def _value(found: Any) -> str | None:
    """The first capture group that took part in the match, or the whole match without groups."""
    if found.re.groups == 0:
        value: str = found.group(0)
        return value
    for group in found.groups():
        if group is not None:
            return str(group)
    return None


def regex_get(text: Any, pattern: Any, flags: Any = None) -> str | None:
    if text is None:
        return None
    compiled = patterns.as_pattern(pattern, flags, "regex_get")
    found = patterns.search(compiled, as_text(text, "regex_get"), "regex_get")
    return None if found is None else _value(found)


def regex_get_all(text: Any, pattern: Any, flags: Any = None) -> list[str] | None:
    if text is None:
        return None
    compiled = patterns.as_pattern(pattern, flags, "regex_get_all")
    found = patterns.finditer(compiled, as_text(text, "regex_get_all"), "regex_get_all")
    values = (_value(m) for m in found)
    return [v for v in values if v is not None]


def regex_replace(text: Any, pattern: Any, replacement: Any, flags: Any = None) -> str | None:
    if text is None:
        return None
    compiled = patterns.as_pattern(pattern, flags, "regex_replace")
    template = "" if replacement is None else as_text(replacement, "regex_replace")
    return patterns.sub(compiled, template, as_text(text, "regex_replace"), "regex_replace")


def match(text: Any, pattern: Any, flags: Any = None) -> bool:
    if text is None:
        return False
    compiled = patterns.as_pattern(pattern, flags, "match")
    return patterns.search(compiled, as_text(text, "match"), "match") is not None


FUNCTIONS: tuple[FunctionSpec, ...] = (
    fn("regex_get(text, pattern, flags?)", regex_get, pattern_arg=1, flags_arg=2),
    fn("regex_get_all(text, pattern, flags?)", regex_get_all, pattern_arg=1, flags_arg=2),
    fn(
        "regex_replace(text, pattern, replacement, flags?)",
        regex_replace,
        pattern_arg=1,
        flags_arg=3,
    ),
    fn("match(text, pattern, flags?)", match, pattern_arg=1, flags_arg=2),
)
