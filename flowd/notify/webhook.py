"""Deliver one webhook: a POST of the stored body, judged by the seed's rule (only 2xx acknowledges).

Redirects are not followed (``allow_redirects=False``): the seed counts a 3xx as "not received",
and following one would send the job's paths to a host nobody configured (and past
``allowed_hosts``). With a secret, the request is signed the Standard Webhooks way, so a receiver
can check that flowd sent it and that it is fresh (see ``docs/notifications.md``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import requests

from flowd.config.sections import WebhooksConfig
from flowd.notify.messages import DeliveryResult, OutboxMessage, Outcome

__all__ = ["deliver_webhook", "sign", "webhook_id"]


def webhook_id(message: OutboxMessage) -> str:
    """The ``webhook-id`` of a message: the same on every retry, so a receiver can de-duplicate."""
    return f"flowd-{message.message_id}-{message.job_id}"


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64 of HMAC-SHA256(secret, ``"{id}.{timestamp}.{body}"``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def deliver_webhook(
    message: OutboxMessage,
    config: WebhooksConfig,
    secret: bytes | None,
    session: requests.Session,
    now: float | None = None,
) -> DeliveryResult:
    """POST ``message`` once; never raises for a failed delivery.

    ACKNOWLEDGED on 2xx; RETRY on any other status (3xx included, not followed), a timeout
    (``config.timeout_s``) or a connection error; NOT_SENT, without a request, for a host outside
    ``config.allowed_hosts``. ``now`` (default: the system clock) is the signature's timestamp.
    """
    if not config.allows(message.target):
        return DeliveryResult(
            Outcome.NOT_SENT, f"host not in [webhooks] allowed_hosts: {message.target}"
        )
    body = message.payload_json.encode()
    headers = {"Content-Type": "application/json", **message.headers}
    if secret is not None:
        msg_id = webhook_id(message)
        timestamp = int(time.time() if now is None else now)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    try:
        response = session.post(
            message.target,
            data=body,
            headers=headers,
            timeout=config.timeout_s,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return DeliveryResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
    with response:
        code = response.status_code
    if 200 <= code < 300:
        return DeliveryResult(Outcome.ACKNOWLEDGED, status_code=code)
    reason = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    return DeliveryResult(Outcome.RETRY, reason, status_code=code)
