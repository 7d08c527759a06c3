"""``runtime_config.modify_output_schema`` (SPEC §5.3): add, then remove, then rename fields.

Parsed and checked once, when a run is submitted — bad JSON, a bad formula, or a rename onto an
existing name is a :class:`~flowd.errors.RunSettingsError` before anything runs — and applied to
each record's final fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from flowd.engine.records import FieldValue
from flowd.errors import FormulaError, FormulaRuntimeError, RunSettingsError
from flowd.flows.formula import Formula, Scope, compile_formula

_KEYS = {"add_fields", "remove_fields", "rename_fields"}


@dataclass(frozen=True)
class SchemaChange:
    add: tuple[tuple[str, Formula], ...]
    remove: frozenset[str]
    rename: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, raw: Any, known_fields: Iterable[str]) -> SchemaChange:
        """Read a JSON string (or object) as given in ``runtime_config``; check it against the
        fields the binary produces (``known_fields``)."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise RunSettingsError(f"modify_output_schema is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise RunSettingsError(
                "modify_output_schema must be a JSON object (or a string of one)"
            )
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise RunSettingsError(
                f"modify_output_schema: unknown key {unknown[0]!r} "
                "(expected add_fields, remove_fields, rename_fields)"
            )
        fields = list(dict.fromkeys(known_fields))
        add: list[tuple[str, Formula]] = []
        for i, item in enumerate(_list(raw.get("add_fields", []), "add_fields")):
            if not isinstance(item, dict) or set(item) != {"name", "formula"}:
                raise RunSettingsError(
                    f"modify_output_schema.add_fields[{i}] must be an object with name and formula"
                )
            name, text = item["name"], item["formula"]
            if not isinstance(name, str) or not name or not isinstance(text, str):
                raise RunSettingsError(
                    f"modify_output_schema.add_fields[{i}]: name and formula must be strings"
                )
            try:
                formula = compile_formula(text, names=tuple(fields))
            except FormulaError as exc:
                raise RunSettingsError(
                    f"modify_output_schema.add_fields[{i}] ({name}): {exc.message} "
                    f"at line {exc.line}, column {exc.col}"
                ) from None
            add.append((name, formula))
            fields.append(name)
        remove = _list(raw.get("remove_fields", []), "remove_fields")
        if not all(isinstance(n, str) for n in remove):
            raise RunSettingsError("modify_output_schema.remove_fields must be a list of names")
        fields = [f for f in fields if f not in set(remove)]
        rename_raw = raw.get("rename_fields", {})
        if not isinstance(rename_raw, dict) or not all(
            isinstance(v, str) and v for v in rename_raw.values()
        ):
            raise RunSettingsError("modify_output_schema.rename_fields must map names to new names")
        after = [rename_raw.get(f, f) for f in fields]
        for old, new in rename_raw.items():
            if new != old and (new in fields or after.count(new) > 1):
                raise RunSettingsError(
                    f"modify_output_schema.rename_fields: cannot rename {old!r} to {new!r}, "
                    "a field of that name already exists"
                )
        return cls(tuple(add), frozenset(remove), tuple(rename_raw.items()))

    def apply(self, fields: tuple[FieldValue, ...], scope: Scope) -> tuple[FieldValue, ...]:
        """The changed fields; ``scope`` carries the record's text and context."""
        out = list(fields)
        scope.fields = {f.key: f.value for f in out}
        for name, formula in self.add:
            try:
                value = formula.evaluate(scope)
                added = FieldValue(name, value, "ANY")
            except FormulaRuntimeError as exc:
                added = FieldValue(name, "ERROR", "ANY", exc.message)
            scope.fields[name] = added.value
            out = [f for f in out if f.key != name]
            out.append(added)
        renames = dict(self.rename)
        return tuple(
            replace(f, key=renames.get(f.key, f.key)) for f in out if f.key not in self.remove
        )


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise RunSettingsError(f"modify_output_schema.{key} must be a list")
    return value
