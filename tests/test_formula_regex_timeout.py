"""A catastrophic user regex fails its field within the time limit instead of hanging a worker."""

from __future__ import annotations

import time

import pytest

from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula, patterns

EVIL = "a" * 50_000 + "b"


def test_the_default_limit_is_one_second() -> None:
    assert patterns.REGEX_TIMEOUT_S == 1.0


def test_catastrophic_pattern_times_out_at_the_default_limit() -> None:
    formula = compile_formula("regex_get(INPUT_COL, '(a+)+$')")
    started = time.monotonic()
    with pytest.raises(FormulaRuntimeError, match="timed out after 1 s"):
        formula.evaluate(Scope(text=EVIL))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "source",
    [
        "regex_get(INPUT_COL, p)",
        "regex_get_all(INPUT_COL, p)",
        "regex_replace(INPUT_COL, p, 'x')",
        "match(INPUT_COL, p)",
    ],
)
def test_every_regex_function_is_limited(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "REGEX_TIMEOUT_S", 0.1)
    formula = compile_formula(source, ["p"])
    started = time.monotonic()
    with pytest.raises(FormulaRuntimeError, match=r"timed out after 0\.1 s"):
        formula.evaluate(Scope(text=EVIL, fields={"p": "(a+)+$"}))
    assert time.monotonic() - started < 3


def test_a_timeout_fails_only_that_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patterns, "REGEX_TIMEOUT_S", 0.1)
    formula = compile_formula("regex_get(INPUT_COL, '(a+)+$')")
    with pytest.raises(FormulaRuntimeError):
        formula.evaluate(Scope(text=EVIL))
    assert formula.evaluate(Scope(text="aaa")) == "aaa"
