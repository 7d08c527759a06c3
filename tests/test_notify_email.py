"""Job-end e-mails through a real SMTP sink (aiosmtpd on loopback), and without any SMTP server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from flowd.config.sections import SmtpConfig, WebhooksConfig
from flowd.notify import Dispatcher, MessageState, Outbox, OutboxMessage

T0 = 1_700_000_000.0
RECIPIENTS = ["ops@example.com", "me@domain.com"]


class Sink:
    """An aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    # aiosmtpd's Controller cannot take port 0 (it connects to its own port to start).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"flowd", b"pw")
    return AuthResult(success=ok)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,  # loopback test only: flowd itself would use starttls = true
    )
    controller.start()
    yield handler, port
    controller.stop()


def enqueue(outbox: Outbox, status: str = "ERROR") -> OutboxMessage:
    (message,) = outbox.enqueue_job_end(
        job_id="job-9",
        status=status,
        msg="invoice.pdf: cannot be read" if status == "ERROR" else None,
        binary_path="bin/flow.ibflowbin",
        input_dir="inbox",
        output="/srv/out/job-9",
        notification_emails=RECIPIENTS,
    )
    return message


def test_the_mail_reaches_every_recipient_once(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    path = tmp_path / "jobs.sqlite3"
    smtp = SmtpConfig(host="127.0.0.1", port=port, sender="flowd@localhost")
    with Outbox(path, clock=lambda: T0) as outbox:
        message = enqueue(outbox)
        send = Dispatcher(outbox, WebhooksConfig(), smtp, None, lambda: T0)
        assert send.run_due(T0) == 1
        assert send.run_due(T0 + 10**6) == 0
    with Outbox(path) as outbox:  # a restart sends nothing again
        assert Dispatcher(outbox, WebhooksConfig(), smtp, None).run_due(T0 + 10**7) == 0
        sent = outbox.get(message.message_id)
    assert (sent.state, sent.attempts, sent.sent_at) == (MessageState.SENT, 1, T0)
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "flowd@localhost"
    assert envelope.rcpt_tos == RECIPIENTS
    mail: Message = message_from_bytes(envelope.original_content or b"")
    assert mail["Subject"] == "flowd job job-9: ERROR"
    assert mail["To"] == "ops@example.com, me@domain.com"
    text = mail.get_payload(decode=True)
    assert isinstance(text, bytes)
    for line in ("Job: job-9", "Status: ERROR", "Error: invoice.pdf: cannot be read"):
        assert line in text.decode()
    assert "Output folder: /srv/out/job-9" in text.decode()


def test_login_when_a_username_is_set(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    password_file = tmp_path / "smtp-password"
    password_file.write_text("pw\n")
    smtp = SmtpConfig(host="127.0.0.1", port=port, username="flowd", password_file=password_file)
    with Outbox(tmp_path / "jobs.sqlite3", clock=lambda: T0) as outbox:
        message = enqueue(outbox, status="OK")
        Dispatcher.from_config(outbox, WebhooksConfig(), smtp, lambda: T0).run_due()
        assert outbox.get(message.message_id).state is MessageState.SENT
    assert len(handler.envelopes) == 1


def test_no_smtp_server_records_not_sent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "jobs.sqlite3", clock=lambda: T0) as outbox:
        message = enqueue(outbox)
        assert Dispatcher(outbox, WebhooksConfig(), SmtpConfig(), None).run_due(T0) == 1
        (recorded,) = outbox.for_job("job-9")
    assert recorded.message_id == message.message_id
    assert (recorded.state, recorded.attempts) == (MessageState.NOT_SENT, 0)
    assert recorded.last_error == "no SMTP server is configured ([smtp] host is empty)"


def test_an_smtp_server_down_is_retried(tmp_path: Path) -> None:
    smtp = SmtpConfig(host="127.0.0.1", port=free_port())
    with Outbox(tmp_path / "jobs.sqlite3", clock=lambda: T0) as outbox:
        message = enqueue(outbox)
        Dispatcher(outbox, WebhooksConfig(), smtp, None, rng=lambda: 0.5).run_due(T0)
        down = outbox.get(message.message_id)
    assert (down.state, down.attempts, down.next_attempt_at) == (MessageState.PENDING, 1, T0 + 1)
    assert "ConnectionRefusedError" in (down.last_error or "")
