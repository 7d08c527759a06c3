"""A real ``flowd serve`` speaks the systemd notify protocol to a real datagram socket."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.daemon import DaemonProcess


def _receive_until(sock: socket.socket, wanted: str, timeout_s: float = 30.0) -> list[str]:
    """Datagrams received until one holds the line ``wanted`` (failing after ``timeout_s``)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(data)
        if wanted in data.splitlines():
            return seen
    raise AssertionError(f"no {wanted!r} within {timeout_s} s; got {seen}")


def test_ready_watchdog_reload_and_stop_are_notified(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    proc = DaemonProcess(
        tmp_path / "d", workers=1, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"}
    )
    try:
        proc.start()
        ready = _receive_until(sock, "READY=1")
        assert any(line.startswith("STATUS=") for d in ready for line in d.splitlines())
        _receive_until(sock, "WATCHDOG=1", 10)  # every 0.3 s: half of WATCHDOG_USEC
        _receive_until(sock, "WATCHDOG=1", 10)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        reload = _receive_until(sock, "RELOADING=1")
        assert any("MONOTONIC_USEC=" in d for d in reload)
        _receive_until(sock, "READY=1")
        proc.proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1")
        assert proc.proc.wait(60) == 0
    finally:
        proc.kill9()
        sock.close()


def test_without_notify_socket_nothing_breaks(daemon: DaemonProcess) -> None:
    assert daemon.get("/healthz").ok
    assert "sd_notify" not in daemon.log_tail(200)
