"""Job-end notifications from a real ``flowd serve``: webhooks to a real HTTP receiver on loopback,
e-mails through a real SMTP sink (aiosmtpd), the stored outbox across ``kill -9`` (SPEC §7).

Every wait polls a condition with a deadline; the daemon's webhook backoff is configured short so
that the seed's "500, then 302, then 200" sequence takes a fraction of a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from flowd.notify import MessageKind, MessageState, Outbox, OutboxMessage
from tests.conftest import EXAMPLES, wait_for
from tests.daemon import DaemonProcess

SECRET_KEY = b"\x01flowd test signing key\xfe"
SEED_KEYS_OK = ["status", "job_id", "binary_path", "input_dir", "output"]
SEED_KEYS_ERROR = ["status", "msg", "job_id", "binary_path", "input_dir", "output"]
FAST_BACKOFF = "backoff_s = [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]"


# -- real parts on loopback -------------------------------------------------------------------
@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    code: int


@dataclass
class Receiver:
    """A real HTTP server; each path answers its scripted codes in turn, then 200. A 3xx points
    ``Location`` at ``/elsewhere``, so a client that followed it would show up there."""

    scripts: dict[str, list[int]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, port: int = 0) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    script = receiver.scripts.get(self.path, [])
                    code = script.pop(0) if script else 200
                    hit = Hit(self.command, self.path, dict(self.headers), body, code)
                    receiver.hits.append(hit)
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Sink:
    """An aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def mails_about(self, job_id: str) -> list[tuple[Envelope, EmailMessage]]:
        found = []
        for envelope in list(self.envelopes):
            mail = message_from_bytes(envelope.original_content or b"", policy=policy.default)
            assert isinstance(mail, EmailMessage)
            if job_id in str(mail["Subject"]):
                found.append((envelope, mail))
        return found


def free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verify(secret: bytes, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check of the Standard Webhooks signature (docs/notifications.md)."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(f"v1,{expected}", sig) for sig in headers["webhook-signature"].split()
    )


def outbox_rows(daemon: DaemonProcess, job_id: str) -> dict[MessageKind, OutboxMessage]:
    with Outbox(daemon.state / "jobs.sqlite3") as outbox:
        return {m.kind: m for m in outbox.for_job(job_id)}


def row_state(daemon: DaemonProcess, job_id: str, kind: MessageKind) -> MessageState | None:
    row = outbox_rows(daemon, job_id).get(kind)
    return None if row is None else row.state


def seed_data(daemon: DaemonProcess, binary: Path) -> None:
    shutil.copy(binary, daemon.data / "invoice.ibflowbin")
    (daemon.data / "in").mkdir()
    shutil.copy(EXAMPLES / "samples" / "invoices" / "inv-000001.txt", daemon.data / "in")
    (daemon.data / "bad").mkdir()
    (daemon.data / "bad" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF at all")


def submit(daemon: DaemonProcess, input_dir: str, **settings: Any) -> str:
    r = daemon.post(
        "/api/v1/flow/run_binary_async",
        {"binary_path": "invoice.ibflowbin", "input_dir": input_dir, "settings": settings},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["job_id"])


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    url = r.start()
    yield r, url
    r.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def notifier(
    tmp_path_factory: pytest.TempPathFactory, invoice_binary: Path, sink: tuple[Sink, int]
) -> Iterator[DaemonProcess]:
    """A daemon that signs its webhooks, retries them every 0.2 s and mails through the sink."""
    root = tmp_path_factory.mktemp("notify")
    secret = root / "webhook-secret"
    secret.write_text("whsec_" + base64.b64encode(SECRET_KEY).decode() + "\n")
    proc = DaemonProcess(
        root / "d",
        extra_toml=(
            f'[webhooks]\nsecret_file = "{secret}"\n{FAST_BACKOFF}\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {sink[1]}\nsender = "flowd@localhost"\n'
        ),
    )
    seed_data(proc, invoice_binary)
    with proc:
        yield proc


# -- webhooks ---------------------------------------------------------------------------------
def test_500_then_302_then_200_is_one_signed_acknowledged_delivery(
    notifier: DaemonProcess, receiver: tuple[Receiver, str]
) -> None:
    hooks, base = receiver
    hooks.scripts["/hook/seq"] = [500, 302, 200]
    job_id = submit(
        notifier,
        "in",
        output_has_run_id=True,
        # the seed types headers as a string holding JSON
        webhook_config={"url": base + "/hook/seq", "headers": json.dumps({"X-Api-Key": "k1"})},
    )
    wait_for(
        lambda: row_state(notifier, job_id, MessageKind.WEBHOOK) is MessageState.SENT,
        30,
        "the webhook to be acknowledged",
    )
    row = outbox_rows(notifier, job_id)[MessageKind.WEBHOOK]
    assert row.attempts == 3  # 500 and 302 were both failures
    hits = hooks.to("/hook/seq")
    assert [h.code for h in hits] == [500, 302, 200]
    assert hooks.to("/elsewhere") == []  # the redirect was not followed
    assert {h.method for h in hits} == {"POST"}

    status = notifier.get("/api/v1/jobs/status", params={"job_id": job_id}).json()
    job = notifier.get("/api/v1/jobs/list", params={"limit": 50}).json()["jobs"]
    (listed,) = [j for j in job if j["job_id"] == job_id]
    for hit in hits:
        body = json.loads(hit.body)
        assert list(body) == SEED_KEYS_OK  # no msg when the status is OK
        assert body == {
            "status": "OK",
            "job_id": job_id,
            "binary_path": listed["binary_path"],
            "input_dir": listed["input_dir"],
            "output": status["results"][0]["output_folder"],
        }
        assert Path(body["binary_path"]) == notifier.data / "invoice.ibflowbin"
        assert Path(body["input_dir"]) == notifier.data / "in"
        assert hit.headers["X-Api-Key"] == "k1"
        assert hit.headers["Content-Type"] == "application/json"
        assert verify(SECRET_KEY, hit.headers, hit.body)
        assert not verify(b"another key", hit.headers, hit.body)
    assert len({h.headers["webhook-id"] for h in hits}) == 1  # one id: receivers can de-duplicate

    # Nothing more is sent once acknowledged (the next job's delivery proves the timer ran).
    later = submit(notifier, "in", webhook_config={"url": base + "/hook/seq-after"})
    wait_for(lambda: len(hooks.to("/hook/seq-after")) == 1, 30, "the next job's webhook")
    assert later != job_id and len(hooks.to("/hook/seq")) == 3


def test_a_failed_job_notifies_error_with_a_msg(
    notifier: DaemonProcess, receiver: tuple[Receiver, str], sink: tuple[Sink, int]
) -> None:
    hooks, base = receiver
    mails, _ = sink
    job_id = submit(
        notifier,
        "bad",
        webhook_config={"url": base + "/hook/failed", "headers": {"Authorization": "Bearer x"}},
        notification_emails=["ops@example.com"],
    )
    wait_for(lambda: len(hooks.to("/hook/failed")) == 1, 30, "the failed job's webhook")
    (hit,) = hooks.to("/hook/failed")
    body = json.loads(hit.body)
    assert list(body) == SEED_KEYS_ERROR
    assert body["status"] == "ERROR" and body["job_id"] == job_id
    assert "broken.pdf" in body["msg"]
    assert hit.headers["Authorization"] == "Bearer x"
    wait_for(lambda: len(mails.mails_about(job_id)) == 1, 30, "the failed job's mail")
    (_, mail) = mails.mails_about(job_id)[0]
    assert mail["Subject"] == f"flowd job {job_id}: ERROR"
    text = mail.get_content()
    assert "Status: ERROR" in text and "broken.pdf" in text


# -- e-mail -----------------------------------------------------------------------------------
def test_one_mail_per_job_end_to_every_recipient(
    notifier: DaemonProcess, sink: tuple[Sink, int]
) -> None:
    mails, _ = sink
    recipients = ["ops@example.com", "me@domain.com", "ops@example.com"]
    job_id = submit(notifier, "in", notification_emails=recipients)
    wait_for(
        lambda: row_state(notifier, job_id, MessageKind.EMAIL) is MessageState.SENT,
        30,
        "the mail to be accepted",
    )
    # A second job's mail arriving shows the dispatcher ran again after the first was sent.
    other = submit(notifier, "in", notification_emails=["someone@example.com"])
    wait_for(lambda: len(mails.mails_about(other)) == 1, 30, "the second job's mail")
    (sent,) = mails.mails_about(job_id)
    envelope, mail = sent
    assert envelope.mail_from == "flowd@localhost"
    assert envelope.rcpt_tos == ["ops@example.com", "me@domain.com"]  # de-duplicated
    assert mail["Subject"] == f"flowd job {job_id}: OK"
    text = mail.get_content()
    assert f"Job: {job_id}" in text and "Status: OK" in text
    assert outbox_rows(notifier, job_id)[MessageKind.EMAIL].attempts == 1


# -- a receiver down across a daemon restart, and no SMTP server ------------------------------
def test_a_webhook_survives_kill_9_and_is_delivered_once(
    tmp_path: Path, invoice_binary: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook/down"
    daemon = DaemonProcess(
        tmp_path / "d", extra_toml=f"[webhooks]\nbackoff_s = [{', '.join(['0.3'] * 7)}]\n"
    )
    seed_data(daemon, invoice_binary)
    hooks = Receiver()
    try:
        daemon.start()
        job_id = submit(
            daemon, "in", webhook_config={"url": url}, notification_emails=["ops@example.com"]
        )

        def tried() -> bool:
            row = outbox_rows(daemon, job_id).get(MessageKind.WEBHOOK)
            return row is not None and row.attempts >= 1

        wait_for(tried, 30, "a first, refused delivery")
        daemon.kill9()  # right after a failed attempt: the next is ≥ 0.3 s away

        rows = outbox_rows(daemon, job_id)
        before = rows[MessageKind.WEBHOOK]
        assert before.state is MessageState.PENDING
        assert "ConnectionError" in (before.last_error or "")
        mail = rows[MessageKind.EMAIL]  # no [smtp] host: recorded as not sent, with the reason
        assert mail.state is MessageState.NOT_SENT and mail.attempts == 0
        assert mail.last_error == "no SMTP server is configured ([smtp] host is empty)"

        daemon.start()  # the receiver is still down: the restarted daemon retries it
        wait_for(
            lambda: outbox_rows(daemon, job_id)[MessageKind.WEBHOOK].attempts > before.attempts,
            30,
            "a retry by the restarted daemon",
        )
        assert row_state(daemon, job_id, MessageKind.WEBHOOK) is MessageState.PENDING
        hooks.start(port)  # the receiver comes back
        wait_for(
            lambda: row_state(daemon, job_id, MessageKind.WEBHOOK) is MessageState.SENT,
            30,
            "the delivery once the receiver is back",
        )
        assert len(hooks.to("/hook/down")) == 1
        delivered = outbox_rows(daemon, job_id)[MessageKind.WEBHOOK]

        daemon.restart()  # kill -9 again: an acknowledged message is never sent again
        next_job = submit(daemon, "in", webhook_config={"url": f"http://127.0.0.1:{port}/next"})
        wait_for(lambda: len(hooks.to("/next")) == 1, 30, "the next job's webhook")
        assert len(hooks.to("/hook/down")) == 1
        assert outbox_rows(daemon, job_id)[MessageKind.WEBHOOK] == delivered
        assert json.loads(hooks.to("/next")[0].body)["job_id"] == next_job
        assert "webhook-signature" not in hooks.to("/next")[0].headers  # no secret configured
    finally:
        daemon.kill9()
        hooks.stop()
