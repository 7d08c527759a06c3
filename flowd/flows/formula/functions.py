"""The function library: every function a formula may call, by lower-case name.

The functions live in small modules by subject; this module only gathers them, so adding a
function means adding it to its module's ``FUNCTIONS`` tuple (and to ``docs/formula.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from flowd.flows.formula import (
    date_functions,
    layout_functions,
    list_functions,
    logic_functions,
    number_functions,
    regex_functions,
    text_functions,
)
from flowd.flows.formula.spec import FunctionSpec

_MODULES = (
    text_functions,
    regex_functions,
    layout_functions,
    list_functions,
    number_functions,
    date_functions,
    logic_functions,
)


def _gather() -> dict[str, FunctionSpec]:
    library: dict[str, FunctionSpec] = {}
    for module in _MODULES:
        for spec in module.FUNCTIONS:
            if spec.name in library:
                raise RuntimeError(f"formula function {spec.name!r} is defined twice")
            library[spec.name] = spec
    return library


#: Every library function by its lower-case name.
FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType(_gather())

#: The lower-case names of every library function.
FUNCTION_NAMES: frozenset[str] = frozenset(FUNCTIONS)
