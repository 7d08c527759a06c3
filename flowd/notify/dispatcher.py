"""Deliver what the outbox says is due, once each, and record every result (SPEC §7 Notifications).

The dispatcher holds no thread and never sleeps: something else (APScheduler in the daemon, a test
with times it picks) calls :meth:`Dispatcher.run_due` and may ask :meth:`Outbox.next_due_at` when
to call again. The outbox is the single source of truth, so a timer lost in a restart costs
nothing: the next call finds the message due.

Retry policy (webhooks and e-mails alike): after failed attempt ``n``, retry ``n`` waits
``[webhooks] backoff_s[n-1]`` ±10 %; after ``max_retries`` retries the message is ``FAILED``.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Callable
from pathlib import Path

import requests
import structlog

from flowd.config.sections import SmtpConfig, WebhooksConfig
from flowd.errors import NotificationError
from flowd.jobs.backoff import Rng, scheduled_backoff_s
from flowd.notify.email import SMTP_TIMEOUT_S, send_email
from flowd.notify.messages import DeliveryResult, MessageKind, OutboxMessage, Outcome
from flowd.notify.outbox import Outbox
from flowd.notify.webhook import deliver_webhook

__all__ = ["JITTER", "Dispatcher", "read_secret"]

log = structlog.get_logger("flowd.notify")

JITTER = 0.1  # ±10 % on every wait (SPEC §8): receivers that failed together are not hit together

_LEASE_FACTOR = 10
"""A claimed message is not claimed again for ``_LEASE_FACTOR × the longest timeout``: longer than
any one delivery can take (connect + read, or an SMTP conversation), so two dispatchers never send
it at once; short enough that a dispatcher that died mid-delivery delays it only minutes."""


def read_secret(path: Path | None) -> bytes | None:
    """The webhook signing key from ``[webhooks] secret_file``: its bytes, trailing whitespace
    stripped; a Standard Webhooks ``whsec_<base64>`` secret is decoded to its key bytes."""
    if path is None:
        return None
    raw = path.read_bytes().strip()
    if not raw:
        raise NotificationError(f"{path}: the webhook secret file is empty")
    if raw.startswith(b"whsec_"):
        try:
            return base64.b64decode(raw[len(b"whsec_") :], validate=True)
        except binascii.Error as exc:
            raise NotificationError(f"{path}: whsec_ secret is not base64: {exc}") from exc
    return raw


class Dispatcher:
    """Delivers due outbox messages through the webhook and e-mail senders."""

    def __init__(
        self,
        outbox: Outbox,
        webhooks: WebhooksConfig,
        smtp: SmtpConfig,
        secret: bytes | None,
        clock: Callable[[], float] = time.time,
        *,
        smtp_password: str | None = None,
        session: requests.Session | None = None,
        rng: Rng = random.random,
    ) -> None:
        self.outbox = outbox
        self.webhooks = webhooks
        self.smtp = smtp
        self._secret = secret
        self._clock = clock
        self._smtp_password = smtp_password
        self._own_session = session is None
        self._session = session or requests.Session()
        self._rng = rng
        self.lease_s = _LEASE_FACTOR * max(webhooks.timeout_s, SMTP_TIMEOUT_S)

    @classmethod
    def from_config(
        cls,
        outbox: Outbox,
        webhooks: WebhooksConfig,
        smtp: SmtpConfig,
        clock: Callable[[], float] = time.time,
    ) -> Dispatcher:
        """A dispatcher with the secret and SMTP password read from their configured files."""
        password = None
        if smtp.password_file is not None:
            password = smtp.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        secret = read_secret(webhooks.secret_file)
        return cls(outbox, webhooks, smtp, secret, clock, smtp_password=password)

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def run_due(self, now: float | None = None) -> int:
        """Deliver every message due at ``now`` (default: the clock) once; return how many.

        Messages are claimed one at a time, so the lease of each starts when it is delivered.
        """
        now = self._clock() if now is None else now
        seen: set[int] = set()
        while claimed := self.outbox.claim_due(now, self.lease_s, limit=1):
            message = claimed[0]
            if message.message_id in seen:  # retried with no wait: leave it for the next call
                break
            seen.add(message.message_id)
            self._record(message, self._deliver(message, now), now)
        return len(seen)

    def _deliver(self, message: OutboxMessage, now: float) -> DeliveryResult:
        try:
            if message.kind is MessageKind.WEBHOOK:
                return deliver_webhook(message, self.webhooks, self._secret, self._session, now)
            return send_email(message, self.smtp, self._smtp_password)
        except Exception as exc:  # a bug in a sender must not stop the others' deliveries
            log.exception("notification_crashed", message_id=message.message_id)
            return DeliveryResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}")

    def _record(self, message: OutboxMessage, result: DeliveryResult, now: float) -> None:
        context = {
            "message_id": message.message_id,
            "job_id": message.job_id,
            "kind": str(message.kind),
            "attempt": message.attempts + 1,
        }
        if result.outcome is Outcome.ACKNOWLEDGED:
            self.outbox.mark_sent(message.message_id, now)
            log.info("notification_sent", status_code=result.status_code, **context)
        elif result.outcome is Outcome.NOT_SENT:
            self.outbox.mark_not_sent(message.message_id, result.detail)
            log.warning("notification_not_sent", reason=result.detail, **context)
        else:
            wait_s = None
            if result.outcome is Outcome.RETRY:
                retry = message.attempts + 1  # the retry that follows this failed attempt
                waits = self.webhooks.backoff_s[: self.webhooks.max_retries]
                wait_s = scheduled_backoff_s(retry, waits, JITTER, self._rng)
            if wait_s is None:
                self.outbox.mark_failed(message.message_id, result.detail)
                log.warning("notification_failed", error=result.detail, **context)
            else:
                self.outbox.mark_retry(message.message_id, now + wait_s, result.detail)
                log.info("notification_retry", error=result.detail, wait_s=wait_s, **context)
