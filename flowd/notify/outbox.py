"""The notification outbox: the stored truth about every webhook and e-mail of an ended job.

Why stored: a notification promised when a job ends must survive a crash or restart of the daemon
(and the receiver being down for hours), and one that was acknowledged must not go out again. So
the job's end *enqueues* rows here (table ``outbox``, schema in :mod:`flowd.jobs.store`), and the
:class:`~flowd.notify.dispatcher.Dispatcher` delivers what is due and records each result.

Contract:

- Enqueueing is idempotent per ``(job_id, round, kind, target)``: a job end settled twice (after a
  crash, by two processes) stores one message; ``round`` (0, then +1 per retry of the job that ends
  it again) lets a retried job notify again on purpose.
- Every ``mark_*`` is a conditional ``UPDATE … WHERE message_id = ? AND state = 'PENDING'``: only a
  pending message moves, so a ``SENT`` one is never reset, and of two racing writers one wins and
  the other learns it (``False``).
- :meth:`Outbox.claim_due` leases what it returns (pushes ``next_attempt_at`` by ``lease_s`` in
  the same transaction), so two dispatchers on one file never deliver the same message at once,
  and one that dies mid-delivery leaves the message to be tried again when the lease ends.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from flowd.errors import NotificationError
from flowd.jobs.database import Database
from flowd.jobs.queries import JobRow
from flowd.jobs.states import JobState
from flowd.jobs.store import JobStore
from flowd.notify.messages import (
    MessageKind,
    MessageState,
    OutboxMessage,
    email_target,
    job_end_body,
    webhook_target,
)

__all__ = ["Outbox", "job_status"]

_COLUMNS = (
    "message_id, job_id, round, kind, target, payload, headers, state, attempts, "
    "next_attempt_at, last_error, created_at, sent_at"
)


def job_status(job: JobRow) -> tuple[str, str | None]:
    """The seed's ``status`` and ``msg`` for an ended job.

    ``COMPLETE`` is ``OK``; every other end is ``ERROR`` — including ``STOPPED_AT_CHECKPOINT``,
    because a person must act before the job's results are whole.
    """
    if job.state is JobState.COMPLETE:
        return "OK", None
    reasons = {
        JobState.STOPPED_AT_CHECKPOINT: "stopped at a checkpoint: a record failed validation",
        JobState.CANCELLED: "cancelled",
    }
    return "ERROR", job.error or reasons.get(job.state, f"job ended {job.state}")


def _message(row: sqlite3.Row) -> OutboxMessage:
    return OutboxMessage(
        message_id=row["message_id"],
        job_id=row["job_id"],
        round=row["round"],
        kind=MessageKind(row["kind"]),
        target=row["target"],
        payload_json=row["payload"],
        headers=MappingProxyType(json.loads(row["headers"])),
        state=MessageState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


class Outbox:
    """The ``outbox`` table of a job store file (opened, and migrated, on its own connection).

    ``clock`` gives "now" for ``created_at``; delivery times are passed in by the caller.
    """

    def __init__(self, store: Path | JobStore, clock: Callable[[], float] = time.time) -> None:
        self.path = store.path if isinstance(store, JobStore) else Path(store)
        self._clock = clock
        self._db = Database(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- enqueueing ----------------------------------------------------------------------------
    def enqueue_job(
        self, job: JobRow, round: int = 0, msg: str | None = None
    ) -> list[OutboxMessage]:
        """:meth:`enqueue_job_end` for an ended job of the store, from its row and settings;
        ``msg`` overrides the default message of a job that did not complete."""
        status, default_msg = job_status(job)
        msg = (msg or default_msg) if status != "OK" else None
        return self.enqueue_job_end(
            job_id=job.job_id,
            status=status,
            msg=msg,
            binary_path=job.binary_path,
            input_dir=job.input_dir,
            output=job.output_folder,
            webhook_config=job.settings.get("webhook_config"),
            notification_emails=job.settings.get("notification_emails") or (),
            round=round,
        )

    def enqueue_job_end(
        self,
        *,
        job_id: str,
        status: str,
        msg: str | None,
        binary_path: str | None,
        input_dir: str | None,
        output: str | None,
        webhook_config: Mapping[str, Any] | None = None,
        notification_emails: Sequence[str] = (),
        round: int = 0,
    ) -> list[OutboxMessage]:
        """Store the notifications of one job end: a webhook if ``webhook_config`` has a ``url``,
        one e-mail to all of ``notification_emails`` if any. Returns the job end's messages (new
        or already stored). Settings that cannot be used store the message as ``NOT_SENT`` with
        the reason: the job's end is recorded, never refused, because of its notifications."""
        payload = json.dumps(job_end_body(job_id, status, msg, binary_path, input_dir, output))
        rows: list[tuple[MessageKind, str, dict[str, str], str | None]] = []
        if webhook_config and webhook_config.get("url") is not None:
            try:
                url, headers = webhook_target(webhook_config)
                rows.append((MessageKind.WEBHOOK, url, headers, None))
            except NotificationError as exc:
                rows.append((MessageKind.WEBHOOK, str(webhook_config["url"]), {}, exc.message))
        if notification_emails:
            try:
                rows.append((MessageKind.EMAIL, email_target(notification_emails), {}, None))
            except NotificationError as exc:
                rows.append((MessageKind.EMAIL, str(notification_emails), {}, exc.message))
        now = self._clock()
        with self._db.write() as conn:
            for kind, target, headers, problem in rows:
                state = MessageState.PENDING if problem is None else MessageState.NOT_SENT
                conn.execute(
                    "INSERT INTO outbox (job_id, round, kind, target, payload, headers, state, "
                    "next_attempt_at, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (job_id, round, kind, target) DO NOTHING",
                    (
                        job_id,
                        round,
                        kind,
                        target,
                        payload,
                        json.dumps(headers),
                        state,
                        now,
                        problem,
                        now,
                    ),
                )
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE job_id = ? AND round = ? ORDER BY message_id",
                (job_id, round),
            ).fetchall()
        return [_message(row) for row in found]

    # -- reading -------------------------------------------------------------------------------
    def get(self, message_id: int) -> OutboxMessage:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE message_id = ?", (message_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"no outbox message {message_id}")
        return _message(row)

    def for_job(self, job_id: str) -> list[OutboxMessage]:
        """A job's notifications and how each went (what the job status shows)."""
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE job_id = ? ORDER BY message_id", (job_id,)
            ).fetchall()
        return [_message(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Messages by ``(kind, state)``, for monitoring."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT kind, state, count(*) FROM outbox GROUP BY kind, state")
            return {(str(kind), str(state)): n for kind, state, n in rows}

    def due(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """Pending messages whose time has come, soonest first (a read: nothing is claimed)."""
        with self._db.read() as conn:
            return self._due(conn, now, limit)

    def next_due_at(self) -> float | None:
        """When the soonest pending message is due (for the timer that drives the dispatcher)."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = 'PENDING'"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def claim_due(self, now: float, lease_s: float, limit: int = 100) -> list[OutboxMessage]:
        """:meth:`due`, leased: their ``next_attempt_at`` moves to ``now + lease_s`` in the same
        transaction, so no other dispatcher takes them while this one delivers."""
        with self._db.write() as conn:
            found = self._due(conn, now, limit)
            conn.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE message_id = ? AND state = 'PENDING'",
                [(now + lease_s, m.message_id) for m in found],
            )
        return found

    @staticmethod
    def _due(conn: sqlite3.Connection, now: float, limit: int) -> list[OutboxMessage]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'PENDING' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, message_id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_message(row) for row in rows]

    # -- recording results (each only from PENDING) --------------------------------------------
    def mark_sent(self, message_id: int, now: float) -> bool:
        """Acknowledged: final, never delivered again. ``False`` if it was not pending."""
        return self._move(
            message_id,
            "state = 'SENT', attempts = attempts + 1, sent_at = ?, last_error = NULL",
            (now,),
        )

    def mark_retry(self, message_id: int, next_at: float, error: str) -> bool:
        """A failed attempt that will be tried again at ``next_at``."""
        return self._move(
            message_id,
            "attempts = attempts + 1, next_attempt_at = ?, last_error = ?",
            (next_at, error),
        )

    def mark_failed(self, message_id: int, error: str) -> bool:
        """A failed attempt after which no more are made."""
        return self._move(
            message_id, "state = 'FAILED', attempts = attempts + 1, last_error = ?", (error,)
        )

    def mark_not_sent(self, message_id: int, reason: str) -> bool:
        """Not tried, and never will be (no SMTP server, a host not allowed); ``reason`` kept."""
        return self._move(message_id, "state = 'NOT_SENT', last_error = ?", (reason,))

    def _move(self, message_id: int, assignments: str, values: tuple[object, ...]) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                f"UPDATE outbox SET {assignments} WHERE message_id = ? AND state = 'PENDING'",
                (*values, message_id),
            )
            return cursor.rowcount == 1
