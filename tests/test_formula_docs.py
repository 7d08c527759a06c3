"""Every example in docs/formula.md, written `` `expr` → `result` ``, is true.

This keeps the user reference honest: an example that drifts from the implementation fails here.
``→ ERROR`` means a runtime error (the field would become ERROR); ``→ compile error`` means
``compile_formula`` refuses the formula.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flowd.errors import FormulaError, FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula

DOC = Path(__file__).resolve().parents[1] / "docs" / "formula.md"
_EXAMPLE = re.compile(
    r"^- `(?P<expr>[^`]+)` → (?:`(?P<result>[^`]+)`|(?P<error>ERROR|compile error))\s*$"
)


def _block_after(marker: str, text: str) -> str:
    found = re.search(re.escape(marker) + r"\s*```\w*\n(.*?)\n```", text, re.DOTALL)
    assert found, f"docs/formula.md lost its {marker} block"
    return found.group(1)


def _examples() -> list[tuple[int, str, str | None, str | None]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    examples = []
    for number, line in enumerate(lines, start=1):
        found = _EXAMPLE.match(line)
        if found:
            examples.append((number, found["expr"], found["result"], found["error"]))
    return examples


def _scope() -> tuple[Scope, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    record = json.loads(_block_after("<!-- example-scope -->", text))
    scope = Scope(
        text=_block_after("<!-- example-input -->", text),
        filename=record["FILENAME"],
        page_count=record["PAGE_COUNT"],
        record_index=record["RECORD_INDEX"],
        fields=dict(record["fields"]),
        runtime_config=record["runtime_config"],
    )
    return scope, list(record["fields"])


def _same(actual: Any, expected: Any) -> bool:
    """Equal, and of the same kind: ``true`` is not ``1``, ``'1'`` is not ``1``."""
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and actual == pytest.approx(expected)
    return type(actual) is type(expected) and bool(actual == expected)


EXAMPLES = _examples()


def test_the_docs_have_many_examples() -> None:
    assert len(EXAMPLES) > 150


@pytest.mark.parametrize(
    ("line", "expr", "result", "error"), EXAMPLES, ids=[f"L{e[0]}" for e in EXAMPLES]
)
def test_doc_example(line: int, expr: str, result: str | None, error: str | None) -> None:
    scope, names = _scope()
    if error == "compile error":
        with pytest.raises(FormulaError):
            compile_formula(expr, names)
        return
    formula = compile_formula(expr, names)
    if error == "ERROR":
        with pytest.raises(FormulaRuntimeError):
            formula.evaluate(scope)
        return
    assert result is not None
    expected = compile_formula(result).evaluate(Scope())
    actual = formula.evaluate(scope)
    assert _same(actual, expected), f"docs/formula.md:{line}: {expr} gave {actual!r}"


def test_every_library_function_has_a_documented_example() -> None:
    from flowd.flows.formula import FUNCTION_NAMES

    used = {
        name.lower()
        for _, expr, _, _ in EXAMPLES
        for name in re.findall(r"([A-Za-z_]\w*)\s*\(", expr)
    }
    assert FUNCTION_NAMES - used == set()
