"""The notification outbox on a real SQLite file: schema, idempotent enqueueing, conditional moves,
leases, and state kept across a reopen."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowd.jobs import schema
from flowd.jobs.queries import NewJob
from flowd.jobs.store import JobStore
from flowd.notify import MessageKind, MessageState, Outbox, OutboxMessage

URL = "http://127.0.0.1:9/hook"


def end(outbox: Outbox, job_id: str = "j1", round: int = 0, **fields: Any) -> list[OutboxMessage]:
    values: dict[str, Any] = {
        "job_id": job_id,
        "status": "ERROR",
        "msg": "2 files failed",
        "binary_path": "bin/a.ibflowbin",
        "input_dir": "in",
        "output": "/data/out/run-1",
        "webhook_config": {"url": URL, "headers": {"X-Token": "abc"}},
        "notification_emails": ["a@example.com", "b@example.com", "a@example.com"],
        "round": round,
    }
    values.update(fields)
    return outbox.enqueue_job_end(**values)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


def test_a_new_store_is_at_the_latest_version_with_the_outbox(path: Path) -> None:
    with JobStore(path) as store:
        assert store.schema_version == len(schema.MIGRATIONS) == 3
    raw = sqlite3.connect(path)
    indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    raw.close()
    assert "outbox_due" in indexes


def test_a_version_1_file_gets_the_outbox_and_keeps_its_jobs(path: Path) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    schema.MIGRATIONS[0](raw)
    raw.execute(
        "INSERT INTO jobs (job_id, type, state, priority, settings, created_at, updated_at) "
        "VALUES ('old', 'flow', 'FAILED', 3, '{}', 1.0, 1.0)"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.close()
    with Outbox(path) as outbox:
        assert len(end(outbox, "old")) == 2
    with JobStore(path) as store:
        assert store.schema_version == len(schema.MIGRATIONS)
        assert store.get_job("old").priority == 3


def test_enqueue_writes_the_seed_body_and_is_idempotent(path: Path) -> None:
    with Outbox(path, clock=lambda: 100.0) as outbox:
        first = end(outbox)
        again = end(outbox, msg="settled twice")  # a crash made the job end be settled again
        assert again == first
        hook, mail = outbox.for_job("j1")
    assert (hook.kind, hook.target, dict(hook.headers)) == (
        MessageKind.WEBHOOK,
        URL,
        {"X-Token": "abc"},
    )
    assert (mail.kind, mail.target) == (MessageKind.EMAIL, "a@example.com,b@example.com")
    assert mail.recipients == ("a@example.com", "b@example.com")
    assert list(hook.payload.items()) == [
        ("status", "ERROR"),
        ("msg", "2 files failed"),
        ("job_id", "j1"),
        ("binary_path", "bin/a.ibflowbin"),
        ("input_dir", "in"),
        ("output", "/data/out/run-1"),
    ]
    for message in (hook, mail):
        assert (message.state, message.attempts, message.next_attempt_at) == (
            MessageState.PENDING,
            0,
            100.0,
        )


def test_ok_has_no_msg_and_a_later_round_notifies_again(path: Path) -> None:
    with Outbox(path) as outbox:
        end(outbox)
        later = end(outbox, round=1, status="OK", msg=None, notification_emails=[])
        assert len(outbox.for_job("j1")) == 3
    assert [m.kind for m in later] == [MessageKind.WEBHOOK]
    assert json.loads(later[0].payload_json) == {
        "status": "OK",
        "job_id": "j1",
        "binary_path": "bin/a.ibflowbin",
        "input_dir": "in",
        "output": "/data/out/run-1",
    }


def test_unusable_settings_are_recorded_not_sent(path: Path) -> None:
    with Outbox(path) as outbox:
        hook, mail = end(
            outbox,
            webhook_config={"url": "ftp://example.com/x", "headers": "not json"},
            notification_emails=["not an address"],
        )
    assert hook.state is mail.state is MessageState.NOT_SENT
    assert "http(s) URL" in hook.last_error
    assert "e-mail addresses" in mail.last_error


def test_nothing_is_enqueued_without_settings(path: Path) -> None:
    with Outbox(path) as outbox:
        assert end(outbox, webhook_config=None, notification_emails=[]) == []


def test_enqueue_job_reads_an_ended_job_of_the_store(path: Path) -> None:
    settings = {"webhook_config": {"url": URL}, "notification_emails": ["ops@example.com"]}
    with JobStore(path) as store, Outbox(store) as outbox:
        store.create_job(NewJob(job_id="j", binary_path="b", input_dir="i", settings=settings))
        store.cancel_job("j", "api")
        hook, mail = outbox.enqueue_job(store.get_job("j"))
    assert hook.payload == {
        "status": "ERROR",
        "msg": "cancelled",
        "job_id": "j",
        "binary_path": "b",
        "input_dir": "i",
        "output": "",
    }
    assert mail.target == "ops@example.com"


def test_marks_only_move_pending_messages(path: Path) -> None:
    with Outbox(path) as outbox:
        hook, mail = end(outbox)
        assert outbox.mark_retry(hook.message_id, 50.0, "HTTP 500")
        assert outbox.mark_sent(hook.message_id, 60.0)
        # Late or racing writers cannot take an acknowledged message back.
        assert not outbox.mark_retry(hook.message_id, 70.0, "late")
        assert not outbox.mark_failed(hook.message_id, "late")
        assert not outbox.mark_not_sent(hook.message_id, "late")
        assert not outbox.mark_sent(hook.message_id, 80.0)
        assert outbox.mark_failed(mail.message_id, "SMTP 550")
        sent, failed = outbox.for_job("j1")
    assert (sent.state, sent.attempts, sent.sent_at, sent.last_error) == (
        MessageState.SENT,
        2,
        60.0,
        None,
    )
    assert (failed.state, failed.attempts, failed.last_error) == (
        MessageState.FAILED,
        1,
        "SMTP 550",
    )


def test_due_claims_and_leases(path: Path) -> None:
    with Outbox(path, clock=lambda: 10.0) as one, Outbox(path) as two:
        end(one)
        assert one.due(9.0) == [] and len(one.due(10.0)) == 2
        assert one.next_due_at() == 10.0
        claimed = one.claim_due(10.0, lease_s=300.0, limit=1)
        assert len(claimed) == 1
        # Another dispatcher on the same file does not get the leased message.
        other = two.claim_due(10.0, lease_s=300.0)
        assert [m.message_id for m in other] != [claimed[0].message_id] and len(other) == 1
        assert two.claim_due(309.0, lease_s=300.0) == []
        # A dispatcher that died mid-delivery: the message is due again when its lease ends.
        assert len(two.claim_due(310.0, lease_s=300.0)) == 2


def test_state_survives_a_reopen(path: Path) -> None:
    with Outbox(path) as outbox:
        hook, _ = end(outbox)
        outbox.mark_sent(hook.message_id, 5.0)
    with Outbox(path) as outbox:
        assert [m.kind for m in outbox.due(1e12)] == [MessageKind.EMAIL]
        assert outbox.get(hook.message_id).state is MessageState.SENT
        end(outbox)  # settling the job again after the restart changes nothing
        assert [m.state for m in outbox.for_job("j1")] == [MessageState.SENT, MessageState.PENDING]
