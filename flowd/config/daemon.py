"""The whole configuration file: :class:`FlowdConfig` and the checks that span its tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowd.config.projects import ProjectConfig
from flowd.config.sections import ApiConfig, LogConfig, SmtpConfig, WebhooksConfig
from flowd.config.values import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    ConfigPath,
    ConfigProblems,
    Executor,
    Loc,
    PositiveFloat,
)
from flowd.config.watches import WatchConfig


def _duplicates(items: Sequence[ProjectConfig | WatchConfig]) -> list[tuple[Loc, str]]:
    """Names are how watches, logs, ``flowd status`` and reloads refer to entries: unique."""
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for i, item in enumerate(items):
        if item.name in first:
            message = f"duplicate name {item.name!r} (first used at index {first[item.name]})"
            problems.append(((i, "name"), message))
        first.setdefault(item.name, i)
    return problems


class FlowdConfig(BaseSettings):
    """The daemon's whole configuration (SPEC §8), one frozen value passed down from the edge.

    It is a pydantic-settings class so that ``FLOWD_…`` variables map onto its keys (prefix
    ``FLOWD_``, nested sections with ``__``); but constructing it reads *nothing* from the process
    environment — :func:`flowd.config.load_config` applies the environment explicitly, so no code
    deep inside flowd can pick up a setting behind the config's back.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    state_dir: ConfigPath = Path("var/state")
    data_root: ConfigPath = Path("var")
    allowed_roots: tuple[ConfigPath, ...] = ()
    workers: Annotated[int, Field(ge=0)] = 0  # 0 = CPU count
    executor: Executor = Executor.LOCAL
    dask_scheduler: Annotated[str, Field(validate_default=True)] = ""
    default_step_timeout_s: PositiveFloat = 300.0
    max_attempts: Annotated[int, Field(ge=1)] = 3
    udf_roots: tuple[ConfigPath, ...] = ()
    api: ApiConfig = ApiConfig()
    log: LogConfig = LogConfig()
    smtp: SmtpConfig = SmtpConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    projects: tuple[ProjectConfig, ...] = ()
    watches: tuple[WatchConfig, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: the environment is applied by the loader, explicitly (see class doc)."""
        return (init_settings,)

    # The checks below span keys; each runs as soon as the keys it needs are valid (fields are
    # validated in the order written here), so they are reported together with other mistakes.

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_for_dask(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("executor") is Executor.DASK and "://" not in value:
            raise ValueError('executor = "dask" needs dask_scheduler = "tcp://host:8786"')
        return value

    @field_validator("projects")
    @classmethod
    def _projects_apart(cls, projects: tuple[ProjectConfig, ...]) -> tuple[ProjectConfig, ...]:
        problems = _duplicates(projects)
        # Two projects compiling into one file would replace each other's binary on every change.
        owners: dict[Path, str] = {}
        for i, project in enumerate(projects):
            other = owners.setdefault(project.binary_file, project.name)
            if other != project.name:
                message = f"{project.name!r} and {other!r} would both write {project.binary_file}"
                problems.append(((i, "binary_path"), message))
        if problems:
            raise ConfigProblems(problems)
        return projects

    @field_validator("watches")
    @classmethod
    def _watches_apart(
        cls, watches: tuple[WatchConfig, ...], info: ValidationInfo
    ) -> tuple[WatchConfig, ...]:
        """Names unique, each project configured, each inbox watched once, webhook hosts allowed."""
        problems = _duplicates(watches)
        projects: tuple[ProjectConfig, ...] | None = info.data.get("projects")
        webhooks: WebhooksConfig | None = info.data.get("webhooks")
        inboxes: dict[Path, str] = {}
        for i, watch in enumerate(watches):
            if projects is not None and watch.project is not None:
                names = [p.name for p in projects]
                if watch.project not in names:
                    known = ", ".join(names) or "none configured"
                    message = f"{watch.project!r} is not a [[projects]] name ({known})"
                    problems.append(((i, "project"), message))
            # Two watches on one folder would race for every file in it.
            other = inboxes.setdefault(watch.input_dir, watch.name)
            if other != watch.name:
                message = f"{watch.input_dir} is already watched by {other!r}"
                problems.append(((i, "input_dir"), message))
            hook = watch.settings.webhook_config
            if webhooks is not None and hook is not None and not webhooks.allows(hook.url):
                message = f"the host of {hook.url!r} is not in [webhooks].allowed_hosts"
                problems.append(((i, "settings", "webhook_config", "url"), message))
        if problems:
            raise ConfigProblems(problems)
        return watches

    def project_named(self, name: str) -> ProjectConfig:
        """The ``[[projects]]`` entry called ``name`` (``KeyError`` if there is none)."""
        for project in self.projects:
            if project.name == name:
                return project
        raise KeyError(name)

    def binary_for(self, watch: WatchConfig) -> Path:
        """The binary a watch runs: its own ``binary_path`` or its project's binary."""
        if watch.binary_path is not None:
            return watch.binary_path
        assert watch.project is not None  # the watch's validator guarantees one of the two
        return self.project_named(watch.project).binary_file
