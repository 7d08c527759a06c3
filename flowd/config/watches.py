"""``[[watches]]``: inbox folders, and the run settings each batch taken from one gets."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from flowd.config.values import (
    MAX_TAGS_CHARS,
    AfterAction,
    ConfigPath,
    ConfigProblems,
    Email,
    Loc,
    Name,
    NonEmptyStr,
    OptionalPath,
    Section,
    empty_is_none,
)


class WebhookTarget(Section):
    """A run's ``webhook_config``: where to POST when the run ends, with extra headers.

    ``headers`` may also be given as a JSON string of an object, as the seed documents it.
    """

    url: str
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _headers_as_json(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("headers"), str):
            try:
                return {**data, "headers": json.loads(data["headers"])}
            except json.JSONDecodeError as exc:
                raise ConfigProblems([(("headers",), f"is not a JSON object: {exc}")]) from None
        return data

    @model_validator(mode="after")
    def _http_url(self) -> WebhookTarget:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigProblems([(("url",), f"{self.url!r} is not an http:// or https:// URL")])
        return self


class WatchSettings(Section):
    """A watch's run settings: SPEC §5.2's, with the defaults of watched folders.

    Unlike the API's defaults, ``output_has_run_id`` is on (each batch gets its own folder) and
    ``priority`` is 5. ``job_id`` cannot be set: every batch is a new job, and job ids are unique.
    """

    output_has_run_id: bool = True
    delete_out_dir: bool = False
    log_to_timeline: bool = False
    save_binary_to_output: bool = True
    notification_emails: tuple[Email, ...] = ()
    tags: tuple[NonEmptyStr, ...] = ()
    step_timeout: Annotated[int, Field(ge=-1)] = 0  # 0 = default_step_timeout_s, -1 = none
    pipeline_ids: tuple[
        Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)], ...
    ] = ()
    webhook_config: WebhookTarget | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=0, le=9)] = 5

    @model_validator(mode="before")
    @classmethod
    def _no_job_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "job_id" in data:
            message = "cannot be set for a watch: every batch is a new job with its own id"
            raise ConfigProblems([(("job_id",), message)])
        return data

    @model_validator(mode="after")
    def _checks(self) -> WatchSettings:
        problems = _runtime_config_problems(self.runtime_config)
        total = sum(len(t) for t in self.tags)
        if total > MAX_TAGS_CHARS:
            message = f"are {total} characters together; at most {MAX_TAGS_CHARS} are allowed"
            problems.append((("tags",), message))
        if problems:
            raise ConfigProblems(problems)
        return self


def _runtime_config_problems(config: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """The checks of SPEC §5.3 that need no binary: ``log_prefix`` is a string and
    ``modify_output_schema`` a JSON object (or a string holding one). Its formulas and field names
    are checked against the binary when a run is submitted."""
    problems: list[tuple[Loc, str]] = []
    prefix = config.get("log_prefix")
    if prefix is not None and not isinstance(prefix, str):
        problems.append((("runtime_config", "log_prefix"), "must be a string"))
    schema = config.get("modify_output_schema")
    where: Loc = ("runtime_config", "modify_output_schema")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            return [*problems, (where, f"is not valid JSON: {exc}")]
    if schema is not None and not isinstance(schema, dict):
        problems.append((where, "must be a JSON object (or a string holding one)"))
    return problems


def _default_output_dir(data: dict[str, Any]) -> Path:
    """SPEC §5.1's default, ``input_dir/../out``, taken from the *watch's* folder (the run's own
    input is a spool folder under ``input_dir/.flowd/``, whose ``../out`` would be inside the inbox).

    pydantic calls this only once ``input_dir`` is valid."""
    input_dir: Path = data["input_dir"]
    return Path(os.path.normpath(input_dir / ".." / "out"))


def _at_least_one(patterns: tuple[str, ...]) -> tuple[str, ...]:
    if not patterns:
        raise ValueError('needs at least one pattern ("*" takes every file)')
    return patterns


class WatchConfig(Section):
    """One ``[[watches]]`` table: an inbox folder whose files are run through a binary.

    The binary is either a configured project's (``project``) or a fixed ``.ibflowbin``
    (``binary_path``) — exactly one of them.
    """

    name: Name
    input_dir: ConfigPath
    project: Annotated[str | None, BeforeValidator(empty_is_none)] = None
    binary_path: OptionalPath = None
    output_dir: ConfigPath = Field(default_factory=_default_output_dir)
    patterns: Annotated[tuple[NonEmptyStr, ...], AfterValidator(_at_least_one)] = ("*",)
    ignore: tuple[NonEmptyStr, ...] = ()
    recursive: bool = False
    polling: bool = False
    settle_s: Annotated[float, Field(ge=0)] = 2.0
    batch_window_s: Annotated[float, Field(ge=0)] = 1.0
    max_batch: Annotated[int, Field(ge=1)] = 500
    after: AfterAction = AfterAction.ARCHIVE
    settings: WatchSettings = WatchSettings()

    @model_validator(mode="after")
    def _checks(self) -> WatchConfig:
        problems: list[tuple[Loc, str]] = []
        if self.project is not None and self.binary_path is not None:
            problems.append((("project",), "set exactly one of project and binary_path, not both"))
        elif self.project is None and self.binary_path is None:
            message = 'needs project = "<a [[projects]] name>" or binary_path = "<file>.ibflowbin"'
            problems.append(((), message))
        if self.binary_path is not None and self.binary_path.suffix != ".ibflowbin":
            message = f"{str(self.binary_path)!r} is not a .ibflowbin file"
            problems.append((("binary_path",), message))
        if self.output_dir.is_relative_to(self.input_dir):  # equal counts too
            # Results written into the inbox would be picked up as new input, forever.
            message = "must not be input_dir or inside it (results would be taken as new input)"
            problems.append((("output_dir",), message))
        if problems:
            raise ConfigProblems(problems)
        return self
