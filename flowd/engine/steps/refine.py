"""``apply_refiner``: evaluate a refiner program's fields on each record (SPEC §2.2).

Fields run in order and see the earlier ones. A field that fails gets the value ``"ERROR"`` and an
``error_msg``; the other fields still run. Values are coerced to the field's type; a coercion
failure is a field error too. ``null`` stays ``null`` whatever the type (a missing value is empty,
not wrong).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from flowd.engine.records import FieldValue, Record, RecordStatus, merge_fields
from flowd.engine.steps.scope import record_scope
from flowd.errors import FormulaRuntimeError
from flowd.flows.formula import Scope, compile_formula
from flowd.flows.specs import RefinerSpec

ERROR = "ERROR"


class CoercionError(ValueError):
    pass


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(_TO_NUMBER.evaluate(Scope(fields={"v": value})))
        except FormulaRuntimeError as exc:
            raise CoercionError(f"cannot make FLOAT of {value!r}: {exc.message}") from None
    return _fail(value, "FLOAT")


def _to_int(value: Any) -> int:
    try:
        number = _to_float(value)
    except CoercionError:
        raise CoercionError(f"cannot make INT of {value!r}") from None
    if number != int(number):
        raise CoercionError(f"{value!r} is not a whole number")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    return _fail(value, "BOOL")


def _to_date(value: Any) -> str:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
        try:
            return str(_TO_DATE.evaluate(Scope(fields={"v": value})))
        except FormulaRuntimeError as exc:
            raise CoercionError(f"cannot make DATE of {value!r}: {exc.message}") from None
    return _fail(value, "DATE")


def _to_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return _fail(value, "TEXT")
    if isinstance(value, bool):
        return "true" if value else "false"  # as the formula language writes them
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else _fail(value, "LIST")


def _to_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _fail(value, "DICT")


def _fail(value: Any, type_name: str) -> NoReturn:
    raise CoercionError(f"cannot make {type_name} of {value!r}")


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

COERCE: Mapping[str, Callable[[Any], Any]] = {
    "ANY": lambda v: v,
    "TEXT": _to_text,
    "INT": _to_int,
    "FLOAT": _to_float,
    "BOOL": _to_bool,
    "DATE": _to_date,
    "LIST": _to_list,
    "DICT": _to_dict,
}


# The library's own parsers, so a TEXT "1.234,50" coerces to FLOAT exactly as to_number reads it.
_TO_NUMBER = compile_formula("to_number(v)", names=("v",))
_TO_DATE = compile_formula("to_date(v)", names=("v",))


def refine_record(program: RefinerSpec, rec: Record, runtime_config: Mapping[str, Any]) -> Record:
    scope = record_scope(rec, runtime_config)
    values: list[FieldValue] = []
    for field in program.fields:
        try:
            value = field.formula.evaluate(scope)
            if value is not None:
                value = COERCE[field.type](value)
            result = FieldValue(field.name, value, field.type)
        except FormulaRuntimeError as exc:
            result = FieldValue(field.name, ERROR, field.type, exc.message)
        except CoercionError as exc:
            result = FieldValue(field.name, ERROR, field.type, str(exc))
        except RecursionError:
            result = FieldValue(field.name, ERROR, field.type, "formula nested too deeply")
        scope.fields[field.name] = result.value
        values.append(result)
    return rec.evolve(fields=merge_fields(rec.fields, values))


def apply_refiner(
    program: RefinerSpec, records: list[Record], runtime_config: Mapping[str, Any]
) -> list[Record]:
    return [
        refine_record(program, r, runtime_config) if r.status is RecordStatus.OK else r
        for r in records
    ]
