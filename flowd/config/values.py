"""Shared pieces of the configuration models: value types, enums, and located problems.

Every model forbids unknown keys (``extra="forbid"``): a misspelt key would otherwise be silently
ignored and its default used, the classic way a daemon ends up running with a setting its operator
believes is off. Every model is frozen: the configuration is one value, read once and passed down.

Problems that involve several keys are raised as :class:`ConfigProblems`, which carry the location
of each problem *relative to the model that found it*; the loader prefixes the model's own location,
so a user reads ``[watches][1].project: …`` and not a bare message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

Loc = tuple[str | int, ...]

ENV_PREFIX = "FLOWD_"
ENV_NESTED_DELIMITER = "__"
MAX_TAGS_CHARS = 500  # SPEC §5.2: tags are at most 500 characters together
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class ConfigProblems(ValueError):
    """One or more problems, each at a location relative to the model that raised it.

    A ``ValueError`` so pydantic reports it as a validation error (and keeps the instance in the
    error's context, where the loader finds the locations again).
    """

    def __init__(self, problems: Iterable[tuple[Loc, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in self.problems)
        )


def format_loc(loc: Sequence[str | int]) -> str:
    """``('watches', 1, 'settings', 'priority')`` → ``[watches][1].settings.priority``.

    The first segment is bracketed when it names a table (``[api].port``); array indexes are
    0-based, as written in ``[watches][1]`` (the second ``[[watches]]`` table).
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) or (i == 0 and len(loc) > 1):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --- small value types ------------------------------------------------------------------------


def empty_is_none(value: object) -> object:
    """``""`` means "not set": SPEC §8 writes ``tokens_file = ""`` for "none"."""
    return None if value == "" else value


def _not_empty(value: object) -> object:
    # pydantic would turn "" into Path("."), the current folder: surely not what was meant.
    if value == "":
        raise ValueError("must not be empty")
    return value


def _check_name(value: str) -> str:
    if not value or len(value) > 50 or not set(value) <= NAME_CHARS:
        raise ValueError("use 1-50 characters of A-Z a-z 0-9 . _ -")
    return value


def _check_relative(value: str | None) -> str | None:
    if value is None:
        return None
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        raise ValueError("must be relative to the project's root")
    return value


def _check_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in value):
        raise ValueError("is not an e-mail address (name@domain)")
    return value


def _check_host(value: str) -> str:
    if any(c in value for c in "/@ \t") or "://" in value:
        raise ValueError(
            "must be a bare host name such as hooks.example.com (no scheme, path or user)"
        )
    return value.lower()


ConfigPath = Annotated[Path, BeforeValidator(_not_empty)]
OptionalPath = Annotated[Path | None, BeforeValidator(empty_is_none)]
Name = Annotated[str, AfterValidator(_check_name)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
RootRelative = Annotated[
    str | None, BeforeValidator(empty_is_none), AfterValidator(_check_relative)
]
Email = Annotated[str, AfterValidator(_check_email)]
Host = Annotated[str, AfterValidator(_check_host)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
"""A TCP port; 0 (for [api]) asks the system for a free one — the daemon writes the one it got to
state_dir/daemon.json."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Executor(StrEnum):
    LOCAL = "local"
    DASK = "dask"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"  # json unless stderr is a terminal


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AfterAction(StrEnum):
    ARCHIVE = "archive"  # move to .flowd/done/<run_id>/
    DELETE = "delete"
    KEEP = "keep"  # put back in the inbox; its content hash is remembered: never run twice
