"""Source text → lark parse tree, with syntax errors turned into located ``FormulaError``s.

The grammar lives next to this module in ``grammar.lark``; the LALR parser is built once, when the
module is imported, because building it costs milliseconds and parsing a formula microseconds.
Messages name what was found and what would have been accepted, in the user's words ("a value",
"')'") rather than lark's terminal names, and add a hint for the usual slips (``=`` for ``==``,
chained comparisons, ``x[0]`` indexing).
"""

from __future__ import annotations

from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from flowd.errors import FormulaError

_GRAMMAR = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
# cache=True: lark keeps the built tables in the temp folder, keyed by the grammar's hash; every
# ``flowd`` command and worker then starts ~30 ms sooner.
_PARSER = Lark(_GRAMMAR, parser="lalr", start="start", maybe_placeholders=True, cache=True)

_VALUE_STARTS = frozenset({"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "NULL", "LPAR", "LSQB"})
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a text in quotes",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "COMP_OP": "a comparison",
    "OR": "'or'",
    "AND": "'and'",
    "NOT": "'not'",
    "BANG": "'!'",
    "$END": "the end of the formula",
}


def parse(source: str) -> Tree[Token]:
    """The parse tree of ``source``; raises FormulaError with a 1-based line and column."""
    if not source.strip():
        raise FormulaError("the formula is empty", 1, 1)
    try:
        return _PARSER.parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None


def end_position(source: str) -> tuple[int, int]:
    """Line and column just after the last non-blank character of ``source``."""
    text = source.rstrip()
    line_start = text.rfind("\n") + 1
    return text.count("\n") + 1, len(text) - line_start + 1


def _expected(names: set[str] | frozenset[str]) -> str:
    words: list[str] = []
    if names >= _VALUE_STARTS:
        words.append("a value")
        names = names - _VALUE_STARTS - {"MINUS", "NOT", "BANG"}
    words += sorted({_WORDS.get(n, n) for n in names})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(source: str, exc: UnexpectedInput) -> FormulaError:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(source, exc)
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        line, col = end_position(source)
        return FormulaError(
            f"the formula ends too early; expected {_expected(set(exc.expected))}", line, col
        )
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    expected = set(exc.expected)
    found = repr(str(token)) if token.type != "STRING" else "a text in quotes"
    message = f"unexpected {found}; expected {_expected(expected)}"
    if token.type == "COMP_OP" and "COMP_OP" not in expected:
        message = f"comparisons do not chain: write 'a < b and b < c' (found {found})"
    elif token.type == "LSQB" and "LSQB" not in expected:
        message = "indexing with [...] is not supported; use list_get(list, index)"
    elif token.type == "LPAR" and "LPAR" not in expected:
        message = "only a function name can be called with '(...)'"
    return FormulaError(message, token.line or 1, token.column or 1)


def _bad_character(source: str, exc: UnexpectedCharacters) -> FormulaError:
    position = exc.pos_in_stream or 0
    char = source[position] if position < len(source) else ""
    line, col = exc.line, exc.column
    if char in "'\"":
        return FormulaError(f"this text has no closing {char}", line, col)
    if char == "=":
        return FormulaError("unexpected '='; compare with '=='", line, col)
    if char == ".":
        return FormulaError("unexpected '.'; there is no attribute access in formulas", line, col)
    return FormulaError(f"unexpected character {char!r}", line, col)
