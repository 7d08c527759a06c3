"""The flowd formula language: a small, safe expression language for fields, rules and checks.

Formulas are parsed by a real LALR grammar (``grammar.lark``), checked, and compiled once into
nested closures; evaluating one costs a few microseconds and never runs user text as Python. The
language itself is described for users in ``docs/formula.md``.

    formula = compile_formula("to_number(scan_right(INPUT_COL, 'Total'))", names={"vendor"})
    formula.evaluate(Scope(text="Total:   1.234,50 EUR"))   # -> 1234.5

``compile_formula`` raises :class:`flowd.errors.FormulaError` (with line and column) for anything
wrong with the text; ``Formula.evaluate`` raises :class:`flowd.errors.FormulaRuntimeError` when a
record's values do not fit (the caller turns that field into ``ERROR``). User regular expressions
run under the time limit ``flowd.flows.formula.patterns.REGEX_TIMEOUT_S`` (1 s per call).
"""

from flowd.flows.formula.compiler import Formula, compile_formula
from flowd.flows.formula.functions import FUNCTION_NAMES
from flowd.flows.formula.scope import BUILTIN_NAMES, Scope

__all__ = [
    "BUILTIN_NAMES",
    "FUNCTION_NAMES",
    "Formula",
    "Scope",
    "compile_formula",
]
