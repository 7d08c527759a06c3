"""The values of notifications: a stored message, its states, a delivery's result, the seed's body.

These are frozen values that cross between the outbox (storage), the senders (webhook, e-mail) and
the dispatcher (policy); none of them does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from flowd.errors import NotificationError


class MessageKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class MessageState(StrEnum):
    """Where a stored message is. Only ``PENDING`` moves; the other three are final.

    ``PENDING``: to be delivered at ``next_attempt_at``. ``SENT``: acknowledged (a 2xx answer, an
    SMTP server that accepted it) — never delivered again. ``FAILED``: tried and given up (retries
    used up, or a permanent refusal). ``NOT_SENT``: never tried, for a recorded reason (no SMTP
    server configured, a host not in ``allowed_hosts``, unusable settings).
    """

    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    NOT_SENT = "NOT_SENT"


class Outcome(StrEnum):
    """What one delivery attempt came to; the dispatcher turns it into the message's next state."""

    ACKNOWLEDGED = "ACKNOWLEDGED"  # → SENT
    RETRY = "RETRY"  # a failure that may pass (5xx, 3xx, timeout, refused connection) → backoff
    GIVE_UP = "GIVE_UP"  # tried, and a retry cannot help (an SMTP 5xx refusal) → FAILED
    NOT_SENT = "NOT_SENT"  # not tried at all, and never will be → NOT_SENT


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    detail: str = ""  # why it failed or was not sent; "" on success
    status_code: int | None = None  # the HTTP status, for webhooks that got an answer


@dataclass(frozen=True)
class OutboxMessage:
    """One stored notification (a row of the ``outbox`` table)."""

    message_id: int
    job_id: str
    round: int
    kind: MessageKind
    target: str  # the URL, or the recipients joined by ","
    payload_json: str  # the exact body that is sent (and signed): stable across retries
    headers: Mapping[str, str]
    state: MessageState
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    sent_at: float | None

    @property
    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.payload_json)
        return body

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(r for r in self.target.split(",") if r)


def job_end_body(
    job_id: str,
    status: str,
    msg: str | None,
    binary_path: str | None,
    input_dir: str | None,
    output: str | None,
) -> dict[str, str]:
    """The seed's webhook body, in the seed's key order: ``msg`` only when ``status`` is ERROR.

    Absent paths become ``""``: the seed types every field as a string, and a receiver written for
    it may not expect ``null``.
    """
    if status not in ("OK", "ERROR"):
        raise ValueError(f"status must be 'OK' or 'ERROR', not {status!r}")
    body = {"status": status}
    if status == "ERROR":
        body["msg"] = msg or "the job failed"
    body.update(
        job_id=job_id, binary_path=binary_path or "", input_dir=input_dir or "", output=output or ""
    )
    return body


def webhook_target(webhook_config: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The URL and headers of a job's ``webhook_config``; :class:`NotificationError` if unusable.

    ``headers`` may be a JSON object or a string holding one (the seed calls it a string).
    """
    url = webhook_config.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise NotificationError(f"webhook_config.url must be an http(s) URL, not {url!r}")
    if not urlsplit(url).hostname:
        raise NotificationError(f"webhook_config.url has no host: {url!r}")
    headers = webhook_config.get("headers") or {}
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except ValueError as exc:
            raise NotificationError(f"webhook_config.headers is not JSON: {exc}") from exc
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
        for k, v in headers.items()
    ):
        raise NotificationError("webhook_config.headers must map header names to one-line strings")
    return url, dict(headers)


def email_target(notification_emails: Sequence[str]) -> str:
    """The recipients, de-duplicated in order and joined by ``,``; :class:`NotificationError` for
    anything that is not a list of addresses."""
    if isinstance(notification_emails, str) or not all(
        isinstance(a, str) and "@" in a and not any(c in a for c in ",\r\n \t")
        for a in notification_emails
    ):
        raise NotificationError("notification_emails must be a list of e-mail addresses")
    return ",".join(dict.fromkeys(a.strip() for a in notification_emails))
