"""The formula language: literals, escapes, names, operators, precedence, laziness, errors."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from flowd.errors import FormulaError, FormulaRuntimeError
from flowd.flows.formula import (
    BUILTIN_NAMES,
    FUNCTION_NAMES,
    Formula,
    Scope,
    compile_formula,
)


def ev(source: str, scope: Scope | None = None, names: tuple[str, ...] = ()) -> Any:
    return compile_formula(source, names).evaluate(scope or Scope())


def compile_error(source: str, names: tuple[str, ...] = ()) -> FormulaError:
    with pytest.raises(FormulaError) as caught:
        compile_formula(source, names)
    return caught.value


def runtime_error(source: str, scope: Scope | None = None) -> str:
    with pytest.raises(FormulaRuntimeError) as caught:
        ev(source, scope)
    return caught.value.message


# --- public interface ----------------------------------------------------------------------------


def test_public_constants() -> None:
    assert frozenset({"INPUT_COL", "FILENAME", "PAGE_COUNT", "RECORD_INDEX"}) == BUILTIN_NAMES
    assert {"regex_get", "scan_right", "to_date", "if", "runtime"} <= FUNCTION_NAMES
    assert all(name == name.lower() for name in FUNCTION_NAMES)


def test_formula_records_source_and_the_fields_it_reads() -> None:
    formula = compile_formula("concat(a, FILENAME, b, a)", ["a", "b", "c"])
    assert isinstance(formula, Formula)
    assert formula.source == "concat(a, FILENAME, b, a)"
    assert formula.names_used == frozenset({"a", "b"})


def test_formula_is_frozen_and_pickles_by_recompiling() -> None:
    formula = compile_formula("upper(vendor)", ["vendor"])
    with pytest.raises(AttributeError):
        formula.source = "x"  # type: ignore[misc]
    clone = pickle.loads(pickle.dumps(formula))
    assert clone.evaluate(Scope(fields={"vendor": "acme"})) == "ACME"
    assert clone.names_used == formula.names_used


def test_builtin_names_read_the_scope() -> None:
    scope = Scope(text="body", filename="a.pdf", page_count=3, record_index=7)
    assert ev("[INPUT_COL, FILENAME, PAGE_COUNT, RECORD_INDEX]", scope) == ["body", "a.pdf", 3, 7]


def test_field_names_read_earlier_fields_including_hidden_ones() -> None:
    scope = Scope(fields={"total": 12.5, "__raw": " x "})
    assert ev("total * 2", scope, ("total",)) == 25.0
    assert ev("trim(__raw)", scope, ("__raw",)) == "x"


def test_a_declared_field_missing_from_the_scope_reads_as_null() -> None:
    assert ev("is_empty(later)", Scope(), ("later",)) is True


def test_scope_is_reusable_and_mutable_between_fields() -> None:
    formula = compile_formula("a + 1", ["a"])
    scope = Scope(fields={"a": 1})
    assert formula.evaluate(scope) == 2
    scope.fields["a"] = 41
    assert formula.evaluate(scope) == 42


# --- literals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("42", 42),
        ("3.25", 3.25),
        ("'single'", "single"),
        ('"double"', "double"),
        ("true", True),
        ("FALSE", False),
        ("Null", None),
        ("[]", []),
        ("[1, 'a', [true]]", [1, "a", [True]]),
        ("''", ""),
    ],
)
def test_literals(source: str, value: Any) -> None:
    assert ev(source) == value
    assert type(ev(source)) is type(value)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'a\nb'", "a\nb"),
        (r"'a\tb'", "a\tb"),
        (r"'\d+\s*'", "\\d+\\s*"),
        (r"'\\d'", "\\d"),
        (r"'\x41'", "\\x41"),
        (r"'a\"b'", 'a"b'),
        ("'multi\nline'", "multi\nline"),
    ],
)
def test_string_escapes(source: str, value: str) -> None:
    assert ev(source) == value


def test_unknown_escapes_reach_the_regex_engine_unchanged() -> None:
    assert ev(r"regex_get('Invoice 4711 ', '\d+\s*')") == "4711 "


def test_list_literals_are_fresh_on_every_evaluation() -> None:
    formula = compile_formula("[1, 2]")
    first = formula.evaluate(Scope())
    first.append(3)
    assert formula.evaluate(Scope()) == [1, 2]


# --- operators and precedence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("12 / 2 / 3", 2.0),
        ("2 * 3 + 4 * 5", 26),
        ("-2 * 3", -6),
        ("--2", 2),
        ("-(1 + 2)", -3),
        ("1 + 2 == 3", True),
        ("1 + 2 > 2 * 1", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not true or true", True),
        ("not (true or true)", False),
        ("!false and !false", True),
        ("not 1 == 2", True),
        ("1 < 2 and 3 > 2 or false", True),
        ("7 / 2", 3.5),
        ("'a' + 'b' + 'c'", "abc"),
        ("'No. ' + 42", "No. 42"),
        ("1.5 + 'x'", "1.5x"),
        ("[1] + [2]", [1, 2]),
        ("1 <> 2", True),
        ("1 != 1", False),
        ("'b' >= 'a'", True),
        ("2 <= 2.0", True),
        ("true == 1", False),
        ("1 == 1.0", True),
        ("null == null", True),
        ("1 == '1'", False),
    ],
)
def test_operators_and_precedence(source: str, value: Any) -> None:
    result = ev(source)
    assert result == value
    assert type(result) is type(value)


def test_keywords_do_not_swallow_names_that_start_with_them() -> None:
    scope = Scope(fields={"order": 1, "android": 2, "notes": 3, "or_total": 4, "nullable": 5})
    names = ("order", "android", "notes", "or_total", "nullable")
    assert ev("order + android + notes + or_total + nullable", scope, names) == 15


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("'a' * 2", "'*' needs two numbers, got text and number"),
        ("'a' - 1", "'-' needs two numbers"),
        ("null < 1", "cannot compare null with number using '<'"),
        ("'1' > 0", "to_number"),
        ("1 / 0", "division by zero"),
        ("1 + null", "concat()"),
        ("-'a'", "'-' needs a number, got text"),
        ("true + 1", "cannot add boolean and number"),
        ("[1] < [2]", "cannot compare list with list"),
    ],
)
def test_type_errors_are_runtime_errors_with_clear_messages(source: str, fragment: str) -> None:
    assert fragment in runtime_error(source)


def test_and_or_short_circuit() -> None:
    assert ev("false and 1 / 0 > 0") is False
    assert ev("true or 1 / 0 > 0") is True
    with pytest.raises(FormulaRuntimeError):
        ev("true and 1 / 0 > 0")


def test_if_is_lazy() -> None:
    assert ev("if(true, 'yes', to_number('n/a'))") == "yes"
    assert ev("if(false, to_number('n/a'), 'no')") == "no"
    assert ev("if(false, 1)") is None
    with pytest.raises(FormulaRuntimeError):
        ev("if(true, to_number('n/a'), 'no')")


def test_truthiness_of_conditions() -> None:
    for falsy in ("null", "0", "''", "[]", "false"):
        assert ev(f"if({falsy}, 'y', 'n')") == "n"
        assert ev(f"not {falsy}") is True
    for truthy in ("'0'", "1", "[0]", "' '", "'false'"):
        assert ev(f"if({truthy}, 'y', 'n')") == "y"


def test_function_names_are_case_insensitive() -> None:
    assert ev("UPPER('a') + Lower('B') + Regex_Get('x1', '\\d')") == "Ab1"


def test_constant_calls_are_folded_but_still_fail_at_runtime() -> None:
    assert ev("upper('abc')") == "ABC"
    assert compile_formula("to_number('n/a')")  # compiles: the failure belongs to the record
    assert "cannot read a number" in runtime_error("to_number('n/a')")


def test_unexpected_python_errors_become_runtime_errors() -> None:
    # a huge rounding precision makes decimal raise; the field must fail, not the worker
    assert "InvalidOperation" in runtime_error("round(1.5, 10000000000000000)")


# --- compile-time errors with positions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "col", "fragment"),
    [
        ("", 1, 1, "empty"),
        ("   ", 1, 1, "empty"),
        ("1 +", 1, 4, "ends too early"),
        ("concat('a',", 1, 12, "ends too early"),
        ("upper('a'", 1, 10, "expected"),
        ("1 2", 1, 3, "unexpected '2'"),
        ("a = 1", 1, 3, "compare with '=='"),
        ("1 < 2 < 3", 1, 7, "comparisons do not chain"),
        ("[1, 2][0]", 1, 7, "indexing"),
        ("FILENAME.upper", 1, 9, "no attribute access"),
        ("'abc", 1, 1, "no closing '"),
        ('upper("abc)', 1, 7, 'no closing "'),
        ("1 +\n  * 2", 2, 3, "unexpected '*'"),
        ("upper('a') $", 1, 12, "unexpected character '$'"),
        ("(1)(2)", 1, 4, "only a function name can be called"),
    ],
)
def test_syntax_errors_have_positions(source: str, line: int, col: int, fragment: str) -> None:
    error = compile_error(source)
    assert (error.line, error.col) == (line, col)
    assert fragment in error.message


def test_unknown_function_suggests_the_closest_name() -> None:
    error = compile_error("upper(regex_gte(INPUT_COL, 'x'))")
    assert (error.line, error.col) == (1, 7)
    assert "unknown function 'regex_gte'" in error.message
    assert "did you mean 'regex_get'" in error.message


def test_unknown_function_without_a_close_name() -> None:
    error = compile_error("zzzqqq(1)")
    assert error.message == "unknown function 'zzzqqq'"


def test_unknown_name_suggests_a_known_one() -> None:
    error = compile_error("concat(\n  Input_Col, totl)", ("total",))
    assert (error.line, error.col) == (2, 3)
    assert "did you mean 'INPUT_COL'" in error.message
    error = compile_error("concat(INPUT_COL, totl)", ("total",))
    assert (error.line, error.col) == (1, 19)
    assert "unknown name 'totl'; did you mean 'total'" in error.message


def test_a_function_name_used_as_a_name_says_so() -> None:
    assert "is a function" in compile_error("upper").message


def test_fields_not_passed_as_names_are_unknown() -> None:
    assert "unknown name 'total'" in compile_error("total + 1").message


@pytest.mark.parametrize(
    ("source", "col", "fragment"),
    [
        ("upper()", 1, "upper takes 1 argument, got 0: upper(text)"),
        ("upper('a', 'b')", 1, "upper takes 1 argument, got 2"),
        ("1 + regex_get(INPUT_COL)", 5, "regex_get takes 2 or 3 arguments, got 1"),
        ("concat()", 1, "concat takes at least 1 argument, got 0"),
        ("if(true)", 1, "if takes 2 or 3 arguments"),
        ("regex_replace('a')", 1, "regex_replace takes 3 or 4 arguments"),
    ],
)
def test_wrong_arity_is_a_compile_error(source: str, col: int, fragment: str) -> None:
    error = compile_error(source)
    assert (error.line, error.col) == (1, col)
    assert fragment in error.message


def test_bad_literal_regex_is_a_compile_error_at_the_pattern() -> None:
    error = compile_error("regex_get(INPUT_COL,\n   '(unclosed')")
    assert (error.line, error.col) == (2, 4)
    assert "invalid regular expression" in error.message


def test_bad_literal_flags_are_a_compile_error_at_the_flags() -> None:
    error = compile_error("match(INPUT_COL, 'a', 'iq')")
    assert (error.line, error.col) == (1, 23)
    assert "unknown regular-expression flag 'q'" in error.message


def test_computed_bad_regex_is_a_runtime_error() -> None:
    scope = Scope(fields={"p": "(unclosed"})
    with pytest.raises(FormulaRuntimeError, match="invalid regular expression"):
        ev("regex_get('x', p)", scope, ("p",))


def test_nesting_is_bounded_so_evaluation_cannot_exhaust_the_stack() -> None:
    assert "nested too deeply" in compile_error("abs(" * 300 + "1" + ")" * 300).message
    assert "nested too deeply" in compile_error(" + ".join(["1"] * 300)).message
    assert ev("abs(" * 150 + "-1" + ")" * 150) == 1
    assert ev("(" * 500 + "1" + ")" * 500) == 1  # parentheses alone add no depth
    scope = Scope(fields={"x": 1})
    assert ev(" + ".join(["x"] * 150), scope, ("x",)) == 150


def test_formulas_cannot_reach_python() -> None:
    for source in ("__import__('os')", "open('x')", "eval('1')", "exec('1')"):
        assert "unknown function" in compile_error(source).message
    assert "no attribute access" in compile_error("INPUT_COL.__class__").message
