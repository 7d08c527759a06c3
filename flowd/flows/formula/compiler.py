"""Parse tree → a :class:`Formula`: checked names and arities, then nested Python closures.

Compiling does all the work that does not depend on the record, once: names are resolved to
attribute reads on the :class:`Scope`, function names to their implementation, arities are checked,
string escapes resolved, literal regular expressions compiled (a bad one is reported here, with its
position), and calls on constants folded. What is left for ``evaluate`` is one closure per node
calling the next: no tree walking, no dictionary building, no name lookups by string.

User text is never given to ``eval`` or ``ast``; the only code that runs is the closures below
and the library functions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree

from flowd.errors import FormulaError, FormulaRuntimeError
from flowd.flows.formula import patterns
from flowd.flows.formula.functions import FUNCTION_NAMES, FUNCTIONS
from flowd.flows.formula.parser import parse
from flowd.flows.formula.scope import BUILTIN_NAMES, Scope
from flowd.flows.formula.spec import FunctionSpec
from flowd.flows.formula.values import BINARY_OPERATORS, negate, truthy

Run = Callable[[Scope], Any]

#: Deeper nesting is refused at compile time, so evaluation can never exhaust Python's stack.
MAX_DEPTH = 200

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\([\s\S])")
_IMMUTABLE = (str, int, float, bool, type(None))
_BUILTIN_READERS: dict[str, Run] = {
    "INPUT_COL": lambda s: s.text,
    "FILENAME": lambda s: s.filename,
    "PAGE_COUNT": lambda s: s.page_count,
    "RECORD_INDEX": lambda s: s.record_index,
}


@dataclass(frozen=True)
class Formula:
    """A compiled formula: call :meth:`evaluate` once per record.

    ``names_used`` lists the earlier fields (not the builtins) the formula reads, so a caller can
    order fields or report a dependency. A Formula pickles as its source and is recompiled on
    the other side (closures cannot be pickled; compiling is cheap).
    """

    source: str
    names_used: frozenset[str]
    _run: Run = field(repr=False, compare=False)

    def evaluate(self, scope: Scope) -> Any:
        """The formula's value for one record; raises FormulaRuntimeError when it fails."""
        try:
            return self._run(scope)
        except FormulaRuntimeError:
            raise
        except Exception as exc:  # a safety net: no input may crash the worker running a field
            raise FormulaRuntimeError(f"{type(exc).__name__}: {exc}") from exc

    def __reduce__(self) -> tuple[Any, ...]:
        return (compile_formula, (self.source, self.names_used))


def compile_formula(source: str, names: Collection[str] = ()) -> Formula:
    """Parse and check ``source``; ``names`` are the extra names in scope (earlier fields).

    Raises FormulaError(message, line, col), 1-based inside ``source``, for syntax errors,
    unknown functions (with the closest name suggested), unknown names, wrong argument counts,
    invalid literal regular expressions and nesting deeper than ``MAX_DEPTH``.
    """
    compiler = _Compiler(frozenset(names))
    node = compiler.compile(parse(source), 0)
    return Formula(source, frozenset(compiler.used), node.run)


@dataclass(frozen=True, slots=True)
class _Node:
    """A compiled subtree: its closure and, for constants, the value itself."""

    run: Run
    constant: bool = False
    value: Any = None


def _constant(value: Any) -> _Node:
    return _Node(lambda s: value, True, value)


def _first_token(tree: Tree[Token] | Token) -> Token:
    if isinstance(tree, Token):
        return tree
    for token in tree.scan_values(lambda v: isinstance(v, Token)):
        assert isinstance(token, Token)
        return token
    raise AssertionError("a parse tree without tokens")  # the grammar has no empty rules


def _error(message: str, where: Tree[Token] | Token) -> FormulaError:
    token = _first_token(where)
    return FormulaError(message, token.line or 1, token.column or 1)


def _unescape(literal: str) -> str:
    """The value of a quoted literal.

    Only \\' \\" \\\\ \\n \\t are escapes; any other backslash stays, so ``'\\d+'`` reaches the
    regular-expression engine as written.
    """
    body = literal[1:-1]
    if "\\" not in body:
        return body
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _suggest(name: str, candidates: Collection[str]) -> str:
    folded = {c.lower(): c for c in candidates}
    if name.lower() in folded:
        return f"; did you mean {folded[name.lower()]!r}?"
    close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[close[0]]!r}?" if close else ""


def _checked(
    spec: FunctionSpec, where: Tree[Token] | Token, action: Callable[..., Any], *args: Any
) -> Any:
    """``action(*args)``, with a FormulaRuntimeError turned into a compile error at ``where``."""
    try:
        return action(*args)
    except FormulaRuntimeError as exc:
        raise _error(f"{spec.name}: {exc.message}", where) from None


class _Compiler:
    """One compilation: resolves names against ``names`` and records those it used."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.used: set[str] = set()

    def compile(self, tree: Tree[Token], depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise _error(
                f"the formula is nested too deeply (more than {MAX_DEPTH} levels of operators "
                "and calls)",
                tree,
            )
        handler: Callable[[Tree[Token], int], _Node] = getattr(self, f"_{tree.data}")
        return handler(tree, depth + 1)

    # --- literals and names ----------------------------------------------------------------------

    def _number(self, tree: Tree[Token], depth: int) -> _Node:
        text = str(tree.children[0])
        return _constant(float(text) if "." in text else int(text))

    def _string(self, tree: Tree[Token], depth: int) -> _Node:
        return _constant(_unescape(str(tree.children[0])))

    def _true(self, tree: Tree[Token], depth: int) -> _Node:
        return _constant(True)

    def _false(self, tree: Tree[Token], depth: int) -> _Node:
        return _constant(False)

    def _null(self, tree: Tree[Token], depth: int) -> _Node:
        return _constant(None)

    def _name(self, tree: Tree[Token], depth: int) -> _Node:
        token = tree.children[0]
        assert isinstance(token, Token)
        name = str(token)
        reader = _BUILTIN_READERS.get(name)
        if reader is not None:
            return _Node(reader)
        if name in self.names:
            self.used.add(name)
            return _Node(lambda s: s.fields.get(name))
        if name.lower() in FUNCTION_NAMES:
            raise _error(f"{name!r} is a function: call it as {name}(...)", token)
        known = BUILTIN_NAMES | self.names
        raise _error(f"unknown name {name!r}{_suggest(name, known)}", token)

    def _list(self, tree: Tree[Token], depth: int) -> _Node:
        items = self._arguments(tree.children[0], depth)
        runs = [item.run for item in items]
        # Never a shared constant: the caller may keep and change the list it gets.
        return _Node(lambda s: [run(s) for run in runs])

    def _arguments(self, tree: Tree[Token] | Token | None, depth: int) -> list[_Node]:
        if tree is None:
            return []
        assert isinstance(tree, Tree)
        return [self.compile(self._tree(child), depth) for child in tree.children]

    @staticmethod
    def _tree(child: Tree[Token] | Token) -> Tree[Token]:
        assert isinstance(child, Tree)
        return child

    # --- operators -------------------------------------------------------------------------------

    def _operands(self, tree: Tree[Token], depth: int) -> tuple[_Node, str, _Node]:
        left, operator, right = tree.children
        return (
            self.compile(self._tree(left), depth),
            str(operator),
            self.compile(self._tree(right), depth),
        )

    def _or_op(self, tree: Tree[Token], depth: int) -> _Node:
        left, _, right = self._operands(tree, depth)
        a, b = left.run, right.run
        return _Node(lambda s: truthy(a(s)) or truthy(b(s)))

    def _and_op(self, tree: Tree[Token], depth: int) -> _Node:
        left, _, right = self._operands(tree, depth)
        a, b = left.run, right.run
        return _Node(lambda s: truthy(a(s)) and truthy(b(s)))

    def _not_op(self, tree: Tree[Token], depth: int) -> _Node:
        operand = self.compile(self._tree(tree.children[1]), depth)
        if operand.constant:
            return _constant(not operand.value)
        run = operand.run
        return _Node(lambda s: not run(s))

    def _neg(self, tree: Tree[Token], depth: int) -> _Node:
        operand = self.compile(self._tree(tree.children[1]), depth)
        return self._apply(negate, [operand])

    def _binary(self, tree: Tree[Token], depth: int) -> _Node:
        left, operator, right = self._operands(tree, depth)
        return self._apply(BINARY_OPERATORS[operator], [left, right])

    _compare = _binary

    # --- calls -----------------------------------------------------------------------------------

    def _call(self, tree: Tree[Token], depth: int) -> _Node:
        name_token, argument_tree = tree.children
        assert isinstance(name_token, Token)
        spec = FUNCTIONS.get(str(name_token).lower())
        if spec is None:
            hint = _suggest(str(name_token), FUNCTION_NAMES)
            raise _error(f"unknown function {str(name_token)!r}{hint}", name_token)
        args = self._arguments(argument_tree, depth)
        count = len(args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            raise _error(
                f"{spec.name} takes {spec.arity_text()}, got {count}: {spec.signature}", name_token
            )
        if spec.pattern_arg is not None and count > spec.pattern_arg:
            args = self._fold_pattern(spec, args, argument_tree)
        if spec.kind == "lazy":
            return _Node(_lazy_call(spec.impl, [a.run for a in args]))
        if spec.kind == "scoped":
            return _Node(_scoped_call(spec.impl, [a.run for a in args]))
        return self._apply(spec.impl, args)

    def _fold_pattern(
        self, spec: FunctionSpec, args: list[_Node], argument_tree: Tree[Token] | Token | None
    ) -> list[_Node]:
        """Compile a literal pattern (with literal or absent flags) now, once, with its position.

        Computed patterns or flags are left to the call, which compiles them through a cache.
        """
        assert spec.pattern_arg is not None and isinstance(argument_tree, Tree)
        trees = argument_tree.children
        flag_text = ""
        if spec.flags_arg is not None and spec.flags_arg < len(args):
            flags = args[spec.flags_arg]
            if not flags.constant:
                return args
            if flags.value is not None:
                flag_text = str(flags.value)
                _checked(spec, trees[spec.flags_arg], patterns.flag_bits, flag_text)
        pattern = args[spec.pattern_arg]
        if not (pattern.constant and isinstance(pattern.value, str)):
            return args
        compiled = _checked(
            spec, trees[spec.pattern_arg], patterns.compile_pattern, pattern.value, flag_text
        )
        folded = list(args)
        folded[spec.pattern_arg] = _constant(compiled)
        return folded

    def _apply(self, impl: Callable[..., Any], args: list[_Node]) -> _Node:
        """A call of a pure function: folded when every argument is a constant and it succeeds."""
        if all(a.constant for a in args):
            try:
                value = impl(*[a.value for a in args])
            except Exception:
                pass  # it fails again at evaluation, where runtime errors are reported
            else:
                if isinstance(value, _IMMUTABLE):
                    return _constant(value)
        return _Node(_eager_call(impl, args))


def _eager_call(impl: Callable[..., Any], args: list[_Node]) -> Run:
    """A closure calling ``impl`` with evaluated arguments, specialised by arity and constants.

    This is the hot path of every record: passing a constant argument directly instead of
    calling a closure that returns it saves a Python call per argument per record.
    """
    if not args:
        return lambda s: impl()
    if len(args) == 1:
        a = args[0].run
        return lambda s: impl(a(s))
    if len(args) == 2:
        first, second = args
        a, b = first.run, second.run
        if second.constant:
            cb = second.value
            return lambda s: impl(a(s), cb)
        return lambda s: impl(a(s), b(s))
    if len(args) == 3:
        first, second, third = args
        a, b, c = first.run, second.run, third.run
        if second.constant and third.constant:
            cb, cc = second.value, third.value
            return lambda s: impl(a(s), cb, cc)
        return lambda s: impl(a(s), b(s), c(s))
    runs = [arg.run for arg in args]
    return lambda s: impl(*[run(s) for run in runs])


def _lazy_call(impl: Callable[..., Any], thunks: list[Run]) -> Run:
    if len(thunks) == 2:
        a, b = thunks
        return lambda s: impl(s, a, b)
    if len(thunks) == 3:
        a, b, c = thunks
        return lambda s: impl(s, a, b, c)
    return lambda s: impl(s, *thunks)


def _scoped_call(impl: Callable[..., Any], args: list[Run]) -> Run:
    return lambda s: impl(s, *[run(s) for run in args])
