"""How a library function is described to the compiler.

Each function module exports a tuple of :class:`FunctionSpec` built with :func:`fn` from a
human-readable signature such as ``"regex_get(text, pattern, flags?)"``: the signature is the one
source of the function's name and arity (``?`` marks an optional parameter, ``...`` a repeated
one), and it is quoted in arity errors so the user sees what the function expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

#: How the compiler calls ``impl``:
#: ``eager``  — ``impl(*values)``: arguments are evaluated first (most functions);
#: ``lazy``   — ``impl(scope, *thunks)``: each argument is a closure the function may skip
#:              (``if``, ``coalesce``, ``default``), which is what makes them short-circuit;
#: ``scoped`` — ``impl(scope, *values)``: needs the record's scope (``runtime``).
Kind = Literal["eager", "lazy", "scoped"]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One library function as the compiler sees it."""

    name: str
    signature: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number of arguments from min_args on
    kind: Kind = "eager"
    pattern_arg: int | None = None  # index of a regular-expression argument, compiled early
    flags_arg: int | None = None  # index of that pattern's flags argument

    def arity_text(self) -> str:
        """``'2 or 3 arguments'``-style text for error messages."""
        low, high = self.min_args, self.max_args
        if high is None:
            return f"at least {low} argument{'s' if low != 1 else ''}"
        if low == high:
            return f"{low} argument{'s' if low != 1 else ''}"
        if high == low + 1:
            return f"{low} or {high} arguments"
        return f"{low} to {high} arguments"


def fn(
    signature: str,
    impl: Callable[..., Any],
    *,
    kind: Kind = "eager",
    pattern_arg: int | None = None,
    flags_arg: int | None = None,
) -> FunctionSpec:
    """A :class:`FunctionSpec` whose name and arity are read from ``signature``."""
    name, _, rest = signature.partition("(")
    params = [p.strip() for p in rest.rstrip(")").split(",") if p.strip()]
    variadic = any(p.endswith("...") for p in params)
    required = [p for p in params if not p.endswith(("?", "..."))]
    return FunctionSpec(
        name=name,
        signature=signature,
        impl=impl,
        min_args=len(required) + (1 if variadic else 0),
        max_args=None if variadic else len(params),
        kind=kind,
        pattern_arg=pattern_arg,
        flags_arg=flags_arg,
    )
