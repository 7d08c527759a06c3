"""The sd_notify protocol against real AF_UNIX datagram sockets standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flowd.daemon.systemd import Notifier

RECEIVE_TIMEOUT_S = 5.0  # a deadline, not a wait: a datagram already sent arrives at once


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and the NOTIFY_SOCKET value that names it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECEIVE_TIMEOUT_S)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        value = path
    else:
        name = f"flowd-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        value = "@" + name
    with sock:
        yield sock, value


def receive(sock: socket.socket) -> dict[str, str]:
    """The next datagram as its fields (fails after the deadline if none was sent)."""
    data = sock.recv(4096).decode("utf-8")
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_with_status(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
    assert notifier.enabled
    notifier.ready()
    assert receive(sock) == {"READY": "1"}
    notifier.ready(status="serving 2 watches")
    assert receive(sock) == {"READY": "1", "STATUS": "serving 2 watches"}


def test_status_watchdog_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
    notifier.status("compiling invoices")
    assert receive(sock) == {"STATUS": "compiling invoices"}
    notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}
    notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}


def test_reloading_carries_the_monotonic_clock(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = receive(sock)
    assert fields.keys() == {"RELOADING", "MONOTONIC_USEC"}
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_send_is_one_datagram_and_lines_cannot_be_smuggled(
    listener: tuple[socket.socket, str],
) -> None:
    sock, value = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
    notifier.send(STATUS="line one\nREADY=1", ERRNO=5, READY=True)
    assert receive(sock) == {"STATUS": "line one READY=1", "ERRNO": "5", "READY": "1"}
    with pytest.raises(ValueError, match="sd_notify field name"):
        notifier.send(status="lower-case keys are not the protocol")


def test_watchdog_interval_is_half_the_timeout(listener: tuple[socket.socket, str]) -> None:
    _, value = listener
    env = {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000"}
    assert Notifier.from_env(env).watchdog_interval_s == 1.0
    own = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(own).watchdog_interval_s == 1.0
    assert Notifier.from_env({"NOTIFY_SOCKET": value}).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval_s is None
    # A watchdog means nothing without a socket to ping.
    assert Notifier.from_env({"WATCHDOG_USEC": "2000000"}).watchdog_interval_s is None


@pytest.mark.parametrize("pid", ["1", "not-a-pid"])
def test_watchdog_of_another_process_is_not_ours(
    listener: tuple[socket.socket, str], pid: str
) -> None:
    sock, value = listener
    env = {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}
    notifier = Notifier.from_env(env)
    assert not notifier.watchdog_applies
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()  # sends nothing: the next datagram is the status sent after it
    notifier.status("after the ping")
    assert receive(sock) == {"STATUS": "after the ping"}


def test_unset_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    with capture_logs() as logs:
        notifier.ready(status="x")
        notifier.reloading()
        notifier.status("x")
        notifier.watchdog()
        notifier.stopping()
        notifier.send(READY=1)
    assert logs == []


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/path", "@"])
def test_unsupported_address_disables(value: str) -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
        notifier.ready()
    assert not notifier.enabled
    assert [e["event"] for e in logs] == ["sd_notify_unsupported_socket"]


def test_missing_socket_does_not_raise_and_warns_once(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    with capture_logs() as logs:
        notifier.ready(status="up")
        notifier.watchdog()
        notifier.stopping()
    assert [(e["event"], e["log_level"]) for e in logs] == [("sd_notify_failed", "warning")]
    assert logs[0]["notify_socket"] == str(tmp_path / "gone")


def test_missing_abstract_socket_does_not_raise() -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": f"@flowd-test-gone-{uuid.uuid4().hex}"})
    with capture_logs() as logs:
        notifier.ready()
    assert [e["event"] for e in logs] == ["sd_notify_failed"]
    assert logs[0]["notify_socket"].startswith("@flowd-test-gone-")


def test_from_env_reads_the_process_environment_by_default(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, value = listener
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    Notifier.from_env().ready()
    assert receive(sock) == {"READY": "1"}
