"""The daemon's configuration (SPEC §8): frozen models, read once from TOML + ``FLOWD_…`` variables.

Use :func:`load_config` at the edge (``flowd serve``, ``flowd config check``, the client commands)
and pass the resulting :class:`FlowdConfig` down as a value; nothing else in flowd reads the file or
the environment. ``docs/configuration.md`` documents every key.

Modules: ``values`` (shared types, enums, located problems), ``sections`` (``[api]``, ``[log]``,
``[smtp]``, ``[webhooks]``), ``projects``, ``watches``, ``daemon`` (the whole file and its
cross-table checks), ``loader`` (TOML, environment, paths, messages), ``locate`` (line numbers).
"""

from flowd.config.daemon import FlowdConfig
from flowd.config.loader import load_config
from flowd.config.projects import ProjectConfig
from flowd.config.sections import ApiConfig, LogConfig, SmtpConfig, WebhooksConfig
from flowd.config.values import AfterAction, ConfigProblems, Executor, LogFormat, LogLevel
from flowd.config.watches import WatchConfig, WatchSettings, WebhookTarget
from flowd.errors import ConfigError

__all__ = [
    "AfterAction",
    "ApiConfig",
    "ConfigError",
    "ConfigProblems",
    "Executor",
    "FlowdConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "ProjectConfig",
    "SmtpConfig",
    "WatchConfig",
    "WatchSettings",
    "WebhookTarget",
    "WebhooksConfig",
    "load_config",
]
