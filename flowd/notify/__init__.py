"""Notifications of ended jobs: webhooks and e-mails, through a stored outbox (SPEC §7).

:mod:`~flowd.notify.outbox` stores them, :mod:`~flowd.notify.dispatcher` delivers what is due
through :mod:`~flowd.notify.webhook` and :mod:`~flowd.notify.email`; the values they pass are in
:mod:`~flowd.notify.messages`. See ``docs/notifications.md``.
"""

from flowd.notify.dispatcher import Dispatcher, read_secret
from flowd.notify.messages import DeliveryResult, MessageKind, MessageState, OutboxMessage, Outcome
from flowd.notify.outbox import Outbox, job_status

__all__ = [
    "DeliveryResult",
    "Dispatcher",
    "MessageKind",
    "MessageState",
    "Outbox",
    "OutboxMessage",
    "Outcome",
    "job_status",
    "read_secret",
]
