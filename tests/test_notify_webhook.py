"""Webhooks delivered by the dispatcher to a real HTTP receiver on loopback, with an injected clock
(no sleeps: ``run_due`` is driven at the times each test picks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flowd.config.sections import SmtpConfig, WebhooksConfig
from flowd.notify import Dispatcher, MessageState, Outbox, OutboxMessage, read_secret

SECRET = b"a shared secret"
T0 = 1_700_000_000.0


@dataclass
class Receiver:
    """A real HTTP server answering POSTs with the scripted codes (then 200), recording each."""

    codes: list[int]
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> int:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.command, self.path, dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", self.path)  # to itself: a loop if followed
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(codes=[])
    yield r
    r.stop()


def free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def dispatcher(outbox: Outbox, clock: Clock, **config: object) -> Dispatcher:
    # rng 0.5 makes the ±10 % jitter factor exactly 1: waits are the configured ones.
    return Dispatcher(
        outbox, WebhooksConfig(**config), SmtpConfig(), SECRET, clock, rng=lambda: 0.5
    )


def enqueue(outbox: Outbox, url: str) -> OutboxMessage:
    (message,) = outbox.enqueue_job_end(
        job_id="job-7",
        status="ERROR",
        msg="1 file failed",
        binary_path="proj/build/bin/flow.ibflowbin",
        input_dir="inbox",
        output="/srv/out/job-7",
        webhook_config={"url": url, "headers": json.dumps({"X-Api-Key": "k1"})},
    )
    return message


def test_500_then_302_then_200_is_one_acknowledged_delivery(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.codes[:] = [500, 302, 200]
    url = f"http://127.0.0.1:{receiver.start()}/hook"
    clock = Clock()
    path = tmp_path / "jobs.sqlite3"
    outbox = Outbox(path, clock=clock)
    message = enqueue(outbox, url)
    send = dispatcher(outbox, clock)

    assert send.run_due(T0) == 1  # 500
    assert outbox.get(message.message_id).next_attempt_at == T0 + 1
    assert send.run_due(T0 + 0.99) == 0  # not due yet: nothing sent
    assert send.run_due(T0 + 1) == 1  # 302: a failure, and not followed
    after_302 = outbox.get(message.message_id)
    assert (after_302.state, after_302.attempts, after_302.next_attempt_at) == (
        MessageState.PENDING,
        2,
        T0 + 1 + 5,
    )
    assert "HTTP 302" in (after_302.last_error or "")
    assert len(receiver.requests) == 2 and {r[0] for r in receiver.requests} == {"POST"}
    clock.now = T0 + 6
    assert send.run_due() == 1  # 200
    sent = outbox.get(message.message_id)
    assert (sent.state, sent.attempts, sent.sent_at) == (MessageState.SENT, 3, T0 + 6)
    assert send.run_due(T0 + 10**6) == 0
    send.close()
    outbox.close()

    # A restart: the same file, a new outbox and dispatcher. Nothing is sent again.
    with Outbox(path, clock=clock) as reopened:
        again = dispatcher(reopened, clock)
        assert again.run_due(T0 + 10**7) == 0
        assert reopened.get(message.message_id).state is MessageState.SENT
    assert len(receiver.requests) == 3

    expected = (
        b'{"status": "ERROR", "msg": "1 file failed", "job_id": "job-7", '
        b'"binary_path": "proj/build/bin/flow.ibflowbin", "input_dir": "inbox", '
        b'"output": "/srv/out/job-7"}'
    )
    for method, where, headers, body in receiver.requests:
        assert (method, where, body) == ("POST", "/hook", expected)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Api-Key"] == "k1"
        assert verify(SECRET, headers, body)
    ids = {r[2]["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # the same id on every retry: a receiver can de-duplicate
    stamps = [r[2]["webhook-timestamp"] for r in receiver.requests]
    assert stamps == [str(int(t)) for t in (T0, T0 + 1, T0 + 6)]  # when each was sent


def verify(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, as docs/notifications.md shows it."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(f"v1,{expected}", sig) for sig in headers["webhook-signature"].split()
    )


def test_a_receiver_down_across_a_restart_gets_it_once_when_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()
    clock = Clock()
    path = tmp_path / "jobs.sqlite3"
    with Outbox(path, clock=clock) as outbox:
        message = enqueue(outbox, f"http://127.0.0.1:{port}/hook")
        assert dispatcher(outbox, clock).run_due(T0) == 1
        down = outbox.get(message.message_id)
        assert (down.state, down.attempts, down.next_attempt_at) == (
            MessageState.PENDING,
            1,
            T0 + 1,
        )
        assert "ConnectionError" in (down.last_error or "")
    with Outbox(path, clock=clock) as outbox:  # the daemon restarted; the receiver is still down
        send = dispatcher(outbox, clock)
        assert send.run_due(T0 + 1) == 1
        assert outbox.get(message.message_id).next_attempt_at == T0 + 1 + 5
        receiver.start(port)  # it comes back
        assert send.run_due(T0 + 6) == 1
        assert send.run_due(T0 + 10**6) == 0
        assert outbox.get(message.message_id).state is MessageState.SENT
    assert len(receiver.requests) == 1


def test_the_backoff_schedule_then_failed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    waits = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    with Outbox(tmp_path / "jobs.sqlite3", clock=Clock()) as outbox:
        message = enqueue(outbox, url)
        send = dispatcher(outbox, Clock())
        now = T0
        for wait in waits:  # the first attempt, then retries 1..6 each after its wait
            assert send.run_due(now) == 1
            assert send.run_due(now + wait - 0.01) == 0
            now += wait
            assert outbox.get(message.message_id).next_attempt_at == now
        assert send.run_due(now) == 1  # retry 7, the last
        failed = outbox.get(message.message_id)
        assert (failed.state, failed.attempts) == (MessageState.FAILED, 8)
        assert send.run_due(now + 10**6) == 0


@pytest.mark.parametrize(("rng", "factor"), [(0.0, 0.9), (0.999999, 1.1)])
def test_jitter_stays_within_ten_percent(tmp_path: Path, rng: float, factor: float) -> None:
    with Outbox(tmp_path / "jobs.sqlite3", clock=Clock()) as outbox:
        message = enqueue(outbox, f"http://127.0.0.1:{free_port()}/hook")
        send = Dispatcher(outbox, WebhooksConfig(), SmtpConfig(), None, Clock(), rng=lambda: rng)
        send.run_due(T0)
        send.run_due(T0 + 10)
        waited = outbox.get(message.message_id).next_attempt_at - (T0 + 10)
    assert waited == pytest.approx(5.0 * factor, abs=1e-4)


def test_fewer_retries_configured(tmp_path: Path) -> None:
    with Outbox(tmp_path / "jobs.sqlite3", clock=Clock()) as outbox:
        message = enqueue(outbox, f"http://127.0.0.1:{free_port()}/hook")
        send = dispatcher(outbox, Clock(), max_retries=1)
        send.run_due(T0)
        send.run_due(T0 + 1)
        assert outbox.get(message.message_id).state is MessageState.FAILED


def test_a_host_not_allowed_gets_no_request(tmp_path: Path, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.start()}/hook"
    with Outbox(tmp_path / "jobs.sqlite3", clock=Clock()) as outbox:
        message = enqueue(outbox, url)
        assert dispatcher(outbox, Clock(), allowed_hosts=["hooks.example.com"]).run_due(T0) == 1
        refused = outbox.get(message.message_id)
    assert (refused.state, refused.attempts) == (MessageState.NOT_SENT, 0)
    assert "allowed_hosts" in (refused.last_error or "")
    assert receiver.requests == []


def test_unsigned_without_a_secret(tmp_path: Path, receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.start()}/hook"
    with Outbox(tmp_path / "jobs.sqlite3", clock=Clock()) as outbox:
        enqueue(outbox, url)
        Dispatcher(outbox, WebhooksConfig(), SmtpConfig(), None, Clock()).run_due(T0)
    ((_, _, headers, _),) = receiver.requests
    assert not {"webhook-id", "webhook-timestamp", "webhook-signature"} & set(headers)


def test_read_secret(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"s3cret\n")
    standard = tmp_path / "standard"
    standard.write_text("whsec_" + base64.b64encode(b"\x00key bytes").decode())
    assert read_secret(None) is None
    assert read_secret(plain) == b"s3cret"
    assert read_secret(standard) == b"\x00key bytes"
