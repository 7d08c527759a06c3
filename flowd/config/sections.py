"""The daemon-wide tables of the configuration: ``[api]``, ``[log]``, ``[smtp]``, ``[webhooks]``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, model_validator

from flowd.config.values import (
    ConfigProblems,
    Email,
    Host,
    LogFormat,
    LogLevel,
    NonEmptyStr,
    OptionalPath,
    Port,
    PositiveFloat,
    Section,
)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class ApiConfig(Section):
    """``[api]``: where the HTTP API listens and whom it lets in."""

    host: NonEmptyStr = "127.0.0.1"  # loopback by default (SPEC §8, Security)
    port: Port = 8765
    tokens_file: OptionalPath = None  # None: use (and create) state_dir/api-token
    max_request_mb: PositiveFloat = 50.0


class LogConfig(Section):
    """``[log]``: the renderer and the threshold; level names are case-insensitive."""

    format: LogFormat = LogFormat.AUTO
    level: Annotated[LogLevel, BeforeValidator(_lower)] = LogLevel.INFO


class SmtpConfig(Section):
    """``[smtp]``: the server ``notification_emails`` go through; ``host = ""`` sends none."""

    host: str = ""
    port: Port = 25
    sender: Email = "flowd@localhost"
    starttls: bool = False
    username: str = ""
    password_file: OptionalPath = None

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpConfig:
        # A username without a password (or the reverse) fails at the first mail, hours later.
        if bool(self.username) != (self.password_file is not None):
            missing = "password_file" if self.username else "username"
            message = "username and password_file go together; set both or neither"
            raise ConfigProblems([((missing,), message)])
        return self


WEBHOOK_BACKOFF_S = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)


class WebhooksConfig(Section):
    """``[webhooks]``: delivery policy for every job's webhook.

    ``backoff_s[i]`` is the wait before retry ``i + 1``, so it needs at least ``max_retries``
    entries; further entries are ignored (lowering ``max_retries`` alone stays valid).
    """

    secret_file: OptionalPath = None  # None: requests are not signed
    max_retries: Annotated[int, Field(ge=0)] = 7
    backoff_s: tuple[PositiveFloat, ...] = WEBHOOK_BACKOFF_S
    timeout_s: PositiveFloat = 10.0
    allowed_hosts: tuple[Host, ...] = ()  # empty: any host

    @model_validator(mode="after")
    def _enough_waits(self) -> WebhooksConfig:
        if len(self.backoff_s) < self.max_retries:
            message = (
                f"has {len(self.backoff_s)} waits but max_retries = {self.max_retries} needs one "
                "per retry (backoff_s[i] is the wait before retry i+1)"
            )
            raise ConfigProblems([(("backoff_s",), message)])
        return self

    def allows(self, url: str) -> bool:
        """Whether a webhook may be sent to ``url`` (any host when ``allowed_hosts`` is empty)."""
        host = (urlsplit(url).hostname or "").lower()
        return not self.allowed_hosts or host in self.allowed_hosts
