"""A real ``flowd serve`` process on a free loopback port, for API and daemon tests.

``DaemonProcess(root)`` writes ``root/flowd.toml`` (state in ``root/state``, ``data_root`` =
``root/data``, ``[api] port = 0`` plus the keys in ``api_toml``, JSON logs to
``root/daemon.log``), starts the daemon as a child process and waits — by polling, with a
deadline — until it has written ``state/daemon.json`` and answers ``/healthz``. ``kill9()`` and
``restart()`` are what the crash tests use.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from flowd.client import FlowdClient

START_TIMEOUT_S = 60.0


class DaemonProcess:
    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        extra_toml: str = "",
        top_toml: str = "",
        api_toml: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.state = root / "state"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = root / "flowd.toml"
        self.config.write_text(
            f'state_dir = "state"\ndata_root = "data"\nworkers = {workers}\n{top_toml}\n'
            f'[api]\nhost = "127.0.0.1"\nport = 0\n{api_toml}\n'
            f'[log]\nformat = "json"\nlevel = "info"\n\n'
            f"{extra_toml}\n",
            encoding="utf-8",
        )
        self.env = {**os.environ, **(env or {})}
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DaemonProcess:
        info = self.state / "daemon.json"
        info.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowd.cli", "serve", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"flowd serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if info.exists():
                try:
                    data = json.loads(info.read_text())
                except ValueError:
                    data = {}
                if data.get("pid") == self.proc.pid and self._healthy(data["url"]):
                    self.url = data["url"]
                    break
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"flowd serve did not come up:\n{self.log_tail()}")
            time.sleep(0.05)
        self.token = (self.state / "api-token").read_text().strip()
        return self

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return requests.get(url + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait: the daemon drains and exits."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout_s)
        return self.proc.returncode

    def kill9(self) -> None:
        """``kill -9`` the daemon and its whole process group (workers die with it anyway)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def restart(self) -> DaemonProcess:
        self.kill9()
        return self.start()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    # -- talking to it -----------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> FlowdClient:
        return FlowdClient(self.url, self.token)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.headers, timeout=30, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=90, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines, parsed (lines that are not JSON skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
