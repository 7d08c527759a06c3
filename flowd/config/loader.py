"""Reading the configuration: one TOML file, then ``FLOWD_…`` variables over it (SPEC §8).

:func:`load_config` is the only place flowd reads its configuration. It

1. reads the file with :mod:`tomllib` (a syntax error becomes ``file:line:col: message``);
2. resolves every path-valued key of the file against the **file's folder** (SPEC §8), and every
   path-valued environment value against the **current directory** (where the variable was set);
3. lays the environment over the file (environment wins), key by key for tables;
4. validates the result as :class:`~flowd.config.daemon.FlowdConfig` and, when anything is wrong,
   raises one :class:`~flowd.errors.ConfigError` that lists **every** problem, one per line, each
   with where it came from: ``file:line: [watches][1].setings: unknown key …`` or
   ``FLOWD_API__PORT="abc": [api].port: …``.

Paths are resolved *before* the two sources are merged because afterwards nobody can tell a
relative path from the file from one from the environment; which keys are paths is read off the
models' annotations, so a new path key needs no change here.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import EnvSettingsSource, SettingsError

from flowd.config.daemon import FlowdConfig
from flowd.config.locate import KeyLines
from flowd.config.values import ENV_NESTED_DELIMITER, ENV_PREFIX, ConfigProblems, Loc, format_loc
from flowd.errors import ConfigError

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> FlowdConfig:
    """Read the configuration file at ``path`` with ``env`` (default: ``os.environ``) over it.

    Raises :class:`~flowd.errors.ConfigError` listing every problem found. Relative paths in the
    file are resolved against the file's folder, those in ``env`` against the current directory;
    every path in the result is absolute. Unknown top-level ``FLOWD_*`` variables are ignored
    (other tools share the prefix); ``FLOWD_<SECTION>__<KEY>`` with an unknown key is an error.
    """
    path = Path(path)
    environ = os.environ if env is None else env
    text = _read(path)
    raw = _parse(path, text)
    for name, field in FlowdConfig.model_fields.items():
        # Relative defaults (state_dir, data_root) mean what they would mean written in the file.
        if isinstance(field.default, Path) and not field.default.is_absolute():
            raw.setdefault(name, str(field.default))
    from_file = _resolve_paths(FlowdConfig, raw, path.absolute().parent)
    from_env, env_names = _read_env(path, environ)
    from_env = _resolve_paths(FlowdConfig, from_env, Path.cwd())
    try:
        return FlowdConfig.model_validate(_merge(from_file, from_env))
    except ValidationError as exc:
        describe = _Describer(str(path), KeyLines.scan(text), from_env, env_names, environ)
        raise ConfigError(str(path), list(describe.all(exc))) from None


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), [f"{path}: cannot read the configuration: {exc.strerror or exc}"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), [f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8"]
        ) from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        if where:
            line, col = where.groups()
            message = f"{path}:{line}:{col}: {message[: where.start()]}"
        else:  # "(at end of document)"
            message = f"{path}: {message}"
        raise ConfigError(str(path), [f"{message} (TOML syntax)"]) from None


# --- paths ------------------------------------------------------------------------------------


def _resolve_paths(model: type[BaseModel], data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of ``data`` with every path-valued key of ``model`` (nested ones too) made absolute
    against ``base``. Values of the wrong shape are left for validation to report."""
    out = dict(data)
    for name, field in model.model_fields.items():
        if name in out:
            out[name] = _resolve_value(field.annotation, out[name], base)
    return out


def _resolve_value(annotation: Any, value: Any, base: Path) -> Any:
    annotation = _unwrap(annotation)
    if annotation is Path:
        if isinstance(value, str) and value:
            return (base / Path(value).expanduser()).resolve()
        return value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _resolve_paths(annotation, value, base) if isinstance(value, dict) else value
    if get_origin(annotation) in (tuple, list) and isinstance(value, list):
        item = get_args(annotation)[0]
        return [_resolve_value(item, v, base) for v in value]
    return value


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, …]`` → ``X``; ``X | None`` → ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


# --- environment ------------------------------------------------------------------------------


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' own ``FLOWD_`` mapping, over an explicit mapping instead of os.environ.

    A value that is not valid JSON where JSON is expected (a list or a table) is passed on as the
    string it is, so that validation reports it *with the variable's name* instead of
    pydantic-settings raising a message that names neither the variable nor the value.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(FlowdConfig)
        self.env_vars = {name.lower(): value for name, value in environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


def _read_env(path: Path, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Loc, str]]:
    """The ``FLOWD_…`` values as a nested dict, and each variable's location → its name."""
    names: dict[Loc, str] = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX):
            names[tuple(name[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER))] = name
    try:
        return _EnvSource(environ)(), names
    except SettingsError as exc:  # not expected after decode_complex_value; kept as a clear error
        raise ConfigError(str(path), [f"environment: {exc}"]) from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: tables merge key by key, anything else (arrays too) is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --- messages ---------------------------------------------------------------------------------


class _Describer:
    """Turns pydantic's errors into one line per problem, each saying where it came from."""

    def __init__(
        self,
        file: str,
        lines: KeyLines,
        from_env: dict[str, Any],
        env_names: dict[Loc, str],
        environ: Mapping[str, str],
    ) -> None:
        self.file = file
        self.lines = lines
        self.from_env = from_env
        self.env_names = env_names
        self.environ = environ

    def all(self, exc: ValidationError) -> list[str]:
        """Every problem, environment variables first, then the file's in line order."""
        found: list[tuple[float, str]] = []
        for error in exc.errors():
            if error["type"] == "default_factory_not_called":
                continue  # a default computed from a key that is wrong: that key is reported
            loc: Loc = tuple(error["loc"])
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigProblems):
                found += [
                    self._line((*loc, *rel), message, None) for rel, message in cause.problems
                ]
            else:
                found.append(
                    self._line(loc, self._message(loc, error), _show(error), error["type"])
                )
        return [text for _, text in sorted(found, key=lambda item: item[0])]

    def _line(self, loc: Loc, message: str, shown: str | None, kind: str = "") -> tuple[float, str]:
        """``(sort order, text)`` of one problem."""
        key = format_loc(loc)
        variable = self._variable(loc)
        if variable is not None:
            where = f"{variable}={json.dumps(self.environ[variable])}"
            if kind in _CONTAINER_TYPES:  # arrays and tables come from the environment as JSON
                whole = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in loc)
                message = f"{message}, written as JSON: {whole}='{_JSON_EXAMPLE[kind]}'"
            return -1.0, f"{where}: {key}: {message}" if key else f"{where}: {message}"
        line = self.lines.line_of(loc)
        where = f"{self.file}:{line}" if line is not None else self.file
        if shown is not None and key:
            key = f"{key} = {shown}"
        order = float(line) if line is not None else float("inf")
        return order, f"{where}: {key}: {message}" if key else f"{where}: {message}"

    def _variable(self, loc: Loc) -> str | None:
        """The ``FLOWD_…`` variable that supplied the value at ``loc``, if one did."""
        node: Any = self.from_env
        depth = 0
        for part in loc:
            if not isinstance(node, dict):
                break  # inside a value the environment gave whole (a JSON list, say)
            if part not in node:
                return None  # the value at loc came from the file (or a default)
            node = node[part]
            depth += 1
        path = tuple(str(p) for p in loc)
        for end in range(depth, 0, -1):
            name = self.env_names.get(path[:end])
            if name is not None:
                return name
        # The environment gave something *below* loc (FLOWD_PROJECTS__0__ROOT for an array).
        return next((n for at, n in self.env_names.items() if at[: len(path)] == path), None)

    @staticmethod
    def _message(loc: Loc, error: ErrorDetails) -> str:
        kind = error["type"]
        if kind == "missing":
            return "missing (required)"
        if kind == "extra_forbidden":
            return "unknown key" + _suggest(loc)
        if kind in _CONTAINER_TYPES:
            return _CONTAINER_TYPES[kind]
        message = error["msg"]
        return message.removeprefix("Value error, ")


# pydantic's words for a value of the wrong shape, in TOML's words.
_CONTAINER_TYPES = {
    "tuple_type": "must be an array",
    "list_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
}
_JSON_EXAMPLE = {
    "tuple_type": "[…]",
    "list_type": "[…]",
    "dict_type": '{"key": …}',
    "model_type": '{"key": …}',
}


def _show(error: ErrorDetails) -> str | None:
    """The offending value as TOML would spell it, or ``None`` where showing it does not help."""
    value = error.get("input")
    if error["type"] in ("missing", "extra_forbidden") or isinstance(value, dict):
        return None
    if isinstance(value, Path):
        value = str(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(loc: Loc) -> str:
    """`` (did you mean 'settings'?)`` for a near miss, else the keys that are allowed there."""
    model = _model_at(loc[:-1])
    if model is None or not loc or not isinstance(loc[-1], str):
        return ""
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1].lower(), allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed: {', '.join(allowed)})"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose fields are valid at ``loc`` (``()`` is the whole file)."""
    current: Any = FlowdConfig
    for part in loc:
        if isinstance(part, int):
            args = get_args(current)
            current = _unwrap(args[0]) if args else None
        elif (
            isinstance(current, type)
            and issubclass(current, BaseModel)
            and part in current.model_fields
        ):
            current = _unwrap(current.model_fields[part].annotation)
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
